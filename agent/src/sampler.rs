//! Runs every collector once per interval and lays the result out as a
//! schema revision plus values in schema order, the shape the wire wants.
//!
//! The layout is hashed straight from the collectors' output; the schema
//! itself (owned names and labels) is rebuilt only when that revision
//! changes, so a steady-state sample allocates little more than its values.
//!
//! A collector may run every few samples only (its cadence, from the
//! config file's `[intervals]`): in between, the sample carries its last
//! values again, read when it last ran, as a scrape-based system would
//! show them. The first sample runs every collector.
//!
//! A collector that fails keeps its families in the schema with NaN values
//! (so one flaky file does not churn schema revisions), and its success and
//! duration are reported as metrics of their own, as node_exporter does.

use std::{sync::Arc, time::Instant};

use curvemon_protocol::{Family, Kind, RevisionHasher, Schema};
use tracing::{info, warn};

use crate::{
    collectors::{Collector, FamilySample, label},
    roots::Roots,
};

/// One sample: the schema it follows and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The schema's revision.
    pub revision: u64,
    /// One value per series.
    pub values: Vec<f64>,
    families: Arc<Vec<Family>>,
}

impl Sample {
    /// Families and series, in value order.
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The schema, for the model.
    pub fn schema(&self) -> Schema {
        Schema { revision: self.revision, families: self.families.as_ref().clone() }
    }
}

struct Slot {
    collector: Box<dyn Collector>,
    /// The last successful output, to keep the layout while failing.
    last_ok: Option<Vec<FamilySample>>,
    failing: bool,
    seconds: f64,
    /// Runs on every `every`-th sample.
    every: u64,
}

/// The set of enabled collectors and what they last produced.
pub struct Sampler {
    slots: Vec<Slot>,
    schema: Option<(u64, Arc<Vec<Family>>)>,
    /// Samples taken so far.
    taken: u64,
}

impl Sampler {
    /// A sampler over `collectors`, in that order.
    pub fn new(collectors: Vec<Box<dyn Collector>>) -> Self {
        let slots = collectors
            .into_iter()
            .map(|collector| Slot {
                collector,
                last_ok: None,
                failing: false,
                seconds: 0.0,
                every: 1,
            })
            .collect();
        Sampler { slots, schema: None, taken: 0 }
    }

    /// Sets each collector's cadence: it runs on every `every(name)`-th
    /// sample (at least every one).
    #[must_use]
    pub fn with_cadence(mut self, every: impl Fn(&str) -> u32) -> Self {
        for slot in &mut self.slots {
            slot.every = u64::from(every(slot.collector.name()).max(1));
        }
        self
    }

    /// Names of the collectors, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|s| s.collector.name()).collect()
    }

    /// Runs every collector once.
    pub fn sample(&mut self, roots: &Roots) -> Sample {
        self.sample_with(roots, Vec::new())
    }

    /// Runs every collector once and adds `extra` families (the agent's
    /// own, from outside the collectors: StatsD and scrape health) after
    /// them.
    pub fn sample_with(&mut self, roots: &Roots, extra: Vec<FamilySample>) -> Sample {
        let taken = self.taken;
        self.taken += 1;
        for slot in &mut self.slots {
            if !taken.is_multiple_of(slot.every) {
                continue;
            }
            let name = slot.collector.name();
            let started = Instant::now();
            let result = slot.collector.collect(roots);
            slot.seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(output) => {
                    if slot.failing {
                        info!(collector = name, "Collector recovered.");
                        slot.failing = false;
                    }
                    slot.last_ok = Some(output);
                }
                Err(error) => {
                    if !slot.failing {
                        warn!(collector = name, %error, "Collector failed; its values are NaN until it recovers.");
                        slot.failing = true;
                    }
                }
            }
        }
        let mut success = FamilySample::new(
            "curvemon_agent_collector_success",
            "1 if the collector's last run succeeded, 0 if it failed.",
            Kind::Gauge,
        );
        let mut duration = FamilySample::new(
            "curvemon_agent_collector_duration_seconds",
            "How long the collector's last run took.",
            Kind::Gauge,
        );
        for slot in &self.slots {
            let name = slot.collector.name();
            success.push(vec![label("collector", name)], if slot.failing { 0.0 } else { 1.0 });
            duration.push(vec![label("collector", name)], slot.seconds);
        }
        let mut own = vec![success, duration];
        own.extend(extra);

        // One pass: hash the layout and gather the values.
        let parts = || {
            self.slots
                .iter()
                .filter_map(|s| s.last_ok.as_deref().map(|out| (out, s.failing)))
                .chain(std::iter::once((&own[..], false)))
        };
        let mut hasher = RevisionHasher::new();
        let mut values = Vec::with_capacity(self.schema.as_ref().map_or(64, |(_, f)| f.len() * 4));
        for (output, failing) in parts() {
            for family in output {
                hasher.family(&family.name, family.kind);
                for (labels, value) in &family.series {
                    hasher.series();
                    for l in labels {
                        hasher.label(&l.name, &l.value);
                    }
                    values.push(if failing { f64::NAN } else { *value });
                }
            }
        }
        let revision = hasher.finish();
        let families = match &self.schema {
            Some((cached, families)) if *cached == revision => Arc::clone(families),
            _ => {
                let families: Arc<Vec<Family>> = Arc::new(
                    parts()
                        .flat_map(|(output, _)| output.iter())
                        .map(|f| Family {
                            name: f.name.to_string(),
                            help: f.help.to_string(),
                            kind: f.kind,
                            series: f.series.iter().map(|(labels, _)| labels.clone()).collect(),
                        })
                        .collect(),
                );
                self.schema = Some((revision, Arc::clone(&families)));
                families
            }
        };
        Sample { revision, values, families }
    }
}
