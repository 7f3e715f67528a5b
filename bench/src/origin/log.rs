//! What reached the origin: a bounded log of recent requests and a count of all of them.
//!
//! A std `Mutex` is fine here: this is a test tool, and the critical section is one push.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use http::{HeaderMap, Method, Uri, Version};

/// How many requests an origin remembers; older ones are forgotten (but still counted).
pub const REQUEST_LOG_CAPACITY: usize = 1024;

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as sent (origin form for HTTP/1, full URI for HTTP/2).
    pub uri: Uri,
    /// HTTP version of the request.
    pub version: Version,
    /// Every header as received, in order.
    pub headers: HeaderMap,
    /// Bytes of request body received (after removing any chunked framing).
    pub body_len: usize,
    /// The client's address, i.e. the proxy's side of the backend connection.
    pub peer: SocketAddr,
}

#[derive(Debug)]
pub(super) struct RequestLog {
    capacity: usize,
    entries: Mutex<VecDeque<RecordedRequest>>,
    count: AtomicU64,
}

impl RequestLog {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            count: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self, request: RecordedRequest) {
        let mut entries = self.entries();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        if self.capacity > 0 {
            entries.push_back(request);
        }
        // Counted under the lock, so a reader never sees the count ahead of the log.
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.entries().iter().cloned().collect()
    }

    pub(super) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn clear(&self) {
        let mut entries = self.entries();
        entries.clear();
        self.count.store(0, Ordering::Relaxed);
    }

    fn entries(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        // Nothing that can panic runs under the lock, so a poisoned log is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use http::{HeaderMap, Method, Uri, Version};

    use super::{RecordedRequest, RequestLog};

    fn request(body_len: usize) -> RecordedRequest {
        RecordedRequest {
            method: Method::GET,
            uri: Uri::from_static("/"),
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            body_len,
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
        }
    }

    #[test]
    fn keeps_the_newest_entries_and_counts_all() {
        let log = RequestLog::new(2);
        for body_len in 0..5 {
            log.record(request(body_len));
        }
        let kept: Vec<usize> = log.snapshot().iter().map(|r| r.body_len).collect();
        assert_eq!(kept, [3, 4]);
        assert_eq!(log.count(), 5);

        log.clear();
        assert!(log.snapshot().is_empty());
        assert_eq!(log.count(), 0);
    }

    #[test]
    fn zero_capacity_only_counts() {
        let log = RequestLog::new(0);
        log.record(request(1));
        assert!(log.snapshot().is_empty());
        assert_eq!(log.count(), 1);
    }
}
