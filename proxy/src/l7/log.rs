//! The access log: one line per request in HAProxy's `httplog` shape, so log tooling built for
//! HAProxy reads it unchanged:
//!
//! ```text
//! 127.0.0.1:40304 [21/Nov/2026:13:35:42.655] main webservers/s1 0/0/1/2/3 200 120 - - --VN 1/1/0/1/0 0/0 "GET / HTTP/1.1"
//! ```
//!
//! Fields: client, accept date, frontend (`~` when TLS), backend/server, timers TR/Tw/Tc/Tr/Ta in
//! ms (-1 when the step was not reached), status, bytes sent to the client, captured cookies (none
//! yet), termination state, connection counts actconn/feconn/beconn/srv_conn/retries, queues
//! srv/backend, and the request line. The same fields go out as JSON fields when the log format is
//! JSON. Events use the tracing target `access`, so `[global] log.access_log = false` turns them
//! off with a filter.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fulcrum_common::UtcTime;
use tokio::time::Instant;

use super::h2_idle::CutMark;

/// Who or what ended a transaction: HAProxy's first termination-state character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// `-`: normally.
    Normal,
    /// `C`: the client aborted.
    ClientAbort,
    /// `c`: the client timed out.
    ClientTimeout,
    /// `S`: the server aborted or refused.
    ServerAbort,
    /// `s`: the server timed out.
    ServerTimeout,
    /// `P`: the proxy refused (bad request, protocol error).
    Proxy,
    /// `R`: a resource ran out (no server).
    Resource,
    /// `K`: an operator killed the session (`shutdown sessions`).
    Killed,
}

/// Where the transaction was when it ended: HAProxy's second character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `R`: reading the request.
    Request,
    /// `Q`: queued.
    Queue,
    /// `C`: connecting.
    Connect,
    /// `H`: waiting for the response head.
    Headers,
    /// `D`: transferring data.
    Data,
    /// `-`: done.
    Done,
}

/// One request's log record, filled in as the request progresses.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) client: SocketAddr,
    pub(crate) accept_date: SystemTime,
    pub(crate) frontend: String,
    pub(crate) tls: bool,
    pub(crate) backend: Option<String>,
    pub(crate) server: Option<String>,
    /// When the request's first byte arrived (or the connection was accepted).
    pub(crate) start: Instant,
    pub(crate) t_request: Option<Duration>,
    pub(crate) t_queue: Option<Duration>,
    pub(crate) t_connect: Option<Duration>,
    pub(crate) t_response: Option<Duration>,
    pub(crate) status: Option<u16>,
    pub(crate) bytes_out: u64,
    pub(crate) ended: Ended,
    pub(crate) phase: Phase,
    pub(crate) cookie_req: char,
    pub(crate) cookie_res: char,
    pub(crate) retries: u32,
    pub(crate) redispatched: bool,
    pub(crate) request_line: String,
    pub(crate) conn_counts: [u64; 4],
    pub(crate) queues: [u64; 2],
    /// Emit the fields as structured (JSON) fields too.
    pub(crate) json: bool,
    /// Whether the access log is on: when it is not, nothing is formatted or copied for it.
    pub(crate) enabled: bool,
    /// Whether the record has been written.
    emitted: bool,
    /// Set when a drop writes a record not yet written (see [`Record::written_if_dropped`]):
    /// whether its stream was cut for not moving.
    written_if_dropped: Option<CutMark>,
}

/// Set once the grace period of a stop is over and the connections left are closed: a record
/// dropped then was ended by Fulcrum (`K`), not by its client.
static HARD_STOPPED: AtomicBool = AtomicBool::new(false);

/// Marks the stop's grace period over (see [`HARD_STOPPED`]).
pub(crate) fn hard_stop() {
    HARD_STOPPED.store(true, Ordering::Release);
}

/// Whether the stop's grace period is over: what ends now is Fulcrum's doing.
pub(crate) fn hard_stopped() -> bool {
    HARD_STOPPED.load(Ordering::Acquire)
}

impl Record {
    pub(crate) fn new(client: SocketAddr, frontend: &str, tls: bool, start: Instant) -> Self {
        let enabled = tracing::enabled!(target: "access", tracing::Level::INFO);
        Self {
            client,
            accept_date: if enabled {
                SystemTime::now()
            } else {
                SystemTime::UNIX_EPOCH
            },
            frontend: if enabled {
                frontend.to_owned()
            } else {
                String::new()
            },
            tls,
            backend: None,
            server: None,
            start,
            t_request: None,
            t_queue: None,
            t_connect: None,
            t_response: None,
            status: None,
            bytes_out: 0,
            ended: Ended::Normal,
            phase: Phase::Done,
            cookie_req: '-',
            cookie_res: '-',
            retries: 0,
            redispatched: false,
            request_line: String::new(),
            conn_counts: [0; 4],
            queues: [0; 2],
            json: false,
            enabled,
            emitted: false,
            written_if_dropped: None,
        }
    }

    /// Makes a drop write the record if nothing has, in the phase the request had reached
    /// ([`Record::reached`]): hyper drops the handler of an HTTP/2 stream its client resets,
    /// and that request still gets its line, as HAProxy logs `CQ`, `CC`, `CH` or `CD`. Ended
    /// by the client, unless `cut` says its stream (or connection) was cut for not moving
    /// (`c`), or the stop's grace period was over (`K`).
    pub(crate) fn written_if_dropped(&mut self, cut: CutMark) {
        self.written_if_dropped = Some(cut);
    }

    /// Notes that the request has reached `phase`, for a record written as it is dropped.
    /// A record that ends normally does not show it.
    pub(crate) fn reached(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// The time now, when the access log will show timers; nothing (and no clock read) when
    /// it is off.
    pub(crate) fn clock(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    pub(crate) fn set_frontend(&mut self, name: &str) {
        if self.enabled && self.frontend != name {
            name.clone_into(&mut self.frontend);
        }
    }

    pub(crate) fn set_backend(&mut self, name: &str) {
        if self.enabled {
            self.backend = Some(name.to_owned());
        }
    }

    pub(crate) fn set_server(&mut self, name: &str) {
        if self.enabled {
            self.server = Some(name.to_owned());
        }
    }

    /// Marks the transaction as ended by `who` during `phase`.
    pub(crate) fn end(&mut self, ended: Ended, phase: Phase) {
        self.ended = ended;
        self.phase = phase;
    }

    /// The four-character termination state.
    pub(crate) fn termination(&self) -> String {
        let who = match self.ended {
            Ended::Normal => '-',
            Ended::ClientAbort => 'C',
            Ended::ClientTimeout => 'c',
            Ended::ServerAbort => 'S',
            Ended::ServerTimeout => 's',
            Ended::Proxy => 'P',
            Ended::Resource => 'R',
            Ended::Killed => 'K',
        };
        let phase = match (self.ended, self.phase) {
            (Ended::Normal, _) => '-',
            (_, Phase::Request) => 'R',
            (_, Phase::Queue) => 'Q',
            (_, Phase::Connect) => 'C',
            (_, Phase::Headers) => 'H',
            (_, Phase::Data) => 'D',
            (_, Phase::Done) => '-',
        };
        [who, phase, self.cookie_req, self.cookie_res]
            .iter()
            .collect()
    }

    /// The `httplog` line.
    pub(crate) fn line(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
        let total = self.start.elapsed();
        let retries = if self.redispatched {
            format!("+{}", self.retries)
        } else {
            self.retries.to_string()
        };
        format!(
            "{} [{}] {}{} {}/{} {}/{}/{}/{}/{} {} {} - - {} {}/{}/{}/{}/{} {}/{} \"{}\"",
            self.client,
            haproxy_date(self.accept_date),
            self.frontend,
            if self.tls { "~" } else { "" },
            self.backend.as_deref().unwrap_or(&self.frontend),
            self.server.as_deref().unwrap_or("<NOSRV>"),
            ms(self.t_request),
            ms(self.t_queue),
            ms(self.t_connect),
            ms(self.t_response),
            total.as_millis(),
            self.status.map_or(-1, i64::from),
            self.bytes_out,
            self.termination(),
            self.conn_counts[0],
            self.conn_counts[1],
            self.conn_counts[2],
            self.conn_counts[3],
            retries,
            self.queues[0],
            self.queues[1],
            self.request_line,
        )
    }

    /// Writes the record to the access log.
    pub(crate) fn emit(&mut self) {
        self.emitted = true;
        if !self.enabled {
            return;
        }
        let line = self.line();
        if !self.json {
            tracing::info!(target: "access", "{line}");
            return;
        }
        tracing::info!(
            target: "access",
            client = %self.client,
            frontend = %self.frontend,
            backend = self.backend.as_deref().unwrap_or(""),
            server = self.server.as_deref().unwrap_or("<NOSRV>"),
            status = self.status.unwrap_or(0),
            bytes = self.bytes_out,
            termination = %self.termination(),
            total_ms = self.start.elapsed().as_millis() as u64,
            request = %self.request_line,
            "{line}"
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let Some(cut) = &self.written_if_dropped else {
            return;
        };
        if self.emitted {
            return;
        }
        let who = if hard_stopped() {
            Ended::Killed
        } else if cut.is_cut() {
            Ended::ClientTimeout
        } else {
            Ended::ClientAbort
        };
        self.end(who, self.phase);
        self.emit();
    }
}

/// `21/Nov/2026:13:35:42.655`, HAProxy's accept date, in UTC.
pub(crate) fn haproxy_date(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let utc = UtcTime::from_system(t);
    let millis = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_millis();
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02}.{millis:03}",
        utc.day,
        MONTHS[(utc.month.clamp(1, 12) - 1) as usize],
        utc.year,
        utc.hour,
        utc.minute,
        utc.second,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_haproxy_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_268_142_655);
        assert_eq!(haproxy_date(t), "21/Nov/2026:13:35:42.655");
        assert_eq!(haproxy_date(UNIX_EPOCH), "01/Jan/1970:00:00:00.000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&haproxy_date(leap)[..11], "29/Feb/2000");
    }

    #[test]
    fn termination_state_characters() {
        let mut r = Record::new(
            "127.0.0.1:1"
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 1))),
            "fe",
            false,
            Instant::now(),
        );
        assert_eq!(r.termination(), "----");
        r.end(Ended::ServerTimeout, Phase::Headers);
        r.cookie_req = 'N';
        r.cookie_res = 'I';
        assert_eq!(r.termination(), "sHNI");
        r.end(Ended::ClientTimeout, Phase::Request);
        assert_eq!(r.termination(), "cRNI");
    }
}
