//! The HTTP (L7) tier, HAProxy-style: listeners, HTTP/1 and HTTP/2 serving, ACL routing,
//! persistence, balancing, queueing, connection pooling and the access log.

pub mod acl;
mod acquire;
pub mod balance;
pub(crate) mod cookie;
mod errors;
mod exchange;
mod frontend_name;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub(crate) mod h1;
mod h2;
mod h2_body;
mod h2_idle;
mod h2_request;
mod headers;
pub(crate) mod listener;
pub(crate) mod log;
pub(crate) mod pool;
mod route;
mod select;
mod session;
#[cfg(test)]
mod stuck_peer_tests;
mod upstream;
