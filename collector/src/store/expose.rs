//! The store's counters as `curvemon_collector_store_*` and
//! `curvemon_collector_samples_lost_total` families: how much is written,
//! what it costs, and every sample reported lost, by reason, so an outage
//! longer than a spool is a number on a graph and not a silence.

use std::sync::atomic::Ordering;

use prometheus::proto::MetricType;

use super::writer::{REASONS, StoreStats};
use crate::exposition::{Families, label};

/// Adds the store's families to `out`.
pub(crate) fn series(stats: &StoreStats, out: &mut Families) {
    let c = MetricType::COUNTER;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let counters = [
        (
            "curvemon_collector_store_samples_total",
            "Samples written to the history store.",
            &stats.stored,
        ),
        (
            "curvemon_collector_store_duplicates_total",
            "Samples received again (resent after a lost acknowledgement) and dropped as already stored.",
            &stats.duplicates,
        ),
        ("curvemon_collector_store_commits_total", "Store transactions committed.", &stats.commits),
        (
            "curvemon_collector_store_errors_total",
            "Store transactions that failed (a full disk, an I/O error); their samples stay unacknowledged and are resent.",
            &stats.errors,
        ),
        (
            "curvemon_collector_store_queue_full_total",
            "Store operations dropped because the writer fell behind; agents resend what was not acknowledged.",
            &stats.queue_full,
        ),
        (
            "curvemon_collector_store_damaged_total",
            "Stored entries found damaged (checksum mismatch) and skipped.",
            &stats.damaged,
        ),
    ];
    for (name, help, value) in counters {
        out.add(name, help, c, vec![], get(value));
    }
    out.add(
        "curvemon_collector_store_commit_seconds_total",
        "Time spent committing store transactions.",
        c,
        vec![],
        get(&stats.commit_nanos) / 1e9,
    );
    out.add(
        "curvemon_collector_store_bytes",
        "Bytes of samples in the history store (compressed blocks and recent entries).",
        MetricType::GAUGE,
        vec![],
        get(&stats.bytes),
    );
    for (reason, lost) in
        REASONS.iter().zip(&stats.lost).filter(|(r, _)| super::counts_as_lost(**r))
    {
        out.add(
            "curvemon_collector_samples_lost_total",
            "Samples agents took that will never be stored, by reason (spool_full: an outage outlasted the agent's spool).",
            c,
            vec![label("reason", reason.as_str())],
            get(lost),
        );
    }
}
