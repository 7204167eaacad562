//! The only doors the agent reads the host through: a procfs root, a sysfs
//! root and the root filesystem that mount points are relative to. Pointing
//! them at fixture trees makes every collector testable with exact values
//! (node_exporter's `--path.procfs`, `--path.sysfs`, `--path.rootfs`), and
//! lets an agent in a container read the host's trees mounted elsewhere.
//! The system values parsing needs (clock ticks, page size) are injected.

use std::path::{Path, PathBuf};

use procfs::{Current, CurrentSI, ExplicitSystemInfo};
use thiserror::Error;

/// A file under one of the roots that could not be read or parsed.
#[derive(Debug, Error)]
#[error("{path}: {error}")]
pub struct ProcReadError {
    /// The file.
    pub path: PathBuf,
    /// procfs's error (not found, permission denied, parse error, ...);
    /// in the message, not a `source()`, so a chain says it once.
    pub error: procfs::ProcError,
}

impl ProcReadError {
    /// An error about `path` with a plain message (for files procfs does not parse).
    pub fn other(path: PathBuf, message: impl Into<String>) -> Self {
        ProcReadError { path, error: procfs::ProcError::Other(message.into()) }
    }

    /// True when the file does not exist (an older kernel, a missing feature).
    pub fn is_not_found(&self) -> bool {
        matches!(self.error, procfs::ProcError::NotFound(_))
    }
}

/// Where the host's procfs, sysfs and root filesystem are, and the system
/// facts needed to interpret them.
#[derive(Debug, Clone)]
pub struct Roots {
    proc: PathBuf,
    sys: PathBuf,
    rootfs: PathBuf,
    system_info: ExplicitSystemInfo,
}

impl Roots {
    /// The live system's values (clock ticks, page size) for a procfs at
    /// `proc`, with sysfs at `/sys` and the root filesystem at `/`.
    pub fn new(proc: impl Into<PathBuf>) -> Self {
        let system_info = ExplicitSystemInfo {
            boot_time_secs: procfs::boot_time_secs().unwrap_or(0),
            ticks_per_second: procfs::ticks_per_second(),
            page_size: procfs::page_size(),
            is_little_endian: cfg!(target_endian = "little"),
        };
        Roots { proc: proc.into(), sys: "/sys".into(), rootfs: "/".into(), system_info }
    }

    /// Pinned system values, for fixture trees taken on another machine.
    pub fn with_system_info(proc: impl Into<PathBuf>, system_info: ExplicitSystemInfo) -> Self {
        Roots { proc: proc.into(), sys: "/sys".into(), rootfs: "/".into(), system_info }
    }

    /// Another sysfs root.
    pub fn with_sys(mut self, sys: impl Into<PathBuf>) -> Self {
        self.sys = sys.into();
        self
    }

    /// Another root filesystem for mount points.
    pub fn with_rootfs(mut self, rootfs: impl Into<PathBuf>) -> Self {
        self.rootfs = rootfs.into();
        self
    }

    /// The path of `relative` (e.g. `sys/kernel/osrelease`) under the procfs root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.proc.join(relative)
    }

    /// The procfs root itself.
    pub fn root(&self) -> &Path {
        &self.proc
    }

    /// The path of `relative` (e.g. `fs/cgroup`) under the sysfs root.
    pub fn sys_path(&self, relative: &str) -> PathBuf {
        self.sys.join(relative)
    }

    /// Where a mount point (an absolute path on the host) is for this process.
    pub fn mount_path(&self, mount_point: &str) -> PathBuf {
        self.rootfs.join(mount_point.trim_start_matches('/'))
    }

    /// Reads a procfs type from its usual file under this root.
    ///
    /// # Errors
    /// [`ProcReadError`] with the file's path.
    pub fn read<T: Current>(&self) -> Result<T, ProcReadError> {
        let path = self.path(T::PATH.trim_start_matches("/proc/"));
        T::from_file(&path).map_err(|error| ProcReadError { path, error })
    }

    /// Like [`Roots::read`] for types that need system values.
    ///
    /// # Errors
    /// [`ProcReadError`] with the file's path.
    pub fn read_si<T: CurrentSI>(&self) -> Result<T, ProcReadError> {
        let path = self.path(T::PATH.trim_start_matches("/proc/"));
        T::from_file(&path, &self.system_info).map_err(|error| ProcReadError { path, error })
    }

    /// Reads a small text file under the procfs root, trimmed.
    ///
    /// # Errors
    /// [`ProcReadError`] with the file's path.
    pub fn read_text(&self, relative: &str) -> Result<String, ProcReadError> {
        read_text_file(self.path(relative))
    }

    /// Clock ticks per second (`USER_HZ`), the unit of `/proc/stat` times.
    pub fn ticks_per_second(&self) -> u64 {
        self.system_info.ticks_per_second.max(1)
    }

    /// Bytes per memory page (for `rss` in pages, socket memory in pages).
    pub fn page_size(&self) -> u64 {
        self.system_info.page_size.max(1)
    }

    /// The pinned system values.
    pub fn system_info(&self) -> &ExplicitSystemInfo {
        &self.system_info
    }
}

/// Reads a small text file, trimmed, with the path in the error.
///
/// # Errors
/// [`ProcReadError`] with the file's path.
pub fn read_text_file(path: PathBuf) -> Result<String, ProcReadError> {
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) => {
            let source = if e.kind() == std::io::ErrorKind::NotFound {
                procfs::ProcError::NotFound(Some(path.clone()))
            } else {
                procfs::ProcError::from(e)
            };
            Err(ProcReadError { path, error: source })
        }
    }
}

/// How the kernel hands a generated file over, which decides when a read
/// is the last one.
///
/// A read shorter than asked is the end of a regular file, and of a file
/// the kernel generates in one piece: `single_open` files (`/proc/stat`,
/// `meminfo`, `loadavg`, `uptime`, `pressure/*`, `net/snmp`, `net/netstat`,
/// `net/snmp6`, `net/sockstat*`, `/proc/PID/stat`), sysctl files
/// (`/proc/sys/...`) and cgroup and sysfs attributes (kernfs shows each in
/// one call, growing its buffer until the whole text fits). It is *not*
/// the end of a seq_file of records (`self/mountinfo`, `net/dev`,
/// `diskstats`, `vmstat`, `net/tcp`): those hand over at most one page of
/// whole records per read, so a host with many mounts, interfaces, disks
/// or counters is cut at the first page unless the reader goes on until a
/// read returns nothing. `tests::one_piece_files_come_in_one_read` checks
/// every [`Producer::OnePiece`] file the agent reads on the live system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// Generated whole on each read: a short read is the end (one system
    /// call a sample instead of two).
    OnePiece,
    /// A seq_file of records, or anything not known to be one piece: read
    /// until a read returns nothing.
    Records,
}

/// Files a collector reads every sample, kept open and re-read from offset
/// 0 with `pread`: that skips the path lookup and open/close of every
/// sample, which costs as much as the read itself for small /proc files.
/// Keyed by full path, so a collector pointed at another root opens anew;
/// [`FileCache::sweep`] closes files not read since the previous sweep
/// (a stopped service's cgroup, for example).
#[derive(Debug, Default)]
pub struct FileCache {
    files: std::collections::HashMap<PathBuf, (std::fs::File, bool)>,
    buf: Vec<u8>,
}

impl FileCache {
    /// The whole current content of `path`, read until a read returns
    /// nothing (right for every file; see [`Producer`]).
    ///
    /// # Errors
    /// [`ProcReadError`] with the path; a file that cannot be re-read is
    /// reopened once before giving up.
    pub fn read(&mut self, path: PathBuf) -> Result<&str, ProcReadError> {
        self.read_as(path, Producer::Records)
    }

    /// The current content of a file the kernel generates in one piece
    /// ([`Producer::OnePiece`]): one `pread` when it fits the buffer.
    ///
    /// # Errors
    /// As [`FileCache::read`].
    pub fn read_one_piece(&mut self, path: PathBuf) -> Result<&str, ProcReadError> {
        self.read_as(path, Producer::OnePiece)
    }

    /// The current content of `path`, produced as `producer` says.
    ///
    /// # Errors
    /// As [`FileCache::read`].
    pub fn read_as(&mut self, path: PathBuf, producer: Producer) -> Result<&str, ProcReadError> {
        if !self.files.contains_key(&path) {
            let file = open(&path)?;
            self.files.insert(path.clone(), (file, false));
        }
        let Some((file, used)) = self.files.get_mut(&path) else {
            return Err(ProcReadError::other(path, "file cache lost an entry"));
        };
        *used = true;
        if pread_all(file, &mut self.buf, producer).is_err() {
            *file = open(&path)?;
            pread_all(file, &mut self.buf, producer)
                .map_err(|e| ProcReadError { path: path.clone(), error: e.into() })?;
        }
        #[cfg(test)]
        audit::check(&path, file, producer, self.buf.len());
        std::str::from_utf8(&self.buf).map_err(|_| ProcReadError::other(path, "not UTF-8"))
    }

    /// Reads `path` as `producer` says and parses it with procfs.
    ///
    /// # Errors
    /// [`ProcReadError`] with the path.
    pub fn parse<T: procfs::FromRead>(
        &mut self,
        path: PathBuf,
        producer: Producer,
    ) -> Result<T, ProcReadError> {
        let text = self.read_as(path.clone(), producer)?;
        T::from_read(text.as_bytes()).map_err(|error| ProcReadError { path, error })
    }

    /// Reads a file that holds one number (`/proc/sys/...`, a cgroup
    /// attribute: both generated in one piece).
    ///
    /// # Errors
    /// [`ProcReadError`] with the path, also when the content is not a number.
    pub fn number(&mut self, path: PathBuf) -> Result<f64, ProcReadError> {
        let text = self.read_one_piece(path.clone())?.trim();
        text.parse()
            .map_err(|_| ProcReadError::other(path, format!("expected a number, got {text:?}")))
    }

    /// The open file for `path`, if it has been read (for `poll`).
    pub fn file(&self, path: &Path) -> Option<&std::fs::File> {
        self.files.get(path).map(|(f, _)| f)
    }

    /// Closes the files not read since the last sweep.
    pub fn sweep(&mut self) {
        self.files.retain(|_, (_, used)| std::mem::take(used));
    }
}

/// Reads the whole file from offset 0: until a read returns nothing, or,
/// for a [`Producer::OnePiece`] file, until a read returns less than asked.
fn pread_all(file: &std::fs::File, buf: &mut Vec<u8>, producer: Producer) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        let n = file.read_at(&mut chunk, buf.len() as u64)?;
        buf.extend_from_slice(&chunk[..n]);
        let done = match producer {
            Producer::OnePiece => n < chunk.len(),
            Producer::Records => n == 0,
        };
        if done {
            return Ok(());
        }
    }
}

fn open(path: &Path) -> Result<std::fs::File, ProcReadError> {
    std::fs::File::open(path).map_err(|e| {
        let source = if e.kind() == std::io::ErrorKind::NotFound {
            procfs::ProcError::NotFound(Some(path.to_path_buf()))
        } else {
            procfs::ProcError::from(e)
        };
        ProcReadError { path: path.to_path_buf(), error: source }
    })
}

/// Test-only check of the [`Producer::OnePiece`] claim: with auditing on,
/// every one-piece read is followed by one more read at its end, which
/// must return nothing.
#[cfg(test)]
mod audit {
    use std::{cell::RefCell, os::unix::fs::FileExt, path::Path, path::PathBuf};

    use super::Producer;

    thread_local! {
        static SEEN: RefCell<Option<Vec<(PathBuf, usize, usize)>>> = const { RefCell::new(None) };
    }

    /// Starts recording one-piece reads on this thread.
    pub fn start() {
        SEEN.with(|s| *s.borrow_mut() = Some(Vec::new()));
    }

    /// Stops and returns (path, bytes read, bytes a further read found).
    pub fn finish() -> Vec<(PathBuf, usize, usize)> {
        SEEN.with(|s| s.borrow_mut().take().unwrap_or_default())
    }

    pub fn check(path: &Path, file: &std::fs::File, producer: Producer, len: usize) {
        if producer != Producer::OnePiece {
            return;
        }
        SEEN.with(|s| {
            if let Some(seen) = s.borrow_mut().as_mut() {
                let mut rest = vec![0u8; 1 << 20];
                let more = file.read_at(&mut rest, len as u64).unwrap_or(0);
                seen.push((path.to_path_buf(), len, more));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_any_size_are_read_whole_and_re_read_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FileCache::default();
        // Shorter than, exactly and over one read, and several reads long.
        for len in [0, 5, 8191, 8192, 8193, 20_000] {
            let path = dir.path().join(format!("f{len}"));
            let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            std::fs::write(&path, &text).unwrap();
            assert_eq!(cache.read(path.clone()).unwrap(), text, "{len} bytes");
            std::fs::write(&path, "changed").unwrap();
            assert_eq!(cache.read(path).unwrap(), "changed", "re-read from offset 0");
        }
        // And /proc itself: the same answer as a plain read.
        let stat = cache.read(PathBuf::from("/proc/self/status")).unwrap().to_string();
        assert!(stat.starts_with("Name:") && stat.contains("VmRSS:"), "{stat}");
    }

    /// Every file a collector reads as [`Producer::OnePiece`] on this
    /// machine ends where its short read ended: a further read finds
    /// nothing. (Files of records are not read that way; the end-to-end
    /// test with hundreds of mounts covers them.)
    #[test]
    fn one_piece_files_come_in_one_read() {
        let roots = Roots::new("/proc");
        let mut collectors = crate::collectors::all();
        audit::start();
        for _ in 0..2 {
            for collector in &mut collectors {
                let _ = collector.collect(&roots);
            }
        }
        let seen = audit::finish();
        let wrong: Vec<_> = seen.iter().filter(|(_, _, more)| *more > 0).collect();
        assert!(wrong.is_empty(), "one-piece files with more after a short read: {wrong:?}");
        for expected in ["stat", "meminfo", "loadavg", "uptime", "net/snmp", "net/sockstat"] {
            let path = roots.path(expected);
            assert!(
                seen.iter().any(|(p, len, _)| *p == path && *len > 0),
                "{expected} was not read as one piece: {seen:?}"
            );
        }
    }
}
