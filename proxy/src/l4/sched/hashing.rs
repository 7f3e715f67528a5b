//! The static hashing schedulers `dh` and `sh` (ip_vs_dh.c, ip_vs_sh.c): a 256-bucket table of
//! servers, rebuilt on every update, indexed by `hash_32()` of an address.
//!
//! `dh` deals the buckets out one server at a time; `sh` gives each server as many consecutive
//! buckets as its weight (and a weight-0 server one), cycling through the list until all 256 are
//! dealt. A bucket whose server has weight 0 or is overloaded answers "no destination available",
//! unless `sh` has the fallback flag.

use std::net::{IpAddr, SocketAddr};

use super::{Dest, Options, addr_fold, hash_32, is_available};

/// `IP_VS_DH_TAB_BITS` / `IP_VS_SH_TAB_BITS` (the Kconfig default).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;

/// A bucket table: server indices, all `None` while the service has no servers.
type Buckets = [Option<usize>; TAB_SIZE];

/// `dh`: buckets keyed by the packet's destination address.
#[derive(Debug)]
pub(super) struct Dh {
    buckets: Buckets,
}

impl Default for Dh {
    fn default() -> Self {
        Self {
            buckets: [None; TAB_SIZE],
        }
    }
}

impl Dh {
    /// `ip_vs_dh_reassign`: bucket `i` gets server `i mod n`, whatever the weights.
    pub(super) fn update(&mut self, dests: &[Dest]) {
        let n = dests.len();
        for (i, bucket) in self.buckets.iter_mut().enumerate() {
            *bucket = i.checked_rem(n);
        }
    }

    /// `ip_vs_dh_schedule`: the bucket's server, or nothing; `dh` has no fallback.
    pub(super) fn schedule(&self, dests: &[Dest], destination: IpAddr) -> Option<usize> {
        let key = hash_32(addr_fold(destination), TAB_BITS) as usize;
        let i = self.buckets.get(key).copied().flatten()?;
        dests.get(i).filter(|d| is_available(d)).map(|_| i)
    }
}

/// `sh`: buckets keyed by the client's address (and source port with the port flag).
#[derive(Debug)]
pub(super) struct Sh {
    buckets: Buckets,
}

impl Default for Sh {
    fn default() -> Self {
        Self {
            buckets: [None; TAB_SIZE],
        }
    }
}

impl Sh {
    /// `ip_vs_sh_reassign`: each server fills `weight` consecutive buckets before the next one
    /// starts (`++d_count >= weight`, so weight 0 still takes one), wrapping around the list.
    pub(super) fn update(&mut self, dests: &[Dest]) {
        let mut servers = dests.iter().enumerate().cycle();
        let mut current = servers.next();
        let mut count: u64 = 0;
        for bucket in &mut self.buckets {
            *bucket = current.map(|(i, _)| i);
            if let Some((_, d)) = current {
                count += 1;
                if count >= u64::from(d.weight) {
                    current = servers.next();
                    count = 0;
                }
            }
        }
    }

    /// `ip_vs_sh_schedule`: the hashed bucket's server if available; with fallback,
    /// `ip_vs_sh_get_fallback`'s walk over the table.
    pub(super) fn schedule(
        &self,
        dests: &[Dest],
        client: SocketAddr,
        options: &Options,
    ) -> Option<usize> {
        let port = if options.port { client.port() } else { 0 };
        let key = u32::from(port).wrapping_add(addr_fold(client.ip()));
        let ihash = hash_32(key, TAB_BITS) as usize;
        let available = |i: usize| dests.get(i).is_some_and(is_available);

        let first = self.buckets.get(ihash).copied().flatten()?;
        if available(first) {
            return Some(first);
        }
        if !options.fallback {
            return None;
        }
        // The kernel re-derives each probe as `(roffset + ihash) & mask` with
        // `roffset = (offset + ihash) % size`: the walk starts at bucket `2 * ihash`, not
        // `ihash + 1`, and covers all 256 buckets once.
        for offset in 0..TAB_SIZE {
            let roffset = (offset + ihash) % TAB_SIZE;
            let hash = (roffset + ihash) & TAB_MASK;
            let i = self.buckets.get(hash).copied().flatten()?;
            if available(i) {
                return Some(i);
            }
        }
        None
    }
}
