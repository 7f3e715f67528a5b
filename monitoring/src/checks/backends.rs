//! `backends`: the servers of each L7 backend and L4 virtual service. By default WARNING when
//! a server is DOWN and CRITICAL when a backend has no server UP; `-w`/`-c` set how many DOWN
//! servers (a range, or a percentage with `%`) each state takes; `-b NAME` checks some only.
//!
//! A server in `UP 2/3` (failing checks, not yet DOWN) counts as UP, `DOWN 1/2` (recovering)
//! as DOWN; MAINT and DRAIN were chosen by an operator, so they are neither, and they are left
//! out of the total a percentage is taken of.

use fulcrum_common::stats::{ProxyKind, ProxyStats, RowKind};

use super::options::{self, Spec, value};
use super::perfdata::Perf;
use super::range::Range;
use super::{Outcome, State};

const NAME: &str = "backends";
const SPECS: &[Spec] = &[
    value('w', "warning"),
    value('c', "critical"),
    value('b', "backend"),
];

/// A limit on DOWN servers: a range on their count, or on their share of the servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub range: Range,
    pub percent: bool,
}

impl Limit {
    fn parse(text: &str) -> Result<Self, String> {
        let (body, percent) = match text.strip_suffix('%') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let range = Range::parse(body).map_err(|e| e.to_string())?;
        Ok(Self { range, percent })
    }

    fn alerts(&self, down: u32, counted: u32) -> bool {
        let value = if self.percent {
            if counted == 0 {
                return false;
            }
            f64::from(down) * 100.0 / f64::from(counted)
        } else {
            f64::from(down)
        };
        self.range.alerts(value)
    }
}

/// The check's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// WARNING when DOWN servers are outside it; `0` (any DOWN server) by default.
    pub warning: Limit,
    /// CRITICAL when DOWN servers are outside it; none by default (only "no server UP").
    pub critical: Option<Limit>,
    /// `-b` (repeatable): only these backends or virtual services.
    pub backends: Vec<String>,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let limit = |short: char| {
            parsed
                .last(short)
                .map(|t| Limit::parse(t).map_err(|why| options::bad(NAME, short, why)))
                .transpose()
        };
        Ok(Self {
            warning: limit('w')?.unwrap_or(Limit {
                range: Range::above(0.0),
                percent: false,
            }),
            critical: limit('c')?,
            backends: parsed.all('b').into_iter().map(str::to_owned).collect(),
        })
    }
}

/// How a backend's servers stand.
#[derive(Debug, Default)]
struct Tally {
    up: u32,
    down: Vec<String>,
    /// MAINT, DRAIN and states this check does not know.
    other: u32,
}

/// Judges the backends and virtual services of `proxies`.
pub fn evaluate(proxies: &[ProxyStats], opts: &Options) -> Outcome {
    if let Some(missing) = opts.backends.iter().find(|b| {
        !proxies
            .iter()
            .any(|p| p.kind != ProxyKind::Frontend && p.name == **b)
    }) {
        return Outcome::unknown(
            "BACKENDS",
            format!("no backend or virtual service `{missing}`"),
        );
    }
    let chosen: Vec<&ProxyStats> = proxies
        .iter()
        .filter(|p| p.kind != ProxyKind::Frontend)
        .filter(|p| opts.backends.is_empty() || opts.backends.contains(&p.name))
        .collect();
    if chosen.is_empty() {
        return Outcome::unknown("BACKENDS", "no backend or virtual service is configured");
    }
    let mut state = State::Ok;
    let mut problems = Vec::new();
    let mut perf = Vec::new();
    let (mut servers, mut up_total) = (0u32, 0u32);
    for proxy in chosen {
        let mut tally = Tally::default();
        for row in proxy.rows.iter().filter(|r| r.kind == RowKind::Server) {
            let word = row.status.split(' ').next().unwrap_or_default();
            match word {
                "UP" => tally.up += 1,
                "DOWN" => tally.down.push(row.svname.clone()),
                // A server without health checks is taken as UP, as HAProxy does.
                _ if row.status == "no check" => tally.up += 1,
                _ => tally.other += 1,
            }
        }
        let down = u32::try_from(tally.down.len()).unwrap_or(u32::MAX);
        let counted = tally.up.saturating_add(down);
        let total = counted.saturating_add(tally.other);
        servers = servers.saturating_add(total);
        up_total = up_total.saturating_add(tally.up);
        let here = if tally.up == 0
            || opts
                .critical
                .as_ref()
                .is_some_and(|c| c.alerts(down, counted))
        {
            State::Critical
        } else if opts.warning.alerts(down, counted) {
            State::Warning
        } else {
            State::Ok
        };
        state = state.worst(here);
        if tally.up == 0 {
            problems.push(format!(
                "{}: no server UP ({down} DOWN, {} other)",
                proxy.name, tally.other
            ));
        } else if here != State::Ok || down > 0 {
            problems.push(format!(
                "{}: {down}/{counted} DOWN ({})",
                proxy.name,
                tally.down.join(", ")
            ));
        }
        let shown = |l: &Limit| format!("{}{}", l.range, if l.percent { "%" } else { "" });
        let mut item = Perf::new(&proxy.name, down).min(0).max(total);
        // Perfdata thresholds are on the count, so a percentage limit is not printed.
        if !opts.warning.percent {
            item = item.warn(shown(&opts.warning));
        }
        if let Some(c) = opts.critical.as_ref().filter(|c| !c.percent) {
            item = item.crit(shown(c));
        }
        perf.push(item);
    }
    let text = if problems.is_empty() {
        format!(
            "BACKENDS {state} - {} backends, {up_total}/{servers} servers UP",
            perf.len()
        )
    } else {
        format!("BACKENDS {state} - {}", problems.join("; "))
    };
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use fulcrum_common::stats::Row;

    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn proxy(name: &str, kind: ProxyKind, servers: &[(&str, &str)]) -> ProxyStats {
        let mut rows: Vec<Row> = servers
            .iter()
            .map(|(sv, status)| {
                let mut row = Row::new(name, sv, RowKind::Server);
                row.status = (*status).to_owned();
                row
            })
            .collect();
        rows.push(Row::new(name, "BACKEND", RowKind::Backend));
        ProxyStats {
            name: name.to_owned(),
            kind,
            mode: "http".to_owned(),
            rows,
        }
    }

    fn estate() -> Vec<ProxyStats> {
        vec![
            proxy("www", ProxyKind::Frontend, &[]),
            proxy(
                "web",
                ProxyKind::Backend,
                &[("s1", "UP"), ("s2", "UP 2/3"), ("s3", "MAINT")],
            ),
            proxy(
                "vs",
                ProxyKind::VirtualService,
                &[("10.0.0.1:80", "no check"), ("10.0.0.2:80", "DRAIN")],
            ),
        ]
    }

    #[test]
    fn options() {
        let o = opts(&[]).unwrap();
        assert_eq!(o.warning.range, Range::above(0.0));
        assert_eq!(o.critical, None);
        let o = opts(&["-w", "1", "-c", "50%", "-b", "web", "-b", "vs"]).unwrap();
        assert!(o.critical.unwrap().percent);
        assert_eq!(o.backends, ["web", "vs"]);
        assert!(
            opts(&["-w", "x%"])
                .unwrap_err()
                .starts_with("backends: -w: ")
        );
        assert!(opts(&["-c", "5:1"]).is_err());
    }

    #[test]
    fn healthy() {
        let out = evaluate(&estate(), &opts(&[]).unwrap());
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "BACKENDS OK - 2 backends, 3/5 servers UP|web=0;0;;0;3 vs=0;0;;0;2"
        );
    }

    #[test]
    fn down_servers() {
        let mut proxies = estate();
        proxies[1] = proxy(
            "web",
            ProxyKind::Backend,
            &[
                ("s1", "UP"),
                ("s2", "DOWN 1/2"),
                ("s3", "MAINT"),
                ("s4", "UP"),
            ],
        );
        let out = evaluate(&proxies, &opts(&[]).unwrap());
        assert_eq!(out.state, State::Warning);
        assert_eq!(
            out.output,
            "BACKENDS WARNING - web: 1/3 DOWN (s2)|web=1;0;;0;4 vs=0;0;;0;2"
        );
        assert_eq!(
            evaluate(&proxies, &opts(&["-w", "1"]).unwrap()).state,
            State::Ok
        );
        assert_eq!(
            evaluate(&proxies, &opts(&["-c", "30%"]).unwrap()).state,
            State::Critical
        );
        assert_eq!(
            evaluate(&proxies, &opts(&["-c", "34%"]).unwrap()).state,
            State::Warning
        );
        assert_eq!(
            evaluate(&proxies, &opts(&["-b", "vs"]).unwrap()).state,
            State::Ok
        );
    }

    #[test]
    fn no_server_up_is_critical() {
        let proxies = [proxy(
            "api",
            ProxyKind::Backend,
            &[("a", "DOWN"), ("b", "MAINT")],
        )];
        let out = evaluate(&proxies, &opts(&["-w", "5"]).unwrap());
        assert_eq!(out.state, State::Critical);
        assert_eq!(
            out.output,
            "BACKENDS CRITICAL - api: no server UP (1 DOWN, 1 other)|api=1;5;;0;2"
        );
        let empty = [proxy("none", ProxyKind::Backend, &[])];
        assert_eq!(evaluate(&empty, &opts(&[]).unwrap()).state, State::Critical);
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            evaluate(&estate(), &opts(&["-b", "www"]).unwrap()).output,
            "BACKENDS UNKNOWN - no backend or virtual service `www`"
        );
        assert_eq!(evaluate(&[], &opts(&[]).unwrap()).state, State::Unknown);
    }
}
