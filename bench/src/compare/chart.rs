//! The latency chart: each proxy's latency distribution at fixed rate, percentile on the x axis
//! stretched towards the tail as HdrHistogram plots do (x = -log10(1 - p), so 90%, 99%, 99.9%
//! are evenly spaced), microseconds on the y axis. One line per round, one colour per proxy.

use plotters::prelude::*;

use super::proxy::Proxy;
use super::report::CompareReport;

/// One proxy's runs.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    pub name: &'a str,
    /// `(percentile 0..=100, microseconds)` pairs of each run.
    pub runs: Vec<&'a [(f64, u64)]>,
}

/// Furthest into the tail the axis goes: 99.9999%.
const MAX_NINES: f64 = 6.0;
const SIZE: (u32, u32) = (900, 540);
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Renders the chart as an SVG document.
pub fn latency_svg(title: &str, series: &[Series<'_>]) -> anyhow::Result<String> {
    let points: Vec<Vec<Vec<(f64, f64)>>> = series
        .iter()
        .map(|s| s.runs.iter().map(|run| to_points(run)).collect())
        .collect();
    let all = points.iter().flatten().flatten();
    let max_x = all
        .clone()
        .map(|&(x, _)| x)
        .fold(2.0_f64, f64::max)
        .ceil()
        .min(MAX_NINES);
    let max_y = all.map(|&(_, y)| y).fold(1.0_f64, f64::max) * 1.1;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            // Room for the last label, which is centred on the right edge.
            .margin_right(40)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
        chart
            .configure_mesh()
            // One label per nine: the axis spans whole nines, so the labels fall on 90%, 99%...
            .x_labels(max_x as usize + 1)
            .x_desc("percentile")
            .y_desc("latency (µs)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (i, (s, runs)) in series.iter().zip(&points).enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            for (run, line) in runs.iter().enumerate() {
                let drawn = chart.draw_series(LineSeries::new(
                    line.iter().copied(),
                    colour.stroke_width(2),
                ))?;
                // One legend entry per proxy, however many rounds.
                if run == 0 {
                    drawn.label(s.name).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// The latency chart of the `get` scenario's fixed-rate runs, if it ran.
pub(crate) fn chart_of(report: &CompareReport) -> anyhow::Result<Option<String>> {
    let Some(get) = report
        .scenarios
        .iter()
        .find(|s| s.rounds.iter().any(|r| r.fulcrum.fixed_rate.is_some()))
    else {
        return Ok(None);
    };
    let series = Proxy::BOTH
        .into_iter()
        .map(|proxy| Series {
            name: proxy.name(),
            runs: get
                .rounds
                .iter()
                .filter_map(|r| match proxy {
                    Proxy::Fulcrum => r.fulcrum.fixed_rate.as_ref(),
                    Proxy::Haproxy => r.haproxy.fixed_rate.as_ref(),
                    // Not in `BOTH`: it only runs in `get-metrics`, which has no latency run.
                    Proxy::FulcrumMetrics => None,
                })
                .map(|m| m.load.distribution.as_slice())
                .collect(),
        })
        .collect::<Vec<_>>();
    let rate = get
        .rounds
        .first()
        .and_then(|r| r.fulcrum.fixed_rate.as_ref())
        .and_then(|m| m.load.rate)
        .unwrap_or_default();
    // Each round has its own rate (half of that round's HAProxy throughput); the first names it.
    let title = format!(
        "{}: latency at half HAProxy's saturation rate ({:.0} req/s in round 1), {} round(s)",
        get.scenario,
        rate,
        get.rounds.len()
    );
    latency_svg(&title, &series).map(Some)
}

/// Percentiles to axis coordinates. 100% (the maximum) is infinitely far on this axis, so it is
/// left out, as HdrHistogram's plots leave it; the JSON keeps it.
fn to_points(run: &[(f64, u64)]) -> Vec<(f64, f64)> {
    run.iter()
        .filter(|&&(p, _)| p < 100.0)
        .map(|&(p, us)| (nines(p), us as f64))
        .collect()
}

fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(10f64.powf(-MAX_NINES));
    -rest.log10()
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for x = 0, 1, 2, 3.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{p:.decimals$}%")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{Series, latency_svg, nines, percentile_label};

    #[test]
    fn the_axis_spaces_nines_evenly() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(100.0) - 6.0).abs() < 1e-9, "clamped, not infinite");
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn renders_both_series() {
        let fulcrum = [
            (0.0, 40),
            (50.0, 120),
            (90.0, 200),
            (99.0, 400),
            (100.0, 900),
        ];
        let haproxy = [
            (0.0, 35),
            (50.0, 110),
            (90.0, 180),
            (99.0, 500),
            (100.0, 1200),
        ];
        let svg = latency_svg(
            "get",
            &[
                Series {
                    name: "Fulcrum",
                    runs: vec![&fulcrum, &fulcrum],
                },
                Series {
                    name: "HAProxy",
                    runs: vec![&haproxy],
                },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Fulcrum") && svg.contains("HAProxy"), "{svg}");
        assert!(svg.contains("99.9%") || svg.contains("99%"), "{svg}");
        assert_eq!(
            svg.matches("Fulcrum").count(),
            1,
            "one legend entry per proxy"
        );
    }

    #[test]
    fn renders_without_data() {
        let svg = latency_svg("empty", &[]).unwrap();
        assert!(svg.contains("<svg"));
    }
}
