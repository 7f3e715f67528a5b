//! Log output: text or JSON lines on stderr, filtered by `[global] log.level`, with the access
//! log (tracing target `access`) on or off by `log.access_log`.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{GlobalSection, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub(crate) fn init(global: &GlobalSection) {
    let mut filter = std::env::var("RUST_LOG").unwrap_or_else(|_| global.log.level.clone());
    if !global.log.access_log {
        filter.push_str(",access=off");
    }
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match global.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(error) = result {
        eprintln!("logging already initialised: {error}");
    }
}
