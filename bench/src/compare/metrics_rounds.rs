//! The rounds of `get-metrics`: in each, the `get` load through a fresh Fulcrum without `[admin]`
//! (metrics off: the per-request counters are kept, nobody reads them), then through a fresh
//! Fulcrum with `[admin]` and a scraper fetching `/metrics` and the stats JSON once a second
//! (metrics on), both pinned to the proxy CPU. On over off is what the metrics cost.

use anyhow::Context;
use tracing::info;

use super::goal::check_goals;
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
        let mut rounds = Vec::new();
        for round in 1..=self.options.rounds {
            info!(%scenario, round, rounds = self.options.rounds, "round starting");
            let off = self
                .saturate(scenario, Proxy::Fulcrum)
                .await
                .with_context(|| format!("scenario {scenario}, round {round}"))?;
            let on = self
                .saturate(scenario, Proxy::FulcrumMetrics)
                .await
                .with_context(|| format!("scenario {scenario}, round {round}"))?;
            info!(
                %scenario, round,
                scrapes = on.saturation.scrapes.as_ref().map_or(0, |s| s.ok()),
                "metrics on and off measured"
            );
            rounds.push(MetricsRound { round, off, on });
        }
        let summary = summarize_metrics(&rounds);
        Ok(ScenarioReport {
            scenario,
            description: scenario.description().to_owned(),
            rounds: Vec::new(),
            bulk_rounds: Vec::new(),
            goals: check_goals(scenario.goals(), &summary),
            summary,
            metrics_rounds: rounds,
        })
    }
}
