//! Real inotify on temporary directories. Waits are bounded (a few seconds at most) and end as
//! soon as what is awaited has been seen.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::{Instant, timeout_at};

use super::batch::covered;
use super::*;

const DELAY: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(2);

fn nothing_excluded(_: &Path, _: bool) -> bool {
    false
}

/// On tmpfs where there is one: the burst tests should time the watcher, not the disk (20,000
/// creates take seconds on a busy virtual disk, a tenth of that on tmpfs; inotify is the same).
fn tempdir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

fn start(dir: &TempDir) -> Watcher {
    Watcher::start(dir.path().to_path_buf(), nothing_excluded, DELAY).expect("start")
}

fn start_hooked(dir: &TempDir, options: Options, hooks: Hooks) -> Watcher {
    Watcher::start_inner(
        dir.path().to_path_buf(),
        Box::new(nothing_excluded),
        options,
        hooks,
    )
    .expect("start")
}

/// Everything the batches gathered so far held.
#[derive(Debug, Default)]
struct Seen {
    paths: BTreeSet<PathBuf>,
    rescan: BTreeSet<PathBuf>,
    batches: usize,
}

impl Seen {
    fn has(&self, path: &str) -> bool {
        self.paths.contains(Path::new(path))
    }

    fn rescans(&self, subtree: &str) -> bool {
        self.rescan.contains(Path::new(subtree))
    }

    /// Reported as a path, or inside a subtree to rescan.
    fn covers(&self, path: &str) -> bool {
        self.has(path) || covered(&self.rescan, Path::new(path))
    }
}

/// Reads batches until `done` holds (checked before each) or `limit` passes.
async fn gather(
    watcher: &mut Watcher,
    limit: Duration,
    done: impl Fn(&Seen, &WatchStats) -> bool,
) -> Seen {
    let end = Instant::now() + limit;
    let mut seen = Seen::default();
    while !done(&seen, &watcher.stats()) {
        let Ok(Some(batch)) = timeout_at(end, watcher.next_batch()).await else {
            break;
        };
        seen.batches += 1;
        seen.paths.extend(batch.paths);
        seen.rescan.extend(batch.rescan);
    }
    seen
}

/// Reads batches until all of `paths` were reported.
async fn expect_paths(watcher: &mut Watcher, paths: &[&str]) -> Seen {
    let seen = gather(watcher, WAIT, |seen, _| paths.iter().all(|p| seen.has(p))).await;
    for path in paths {
        assert!(seen.has(path), "{path} not reported: {seen:?}");
    }
    seen
}

/// Everything reported in `quiet` (nothing is awaited).
async fn drain(watcher: &mut Watcher, quiet: Duration) -> Seen {
    gather(watcher, quiet, |_, _| false).await
}

#[tokio::test]
async fn file_create_modify_rename_delete_are_reported() {
    let dir = tempdir();
    let mut watcher = start(&dir);
    let a = dir.path().join("a");
    let b = dir.path().join("b");

    fs::write(&a, b"1").expect("create");
    expect_paths(&mut watcher, &["a"]).await;

    let mut file = fs::OpenOptions::new().append(true).open(&a).expect("open");
    file.write_all(b"2").expect("append");
    drop(file);
    expect_paths(&mut watcher, &["a"]).await;

    fs::rename(&a, &b).expect("rename");
    expect_paths(&mut watcher, &["a", "b"]).await;

    fs::remove_file(&b).expect("delete");
    let seen = expect_paths(&mut watcher, &["b"]).await;
    assert!(seen.rescan.is_empty(), "{seen:?}");

    let stats = watcher.stats();
    assert_eq!(stats.watched_dirs, 1);
    assert_eq!(stats.overflows, 0);
    assert!(stats.batches >= 4, "{stats:?}");
    assert!(stats.events >= 4, "{stats:?}");
}

#[tokio::test]
async fn a_file_made_right_after_its_new_directory_is_seen() {
    let dir = tempdir();
    let mut watcher = start(&dir);

    // Both files exist before the worker can add the new directories' watches: only the listing
    // after each watch finds them.
    fs::create_dir(dir.path().join("d")).expect("mkdir");
    fs::write(dir.path().join("d/f"), b"x").expect("write");
    fs::create_dir_all(dir.path().join("x/y/z")).expect("mkdir -p");
    fs::write(dir.path().join("x/y/z/g"), b"x").expect("write");
    expect_paths(&mut watcher, &["d", "d/f", "x", "x/y", "x/y/z", "x/y/z/g"]).await;
    assert_eq!(watcher.stats().watched_dirs, 5);

    // And the new directories are watched from then on.
    fs::write(dir.path().join("x/y/z/h"), b"x").expect("write");
    expect_paths(&mut watcher, &["x/y/z/h"]).await;
}

#[tokio::test]
async fn a_renamed_directory_keeps_being_watched_under_its_new_name() {
    let dir = tempdir();
    fs::create_dir_all(dir.path().join("d/sub")).expect("mkdir");
    fs::write(dir.path().join("d/f"), b"x").expect("write");
    let mut watcher = start(&dir);
    assert_eq!(watcher.stats().watched_dirs, 3);

    fs::rename(dir.path().join("d"), dir.path().join("e")).expect("rename");
    expect_paths(&mut watcher, &["d", "e", "e/f", "e/sub"]).await;
    assert_eq!(watcher.stats().watched_dirs, 3);

    fs::write(dir.path().join("e/sub/g"), b"x").expect("write");
    let seen = expect_paths(&mut watcher, &["e/sub/g"]).await;
    assert!(
        !seen.has("d/sub/g"),
        "reported under the old name: {seen:?}"
    );

    fs::remove_dir_all(dir.path().join("e")).expect("rm -r");
    expect_paths(&mut watcher, &["e"]).await;
    assert_eq!(watcher.stats().watched_dirs, 1);
}

#[tokio::test]
async fn excluded_paths_are_neither_watched_nor_reported() {
    let dir = tempdir();
    fs::create_dir_all(dir.path().join("cache/deep")).expect("mkdir");
    fs::create_dir(dir.path().join("keep")).expect("mkdir");
    let exclude = |path: &Path, is_dir: bool| {
        if is_dir {
            path == Path::new("cache") || path.file_name() == Some("tmpcache".as_ref())
        } else {
            path.extension() == Some("part".as_ref())
        }
    };
    let mut watcher = Watcher::start(dir.path().to_path_buf(), exclude, DELAY).expect("start");
    assert_eq!(watcher.stats().watched_dirs, 2, "root and keep/ only");

    fs::write(dir.path().join("cache/a"), b"x").expect("write");
    fs::write(dir.path().join("cache/deep/b"), b"x").expect("write");
    fs::write(dir.path().join("keep/x.part"), b"x").expect("write");
    fs::create_dir(dir.path().join("keep/tmpcache")).expect("mkdir");
    fs::write(dir.path().join("keep/tmpcache/d"), b"x").expect("write");
    fs::write(dir.path().join("keep/c"), b"x").expect("write");
    let mut seen = expect_paths(&mut watcher, &["keep/c"]).await;
    seen.paths
        .extend(drain(&mut watcher, DELAY * 4).await.paths);

    for path in &seen.paths {
        assert!(
            !path.starts_with("cache") && !path.starts_with("keep/tmpcache"),
            "excluded path reported: {path:?}"
        );
        assert_ne!(path, Path::new("keep/x.part"));
    }
    assert_eq!(watcher.stats().watched_dirs, 2);
}

#[tokio::test]
async fn the_syncs_own_temporary_files_are_ignored() {
    let dir = tempdir();
    let mut watcher = start(&dir);
    let temp = dir.path().join(format!("{TEMP_PREFIX}0123456789abcdef-1"));

    fs::write(&temp, b"half an upload").expect("write");
    fs::rename(&temp, dir.path().join("upload.jpg")).expect("rename");
    fs::create_dir(dir.path().join(format!("{TEMP_PREFIX}staging"))).expect("mkdir");
    let mut seen = expect_paths(&mut watcher, &["upload.jpg"]).await;
    seen.paths
        .extend(drain(&mut watcher, DELAY * 4).await.paths);

    assert_eq!(
        seen.paths,
        BTreeSet::from([PathBuf::from("upload.jpg")]),
        "temporary names reported"
    );
    assert_eq!(watcher.stats().watched_dirs, 1);
}

#[tokio::test]
async fn a_burst_of_20000_files_arrives_in_a_few_batches() {
    const FILES: usize = 20_000;
    let dir = tempdir();
    let options = Options::new(Duration::from_millis(200));
    let mut watcher =
        Watcher::start_with(dir.path().to_path_buf(), nothing_excluded, options).expect("start");
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i}")).collect();

    for name in &names {
        fs::write(dir.path().join(name), b"").expect("write");
    }
    let seen = gather(&mut watcher, Duration::from_secs(5), |seen, _| {
        names.iter().all(|name| seen.covers(name))
    })
    .await;

    let missing = names.iter().filter(|name| !seen.covers(name)).count();
    assert_eq!(missing, 0, "{missing} files never reported");
    // Not 20,000 wakeups: one batch per `delay`, whatever the burst.
    assert!(seen.batches <= 10, "{} batches", seen.batches);
    // Every event counted, unless the kernel's queue overflowed under a loaded machine, which
    // a rescan covers (the names were all reported above).
    let stats = watcher.stats();
    assert!(
        stats.events >= FILES as u64 || stats.overflows > 0,
        "{stats:?}"
    );
}

/// The kernel's queue overflowing for real: notify's thread is held on the first event while
/// more events than `max_queued_events` pile up, then let go.
#[tokio::test]
async fn a_kernel_queue_overflow_becomes_a_full_rescan() {
    let queue: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(16384);
    // Each new file queues at least IN_CREATE, IN_OPEN and IN_CLOSE_WRITE.
    let files = queue / 2 + 1000;
    if files > 100_000 {
        eprintln!("max_queued_events is {queue}: too big to overflow quickly, skipping");
        return;
    }
    let dir = tempdir();
    let (release, gate) = mpsc::channel();
    let hooks = Hooks {
        gate: Some(gate),
        budget: None,
    };
    let mut watcher = start_hooked(&dir, Options::new(DELAY), hooks);

    fs::write(dir.path().join("trigger"), b"").expect("write");
    for i in 0..files {
        fs::write(dir.path().join(format!("f{i}")), b"").expect("write");
    }
    drop(release);

    let seen = gather(&mut watcher, WAIT, |seen, _| seen.rescans("")).await;
    assert!(seen.rescans(""), "no full rescan: {:?}", seen.rescan);
    let stats = watcher.stats();
    assert!(stats.overflows >= 1, "{stats:?}");
    assert!(stats.rescans >= 1, "{stats:?}");

    // Still watching afterwards.
    fs::write(dir.path().join("after"), b"").expect("write");
    let seen = gather(&mut watcher, WAIT, |seen, _| seen.covers("after")).await;
    assert!(seen.covers("after"), "{seen:?}");
}

#[tokio::test]
async fn too_many_pending_paths_become_a_full_rescan() {
    let dir = tempdir();
    let options = Options {
        delay: Duration::from_millis(20),
        max_pending: 100,
        ..Options::new(DELAY)
    };
    let mut watcher =
        Watcher::start_with(dir.path().to_path_buf(), nothing_excluded, options).expect("start");

    // Not reading meanwhile: the batches pile up in the mailbox and merge.
    for i in 0..500 {
        fs::write(dir.path().join(format!("f{i}")), b"").expect("write");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let seen = gather(&mut watcher, WAIT, |seen, _| seen.rescans("")).await;
    assert!(seen.rescans(""), "{seen:?}");
    assert!(watcher.stats().overflows >= 1);
}

#[tokio::test]
async fn past_the_watch_limit_subtrees_are_polled_until_watches_are_free() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("a")).expect("mkdir");
    fs::create_dir(dir.path().join("b")).expect("mkdir");
    let budget = Arc::new(AtomicUsize::new(1));
    let options = Options {
        delay: Duration::from_millis(20),
        poll_interval: Duration::from_millis(200),
        ..Options::new(DELAY)
    };
    let hooks = Hooks {
        gate: None,
        budget: Some(budget.clone()),
    };
    let mut watcher = start_hooked(&dir, options, hooks);
    let stats = watcher.stats();
    assert_eq!(stats.watched_dirs, 1, "only the root fits");
    assert_eq!(stats.watch_limit_errors, 1);

    // a/ is not watched: its change is found by the periodic rescan.
    fs::write(dir.path().join("a/f"), b"x").expect("write");
    let seen = gather(&mut watcher, WAIT, |seen, _| seen.rescans("a")).await;
    assert!(seen.rescans("a") && seen.rescans("b"), "{seen:?}");

    // A new directory past the limit goes to rescan at once.
    fs::create_dir(dir.path().join("n")).expect("mkdir");
    let seen = gather(&mut watcher, WAIT, |seen, _| seen.rescans("n")).await;
    assert!(seen.rescans("n"), "{seen:?}");
    assert_eq!(watcher.stats().watch_limit_errors, 2);

    // Watches free again: the next poll watches the subtrees, and events flow from them.
    budget.store(10, SeqCst);
    gather(&mut watcher, WAIT, |_, stats| stats.watched_dirs == 4).await;
    assert_eq!(watcher.stats().watched_dirs, 4);
    fs::write(dir.path().join("b/g"), b"x").expect("write");
    expect_paths(&mut watcher, &["b/g"]).await;
}

#[test]
fn a_missing_or_non_directory_root_is_refused() {
    let dir = tempdir();
    let missing = Watcher::start(dir.path().join("missing"), nothing_excluded, DELAY);
    assert!(
        matches!(missing, Err(WatchError::Root { .. })),
        "{missing:?}"
    );

    let file = dir.path().join("file");
    fs::write(&file, b"").expect("write");
    let file = Watcher::start(file, nothing_excluded, DELAY);
    assert!(
        matches!(file, Err(WatchError::NotADirectory { .. })),
        "{file:?}"
    );
}

#[tokio::test]
async fn a_symlink_to_a_directory_is_a_link_not_a_watch() {
    let dir = tempdir();
    let outside = tempdir();
    fs::create_dir(dir.path().join("real")).expect("mkdir");
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("inside")).expect("ln");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("ln");
    let mut watcher = start(&dir);
    assert_eq!(watcher.stats().watched_dirs, 2, "root and real/ only");

    // A link made later is reported as a path, and still not watched.
    std::os::unix::fs::symlink(outside.path(), dir.path().join("later")).expect("ln");
    fs::write(outside.path().join("x"), b"x").expect("write");
    let mut seen = expect_paths(&mut watcher, &["later"]).await;
    seen.paths
        .extend(drain(&mut watcher, DELAY * 4).await.paths);
    assert!(!seen.has("later/x") && !seen.has("out/x"), "{seen:?}");
    assert_eq!(watcher.stats().watched_dirs, 2);
}
