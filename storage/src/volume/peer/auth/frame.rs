//! The handshake's four frames, in the link's frame format with a payload limit of their own
//! ([`MAX_PAYLOAD`], 35 octets), so that nobody is buffered anything before authenticating.
//!
//! ```text
//! Greeting (0x01), the same in every version so that a mismatch is always told clearly:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Version (1)            |  Side (1|2)   |               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+               +
//! |                  Challenge (32 random octets)                 |
//! +                                               +-+-+-+-+-+-+-+-+
//! |                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   Side: Connecting=1, Accepting=2.
//!
//! Response (0x02): the 32 octets of HMAC-SHA256 (see the transcript in `auth.rs`).
//! Accepted (0x03): empty.
//! Refused  (0x04): reason, one octet: WrongSecret=1 VersionMismatch=2 Reflected=3
//!                  SameSide=4 Malformed=5.
//! ```

use bytes::{BufMut, BytesMut};

use super::{CHALLENGE_LEN, Challenge, Refusal, Side};
use crate::volume::peer::frame;
use crate::volume::peer::wire::WireError;

/// The largest handshake payload: a Greeting.
pub(super) const MAX_PAYLOAD: usize = 2 + 1 + CHALLENGE_LEN;

/// Length of an HMAC-SHA256 tag.
pub(super) const TAG_LEN: usize = 32;

const GREETING: u8 = 0x01;
const RESPONSE: u8 = 0x02;
const ACCEPTED: u8 = 0x03;
const REFUSED: u8 = 0x04;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthFrame {
    Greeting {
        version: u16,
        side: Side,
        challenge: Challenge,
    },
    Response([u8; TAG_LEN]),
    Accepted,
    Refused(Refusal),
}

impl AuthFrame {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Greeting { .. } => "Greeting",
            Self::Response(_) => "Response",
            Self::Accepted => "Accepted",
            Self::Refused(_) => "Refused",
        }
    }

    pub(super) fn encode(&self, dst: &mut BytesMut) -> Result<(), WireError> {
        let ty = match self {
            Self::Greeting { .. } => GREETING,
            Self::Response(_) => RESPONSE,
            Self::Accepted => ACCEPTED,
            Self::Refused(_) => REFUSED,
        };
        let start = frame::start(dst, ty);
        match self {
            Self::Greeting {
                version,
                side,
                challenge,
            } => {
                dst.put_u16(*version);
                dst.put_u8(side.code());
                dst.put_slice(challenge);
            }
            Self::Response(tag) => dst.put_slice(tag),
            Self::Accepted => {}
            Self::Refused(reason) => dst.put_u8(reason.code()),
        }
        frame::finish(dst, start, 0, MAX_PAYLOAD)
    }

    /// Reads a payload of `len` octets; its length is already checked against [`MAX_PAYLOAD`].
    pub(super) fn decode(ty: u8, payload: &[u8]) -> Result<Self, WireError> {
        let (message, want) = match ty {
            GREETING => ("Greeting", MAX_PAYLOAD),
            RESPONSE => ("Response", TAG_LEN),
            ACCEPTED => ("Accepted", 0),
            REFUSED => ("Refused", 1),
            _ => return Err(WireError::UnknownType(ty)),
        };
        if payload.len() < want {
            return Err(WireError::Truncated { message });
        }
        if payload.len() > want {
            return Err(WireError::TrailingBytes {
                message,
                extra: payload.len() - want,
            });
        }
        let invalid = |field, value: u8| WireError::InvalidValue {
            message,
            field,
            value: value.into(),
        };
        match (ty, payload) {
            (GREETING, [v0, v1, side, challenge @ ..]) => Ok(Self::Greeting {
                version: u16::from_be_bytes([*v0, *v1]),
                side: Side::from_code(*side).ok_or_else(|| invalid("side", *side))?,
                challenge: challenge
                    .try_into()
                    .map_err(|_| WireError::Truncated { message })?,
            }),
            (RESPONSE, tag) => Ok(Self::Response(
                tag.try_into()
                    .map_err(|_| WireError::Truncated { message })?,
            )),
            (ACCEPTED, []) => Ok(Self::Accepted),
            (REFUSED, [reason]) => Ok(Self::Refused(
                Refusal::from_code(*reason).ok_or_else(|| invalid("reason", *reason))?,
            )),
            // The lengths were checked above.
            _ => Err(WireError::Truncated { message }),
        }
    }
}
