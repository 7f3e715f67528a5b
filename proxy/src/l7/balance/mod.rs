//! Backend load-balancing algorithms, as HAProxy's `balance` keyword: picks one server out of the
//! candidates that are eligible for a request. Pure and lock-free; all state is interior atomics.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::AtomicUsize;

use http::HeaderName;

mod first;
mod hash;
mod leastconn;
mod random;
mod roundrobin;

pub use roundrobin::MAX_SCHEDULE_LEN;

/// How a backend picks a server, as HAProxy's `balance` keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Algorithm {
    /// Smooth weighted round robin; weights may change at run time.
    RoundRobin,
    /// Weighted round robin over a fixed, cache-free schedule.
    StaticRr,
    /// Fewest active connections relative to weight.
    LeastConn,
    /// The lowest-indexed server that still has room.
    First,
    /// Hash of the client's source address.
    Source,
    /// Hash of the request path (the part before `?`).
    Uri,
    /// Hash of the value of the named request header.
    Hdr(HeaderName),
    /// Power of two choices: two weighted random draws, the less loaded wins.
    Random,
}

impl Algorithm {
    /// Whether weights changed at run time take effect (HAProxy's `BE_LB_PROP_DYN`), which
    /// `slow_start` needs: not for `static-rr`, `first` and the hashes, whose map is fixed.
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Self::RoundRobin | Self::LeastConn | Self::Random)
    }
}

/// The `balance` value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAlgorithmError {
    /// Not one of the known algorithm names.
    #[error("unknown balance algorithm `{0}`; expected one of: {ALLOWED}")]
    Unknown(String),
    /// `hdr(...)` with an empty or invalid header name.
    #[error("invalid header name in `{0}`; expected hdr(<header-name>), e.g. hdr(host)")]
    InvalidHeader(String),
}

/// The accepted spellings, listed in parse errors.
const ALLOWED: &str = "roundrobin, static-rr, leastconn, first, source, uri, hdr(<name>), random";

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let algorithm = match text.to_ascii_lowercase().as_str() {
            "roundrobin" => Self::RoundRobin,
            "static-rr" => Self::StaticRr,
            "leastconn" => Self::LeastConn,
            "first" => Self::First,
            "source" => Self::Source,
            "uri" => Self::Uri,
            // HAProxy spells the default draw count explicitly as `random(2)`; only 2 is supported.
            "random" | "random(2)" => Self::Random,
            lower => {
                let Some(name) = lower
                    .strip_prefix("hdr(")
                    .and_then(|rest| rest.strip_suffix(')'))
                else {
                    return Err(ParseAlgorithmError::Unknown(text.to_owned()));
                };
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| ParseAlgorithmError::InvalidHeader(text.to_owned()))?;
                Self::Hdr(name)
            }
        };
        Ok(algorithm)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoundRobin => f.write_str("roundrobin"),
            Self::StaticRr => f.write_str("static-rr"),
            Self::LeastConn => f.write_str("leastconn"),
            Self::First => f.write_str("first"),
            Self::Source => f.write_str("source"),
            Self::Uri => f.write_str("uri"),
            Self::Hdr(name) => write!(f, "hdr({name})"),
            Self::Random => f.write_str("random"),
        }
    }
}

/// A server as the balancer sees it at the moment of one pick. The caller builds a slice of these
/// (only servers that are eligible right now: UP, not draining, weight > 0) per request.
///
/// Candidates with `weight == 0` are tolerated but never picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The server's position in the backend; stable across picks and returned by [`Balancer::pick`].
    pub index: usize,
    /// Relative share of traffic (HAProxy: 1..=256).
    pub weight: u32,
    /// Connections currently open to the server.
    pub active: u32,
    /// Connection limit (`maxconn`); 0 means unlimited.
    pub max: u32,
}

impl Candidate {
    /// Whether the server can take one more connection right now.
    pub fn has_room(&self) -> bool {
        self.max == 0 || self.active < self.max
    }

    /// Eligible for any pick at all: a weight-0 server takes no new traffic, as in HAProxy.
    fn usable(&self) -> bool {
        self.weight > 0
    }

    /// Eligible for algorithms that skip full servers.
    fn open(&self) -> bool {
        self.usable() && self.has_room()
    }
}

/// What hash-based algorithms hash.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickKey<'a> {
    /// Client address, for `source`.
    pub src: Option<IpAddr>,
    /// Request path, for `uri`; anything from `?` on is ignored.
    pub uri_path: Option<&'a str>,
    /// Value of the configured header, for `hdr(NAME)`.
    pub header: Option<&'a [u8]>,
}

/// Per-backend balancer state, shared by all worker threads (`&self` methods, interior atomics
/// only, `Send + Sync`).
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    /// Position in the round-robin schedules, and tie-breaking rotation for leastconn.
    cursor: AtomicUsize,
    /// Cached smooth schedule; present for `roundrobin` and for the hash algorithms, which fall
    /// back to round robin when their key is missing.
    schedule: Option<Box<roundrobin::ScheduleCache>>,
}

impl Balancer {
    /// A balancer with fresh state for one backend.
    pub fn new(algorithm: Algorithm) -> Self {
        let schedule = match algorithm {
            Algorithm::RoundRobin | Algorithm::Source | Algorithm::Uri | Algorithm::Hdr(_) => {
                Some(Box::new(roundrobin::ScheduleCache::new()))
            }
            Algorithm::StaticRr | Algorithm::LeastConn | Algorithm::First | Algorithm::Random => {
                None
            }
        };
        Self {
            algorithm,
            cursor: AtomicUsize::new(0),
            schedule,
        }
    }

    /// The algorithm this balancer runs.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// Picks one candidate; returns its `index` (the server index, not the slice position), or
    /// `None` when `candidates` is empty or (for algorithms that skip full servers) every
    /// candidate is full. Hash algorithms return their server even when it is full, so the
    /// caller can queue on it.
    pub fn pick(&self, candidates: &[Candidate], key: &PickKey<'_>) -> Option<usize> {
        match &self.algorithm {
            Algorithm::RoundRobin => self.round_robin(candidates),
            Algorithm::StaticRr => roundrobin::pick_static(candidates, &self.cursor),
            Algorithm::LeastConn => leastconn::pick(candidates, &self.cursor),
            Algorithm::First => first::pick(candidates),
            Algorithm::Source | Algorithm::Uri | Algorithm::Hdr(_) => {
                match hash::key_hash(&self.algorithm, key) {
                    Some(h) => hash::pick(candidates, h),
                    // HAProxy falls back to round robin when there is nothing to hash.
                    None => self.round_robin(candidates),
                }
            }
            Algorithm::Random => random::pick(candidates, |bound| fastrand::u64(0..bound)),
        }
    }

    /// Rebuilds the cached round-robin schedule for `candidates` now, so the first request after
    /// a health or weight change does not pay for it (O(schedule length × servers): microseconds
    /// for a few servers, milliseconds for hundreds). Optional: `pick` rebuilds on demand too.
    /// A no-op when already current, and for algorithms without a schedule.
    pub fn prepare(&self, candidates: &[Candidate]) {
        if let Some(cache) = &self.schedule {
            cache.prepare(candidates);
        }
    }

    fn round_robin(&self, candidates: &[Candidate]) -> Option<usize> {
        match &self.schedule {
            Some(cache) => cache.pick(candidates, &self.cursor),
            // Unreachable by construction; still answer sensibly.
            None => roundrobin::pick_static(candidates, &self.cursor),
        }
    }
}

#[cfg(test)]
mod tests;
