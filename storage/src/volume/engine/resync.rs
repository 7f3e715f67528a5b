//! The SyncTarget's side of a resync (pure): which ranges to request next, in disk order, with
//! a bounded window of bytes in flight and `resync_rate` pacing, and when it is finished. A
//! range may come back in pieces (checksum-based resync answers per 4 KiB block).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;

use crate::volume::peer::MAX_DATA;

/// Bytes requested and not yet back: enough to keep a loopback link busy.
const WINDOW: u64 = 16 * MAX_DATA as u64;

/// What the target still has to fetch.
#[derive(Debug)]
pub(crate) struct TargetResync {
    /// The union bitmap's dirty ranges when the resync started, in disk order.
    ranges: Vec<Range<u64>>,
    /// Index in `ranges` and the offset reached in it.
    next: usize,
    at: u64,
    /// Bytes requested and not yet received.
    in_flight: u64,
    /// The ranges requested and not yet answered (start to end): an answer must fall within
    /// one, as DRBD matches each answer to its request. An unasked or repeated answer would
    /// otherwise count as received and end the resync early, ranges never sent marked in sync.
    outstanding: BTreeMap<u64, u64>,
    pub(crate) total: u64,
    pub(crate) done: u64,
    /// Bytes the source could not read: answered, but still out of sync.
    pub(crate) failed: u64,
    rate: Option<u64>,
    /// Pacing: no request before this instant.
    not_before: Instant,
}

impl TargetResync {
    pub(crate) fn new(ranges: Vec<Range<u64>>, rate: Option<u64>, now: Instant) -> Self {
        let total = ranges.iter().map(|r| r.end - r.start).sum();
        let at = ranges.first().map_or(0, |r| r.start);
        Self {
            ranges,
            next: 0,
            at,
            in_flight: 0,
            outstanding: BTreeMap::new(),
            total,
            done: 0,
            failed: 0,
            rate,
            not_before: now,
        }
    }

    /// The next range to request, if the window and the rate allow one now.
    pub(crate) fn next_request(&mut self, now: Instant) -> Option<(u64, u32)> {
        if self.in_flight >= WINDOW || now < self.not_before {
            return None;
        }
        let range = self.ranges.get(self.next)?.clone();
        let len = (range.end - self.at).min(MAX_DATA as u64);
        let offset = self.at;
        self.at += len;
        if self.at >= range.end {
            self.next += 1;
            self.at = self.ranges.get(self.next).map_or(0, |r| r.start);
        }
        self.in_flight += len;
        self.outstanding.insert(offset, offset + len);
        if let Some(rate) = self.rate {
            let cost = Duration::from_secs_f64(len as f64 / rate.max(1) as f64);
            self.not_before = self.not_before.max(now) + cost;
        }
        // `len` is at most MAX_DATA (1 MiB).
        Some((offset, u32::try_from(len).unwrap_or(u32::MAX)))
    }

    /// When pacing holds the next request back: the instant it may go.
    pub(crate) fn paced_until(&self) -> Option<Instant> {
        let more = self.next < self.ranges.len() && self.in_flight < WINDOW;
        more.then_some(self.not_before)
    }

    /// Takes `[offset, offset + len)` off what is outstanding, if all of it is: an answer as it
    /// arrives. False for an answer to no request of ours (or to one already answered).
    pub(crate) fn claim(&mut self, offset: u64, len: u64) -> bool {
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        let Some((&start, &stop)) = self.outstanding.range(..=offset).next_back() else {
            return false;
        };
        if len == 0 || end > stop {
            return false;
        }
        self.outstanding.remove(&start);
        if start < offset {
            self.outstanding.insert(start, offset);
        }
        if end < stop {
            self.outstanding.insert(end, stop);
        }
        true
    }

    /// `len` bytes of a requested range were applied (or found equal).
    pub(crate) fn received(&mut self, len: u64) {
        self.in_flight = self.in_flight.saturating_sub(len);
        self.done += len;
    }

    /// `len` bytes of a requested range came back unread (the source's disk failed them).
    pub(crate) fn missed(&mut self, len: u64) {
        self.in_flight = self.in_flight.saturating_sub(len);
        self.failed += len;
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Everything requested and applied.
    pub(crate) fn finished(&self) -> bool {
        self.next >= self.ranges.len() && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: two dirty ranges, one over a chunk. Output: requests in disk order, chunked, then
    // finished once all came back.
    #[test]
    fn walks_in_disk_order_in_chunks() {
        let now = Instant::now();
        let mb = MAX_DATA as u64;
        let mut r = TargetResync::new(vec![4096..8192, 3 * mb..5 * mb + 4096], None, now);
        assert_eq!(r.total, 4096 + 2 * mb + 4096);
        let mut got = Vec::new();
        while let Some(req) = r.next_request(now) {
            got.push(req);
        }
        assert_eq!(
            got,
            vec![
                (4096, 4096),
                (3 * mb, MAX_DATA as u32),
                (4 * mb, MAX_DATA as u32),
                (5 * mb, 4096)
            ]
        );
        assert!(!r.finished());
        for (_, len) in got {
            r.received(u64::from(len));
        }
        assert!(r.finished());
        assert_eq!(r.done, r.total);
    }

    // Input: a 1 MiB request, answered in two pieces, then the first piece again, a piece of
    // no request, and one running past the request. Output: only the two pieces are claimed.
    #[test]
    fn an_answer_must_match_a_request() {
        let now = Instant::now();
        let mb = MAX_DATA as u64;
        let mut r = TargetResync::new(std::iter::once(mb..2 * mb).collect(), None, now);
        assert_eq!(r.next_request(now), Some((mb, MAX_DATA as u32)));
        assert!(r.claim(mb, 4096));
        assert!(!r.claim(mb, 4096), "answered twice");
        assert!(!r.claim(0, 4096), "never asked");
        assert!(!r.claim(2 * mb - 4096, 8192), "past the request");
        assert!(r.claim(mb + 4096, mb - 4096));
        assert!(!r.claim(mb + 4096, 4096));
    }

    // Input: a rate of 1 MiB/s. Output: the second 1 MiB request waits a second.
    #[test]
    fn paces_to_the_rate() {
        let now = Instant::now();
        let mb = MAX_DATA as u64;
        let ranges: Vec<Range<u64>> = std::iter::once(0..4 * mb).collect();
        let mut r = TargetResync::new(ranges, Some(mb), now);
        assert!(r.next_request(now).is_some());
        assert!(r.next_request(now).is_none());
        assert_eq!(r.paced_until(), Some(now + Duration::from_secs(1)));
        assert!(r.next_request(now + Duration::from_secs(1)).is_some());
    }

    // Input: a 1 MiB request answered in 4 KiB pieces. Output: finished after the last piece.
    #[test]
    fn a_range_may_come_back_in_pieces() {
        let now = Instant::now();
        let mb = MAX_DATA as u64;
        let mut r = TargetResync::new(std::iter::once(0..mb).collect(), None, now);
        assert_eq!(r.next_request(now), Some((0, MAX_DATA as u32)));
        for _ in 0..255 {
            r.received(4096);
        }
        assert!(!r.finished());
        r.received(4096);
        assert!(r.finished());
    }

    // Input: two 1 MiB requests, the first answered unread. Output: finished once the second
    // comes back, with the first counted failed, not done.
    #[test]
    fn a_range_the_source_could_not_read_is_answered_but_failed() {
        let now = Instant::now();
        let mb = MAX_DATA as u64;
        let mut r = TargetResync::new(std::iter::once(0..2 * mb).collect(), None, now);
        assert!(r.next_request(now).is_some() && r.next_request(now).is_some());
        assert!(r.claim(0, mb));
        r.missed(mb);
        assert!(!r.finished());
        assert!(r.claim(mb, mb));
        r.received(mb);
        assert!(r.finished());
        assert_eq!((r.done, r.failed), (mb, mb));
    }

    #[test]
    fn nothing_to_do_is_finished_at_once() {
        let r = TargetResync::new(Vec::new(), None, Instant::now());
        assert!(r.finished());
        assert_eq!(r.total, 0);
    }
}
