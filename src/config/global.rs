//! `[global]`: settings of the whole node.

use std::path::PathBuf;

use fulcrum_common::{Duration, Spanned};
use serde::Deserialize;

/// `[global]` as users write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GlobalSection {
    /// This node's name in logs, alerts and peers' views; defaults to the host name.
    pub(crate) node: Option<String>,
    /// Persistent state: volume metadata, sync indexes.
    pub(crate) state_dir: PathBuf,
    /// Worker threads; 0 = one per CPU core.
    pub(crate) threads: usize,
    /// Client connections the whole process accepts at once; 0 = no limit.
    pub(crate) max_connections: u32,
    /// How long a shutdown (SIGTERM/SIGINT) lets requests in flight finish.
    pub(crate) grace: Duration,
    pub(crate) log: LogSection,
}

impl Default for GlobalSection {
    fn default() -> Self {
        Self {
            node: None,
            state_dir: PathBuf::from("/var/lib/fulcrum"),
            threads: 0,
            max_connections: 100_000,
            grace: Duration::from_secs(10),
            log: LogSection::default(),
        }
    }
}

/// `log = { ... }` of `[global]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    pub(crate) format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `fulcrum_proxy=debug,info`, ...
    pub(crate) level: Spanned<String>,
    /// One line per request, HAProxy `httplog` style.
    pub(crate) access_log: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: Spanned::new(0..0, "info".to_owned()),
            access_log: true,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}
