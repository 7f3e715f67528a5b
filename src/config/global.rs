//! `[global]`: settings of the whole node.

use std::path::PathBuf;

use fulcrum_common::{Duration, Spanned};
use serde::Deserialize;

/// The most worker threads `threads` may ask for (HAProxy's `nbthread` stops at 4096 on the
/// largest machines): more would fail the start on the thread limit, or run hundreds of idle
/// threads on a few cores.
pub(crate) const MAX_THREADS: usize = 1024;

/// The largest `spread_checks`, HAProxy's.
pub(crate) const MAX_SPREAD_CHECKS: u32 = 50;

/// `[global]` as users write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GlobalSection {
    /// This node's name in logs, alerts and peers' views; defaults to the host name. Checked
    /// by [`check_node`].
    pub(crate) node: Option<Spanned<String>>,
    /// Persistent state: volume metadata, sync indexes.
    pub(crate) state_dir: PathBuf,
    /// Worker threads; 0 = one per CPU core; at most [`MAX_THREADS`].
    pub(crate) threads: Spanned<usize>,
    /// Client connections the whole process accepts at once; 0 = no limit.
    pub(crate) max_connections: u32,
    /// How long a shutdown (SIGTERM/SIGINT) lets requests in flight finish.
    pub(crate) grace: Duration,
    /// Percent by which each health and agent check interval is randomly shortened or
    /// lengthened (HAProxy's `spread-checks`), 0..=50; checked in `load`.
    pub(crate) spread_checks: Spanned<u32>,
    pub(crate) log: LogSection,
    /// The local control socket `fulcrum status` talks to; empty: the default of
    /// [`default_control_socket`]. Relative paths are taken from the config file's directory.
    pub(crate) control_socket: PathBuf,
}

impl GlobalSection {
    /// The keys only a start reads, to tell a reload that changed them (it cannot apply them;
    /// `max_connections` it does apply).
    pub(crate) fn restart_only(&self) -> impl PartialEq + use<'_> {
        (
            &self.node,
            &self.state_dir,
            *self.threads.get_ref(),
            self.grace,
            (
                self.log.format,
                self.log.level.get_ref(),
                self.log.access_log,
            ),
            self.control_socket(),
        )
    }

    /// The control socket this config names, or the default.
    pub(crate) fn control_socket(&self) -> PathBuf {
        if self.control_socket.as_os_str().is_empty() {
            default_control_socket()
        } else {
            self.control_socket.clone()
        }
    }
}

/// The longest node name: what a volume's peer protocol carries in its Hello.
pub(crate) const MAX_NODE_NAME: usize = 255;

/// Why `node` cannot name this node, if it cannot: empty, longer than [`MAX_NODE_NAME`] bytes,
/// or holding a control character (it goes into logs, alerts, conflict copies' names and the
/// peers' messages).
pub(crate) fn check_node(node: &str) -> Option<String> {
    if node.trim().is_empty() {
        Some("node is empty: name this node, or leave `node` out for the host name".to_owned())
    } else if node.len() > MAX_NODE_NAME {
        Some(format!(
            "node is {} bytes long: at most {MAX_NODE_NAME}, what a volume's peer protocol carries",
            node.len()
        ))
    } else if node.chars().any(char::is_control) {
        Some("node holds a control character (a newline, a tab, ...): use a plain name".to_owned())
    } else {
        None
    }
}

/// `/run/fulcrum.sock` for root, as daemons keep theirs; otherwise the user's runtime directory
/// (`$XDG_RUNTIME_DIR/fulcrum.sock`), or `/tmp/fulcrum-UID.sock` without one.
pub(crate) fn default_control_socket() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if uid == Some(0) {
        return PathBuf::from("/run/fulcrum.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("fulcrum.sock"),
        _ => PathBuf::from(format!("/tmp/fulcrum-{}.sock", uid.unwrap_or(0))),
    }
}

impl GlobalSection {
    /// `node`, else the host name (from `/proc/sys/kernel/hostname`), else `fulcrum`.
    pub(crate) fn node_name(&self) -> String {
        self.node
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "fulcrum".to_owned())
            })
    }
}

impl Default for GlobalSection {
    fn default() -> Self {
        Self {
            node: None,
            state_dir: PathBuf::from("/var/lib/fulcrum"),
            threads: Spanned::new(0..0, 0),
            max_connections: 100_000,
            grace: Duration::from_secs(10),
            spread_checks: Spanned::new(0..0, 0),
            log: LogSection::default(),
            control_socket: PathBuf::new(),
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
