//! Memory of the Fulcrum processes over a soak run: `VmRSS` sampled every few seconds, one
//! series per process (a restarted node starts a new one), and each series' growth from its
//! first sample after the warm-up to its last.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A series must span at least this long after its warm-up for its growth to count: over a
/// shorter span a few pages of allocator slack would read as growth.
pub(crate) const MIN_SPAN: Duration = Duration::from_secs(60);

/// One process's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssSeries {
    /// `lvs`, `A` or `B`.
    pub node: String,
    pub pid: u32,
    /// `(seconds into the run, KiB)`.
    pub samples: Vec<(f64, u64)>,
    /// The first sample at least the warm-up after the first one, and the last.
    pub warm_kib: Option<u64>,
    pub last_kib: Option<u64>,
    /// Seconds from the warm sample to the last.
    pub span_s: f64,
    /// Growth from the warm sample to the last, in %, when the span is at least [`MIN_SPAN`].
    pub growth_pct: Option<f64>,
}

/// The sampler: call [`Sampler::sample`] every few seconds with the processes running.
#[derive(Debug)]
pub(crate) struct Sampler {
    t0: Instant,
    series: Vec<RssSeries>,
}

impl Sampler {
    pub(crate) fn new(t0: Instant) -> Self {
        Self {
            t0,
            series: Vec::new(),
        }
    }

    /// Records `(node, pid, KiB)` for each running process, at `now`.
    pub(crate) fn sample(&mut self, now: Instant, processes: &[(&str, u32, u64)]) {
        let t = now.saturating_duration_since(self.t0).as_secs_f64();
        for &(node, pid, kib) in processes {
            match self
                .series
                .iter_mut()
                .find(|s| s.node == node && s.pid == pid)
            {
                Some(series) => series.samples.push((t, kib)),
                None => self.series.push(RssSeries {
                    node: node.to_owned(),
                    pid,
                    samples: vec![(t, kib)],
                    warm_kib: None,
                    last_kib: None,
                    span_s: 0.0,
                    growth_pct: None,
                }),
            }
        }
    }

    /// Every series with its growth after `warmup`.
    pub(crate) fn finish(self, warmup: Duration) -> Vec<RssSeries> {
        self.series
            .into_iter()
            .map(|s| with_growth(s, warmup))
            .collect()
    }
}

fn with_growth(mut series: RssSeries, warmup: Duration) -> RssSeries {
    let Some(&(first, _)) = series.samples.first() else {
        return series;
    };
    let warm = series
        .samples
        .iter()
        .find(|&&(t, _)| t >= first + warmup.as_secs_f64());
    let last = series.samples.last();
    if let (Some(&(t_warm, warm)), Some(&(t_last, last))) = (warm, last) {
        series.warm_kib = Some(warm);
        series.last_kib = Some(last);
        series.span_s = t_last - t_warm;
        if series.span_s >= MIN_SPAN.as_secs_f64() && warm > 0 {
            series.growth_pct = Some((last as f64 - warm as f64) / warm as f64 * 100.0);
        }
    }
    series
}

/// The largest growth among the series that measured one.
pub(crate) fn max_growth(series: &[RssSeries]) -> Option<f64> {
    series
        .iter()
        .filter_map(|s| s.growth_pct)
        .fold(None, |max, g| Some(max.map_or(g, |m: f64| m.max(g))))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Sampler, max_growth};

    #[test]
    fn growth_counts_from_the_warm_sample_per_process() {
        let t0 = Instant::now();
        let mut sampler = Sampler::new(t0);
        for s in 0..=200u64 {
            let now = t0 + Duration::from_secs(s);
            // A: 10 MiB at start, 20 MiB once warm, 21 MiB at the end (5 % growth).
            let a = if s < 60 {
                10_240
            } else {
                20_480 + (s - 60) * 1024 / 140
            };
            let mut procs = vec![("A", 1, a)];
            // B restarted at 150 s: its new series is too short to count.
            procs.push(("B", if s < 150 { 2 } else { 3 }, 30_000));
            sampler.sample(now, &procs);
        }
        let series = sampler.finish(Duration::from_secs(60));
        assert_eq!(series.len(), 3);
        let a = &series[0];
        assert_eq!((a.warm_kib, a.last_kib), (Some(20_480), Some(21_504)));
        assert!((a.growth_pct.unwrap_or_default() - 5.0).abs() < 1e-9);
        assert_eq!(series[1].growth_pct, Some(0.0));
        assert_eq!(
            series[2].growth_pct, None,
            "50 s of samples, none after the warm-up span"
        );
        assert_eq!(max_growth(&series), a.growth_pct);
    }
}
