//! What `agent keygen` and `collector keygen` do, so both behave the same.

use std::path::{Path, PathBuf};

use crate::{cert, error::KeyError, key::KeyPair, key::PublicKey};

/// The outcome of a key generation, for the binary to print.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The new public key.
    pub public: PublicKey,
    /// `DIR/BASE.key`.
    pub public_path: PathBuf,
    /// `DIR/BASE.key_secret`.
    pub secret_path: PathBuf,
}

/// Generates a key pair and writes `DIR/BASE.key` and `DIR/BASE.key_secret`.
/// `name` goes into the certificate's metadata (the host name for agents).
///
/// # Errors
/// [`KeyError::Exists`] if either file exists and `force` is false.
pub fn generate(dir: &Path, base: &str, name: &str, force: bool) -> Result<Generated, KeyError> {
    let pair = KeyPair::generate()?;
    let (public_path, secret_path) = cert::write_pair(dir, base, &pair, name, force)?;
    Ok(Generated { public: pair.public, public_path, secret_path })
}

/// The key directory: `given` (from `--keys`), else
/// `$XDG_CONFIG_HOME/curvemon/keys` (usually `~/.config/curvemon/keys`). The
/// systemd units pass `/etc/curvemon/keys`.
///
/// # Errors
/// [`KeyError::NoKeyDir`] when nothing was given and there is no home
/// directory to put the default under.
pub fn key_dir(given: Option<PathBuf>) -> Result<PathBuf, KeyError> {
    match given {
        Some(dir) => Ok(dir),
        None => directories::ProjectDirs::from("", "", "curvemon")
            .map(|d| d.config_dir().join("keys"))
            .ok_or(KeyError::NoKeyDir),
    }
}

/// The local host name from the kernel, for certificate metadata and agent
/// names; `"localhost"` if it cannot be read.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
