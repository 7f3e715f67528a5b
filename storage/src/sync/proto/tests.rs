use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::sync::{
    index::{Kind, NO_HASH, VersionVector},
    owner::Owner,
};

fn entry(path: &str, kind: Kind, deleted: bool) -> Entry {
    Entry {
        path: path.to_owned(),
        kind,
        size: 42,
        mtime_ns: -5,
        mode: 0o644,
        owner: None,
        hash: [7; 32],
        version: [("a", 3), ("b", 1)].into_iter().collect::<VersionVector>(),
        modified_by: "a".to_owned(),
        deleted,
        sequence: 0,
    }
}

fn round_trip(msg: &Message) -> Message {
    let mut buf = BytesMut::new();
    assert!(encode(msg, &mut buf).is_ok());
    let decoded = decode(&mut buf);
    assert!(buf.is_empty());
    match decoded {
        Ok(Some(m)) => m,
        other => panic!("{other:?}"),
    }
}

// Input: one message of every type. Output: each decodes to itself.
#[test]
fn every_message_round_trips() {
    let mut dir = entry("d", Kind::Dir, false);
    dir.hash = NO_HASH;
    let messages = vec![
        Message::Hello(Hello {
            version: VERSION,
            set: "uploads".into(),
            node: "web1".into(),
            listen: "127.0.0.1:7000".into(),
            index_id: 99,
            flags: FLAG_SENDS | FLAG_RECEIVES,
        }),
        Message::Resume {
            index_id: 1,
            from: 2,
        },
        Message::Entries {
            up_to: 9,
            entries: vec![
                entry("a/b.txt", Kind::File, false),
                dir,
                {
                    let mut l = entry("l", Kind::Symlink("../x".into()), false);
                    l.hash = NO_HASH;
                    l
                },
                entry("gone", Kind::File, true),
                {
                    let mut owned = entry("owned", Kind::File, false);
                    owned.owner = Some(Owner { uid: 0, gid: 0 });
                    owned
                },
                {
                    // Numbers without a name here travel as numbers.
                    let mut nameless = entry("nameless", Kind::File, false);
                    nameless.owner = Some(Owner {
                        uid: 3_999_999_999,
                        gid: 3_999_999_998,
                    });
                    nameless
                },
            ],
        },
        Message::Ack { up_to: 9 },
        Message::Get(Request {
            id: 1,
            path: "a".into(),
            size: 3,
            mtime_ns: 4,
            hash: [1; 32],
        }),
        Message::GetDelta {
            request: Request {
                id: 2,
                path: "b".into(),
                size: 3,
                mtime_ns: 4,
                hash: [2; 32],
            },
            signature: Bytes::from_static(b"sig"),
        },
        Message::Data {
            id: 3,
            data: Bytes::from(vec![1u8; 1000]),
        },
        Message::Delta {
            id: 3,
            delta: Bytes::from_static(b"d"),
        },
        Message::End {
            id: 3,
            hash: [3; 32],
            sha256: None,
        },
        Message::End {
            id: 3,
            hash: [3; 32],
            sha256: Some([4; 32]),
        },
        Message::Stale { id: 4 },
        Message::Failed {
            id: 5,
            reason: "EACCES".into(),
        },
        Message::Refuse {
            reason: "no".into(),
        },
        Message::Ping { nonce: 7 },
        Message::Pong { nonce: u64::MAX },
    ];
    for msg in &messages {
        assert_eq!(&round_trip(msg), msg);
    }
}

// Input: an owner `root`/`root` as a peer whose root is 4242/4343 sends it, decoded with and
// without name lookups; then with names unknown here, then owner -1, then a bad flag. Output:
// this node's numbers for the names it knows (the peer's without lookups), the peer's
// otherwise; a malformed message.
#[test]
fn an_owners_names_become_this_nodes_numbers() {
    let mut owned = entry("f", Kind::File, false);
    owned.owner = Some(Owner { uid: 0, gid: 0 });
    let mut frame = BytesMut::new();
    let msg = Message::Entries {
        up_to: 1,
        entries: vec![owned],
    };
    assert!(encode(&msg, &mut frame).is_ok());
    let as_encoded = [&[1u8][..], &[0; 8], b"\0\x04root\0\x04root"].concat();
    let at = frame
        .windows(as_encoded.len())
        .position(|w| w == as_encoded)
        .expect("the owner as documented");
    frame[at + 1..at + 9]
        .copy_from_slice(&[&4242u32.to_be_bytes()[..], &4343u32.to_be_bytes()].concat());
    let owner_of = |mut frame: BytesMut| match decode(&mut frame) {
        Ok(Some(Message::Entries { entries, .. })) => entries[0].owner,
        other => panic!("{other:?}"),
    };
    assert_eq!(owner_of(frame.clone()), Some(Owner { uid: 0, gid: 0 }));
    // A node that does not sync owners looks nothing up: the sender's numbers stay.
    let mut shared = frame.clone().freeze();
    match super::codec::decode_shared(&mut shared, super::codec::OwnerNames::Ignore) {
        Ok(Some(Message::Entries { entries, .. })) => assert_eq!(
            entries[0].owner,
            Some(Owner {
                uid: 4242,
                gid: 4343
            })
        ),
        other => panic!("{other:?}"),
    }

    let mut unknown = frame.clone();
    unknown[at + 11..at + 15].copy_from_slice(b"qqqq");
    unknown[at + 17..at + 21].copy_from_slice(b"qqqq");
    assert_eq!(
        owner_of(unknown),
        Some(Owner {
            uid: 4242,
            gid: 4343
        })
    );

    let mut minus_one = frame.clone();
    minus_one[at + 1..at + 5].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode(&mut minus_one),
        Err(ProtoError::Malformed { reason, .. }) if reason.contains("-1")
    ));

    let mut bad = frame;
    bad[at] = 2;
    assert!(matches!(
        decode(&mut bad),
        Err(ProtoError::Malformed { reason, .. }) if reason.contains("owner")
    ));
}

// Input: a header announcing 4 GiB. Output: refused from the header alone.
#[test]
fn an_oversized_frame_is_refused_from_its_header() {
    let mut buf = BytesMut::from(&[0xF1, 0xC6, 0x12, 0, 0xFF, 0xFF, 0xFF, 0xFF][..]);
    assert!(matches!(decode(&mut buf), Err(ProtoError::TooLarge { .. })));
    let mut volume = BytesMut::from(&[0xF1, 0xC5, 0x12, 0, 0, 0, 0, 0][..]);
    assert!(matches!(
        decode(&mut volume),
        Err(ProtoError::BadMagic(0xF1C5))
    ));
}

// Input: a path of `../x`. Output: decoded as sent; the engine refuses it, not the codec.
#[test]
fn paths_are_decoded_as_sent() {
    let msg = Message::Entries {
        up_to: 1,
        entries: vec![entry("../x", Kind::File, false)],
    };
    assert_eq!(round_trip(&msg), msg);
}

// Input: a Ping and a Pong. Output: the documented octets (type 0x1C / 0x1D, an 8-octet
// nonce), and back.
#[test]
fn ping_and_pong_encode_as_documented() {
    for (msg, ty) in [
        (Message::Ping { nonce: 0x0102 }, 0x1C),
        (Message::Pong { nonce: 0x0102 }, 0x1D),
    ] {
        let mut buf = BytesMut::new();
        assert!(encode(&msg, &mut buf).is_ok());
        assert_eq!(
            &buf[..],
            &[0xF1, 0xC6, ty, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert!(matches!(decode(&mut buf), Ok(Some(m)) if m == msg));
        let mut short = BytesMut::from(&[0xF1, 0xC6, ty, 0, 0, 0, 0, 1, 0][..]);
        assert!(matches!(
            decode(&mut short),
            Err(ProtoError::Malformed { .. })
        ));
    }
}

proptest! {
    // Whatever a peer sends, decoding never panics.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(ty in 0x10u8..0x1E, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0xF1, 0xC6, ty, 0]);
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(&body);
        let _ = decode(&mut buf);
    }
}
