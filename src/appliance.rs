//! The running modules seen as one appliance by the admin server and the control socket: one
//! [`Snapshot`] of every module, and server actions routed to the proxy.

use std::sync::Arc;

use fulcrum_common::{
    action::{ServerAction, ServerRef},
    stats::Snapshot,
};
use fulcrum_proxy::Proxy;

use crate::{control::command::VolumeAction, syncs::Syncs, volumes::Volumes};

/// The modules this process runs.
#[derive(Debug, Clone)]
pub(crate) struct Appliance {
    pub(crate) proxy: Arc<Proxy>,
    /// No instance without `[vrrp]`; a `[vrrp]` a reload adds or removes publishes here.
    pub(crate) vrrp: fulcrum_vrrp::run::StatusHandle,
    /// `[volume.NAME]`s; a reload may add, restart or remove them.
    pub(crate) volumes: Arc<Volumes>,
    /// `[sync.NAME]`s.
    pub(crate) syncs: Arc<Syncs>,
}

impl fulcrum_monitoring::Appliance for Appliance {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            proxies: self.proxy.stats(),
            vrrp: self.vrrp_stats(),
            volumes: self.volume_stats(),
            syncs: self.syncs.stats(),
        }
    }

    fn server_action(&self, server: &ServerRef, action: ServerAction) -> Result<String, String> {
        self.proxy
            .server_action(server, action)
            .map_err(|e| e.to_string())
    }
}

impl Appliance {
    /// Every volume, in name order.
    pub(crate) fn volume_stats(&self) -> Vec<fulcrum_common::stats::Volume> {
        self.volumes.stats()
    }

    /// Carries out `action` on the volume called `name`; the message says what happened.
    pub(crate) async fn volume_action(
        &self,
        name: &str,
        action: VolumeAction,
    ) -> Result<String, String> {
        let volume = self.volumes.find(name)?;
        let done = match action {
            VolumeAction::Primary { force } => {
                volume.promote(force).await.map(|()| "primary".to_owned())
            }
            VolumeAction::Secondary => volume.demote().await.map(|()| "secondary".to_owned()),
            VolumeAction::Connect { discard_my_data } => volume
                .connect(discard_my_data)
                .await
                .map(|()| "connecting".to_owned()),
            VolumeAction::Disconnect => volume.disconnect().await.map(|()| "StandAlone".to_owned()),
            VolumeAction::Verify => volume.verify().await.map(|r| {
                format!(
                    "verified {} bytes, {} differ",
                    r.checked_bytes, r.differing_bytes
                )
            }),
        };
        done.map_err(|e| e.to_string())
    }

    /// Every VRRP instance, in name order.
    pub(crate) fn vrrp_stats(&self) -> Vec<fulcrum_common::stats::VrrpInstance> {
        (self.vrrp.instances().iter())
            .map(|i| i.to_stats())
            .collect()
    }
}
