//! `fulcrum run`: start the modules on the loaded config, then wait for signals: SIGHUP reloads
//! (a bad file changes nothing and logs every error), SIGTERM/SIGINT stop accepting and let
//! requests in flight finish within `[global] grace`.

use std::{net::SocketAddr, path::Path, process::ExitCode, sync::Arc};

use fulcrum_monitoring::{
    admin::AdminServer, alert::AlertConfig, config::AdminConfig, nrpe::NrpeConfig,
};
use fulcrum_proxy::Proxy;
use fulcrum_storage::{sync::config::SyncConfig, volume::config::VolumeConfig};
use fulcrum_vrrp::{
    config::VrrpConfig,
    run::{Prepared, Vrrp},
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    alerts::{self, Alerts},
    appliance::Appliance,
    config, control, logging,
    nrpe::Nrpe,
    running_vrrp::{self, RunningVrrp},
    syncs::Syncs,
    volumes::Volumes,
};

/// Runs until a stop signal; the exit code is 0 after a clean stop.
pub(crate) fn run(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "fulcrum: not starting: {} error(s) in {}",
                errors.errors.len(),
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    logging::init(&loaded.file.global);
    // One thread: a current-thread runtime, without the work-stealing scheduler's atomics and
    // cross-thread wake-ups, which a single worker never needs.
    let mut builder = match *loaded.file.global.threads.get_ref() {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(path, loaded, |_| ()))
}

/// Where a started appliance listens, with the ports the system chose for port 0: what
/// `fulcrum demo` prints.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) listeners: Vec<fulcrum_proxy::Listener>,
    /// The admin server's address, when the config has `[admin]`.
    pub(crate) admin: Option<SocketAddr>,
}

/// Serves `loaded` until a stop signal; `started` is called once everything is up.
pub(crate) async fn serve(
    path: &Path,
    loaded: config::Loaded,
    started: impl FnOnce(Started),
) -> ExitCode {
    let grace = loaded.file.global.grace.get();
    // Signals first: a SIGHUP or SIGTERM that arrives while listeners are being bound must not
    // kill the process with the default action.
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let socket_path = loaded.file.global.control_socket();
    let proxy = match Proxy::start(loaded.proxy) {
        Ok(proxy) => Arc::new(proxy),
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // After the proxy, whose listeners bind VIPs with IP_FREEBIND and so need not wait for
    // them; before the admin server, so the stats page shows VRRP from its first page.
    let running_global = loaded.file.global.clone();
    let vrrp = match &loaded.vrrp {
        Some(config) => match Vrrp::prepare(config, running_vrrp::options(&proxy)).await {
            Ok(vrrp) => Some(vrrp),
            Err(error) => {
                tracing::error!(%error, "cannot start VRRP");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // Each volume that follows an instance registers before the instances start, so that even
    // the first MASTER (at once with priority 255) waits for its promotion before
    // `notify_master`; the volumes themselves start after VRRP, which promotes them.
    let planned = Volumes::plan(loaded.volumes, vrrp.as_ref());
    // The alerts start after the volumes and syncs; their VRRP feed is subscribed now, so that
    // the instances' first changes (an owner's MASTER at once) are mailed too.
    let vrrp_events = vrrp.as_ref().map(Prepared::subscribe);
    let mut vrrp = RunningVrrp::start(vrrp, loaded.vrrp);
    let global = &loaded.file.global;
    let volumes = match Volumes::start(planned, &global.state_dir, &global.node_name()).await {
        Ok(volumes) => Arc::new(volumes),
        Err(error) => {
            tracing::error!(%error, "cannot start the replicated volumes");
            vrrp.stop().await;
            return ExitCode::FAILURE;
        }
    };
    // Their events from their start on, for the alerts, which start after the sync sets (whose
    // start awaits). The sets' own are subscribed by the alerts' start: nothing awaits between.
    let started_volumes = volumes.subscribe();
    let syncs = match Syncs::start(loaded.syncs, &global.state_dir, &global.node_name()).await {
        Ok(syncs) => Arc::new(syncs),
        Err(error) => {
            tracing::error!(%error, "cannot start the directory sync");
            vrrp.stop().await;
            volumes.stop().await;
            return ExitCode::FAILURE;
        }
    };
    let appliance = Arc::new(Appliance {
        proxy: Arc::clone(&proxy),
        vrrp: vrrp.status(),
        volumes: Arc::clone(&volumes),
        syncs: Arc::clone(&syncs),
    });
    let registry = prometheus::Registry::new();
    if let Err(error) = proxy
        .register_metrics(&registry)
        .and_then(|()| fulcrum_monitoring::process::register(&registry))
        .and_then(|()| vrrp.register_metrics(&registry))
        .and_then(|()| register_storage_metrics(&appliance, &registry))
    {
        tracing::warn!(%error, "cannot register metrics; /metrics will lack them");
    }
    let node = global.node_name();
    // VRRP is filled in at each use, not captured: a reload may rebuild it (`&mut`) in between.
    let sources = |registry| alerts::Sources {
        proxy: &proxy,
        vrrp: None,
        volumes: &volumes,
        syncs: &syncs,
        node: &node,
        registry,
    };
    let mut alerts = Alerts::start(
        loaded.alert,
        alerts::Sources {
            vrrp: vrrp.vrrp.as_ref(),
            ..sources(&registry)
        },
        alerts::Started {
            volumes: started_volumes,
            // From the proxy's start: a server that fails its first check while VRRP, the
            // volumes and the sync sets start (seconds, maybe) is alerted too.
            proxy: Some(proxy.events_since_start()),
            ..alerts::Started::default()
        },
        vrrp_events,
    );
    let mut admin = match Admin::start(loaded.admin, &registry, &appliance).await {
        Ok(admin) => admin,
        Err(error) => {
            tracing::error!(%error, "cannot start the admin server");
            // VRRP first, so that its instances' STOP is alerted, as at a normal stop.
            vrrp.stop().await;
            alerts.stop().await;
            volumes.stop().await;
            syncs.stop().await;
            return ExitCode::FAILURE;
        }
    };
    let mut nrpe = match Nrpe::start(loaded.nrpe, &registry, &appliance).await {
        Ok(nrpe) => nrpe,
        Err(error) => {
            tracing::error!(%error, "cannot start the NRPE agent");
            drop(admin);
            // VRRP first, so that its instances' STOP is alerted, as at a normal stop.
            vrrp.stop().await;
            alerts.stop().await;
            volumes.stop().await;
            syncs.stop().await;
            return ExitCode::FAILURE;
        }
    };
    // Without the control socket the appliance still serves; only `fulcrum status` cannot
    // reach it, which the warning says.
    let _control = match control::start(&socket_path, Arc::clone(&appliance)).await {
        Ok(socket) => {
            tracing::info!(path = %socket_path.display(), "control socket ready");
            Some(socket)
        }
        Err(error) => {
            tracing::warn!(path = %socket_path.display(), %error, "no control socket: `fulcrum status` will not reach this process; set [global] control_socket");
            None
        }
    };
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "fulcrum started");
    started(Started {
        listeners: proxy.listeners(),
        admin: admin.local_addr(),
    });
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Some(new) = reload(path, &proxy, &running_global) {
                    // An address the proxy gave up may be what a sidecar binds next. And a
                    // client that connects once "reloaded" is logged must not land in the
                    // backlog of a listener given up (SO_REUSEPORT shares its port with the new
                    // one), which its close would reset.
                    proxy.released().await;
                    tracing::info!(config = %path.display(), "reloaded");
                    admin.follow(new.admin, &registry, &appliance).await;
                    nrpe.follow(new.nrpe, &registry, &appliance).await;
                    // The sets before the alerts, which then follow the ones just started.
                    let started_syncs = syncs.follow(new.syncs).await;
                    // Volumes leaving let go of their instances before VRRP follows, and new
                    // ones follow the instances it has then: VRRP's reload goes in between.
                    let handover = volumes.stop_changed(&new.volumes).await;
                    // VRRP before the alerts, which then follow what it did.
                    let before = vrrp.vrrp.as_ref().map(Vrrp::subscribe);
                    let started = vrrp.follow(new.vrrp, &proxy, &registry).await;
                    let started_volumes = volumes.start_new(new.volumes, vrrp.vrrp.as_ref(), handover).await;
                    let sources = alerts::Sources { vrrp: vrrp.vrrp.as_ref(), ..sources(&registry) };
                    let feed = alerts::VrrpFeed { before, started };
                    let started = alerts::Started { syncs: started_syncs, volumes: started_volumes, proxy: None };
                    alerts.follow(new.alert, sources, started, feed).await;
                    if new.global.restart_only() != running_global.restart_only() {
                        tracing::warn!("[global] changed: node, state_dir, threads, grace, log and control_socket keep their running values until fulcrum restarts (max_connections was applied)");
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // VRRP first: a master's priority-0 advert lets the peer take the VIPs after Skew_Time
    // rather than after Master_Down_Interval. Connections to a VIP end with it (its packets now
    // reach the peer); the grace period serves those on the node's own addresses.
    vrrp.stop().await;
    // Their last alerts (each instance's STOP) go out while the rest stops.
    let alerts = tokio::spawn(alerts.stop());
    // Then the volumes (NBD drained, metadata closed clean): the peer, MASTER now, promotes its
    // copy as soon as this one is secondary.
    volumes.stop().await;
    // The sync sets save their index; what they have not sent waits in it for the next start.
    syncs.stop().await;
    nrpe.stop().await;
    if alerts.await.is_err() {
        tracing::warn!("the alerts did not stop cleanly");
    }
    tracing::info!(grace = ?grace, connections = proxy.connections(), "stopping: no new connections, finishing requests in flight");
    // A second stop signal during the grace period means "now", as with HAProxy's hard stop.
    tokio::select! {
        finished = proxy.shutdown(grace) => {
            if finished {
                tracing::info!("stopped");
            } else {
                tracing::warn!(connections = proxy.connections(), "grace period over, closing the rest");
                proxy.hard_stop();
            }
        }
        _ = term.recv() => {
            tracing::warn!(connections = proxy.connections(), "second stop signal, closing the rest now");
            proxy.hard_stop();
        }
        _ = int.recv() => {
            tracing::warn!(connections = proxy.connections(), "second stop signal, closing the rest now");
            proxy.hard_stop();
        }
    }
    ExitCode::SUCCESS
}

/// `fulcrum_volume_*` and `fulcrum_sync_*`, read from the volumes' and sync sets' status at
/// each scrape.
fn register_storage_metrics(
    appliance: &Arc<Appliance>,
    registry: &prometheus::Registry,
) -> prometheus::Result<()> {
    let (volumes, syncs) = (Arc::clone(appliance), Arc::clone(appliance));
    let collector = fulcrum_monitoring::storage_metrics::StorageCollector::new(
        Arc::new(move || volumes.volume_stats()),
        Arc::new(move || syncs.syncs.stats()),
    )?;
    registry.register(Box::new(collector))
}

/// The sections a reload hands to the modules other than the proxy.
struct Reloaded {
    global: crate::config::GlobalSection,
    admin: Option<AdminConfig>,
    nrpe: Option<NrpeConfig>,
    alert: Option<AlertConfig>,
    vrrp: Option<VrrpConfig>,
    volumes: Vec<VolumeConfig>,
    syncs: Vec<SyncConfig>,
}

/// Reloads the proxy; returns the new file's other sections when the reload went through.
fn reload(path: &Path, proxy: &Proxy, running: &config::GlobalSection) -> Option<Reloaded> {
    match config::load(path) {
        Ok(mut loaded) => {
            // `log` keeps its running value until a restart, as the subscriber does: access
            // records in JSON with a text subscriber would come out as doubled text lines.
            loaded.proxy.json_log = running.log.format == config::LogFormat::Json;
            reload_loaded(loaded, proxy)
        }
        Err(errors) => {
            for line in errors.to_string().lines() {
                tracing::error!(error = line, "reload refused");
            }
            tracing::error!(
                count = errors.errors.len(),
                "reload refused, keeping the running config"
            );
            None
        }
    }
}

/// Applies a checked config to the proxy; the rest is for the caller to follow.
fn reload_loaded(loaded: config::Loaded, proxy: &Proxy) -> Option<Reloaded> {
    match proxy.reload(loaded.proxy) {
        Ok(()) => {
            // "reloaded" is logged once the listeners given up are closed (see `run`).
            Some(Reloaded {
                global: loaded.file.global,
                admin: loaded.admin,
                nrpe: loaded.nrpe,
                alert: loaded.alert,
                vrrp: loaded.vrrp,
                volumes: loaded.volumes,
                syncs: loaded.syncs,
            })
        }
        Err(error) => {
            tracing::error!(%error, "reload failed, keeping the running config");
            None
        }
    }
}

/// The admin server of `[admin]`, if the config has one, with the config it runs.
struct Admin(Option<(AdminConfig, AdminServer)>);

impl Admin {
    fn local_addr(&self) -> Option<SocketAddr> {
        self.0.as_ref().map(|(_, server)| server.local_addr())
    }

    async fn start(
        config: Option<AdminConfig>,
        registry: &prometheus::Registry,
        appliance: &Arc<Appliance>,
    ) -> Result<Self, fulcrum_monitoring::admin::Error> {
        let Some(config) = config else {
            return Ok(Self(None));
        };
        let server = AdminServer::start(
            config.clone(),
            registry.clone(),
            Arc::clone(appliance) as Arc<dyn fulcrum_monitoring::Appliance>,
            env!("CARGO_PKG_VERSION"),
        )
        .await?;
        tracing::info!(addr = %server.local_addr(), stats = %config.stats_path, metrics = %config.metrics_path, "admin server listening");
        Ok(Self(Some((config, server))))
    }

    /// Restarts the admin server when a reload changed `[admin]`; otherwise leaves it serving.
    async fn follow(
        &mut self,
        config: Option<AdminConfig>,
        registry: &prometheus::Registry,
        appliance: &Arc<Appliance>,
    ) {
        if self.0.as_ref().map(|(running, _)| running) == config.as_ref() {
            return;
        }
        // The old server must let go of its address before the new one binds it.
        let previous = match self.0.take() {
            Some((previous, old)) => {
                old.stop().await;
                Some(previous)
            }
            None => None,
        };
        let start = |config| Self::start(config, registry, appliance);
        *self = crate::restart::start_or_restore(
            "the admin server",
            "[admin]",
            config,
            previous.map(Some),
            start,
        )
        .await
        .unwrap_or(Self(None));
    }
}
