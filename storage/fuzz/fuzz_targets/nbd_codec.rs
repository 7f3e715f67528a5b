//! Fuzzes the pure NBD codec: the option data parsers, a whole option-haggling conversation
//! with the `Negotiation` state machine, and the request header parser and validator. None may
//! panic; an accepted request header must re-encode to the same bytes, and a request that
//! passes validation must lie within the export.

#![no_main]

use fulcrum_storage::nbd::handshake::{MAX_OPTION_DATA, Negotiation, Next};
use fulcrum_storage::nbd::proto::{
    self, Command, OPTION_HEADER_LEN, REQUEST_HEADER_LEN, RequestHeader, Transmission,
};
use fulcrum_storage::nbd::{ExportFlags, MAX_REQUEST_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = proto::parse_info_request(data);
    let _ = proto::parse_meta_context_request(data);

    let mut input = Input(data);
    let export_flags = input.u8();
    let flags = ExportFlags {
        read_only: export_flags & 1 != 0,
        can_flush: export_flags & 2 != 0,
        can_fua: export_flags & 4 != 0,
        can_trim: export_flags & 8 != 0,
        can_write_zeroes: export_flags & 16 != 0,
        can_multi_conn: export_flags & 32 != 0,
        rotational: export_flags & 64 != 0,
    };
    let size = u64::from(input.u32());
    let mut negotiation = Negotiation::new("vol", size, flags);
    let mut transmission = Transmission {
        size,
        flags: proto::transmission_flags(flags, false),
        structured: false,
        meta_context: None,
    };
    if negotiation.client_flags(input.u32()).is_ok() {
        let mut out = Vec::new();
        // Options as on the wire: a header, then its data.
        while input.0.len() >= OPTION_HEADER_LEN && input.u8() & 0x80 == 0 {
            let header: [u8; OPTION_HEADER_LEN] = input.array();
            let Ok(header) = proto::parse_option_header(&header) else {
                continue;
            };
            let next = if header.length > MAX_OPTION_DATA {
                negotiation.oversize_option(header.option, &mut out)
            } else {
                let data = input.take(header.length as usize);
                negotiation.option(header.option, data, &mut out)
            };
            match next {
                Next::Continue => {}
                Next::Abort | Next::Disconnect(_) => break,
                Next::Transmit(t) => {
                    assert_eq!(t.size, size);
                    transmission = t;
                    break;
                }
            }
        }
    }

    while input.0.len() >= REQUEST_HEADER_LEN {
        let bytes: [u8; REQUEST_HEADER_LEN] = input.array();
        let Ok(header) = RequestHeader::parse(&bytes) else {
            continue;
        };
        assert_eq!(header.encode(), bytes);
        let within = |offset: u64, length: u32| offset + u64::from(length) <= transmission.size;
        match proto::validate(&header, &transmission) {
            Ok(Command::Read { offset, length }) | Ok(Command::Write { offset, length, .. }) => {
                assert!(length <= MAX_REQUEST_LEN && within(offset, length));
            }
            Ok(Command::Trim { offset, length, .. })
            | Ok(Command::WriteZeroes { offset, length, .. })
            | Ok(Command::BlockStatus { offset, length, .. }) => assert!(within(offset, length)),
            Ok(Command::Flush | Command::Disconnect) | Err(_) => {}
        }
    }
});

/// Reads the fuzz input from the front; past its end every byte reads as 0.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0; N];
        let head = self.take(N);
        bytes[..head.len()].copy_from_slice(head);
        bytes
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }
}
