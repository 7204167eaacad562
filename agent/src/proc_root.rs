//! The one place the agent reads `/proc` through. Pointing it at a fixture
//! tree makes every collector testable with exact values (node_exporter's
//! `--path.procfs`), and the system values that parsing needs (clock ticks)
//! are injected, not read from the live host.

use std::path::{Path, PathBuf};

use procfs::{Current, CurrentSI, ExplicitSystemInfo};
use thiserror::Error;

/// A `/proc` file that could not be read or parsed.
#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct ProcReadError {
    /// The file.
    pub path: PathBuf,
    /// procfs's error (not found, permission denied, parse error, ...).
    #[source]
    pub source: procfs::ProcError,
}

/// A procfs mount and the system facts needed to interpret it.
#[derive(Debug, Clone)]
pub struct ProcRoot {
    root: PathBuf,
    system_info: ExplicitSystemInfo,
}

impl ProcRoot {
    /// The live system's values (clock ticks, page size) for a procfs at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let system_info = ExplicitSystemInfo {
            boot_time_secs: procfs::boot_time_secs().unwrap_or(0),
            ticks_per_second: procfs::ticks_per_second(),
            page_size: procfs::page_size(),
            is_little_endian: cfg!(target_endian = "little"),
        };
        ProcRoot { root: root.into(), system_info }
    }

    /// Pinned system values, for fixture trees taken on another machine.
    pub fn with_system_info(root: impl Into<PathBuf>, system_info: ExplicitSystemInfo) -> Self {
        ProcRoot { root: root.into(), system_info }
    }

    /// The path of `relative` (e.g. `sys/kernel/osrelease`) under the root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads a procfs type from its usual file under this root.
    ///
    /// # Errors
    /// [`ProcReadError`] with the file's path.
    pub fn read<T: Current>(&self) -> Result<T, ProcReadError> {
        let path = self.path(T::PATH.trim_start_matches("/proc/"));
        T::from_file(&path).map_err(|source| ProcReadError { path, source })
    }

    /// Like [`ProcRoot::read`] for types that need system values.
    ///
    /// # Errors
    /// [`ProcReadError`] with the file's path.
    pub fn read_si<T: CurrentSI>(&self) -> Result<T, ProcReadError> {
        let path = self.path(T::PATH.trim_start_matches("/proc/"));
        T::from_file(&path, &self.system_info).map_err(|source| ProcReadError { path, source })
    }

    /// Reads a small text file under the root, trimmed.
    ///
    /// # Errors
    /// [`ProcReadError`] with the file's path.
    pub fn read_text(&self, relative: &str) -> Result<String, ProcReadError> {
        let path = self.path(relative);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| ProcReadError { source: procfs::ProcError::from(e), path })
    }
}

impl ProcRoot {
    /// Clock ticks per second (`USER_HZ`), the unit of `/proc/stat` times.
    pub fn ticks_per_second(&self) -> u64 {
        self.system_info.ticks_per_second.max(1)
    }
}
