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

use std::{borrow::Cow, time::Duration};

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
    options::{ConfigFileError, Options},
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

/// One collector: its name, whether it runs by default, how often, what it
/// reads and how it is built. [`CATALOG`] is the only list of collectors:
/// flags, the config file, `--list-collectors` and the sampler all read it.
pub struct Spec {
    /// Used in `--collectors`, the config file and the success metric.
    pub name: &'static str,
    /// Runs unless the operator says otherwise.
    pub default_on: bool,
    /// How often it runs unless `[intervals]` says otherwise; `None` is
    /// every sample.
    pub every: Option<Duration>,
    /// What it reads, for `--list-collectors`.
    pub reads: &'static str,
    /// Builds it from the options; `None` when it has nothing to do (no
    /// `[[process]]` groups).
    pub build: fn(&Options) -> Option<Box<dyn Collector>>,
}

/// Slowly changing families (or those charted at Prometheus's pace) are
/// read every 10 s by default: reading them every second would be most of
/// the agent's CPU (netstat's three files alone are a third of a
/// collection). What the dashboard charts live (cpu, memory, load, disk,
/// network) and uptime run every sample.
const SLOW: Option<Duration> = Some(Duration::from_secs(10));

fn boxed(c: impl Collector + 'static) -> Option<Box<dyn Collector>> {
    Some(Box::new(c))
}

/// Every collector, in the order samples lay them out.
pub const CATALOG: &[Spec] = &[
    Spec {
        name: "cpu",
        default_on: true,
        every: None,
        reads: "/proc/stat: CPU seconds per core and mode, interrupts, context switches, forks",
        build: |_| boxed(Cpu::default()),
    },
    Spec {
        name: "memory",
        default_on: true,
        every: None,
        reads: "/proc/meminfo",
        build: |_| boxed(Memory::default()),
    },
    Spec {
        name: "vmstat",
        default_on: true,
        every: SLOW,
        reads: "/proc/vmstat: page faults, paging and swapping, OOM kills",
        build: |_| boxed(Vmstat::default()),
    },
    Spec {
        name: "load",
        default_on: true,
        every: None,
        reads: "/proc/loadavg",
        build: |_| boxed(Load::default()),
    },
    Spec {
        name: "uptime",
        default_on: true,
        every: None,
        reads: "/proc/uptime",
        build: |_| boxed(Uptime::default()),
    },
    Spec {
        name: "pressure",
        default_on: true,
        // PSI's own averages span 10 s and more; the kernel updates them every 2 s.
        every: SLOW,
        reads: "/proc/pressure/{cpu,memory,io} (PSI), where the kernel has it",
        build: |_| boxed(Pressure::default()),
    },
    Spec {
        name: "disk",
        default_on: true,
        every: None,
        reads: "/proc/diskstats",
        build: |o| boxed(Disk::new(o.disk_exclude.clone())),
    },
    Spec {
        name: "filesystem",
        default_on: true,
        every: SLOW,
        reads: "statvfs of the mounts in /proc/self/mountinfo, time-boxed",
        build: |o| {
            boxed(Filesystem::new(o.mount_exclude.clone(), o.fstype_exclude.clone(), o.fs_timeout))
        },
    },
    Spec {
        name: "network",
        default_on: true,
        every: None,
        reads: "/proc/net/dev",
        build: |o| boxed(Network::new(o.network_exclude.clone())),
    },
    Spec {
        name: "netstat",
        default_on: true,
        every: SLOW,
        reads: "/proc/net/{snmp,netstat,snmp6}: TCP retransmits, UDP errors, ...",
        build: |_| boxed(Netstat::default()),
    },
    Spec {
        name: "sockstat",
        default_on: true,
        every: SLOW,
        reads: "/proc/net/sockstat{,6}",
        build: |_| boxed(Sockstat::default()),
    },
    Spec {
        name: "tcpstat",
        default_on: false,
        every: SLOW,
        reads: "TCP connections per state (netlink sock_diag; ~0.6 ms a sample, so off by default)",
        build: |_| boxed(Tcpstat::default()),
    },
    Spec {
        name: "filefd",
        default_on: true,
        every: SLOW,
        reads: "/proc/sys/fs/file-nr",
        build: |_| boxed(Filefd::default()),
    },
    Spec {
        name: "entropy",
        default_on: true,
        every: SLOW,
        reads: "/proc/sys/kernel/random/entropy_avail",
        build: |_| boxed(Entropy::default()),
    },
    Spec {
        name: "processes",
        default_on: true,
        every: SLOW,
        reads: "process and thread counts and limits",
        build: |_| boxed(Processes::default()),
    },
    Spec {
        name: "cgroups",
        default_on: true,
        every: SLOW,
        reads: "/sys/fs/cgroup: one group per service or container",
        build: |o| boxed(Cgroups::new(o.cgroup_parents.clone())),
    },
    Spec {
        name: "process",
        default_on: true,
        every: SLOW,
        reads: "/proc/[pid] of the [[process]] groups in the config file",
        build: |o| {
            (!o.process_groups.is_empty()).then(|| {
                Box::new(ProcessGroups::new(o.process_groups.clone())) as Box<dyn Collector>
            })
        },
    },
];

/// The collector called `name`.
pub fn spec(name: &str) -> Option<&'static Spec> {
    CATALOG.iter().find(|s| s.name == name)
}

/// Every collector's name, in catalog order, for messages.
pub fn known_names() -> String {
    CATALOG.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// Builds the named collectors, in catalog order.
pub fn build(names: &[String], options: &Options) -> Vec<Box<dyn Collector>> {
    CATALOG
        .iter()
        .filter(|spec| names.iter().any(|n| n == spec.name))
        .filter_map(|spec| (spec.build)(options))
        .collect()
}

/// Every collector with default settings (what tests and benchmarks run).
pub fn all() -> Vec<Box<dyn Collector>> {
    let names: Vec<String> = CATALOG.iter().map(|s| s.name.to_string()).collect();
    build(&names, &Options::default())
}

/// How many samples apart the collector `name` runs when the agent samples
/// every `interval`: its interval from the config file, else its default,
/// else every sample, in whole samples rounded up.
pub fn every(name: &str, options: &Options, interval: Duration) -> u32 {
    let configured = options.intervals.iter().find(|(n, _)| n.name == name).map(|(_, d)| *d);
    let Some(wanted) = configured.or_else(|| spec(name).and_then(|s| s.every)) else { return 1 };
    let interval = interval.as_nanos().max(1);
    u32::try_from(wanted.as_nanos().div_ceil(interval)).unwrap_or(u32::MAX).max(1)
}

/// Why a collector name was refused: where it came from and the names
/// that exist.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A name given on the command line.
    #[error("unknown collector {name:?} in {flag}; expected one of {known}")]
    Flag {
        /// The name.
        name: String,
        /// `--collectors` or `--no-collector`.
        flag: &'static str,
        /// Every known name.
        known: String,
    },
    /// A name in the config file, with its line.
    #[error(transparent)]
    File(#[from] ConfigFileError),
}

/// Resolves which collectors run: `only` (from `--collectors`) or else the
/// config file's list or else the defaults, minus `without`
/// (`--no-collector`). Every name the config file uses (in `collectors`
/// and `[intervals]`) must exist too.
///
/// # Errors
/// An unknown name: where it was given, and the known ones.
pub fn select(
    only: Option<&[String]>,
    options: &Options,
    without: &[String],
) -> Result<Vec<String>, SelectError> {
    let flags = [("--collectors", only.unwrap_or_default()), ("--no-collector", without)];
    for (flag, names) in flags {
        if let Some(name) = names.iter().find(|n| spec(n).is_none()) {
            return Err(SelectError::Flag { name: name.clone(), flag, known: known_names() });
        }
    }
    let from_file = options.collectors.iter().flatten().map(|n| (n, "collectors"));
    let intervals = options.intervals.iter().map(|(n, _)| (n, "[intervals]"));
    for (named, key) in from_file.chain(intervals) {
        if spec(&named.name).is_none() {
            return Err(options
                .error_at(
                    named.line,
                    format!(
                        "{key}: unknown collector {:?}; expected one of {}",
                        named.name,
                        known_names()
                    ),
                )
                .into());
        }
    }
    let chosen: Vec<String> = match (only, &options.collectors) {
        (Some(list), _) => list.to_vec(),
        (None, Some(list)) => list.iter().map(|n| n.name.clone()).collect(),
        (None, None) => {
            CATALOG.iter().filter(|s| s.default_on).map(|s| s.name.to_string()).collect()
        }
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

    fn options(text: &str) -> Options {
        Options::parse(text, std::path::Path::new("/etc/curvemon/agent.toml")).unwrap()
    }

    #[test]
    fn selection() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let none = Options::default();
        let defaults = select(None, &none, &[]).unwrap();
        assert_eq!(defaults.len(), CATALOG.iter().filter(|s| s.default_on).count());
        assert!(!defaults.contains(&"tcpstat".to_string()), "tcpstat is opt-in");
        assert_eq!(select(Some(&s(&["tcpstat"])), &none, &[]).unwrap(), s(&["tcpstat"]));
        let file = options("collectors = [\"memory\"]\n");
        assert_eq!(select(Some(&s(&["cpu", "load"])), &file, &[]).unwrap(), s(&["cpu", "load"]));
        assert_eq!(select(None, &file, &[]).unwrap(), s(&["memory"]));
        assert!(!select(None, &none, &s(&["tcpstat"])).unwrap().contains(&"tcpstat".to_string()));
        let err = select(Some(&s(&["cpux"])), &none, &[]).unwrap_err().to_string();
        assert!(err.contains("\"cpux\" in --collectors") && err.contains("cpu, memory"), "{err}");
    }

    #[test]
    fn a_misspelt_name_in_the_file_names_file_and_line() {
        let file = options("# mine\ncollectors = [\n  \"cpu\",\n  \"memroy\",\n]\n");
        let err = select(None, &file, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/curvemon/agent.toml:4: collectors: unknown collector \"memroy\"; expected one of cpu, memory,"),
            "{err}"
        );
        let file = options("[disk]\n\n[intervals]\nnetstatt = \"10s\"\n");
        let err = select(None, &file, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/curvemon/agent.toml:4: [intervals]: unknown collector \"netstatt\"; expected one of cpu,"),
            "{err}"
        );
    }

    #[test]
    fn cadences_in_whole_samples() {
        let second = Duration::from_secs(1);
        let defaults = Options::default();
        assert_eq!(every("cpu", &defaults, second), 1, "live families every sample");
        assert_eq!(every("netstat", &defaults, second), 10);
        assert_eq!(every("netstat", &defaults, Duration::from_millis(200)), 50);
        assert_eq!(every("netstat", &defaults, Duration::from_secs(15)), 1, "never below one");
        let o = options("[intervals]\nnetstat = \"1s\"\ncpu = \"2500ms\"\n");
        assert_eq!(every("netstat", &o, second), 1);
        assert_eq!(every("cpu", &o, second), 3, "rounded up to whole samples");
        assert_eq!(every("vmstat", &o, second), 10, "untouched families keep their default");
    }
}
