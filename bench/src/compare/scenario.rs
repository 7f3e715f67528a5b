//! The scenarios: what traffic each sends, which proxy features it turns on, which of the
//! optional measurements (fixed-rate latency, idle memory, TLS handshakes) it takes, and the goals
//! its ratios are held to. All but `get-metrics` measure Fulcrum against HAProxy; `get-metrics`
//! measures Fulcrum with its metrics scraped against Fulcrum without.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::goal::{Baseline, Bound, Goal};
use super::report::Metric;
use super::site::Mode;

/// One kind of traffic measured through both proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Small GETs on keep-alive connections.
    Get,
    /// POSTs of 16 KiB bodies on keep-alive connections.
    Post,
    /// A new connection for every request.
    Close,
    /// Cookie persistence on, every request carrying the cookie of `s1`.
    Cookie,
    /// HTTPS keep-alive through TLS termination, plus handshakes per second.
    Tls,
    /// HTTP/2 clients over TLS (ALPN `h2`).
    H2,
    /// Small GETs, a new connection for every request, through an L4 relay (HAProxy `mode tcp`,
    /// a Fulcrum `virtual_server`).
    #[serde(rename = "tcp-close")]
    TcpClose,
    /// One long stream through an L4 relay, against the same stream without a proxy.
    #[serde(rename = "tcp-bulk")]
    TcpBulk,
    /// `get` through Fulcrum without `[admin]` (metrics off), and through Fulcrum with `[admin]`
    /// and a scraper fetching `/metrics` and the stats JSON every second (metrics on).
    #[serde(rename = "get-metrics")]
    GetMetrics,
}

/// The cookie both proxies insert, and the value naming the first origin.
pub const COOKIE_NAME: &str = "SRV";

impl Scenario {
    /// Every scenario, in the order the report lists them.
    pub const ALL: [Self; 9] = [
        Self::Get,
        Self::Post,
        Self::Close,
        Self::Cookie,
        Self::Tls,
        Self::H2,
        Self::TcpClose,
        Self::TcpBulk,
        Self::GetMetrics,
    ];

    /// What `--quick` runs unless `--scenarios` says otherwise: the cheapest that still cover a
    /// plain, a persistence and an L4 config, and both ways of measuring (load runs and streams).
    pub const QUICK: [Self; 4] = [Self::Get, Self::Cookie, Self::TcpClose, Self::TcpBulk];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Close => "close",
            Self::Cookie => "cookie",
            Self::Tls => "tls",
            Self::H2 => "h2",
            Self::TcpClose => "tcp-close",
            Self::TcpBulk => "tcp-bulk",
            Self::GetMetrics => "get-metrics",
        }
    }

    /// One line for the report's heading.
    pub fn description(self) -> &'static str {
        match self {
            Self::Get => "small GET, keep-alive",
            Self::Post => "POST with a 16 KiB body, keep-alive",
            Self::Close => "small GET, a new connection per request",
            Self::Cookie => {
                "small GET, keep-alive, cookie persistence (every request sticky to s1)"
            }
            Self::Tls => {
                "small GET over HTTPS, keep-alive; handshakes with a new connection per request"
            }
            Self::H2 => "small GET over HTTP/2 (TLS, ALPN h2)",
            Self::TcpClose => {
                "small GET through an L4 relay (HAProxy mode tcp, Fulcrum virtual_server), a new \
                 connection per request"
            }
            Self::TcpBulk => {
                "one long TCP stream through an L4 relay, and the same stream without a proxy"
            }
            Self::GetMetrics => {
                "small GET, keep-alive, through Fulcrum with metrics off (no [admin]) and on \
                 ([admin], /metrics and the stats JSON scraped every second)"
            }
        }
    }

    /// Whether the proxies speak HTTP or relay bytes.
    pub(crate) fn mode(self) -> Mode {
        match self {
            Self::TcpClose | Self::TcpBulk => Mode::Tcp,
            _ => Mode::Http,
        }
    }

    /// Measured with bulk streams (direct, then through each proxy) rather than load runs.
    pub fn bulk(self) -> bool {
        self == Self::TcpBulk
    }

    /// Measured as Fulcrum without metrics against Fulcrum with them, rather than against HAProxy.
    pub fn metrics(self) -> bool {
        self == Self::GetMetrics
    }

    /// The proxies terminate TLS for this scenario.
    pub fn tls(self) -> bool {
        matches!(self, Self::Tls | Self::H2)
    }

    /// The backend has cookie persistence.
    pub fn cookie(self) -> bool {
        self == Self::Cookie
    }

    /// A fixed-rate run at half of HAProxy's throughput measures latency percentiles. Only `get`
    /// has one: a latency curve per scenario would triple the run time for little news.
    pub fn fixed_rate(self) -> bool {
        self == Self::Get
    }

    /// Memory per idle keep-alive connection is measured: plain for `get`, TLS for `tls`. The other
    /// scenarios have the same frontend as one of these, so they would repeat the number.
    pub fn idle_memory(self) -> bool {
        matches!(self, Self::Get | Self::Tls)
    }

    /// A second saturation run with a new TLS connection per request gives handshakes per second.
    pub fn handshakes(self) -> bool {
        self == Self::Tls
    }

    /// The load generator's flags for this traffic, besides URL, connections and durations
    /// (none for `tcp-bulk`, which runs no load generator).
    pub fn load_flags(self) -> Vec<String> {
        let flags: &[&str] = match self {
            Self::Get | Self::GetMetrics | Self::TcpBulk => &[],
            Self::Post => &["--method", "POST", "--body-size", "16KiB"],
            Self::Close | Self::TcpClose => &["--close"],
            Self::Cookie => &["--header", "Cookie: SRV=s1"],
            Self::Tls => &["--insecure"],
            Self::H2 => &["--h2", "--insecure"],
        };
        flags.iter().map(|&f| f.to_owned()).collect()
    }

    /// What Fulcrum is meant to achieve here, as a ratio to HAProxy or to no proxy at all. The
    /// report says for each whether this run met it.
    pub fn goals(self) -> &'static [Goal] {
        match self {
            // Issue 3's goals for the L7 tier: less CPU than HAProxy for the same requests, a
            // lower p99 at the same fixed rate, and no less throughput on one core.
            Self::Get => &[
                Goal {
                    metric: Metric::CpuUsPerRequest,
                    baseline: Baseline::Haproxy,
                    bound: Bound::AtMost(0.8),
                },
                Goal {
                    metric: Metric::LatencyP99Us,
                    baseline: Baseline::Haproxy,
                    bound: Bound::AtMost(1.0),
                },
                Goal {
                    metric: Metric::ThroughputRps,
                    baseline: Baseline::Haproxy,
                    bound: Bound::AtLeast(1.0),
                },
            ],
            // An L4 relay has no HTTP to parse: per connection, it should cost well under what
            // HAProxy's stream machinery does.
            Self::TcpClose => &[Goal {
                metric: Metric::CpuUsPerRequest,
                baseline: Baseline::Haproxy,
                bound: Bound::AtMost(0.7),
            }],
            // Splicing, it should lose little to loopback itself and not trail HAProxy.
            Self::TcpBulk => &[
                Goal {
                    metric: Metric::ThroughputMegabytesPerSecond,
                    baseline: Baseline::Direct,
                    bound: Bound::AtLeast(0.9),
                },
                Goal {
                    metric: Metric::ThroughputMegabytesPerSecond,
                    baseline: Baseline::Haproxy,
                    bound: Bound::AtLeast(1.0),
                },
            ],
            // Metrics that an aggressive Prometheus scrapes every second must cost the traffic
            // next to nothing.
            Self::GetMetrics => &[Goal {
                metric: Metric::CpuUsPerRequest,
                baseline: Baseline::MetricsOff,
                bound: Bound::AtMost(1.03),
            }],
            _ => &[],
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {text:?} (known: all, {})",
                    names.join(", ")
                )
            })
    }
}

/// Parses `all` or a comma-separated list such as `get,post`, keeping the report's order and
/// dropping repeats.
pub fn parse_scenarios(text: &str) -> Result<Vec<Scenario>, String> {
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(Scenario::ALL.to_vec());
    }
    let mut scenarios = text
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<Scenario>, String>>()?;
    scenarios.sort();
    scenarios.dedup();
    if scenarios.is_empty() {
        return Err("no scenario given".to_owned());
    }
    Ok(scenarios)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{COOKIE_NAME, Scenario, parse_scenarios};
    use crate::compare::goal::{Baseline, Bound};
    use crate::compare::report::Metric;
    use crate::compare::site::Mode;

    #[test]
    fn lists_parse_in_report_order() {
        assert_eq!(parse_scenarios("all").unwrap(), Scenario::ALL.to_vec());
        assert_eq!(
            parse_scenarios("tls,get,GET").unwrap(),
            vec![Scenario::Get, Scenario::Tls]
        );
        assert!(parse_scenarios("get,nope").unwrap_err().contains("nope"));
        assert!(parse_scenarios("").is_err());
    }

    #[test]
    fn names_round_trip() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>().unwrap(), scenario);
        }
    }

    #[test]
    fn l4_scenarios() {
        assert_eq!(
            parse_scenarios("tcp-bulk,TCP-CLOSE,get").unwrap(),
            vec![Scenario::Get, Scenario::TcpClose, Scenario::TcpBulk]
        );
        assert_eq!(
            serde_json::to_string(&Scenario::TcpClose).unwrap(),
            "\"tcp-close\""
        );
        assert_eq!(
            serde_json::from_str::<Scenario>("\"tcp-bulk\"").unwrap(),
            Scenario::TcpBulk
        );
        assert_eq!(Scenario::TcpClose.load_flags(), ["--close"]);
        for scenario in Scenario::ALL {
            let l4 = matches!(scenario, Scenario::TcpClose | Scenario::TcpBulk);
            assert_eq!(scenario.mode() == Mode::Tcp, l4, "{scenario}");
            // An L4 relay neither terminates TLS nor reads cookies.
            assert!(!(l4 && (scenario.tls() || scenario.cookie())), "{scenario}");
            assert_eq!(scenario.bulk(), scenario == Scenario::TcpBulk);
        }
    }

    #[test]
    fn goals_of_get_and_the_l4_scenarios() {
        let get: Vec<(Metric, Bound)> = (Scenario::Get.goals().iter())
            .inspect(|g| assert_eq!(g.baseline, Baseline::Haproxy))
            .map(|g| (g.metric, g.bound))
            .collect();
        assert_eq!(
            get,
            [
                (Metric::CpuUsPerRequest, Bound::AtMost(0.8)),
                (Metric::LatencyP99Us, Bound::AtMost(1.0)),
                (Metric::ThroughputRps, Bound::AtLeast(1.0)),
            ]
        );
        assert!(Scenario::Post.goals().is_empty());
        let [close] = Scenario::TcpClose.goals() else {
            panic!("one goal for tcp-close");
        };
        assert_eq!(close.bound, Bound::AtMost(0.7));
        assert_eq!(close.baseline, Baseline::Haproxy);
        let baselines: Vec<Baseline> = Scenario::TcpBulk
            .goals()
            .iter()
            .map(|g| g.baseline)
            .collect();
        assert_eq!(baselines, [Baseline::Direct, Baseline::Haproxy]);
    }

    #[test]
    fn get_metrics_is_get_held_to_its_own_cost() {
        let metrics = Scenario::GetMetrics;
        assert_eq!(parse_scenarios("get-metrics").unwrap(), [metrics]);
        assert_eq!(serde_json::to_string(&metrics).unwrap(), "\"get-metrics\"");
        assert_eq!(metrics.load_flags(), Scenario::Get.load_flags());
        assert_eq!(metrics.mode(), Mode::Http);
        assert!(metrics.metrics() && !metrics.bulk() && !metrics.tls() && !metrics.cookie());
        // Its two runs per round are all that is measured: no latency, memory or handshakes.
        assert!(!metrics.fixed_rate() && !metrics.idle_memory() && !metrics.handshakes());
        assert!(Scenario::ALL.iter().filter(|s| s.metrics()).eq([&metrics]));
        let [goal] = metrics.goals() else {
            panic!("one goal for get-metrics");
        };
        assert_eq!(goal.baseline, Baseline::MetricsOff);
        assert_eq!(goal.bound, Bound::AtMost(1.03));
    }

    #[test]
    fn the_cookie_scenario_sends_the_cookie_of_s1() {
        let flags = Scenario::Cookie.load_flags();
        assert_eq!(flags, ["--header", &format!("Cookie: {COOKIE_NAME}=s1")]);
    }
}
