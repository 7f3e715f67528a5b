//! Runs a plugin as NRPE's `my_system` does, without its shell: in a process group of its own,
//! stdin from `/dev/null`, in `/`, with `NRPE_MULTILINESUPPORT=1` and `NRPE_PROGRAMVERSION` set,
//! stdout captured (NRPE's `popen` reads stdout only; stderr is logged here instead of lost), and
//! the whole group killed when it outlives `command_timeout` ([`fulcrum_common::child`]).

use std::time::Duration;

pub(crate) use fulcrum_common::child::Exit;
use fulcrum_common::child::{self, Caps, Io};
use tokio::process::Command;

use super::packet::MAX_TEXT;

/// The protocol version the plugin is told, as NRPE 4.1 tells it.
pub(super) const NRPE_VERSION: &str = "4.1.0";

/// How much of a plugin's stderr is kept for the log.
const MAX_STDERR: usize = 4096;

/// Runs `words` (the program, then its arguments; not empty) for at most `timeout`. At most
/// [`MAX_TEXT`] bytes of stdout are kept; the rest is read and dropped so the plugin never
/// blocks.
pub(crate) async fn run(words: &[String], timeout: Duration) -> Exit {
    let Some((program, args)) = words.split_first() else {
        return Exit::Failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no program",
        ));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir("/")
        .env("NRPE_MULTILINESUPPORT", "1")
        .env("NRPE_PROGRAMVERSION", NRPE_VERSION);
    let caps = Caps {
        stdout: MAX_TEXT,
        stderr: MAX_STDERR,
    };
    child::run(command, timeout, Io::output(caps)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn words(line: &[&str]) -> Vec<String> {
        line.iter().map(|&w| w.to_owned()).collect()
    }

    #[tokio::test]
    async fn runs_in_root_with_nrpes_environment() {
        let script = "echo $NRPE_PROGRAMVERSION $NRPE_MULTILINESUPPORT; pwd";
        let exit = run(&words(&["/bin/sh", "-c", script]), Duration::from_secs(10)).await;
        assert!(
            matches!(&exit, Exit::Finished { status, stdout, .. } if status.success() && stdout == b"4.1.0 1\n/\n"),
            "{exit:?}"
        );
    }

    #[tokio::test]
    async fn keeps_at_most_max_text_and_reads_the_rest() {
        let exit = run(
            &words(&[
                "/bin/sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' x; exit 1",
            ]),
            Duration::from_secs(10),
        )
        .await;
        let Exit::Finished { status, stdout, .. } = exit else {
            panic!("{exit:?}")
        };
        assert_eq!(status.code(), Some(1));
        assert_eq!(stdout.len(), MAX_TEXT);
    }

    #[tokio::test]
    async fn no_program_or_a_missing_one_is_not_started() {
        assert!(matches!(
            run(&[], Duration::from_secs(1)).await,
            Exit::Failed(_)
        ));
        let exit = run(&words(&["/nonexistent/plugin"]), Duration::from_secs(10)).await;
        assert!(matches!(exit, Exit::Failed(_)), "{exit:?}");
    }
}
