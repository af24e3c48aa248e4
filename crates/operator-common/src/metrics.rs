//! Per-controller Prometheus metrics: a registry prefixed `keystone_<controller>_`, holding reconcile runs,
//! failures by error category, and a duration histogram recorded by a drop guard (so early returns and `?`
//! are timed too). Controllers register their own extra metrics in the same registry.

use std::time::Instant;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Metrics every controller exports.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    /// The registry served on /metrics.
    pub registry: Registry,
    /// `keystone_<c>_reconcile_runs_total`
    pub runs: IntCounter,
    /// `keystone_<c>_reconcile_failures_total{category}`
    pub failures: IntCounterVec,
    /// `keystone_<c>_reconcile_duration_seconds`
    pub duration: Histogram,
    /// `keystone_<c>_ready`: 1 once the CRD is established and the first watch sync finished.
    pub ready: IntGauge,
    /// `keystone_<c>_leader`: 1 while this replica holds the lease (always 1 without leader election).
    pub leader: IntGauge,
}

impl ControllerMetrics {
    /// A fresh registry for the controller with metric prefix `keystone_<short_name>`.
    pub fn new(short_name: &str) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some(format!("keystone_{short_name}")), None)?;
        let runs = IntCounter::with_opts(Opts::new("reconcile_runs_total", "Reconcile runs started."))?;
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_failures_total",
                "Reconcile runs that failed, by error category.",
            ),
            &["category"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("reconcile_duration_seconds", "Duration of reconcile runs.").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let ready = IntGauge::with_opts(Opts::new(
            "ready",
            "1 when this replica reports ready on /readyz.",
        ))?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let leader = IntGauge::with_opts(Opts::new(
            "leader",
            "1 while this replica holds the leader lease and reconciles (1 without leader election).",
        ))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            runs,
            failures,
            duration,
            ready,
            leader,
        })
    }

    /// Counts a run and returns a guard that records its duration when dropped.
    pub fn start_reconcile(&self) -> ReconcileTimer {
        self.runs.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Counts a failed run under its error category.
    pub fn record_failure(&self, category: &str) {
        self.failures.with_label_values(&[category]).inc();
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Records the reconcile duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_failures_and_durations_under_the_prefix() -> prometheus::Result<()> {
        let m = ControllerMetrics::new("fernet")?;
        {
            let _t = m.start_reconcile();
        }
        m.record_failure("kube_api");
        let text = m.encode()?;
        assert!(text.contains("keystone_fernet_reconcile_runs_total 1"), "{text}");
        assert!(
            text.contains("keystone_fernet_reconcile_failures_total{category=\"kube_api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keystone_fernet_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        Ok(())
    }
}
