//! The soak's uploads: a thread in the client namespace POSTing through the front to the upload
//! server, over a pool of [`NAMES`] file names rewritten in turn, each version with content of
//! its own. A 201 is an acknowledged write: before a name is written again (a cycle later), its
//! last acknowledged version must be in both L7 nodes' upload directories, byte for byte, and
//! the last version of each name is checked the same way at the end.
//!
//! A pool rather than a new name each time keeps the synced tree at a steady size, so that the
//! nodes' memory measures the software rather than the tree: the sync's index holds an entry for
//! every path ever seen (a deleted one as a tombstone), so new names alone would grow it for ever.
//! Checking each version before its name is reused keeps every acknowledged upload checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fulcrum_lab::netns::Netns;
use fulcrum_lab::seed004::load::thread_in;

use super::clients::{Kind, Request, outcome};
use super::http;
use super::verify::on_both;

/// File names in the pool: at one upload every ~230 ms, each is rewritten every ~45 s, and the
/// tree is at its full size well within the memory warm-up.
pub(crate) const NAMES: u64 = 200;

/// The pause between two uploads.
const PAUSE: Duration = Duration::from_millis(200);

/// How long a version may still be missing on a node when its name comes round again (it was
/// acknowledged a cycle earlier, ~45 s) before it counts as lost.
const PATIENCE: Duration = Duration::from_secs(15);

/// The upload directories to check, by node name.
pub(crate) type Dirs = [(&'static str, PathBuf); 2];

/// One version of a name.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    /// The upload's number, which picks its name and content.
    pub(crate) n: u64,
    pub(crate) started: Instant,
    pub(crate) acked: bool,
}

/// What the worker hands back when stopped.
#[derive(Debug, Default)]
pub(crate) struct UploadLog {
    pub(crate) requests: Vec<Request>,
    /// Acknowledged versions checked before their name was reused.
    pub(crate) checked: usize,
    /// Those of them that were not on both nodes, with what was wrong.
    pub(crate) lost: Vec<String>,
    /// The last version of each name, for the check at the end.
    pub(crate) last: BTreeMap<String, Version>,
}

/// Starts the worker in `ns`, uploading to `front` until `stop` is set; its requests carry
/// worker number `worker`, and times in its reports are counted from `t0`.
pub(crate) fn start(
    ns: &Netns,
    front: SocketAddr,
    worker: usize,
    dirs: Dirs,
    t0: Instant,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<UploadLog> {
    let stop = Arc::clone(stop);
    thread_in(ns, move || run(front, worker, &dirs, t0, &stop))
}

fn run(front: SocketAddr, worker: usize, dirs: &Dirs, t0: Instant, stop: &AtomicBool) -> UploadLog {
    let mut log = UploadLog::default();
    for n in 0.. {
        let name = name_of(n);
        if let Some(previous) = log.last.get(&name).filter(|v| v.acked) {
            let mut problem = Err(String::new());
            let deadline = Instant::now() + PATIENCE;
            while !stop.load(Relaxed) {
                problem = on_both(dirs, &name, &upload_body(&name, previous.n));
                if problem.is_ok() || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if stop.load(Relaxed) {
                // Left to the check at the end, which has more patience.
                break;
            }
            log.checked += 1;
            if let Err(problem) = problem {
                log.lost.push(format!(
                    "{name} version {} (sent at {:.1} s): {problem}",
                    previous.n,
                    previous.started.saturating_duration_since(t0).as_secs_f64()
                ));
            }
        }
        if stop.load(Relaxed) {
            break;
        }
        let started = Instant::now();
        let answer = http::send(
            front,
            "POST",
            &format!("/files/{name}"),
            None,
            &upload_body(&name, n),
        );
        let (ok, error) = outcome(&answer, 201);
        log.requests.push(Request {
            kind: Kind::Upload,
            worker,
            started,
            ended: Instant::now(),
            ok,
            error,
            sticky_broken: false,
        });
        log.last.insert(
            name,
            Version {
                n,
                started,
                acked: ok,
            },
        );
        std::thread::sleep(PAUSE);
    }
    log
}

/// Upload `n`'s file name.
pub(crate) fn name_of(n: u64) -> String {
    format!("soak-{}", n % NAMES)
}

/// The body of upload `n` to `name`: about 1.5 KiB naming both on every line, so that no two
/// versions have the same content and a mix-up shows.
pub(crate) fn upload_body(name: &str, n: u64) -> Vec<u8> {
    let mut body = String::new();
    let mut line = 0;
    while body.len() < 1500 {
        body.push_str(&format!("{name} version {n} line {line}\n"));
        line += 1;
    }
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::{NAMES, name_of, upload_body};

    #[test]
    fn names_cycle_and_versions_differ() {
        assert_eq!(name_of(3), name_of(3 + NAMES));
        assert_ne!(name_of(3), name_of(4));
        assert_ne!(upload_body("soak-3", 3), upload_body("soak-3", 3 + NAMES));
        assert!(upload_body("soak-3", 3).len() >= 1500);
    }
}
