//! A secondary [`Volume`] against a peer that speaks the replication protocol but is not a
//! sound Fulcrum: this test, which authenticates, matches the secondary's Hello, and then asks
//! for what no primary would. The secondary must refuse it without touching its disk.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/volume_pair.rs"]
#[allow(dead_code, reason = "this test uses some of the pair helpers")]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fulcrum_storage::volume::peer::{
    self, DiskState, Hello, Message, MessageReader, MessageWriter, Side, WriteFlags,
};
use fulcrum_storage::volume::{ConnState, Protocol, Role, Volume};
use support::{Node, pair, pattern, wait_for};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const SIZE: u64 = 1 << 20;

/// This test as the secondary's primary: connected, authenticated, Hellos exchanged.
struct FakePrimary {
    reader: MessageReader<OwnedReadHalf>,
    writer: MessageWriter<OwnedWriteHalf>,
}

/// Reads the volume's Hello and answers with its generations, as node `fake` in `role` with
/// its disk in `disk`.
async fn answer_hello<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<OwnedWriteHalf>,
    role: peer::Role,
    disk: DiskState,
) {
    let Some(Message::Hello(theirs)) = reader.next().await.unwrap() else {
        panic!("the volume's Hello expected first");
    };
    let ours = Hello {
        node: "fake".to_owned(),
        role,
        disk,
        was_primary: false,
        discard_my_data: false,
        ..theirs
    };
    writer.send(&Message::Hello(ours)).await.unwrap();
}

/// Connects to `node`'s replication listener (it listens on the higher port and waits to be
/// dialed, as its real peer would) and authenticates.
async fn dial(node: &Node) -> TcpStream {
    let mut stream = TcpStream::connect(node.config.listen).await.unwrap();
    peer::authenticate(
        &mut stream,
        node.config.shared_secret.as_bytes(),
        Side::Connecting,
        Duration::from_secs(5),
        &peer::OwnChallenges::of("fake peer"),
    )
    .await
    .unwrap();
    stream
}

/// Answers `volume`'s Hello on the authenticated `stream` with a matching one (same
/// generations, UpToDate, in `role`), so that the two are Connected with nothing to resync.
async fn introduce(
    stream: TcpStream,
    role: peer::Role,
    volume: &Volume,
) -> (MessageReader<OwnedReadHalf>, MessageWriter<OwnedWriteHalf>) {
    let (read, write) = stream.into_split();
    let (mut reader, mut writer) = (MessageReader::new(read), MessageWriter::new(write));
    answer_hello(&mut reader, &mut writer, role, DiskState::UpToDate).await;
    wait_for(volume, "Connected", |s| {
        s.connection == ConnState::Connected
    })
    .await;
    (reader, writer)
}

/// Starts `primary` with this test as its peer `secondary`: listens at `secondary`'s address,
/// which the primary dials, accepts the primary's connection as `secondary` would,
/// authenticated, and answers its Hello as a secondary. The first connection the dialer makes
/// may be one it gives up (it dials again each `connect_interval`): the first that
/// authenticates is taken. Returns the volume, Connected, and the link.
async fn start_with_fake_secondary(
    primary: &Node,
    secondary: &Node,
) -> (
    Volume,
    MessageReader<OwnedReadHalf>,
    MessageWriter<OwnedWriteHalf>,
) {
    let listener = tokio::net::TcpListener::bind(secondary.config.listen)
        .await
        .unwrap();
    let volume = primary.start().await;
    let stream = loop {
        let (mut stream, _) = listener.accept().await.unwrap();
        let authenticated = peer::authenticate(
            &mut stream,
            secondary.config.shared_secret.as_bytes(),
            Side::Accepting,
            Duration::from_secs(5),
            &peer::OwnChallenges::of("fake peer"),
        )
        .await;
        if authenticated.is_ok() {
            break stream;
        }
    };
    let (reader, writer) = introduce(stream, peer::Role::Secondary, &volume).await;
    (volume, reader, writer)
}

impl FakePrimary {
    /// Dials `node` (which listens on the higher port and waits to be dialed, as its real
    /// peer would) and answers its Hello with a matching one: same generations, primary,
    /// UpToDate, so that the two are Connected with nothing to resync.
    async fn connect(node: &Node, secondary: &Volume) -> FakePrimary {
        let stream = dial(node).await;
        let (reader, writer) = introduce(stream, peer::Role::Primary, secondary).await;
        FakePrimary { reader, writer }
    }

    async fn write(&mut self, seq: u64, offset: u64, data: &Bytes) {
        let msg = Message::Write {
            seq,
            offset,
            flags: WriteFlags::default(),
            data: data.clone(),
        };
        self.writer.send(&msg).await.unwrap();
    }

    /// The next message that is not a ping, answering pings on the way; `None` once the
    /// secondary has closed the connection (or broken it: the same to a peer).
    async fn next(&mut self) -> Option<Message> {
        loop {
            match self.reader.next().await {
                Ok(Some(Message::Ping)) => self.writer.send(&Message::PingAck).await.unwrap(),
                Ok(Some(msg)) => return Some(msg),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits for the ack of write `seq` (on receipt with protocol B, once written with C).
    async fn acked(&mut self, seq: u64) {
        loop {
            match self.next().await {
                Some(Message::Ack { seq: s, .. }) if s == seq => return,
                Some(_) => {}
                None => panic!("the connection ended before write {seq} was acked"),
            }
        }
    }

    /// Waits for the connection to end, failing on any ack of write `seq`.
    async fn ended_without_ack(mut self, seq: u64) {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.next().await {
                    Some(Message::Ack { seq: s, kind }) if s == seq => {
                        panic!("write {seq}, past the end, was acked ({kind:?})")
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the connection is still open after write {seq}"
        );
    }
}

// Input: a secondary whose primary is this test, with protocol B (an ack on receipt) and C
// (once written); a 4 KiB write at offset 0, then a write past the end: 4 KiB at the
// volume's end, or 128 KiB (a direct write's size) at 2^63, beyond any file. Output: the first
// is acknowledged and on the secondary's disk; the second ends the connection without any ack,
// the backing file keeps its size (a write past the end of a regular file would have grown
// it), and the secondary stops counting itself Connected.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_past_the_volumes_end_ends_the_connection_unwritten() {
    let cases = [
        (Protocol::C, SIZE, 4096),
        (Protocol::B, SIZE, 4096),
        (Protocol::C, 1 << 63, 128 << 10),
    ];
    for (protocol, bad_offset, bad_len) in cases {
        let (_, node) = pair(SIZE, protocol, Role::Primary);
        let secondary = node.start().await;
        let mut fake = FakePrimary::connect(&node, &secondary).await;

        let data = Bytes::from(pattern(7, 4096));
        fake.write(1, 0, &data).await;
        fake.acked(1).await;
        // With protocol B the ack may come before the write is applied.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read(node.backing()).unwrap()[..4096] != data[..] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{protocol:?}: write 1 never reached the disk"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        fake.write(2, bad_offset, &Bytes::from(pattern(8, bad_len)))
            .await;
        fake.ended_without_ack(2).await;
        let on_disk = std::fs::read(node.backing()).unwrap();
        assert_eq!(
            on_disk.len() as u64,
            SIZE,
            "{protocol:?}: the backing file grew"
        );
        assert_eq!(&on_disk[..4096], &data[..]);
        wait_for(&secondary, "no longer Connected", |s| {
            s.connection != ConnState::Connected
        })
        .await;
    }
}

// Input: a Connected secondary (nothing to resync) asked by its peer for resync data, which
// only a SyncTarget asks its SyncSource for. Output: the connection ends; no data is sent
// (serving it would also mark the range in sync on the secondary).
#[tokio::test(flavor = "multi_thread")]
async fn a_resync_request_to_a_node_that_is_not_sync_source_ends_the_connection() {
    let (_, node) = pair(SIZE, Protocol::C, Role::Primary);
    let secondary = node.start().await;
    let mut fake = FakePrimary::connect(&node, &secondary).await;
    fake.writer
        .send(&Message::ResyncRequest {
            offset: 0,
            len: 4096,
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match fake.next().await {
                Some(Message::ResyncData { .. }) => panic!("resync data served to a non-target"),
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection is still open");
}

// Input: a protocol C primary whose secondary is this test: it takes the replicated write,
// never acknowledges it, and answers every ping, so it never looks silent. Output: the write
// does not wait for ever: after 7 timeouts (DRBD's ko-count) the link is dropped and the
// write completes on the primary alone, its block out of sync.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_peer_never_acknowledges_ends_the_link_though_it_answers_pings() {
    use fulcrum_storage::nbd::Export as _;
    let (mut primary_node, secondary_node) = pair(SIZE, Protocol::C, Role::Primary);
    primary_node.config.timeout = Duration::from_millis(300);
    primary_node.config.connect_interval = Duration::from_secs(1);
    primary_node.config.ping_interval = Duration::from_secs(1);
    let (primary, mut reader, mut writer) =
        start_with_fake_secondary(&primary_node, &secondary_node).await;
    // Lively: a ping of its own every 100 ms, and the primary's answered; writes ignored.
    let answering = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let reply = tokio::select! {
                _ = tick.tick() => Message::Ping,
                msg = reader.next() => match msg {
                    Ok(Some(Message::Ping)) => Message::PingAck,
                    Ok(Some(_)) => continue,
                    _ => return,
                },
            };
            if writer.send(&reply).await.is_err() {
                return;
            }
        }
    });
    let export = primary.export();
    let started = tokio::time::Instant::now();
    let written = tokio::time::timeout(
        Duration::from_secs(15),
        export.write(0, Bytes::from(pattern(3, 4096)), false),
    )
    .await;
    assert!(
        written.is_ok(),
        "the write still waits for an ack that never comes"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(2100),
        "ended before 7 timeouts: the pings did not keep the link alive"
    );
    wait_for(&primary, "no longer Connected", |s| {
        s.connection != ConnState::Connected
    })
    .await;
    answering.abort();
}

// Input: a secondary whose primary is this test, with protocol B (an ack on receipt): 100 FUA
// writes (each synced, so the applier falls behind), then the connection closed as soon as the
// last one is acked. Output: every write reaches the secondary's disk. (The applier stopped
// after one more write once the session had ended, dropping what it had queued, acked writes
// among them.)
#[tokio::test(flavor = "multi_thread")]
async fn writes_acked_on_receipt_are_applied_after_the_link_ends() {
    let (_, node) = pair(SIZE, Protocol::B, Role::Primary);
    let secondary = node.start().await;
    let mut fake = FakePrimary::connect(&node, &secondary).await;
    let flags = WriteFlags {
        fua: true,
        flush_before: false,
    };
    for seq in 1..=100u64 {
        let msg = Message::Write {
            seq,
            offset: (seq - 1) * 4096,
            flags,
            data: Bytes::from(pattern(seq, 4096)),
        };
        fake.writer.send(&msg).await.unwrap();
    }
    fake.acked(100).await;
    drop(fake);
    let applied = |disk: &[u8]| {
        (1..=100u64).all(|seq| {
            let at = ((seq - 1) * 4096) as usize;
            disk[at..at + 4096] == pattern(seq, 4096)[..]
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !applied(&std::fs::read(node.backing()).unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "acked writes never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Input: a primary (protocol C) whose secondary is this test: a write acked as written, a
// flush acked, another write acked as written, then the link closed. Output: the primary
// counts the second write (4 KiB) out of sync, not the first: the peer may have lost a write
// it acked but never flushed (a power cut), so the next connection resyncs it, as DRBD
// resyncs what its transfer log holds past the last barrier. (Nothing was out of sync.)
#[tokio::test(flavor = "multi_thread")]
async fn writes_the_peer_never_flushed_are_resynced_after_the_link_ends() {
    use fulcrum_storage::nbd::Export as _;
    let (mut primary_node, secondary_node) = pair(SIZE, Protocol::C, Role::Primary);
    primary_node.config.connect_interval = Duration::from_secs(30);
    let (primary, mut reader, mut writer) =
        start_with_fake_secondary(&primary_node, &secondary_node).await;
    // A secondary that acks every write as written, and answers flushes until the client's
    // has returned: the primary's own flushes, each tick, must not cover the second write.
    let flushing = Arc::new(AtomicBool::new(true));
    let answers_flushes = Arc::clone(&flushing);
    let answering = tokio::spawn(async move {
        loop {
            let reply = match reader.next().await {
                Ok(Some(Message::Ping)) => Message::PingAck,
                Ok(Some(Message::Write { seq, .. })) => Message::Ack {
                    seq,
                    kind: peer::AckKind::Written,
                },
                Ok(Some(Message::Flush { seq })) if answers_flushes.load(Ordering::SeqCst) => {
                    Message::FlushAck { seq }
                }
                Ok(Some(_)) => continue,
                _ => return,
            };
            if writer.send(&reply).await.is_err() {
                return;
            }
        }
    });
    let export = primary.export();
    export
        .write(0, Bytes::from(pattern(1, 4096)), false)
        .await
        .unwrap();
    export.flush().await.unwrap();
    flushing.store(false, Ordering::SeqCst);
    export
        .write(8192, Bytes::from(pattern(2, 4096)), false)
        .await
        .unwrap();
    answering.abort();
    wait_for(&primary, "the unflushed write marked out of sync", |s| {
        s.connection != ConnState::Connected && s.out_of_sync_bytes == 4096
    })
    .await;
}

/// What [`HoldingSecondary`] saw, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Write(u64),
    Flush,
    FlushAnswered,
}

/// This test as a secondary that acks every write as written and answers flushes at once,
/// except while told to hold them.
struct HoldingSecondary {
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    holding: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingSecondary {
    fn spawn(
        mut reader: MessageReader<OwnedReadHalf>,
        mut writer: MessageWriter<OwnedWriteHalf>,
    ) -> Self {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let holding = Arc::new(AtomicBool::new(false));
        let release = Arc::new(tokio::sync::Notify::new());
        let task = {
            let (seen, holding, release) = (
                Arc::clone(&seen),
                Arc::clone(&holding),
                Arc::clone(&release),
            );
            tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    let message = tokio::select! {
                        message = reader.next() => message,
                        () = release.notified() => {
                            for seq in held.drain(..) {
                                writer.send(&Message::FlushAck { seq }).await.unwrap();
                                seen.lock().unwrap().push(Seen::FlushAnswered);
                            }
                            continue;
                        }
                    };
                    let reply = match message {
                        Ok(Some(Message::Ping)) => Message::PingAck,
                        Ok(Some(Message::Write { seq, offset, .. })) => {
                            seen.lock().unwrap().push(Seen::Write(offset));
                            Message::Ack {
                                seq,
                                kind: peer::AckKind::Written,
                            }
                        }
                        Ok(Some(Message::Flush { seq })) => {
                            if holding.load(Ordering::SeqCst) {
                                seen.lock().unwrap().push(Seen::Flush);
                                held.push(seq);
                                continue;
                            }
                            Message::FlushAck { seq }
                        }
                        Ok(Some(_)) => continue,
                        _ => return,
                    };
                    writer.send(&reply).await.unwrap();
                }
            })
        };
        Self {
            seen,
            holding,
            release,
            task,
        }
    }

    fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }

    /// Answers the flushes held, and every one after at once.
    fn answer(&self) {
        self.holding.store(false, Ordering::SeqCst);
        self.release.notify_one();
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until a flush is held, then a while longer (well inside the 2 s after which an
    /// unanswered flush ends the link), for whatever else would come meanwhile.
    async fn held_a_while(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.seen().contains(&Seen::Flush) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no flush reached the peer"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The smallest activity log DRBD allows, in extents of 4 MiB.
const AL_EXTENTS: u64 = 67;

/// A primary (protocol C) with an activity log of [`AL_EXTENTS`], each written once (so the
/// log is full, of extents no flush of both nodes has covered), on a volume `more` extents
/// larger; its secondary is a [`HoldingSecondary`]. The nodes hold the volume's directories.
async fn full_activity_log(more: u64) -> (Volume, HoldingSecondary, (Node, Node)) {
    use fulcrum_storage::nbd::Export as _;
    use fulcrum_storage::volume::meta::activity_log::EXTENT_SIZE;
    let (mut primary_node, secondary_node) = pair(
        (AL_EXTENTS + more) * EXTENT_SIZE,
        Protocol::C,
        Role::Primary,
    );
    primary_node.config.al_extents = AL_EXTENTS as usize;
    primary_node.config.connect_interval = Duration::from_secs(30);
    let (primary, reader, writer) = start_with_fake_secondary(&primary_node, &secondary_node).await;
    let secondary = HoldingSecondary::spawn(reader, writer);
    let export = primary.export();
    for extent in 0..AL_EXTENTS {
        let data = Bytes::from(pattern(extent, 4096));
        export
            .write(extent * EXTENT_SIZE, data, false)
            .await
            .unwrap();
    }
    (primary, secondary, (primary_node, secondary_node))
}

// Input: a full activity log (see `full_activity_log`); the secondary holds its answers to
// flushes, and a write into a 68th extent, which must evict one, comes. Output: a flush
// reaches the peer and the write waits for its answer: it reaches the peer only after the
// test answered. (The least recently used extent left the log at once, its write on neither
// disk for sure: after a power cut of both nodes, no bit would have said that the copies
// differ there.)
#[tokio::test(flavor = "multi_thread")]
async fn an_extent_leaves_the_activity_log_only_after_the_peer_flushed_it() {
    use fulcrum_storage::nbd::Export as _;
    use fulcrum_storage::volume::meta::activity_log::EXTENT_SIZE;
    let (primary, secondary, _nodes) = full_activity_log(1).await;
    secondary.hold();
    let evicting = AL_EXTENTS * EXTENT_SIZE;
    let export = primary.export();
    let write = tokio::spawn(async move {
        let data = Bytes::from(pattern(AL_EXTENTS, 4096));
        export.write(evicting, data, false).await
    });
    secondary.held_a_while().await;
    let seen = secondary.seen();
    assert!(
        !seen.contains(&Seen::Write(evicting)),
        "the write into the 68th extent went out before the peer answered the flush: {:?}",
        &seen[seen.len().saturating_sub(4)..]
    );
    assert!(!write.is_finished(), "the write was acknowledged unflushed");
    secondary.answer();
    write.await.unwrap().unwrap();
    let seen = secondary.seen();
    let answered = seen.iter().position(|s| *s == Seen::FlushAnswered);
    let written = seen.iter().position(|s| *s == Seen::Write(evicting));
    assert!(
        answered < written,
        "{:?}",
        &seen[seen.len().saturating_sub(4)..]
    );
    assert_eq!(primary.status().out_of_sync_bytes, 0);
    secondary.task.abort();
}

// Input: a full activity log; the secondary holds its answers to flushes, and eight writes
// into eight new extents come at once, each needing room. Output: at most two flushes reach
// the peer while it holds them (the writers' one, and perhaps the session's own periodic
// barrier), and all eight writes complete once it answers. (Each writer flushed both nodes on
// its own: eight flushes, each an fdatasync on both.)
#[tokio::test(flavor = "multi_thread")]
async fn writers_needing_room_in_the_activity_log_share_one_flush() {
    use fulcrum_storage::nbd::Export as _;
    use fulcrum_storage::volume::meta::activity_log::EXTENT_SIZE;
    const WRITERS: u64 = 8;
    let (primary, secondary, _nodes) = full_activity_log(WRITERS).await;
    secondary.hold();
    let writes: Vec<_> = (AL_EXTENTS..AL_EXTENTS + WRITERS)
        .map(|extent| {
            let export = primary.export();
            tokio::spawn(async move {
                let data = Bytes::from(pattern(extent, 4096));
                export.write(extent * EXTENT_SIZE, data, false).await
            })
        })
        .collect();
    secondary.held_a_while().await;
    let flushes = secondary
        .seen()
        .iter()
        .filter(|s| **s == Seen::Flush)
        .count();
    assert!(flushes <= 2, "{flushes} flushes for {WRITERS} writers");
    secondary.answer();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    secondary.task.abort();
}

// Input: three connections to the accepting node that send nothing, each made again as soon
// as it is closed, held from before the dialing node starts. Output: the two nodes connect
// all the same. (The accepting node ran one handshake at a time, each waiting out its 2 s
// timeout: the peer's own connection, queued behind them, always timed out first.)
#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_do_not_keep_the_peer_out() {
    use tokio::io::AsyncReadExt;
    let (dialing, accepting) = pair(SIZE, Protocol::C, Role::Primary);
    let b = accepting.start().await;
    let target = accepting.config.listen;
    let squatters: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                loop {
                    let Ok(mut squat) = TcpStream::connect(target).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let mut sink = [0u8; 256];
                    while squat.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = dialing.start().await;
    wait_for(&a, "Connected beside the silent connections", |s| {
        s.connection == ConnState::Connected
    })
    .await;
    for squatter in squatters {
        squatter.abort();
    }
    drop(b);
}

/// Answers the primary's pings and acks each write with `kind`, until `reader` ends; sends
/// `after_write` after the first ack.
fn fake_secondary(
    mut reader: MessageReader<OwnedReadHalf>,
    mut writer: MessageWriter<OwnedWriteHalf>,
    kind: peer::AckKind,
    after_write: Option<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut after_write = after_write;
        loop {
            let reply = match reader.next().await {
                Ok(Some(Message::Ping)) => Message::PingAck,
                Ok(Some(Message::Write { seq, .. })) => Message::Ack { seq, kind },
                Ok(Some(_)) => continue,
                _ => return,
            };
            if writer.send(&reply).await.is_err() {
                return;
            }
            if let (Message::Ack { .. }, Some(extra)) = (&reply, after_write.take())
                && writer.send(&extra).await.is_err()
            {
                return;
            }
        }
    })
}

// Input: protocol B; this test as the secondary acks a write on receipt, never answers a
// flush, and then acks a flush that was never sent (seq 2^64 - 1). Output: the primary ends
// the connection, and the write, never made durable on the peer, is out of sync. (The stray
// ack used to forget every write not yet flushed: the link stayed up, and a later break left
// nothing to resync.)
#[tokio::test(flavor = "multi_thread")]
async fn a_flush_ack_for_no_flush_sent_ends_the_link_and_keeps_the_write_out_of_sync() {
    let stray = Message::FlushAck { seq: u64::MAX };
    a_write_ends_the_link(Protocol::B, Some(stray)).await;
}

// Input: protocol C; this test as the secondary acks a write as received, not as written,
// and goes on answering pings. Output: the primary ends the connection (with C only the
// peer's disk completes a write), and the write is out of sync.
#[tokio::test(flavor = "multi_thread")]
async fn an_ack_of_receipt_with_protocol_c_ends_the_link() {
    a_write_ends_the_link(Protocol::C, None).await;
}

/// Starts a primary with `protocol` whose secondary, this test, acks its writes on receipt
/// and sends `after_write` after the first ack; writes 4 KiB, and waits for the link to end
/// with that write out of sync.
async fn a_write_ends_the_link(protocol: Protocol, after_write: Option<Message>) {
    use fulcrum_storage::nbd::Export as _;
    let (mut primary_node, secondary_node) = pair(SIZE, protocol, Role::Primary);
    primary_node.config.connect_interval = Duration::from_secs(1);
    let (primary, reader, writer) = start_with_fake_secondary(&primary_node, &secondary_node).await;
    let answering = fake_secondary(reader, writer, peer::AckKind::Received, after_write);
    primary
        .export()
        .write(8192, Bytes::from(pattern(3, 4096)), false)
        .await
        .unwrap();
    wait_for(&primary, "the link ended, the write out of sync", |s| {
        s.connection != ConnState::Connected && s.out_of_sync_bytes == 4096
    })
    .await;
    answering.abort();
}

// Input: a secondary whose backing was adopted (Inconsistent, every block out of sync) and a
// peer, this test, UpToDate with the same generations, so that the volume becomes its
// SyncTarget and asks for its whole 1 MiB. The test answers the first half twice and never
// the second. Output: the repeated answer ends the connection and the volume stays
// Inconsistent. (The two halves counted as the whole: the volume called itself UpToDate with
// half its blocks never sent.)
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_source_that_answers_twice_does_not_end_the_resync() {
    let (_, node) = pair(SIZE, Protocol::C, Role::Primary);
    let (target, _reader, mut writer, (offset, len)) = as_sync_source(&node).await;
    let half = Bytes::from(vec![0u8; len as usize / 2]);
    for _ in 0..2 {
        let answer = Message::ResyncData {
            offset,
            data: half.clone(),
        };
        writer.send(&answer).await.unwrap();
    }
    wait_for(&target, "the connection ended", |s| {
        s.connection != ConnState::SyncTarget && s.connection != ConnState::Connected
    })
    .await;
    assert_eq!(target.status().disk, DiskState::Inconsistent);
}

// Input: as above; the test answers the volume's one request (the whole volume) with a failed
// read, then again. Output: the first ends the resync with the volume Connected, Inconsistent
// and every block still out of sync, and the source told so; the second, an answer to nothing
// asked, ends the connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_source_that_fails_a_range_leaves_it_out_of_sync_and_not_twice() {
    let (_, node) = pair(SIZE, Protocol::C, Role::Primary);
    let (target, mut reader, mut writer, (offset, len)) = as_sync_source(&node).await;
    assert_eq!(len, SIZE, "one request for the whole volume");
    let failed = Message::ResyncFailed {
        offset,
        len: u32::try_from(len).unwrap(),
    };
    writer.send(&failed).await.unwrap();
    loop {
        match reader.next().await.unwrap() {
            Some(Message::ResyncIncomplete { failed }) => break assert_eq!(failed, SIZE),
            Some(Message::Ping) => writer.send(&Message::PingAck).await.unwrap(),
            Some(_) => {}
            None => panic!("the connection ended before the resync did"),
        }
    }
    let s = target.status();
    assert_eq!(
        (s.connection, s.disk, s.out_of_sync_bytes),
        (ConnState::Connected, DiskState::Inconsistent, SIZE)
    );
    writer.send(&failed).await.unwrap();
    wait_for(&target, "the connection ended", |s| {
        s.connection != ConnState::SyncTarget && s.connection != ConnState::Connected
    })
    .await;
    assert_eq!(target.status().disk, DiskState::Inconsistent);
}

// Input: as above, without `checksum_resync`, the test answers the volume's request for data
// with a ChecksumMatch for its first 4 KiB block. Output: the connection ends, the volume stays
// Inconsistent with every block still out of sync. (A match marked the block in sync: no data
// had been asked for by checksum, and none was sent.)
#[tokio::test(flavor = "multi_thread")]
async fn a_checksum_match_nobody_asked_for_ends_the_resync() {
    let (_, node) = pair(SIZE, Protocol::C, Role::Primary);
    let (target, _reader, mut writer, (offset, _)) = as_sync_source(&node).await;
    let out_of_sync = target.status().out_of_sync_bytes;
    let answer = Message::ChecksumMatch { offset, len: 4096 };
    writer.send(&answer).await.unwrap();
    wait_for(&target, "the connection ended", |s| {
        s.connection != ConnState::SyncTarget && s.connection != ConnState::Connected
    })
    .await;
    assert_eq!(target.status().disk, DiskState::Inconsistent);
    assert_eq!(target.status().out_of_sync_bytes, out_of_sync);
}

/// Starts `node` on a backing it adopts (Inconsistent, every block out of sync), and connects
/// to it as an UpToDate peer with the same generations, so that it becomes this test's
/// SyncTarget. Returns the volume, the link, and the first range it asks for.
async fn as_sync_source(
    node: &Node,
) -> (
    Volume,
    MessageReader<OwnedReadHalf>,
    MessageWriter<OwnedWriteHalf>,
    (u64, u64),
) {
    std::fs::write(node.backing(), vec![7u8; SIZE as usize]).unwrap();
    let target = node.start().await;
    let (read, write) = dial(node).await.into_split();
    let (mut reader, mut writer) = (MessageReader::new(read), MessageWriter::new(write));
    let Some(Message::Hello(theirs)) = reader.next().await.unwrap() else {
        panic!("the volume's Hello expected first");
    };
    let ours = Hello {
        node: "fake".to_owned(),
        role: peer::Role::Secondary,
        disk: DiskState::UpToDate,
        was_primary: false,
        discard_my_data: false,
        ..theirs.clone()
    };
    writer.send(&Message::Hello(ours.clone())).await.unwrap();
    loop {
        match reader.next().await.unwrap() {
            Some(Message::Bitmap { offset, last, bits }) => {
                writer
                    .send(&Message::Bitmap { offset, last, bits })
                    .await
                    .unwrap();
                if last {
                    // The sync id, in a second Hello (DRBD's P_SYNC_UUID).
                    let mut sync = ours.clone();
                    sync.generations.bitmap = 0x5eed_0000_0000_0002;
                    writer.send(&Message::Hello(sync)).await.unwrap();
                }
            }
            Some(Message::ResyncRequest { offset, len }) => {
                return (target, reader, writer, (offset, len.into()));
            }
            Some(Message::Ping) => writer.send(&Message::PingAck).await.unwrap(),
            Some(_) => {}
            None => panic!("the connection ended before a resync request"),
        }
    }
}

/// Answers `volume`'s Hello as a secondary with the same generations and an Inconsistent
/// disk, and its bitmap with a clean one, so that `volume` becomes our SyncSource.
async fn sync_target<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<OwnedWriteHalf>,
    volume: &Volume,
) {
    answer_hello(
        reader,
        writer,
        peer::Role::Secondary,
        DiskState::Inconsistent,
    )
    .await;
    loop {
        let Some(Message::Bitmap { offset, last, bits }) = reader.next().await.unwrap() else {
            panic!("the volume's bitmap expected after the Hellos");
        };
        let clean = Bytes::from(vec![0u8; bits.len()]);
        let ours = Message::Bitmap {
            offset,
            last,
            bits: clean,
        };
        writer.send(&ours).await.unwrap();
        if last {
            break;
        }
    }
    wait_for(volume, "SyncSource", |s| {
        s.connection == ConnState::SyncSource
    })
    .await;
}

/// Dials `node`, authenticates, and asks `node.config`'s volume `source` for its whole copy
/// `count` times at once, reading nothing.
async fn flood(
    node: &Node,
    source: &Volume,
    count: u32,
) -> (OwnedReadHalf, MessageWriter<OwnedWriteHalf>) {
    let (mut read, write) = dial(node).await.into_split();
    let mut writer = MessageWriter::new(write);
    sync_target(&mut MessageReader::new(&mut read), &mut writer, source).await;
    let whole = u32::try_from(SIZE).unwrap();
    for _ in 0..count {
        let request = Message::ResyncRequest {
            offset: 0,
            len: whole,
        };
        writer.feed(&request).unwrap();
    }
    writer.flush().await.unwrap();
    (read, writer)
}

// Input: a secondary that becomes SyncSource for this test (whose Hello says its disk is
// Inconsistent), then 256 requests for the volume's whole 1 MiB, sent at once, with nothing
// read for 2 s. Output: the node stops reading once about 32 MiB of answers wait for the
// socket, so it has served far less than the 256 MiB asked (without the limit it read every
// request and queued all the answers in memory); once the test reads, it serves every request
// on the same connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_target_that_asks_and_never_reads_is_held_back() {
    const REQUESTS: u32 = 256;
    let (_, mut node) = pair(SIZE, Protocol::C, Role::Primary);
    // Its ping, unanswered while it reads nothing, must not end the link before we read.
    node.config.timeout = Duration::from_secs(10);
    let source = node.start().await;
    let (read, mut writer) = flood(&node, &source, REQUESTS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let served = source.status().counters.resynced_bytes;
    assert!(
        served < 96 * SIZE,
        "{} MiB served to a peer that reads nothing",
        served / SIZE
    );

    // `flood`'s reader stopped at the last Bitmap frame. The Hello with the sync id, sent
    // after ours, and all that follows are still in the socket.
    let mut reader = MessageReader::new(read);
    let mut answers = 0;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while answers < REQUESTS {
            match reader.next().await.unwrap() {
                Some(Message::ResyncData { data, .. }) => {
                    assert_eq!(data.len(), SIZE as usize);
                    answers += 1;
                }
                Some(Message::Ping) => writer.send(&Message::PingAck).await.unwrap(),
                Some(_) => {}
                None => panic!("the connection ended after {answers} answers"),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "{answers} of {REQUESTS} answers came");
    assert_eq!(source.status().connection, ConnState::SyncSource);
}

// Input: a 128 GiB secondary (a 4 MiB bitmap) with a 1 s timeout, so a 5 s handshake limit,
// and a peer, this test, Inconsistent, that sends its bitmap in 32 KiB pieces, one every
// 50 ms: about 6.4 s in all, never silent. Output: the handshake completes and the volume
// becomes SyncSource. (A fixed limit on the whole handshake dropped the link, and a large
// volume over a slow link could never connect.)
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_but_steady_bitmap_exchange_is_not_cut_short() {
    const PIECE: usize = 32 << 10;
    let (_, mut node) = pair(128 << 30, Protocol::C, Role::Secondary);
    node.config.timeout = Duration::from_secs(1);
    let source = node.start().await;
    let (read, write) = dial(&node).await.into_split();
    let (mut reader, mut writer) = (MessageReader::new(read), MessageWriter::new(write));
    answer_hello(
        &mut reader,
        &mut writer,
        peer::Role::Secondary,
        DiskState::Inconsistent,
    )
    .await;
    let mut len = 0;
    loop {
        let Some(Message::Bitmap { last, bits, .. }) = reader.next().await.unwrap() else {
            panic!("the volume's bitmap expected after the Hellos");
        };
        len += bits.len();
        if last {
            break;
        }
    }
    let pieces = len.div_ceil(PIECE);
    assert!(pieces >= 128, "a bitmap of {len} bytes");
    for i in 0..pieces {
        let piece = Message::Bitmap {
            offset: (i * PIECE) as u64,
            last: i + 1 == pieces,
            bits: Bytes::from(vec![0u8; PIECE.min(len - i * PIECE)]),
        };
        writer.send(&piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(&source, "SyncSource", |s| {
        s.connection == ConnState::SyncSource
    })
    .await;
    source.stop().await;
}

// Input: a 512 GiB secondary (a 16 MiB bitmap, so the handshake may last 5 + 16 s in all) with
// a 1 s timeout, and a peer, this test, that reads its Hello and then says nothing with the
// link open. Output: the volume drops the link once nothing has crossed it for 5 s, well
// before that bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_silent_in_the_handshake_is_dropped() {
    let (_, mut node) = pair(512 << 30, Protocol::C, Role::Secondary);
    node.config.timeout = Duration::from_secs(1);
    let volume = node.start().await;
    let (read, _write) = dial(&node).await.into_split();
    let mut reader = MessageReader::new(read);
    let Some(Message::Hello(_)) = reader.next().await.unwrap() else {
        panic!("the volume's Hello expected first");
    };
    let dropped = tokio::time::timeout(Duration::from_secs(15), reader.next()).await;
    assert!(
        matches!(dropped, Ok(Ok(None) | Err(_))),
        "the link is still open: {dropped:?}"
    );
    volume.stop().await;
}
