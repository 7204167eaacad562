//! Stored samples as remote-write series: the names and labels `/metrics`
//! gives them (the agent's names, the family's labels, `host`), so a
//! dashboard or alert works the same on a scrape and on remote write.

use std::{collections::HashMap, sync::Arc};

use curvemon_protocol::Schema;

use super::prompb::{Label, Sample, TimeSeries};
use crate::store::block::Stored;

/// Each schema revision's series labels (without `host`), built once per
/// revision however many hosts share it.
#[derive(Debug, Default)]
pub struct Layouts {
    by_revision: HashMap<u64, Arc<Vec<Vec<Label>>>>,
}

impl Layouts {
    /// Learns a schema.
    pub fn insert(&mut self, schema: &Schema) {
        self.by_revision.entry(schema.revision).or_insert_with(|| {
            let mut out = Vec::with_capacity(schema.series_count());
            for family in &schema.families {
                for labels in &family.series {
                    let mut set: Vec<Label> = labels
                        .iter()
                        .filter(|l| l.name != "host")
                        .map(|l| Label { name: l.name.clone(), value: l.value.clone() })
                        .collect();
                    set.push(Label { name: "__name__".into(), value: family.name.clone() });
                    set.sort_by(|a, b| a.name.cmp(&b.name));
                    out.push(set);
                }
            }
            Arc::new(out)
        });
    }

    /// The labels of a revision's series, if known.
    pub fn get(&self, revision: u64) -> Option<Arc<Vec<Vec<Label>>>> {
        self.by_revision.get(&revision).cloned()
    }
}

/// Labels with `host` put in its sorted place.
fn with_host(labels: &[Label], host: &str) -> Vec<Label> {
    let at = labels.partition_point(|l| l.name.as_str() < "host");
    let mut out = Vec::with_capacity(labels.len() + 1);
    out.extend_from_slice(&labels[..at]);
    out.push(Label { name: "host".into(), value: host.into() });
    out.extend_from_slice(&labels[at..]);
    out
}

/// Appends one host's samples (one schema revision, time order) as one
/// series per schema series. NaN values (unreadable that time) are left
/// out, as `/metrics` leaves them out. Returns how many values it added.
pub fn push_host(
    out: &mut Vec<TimeSeries>,
    layout: &[Vec<Label>],
    host: &str,
    samples: &[&Stored],
) -> usize {
    let mut added = 0;
    for (i, labels) in layout.iter().enumerate() {
        let samples: Vec<Sample> = samples
            .iter()
            .filter_map(|s| {
                let v = *s.values.get(i)?;
                (!v.is_nan()).then_some(Sample { value: v, timestamp: s.t_ms as i64 })
            })
            .collect();
        if samples.is_empty() {
            continue;
        }
        added += samples.len();
        out.push(TimeSeries { labels: with_host(labels, host), samples });
    }
    added
}

/// `curvemon_host_up` (1 up, 0 stale or down) for each `(host, up)` at
/// `t_ms`, as the collector judges liveness now.
pub fn push_liveness(out: &mut Vec<TimeSeries>, hosts: &[(String, bool)], t_ms: u64) {
    for (host, up) in hosts {
        out.push(TimeSeries {
            labels: vec![
                Label { name: "__name__".into(), value: "curvemon_host_up".into() },
                Label { name: "host".into(), value: host.clone() },
            ],
            samples: vec![Sample { value: f64::from(u8::from(*up)), timestamp: t_ms as i64 }],
        });
    }
}

#[cfg(test)]
mod tests {
    use curvemon_protocol::{Family, Kind, Label as L};

    use super::*;
    use crate::history::Point;

    #[test]
    fn series_carry_their_family_labels_and_host_sorted() {
        let schema = Schema::new(vec![
            Family {
                name: "node_load1".into(),
                help: String::new(),
                kind: Kind::Gauge,
                series: vec![vec![]],
            },
            Family {
                name: "node_cpu_seconds_total".into(),
                help: String::new(),
                kind: Kind::Counter,
                series: vec![vec![L::new("cpu", "0"), L::new("mode", "idle")]],
            },
        ]);
        let mut layouts = Layouts::default();
        layouts.insert(&schema);
        let layout = layouts.get(schema.revision).unwrap();
        let point = Point { t_ms: 5, fields: [f32::NAN; 12], cores: Box::new([]) };
        let s = Stored {
            epoch: 1,
            seq: 1,
            t_ms: 5,
            revision: schema.revision,
            values: vec![0.5, f64::NAN],
            point,
        };
        let mut out = Vec::new();
        assert_eq!(push_host(&mut out, &layout, "web-1", &[&s]), 1);
        let names: Vec<(&str, &str)> =
            out[0].labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(names, [("__name__", "node_load1"), ("host", "web-1")]);
        let cpu: Vec<&str> = layout[1].iter().map(|l| l.name.as_str()).collect();
        assert_eq!(cpu, ["__name__", "cpu", "mode"]);
        assert_eq!(
            with_host(&layout[1], "h").iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["__name__", "cpu", "host", "mode"]
        );
    }
}
