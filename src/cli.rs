//! The command line (see docs/cli.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default config file, relative to where fulcrum is started.
pub(crate) const DEFAULT_CONFIG: &str = "etc/fulcrum.toml";

/// Fulcrum: a high-availability load balancer appliance in one binary.
#[derive(Debug, Parser)]
#[command(name = "fulcrum", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the appliance. SIGHUP reloads the config; SIGTERM/SIGINT stop gracefully.
    Run {
        /// Config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 with a summary, or 1 listing every error.
    Check {
        /// Config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
