//! The soak chart, one SVG in two panels over the run's seconds: requests answered and failed
//! per second, and each Fulcrum process's RSS, with the fault windows shaded in both so a dip or
//! a step can be matched with the fault that made it.

use plotters::prelude::*;

use super::report::SoakReport;

const SIZE: (u32, u32) = (1000, 760);
const OK: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const FAILED: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const WINDOW: RGBColor = RGBColor(0xff, 0xbb, 0x78);
/// One colour per node, whatever its pid.
const NODES: [(&str, RGBColor); 3] = [
    ("lvs", RGBColor(0x94, 0x67, 0xbd)),
    ("A", RGBColor(0x1f, 0x77, 0xb4)),
    ("B", RGBColor(0xff, 0x7f, 0x0e)),
];

/// The chart's file name beside the Markdown, `soak-DAY.svg`.
pub(crate) fn chart_file(date: &str) -> String {
    format!("soak-{}.svg", date.get(..10).unwrap_or(date))
}

/// Renders the chart as an SVG document.
pub(crate) fn soak_svg(report: &SoakReport) -> anyhow::Result<String> {
    let end = report
        .timeline
        .len()
        .max(report.ran_s.ceil() as usize)
        .max(1) as f64;
    let windows: Vec<(f64, f64, usize)> = report
        .faults
        .iter()
        .map(|f| (f.injected_at_s, f.injected_at_s + f.window_s, f.n))
        .collect();
    let max_rate = report
        .timeline
        .iter()
        .map(|s| s.ok.max(s.failed))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let max_mib = report
        .memory
        .iter()
        .flat_map(|s| s.samples.iter().map(|&(_, kib)| kib as f64 / 1024.0))
        .fold(1.0_f64, f64::max)
        * 1.15;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);

        let mut chart = ChartBuilder::on(&top)
            .caption(
                "seed 004 soak: requests per second (fault windows shaded, numbered)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end, 0.0..max_rate)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("requests / s")
            .draw()?;
        shade(&mut chart, &windows, max_rate, true)?;
        chart
            .draw_series(LineSeries::new(
                report.timeline.iter().map(|s| (s.t as f64, s.ok as f64)),
                OK.stroke_width(1),
            ))?
            .label("answered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], OK.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                report
                    .timeline
                    .iter()
                    .map(|s| (s.t as f64, s.failed as f64)),
                FAILED.stroke_width(2),
            ))?
            .label("failed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], FAILED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;

        let mut chart = ChartBuilder::on(&bottom)
            .caption(
                "RSS of each Fulcrum process (a restart starts a new line)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end, 0.0..max_mib)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("MiB")
            .draw()?;
        shade(&mut chart, &windows, max_mib, false)?;
        for (node, colour) in NODES {
            for (i, series) in report.memory.iter().filter(|s| s.node == node).enumerate() {
                let drawn = chart.draw_series(LineSeries::new(
                    series
                        .samples
                        .iter()
                        .map(|&(t, kib)| (t, kib as f64 / 1024.0)),
                    colour.stroke_width(2),
                ))?;
                // One legend entry per node, however many restarts.
                if i == 0 {
                    drawn.label(node).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The fault windows as shaded bands, numbered at the top when `numbered`.
fn shade(
    chart: &mut Chart<'_, '_>,
    windows: &[(f64, f64, usize)],
    top: f64,
    numbered: bool,
) -> anyhow::Result<()> {
    chart.draw_series(windows.iter().map(|&(from, to, _)| {
        Rectangle::new([(from, 0.0), (to, top)], WINDOW.mix(0.45).filled())
    }))?;
    if numbered {
        chart.draw_series(windows.iter().map(|&(from, _, n)| {
            Text::new(n.to_string(), (from, top * 0.97), ("sans-serif", 11))
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{chart_file, soak_svg};
    use crate::soak::report::{SoakMachine, SoakReport, SoakSettings};

    #[test]
    fn renders_an_empty_run_and_names_the_file_by_day() {
        let report = SoakReport {
            schema: String::new(),
            date: "2026-11-21T10:00:00Z".to_owned(),
            command: String::new(),
            machine: SoakMachine {
                cpu_model: String::new(),
                cores: 2,
                kernel: String::new(),
                fulcrum_version: String::new(),
                source: None,
            },
            settings: SoakSettings {
                duration_s: 0.0,
                fault_every_s: 30.0,
                hold_s: 10.0,
                window_cap_s: 60.0,
                warmup_s: 60.0,
                faults: Vec::new(),
                node: None,
                fulcrum: "fulcrum".into(),
            },
            ran_s: 0.0,
            faults: Vec::new(),
            requests: Default::default(),
            failed_outside: Vec::new(),
            uploads: Default::default(),
            nbd_writes: Default::default(),
            memory: Vec::new(),
            max_growth_pct: None,
            timeline: Vec::new(),
            goals: Vec::new(),
            kept_logs: None,
            files: Vec::new(),
        };
        let svg = soak_svg(&report).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(chart_file(&report.date), "soak-2026-11-21.svg");
    }
}
