//! The config vocabulary every Fulcrum crate shares, so each module crate can own its section
//! of the one config file without depending on another module.
//!
//! - [`Duration`] and [`Size`]: values with units (`"250ms"`, `"512KiB"`), as users write them.
//! - [`ConfigError`]: an error a section found, with the byte span in the file it came from; the
//!   binary turns spans into `file:line:column` and a dotted key.
//!   [`list_or_none`] lists, in such a message, what is defined.
//! - [`secret`]: a secret given inline or through its `*_file` twin.
//! - [`UtcTime`]: calendar dates for logs and reports, without a date library.
//! - [`stats`] and [`action`]: the statistics every module reports and the actions operators
//!   take on servers, shared by the proxy (which fills and obeys them) and the monitoring crate
//!   (which renders and sends them).
//! - [`child`]: a program run with a deadline, its process group killed past it (NRPE
//!   commands, external health checks, VRRP scripts, alert commands).
//! - [`tls`]: a TLS client's verifier that takes any certificate (`https` health checks, the
//!   benchmark's `--insecure`).
//! - [`activity`] and [`http_message`]: a connection's idle clock and a lenient HTTP/1 response
//!   reader, which the proxy and the monitoring crate both need.

pub mod action;
pub mod activity;
pub mod child;
mod error;
pub mod fingerprint;
pub mod http_message;
pub mod net;
pub mod secret;
pub mod stats;
pub mod tls;
mod units;
mod utc;

pub use error::{ConfigError, list_or_none};
pub use serde_spanned::Spanned;
pub use units::{Duration, Size};
pub use utc::UtcTime;
