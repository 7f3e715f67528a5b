//! Fuzzes a chunked body copied between a client and a server. One taken must end where a
//! strict reader (RFC 9112 §7.1) ends it, and go on as a canonical chunked body with the same
//! data (`fulcrum_proxy::l7::fuzzing::invariants::check_chunked`).

#![no_main]

use fulcrum_proxy::l7::fuzzing::invariants::check_chunked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = check_chunked(data) {
        panic!("{broken}\ninput: {:?}", String::from_utf8_lossy(data));
    }
});
