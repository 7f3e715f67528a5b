//! A webhook receiver for `[alert]`, inside a lab namespace or on the host: it answers 200 to every POST and
//! keeps each alert of the bodies, a `format = "json"` object or an Alertmanager array, so a
//! test can wait for the alert a transition must send.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;

use crate::netns::{Netns, wait_until};

/// The receiver; it stops accepting on drop.
#[derive(Debug)]
pub struct AlertReceiver {
    addr: SocketAddr,
    alerts: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl AlertReceiver {
    /// Listens on `addr` inside `ns` (an address of the namespace, or port 0 for any).
    pub fn start(ns: &Netns, addr: SocketAddr) -> Self {
        Self::serve(ns.enter(|| TcpListener::bind(addr)).unwrap())
    }

    /// Listens on `addr` in the caller's own namespace (tests without a lab).
    pub fn on_host(addr: SocketAddr) -> Self {
        Self::serve(TcpListener::bind(addr).unwrap())
    }

    fn serve(listener: TcpListener) -> Self {
        // Non-blocking accepts, so the loop sees `stop` and the thread ends with the receiver.
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (Arc::clone(&alerts), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let kept = Arc::clone(&kept);
                        std::thread::spawn(move || serve(stream, &kept));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { addr, alerts, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give `[alert] webhooks`.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Every alert received so far, in order.
    pub fn alerts(&self) -> Vec<Value> {
        self.alerts.lock().unwrap().clone()
    }

    /// The first alert `matches` picks, waiting up to `timeout` for it.
    pub fn wait(&self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let mut found = None;
        wait_until(timeout, Duration::from_millis(20), || {
            found = self.alerts().into_iter().find(|a| matches(a));
            found.is_some()
        });
        found
    }
}

impl Drop for AlertReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads HTTP/1.1 requests with a `Content-Length` body off `stream`, answering each with 200.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Value>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut stream = stream;
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        match serde_json::from_slice(&body) {
            Ok(Value::Array(alerts)) => kept.lock().unwrap().extend(alerts),
            Ok(alert) => kept.lock().unwrap().push(alert),
            Err(_) => {}
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}
