//! Skipping a chunked response body without copying it, across reads that may split it anywhere.
//!
//! RFC 9112 section 7.1:
//!
//! ```text
//! chunked-body   = *chunk
//!                  last-chunk
//!                  trailer-section
//!                  CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF
//!                  chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! A bare LF is accepted where CRLF is expected, as most clients do.

/// Why a chunked body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkedError {
    #[error("chunk size is not hexadecimal")]
    Size,
    #[error("chunk size is too large")]
    SizeOverflow,
    #[error("chunk data is not followed by CRLF")]
    DataEnd,
    #[error("line in chunk framing does not end with CRLF")]
    LineEnd,
}

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` counts them so an empty size is refused.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: an extension, ignored up to the end of the line.
    Extension {
        size: u64,
    },
    /// CR seen at the end of the size line.
    SizeLf {
        size: u64,
    },
    /// Bytes of chunk data still to skip.
    Data(u64),
    /// After the data: CR expected.
    DataCr,
    /// After the data and CR: LF expected.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line, skipped.
    Trailer,
    /// CR of the final empty line seen.
    EndLf,
    Done,
}

/// Consumes a chunked body from successive slices of input.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes body bytes from `input` and returns how many: all of them unless the body ends
    /// inside, in which case the rest belongs to whatever follows the body.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let mut at = 0;
        while at < input.len() {
            if let State::Data(remaining) = self.state {
                // The only bulk step: skip as much data as this input holds.
                let available = (input.len() - at) as u64;
                let skip = remaining.min(available);
                at += skip as usize;
                self.state = if skip == remaining {
                    State::DataCr
                } else {
                    State::Data(remaining - skip)
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.state = self.step(input[at])?;
            at += 1;
        }
        Ok(at)
    }

    /// One byte of framing.
    fn step(&self, byte: u8) -> Result<State, ChunkedError> {
        Ok(match self.state {
            State::Size { size, digits } => match byte {
                b'\r' | b'\n' | b';' | b' ' | b'\t' if digits == 0 => {
                    return Err(ChunkedError::Size);
                }
                b'\r' => State::SizeLf { size },
                b'\n' => end_of_size_line(size),
                b';' | b' ' | b'\t' => State::Extension { size },
                _ => {
                    let digit = hex_value(byte).ok_or(ChunkedError::Size)?;
                    // 16 hex digits fill a u64; leading zeros are still allowed before that.
                    if size >> 60 != 0 {
                        return Err(ChunkedError::SizeOverflow);
                    }
                    State::Size {
                        size: size << 4 | u64::from(digit),
                        digits: digits.saturating_add(1),
                    }
                }
            },
            State::Extension { size } => match byte {
                b'\r' => State::SizeLf { size },
                b'\n' => end_of_size_line(size),
                _ => State::Extension { size },
            },
            State::SizeLf { size } => match byte {
                b'\n' => end_of_size_line(size),
                _ => return Err(ChunkedError::LineEnd),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(ChunkedError::DataEnd),
            },
            State::DataLf => match byte {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(ChunkedError::DataEnd),
            },
            State::TrailerStart => match byte {
                b'\r' => State::EndLf,
                b'\n' => State::Done,
                _ => State::Trailer,
            },
            State::Trailer => match byte {
                b'\n' => State::TrailerStart,
                _ => State::Trailer,
            },
            State::EndLf => match byte {
                b'\n' => State::Done,
                _ => return Err(ChunkedError::LineEnd),
            },
            // `decode` handles these two without calling here.
            State::Data(_) | State::Done => self.state,
        })
    }
}

fn end_of_size_line(size: u64) -> State {
    if size == 0 {
        State::TrailerStart
    } else {
        State::Data(size)
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{ChunkedDecoder, ChunkedError};

    /// Feeds `input` in pieces of `piece` bytes; returns the bytes consumed once done.
    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<Option<usize>, ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut consumed = 0;
        for chunk in input.chunks(piece) {
            consumed += decoder.decode(chunk)?;
            if decoder.is_done() {
                return Ok(Some(consumed));
            }
        }
        Ok(None)
    }

    const BODY: &[u8] =
        b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn ends_at_the_right_byte_however_the_input_is_split() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for piece in 1..=input.len() {
            assert_eq!(
                decode_in_pieces(&input, piece),
                Ok(Some(BODY.len())),
                "{piece}"
            );
        }
    }

    #[test]
    fn waits_for_the_end() {
        for end in 0..BODY.len() {
            assert_eq!(decode_in_pieces(&BODY[..end], 3), Ok(None), "{end}");
        }
    }

    #[test]
    fn accepts_bare_lf_leading_zeros_and_no_trailers() {
        assert_eq!(decode_in_pieces(b"3\nabc\n0\n\n", 1), Ok(Some(9)));
        assert_eq!(
            decode_in_pieces(b"0003\r\nabc\r\n000\r\n\r\n", 2),
            Ok(Some(18))
        );
        assert_eq!(decode_in_pieces(b"0\r\n\r\n", 5), Ok(Some(5)));
    }

    #[test]
    fn refuses_broken_framing() {
        assert_eq!(decode_in_pieces(b"\r\n", 1), Err(ChunkedError::Size));
        assert_eq!(decode_in_pieces(b"g\r\n", 1), Err(ChunkedError::Size));
        assert_eq!(
            decode_in_pieces(b"3\r\nabcX", 1),
            Err(ChunkedError::DataEnd)
        );
        assert_eq!(decode_in_pieces(b"3\rX", 1), Err(ChunkedError::LineEnd));
        assert_eq!(
            decode_in_pieces(b"10000000000000000\r\n", 4),
            Err(ChunkedError::SizeOverflow)
        );
        assert_eq!(decode_in_pieces(b"0\r\n\rX", 1), Err(ChunkedError::LineEnd));
    }
}
