//! Bulk TCP streams, to measure how fast a proxy moves bytes: a [`source`] that sends as many
//! bytes as a client asks for, and a [`fetch`] client that asks, reads to the end and times it.
//!
//! The protocol is one line and a stream, so an L4 proxy carries it untouched:
//!
//! ```text
//! client -> source   SIZE "\n"        (decimal bytes, at most MAX_REQUEST_LINE bytes with "\n")
//! source -> client   SIZE bytes, then FIN
//! ```
//!
//! Both ends use blocking sockets and large buffers: they share the load CPU in a comparison,
//! and every cycle they spend is one the stream does not get.

mod fetch;
mod source;

pub use self::fetch::{BulkReport, SCHEMA, fetch, fetch_blocking};
pub use self::source::{Source, start_source};

/// Bytes per `write` on the source and per `read` on the client: large enough that the syscalls
/// cost little next to the copies.
const CHUNK: usize = 256 * 1024;

/// The longest request line, `\n` included: `u64::MAX` has 20 digits.
pub const MAX_REQUEST_LINE: usize = 21;
