//! The alerter's counters: `fulcrum_alerts_sent_total{sink}`, `fulcrum_alerts_failed_total{sink}`,
//! `fulcrum_alert_retries_total{sink}`, `fulcrum_alerts_suppressed_total` and
//! `fulcrum_alerts_dropped_total`.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry, core::Collector};

/// Counters shared by the dispatcher and the sinks.
#[derive(Debug, Clone)]
pub(super) struct Metrics {
    pub(super) sent: IntCounterVec,
    pub(super) failed: IntCounterVec,
    pub(super) retries: IntCounterVec,
    pub(super) suppressed: IntCounter,
    pub(super) dropped: IntCounter,
}

impl Metrics {
    /// New counters, registered in `registry`.
    ///
    /// A reload starts a new alerter, so counters of an earlier one are replaced (Prometheus
    /// reads the drop to zero as a counter reset). A registry that refuses them only costs the
    /// metrics: alerts matter more, so that is logged, not fatal.
    pub(super) fn register(registry: &Registry) -> Self {
        // The names and help texts below are valid constants, so creating cannot fail.
        let per_sink = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["sink"]).expect("a valid metric name")
        };
        let plain =
            |name: &str, help: &str| IntCounter::new(name, help).expect("a valid metric name");
        let metrics = Self {
            sent: per_sink("fulcrum_alerts_sent_total", "Alerts delivered, per sink."),
            failed: per_sink(
                "fulcrum_alerts_failed_total",
                "Alerts given up after every try failed, per sink.",
            ),
            retries: per_sink(
                "fulcrum_alert_retries_total",
                "Delivery attempts that failed and were tried again, per sink.",
            ),
            suppressed: plain(
                "fulcrum_alerts_suppressed_total",
                "Alerts never sent because a newer state of the same object replaced them (flap limit).",
            ),
            dropped: plain(
                "fulcrum_alerts_dropped_total",
                "Alerts dropped because a queue was full or the alerter had stopped.",
            ),
        };
        replace(registry, &metrics.sent);
        replace(registry, &metrics.failed);
        replace(registry, &metrics.retries);
        replace(registry, &metrics.suppressed);
        replace(registry, &metrics.dropped);
        metrics
    }
}

/// Registers `collector` in place of any with the same descriptors.
fn replace<C: Collector + Clone + 'static>(registry: &Registry, collector: &C) {
    // Unregistering matches on the descriptors, so this removes an earlier alerter's counter.
    let _ = registry.unregister(Box::new(collector.clone()));
    if let Err(error) = registry.register(Box::new(collector.clone())) {
        let name = collector.desc().first().map(|d| d.fq_name.clone());
        tracing::warn!(metric = ?name, %error, "cannot register an alert metric");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn a_second_alerter_replaces_the_first_ones_counters() {
        let registry = Registry::new();
        let first = Metrics::register(&registry);
        first.dropped.inc();
        let second = Metrics::register(&registry);
        second.sent.with_label_values(&["email"]).inc();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("fulcrum_alerts_sent_total{sink=\"email\"} 1"),
            "{text}"
        );
        assert!(text.contains("fulcrum_alerts_dropped_total 0"), "{text}");
    }
}
