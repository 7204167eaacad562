//! One collector per `/proc` family, behind one trait, listed in one place.
//!
//! A collector turns one or a few `/proc` files into [`FamilySample`]s: metric
//! names (node_exporter's where an equivalent exists), labels and values.
//! Counters stay counters; rates are computed once, in the collector
//! process. A collector that fails only marks itself failed: the sampler
//! keeps the rest of the sample.

mod cpu;
mod load;
mod memory;
mod uptime;

pub use cpu::Cpu;
pub use load::Load;
pub use memory::Memory;
pub use uptime::Uptime;

use curvemon_protocol::{Kind, Label};

use crate::proc_root::{ProcReadError, ProcRoot};

/// One metric family with its values of this sample.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySample {
    /// Metric name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label sets and values, in a stable order.
    pub series: Vec<(Vec<Label>, f64)>,
}

impl FamilySample {
    /// A family with a single unlabelled series.
    pub fn single(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Self {
        FamilySample { name, help, kind, series: vec![(Vec::new(), value)] }
    }
}

/// A source of metric families.
pub trait Collector: Send {
    /// Short name, used in `--collectors` and in the success metric's label.
    fn name(&self) -> &'static str;

    /// Reads the family's files once.
    ///
    /// # Errors
    /// The file that could not be read or parsed.
    fn collect(&mut self, root: &ProcRoot) -> Result<Vec<FamilySample>, ProcReadError>;
}

/// Every collector, in the order their values go on the wire.
pub fn all() -> Vec<Box<dyn Collector>> {
    vec![Box::new(Cpu), Box::new(Memory), Box::new(Load), Box::new(Uptime)]
}
