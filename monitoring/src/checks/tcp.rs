//! `tcp`: check_tcp. Connects to `-H` port `-p`, optionally sends `-s` and looks for `-e` in
//! the answer, and judges the response time against `-w`/`-c` seconds; all within `-t`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::connect::connect;
use super::options::{self, Spec, flag, value};
use super::perfdata::{Perf, Uom};
use super::range::Thresholds;
use super::{Outcome, State, one_line};

const NAME: &str = "tcp";
const SPECS: &[Spec] = &[
    value('H', "hostname"),
    value('p', "port"),
    value('s', "send"),
    value('e', "expect"),
    flag('A', "all"),
    flag('E', "escape"),
    value('M', "mismatch"),
    value('w', "warning"),
    value('c', "critical"),
    value('t', "timeout"),
];
/// How much of an answer is read while looking for `-e`.
const MAX_ANSWER: usize = 16 * 1024;
/// How long check_tcp waits for more of an answer that does not match yet (`READ_TIMEOUT`).
const READ_IDLE: Duration = Duration::from_secs(2);
/// check_tcp's default `-t`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// check_tcp's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub send: Option<String>,
    /// Strings to find anywhere in the answer; any one will do unless `-A`.
    pub expect: Vec<String>,
    pub expect_all: bool,
    /// The state when the answer lacks them (`-M ok|warn|crit`, WARNING by default).
    pub mismatch: State,
    /// On the response time in seconds.
    pub thresholds: Thresholds,
    pub timeout: Duration,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let host = parsed
            .last('H')
            .ok_or_else(|| format!("{NAME}: -H HOST is required"))?;
        let port =
            port(NAME, parsed.last('p'))?.ok_or_else(|| format!("{NAME}: -p PORT is required"))?;
        // `-E` reads `\n`, `\r`, `\t` and `\\` in -s and -e, so a command line can send lines.
        let escape = |s: &str| {
            if parsed.has('E') {
                unescape(s)
            } else {
                s.to_owned()
            }
        };
        let mismatch = match parsed.last('M') {
            None => State::Warning,
            Some(m) => match m.to_ascii_lowercase().as_str() {
                "ok" => State::Ok,
                "warn" | "warning" => State::Warning,
                "crit" | "critical" => State::Critical,
                _ => {
                    return Err(options::bad(
                        NAME,
                        'M',
                        format!("`{m}` is not ok, warn or crit"),
                    ));
                }
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            send: parsed.last('s').map(escape),
            expect: parsed.all('e').into_iter().map(escape).collect(),
            expect_all: parsed.has('A'),
            mismatch,
            thresholds: Thresholds::parse(parsed.last('w'), parsed.last('c'))
                .map_err(|why| format!("{NAME}: {why}"))?,
            timeout: timeout(NAME, parsed.last('t'))?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// `-p`: a port, 1 to 65535.
pub(super) fn port(check: &str, text: Option<&str>) -> Result<Option<u16>, String> {
    text.map(|p| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(options::bad(
            check,
            'p',
            format!("`{p}` is not a port (1-65535)"),
        )),
    })
    .transpose()
}

/// `-t`: seconds, more than 0.
pub(super) fn timeout(check: &str, text: Option<&str>) -> Result<Option<Duration>, String> {
    text.map(|t| match t.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(options::bad(
            check,
            't',
            format!("`{t}` is not a timeout in seconds"),
        )),
    })
    .transpose()
}

/// monitoring-plugins' `np_escaped_string`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// What the connection gave, before judging.
#[derive(Debug)]
pub enum Probe {
    /// Connected (and talked, when asked to): the answer read, if any, and how long it took.
    Answered {
        answer: String,
        elapsed: Duration,
    },
    /// No connection: check_tcp's message.
    Failed(String),
    TimedOut,
}

/// Connects, talks and judges.
pub async fn run(opts: &Options) -> Outcome {
    let probe = match tokio::time::timeout(opts.timeout, probe(opts)).await {
        Ok(probe) => probe,
        Err(_) => Probe::TimedOut,
    };
    evaluate(&probe, opts)
}

async fn probe(opts: &Options) -> Probe {
    let start = Instant::now();
    let mut stream = match connect(&opts.host, opts.port).await {
        Ok(stream) => stream,
        Err(e) => return Probe::Failed(e.to_string()),
    };
    if let Some(send) = &opts.send
        && let Err(e) = stream.write_all(send.as_bytes()).await
    {
        return Probe::Failed(format!("error sending: {}", super::io_error(&e)));
    }
    let mut answer = Vec::new();
    if !opts.expect.is_empty() {
        // Read until the answer matches, ends, grows too long, or pauses for READ_IDLE once
        // it has begun (a server waiting for more input); a server that never says anything
        // runs into the timeout, as with check_tcp.
        let mut chunk = [0u8; 4096];
        loop {
            let read = if answer.is_empty() {
                stream.read(&mut chunk).await
            } else {
                match tokio::time::timeout(READ_IDLE, stream.read(&mut chunk)).await {
                    Ok(read) => read,
                    Err(_) => break,
                }
            };
            match read {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) => return Probe::Failed(format!("error reading: {}", super::io_error(&e))),
            }
            if answer.len() >= MAX_ANSWER || matches(&String::from_utf8_lossy(&answer), opts) {
                break;
            }
        }
    }
    Probe::Answered {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        elapsed: start.elapsed(),
    }
}

fn matches(answer: &str, opts: &Options) -> bool {
    let mut found = opts.expect.iter().map(|e| answer.contains(e.as_str()));
    if opts.expect_all {
        found.all(|f| f)
    } else {
        found.any(|f| f)
    }
}

/// Judges a probe as check_tcp does.
pub fn evaluate(probe: &Probe, opts: &Options) -> Outcome {
    let (answer, elapsed) = match probe {
        Probe::Answered { answer, elapsed } => (answer, elapsed.as_secs_f64()),
        Probe::Failed(why) => {
            return Outcome::new(State::Critical, format!("TCP CRITICAL - {why}"), &[]);
        }
        Probe::TimedOut => {
            let text = format!(
                "TCP CRITICAL - Socket timeout after {} seconds",
                opts.timeout.as_secs_f64()
            );
            return Outcome::new(State::Critical, text, &[]);
        }
    };
    let perf = [Perf::new("time", format!("{elapsed:.6}"))
        .uom(Uom::Seconds)
        .thresholds(&opts.thresholds)
        .min("0.000000")
        .max(format!("{:.6}", opts.timeout.as_secs_f64()))];
    if !opts.expect.is_empty() && answer.is_empty() {
        return Outcome::new(
            State::Critical,
            "TCP CRITICAL - No data received from host".to_owned(),
            &perf,
        );
    }
    if !opts.expect.is_empty() && !matches(answer, opts) {
        let state = opts.mismatch;
        let text = format!(
            "TCP {state} - Unexpected response from host/socket: {}",
            one_line(answer)
        );
        return Outcome::new(state, text, &perf);
    }
    let state = opts.thresholds.state(elapsed);
    let mut text = format!(
        "TCP {state} - {elapsed:.3} second response time on {} port {}",
        opts.host, opts.port
    );
    if !opts.expect.is_empty() {
        text.push_str(&format!(" [{}]", one_line(answer)));
    }
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let o = opts(&[
            "-H",
            "127.0.0.1",
            "-p",
            "22",
            "-E",
            "-s",
            "HELO\\r\\n",
            "-e",
            "SSH-",
        ])
        .unwrap();
        assert_eq!(o.send.as_deref(), Some("HELO\r\n"));
        assert_eq!(o.expect, ["SSH-"]);
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        assert_eq!(o.mismatch, State::Warning);
        let o = opts(&[
            "-H", "h", "-p", "1", "-s", "a\\n", "-t", "2.5", "-M", "crit",
        ])
        .unwrap();
        assert_eq!(o.send.as_deref(), Some("a\\n"));
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.mismatch, State::Critical);
        assert_eq!(opts(&["-p", "22"]).unwrap_err(), "tcp: -H HOST is required");
        assert_eq!(opts(&["-H", "h"]).unwrap_err(), "tcp: -p PORT is required");
        assert_eq!(
            opts(&["-H", "h", "-p", "0"]).unwrap_err(),
            "tcp: -p: `0` is not a port (1-65535)"
        );
        assert!(opts(&["-H", "h", "-p", "70000"]).is_err());
        assert!(opts(&["-H", "h", "-p", "1", "-t", "0"]).is_err());
        assert!(opts(&["-H", "h", "-p", "1", "-t", "x"]).is_err());
        assert!(opts(&["-H", "h", "-p", "1", "-w", "x"]).is_err());
        assert!(opts(&["-H", "h", "-p", "1", "-M", "maybe"]).is_err());
        assert_eq!(unescape("a\\tb\\\\c\\"), "a\tb\\c\\");
    }

    #[test]
    fn judged_as_check_tcp() {
        let o = opts(&["-H", "127.0.0.1", "-p", "22", "-w", "1", "-c", "2"]).unwrap();
        let answered = |secs: f64| Probe::Answered {
            answer: String::new(),
            elapsed: Duration::from_secs_f64(secs),
        };
        let out = evaluate(&answered(0.000148), &o);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000148s;1;2;\
             0.000000;10.000000"
        );
        assert_eq!(evaluate(&answered(1.5), &o).state, State::Warning);
        assert_eq!(evaluate(&answered(2.5), &o).state, State::Critical);
        let out = evaluate(&Probe::TimedOut, &o);
        assert_eq!(out.output, "TCP CRITICAL - Socket timeout after 10 seconds");
        let out = evaluate(&Probe::Failed("connect to ...".to_owned()), &o);
        assert_eq!(out.state, State::Critical);
    }

    #[test]
    fn expectations() {
        let o = opts(&["-H", "h", "-p", "1", "-e", "world", "-e", "nope"]).unwrap();
        let answered = |answer: &str| Probe::Answered {
            answer: answer.to_owned(),
            elapsed: Duration::ZERO,
        };
        let out = evaluate(&answered("hello world\r\nline2|x\r\n"), &o);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "TCP OK - 0.000 second response time on h port 1 [hello world line2/x]|\
             time=0.000000s;;;0.000000;10.000000"
        );
        let out = evaluate(&answered(""), &o);
        assert_eq!(out.state, State::Critical);
        assert!(
            out.output
                .starts_with("TCP CRITICAL - No data received from host|")
        );
        let out = evaluate(&answered("bye"), &o);
        assert_eq!(out.state, State::Warning);
        assert!(
            out.output
                .starts_with("TCP WARNING - Unexpected response from host/socket: bye|")
        );
        let all = opts(&["-H", "h", "-p", "1", "-e", "world", "-e", "nope", "-A"]).unwrap();
        assert_eq!(
            evaluate(&answered("hello world"), &all).state,
            State::Warning
        );
    }
}
