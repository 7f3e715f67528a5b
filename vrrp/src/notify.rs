//! An instance's (or sync group's) notify scripts, keepalived's `notify_master` and friends: run
//! one at a time, in the order of the state changes, on a task of their own so a slow script
//! never holds up the state machine. Gates hold later scripts back (`notify_master` waits for the
//! volumes that follow the instance), and each state change hands back a [`Notified`] that
//! resolves once its scripts have run (a following volume is demoted only then).
//!
//! An instance that flaps faster than its scripts run (a peer gone wrong, or adverts forged on
//! the LAN) would grow the queue without bound, and run each script long after its state was
//! gone. So only the scripts of the last [`MAX_BEHIND`] changes wait to run; older ones not yet
//! started are skipped, and the skips logged.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    config::Notify,
    fsm::State,
    track::shell::{self, Exit},
};

/// How long a notify script may run before its process group is killed: long enough for real
/// work (reloading routes, sending mail), short enough that a wedged script does not hold back
/// every later state's scripts forever.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many state changes' scripts may wait behind the latest before the oldest are skipped:
/// a few quick changes (MASTER, then FAULT, BACKUP and STOP on the way out) all run, in order.
const MAX_BEHIND: u64 = 4;

/// Runs an instance's notify scripts in order without blocking the state machine: one task per
/// instance draining a queue; each script runs to completion (or its 60 s timeout) before the
/// next starts, so MASTER's script finishes before BACKUP's starts.
#[derive(Debug)]
pub struct Notifier {
    kind: &'static str,
    name: String,
    notify: Notify,
    queue: mpsc::UnboundedSender<Job>,
    /// The number of the latest state change, counted from 1; shared with the task.
    latest: Arc<AtomicU64>,
}

/// Resolves once the scripts queued for one state change (and every one before them) have
/// finished, or the notify task is gone. Cloneable, so each follower of an instance may wait.
#[derive(Debug, Clone)]
pub struct Notified(watch::Receiver<()>);

impl Notified {
    /// Already resolved: for the state an instance starts in, which queued no scripts.
    pub fn ready() -> Notified {
        let (done, notified) = watch::channel(());
        drop(done);
        Notified(notified)
    }

    /// One that resolves once the returned sender is dropped: for what ends outside a notify
    /// queue (a removed instance's task, say).
    pub(crate) fn until_dropped() -> (watch::Sender<()>, Notified) {
        let (sender, notified) = watch::channel(());
        (sender, Notified(notified))
    }

    /// Waits for those scripts; returns at once if they are done.
    pub async fn wait(&self) {
        let mut notified = self.0.clone();
        // Nothing is ever sent: the task drops the sender when it reaches this point of its
        // queue, and `changed` then fails.
        while notified.changed().await.is_ok() {}
    }

    /// Whether those scripts are done, without waiting.
    pub fn is_done(&self) -> bool {
        self.0.has_changed().is_err()
    }
}

/// What the task does next.
enum Job {
    Run(Run),
    /// Holds back every job queued after it until it resolves.
    Gate(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Dropped once every job queued before it is done, resolving its [`Notified`].
    Done(watch::Sender<()>),
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Run(run) => f.debug_tuple("Run").field(run).finish(),
            Job::Gate(_) => f.write_str("Gate"),
            Job::Done(_) => f.write_str("Done"),
        }
    }
}

/// One script for one state change.
#[derive(Debug)]
struct Run {
    /// The config key, for the logs: `notify_master`, ..., `notify`.
    key: &'static str,
    script: String,
    /// Empty for the state's own script; `KIND NAME STATE PRIORITY` for the generic one.
    args: Vec<String>,
    state: &'static str,
    /// The number of its state change.
    change: u64,
}

impl Notifier {
    /// Starts the task of one instance (`kind` "INSTANCE") or sync group (`kind` "GROUP"),
    /// `name` being the instance's or group's.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as [`tokio::spawn`].
    pub fn spawn(kind: &'static str, name: String, notify: Notify) -> Notifier {
        Self::spawn_with_timeout(kind, name, notify, NOTIFY_TIMEOUT)
    }

    fn spawn_with_timeout(
        kind: &'static str,
        name: String,
        notify: Notify,
        timeout: Duration,
    ) -> Notifier {
        let (queue, jobs) = mpsc::unbounded_channel();
        let latest = Arc::new(AtomicU64::new(0));
        tokio::spawn(work(kind, name.clone(), timeout, jobs, Arc::clone(&latest)));
        Notifier {
            kind,
            name,
            notify,
            queue,
            latest,
        }
    }

    /// The scripts of later state changes: a reload's. Those already queued run as they were.
    pub fn set_notify(&mut self, notify: Notify) {
        self.notify = notify;
    }

    /// Queues the scripts for entering `state`: first the state's own (`notify_master`,
    /// `notify_backup`, `notify_fault`, or `notify_stop` for Initialize, i.e. stopped) as
    /// `sh -c SCRIPT` with no arguments (keepalived passes none unless the line has them), then
    /// the generic `notify` as `sh -c 'SCRIPT "$@"' sh KIND NAME STATE PRIORITY`, STATE one of
    /// MASTER BACKUP FAULT STOP. Returns at once, with what resolves when they have run.
    pub fn state_changed(&self, state: State, priority: u8) -> Notified {
        let (key, own, label) = match state {
            State::Master => ("notify_master", &self.notify.master, "MASTER"),
            State::Backup => ("notify_backup", &self.notify.backup, "BACKUP"),
            State::Fault => ("notify_fault", &self.notify.fault, "FAULT"),
            State::Initialize => ("notify_stop", &self.notify.stop, "STOP"),
        };
        let change = self.latest.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(script) = own {
            self.queue(Job::Run(Run {
                key,
                script: script.clone(),
                args: Vec::new(),
                state: label,
                change,
            }));
        }
        if let Some(script) = &self.notify.any {
            let args = vec![
                self.kind.to_owned(),
                self.name.clone(),
                label.to_owned(),
                priority.to_string(),
            ];
            // `"$@"` after the user's line, so the line may carry arguments of its own first.
            let script = format!("{script} \"$@\"");
            self.queue(Job::Run(Run {
                key: "notify",
                script,
                args,
                state: label,
                change,
            }));
        }
        self.done()
    }

    /// Holds back every script queued after this call until `gate` resolves, without holding
    /// up the caller: the task waits. The gate bounds its own wait.
    pub fn gate(&self, gate: impl Future<Output = ()> + Send + 'static) {
        self.queue(Job::Gate(Box::pin(gate)));
    }

    /// Waits until every script queued so far has finished: at shutdown so `notify_stop` runs
    /// before the process exits, and in tests.
    pub async fn drain(&self) {
        self.done().wait().await;
    }

    /// What resolves once every job queued so far is done.
    fn done(&self) -> Notified {
        let (done, notified) = watch::channel(());
        // On an error the job, and so the sender, is dropped: resolved at once, as it should
        // be with no task left to wait for.
        let _ = self.queue.send(Job::Done(done));
        Notified(notified)
    }

    fn queue(&self, job: Job) {
        if self.queue.send(job).is_err() {
            // Only when the runtime is shutting down: the task has been dropped.
            warn!(kind = self.kind, name = %self.name, "notify task gone, script not run");
        }
    }
}

/// The task: one job at a time, until every [`Notifier`] handle is dropped and the queue is empty
/// (so a `notify_stop` queued just before the drop still runs).
async fn work(
    kind: &'static str,
    name: String,
    timeout: Duration,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    latest: Arc<AtomicU64>,
) {
    let mut skipped = 0u64;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Run(run) if latest.load(Ordering::Acquire) - run.change >= MAX_BEHIND => {
                skipped += 1;
            }
            Job::Run(run) => {
                if skipped > 0 {
                    warn!(
                        kind,
                        name,
                        skipped,
                        "notify scripts skipped: the state changed faster than they ran"
                    );
                    skipped = 0;
                }
                execute(kind, &name, timeout, &run).await;
            }
            Job::Gate(gate) => gate.await,
            Job::Done(done) => drop(done),
        }
    }
}

async fn execute(kind: &'static str, name: &str, timeout: Duration, run: &Run) {
    let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
    let (key, state, script) = (run.key, run.state, run.script.as_str());
    match shell::run(script, &args, timeout).await {
        Exit::Finished { status, .. } if status.success() => {
            info!(kind, name, state, key, script, %status, "notify script ran");
        }
        Exit::Finished { status, .. } => {
            warn!(kind, name, state, key, script, %status, "notify script failed");
        }
        Exit::TimedOut => {
            warn!(
                kind,
                name,
                state,
                key,
                script,
                ?timeout,
                "notify script timed out, killed"
            );
        }
        Exit::Failed(error) => {
            warn!(kind, name, state, key, script, %error, "notify script did not run");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::logged_lines;

    /// A generic `notify` that logs its arguments to `log`. Run as `sh FILE` rather than
    /// executed, so a parallel test's fork cannot make it "text file busy".
    fn generic(dir: &Path, log: &Path) -> String {
        let path = dir.join("notify.sh");
        std::fs::write(
            &path,
            format!("echo \"notify $*\" >> '{}'\n", log.display()),
        )
        .unwrap();
        format!("sh '{}'", path.display())
    }

    /// A state's own script that logs `WORD ARGC`, proving it gets no arguments.
    fn own(word: &str, log: &Path) -> Option<String> {
        Some(format!("echo \"{word} $#\" >> '{}'", log.display()))
    }

    #[tokio::test]
    async fn scripts_run_in_order_with_keepalived_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            master: own("master", &log),
            backup: own("backup", &log),
            fault: own("fault", &log),
            stop: own("stop", &log),
            any: Some(generic(dir.path(), &log)),
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        notifier.state_changed(State::Master, 105);
        notifier.state_changed(State::Fault, 100);
        notifier.state_changed(State::Backup, 100);
        notifier.state_changed(State::Initialize, 100);
        notifier.drain().await;
        assert_eq!(
            logged_lines(&log),
            [
                "master 0",
                "notify INSTANCE VI_1 MASTER 105",
                "fault 0",
                "notify INSTANCE VI_1 FAULT 100",
                "backup 0",
                "notify INSTANCE VI_1 BACKUP 100",
                "stop 0",
                "notify INSTANCE VI_1 STOP 100",
            ]
        );
    }

    // Input: 21 state changes queued at once, MASTER and BACKUP in turn, each with a script.
    // Output: only the last four changes' scripts run, in order. (All 21 ran, one after the
    // other: a flapping instance queued scripts without bound, each run long after its state.)
    #[tokio::test]
    async fn the_scripts_of_changes_far_behind_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            master: own("master", &log),
            backup: own("backup", &log),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        for change in 1..=21 {
            let state = if change % 2 == 1 {
                State::Master
            } else {
                State::Backup
            };
            notifier.state_changed(state, 100);
        }
        notifier.drain().await;
        assert_eq!(
            logged_lines(&log),
            ["backup 0", "master 0", "backup 0", "master 0"]
        );
    }

    #[tokio::test]
    async fn unset_scripts_are_skipped_and_groups_say_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            any: Some(generic(dir.path(), &log)),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("GROUP", "G1".to_owned(), notify);
        notifier.state_changed(State::Backup, 90);
        notifier.drain().await;
        assert_eq!(logged_lines(&log), ["notify GROUP G1 BACKUP 90"]);
    }

    #[tokio::test]
    async fn a_slow_script_finishes_before_the_next_starts() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            master: Some(format!("sleep 0.2; echo master >> '{}'", log.display())),
            backup: own("backup", &log),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        notifier.state_changed(State::Master, 100);
        notifier.state_changed(State::Backup, 100);
        notifier.drain().await;
        assert_eq!(logged_lines(&log), ["master", "backup 0"]);
    }

    #[tokio::test]
    async fn state_changed_returns_at_once() {
        let notify = Notify {
            master: Some("sleep 0.3".to_owned()),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        let started = tokio::time::Instant::now();
        let notified = notifier.state_changed(State::Master, 100);
        assert!(!notified.is_done(), "state_changed waited for the script");
        notifier.drain().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_missing_script_does_not_stop_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            master: Some(dir.path().join("missing").display().to_string()),
            any: Some(generic(dir.path(), &log)),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        notifier.state_changed(State::Master, 100);
        notifier.drain().await;
        assert_eq!(logged_lines(&log), ["notify INSTANCE VI_1 MASTER 100"]);
    }

    #[tokio::test]
    async fn a_hung_script_is_killed_and_the_next_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            master: Some("sleep 5".to_owned()),
            backup: own("backup", &log),
            ..Notify::default()
        };
        let notifier = Notifier::spawn_with_timeout(
            "INSTANCE",
            "VI_1".to_owned(),
            notify,
            Duration::from_millis(100),
        );
        let started = tokio::time::Instant::now();
        notifier.state_changed(State::Master, 100);
        notifier.state_changed(State::Backup, 100);
        notifier.drain().await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(logged_lines(&log), ["backup 0"]);
    }

    #[tokio::test]
    async fn dropping_the_notifier_still_runs_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            stop: own("stop", &log),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        notifier.state_changed(State::Initialize, 100);
        drop(notifier);
        tokio::time::timeout(Duration::from_millis(1500), async {
            while logged_lines(&log).is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(logged_lines(&log), ["stop 0"]);
    }

    #[tokio::test]
    async fn drain_with_nothing_queued_returns() {
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), Notify::default());
        notifier.state_changed(State::Master, 100);
        tokio::time::timeout(Duration::from_millis(500), notifier.drain())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_gate_holds_back_the_scripts_queued_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let notify = Notify {
            master: own("master", &log),
            backup: own("backup", &log),
            any: Some(generic(dir.path(), &log)),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        notifier.state_changed(State::Backup, 100);
        let (open, opened) = tokio::sync::oneshot::channel::<()>();
        notifier.gate(async move {
            let _ = opened.await;
        });
        let master = notifier.state_changed(State::Master, 100);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            logged_lines(&log),
            ["backup 0", "notify INSTANCE VI_1 BACKUP 100"]
        );
        assert!(!master.is_done());
        open.send(()).unwrap();
        master.wait().await;
        assert_eq!(
            logged_lines(&log)[2..],
            ["master 0", "notify INSTANCE VI_1 MASTER 100"]
        );
    }

    #[tokio::test]
    async fn notified_resolves_once_that_changes_scripts_have_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // STOP's script waits for the test's go, so what BACKUP's resolution sees is certain.
        let go = dir.path().join("go");
        let notify = Notify {
            backup: Some(format!("sleep 0.2; echo backup >> '{}'", log.display())),
            stop: Some(format!(
                "while [ ! -e '{}' ]; do sleep 0.01; done; echo 'stop 0' >> '{}'",
                go.display(),
                log.display()
            )),
            ..Notify::default()
        };
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), notify);
        let backup = notifier.state_changed(State::Backup, 100);
        // No script of its own, yet it comes after BACKUP's.
        let fault = notifier.state_changed(State::Fault, 100);
        let stop = notifier.state_changed(State::Initialize, 100);
        assert!(!backup.is_done());
        let waiter = backup.clone();
        waiter.wait().await;
        assert_eq!(logged_lines(&log), ["backup"]);
        assert!(!stop.is_done(), "STOP resolved before its script ran");
        std::fs::write(&go, b"").unwrap();
        fault.wait().await;
        stop.wait().await;
        assert_eq!(logged_lines(&log), ["backup", "stop 0"]);
        assert!(backup.is_done() && stop.is_done());
    }

    #[tokio::test]
    async fn notified_resolves_when_the_task_is_gone() {
        let notifier = Notifier::spawn("INSTANCE", "VI_1".to_owned(), Notify::default());
        let notified = notifier.state_changed(State::Master, 100);
        drop(notifier);
        tokio::time::timeout(Duration::from_millis(500), notified.wait())
            .await
            .unwrap();
    }
}
