//! Certificate files in CZMQ's `zcert` format.
//!
//! `NAME.key` (public, mode 0644) and `NAME.key_secret` (both keys, mode 0600):
//!
//! ```text
//! #   ****  Generated on 2026-11-21T10:00:00Z by curvemon  ****
//! #   ZeroMQ CURVE **Secret** Certificate
//! #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.
//!
//! metadata
//!     name = "web-01"
//! curve
//!     public-key = "<40 Z85 characters>"
//!     secret-key = "<40 Z85 characters>"
//! ```
//!
//! Files are written to a temporary name with their final mode from the
//! first byte (no chmod after the write), synced, then linked into place, so
//! a reader never sees a half-written or briefly world-readable key.

use std::{
    fs::{self, DirBuilder, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::{
    error::KeyError,
    key::{KeyPair, PublicKey, SecretKey},
    zpl,
};

/// A public certificate: a key, and the host name it may use if pinned.
#[derive(Debug, Clone)]
pub struct PublicCert {
    /// The public key.
    pub public: PublicKey,
    /// `metadata/name`, if present and not empty.
    pub name: Option<String>,
    /// Where it was read from.
    pub path: PathBuf,
}

/// A secret certificate: the whole key pair.
#[derive(Debug, Clone)]
pub struct SecretCert {
    /// Both keys.
    pub pair: KeyPair,
    /// `metadata/name`, if present and not empty.
    pub name: Option<String>,
    /// Where it was read from.
    pub path: PathBuf,
}

/// The file name of the secret half of `public_path` (CZMQ's convention).
pub fn secret_path(public_path: &Path) -> PathBuf {
    let mut name = public_path.as_os_str().to_owned();
    name.push("_secret");
    PathBuf::from(name)
}

/// Reads a public certificate (a secret certificate also works: only its
/// public key is taken).
///
/// # Errors
/// [`KeyError::Io`] when unreadable, [`KeyError::Parse`] with the line when
/// malformed.
pub fn read_public(path: &Path) -> Result<PublicCert, KeyError> {
    let parsed = read_cert(path)?;
    let public = parsed.key("curve/public-key", path)?;
    Ok(PublicCert { public, name: parsed.name(), path: path.to_path_buf() })
}

/// Reads a secret certificate after checking that only its owner can read it
/// and that its owner is the user running this process (or root).
///
/// # Errors
/// [`KeyError::Insecure`] naming the file and the fixing command, besides the
/// errors of [`read_public`]; also when the public key in the file does not
/// match the secret key.
pub fn read_secret(path: &Path) -> Result<SecretCert, KeyError> {
    check_private(path)?;
    let parsed = read_cert(path)?;
    let public = parsed.key("curve/public-key", path)?;
    let (text, line) = parsed.value("curve/secret-key", path)?;
    let secret = SecretKey::from_z85(&text).map_err(|e| KeyError::Parse {
        path: path.to_path_buf(),
        line,
        expected: format!("secret-key: {e}"),
    })?;
    let pair = KeyPair::from_secret(secret);
    if pair.public != public {
        return Err(KeyError::Parse {
            path: path.to_path_buf(),
            line,
            expected: "a secret-key that matches the public-key in the same file".into(),
        });
    }
    Ok(SecretCert { pair, name: parsed.name(), path: path.to_path_buf() })
}

/// Refuses a secret key file that group or others may read, or that belongs
/// to another user, as ssh does for private keys.
///
/// # Errors
/// [`KeyError::Insecure`] or [`KeyError::Io`].
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        action: "reading",
        error: source,
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Insecure {
            path: path.to_path_buf(),
            problem: format!("mode {mode:04o} lets group or others read it"),
            fix: format!("chmod 600 {}", path.display()),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(KeyError::Insecure {
            path: path.to_path_buf(),
            problem: format!("owned by uid {}, not by uid {me} that runs this process", meta.uid()),
            fix: format!("chown {me} {}", path.display()),
        });
    }
    Ok(())
}

/// Writes `DIR/BASE.key` and `DIR/BASE.key_secret` for a key pair, creating
/// DIR (mode 0700) if needed. Without `force`, an existing file is an error
/// and nothing is written.
///
/// # Errors
/// [`KeyError::Exists`] or [`KeyError::Io`].
pub fn write_pair(
    dir: &Path,
    base: &str,
    pair: &KeyPair,
    name: &str,
    force: bool,
) -> Result<(PathBuf, PathBuf), KeyError> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        action: "creating directory",
        error: source,
    })?;
    let public_path = dir.join(format!("{base}.key"));
    let secret_path = secret_path(&public_path);
    if !force {
        for path in [&public_path, &secret_path] {
            if path.exists() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
    }
    let public = pair.public.to_z85();
    let secret_text = format!(
        "{}\nmetadata\n    name = {}\ncurve\n    public-key = {}\n    secret-key = {}\n",
        header("Secret"),
        zpl::quote(name),
        zpl::quote(&public),
        zpl::quote(&pair.secret.to_z85()),
    );
    let public_text = format!(
        "{}\nmetadata\n    name = {}\ncurve\n    public-key = {}\n",
        header("Public"),
        zpl::quote(name),
        zpl::quote(&public),
    );
    // Secret first: a public file without its secret is harmless, the reverse
    // would leave a key pair nobody can prove to own.
    write_atomic(&secret_path, secret_text.as_bytes(), 0o600, force)?;
    write_atomic(&public_path, public_text.as_bytes(), 0o644, force)?;
    Ok((public_path, secret_path))
}

/// Copies a public certificate into `dir` as `FILE_NAME` (mode 0644), for the
/// allowlist and for handing the collector's key to agents.
///
/// # Errors
/// [`KeyError::Exists`] without `force`, or [`KeyError::Io`].
pub fn write_public(
    dir: &Path,
    file_name: &str,
    cert: &PublicCert,
    force: bool,
) -> Result<PathBuf, KeyError> {
    DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        action: "creating directory",
        error: source,
    })?;
    let path = dir.join(file_name);
    let text = format!(
        "{}\nmetadata\n    name = {}\ncurve\n    public-key = {}\n",
        header("Public"),
        zpl::quote(cert.name.as_deref().unwrap_or("")),
        zpl::quote(&cert.public.to_z85()),
    );
    write_atomic(&path, text.as_bytes(), 0o644, force)?;
    Ok(path)
}

fn header(kind: &str) -> String {
    let when = humantime::format_rfc3339_seconds(SystemTime::now());
    let warning = if kind == "Secret" {
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
    } else {
        "#   Share this file with the peers that must recognise this key.\n"
    };
    format!(
        "#   ****  Generated on {when} by curvemon  ****\n#   ZeroMQ CURVE **{kind}** Certificate\n{warning}"
    )
}

/// Temp file with the final mode → write → fsync → link (no overwrite) or
/// rename (overwrite) → fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> Result<(), KeyError> {
    let io = |action: &'static str, target: &Path| {
        let target = target.to_path_buf();
        move |source| KeyError::Io { path: target, action, error: source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let placed = written
        .and_then(|()| if overwrite { fs::rename(&tmp, path) } else { fs::hard_link(&tmp, path) });
    let _ = fs::remove_file(&tmp);
    placed.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.to_path_buf() }
        } else {
            KeyError::Io { path: path.to_path_buf(), action: "writing", error: source }
        }
    })?;
    if let Ok(dir_handle) = fs::File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

struct ParsedCert(Vec<zpl::Entry>);

fn read_cert(path: &Path) -> Result<ParsedCert, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        action: "reading",
        error: source,
    })?;
    zpl::parse(&text).map(ParsedCert).map_err(|e| KeyError::Parse {
        path: path.to_path_buf(),
        line: e.line,
        expected: e.expected,
    })
}

impl ParsedCert {
    fn value(&self, key: &str, path: &Path) -> Result<(String, usize), KeyError> {
        self.0
            .iter()
            .find(|e| e.path == key)
            .and_then(|e| e.value.clone().map(|v| (v, e.line)))
            .ok_or_else(|| KeyError::Parse {
                path: path.to_path_buf(),
                line: 0,
                expected: format!(
                    "a `{}` property in a `{}` section (a CZMQ CURVE certificate)",
                    key.rsplit('/').next().unwrap_or(key),
                    key.split('/').next().unwrap_or(key)
                ),
            })
    }

    fn key(&self, key: &str, path: &Path) -> Result<PublicKey, KeyError> {
        let (text, line) = self.value(key, path)?;
        text.parse().map_err(|e| KeyError::Parse {
            path: path.to_path_buf(),
            line,
            expected: format!("{}: {e}", key.rsplit('/').next().unwrap_or(key)),
        })
    }

    fn name(&self) -> Option<String> {
        self.0
            .iter()
            .find(|e| e.path == "metadata/name")
            .and_then(|e| e.value.clone())
            .filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_reads_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let pair = KeyPair::generate().unwrap();
        let (public, secret) = write_pair(&keys, "agent", &pair, "web-01", false).unwrap();
        assert_eq!(fs::metadata(&secret).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&public).unwrap().mode() & 0o777, 0o644);
        assert_eq!(fs::metadata(&keys).unwrap().mode() & 0o777, 0o700);

        let read = read_secret(&secret).unwrap();
        assert_eq!(read.pair.public, pair.public);
        assert_eq!(read.pair.secret.as_bytes(), pair.secret.as_bytes());
        assert_eq!(read.name.as_deref(), Some("web-01"));
        let pub_only = read_public(&public).unwrap();
        assert_eq!(pub_only.public, pair.public);
        assert!(!fs::read_to_string(&public).unwrap().contains("secret-key"));

        let other = KeyPair::generate().unwrap();
        let err = write_pair(&keys, "agent", &other, "x", false).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert_eq!(read_public(&public).unwrap().public, pair.public, "old key untouched");
        write_pair(&keys, "agent", &other, "x", true).unwrap();
        assert_eq!(read_public(&public).unwrap().public, other.public);
        assert_eq!(fs::metadata(&secret).unwrap().mode() & 0o777, 0o600);
        let leftovers: Vec<_> =
            fs::read_dir(&keys).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temp files left: {leftovers:?}");
    }

    #[test]
    fn refuses_readable_secret_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let pair = KeyPair::generate().unwrap();
        let (_, secret) = write_pair(dir.path(), "agent", &pair, "h", false).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&secret).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&secret.display().to_string()), "{text}");
        assert!(text.contains("0644"), "{text}");
        assert!(text.contains(&format!("chmod 600 {}", secret.display())), "{text}");
    }

    #[test]
    fn reads_a_czmq_written_certificate() {
        // Byte for byte what czmq's zcert_save_public writes (zcert.c).
        let text = "#   ****  Generated on 2024-01-01 10:00:00 by CZMQ  ****\n\
#   ZeroMQ CURVE Public Certificate\n\
#   Exchange securely, or use a secure mechanism to verify the contents\n\
#   of this file after exchange. Store public certificates in your home\n\
#   directory, in the .curve subdirectory.\n\n\
metadata\n\
curve\n    public-key = \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\"\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.key");
        fs::write(&path, text).unwrap();
        let cert = read_public(&path).unwrap();
        assert_eq!(cert.public.to_z85(), "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
        assert_eq!(cert.name, None);
    }

    #[test]
    fn names_file_and_line_of_a_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        fs::write(&path, "curve\n    public-key = \"tooshort\"\n").unwrap();
        let text = read_public(&path).unwrap_err().to_string();
        assert!(text.starts_with(&format!("{}:2: public-key", path.display())), "{text}");
        fs::write(&path, "metadata\n").unwrap();
        let text = read_public(&path).unwrap_err().to_string();
        assert!(text.contains("public-key"), "{text}");
    }

    #[test]
    fn refuses_mismatched_pair() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        let path = dir.path().join("x.key_secret");
        let text = format!(
            "curve\n    public-key = \"{}\"\n    secret-key = \"{}\"\n",
            a.public.to_z85(),
            b.secret.to_z85()
        );
        write_atomic(&path, text.as_bytes(), 0o600, false).unwrap();
        assert!(read_secret(&path).unwrap_err().to_string().contains("matches"));
    }
}
