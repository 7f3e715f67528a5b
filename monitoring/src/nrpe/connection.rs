//! One client connection, as NRPE's `handle_connection` serves it: one query read within
//! `connection_timeout`, one response in the query's version, then a close. A query that fails a
//! check gets no response at all (NRPE logs why and closes; `check_nrpe` then reports that it
//! received nothing), and is counted by reason.

use std::{net::IpAddr, sync::Arc, time::Duration};

use fulcrum_common::stats::Snapshot;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use super::{
    answer::answer,
    config::NrpeConfig,
    metrics::{Metrics, Refusal, state_label},
    packet::{self, DecodeError, HEADER_LEN, Kind, Packet},
    request::{self, Request, RequestError},
};

/// How long the client has, after the response, to close its side; reading its leftovers
/// (version 3's padding) before closing spares it a reset that could eat the response.
const LINGER: Duration = Duration::from_secs(2);

/// What every connection reads.
pub(crate) struct Shared {
    pub(crate) config: NrpeConfig,
    pub(crate) snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
    pub(crate) metrics: Metrics,
}

/// Why no request was read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The client closed before sending a byte: a port probe, not a refusal.
    #[error("closed before sending anything")]
    Nothing,
    #[error("connection closed after {got} of {expected} bytes")]
    Short { got: usize, expected: usize },
    #[error("read failed: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Packet(#[from] DecodeError),
    #[error("packet type {0:?} is not a query")]
    NotQuery(Kind),
    #[error("{0}")]
    Request(#[from] RequestError),
}

impl ReadError {
    fn refusal(&self) -> Option<Refusal> {
        Some(match self {
            Self::Nothing => return None,
            Self::Short { .. } | Self::Io(_) => Refusal::Length,
            Self::Packet(DecodeError::Version(_)) => Refusal::Version,
            Self::Packet(DecodeError::BufferLength(_) | DecodeError::Truncated { .. }) => {
                Refusal::Length
            }
            Self::Packet(DecodeError::Crc { .. }) => Refusal::Crc,
            Self::Packet(DecodeError::Type(_)) | Self::NotQuery(_) => Refusal::Type,
            Self::Request(RequestError::Empty) => Refusal::Empty,
            Self::Request(
                RequestError::ArgumentsNotAllowed
                | RequestError::EmptyArgument
                | RequestError::NotUtf8,
            ) => Refusal::Arguments,
            Self::Request(RequestError::Metachars | RequestError::CommandSubstitution) => {
                Refusal::Metachar
            }
        })
    }
}

/// Serves one connection whose request must be whole by `deadline`.
pub(crate) async fn serve<S>(mut stream: S, peer: IpAddr, deadline: Instant, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read = tokio::time::timeout_at(
        deadline,
        read_request(&mut stream, shared.config.allow_arguments),
    )
    .await;
    let (version, request) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(error)) => {
            match error.refusal() {
                Some(reason) => {
                    shared.metrics.refused(reason);
                    tracing::warn!(%peer, reason = reason.as_str(), %error, "nrpe request refused");
                }
                None => tracing::debug!(%peer, %error, "nrpe connection without a request"),
            }
            return;
        }
        Err(_) => {
            shared.metrics.refused(Refusal::Timeout);
            tracing::warn!(%peer, reason = "timeout", "nrpe request not received within connection_timeout");
            return;
        }
    };
    let started = Instant::now();
    let answer = answer(&request, &shared.config, &*shared.snapshot).await;
    shared.metrics.answered(&answer.label, answer.state);
    tracing::info!(
        %peer,
        command = %request.command,
        args = request.args.len(),
        version = %version,
        state = state_label(answer.state),
        elapsed_ms = started.elapsed().as_millis(),
        "nrpe request"
    );
    let response = packet::encode(&Packet {
        version,
        kind: Kind::Response,
        result_code: u16::from(answer.state.code()),
        text: answer.text,
    });
    let written = tokio::time::timeout(shared.config.connection_timeout, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    match written {
        Ok(Ok(())) => linger(&mut stream).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "nrpe response not sent"),
        Err(_) => tracing::debug!(%peer, "nrpe response not taken within connection_timeout"),
    }
}

/// Reads one query and checks it; gives its version (the response's) and the request.
async fn read_request<S>(
    stream: &mut S,
    allow_arguments: bool,
) -> Result<(packet::Version, Request), ReadError>
where
    S: AsyncRead + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    match read_full(stream, &mut header).await {
        Ok(0) => return Err(ReadError::Nothing),
        Ok(got) if got < HEADER_LEN => {
            return Err(ReadError::Short {
                got,
                expected: HEADER_LEN,
            });
        }
        Ok(_) => {}
        Err(e) => return Err(ReadError::Io(e)),
    }
    let remaining = packet::remaining_len(&header)?;
    let mut bytes = header.to_vec();
    bytes.resize(HEADER_LEN + remaining, 0);
    let got = read_full(stream, &mut bytes[HEADER_LEN..])
        .await
        .map_err(ReadError::Io)?;
    if got < remaining {
        return Err(ReadError::Short {
            got: HEADER_LEN + got,
            expected: bytes.len(),
        });
    }
    let packet = packet::decode(&bytes)?;
    if packet.kind != Kind::Query {
        return Err(ReadError::NotQuery(packet.kind));
    }
    Ok((
        packet.version,
        request::parse(&packet.text, allow_arguments)?,
    ))
}

/// Fills `buf` unless the stream ends first; gives the bytes read.
async fn read_full<S>(stream: &mut S, buf: &mut [u8]) -> std::io::Result<usize>
where
    S: AsyncRead + Unpin,
{
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Reads and drops what the client still sends until it closes, for at most [`LINGER`].
async fn linger<S>(stream: &mut S)
where
    S: AsyncRead + Unpin,
{
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
