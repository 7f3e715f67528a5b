//! Log output: text or JSON lines on stderr, filtered by `[global] log.level`, with the access
//! log (tracing target `access`) on or off by `log.access_log`.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{GlobalSection, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub(crate) fn init(global: &GlobalSection) {
    let mut filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| global.log.level.get_ref().clone());
    if !global.log.access_log {
        filter.push_str(",access=off");
    }
    // `log.level` was validated with the config; only a bad `RUST_LOG` can fail here.
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("ignoring RUST_LOG: {error}");
        EnvFilter::new(global.log.level.get_ref())
    });
    // Colours only for a person at a terminal, not in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match global.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(error) = result {
        eprintln!("logging already initialised: {error}");
    }
}
