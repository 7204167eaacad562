//! One collector per `/proc` or `/sys` family, behind one trait, listed in
//! one place ([`CATALOG`]).
//!
//! A collector turns one or a few files into [`FamilySample`]s: metric names
//! (node_exporter's where an equivalent exists, cAdvisor's for cgroups,
//! process-exporter's for process groups), labels and values. Counters stay
//! counters; rates are computed once, in the collector process. A collector
//! that fails only marks itself failed: the sampler keeps the rest.

mod cgroups;
mod cpu;
mod disk;
mod entropy;
mod filefd;
mod filesystem;
mod load;
mod memory;
mod netstat;
mod network;
mod pressure;
mod process;
mod processes;
mod sockstat;
mod tcpstat;
mod uptime;
mod vmstat;

use std::borrow::Cow;

pub use cgroups::Cgroups;
pub use cpu::Cpu;
pub use disk::Disk;
pub use entropy::Entropy;
pub use filefd::Filefd;
pub use filesystem::{Filesystem, FsStats, StatFn, statvfs};
pub use load::Load;
pub use memory::Memory;
pub use netstat::Netstat;
pub use network::Network;
pub use pressure::Pressure;
pub use process::ProcessGroups;
pub use processes::Processes;
pub use sockstat::Sockstat;
pub use tcpstat::Tcpstat;
pub use uptime::Uptime;
pub use vmstat::Vmstat;

use curvemon_protocol::{Kind, Label};

use crate::{
    options::Options,
    roots::{ProcReadError, Roots},
};

/// One metric family with its values of this sample.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySample {
    /// Metric name.
    pub name: Cow<'static, str>,
    /// `# HELP` text.
    pub help: Cow<'static, str>,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label sets and values, in a stable order.
    pub series: Vec<(Vec<Label>, f64)>,
}

impl FamilySample {
    /// A family with a fixed name and no series yet.
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        FamilySample {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind,
            series: Vec::new(),
        }
    }

    /// A family with a single unlabelled series.
    pub fn single(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Self {
        let mut family = Self::new(name, help, kind);
        family.series.push((Vec::new(), value));
        family
    }

    /// Adds a series with these labels.
    pub fn push(&mut self, labels: Vec<Label>, value: f64) {
        self.series.push((labels, value));
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
    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError>;
}

/// Every collector: name, on by default, and what it reads.
pub const CATALOG: &[(&str, bool, &str)] = &[
    ("cpu", true, "/proc/stat: CPU seconds per core and mode, interrupts, context switches, forks"),
    ("memory", true, "/proc/meminfo"),
    ("vmstat", true, "/proc/vmstat: page faults, paging and swapping, OOM kills"),
    ("load", true, "/proc/loadavg"),
    ("uptime", true, "/proc/uptime"),
    ("pressure", true, "/proc/pressure/{cpu,memory,io} (PSI), where the kernel has it"),
    ("disk", true, "/proc/diskstats"),
    ("filesystem", true, "statvfs of the mounts in /proc/self/mountinfo, time-boxed"),
    ("network", true, "/proc/net/dev"),
    ("netstat", true, "/proc/net/{snmp,netstat,snmp6}: TCP retransmits, UDP errors, ..."),
    ("sockstat", true, "/proc/net/sockstat{,6}"),
    (
        "tcpstat",
        false,
        "TCP connections per state (netlink sock_diag; ~0.6 ms a sample, so off by default)",
    ),
    ("filefd", true, "/proc/sys/fs/file-nr"),
    ("entropy", true, "/proc/sys/kernel/random/entropy_avail"),
    ("processes", true, "process and thread counts and limits"),
    ("cgroups", true, "/sys/fs/cgroup: one group per service or container"),
    ("process", true, "/proc/[pid] of the [[process]] groups in the config file"),
];

/// Builds the named collectors, in catalog order.
pub fn build(names: &[String], options: &Options) -> Vec<Box<dyn Collector>> {
    CATALOG
        .iter()
        .filter(|(name, _, _)| names.iter().any(|n| n == name))
        .filter_map(|(name, _, _)| -> Option<Box<dyn Collector>> {
            Some(match *name {
                "cpu" => Box::new(Cpu::default()),
                "memory" => Box::new(Memory::default()),
                "vmstat" => Box::new(Vmstat::default()),
                "load" => Box::new(Load::default()),
                "uptime" => Box::new(Uptime::default()),
                "pressure" => Box::new(Pressure::default()),
                "disk" => Box::new(Disk::new(options.disk_exclude.clone())),
                "filesystem" => Box::new(Filesystem::new(
                    options.mount_exclude.clone(),
                    options.fstype_exclude.clone(),
                    options.fs_timeout,
                )),
                "network" => Box::new(Network::new(options.network_exclude.clone())),
                "netstat" => Box::new(Netstat::default()),
                "sockstat" => Box::new(Sockstat::default()),
                "tcpstat" => Box::new(Tcpstat::default()),
                "filefd" => Box::new(Filefd::default()),
                "entropy" => Box::new(Entropy::default()),
                "processes" => Box::new(Processes::default()),
                "cgroups" => Box::new(Cgroups::new(options.cgroup_parents.clone())),
                "process" if !options.process_groups.is_empty() => {
                    Box::new(ProcessGroups::new(options.process_groups.clone()))
                }
                _ => return None,
            })
        })
        .collect()
}

/// Every collector with default settings (what tests and benchmarks run).
pub fn all() -> Vec<Box<dyn Collector>> {
    let names: Vec<String> = CATALOG.iter().map(|(n, _, _)| (*n).to_string()).collect();
    build(&names, &Options::default())
}

/// Resolves which collectors run: `only` (from `--collectors`) or else the
/// config file's list or else the defaults, minus `without`
/// (`--no-collector`).
///
/// # Errors
/// An unknown name, with the list of known ones.
pub fn select(
    only: Option<&[String]>,
    file: Option<&[String]>,
    without: &[String],
) -> Result<Vec<String>, String> {
    let known = |name: &String| CATALOG.iter().any(|(n, _, _)| n == name);
    for name in only.into_iter().flatten().chain(file.into_iter().flatten()).chain(without) {
        if !known(name) {
            let names: Vec<&str> = CATALOG.iter().map(|(n, _, _)| *n).collect();
            return Err(format!(
                "unknown collector {name:?}; expected one of {}",
                names.join(", ")
            ));
        }
    }
    let chosen: Vec<String> = match only.or(file) {
        Some(list) => list.to_vec(),
        None => CATALOG.iter().filter(|(_, on, _)| *on).map(|(n, _, _)| (*n).to_string()).collect(),
    };
    Ok(chosen.into_iter().filter(|n| !without.contains(n)).collect())
}

/// Shorthand for a label, for the collectors.
pub fn label(name: &'static str, value: impl Into<String>) -> Label {
    Label::new(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let defaults = select(None, None, &[]).unwrap();
        assert_eq!(defaults.len(), CATALOG.iter().filter(|(_, on, _)| *on).count());
        assert!(!defaults.contains(&"tcpstat".to_string()), "tcpstat is opt-in");
        assert_eq!(select(Some(&s(&["tcpstat"])), None, &[]).unwrap(), s(&["tcpstat"]));
        assert_eq!(
            select(Some(&s(&["cpu", "load"])), Some(&s(&["memory"])), &[]).unwrap(),
            s(&["cpu", "load"])
        );
        assert_eq!(select(None, Some(&s(&["memory"])), &[]).unwrap(), s(&["memory"]));
        assert!(!select(None, None, &s(&["tcpstat"])).unwrap().contains(&"tcpstat".to_string()));
        let err = select(Some(&s(&["cpux"])), None, &[]).unwrap_err();
        assert!(err.contains("\"cpux\"") && err.contains("cpu, memory"), "{err}");
    }
}
