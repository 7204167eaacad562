//! How many processes and threads exist, and the kernel's limits:
//! process count from the numeric directories of /proc, thread count from
//! `/proc/loadavg` (its "runnable/total" field counts every kernel
//! scheduling entity), limits from `/proc/sys/kernel/{pid_max,threads-max}`.
//! This avoids reading every `/proc/[pid]/stat`, which is what makes
//! node_exporter's `processes` collector expensive (and off by default).
//!
//! Listing /proc still costs about a microsecond per process in the kernel,
//! one of the agent's most expensive reads, which is why this family's
//! default cadence is 10 s (its entry in `collectors::CATALOG`).

use curvemon_protocol::Kind;
use procfs::LoadAverage;

use super::{Collector, FamilySample};
use crate::roots::{FileCache, ProcReadError, Producer, Roots};

/// The processes collector.
#[derive(Debug, Default)]
pub struct Processes {
    files: FileCache,
}

fn count_pids(root: &std::path::Path) -> Result<f64, ProcReadError> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| ProcReadError { path: root.to_path_buf(), error: e.into() })?;
    let pids = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    Ok(pids as f64)
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let pids = count_pids(roots.root())?;
        let load: LoadAverage = self.files.parse(roots.path("loadavg"), Producer::OnePiece)?;
        let max_processes = self.files.number(roots.path("sys/kernel/pid_max"))?;
        let max_threads = self.files.number(roots.path("sys/kernel/threads-max"))?;
        Ok(vec![
            FamilySample::single(
                "node_processes_pids",
                "Number of PIDs (processes).",
                Kind::Gauge,
                pids,
            ),
            FamilySample::single(
                "node_processes_threads",
                "Allocated threads in system.",
                Kind::Gauge,
                f64::from(load.max),
            ),
            FamilySample::single(
                "node_processes_max_processes",
                "Number of max PIDs limit.",
                Kind::Gauge,
                max_processes,
            ),
            FamilySample::single(
                "node_processes_max_threads",
                "Limit of threads in the system.",
                Kind::Gauge,
                max_threads,
            ),
        ])
    }
}
