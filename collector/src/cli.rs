//! Command-line flags. Every flag also reads an environment variable so that
//! a systemd `EnvironmentFile=` can configure the collector.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `collector [OPTIONS]` or `collector keygen`.
#[derive(Debug, Parser)]
#[command(
    name = "curvemon-collector",
    version,
    about = "curvemon collector: receives agents over CURVE-encrypted ZeroMQ, tracks which hosts are alive, serves a JSON API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand instead of running the collector.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for running the collector.
    #[command(flatten)]
    pub run: RunArgs,
    /// Log format on stderr [default: the config file's log_format, else text].
    #[arg(long, env = "CURVEMON_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the collector's key pair: DIR/collector.key (public, give it
    /// to every agent) and DIR/collector.key_secret (mode 0600).
    Keygen(KeygenArgs),
    /// Admit an agent: copy its public key file (agent.key) into
    /// DIR/authorized_agents/NAME.key, pinning it to host name NAME. A
    /// running collector picks it up within seconds.
    Allow(AllowArgs),
    /// Revoke an agent: remove DIR/authorized_agents/NAME.key. A running
    /// collector cuts its session within seconds and shows it down.
    Revoke(RevokeArgs),
}

/// Flags of `collector allow`.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// The agent's public key file (agent.key).
    #[arg(value_name = "PUBLIC_KEY_FILE")]
    pub certificate: PathBuf,
    /// Key directory [default: ~/.config/curvemon/keys].
    #[arg(long, env = "CURVEMON_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// The host name the agent must use [default: the name in the key file].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace an existing entry of that name.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `collector revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The name given to `collector allow`.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Key directory [default: ~/.config/curvemon/keys].
    #[arg(long, env = "CURVEMON_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
}

/// Flags of `collector keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key directory [default: ~/.config/curvemon/keys].
    #[arg(long, env = "CURVEMON_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Replace an existing key pair (every agent then needs the new collector.key).
    #[arg(long)]
    pub force: bool,
}

/// Flags for running the collector. Each has a key of the same name in the
/// config file (`listen`, `ping_interval`, ...); a flag or its environment
/// variable wins over the file, the file over the default.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Key directory with collector.key_secret and, optionally,
    /// authorized_agents/ [default: ~/.config/curvemon/keys].
    #[arg(long, env = "CURVEMON_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// The config file, e.g. /etc/curvemon/collector.toml: every flag below
    /// as a key, and [[remote_write]] targets (docs/install.md).
    #[arg(long, env = "CURVEMON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ZeroMQ endpoint agents connect to [default: tcp://0.0.0.0:5556].
    #[arg(long, env = "CURVEMON_LISTEN", value_name = "ENDPOINT")]
    pub listen: Option<String>,
    /// Address of the HTTP API and page [default: 127.0.0.1:8000].
    #[arg(long, env = "CURVEMON_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// How often to ping every agent (agents reconnect after their
    /// --stale-after without hearing anything) [default: 10s].
    #[arg(long, env = "CURVEMON_PING_INTERVAL", value_parser = parse_duration, value_name = "DUR")]
    pub ping_interval: Option<Duration>,
    /// A host is stale after this long without a message [default: 3 agent intervals].
    #[arg(long, env = "CURVEMON_STALE_AFTER", value_parser = parse_duration, value_name = "DUR")]
    pub stale_after: Option<Duration>,
    /// A host is down after this long without a message [default: 10 agent intervals].
    #[arg(long, env = "CURVEMON_DOWN_AFTER", value_parser = parse_duration, value_name = "DUR")]
    pub down_after: Option<Duration>,
    /// File holding the API token (one line, mode 0600). Required when
    /// --http is not a loopback address.
    #[arg(long, env = "CURVEMON_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<std::path::PathBuf>,
    /// Serve a non-loopback --http without a token (anyone who reaches it
    /// sees the fleet).
    #[arg(long, env = "CURVEMON_HTTP_INSECURE")]
    pub http_insecure: bool,
    /// Serve /metrics without the token (for a Prometheus without credentials).
    #[arg(long, env = "CURVEMON_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Messages per second one agent may send (a burst of twice as many is
    /// allowed); more are dropped, counted and logged. An agent sends one
    /// metrics message per interval and a few control messages [default: 50].
    #[arg(long, env = "CURVEMON_MAX_AGENT_RATE", value_name = "PER_SECOND")]
    pub max_agent_rate: Option<f64>,
    /// Where the history store lives (docs/reliability.md)
    /// [default: /var/lib/curvemon/collector].
    #[arg(long, env = "CURVEMON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// History older than this is deleted [default: 15d].
    #[arg(long, env = "CURVEMON_RETENTION", value_parser = parse_duration, value_name = "DUR")]
    pub retention: Option<Duration>,
    /// Past this much stored history, the oldest is deleted, e.g. 20GiB
    /// [default: 20GiB].
    #[arg(long, env = "CURVEMON_RETENTION_SIZE", value_parser = parse_bytes, value_name = "SIZE")]
    pub retention_size: Option<u64>,
    /// Application timers' calls per second and percentiles are computed
    /// over steps this long, merged across instances [default: 5s].
    #[arg(long, env = "CURVEMON_APP_STEP", value_parser = parse_duration, value_name = "DUR")]
    pub app_step: Option<Duration>,
    /// Events queued per live-stream (SSE) client; a client that falls this
    /// far behind is disconnected (browsers reconnect and resume) [default: 256].
    #[arg(long, env = "CURVEMON_STREAM_QUEUE", value_name = "EVENTS")]
    pub stream_queue: Option<usize>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `20GiB`, `512MiB`, `1000000000`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?}: expected a size such as 20GiB or 512MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(format!("{text:?}: expected a size such as 20GiB or 512MiB")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses `5s`, `500ms`, `2m`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration such as 5s, 500ms or 2m"))
}
