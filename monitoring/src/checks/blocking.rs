//! The built-in checks' reads that may block in the kernel for good (`statvfs` of a hung NFS
//! mount, `/proc/PID/cmdline` of a process stuck on one), run on tokio's blocking threads with
//! a bound on how many may be in flight at once.
//!
//! A command's timeout drops the check's future, not the thread stuck in the kernel. Without a
//! bound, a hung mount checked every interval by every client would take a blocking thread each
//! time, until tokio's pool (shared with the volume's disk I/O) had none left and every
//! `spawn_blocking` in the process waited for ever. The nrpe daemon runs check_disk as a child it
//! can abandon; here, past the bound, a check answers UNKNOWN at once instead.

use tokio::sync::Semaphore;

/// Reads in flight at once, stuck ones included.
pub const MAX_IN_FLIGHT: usize = 4;

static IN_FLIGHT: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);

/// Runs `read` on a blocking thread, or says why it cannot: [`MAX_IN_FLIGHT`] earlier reads
/// still running (hung, most likely), or the thread panicked.
pub async fn run<T, F>(read: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run_on(&IN_FLIGHT, read).await
}

async fn run_on<T, F>(slots: &'static Semaphore, read: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Ok(permit) = slots.try_acquire() else {
        return Err(format!(
            "{MAX_IN_FLIGHT} earlier reads are still blocked (a hung network filesystem?)"
        ));
    };
    tokio::task::spawn_blocking(move || {
        let _held_until_the_read_returns = permit;
        read()
    })
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::{sync::mpsc, time::Duration};

    use super::*;

    // Input: reads that block (until released) on a runtime of 8 blocking threads, abandoned by
    // their callers' timeouts, twice as many as the bound. Output: past the bound they are
    // refused at once, the runtime's blocking threads stay usable, and once the stuck reads
    // return the slots are free again.
    #[test]
    fn hung_reads_take_at_most_the_bound_of_blocking_threads() {
        static SLOTS: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(MAX_IN_FLIGHT + 1)
            .enable_all()
            .build()
            .unwrap();
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(released));
        runtime.block_on(async {
            let mut refused = 0;
            for _ in 0..2 * MAX_IN_FLIGHT {
                let released = std::sync::Arc::clone(&released);
                let read = run_on(&SLOTS, move || {
                    let _ = released.lock().unwrap().recv();
                });
                match tokio::time::timeout(Duration::from_millis(10), read).await {
                    Ok(Err(_)) => refused += 1,
                    Ok(Ok(())) => panic!("a blocked read returned"),
                    Err(_) => {}
                }
            }
            assert_eq!(refused, MAX_IN_FLIGHT);
            let other = tokio::task::spawn_blocking(|| 7);
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(5), other)
                    .await
                    .expect("the blocking pool is exhausted")
                    .unwrap(),
                7
            );
            for _ in 0..MAX_IN_FLIGHT {
                release.send(()).unwrap();
            }
            let freed = async {
                while SLOTS.available_permits() < MAX_IN_FLIGHT {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), freed)
                .await
                .unwrap();
        });
    }
}
