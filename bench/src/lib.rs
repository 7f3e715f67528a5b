//! Fulcrum's test and benchmark tooling: the origin server every test puts behind the proxy, and the
//! small parsers the `fulcrum-bench` command line shares.

pub mod origin;
pub mod size;
