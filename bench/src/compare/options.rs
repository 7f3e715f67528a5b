//! What a comparison is asked to do: the binaries, the scenarios and how long and hard to run
//! them. [`CompareOptions::new`] has the full-length defaults, [`CompareOptions::quick`] the
//! smoke-test ones.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::scenario::Scenario;

/// How to run a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// The `fulcrum` binary under test.
    pub fulcrum: PathBuf,
    /// The `haproxy` binary; `None` looks in `PATH`, then `/usr/sbin` and `/usr/local/sbin`.
    pub haproxy: Option<PathBuf>,
    /// The `fulcrum-bench` binary that runs the origins (`origin`).
    pub bench: PathBuf,
    /// What runs the load (`PROGRAM load ... --json`); normally the same as `bench`.
    pub load_cmd: PathBuf,
    /// In report order.
    pub scenarios: Vec<Scenario>,
    /// Rounds per scenario, each measuring both proxies: Fulcrum first in odd rounds, HAProxy
    /// first in even ones.
    pub rounds: usize,
    /// Length of each measured run.
    pub duration: Duration,
    /// Length of the warm-up before each saturation run; zero skips it.
    pub warmup: Duration,
    /// Load generator connections.
    pub connections: usize,
    /// Idle keep-alive connections for the memory measurement; zero skips it.
    pub idle_connections: usize,
    /// Bytes of each `tcp-bulk` stream.
    pub bulk_size: u64,
    /// The CPU the proxies run on.
    pub proxy_cpu: usize,
    /// The CPU the origins and the load generator run on.
    pub load_cpu: usize,
    /// Where the result files go; `None` writes none.
    pub out: Option<PathBuf>,
    /// Sized for a smoke test; recorded so a table from it is never mistaken for a result.
    pub quick: bool,
    /// The command line recorded in the report.
    pub command: String,
}

/// The knobs that `--quick` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub idle_connections: usize,
    pub bulk_size: u64,
}

impl Sizing {
    /// A real comparison.
    pub const FULL: Self = Self {
        rounds: 3,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        connections: 64,
        idle_connections: 10_000,
        bulk_size: 1 << 30,
    };

    /// A smoke test: seconds, not minutes.
    pub const QUICK: Self = Self {
        rounds: 1,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        connections: 16,
        idle_connections: 500,
        bulk_size: 16 << 20,
    };
}

impl CompareOptions {
    /// Full-length defaults: every scenario, results into `bench/results`.
    pub fn new(bench: PathBuf, fulcrum: PathBuf) -> Self {
        Self::sized(bench, fulcrum, Sizing::FULL, Scenario::ALL.to_vec(), false)
    }

    /// Smoke-test defaults: [`Scenario::QUICK`], one short round, no files written.
    pub fn quick(bench: PathBuf, fulcrum: PathBuf) -> Self {
        let mut options = Self::sized(
            bench,
            fulcrum,
            Sizing::QUICK,
            Scenario::QUICK.to_vec(),
            true,
        );
        options.out = None;
        options
    }

    fn sized(
        bench: PathBuf,
        fulcrum: PathBuf,
        sizing: Sizing,
        scenarios: Vec<Scenario>,
        quick: bool,
    ) -> Self {
        Self {
            fulcrum,
            haproxy: None,
            load_cmd: bench.clone(),
            bench,
            scenarios,
            rounds: sizing.rounds,
            duration: sizing.duration,
            warmup: sizing.warmup,
            connections: sizing.connections,
            idle_connections: sizing.idle_connections,
            bulk_size: sizing.bulk_size,
            proxy_cpu: 0,
            load_cpu: 1,
            out: Some(PathBuf::from("bench/results")),
            quick,
            command: shell_command_line(std::env::args()),
        }
    }

    /// Refuses settings that cannot produce a measurement.
    pub fn validate(&self, cores: usize) -> anyhow::Result<()> {
        if self.scenarios.is_empty() {
            bail!("no scenario selected");
        }
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if self.duration.is_zero() {
            bail!("--duration must be above zero");
        }
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.bulk_size == 0 && self.scenarios.iter().any(|s| s.bulk()) {
            bail!("--bulk-size must be above zero for tcp-bulk");
        }
        for (flag, cpu) in [
            ("--proxy-cpu", self.proxy_cpu),
            ("--load-cpu", self.load_cpu),
        ] {
            if cpu >= cores {
                bail!("{flag} {cpu}: this machine has CPUs 0 to {}", cores - 1);
            }
        }
        Ok(())
    }
}

/// `args` as one line a POSIX shell reads back to the same words.
pub fn shell_command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{CompareOptions, shell_command_line};

    #[test]
    fn quoting() {
        let args = [
            "fulcrum-bench",
            "compare",
            "--out",
            "my results",
            "it's",
            "",
        ];
        assert_eq!(
            shell_command_line(args.map(String::from)),
            r#"fulcrum-bench compare --out 'my results' 'it'\''s' ''"#
        );
    }

    #[test]
    fn validation() {
        let options = CompareOptions::quick(PathBuf::from("b"), PathBuf::from("f"));
        assert!(options.validate(2).is_ok());
        assert!(options.validate(1).is_err(), "CPU 1 does not exist");
        let mut none = options.clone();
        none.rounds = 0;
        assert!(none.validate(2).is_err());
        let mut empty_stream = options.clone();
        empty_stream.bulk_size = 0;
        assert!(empty_stream.validate(2).is_err());
        empty_stream.scenarios.retain(|s| !s.bulk());
        assert!(empty_stream.validate(2).is_ok(), "no tcp-bulk, no stream");
    }
}
