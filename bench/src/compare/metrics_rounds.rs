//! The rounds of `get-metrics`: in each, the `get` load through a fresh Fulcrum without `[admin]`
//! (metrics off: the per-request counters are kept, nobody reads them), then through a fresh
//! Fulcrum with `[admin]` and a scraper fetching `/metrics` and the stats JSON once a second
//! (metrics on), both pinned to the proxy CPU. On over off is what the metrics cost.

use tracing::info;

use super::proxy::Proxy;
use super::report::{MetricsRound, ScenarioReport};
use super::runner::Bench;
use super::scenario::Scenario;
use super::summary::summarize_metrics;

impl Bench<'_> {
    /// Runs every round of a metrics scenario.
    pub(super) async fn metrics_scenario(
        &self,
        scenario: Scenario,
    ) -> anyhow::Result<ScenarioReport> {
        let rounds = self
            .rounds(scenario, |round| self.metrics_round(scenario, round))
            .await?;
        let summary = summarize_metrics(&rounds);
        Ok(ScenarioReport {
            metrics_rounds: rounds,
            ..ScenarioReport::new(scenario, summary)
        })
    }

    /// One round: Fulcrum with metrics off, then on.
    async fn metrics_round(
        &self,
        scenario: Scenario,
        round: usize,
    ) -> anyhow::Result<MetricsRound> {
        let off = self.saturate(scenario, Proxy::Fulcrum).await?;
        let on = self.saturate(scenario, Proxy::FulcrumMetrics).await?;
        info!(
            %scenario, round,
            scrapes = on.saturation.scrapes.as_ref().map_or(0, |s| s.ok()),
            "metrics on and off measured"
        );
        Ok(MetricsRound { round, off, on })
    }
}
