//! Per mount: size, free and available bytes, inodes, read-only, under
//! node_exporter's names, from `statvfs` over the mounts listed in
//! `/proc/self/mountinfo`. Pseudo file systems and container overlays are
//! excluded by default (`[filesystem]` in the config file).
//!
//! A mount whose server is gone (a dead NFS server) blocks `statvfs` in the
//! kernel, possibly forever. So each call runs on a worker thread and the
//! sampler waits at most `timeout`: a mount that does not answer is reported
//! with `node_filesystem_device_error 1`, its worker is abandoned (a fresh
//! one serves the next call), and the mount is skipped until the stuck call
//! returns, so one dead mount costs one thread, not one per sample.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    time::Duration,
};

use curvemon_protocol::Kind;
use procfs::{FromRead, process::MountInfos};
use regex::Regex;
use tracing::warn;

use super::{Collector, FamilySample, label};
use crate::roots::{ProcReadError, Roots};

/// What `statvfs` says about one mount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStats {
    /// Total bytes.
    pub size: f64,
    /// Free bytes (including those reserved for root).
    pub free: f64,
    /// Bytes available to unprivileged users.
    pub avail: f64,
    /// Total inodes.
    pub files: f64,
    /// Free inodes.
    pub files_free: f64,
}

/// The function that asks the kernel; tests substitute a slow one to check
/// the time box.
pub type StatFn = fn(&Path) -> std::io::Result<FsStats>;

/// `statvfs(3)`; sizes in fragment units, as POSIX specifies.
pub fn statvfs(path: &Path) -> std::io::Result<FsStats> {
    let s = rustix::fs::statvfs(path)?;
    let unit = s.f_frsize as f64;
    Ok(FsStats {
        size: s.f_blocks as f64 * unit,
        free: s.f_bfree as f64 * unit,
        avail: s.f_bavail as f64 * unit,
        files: s.f_files as f64,
        files_free: s.f_ffree as f64,
    })
}

struct Job {
    path: PathBuf,
    reply: mpsc::SyncSender<std::io::Result<FsStats>>,
}

/// A thread that runs `statvfs` calls one at a time, replaceable when stuck.
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    stat: StatFn,
    /// Mount paths whose call is still blocked in an abandoned worker.
    stuck: Arc<Mutex<HashSet<PathBuf>>>,
}

/// Why a time-boxed call gave no answer.
enum Outcome {
    Stats(FsStats),
    Failed(std::io::Error),
    TimedOut,
    StillStuck,
}

impl Worker {
    fn new(stat: StatFn) -> Self {
        Worker { jobs: None, stat, stuck: Arc::new(Mutex::new(HashSet::new())) }
    }

    fn spawn(&self) -> Option<mpsc::Sender<Job>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (stat, stuck) = (self.stat, Arc::clone(&self.stuck));
        std::thread::Builder::new()
            .name("statvfs".into())
            .spawn(move || {
                // Ends when the collector drops its sender: on shutdown, or
                // when it abandoned this worker after a timeout.
                while let Ok(job) = rx.recv() {
                    let result = stat(&job.path);
                    stuck
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&job.path);
                    let _ = job.reply.send(result);
                }
            })
            .ok()?;
        Some(tx)
    }

    fn call(&mut self, path: &Path, timeout: Duration) -> Outcome {
        if self.stuck.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(path) {
            return Outcome::StillStuck;
        }
        if self.jobs.is_none() {
            self.jobs = self.spawn();
        }
        let Some(jobs) = &self.jobs else {
            return Outcome::Failed(std::io::Error::other("cannot start a statvfs thread"));
        };
        let (reply, answer) = mpsc::sync_channel(1);
        if jobs.send(Job { path: path.to_path_buf(), reply }).is_err() {
            self.jobs = None;
            return Outcome::Failed(std::io::Error::other("the statvfs thread ended"));
        }
        match answer.recv_timeout(timeout) {
            Ok(Ok(stats)) => Outcome::Stats(stats),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(RecvTimeoutError::Timeout) => {
                self.stuck
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(path.to_path_buf());
                // Abandon the blocked worker; the next call starts a new one.
                self.jobs = None;
                Outcome::TimedOut
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.jobs = None;
                Outcome::Failed(std::io::Error::other("the statvfs thread ended"))
            }
        }
    }
}

/// The filesystem collector.
pub struct Filesystem {
    mount_exclude: Regex,
    fstype_exclude: Regex,
    timeout: Duration,
    worker: Worker,
}

impl Filesystem {
    /// A collector with these exclusions and time box.
    pub fn new(mount_exclude: Regex, fstype_exclude: Regex, timeout: Duration) -> Self {
        Self::with_stat(mount_exclude, fstype_exclude, timeout, statvfs)
    }

    /// The same, asking `stat` instead of `statvfs(3)`.
    pub fn with_stat(
        mount_exclude: Regex,
        fstype_exclude: Regex,
        timeout: Duration,
        stat: StatFn,
    ) -> Self {
        Filesystem { mount_exclude, fstype_exclude, timeout, worker: Worker::new(stat) }
    }
}

impl Collector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let path = roots.path("self/mountinfo");
        let mounts =
            MountInfos::from_file(&path).map_err(|source| ProcReadError { path, source })?;
        let g = Kind::Gauge;
        let mut families = [
            FamilySample::new("node_filesystem_size_bytes", "Filesystem size in bytes.", g),
            FamilySample::new("node_filesystem_free_bytes", "Filesystem free space in bytes.", g),
            FamilySample::new(
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
                g,
            ),
            FamilySample::new("node_filesystem_files", "Filesystem total file nodes.", g),
            FamilySample::new("node_filesystem_files_free", "Filesystem total free file nodes.", g),
            FamilySample::new("node_filesystem_readonly", "Filesystem read-only status.", g),
            FamilySample::new(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                g,
            ),
        ];
        let mut seen = HashSet::new();
        for mount in mounts.iter() {
            let mount_point = mount.mount_point.to_string_lossy().into_owned();
            if self.mount_exclude.is_match(&mount_point)
                || self.fstype_exclude.is_match(&mount.fs_type)
            {
                continue;
            }
            let device = mount.mount_source.clone().unwrap_or_else(|| "none".into());
            // A mount point can be listed twice (over-mounts); report it once.
            if !seen.insert((device.clone(), mount_point.clone(), mount.fs_type.clone())) {
                continue;
            }
            let stats = match self.worker.call(&roots.mount_path(&mount_point), self.timeout) {
                Outcome::Stats(stats) => Some(stats),
                Outcome::Failed(error) => {
                    tracing::debug!(mount_point, %error, "statvfs failed.");
                    None
                }
                Outcome::TimedOut => {
                    warn!(mount_point, timeout = ?self.timeout, "statvfs did not answer in time; reporting the mount as failed until it does.");
                    None
                }
                Outcome::StillStuck => None,
            };
            let readonly = mount.mount_options.contains_key("ro");
            let values = match stats {
                Some(s) => [
                    s.size,
                    s.free,
                    s.avail,
                    s.files,
                    s.files_free,
                    f64::from(u8::from(readonly)),
                    0.0,
                ],
                None => [
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                    f64::from(u8::from(readonly)),
                    1.0,
                ],
            };
            for (family, value) in families.iter_mut().zip(values) {
                let labels = vec![
                    label("device", device.clone()),
                    label("fstype", mount.fs_type.clone()),
                    label("mountpoint", mount_point.clone()),
                ];
                family.push(labels, value);
            }
        }
        Ok(families.into_iter().filter(|f| !f.series.is_empty()).collect())
    }
}
