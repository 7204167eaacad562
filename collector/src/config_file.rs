//! The collector's config file (`--config`, e.g. `/etc/curvemon/collector.toml`):
//! what does not fit a flag. Today: `[[remote_write]]` targets. Every
//! error names the file, the line and what was expected.
//!
//! ```toml
//! [[remote_write]]
//! url = "http://prometheus:9090/api/v1/write"
//! # name = "prometheus"            # its position in the journal; default: the URL
//! # headers = { "X-Scope-OrgID" = "ops" }
//! # bearer_token_file = "/etc/curvemon/remote-write.token"
//! # ca_file = "/etc/curvemon/receiver-ca.pem"
//! # batch_values = 10000
//! # queue_samples = 8640000
//! # timeout = "30s"
//! # liveness_every = "15s"
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use crate::export::target::{self, Target};

/// A problem in the file, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    remote_write: Vec<Spanned<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Spanned<String>,
    name: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    bearer_token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    batch_values: Option<Spanned<usize>>,
    queue_samples: Option<Spanned<u64>>,
    timeout: Option<Spanned<String>>,
    liveness_every: Option<Spanned<String>>,
}

/// What the file configures.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// Remote-write targets.
    pub remote_write: Vec<Target>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Reads and checks the file.
///
/// # Errors
/// The file cannot be read, or a key is unknown, missing or wrong.
pub fn load(path: &Path) -> Result<FileConfig, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.to_path_buf(),
        line: 0,
        message: format!("cannot read it: {e}"),
    })?;
    parse(path, &text)
}

/// Parses `text` as the file `path`.
///
/// # Errors
/// As [`load`].
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, FileError> {
    let at = |offset: usize, message: String| FileError {
        file: path.to_path_buf(),
        line: line_of(text, offset),
        message,
    };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(offset, e.message().to_string())
    })?;
    let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| match v {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s.get_ref()) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            _ => Err(at(
                s.span().start,
                format!(
                    "{key} = {:?}: expected a duration of at least 1s, such as \"30s\"",
                    s.get_ref()
                ),
            )),
        },
    };
    let mut out = FileConfig::default();
    for section in &raw.remote_write {
        let start = section.span().start;
        let t = section.get_ref();
        let url = t.url.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(at(
                t.url.span().start,
                format!(
                    "url = {url:?}: expected http:// or https://, e.g. \"http://prometheus:9090/api/v1/write\""
                ),
            ));
        }
        let name = t.name.as_ref().map_or_else(|| url.clone(), |n| n.get_ref().clone());
        if out.remote_write.iter().any(|o: &Target| o.name == name) {
            let offset = t.name.as_ref().map_or(start, |n| n.span().start);
            return Err(at(
                offset,
                format!("[[remote_write]] {name:?} twice: give each target its own url or name"),
            ));
        }
        let batch_values = match &t.batch_values {
            None => target::DEFAULT_BATCH_VALUES,
            Some(v) if (100..=1_000_000).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(at(
                    v.span().start,
                    format!("batch_values = {}: expected 100 to 1000000", v.get_ref()),
                ));
            }
        };
        let queue_samples = match &t.queue_samples {
            None => target::DEFAULT_QUEUE_SAMPLES,
            Some(v) if *v.get_ref() >= 1 => *v.get_ref(),
            Some(v) => return Err(at(v.span().start, "queue_samples: expected at least 1".into())),
        };
        out.remote_write.push(Target {
            name,
            url: url.clone(),
            headers: t.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            bearer_token_file: t.bearer_token_file.clone(),
            ca_file: t.ca_file.clone(),
            batch_values,
            queue_samples,
            timeout: duration(&t.timeout, "timeout", target::DEFAULT_TIMEOUT)?,
            liveness_every: duration(
                &t.liveness_every,
                "liveness_every",
                target::DEFAULT_LIVENESS_EVERY,
            )?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_with_defaults() {
        let c = parse(
            Path::new("c.toml"),
            "[[remote_write]]\nurl = \"http://a:9090/api/v1/write\"\n\n[[remote_write]]\nurl = \"https://b/write\"\nname = \"b\"\nheaders = { \"X-Scope-OrgID\" = \"ops\" }\ntimeout = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.remote_write.len(), 2);
        assert_eq!(c.remote_write[0].name, "http://a:9090/api/v1/write");
        assert_eq!(c.remote_write[0].batch_values, target::DEFAULT_BATCH_VALUES);
        assert_eq!(c.remote_write[1].headers, [("X-Scope-OrgID".into(), "ops".into())]);
        assert_eq!(c.remote_write[1].timeout, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_file_line_and_what_was_expected() {
        let cases = [
            ("[[remote_write]]\nurl = \"ftp://x\"\n", 2, "expected http:// or https://"),
            ("[[remote_write]]\nurl = \"http://x\"\nbatch = 5\n", 3, "unknown field `batch`"),
            (
                "[[remote_write]]\nurl = \"http://x\"\ntimeout = \"soon\"\n",
                3,
                "expected a duration",
            ),
            ("\n\n[[remote_write]]\n", 3, "missing field `url`"),
            (
                "[[remote_write]]\nurl = \"http://x\"\n[[remote_write]]\nurl = \"http://x\"\n",
                3,
                "twice",
            ),
            ("[[remote_write]]\nurl = \"http://x\"\nbatch_values = 3\n", 3, "expected 100 to"),
        ];
        for (text, line, words) in cases {
            let e = parse(Path::new("/etc/curvemon/collector.toml"), text).unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("/etc/curvemon/collector.toml:{line}: ")),
                "{shown}"
            );
            assert!(shown.contains(words), "{shown}");
        }
    }
}
