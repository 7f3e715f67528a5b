//! Known answers pin the layout; property tests hold round-trips and totality.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn encoded(msg: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    assert!(encode(msg, &mut buf).is_ok(), "{msg:?} encodes");
    buf.to_vec()
}

fn decoded(bytes: &[u8]) -> Result<Option<Message>, WireError> {
    decode(&mut BytesMut::from(bytes))
}

fn hello() -> Hello {
    Hello {
        volume: "r0".into(),
        node: "lb1".into(),
        size: 1 << 30,
        block_size: 4096,
        protocol: Protocol::C,
        role: Role::Primary,
        disk: DiskState::UpToDate,
        generations: Generations {
            current: 0x1111,
            bitmap: 0,
            history: [0x2222, 0x3333],
        },
        was_primary: true,
        discard_my_data: false,
    }
}

// Input: Ping. Output: the bare header.
#[test]
fn ping_is_a_bare_header() {
    assert_eq!(encoded(&Message::Ping), [0xF1, 0xC5, 0x12, 0, 0, 0, 0, 0]);
}

// Input: a 4-octet FUA write. Output: header, seq, offset, flags, data.
#[test]
fn write_layout() {
    let msg = Message::Write {
        seq: 7,
        offset: 0x1000,
        flags: WriteFlags {
            fua: true,
            flush_before: true,
        },
        data: Bytes::from_static(b"abcd"),
    };
    let mut want = vec![0xF1, 0xC5, 0x20, 0, 0, 0, 0, 21];
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&0x1000u64.to_be_bytes());
    want.push(0b11);
    want.extend_from_slice(b"abcd");
    assert_eq!(encoded(&msg), want);
}

// Input: a Hello. Output: the fixed part, the four generations, then the two names.
#[test]
fn hello_layout() {
    let bytes = encoded(&Message::Hello(hello()));
    let mut want = vec![0xF1, 0xC5, 0x10, 0, 0, 0, 0, 48 + 3 + 4];
    want.extend_from_slice(&(1u64 << 30).to_be_bytes());
    want.extend_from_slice(&4096u32.to_be_bytes());
    want.extend_from_slice(&[3, 1, 4, 0b01]);
    for generation in [0x1111u64, 0, 0x2222, 0x3333] {
        want.extend_from_slice(&generation.to_be_bytes());
    }
    want.extend_from_slice(b"\x02r0\x03lb1");
    assert_eq!(bytes, want);
}

// Input: a remote read of 4 KiB, its data and a failure. Output: id, offset, len; id, data; id.
// A read over MAX_DATA is refused both ways.
#[test]
fn remote_read_layout() {
    let mut want = vec![0xF1, 0xC5, 0x40, 0, 0, 0, 0, 20];
    want.extend_from_slice(&9u64.to_be_bytes());
    want.extend_from_slice(&0x2000u64.to_be_bytes());
    want.extend_from_slice(&4096u32.to_be_bytes());
    let request = Message::ReadRequest {
        id: 9,
        offset: 0x2000,
        len: 4096,
    };
    assert_eq!(encoded(&request), want);
    let mut data = vec![0xF1, 0xC5, 0x41, 0, 0, 0, 0, 10];
    data.extend_from_slice(&9u64.to_be_bytes());
    data.extend_from_slice(b"ok");
    let reply = Message::ReadData {
        id: 9,
        data: Bytes::from_static(b"ok"),
    };
    assert_eq!(encoded(&reply), data);
    let mut failed = vec![0xF1, 0xC5, 0x42, 0, 0, 0, 0, 8];
    failed.extend_from_slice(&9u64.to_be_bytes());
    assert_eq!(encoded(&Message::ReadFailed { id: 9 }), failed);

    let mut buf = BytesMut::new();
    let too_long = Message::ReadRequest {
        id: 1,
        offset: 0,
        len: u32::try_from(MAX_DATA).unwrap_or(0) + 1,
    };
    assert!(encode(&too_long, &mut buf).is_err());
    want[24..28].copy_from_slice(&(u32::try_from(MAX_DATA).unwrap_or(0) + 1).to_be_bytes());
    assert!(matches!(
        decoded(&want),
        Err(WireError::InvalidValue { field: "len", .. })
    ));
}

#[test]
fn an_incomplete_frame_asks_for_more() {
    let bytes = encoded(&Message::Flush { seq: 3 });
    for cut in 0..bytes.len() {
        assert!(matches!(decoded(&bytes[..cut]), Ok(None)), "cut at {cut}");
    }
    assert!(matches!(
        decoded(&bytes),
        Ok(Some(Message::Flush { seq: 3 }))
    ));
}

// Input: frames that are well-formed on the outside and wrong inside.
// Output: each its precise error.
#[test]
fn strict_decoding() {
    let frame = |ty: u8, body: &[u8]| {
        let mut buf = vec![0xF1, 0xC5, ty, 0];
        buf.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes());
        buf.extend_from_slice(body);
        buf
    };
    assert!(matches!(
        decoded(b"GET / HTTP/1.1\r\n"),
        Err(WireError::BadMagic(0x4745))
    ));
    assert!(matches!(
        decoded(&[0xF1, 0xC5, 0x12, 1, 0, 0, 0, 0]),
        Err(WireError::Reserved(1))
    ));
    assert!(matches!(
        decoded(&frame(0x7F, &[])),
        Err(WireError::UnknownType(0x7F))
    ));
    // A handshake frame after the handshake.
    assert!(matches!(
        decoded(&frame(0x01, &[])),
        Err(WireError::UnknownType(0x01))
    ));
    assert!(matches!(
        decoded(&frame(0x22, &[0; 7])),
        Err(WireError::Truncated { message: "Flush" })
    ));
    assert!(matches!(
        decoded(&frame(0x12, &[0])),
        Err(WireError::TrailingBytes {
            message: "Ping",
            extra: 1
        })
    ));
    assert!(matches!(
        decoded(&frame(0x21, &[0, 0, 0, 0, 0, 0, 0, 1, 9])),
        Err(WireError::InvalidValue {
            field: "kind",
            value: 9,
            ..
        })
    ));
    let mut write = vec![0; 16];
    write.push(0x04);
    assert!(matches!(
        decoded(&frame(0x20, &write)),
        Err(WireError::InvalidValue { field: "flags", .. })
    ));
    let mut request = vec![0; 8];
    request.extend_from_slice(&(u32::try_from(MAX_DATA).unwrap_or(0) + 1).to_be_bytes());
    assert!(matches!(
        decoded(&frame(0x31, &request)),
        Err(WireError::InvalidValue { field: "len", .. })
    ));
    assert!(matches!(
        decoded(&frame(0x14, &[1, 2, 0xFF, 0xFE])),
        Err(WireError::InvalidUtf8 {
            field: "detail",
            ..
        })
    ));
}

#[test]
fn oversized_values_are_not_encoded() {
    let mut buf = BytesMut::new();
    buf.put_slice(b"kept");
    let too_big = Message::ResyncData {
        offset: 0,
        data: Bytes::from(vec![0; MAX_DATA + 1]),
    };
    assert!(matches!(
        encode(&too_big, &mut buf),
        Err(WireError::FieldTooLong { field: "data", .. })
    ));
    let long_name = Message::Hello(Hello {
        node: "n".repeat(MAX_NAME + 1),
        ..hello()
    });
    assert!(matches!(
        encode(&long_name, &mut buf),
        Err(WireError::FieldTooLong { field: "node", .. })
    ));
    assert!(matches!(
        encode(
            &Message::VerifyRequest {
                offset: 0,
                len: u32::MAX,
                digest: [0; DIGEST_LEN]
            },
            &mut buf
        ),
        Err(WireError::FieldTooLong { field: "len", .. })
    ));
    assert_eq!(&buf[..], b"kept");
}

#[test]
fn the_largest_message_fits_the_frame_limit() {
    let msg = Message::Write {
        seq: u64::MAX,
        offset: u64::MAX,
        flags: WriteFlags::default(),
        data: Bytes::from(vec![1; MAX_DATA]),
    };
    let mut buf = BytesMut::new();
    assert!(encode(&msg, &mut buf).is_ok());
    assert_eq!(decode(&mut buf).ok().flatten(), Some(msg));
}

fn any_enum<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(all)
}

fn any_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        // As large as allowed; one repeated octet, as a megabyte of random ones is slow to draw.
        (any::<u8>(), MAX_DATA - 2..=MAX_DATA).prop_map(|(octet, len)| vec![octet; len]),
    ]
    .prop_map(Bytes::from)
}

fn any_name() -> impl Strategy<Value = String> {
    // Up to 63 characters of up to 4 octets: always within MAX_NAME.
    "\\PC{0,63}"
}

fn any_flags() -> impl Strategy<Value = WriteFlags> {
    (any::<bool>(), any::<bool>()).prop_map(|(fua, flush_before)| WriteFlags { fua, flush_before })
}

fn any_range_len() -> impl Strategy<Value = u32> {
    0..=u32::try_from(MAX_DATA).unwrap_or(0)
}

fn any_hello() -> impl Strategy<Value = Hello> {
    (
        (any_name(), any_name(), any::<u64>(), any::<u32>()),
        (
            any_enum(Protocol::ALL),
            any_enum(Role::ALL),
            any_enum(DiskState::ALL),
        ),
        any::<[u64; 4]>(),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (volume, node, size, block_size),
                (protocol, role, disk),
                [current, bitmap, h1, h2],
                (was_primary, discard_my_data),
            )| Hello {
                volume,
                node,
                size,
                block_size,
                protocol,
                role,
                disk,
                generations: Generations {
                    current,
                    bitmap,
                    history: [h1, h2],
                },
                was_primary,
                discard_my_data,
            },
        )
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any_hello().prop_map(Message::Hello),
        (any_enum(Role::ALL), any_enum(DiskState::ALL))
            .prop_map(|(role, disk)| Message::StateChange { role, disk }),
        Just(Message::Ping),
        Just(Message::PingAck),
        (any_enum(DisconnectReason::ALL), any_name())
            .prop_map(|(reason, detail)| Message::Disconnect { reason, detail }),
        any_enum(Resolution::ALL).prop_map(|resolution| Message::SplitBrain { resolution }),
        (any::<u64>(), any::<u64>(), any_flags(), any_bytes()).prop_map(
            |(seq, offset, flags, data)| Message::Write {
                seq,
                offset,
                flags,
                data
            }
        ),
        (any::<u64>(), any_enum(AckKind::ALL)).prop_map(|(seq, kind)| Message::Ack { seq, kind }),
        any::<u64>().prop_map(|seq| Message::Flush { seq }),
        any::<u64>().prop_map(|seq| Message::FlushAck { seq }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any_flags()).prop_map(
            |(seq, offset, len, flags)| Message::Trim {
                seq,
                offset,
                len,
                flags
            }
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any_flags()).prop_map(
            |(seq, offset, len, flags)| Message::WriteZeroes {
                seq,
                offset,
                len,
                flags
            }
        ),
        (any::<u64>(), any::<bool>(), any_bytes())
            .prop_map(|(offset, last, bits)| Message::Bitmap { offset, last, bits }),
        (any::<u64>(), any_range_len())
            .prop_map(|(offset, len)| Message::ResyncRequest { offset, len }),
        (any::<u64>(), any_bytes()).prop_map(|(offset, data)| Message::ResyncData { offset, data }),
        (any::<u64>(), any_range_len(), any::<Digest>()).prop_map(|(offset, len, digest)| {
            Message::ChecksumRequest {
                offset,
                len,
                digest,
            }
        }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(offset, len)| Message::ChecksumMatch { offset, len }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(offset, len)| Message::ResyncFailed { offset, len }),
        any::<u64>().prop_map(|failed| Message::ResyncIncomplete { failed }),
        (any::<u64>(), any_range_len(), any::<Digest>()).prop_map(|(offset, len, digest)| {
            Message::VerifyRequest {
                offset,
                len,
                digest,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<bool>())
            .prop_map(|(offset, len, equal)| Message::VerifyResult { offset, len, equal }),
        (any::<u64>(), any::<u64>(), any_range_len())
            .prop_map(|(id, offset, len)| Message::ReadRequest { id, offset, len }),
        (any::<u64>(), any_bytes()).prop_map(|(id, data)| Message::ReadData { id, data }),
        any::<u64>().prop_map(|id| Message::ReadFailed { id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(msg in any_message()) {
        let mut buf = BytesMut::new();
        prop_assert!(encode(&msg, &mut buf).is_ok());
        let back = decode(&mut buf);
        prop_assert!(matches!(&back, Ok(Some(m)) if *m == msg), "{back:?}");
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_head_and_its_trailing_data_are_the_whole_frame(msg in any_message()) {
        let mut whole = BytesMut::new();
        prop_assert!(encode(&msg, &mut whole).is_ok());
        let mut head = BytesMut::new();
        let trailing = encode_head(&msg, &mut head);
        prop_assert!(trailing.is_ok());
        if let Ok(Some(data)) = trailing {
            head.extend_from_slice(&data);
        }
        prop_assert_eq!(head, whole);
    }

    #[test]
    fn a_stream_of_messages_decodes_in_order(msgs in prop::collection::vec(any_message(), 1..6)) {
        let mut buf = BytesMut::new();
        for msg in &msgs {
            prop_assert!(encode(msg, &mut buf).is_ok());
        }
        let mut back = Vec::new();
        while let Ok(Some(msg)) = decode(&mut buf) {
            back.push(msg);
        }
        prop_assert_eq!(back, msgs);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Decode until more bytes are needed or an error: either way, no panic and no loop.
        while let Ok(Some(_)) = decode(&mut buf) {}
    }

    #[test]
    fn any_body_behind_a_valid_header_decodes_without_panic(
        ty in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut buf = BytesMut::new();
        buf.put_u16(0xF1C5);
        buf.put_u8(ty);
        buf.put_u8(0);
        buf.put_u32(u32::try_from(body.len()).unwrap_or(0));
        buf.put_slice(&body);
        let result = decode(&mut buf);
        prop_assert!(!matches!(result, Ok(None)), "a whole frame gives an answer");
    }
}
