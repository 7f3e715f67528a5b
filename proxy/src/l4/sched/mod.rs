//! The L4 tier's connection schedulers: the Linux kernel's IPVS `rr`, `wrr`, `lc`, `wlc`, `sed`,
//! `nq`, `lblc`, `lblcr`, `dh`, `sh` and `mh` (net/netfilter/ipvs/ip_vs_*.c), decision for decision.
//!
//! A [`Scheduler`] sees the real servers as a slice of [`Dest`] in the order of the kernel's
//! `svc->destinations` list, and answers with an index into that slice. It owns only what the
//! kernel keeps in `svc->sched_data` (round-robin cursors, hash tables, locality caches); the
//! connection counters and the overload flag are the caller's, passed in on every decision.
//!
//! Concurrency: [`Scheduler::schedule`] takes `&mut self`, because `rr`, `wrr`, `lblc` and `lblcr`
//! change state on every decision (the kernel takes `svc->sched_lock` for it). The caller wraps
//! each virtual service's scheduler: a `Mutex` per service is the simple choice; per-worker copies
//! also work, at the price of per-worker round-robin order and locality caches (`dh`, `sh`, `mh`
//! and the least-connection family answer the same from any copy). Nothing in here locks, does
//! I/O, or allocates per decision, except the cache entries `lblc`/`lblcr` add as the kernel does.
//!
//! Arithmetic follows the kernel for every value the kernel accepts (weights up to `i32::MAX`,
//! counters whose overhead fits an `int`); past that it widens instead of wrapping, and no input
//! makes it panic or loop without bound.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

mod hashing;
mod leastconn;
mod locality;
mod maglev;
mod roundrobin;

/// A scheduler name as `ipvsadm -s` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Round robin over servers with weight > 0 (`ip_vs_rr.c`).
    Rr,
    /// Weighted round robin, stepping the current weight down by the weights' gcd (`ip_vs_wrr.c`).
    Wrr,
    /// Least connections: fewest `active * 256 + inactive` (`ip_vs_lc.c`).
    Lc,
    /// Weighted least connections: fewest `(active * 256 + inactive) / weight` (`ip_vs_wlc.c`).
    Wlc,
    /// Locality-based least connections: one server per destination address (`ip_vs_lblc.c`).
    Lblc,
    /// Locality-based least connections with replication: a server set per destination
    /// address (`ip_vs_lblcr.c`).
    Lblcr,
    /// Destination hashing: a 256-bucket table keyed by the destination address (`ip_vs_dh.c`).
    Dh,
    /// Source hashing: a 256-bucket table keyed by the client address, filled by weight
    /// (`ip_vs_sh.c`).
    Sh,
    /// Shortest expected delay: fewest `(active + 1) / weight` (`ip_vs_sed.c`).
    Sed,
    /// Never queue: an idle server if there is one, else as `sed` (`ip_vs_nq.c`).
    Nq,
    /// Maglev hashing keyed by the client address (`ip_vs_mh.c`).
    Mh,
}

impl Kind {
    /// Every scheduler, in the order parse errors list them.
    pub const ALL: [Self; 11] = [
        Self::Rr,
        Self::Wrr,
        Self::Lc,
        Self::Wlc,
        Self::Lblc,
        Self::Lblcr,
        Self::Dh,
        Self::Sh,
        Self::Sed,
        Self::Nq,
        Self::Mh,
    ];

    /// The name `ipvsadm -s` and the kernel module use.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Dh => "dh",
            Self::Sh => "sh",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Mh => "mh",
        }
    }
}

/// The accepted spellings, listed in parse errors.
const ALLOWED: &str = "rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh";

impl FromStr for Kind {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| SchedError::UnknownKind {
                name: text.to_owned(),
            })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Maglev lookup table size when none is given. The kernel compiles in 4093
/// (`CONFIG_IP_VS_MH_TAB_INDEX=12`); 65537 is the Maglev paper's size, which keeps the spread
/// within about 1% for a few hundred servers.
pub const MH_TABLE_SIZE_DEFAULT: u32 = 65_537;

/// The largest Maglev table accepted: bounds a table's memory (4 MiB) and its rebuild time.
pub const MH_TABLE_SIZE_MAX: u32 = 1 << 20;

/// How long an idle `lblc`/`lblcr` entry is kept, as the kernel's `lblc_expiration` and
/// `lblcr_expiration` sysctls default to (`DEFAULT_EXPIRATION`, 24 hours).
pub const LOCALITY_EXPIRATION_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// Options some schedulers take (ipvsadm -b flags): sh/mh fallback and port hashing, mh table
/// size; and the lblc/lblcr expiration sysctl. Schedulers ignore the options that are not theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `sh-fallback` / `mh-fallback`: when the hashed server has weight 0 or is overloaded, try
    /// further table positions instead of answering "no destination available".
    pub fallback: bool,
    /// `sh-port` / `mh-port`: hash the client's source port along with its address.
    pub port: bool,
    /// `mh` lookup table size: a prime from 2 to [`MH_TABLE_SIZE_MAX`]; the kernel's choices are
    /// 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521 and 131071.
    pub mh_table_size: u32,
    /// `lblc`/`lblcr`: an entry idle this long is dropped at the next full sweep (every 30
    /// minutes); `lblcr` also sheds a server from a set unchanged for this long.
    pub locality_expiration: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fallback: false,
            port: false,
            mh_table_size: MH_TABLE_SIZE_DEFAULT,
            locality_expiration: LOCALITY_EXPIRATION_DEFAULT,
        }
    }
}

/// A real server as the scheduler sees it at one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// The server's address and port: its identity. `mh` hashes it into the server's
    /// permutation, as the kernel does, and `lblc`/`lblcr` remember servers by it, so it must
    /// stay the same while the server is in the service.
    pub addr: SocketAddr,
    /// The configured weight; 0 quiesces the server (no new connections).
    pub weight: u32,
    /// Connections in ESTABLISHED (the kernel's `activeconns`).
    pub active: u32,
    /// Other connections (the kernel's `inactconns`).
    pub inactive: u32,
    /// The kernel's `IP_VS_DEST_F_OVERLOAD`, e.g. the server is above its upper threshold.
    pub overloaded: bool,
}

impl Dest {
    /// An idle server with the given weight.
    pub const fn new(addr: SocketAddr, weight: u32) -> Self {
        Self {
            addr,
            weight,
            active: 0,
            inactive: 0,
            overloaded: false,
        }
    }
}

/// What a decision may hash on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The client's address and source port (`sh`, `mh`).
    pub client: SocketAddr,
    /// The address the client connected to (`dh`, `lblc`, `lblcr`).
    pub destination: SocketAddr,
}

/// Why a scheduler could not be built or named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// Not one of the kernel's scheduler names.
    #[error("unknown scheduler `{name}`; expected one of: {ALLOWED}")]
    UnknownKind {
        /// The name as given, trimmed.
        name: String,
    },
    /// The Maglev table size is not a prime in range.
    #[error(
        "mh table size {size} must be a prime from 2 to {MH_TABLE_SIZE_MAX}, e.g. 4093 or 65537"
    )]
    MhTableSize {
        /// The size as given.
        size: u32,
    },
}

/// One virtual service's scheduler: its kind, its options and the state the kernel keeps in
/// `svc->sched_data`.
///
/// Indices are positions in the `dests` slice. Call [`Scheduler::update`] whenever servers are
/// added, removed, reordered or reweighted, as IPVS calls `add_dest`/`del_dest`/`upd_dest`;
/// [`Scheduler::schedule`] rebuilds by itself if the slice's length changed, but cannot notice a
/// same-length change. A stale table still never yields an index out of range or a server with
/// weight 0.
#[derive(Debug)]
pub struct Scheduler {
    kind: Kind,
    options: Options,
    /// The servers' addresses at the last update, to carry state across updates.
    addrs: Vec<SocketAddr>,
    state: State,
}

/// Per-kind state; the least-connection family keeps none.
#[derive(Debug)]
enum State {
    Rr(roundrobin::Rr),
    Wrr(roundrobin::Wrr),
    Lc,
    Wlc,
    Sed,
    Nq,
    Lblc(locality::Lblc),
    Lblcr(locality::Lblcr),
    Dh(hashing::Dh),
    Sh(hashing::Sh),
    Mh(maglev::Mh),
}

impl Scheduler {
    /// A scheduler with no servers yet. Fails only for `mh` with a table size that is not a prime
    /// in range.
    pub fn new(kind: Kind, options: Options) -> Result<Self, SchedError> {
        let state = match kind {
            Kind::Rr => State::Rr(roundrobin::Rr::default()),
            Kind::Wrr => State::Wrr(roundrobin::Wrr::default()),
            Kind::Lc => State::Lc,
            Kind::Wlc => State::Wlc,
            Kind::Sed => State::Sed,
            Kind::Nq => State::Nq,
            Kind::Lblc => State::Lblc(locality::Lblc::new(options.locality_expiration)),
            Kind::Lblcr => State::Lblcr(locality::Lblcr::new(options.locality_expiration)),
            Kind::Dh => State::Dh(hashing::Dh::default()),
            Kind::Sh => State::Sh(hashing::Sh::default()),
            Kind::Mh => {
                let size = options.mh_table_size;
                if !(2..=MH_TABLE_SIZE_MAX).contains(&size) || !is_prime(size) {
                    return Err(SchedError::MhTableSize { size });
                }
                State::Mh(maglev::Mh::new(size))
            }
        };
        Ok(Self {
            kind,
            options,
            addrs: Vec::new(),
            state,
        })
    }

    /// Takes over from `previous`, a scheduler of the same service that new options replace,
    /// what the kernel keeps in its servers rather than in the scheduler: `mh`'s latest
    /// non-zero weights (`dest->last_weight`), so a quiesced server keeps its slots across the
    /// change. Everything else starts afresh, as `ipvsadm -E` with a new scheduler does.
    pub fn carry_over(&mut self, previous: &Scheduler) {
        if let (State::Mh(mh), State::Mh(before)) = (&mut self.state, &previous.state) {
            mh.carry_over(before);
            self.addrs.clone_from(&previous.addrs);
        }
    }

    /// The scheduler's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The options it was built with.
    pub fn options(&self) -> Options {
        self.options
    }

    /// Called when the set of destinations or their weights change (IPVS's update_service):
    /// rebuilds tables (dh/sh buckets, mh lookup table, wrr state) and carries cursors and caches
    /// over by server address.
    pub fn update(&mut self, dests: &[Dest]) {
        let old = std::mem::replace(&mut self.addrs, dests.iter().map(|d| d.addr).collect());
        match &mut self.state {
            State::Rr(rr) => rr.update(&old, &self.addrs),
            State::Wrr(wrr) => wrr.update(dests),
            State::Lblcr(lblcr) => lblcr.update(&self.addrs),
            State::Dh(dh) => dh.update(dests),
            State::Sh(sh) => sh.update(dests),
            State::Mh(mh) => mh.update(&old, dests),
            // lblc keeps entries for removed servers, as the kernel does: they fail the
            // availability check and are replaced on their next use.
            State::Lc | State::Wlc | State::Sed | State::Nq | State::Lblc(_) => {}
        }
    }

    /// Picks a destination index for a new connection, or None (IPVS's "no destination
    /// available"). `now` is any monotonic clock; only `lblc`/`lblcr` read it, for entry expiry.
    pub fn schedule(&mut self, dests: &[Dest], packet: &Packet, now: Duration) -> Option<usize> {
        if dests.len() != self.addrs.len() {
            self.update(dests);
        }
        let options = &self.options;
        match &mut self.state {
            State::Rr(rr) => rr.schedule(dests),
            State::Wrr(wrr) => wrr.schedule(dests),
            State::Lc => leastconn::lc(dests),
            State::Wlc => leastconn::wlc(dests),
            State::Sed => leastconn::sed(dests),
            State::Nq => leastconn::nq(dests),
            State::Lblc(lblc) => lblc.schedule(dests, packet.destination.ip(), now),
            State::Lblcr(lblcr) => lblcr.schedule(dests, packet.destination.ip(), now),
            State::Dh(dh) => dh.schedule(dests, packet.destination.ip()),
            State::Sh(sh) => sh.schedule(dests, packet.client, options),
            State::Mh(mh) => mh.schedule(dests, packet.client, options),
        }
    }
}

/// The kernel's `ip_vs_dest_conn_overhead()`: an active connection costs 256 inactive ones.
fn conn_overhead(dest: &Dest) -> u64 {
    (u64::from(dest.active) << 8) + u64::from(dest.inactive)
}

/// Whether `dest` may take a new connection at all, as the hashing schedulers' `is_unavailable()`
/// tests it (a server still in the list is always `IP_VS_DEST_F_AVAILABLE`).
fn is_available(dest: &Dest) -> bool {
    dest.weight > 0 && !dest.overloaded
}

/// The kernel's `hash_32()` (include/linux/hash.h, since 4.7): multiply by `GOLDEN_RATIO_32`
/// and keep the top `bits` bits.
fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647)
        .checked_shr(32 - bits.min(32))
        .unwrap_or(0)
}

/// An address as the IPVS hashes read it: IPv4 in host order, IPv6 folded by XOR of its four
/// 32-bit words (`addr->ip6[0] ^ ... ^ addr->ip6[3]`, then `ntohl`).
fn addr_fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let words = v6.octets();
            words
                .chunks_exact(4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .fold(0, |acc, w| acc ^ w)
        }
    }
}

/// Trial division; table sizes are at most 2^20, so at most 1024 divisions, once per build.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    (2..)
        .take_while(|d: &u32| d.saturating_mul(*d) <= n)
        .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests;
