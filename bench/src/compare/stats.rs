//! The two numbers every table cell comes from: the median of a few rounds, and the
//! Fulcrum/HAProxy ratio of two medians.

/// The median of `values`, `None` when there are none. With an even count it is the mean of the
/// two middle values, so two rounds give their average rather than an arbitrary one of them.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        Some(sorted[middle])
    } else {
        Some((sorted[middle - 1] + sorted[middle]) / 2.0)
    }
}

/// `fulcrum / haproxy`, `None` when either is missing or HAProxy's is zero (a ratio to nothing
/// means nothing, and an infinite cell would only hide the broken run behind it).
pub(crate) fn ratio(fulcrum: Option<f64>, haproxy: Option<f64>) -> Option<f64> {
    match (fulcrum, haproxy) {
        (Some(f), Some(h)) if h != 0.0 && f.is_finite() && h.is_finite() => Some(f / h),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{median, ratio};

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[10.0, 1000.0, 20.0]), Some(20.0));
    }

    #[test]
    fn median_ignores_values_that_are_not_numbers() {
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn ratio_is_fulcrum_over_haproxy() {
        assert_eq!(ratio(Some(50.0), Some(100.0)), Some(0.5));
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(2.0), None), None);
        assert_eq!(ratio(Some(2.0), Some(0.0)), None);
    }
}
