//! `fulcrum demo` end to end: the real binary on free ports, driven by curl as a user would
//! drive it from the banner, then stopped with SIGINT.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Longest any wait may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn the_demo_balances_sticks_routes_posts_and_stops_cleanly() {
    let mut demo = Demo::start();
    let site = demo.site.clone();

    // Round robin: two requests without a cookie reach both web servers.
    let mut servers = vec![server(&get(&site, &[])), server(&get(&site, &[]))];
    servers.sort();
    assert_eq!(servers, ["web1", "web2"]);

    // Cookie persistence: a client with a jar stays on the server of its first answer.
    let scratch = tempfile::tempdir().unwrap();
    let jar = scratch.path().join("jar").display().to_string();
    let jar_args = ["-c", jar.as_str(), "-b", jar.as_str()];
    let first = get(&site, &jar_args);
    assert!(first.contains("set-cookie: SERVERID="), "{first}");
    let sticky = server(&first);
    for _ in 0..4 {
        assert_eq!(server(&get(&site, &jar_args)), sticky);
    }

    // POST routing: uploads go to their own backend.
    let upload = get(&format!("{site}upload"), &["-X", "POST", "--data", "x"]);
    assert_eq!(server(&upload), "upload");

    // The stats page: closed without the user, listing every backend and server with it.
    let (status, _) = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &demo.stats]);
    assert_eq!(status, "401");
    let (page, _) = curl(&[
        "-s",
        "-u",
        "admin:admin",
        "-w",
        "\n%{http_code}",
        &demo.stats,
    ]);
    assert!(page.ends_with("\n200"), "{page}");
    for backend in ["web", "upload"] {
        let row = format!("data-pxname=\"{backend}\"");
        assert!(page.contains(&row), "backend {backend} missing: {page}");
    }
    for server in ["web1", "web2", "upload"] {
        let row = format!("data-svname=\"{server}\"");
        assert!(page.contains(&row), "server {server} missing: {page}");
    }

    // The generated config is a valid one to copy.
    let check = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["check", "-c"])
        .arg(&demo.config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let origins = origin_addrs(&demo.config);
    assert_eq!(origins.len(), 3, "{origins:?}");

    // Ctrl-C: exit 0, every port closed, the temp dir gone.
    demo.signal("INT");
    let status = demo.wait_exit();
    assert!(status.success(), "{status}");
    for addr in [demo.site_addr(), demo.stats_addr()]
        .into_iter()
        .chain(origins)
    {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still open");
    }
    let dir = demo.config.parent().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// A running `fulcrum demo`, killed on drop so a failed assertion leaves nothing running.
struct Demo {
    child: Child,
    site: String,
    stats: String,
    config: PathBuf,
}

impl Demo {
    /// Starts the demo on free ports and reads its banner.
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // A thread reads the banner, so a demo that never prints it fails the test in time.
        let (lines, banner) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut demo = Self {
            child,
            site: String::new(),
            stats: String::new(),
            config: PathBuf::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = banner.recv_timeout(left).expect("the banner in time");
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("Site:"), Some(url)) => demo.site = url.to_owned(),
                (Some("Stats:"), Some(url)) => demo.stats = url.to_owned(),
                (Some("Config:"), Some(path)) => demo.config = PathBuf::from(path),
                _ if line == "Ctrl-C to stop." => break,
                _ => {}
            }
        }
        assert!(demo.site.starts_with("http://127.0.0.1:"), "{}", demo.site);
        assert!(demo.stats.ends_with("/stats"), "{}", demo.stats);
        assert!(demo.config.is_file(), "{}", demo.config.display());
        demo
    }

    fn site_addr(&self) -> SocketAddr {
        addr_of(&self.site)
    }

    fn stats_addr(&self) -> SocketAddr {
        addr_of(&self.stats)
    }

    /// Sends `signal` with `kill(1)`, as the other tests do, keeping this crate free of unsafe.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://ADDR/...` -> ADDR.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// The origin servers' addresses, from the `address = "..."` keys of the config.
fn origin_addrs(config: &Path) -> Vec<SocketAddr> {
    std::fs::read_to_string(config)
        .unwrap()
        .split("address = \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The response head of a request to `url` with curl's `args`, header names lowercased.
fn get(url: &str, args: &[&str]) -> String {
    let mut all = vec!["-s", "-o", "/dev/null", "-D", "-"];
    all.extend_from_slice(args);
    all.push(url);
    let (head, _) = curl(&all);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    head.lines()
        .map(|line| match line.split_once(':') {
            Some((name, value)) => format!("{}:{value}\n", name.to_ascii_lowercase()),
            None => format!("{line}\n"),
        })
        .collect()
}

/// Which origin answered: the `X-Server` header of a response head from [`get`].
fn server(head: &str) -> String {
    head.lines()
        .find_map(|line| line.strip_prefix("x-server:"))
        .map(|value| value.trim().to_owned())
        .unwrap_or_else(|| panic!("no X-Server in {head}"))
}

/// Runs curl, which must succeed; returns its stdout and stderr.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (apt-get install curl)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl {args:?}: {stderr}");
    (stdout, stderr)
}
