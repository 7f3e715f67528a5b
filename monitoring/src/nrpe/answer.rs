//! What a request is answered, in NRPE 4.1's words: the version for `_NRPE_CHECK`, NRPE's texts
//! for an undefined command, a timeout or a silent plugin, else the command's output with its
//! exit code mapped as NRPE maps it (255 and anything above 3: UNKNOWN; killed by a signal:
//! CRITICAL).

use std::time::Duration;

use fulcrum_common::stats::Snapshot;

use super::{
    command::Resolved,
    config::NrpeConfig,
    exec::{self, Exit, NRPE_VERSION},
    metrics::UNDEFINED_COMMAND,
    request::{HELLO, Request},
};
use crate::checks::State;

/// The state and text sent back, and the `command` label it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) state: State,
    /// Not yet cut to the packet version's limit; that is the encoder's job.
    pub(crate) text: Vec<u8>,
    pub(crate) label: String,
}

/// Answers `request`; never fails: every problem is an UNKNOWN with NRPE's text.
pub(crate) async fn answer(
    request: &Request,
    config: &NrpeConfig,
    snapshot: &(dyn Fn() -> Snapshot + Send + Sync),
) -> Answer {
    let name = request.command.as_str();
    if name == HELLO {
        return Answer {
            state: State::Ok,
            text: format!("NRPE v{NRPE_VERSION}").into_bytes(),
            label: HELLO.to_owned(),
        };
    }
    let Some(command) = config.commands.get(name) else {
        return Answer {
            state: State::Unknown,
            text: format!("NRPE: Command '{name}' not defined").into_bytes(),
            label: UNDEFINED_COMMAND.to_owned(),
        };
    };
    let (state, text) = match command.resolve(&request.args) {
        Err(e) => (
            State::Unknown,
            format!("NRPE: Command '{name}' has invalid arguments: {e}").into_bytes(),
        ),
        Ok(Resolved::Builtin(builtin)) => {
            match tokio::time::timeout(config.command_timeout, builtin.run(snapshot)).await {
                Ok(outcome) => plugin_output(outcome.state, outcome.output.into_bytes()),
                Err(_) => timed_out(config.command_timeout),
            }
        }
        Ok(Resolved::Exec(words)) => match exec::run(&words, config.command_timeout).await {
            Exit::Finished {
                status,
                stdout,
                stderr,
            } => {
                if !stderr.is_empty() {
                    tracing::debug!(
                        command = name,
                        stderr = %String::from_utf8_lossy(&stderr),
                        "nrpe command wrote to stderr"
                    );
                }
                plugin_output(exit_state(status.code()), stdout)
            }
            Exit::TimedOut => timed_out(config.command_timeout),
            Exit::Failed(error) => {
                tracing::warn!(command = name, program = %words[0], %error, "nrpe command cannot start");
                (
                    State::Unknown,
                    format!("NRPE: Unable to run '{}': {error}", words[0]).into_bytes(),
                )
            }
        },
    };
    Answer {
        state,
        text,
        label: name.to_owned(),
    }
}

/// A plugin's state from its exit code (`None`: killed by a signal).
pub(crate) fn exit_state(code: Option<i32>) -> State {
    match code {
        Some(0) => State::Ok,
        Some(1) => State::Warning,
        Some(2) => State::Critical,
        // NRPE's pclose path: a plugin killed by a signal is CRITICAL.
        None => State::Critical,
        // 3, 255 (the old "-1 is UNKNOWN") and anything else out of bounds.
        Some(_) => State::Unknown,
    }
}

/// The output as NRPE sends it: up to its first NUL, one trailing newline taken off; no output at
/// all is UNKNOWN, whatever the exit code.
pub(crate) fn plugin_output(state: State, mut output: Vec<u8>) -> (State, Vec<u8>) {
    if let Some(nul) = output.iter().position(|&b| b == 0) {
        output.truncate(nul);
    }
    if output.is_empty() {
        return (State::Unknown, b"NRPE: Unable to read output".to_vec());
    }
    if output.last() == Some(&b'\n') {
        output.pop();
    }
    (state, output)
}

fn timed_out(timeout: Duration) -> (State, Vec<u8>) {
    let seconds = if timeout.subsec_nanos() == 0 {
        timeout.as_secs().to_string()
    } else {
        timeout.as_secs_f64().to_string()
    };
    (
        State::Unknown,
        format!("NRPE: Command timed out after {seconds} seconds").into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::BTreeMap;

    use super::*;
    use crate::nrpe::command::CommandLine;

    fn config(commands: &[(&str, &str)]) -> NrpeConfig {
        NrpeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            allowed_hosts: vec!["127.0.0.1/32".parse().unwrap()],
            tls: None,
            allow_arguments: true,
            command_timeout: Duration::from_millis(1500),
            connection_timeout: Duration::from_secs(300),
            commands: commands
                .iter()
                .map(|&(name, line)| (name.to_owned(), CommandLine::parse(line).unwrap()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    async fn ask(config: &NrpeConfig, command: &str, args: &[&str]) -> (State, String, String) {
        let request = Request {
            command: command.to_owned(),
            args: args.iter().map(|&a| a.to_owned()).collect(),
        };
        let answer = answer(&request, config, &Snapshot::default).await;
        (
            answer.state,
            String::from_utf8(answer.text).unwrap(),
            answer.label,
        )
    }

    #[tokio::test]
    async fn hello_and_undefined_are_nrpes() {
        let config = config(&[]);
        assert_eq!(
            ask(&config, "_NRPE_CHECK", &[]).await,
            (State::Ok, "NRPE v4.1.0".into(), "_NRPE_CHECK".into())
        );
        assert_eq!(
            ask(&config, "nosuch", &[]).await,
            (
                State::Unknown,
                "NRPE: Command 'nosuch' not defined".into(),
                "(undefined)".into()
            )
        );
    }

    #[tokio::test]
    async fn runs_commands_with_their_arguments() {
        let config = config(&[
            (
                "echo",
                "/bin/sh -c 'printf \"%s|%s\\n\" \"$0\" \"$1\"; exit 1' $ARG1$ $ARG2$",
            ),
            ("silent", "/bin/sh -c 'exit 0'"),
            ("code", "/bin/sh -c 'echo out; exit $0' $ARG1$"),
            ("timeout", "/bin/sleep 30"),
            ("missing", "/nonexistent/plugin"),
        ]);
        assert_eq!(
            ask(&config, "echo", &["a b", "c"]).await,
            (State::Warning, "a b|c".into(), "echo".into())
        );
        assert_eq!(
            ask(&config, "silent", &[]).await.1,
            "NRPE: Unable to read output"
        );
        for (code, state) in [
            ("0", State::Ok),
            ("2", State::Critical),
            ("3", State::Unknown),
            ("4", State::Unknown),
            ("255", State::Unknown),
        ] {
            assert_eq!(ask(&config, "code", &[code]).await.0, state, "exit {code}");
        }
        assert_eq!(
            ask(&config, "timeout", &[]).await.1,
            "NRPE: Command timed out after 1.5 seconds"
        );
        let missing = ask(&config, "missing", &[]).await;
        assert_eq!(missing.0, State::Unknown);
        assert!(
            missing
                .1
                .starts_with("NRPE: Unable to run '/nonexistent/plugin': "),
            "{}",
            missing.1
        );
    }

    #[test]
    fn output_is_cut_as_nrpe_cuts_it() {
        assert_eq!(
            plugin_output(State::Ok, b"a\n\n".to_vec()),
            (State::Ok, b"a\n".to_vec())
        );
        assert_eq!(
            plugin_output(State::Warning, b"a\0b".to_vec()),
            (State::Warning, b"a".to_vec())
        );
        // A lone newline is output (NRPE tests for emptiness before it strips the newline).
        assert_eq!(
            plugin_output(State::Critical, b"\n".to_vec()),
            (State::Critical, Vec::new())
        );
        assert_eq!(plugin_output(State::Ok, b"\0x".to_vec()).0, State::Unknown);
        assert_eq!(exit_state(None), State::Critical);
    }

    #[test]
    fn whole_seconds_print_as_nrpe_prints_them() {
        assert_eq!(
            timed_out(Duration::from_secs(60)).1,
            b"NRPE: Command timed out after 60 seconds"
        );
    }
}
