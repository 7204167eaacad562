//! Command-line flags. Every flag also reads an environment variable so that
//! a systemd `EnvironmentFile=` can configure the agent.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `agent [OPTIONS] COLLECTOR` or `agent keygen`.
#[derive(Debug, Parser)]
#[command(
    name = "curvemon-agent",
    version,
    about = "curvemon agent: reports this host's metrics to a curvemon collector over CURVE-encrypted ZeroMQ",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// A subcommand instead of running the agent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for running the agent.
    #[command(flatten)]
    pub run: RunArgs,
    /// Log format on stderr.
    #[arg(long, env = "CURVEMON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate this agent's key pair: DIR/agent.key (public, give it to the
    /// collector's authorized_agents/) and DIR/agent.key_secret (mode 0600).
    Keygen(KeygenArgs),
}

/// Flags of `agent keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key directory [default: ~/.config/curvemon/keys].
    #[arg(long, env = "CURVEMON_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Host name written into the certificate (pins it when allowlisted).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace an existing key pair.
    #[arg(long)]
    pub force: bool,
}

/// Flags for running the agent.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Key directory with agent.key_secret and the collector's collector.key
    /// [default: ~/.config/curvemon/keys].
    #[arg(long, env = "CURVEMON_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// The collector's public key file [default: DIR/collector.key].
    #[arg(long, env = "CURVEMON_COLLECTOR_KEY", value_name = "FILE")]
    pub collector_key: Option<PathBuf>,
    /// How often to sample and send metrics (e.g. 5s, 500ms, 1m).
    #[arg(long, env = "CURVEMON_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Reconnect when nothing has been heard from the collector for this
    /// long. Keep it above the collector's --ping-interval (10s by default).
    #[arg(long, env = "CURVEMON_STALE_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// Name this host is shown under [default: the kernel's host name].
    #[arg(long, env = "CURVEMON_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// Where procfs is mounted (another path for containers and tests).
    #[arg(long, env = "CURVEMON_PROC_ROOT", default_value = "/proc", value_name = "DIR")]
    pub proc_root: PathBuf,
    /// Where sysfs is mounted (cgroups are read under DIR/fs/cgroup).
    #[arg(long, env = "CURVEMON_SYS_ROOT", default_value = "/sys", value_name = "DIR")]
    pub sys_root: PathBuf,
    /// The host's root file system, under which mount points are measured
    /// (an agent in a container sees the host's / mounted elsewhere).
    #[arg(long, env = "CURVEMON_ROOTFS", default_value = "/", value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Per-family options (TOML) [default: /etc/curvemon/agent.toml, if it exists].
    #[arg(long, env = "CURVEMON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run only these collectors (comma-separated); `agent --list-collectors` names them.
    #[arg(long, env = "CURVEMON_COLLECTORS", value_delimiter = ',', value_name = "LIST")]
    pub collectors: Option<Vec<String>>,
    /// Do not run this collector (repeatable).
    #[arg(long = "no-collector", value_name = "NAME")]
    pub no_collector: Vec<String>,
    /// Print the collectors, what each reads, and whether it runs by default; then exit.
    #[arg(long)]
    pub list_collectors: bool,
    /// Receive StatsD over UDP at ADDR, or `off` [default: the config
    /// file's [statsd] udp, else 127.0.0.1:8125].
    #[arg(long, env = "CURVEMON_STATSD_UDP", value_name = "ADDR|off")]
    pub statsd_udp: Option<String>,
    /// Receive StatsD datagrams on this Unix socket, or `off` [default: the
    /// config file's [statsd] unix, else /run/curvemon/statsd.sock].
    #[arg(long, env = "CURVEMON_STATSD_UNIX", value_name = "PATH|off")]
    pub statsd_unix: Option<String>,
    /// Receive StatsD lines on this Unix stream socket, or `off` [default:
    /// the config file's [statsd] stream, else /run/curvemon/statsd-stream.sock].
    #[arg(long, env = "CURVEMON_STATSD_STREAM", value_name = "PATH|off")]
    pub statsd_stream: Option<String>,
    /// Where samples wait until the collector has stored them, or `off` to
    /// keep them in memory only [default: /var/lib/curvemon/spool; if that
    /// cannot be used, memory].
    #[arg(long, env = "CURVEMON_SPOOL_DIR", value_name = "DIR|off")]
    pub spool_dir: Option<String>,
    /// The spool's bound on disk (e.g. 64MiB, 1GiB; at least 1MiB); past it
    /// the oldest samples are dropped and reported as a gap.
    #[arg(long, env = "CURVEMON_SPOOL_SIZE", default_value = "64MiB", value_parser = parse_bytes)]
    pub spool_size: u64,
    /// Where the host's /etc is (os-release, machine-id).
    #[arg(long, env = "CURVEMON_ETC_ROOT", default_value = "/etc", value_name = "DIR")]
    pub etc_root: PathBuf,
    /// The collector: `host`, `host:port` or `tcp://host:port` (port 5556
    /// by default). Several: the agent stays on the first that works and
    /// moves to the next when its connection fails or goes stale; SIGHUP
    /// brings it back to the first [default: the config file's collector].
    #[arg(env = "CURVEMON_COLLECTOR", value_name = "COLLECTOR", value_delimiter = ',')]
    pub collector: Vec<String>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `64MiB`, `512KiB`, `1GiB`, `100MB`, `1000000`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?}: expected a size such as 64MiB or 1GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(format!("{text:?}: expected a size such as 64MiB or 1GiB")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses `5s`, `500ms`, `2m`, `1h 30m`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration such as 5s, 500ms or 2m"))
}
