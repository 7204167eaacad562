//! `/proc/loadavg`: the 1, 5 and 15 minute load averages.

use curvemon_protocol::Kind;
use procfs::LoadAverage;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Producer, Roots};

/// The `/proc/loadavg` collector.
#[derive(Debug, Default)]
pub struct Load {
    files: FileCache,
}

impl Collector for Load {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let load: LoadAverage = self.files.parse(roots.path("loadavg"), Producer::OnePiece)?;
        Ok(vec![
            FamilySample::single(
                "node_load1",
                "1m load average.",
                Kind::Gauge,
                two_places(load.one),
            ),
            FamilySample::single(
                "node_load5",
                "5m load average.",
                Kind::Gauge,
                two_places(load.five),
            ),
            FamilySample::single(
                "node_load15",
                "15m load average.",
                Kind::Gauge,
                two_places(load.fifteen),
            ),
        ])
    }
}

/// The kernel prints load averages with two decimals; procfs parses them as
/// f32, whose widening to f64 would show as 0.7300000190734863.
fn two_places(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}
