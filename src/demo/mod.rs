//! `fulcrum demo`: a small seed 004 site on loopback, with no root and no config file. Three
//! origin servers from the bench crate (web1, web2, upload) run in the process; the config for
//! them is written to a temp dir and served by the same code as `fulcrum run`, so the demo shows
//! exactly what a copy of that file does.

mod banner;
mod site;

use std::{io, net::SocketAddr, path::Path, process::ExitCode};

use fulcrum_bench::origin::{self, Origin, OriginOptions};

use crate::{config, logging, run};

/// Runs the demo until SIGINT or SIGTERM; 0 after a clean stop.
pub(crate) fn demo(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fulcrum demo: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(listen, admin))
}

async fn serve(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    // Before anything starts, so a taken default port gets advice rather than a bind error
    // buried in the log.
    if let Err(message) = ensure_free(&[
        ("site", "--listen", listen),
        ("stats page", "--admin", admin),
    ]) {
        eprintln!("{message}");
        return ExitCode::FAILURE;
    }
    let origins = match Origins::start().await {
        Ok(origins) => origins,
        Err(error) => {
            eprintln!("fulcrum demo: cannot start the origin servers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::Builder::new().prefix("fulcrum-demo-").tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("fulcrum demo: cannot create a temp dir for the config: {error}");
            origins.stop().await;
            return ExitCode::FAILURE;
        }
    };
    let path = dir.path().join("fulcrum.toml");
    let code = serve_config(&path, &site::config(listen, admin, &origins.site())).await;
    origins.stop().await;
    // Removed here rather than on drop, so a failure to remove it is reported.
    let shown = dir.path().display().to_string();
    if let Err(error) = dir.close() {
        eprintln!("fulcrum demo: cannot remove {shown}: {error}");
    }
    code
}

/// Writes `text` to `path` and serves it as `fulcrum run` does, printing the banner once up.
async fn serve_config(path: &Path, text: &str) -> ExitCode {
    if let Err(error) = std::fs::write(path, text) {
        eprintln!("fulcrum demo: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            // Only a bug in `site::config` gets here.
            eprintln!("{errors}");
            eprintln!("fulcrum demo: the generated config is invalid");
            return ExitCode::FAILURE;
        }
    };
    logging::init(&loaded.file.global);
    let mut up = false;
    let code = run::serve(path, loaded, |started| {
        up = true;
        banner::print(&started, path);
    })
    .await;
    if !up {
        eprintln!(
            "fulcrum demo: not started (see the log above); if an address is taken, try `fulcrum demo --listen 127.0.0.1:0 --admin 127.0.0.1:0`"
        );
    }
    code
}

/// Fails with advice when one of `addrs` (what it is for, its option, the address) cannot be
/// listened on. Bound as the proxy binds (SO_REUSEADDR, so a port whose last connections linger
/// in TIME_WAIT still counts as free), and all at once, so `--listen` and `--admin` on one
/// address fail too. Port 0 is always free.
fn ensure_free(addrs: &[(&str, &str, SocketAddr)]) -> Result<(), String> {
    let mut held = Vec::new();
    for &(what, option, addr) in addrs.iter().filter(|(_, _, a)| a.port() != 0) {
        match listen(addr) {
            Ok(socket) => held.push(socket),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "fulcrum demo: cannot listen on {addr} for the {what}: {error}\n\
                     fulcrum demo: is another program (another fulcrum?) using it? Choose another address, e.g. `fulcrum demo {option} 127.0.0.1:0` (port 0: any free port)"
                ));
            }
            Err(error) => {
                return Err(format!(
                    "fulcrum demo: cannot listen on {addr} for the {what}: {error}"
                ));
            }
        }
    }
    Ok(())
}

fn listen(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1)
}

/// The three origin servers, each on a free loopback port.
struct Origins {
    web1: Origin,
    web2: Origin,
    upload: Origin,
}

impl Origins {
    async fn start() -> io::Result<Self> {
        Ok(Self {
            web1: start_origin("web1").await?,
            web2: start_origin("web2").await?,
            upload: start_origin("upload").await?,
        })
    }

    fn site(&self) -> site::Origins {
        site::Origins {
            web1: self.web1.addr(),
            web2: self.web2.addr(),
            upload: self.upload.addr(),
        }
    }

    async fn stop(self) {
        self.web1.stop().await;
        self.web2.stop().await;
        self.upload.stop().await;
    }
}

/// An origin whose body is its name on a line, so `curl` shows who answered.
async fn start_origin(name: &str) -> io::Result<Origin> {
    let options = OriginOptions {
        name: name.to_owned(),
        body_size: name.len() + 1,
        ..OriginOptions::default()
    };
    origin::start(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
}
