//! The rounds of `tcp-bulk`: in each, one stream from the bulk source straight to the client (the
//! baseline: what loopback carries with no proxy), then one through Fulcrum and one through
//! HAProxy in the round's order ([`Proxy::order_in_round`]), each on a fresh proxy pinned to the
//! proxy CPU, with its CPU time read around the stream. The source and the client both run on
//! the load CPU, in every case.

use anyhow::Context;
use tracing::info;

use super::procfs::{read_cpu_ticks, read_task_run_times};
use super::proxy::Proxy;
use super::report::{BulkCpu, BulkRound, BulkRun, ScenarioReport};
use super::runner::{Bench, both_in_order};
use super::scenario::Scenario;
use super::summary::summarize_bulk;

impl Bench<'_> {
    /// Runs every round of a bulk scenario.
    pub(super) async fn bulk_scenario(&self, scenario: Scenario) -> anyhow::Result<ScenarioReport> {
        let rounds = self
            .rounds(scenario, |round| self.bulk_round(scenario, round))
            .await?;
        let summary = summarize_bulk(&rounds);
        Ok(ScenarioReport {
            bulk_rounds: rounds,
            ..ScenarioReport::new(scenario, summary)
        })
    }

    async fn bulk_round(&self, scenario: Scenario, round: usize) -> anyhow::Result<BulkRound> {
        let direct = self.direct_stream(scenario).await?;
        let (fulcrum, haproxy) =
            both_in_order(round, |proxy| self.proxied_stream(scenario, proxy)).await?;
        Ok(BulkRound {
            round,
            direct,
            fulcrum,
            haproxy,
        })
    }

    /// The stream with no proxy in the way.
    async fn direct_stream(&self, scenario: Scenario) -> anyhow::Result<BulkRun> {
        let (_, source) = self
            .bulk_source
            .clone()
            .context("tcp-bulk runs without a bulk source")?;
        let transfer = self
            .fetcher
            .run(source, self.options.bulk_size)
            .await
            .context("stream without a proxy")?;
        info!(
            %scenario,
            mb_per_s = transfer.megabytes_per_second as u64,
            "direct stream measured"
        );
        Ok(BulkRun {
            transfer,
            proxy_cpu: None,
        })
    }

    /// The stream through a fresh `proxy`, with the proxy's CPU time around it.
    async fn proxied_stream(&self, scenario: Scenario, proxy: Proxy) -> anyhow::Result<BulkRun> {
        let site = self.site(scenario)?;
        let mut running = self.start(proxy, &site).await?;
        let measured = async {
            let pid = running.pid()?;
            let ticks_before = read_cpu_ticks(pid)?;
            // Nanoseconds where the kernel keeps them; the ticks are the fallback.
            let tasks_before = read_task_run_times(pid).ok();
            let transfer = self
                .fetcher
                .run(site.listen, self.options.bulk_size)
                .await?;
            let tasks_after = read_task_run_times(pid).ok();
            let ticks_after = read_cpu_ticks(pid)?;
            running.check_alive()?;
            let user_ticks = ticks_after.user.saturating_sub(ticks_before.user);
            let system_ticks = ticks_after.system.saturating_sub(ticks_before.system);
            let (seconds, source) = match (tasks_before, tasks_after) {
                (Some(before), Some(after)) => (after.since(&before) as f64 / 1e9, "schedstat"),
                _ => (
                    (user_ticks + system_ticks) as f64 / self.clock_ticks.max(1) as f64,
                    "stat",
                ),
            };
            anyhow::Ok(BulkRun {
                transfer,
                proxy_cpu: Some(BulkCpu {
                    seconds,
                    source: source.to_owned(),
                    user_ticks,
                    system_ticks,
                    ticks_per_second: self.clock_ticks,
                }),
            })
        }
        .await;
        // Stopped (and waited for) on failure too, as the load rounds do.
        running.stop().await?;
        let run = measured.with_context(|| format!("stream through {proxy}"))?;
        info!(
            %scenario, %proxy,
            mb_per_s = run.transfer.megabytes_per_second as u64,
            cpu_s_per_gib = run.cpu_seconds_per_gib().unwrap_or(f64::NAN),
            "stream measured"
        );
        Ok(run)
    }
}
