//! Clients of seed 004's site: `curl` run inside the client namespace, one request per run (a
//! fresh connection each time, as the seed's browsers and `ab` made), either once or in loops
//! that record every outcome with its start and end, so a fault test can tell which requests
//! were in flight when it struck; and [`thread_in`], for in-process clients (the soak run's)
//! that would spend more CPU starting curl than the site spends answering it.

use std::{
    fs::File,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// Longest a request may take: more than the director's `timeout.connect` (15 s), so a request
/// caught in a takeover gap is reported as what the director made of it, not as curl's timeout.
pub const MAX_TIME: &str = "30";

/// What one client worker does, again and again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `GET /` without cookies: balanced anew every time.
    Get,
    /// `GET /` with a cookie jar: sticky to the web server whose cookie the jar holds. With
    /// `Some(cookie)` the jar starts with `webserver=COOKIE`, with `None` it starts empty and
    /// takes the cookie the first answer inserts.
    Sticky(Option<&'static str>),
    /// `POST /files/load-W-N` with a small body: routed to the upload server.
    Post,
}

/// One request and what came of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub worker: usize,
    pub kind: Kind,
    pub started: Instant,
    pub ended: Instant,
    /// The HTTP status, 0 when no answer came (curl's `000`).
    pub status: u16,
    /// `X-Server`: which origin answered.
    pub server: String,
    /// curl's exit code and message when it failed.
    pub error: String,
}

impl Outcome {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the request was under way at some point of `[from, to]`.
    pub fn overlaps(&self, from: Instant, to: Instant) -> bool {
        self.started <= to && self.ended >= from
    }
}

/// One answer as a test looks at it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status, 0 when no answer came (curl's `000`).
    pub status: u16,
    /// `X-Server`: which origin answered.
    pub server: String,
    pub body: Vec<u8>,
    /// curl's exit code and message when it failed, else empty.
    pub error: String,
}

/// Starts a thread that joins namespace `ns` and runs `f` there: every socket `f` opens (a
/// client's connections) belongs to `ns`. Unlike [`Netns::enter`], the thread is not scoped,
/// so it may outlive the borrow of `ns`; it must end before the namespace is deleted, or its
/// sockets keep the namespace's network stack alive until it does.
pub fn thread_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    // Opened here, so that a namespace deleted meanwhile fails the caller, not the thread.
    let handle = File::open(format!("/run/netns/{}", ns.name())).unwrap();
    std::thread::spawn(move || {
        // setns(2) with CLONE_NEWNET moves the calling thread alone.
        nix::sched::setns(&handle, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("setns into the lab namespace (needs root)");
        drop(handle);
        f()
    })
}

/// Runs one request with `curl ARGS` inside namespace `ns` (by name).
pub fn fetch(ns: &str, args: &[&str]) -> Reply {
    // The status and X-Server follow the body on a last line of their own.
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "--max-time", MAX_TIME])
        .args(["-o", "-", "-w", "\n%{http_code} %header{x-server}"])
        .args(args)
        .output()
        .unwrap();
    let stdout = out.stdout;
    let split = stdout.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let trailer = String::from_utf8_lossy(stdout.get(split + 1..).unwrap_or_default()).into_owned();
    let (code, server) = trailer.split_once(' ').unwrap_or((&trailer, ""));
    let error = if out.status.success() {
        String::new()
    } else {
        format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    Reply {
        status: code.trim().parse().unwrap_or(0),
        server: server.trim().to_owned(),
        body: stdout[..split].to_vec(),
        error,
    }
}

/// Client workers looping until stopped.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// Starts one thread per entry of `kinds`, each sending its requests to `base`
    /// (`http://HOST:PORT`) from namespace `ns`, pausing `pause` between two. Cookie jars live
    /// in `dir`.
    pub fn start(ns: &str, base: &str, kinds: &[Kind], pause: Duration, dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = kinds
            .iter()
            .cloned()
            .enumerate()
            .map(|(worker, kind)| {
                let (ns, base, stop) = (ns.to_owned(), base.to_owned(), Arc::clone(&stop));
                let jar = dir.join(format!("jar-{worker}"));
                if let Kind::Sticky(Some(cookie)) = kind {
                    seed_jar(&jar, &base, cookie);
                }
                std::thread::spawn(move || {
                    run_worker(&ns, &base, worker, &kind, &jar, pause, &stop)
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers (each finishes the request it is in) and returns every outcome, in
    /// the order of their starts.
    pub fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Outcome> = self
            .workers
            .drain(..)
            .flat_map(|w| w.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|o| o.started);
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // Without a join: a panicking test must not wait for 30-second requests; the threads
        // end at their next check, and the lab's namespace teardown ends their curls.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run_worker(
    ns: &str,
    base: &str,
    worker: usize,
    kind: &Kind,
    jar: &Path,
    pause: Duration,
    stop: &AtomicBool,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let jar = jar.to_string_lossy().into_owned();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (url, body);
        let mut args: Vec<&str> = Vec::new();
        match kind {
            Kind::Get => {
                url = format!("{base}/");
            }
            Kind::Sticky(_) => {
                url = format!("{base}/");
                args.extend(["-b", &jar, "-c", &jar]);
            }
            Kind::Post => {
                url = format!("{base}/files/load-{worker}-{n}");
                body = format!("load {worker} {n}\n");
                args.extend(["--data-binary", &body]);
            }
        }
        args.push(&url);
        let started = Instant::now();
        let reply = fetch(ns, &args);
        outcomes.push(Outcome {
            worker,
            kind: kind.clone(),
            started,
            ended: Instant::now(),
            status: reply.status,
            server: reply.server,
            error: reply.error,
        });
        std::thread::sleep(pause);
    }
    outcomes
}

/// A Netscape cookie file holding `webserver=COOKIE` for `base`'s host, as a browser that was
/// given that cookie earlier would hold it.
fn seed_jar(jar: &Path, base: &str, cookie: &str) {
    let host = base
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or_default();
    std::fs::write(
        jar,
        format!("{host}\tFALSE\t/\tFALSE\t0\twebserver\t{cookie}\n"),
    )
    .unwrap();
}
