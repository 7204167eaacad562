//! Per mount: size, free and available bytes, inodes, read-only, under
//! node_exporter's names, from `statvfs` over the mounts listed in
//! `/proc/self/mountinfo`. Pseudo file systems and container overlays are
//! excluded by default (`[filesystem]` in the config file).
//!
//! A mount whose server is gone (a dead NFS server) blocks `statvfs` in the
//! kernel, possibly forever. So calls for network and FUSE file systems run
//! on a worker thread and the sampler waits at most `timeout`: a mount that
//! does not answer is reported with `node_filesystem_device_error 1`, its
//! worker is abandoned (a fresh one serves the next call), and the mount is
//! skipped until the stuck call returns, so one dead mount costs one thread,
//! not one per sample. Local file systems answer `statvfs` from memory and
//! are asked directly.
//!
//! The mount table is parsed again only when it changes: the kernel flags
//! an open `mountinfo` with `POLLPRI` after every mount or unmount.

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
use regex_lite::Regex;
use tracing::warn;

use super::{Collector, FamilySample, label};
use crate::roots::{FileCache, ProcReadError, Roots};

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

/// File systems whose `statvfs` is answered from memory, without asking a
/// device or server; everything else goes through the time box.
const LOCAL: [&str; 22] = [
    "btrfs", "bcachefs", "exfat", "ext2", "ext3", "ext4", "f2fs", "hfs", "hfsplus", "jfs", "msdos",
    "nilfs2", "ntfs", "ntfs3", "ramfs", "reiserfs", "tmpfs", "udf", "ufs", "vfat", "xfs", "zfs",
];

/// One mount to measure, as parsed from mountinfo.
#[derive(Debug, Clone)]
struct Mount {
    device: String,
    fstype: String,
    mount_point: String,
    readonly: bool,
    local: bool,
}

/// The filesystem collector.
pub struct Filesystem {
    mount_exclude: Regex,
    fstype_exclude: Regex,
    timeout: Duration,
    worker: Worker,
    files: FileCache,
    /// The parsed mount table and the file it came from.
    mounts: Option<(PathBuf, Vec<Mount>)>,
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
        Filesystem {
            mount_exclude,
            fstype_exclude,
            timeout,
            worker: Worker::new(stat),
            files: FileCache::default(),
            mounts: None,
        }
    }

    /// Whether the mount table behind the open `path` changed since it was read.
    fn changed(&self, path: &Path) -> bool {
        let Some(file) = self.files.file(path) else { return true };
        let mut fds = [rustix::event::PollFd::new(file, rustix::event::PollFlags::PRI)];
        let now = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        match rustix::event::poll(&mut fds, Some(&now)) {
            Ok(0) => false,
            Ok(_) => fds[0]
                .revents()
                .intersects(rustix::event::PollFlags::PRI | rustix::event::PollFlags::ERR),
            Err(_) => true,
        }
    }

    /// The mounts to measure, parsing mountinfo only when it changed.
    fn mounts(&mut self, roots: &Roots) -> Result<Vec<Mount>, ProcReadError> {
        let path = roots.path("self/mountinfo");
        if let Some((cached, mounts)) = &self.mounts
            && *cached == path
            && !self.changed(&path)
        {
            return Ok(mounts.clone());
        }
        let text = self.files.read(path.clone())?;
        let infos = MountInfos::from_read(text.as_bytes())
            .map_err(|error| ProcReadError { path: path.clone(), error })?;
        let mut seen = HashSet::new();
        let mut mounts = Vec::new();
        for info in infos.iter() {
            let mount_point = info.mount_point.to_string_lossy().into_owned();
            if self.mount_exclude.is_match(&mount_point)
                || self.fstype_exclude.is_match(&info.fs_type)
            {
                continue;
            }
            let device = info.mount_source.clone().unwrap_or_else(|| "none".into());
            // A mount point can be listed twice (over-mounts); report it once.
            if !seen.insert((device.clone(), mount_point.clone(), info.fs_type.clone())) {
                continue;
            }
            mounts.push(Mount {
                local: LOCAL.contains(&info.fs_type.as_str()),
                readonly: info.mount_options.contains_key("ro"),
                fstype: info.fs_type.clone(),
                device,
                mount_point,
            });
        }
        self.mounts = Some((path, mounts.clone()));
        Ok(mounts)
    }
}

impl Collector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, roots: &Roots) -> Result<Vec<FamilySample>, ProcReadError> {
        let mounts = self.mounts(roots)?;
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
        for mount in mounts {
            let target = roots.mount_path(&mount.mount_point);
            let outcome = if mount.local {
                match (self.worker.stat)(&target) {
                    Ok(stats) => Outcome::Stats(stats),
                    Err(e) => Outcome::Failed(e),
                }
            } else {
                self.worker.call(&target, self.timeout)
            };
            let stats = match outcome {
                Outcome::Stats(stats) => Some(stats),
                Outcome::Failed(error) => {
                    tracing::debug!(mount_point = %mount.mount_point, %error, "statvfs failed.");
                    None
                }
                Outcome::TimedOut => {
                    warn!(mount_point = %mount.mount_point, timeout = ?self.timeout, "statvfs did not answer in time; reporting the mount as failed until it does.");
                    None
                }
                Outcome::StillStuck => None,
            };
            let readonly = f64::from(u8::from(mount.readonly));
            let values = match stats {
                Some(s) => [s.size, s.free, s.avail, s.files, s.files_free, readonly, 0.0],
                None => [f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN, readonly, 1.0],
            };
            for (family, value) in families.iter_mut().zip(values) {
                let labels = vec![
                    label("device", mount.device.clone()),
                    label("fstype", mount.fstype.clone()),
                    label("mountpoint", mount.mount_point.clone()),
                ];
                family.push(labels, value);
            }
        }
        Ok(families.into_iter().filter(|f| !f.series.is_empty()).collect())
    }
}
