//! A secondary [`Volume`] against a peer that speaks the replication protocol but is not a
//! sound Fulcrum: this test, which authenticates, matches the secondary's Hello, and then asks
//! for what no primary would. The secondary must refuse it without touching its disk.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/volume_pair.rs"]
#[allow(dead_code, reason = "this test uses some of the pair helpers")]
mod support;

use std::time::Duration;

use bytes::Bytes;
use fulcrum_storage::volume::peer::{
    self, AckKind, DiskState, Hello, Message, MessageReader, MessageWriter, Side, WriteFlags,
};
use fulcrum_storage::volume::{ConnState, Protocol, Role};
use support::{pair, pattern, wait_for};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

const SIZE: u64 = 1 << 20;

/// The next message that is not a ping, answering pings on the way; `None` once the
/// secondary has closed the connection (or broken it: the same to a peer).
async fn next_answering_pings(
    reader: &mut MessageReader<OwnedReadHalf>,
    writer: &mut MessageWriter<tokio::net::tcp::OwnedWriteHalf>,
) -> Option<Message> {
    loop {
        match reader.next().await {
            Ok(Some(Message::Ping)) => writer.send(&Message::PingAck).await.unwrap(),
            Ok(Some(msg)) => return Some(msg),
            Ok(None) | Err(_) => return None,
        }
    }
}

// Input: a secondary whose primary is this test; a 4 KiB Write at offset 0, then one at the
// volume's end. Output: the first is acknowledged once written (protocol C) and is on the
// secondary's disk; the second ends the connection without an ack, and the backing file keeps
// its size (a write past the end of a regular file would have grown it).
#[tokio::test(flavor = "multi_thread")]
async fn a_write_past_the_volumes_end_ends_the_connection_unwritten() {
    let (fake, node) = pair(SIZE, Protocol::C, Role::Primary);
    let secondary = node.start().await;
    let secret = fake.config.shared_secret.clone();

    // The secondary listens on the higher port and waits for its peer to dial, as `fake` would.
    let mut stream = TcpStream::connect(node.config.listen).await.unwrap();
    peer::authenticate(
        &mut stream,
        secret.as_bytes(),
        Side::Connecting,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let (read, write) = stream.into_split();
    let (mut reader, mut writer) = (MessageReader::new(read), MessageWriter::new(write));
    let Some(Message::Hello(theirs)) = reader.next().await.unwrap() else {
        panic!("the secondary's Hello expected first");
    };
    let ours = Hello {
        node: "fake".to_owned(),
        role: peer::Role::Primary,
        disk: DiskState::UpToDate,
        was_primary: false,
        discard_my_data: false,
        ..theirs
    };
    writer.send(&Message::Hello(ours)).await.unwrap();
    wait_for(&secondary, "Connected", |s| {
        s.connection == ConnState::Connected
    })
    .await;

    let data = Bytes::from(pattern(7, 4096));
    let write = |seq, offset| Message::Write {
        seq,
        offset,
        flags: WriteFlags::default(),
        data: data.clone(),
    };
    writer.send(&write(1, 0)).await.unwrap();
    loop {
        match next_answering_pings(&mut reader, &mut writer).await {
            Some(Message::Ack { seq: 1, kind }) if kind != AckKind::Received => break,
            Some(_) => {}
            None => panic!("the connection ended before the write inside the volume was acked"),
        }
    }
    let on_disk = std::fs::read(node.backing()).unwrap();
    assert_eq!(&on_disk[..4096], &data[..]);

    writer.send(&write(2, SIZE)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match next_answering_pings(&mut reader, &mut writer).await {
                Some(Message::Ack { seq: 2, .. }) => panic!("a write past the end was acked"),
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection is still open after a write past the end"
    );
    let on_disk = std::fs::read(node.backing()).unwrap();
    assert_eq!(on_disk.len() as u64, SIZE, "the backing file grew");
    assert_eq!(&on_disk[..4096], &data[..]);
    assert_ne!(secondary.status().connection, ConnState::Connected);
}
