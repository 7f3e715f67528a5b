//! `[nrpe]` in this process: the NRPE agent answering Nagios' `check_nrpe`, its built-in checks
//! reading the appliance's state; restarted when a reload changes the section.

use std::sync::Arc;

use fulcrum_monitoring::{
    Appliance as _,
    nrpe::{NrpeConfig, NrpeServer},
};

use crate::appliance::Appliance;

/// The agent, if the config has `[nrpe]`, with the config it runs.
#[derive(Debug, Default)]
pub(crate) struct Nrpe(Option<(NrpeConfig, NrpeServer)>);

impl Nrpe {
    pub(crate) async fn start(
        config: Option<NrpeConfig>,
        registry: &prometheus::Registry,
        appliance: &Arc<Appliance>,
    ) -> Result<Self, fulcrum_monitoring::nrpe::Error> {
        let Some(config) = config else {
            return Ok(Self(None));
        };
        let appliance = Arc::clone(appliance);
        let server = NrpeServer::start(
            config.clone(),
            Arc::new(move || appliance.snapshot()),
            registry,
        )
        .await?;
        tracing::info!(
            addr = %server.local_addr(),
            tls = config.tls.is_some(),
            commands = config.commands.len(),
            "NRPE agent listening"
        );
        Ok(Self(Some((config, server))))
    }

    /// Restarts the agent when a reload changed `[nrpe]`; otherwise leaves it serving (checks
    /// running now finish on the old one).
    pub(crate) async fn follow(
        &mut self,
        config: Option<NrpeConfig>,
        registry: &prometheus::Registry,
        appliance: &Arc<Appliance>,
    ) {
        if self.0.as_ref().map(|(running, _)| running) == config.as_ref() {
            return;
        }
        // The old agent must let go of its address before the new one binds it.
        let previous = self.0.as_ref().map(|(previous, _)| previous.clone());
        self.stop().await;
        let start = |config| Self::start(config, registry, appliance);
        *self = crate::restart::start_or_restore(
            "the NRPE agent",
            "[nrpe]",
            config,
            previous.map(Some),
            start,
        )
        .await
        .unwrap_or_default();
    }

    pub(crate) async fn stop(&mut self) {
        if let Some((_, server)) = self.0.take() {
            server.stop().await;
        }
    }
}
