//! `fulcrum status`: asks the running process over its control socket and prints what it says,
//! in the shape users of the tool it replaces expect. See docs/cli.md.
//!
//! - `l4`: the L4 tier, as `ipvsadm -L -n`.
//! - `vrrp`: the VRRP instances, with what keepalived's data dump tells.
//! - `volume`: the replicated volumes, as `/proc/drbd`.
//! - `sync`: the directory sync sets.

pub(crate) mod l4;
pub(crate) mod sync;
pub(crate) mod volume;
pub(crate) mod vrrp;

use std::{path::Path, process::ExitCode};

use serde::de::DeserializeOwned;

use crate::control;

/// Finds the socket (`--socket`, else the config's `control_socket`), sends `request`, and
/// prints the JSON answer as is (`json`) or through `render`.
fn show<T: DeserializeOwned>(
    config_path: &Path,
    socket: Option<&Path>,
    request: &str,
    json: bool,
    render: impl FnOnce(T) -> String,
) -> ExitCode {
    let Some(path) = control::find_socket(config_path, socket) else {
        return ExitCode::FAILURE;
    };
    let answer = match control::ask(&path, request) {
        Ok(a) => a,
        Err(error) => {
            eprintln!(
                "fulcrum: cannot reach a running fulcrum at {}: {error} (is it running with this config?)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        print!("{answer}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<T>(&answer) {
        Ok(value) => {
            print!("{}", render(value));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "fulcrum: unexpected answer from {}: {error}",
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}
