//! The accept loop of the crate's two servers, the admin web server and the NRPE agent: at most
//! a fixed number of connections at a time (the rest wait in the kernel's backlog), each one
//! cut when the server stops.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};

/// Resolves when the server is stopped or dropped (the sender gone).
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sender was dropped: stopped as well.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Accepts on `listener` until `stop`, each connection holding one of `slots` while it runs.
/// `admit` decides about a new connection: the future serving it, or `None` to close it at
/// once. `server` names the server in the log.
pub(crate) async fn accept<F, Fut>(
    listener: TcpListener,
    server: &'static str,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    mut admit: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            () = stopped(stop.clone()) => return,
            accepted = async {
                // Waiting for a slot before accepting leaves extra clients in the backlog.
                let slot = Arc::clone(&slots).acquire_owned().await;
                (slot, listener.accept().await)
            } => accepted,
        };
        let (Ok(slot), result) = accepted else { return };
        let (stream, peer) = match result {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: back off a little instead of spinning.
                tracing::warn!(%error, server, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(serve) = admit(stream, peer) else {
            continue;
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stopped(stop) => {}
                () = serve => {}
            }
            drop(slot);
        });
    }
}
