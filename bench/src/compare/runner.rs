//! The rounds of one scenario: Fulcrum and HAProxy, each on a fresh process pinned to the proxy
//! CPU, behind the same origins; Fulcrum first in odd rounds, HAProxy first in even ones
//! ([`Proxy::order_in_round`]).
//!
//! A round has two phases. First each proxy gets its idle-memory measurement (on the fresh
//! process, before any load), a warm-up, the saturation run that gives throughput and CPU per
//! request, and for `tls` the handshake run. Then, for `get`, each proxy gets a fixed-rate run at
//! half of the HAProxy throughput just measured, which gives latency at a load both can carry.
//! `tcp-bulk` has rounds of its own, in [`super::bulk_rounds`], and so has `get-metrics`, in
//! [`super::metrics_rounds`]. Whenever a proxy runs its admin server, a scraper runs beside each
//! of its measured load runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::admin::AdminSite;
use super::bulk_run::BulkFetcher;
use super::idle::{IdleTarget, measure_idle};
use super::load_run::{LoadRunner, LoadSpec};
use super::options::CompareOptions;
use super::port::free_port;
use super::process::Spawned;
use super::procfs::read_cpu_ticks;
use super::proxy::{Proxy, ProxyBinaries, start_proxy};
use super::report::{CpuUse, Measured, ProxyRound, RoundReport, ScenarioReport};
use super::scenario::Scenario;
use super::scrape_run::{Scraper, check_scrapes};
use super::site::Site;
use super::summary::{report_errors, summarize};

/// The share of HAProxy's saturation throughput that the fixed-rate run asks for.
const FIXED_RATE_SHARE: f64 = 0.5;

/// Everything the rounds share.
#[derive(Debug)]
pub(crate) struct Bench<'a> {
    pub(crate) options: &'a CompareOptions,
    pub(crate) binaries: ProxyBinaries<'a>,
    pub(crate) load: LoadRunner<'a>,
    pub(crate) fetcher: BulkFetcher<'a>,
    /// Scrapes the admin server of Fulcrum+metrics.
    pub(crate) scraper: Scraper<'a>,
    /// The run's temp dir: configs and proxy logs.
    pub(crate) dir: &'a Path,
    /// The origins, `s1` and `s2`.
    pub(crate) servers: Vec<(String, SocketAddr)>,
    /// The bulk source, when `tcp-bulk` runs.
    pub(crate) bulk_source: Option<(String, SocketAddr)>,
    /// The TLS certificate, when a TLS scenario runs.
    pub(crate) cert: Option<PathBuf>,
    pub(crate) clock_ticks: u64,
}

impl Bench<'_> {
    /// Runs every round of every selected scenario, in order.
    pub(crate) async fn all_scenarios(&self) -> anyhow::Result<Vec<ScenarioReport>> {
        let mut reports = Vec::new();
        for &scenario in &self.options.scenarios {
            let report = if scenario.bulk() {
                self.bulk_scenario(scenario).await?
            } else if scenario.metrics() {
                self.metrics_scenario(scenario).await?
            } else {
                self.scenario(scenario).await?
            };
            reports.push(report);
        }
        Ok(reports)
    }

    /// Runs `run_round` for each round of `scenario`, from 1, and names the scenario and the
    /// round in its failure: the loop of every kind of scenario.
    pub(super) async fn rounds<R>(
        &self,
        scenario: Scenario,
        run_round: impl AsyncFn(usize) -> anyhow::Result<R>,
    ) -> anyhow::Result<Vec<R>> {
        let mut rounds = Vec::new();
        for round in 1..=self.options.rounds {
            info!(%scenario, round, rounds = self.options.rounds, "round starting");
            rounds.push(
                run_round(round)
                    .await
                    .with_context(|| format!("scenario {scenario}, round {round}"))?,
            );
        }
        Ok(rounds)
    }

    /// Runs every round of `scenario`.
    async fn scenario(&self, scenario: Scenario) -> anyhow::Result<ScenarioReport> {
        let rounds = self
            .rounds(scenario, |round| self.round(scenario, round))
            .await?;
        let summary = summarize(&rounds);
        Ok(ScenarioReport {
            rounds,
            ..ScenarioReport::new(scenario, summary)
        })
    }

    async fn round(&self, scenario: Scenario, round: usize) -> anyhow::Result<RoundReport> {
        let (mut fulcrum, mut haproxy) =
            both_in_order(round, |proxy| self.saturate(scenario, proxy)).await?;
        if scenario.fixed_rate() {
            let haproxy_rps = haproxy.saturation.load.throughput_rps;
            if haproxy_rps >= 2.0 {
                let rate = haproxy_rps * FIXED_RATE_SHARE;
                let (fulcrum_run, haproxy_run) =
                    both_in_order(round, |proxy| self.fixed_rate(scenario, proxy, rate)).await?;
                fulcrum.fixed_rate = Some(fulcrum_run);
                haproxy.fixed_rate = Some(haproxy_run);
            } else {
                warn!(%scenario, round, haproxy_rps, "no fixed-rate run: HAProxy's throughput is too low");
            }
        }
        Ok(RoundReport {
            round,
            fulcrum,
            haproxy,
        })
    }

    /// Phase one for one proxy: idle memory, warm-up, saturation, handshakes.
    pub(super) async fn saturate(
        &self,
        scenario: Scenario,
        proxy: Proxy,
    ) -> anyhow::Result<ProxyRound> {
        let site = self.site_for(scenario, proxy)?;
        let mut running = self.start(proxy, &site).await?;
        // Stopped (and waited for) on failure too, so the next attempt or the caller's check
        // finds nothing running.
        let round = self
            .saturate_running(scenario, proxy, &site, &mut running)
            .await;
        running.stop().await?;
        round
    }

    async fn saturate_running(
        &self,
        scenario: Scenario,
        proxy: Proxy,
        site: &Site,
        running: &mut Spawned,
    ) -> anyhow::Result<ProxyRound> {
        let idle = if scenario.idle_memory() && self.options.idle_connections > 0 {
            let target = IdleTarget {
                addr: site.listen,
                tls_cert: site.tls_cert.as_deref(),
            };
            let memory = measure_idle(running.pid()?, &target, self.options.idle_connections)
                .await
                .with_context(|| format!("idle connections to {proxy}"))?;
            info!(
                %scenario, %proxy,
                bytes_per_connection = memory.bytes_per_connection as i64,
                closed_early = memory.closed_early,
                "idle memory measured"
            );
            running.check_alive()?;
            Some(memory)
        } else {
            None
        };
        if !self.options.warmup.is_zero() {
            let warmup = LoadSpec {
                duration: self.options.warmup,
                ..self.spec(scenario, site)
            };
            self.load
                .run(&warmup)
                .await
                .with_context(|| format!("warm-up of {proxy}"))?;
        }
        let admin = site.admin.as_ref();
        let saturation = self
            .measure(running, proxy, &self.spec(scenario, site), admin)
            .await
            .with_context(|| format!("saturation run of {proxy}"))?;
        info!(
            %scenario, %proxy,
            rps = saturation.load.throughput_rps as u64,
            cpu_us_per_request = saturation.cpu.us_per_request.unwrap_or(f64::NAN),
            busy_percent = saturation.cpu.busy_percent.unwrap_or(f64::NAN),
            "saturation measured"
        );
        let handshakes = if scenario.handshakes() {
            let mut spec = self.spec(scenario, site);
            spec.flags.push("--close".to_owned());
            let measured = self
                .measure(running, proxy, &spec, admin)
                .await
                .with_context(|| format!("handshake run of {proxy}"))?;
            info!(
                %scenario, %proxy,
                handshakes_per_second = measured.load.throughput_rps as u64,
                "handshakes measured"
            );
            Some(measured)
        } else {
            None
        };
        Ok(ProxyRound {
            saturation,
            handshakes,
            fixed_rate: None,
            idle,
        })
    }

    /// Phase two for one proxy: latency at a fixed rate, on a fresh process.
    async fn fixed_rate(
        &self,
        scenario: Scenario,
        proxy: Proxy,
        rate: f64,
    ) -> anyhow::Result<Measured> {
        let site = self.site_for(scenario, proxy)?;
        let mut running = self.start(proxy, &site).await?;
        let spec = LoadSpec {
            rate: Some(rate),
            warmup: (!self.options.warmup.is_zero()).then_some(self.options.warmup),
            ..self.spec(scenario, &site)
        };
        let measured = self
            .measure(&mut running, proxy, &spec, site.admin.as_ref())
            .await;
        running.stop().await?;
        let measured =
            measured.with_context(|| format!("fixed-rate run of {proxy} at {rate:.0} req/s"))?;
        info!(
            %scenario, %proxy, rate = rate as u64,
            p50_us = measured.load.latency_us.p50,
            p99_us = measured.load.latency_us.p99,
            "latency measured"
        );
        Ok(measured)
    }

    /// One load run, with the proxy's CPU ticks read around it; with `admin`, the scraper runs
    /// beside it for as long, and any scrape that failed fails the run.
    async fn measure(
        &self,
        running: &mut Spawned,
        proxy: Proxy,
        spec: &LoadSpec,
        admin: Option<&AdminSite>,
    ) -> anyhow::Result<Measured> {
        let pid = running.pid()?;
        let before = read_cpu_ticks(pid)?;
        let (load, scrapes) = match admin {
            None => (self.load.run(spec).await?, None),
            Some(admin) => {
                let (load, scrapes) =
                    tokio::join!(self.load.run(spec), self.scraper.run(admin, spec.duration));
                (load?, Some(scrapes.context("the scraper")?))
            }
        };
        let after = read_cpu_ticks(pid)?;
        running.check_alive()?;
        if let Some(scrapes) = &scrapes {
            check_scrapes(scrapes).with_context(|| format!("scraping {proxy}"))?;
        }
        if load.requests == 0 {
            bail!(
                "no request completed through {proxy} ({}): errors {:?}, statuses {:?}",
                spec.url,
                load.errors,
                load.status
            );
        }
        let errors = report_errors(&load);
        if errors * 100 > load.requests {
            warn!(%proxy, url = %spec.url, errors, requests = load.requests, "over 1% of requests failed");
        }
        let cpu = CpuUse::new(
            after.user.saturating_sub(before.user),
            after.system.saturating_sub(before.system),
            self.clock_ticks,
            load.requests,
            load.duration_s,
        );
        Ok(Measured { load, cpu, scrapes })
    }

    pub(super) async fn start(&self, proxy: Proxy, site: &Site) -> anyhow::Result<Spawned> {
        start_proxy(proxy, site, self.binaries, self.options.proxy_cpu, self.dir).await
    }

    /// The scenario's site on a port free right now, in front of the origins (the bulk source
    /// for `tcp-bulk`).
    pub(super) fn site(&self, scenario: Scenario) -> anyhow::Result<Site> {
        let servers = if scenario.bulk() {
            let source = self
                .bulk_source
                .clone()
                .context("tcp-bulk runs without a bulk source")?;
            vec![source]
        } else {
            self.servers.clone()
        };
        Ok(Site::for_scenario(
            scenario,
            free_port()?,
            &servers,
            self.cert.clone(),
            self.options.idle_connections,
        ))
    }

    /// [`Self::site`] for `proxy`: with an admin server on a port of its own for
    /// Fulcrum+metrics.
    fn site_for(&self, scenario: Scenario, proxy: Proxy) -> anyhow::Result<Site> {
        let mut site = self.site(scenario)?;
        if proxy.metrics() {
            // A port just released can come back at once; the admin server must not share the
            // traffic listener's, which Fulcrum refuses.
            let mut listen = free_port()?;
            while listen == site.listen {
                listen = free_port()?;
            }
            site.admin = Some(AdminSite { listen });
        }
        Ok(site)
    }

    /// The closed-loop run of `scenario` against `site`.
    fn spec(&self, scenario: Scenario, site: &Site) -> LoadSpec {
        LoadSpec {
            url: site.url(),
            connections: self.options.connections,
            duration: self.options.duration,
            warmup: None,
            rate: None,
            flags: scenario.load_flags(),
        }
    }
}

/// Runs `run` for both proxies in `round`'s order ([`Proxy::order_in_round`]) and gives the
/// results back as (Fulcrum's, HAProxy's), whichever ran first.
pub(super) async fn both_in_order<T>(
    round: usize,
    run: impl AsyncFn(Proxy) -> anyhow::Result<T>,
) -> anyhow::Result<(T, T)> {
    let [first, second] = Proxy::order_in_round(round);
    let first_result = run(first).await?;
    let second_result = run(second).await?;
    Ok(if first == Proxy::Fulcrum {
        (first_result, second_result)
    } else {
        (second_result, first_result)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::cell::RefCell;

    use super::{Proxy, both_in_order};

    #[test]
    fn rounds_alternate_which_proxy_goes_first() {
        assert_eq!(Proxy::order_in_round(1), [Proxy::Fulcrum, Proxy::Haproxy]);
        assert_eq!(Proxy::order_in_round(2), [Proxy::Haproxy, Proxy::Fulcrum]);
        assert_eq!(Proxy::order_in_round(3), [Proxy::Fulcrum, Proxy::Haproxy]);
    }

    #[tokio::test]
    async fn both_in_order_runs_in_the_rounds_order_and_answers_by_proxy() {
        for (round, expected_order) in [
            (1, [Proxy::Fulcrum, Proxy::Haproxy]),
            (2, [Proxy::Haproxy, Proxy::Fulcrum]),
        ] {
            let ran = RefCell::new(Vec::new());
            let results = both_in_order(round, async |proxy| {
                ran.borrow_mut().push(proxy);
                Ok(proxy.key())
            })
            .await
            .unwrap();
            assert_eq!(results, ("fulcrum", "haproxy"), "round {round}");
            assert_eq!(ran.into_inner(), expected_order, "round {round}");
        }
    }
}
