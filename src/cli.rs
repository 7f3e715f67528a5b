//! The command line (see docs/cli.md).

use std::{net::SocketAddr, path::PathBuf};

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
    /// Run a demo site on loopback, with no root and no config: two web servers and an upload
    /// server behind the L7 tier, cookie persistence, health checks and the stats page.
    /// Ctrl-C (or SIGTERM) stops it.
    Demo {
        /// Address of the site; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address of the stats page; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8404")]
        admin: SocketAddr,
    },
    /// Show the running process's state, over its control socket.
    Status {
        #[command(subcommand)]
        what: StatusCommand,
    },
    /// Act on the running process over its control socket, with HAProxy's runtime API:
    /// `fulcrum ctl set server web/s1 state drain`, `fulcrum ctl show stat`, `fulcrum ctl help`.
    Ctl {
        /// Config file whose `[global] control_socket` names the socket.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket to use, instead of the one the config names.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The request, e.g. `server set-state web/s1 drain` or `show servers state`.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        request: Vec<String>,
    },
    /// Act on a replicated volume with `drbdadm`'s verbs, over the control socket:
    /// `fulcrum volume connect nfs --discard-my-data`, `fulcrum volume primary nfs --force`.
    Volume {
        /// Config file whose `[global] control_socket` names the socket.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket to use, instead of the one the config names.
        #[arg(long)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        action: VolumeCommand,
    },
    /// Print the version.
    Version,
}

/// What `fulcrum status` shows.
#[derive(Debug, Subcommand)]
pub(crate) enum StatusCommand {
    /// The L4 tier, as `ipvsadm -L -n`: virtual services, real servers, weights, connections.
    L4 {
        /// Config file whose `[global] control_socket` names the socket.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket to ask, instead of the one the config names.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Connections and bytes since start (`ipvsadm -L -n --stats`).
        #[arg(long, conflicts_with_all = ["connections", "json"])]
        stats: bool,
        /// One line per open connection (`ipvsadm -L -n -c`).
        #[arg(long, conflicts_with = "json")]
        connections: bool,
        /// The whole state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The replicated volumes, as `/proc/drbd`: connection, roles, disk states, traffic,
    /// out-of-sync data and resync progress.
    Volume {
        /// Config file whose `[global] control_socket` names the socket.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket to ask, instead of the one the config names.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The volumes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The directory sync sets: peers, pending changes, last sync, conflicts, transfers.
    Sync {
        /// Config file whose `[global] control_socket` names the socket.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket to ask, instead of the one the config names.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The sync sets as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The VRRP instances: state, priorities, master, VIPs, advert counters.
    Vrrp {
        /// Config file whose `[global] control_socket` names the socket.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket to ask, instead of the one the config names.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The instances as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `fulcrum volume` does, with `drbdadm`'s verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum VolumeCommand {
    /// Promote to primary: refused unless the local data is UpToDate and the peer is not
    /// primary; `--force` promotes anyway and starts a new generation.
    Primary {
        #[arg(value_parser = volume_name)]
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Demote to secondary, after the NBD clients are drained.
    Secondary {
        #[arg(value_parser = volume_name)]
        name: String,
    },
    /// Leave StandAlone and connect to the peer; `--discard-my-data` resolves a split brain by
    /// making this side take the peer's data.
    Connect {
        #[arg(value_parser = volume_name)]
        name: String,
        #[arg(long)]
        discard_my_data: bool,
    },
    /// Drop the link and stay StandAlone.
    Disconnect {
        #[arg(value_parser = volume_name)]
        name: String,
    },
    /// Compare both copies online.
    Verify {
        #[arg(value_parser = volume_name)]
        name: String,
    },
}

/// A volume name as the control socket request carries it: the request is split on spaces, so
/// `"nfs --discard-my-data"` (a script's `"$1"`, say) would otherwise add an option.
fn volume_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.starts_with('-') || name.chars().any(|c| c.is_whitespace()) {
        return Err("a volume name is one word, not starting with `-`".to_owned());
    }
    Ok(name.to_owned())
}

impl VolumeCommand {
    /// The control socket request.
    pub(crate) fn request(&self) -> String {
        match self {
            Self::Primary { name, force } => {
                format!(
                    "volume primary {name}{}",
                    if *force { " --force" } else { "" }
                )
            }
            Self::Secondary { name } => format!("volume secondary {name}"),
            Self::Connect {
                name,
                discard_my_data,
            } => format!(
                "volume connect {name}{}",
                if *discard_my_data {
                    " --discard-my-data"
                } else {
                    ""
                }
            ),
            Self::Disconnect { name } => format!("volume disconnect {name}"),
            Self::Verify { name } => format!("volume verify {name}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn demo_listens_on_loopback_by_default() {
        let cli = Cli::try_parse_from(["fulcrum", "demo"]).unwrap();
        let Command::Demo { listen, admin } = cli.command else {
            panic!("not demo: {:?}", cli.command);
        };
        assert_eq!(listen.to_string(), "127.0.0.1:8080");
        assert_eq!(admin.to_string(), "127.0.0.1:8404");
    }

    // Input: a volume name with an option inside, as a script passing "$1" would send it.
    // Output: refused, where it used to reach the socket as `volume connect nfs
    // --discard-my-data`; a plain name still gives the plain request.
    #[test]
    fn a_volume_name_cannot_carry_an_option() {
        let parsed = Cli::try_parse_from(["fulcrum", "volume", "connect", "nfs --discard-my-data"]);
        assert!(parsed.is_err(), "{parsed:?}");
        assert!(Cli::try_parse_from(["fulcrum", "volume", "verify", "--", "-x"]).is_err());
        let cli = Cli::try_parse_from(["fulcrum", "volume", "connect", "nfs"]).unwrap();
        let Command::Volume { action, .. } = cli.command else {
            panic!("not volume: {:?}", cli.command);
        };
        assert_eq!(action.request(), "volume connect nfs");
    }
}
