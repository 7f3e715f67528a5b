//! The NRPE agent of `[nrpe]`: answers Nagios' `check_nrpe` (4.1, packet versions 2, 3 and 4,
//! plain TCP with `-n` or TLS) by running the configured commands, as NRPE's daemon does.
//!
//! - [`packet`]: the wire format (with its diagrams), [`request`]: the query checks NRPE makes
//!   (metacharacters, arguments, `$(`), [`command`]: a command line and its `$ARGn$` macros.
//! - [`NrpeSection::build`] checks the config into an [`NrpeConfig`]; [`NrpeServer::start`]
//!   serves it and counts `fulcrum_nrpe_requests_total{command, state}` and
//!   `fulcrum_nrpe_refused_total{reason}`.
//!
//! **No shell runs unless a command line asks for one.** A line is split into words once, at
//! config time, honouring shell quotes; a request's arguments are put inside those words, so an
//! argument can never add a word, a redirection or a second command. A user who wants a shell
//! writes it: `check_x = "/bin/sh -c 'some | pipeline $ARG1$'"`; there, as with NRPE, arguments are
//! shell text, which NRPE's metacharacter filter and its ban on `$(` guard. A line starting with
//! the word `builtin` runs one of [`crate::checks`] in process instead.
//!
//! Where this differs from NRPE 4.1's daemon, on purpose: version 3 queries are answered (4.1
//! refuses them; `check_nrpe -3` then falls back to version 2); host names in `allowed_hosts` are
//! refused at config time rather than resolved; an empty argument (`cmd!!x`) is refused rather
//! than skipped; output over 64 KiB is cut at 65535 bytes (4.1's read loop happens to stop at
//! 65504); anonymous-DH TLS (`check_nrpe -d 2`) is not available in rustls.

mod answer;
pub mod command;
mod config;
mod connection;
mod exec;
mod metrics;
pub mod packet;
#[cfg(test)]
mod proptests;
pub mod request;
mod server;
mod tls;

pub use self::{
    config::{NrpeConfig, NrpeSection, NrpeTlsSection},
    metrics::{Refusal, UNDEFINED_COMMAND},
    server::{Error, NrpeServer},
    tls::{TlsError, TlsFiles},
};
