//! `/proc/sys/kernel/random/entropy_avail` (and `poolsize`): the kernel's
//! entropy estimate, which starved VMs used to run out of.

use curvemon_protocol::Kind;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The entropy collector.
#[derive(Debug, Default)]
pub struct Entropy {
    files: FileCache,
}

impl Collector for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let mut out = vec![FamilySample::single(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            Kind::Gauge,
            self.files.number(roots.path("sys/kernel/random/entropy_avail"))?,
        )];
        match self.files.number(roots.path("sys/kernel/random/poolsize")) {
            Ok(bits) => out.push(FamilySample::single(
                "node_entropy_pool_size_bits",
                "Bits of entropy pool.",
                Kind::Gauge,
                bits,
            )),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }
}
