//! `http`: check_http. GETs `-u` from `-H` (or the address `-I`) port `-p`, judges the status
//! (or looks for `-e` in the status line), looks for `-s` in the body, and judges the response
//! time against `-w`/`-c` seconds; all within `-t`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::connect::connect;
use super::http_message::{self, Response};
use super::options::{self, Spec, value};
use super::perfdata::{Perf, Uom};
use super::range::Thresholds;
use super::tcp::{DEFAULT_TIMEOUT, port, timeout};
use super::{Outcome, State, one_line};

const NAME: &str = "http";
const SPECS: &[Spec] = &[
    value('H', "hostname"),
    value('I', "IP-address"),
    value('p', "port"),
    value('u', "url"),
    value('e', "expect"),
    value('s', "string"),
    value('w', "warning"),
    value('c', "critical"),
    value('t', "timeout"),
];
/// Responses are read up to this much; the rest is not needed to judge them.
const MAX_RESPONSE: usize = 4 << 20;

/// check_http's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-H`: the virtual host (the Host header), and where to connect without `-I`.
    pub host: Option<String>,
    /// `-I`: the address to connect to.
    pub address: Option<String>,
    pub port: u16,
    pub uri: String,
    /// `-e`: strings of which one must be in the status line (`200,301`); replaces the usual
    /// judging of the status code.
    pub expect: Vec<String>,
    /// `-s`: a string the body must hold.
    pub string: Option<String>,
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
        // What goes into the request line and Host header must not break the request.
        let plain = |short: char| -> Result<Option<String>, String> {
            match parsed.last(short) {
                Some(v)
                    if v.is_empty()
                        || v.contains(|c: char| c.is_whitespace() || c.is_control()) =>
                {
                    Err(options::bad(
                        NAME,
                        short,
                        format!("`{v}` is empty or has spaces"),
                    ))
                }
                v => Ok(v.map(str::to_owned)),
            }
        };
        let host = plain('H')?;
        let address = plain('I')?;
        if host.is_none() && address.is_none() {
            return Err(format!("{NAME}: -H HOST or -I ADDRESS is required"));
        }
        let uri = plain('u')?.unwrap_or_else(|| "/".to_owned());
        if !uri.starts_with('/') {
            return Err(options::bad(
                NAME,
                'u',
                format!("`{uri}` does not start with /"),
            ));
        }
        Ok(Self {
            host,
            address,
            port: port(NAME, parsed.last('p'))?.unwrap_or(80),
            uri,
            expect: parsed
                .last('e')
                .map(|e| {
                    e.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            string: parsed.last('s').map(str::to_owned),
            thresholds: Thresholds::parse(parsed.last('w'), parsed.last('c'))
                .map_err(|why| format!("{NAME}: {why}"))?,
            timeout: timeout(NAME, parsed.last('t'))?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// The Host header: `-H` (or the address), with the port unless it is 80.
    fn host_header(&self) -> String {
        let name = self
            .host
            .as_deref()
            .or(self.address.as_deref())
            .unwrap_or_default();
        let name = if name.contains(':') && !name.starts_with('[') {
            format!("[{name}]")
        } else {
            name.to_owned()
        };
        if self.port == 80 {
            name
        } else {
            format!("{name}:{}", self.port)
        }
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.host_header(), self.uri)
    }
}

/// What the exchange gave, before judging.
#[derive(Debug)]
pub enum Probe {
    Answered {
        response: Response,
        /// Bytes received, headers included, as check_http counts the page.
        size: usize,
        elapsed: Duration,
    },
    /// The connection closed before a byte came.
    NoData,
    /// No connection: check_tcp's message.
    Failed(String),
    TimedOut,
}

/// GETs the page and judges it.
pub async fn run(opts: &Options) -> Outcome {
    let probe = match tokio::time::timeout(opts.timeout, probe(opts)).await {
        Ok(probe) => probe,
        Err(_) => Probe::TimedOut,
    };
    evaluate(&probe, opts)
}

async fn probe(opts: &Options) -> Probe {
    let start = Instant::now();
    let target = opts
        .address
        .as_deref()
        .or(opts.host.as_deref())
        .unwrap_or_default();
    let mut stream = match connect(target, opts.port).await {
        Ok(stream) => stream,
        Err(e) => return Probe::Failed(format!("Unable to open TCP socket ({e})")),
    };
    let request = http_message::request(&opts.uri, &opts.host_header());
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Probe::Failed(format!("Error sending request: {}", super::io_error(&e)));
    }
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let response = loop {
        let ended = match stream.read(&mut chunk).await {
            Ok(0) => true,
            Ok(n) => {
                raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
                raw.len() >= MAX_RESPONSE
            }
            Err(e) if raw.is_empty() => {
                return Probe::Failed(format!("Error on receive: {}", super::io_error(&e)));
            }
            // A reset after the response (common with `Connection: close`) ends it.
            Err(_) => true,
        };
        if ended && raw.is_empty() {
            return Probe::NoData;
        }
        if let Some(response) = http_message::parse(&raw, ended) {
            break response;
        }
    };
    Probe::Answered {
        response,
        size: raw.len(),
        elapsed: start.elapsed(),
    }
}

/// Judges an exchange as check_http does.
pub fn evaluate(probe: &Probe, opts: &Options) -> Outcome {
    let critical =
        |why: String| Outcome::new(State::Critical, format!("HTTP CRITICAL - {why}"), &[]);
    let (response, size, elapsed) = match probe {
        Probe::Answered {
            response,
            size,
            elapsed,
        } => (response, *size, elapsed.as_secs_f64()),
        Probe::NoData => return critical("No data received from host".to_owned()),
        Probe::Failed(why) => return critical(why.clone()),
        Probe::TimedOut => {
            return critical(format!(
                "Socket timeout after {} seconds",
                opts.timeout.as_secs_f64()
            ));
        }
    };
    let status_line = one_line(&response.status_line);
    let (mut state, mut text) = if opts.expect.is_empty() {
        let state = match response.code {
            Some(500..=599) => State::Critical,
            Some(400..=499) => State::Warning,
            // Redirects are OK, as with check_http's default `--onredirect=ok`.
            Some(100..=399) => State::Ok,
            _ => {
                return critical(format!(
                    "Invalid HTTP response received from host on port {}: {status_line}",
                    opts.port
                ));
            }
        };
        (state, status_line.clone())
    } else if opts
        .expect
        .iter()
        .any(|e| response.status_line.contains(e.as_str()))
    {
        (
            State::Ok,
            format!("Status line output matched \"{}\"", opts.expect.join(",")),
        )
    } else {
        return critical(format!(
            "Invalid HTTP response received from host on port {}: {status_line}",
            opts.port
        ));
    };
    if let Some(wanted) = &opts.string
        && http_message::find(&response.body, wanted.as_bytes()).is_none()
    {
        state = State::Critical;
        text.push_str(&format!(
            " - string '{}' not found on '{}'",
            one_line(wanted),
            opts.url()
        ));
    }
    state = state.worst(opts.thresholds.state(elapsed));
    let text = format!("HTTP {state}: {text} - {size} bytes in {elapsed:.3} second response time ");
    let perf = [
        Perf::new("time", format!("{elapsed:.6}"))
            .uom(Uom::Seconds)
            .thresholds(&opts.thresholds)
            .min("0.000000")
            .max(format!("{:.6}", opts.timeout.as_secs_f64())),
        Perf::new("size", size).uom(Uom::Bytes).min(0),
    ];
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn answered(code: u16, body: &str, secs: f64) -> Probe {
        Probe::Answered {
            response: Response {
                status_line: format!("HTTP/1.1 {code} Whatever"),
                code: Some(code),
                body: body.as_bytes().to_vec(),
            },
            size: 100,
            elapsed: Duration::from_secs_f64(secs),
        }
    }

    #[test]
    fn options() {
        let o = opts(&[
            "-H",
            "example.com",
            "-I",
            "::1",
            "-p",
            "8080",
            "-u",
            "/x",
            "-e",
            "200,301",
        ])
        .unwrap();
        assert_eq!(o.expect, ["200", "301"]);
        assert_eq!(o.host_header(), "example.com:8080");
        assert_eq!(o.url(), "http://example.com:8080/x");
        let o = opts(&["-I", "::1"]).unwrap();
        assert_eq!((o.port, o.uri.as_str()), (80, "/"));
        assert_eq!(o.host_header(), "[::1]");
        assert_eq!(
            opts(&[]).unwrap_err(),
            "http: -H HOST or -I ADDRESS is required"
        );
        assert_eq!(
            opts(&["-H", "h", "-u", "x"]).unwrap_err(),
            "http: -u: `x` does not start with /"
        );
        assert!(opts(&["-H", "h", "-u", "/a b"]).is_err());
        assert!(opts(&["-H", "h\r\nX: y"]).is_err());
        assert!(opts(&["-H", "h", "-p", "x"]).is_err());
        assert!(opts(&["-H", "h", "-c", "2:1"]).is_err());
    }

    #[test]
    fn status_codes() {
        let o = opts(&["-H", "h"]).unwrap();
        let out = evaluate(&answered(200, "", 0.0015), &o);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "HTTP OK: HTTP/1.1 200 Whatever - 100 bytes in 0.002 second response time \
             |time=0.001500s;;;0.000000;10.000000 size=100B;;;0"
        );
        assert_eq!(evaluate(&answered(301, "", 0.0), &o).state, State::Ok);
        assert_eq!(evaluate(&answered(404, "", 0.0), &o).state, State::Warning);
        assert_eq!(evaluate(&answered(503, "", 0.0), &o).state, State::Critical);
        assert_eq!(evaluate(&answered(99, "", 0.0), &o).state, State::Critical);
        assert_eq!(evaluate(&Probe::NoData, &o).state, State::Critical);
        assert_eq!(
            evaluate(&Probe::TimedOut, &o).output,
            "HTTP CRITICAL - Socket timeout after 10 seconds"
        );
    }

    #[test]
    fn expected_status_body_and_time() {
        let o = opts(&["-H", "h", "-e", "404,200"]).unwrap();
        let out = evaluate(&answered(404, "", 0.0), &o);
        assert_eq!(out.state, State::Ok);
        assert!(
            out.output
                .starts_with("HTTP OK: Status line output matched \"404,200\" - ")
        );
        let o = opts(&["-H", "h", "-p", "8080", "-e", "200"]).unwrap();
        let out = evaluate(&answered(404, "", 0.0), &o);
        assert_eq!(
            out.output,
            "HTTP CRITICAL - Invalid HTTP response received from host on port 8080: HTTP/1.1 404 \
             Whatever"
        );
        let o = opts(&["-H", "h", "-s", "needle"]).unwrap();
        assert_eq!(
            evaluate(&answered(200, "hay needle hay", 0.0), &o).state,
            State::Ok
        );
        let out = evaluate(&answered(200, "hay", 0.0), &o);
        assert_eq!(out.state, State::Critical);
        assert!(out.output.starts_with(
            "HTTP CRITICAL: HTTP/1.1 200 Whatever - string 'needle' not found on 'http://h/' - 100 bytes"
        ));
        let o = opts(&["-H", "h", "-w", "1", "-c", "2"]).unwrap();
        assert_eq!(evaluate(&answered(200, "", 1.5), &o).state, State::Warning);
        assert_eq!(evaluate(&answered(404, "", 2.5), &o).state, State::Critical);
    }
}
