//! The running modules seen as one appliance by the admin server and the control socket: one
//! [`Snapshot`] of every module, and server actions routed to the proxy.

use std::sync::Arc;

use fulcrum_common::{
    action::{ServerAction, ServerRef},
    stats::Snapshot,
};
use fulcrum_proxy::Proxy;

/// The modules this process runs.
#[derive(Debug, Clone)]
pub(crate) struct Appliance {
    pub(crate) proxy: Arc<Proxy>,
    /// `None` without `[vrrp]`.
    pub(crate) vrrp: Option<fulcrum_vrrp::run::StatusHandle>,
}

impl fulcrum_monitoring::Appliance for Appliance {
    fn snapshot(&self) -> Snapshot {
        // Volumes and sync sets stay empty until their modules run here.
        Snapshot {
            proxies: self.proxy.stats(),
            vrrp: self.vrrp_stats(),
            ..Snapshot::default()
        }
    }

    fn server_action(&self, server: &ServerRef, action: ServerAction) -> Result<String, String> {
        self.proxy
            .server_action(server, action)
            .map_err(|e| e.to_string())
    }
}

impl Appliance {
    /// Every VRRP instance, in name order.
    pub(crate) fn vrrp_stats(&self) -> Vec<fulcrum_common::stats::VrrpInstance> {
        self.vrrp.as_ref().map_or_else(Vec::new, |vrrp| {
            vrrp.instances().iter().map(|i| i.to_stats()).collect()
        })
    }
}
