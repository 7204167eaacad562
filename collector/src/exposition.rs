//! The Prometheus view of the fleet: every host's latest values under the
//! agent's metric names with a `host` label, plus per-host liveness, the
//! host model as an info metric, and the collector's own counters.
//!
//! Built from a registry snapshot at scrape time (node_exporter's const
//! metrics), so a host that goes away simply stops being exported: there is
//! no gauge to delete. The hosts' part is written from a snapshot by
//! [`crate::export::text`] (it is most of a large fleet's scrape); the rest
//! is gathered here and encoded by the `prometheus` crate's text encoder,
//! in the classic text format every Prometheus and promtool parse.
//!
//! Names are exactly the agent's (node_exporter's where one exists). Types:
//! gauges are gauges and counters are counters, including the few counters
//! node_exporter names without `_total` and declares untyped
//! (`node_vmstat_*`, `node_netstat_*`): the crate's text encoder cannot
//! write untyped (it panics), the classic format lets a counter keep its
//! name, and queries match names, not types.

use std::collections::BTreeMap;

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::{
    export::remote_write::TargetStats,
    registry::{Registry, State},
    stats::StatsSnapshot,
    store::writer::StoreStats,
};

pub(crate) fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family
}

pub(crate) fn sample(kind: MetricType, labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut metric = Metric::from_label(labels);
    match kind {
        MetricType::COUNTER => {
            let mut c = prometheus::proto::Counter::default();
            c.set_value(value);
            metric.set_counter(c);
        }
        _ => {
            let mut g = Gauge::default();
            g.set_value(value);
            metric.set_gauge(g);
        }
    }
    metric
}

/// Per-family builder that keeps one HELP/TYPE per name across hosts.
#[derive(Default)]
pub(crate) struct Families {
    map: BTreeMap<String, MetricFamily>,
    /// `_bucket`, `_sum` and `_count` names of histograms and summaries:
    /// no other family may take them.
    derived: std::collections::HashSet<String>,
    /// Application series' names and labels, to keep each once.
    series: std::collections::HashSet<String>,
    /// Application series left out: another type under the same name, a
    /// name a histogram's parts take, or the same series twice.
    pub conflicts: u64,
    /// Names the hosts' own families take (written apart, see
    /// [`crate::export::text`]).
    pub taken: std::collections::HashSet<String>,
}

impl Families {
    /// Adds an application series' metric to family `name` of `kind`,
    /// unless that would make the exposition ambiguous (then it is counted
    /// in `conflicts` and left out).
    pub(crate) fn add_strict(&mut self, name: &str, help: &str, kind: MetricType, metric: Metric) {
        let parts: &[&str] = match kind {
            MetricType::HISTOGRAM => &["_bucket", "_sum", "_count"],
            MetricType::SUMMARY => &["_sum", "_count"],
            _ => &[],
        };
        let clashes = self.derived.contains(name)
            || self.taken.contains(name)
            || self.map.get(name).is_some_and(|f| f.get_field_type() != kind)
            || parts.iter().any(|p| self.map.contains_key(&format!("{name}{p}")));
        let mut key: String = name.to_string();
        for pair in metric.get_label() {
            key.push('\u{1f}');
            key.push_str(pair.name());
            key.push('=');
            key.push_str(pair.value());
        }
        if clashes || !self.series.insert(key) {
            self.conflicts += 1;
            return;
        }
        for part in parts {
            self.derived.insert(format!("{name}{part}"));
        }
        let family = self.map.entry(name.to_string()).or_insert_with(|| family(name, help, kind));
        family.mut_metric().push(metric);
    }

    pub(crate) fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: Vec<LabelPair>,
        value: f64,
    ) {
        let family = self.map.entry(name.to_string()).or_insert_with(|| family(name, help, kind));
        // A name the agents disagree on the type of keeps its first type.
        let kind = family.get_field_type();
        family.mut_metric().push(sample(kind, labels, value));
    }
}

/// The collector's own counters.
fn collector_series(stats: &StatsSnapshot, registry: &Registry, out: &mut Families) {
    let counters = registry.counters;
    let c = MetricType::COUNTER;
    let total = |out: &mut Families, name: &str, help: &str, v: u64| {
        out.add(name, help, c, vec![], v as f64)
    };
    total(
        out,
        "curvemon_collector_frames_received_total",
        "Frames received from authenticated agents.",
        stats.frames_received,
    );
    total(
        out,
        "curvemon_collector_bytes_received_total",
        "Bytes in frames received from authenticated agents.",
        stats.bytes_received,
    );
    total(
        out,
        "curvemon_collector_decode_errors_total",
        "Frames that did not decode (counted, logged with the peer, dropped).",
        stats.decode_errors,
    );
    total(
        out,
        "curvemon_collector_version_mismatches_total",
        "Frames of another protocol version (answered with a reject).",
        stats.version_mismatches,
    );
    total(
        out,
        "curvemon_collector_connections_accepted_total",
        "TCP connections accepted on the agent socket, before their handshake.",
        stats.connections_accepted,
    );
    for (reason, count) in crate::stats::HANDSHAKE_REASONS.iter().zip(stats.handshake_reasons) {
        out.add(
            "curvemon_collector_handshake_failures_total",
            "CURVE handshakes that failed, by reason.",
            c,
            vec![label("reason", reason)],
            count as f64,
        );
    }
    total(
        out,
        "curvemon_collector_throttled_frames_total",
        "Frames dropped because their agent exceeded its message rate.",
        stats.throttled_frames,
    );
    total(
        out,
        "curvemon_collector_agents_refused_total",
        "Agents refused by the allowlist.",
        stats.agents_refused,
    );
    total(
        out,
        "curvemon_collector_replies_dropped_total",
        "Replies that could not be queued.",
        stats.replies_dropped,
    );
    total(
        out,
        "curvemon_collector_revoked_frames_total",
        "Frames refused because their key was revoked mid-session.",
        stats.revoked_frames,
    );
    total(
        out,
        "curvemon_collector_metrics_without_model_total",
        "Metrics that arrived before their model.",
        counters.metrics_without_model,
    );
    total(
        out,
        "curvemon_collector_schema_mismatches_total",
        "Metrics whose value count did not match their schema.",
        counters.schema_mismatches,
    );
    for (reason, count) in
        curvemon_protocol::ModelError::REASONS.iter().zip(counters.models_refused_by_reason)
    {
        out.add(
            "curvemon_collector_models_refused_total",
            "Hellos and models refused for breaking the protocol's rules, by reason (logged with the peer).",
            c,
            vec![label("reason", reason)],
            count as f64,
        );
    }
    total(
        out,
        "curvemon_collector_names_refused_total",
        "Hellos refused because another key owns the host name.",
        counters.names_refused,
    );
    for state in [State::Up, State::Stale, State::Down] {
        let n = registry.hosts().filter(|h| h.state == state).count();
        out.add(
            "curvemon_collector_hosts",
            "Known hosts per liveness state.",
            MetricType::GAUGE,
            vec![label("state", &state.to_string())],
            n as f64,
        );
    }
}

/// The live streams' numbers, for [`gather`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamStats {
    /// Connected stream clients.
    pub clients: usize,
    /// Events published.
    pub published: u64,
    /// Clients dropped for falling behind.
    pub dropped: u64,
}

fn delay_histogram(registry: &Registry) -> MetricFamily {
    let h = &registry.ingest_delay;
    let mut hist = prometheus::proto::Histogram::default();
    hist.set_sample_count(h.count);
    hist.set_sample_sum(h.sum);
    let buckets = crate::registry::DELAY_BUCKETS
        .iter()
        .zip(h.buckets)
        .map(|(bound, count)| {
            let mut b = prometheus::proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(count);
            b
        })
        .collect();
    hist.set_bucket(buckets);
    let mut metric = Metric::default();
    metric.set_histogram(hist);
    let mut f = family(
        "curvemon_collector_ingest_delay_seconds",
        "From a sample being taken on the agent to the collector applying it (includes clock skew).",
        MetricType::HISTOGRAM,
    );
    f.mut_metric().push(metric);
    f
}

/// The scrape's families other than the hosts' (which
/// [`crate::export::text`] writes from a snapshot): the collector's own,
/// applications' and checks'. `taken`: names the hosts' families use.
/// Returns them, and the families written last (the delay histogram).
pub fn gather(
    registry: &Registry,
    stats: &StatsSnapshot,
    streams: StreamStats,
    store: &StoreStats,
    exports: &[(String, std::sync::Arc<TargetStats>)],
    taken: std::collections::HashSet<String>,
) -> (Vec<MetricFamily>, Vec<MetricFamily>) {
    let mut out = Families { taken, ..Families::default() };
    let g = MetricType::GAUGE;
    collector_series(stats, registry, &mut out);
    out.add(
        "curvemon_collector_stream_clients",
        "Connected live-stream (SSE) clients.",
        g,
        vec![],
        streams.clients as f64,
    );
    let c = MetricType::COUNTER;
    out.add(
        "curvemon_collector_stream_events_total",
        "Events published to live streams.",
        c,
        vec![],
        streams.published as f64,
    );
    out.add(
        "curvemon_collector_stream_clients_dropped_total",
        "Stream clients disconnected because they fell behind.",
        c,
        vec![],
        streams.dropped as f64,
    );
    crate::apps::expose::series(registry, &mut out);
    crate::checks::expose::series(registry, &mut out);
    crate::store::expose::series(store, &mut out);
    crate::export::expose::series(exports, &mut out);
    out.add(
        "curvemon_collector_app_series_left_out",
        "Application series left out of this exposition: a name another type or a histogram's parts take, or the same series twice.",
        g,
        vec![],
        out.conflicts as f64,
    );
    let families: Vec<MetricFamily> = out.map.into_values().collect();
    let tail =
        if registry.ingest_delay.count > 0 { vec![delay_histogram(registry)] } else { Vec::new() };
    (families, tail)
}

/// The text exposition of [`gather`].
///
/// # Errors
/// The encoder's, for names or labels Prometheus cannot represent.
pub fn render(
    registry: &Registry,
    stats: &StatsSnapshot,
    streams: StreamStats,
    store: &StoreStats,
    exports: &[(String, std::sync::Arc<TargetStats>)],
) -> Result<String, prometheus::Error> {
    let snapshot = crate::export::text::Snapshot::take(registry);
    let (rest, tail) = gather(registry, stats, streams, store, exports, snapshot.family_names());
    let rest = crate::export::text::Rest::encode(rest, tail)?;
    let mut text = String::new();
    crate::export::text::render(&snapshot, rest, |chunk| {
        text.push_str(&chunk);
        true
    });
    Ok(text)
}
