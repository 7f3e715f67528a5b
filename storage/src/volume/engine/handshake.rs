//! After authentication: the Hello exchange, the decision (see [`super::decide`]), and for a
//! resync the bitmap exchange and the sync id, so that the session starts knowing its plan.
//!
//! ```text
//!   both:    Hello ──►  ◄── Hello          (refusals: Disconnect, then StandAlone or retry)
//!   sync or split brain:
//!   both:    Bitmap* ──►  ◄── Bitmap*      (sent and received concurrently; merged on a plan)
//!   source:  Hello (ids with the sync id) ──►   target adopts it and goes Inconsistent
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::decide::{self, First, Intent, Plan, Refusal};
use super::inner::{Inner, from_wire_disk, to_wire_disk, to_wire_protocol, to_wire_role};
use super::session::{Reader, Writer};
use super::status::VolumeEvent;
use crate::volume::config::{BLOCK_SIZE, Role};
use crate::volume::meta::{self, Bitmap, GenerationIds, Side};
use crate::volume::peer::{
    self, DisconnectReason, Generations, Hello, MAX_DATA, Message, WireError,
};

/// A handshake that reached a plan.
#[derive(Debug)]
pub(crate) struct Established {
    /// `NoSync`, `Source` or `Target`.
    pub(crate) plan: Plan,
    pub(crate) peer: Hello,
    /// SyncTarget: the ids the source will hold once the resync finishes, adopted then.
    pub(crate) source_ids: Option<GenerationIds>,
}

/// Why a handshake did not reach a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The nodes must not connect until an operator acts.
    StandAlone,
    /// Try again later (link trouble, or a mismatch an operator may fix in the config).
    Retry,
}

impl From<WireError> for Failure {
    fn from(_: WireError) -> Self {
        Failure::Retry
    }
}

impl From<super::error::VolumeError> for Failure {
    fn from(_: super::error::VolumeError) -> Self {
        Failure::Retry
    }
}

/// The slowest bitmap exchange [`run`] waits for, in bytes per second: a peer that sends its
/// bitmap slower than this, however steadily, is dropped.
const SLOWEST_BITMAP: u64 = 1 << 20;

/// Runs the handshake; `dialer` says which end of the connection we are.
///
/// It fails when the link carries no byte either way for `4 × timeout` (at least 5 s): a peer
/// that went silent. A bitmap exchange that keeps moving may take longer (a 64 TiB volume's is
/// 2 GiB each way: about 17 s on 1 GbE), but not longer than at [`SLOWEST_BITMAP`].
pub(crate) async fn run(
    inner: &Arc<Inner>,
    reader: &mut Reader,
    writer: &mut Writer,
    dialer: bool,
    discard_my_data: bool,
) -> Result<Established, Failure> {
    let stall = (inner.config.timeout * 4).max(Duration::from_secs(5));
    let bitmap = Bitmap::encoded_len_of(inner.config.backing.size) as u64;
    let bound = stall + Duration::from_secs(bitmap.div_ceil(SLOWEST_BITMAP));
    let handshake = tokio::time::timeout(
        bound,
        exchange(inner, reader, writer, dialer, discard_my_data),
    );
    let why = tokio::select! {
        outcome = handshake => match outcome {
            Ok(result) => return result,
            Err(_) => "it took too long",
        },
        () = stalled(inner, stall) => "the link was silent",
    };
    warn!(volume = %inner.config.name, why, "handshake timed out");
    Err(Failure::Retry)
}

/// Returns once no byte has crossed the link, either way, for `stall`.
async fn stalled(inner: &Inner, stall: Duration) {
    let counters = &inner.counters;
    let crossed = || {
        counters.net_sent.load(Ordering::Relaxed) + counters.net_received.load(Ordering::Relaxed)
    };
    let mut last = crossed();
    let mut since = Instant::now();
    let mut ticks = tokio::time::interval(stall / 8);
    loop {
        ticks.tick().await;
        let now = crossed();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= stall {
            return;
        }
    }
}

async fn exchange(
    inner: &Arc<Inner>,
    reader: &mut Reader,
    writer: &mut Writer,
    dialer: bool,
    discard_my_data: bool,
) -> Result<Established, Failure> {
    let name = &inner.config.name;
    let state = inner.meta.call(|m| *m.state()).await?;
    let role = if inner.is_primary() {
        Role::Primary
    } else {
        Role::Secondary
    };
    let hello = our_hello(inner, &state, role, discard_my_data);
    writer.send(&Message::Hello(hello.clone())).await?;
    let peer = match reader.next().await? {
        Some(Message::Hello(h)) => h,
        Some(Message::Disconnect { reason, detail }) => {
            warn!(volume = %name, ?reason, %detail, "peer refused the connection");
            return Err(Failure::Retry);
        }
        other => {
            warn!(volume = %name, got = other.as_ref().map_or("EOF", Message::name), "expected Hello");
            return Err(Failure::Retry);
        }
    };
    if let Some(problem) = incompatible(inner, &peer) {
        warn!(volume = %name, peer = %peer.node, %problem, "peer refused: incompatible");
        let _ = writer
            .send(&Message::Disconnect {
                reason: DisconnectReason::Incompatible,
                detail: problem,
            })
            .await;
        return Err(Failure::Retry);
    }
    let local = Intent {
        side: Side {
            ids: state.ids,
            primary: role == Role::Primary,
            crashed_primary: state.crashed_primary,
            disk: state.disk,
        },
        discard_my_data,
    };
    let remote = Intent {
        side: Side {
            ids: ids_from_wire(peer.generations),
            primary: peer.role == peer::Role::Primary,
            crashed_primary: peer.was_primary,
            disk: from_wire_disk(peer.disk),
        },
        discard_my_data: peer.discard_my_data,
    };
    // Exactly one side resolves conflicts (DRBD's RESOLVE_CONFLICTS): the accepting one.
    let resolves = !dialer;
    let plan = match decide::first(&local, &remote, resolves) {
        First::Refuse(refusal) => return refuse(inner, writer, refusal).await,
        First::NoSync { initial } => Plan::NoSync { initial },
        First::Sync { source, full } => {
            exchange_bitmaps(inner, reader, writer, full).await?;
            if source {
                Plan::Source { full }
            } else {
                Plan::Target { full }
            }
        }
        First::SplitBrain(sb) => {
            warn!(volume = %name, peer = %peer.node, bitmap_based = sb.bitmap_based, "split brain detected");
            inner.emit(VolumeEvent::SplitBrain);
            let changes = exchange_bitmaps(inner, reader, writer, false).await?;
            let plan = decide::resolve(
                &sb,
                &local,
                &remote,
                changes,
                resolves,
                &inner.config.after_split_brain,
            );
            if let Plan::Refuse(refusal) = plan {
                return refuse(inner, writer, refusal).await;
            }
            info!(volume = %name, ?plan, "split brain resolved");
            plan
        }
    };
    let full = matches!(
        plan,
        Plan::Source { full: true } | Plan::Target { full: true }
    );
    if full {
        inner.meta.try_call(|m| m.set_all_out_of_sync()).await?;
    }
    let peer_disk = from_wire_disk(peer.disk);
    let mut source_ids = None;
    match plan {
        Plan::NoSync { initial } => {
            let id = initial.then(|| initial_id(&inner.config.name, &inner.node, &peer.node));
            inner
                .meta
                .try_call(move |m| {
                    m.update(|s| {
                        if let Some(id) = id {
                            s.ids.skip_initial_sync(id);
                            s.ids.set_role(s.primary);
                        }
                        s.crashed_primary = false;
                        s.peer_disk = Some(peer_disk);
                    })
                })
                .await?;
        }
        Plan::Source { .. } => {
            let random = GenerationIds::random_id().map_err(|_| Failure::Retry)?;
            let state = inner
                .meta
                .try_call(move |m| {
                    m.update(|s| {
                        s.ids.begin_resync_as_source(random);
                        s.crashed_primary = false;
                        s.peer_disk = Some(meta::DiskState::Inconsistent);
                    })?;
                    Ok(*m.state())
                })
                .await?;
            // The sync id goes to the target in a second Hello (DRBD's P_SYNC_UUID).
            writer
                .send(&Message::Hello(our_hello(inner, &state, role, false)))
                .await?;
        }
        Plan::Target { .. } => {
            let source = match reader.next().await? {
                Some(Message::Hello(h)) => h,
                _ => return Err(Failure::Retry),
            };
            let sync_id = source.generations.bitmap;
            let primary = role == Role::Primary;
            inner
                .meta
                .try_call(move |m| {
                    m.update(|s| {
                        s.ids.begin_resync_as_target(sync_id, primary);
                        s.disk = meta::DiskState::Inconsistent;
                        s.crashed_primary = false;
                        s.peer_disk = Some(meta::DiskState::UpToDate);
                    })
                })
                .await?;
            inner.control().disk = peer::DiskState::Inconsistent;
            let mut after = ids_from_wire(source.generations);
            after.finish_resync_as_source();
            source_ids = Some(after);
        }
        Plan::Refuse(_) => return Err(Failure::StandAlone),
    }
    Ok(Established {
        plan,
        peer,
        source_ids,
    })
}

/// Sends our bitmap (the whole of it set first when `full`) while receiving the peer's, and
/// merges the peer's into ours. Returns each side's changes (out-of-sync bytes before the merge)
/// for the split-brain policies.
async fn exchange_bitmaps(
    inner: &Arc<Inner>,
    reader: &mut Reader,
    writer: &mut Writer,
    full: bool,
) -> Result<(u64, u64), Failure> {
    let (ours, our_changes) = inner
        .meta
        .try_call(move |m| {
            if full {
                m.set_all_out_of_sync()?;
            }
            Ok((m.bitmap().to_bytes(), m.bitmap().out_of_sync_bytes()))
        })
        .await?;
    let size = inner.config.backing.size;
    let expected = Bitmap::encoded_len_of(size);
    let send = async {
        let count = ours.len().div_ceil(MAX_DATA).max(1);
        for (i, chunk) in ours.chunks(MAX_DATA).enumerate() {
            writer.feed(&Message::Bitmap {
                offset: (i * MAX_DATA) as u64,
                last: i + 1 == count,
                bits: bytes::Bytes::copy_from_slice(chunk),
            })?;
            writer.flush().await?;
        }
        Ok::<(), Failure>(())
    };
    let receive = async {
        let mut theirs = Vec::with_capacity(expected);
        loop {
            match reader.next().await? {
                Some(Message::Bitmap { offset, last, bits })
                    if offset == theirs.len() as u64 && theirs.len() + bits.len() <= expected =>
                {
                    theirs.extend_from_slice(&bits);
                    if last {
                        break;
                    }
                }
                other => {
                    warn!(volume = %inner.config.name, got = other.as_ref().map_or("EOF", Message::name), "bad bitmap exchange");
                    return Err(Failure::Retry);
                }
            }
        }
        Ok(theirs)
    };
    let (sent, theirs) = tokio::join!(send, receive);
    sent?;
    let theirs = theirs?;
    let their_changes = Bitmap::from_bytes(size, &theirs)
        .map_err(|_| Failure::Retry)?
        .out_of_sync_bytes();
    inner
        .meta
        .try_call(move |m| m.merge_peer_bitmap(&theirs))
        .await?;
    Ok((our_changes, their_changes))
}

async fn refuse(
    inner: &Inner,
    writer: &mut Writer,
    refusal: Refusal,
) -> Result<Established, Failure> {
    warn!(volume = %inner.config.name, ?refusal, "connection refused, going StandAlone");
    let reason = match refusal {
        Refusal::SplitBrain | Refusal::BothDiscard => DisconnectReason::SplitBrain,
        _ => DisconnectReason::Incompatible,
    };
    let _ = writer
        .send(&Message::Disconnect {
            reason,
            detail: format!("{refusal:?}"),
        })
        .await;
    Err(Failure::StandAlone)
}

fn our_hello(inner: &Inner, state: &meta::State, role: Role, discard_my_data: bool) -> Hello {
    let ids = state.ids;
    Hello {
        volume: inner.config.name.clone(),
        node: inner.node.clone(),
        size: inner.config.backing.size,
        block_size: BLOCK_SIZE as u32,
        protocol: to_wire_protocol(inner.config.protocol),
        role: to_wire_role(role),
        disk: to_wire_disk(state.disk),
        generations: Generations {
            current: ids.current,
            bitmap: ids.bitmap,
            history: ids.history,
        },
        was_primary: state.crashed_primary,
        discard_my_data,
    }
}

/// Why the peer's Hello cannot go with ours, if it cannot.
fn incompatible(inner: &Inner, peer: &Hello) -> Option<String> {
    let config = &inner.config;
    if peer.volume != config.name {
        return Some(format!(
            "volume {:?}, we are {:?}",
            peer.volume, config.name
        ));
    }
    if peer.node == inner.node {
        return Some(format!(
            "the peer has our node name {:?} (connected to ourselves?)",
            peer.node
        ));
    }
    if peer.size != config.backing.size {
        return Some(format!(
            "size {} bytes, ours is {}",
            peer.size, config.backing.size
        ));
    }
    if u64::from(peer.block_size) != BLOCK_SIZE {
        return Some(format!("block size {}", peer.block_size));
    }
    if peer.protocol != to_wire_protocol(config.protocol) {
        return Some(format!(
            "protocol {:?}, ours is {:?}",
            peer.protocol, config.protocol
        ));
    }
    None
}

fn ids_from_wire(g: Generations) -> GenerationIds {
    GenerationIds {
        current: g.current,
        bitmap: g.bitmap,
        history: g.history,
    }
}

/// The generation a brand-new pair adopts on its first connect: the same on both nodes without
/// another message (both hash the same names), and never a special value.
fn initial_id(volume: &str, a: &str, b: &str) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in ["fulcrum initial generation", volume, lo, hi] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let id = u64::from_le_bytes(first) & !1;
    // 0 and 4 mean "none" and "just created"; the odds are 2^-62, the fix is cheap.
    if id == 0 || id == meta::generation::JUST_CREATED {
        0x5eed_0000_0000_0000
    } else {
        id
    }
}
