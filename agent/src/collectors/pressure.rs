//! `/proc/pressure/{cpu,memory,io}` (pressure stall information, Linux 4.20+
//! with PSI enabled): total stall time, under node_exporter's names. A kernel
//! without PSI is not a failure: the family is simply absent.

use curvemon_protocol::Kind;
use procfs::{CpuPressure, IoPressure, MemoryPressure};
use tracing::info;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Producer, Roots};

/// The PSI collector.
#[derive(Debug, Default)]
pub struct Pressure {
    told_absent: bool,
    files: FileCache,
}

fn seconds(total_us: u64) -> f64 {
    total_us as f64 / 1e6
}

impl Collector for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let cpu: CpuPressure = match self
            .files
            .parse(roots.path("pressure/cpu"), Producer::OnePiece)
        {
            Ok(cpu) => cpu,
            Err(e) if e.is_not_found() => {
                if !self.told_absent {
                    info!(path = %e.path.display(), "No pressure stall information on this kernel; skipping PSI.");
                    self.told_absent = true;
                }
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let memory: MemoryPressure =
            self.files.parse(roots.path("pressure/memory"), Producer::OnePiece)?;
        let io: IoPressure = self.files.parse(roots.path("pressure/io"), Producer::OnePiece)?;
        let family = |name, help, total_us| {
            FamilySample::single(name, help, Kind::Counter, seconds(total_us))
        };
        Ok(vec![
            family(
                "node_pressure_cpu_waiting_seconds_total",
                "Total time in seconds that processes have waited for CPU time.",
                cpu.some.total,
            ),
            family(
                "node_pressure_cpu_stalled_seconds_total",
                "Total time in seconds no process could make progress due to CPU congestion.",
                cpu.full.total,
            ),
            family(
                "node_pressure_memory_waiting_seconds_total",
                "Total time in seconds that processes have waited for memory.",
                memory.some.total,
            ),
            family(
                "node_pressure_memory_stalled_seconds_total",
                "Total time in seconds no process could make progress due to memory congestion.",
                memory.full.total,
            ),
            family(
                "node_pressure_io_waiting_seconds_total",
                "Total time in seconds that processes have waited due to IO congestion.",
                io.some.total,
            ),
            family(
                "node_pressure_io_stalled_seconds_total",
                "Total time in seconds no process could make progress due to IO congestion.",
                io.full.total,
            ),
        ])
    }
}
