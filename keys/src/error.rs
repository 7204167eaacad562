//! Everything that can be wrong with a key or a key file. Each variant names
//! the file and says what would fix it, because operators meet these errors
//! at install time with nothing else to go on.

use std::path::PathBuf;

use thiserror::Error;

/// An error reading, parsing, checking or writing keys.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Text is not valid Z85 of a 32-byte key.
    #[error("not a Z85-encoded 32-byte key: {0}")]
    BadZ85(String),
    /// A file could not be read or written.
    // The OS error is in the message and not a `source()`, so that a
    // chain printed with `{:#}` says it once.
    #[error("{path}: {action} failed: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// A certificate file is not in the expected format.
    #[error("{path}:{line}: {expected}")]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number (0 when the problem is the file as a whole).
        line: usize,
        /// What was expected there.
        expected: String,
    },
    /// A secret key file that others could read, or that another user owns.
    #[error("{path}: secret key is not private ({problem}); fix it with `{fix}` and start again")]
    Insecure {
        /// The secret key file.
        path: PathBuf,
        /// What is wrong, for example "mode 0644 lets group and others read it".
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// A key file exists and `--force` was not given.
    #[error(
        "{path} already exists; pass --force to replace it (agents or collectors using the old key will be refused)"
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// No `--keys` and no home directory for the default one.
    #[error("no home directory to hold the default key directory; pass --keys DIR")]
    NoKeyDir,
    /// The operating system had no randomness to give.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}
