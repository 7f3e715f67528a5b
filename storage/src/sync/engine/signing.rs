//! A delta's base, read and signed on a thread of its own. The rsync signature of our older
//! copy is computed at about 1 GB/s, so a 100 GiB base takes over a minute; meanwhile the
//! fetcher sends its other requests and writes their answers, instead of waiting.

use std::{
    fs,
    io::{self, Read},
    path::Path,
    sync::mpsc,
    thread,
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{
    delta,
    fetch::Fetch,
    fsops::{self, TempFile},
};

/// Our older copy, open, and its signature.
pub(super) type Signed = (fs::File, Vec<u8>);

/// How long [`Signing::poll`] waits at most, so that a fetcher waiting for a long signing
/// still takes new jobs.
const WAIT_AT_MOST: Duration = Duration::from_millis(20);

/// A delta fetch whose base is being signed.
pub(super) struct Signing {
    job: u64,
    fetch: Fetch,
    /// Where the answer will be written.
    temp: TempFile,
    signed: mpsc::Receiver<io::Result<Signed>>,
    /// Stops the thread's reads.
    cancel: CancellationToken,
}

impl Signing {
    /// Starts signing our copy of `fetch`'s path under `root`, for job `job`, whose answer
    /// will be written to `temp`. The signing stops early when `cancel` fires, or when it is
    /// discarded.
    pub(super) fn start(
        root: &Path,
        job: u64,
        fetch: Fetch,
        temp: TempFile,
        cancel: CancellationToken,
    ) -> Self {
        let (done, signed) = mpsc::channel();
        let (root, rel) = (root.to_owned(), fetch.target.path.clone());
        let cancel = cancel.child_token();
        let stop = cancel.clone();
        // A thread that cannot be made drops `done`: the fetch goes whole (see `poll`).
        let _ = thread::Builder::new()
            .name("sync-sign".to_owned())
            .spawn(move || {
                let _ = done.send(open_base(&root, &rel, &stop));
            });
        Self {
            job,
            fetch,
            temp,
            signed,
            cancel,
        }
    }

    /// The outcome once the signing is over: `None` while it goes on (with `wait`, after
    /// waiting up to [`WAIT_AT_MOST`] for it). Inside, `Err` means no base: fetch whole.
    pub(super) fn poll(&self, wait: bool) -> Option<io::Result<Signed>> {
        let outcome = if wait {
            match self.signed.recv_timeout(WAIT_AT_MOST) {
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                outcome => outcome.ok(),
            }
        } else {
            match self.signed.try_recv() {
                Err(mpsc::TryRecvError::Empty) => return None,
                outcome => outcome.ok(),
            }
        };
        Some(outcome.unwrap_or_else(|| Err(io::Error::other("the signing thread did not run"))))
    }

    /// The job, the fetch and its temporary file.
    pub(super) fn into_parts(self) -> (u64, Fetch, TempFile) {
        (self.job, self.fetch, self.temp)
    }

    /// Gives up (the fetcher is ending): the thread stops at its next read, and the
    /// temporary file goes.
    pub(super) fn discard(self) {
        self.cancel.cancel();
        self.temp.discard();
    }
}

/// Our older copy of `rel` and its signature.
fn open_base(root: &Path, rel: &str, cancel: &CancellationToken) -> io::Result<Signed> {
    let (mut file, meta) = fsops::open_regular(root, rel)?;
    if meta.len() > delta::DELTA_MAX {
        return Err(io::Error::other("too large for a delta"));
    }
    let mut reader = Cancellable {
        file: &mut file,
        cancel,
    };
    let signature = delta::sign(&mut reader, meta.len())?;
    Ok((file, signature))
}

/// A file read that fails once the set is stopping, so that a stop does not leave a thread
/// reading a large file to the end.
struct Cancellable<'a> {
    file: &'a mut fs::File,
    cancel: &'a CancellationToken,
}

impl Read for Cancellable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("the set is stopping"));
        }
        self.file.read(buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::sync::{
        engine::fetch::Source,
        index::{Entry, Kind, NO_HASH},
    };

    /// A delta fetch of `rel`, with its temporary file under `root`.
    fn fetch_of(root: &Path, rel: &str) -> (Fetch, TempFile) {
        let entry = Entry {
            path: rel.to_owned(),
            kind: Kind::File,
            size: 0,
            mtime_ns: 0,
            mode: 0o644,
            owner: None,
            hash: NO_HASH,
            version: std::iter::once(("b", 1)).collect(),
            modified_by: "b".to_owned(),
            deleted: false,
            sequence: 1,
        };
        let fetch = Fetch {
            remote: entry.clone(),
            target: entry,
            source: Source::Remote { delta: true },
        };
        (fetch, TempFile::create(root, None, rel, true).unwrap())
    }

    /// Polls `signing` until it is over, for a minute at most.
    fn outcome(signing: &Signing) -> io::Result<Signed> {
        for _ in 0..3000 {
            if let Some(outcome) = signing.poll(true) {
                return outcome;
            }
        }
        panic!("no signature within a minute");
    }

    // Input: a 128 MiB base (over 100 ms to sign). Output: `start` returns before the
    // signature is ready (signed inline, the first poll would find it), and the signature
    // comes later, for the whole base.
    #[test]
    fn a_base_is_signed_while_the_caller_goes_on() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("big.bin");
        let mib: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        fs::write(&path, mib.repeat(128)).unwrap();
        let (fetch, temp) = fetch_of(root.path(), "big.bin");
        let signing = Signing::start(root.path(), 7, fetch, temp, CancellationToken::new());
        assert!(
            signing.poll(false).is_none(),
            "signed before start returned"
        );
        let (_, signature) = outcome(&signing).unwrap();
        let expected = delta::sign(&mut fs::File::open(&path).unwrap(), 128 << 20).unwrap();
        assert_eq!(signature, expected);
        let (job, fetch, temp) = signing.into_parts();
        assert_eq!((job, fetch.target.path.as_str()), (7, "big.bin"));
        temp.discard();
    }

    // Input: a stopping set; a path that is not there. Output: no base either way (the fetch
    // goes whole), and the temporary file is removed when the signing is discarded.
    #[test]
    fn a_stop_or_a_missing_file_gives_no_base() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("f"), vec![1u8; 1 << 20]).unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        for (rel, cancel) in [("f", cancel), ("gone", CancellationToken::new())] {
            let (fetch, temp) = fetch_of(root.path(), rel);
            let signing = Signing::start(root.path(), 1, fetch, temp, cancel);
            assert!(outcome(&signing).is_err(), "{rel}");
            signing.discard();
            let left: Vec<_> = fs::read_dir(root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| {
                    n.to_string_lossy()
                        .starts_with(crate::sync::watch::TEMP_PREFIX)
                })
                .collect();
            assert!(left.is_empty(), "{rel}: {left:?}");
        }
    }
}
