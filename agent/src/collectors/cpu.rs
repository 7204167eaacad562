//! `/proc/stat`: CPU time per core and mode, boot time, context switches,
//! forks, runnable and blocked processes. CPU percent is not computed here:
//! the collector derives it from two consecutive counter values.

use curvemon_protocol::{Kind, Label};
use procfs::{CpuTime, KernelStats};

use super::{Collector, FamilySample};
use crate::proc_root::{ProcReadError, ProcRoot};

/// The `/proc/stat` collector.
#[derive(Debug, Default)]
pub struct Cpu;

/// node_exporter's modes for `node_cpu_seconds_total`; guest time is already
/// inside `user` and `nice`, so it is not repeated here.
fn modes(time: &CpuTime) -> [(&'static str, u64); 8] {
    [
        ("user", time.user),
        ("nice", time.nice),
        ("system", time.system),
        ("idle", time.idle),
        ("iowait", time.iowait.unwrap_or(0)),
        ("irq", time.irq.unwrap_or(0)),
        ("softirq", time.softirq.unwrap_or(0)),
        ("steal", time.steal.unwrap_or(0)),
    ]
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, root: &ProcRoot) -> Result<Vec<FamilySample>, ProcReadError> {
        let stat: KernelStats = root.read_si()?;
        let ticks = root.ticks_per_second() as f64;
        let mut seconds = Vec::with_capacity(stat.cpu_time.len() * 8);
        for (cpu, time) in stat.cpu_time.iter().enumerate() {
            for (mode, value) in modes(time) {
                let labels = vec![Label::new("cpu", cpu.to_string()), Label::new("mode", mode)];
                seconds.push((labels, value as f64 / ticks));
            }
        }
        Ok(vec![
            FamilySample {
                name: "node_cpu_seconds_total",
                help: "Seconds the CPUs spent in each mode.",
                kind: Kind::Counter,
                series: seconds,
            },
            FamilySample::single(
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                Kind::Gauge,
                stat.btime as f64,
            ),
            FamilySample::single(
                "node_context_switches_total",
                "Total number of context switches.",
                Kind::Counter,
                stat.ctxt as f64,
            ),
            FamilySample::single(
                "node_forks_total",
                "Total number of forks.",
                Kind::Counter,
                stat.processes as f64,
            ),
            FamilySample::single(
                "node_procs_running",
                "Number of processes in runnable state.",
                Kind::Gauge,
                stat.procs_running.map_or(f64::NAN, f64::from),
            ),
            FamilySample::single(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                Kind::Gauge,
                stat.procs_blocked.map_or(f64::NAN, f64::from),
            ),
        ])
    }
}
