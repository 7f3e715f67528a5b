//! The receiving side's content hash ([`content_hash`]) of each whole-file answer, computed on its own thread between
//! the session's reader and the fetcher: hashing every received octet is the largest cost of
//! a transfer, and this way it overlaps with the fetcher's writes instead of adding to them.
//! The fetcher still checks the hash against the sender's before a file is renamed into place.
//!
//! The pieces are hashed as they are (the same buffers the fetcher then writes), per request
//! id, in order; an End gets the hash of its request's Data. Deltas are not hashed here: what
//! counts is the file rebuilt from them, which the fetcher hashes as it writes it.

use tokio::sync::mpsc;

use crate::sync::{
    index::{ContentHasher, Hash, content_hash},
    proto::Message,
};

/// One of the peer's answers, with what was hashed of it.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) msg: Message,
    /// For an End: the content hash of the Data received for its request.
    pub(super) received: Option<Hash>,
}

/// Hashes each run of answers and passes it on, until either side goes. Blocking.
pub(super) fn hash_loop(
    mut runs: mpsc::Receiver<Vec<Message>>,
    out: mpsc::Sender<Vec<Answer>>,
) -> Result<(), String> {
    let mut current: Option<(u32, ContentHasher)> = None;
    while let Some(run) = runs.blocking_recv() {
        let answers = run
            .into_iter()
            .map(|msg| {
                let received = match &msg {
                    Message::Data { id, data } => {
                        match &mut current {
                            Some((hashing, hasher)) if hashing == id => hasher.update(data),
                            _ => {
                                let mut hasher = ContentHasher::new();
                                hasher.update(data);
                                current = Some((*id, hasher));
                            }
                        }
                        None
                    }
                    Message::End { id, .. } => Some(match current.take() {
                        Some((hashing, hasher)) if hashing == *id => hasher.finish(),
                        // No Data: an empty file.
                        _ => content_hash(&[]),
                    }),
                    Message::Stale { .. } | Message::Failed { .. } => {
                        current = None;
                        None
                    }
                    _ => None,
                };
                Answer { msg, received }
            })
            .collect();
        if out.blocking_send(answers).is_err() {
            // The fetcher is gone: the session is ending.
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use bytes::Bytes;

    use super::*;

    fn sha(data: &[u8]) -> Hash {
        content_hash(data)
    }

    // Input: two answers in two runs (the first split over two Data), an empty file, and a
    // Stale in between. Output: each End carries the hash of its own request's Data.
    #[test]
    fn each_end_gets_the_hash_of_its_data() {
        let (runs_tx, runs_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let data = |id, d: &'static [u8]| Message::Data {
            id,
            data: Bytes::from_static(d),
        };
        let end = |id| Message::End {
            id,
            hash: crate::sync::index::NO_HASH,
            sha256: None,
        };
        runs_tx
            .try_send(vec![data(1, b"hello "), data(1, b"world")])
            .unwrap();
        runs_tx
            .try_send(vec![end(1), data(2, b"gone"), Message::Stale { id: 2 }])
            .unwrap();
        runs_tx
            .try_send(vec![end(3), data(4, b"x"), end(4)])
            .unwrap();
        drop(runs_tx);
        hash_loop(runs_rx, out_tx).unwrap();
        let answers: Vec<Answer> = std::iter::from_fn(|| out_rx.try_recv().ok())
            .flatten()
            .collect();
        let ends: Vec<_> = answers
            .iter()
            .filter(|a| matches!(a.msg, Message::End { .. }))
            .map(|a| a.received)
            .collect();
        assert_eq!(
            ends,
            vec![Some(sha(b"hello world")), Some(sha(b"")), Some(sha(b"x"))]
        );
        assert_eq!(answers.len(), 8);
    }
}
