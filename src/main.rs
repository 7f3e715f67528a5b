//! The `fulcrum` binary: the command line, loading the one config file, and starting and wiring
//! the modules. Everything else lives in the module crates.

mod alerts;
mod appliance;
mod cli;
mod config;
mod control;
mod ctl;
mod demo;
mod logging;
mod malloc;
mod nrpe;
mod proxy_health;
mod restart;
mod run;
mod running_vrrp;
mod status;
mod syncs;
mod volumes;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any thread starts. `false` only off glibc, where there is nothing to fix.
    let _ = malloc::fix_mmap_threshold();
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run { config } => run::run(&config),
        cli::Command::Check { config } => check(&config),
        cli::Command::Demo { listen, admin } => demo::demo(listen, admin),
        cli::Command::Status {
            what:
                cli::StatusCommand::L4 {
                    config,
                    socket,
                    stats,
                    connections,
                    json,
                },
        } => {
            let view = match (stats, connections, json) {
                (true, _, _) => status::l4::View::Stats,
                (_, true, _) => status::l4::View::Connections,
                (_, _, true) => status::l4::View::Json,
                _ => status::l4::View::Table,
            };
            status::l4::l4(&config, socket.as_deref(), view)
        }
        cli::Command::Status {
            what:
                cli::StatusCommand::Vrrp {
                    config,
                    socket,
                    json,
                },
        } => status::vrrp::vrrp(&config, socket.as_deref(), json),
        cli::Command::Status {
            what:
                cli::StatusCommand::Volume {
                    config,
                    socket,
                    json,
                },
        } => status::volume::volume(&config, socket.as_deref(), json),
        cli::Command::Status {
            what:
                cli::StatusCommand::Sync {
                    config,
                    socket,
                    json,
                },
        } => status::sync::sync(&config, socket.as_deref(), json),
        cli::Command::Volume {
            config,
            socket,
            action,
        } => ctl::ctl(&config, socket.as_deref(), &action.request()),
        cli::Command::Ctl {
            config,
            socket,
            request,
        } => ctl::ctl(&config, socket.as_deref(), &request.join(" ")),
        cli::Command::Version => {
            println!("fulcrum {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// `fulcrum check`: exit 0 with a summary line, or 1 with every error listed.
fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            println!("{}", loaded.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.errors.len());
            ExitCode::FAILURE
        }
    }
}
