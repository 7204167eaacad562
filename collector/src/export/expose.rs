//! Each remote-write target's counters as `curvemon_remote_write_*`
//! families (labelled `target`), so a receiver that refuses or falls
//! behind is a number on a graph.

use std::sync::{Arc, atomic::Ordering};

use prometheus::proto::MetricType;

use super::remote_write::TargetStats;
use crate::exposition::{Families, label};

/// Adds the targets' families to `out`.
pub(crate) fn series(targets: &[(String, Arc<TargetStats>)], out: &mut Families) {
    for (name, s) in targets {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let rows: [(&str, &str, MetricType, f64); 9] = [
            (
                "curvemon_remote_write_samples_total",
                "Host samples the receiver accepted.",
                MetricType::COUNTER,
                get(&s.sent_samples),
            ),
            (
                "curvemon_remote_write_values_total",
                "Values (one series at one time) the receiver accepted.",
                MetricType::COUNTER,
                get(&s.sent_values),
            ),
            (
                "curvemon_remote_write_requests_total",
                "Requests the receiver accepted.",
                MetricType::COUNTER,
                get(&s.requests),
            ),
            (
                "curvemon_remote_write_retries_total",
                "Requests sent again after a 5xx, a 429 or a network error.",
                MetricType::COUNTER,
                get(&s.retries),
            ),
            (
                "curvemon_remote_write_rejected_samples_total",
                "Host samples the receiver refused for good (a 4xx other than 429); logged with its answer.",
                MetricType::COUNTER,
                get(&s.rejected_samples),
            ),
            (
                "curvemon_remote_write_dropped_samples_total",
                "Host samples skipped because the target fell further behind than its queue_samples bound.",
                MetricType::COUNTER,
                get(&s.dropped_samples),
            ),
            (
                "curvemon_remote_write_missing_samples_total",
                "Host samples the store no longer had (retention) or could not read when their turn came.",
                MetricType::COUNTER,
                get(&s.missing_samples),
            ),
            (
                "curvemon_remote_write_pending_samples",
                "Host samples stored but not yet delivered to this target.",
                MetricType::GAUGE,
                get(&s.pending_samples),
            ),
            (
                "curvemon_remote_write_last_sent_timestamp_seconds",
                "Newest sample time the receiver accepted, Unix time.",
                MetricType::GAUGE,
                get(&s.last_sent_ms) / 1000.0,
            ),
        ];
        for (metric, help, kind, value) in rows {
            out.add(metric, help, kind, vec![label("target", name)], value);
        }
    }
}
