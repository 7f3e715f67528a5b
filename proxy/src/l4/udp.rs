//! UDP virtual services: datagrams from one client address form a flow, scheduled once to a real
//! server; the flow's replies go back to the client from the virtual address, and a flow silent
//! both ways for `timeout.idle` ends (IPVS's UDP timeout, 300 s by default there).
//!
//! Each flow has its own socket connected to its real server, so the kernel sorts replies by
//! flow and drops datagrams from anyone else. A flow holds a slot of `[global] max_connections`,
//! as a TCP connection does, since its socket is a file descriptor: a datagram that would open
//! a flow past the limit is dropped and counted. A waiting flow holds no buffer; replies are
//! read into one buffer per thread. With `proxy_protocol = "v2"` every datagram to the
//! real server starts with a PROXY v2 `DGRAM` header, as HAProxy's spec has it for UDP.

use std::{
    cell::RefCell,
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use fulcrum_common::net::{Sharing, bind_freebind};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{
    proxy_protocol,
    service::{ConnEntry, Pick, Real, Service},
};
use crate::{
    config::ProxyProtocol,
    net::canonical,
    runtime::{ConnPermit, Runtime},
    state::counters::{self, Total},
};

/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// One client's flow.
#[derive(Debug)]
struct Flow {
    upstream: UdpSocket,
    pick: Pick,
    /// Milliseconds since the service socket's start at the last datagram either way.
    last: AtomicU64,
    /// Cancelled when sending to the real server fails: the flow ends.
    ended: CancellationToken,
    /// The flow's slots of the process's connection limit and of the UDP flows' share of it.
    _permits: (ConnPermit, ConnPermit),
}

/// Binds a UDP virtual address with IP_FREEBIND, so a VIP this node does not hold yet works,
/// and SO_REUSEPORT, so a reload can bind it while the service it replaces still does.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = bind_freebind(addr, socket2::Type::DGRAM, Sharing::ReusePort)?;
    UdpSocket::from_std(socket.into())
}

/// What a virtual address's receive loop shares with the tasks of its flows.
#[derive(Debug)]
struct Endpoint {
    rt: Arc<Runtime>,
    service: Arc<Service>,
    socket: UdpSocket,
    /// The virtual address, as bound.
    local: SocketAddr,
    flows: DashMap<SocketAddr, Arc<Flow>>,
    /// The clock of the flows' `last` stamps.
    epoch: Instant,
    /// Set while new flows are refused at the connection limit, so that a flood of them logs
    /// once, not once per datagram.
    refusing: AtomicBool,
    stop: CancellationToken,
}

/// Relays datagrams arriving on `socket` until `stop` is cancelled, which also ends the flows.
pub(crate) async fn serve(
    rt: Arc<Runtime>,
    service: Arc<Service>,
    socket: UdpSocket,
    stop: CancellationToken,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let endpoint = Arc::new(Endpoint {
        rt,
        service,
        socket,
        local,
        flows: DashMap::new(),
        epoch: Instant::now(),
        refusing: AtomicBool::new(false),
        stop,
    });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut datagram = Vec::with_capacity(MAX_DATAGRAM + 64);
    loop {
        let (n, client) = tokio::select! {
            received = endpoint.socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                Err(error) => {
                    // An ICMP error for an earlier reply surfaces here on Linux; nothing to do.
                    tracing::debug!(virtual_server = %endpoint.service.name, %error, "udp receive failed");
                    continue;
                }
            },
            () = endpoint.stop.cancelled() => return,
        };
        // Marked busy while the map's entry is held: the flow's task removes an idle flow only
        // under the same lock, so it either sees this datagram or is gone before the lookup.
        let existing = endpoint.flows.get(&client).map(|f| {
            f.last.store(millis_since(endpoint.epoch), Relaxed);
            Arc::clone(&f)
        });
        let flow = match existing {
            Some(flow) => flow,
            // A new flow starts busy.
            None => match open_flow(&endpoint, client).await {
                Some(flow) => flow,
                None => continue,
            },
        };
        let payload = if endpoint.service.config().proxy_protocol == ProxyProtocol::V2 {
            datagram.clear();
            proxy_protocol::encode_v2_udp(canonical(client), canonical(local), &mut datagram);
            datagram.extend_from_slice(&buf[..n]);
            &datagram[..]
        } else {
            &buf[..n]
        };
        let (total, n) = match flow.upstream.send(payload).await {
            Ok(_) => (Total::BytesIn, n as u64),
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                // ECONNREFUSED from an earlier datagram's ICMP error surfaces on whichever of
                // send and receive comes first: the flow ends here as it would there, and the
                // client's next datagram is scheduled afresh.
                flow.ended.cancel();
                (Total::ConnectErrors, 1)
            }
            Err(error) => {
                // This datagram's own trouble (too large once a PROXY header is added: EMSGSIZE;
                // no buffer: ENOBUFS), not the server's: it alone is dropped.
                tracing::debug!(virtual_server = %endpoint.service.name, %client, %error, "udp datagram dropped");
                continue;
            }
        };
        endpoint.service.count(&flow.pick.real, total, n);
    }
}

/// Schedules a new client and starts the task that carries its replies; `None` drops the
/// client's datagram.
async fn open_flow(endpoint: &Arc<Endpoint>, client: SocketAddr) -> Option<Arc<Flow>> {
    let service = &endpoint.service;
    let permits = endpoint.rt.udp_flows.try_acquire().and_then(|share| {
        let slot = endpoint.rt.limit.try_acquire()?;
        Some((share, slot))
    });
    let Some(permits) = permits else {
        counters::inc(&service.flows_refused);
        if !endpoint.refusing.swap(true, Relaxed) {
            tracing::warn!(virtual_server = %service.name, %client, "udp flow refused: the UDP flows' share of max_connections (half) is taken, or max_connections itself; datagrams for new flows are dropped until flows end");
        }
        return None;
    };
    endpoint.refusing.store(false, Relaxed);
    // Flows are keyed and answered by the address as received; scheduling and the transparent
    // bind use the client's own (IPv4, not IPv4-mapped).
    let source = canonical(client);
    let pick = service.pick(source, canonical(endpoint.local))?;
    let epoch = pick.real.server.sessions_epoch();
    let config = service.config();
    let upstream = match connect(pick.real.addr(), config.transparent.then_some(source.ip())).await
    {
        Ok(s) => s,
        Err(error) => {
            service.count(&pick.real, Total::ConnectErrors, 1);
            tracing::debug!(virtual_server = %service.name, real_server = %pick.real.addr(), %error, "cannot open udp flow");
            service.release(&pick);
            return None;
        }
    };
    let flow = Arc::new(Flow {
        upstream,
        pick,
        last: AtomicU64::new(millis_since(endpoint.epoch)),
        ended: CancellationToken::new(),
        _permits: permits,
    });
    endpoint.flows.insert(client, Arc::clone(&flow));
    service.session_opened(&flow.pick.real);
    let (endpoint, flow2) = (Arc::clone(endpoint), Arc::clone(&flow));
    endpoint.rt.connections.clone().spawn(async move {
        let service = &endpoint.service;
        let entry = service.track(ConnEntry {
            client: source,
            virtual_addr: endpoint.local,
            real: flow2.pick.real.addr(),
            established: true,
            since: Instant::now(),
        });
        // A stopped service ends its flows at once, unlike TCP connections: a datagram flow has
        // no end of its own, and its socket must free the address for a reload or a restart.
        // So does an operator's `shutdown sessions`; the client's next datagram is scheduled
        // afresh.
        // Without quiescence a DOWN server loses its flows at once, as its TCP connections are
        // reset (IPVS's expire_nodest_conn): a client that keeps sending would otherwise stay
        // on it for ever, each datagram renewing the idle timeout.
        // Likewise a server a reload removed: IPVS forwards nothing more to a deleted dest,
        // and this flow's next datagram is scheduled among the servers there are now.
        let down = super::tcp::until_taken_out(service, &flow2.pick.real);
        tokio::pin!(down);
        loop {
            let idle = tokio::select! {
                end = replies(service, &endpoint.socket, &flow2, client, endpoint.epoch) => {
                    end == RepliesEnd::Idle
                }
                () = endpoint.stop.cancelled() => false,
                () = flow2.pick.real.server.sessions_shut(epoch) => false,
                () = flow2.ended.cancelled() => false,
                () = &mut down => false,
                () = until_removed(service, &flow2.pick.real) => false,
            };
            if !idle {
                endpoint.flows.remove(&client);
                break;
            }
            // Idle: removed only if still idle under the map's lock. A datagram that found the
            // flow meanwhile keeps it, and its reply still comes back through it.
            let still_idle = |_: &SocketAddr, f: &Arc<Flow>| {
                Arc::ptr_eq(f, &flow2) && Instant::now() >= idle_at(service, f, endpoint.epoch)
            };
            if endpoint.flows.remove_if(&client, still_idle).is_some() {
                break;
            }
        }
        drop(entry);
        service.session_closed(&flow2.pick.real);
        service.release(&flow2.pick);
    });
    Some(flow)
}

/// Resolves once a reload has left `real` out of `service`'s real servers and fallback.
async fn until_removed(service: &Service, real: &Arc<Real>) {
    loop {
        let reconfigured = service.reconfigured.notified();
        tokio::pin!(reconfigured);
        reconfigured.as_mut().enable();
        let members = service.members();
        if !members
            .find(real.addr())
            .is_some_and(|r| Arc::ptr_eq(r, real))
        {
            return;
        }
        reconfigured.await;
    }
}

/// Why a flow's replies stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepliesEnd {
    /// Nothing either way for `timeout.idle`.
    Idle,
    /// The real server's port refused (ECONNREFUSED): the flow ends.
    Refused,
}

/// When `flow` goes idle: `timeout.idle` (5 minutes when `"0s"`) after its last datagram
/// either way.
fn idle_at(service: &Service, flow: &Flow, epoch: Instant) -> Instant {
    let idle = match service.config().timeout_idle {
        d if d.is_zero() => Duration::from_secs(300),
        d => d,
    };
    epoch + Duration::from_millis(flow.last.load(Relaxed)) + idle
}

/// Sends the real server's replies to `client` until the flow is idle for `timeout.idle`.
async fn replies(
    service: &Service,
    socket: &UdpSocket,
    flow: &Flow,
    client: SocketAddr,
    epoch: Instant,
) -> RepliesEnd {
    loop {
        let deadline = idle_at(service, flow, epoch);
        if Instant::now() >= deadline {
            return RepliesEnd::Idle;
        }
        let received = tokio::select! {
            ready = flow.upstream.readable() => ready.and_then(|()| receive(&flow.upstream)),
            () = tokio::time::sleep_until(deadline.into()) => continue,
        };
        match received {
            Ok(reply) => {
                flow.last.store(millis_since(epoch), Relaxed);
                if socket.send_to(&reply, client).await.is_ok() {
                    service.count(&flow.pick.real, Total::BytesOut, reply.len() as u64);
                }
            }
            // Readiness that was not (another reader took it, or a spurious wake-up).
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            // ECONNREFUSED: nothing listens on the real server's port. The flow ends; the
            // client's next datagram is scheduled afresh.
            Err(_) => {
                service.count(&flow.pick.real, Total::ResponseErrors, 1);
                return RepliesEnd::Refused;
            }
        }
    }
}

/// One datagram waiting on `socket`, read into this thread's buffer and copied out at its
/// size, so that the flows waiting for replies hold no 64 KiB buffer each.
fn receive(socket: &UdpSocket) -> io::Result<Vec<u8>> {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
    }
    BUF.with_borrow_mut(|buf| socket.try_recv(buf).map(|n| buf[..n].to_vec()))
}

/// A socket connected to `real`, from the client's address in transparent mode.
async fn connect(real: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let socket = match source {
        Some(source) => UdpSocket::from_std(
            crate::net::bind_transparent(real, source, socket2::Type::DGRAM)?.into(),
        )?,
        None if real.is_ipv4() => UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).await?,
        None => UdpSocket::bind(SocketAddr::from(([0u16; 8], 0))).await?,
    };
    socket.connect(real).await?;
    Ok(socket)
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}
