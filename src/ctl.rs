//! `fulcrum ctl`: sends one request line to the running process's control socket and prints the
//! answer; exits 1 when the process refused it (see docs/cli.md).

use std::{io::Write, path::Path, process::ExitCode};

use crate::control;

/// Sends `request`, prints the answer.
pub(crate) fn ctl(config_path: &Path, socket: Option<&Path>, request: &str) -> ExitCode {
    let Some(path) = control::find_socket(config_path, socket) else {
        return ExitCode::FAILURE;
    };
    match control::ask(&path, request) {
        // Every answer is at least a line: none means the process closed the connection
        // first (it is stopping), and whatever was asked may not have been done.
        Ok(answer) if answer.is_empty() => {
            eprintln!(
                "fulcrum: the running fulcrum at {} closed the connection without an answer (is it stopping?)",
                path.display()
            );
            ExitCode::FAILURE
        }
        Ok(answer) => match answer.strip_prefix(control::ERROR_PREFIX) {
            Some(error) => {
                eprint!("fulcrum: {error}");
                ExitCode::FAILURE
            }
            None => {
                // A closed stdout (`| head`) is not an error worth a panic.
                let _ = std::io::stdout().write_all(answer.as_bytes());
                ExitCode::SUCCESS
            }
        },
        Err(error) => {
            eprintln!(
                "fulcrum: cannot reach a running fulcrum at {}: {error} (is it running with this config?)",
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}
