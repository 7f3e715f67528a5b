//! Fuzzes a client's request head: parsed, then written out for the server. The first byte
//! says whether `X-Forwarded-For` is added. A head must be refused with a 4xx or 501, or be
//! forwarded with the framing, method and target the proxy read, one `Host` and no hop-by-hop
//! field (`fulcrum_proxy::l7::fuzzing::invariants::check_request`).

#![no_main]

use fulcrum_proxy::l7::fuzzing::invariants::check_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((flags, input)) = data.split_first() else {
        return;
    };
    if let Err(broken) = check_request(input, flags & 1 != 0) {
        panic!("{broken}\ninput: {:?}", String::from_utf8_lossy(input));
    }
});
