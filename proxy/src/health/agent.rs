//! Agent checks, HAProxy's `agent-check`: a small agent on each server answers a TCP connection
//! with one line that sets the server's weight, connection limit, admin state and health. So a
//! server can say it is busy (`50%`), going away (`drain`, `maint`), back (`ready`), or broken in
//! a way a probe from outside cannot see (`down#disk full`).
//!
//! As in HAProxy:
//! - the line ends at the first CR or LF (or the close); its words are separated by spaces,
//!   tabs or commas, case does not matter, and a `#` starts a description;
//! - what the agent does not say is left as it is, and unknown words are ignored;
//! - an agent that cannot be reached changes nothing: the health check tests reachability;
//! - `down`, `fail` and `stopped` take the server DOWN at once, and only `up` brings it back
//!   (HAProxy sets the agent's health to 0 or to the top, with no rise or fall).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use super::OnMarked;
use crate::{
    config::AgentCheck,
    runtime::Runtime,
    state::{AdminState, AgentResult, ServerState},
};

/// The longest reply line read; HAProxy reads one buffer, and a sane agent says a few words.
const MAX_LINE: usize = 1024;

/// What one reply asks for. `None` everywhere: leave it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    /// `75%`: this share of the configured weight.
    pub(crate) weight_percent: Option<u32>,
    /// `maxconn:30`.
    pub(crate) max_connections: Option<u32>,
    /// `ready`, `drain` or `maint`.
    pub(crate) admin: Option<AdminState>,
    /// `up` (true), or `down`, `fail` or `stopped` (false), with that word.
    pub(crate) health: Option<(bool, String)>,
    /// The text after `#`, trimmed.
    pub(crate) description: Option<String>,
}

/// Reads an agent's reply line as HAProxy's `tcpcheck_agent_expect_reply` does.
pub(crate) fn parse(line: &str) -> Reply {
    let (words, description) = match line.split_once('#') {
        Some((words, description)) => (words, Some(description.trim())),
        None => (line, None),
    };
    let mut reply = Reply {
        description: description.filter(|d| !d.is_empty()).map(str::to_owned),
        ..Reply::default()
    };
    for word in words
        .split([' ', '\t', ','])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
    {
        if let Some(percent) = word.strip_suffix('%') {
            if let Ok(percent) = percent.parse() {
                reply.weight_percent = Some(percent);
            }
        } else if let Some(max) = word.strip_prefix("maxconn:") {
            if let Ok(max) = max.parse() {
                reply.max_connections = Some(max);
            }
        } else {
            match word.as_str() {
                "ready" => reply.admin = Some(AdminState::Ready),
                "drain" => reply.admin = Some(AdminState::Drain),
                "maint" => reply.admin = Some(AdminState::Maint),
                "up" => reply.health = Some((true, word)),
                "down" | "fail" | "stopped" => reply.health = Some((false, word)),
                _ => {}
            }
        }
    }
    reply
}

/// Connects to the agent at `addr`, sends `send`, and reads its line: `Ok(line)`, or
/// `Err((status, why))` with HAProxy's short status. All of it within `timeout`.
async fn ask(
    addr: SocketAddr,
    send: &str,
    timeout: Duration,
) -> Result<String, (&'static str, String)> {
    let deadline = Instant::now() + timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(("L4TOUT", "connect timeout".to_owned())),
        Ok(Err(e)) => return Err(("L4CON", e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let exchange = async {
        if !send.is_empty() {
            stream.write_all(send.as_bytes()).await?;
        }
        let mut line = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = stream.read(&mut chunk).await?;
            line.extend_from_slice(&chunk[..n]);
            if let Some(end) = line.iter().position(|&b| b == b'\r' || b == b'\n')
                && end <= MAX_LINE
            {
                line.truncate(end);
                return Ok::<_, std::io::Error>(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            // A line the agent did not finish (it closed, or ran past the limit) is not acted
            // on, as HAProxy ignores it: `maxconn:1` cut from `maxconn:100` would be obeyed.
            if n == 0 || line.len() >= MAX_LINE {
                return Ok(None);
            }
        }
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Err(("L7TOUT", "no reply line in time".to_owned())),
        Ok(Err(e)) => Err(("L4CON", e.to_string())),
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) => Err(("L7RSP", "ignoring incomplete line from agent".to_owned())),
    }
}

/// Asks the agent of `state` at `addr` every `agent.interval` and applies its replies, until a
/// reload removes the agent check.
pub(super) async fn run(
    rt: Arc<Runtime>,
    state: Arc<ServerState>,
    agent: AgentCheck,
    addr: SocketAddr,
    marked: Arc<OnMarked>,
) {
    let epoch = state.agent_epoch();
    let mut wait = super::probe::first_delay(agent.interval);
    loop {
        tokio::time::sleep(wait).await;
        wait = super::probe::spread(agent.interval, agent.spread_percent);
        if state.agent_disabled() {
            continue;
        }
        let started = Instant::now();
        let answer = ask(addr, &agent.send, agent.timeout).await;
        let duration = started.elapsed();
        let applied = state.if_agent_current(epoch, || {
            // Disabled by an operator while it was asked: the reply no longer counts.
            if state.agent_disabled() {
                return;
            }
            let result = match answer {
                Ok(line) => {
                    let reply = parse(&line);
                    apply(&rt, &state, &reply, &marked);
                    let status = match reply.health {
                        Some((false, _)) => "L7STS",
                        _ => "L7OK",
                    };
                    AgentResult {
                        status: status.to_owned(),
                        text: super::printable(&line),
                        duration,
                    }
                }
                // Not a failure: the health check is what tests that the server answers.
                Err((status, why)) => AgentResult {
                    status: status.to_owned(),
                    text: why,
                    duration,
                },
            };
            if let Ok(mut last) = state.last_agent.lock() {
                *last = Some(result);
            }
        });
        if applied.is_none() {
            return;
        }
    }
}

/// Does what `reply` asks of `state`, reporting each change of status.
fn apply(rt: &Runtime, state: &ServerState, reply: &Reply, marked: &OnMarked) {
    // Into the logs, events and alert mails: the agent's text without its control characters.
    let said = |word: &str| match &reply.description {
        Some(description) => format!("agent says {word}: {}", super::printable(description)),
        None => format!("agent says {word}"),
    };
    if let Some(percent) = reply.weight_percent {
        let weight = u64::from(state.config_weight()) * u64::from(percent) / 100;
        let weight = u32::try_from(weight)
            .unwrap_or(u32::MAX)
            .min(state.weight_max());
        if weight != state.weight() {
            tracing::info!(backend = %state.backend, server = %state.name, weight, "agent set the weight to {percent}%");
            state.set_weight(weight);
        }
    }
    if let Some(max) = reply.max_connections {
        state.set_agent_max_connections(max);
    }
    if let Some(admin) = reply.admin
        && admin != state.admin()
    {
        let word = match admin {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        };
        let (from, to) = state.set_admin(admin);
        super::report_status(rt, state, from, to, said(word));
    }
    if let Some((up, word)) = &reply.health
        && *up == state.agent_down()
    {
        let (from, to) = state.set_agent_down(!up);
        marked.status_changed(state, from, to);
        super::report_status(rt, state, from, to, said(word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ask` makes of an agent that writes `reply`, then closes.
    async fn asked(reply: &'static [u8]) -> Result<String, (&'static str, String)> {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            if let Ok((mut conn, _)) = listener.accept().await {
                let _ = conn.write_all(reply).await;
            }
        });
        ask(addr, "", Duration::from_secs(5)).await
    }

    // Input: an agent that closes after `maxconn:1` (cut from `maxconn:100\n`), one that sends
    // 2 KiB without a line end, and whole lines. Output: the first two are ignored as
    // incomplete (L7RSP), nothing applied; the lines are read up to their end. (The cut line
    // was obeyed: the server's limit went to 1.)
    #[tokio::test]
    async fn an_incomplete_reply_line_is_ignored() {
        for cut in [&b"maxconn:1"[..], &[b'x'; 2048]] {
            let answer = asked(cut).await;
            assert!(matches!(answer, Err(("L7RSP", _))), "{answer:?}");
        }
        assert_eq!(asked(b"up 50%\r\n").await, Ok("up 50%".to_owned()));
        assert_eq!(asked(b"drain\nmore").await, Ok("drain".to_owned()));
    }

    // Input: replies as HAProxy's documentation and agents write them. Output: each word read,
    // case-insensitively, between spaces, tabs or commas, with the text after `#`.
    #[test]
    fn a_reply_is_read_as_haproxy_reads_it() {
        assert_eq!(
            parse("75%"),
            Reply {
                weight_percent: Some(75),
                ..Reply::default()
            }
        );
        assert_eq!(
            parse("UP,\tmaxconn:30 50% Ready"),
            Reply {
                weight_percent: Some(50),
                max_connections: Some(30),
                admin: Some(AdminState::Ready),
                health: Some((true, "up".to_owned())),
                description: None,
            }
        );
        assert_eq!(
            parse("stopped#  disk full "),
            Reply {
                health: Some((false, "stopped".to_owned())),
                description: Some("disk full".to_owned()),
                ..Reply::default()
            }
        );
        assert_eq!(parse("drain").admin, Some(AdminState::Drain));
        assert_eq!(parse("MAINT").admin, Some(AdminState::Maint));
        assert_eq!(parse("fail").health, Some((false, "fail".to_owned())));
        assert_eq!(
            parse("hello x% maxconn:y #"),
            Reply::default(),
            "unknown words and bad numbers change nothing"
        );
    }
}
