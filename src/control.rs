//! The local control socket (`[global] control_socket`): a unix socket on which the running
//! process answers `fulcrum status` (and later `fulcrum ctl`), as HAProxy's stats socket does.
//!
//! The protocol is one request line (`show l4`), answered with one JSON document, then the
//! connection closes. The socket is created mode 0600: whoever can read the process's state may
//! use it, nobody else.

use std::{
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use fulcrum_proxy::Proxy;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

/// The requests the socket answers.
pub(crate) const SHOW_L4: &str = "show l4";

/// The longest request line read.
const MAX_REQUEST: u64 = 1024;

/// The bound socket; the file is removed when this drops.
#[derive(Debug)]
pub(crate) struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` and serves it. A stale socket file (no process behind it) is replaced; a live one
/// is left to its owner and reported as an error.
pub(crate) async fn start(path: &Path, proxy: Arc<Proxy>) -> io::Result<ControlSocket> {
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another running fulcrum answers on it",
        ));
    }
    // Only a socket is ours to replace: a regular file at that path is a mistake in the config.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                if let Err(error) = answer(stream, &proxy).await {
                    tracing::debug!(%error, "control socket client failed");
                }
            });
        }
    });
    Ok(ControlSocket {
        path: path.to_owned(),
        task,
    })
}

/// Reads one request line and writes its answer.
async fn answer(stream: UnixStream, proxy: &Proxy) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let reply = match line.trim() {
        SHOW_L4 => serde_json::to_string(&proxy.l4_status()).map_err(io::Error::other)?,
        other => {
            serde_json::json!({ "error": format!("unknown request `{other}`; try `{SHOW_L4}`") })
                .to_string()
        }
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Sends `request` to the process listening on `path` and returns its answer.
pub(crate) fn ask(path: &Path, request: &str) -> io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.write_all(request.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
