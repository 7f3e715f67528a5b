//! Raising this process's open-files limit before it holds thousands of idle connections.
//!
//! The workspace forbids `unsafe`, so `setrlimit` is not called directly: util-linux's `prlimit
//! --pid` sets the limit of this process from outside, which needs no privilege up to the hard
//! limit and root (CAP_SYS_RESOURCE) beyond it.

use anyhow::{Context, bail};
use tokio::process::Command;

use super::procfs::read_own_nofile;
use super::tools::find_in_path;

/// Makes sure this process may open at least `needed` files, or says why it cannot.
pub(crate) async fn ensure_own_nofile(needed: u64) -> anyhow::Result<()> {
    let limit = read_own_nofile()?;
    let Some(soft) = limit.soft else {
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    let Some(prlimit) = find_in_path("prlimit") else {
        bail!(
            "{needed} open files are needed but the limit is {soft}, and prlimit (util-linux) is \
             not installed to raise it: raise `ulimit -n` or lower --idle-connections"
        );
    };
    let pid = std::process::id().to_string();
    // Ask for `needed` (raising the hard limit too if it is lower, which only root may), then
    // settle for the hard limit.
    let hard = limit.hard.map_or(needed, |hard| hard.max(needed));
    let mut attempts = vec![format!("--nofile={needed}:{hard}")];
    if let Some(hard) = limit.hard {
        attempts.push(format!("--nofile={hard}:{hard}"));
    }
    for attempt in attempts {
        let status = Command::new(&prlimit)
            .args(["--pid", &pid, &attempt])
            .kill_on_drop(true)
            .status()
            .await
            .with_context(|| format!("cannot run {}", prlimit.display()))?;
        if status.success() {
            break;
        }
    }
    let now = read_own_nofile()?;
    match now.soft {
        Some(soft) if soft < needed => bail!(
            "{needed} open files are needed for the idle connections but the limit is {soft} \
             (hard {}): run as root, raise `ulimit -Hn`, or lower --idle-connections",
            now.hard.map_or("unlimited".to_owned(), |h| h.to_string())
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::ensure_own_nofile;
    use crate::compare::procfs::read_own_nofile;
    use crate::compare::tools::find_in_path;

    /// Up to the hard limit the soft one is raised; past it (without root's CAP_SYS_RESOURCE) the
    /// error says what to do. Raising this test process's own soft limit harms no other test.
    #[tokio::test]
    async fn raises_up_to_the_hard_limit_and_explains_beyond() {
        let limit = read_own_nofile().unwrap();
        let Some(hard) = limit.hard else {
            eprintln!("skipped: no hard limit on open files here");
            return;
        };
        if find_in_path("prlimit").is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI has util-linux's prlimit"
            );
            eprintln!("skipped: prlimit is not installed");
            return;
        }
        let needed = hard.min(limit.soft.unwrap_or(hard) + 1);
        ensure_own_nofile(needed).await.unwrap();
        assert!(read_own_nofile().unwrap().soft.unwrap_or(u64::MAX) >= needed);
        // Past the most the kernel allows (`fs.nr_open`, at most 2^30), even root fails.
        let error = ensure_own_nofile(1 << 31).await.unwrap_err().to_string();
        assert!(error.contains("--idle-connections"), "{error}");
    }
}
