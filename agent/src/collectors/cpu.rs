//! `/proc/stat`: CPU time per core and mode, guest time, interrupts, boot
//! time, context switches, forks, runnable and blocked processes. CPU
//! percent is not computed here: the collector derives it from two
//! consecutive counter values.
//!
//! Parsed directly (the file is read every second; procfs's parser builds
//! more than this needs). Missing columns of older kernels read as zero
//! time, as procfs and node_exporter do.

use curvemon_protocol::Kind;

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Roots};

/// The `/proc/stat` collector.
#[derive(Debug, Default)]
pub struct Cpu {
    files: FileCache,
    /// The CPU numbers of the last read and their labels, kept so each
    /// sample does not format them again.
    cpu_names: Vec<(u32, String)>,
}

/// node_exporter's modes for `node_cpu_seconds_total`, in `/proc/stat`
/// column order. Guest time (columns 9 and 10) is already inside user and
/// nice; it is reported again, apart, as `node_cpu_guest_seconds_total`.
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// The numbers of one `/proc/stat` read.
#[derive(Debug, Default, PartialEq)]
pub struct Stat {
    /// Per CPU: the kernel's CPU number (`cpu3` is 3; offline CPUs leave
    /// holes) and the ten time columns in ticks (absent ones are 0).
    pub cpus: Vec<(u32, [u64; 10])>,
    /// `intr` total.
    pub interrupts: Option<u64>,
    /// `ctxt`.
    pub context_switches: u64,
    /// `btime`.
    pub boot_time: u64,
    /// `processes` (forks since boot).
    pub forks: u64,
    /// `procs_running`.
    pub running: Option<u64>,
    /// `procs_blocked`.
    pub blocked: Option<u64>,
}

/// Parses `/proc/stat`.
///
/// # Errors
/// A field that is not a number, or no per-CPU line at all.
pub fn parse(text: &str) -> Result<Stat, String> {
    let mut stat = Stat::default();
    let num = |key: &str, v: Option<&str>| -> Result<u64, String> {
        v.ok_or_else(|| format!("{key}: no value"))?
            .parse()
            .map_err(|_| format!("{key}: not a number"))
    };
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(key) = words.next() else { continue };
        match key {
            "cpu" => {}
            k if k.starts_with("cpu") => {
                let number = k[3..].parse().map_err(|_| format!("{k}: not cpuN"))?;
                let mut times = [0u64; 10];
                for (slot, word) in times.iter_mut().zip(words) {
                    *slot = word.parse().map_err(|_| format!("{k}: {word:?} is not a number"))?;
                }
                stat.cpus.push((number, times));
            }
            "intr" => stat.interrupts = Some(num(key, words.next())?),
            "ctxt" => stat.context_switches = num(key, words.next())?,
            "btime" => stat.boot_time = num(key, words.next())?,
            "processes" => stat.forks = num(key, words.next())?,
            "procs_running" => stat.running = Some(num(key, words.next())?),
            "procs_blocked" => stat.blocked = Some(num(key, words.next())?),
            _ => {}
        }
    }
    if stat.cpus.is_empty() {
        return Err("no cpuN lines".into());
    }
    Ok(stat)
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let path = roots.path("stat");
        let stat = parse(self.files.read_one_piece(path.clone())?)
            .map_err(|e| ProcReadError::other(path, e))?;
        let ticks = roots.ticks_per_second() as f64;
        // A CPU taken offline or brought back changes the list.
        if !self.cpu_names.iter().map(|(n, _)| *n).eq(stat.cpus.iter().map(|(n, _)| *n)) {
            self.cpu_names = stat.cpus.iter().map(|(n, _)| (*n, n.to_string())).collect();
        }
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
        seconds.series.reserve(stat.cpus.len() * MODES.len());
        for ((_, cpu), (_, times)) in self.cpu_names.iter().zip(&stat.cpus) {
            for (mode, value) in MODES.iter().zip(times) {
                seconds.push(
                    vec![label("cpu", cpu.clone()), label("mode", *mode)],
                    *value as f64 / ticks,
                );
            }
            for (mode, value) in [("user", times[8]), ("nice", times[9])] {
                guest.push(
                    vec![label("cpu", cpu.clone()), label("mode", mode)],
                    value as f64 / ticks,
                );
            }
        }
        let opt = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
        Ok(vec![
            seconds,
            guest,
            FamilySample::single(
                "node_intr_total",
                "Total number of interrupts serviced.",
                Kind::Counter,
                opt(stat.interrupts),
            ),
            FamilySample::single(
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                Kind::Gauge,
                stat.boot_time as f64,
            ),
            FamilySample::single(
                "node_context_switches_total",
                "Total number of context switches.",
                Kind::Counter,
                stat.context_switches as f64,
            ),
            FamilySample::single(
                "node_forks_total",
                "Total number of forks.",
                Kind::Counter,
                stat.forks as f64,
            ),
            FamilySample::single(
                "node_procs_running",
                "Number of processes in runnable state.",
                Kind::Gauge,
                opt(stat.running),
            ),
            FamilySample::single(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                Kind::Gauge,
                opt(stat.blocked),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_old_and_new_layouts() {
        let stat = parse(
            "cpu  1 2 3 4\ncpu0 10 20 30 40 5 6 7\nintr 99 1 2\nctxt 5\nbtime 7\nprocesses 8\n",
        )
        .unwrap();
        assert_eq!(stat.cpus, vec![(0, [10, 20, 30, 40, 5, 6, 7, 0, 0, 0])]);
        assert_eq!(
            (stat.interrupts, stat.context_switches, stat.boot_time, stat.forks),
            (Some(99), 5, 7, 8)
        );
        assert_eq!((stat.running, stat.blocked), (None, None));
        assert!(parse("cpu 1 2\n").unwrap_err().contains("no cpuN"));
        assert!(parse("cpu0 1 x\n").unwrap_err().contains("not a number"));
        assert!(parse("cpux 1 2\n").unwrap_err().contains("not cpuN"));
        let holes = parse("cpu 3 3\ncpu0 1 1\ncpu1 1 1\ncpu3 1 1\n").unwrap();
        assert_eq!(holes.cpus.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 3]);
    }
}
