//! The replication link between the two nodes of a volume: who may talk (authentication) and
//! what they say (the wire format). The replication itself is built on these.
//!
//! - [`authenticate`]: the mutual HMAC-SHA256 challenge-response that opens every
//!   connection, from the volume's shared secret, bound to the direction ([`Side`]).
//! - [`Backoff`]: when to try again after a failed connect or handshake, never in a tight loop.
//! - [`Message`]: what the nodes exchange afterwards (Hello, writes and acks, flushes, resync,
//!   verify, split brain); [`encode`] and [`decode`] put it in frames, whose header (magic,
//!   type, length) is the same from the handshake's first byte on.
//! - [`MessageReader`] and [`MessageWriter`]: messages over an async byte stream.
//!
//! Nothing here panics on what a peer sends, and no peer can make us buffer more than one
//! frame: 35 octets of payload during the handshake, [`MAX_PAYLOAD`] after.

mod auth;
mod backoff;
mod frame;
mod message;
mod stream;
mod wire;

pub use auth::{
    AuthError, CHALLENGE_LEN, OwnChallenges, Refusal, Side, VERSION, authenticate,
    authenticate_labelled, protocol_name,
};
pub use backoff::{Backoff, MIN_CONNECT_INTERVAL};
pub use message::{
    AckKind, DIGEST_LEN, Digest, DisconnectReason, DiskState, Generations, Hello, MAX_DATA,
    MAX_NAME, Message, Protocol, Resolution, Role, WriteFlags,
};
pub use stream::{MessageReader, MessageWriter};
pub use wire::{MAX_PAYLOAD, WireError, decode, encode};
