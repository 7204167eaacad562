//! `/proc/uptime`: seconds since boot. node_exporter has no uptime metric
//! (it exports the boot time), so this one carries curvemon's prefix.

use curvemon_protocol::Kind;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Producer, Roots};

/// The `/proc/uptime` collector.
#[derive(Debug, Default)]
pub struct Uptime {
    files: FileCache,
}

impl Collector for Uptime {
    fn name(&self) -> &'static str {
        "uptime"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let uptime: procfs::Uptime = self.files.parse(roots.path("uptime"), Producer::OnePiece)?;
        Ok(vec![FamilySample::single(
            "curvemon_uptime_seconds",
            "Seconds since the host booted (including time in suspend), from /proc/uptime.",
            Kind::Gauge,
            uptime.uptime,
        )])
    }
}
