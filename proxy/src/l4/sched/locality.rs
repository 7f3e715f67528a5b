//! The locality-based schedulers `lblc` and `lblcr` (ip_vs_lblc.c, ip_vs_lblcr.c): remember which
//! server (`lblc`) or set of servers (`lblcr`) served a destination address, and keep sending it
//! there until that server is overloaded, so caches behind the balancer stay warm.
//!
//! "Overloaded" here is the kernel's `is_overloaded()`: more active connections than its weight
//! while some server in the service is below half of its own. The cache lives in a 1024-bucket
//! table with the kernel's garbage collector, run from the injected clock: a sweep every 60 s
//! drops entries idle past the expiration every 30th sweep, and drops entries idle for 6 minutes
//! whenever the table holds more than 16384.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::leastconn::wlc;
use super::{Dest, addr_fold, conn_overhead, hash_32};

/// `IP_VS_LBLC_TAB_BITS` / `IP_VS_LBLCR_TAB_BITS` (the Kconfig default).
const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// `tbl->max_size`: past this many entries new ones are refused and idle ones collected.
const MAX_SIZE: usize = TAB_SIZE * 16;
/// `CHECK_EXPIRE_INTERVAL`: the garbage collector's period.
const CHECK_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// `ENTRY_TIMEOUT`: how long an entry must be idle to be collected from a full table.
const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// `COUNT_FOR_FULL_EXPIRATION`: every this many quiet sweeps, a full expiration sweep.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// Sweeps replayed one by one when the clock jumps; see [`Table::run_timer`].
const MAX_CATCH_UP: u64 = 2 * COUNT_FOR_FULL_EXPIRATION as u64;

/// `lblc`: destination address -> one server.
#[derive(Debug)]
pub(super) struct Lblc {
    table: Table<SocketAddr>,
}

impl Lblc {
    pub(super) fn new(expiration: Duration) -> Self {
        Self {
            table: Table::new(expiration),
        }
    }

    /// `ip_vs_lblc_schedule`: the cached server if it is still in the service, has weight > 0 and
    /// is not overloaded by the load rule, else the `wlc` pick, which replaces the entry.
    ///
    /// As in the kernel, the cached server's overload flag is not consulted (only the new pick
    /// skips flagged servers), so a destination stays on a flagged server until the load rule
    /// moves it.
    pub(super) fn schedule(
        &mut self,
        dests: &[Dest],
        destination: IpAddr,
        now: Duration,
    ) -> Option<usize> {
        self.table.run_timer(now);
        if let Some(entry) = self.table.get_mut(destination) {
            entry.lastuse = now;
            if let Some(i) = index_of(dests, entry.value)
                && dests.get(i).is_some_and(|d| d.weight > 0)
                && !is_overloaded(dests, i)
            {
                return Some(i);
            }
        }
        let pick = wlc(dests)?;
        let addr = dests.get(pick)?.addr;
        self.table.assign(destination, addr, now);
        Some(pick)
    }
}

/// `lblcr`: destination address -> a set of servers.
#[derive(Debug)]
pub(super) struct Lblcr {
    table: Table<DestSet>,
}

/// `struct ip_vs_dest_set`: the servers, newest first (`list_add_rcu` adds at the head), and when
/// the set last changed.
#[derive(Debug)]
struct DestSet {
    members: Vec<SocketAddr>,
    lastmod: Duration,
}

impl Lblcr {
    pub(super) fn new(expiration: Duration) -> Self {
        Self {
            table: Table::new(expiration),
        }
    }

    /// Drops removed servers from every set. The kernel keeps them (as unavailable members that
    /// can come back from its trash); dropping them bounds the sets, and a server that comes back
    /// rejoins sets the ordinary way, when a destination needs another server.
    pub(super) fn update(&mut self, addrs: &[SocketAddr]) {
        let present: HashSet<&SocketAddr> = addrs.iter().collect();
        for entry in self.table.buckets.iter_mut().flatten() {
            entry.value.members.retain(|a| present.contains(a));
        }
    }

    /// `ip_vs_lblcr_schedule`: the least loaded server of the set; a set that has not changed for
    /// the expiration time first sheds its most loaded member; when the least loaded one is
    /// overloaded by the load rule (or the set has none available), the `wlc` pick joins the set.
    pub(super) fn schedule(
        &mut self,
        dests: &[Dest],
        destination: IpAddr,
        now: Duration,
    ) -> Option<usize> {
        self.table.run_timer(now);
        let expiration = self.table.expiration;
        if let Some(entry) = self.table.get_mut(destination) {
            entry.lastuse = now;
            let set = &mut entry.value;
            // Chosen before the shedding below, as in the kernel: it may even be the member shed.
            let least = set.min(dests);
            if set.members.len() > 1
                && now > set.lastmod.saturating_add(expiration)
                && let Some(most) = set.max(dests)
            {
                set.erase(most, now);
            }
            if let Some(i) = least
                && !is_overloaded(dests, i)
            {
                return Some(i);
            }
            let pick = wlc(dests)?;
            set.insert(dests.get(pick)?.addr, now);
            return Some(pick);
        }
        let pick = wlc(dests)?;
        let set = DestSet {
            members: vec![dests.get(pick)?.addr],
            lastmod: now,
        };
        self.table.insert(destination, set, now);
        Some(pick)
    }
}

impl DestSet {
    /// `ip_vs_dest_set_min`: the weighted least-connection member among those still in the
    /// service, with weight > 0 and not flagged overloaded.
    fn min(&self, dests: &[Dest]) -> Option<usize> {
        let mut members = self.members.iter().filter_map(|&a| index_of(dests, a));
        let (mut least, first) = members
            .by_ref()
            .filter_map(|i| Some((i, dests.get(i)?)))
            .find(|(_, d)| !d.overloaded && d.weight > 0)?;
        let (mut loh, mut lw) = (conn_overhead(first), first.weight);
        for i in members {
            let Some(d) = dests.get(i) else { continue };
            if d.overloaded {
                continue;
            }
            let doh = conn_overhead(d);
            if u128::from(loh) * u128::from(d.weight) > u128::from(doh) * u128::from(lw) {
                (least, loh, lw) = (i, doh, d.weight);
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: the weighted most-connection member with weight > 0 (overloaded or
    /// not), as an address to erase.
    fn max(&self, dests: &[Dest]) -> Option<SocketAddr> {
        let mut members = self
            .members
            .iter()
            .filter_map(|&a| Some((a, dests.get(index_of(dests, a)?)?)));
        let (mut most, first) = members.by_ref().find(|(_, d)| d.weight > 0)?;
        let (mut moh, mut mw) = (conn_overhead(first), first.weight);
        for (addr, d) in members {
            let doh = conn_overhead(d);
            if d.weight > 0
                && u128::from(moh) * u128::from(d.weight) < u128::from(doh) * u128::from(mw)
            {
                (most, moh, mw) = (addr, doh, d.weight);
            }
        }
        Some(most)
    }

    /// `ip_vs_dest_set_insert` with `check`: a member already present changes nothing.
    fn insert(&mut self, addr: SocketAddr, now: Duration) {
        if !self.members.contains(&addr) {
            self.members.insert(0, addr);
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_erase`.
    fn erase(&mut self, addr: SocketAddr, now: Duration) {
        if let Some(pos) = self.members.iter().position(|&a| a == addr) {
            self.members.remove(pos);
            self.lastmod = now;
        }
    }
}

/// The kernel's `is_overloaded()` in lblc/lblcr: more active connections than its weight, while
/// some server (any, flagged or not) is below half of its own weight.
fn is_overloaded(dests: &[Dest], i: usize) -> bool {
    dests.get(i).is_some_and(|d| d.active > d.weight)
        && dests
            .iter()
            .any(|m| u64::from(m.active) * 2 < u64::from(m.weight))
}

/// A server's position by address: the kernel's entries point at the server itself, which stays
/// valid while it is in the service (`IP_VS_DEST_F_AVAILABLE`), wherever it moves in the list.
fn index_of(dests: &[Dest], addr: SocketAddr) -> Option<usize> {
    dests.iter().position(|d| d.addr == addr)
}

/// The lblc/lblcr hash table: chained buckets keyed by `hash_32(folded address, 10)`, with the
/// timer state of `ip_vs_lblc_check_expire` / `ip_vs_lblcr_check_expire`.
struct Table<V> {
    buckets: Vec<Vec<Entry<V>>>,
    /// `tbl->entries`, counted exactly. (The kernel's `ip_vs_lblc_new` unlinks a replaced entry
    /// without decrementing the count, so on a long-lived service it drifts up to `max_size`
    /// and the cache stops taking entries; this one does not reproduce that.)
    entries: usize,
    /// `tbl->rover`: where the partial sweep resumes.
    rover: usize,
    /// `tbl->counter`: quiet sweeps since the last full one.
    counter: u32,
    /// When the next sweep is due; set by the first decision, as the kernel arms the timer when
    /// the service is created.
    next_check: Option<Duration>,
    /// The `lblc_expiration` / `lblcr_expiration` sysctl.
    expiration: Duration,
}

struct Entry<V> {
    addr: IpAddr,
    lastuse: Duration,
    value: V,
}

impl<V> fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("entries", &self.entries)
            .field("rover", &self.rover)
            .field("counter", &self.counter)
            .field("next_check", &self.next_check)
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl<V> Table<V> {
    fn new(expiration: Duration) -> Self {
        Self {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            entries: 0,
            rover: 0,
            counter: 1,
            next_check: None,
            expiration,
        }
    }

    fn bucket(addr: IpAddr) -> usize {
        hash_32(addr_fold(addr), TAB_BITS) as usize & TAB_MASK
    }

    fn get_mut(&mut self, addr: IpAddr) -> Option<&mut Entry<V>> {
        self.buckets
            .get_mut(Self::bucket(addr))?
            .iter_mut()
            .find(|e| e.addr == addr)
    }

    /// Adds an entry for an address that has none, unless the table is over `max_size` (the
    /// kernel checks `entries > max_size`, so it holds at most one more). The kernel adds at the
    /// bucket's head; order within a bucket changes nothing, as addresses are unique and sweeps
    /// take whole buckets.
    fn insert(&mut self, addr: IpAddr, value: V, now: Duration) {
        if self.entries > MAX_SIZE {
            return;
        }
        if let Some(bucket) = self.buckets.get_mut(Self::bucket(addr)) {
            bucket.push(Entry {
                addr,
                lastuse: now,
                value,
            });
            self.entries += 1;
        }
    }

    fn remove(&mut self, addr: IpAddr) {
        if let Some(bucket) = self.buckets.get_mut(Self::bucket(addr)) {
            let before = bucket.len();
            bucket.retain(|e| e.addr != addr);
            self.entries = self.entries.saturating_sub(before - bucket.len());
        }
    }

    /// Runs the sweeps due by `now`, each at its own time, as the kernel's timer would have.
    ///
    /// The timer only runs here, on decisions; after a gap of more than [`MAX_CATCH_UP`] sweeps
    /// only the last ones are replayed and the skipped ones just advance the sweep counter as quiet
    /// sweeps do. Nothing is added during a gap and expiry only grows with time, so the replayed
    /// full sweep drops everything the skipped ones would have (exactly so unless the table is
    /// over `max_size`, where the kernel would also have run partial sweeps).
    fn run_timer(&mut self, now: Duration) {
        let mut next = *self
            .next_check
            .get_or_insert_with(|| now.saturating_add(CHECK_EXPIRE_INTERVAL));
        if now < next {
            return;
        }
        let due = (now - next).as_secs() / CHECK_EXPIRE_INTERVAL.as_secs() + 1;
        if due > MAX_CATCH_UP {
            let skipped = due - MAX_CATCH_UP;
            let skip = skipped.saturating_mul(CHECK_EXPIRE_INTERVAL.as_secs());
            next = next.saturating_add(Duration::from_secs(skip));
            let phase = u64::from(self.counter.saturating_sub(1)) + skipped;
            // The remainder is below 30; the conversion cannot fail.
            let phase = u32::try_from(phase % u64::from(COUNT_FOR_FULL_EXPIRATION)).unwrap_or(0);
            self.counter = phase + 1;
        }
        for _ in 0..=MAX_CATCH_UP {
            if now < next {
                break;
            }
            self.sweep(next);
            match next.checked_add(CHECK_EXPIRE_INTERVAL) {
                Some(later) => next = later,
                None => {
                    // The clock is at the end of `Duration`; sweep again on the next decision.
                    break;
                }
            }
        }
        self.next_check = Some(next);
    }

    /// One run of `ip_vs_lblc_check_expire` at time `at`.
    fn sweep(&mut self, at: Duration) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            // `ip_vs_lblc_full_check`: everything idle for the expiration time, every bucket
            // once from the rover round to the rover.
            let expiration = self.expiration;
            for bucket in &mut self.buckets {
                let before = bucket.len();
                bucket.retain(|e| at < e.lastuse.saturating_add(expiration));
                self.entries = self.entries.saturating_sub(before - bucket.len());
            }
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        // Over capacity: collect entries idle for ENTRY_TIMEOUT, bucket by bucket from the rover,
        // until a third more than the excess is gone (at most half the capacity).
        let mut goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            if let Some(bucket) = self.buckets.get_mut(j) {
                let before = bucket.len();
                bucket.retain(|e| at < e.lastuse.saturating_add(ENTRY_TIMEOUT));
                let removed = before - bucket.len();
                self.entries = self.entries.saturating_sub(removed);
                goal = goal.saturating_sub(removed);
            }
            if goal == 0 {
                break;
            }
        }
        self.rover = j;
    }
}

impl Table<SocketAddr> {
    /// `ip_vs_lblc_new`: keep an entry that already points at `server`; otherwise drop it and
    /// add a fresh one (which a full table refuses).
    fn assign(&mut self, addr: IpAddr, server: SocketAddr, now: Duration) {
        if let Some(entry) = self.get_mut(addr) {
            if entry.value == server {
                return;
            }
            self.remove(addr);
        }
        self.insert(addr, server, now);
    }
}

#[cfg(test)]
impl<V> Table<V> {
    /// How many entries the table holds, for tests.
    pub(super) fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
impl Lblc {
    pub(super) fn entries(&self) -> usize {
        self.table.len()
    }

    pub(super) fn contains(&mut self, destination: IpAddr) -> bool {
        self.table.get_mut(destination).is_some()
    }
}

#[cfg(test)]
impl Lblcr {
    /// The set for `destination`, newest member first, for tests.
    pub(super) fn members(&mut self, destination: IpAddr) -> Option<Vec<SocketAddr>> {
        self.table
            .get_mut(destination)
            .map(|e| e.value.members.clone())
    }
}
