//! `/proc/stat`: CPU time per core and mode, guest time, interrupts, boot
//! time, context switches, forks, runnable and blocked processes. CPU
//! percent is not computed here: the collector derives it from two
//! consecutive counter values.

use curvemon_protocol::Kind;
use procfs::{CpuTime, FromBufReadSI, KernelStats};

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The `/proc/stat` collector.
#[derive(Debug, Default)]
pub struct Cpu {
    files: FileCache,
}

/// node_exporter's modes for `node_cpu_seconds_total`. Guest time is already
/// inside `user` and `nice`; it is reported again, apart, as
/// `node_cpu_guest_seconds_total`, as node_exporter does.
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

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        // Read once, parse twice: procfs for the CPU lines, and the `intr`
        // total that procfs does not expose.
        let path = roots.path("stat");
        let text = self.files.read(path.clone())?;
        let stat = KernelStats::from_buf_read(text.as_bytes(), roots.system_info())
            .map_err(|source| ProcReadError { path, source })?;
        let ticks = roots.ticks_per_second() as f64;

        let mut seconds = FamilySample::new(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
            Kind::Counter,
        );
        let mut guest = FamilySample::new(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            Kind::Counter,
        );
        for (cpu, time) in stat.cpu_time.iter().enumerate() {
            let cpu = cpu.to_string();
            for (mode, value) in modes(time) {
                seconds.push(
                    vec![label("cpu", cpu.clone()), label("mode", mode)],
                    value as f64 / ticks,
                );
            }
            for (mode, value) in [("user", time.guest), ("nice", time.guest_nice)] {
                guest.push(
                    vec![label("cpu", cpu.clone()), label("mode", mode)],
                    value.unwrap_or(0) as f64 / ticks,
                );
            }
        }
        let interrupts = text
            .lines()
            .find_map(|l| l.strip_prefix("intr "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(f64::NAN, |n| n as f64);
        Ok(vec![
            seconds,
            guest,
            FamilySample::single(
                "node_intr_total",
                "Total number of interrupts serviced.",
                Kind::Counter,
                interrupts,
            ),
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
