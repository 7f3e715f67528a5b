//! The optional file store (`OriginOptions::files`): `POST` or `PUT /files/NAME` stores the body
//! in the directory, `GET /files/NAME` serves it back. It is the upload server and the web
//! servers of seed 004, whose bug was an upload stored on one web server and missing on the other.
//!
//! A body is written to a hidden temporary file (`.NAME.N.tmp`) and renamed into place, so a
//! reader (a web server, or a directory sync watching the directory) never sees half a file.
//! Names are one plain path segment; anything else is refused, so a request cannot reach outside
//! the directory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::route::MAX_SIZE;

/// The prefix of the paths the store answers.
pub(super) const PREFIX: &str = "/files/";

/// Longest name accepted: a file name on common Linux file systems.
const MAX_NAME: usize = 255;

/// The directory files are stored in and served from.
#[derive(Debug)]
pub(super) struct Files {
    dir: PathBuf,
}

/// What a request to the store comes to: the status and body to answer, and how many body bytes
/// the request carried (for the request log).
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
    pub(super) body_len: usize,
}

impl Files {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Answers `method` on `/files/NAME` (`name` is what follows the prefix), reading `body`.
    pub(super) async fn handle(
        &self,
        method: &Method,
        name: &str,
        body: Incoming,
    ) -> Result<Outcome, hyper::Error> {
        let (body, too_large) = collect_limited(body).await?;
        let body_len = body.len();
        let answer = |status: StatusCode, text: &'static str| Outcome {
            status,
            body: Bytes::from_static(text.as_bytes()),
            body_len,
        };
        if too_large {
            return Ok(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a stored file is at most 64MiB\n",
            ));
        }
        if !valid_name(name) {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                "a file name is one segment of letters, digits, '.', '-' or '_', not starting with '.'\n",
            ));
        }
        let path = self.dir.join(name);
        let outcome = match *method {
            Method::GET | Method::HEAD => match tokio::fs::read(&path).await {
                Ok(data) => Outcome {
                    status: StatusCode::OK,
                    body: Bytes::from(data),
                    body_len,
                },
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    answer(StatusCode::NOT_FOUND, "no such file\n")
                }
                Err(_) => answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n"),
            },
            Method::POST | Method::PUT => match store(&self.dir, name, &body).await {
                Ok(()) => answer(StatusCode::CREATED, "stored\n"),
                // A full disk is the server's trouble, and what a fault test looks for.
                Err(error) if error.kind() == io::ErrorKind::StorageFull => answer(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "no space left on the device\n",
                ),
                Err(_) => answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file\n"),
            },
            _ => answer(StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD, POST or PUT\n"),
        };
        Ok(outcome)
    }
}

/// Writes `data` to `dir/name` through a temporary file renamed into place; the temporary file
/// is removed when anything fails.
async fn store(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = async {
        tokio::fs::write(&temp, data).await?;
        tokio::fs::rename(&temp, dir.join(name)).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    written
}

/// One path segment that cannot name a temporary file or step out of the directory.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Reads `body` to its end, keeping at most [`MAX_SIZE`] bytes; true when there was more.
async fn collect_limited(mut body: Incoming) -> Result<(Bytes, bool), hyper::Error> {
    let mut kept = BytesMut::new();
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            // Past the limit the rest is still read (so the connection can be reused), not kept.
            if kept.len() + data.len() > MAX_SIZE {
                too_large = true;
            } else {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok((kept.freeze(), too_large))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_one_plain_segment() {
        for good in ["a", "photo.jpg", "upload-1_2.tar.gz", "A9"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            ".a.1-2.tmp",
            "a/b",
            "../etc",
            "a b",
            "%2e%2e",
            &long,
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
