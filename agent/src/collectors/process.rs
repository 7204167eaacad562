//! Named groups of processes (`[[process]]` in the config file): CPU,
//! resident memory, threads, open files, I/O bytes and count per group,
//! under process-exporter's names (`namedprocess_namegroup_*{groupname}`),
//! so its Grafana dashboards work. This is how a memory leak in one service
//! shows up as one rising line.
//!
//! A process belongs to the first group that matches it, by name (`comm`),
//! command-line pattern, pidfile or systemd unit (its cgroup path). Sums over
//! live processes: when a process exits, its CPU and I/O leave the sum (a
//! counter reset, which rate functions handle).
//!
//! What the agent can read of other users' processes: `stat`, `status`,
//! `cmdline`, `comm` and `cgroup` are world-readable (unless procfs is
//! mounted with `hidepid`, as systemd's `ProtectProc=invisible` does: then
//! other users' processes are not listed at all). The `fd/` directory needs
//! the same user or CAP_DAC_READ_SEARCH, and `io` needs ptrace access
//! (CAP_SYS_PTRACE). A group whose open files or I/O could not be read for
//! every member reports them as unknown (NaN, left out of /metrics) rather
//! than a partial sum, and the agent says once why.

use std::path::Path;

use curvemon_protocol::Kind;
use procfs::process::Process;

use super::{Collector, FamilySample, label};
use crate::{
    options::ProcessGroup,
    roots::{ProcReadError, Roots},
};

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    /// Members whose `fd/` or `io` could not be read.
    fds_unreadable: bool,
    io_unreadable: bool,
    procs: f64,
    user_ticks: f64,
    system_ticks: f64,
    rss_pages: f64,
    threads: f64,
    fds: f64,
    read_bytes: f64,
    write_bytes: f64,
}

/// The process group collector.
#[derive(Debug)]
pub struct ProcessGroups {
    groups: Vec<ProcessGroup>,
    /// Said once: other users' processes are hidden (hidepid).
    told_hidden: bool,
    /// Said once: other users' open files or I/O cannot be read.
    told_unreadable: bool,
}

/// Whether procfs hides other users' processes from this process: PID 1
/// (init, owned by root) is then not listed (`hidepid=invisible`) or its
/// files cannot be read (`hidepid=noaccess`). Root and holders of
/// CAP_SYS_PTRACE see through hidepid, and then PID 1 is visible too.
fn others_hidden(roots: &Roots) -> bool {
    match std::fs::metadata(roots.path("1/stat")) {
        Ok(_) => std::fs::read(roots.path("1/stat")).is_err(),
        Err(e) => {
            e.kind() == std::io::ErrorKind::PermissionDenied
                || (e.kind() == std::io::ErrorKind::NotFound && roots.path("self/stat").exists())
        }
    }
}

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl ProcessGroups {
    /// A collector for these groups.
    pub fn new(groups: Vec<ProcessGroup>) -> Self {
        ProcessGroups { groups, told_hidden: false, told_unreadable: false }
    }

    /// Whether the process in `dir` belongs to `group`.
    fn matches(
        group: &ProcessGroup,
        pidfile_pid: Option<i32>,
        pid: i32,
        comm: &str,
        dir: &Path,
        proc: &Process,
    ) -> bool {
        group.comm.iter().any(|c| c == comm)
            || pidfile_pid == Some(pid)
            || group.cmdline.as_ref().is_some_and(|pattern| {
                proc.cmdline().is_ok_and(|args| pattern.is_match(&args.join(" ")))
            })
            || group.unit.as_ref().is_some_and(|unit| in_unit(dir, unit))
    }
}

/// Whether the process directory's `cgroup` file puts it in `unit`
/// (`0::/system.slice/nginx.service`, or any v1 hierarchy line).
fn in_unit(dir: &Path, unit: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("cgroup")) else { return false };
    let (leaf, inner) = (format!("/{unit}"), format!("/{unit}/"));
    text.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        path.ends_with(&leaf) || path.contains(&inner)
    })
}

impl Collector for ProcessGroups {
    fn name(&self) -> &'static str {
        "process"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let pidfile_pids: Vec<Option<i32>> = self
            .groups
            .iter()
            .map(|g| {
                g.pidfile
                    .as_ref()
                    .and_then(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
            })
            .collect();
        if !self.told_hidden && others_hidden(roots) {
            tracing::warn!(
                proc = %roots.root().display(),
                uid = uid(),
                "Processes of other users are hidden from this agent (procfs mounted with hidepid, \
                 which systemd's ProtectProc=invisible does): [[process]] groups count only this \
                 user's processes. Run the agent with ProtectProc=default, as the shipped unit does, \
                 or as root."
            );
            self.told_hidden = true;
        }
        let mut totals = vec![Totals::default(); self.groups.len()];
        let entries = std::fs::read_dir(roots.root())
            .map_err(|e| ProcReadError { path: roots.root().to_path_buf(), error: e.into() })?;
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // A process can exit at any point below: skip it, do not fail.
            let Ok(proc) = Process::new_with_root(entry.path()) else { continue };
            let Ok(stat) = proc.stat() else { continue };
            let dir = entry.path();
            let Some(index) = self.groups.iter().zip(&pidfile_pids).position(|(g, pidfile_pid)| {
                Self::matches(g, *pidfile_pid, pid, &stat.comm, &dir, &proc)
            }) else {
                continue;
            };
            let t = &mut totals[index];
            t.procs += 1.0;
            t.user_ticks += stat.utime as f64;
            t.system_ticks += stat.stime as f64;
            t.rss_pages += stat.rss as f64;
            t.threads += stat.num_threads as f64;
            // Counted by listing, not procfs's fd_count: on Linux 6.2+ that
            // takes the fd directory's size, which only the live /proc sets.
            match std::fs::read_dir(dir.join("fd")) {
                Ok(entries) => t.fds += entries.count() as f64,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    t.fds_unreadable = true;
                }
                Err(_) => {} // exited meanwhile
            }
            match proc.io() {
                Ok(io) => {
                    t.read_bytes += io.read_bytes as f64;
                    t.write_bytes += io.write_bytes as f64;
                }
                Err(procfs::ProcError::PermissionDenied(_)) => t.io_unreadable = true,
                Err(_) => {}
            }
        }
        let unreadable: Vec<&str> = self
            .groups
            .iter()
            .zip(&totals)
            .filter(|(_, t)| t.fds_unreadable || t.io_unreadable)
            .map(|(g, _)| g.name.as_str())
            .collect();
        if !unreadable.is_empty() && !self.told_unreadable {
            tracing::warn!(
                groups = %unreadable.join(","),
                uid = uid(),
                "Open files and I/O of processes of other users cannot be read: reading a \
                 process's fd/ needs CAP_DAC_READ_SEARCH and its io needs CAP_SYS_PTRACE. These \
                 groups report them as unknown until the agent has both (AmbientCapabilities= in \
                 the unit) or runs as the processes' user."
            );
            self.told_unreadable = true;
        }
        let ticks = roots.ticks_per_second() as f64;
        let page = roots.page_size() as f64;
        let (c, g) = (Kind::Counter, Kind::Gauge);
        let mut procs = FamilySample::new(
            "namedprocess_namegroup_num_procs",
            "Number of processes in this group.",
            g,
        );
        let mut cpu = FamilySample::new(
            "namedprocess_namegroup_cpu_seconds_total",
            "CPU user/system usage in seconds.",
            c,
        );
        let mut memory = FamilySample::new(
            "namedprocess_namegroup_memory_bytes",
            "Resident memory in bytes.",
            g,
        );
        let mut threads =
            FamilySample::new("namedprocess_namegroup_num_threads", "Number of threads.", g);
        let mut fds = FamilySample::new(
            "namedprocess_namegroup_open_filedesc",
            "Number of open file descriptors for this group.",
            g,
        );
        let mut reads = FamilySample::new(
            "namedprocess_namegroup_read_bytes_total",
            "Number of bytes read by this group.",
            c,
        );
        let mut writes = FamilySample::new(
            "namedprocess_namegroup_write_bytes_total",
            "Number of bytes written by this group.",
            c,
        );
        for (group, t) in self.groups.iter().zip(&totals) {
            let name = || vec![label("groupname", group.name.clone())];
            procs.push(name(), t.procs);
            cpu.push(
                vec![label("groupname", group.name.clone()), label("mode", "user")],
                t.user_ticks / ticks,
            );
            cpu.push(
                vec![label("groupname", group.name.clone()), label("mode", "system")],
                t.system_ticks / ticks,
            );
            memory.push(
                vec![label("groupname", group.name.clone()), label("memtype", "resident")],
                t.rss_pages * page,
            );
            threads.push(name(), t.threads);
            let known = |unreadable: bool, v: f64| if unreadable { f64::NAN } else { v };
            fds.push(name(), known(t.fds_unreadable, t.fds));
            reads.push(name(), known(t.io_unreadable, t.read_bytes));
            writes.push(name(), known(t.io_unreadable, t.write_bytes));
        }
        Ok(vec![procs, cpu, memory, threads, fds, reads, writes])
    }
}
