//! The validated configuration [`crate::run`] takes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use crate::{
    cli::{LogFormat, RunArgs},
    config_file::Setting,
    registry::Liveness,
};

/// Application timers merge in steps of this long unless `--app-step`
/// says otherwise.
pub const DEFAULT_APP_STEP: Duration = Duration::from_secs(5);

/// Everything the collector needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory with `collector.key_secret` and `authorized_agents/`.
    pub keys_dir: PathBuf,
    /// ZeroMQ endpoint to bind.
    pub listen: String,
    /// HTTP address to bind.
    pub http: SocketAddr,
    /// Ping period.
    pub ping_interval: Duration,
    /// Stale and down windows.
    pub liveness: Liveness,
    /// Where the history store lives.
    pub data_dir: PathBuf,
    /// History older than this is deleted.
    pub retention: Duration,
    /// Past this many bytes of history, the oldest is deleted.
    pub retention_size: u64,
    /// Events queued per live-stream client before it is dropped.
    pub stream_queue: usize,
    /// The API token, if HTTP requires one.
    pub http_token: Option<String>,
    /// Serve /metrics without the token.
    pub metrics_public: bool,
    /// Messages per second one agent may send.
    pub max_rate: f64,
    /// Steps application timers merge in.
    pub app_step: Duration,
    /// How log lines look.
    pub log_format: LogFormat,
    /// What the config file adds (remote-write targets).
    pub file: crate::config_file::FileConfig,
}

impl Config {
    /// Resolves each value (a flag or its environment variable, else the
    /// config file's key, else the default) and checks it.
    ///
    /// # Errors
    /// A message naming the flag, or the file, line and key, and what it expects.
    pub fn from_args(args: RunArgs, log_format: Option<LogFormat>) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => crate::config_file::load(path)?,
            None => crate::config_file::FileConfig::default(),
        };
        let s = file.settings.clone();
        let at = Origins(&file.path);
        let (keys, _) = at.pick("keys", args.keys.map(Some), s.keys.map(|v| v.map(Some)), None);
        let keys_dir = curvemon_keys::keygen::key_dir(keys)?;
        let (listen, from) =
            at.pick("listen", args.listen, s.listen, "tcp://0.0.0.0:5556".to_string());
        if !listen.starts_with("tcp://") {
            bail!("{from} {listen:?}: expected tcp://ADDRESS:PORT, for example tcp://0.0.0.0:5556");
        }
        let (retention, from) =
            at.pick("retention", args.retention, s.retention, Duration::from_secs(15 * 86_400));
        if retention < Duration::from_secs(60) {
            bail!("{from} {retention:?}: expected at least 1m");
        }
        let (retention_size, from) =
            at.pick("retention_size", args.retention_size, s.retention_size, 20 << 30);
        if retention_size < 1 << 20 {
            bail!("{from} {retention_size}: expected at least 1MiB");
        }
        let (max_rate, from) =
            at.pick("max_agent_rate", args.max_agent_rate, s.max_agent_rate, 50.0);
        if max_rate.is_nan() || max_rate < 1.0 {
            bail!("{from} {max_rate}: expected at least 1 message a second");
        }
        let (app_step, from) = at.pick("app_step", args.app_step, s.app_step, DEFAULT_APP_STEP);
        if app_step < Duration::from_secs(1) || app_step > Duration::from_secs(300) {
            bail!("{from} {app_step:?}: expected between 1s and 5m");
        }
        let (stream_queue, from) = at.pick("stream_queue", args.stream_queue, s.stream_queue, 256);
        if stream_queue == 0 {
            bail!("{from} {stream_queue}: expected at least 1");
        }
        let (ping_interval, from) =
            at.pick("ping_interval", args.ping_interval, s.ping_interval, Duration::from_secs(10));
        if ping_interval < Duration::from_millis(100) {
            bail!("{from} {ping_interval:?} is too short: at least 100ms");
        }
        let wrap = |v: Option<Setting<Duration>>| v.map(|v| v.map(Some));
        let (stale_after, stale_from) =
            at.pick("stale_after", args.stale_after.map(Some), wrap(s.stale_after), None);
        let (down_after, down_from) =
            at.pick("down_after", args.down_after.map(Some), wrap(s.down_after), None);
        if let (Some(stale), Some(down)) = (stale_after, down_after)
            && down < stale
        {
            bail!("{down_from} ({down:?}) must not be shorter than {stale_from} ({stale:?})");
        }
        let (http, http_from) =
            at.pick("http", args.http, s.http, SocketAddr::from(([127, 0, 0, 1], 8000)));
        let flag = |on: bool, file: Option<Setting<bool>>| on || file.is_some_and(|v| v.value);
        let http_insecure = flag(args.http_insecure, s.http_insecure);
        let (token_file, _) = at.pick(
            "http_token_file",
            args.http_token_file.map(Some),
            s.http_token_file.map(|v| v.map(Some)),
            None,
        );
        let http_token = match &token_file {
            Some(path) => Some(read_token(path)?),
            None if http.ip().is_loopback() || http_insecure => None,
            None => bail!(
                "{http_from} {http} is reachable from other machines: give --http-token-file FILE \
                 (a secret of your choice, mode 0600), or --http-insecure to serve without one"
            ),
        };
        let (data_dir, _) = at.pick(
            "data_dir",
            args.data_dir,
            s.data_dir,
            PathBuf::from("/var/lib/curvemon/collector"),
        );
        let (log_format, _) = at.pick("log_format", log_format, s.log_format, LogFormat::Text);
        Ok(Config {
            keys_dir,
            listen,
            http,
            ping_interval,
            liveness: Liveness { stale_after, down_after },
            data_dir,
            retention,
            retention_size,
            stream_queue,
            http_token,
            metrics_public: flag(args.metrics_public, s.metrics_public),
            max_rate,
            app_step,
            log_format,
            file,
        })
    }

    /// The allowlist directory.
    pub fn allow_dir(&self) -> PathBuf {
        self.keys_dir.join("authorized_agents")
    }
}

/// Says where a value came from, for messages: `--retention` for a flag (or
/// its environment variable) and the default, `FILE:LINE: retention` for the
/// config file.
struct Origins<'a>(&'a std::path::Path);

impl Origins<'_> {
    fn pick<T>(
        &self,
        key: &str,
        flag: Option<T>,
        file: Option<Setting<T>>,
        default: T,
    ) -> (T, String) {
        let flag_name = format!("--{}", key.replace('_', "-"));
        match (flag, file) {
            (Some(value), _) => (value, flag_name),
            (None, Some(setting)) => {
                (setting.value, format!("{}:{}: {key}", self.0.display(), setting.line))
            }
            (None, None) => (default, flag_name),
        }
    }
}

/// Reads the API token: the file must be private (as a secret key) and hold
/// one token of at least 16 characters.
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    curvemon_keys::cert::check_private(path)?;
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the API token {}", path.display()))?
        .trim()
        .to_string();
    if token.len() < 16 || token.contains(char::is_whitespace) {
        bail!("{}: expected one token of at least 16 characters without spaces", path.display());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn resolve(file: &str, flags: &[&str]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["collector", "--keys", "/nonexistent/keys", "--config"];
        argv.push(path.to_str().unwrap());
        argv.extend_from_slice(flags);
        let cli = Cli::try_parse_from(argv).unwrap();
        Config::from_args(cli.run, cli.log_format)
    }

    #[test]
    fn every_flag_has_a_key_and_a_flag_wins_over_the_file() {
        let file = "keys = \"/k\"\nlisten = \"tcp://127.0.0.1:6000\"\nhttp = \"127.0.0.1:9000\"\n\
            ping_interval = \"2s\"\nstale_after = \"3s\"\ndown_after = \"9s\"\nmetrics_public = true\n\
            max_agent_rate = 7.5\ndata_dir = \"/d\"\nretention = \"2d\"\nretention_size = \"2GiB\"\n\
            app_step = \"10s\"\nstream_queue = 9\nlog_format = \"json\"\n";
        let c = resolve(file, &[]).unwrap();
        assert_eq!(c.listen, "tcp://127.0.0.1:6000");
        assert_eq!(c.http, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.ping_interval, Duration::from_secs(2));
        assert_eq!(c.liveness.stale_after, Some(Duration::from_secs(3)));
        assert_eq!(c.liveness.down_after, Some(Duration::from_secs(9)));
        assert!(c.metrics_public);
        assert!((c.max_rate - 7.5).abs() < f64::EPSILON);
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(c.retention_size, 2 << 30);
        assert_eq!(c.app_step, Duration::from_secs(10));
        assert_eq!(c.stream_queue, 9);
        assert_eq!(c.log_format, LogFormat::Json);
        // The flag's --keys wins over the file's keys.
        assert_eq!(c.keys_dir, PathBuf::from("/nonexistent/keys"));
        let c = resolve(file, &["--listen", "tcp://127.0.0.1:7000", "--retention", "3d"]).unwrap();
        assert_eq!(c.listen, "tcp://127.0.0.1:7000");
        assert_eq!(c.retention, Duration::from_secs(3 * 86_400));
        assert_eq!(c.app_step, Duration::from_secs(10));
        let c = resolve("", &[]).unwrap();
        assert_eq!(c.listen, "tcp://0.0.0.0:5556");
        assert_eq!(c.retention_size, 20 << 30);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn a_bad_value_names_its_file_and_line_or_its_flag() {
        let e = resolve("\nretention = \"30s\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("collector.toml:2: retention 30s: expected at least 1m"), "{e}");
        let e = resolve("", &["--retention", "30s"]).unwrap_err().to_string();
        assert!(e.starts_with("--retention 30s: expected at least 1m"), "{e}");
        let e = resolve("http = \"0.0.0.0:80\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("collector.toml:1: http 0.0.0.0:80 is reachable"), "{e}");
        let e =
            resolve("stale_after = \"20s\"\n", &["--down-after", "5s"]).unwrap_err().to_string();
        assert!(e.contains("--down-after (5s) must not be shorter than"), "{e}");
        assert!(e.contains("collector.toml:1: stale_after"), "{e}");
        for (text, words) in [
            ("listen = 5\n", "collector.toml:1: invalid type"),
            ("http = \"here\"\n", "collector.toml:1: http = \"here\": expected ADDRESS:PORT"),
            (
                "retention_size = \"lots\"\n",
                "collector.toml:1: retention_size = \"lots\": expected a size",
            ),
            ("\nping_interval = \"often\"\n", "collector.toml:2: ping_interval = "),
            ("log_format = \"xml\"\n", "collector.toml:1: unknown variant `xml`"),
            ("\n\nlisen = \"x\"\n", "collector.toml:3: unknown field `lisen`"),
        ] {
            let e = resolve(text, &[]).unwrap_err().to_string();
            assert!(e.contains(words), "{text:?}: {e}");
        }
    }
}
