//! HTTP/1.1 on both sides of the proxy, written on `httparse` rather than hyper so the proxy can
//! answer where hyper would only close: 408 on a slow request head, 400 with the exact reason on
//! a smuggling attempt, and so it can forward bodies without re-framing them.
//!
//! - [`conn`]: a socket with its read buffer.
//! - [`head`]: request and response heads, parsed and checked (the anti-smuggling rules live here).
//! - [`body`]: body framing and streaming copies between two connections.
//! - [`spare`]: the buffers of connections waiting for input, kept per thread for reuse.
//! - [`timer`]: a connection's one timer for the timeouts of its waits.

pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod head;
pub(crate) mod spare;
pub(crate) mod timer;
