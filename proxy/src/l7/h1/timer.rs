//! One timer per connection for the timeouts of its waits, set again for each wait instead of
//! a new tokio timer each time.
//!
//! A new timer costs an insertion into the runtime's timer wheel when it is first polled and a
//! removal when it is dropped, under the wheel's lock: twice per proxied request (the wait for
//! the server's response head, the wait for the client's next request). Setting a registered
//! timer to a later deadline only records the new deadline; the wheel moves the entry when the
//! old deadline comes, at most once per timeout.

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use tokio::time::{Instant, Sleep};

use super::conn::IoFailure;

/// A connection's timer; nothing is allocated until a wait first has to be timed.
#[derive(Debug, Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Runs `fut` with a timeout where zero means none, as in HAProxy's `timeout` keywords.
    ///
    /// Like [`super::conn::with_timeout`], `fut` is polled once before the timer is set, since
    /// most reads and writes of a busy proxy complete at once.
    pub(crate) async fn run<F: Future>(
        &mut self,
        timeout: Duration,
        fut: F,
    ) -> Result<F::Output, IoFailure> {
        timed(timeout, fut, |deadline| {
            let sleep = self
                .0
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            sleep.as_mut().reset(deadline);
            sleep.as_mut()
        })
        .await
    }
}

/// [`Timer::run`] with a timer the caller keeps pinned in its own future, where it takes no
/// allocation of its own: for the wait of an idle connection, whose task then holds nothing
/// more than it did with a new timer for each wait.
pub(crate) async fn run_pinned<F: Future>(
    mut sleep: Pin<&mut Sleep>,
    timeout: Duration,
    fut: F,
) -> Result<F::Output, IoFailure> {
    timed(timeout, fut, |deadline| {
        sleep.as_mut().reset(deadline);
        sleep
    })
    .await
}

/// Polls `fut` once; if it has to wait with a limit, waits on the timer `arm` sets to the
/// deadline.
async fn timed<'t, F: Future>(
    timeout: Duration,
    fut: F,
    arm: impl FnOnce(Instant) -> Pin<&'t mut Sleep>,
) -> Result<F::Output, IoFailure> {
    let mut fut = std::pin::pin!(fut);
    match first_poll(timeout, fut.as_mut()).await {
        First::Done(output) => Ok(output),
        First::Untimed => Ok(fut.await),
        First::Wait(deadline) => wait(fut, arm(deadline)).await,
    }
}

/// What polling a future once found.
pub(super) enum First<T> {
    Done(T),
    /// Not done, with a zero timeout: no limit.
    Untimed,
    /// Not done: its deadline.
    Wait(Instant),
}

/// Polls `fut` once, and reads the clock only if it has to wait.
pub(super) async fn first_poll<F: Future>(
    timeout: Duration,
    mut fut: Pin<&mut F>,
) -> First<F::Output> {
    let ready = std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await;
    match ready {
        Some(output) => First::Done(output),
        None if timeout.is_zero() => First::Untimed,
        None => First::Wait(Instant::now() + timeout),
    }
}

/// Waits for `fut` until `sleep` ends.
async fn wait<F: Future>(
    mut fut: Pin<&mut F>,
    mut sleep: Pin<&mut Sleep>,
) -> Result<F::Output, IoFailure> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        sleep.as_mut().poll(cx).map(|()| Err(IoFailure::Timeout))
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_wait_gets_its_own_timeout() {
        let mut timer = Timer::default();
        let started = Instant::now();
        let long = timer.run(Duration::from_secs(60), std::future::pending::<()>());
        assert!(matches!(long.await, Err(IoFailure::Timeout)));
        assert_eq!(started.elapsed(), Duration::from_secs(60));

        // A shorter timeout after a longer one, then a longer one again.
        let started = Instant::now();
        let short = timer.run(Duration::from_secs(5), std::future::pending::<()>());
        assert!(matches!(short.await, Err(IoFailure::Timeout)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let started = Instant::now();
        let longer = timer.run(Duration::from_secs(30), std::future::pending::<()>());
        assert!(matches!(longer.await, Err(IoFailure::Timeout)));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_ends_in_time_leaves_the_next_one_its_full_timeout() {
        let mut timer = Timer::default();
        let done = timer.run(
            Duration::from_secs(10),
            tokio::time::sleep(Duration::from_secs(8)),
        );
        assert!(done.await.is_ok());
        // 8 s later, a new 10 s wait must not end when the first one's deadline (2 s away) comes.
        let started = Instant::now();
        let done = timer.run(
            Duration::from_secs(10),
            tokio::time::sleep(Duration::from_secs(9)),
        );
        assert!(done.await.is_ok());
        assert_eq!(started.elapsed(), Duration::from_secs(9));
        let zero = timer.run(
            Duration::ZERO,
            tokio::time::sleep(Duration::from_secs(3600)),
        );
        assert!(zero.await.is_ok(), "zero is no timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pinned_timer_is_set_again_for_each_wait() {
        let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        let done = run_pinned(
            sleep.as_mut(),
            Duration::from_secs(10),
            tokio::time::sleep(Duration::from_secs(8)),
        );
        assert!(done.await.is_ok());
        // 8 s later, a new 10 s wait must not end when the first one's deadline comes.
        let started = Instant::now();
        let idle = run_pinned(
            sleep.as_mut(),
            Duration::from_secs(10),
            std::future::pending::<()>(),
        );
        assert!(matches!(idle.await, Err(IoFailure::Timeout)));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
