//! Fulcrum's test and benchmark tooling: the origin server every test puts behind the proxy, the
//! load generator, bulk TCP streams, a metrics scraper, the side-by-side comparison with HAProxy,
//! the failover gap against keepalived, the NBD export against qemu-nbd, the directory sync
//! against lsyncd and rsync, the soak run of seed 004 under faults, and the small parsers the
//! `fulcrum-bench` command line shares.

pub mod bulk;
pub mod compare;
pub mod failover;
mod harness;
pub mod load;
pub mod nbd;
pub mod origin;
pub mod scrape;
pub mod size;
pub mod soak;
pub mod sync;
