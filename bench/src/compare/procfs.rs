//! What the runner reads about a process from `/proc`: CPU time (`/proc/PID/stat`, and per
//! thread in nanoseconds from `/proc/PID/task/TID/schedstat`), resident memory
//! (`/proc/PID/status`) and the open-files limit (`/proc/PID/limits`).

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, bail};

/// CPU time a process has used, in clock ticks (`sysconf(_SC_CLK_TCK)` per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    /// `utime`, field 14 of `/proc/PID/stat`.
    pub(crate) user: u64,
    /// `stime`, field 15.
    pub(crate) system: u64,
}

/// Reads the CPU ticks of `pid` (all its threads together).
pub(crate) fn read_cpu_ticks(pid: u32) -> anyhow::Result<CpuTicks> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&text).with_context(|| format!("cannot parse {path}"))
}

/// Parses `/proc/PID/stat`. The second field is the command name in parentheses, which may itself
/// hold spaces and `)`, so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> anyhow::Result<CpuTicks> {
    let close = text.rfind(')').context("no `)` after the command name")?;
    // After `)` come fields 3 (state), 4, ...: field N is at index N - 3.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let raw = fields
            .get(n - 3)
            .with_context(|| format!("field {n} is missing"))?;
        raw.parse()
            .with_context(|| format!("field {n} is not a number: {raw:?}"))
    };
    Ok(CpuTicks {
        user: field(14)?,
        system: field(15)?,
    })
}

/// Time on CPU of each thread of a process, in nanoseconds, by thread id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskRunTimes(BTreeMap<u32, u64>);

impl TaskRunTimes {
    /// Nanoseconds on CPU since `before`, over the threads alive now. A thread that started in
    /// between counts from zero; one that ended in between is lost, which a relay's threads do
    /// not do in the middle of a stream.
    pub(crate) fn since(&self, before: &Self) -> u64 {
        self.0
            .iter()
            .map(|(tid, &now)| now.saturating_sub(before.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

/// Reads the CPU time of every thread of `pid` from `/proc/PID/task/TID/schedstat`, whose first
/// field is nanoseconds on CPU. Fails where the kernel has no schedstat (no CONFIG_SCHED_INFO).
pub(crate) fn read_task_run_times(pid: u32) -> anyhow::Result<TaskRunTimes> {
    let dir = format!("/proc/{pid}/task");
    let mut times = BTreeMap::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let entry = entry.with_context(|| format!("cannot list {dir}"))?;
        let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = entry.path().join("schedstat");
        match fs::read_to_string(&path) {
            Ok(text) => {
                let ns = parse_schedstat(&text)
                    .with_context(|| format!("cannot parse {}", path.display()))?;
                times.insert(tid, ns);
            }
            // The thread ended since the listing.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        }
    }
    if times.is_empty() {
        bail!("no thread of {pid} has a schedstat");
    }
    Ok(TaskRunTimes(times))
}

/// The first field of `schedstat`: `RUN_NS WAIT_NS TIMESLICES`.
pub(crate) fn parse_schedstat(text: &str) -> anyhow::Result<u64> {
    let field = text
        .split_whitespace()
        .next()
        .context("schedstat is empty")?;
    field
        .parse()
        .with_context(|| format!("run time is not a number: {field:?}"))
}

/// Reads the resident set size of `pid` in bytes (`VmRSS`).
pub(crate) fn read_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS line in {path}"))
}

/// The `VmRSS:   1234 kB` line of `/proc/PID/status`, in bytes.
pub(crate) fn parse_vm_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// A resource limit: soft and hard, `None` meaning unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) soft: Option<u64>,
    pub(crate) hard: Option<u64>,
}

/// Reads the open-files limit of this process.
pub(crate) fn read_own_nofile() -> anyhow::Result<Limit> {
    let text = fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    parse_nofile(&text)
}

/// The `Max open files  SOFT  HARD  files` line of `/proc/PID/limits`.
pub(crate) fn parse_nofile(text: &str) -> anyhow::Result<Limit> {
    let Some(line) = text.lines().find(|l| l.starts_with("Max open files")) else {
        bail!("no `Max open files` line");
    };
    let mut words = line["Max open files".len()..].split_whitespace();
    let mut next = |which: &str| -> anyhow::Result<Option<u64>> {
        match words.next() {
            Some("unlimited") => Ok(None),
            Some(n) => n
                .parse()
                .map(Some)
                .with_context(|| format!("{which} limit is not a number: {n:?}")),
            None => bail!("{which} limit is missing"),
        }
    };
    Ok(Limit {
        soft: next("soft")?,
        hard: next("hard")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::BTreeMap;

    use super::{
        CpuTicks, Limit, TaskRunTimes, parse_nofile, parse_schedstat, parse_stat, parse_vm_rss,
        read_task_run_times,
    };

    #[test]
    fn stat_fields_14_and_15() {
        let stat = "4242 (haproxy) S 1 4242 4242 0 -1 4194560 2201 0 0 0 1234 567 0 0 20 0 1 0 \
                    987654 31457280 2048 18446744073709551615 1 1 0 0 0 0 0 4096 1 0 0 0 17 0 0 0";
        assert_eq!(
            parse_stat(stat).unwrap(),
            CpuTicks {
                user: 1234,
                system: 567
            }
        );
    }

    #[test]
    fn stat_command_names_may_hold_spaces_and_parentheses() {
        let stat = "7 (tokio-rt (w) 1) R 1 7 7 0 -1 0 0 0 0 0 42 8 0 0 20 0 4 0 1 1 1";
        assert_eq!(
            parse_stat(stat).unwrap(),
            CpuTicks {
                user: 42,
                system: 8
            }
        );
    }

    #[test]
    fn stat_of_this_process_parses() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        parse_stat(&text).unwrap();
    }

    #[test]
    fn truncated_or_garbled_stat_is_an_error() {
        assert!(parse_stat("1 (x) S 1 2 3").is_err());
        assert!(parse_stat("no parenthesis at all").is_err());
        assert!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 8").is_err());
    }

    #[test]
    fn schedstat_run_time() {
        assert_eq!(
            parse_schedstat("54118321 25502119 183\n").unwrap(),
            54_118_321
        );
        assert!(parse_schedstat("").is_err());
        assert!(parse_schedstat("x 1 2").is_err());
    }

    #[test]
    fn run_time_since_counts_new_threads_from_zero() {
        let before = TaskRunTimes(BTreeMap::from([(1, 100), (2, 50), (3, 10)]));
        // Thread 3 ended, thread 4 started, and a clock never runs backwards (saturating).
        let after = TaskRunTimes(BTreeMap::from([(1, 250), (2, 50), (4, 30)]));
        assert_eq!(after.since(&before), 150 + 30);
        assert_eq!(
            before.since(&after),
            10,
            "only thread 3, unknown after, counts"
        );
    }

    #[test]
    fn run_times_of_this_process() {
        if !std::path::Path::new("/proc/self/schedstat").exists() {
            eprintln!("skipped: this kernel keeps no schedstat");
            return;
        }
        let before = read_task_run_times(std::process::id()).unwrap();
        let mut spin = 0_u64;
        for i in 0..1_000_000 {
            spin = std::hint::black_box(spin.wrapping_add(i));
        }
        let after = read_task_run_times(std::process::id()).unwrap();
        assert!(after.since(&before) > 0, "{spin}");
    }

    #[test]
    fn vm_rss_in_bytes() {
        let status = "Name:\tfulcrum\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t 12 MB\n"), None);
    }

    #[test]
    fn nofile_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(
            parse_nofile(limits).unwrap(),
            Limit {
                soft: Some(1024),
                hard: Some(524_288)
            }
        );
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(
            parse_nofile(unlimited).unwrap(),
            Limit {
                soft: None,
                hard: None
            }
        );
        assert!(parse_nofile("Max cpu time 1 2 seconds\n").is_err());
    }
}
