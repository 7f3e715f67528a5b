//! The soak's browsing clients: threads in the client namespace, each sending GETs through the
//! director's front again and again until stopped, and recording every request's start, end
//! and outcome: anonymous GETs, and browsers holding the persistence cookie (one starting with
//! s1's, one with s2's, one with none). The request record is shared with the uploads and the
//! NBD writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fulcrum_lab::netns::Netns;
use fulcrum_lab::seed004::load::thread_in;
use serde::{Deserialize, Serialize};

use super::http;

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `GET /` without a cookie.
    Get,
    /// `GET /` from a browser keeping the persistence cookie.
    Sticky,
    /// `POST /files/NAME` to the upload server.
    Upload,
    /// A 4 KiB write and a flush to the volume over NBD on VIP1.
    NbdWrite,
}

impl Kind {
    pub const ALL: [Self; 4] = [Self::Get, Self::Sticky, Self::Upload, Self::NbdWrite];

    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Sticky => "sticky",
            Self::Upload => "upload",
            Self::NbdWrite => "nbd-write",
        }
    }
}

/// One request and what came of it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) kind: Kind,
    pub(crate) worker: usize,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    /// A 2xx answer (201 for an upload), or an NBD write whose flush returned.
    pub(crate) ok: bool,
    /// Why it failed, empty when it did not.
    pub(crate) error: String,
    /// A sticky request answered by another web server than its cookie named, without a new
    /// cookie (a redispatch gives one).
    pub(crate) sticky_broken: bool,
}

impl Request {
    /// Whether it was under way at some point of `[from, to]`.
    pub(crate) fn overlaps(&self, from: Instant, to: Instant) -> bool {
        self.started <= to && self.ended >= from
    }
}

/// What a worker hands back when stopped.
pub(crate) type WorkerLog = Vec<Request>;

/// The workers: (kind, the cookie a sticky browser starts with).
const WORKERS: [(Kind, Option<&str>); 4] = [
    (Kind::Get, None),
    (Kind::Sticky, Some("s1")),
    (Kind::Sticky, Some("s2")),
    (Kind::Sticky, None),
];

/// The pause between two requests of a worker.
const PAUSE: Duration = Duration::from_millis(50);

/// How many workers [`start`] runs; the upload worker and the NBD writer are numbered after them.
pub(crate) const WORKERS_COUNT: usize = WORKERS.len();

/// Starts the workers in `ns`, sending to `front` until `stop` is set.
pub(crate) fn start(
    ns: &Netns,
    front: SocketAddr,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<WorkerLog>> {
    WORKERS
        .iter()
        .enumerate()
        .map(|(worker, &(kind, cookie))| {
            let stop = Arc::clone(stop);
            let cookie = cookie.map(str::to_owned);
            thread_in(ns, move || run_worker(front, worker, kind, cookie, &stop))
        })
        .collect()
}

fn run_worker(
    front: SocketAddr,
    worker: usize,
    kind: Kind,
    mut cookie: Option<String>,
    stop: &AtomicBool,
) -> WorkerLog {
    let mut log = WorkerLog::new();
    while !stop.load(Relaxed) {
        let started = Instant::now();
        let sent = if kind == Kind::Sticky {
            cookie.as_deref()
        } else {
            None
        };
        let answer = http::send(front, "GET", "/", sent, &[]);
        let ended = Instant::now();
        let (ok, error) = outcome(&answer, 200);
        let mut sticky_broken = false;
        if let (Kind::Sticky, Ok(a)) = (kind, &answer) {
            match &a.cookie {
                // Given a cookie (the first answer, or a redispatch): the browser keeps it.
                Some(new) => cookie = Some(new.clone()),
                None => {
                    if let Some(held) = &cookie {
                        sticky_broken = ok && a.server != web_server_of(held);
                    }
                }
            }
        }
        log.push(Request {
            kind,
            worker,
            started,
            ended,
            ok,
            error,
            sticky_broken,
        });
        std::thread::sleep(PAUSE);
    }
    log
}

/// Whether `answer` has the `wanted` status, and the error to record when it has not.
pub(crate) fn outcome(answer: &Result<http::Answer, String>, wanted: u16) -> (bool, String) {
    match answer {
        Ok(a) if a.status == wanted => (true, String::new()),
        Ok(a) => (false, format!("status {} from {:?}", a.status, a.server)),
        Err(e) => (false, e.clone()),
    }
}

/// The web origin a persistence cookie names (seed 004's `cookie = "s1"` on web1).
fn web_server_of(cookie: &str) -> String {
    format!("web{}", cookie.trim_start_matches('s'))
}

#[cfg(test)]
mod tests {
    use super::{outcome, web_server_of};
    use crate::soak::http::Answer;

    #[test]
    fn cookies_name_servers_and_statuses_decide() {
        assert_eq!(web_server_of("s2"), "web2");
        let answer = |status| {
            Ok(Answer {
                status,
                server: "up".to_owned(),
                cookie: None,
                body: Vec::new(),
            })
        };
        assert_eq!(outcome(&answer(201), 201), (true, String::new()));
        assert!(!outcome(&answer(503), 201).0);
        assert_eq!(
            outcome(&Err("connect: refused".to_owned()), 200).1,
            "connect: refused"
        );
    }
}
