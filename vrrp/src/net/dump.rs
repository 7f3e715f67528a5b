//! Reading an interface's addresses with one RTM_GETADDR dump, tried again while the kernel
//! answers EBUSY.
//!
//! A netlink socket runs one dump at a time: the kernel refuses a second one with EBUSY until the
//! first is read to its end (`netlink_dump_start`). Every instance's reads share one rtnetlink
//! connection, whose task reads each answer to its end before it sends the next request, so this
//! should not happen; but it was seen once at start-up, with two instances listing their
//! interface's addresses together. A failed listing is not harmless (an instance that cannot
//! tell its interface's own addresses from VIPs removes both), and the other dump ends within
//! milliseconds, so a refused dump is tried again, as iproute2's users and vsomeip do.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressMessage;
use tracing::debug;

use super::error::{is_errno, to_io};

/// How many times a dump refused with EBUSY is tried in all.
const BUSY_TRIES: u32 = 20;
/// The pause between two tries: the dump in the way usually ends within a millisecond.
const BUSY_PAUSE: Duration = Duration::from_millis(5);

/// The addresses of the interface of index `index` (only `addr`, if given), as the kernel lists
/// them.
pub(super) async fn addresses(
    handle: &rtnetlink::Handle,
    index: u32,
    addr: Option<IpAddr>,
) -> io::Result<Vec<AddressMessage>> {
    retry_busy(|| async {
        let mut request = handle.address().get().set_link_index_filter(index);
        if let Some(addr) = addr {
            request = request.set_address_filter(addr);
        }
        request.execute().try_collect().await.map_err(to_io)
    })
    .await
}

/// Runs `attempt` until it succeeds or fails with another error than EBUSY, at most
/// [`BUSY_TRIES`] times, [`BUSY_PAUSE`] apart.
async fn retry_busy<T, F, Fut>(mut attempt: F) -> io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if is_errno(&error, nix::libc::EBUSY) && tries < BUSY_TRIES => {
                debug!(
                    tries,
                    "address dump refused while another runs (EBUSY); trying again"
                );
                tries += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn busy() -> io::Error {
        io::Error::from_raw_os_error(nix::libc::EBUSY)
    }

    /// Runs `retry_busy` over answers that fail with `errors` in turn, then succeed; returns its
    /// result and how many attempts it made.
    fn run(errors: Vec<io::Error>) -> (io::Result<u32>, u32) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let attempts = Cell::new(0);
        let mut errors = errors.into_iter();
        let result = runtime.block_on(retry_busy(|| {
            attempts.set(attempts.get() + 1);
            let answer = errors.next().map_or(Ok(attempts.get()), Err);
            async move { answer }
        }));
        (result, attempts.get())
    }

    #[test]
    fn a_dump_refused_as_busy_is_tried_again_until_it_succeeds() {
        let (result, attempts) = run(vec![busy(), busy(), busy()]);
        assert_eq!(result.unwrap(), 4);
        assert_eq!(attempts, 4);
    }

    #[test]
    fn another_error_is_returned_at_once() {
        let denied = io::Error::from_raw_os_error(nix::libc::EPERM);
        let (result, attempts) = run(vec![denied]);
        assert_eq!(result.unwrap_err().raw_os_error(), Some(nix::libc::EPERM));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn a_dump_busy_every_time_gives_up_with_ebusy() {
        let (result, attempts) = run((0..100).map(|_| busy()).collect());
        assert_eq!(result.unwrap_err().raw_os_error(), Some(nix::libc::EBUSY));
        assert_eq!(attempts, BUSY_TRIES);
    }
}
