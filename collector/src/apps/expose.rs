//! Application series in the Prometheus exposition: every series of every
//! host that is up or stale, with `app`, `instance` (when the instance has
//! a name) and `host` labels beside its own; counters as their running
//! totals, distributions and histograms as classic histograms, summaries as
//! summaries; and `curvemon_app_info` per instance.
//!
//! A distribution's buckets are its sketch's at [`EXPOSITION_SCHEMA`]
//! (bounds a factor 2^(1/8) ≈ 1.09 apart, only the buckets that hold
//! observations), so Prometheus's `histogram_quantile` is off by at most
//! one bucket's width, 9 %; the collector's own percentiles (API,
//! dashboard) read the full-resolution sketch, within 1.1 %.

use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricType, Quantile, Summary};

use super::Total;
use crate::{
    exposition::{Families, label, sample},
    registry::{Registry, State},
};

/// The schema of the buckets distributions are exported with.
pub const EXPOSITION_SCHEMA: i8 = 3;

/// Adds every application series of `registry` to `out`.
pub(crate) fn series(registry: &Registry, out: &mut Families) {
    let mut hosts: Vec<_> = registry
        .apps
        .hosts()
        .filter_map(|(key, apps)| Some((registry.get(key)?, apps)))
        .filter(|(host, _)| host.state != State::Down && host.hostname.is_some())
        .collect();
    hosts.sort_by(|a, b| a.0.hostname.cmp(&b.0.hostname));
    for (host, apps) in hosts {
        let hostname = host.hostname.as_deref().unwrap_or_default();
        let mut instances: Vec<_> = apps.instances.values().collect();
        instances.sort_by_key(|i| i.decl.id);
        for instance in instances {
            let d = &instance.decl;
            let labels = vec![
                label("app", &d.app),
                label("instance", &d.name),
                label("host", hostname),
                label("pid", &d.pid.to_string()),
                label("unit", &d.unit),
                label("source", &d.source),
            ];
            out.add_strict(
                "curvemon_app_info",
                "An application instance the agent reports; always 1.",
                MetricType::GAUGE,
                sample(MetricType::GAUGE, labels, 1.0),
            );
        }
        let mut series: Vec<_> = apps.series.values().collect();
        series.sort_by_key(|s| s.decl.id);
        for s in series {
            let Some(instance) = apps.instances.get(&s.decl.instance) else { continue };
            let mut labels: Vec<LabelPair> =
                s.decl.labels.iter().map(|l| label(&l.name, &l.value)).collect();
            labels.push(label("app", &instance.decl.app));
            if !instance.decl.name.is_empty() {
                labels.push(label("instance", &instance.decl.name));
            }
            labels.push(label("host", hostname));
            let name = s.decl.name.as_str();
            let help = s.decl.help.as_str();
            match &s.total {
                Total::Counter(v) => {
                    out.add_strict(
                        name,
                        help,
                        MetricType::COUNTER,
                        sample(MetricType::COUNTER, labels, *v),
                    );
                }
                Total::Gauge(v) if v.is_nan() => {}
                Total::Gauge(v) => {
                    out.add_strict(
                        name,
                        help,
                        MetricType::GAUGE,
                        sample(MetricType::GAUGE, labels, *v),
                    );
                }
                Total::Distribution(sketch) => {
                    let buckets = sketch.cumulative(EXPOSITION_SCHEMA);
                    let metric = histogram(
                        labels,
                        buckets.into_iter().map(|(le, n)| (le, n as f64)),
                        sketch.count as f64,
                        sketch.sum,
                    );
                    out.add_strict(name, help, MetricType::HISTOGRAM, metric);
                }
                Total::Histogram { counts, sum } => {
                    let curvemon_protocol::AppKind::Histogram { bounds } = &s.decl.kind else {
                        continue;
                    };
                    let mut running = 0.0;
                    let cumulative: Vec<(f64, f64)> = bounds
                        .iter()
                        .copied()
                        .chain(std::iter::once(f64::INFINITY))
                        .zip(counts)
                        .map(|(le, c)| {
                            running += c;
                            (le, running)
                        })
                        .collect();
                    let metric = histogram(labels, cumulative.into_iter(), running, *sum);
                    out.add_strict(name, help, MetricType::HISTOGRAM, metric);
                }
                Total::Summary { values, sum, count } => {
                    let curvemon_protocol::AppKind::Summary { quantiles } = &s.decl.kind else {
                        continue;
                    };
                    let mut summary = Summary::default();
                    summary.set_sample_count(count.max(0.0).round() as u64);
                    summary.set_sample_sum(*sum);
                    let quantiles = quantiles
                        .iter()
                        .zip(values)
                        .map(|(q, v)| {
                            let mut quantile = Quantile::default();
                            quantile.set_quantile(*q);
                            quantile.set_value(*v);
                            quantile
                        })
                        .collect();
                    summary.set_quantile(quantiles);
                    let mut metric = Metric::from_label(labels);
                    metric.set_summary(summary);
                    out.add_strict(name, help, MetricType::SUMMARY, metric);
                }
            }
        }
    }
}

/// A classic histogram metric from cumulative `(le, count)` pairs.
fn histogram(
    labels: Vec<LabelPair>,
    cumulative: impl Iterator<Item = (f64, f64)>,
    count: f64,
    sum: f64,
) -> Metric {
    let mut histogram = Histogram::default();
    histogram.set_sample_count(count.max(0.0).round() as u64);
    histogram.set_sample_sum(sum);
    // The encoder writes the +Inf bucket itself (from the count), as
    // `le="+Inf"`; given one, it would write `le="inf"`.
    let buckets = cumulative
        .filter(|(le, _)| le.is_finite())
        .map(|(le, n)| {
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(le);
            bucket.set_cumulative_count(n.max(0.0).round() as u64);
            bucket
        })
        .collect();
    histogram.set_bucket(buckets);
    let mut metric = Metric::from_label(labels);
    metric.set_histogram(histogram);
    metric
}
