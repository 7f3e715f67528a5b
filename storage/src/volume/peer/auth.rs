//! Mutual authentication of the replication link from the shared secret: DRBD's
//! `cram-hmac-alg` challenge-response, bound to the direction so that no response can be
//! reflected back at its author.
//!
//! ```text
//!   Connecting side                                     Accepting side
//!   Greeting { v1, Connecting, Cc }  ───►     ◄───  Greeting { v1, Accepting, Ca }
//!   Response { HMAC(K, T(C, Ca, Cc)) } ─►     ◄─  Response { HMAC(K, T(A, Cc, Ca)) }
//!   Accepted | Refused { reason }    ───►     ◄───  Accepted | Refused { reason }
//!
//!   T(side, answered, own) = "fulcrum-volume v1" ‖ side ‖ answered ‖ own
//! ```
//!
//! Each side sends a step before reading the peer's, so neither waits for the other. A
//! response names the side that made it and both challenges: a peer that echoes our challenge
//! is refused outright (the reflection attack), and one that opens a second connection to get
//! a response to replay gets one made by the other side, for other challenges, which does not
//! verify. A node that both dials and accepts (the middle node of a sync set of three) could
//! still be made to answer itself: a relay sends each of its two connections the challenge the
//! node made on the other, and passes the node's responses across. So a challenge the node is
//! still waiting on, on any of its connections ([`OwnChallenges`]), is refused as a reflection
//! too. The last step is a verdict, so each side learns whether the other accepted it: a
//! wrong secret is reported as [`AuthError::WrongSecret`] on both sides, and logged there.
//!
//! The handshake reads exactly its own frames: the stream is left at the first byte after it.

mod frame;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use ring::hmac;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, warn};

use self::frame::{AuthFrame, MAX_PAYLOAD, TAG_LEN};
use super::frame::{HEADER_LEN, Header};
use super::wire::WireError;

/// The protocol version this build speaks, sent first so that a mismatch is a clear error.
/// 2: volume trims are applied by the secondary (a version-1 node acked them unapplied).
pub const VERSION: u16 = 2;

/// Length of a challenge.
pub const CHALLENGE_LEN: usize = 32;

type Challenge = [u8; CHALLENGE_LEN];

/// What the response MAC starts with: the protocol and its version, so that a tag made for
/// anything else (another protocol using the same secret, another version) never verifies.
const LABEL: &[u8] = b"fulcrum-volume v1";

/// Which end of the TCP connection we are; the two must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Connecting,
    Accepting,
}

impl Side {
    fn code(self) -> u8 {
        match self {
            Self::Connecting => 1,
            Self::Accepting => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Connecting),
            2 => Some(Self::Accepting),
            _ => None,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connecting => "connecting",
            Self::Accepting => "accepting",
        })
    }
}

/// Why one side refused the other, as sent in the Refused frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    WrongSecret,
    VersionMismatch,
    Reflected,
    SameSide,
    Malformed,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Self::WrongSecret => 1,
            Self::VersionMismatch => 2,
            Self::Reflected => 3,
            Self::SameSide => 4,
            Self::Malformed => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::WrongSecret),
            2 => Some(Self::VersionMismatch),
            3 => Some(Self::Reflected),
            4 => Some(Self::SameSide),
            5 => Some(Self::Malformed),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongSecret => "wrong shared secret",
            Self::VersionMismatch => "protocol version mismatch",
            Self::Reflected => "our challenge was reflected",
            Self::SameSide => "both ends on the same side",
            Self::Malformed => "malformed handshake",
        })
    }
}

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The two nodes do not have the same secret (found by us, or by the peer, which said so).
    #[error("wrong shared secret")]
    WrongSecret,
    /// The peer refused us for a reason other than the secret.
    #[error("the peer refused us: {0}")]
    RefusedByPeer(Refusal),
    #[error(
        "the peer sent one of this node's own challenges back: a reflection, or this node connected to itself"
    )]
    Reflected,
    /// Both ends claim the same side of the connection.
    #[error("both ends say they are {0}")]
    SameSide(Side),
    #[error("protocol version mismatch: we speak {ours}, the peer {theirs}")]
    VersionMismatch { ours: u16, theirs: u16 },
    /// The first octets were not a Fulcrum frame. `protocol` is the protocol's name from its
    /// label ([`protocol_name`]): "volume" for [`authenticate`], "sync" for the directory
    /// sync's label.
    #[error("the peer does not speak the Fulcrum {protocol} protocol (it began with {magic:#06x})")]
    NotFulcrum { magic: u16, protocol: &'static str },
    #[error("malformed handshake from the peer: {0}")]
    Malformed(#[source] WireError),
    #[error("the peer sent {0} out of turn")]
    Unexpected(&'static str),
    #[error("the handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error("I/O error during the handshake: {0}")]
    Io(#[source] std::io::Error),
    /// A local configuration error: authenticating with nothing would accept anyone.
    #[error("the shared secret is empty")]
    EmptySecret,
    #[error("no randomness for a challenge: {0}")]
    Random(getrandom::Error),
}

impl AuthError {
    /// Whether the nodes disagree (secret, version, sides) or the peer is not a proper
    /// Fulcrum node, as opposed to the link failing (timeout, closed, I/O), which may heal by
    /// itself. A rejection needs an operator; retrying only repeats it.
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            Self::Timeout(_) | Self::Closed | Self::Io(_) | Self::Random(_)
        )
    }
}

impl From<WireError> for AuthError {
    fn from(error: WireError) -> Self {
        match error {
            // Named for the volume here; `authenticate_labelled` renames it for its label.
            WireError::BadMagic(magic) => Self::NotFulcrum {
                magic,
                protocol: "volume",
            },
            WireError::Io(error) => Self::Io(error),
            other => Self::Malformed(other),
        }
    }
}

/// Authenticates the peer at the other end of `stream` and it us, from `secret`, within
/// `timeout`. `we_are` is our end of the connection, which the peer's must not be; `challenges`
/// are those of this node's other handshakes.
///
/// Failures are logged here, once (a rejection at warn, a failing link at info), so the
/// caller need not. On success the stream is at the first byte the peer sent after the
/// handshake. Retry through a [`super::Backoff`], never at once.
pub async fn authenticate<S>(
    stream: &mut S,
    secret: &[u8],
    we_are: Side,
    timeout: Duration,
    challenges: &OwnChallenges,
) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    authenticate_labelled(stream, secret, LABEL, we_are, timeout, challenges).await
}

/// [`authenticate`] for another protocol on the same handshake: `label` starts every
/// response MAC in place of the volume's, so that a response made for one protocol never
/// verifies for another that shares the secret (the directory sync uses its own).
/// `challenges` are those of every handshake of this node in progress.
pub async fn authenticate_labelled<S>(
    stream: &mut S,
    secret: &[u8],
    label: &'static [u8],
    we_are: Side,
    timeout: Duration,
    challenges: &OwnChallenges,
) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocol = protocol_name(label);
    let handshake = handshake(stream, secret, label, we_are, challenges);
    let result = match tokio::time::timeout(timeout, handshake).await {
        Ok(result) => result,
        Err(_elapsed) => Err(AuthError::Timeout(timeout)),
    }
    .map_err(|error| match error {
        AuthError::NotFulcrum { magic, .. } => AuthError::NotFulcrum { magic, protocol },
        other => other,
    });
    match &result {
        Ok(()) => debug!(side = %we_are, protocol, "peer authenticated"),
        Err(error) if error.is_rejection() => {
            warn!(side = %we_are, protocol, %error, "peer authentication refused");
        }
        Err(error) => info!(side = %we_are, protocol, %error, "peer authentication failed"),
    }
    result
}

/// A protocol's name in messages, from its handshake label: `fulcrum-volume v1` -> `volume`,
/// `fulcrum-sync v1` -> `sync`; a label not of that shape is named as it is.
pub fn protocol_name(label: &'static [u8]) -> &'static str {
    let Ok(label) = std::str::from_utf8(label) else {
        return "unnamed";
    };
    let name = label.strip_prefix("fulcrum-").unwrap_or(label);
    match name.rsplit_once(" v") {
        Some((name, version)) if version.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => name,
    }
}

async fn handshake<S>(
    stream: &mut S,
    secret: &[u8],
    label: &[u8],
    we_are: Side,
    challenges: &OwnChallenges,
) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ours = [0; CHALLENGE_LEN];
    getrandom::getrandom(&mut ours).map_err(AuthError::Random)?;
    let _waiting = challenges.issue(ours);

    let greeting = AuthFrame::Greeting {
        version: VERSION,
        side: we_are,
        challenge: ours,
    };
    send(stream, &greeting).await?;
    let (they_are, theirs) = match receive(stream).await? {
        AuthFrame::Greeting {
            version,
            side,
            challenge,
        } => {
            if version != VERSION {
                let error = AuthError::VersionMismatch {
                    ours: VERSION,
                    theirs: version,
                };
                return Err(refuse(stream, Refusal::VersionMismatch, error).await);
            }
            (side, challenge)
        }
        other => return Err(out_of_turn(stream, other).await),
    };
    if they_are == we_are {
        return Err(refuse(stream, Refusal::SameSide, AuthError::SameSide(we_are)).await);
    }
    // The challenges are public: comparing them in constant time would hide nothing.
    if challenges.contains(&theirs) {
        return Err(refuse(stream, Refusal::Reflected, AuthError::Reflected).await);
    }

    let response = hmac::sign(&key, &labelled_transcript(label, we_are, &theirs, &ours));
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(response.as_ref());
    send(stream, &AuthFrame::Response(tag)).await?;
    let their_tag = match receive(stream).await? {
        AuthFrame::Response(tag) => tag,
        other => return Err(out_of_turn(stream, other).await),
    };
    if hmac::verify(
        &key,
        &labelled_transcript(label, they_are, &ours, &theirs),
        &their_tag,
    )
    .is_err()
    {
        return Err(refuse(stream, Refusal::WrongSecret, AuthError::WrongSecret).await);
    }

    send(stream, &AuthFrame::Accepted).await?;
    match receive(stream).await? {
        AuthFrame::Accepted => Ok(()),
        other => Err(out_of_turn(stream, other).await),
    }
}

/// The challenges of every handshake in progress in this process, with the node that made
/// each: every volume and sync set of a node, dialing and accepting, sees them all, so a relay
/// between two of them (sharing a secret) is caught too.
static OUTSTANDING: Mutex<BTreeSet<(String, Challenge)>> = Mutex::new(BTreeSet::new());

/// The challenges one node has out on its handshakes in progress: a peer that sends one of
/// them back is reflecting it (see the module's header). Named by the node (`[global] node`),
/// so that two nodes in one process (tests) never take each other's for their own.
#[derive(Debug, Clone)]
pub struct OwnChallenges {
    node: String,
}

impl OwnChallenges {
    /// Those of the node `node`.
    pub fn of(node: &str) -> Self {
        Self {
            node: node.to_owned(),
        }
    }

    fn issue(&self, challenge: Challenge) -> Outstanding {
        let entry = (self.node.clone(), challenge);
        set().insert(entry.clone());
        Outstanding(entry)
    }

    fn contains(&self, challenge: &Challenge) -> bool {
        set().contains(&(self.node.clone(), *challenge))
    }
}

fn set() -> std::sync::MutexGuard<'static, BTreeSet<(String, Challenge)>> {
    OUTSTANDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One of our challenges, in [`OUTSTANDING`] until its handshake ends.
struct Outstanding((String, Challenge));

impl Drop for Outstanding {
    fn drop(&mut self) {
        set().remove(&self.0);
    }
}

/// What a response from `responder` MACs: the label, who responds, the challenge it
/// answers and its own. Fixed-length fields, so no two transcripts read the same.
#[cfg(test)]
fn transcript(responder: Side, answered: &Challenge, own: &Challenge) -> Vec<u8> {
    labelled_transcript(LABEL, responder, answered, own)
}

/// What a response MACs, under the protocol's `label` (see `transcript`).
fn labelled_transcript(
    label: &[u8],
    responder: Side,
    answered: &Challenge,
    own: &Challenge,
) -> Vec<u8> {
    let mut transcript = Vec::with_capacity(label.len() + 1 + 2 * CHALLENGE_LEN);
    transcript.extend_from_slice(label);
    transcript.push(responder.code());
    transcript.extend_from_slice(answered);
    transcript.extend_from_slice(own);
    transcript
}

/// A frame other than the one expected: the peer's refusal, or a violation we refuse.
async fn out_of_turn<S>(stream: &mut S, frame: AuthFrame) -> AuthError
where
    S: AsyncWrite + Unpin,
{
    match frame {
        AuthFrame::Refused(Refusal::WrongSecret) => AuthError::WrongSecret,
        AuthFrame::Refused(reason) => AuthError::RefusedByPeer(reason),
        other => {
            refuse(
                stream,
                Refusal::Malformed,
                AuthError::Unexpected(other.name()),
            )
            .await
        }
    }
}

/// Tells the peer why we refuse it, then gives back our own `error`.
async fn refuse<S>(stream: &mut S, reason: Refusal, error: AuthError) -> AuthError
where
    S: AsyncWrite + Unpin,
{
    // Best effort: the peer may be gone already, and our own error is what matters here.
    if let Err(send_error) = send(stream, &AuthFrame::Refused(reason)).await {
        debug!(%reason, error = %send_error, "refusal not delivered");
    }
    error
}

async fn send<S>(stream: &mut S, frame: &AuthFrame) -> Result<(), AuthError>
where
    S: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(HEADER_LEN + MAX_PAYLOAD);
    frame.encode(&mut buf)?;
    stream.write_all(&buf).await.map_err(AuthError::Io)?;
    stream.flush().await.map_err(AuthError::Io)
}

/// Reads one handshake frame, refusing the peer if it is not one.
async fn receive<S>(stream: &mut S) -> Result<AuthFrame, AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match read_frame(stream).await {
        Err(error @ (AuthError::Malformed(_) | AuthError::NotFulcrum { .. })) => {
            Err(refuse(stream, Refusal::Malformed, error).await)
        }
        other => other,
    }
}

/// Reads exactly one frame, header then payload, and nothing past it.
async fn read_frame<S>(stream: &mut S) -> Result<AuthFrame, AuthError>
where
    S: AsyncRead + Unpin,
{
    let mut header = [0; HEADER_LEN];
    read_exact(stream, &mut header).await?;
    let header = Header::parse(header, MAX_PAYLOAD)?;
    let mut payload = [0; MAX_PAYLOAD];
    let Some(payload) = payload.get_mut(..header.len) else {
        // Header::parse has checked the length against MAX_PAYLOAD already.
        return Err(AuthError::Malformed(WireError::TooLarge {
            len: header.len,
            max: MAX_PAYLOAD,
        }));
    };
    read_exact(stream, payload).await?;
    Ok(AuthFrame::decode(header.ty, payload)?)
}

async fn read_exact<S>(stream: &mut S, buf: &mut [u8]) -> Result<(), AuthError>
where
    S: AsyncRead + Unpin,
{
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(AuthError::Closed),
        Err(error) => Err(AuthError::Io(error)),
    }
}
