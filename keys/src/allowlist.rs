//! The collector's allowlist: a directory of agent public certificates.
//!
//! Every `*.key` file directly in the directory authorizes one agent key; its
//! `metadata/name`, when set, pins the host name that key may use. Secret
//! files (`*.key_secret`) and other files are ignored, as CZMQ's zcertstore
//! does. A missing directory means "no allowlist" (any agent that knows the
//! collector's public key may connect), which the collector announces.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

/// What a directory held when last read, to notice changes cheaply.
pub fn fingerprint(dir: &Path) -> Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some((e.file_name(), meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

use crate::{cert, error::KeyError, key::PublicKey};

/// One authorized agent key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedAgent {
    /// The agent's public key.
    pub key: PublicKey,
    /// The host name this key is pinned to, if the certificate names one.
    pub name: Option<String>,
    /// The certificate file it came from.
    pub file: PathBuf,
}

/// The set of authorized agent keys, indexed by key.
#[derive(Debug, Clone, Default)]
pub struct AuthorizedKeys {
    by_key: HashMap<PublicKey, AuthorizedAgent>,
}

impl AuthorizedKeys {
    /// Loads every `*.key` in `dir`. Returns `Ok(None)` if `dir` does not exist.
    ///
    /// # Errors
    /// The first unreadable or malformed certificate, by file and line: a
    /// half-valid allowlist is refused whole rather than silently shrunk.
    pub fn load(dir: &Path) -> Result<Option<Self>, KeyError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyError::Io {
                    path: dir.to_path_buf(),
                    action: "listing",
                    error: source,
                });
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeyError::Io {
                path: dir.to_path_buf(),
                action: "listing",
                error: source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "key") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut by_key = HashMap::new();
        for file in files {
            let cert = cert::read_public(&file)?;
            by_key.insert(
                cert.public,
                AuthorizedAgent { key: cert.public, name: cert.name, file: cert.path },
            );
        }
        Ok(Some(AuthorizedKeys { by_key }))
    }

    /// The entry for `key`, if it is authorized.
    pub fn get(&self, key: &PublicKey) -> Option<&AuthorizedAgent> {
        self.by_key.get(key)
    }

    /// Number of authorized keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when the directory holds no keys (so nobody gets in).
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyPair;

    #[test]
    fn missing_dir_means_no_allowlist() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuthorizedKeys::load(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn loads_public_keys_and_skips_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        cert::write_pair(dir.path(), "web-01", &a, "web-01", false).unwrap();
        cert::write_pair(dir.path(), "db", &b, "", false).unwrap();
        fs::write(dir.path().join("README"), "not a key").unwrap();
        let keys = AuthorizedKeys::load(dir.path()).unwrap().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(&a.public).unwrap().name.as_deref(), Some("web-01"));
        assert_eq!(keys.get(&b.public).unwrap().name, None);
        let stranger = KeyPair::generate().unwrap();
        assert!(keys.get(&stranger.public).is_none());
    }

    #[test]
    fn a_bad_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bad.key"), "curve\n  public-key = \"x\"\n").unwrap();
        let err = AuthorizedKeys::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.key:2:"), "{err}");
    }
}

/// Whether `name` can be an allowlist file name and a pinned host name:
/// 1 to 64 of letters, digits, `.`, `_` and `-`, not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Adds an agent's public certificate to the allowlist in `dir` as
/// `NAME.key`, pinning the agent to host name `name`.
///
/// # Errors
/// A malformed certificate, a name that cannot be a file name, an existing
/// entry without `force`, or an I/O error.
pub fn allow(dir: &Path, certificate: &Path, name: &str, force: bool) -> Result<PathBuf, KeyError> {
    let mut cert = cert::read_public(certificate)?;
    if !valid_name(name) {
        return Err(KeyError::Parse {
            path: certificate.to_path_buf(),
            line: 0,
            expected: format!(
                "a name of letters, digits, '.', '_' and '-' (got {name:?}); pass --name"
            ),
        });
    }
    cert.name = Some(name.to_string());
    cert::write_public(dir, &format!("{name}.key"), &cert, force)
}

/// Removes `NAME.key` from the allowlist in `dir`.
///
/// # Errors
/// [`KeyError::Parse`] listing the existing names when there is no such
/// entry, or an I/O error.
pub fn revoke(dir: &Path, name: &str) -> Result<PathBuf, KeyError> {
    let path = dir.join(format!("{name}.key"));
    if !valid_name(name) || !path.is_file() {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name().to_str()?.strip_suffix(".key").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        return Err(KeyError::Parse {
            path,
            line: 0,
            expected: format!("an allowed agent name; the allowlist has: {}", names.join(", ")),
        });
    }
    fs::remove_file(&path).map_err(|source| KeyError::Io {
        path: path.clone(),
        action: "removing",
        error: source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod workflow_tests {
    use super::*;
    use crate::key::KeyPair;

    #[test]
    fn allow_pins_and_revoke_removes() {
        let dir = tempfile::tempdir().unwrap();
        let agent = KeyPair::generate().unwrap();
        let (public, _) =
            cert::write_pair(&dir.path().join("agent"), "agent", &agent, "laptop", false).unwrap();
        let allow_dir = dir.path().join("authorized_agents");
        let written = allow(&allow_dir, &public, "web-01", false).unwrap();
        assert_eq!(written, allow_dir.join("web-01.key"));
        let list = AuthorizedKeys::load(&allow_dir).unwrap().unwrap();
        assert_eq!(
            list.get(&agent.public).unwrap().name.as_deref(),
            Some("web-01"),
            "pinned to the given name"
        );
        assert!(matches!(
            allow(&allow_dir, &public, "web-01", false),
            Err(KeyError::Exists { .. })
        ));
        assert!(allow(&allow_dir, &public, "../etc/passwd", false).is_err());
        let err = revoke(&allow_dir, "web-02").unwrap_err().to_string();
        assert!(err.contains("the allowlist has: web-01"), "{err}");
        revoke(&allow_dir, "web-01").unwrap();
        assert!(AuthorizedKeys::load(&allow_dir).unwrap().unwrap().is_empty());
    }
}
