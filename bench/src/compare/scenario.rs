//! The scenarios: what traffic each sends, which proxy features it turns on, and which of the
//! optional measurements (fixed-rate latency, idle memory, TLS handshakes) it takes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
}

/// The cookie both proxies insert, and the value naming the first origin.
pub const COOKIE_NAME: &str = "SRV";

impl Scenario {
    /// Every scenario, in the order the report lists them.
    pub const ALL: [Self; 6] = [
        Self::Get,
        Self::Post,
        Self::Close,
        Self::Cookie,
        Self::Tls,
        Self::H2,
    ];

    /// What `--quick` runs unless `--scenarios` says otherwise: the cheapest two that still cover
    /// a plain and a persistence config.
    pub const QUICK: [Self; 2] = [Self::Get, Self::Cookie];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Close => "close",
            Self::Cookie => "cookie",
            Self::Tls => "tls",
            Self::H2 => "h2",
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
        }
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

    /// The load generator's flags for this traffic, besides URL, connections and durations.
    pub fn load_flags(self) -> Vec<String> {
        let flags: &[&str] = match self {
            Self::Get => &[],
            Self::Post => &["--method", "POST", "--body-size", "16KiB"],
            Self::Close => &["--close"],
            Self::Cookie => &["--header", "Cookie: SRV=s1"],
            Self::Tls => &["--insecure"],
            Self::H2 => &["--h2", "--insecure"],
        };
        flags.iter().map(|&f| f.to_owned()).collect()
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
    fn the_cookie_scenario_sends_the_cookie_of_s1() {
        let flags = Scenario::Cookie.load_flags();
        assert_eq!(flags, ["--header", &format!("Cookie: {COOKIE_NAME}=s1")]);
    }
}
