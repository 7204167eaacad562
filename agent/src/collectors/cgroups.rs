//! One group per service or container, read from `/sys/fs/cgroup` directly
//! (no D-Bus): CPU, memory and its limit, I/O bytes, tasks and pressure of
//! every child of the configured parents (`system.slice` and
//! `machine.slice` by default: one child per systemd service, scope or VM).
//!
//! Three layouts:
//! - **unified** (cgroup v2 only): everything in `/sys/fs/cgroup/<group>/`.
//! - **hybrid** (v1 controllers, v2 tree at `/sys/fs/cgroup/unified`): the
//!   groups and their pressure come from the v2 tree, CPU, memory, I/O and
//!   tasks from the v1 controller trees (`cpuacct`, `memory`, `blkio`, `pids`).
//! - **legacy** (v1 only): groups from the `systemd` named hierarchy, no PSI.
//!
//! Names follow cAdvisor (`container_cpu_usage_seconds_total{id,name}`),
//! so container dashboards work. A value a layout does not offer is NaN.

use std::path::{Path, PathBuf};

use curvemon_protocol::Kind;
use tracing::info;

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Roots};

/// v1 reports "no limit" as the largest page-aligned i64; cAdvisor shows 0.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 only, mounted here.
    Unified(PathBuf),
    /// v1 controllers under `v1`, v2 tree at `tree`.
    Hybrid {
        /// The v2 tree (`/sys/fs/cgroup/unified`).
        tree: PathBuf,
        /// Where the v1 controller hierarchies are mounted.
        v1: PathBuf,
    },
    /// v1 only; groups from the systemd hierarchy at `tree`.
    Legacy {
        /// `/sys/fs/cgroup/systemd`.
        tree: PathBuf,
        /// Where the v1 controller hierarchies are mounted.
        v1: PathBuf,
    },
}

/// Finds the layout under `<sys>/fs/cgroup`, if there is one.
pub fn detect(roots: &Roots) -> Option<Layout> {
    let base = roots.sys_path("fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        Some(Layout::Unified(base))
    } else if base.join("unified/cgroup.controllers").exists() {
        Some(Layout::Hybrid { tree: base.join("unified"), v1: base })
    } else if base.join("systemd").is_dir() {
        Some(Layout::Legacy { tree: base.join("systemd"), v1: base })
    } else {
        None
    }
}

/// Numbers of one group; NaN where the layout or kernel has none.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GroupStats {
    cpu_seconds: f64,
    memory: f64,
    memory_limit: f64,
    read_bytes: f64,
    write_bytes: f64,
    tasks: f64,
    /// some/full totals in seconds for cpu, memory, io.
    pressure: [f64; 6],
}

/// A file's content, or `None` where the layout or kernel lacks it.
fn read<'a>(files: &'a mut FileCache, path: &Path) -> Option<&'a str> {
    files.read_one_piece(path.to_path_buf()).ok()
}

fn number(files: &mut FileCache, path: &Path) -> f64 {
    read(files, path).and_then(|t| t.trim().parse::<f64>().ok()).unwrap_or(f64::NAN)
}

/// The value of `key` in a flat keyed file (`usage_usec 123`).
fn keyed(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `some avg10=.. total=N` / `full ... total=N` → seconds.
fn pressure_totals(files: &mut FileCache, path: &Path) -> [f64; 2] {
    let Some(text) = read(files, path) else { return [f64::NAN; 2] };
    let total = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("total=")))
            .and_then(|n| n.parse::<f64>().ok())
            .map_or(f64::NAN, |us| us / 1e6)
    };
    [total("some"), total("full")]
}

fn pressure(files: &mut FileCache, dir: &Path) -> [f64; 6] {
    let [cs, cf] = pressure_totals(files, &dir.join("cpu.pressure"));
    let [ms, mf] = pressure_totals(files, &dir.join("memory.pressure"));
    let [is, if_] = pressure_totals(files, &dir.join("io.pressure"));
    [cs, cf, ms, mf, is, if_]
}

/// cgroup v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N ...` per device, summed.
fn v2_io(files: &mut FileCache, dir: &Path) -> (f64, f64) {
    let Some(text) = read(files, &dir.join("io.stat")) else { return (f64::NAN, f64::NAN) };
    let (mut r, mut w) = (0.0, 0.0);
    for word in text.split_whitespace() {
        if let Some(n) = word.strip_prefix("rbytes=").and_then(|n| n.parse::<f64>().ok()) {
            r += n;
        } else if let Some(n) = word.strip_prefix("wbytes=").and_then(|n| n.parse::<f64>().ok()) {
            w += n;
        }
    }
    (r, w)
}

/// cgroup v1 `blkio.throttle.io_service_bytes`: `MAJ:MIN Read N` lines, summed.
fn v1_io(files: &mut FileCache, dir: &Path) -> (f64, f64) {
    let Some(text) = read(files, &dir.join("blkio.throttle.io_service_bytes")) else {
        return (f64::NAN, f64::NAN);
    };
    let (mut r, mut w) = (0.0, 0.0);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = words[..] {
            let n = n.parse::<f64>().unwrap_or(0.0);
            match op {
                "Read" => r += n,
                "Write" => w += n,
                _ => {}
            }
        }
    }
    (r, w)
}

fn v2_stats(files: &mut FileCache, dir: &Path) -> GroupStats {
    let cpu = read(files, &dir.join("cpu.stat"))
        .and_then(|t| keyed(t, "usage_usec"))
        .map_or(f64::NAN, |us| us / 1e6);
    let limit = match read(files, &dir.join("memory.max")).map(str::trim) {
        Some("max") => 0.0,
        Some(n) => n.parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    };
    let (read_bytes, write_bytes) = v2_io(files, dir);
    GroupStats {
        cpu_seconds: cpu,
        memory: number(files, &dir.join("memory.current")),
        memory_limit: limit,
        read_bytes,
        write_bytes,
        tasks: number(files, &dir.join("pids.current")),
        pressure: pressure(files, dir),
    }
}

fn v1_stats(files: &mut FileCache, v1: &Path, id: &str, psi_dir: Option<&Path>) -> GroupStats {
    let at = |controller: &str| v1.join(controller).join(id.trim_start_matches('/'));
    let limit = number(files, &at("memory").join("memory.limit_in_bytes"));
    let (read_bytes, write_bytes) = v1_io(files, &at("blkio"));
    GroupStats {
        cpu_seconds: number(files, &at("cpuacct").join("cpuacct.usage")) / 1e9,
        memory: number(files, &at("memory").join("memory.usage_in_bytes")),
        memory_limit: if limit >= V1_UNLIMITED as f64 { 0.0 } else { limit },
        read_bytes,
        write_bytes,
        tasks: number(files, &at("pids").join("pids.current")),
        pressure: psi_dir.map_or([f64::NAN; 6], |dir| pressure(files, dir)),
    }
}

/// The cgroup collector.
#[derive(Debug)]
pub struct Cgroups {
    parents: Vec<String>,
    told_absent: bool,
    files: FileCache,
    /// The layout found under a sysfs root; it does not change while running.
    layout: Option<(PathBuf, Option<Layout>)>,
}

impl Cgroups {
    /// A collector reporting the children of `parents` (e.g. `system.slice`).
    pub fn new(parents: Vec<String>) -> Self {
        Cgroups { parents, told_absent: false, files: FileCache::default(), layout: None }
    }
}

impl Collector for Cgroups {
    fn name(&self) -> &'static str {
        "cgroups"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let base = roots.sys_path("fs/cgroup");
        if self.layout.as_ref().is_none_or(|(b, _)| *b != base) {
            self.layout = Some((base, detect(roots)));
        }
        let Some(layout) = self.layout.as_ref().and_then(|(_, l)| l.clone()) else {
            if !self.told_absent {
                info!(path = %roots.sys_path("fs/cgroup").display(), "No cgroup hierarchy found; skipping cgroups.");
                self.told_absent = true;
            }
            return Ok(Vec::new());
        };
        let tree = match &layout {
            Layout::Unified(tree) | Layout::Hybrid { tree, .. } | Layout::Legacy { tree, .. } => {
                tree.clone()
            }
        };
        let mut groups = Vec::new();
        for parent in &self.parents {
            let Ok(entries) = std::fs::read_dir(tree.join(parent)) else { continue };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                let id = format!("/{parent}/{name}");
                let stats = match &layout {
                    Layout::Unified(tree) => {
                        v2_stats(&mut self.files, &tree.join(parent).join(&name))
                    }
                    Layout::Hybrid { tree, v1 } => {
                        v1_stats(&mut self.files, v1, &id, Some(&tree.join(parent).join(&name)))
                    }
                    Layout::Legacy { v1, .. } => v1_stats(&mut self.files, v1, &id, None),
                };
                groups.push((id, name, stats));
            }
        }
        // Close the files of groups that went away.
        self.files.sweep();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let (c, g) = (Kind::Counter, Kind::Gauge);
        let mut families = vec![
            FamilySample::new(
                "container_cpu_usage_seconds_total",
                "Cumulative cpu time consumed in seconds.",
                c,
            ),
            FamilySample::new(
                "container_memory_usage_bytes",
                "Current memory usage in bytes, including all memory regardless of when it was accessed.",
                g,
            ),
            FamilySample::new(
                "container_spec_memory_limit_bytes",
                "Memory limit for the container (0 when unlimited).",
                g,
            ),
            FamilySample::new(
                "container_fs_reads_bytes_total",
                "Cumulative count of bytes read.",
                c,
            ),
            FamilySample::new(
                "container_fs_writes_bytes_total",
                "Cumulative count of bytes written.",
                c,
            ),
            FamilySample::new(
                "container_threads",
                "Number of tasks (threads) in the group (pids.current).",
                g,
            ),
            FamilySample::new(
                "container_pressure_cpu_waiting_seconds_total",
                "Total time duration tasks in the container have waited due to CPU congestion.",
                c,
            ),
            FamilySample::new(
                "container_pressure_cpu_stalled_seconds_total",
                "Total time duration no tasks in the container could make progress due to CPU congestion.",
                c,
            ),
            FamilySample::new(
                "container_pressure_memory_waiting_seconds_total",
                "Total time duration tasks in the container have waited due to memory congestion.",
                c,
            ),
            FamilySample::new(
                "container_pressure_memory_stalled_seconds_total",
                "Total time duration no tasks in the container could make progress due to memory congestion.",
                c,
            ),
            FamilySample::new(
                "container_pressure_io_waiting_seconds_total",
                "Total time duration tasks in the container have waited due to IO congestion.",
                c,
            ),
            FamilySample::new(
                "container_pressure_io_stalled_seconds_total",
                "Total time duration no tasks in the container could make progress due to IO congestion.",
                c,
            ),
        ];
        let has_psi = !matches!(layout, Layout::Legacy { .. });
        if !has_psi {
            families.truncate(6);
        }
        for (id, name, s) in groups {
            let values =
                [s.cpu_seconds, s.memory, s.memory_limit, s.read_bytes, s.write_bytes, s.tasks];
            let all = values.iter().chain(s.pressure.iter());
            for (family, value) in families.iter_mut().zip(all) {
                family.push(vec![label("id", id.clone()), label("name", name.clone())], *value);
            }
        }
        Ok(families)
    }
}
