//! The validated configuration [`crate::run`] takes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use crate::{cli::RunArgs, registry::Liveness};

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
    /// What the config file adds (remote-write targets).
    pub file: crate::config_file::FileConfig,
}

impl Config {
    /// Resolves defaults and checks values.
    ///
    /// # Errors
    /// A message naming the flag and what it expects.
    pub fn from_args(args: RunArgs) -> anyhow::Result<Self> {
        let keys_dir = curvemon_keys::keygen::key_dir(args.keys)?;
        if !args.listen.starts_with("tcp://") {
            bail!(
                "--listen {:?}: expected tcp://ADDRESS:PORT, for example tcp://0.0.0.0:5556",
                args.listen
            );
        }
        if args.retention < Duration::from_secs(60) {
            bail!("--retention {:?}: expected at least 1m", args.retention);
        }
        if args.retention_size < 1 << 20 {
            bail!("--retention-size {}: expected at least 1MiB", args.retention_size);
        }
        if args.max_agent_rate.is_nan() || args.max_agent_rate < 1.0 {
            bail!("--max-agent-rate {}: expected at least 1 message a second", args.max_agent_rate);
        }
        if args.app_step < Duration::from_secs(1) || args.app_step > Duration::from_secs(300) {
            bail!("--app-step {:?}: expected between 1s and 5m", args.app_step);
        }
        if args.stream_queue == 0 {
            bail!("--stream-queue must be at least 1");
        }
        if args.ping_interval < Duration::from_millis(100) {
            bail!("--ping-interval {:?} is too short: at least 100ms", args.ping_interval);
        }
        if let (Some(stale), Some(down)) = (args.stale_after, args.down_after)
            && down < stale
        {
            bail!("--down-after ({down:?}) must not be shorter than --stale-after ({stale:?})");
        }
        let http_token = match &args.http_token_file {
            Some(path) => Some(read_token(path)?),
            None if args.http.ip().is_loopback() || args.http_insecure => None,
            None => bail!(
                "--http {} is reachable from other machines: give --http-token-file FILE (a secret \
                 of your choice, mode 0600), or --http-insecure to serve without one",
                args.http
            ),
        };
        let file = match &args.config {
            Some(path) => crate::config_file::load(path)?,
            None => crate::config_file::FileConfig::default(),
        };
        Ok(Config {
            file,
            keys_dir,
            listen: args.listen,
            http: args.http,
            ping_interval: args.ping_interval,
            liveness: Liveness { stale_after: args.stale_after, down_after: args.down_after },
            data_dir: args.data_dir,
            retention: args.retention,
            retention_size: args.retention_size,
            stream_queue: args.stream_queue,
            http_token,
            metrics_public: args.metrics_public,
            max_rate: args.max_agent_rate,
            app_step: args.app_step,
        })
    }

    /// The allowlist directory.
    pub fn allow_dir(&self) -> PathBuf {
        self.keys_dir.join("authorized_agents")
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
