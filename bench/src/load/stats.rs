//! Latency histograms and what the report says about them: the summary numbers and the
//! percentile distribution for plots.

use hdrhistogram::Histogram;

use super::report::Latency;

/// Significant digits kept: values are exact to 0.1 %, at any magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Percentiles of the plotted distribution: a fixed list, so runs can be compared point by point,
/// denser towards the tail where latency problems show.
pub const DISTRIBUTION_PERCENTILES: [f64; 20] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9,
    99.95, 99.99, 99.999, 100.0,
];

/// An empty histogram of microseconds that grows to fit whatever is recorded.
pub(crate) fn histogram() -> Histogram<u64> {
    // Fails only for more than 5 significant digits.
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid precision")
}

/// Min, mean, stdev, the usual percentiles and max; all zero for an empty histogram.
pub(crate) fn summary(histogram: &Histogram<u64>) -> Latency {
    if histogram.is_empty() {
        return Latency::default();
    }
    Latency {
        min: histogram.min(),
        mean: histogram.mean(),
        stdev: histogram.stdev(),
        p50: histogram.value_at_quantile(0.50),
        p90: histogram.value_at_quantile(0.90),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
    }
}

/// `(percentile, microseconds)` at each of [`DISTRIBUTION_PERCENTILES`]; empty for an empty
/// histogram.
pub(crate) fn distribution(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    DISTRIBUTION_PERCENTILES
        .iter()
        .map(|&percentile| {
            let value = match percentile {
                0.0 => histogram.min(),
                100.0 => histogram.max(),
                // `99.9 / 100.0` is a hair above 0.999 in binary and can land on the next
                // bucket; a quotient of whole numbers is exactly the quantile `summary` uses.
                _ => histogram.value_at_quantile((percentile * 1000.0).round() / 100_000.0),
            };
            (percentile, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{DISTRIBUTION_PERCENTILES, distribution, histogram, summary};

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut latencies = histogram();
        for value in 1..=10_000 {
            latencies.record(value).unwrap();
        }
        let latency = summary(&latencies);
        assert_eq!(latency.min, 1);
        assert!((latency.mean - 5000.5).abs() < 5.0, "{}", latency.mean);
        // The stdev of a uniform distribution over n values is n / sqrt(12).
        assert!((latency.stdev - 2886.75).abs() < 5.0, "{}", latency.stdev);
        // Within the histogram's 0.1 % precision.
        for (got, want) in [
            (latency.p50, 5000),
            (latency.p90, 9000),
            (latency.p99, 9900),
            (latency.p999, 9990),
            (latency.max, 10_000),
        ] {
            assert!(got.abs_diff(want) <= want / 1000 + 1, "{got} vs {want}");
        }
    }

    #[test]
    fn merged_histograms_equal_one_that_saw_everything() {
        let mut all = histogram();
        let mut merged = histogram();
        for part in 0..4u64 {
            let mut one = histogram();
            for value in 0..1000u64 {
                // Different ranges per part, so merging has to grow the target.
                let value = value * 10u64.pow(part as u32) + part;
                one.record(value).unwrap();
                all.record(value).unwrap();
            }
            merged.add(&one).unwrap();
        }
        assert_eq!(merged.len(), 4000);
        // The plotted points agree with the summary's percentiles.
        let points = distribution(&merged);
        let at = |percentile: f64| points.iter().find(|p| p.0 == percentile).unwrap().1;
        let latency = summary(&merged);
        assert_eq!(
            [at(50.0), at(90.0), at(99.0), at(99.9)],
            [latency.p50, latency.p90, latency.p99, latency.p999]
        );
        assert_eq!(summary(&merged), summary(&all));
        assert_eq!(distribution(&merged), distribution(&all));
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        let mut latencies = histogram();
        latencies.record_n(100, 990).unwrap();
        latencies.record_n(500_000, 10).unwrap();
        let latency = summary(&latencies);
        assert!(latency.p90 < 101);
        assert!(
            latency.p99 < 101,
            "exactly 1 % is slow, so p99 is still fast"
        );
        assert!(latency.p999 >= 499_000);
        let points = distribution(&latencies);
        assert_eq!(points.len(), DISTRIBUTION_PERCENTILES.len());
        assert_eq!(points[0], (0.0, 100));
        assert!(points.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert!(points.last().unwrap().1 >= 499_000);
    }

    #[test]
    fn empty_histograms_give_zeros() {
        assert_eq!(summary(&histogram()), Default::default());
        assert!(distribution(&histogram()).is_empty());
    }
}
