//! A network link between two volumes that a test can cut and restore: TCP relays on 127.0.0.1
//! that forward to each node's `listen`. Cut, every relayed connection is dropped and the relays
//! stop listening, so new connections through them are refused until the link is restored.

use std::net::SocketAddr;
use std::time::Duration;

use fulcrum_storage::volume::{Protocol, Role};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::{Node, pair};

/// [`pair`], with each node reaching the other through a relay of a [`Link`]: returns the
/// relays' routes, `(relay, target)`. `a` still dials (its `listen` sorts below its `peer`, the
/// relay to `b`) and `b` still accepts.
pub(crate) fn relayed_pair(
    size: u64,
    protocol: Protocol,
    a_role: Role,
) -> (Node, Node, [(SocketAddr, SocketAddr); 2]) {
    let (mut a, mut b) = pair(size, protocol, a_role);
    // Held together so that the four ports differ.
    let listeners: Vec<_> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(listeners);
    addrs.sort();
    let [a_listen, to_a, to_b, b_listen] = [addrs[0], addrs[1], addrs[2], addrs[3]];
    (a.config.listen, a.config.peer) = (a_listen, to_b);
    (b.config.listen, b.config.peer) = (b_listen, to_a);
    (a, b, [(to_a, a_listen), (to_b, b_listen)])
}

/// The relays of one link; dropping it cuts the link for good.
pub(crate) struct Link {
    cut: watch::Sender<bool>,
    /// Relays listening.
    listening: watch::Sender<usize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Link {
    /// A link relaying each `(listen, target)` pair; returns once every relay listens.
    pub(crate) async fn new(routes: &[(SocketAddr, SocketAddr)]) -> Link {
        let (cut, _) = watch::channel(false);
        let (listening, _) = watch::channel(0);
        let tasks = routes
            .iter()
            .map(|&(listen, target)| {
                let (cut, listening) = (cut.subscribe(), listening.clone());
                tokio::spawn(relay(listen, target, cut, listening))
            })
            .collect();
        let link = Link {
            cut,
            listening,
            tasks,
        };
        link.restore().await;
        link
    }

    /// Drops every relayed connection and refuses new ones; returns once no relay listens.
    pub(crate) async fn cut(&self) {
        self.cut.send_replace(true);
        let mut listening = self.listening.subscribe();
        listening.wait_for(|n| *n == 0).await.unwrap();
    }

    /// Listens again (the relays' ports are reused); returns once every relay listens.
    pub(crate) async fn restore(&self) {
        self.cut.send_replace(false);
        let all = self.tasks.len();
        let mut listening = self.listening.subscribe();
        listening.wait_for(|n| *n == all).await.unwrap();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Forwards connections to `listen` to `target` while the link is up.
async fn relay(
    listen: SocketAddr,
    target: SocketAddr,
    mut cut: watch::Receiver<bool>,
    listening: watch::Sender<usize>,
) {
    loop {
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        let listener = bind(listen).await;
        listening.send_modify(|n| *n += 1);
        let pipes = cut.clone();
        loop {
            tokio::select! {
                _ = cut.wait_for(|c| *c) => break,
                accepted = listener.accept() => {
                    let Ok((from, _)) = accepted else { continue };
                    tokio::spawn(pipe(from, target, pipes.clone()));
                }
            }
        }
        // Dropping the listener refuses connections until the link is restored.
        drop(listener);
        listening.send_modify(|n| *n -= 1);
    }
}

/// Binds `addr` again after a cut (the port may linger briefly).
async fn bind(addr: SocketAddr) -> TcpListener {
    for _ in 0..200 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot bind the relay at {addr} again");
}

/// One relayed connection, dropped (both ends) when the link is cut.
async fn pipe(mut from: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut to) = TcpStream::connect(target).await else {
        return;
    };
    let _ = from.set_nodelay(true);
    let _ = to.set_nodelay(true);
    tokio::select! {
        _ = cut.wait_for(|c| *c) => {}
        _ = tokio::io::copy_bidirectional(&mut from, &mut to) => {}
    }
}
