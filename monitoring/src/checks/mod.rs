//! Built-in checks for the NRPE agent: check_load, check_disk, check_swap, check_procs,
//! check_users, check_tcp and check_http done in-process with the plugins' options and output,
//! and checks of the appliance itself (VRRP, backends, volumes, sync sets) read from a
//! [`Snapshot`].
//!
//! Thresholds use monitoring-plugins' range syntax ([`range`]), output carries perfdata as the
//! plugin guidelines define it ([`perfdata`]). Each check keeps reading its data apart from
//! judging it, so tests feed it `/proc`-like text or a made-up snapshot.

pub mod backends;
pub mod blocking;
pub mod connect;
pub mod disk;
pub mod free;
pub mod http;
pub use fulcrum_common::http_message;
pub mod load;
pub mod options;
pub mod perfdata;
pub mod procs;
pub mod range;
pub mod swap;
pub mod sync;
pub mod tcp;
pub mod users;
pub mod volume;
pub mod vrrp;

use fulcrum_common::stats::Snapshot;

use self::perfdata::Perf;

/// A plugin's result, as Nagios reads it: the exit code and the text (with perfdata after `|`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// The plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    /// The word plugins print: `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// The worse of two states, in monitoring-plugins' `max_state_alt` order: CRITICAL, then
    /// WARNING, then UNKNOWN, then OK (not the derived order, where UNKNOWN is last).
    pub fn worst(self, other: Self) -> Self {
        let rank = |s: Self| match s {
            Self::Ok => 0,
            Self::Unknown => 1,
            Self::Warning => 2,
            Self::Critical => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What a check answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    /// The whole text: `LOAD OK - total load average: ...|load1=0.100;15.000;30.000;0 ...`.
    pub output: String,
}

impl Outcome {
    /// `text` then the perfdata after `|` (no `|` when there is none).
    pub fn new(state: State, text: String, perf: &[Perf]) -> Self {
        let output = if perf.is_empty() {
            text
        } else {
            format!("{text}|{}", perfdata::join(perf))
        };
        Self { state, output }
    }

    /// `PREFIX UNKNOWN - why`, for a check that could not read its data.
    pub fn unknown(prefix: &str, why: impl std::fmt::Display) -> Self {
        Self {
            state: State::Unknown,
            output: format!("{prefix} UNKNOWN - {why}"),
        }
    }
}

/// An I/O error as plugins print it (`Connection refused`), without Rust's `(os error 111)`.
fn io_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Text from the network made safe for a plugin's first line: control characters become
/// spaces (runs of them one space), `|` (which would start perfdata) becomes `/`, and more
/// than 200 characters are cut.
fn one_line(text: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    for word in text.split(|c: char| c.is_control() || c.is_whitespace()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.replace('|', "/"));
    }
    match out.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &out[..at]),
        None => out,
    }
}

/// The built-in checks' names, as NRPE commands give them (`check_load` works too).
pub const NAMES: &[&str] = &[
    "load", "disk", "swap", "procs", "users", "tcp", "http", "vrrp", "backends", "volume", "sync",
];

/// A built-in check with its options, parsed from a command line.
#[derive(Debug, Clone)]
pub struct Builtin {
    check: Check,
}

/// Each check with its parsed options.
#[derive(Debug, Clone)]
enum Check {
    Load(load::Options),
    Disk(disk::Options),
    Swap(swap::Options),
    Procs(procs::Options),
    Users(users::Options),
    Tcp(tcp::Options),
    Http(http::Options),
    Vrrp(vrrp::Options),
    Backends(backends::Options),
    Volume(volume::Options),
    Sync(sync::Options),
}

impl Builtin {
    /// Parses `args` (`["load", "-w", "15,10,5", ...]`: the check's name, then its options).
    /// The error is one line naming the check and the bad option.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let Some((name, rest)) = args.split_first() else {
            return Err("no check named".to_owned());
        };
        let short = name.strip_prefix("check_").unwrap_or(name);
        let check = match short {
            "load" => Check::Load(load::Options::parse(rest)?),
            "disk" => Check::Disk(disk::Options::parse(rest)?),
            "swap" => Check::Swap(swap::Options::parse(rest)?),
            "procs" => Check::Procs(procs::Options::parse(rest)?),
            "users" => Check::Users(users::Options::parse(rest)?),
            "tcp" => Check::Tcp(tcp::Options::parse(rest)?),
            "http" => Check::Http(http::Options::parse(rest)?),
            "vrrp" => Check::Vrrp(vrrp::Options::parse(rest)?),
            "backends" => Check::Backends(backends::Options::parse(rest)?),
            "volume" => Check::Volume(volume::Options::parse(rest)?),
            "sync" => Check::Sync(sync::Options::parse(rest)?),
            _ => {
                return Err(format!(
                    "unknown check `{name}` (built-in checks: {})",
                    NAMES.join(", ")
                ));
            }
        };
        Ok(Self { check })
    }

    /// The check's name, without `check_`.
    pub fn name(&self) -> &'static str {
        match self.check {
            Check::Load(_) => "load",
            Check::Disk(_) => "disk",
            Check::Swap(_) => "swap",
            Check::Procs(_) => "procs",
            Check::Users(_) => "users",
            Check::Tcp(_) => "tcp",
            Check::Http(_) => "http",
            Check::Vrrp(_) => "vrrp",
            Check::Backends(_) => "backends",
            Check::Volume(_) => "volume",
            Check::Sync(_) => "sync",
        }
    }

    /// Runs the check; `snapshot` gives the appliance's state for the appliance checks. A check
    /// that cannot read its data answers UNKNOWN; `tcp` and `http` end within their `-t`.
    pub async fn run(&self, snapshot: &(dyn Fn() -> Snapshot + Send + Sync)) -> Outcome {
        match &self.check {
            Check::Load(o) => load::run(o).await,
            Check::Disk(o) => disk::run(o).await,
            Check::Swap(o) => swap::run(o).await,
            Check::Procs(o) => procs::run(o).await,
            Check::Users(o) => users::run(o).await,
            Check::Tcp(o) => tcp::run(o).await,
            Check::Http(o) => http::run(o).await,
            Check::Vrrp(o) => vrrp::evaluate(&snapshot().vrrp, o),
            Check::Backends(o) => backends::evaluate(&snapshot().proxies, o),
            Check::Volume(o) => volume::evaluate(&snapshot().volumes, o),
            Check::Sync(o) => sync::evaluate(&snapshot().syncs, o),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_every_check_by_name() {
        for (line, name) in [
            (&["load", "-w", "1", "-c", "2"][..], "load"),
            (&["check_disk", "-w", "10%"], "disk"),
            (&["swap"], "swap"),
            (&["procs"], "procs"),
            (&["users"], "users"),
            (&["tcp", "-H", "h", "-p", "1"], "tcp"),
            (&["check_http", "-H", "h"], "http"),
            (&["vrrp"], "vrrp"),
            (&["backends"], "backends"),
            (&["volume", "nfs"], "volume"),
            (&["sync", "www"], "sync"),
        ] {
            assert_eq!(Builtin::parse(&args(line)).unwrap().name(), name);
        }
        assert_eq!(Builtin::parse(&[]).unwrap_err(), "no check named");
        assert!(
            Builtin::parse(&args(&["nope"]))
                .unwrap_err()
                .starts_with("unknown check `nope`")
        );
        assert_eq!(
            Builtin::parse(&args(&["load", "-w", "1"])).unwrap_err(),
            "load: -c is required"
        );
    }

    #[test]
    fn worst_state() {
        assert_eq!(State::Ok.worst(State::Unknown), State::Unknown);
        assert_eq!(State::Unknown.worst(State::Warning), State::Warning);
        assert_eq!(State::Critical.worst(State::Unknown), State::Critical);
        assert_eq!(State::Warning.worst(State::Ok), State::Warning);
    }

    #[test]
    fn network_text_on_one_line() {
        assert_eq!(one_line("a\r\n b|c\t\0d  "), "a b/c d");
        let long = "x".repeat(300);
        assert_eq!(one_line(&long).len(), 203);
        assert_eq!(
            io_error(&std::io::Error::from_raw_os_error(111)),
            "Connection refused"
        );
    }

    #[tokio::test]
    async fn appliance_checks_read_the_snapshot() {
        let snapshot = || Snapshot::default();
        let check = Builtin::parse(&args(&["volume", "nfs"])).unwrap();
        let out = check.run(&snapshot).await;
        assert_eq!(out.output, "VOLUME UNKNOWN - no volume `nfs`");
        assert_eq!(out.state.code(), 3);
    }
}
