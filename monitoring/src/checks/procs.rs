//! `procs`: check_procs. Counts the processes in `/proc`, optionally only those with a command
//! name (`-C`), a state (`-s`) or a substring of their arguments (`-a`), against `-w`/`-c`
//! ranges.

use std::path::Path;

use super::Outcome;
use super::options::{self, Spec, value};
use super::perfdata::Perf;
use super::range::Thresholds;

const NAME: &str = "procs";
const SPECS: &[Spec] = &[
    value('w', "warning"),
    value('c', "critical"),
    value('C', "command"),
    value('s', "state"),
    value('a', "argument-array"),
];

/// check_procs' options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub thresholds: Thresholds,
    /// `-C`: the command name exactly (the kernel's, at most 15 bytes, as `ps` shows it).
    pub command: Option<String>,
    /// `-s`: state letters (`R`, `S`, `D`, `Z`, `T`, ...); a process in any of them counts.
    pub states: Option<String>,
    /// `-a`: a substring of the command line.
    pub args: Option<String>,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let thresholds = Thresholds::parse(parsed.last('w'), parsed.last('c'))
            .map_err(|why| format!("{NAME}: {why}"))?;
        let states = parsed.last('s').map(str::to_owned);
        if let Some(s) = &states
            && (s.is_empty() || !s.chars().all(|c| c.is_ascii_alphabetic()))
        {
            return Err(options::bad(
                NAME,
                's',
                format!("`{s}` is not a list of state letters"),
            ));
        }
        Ok(Self {
            thresholds,
            command: parsed.last('C').map(str::to_owned),
            states,
            args: parsed.last('a').map(str::to_owned),
        })
    }

    fn matches(&self, p: &Process) -> bool {
        self.command.as_ref().is_none_or(|c| *c == p.command)
            && self.states.as_ref().is_none_or(|s| s.contains(p.state))
            && self
                .args
                .as_ref()
                .is_none_or(|a| p.args.contains(a.as_str()))
    }
}

/// One process as `ps` would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The kernel's command name (`comm`).
    pub command: String,
    /// The state letter of `/proc/PID/stat`.
    pub state: char,
    /// The command line, arguments joined by spaces; `[comm]` for a kernel thread, as `ps`.
    pub args: String,
}

impl Process {
    /// Builds a process from `/proc/PID/stat` and `/proc/PID/cmdline`.
    pub fn from_proc(stat: &str, cmdline: &[u8]) -> Option<Self> {
        // `PID (comm) S ...`: comm may itself hold spaces and parentheses, so it runs to the
        // last `)`.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let command = stat.get(open + 1..close)?.to_owned();
        let state = stat.get(close + 1..)?.trim_start().chars().next()?;
        let args = String::from_utf8_lossy(cmdline)
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let args = if args.is_empty() {
            format!("[{command}]")
        } else {
            args
        };
        Some(Self {
            command,
            state,
            args,
        })
    }
}

/// Lists `/proc` and judges the count.
pub async fn run(opts: &Options) -> Outcome {
    // A process stuck on a hung mount blocks the read of its cmdline.
    match super::blocking::run(|| list(Path::new("/proc"))).await {
        Ok(Ok(procs)) => evaluate(&procs, opts),
        Ok(Err(e)) => Outcome::unknown("PROCS", format!("cannot list /proc: {e}")),
        Err(e) => Outcome::unknown("PROCS", format!("cannot list /proc: {e}")),
    }
}

/// Every process under `proc` (a `/proc`-like directory).
pub fn list(proc: &Path) -> std::io::Result<Vec<Process>> {
    let mut procs = Vec::new();
    for entry in std::fs::read_dir(proc)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        // A process may end between the listing and the reads: it is simply not counted.
        let dir = entry.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if let Some(p) = Process::from_proc(&stat, &cmdline) {
            procs.push(p);
        }
    }
    Ok(procs)
}

/// Counts the matching processes and judges the count.
pub fn evaluate(procs: &[Process], opts: &Options) -> Outcome {
    let count = procs.iter().filter(|p| opts.matches(p)).count();
    #[allow(clippy::cast_precision_loss, reason = "a count of processes")]
    let state = opts.thresholds.state(count as f64);
    let noun = if count == 1 { "process" } else { "processes" };
    let mut filters = Vec::new();
    if let Some(s) = &opts.states {
        filters.push(format!("STATE = {s}"));
    }
    if let Some(c) = &opts.command {
        filters.push(format!("command name '{c}'"));
    }
    if let Some(a) = &opts.args {
        filters.push(format!("args '{a}'"));
    }
    let mut text = format!("PROCS {state}: {count} {noun}");
    if !filters.is_empty() {
        text.push_str(" with ");
        text.push_str(&filters.join(", "));
    }
    text.push(' ');
    let perf = [Perf::new("procs", count)
        .thresholds(&opts.thresholds)
        .min(0)];
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::checks::State;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn procs() -> Vec<Process> {
        vec![
            Process::from_proc("1 (systemd) S 0 1 1", b"/sbin/init\0splash\0").unwrap(),
            Process::from_proc("2 (kthreadd) S 0 0 0", b"").unwrap(),
            Process::from_proc("10 (bash) R 1 10", b"-bash\0").unwrap(),
            Process::from_proc("11 (bash) S 1 11", b"bash\0-c\0sleep 5\0").unwrap(),
            Process::from_proc("12 (my (odd) cmd) Z 1 12", b"").unwrap(),
        ]
    }

    #[test]
    fn parses_proc_entries() {
        let p = procs();
        assert_eq!(p[1].args, "[kthreadd]");
        assert_eq!(p[3].args, "bash -c sleep 5");
        assert_eq!(p[4].command, "my (odd) cmd");
        assert_eq!(p[4].state, 'Z');
        assert_eq!(Process::from_proc("garbage", b""), None);
        assert_eq!(Process::from_proc("1 (x)", b""), None);
    }

    #[test]
    fn options() {
        let o = opts(&["-w", "5", "-c", "1:", "-C", "bash", "-s", "RS", "-a", "x"]).unwrap();
        assert_eq!(o.command.as_deref(), Some("bash"));
        assert!(opts(&["-w", "5:1"]).unwrap_err().starts_with("procs: -w: "));
        assert!(opts(&["-s", "R1"]).is_err());
        assert!(opts(&["-s", ""]).is_err());
        assert!(opts(&["-C"]).is_err());
    }

    #[test]
    fn counts_and_filters() {
        let run = |list: &[&str]| evaluate(&procs(), &opts(list).unwrap());
        let out = run(&[]);
        assert_eq!(out.state, State::Ok);
        assert_eq!(out.output, "PROCS OK: 5 processes |procs=5;;;0");
        let out = run(&["-w", "1", "-c", "3", "-C", "bash"]);
        assert_eq!(out.state, State::Warning);
        assert_eq!(
            out.output,
            "PROCS WARNING: 2 processes with command name 'bash' |procs=2;1;3;0"
        );
        let out = run(&["-s", "RZ", "-C", "bash", "-a", "sleep", "-c", "1:"]);
        assert_eq!(out.state, State::Critical);
        assert_eq!(
            out.output,
            "PROCS CRITICAL: 0 processes with STATE = RZ, command name 'bash', args 'sleep' \
             |procs=0;;1:;0"
        );
        assert_eq!(
            run(&["-s", "RZ", "-C", "bash", "-c", "1:"]).state,
            State::Ok
        );
        let out = run(&["-a", "sleep"]);
        assert_eq!(
            out.output,
            "PROCS OK: 1 process with args 'sleep' |procs=1;;;0"
        );
        assert_eq!(run(&["-c", "@5:5"]).state, State::Critical);
    }

    #[test]
    fn lists_this_machine() {
        let procs = list(Path::new("/proc")).unwrap();
        let me = std::env::args().next().unwrap();
        assert!(
            procs.iter().any(|p| p.args.starts_with(&me)),
            "this test is listed"
        );
        assert!(list(Path::new("/nonexistent")).is_err());
    }
}
