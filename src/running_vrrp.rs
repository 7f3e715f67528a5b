//! VRRP as `fulcrum run` keeps it between reloads: the running [`Vrrp`] if `[vrrp]` is set,
//! the config it runs on, and the status handle the control socket, the stats page and the
//! metrics read, which outlives any one VRRP. A reload follows a changed `[vrrp]` here: applied
//! to the running instances ([`Vrrp::reload`]), or VRRP started when `[vrrp]` was added and
//! stopped (as at SIGTERM) when it was removed.

use std::sync::Arc;

use fulcrum_proxy::Proxy;
use fulcrum_vrrp::{
    config::VrrpConfig,
    run::{Options, Prepared, Reloaded, StatusHandle, Vrrp, VrrpEvent},
};
use tokio::{sync::broadcast, task::JoinHandle};

/// See the module documentation.
pub(crate) struct RunningVrrp {
    pub(crate) vrrp: Option<Vrrp>,
    config: Option<VrrpConfig>,
    status: StatusHandle,
    /// Whether the `fulcrum_vrrp_*` metrics are registered: once VRRP first runs.
    metrics: bool,
    /// A VRRP a reload removed, still stopping (its `notify_stop` scripts may take a while):
    /// the reload does not wait for it, so SIGTERM is still heard; [`RunningVrrp::stop`] and a
    /// `[vrrp]` added again do.
    stopping: Option<JoinHandle<()>>,
}

impl RunningVrrp {
    /// `prepared` started, if there is one (publishing to a handle of its own), on `config`.
    pub(crate) fn start(prepared: Option<Prepared>, config: Option<VrrpConfig>) -> Self {
        let status = StatusHandle::default();
        Self {
            vrrp: prepared.map(|p| p.start_into(status.clone())),
            config,
            status,
            metrics: false,
            stopping: None,
        }
    }

    /// What the instances publish; none without `[vrrp]`.
    pub(crate) fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Registers the `fulcrum_vrrp_*` metrics if VRRP runs and they are not yet.
    pub(crate) fn register_metrics(
        &mut self,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<()> {
        if self.vrrp.is_none() || self.metrics {
            return Ok(());
        }
        self.metrics = true;
        self.status.register_metrics(registry)
    }

    /// Follows a reloaded `[vrrp]` and logs what it did; on an error VRRP runs on as it was.
    /// Returns VRRP's events, subscribed before its instances started, when this started it.
    pub(crate) async fn follow(
        &mut self,
        new: Option<VrrpConfig>,
        proxy: &Arc<Proxy>,
        registry: &prometheus::Registry,
    ) -> Option<broadcast::Receiver<VrrpEvent>> {
        if new == self.config {
            return None;
        }
        let Some(config) = new.as_ref() else {
            self.remove();
            return None;
        };
        let mut started = None;
        let done = match (self.vrrp.as_mut(), self.config.as_ref()) {
            (Some(vrrp), Some(running)) => {
                vrrp.reload(running, config).await.map(|how| match how {
                    Reloaded::InPlace => "[vrrp] changed: applied to the running instances",
                    Reloaded::Rebuilt => {
                        "[vrrp] changed: VRRP rebuilt, the instances kept resuming their states"
                    }
                })
            }
            (None, None) => match self.prepare_again(config, proxy).await {
                Ok(prepared) => {
                    started = Some(prepared.subscribe());
                    self.vrrp = Some(prepared.start_into(self.status.clone()));
                    if let Err(error) = self.register_metrics(registry) {
                        tracing::warn!(%error, "cannot register the VRRP metrics; /metrics will lack them");
                    }
                    Ok("[vrrp] added: VRRP started")
                }
                Err(error) => {
                    // Off as before; the next reload tries again.
                    tracing::error!(%error, "[vrrp] added: cannot start VRRP; it stays off");
                    return None;
                }
            },
            // A `[vrrp]` in the file runs (the process does not start without it), and one
            // removed leaves no VRRP behind.
            (Some(_), None) | (None, Some(_)) => {
                tracing::error!("[vrrp] changed: VRRP and its config disagree; restart fulcrum");
                return None;
            }
        };
        match done {
            Ok(message) => {
                tracing::info!("{message}");
                self.config = new;
            }
            Err(change) => {
                tracing::warn!(%change, "[vrrp] changed: VRRP keeps running on the old settings until fulcrum restarts")
            }
        }
        started
    }

    /// A reload removed `[vrrp]`: VRRP stops as at SIGTERM (priority 0 from the masters, VIPs
    /// off, `notify_stop` run), in the background. Not while a volume follows an instance:
    /// its promotion hangs on it, as a rebuild refuses too.
    fn remove(&mut self) {
        if let Some(instance) = self.vrrp.as_ref().and_then(Vrrp::followed) {
            let change = format!(
                "vrrp.instance.{instance} (a volume follows it: removing [vrrp] needs a restart)"
            );
            tracing::warn!(%change, "[vrrp] changed: VRRP keeps running on the old settings until fulcrum restarts");
            return;
        }
        self.config = None;
        let Some(vrrp) = self.vrrp.take() else {
            return;
        };
        let status = self.status.clone();
        self.stopping = Some(tokio::spawn(async move {
            vrrp.stop().await;
            status.clear();
            tracing::info!("[vrrp] removed: VRRP stopped");
        }));
    }

    /// [`Vrrp::prepare`] for a `[vrrp]` added, once a removed one has stopped.
    async fn prepare_again(
        &mut self,
        config: &VrrpConfig,
        proxy: &Arc<Proxy>,
    ) -> Result<Prepared, fulcrum_vrrp::run::StartError> {
        if let Some(stopping) = self.stopping.take() {
            let _ = stopping.await;
        }
        Vrrp::prepare(config, options(proxy)).await
    }

    /// Shuts VRRP down: masters send priority 0 and remove their VIPs, `notify_stop` scripts
    /// run.
    pub(crate) async fn stop(self) {
        if let Some(stopping) = self.stopping {
            let _ = stopping.await;
        }
        if let Some(vrrp) = self.vrrp {
            vrrp.stop().await;
            tracing::info!("VRRP stopped");
        }
    }
}

/// What VRRP gets from the rest of the appliance: the proxy's health, for `builtin = "proxy"`.
pub(crate) fn options(proxy: &Arc<Proxy>) -> Options {
    Options {
        proxy_health: Some(crate::proxy_health::watch(Arc::clone(proxy))),
    }
}
