//! The collector's config file (`--config`, e.g. `/etc/curvemon/collector.toml`):
//! every flag as a key of the same name (a flag or its environment variable
//! wins), and what does not fit a flag: `[[remote_write]]` targets. Every
//! error names the file, the line and what was expected.
//!
//! ```toml
//! listen = "tcp://0.0.0.0:5556"
//! http = "127.0.0.1:8000"
//! retention = "15d"
//!
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
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    cli::{LogFormat, parse_bytes, parse_duration},
    export::target::{self, Target},
};

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
    keys: Option<Spanned<PathBuf>>,
    listen: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    ping_interval: Option<Spanned<String>>,
    stale_after: Option<Spanned<String>>,
    down_after: Option<Spanned<String>>,
    http_token_file: Option<Spanned<PathBuf>>,
    http_insecure: Option<Spanned<bool>>,
    metrics_public: Option<Spanned<bool>>,
    max_agent_rate: Option<Spanned<f64>>,
    data_dir: Option<Spanned<PathBuf>>,
    retention: Option<Spanned<String>>,
    retention_size: Option<Spanned<Size>>,
    app_step: Option<Spanned<String>>,
    stream_queue: Option<Spanned<usize>>,
    log_format: Option<Spanned<LogFormat>>,
    #[serde(default)]
    remote_write: Vec<Spanned<RawTarget>>,
}

/// `retention_size = "20GiB"` or `retention_size = 21474836480`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A value from the file and the line it is on, so that a check made later
/// (against the flags) can still say where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// 1-based line.
    pub line: usize,
}

impl<T> Setting<T> {
    /// The same line with the value changed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Setting<U> {
        Setting { value: f(self.value), line: self.line }
    }
}

/// The flags' keys, each absent when the file does not set it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `keys`: the key directory.
    pub keys: Option<Setting<PathBuf>>,
    /// `listen`: the ZeroMQ endpoint.
    pub listen: Option<Setting<String>>,
    /// `http`: the HTTP address.
    pub http: Option<Setting<SocketAddr>>,
    /// `ping_interval`.
    pub ping_interval: Option<Setting<Duration>>,
    /// `stale_after`.
    pub stale_after: Option<Setting<Duration>>,
    /// `down_after`.
    pub down_after: Option<Setting<Duration>>,
    /// `http_token_file`.
    pub http_token_file: Option<Setting<PathBuf>>,
    /// `http_insecure`.
    pub http_insecure: Option<Setting<bool>>,
    /// `metrics_public`.
    pub metrics_public: Option<Setting<bool>>,
    /// `max_agent_rate`.
    pub max_agent_rate: Option<Setting<f64>>,
    /// `data_dir`.
    pub data_dir: Option<Setting<PathBuf>>,
    /// `retention`.
    pub retention: Option<Setting<Duration>>,
    /// `retention_size`, in bytes.
    pub retention_size: Option<Setting<u64>>,
    /// `app_step`.
    pub app_step: Option<Setting<Duration>>,
    /// `stream_queue`.
    pub stream_queue: Option<Setting<usize>>,
    /// `log_format`.
    pub log_format: Option<Setting<LogFormat>>,
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
    /// The file, for messages about its values.
    pub path: PathBuf,
    /// The flags' keys.
    pub settings: Settings,
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
    let mut out = FileConfig {
        path: path.to_path_buf(),
        settings: settings(&raw, &at)?,
        ..Default::default()
    };
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

/// The flags' keys: durations, sizes and addresses parsed as their flags
/// parse them, each kept with its line.
fn settings(raw: &Raw, at: &dyn Fn(usize, String) -> FileError) -> Result<Settings, FileError> {
    let line = |offset: usize| at(offset, String::new()).line;
    let plain = &line;
    fn keep<T: Clone>(v: &Option<Spanned<T>>, line: &dyn Fn(usize) -> usize) -> Option<Setting<T>> {
        v.as_ref().map(|v| Setting { value: v.get_ref().clone(), line: line(v.span().start) })
    }
    let duration = |v: &Option<Spanned<String>>, key: &str| -> Result<_, FileError> {
        v.as_ref()
            .map(|v| {
                parse_duration(v.get_ref())
                    .map(|value| Setting { value, line: line(v.span().start) })
                    .map_err(|e| at(v.span().start, format!("{key} = {e}")))
            })
            .transpose()
    };
    let http = raw
        .http
        .as_ref()
        .map(|v| {
            v.get_ref().parse().map(|value| Setting { value, line: line(v.span().start) }).map_err(
                |_| {
                    at(
                        v.span().start,
                        format!(
                            "http = {:?}: expected ADDRESS:PORT, e.g. \"127.0.0.1:8000\"",
                            v.get_ref()
                        ),
                    )
                },
            )
        })
        .transpose()?;
    let retention_size = raw
        .retention_size
        .as_ref()
        .map(|v| {
            let value = match v.get_ref() {
                Size::Bytes(n) => Ok(*n),
                Size::Text(text) => parse_bytes(text),
            };
            value
                .map(|value| Setting { value, line: line(v.span().start) })
                .map_err(|e| at(v.span().start, format!("retention_size = {e}")))
        })
        .transpose()?;
    Ok(Settings {
        keys: keep(&raw.keys, plain),
        listen: keep(&raw.listen, plain),
        http,
        ping_interval: duration(&raw.ping_interval, "ping_interval")?,
        stale_after: duration(&raw.stale_after, "stale_after")?,
        down_after: duration(&raw.down_after, "down_after")?,
        http_token_file: keep(&raw.http_token_file, plain),
        http_insecure: keep(&raw.http_insecure, plain),
        metrics_public: keep(&raw.metrics_public, plain),
        max_agent_rate: keep(&raw.max_agent_rate, plain),
        data_dir: keep(&raw.data_dir, plain),
        retention: duration(&raw.retention, "retention")?,
        retention_size,
        app_step: duration(&raw.app_step, "app_step")?,
        stream_queue: keep(&raw.stream_queue, plain),
        log_format: keep(&raw.log_format, plain),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's settings switched on: `#key = value`, `#[table]` and
    /// indented continuation lines lose their `#`; prose (`# Text`) stays.
    fn uncomment(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with("  ") || !rest.starts_with([' ', '#']) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The packages install this file as /etc/curvemon/collector.toml:
    /// valid as shipped, and with every example setting switched on.
    #[test]
    fn the_packaged_example_is_valid_commented_and_uncommented() {
        let text = include_str!("../../dist/etc/collector.toml");
        let shipped = parse(Path::new("collector.toml"), text).unwrap();
        assert!(shipped.remote_write.is_empty() && shipped.settings.listen.is_none());
        let on = uncomment(text);
        let all = parse(Path::new("collector.toml"), &on).unwrap_or_else(|e| panic!("{e}\n{on}"));
        assert_eq!(all.remote_write.len(), 1, "{on}");
        assert_eq!(all.remote_write[0].headers, [("X-Scope-OrgID".into(), "fleet".into())]);
        let listen = all.settings.listen.map(|s| s.value);
        assert_eq!(listen.as_deref(), Some("tcp://0.0.0.0:5556"));
        assert!(all.settings.log_format.is_some() && all.settings.stream_queue.is_some());
    }

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
