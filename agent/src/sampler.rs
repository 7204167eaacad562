//! Runs every collector once per interval and lays the result out as a
//! schema plus values in schema order, the shape the wire wants.
//!
//! A collector that fails keeps its families in the schema with NaN values
//! (so one flaky file does not churn schema revisions), and its success and
//! duration are reported as metrics of their own, as node_exporter does.

use std::time::Instant;

use curvemon_protocol::{Family, Kind, Label, Schema};
use tracing::{info, warn};

use crate::{
    collectors::{Collector, FamilySample},
    proc_root::ProcRoot,
};

/// One sample: the schema it follows and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Families and series, in value order.
    pub families: Vec<Family>,
    /// One value per series.
    pub values: Vec<f64>,
    /// [`Schema::compute_revision`] of `families`.
    pub revision: u64,
}

impl Sample {
    /// The schema, for the model.
    pub fn schema(&self) -> Schema {
        Schema { revision: self.revision, families: self.families.clone() }
    }
}

struct Slot {
    collector: Box<dyn Collector>,
    /// The last successful output, to keep the layout while failing.
    last_ok: Option<Vec<FamilySample>>,
    failing: bool,
}

/// The set of enabled collectors and what they last produced.
pub struct Sampler {
    slots: Vec<Slot>,
}

impl Sampler {
    /// A sampler over `collectors`, in that order.
    pub fn new(collectors: Vec<Box<dyn Collector>>) -> Self {
        Sampler {
            slots: collectors
                .into_iter()
                .map(|collector| Slot { collector, last_ok: None, failing: false })
                .collect(),
        }
    }

    /// Runs every collector once.
    pub fn sample(&mut self, root: &ProcRoot) -> Sample {
        let mut families = Vec::new();
        let mut values = Vec::new();
        let mut success = Vec::with_capacity(self.slots.len());
        let mut duration = Vec::with_capacity(self.slots.len());
        for slot in &mut self.slots {
            let name = slot.collector.name();
            let started = Instant::now();
            let result = slot.collector.collect(root);
            let took = started.elapsed().as_secs_f64();
            let ok = match result {
                Ok(output) => {
                    if slot.failing {
                        info!(collector = name, "Collector recovered.");
                        slot.failing = false;
                    }
                    push(&mut families, &mut values, &output, false);
                    slot.last_ok = Some(output);
                    true
                }
                Err(error) => {
                    if !slot.failing {
                        warn!(collector = name, %error, "Collector failed; its values are NaN until it recovers.");
                        slot.failing = true;
                    }
                    if let Some(previous) = &slot.last_ok {
                        push(&mut families, &mut values, previous, true);
                    }
                    false
                }
            };
            let label = vec![Label::new("collector", name)];
            success.push((label.clone(), if ok { 1.0 } else { 0.0 }));
            duration.push((label, took));
        }
        let own = [
            FamilySample {
                name: "curvemon_agent_collector_success",
                help: "1 if the collector's last run succeeded, 0 if it failed.",
                kind: Kind::Gauge,
                series: success,
            },
            FamilySample {
                name: "curvemon_agent_collector_duration_seconds",
                help: "How long the collector's last run took.",
                kind: Kind::Gauge,
                series: duration,
            },
        ];
        push(&mut families, &mut values, &own, false);
        let revision = Schema::compute_revision(&families);
        Sample { families, values, revision }
    }
}

fn push(families: &mut Vec<Family>, values: &mut Vec<f64>, output: &[FamilySample], nan: bool) {
    for family in output {
        families.push(Family {
            name: family.name.to_string(),
            help: family.help.to_string(),
            kind: family.kind,
            series: family.series.iter().map(|(labels, _)| labels.clone()).collect(),
        });
        values.extend(family.series.iter().map(|(_, v)| if nan { f64::NAN } else { *v }));
    }
}
