//! The local control socket (`[global] control_socket`): a unix socket on which the running
//! process answers `fulcrum status` and `fulcrum ctl`, as HAProxy's stats socket answers its
//! runtime API.
//!
//! The protocol is one request line (see [`command`]), answered with text (JSON for `show l4`,
//! `show vrrp` and `show stat json`, CSV for `show stat`), then the connection closes; an answer that starts
//! with `error: ` is a refusal. The socket is created mode 0600: whoever can read the process's
//! state may use it, nobody else. Every action is logged with the uid of the peer.

pub(crate) mod command;

use std::{
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use self::command::Request;
use crate::appliance::Appliance;
use fulcrum_common::stats::{RowKind, Snapshot};
use fulcrum_monitoring::Appliance as _;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

/// The request `fulcrum status l4` sends.
pub(crate) const SHOW_L4: &str = "show l4";

/// The request `fulcrum status vrrp` sends.
pub(crate) const SHOW_VRRP: &str = "show vrrp";

/// The request `fulcrum status volume` sends.
pub(crate) const SHOW_VOLUME: &str = "show volume";

/// The request `fulcrum status sync` sends.
pub(crate) const SHOW_SYNC: &str = "show sync";

/// How an answer that refuses a request starts.
pub(crate) const ERROR_PREFIX: &str = "error: ";

/// The longest request line read.
const MAX_REQUEST: u64 = 1024;

/// How long a client may take to send its request line, and to take the answer: HAProxy's
/// `stats timeout` default. The work between the two (a volume action) is not bounded by it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

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
pub(crate) async fn start(path: &Path, appliance: Arc<Appliance>) -> io::Result<ControlSocket> {
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
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let appliance = Arc::clone(&appliance);
            tokio::spawn(async move {
                if let Err(error) = answer(stream, &appliance).await {
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
async fn answer(stream: UnixStream, appliance: &Appliance) -> io::Result<()> {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let peer = uid.map_or_else(|| "unknown".to_owned(), |uid| format!("uid {uid}"));
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    in_time(reader.read_line(&mut line)).await?;
    let reply = if !trusted(uid) {
        // The socket is made 0600, but a client could connect between its creation and the
        // chmod: the credentials decide, not the file mode alone.
        tracing::warn!(%peer, "control socket: refused a client of another user");
        format!("{ERROR_PREFIX}refused: only root and the appliance's user may use this socket\n")
    } else if !line.ends_with('\n') {
        // Cut at MAX_REQUEST, or the client stopped mid-line: not a request to act on.
        format!(
            "{ERROR_PREFIX}a request is one line of at most {MAX_REQUEST} bytes, ended by a newline\n"
        )
    } else {
        match command::parse(&line) {
            Ok(request) => reply(request, appliance, &peer).await?,
            Err(error) => format!("{ERROR_PREFIX}{error}\n"),
        }
    };
    in_time(async {
        write.write_all(reply.as_bytes()).await?;
        write.shutdown().await
    })
    .await?;
    if !line.ends_with('\n') {
        // The rest of a cut request is still unread, and a unix socket closed with unread
        // input resets its peer (ECONNRESET), which may then lose the answer: read it away.
        drain(reader.into_inner().into_inner()).await;
    }
    Ok(())
}

/// Reads and drops what the client sent beyond its request: at most 64 KiB, until it ends or
/// pauses for 200 ms.
async fn drain(mut read: tokio::net::unix::OwnedReadHalf) {
    let mut buf = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match tokio::time::timeout(Duration::from_millis(200), read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Root, or the user the appliance runs as.
fn trusted(uid: Option<u32>) -> bool {
    uid.is_some_and(|uid| uid == 0 || uid == rustix::process::geteuid().as_raw())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether the socket at `path` belongs to `uid` and sits in a directory no other user may
/// write to: then `uid` made it (an appliance run as its own user, in `/run/fulcrum/`, say),
/// not someone who got to a shared path like `/tmp` first.
fn owns_in_private_dir(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(socket) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(dir) = std::fs::metadata(dir) else {
        return false;
    };
    socket.uid() == uid && dir.mode() & 0o002 == 0 && (dir.uid() == uid || dir.uid() == 0)
}

/// `io` within [`CLIENT_TIMEOUT`], else a `TimedOut` error (the connection is then dropped).
async fn in_time<T>(io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(CLIENT_TIMEOUT, io)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "control socket client too slow"))?
}

/// The answer to one request.
async fn reply(request: Request, appliance: &Appliance, peer: &str) -> io::Result<String> {
    Ok(match request {
        Request::ShowL4 => json_line(&appliance.proxy.l4_status())?,
        Request::ShowVrrp => json_line(&appliance.vrrp_stats())?,
        Request::ShowVolume => json_line(&appliance.volume_stats())?,
        Request::ShowSync => json_line(&appliance.syncs.stats())?,
        Request::Volume(name, action) => match appliance.volume_action(&name, action).await {
            Ok(message) => {
                tracing::info!(user = peer, volume = %name, ?action, result = %message, "control socket: volume action");
                format!("{message}\n")
            }
            Err(error) => {
                tracing::warn!(user = peer, volume = %name, ?action, %error, "control socket: volume action refused");
                format!("{ERROR_PREFIX}{error}\n")
            }
        },
        Request::ShowStatJson => json_line(&appliance.snapshot())?,
        Request::ShowStat => fulcrum_monitoring::admin::csv(&appliance.snapshot()),
        Request::ShowServersState => servers_state(&appliance.snapshot()),
        Request::Help => command::HELP.to_owned(),
        Request::Server(server, action) => match appliance.server_action(&server, action) {
            Ok(message) => {
                tracing::info!(user = peer, %server, %action, result = %message, "control socket: server action");
                format!("{message}\n")
            }
            Err(error) => {
                tracing::warn!(user = peer, %server, %action, %error, "control socket: server action refused");
                format!("{ERROR_PREFIX}{error}\n")
            }
        },
    })
}

/// `value` as one line of JSON.
fn json_line(value: &impl serde::Serialize) -> io::Result<String> {
    let mut line = serde_json::to_string(value).map_err(io::Error::other)?;
    line.push('\n');
    Ok(line)
}

/// `show servers state`: one line per server, space separated, after a `#` header naming the
/// columns (HAProxy's own columns are about its state file; these are the ones operators read).
fn servers_state(snapshot: &Snapshot) -> String {
    let mut out = String::from("# backend server address status weight config_weight check\n");
    let rows = snapshot.proxies.iter().flat_map(|p| &p.rows);
    for row in rows.filter(|r| r.kind == RowKind::Server) {
        let opt = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "{} {} {} {} {} {} {}\n",
            row.pxname,
            row.svname,
            row.addr.as_deref().unwrap_or("-"),
            row.status.replace(' ', "_"),
            opt(row.weight),
            opt(row.config_weight),
            row.check_status.as_deref().unwrap_or("-"),
        ));
    }
    out
}

/// The socket a client command talks to: `--socket`, else the config's `control_socket`. Prints
/// why when neither can be had.
pub(crate) fn find_socket(config_path: &Path, socket: Option<&Path>) -> Option<PathBuf> {
    if let Some(socket) = socket {
        return Some(socket.to_owned());
    }
    match crate::config::load(config_path) {
        Ok(loaded) => Some(loaded.file.global.control_socket()),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "fulcrum: cannot read {} to find the control socket; pass --socket PATH",
                config_path.display()
            );
            None
        }
    }
}

/// Sends `request` to the process listening on `path` and returns its answer.
pub(crate) fn ask(path: &Path, request: &str) -> io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    // In /tmp, another user could have taken the path first: talk only to root, ourselves, or
    // (when we are root) the user a socket in a directory only its owners write belongs to.
    let server = rustix::net::sockopt::socket_peercred(&stream)?;
    let uid = server.uid.as_raw();
    let by_owner = is_root() && owns_in_private_dir(path, uid);
    if !(trusted(Some(uid)) || by_owner) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is served by uid {}, neither root nor this user: not asking it",
                path.display(),
                server.uid.as_raw()
            ),
        ));
    }
    // One write: a server that answers as soon as it has read a request (and closes) must not
    // find half of it, nor make the second half fail with EPIPE.
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
