//! Fuzzes a server's response head, to a request whose method the first byte picks. A head
//! taken must be framed as RFC 9112 §6.3 says for that method
//! (`fulcrum_proxy::l7::fuzzing::invariants::check_response`).

#![no_main]

use fulcrum_proxy::l7::fuzzing::invariants::check_response;
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "OPTIONS"];

fuzz_target!(|data: &[u8]| {
    let Some((pick, input)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(*pick) % METHODS.len()];
    if let Err(broken) = check_response(input, method) {
        panic!("{broken}\nto {method}: {:?}", String::from_utf8_lossy(input));
    }
});
