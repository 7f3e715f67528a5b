//! Fuzzes the PROXY protocol reader (`fulcrum_proxy::l4::proxy_protocol::decode`), which the
//! tests and real servers behind the L4 tier use to read the header Fulcrum writes. Nothing may
//! panic; a header read must lie within the input, and one with addresses must be written by
//! `encode` as a header that reads back to the same addresses in either version.

#![no_main]

use fulcrum_proxy::l4::proxy_protocol::{Version, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((header, len)) = decode(data) else {
        return;
    };
    assert!(len <= data.len(), "took {len} of {} bytes", data.len());
    let (Some(source), Some(destination)) = (header.source, header.destination) else {
        return;
    };
    if source.is_ipv4() != destination.is_ipv4() {
        // No version can carry a mixed pair; `encode` is given the proxy's own, never mixed.
        return;
    }
    for version in [Version::V1, Version::V2] {
        let mut out = Vec::new();
        encode(version, source, destination, &mut out);
        let (again, again_len) = decode(&out).expect("an encoded header reads back");
        assert_eq!(again_len, out.len());
        assert_eq!((again.source, again.destination), (Some(source), Some(destination)));
    }
});
