//! The validated configuration [`crate::run`] takes: every default resolved,
//! every value checked, so the event loop never meets a bad setting.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use crate::{cli::RunArgs, collectors, options::Options};

/// The collector's port when COLLECTOR does not name one.
pub const DEFAULT_PORT: u16 = 5556;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory with `agent.key_secret`.
    pub keys_dir: PathBuf,
    /// The collector's public certificate.
    pub collector_key: PathBuf,
    /// The collectors, `tcp://host:port`, in order of preference.
    pub endpoints: Vec<String>,
    /// Sampling interval.
    pub interval: Duration,
    /// Reconnect after hearing nothing for this long.
    pub stale_after: Duration,
    /// The name this host is shown under.
    pub name: String,
    /// Where procfs is mounted.
    pub proc_root: PathBuf,
    /// Where the host's /etc is.
    pub etc_root: PathBuf,
    /// Where sysfs is.
    pub sys_root: PathBuf,
    /// The host's root file system.
    pub rootfs: PathBuf,
    /// Collectors to run, in catalog order.
    pub collectors: Vec<String>,
    /// Per-family options from the config file.
    pub options: Options,
    /// The spool.
    pub spool: crate::spool::Config,
}

/// The config file read when `--config` is not given (absence is fine).
pub const DEFAULT_CONFIG: &str = "/etc/curvemon/agent.toml";

impl Config {
    /// Resolves defaults and checks values.
    ///
    /// # Errors
    /// A message naming the flag and what it expects.
    pub fn from_args(args: RunArgs) -> anyhow::Result<Self> {
        let keys_dir = curvemon_keys::keygen::key_dir(args.keys)?;
        let collector_key = args.collector_key.unwrap_or_else(|| keys_dir.join("collector.key"));
        if args.interval < Duration::from_millis(100) {
            bail!("--interval {:?} is too short: at least 100ms", args.interval);
        }
        if args.stale_after < Duration::from_secs(1) {
            bail!("--stale-after {:?} is too short: at least 1s", args.stale_after);
        }
        let mut options = match &args.config {
            Some(path) => Options::load(path, true)?,
            None => Options::load(std::path::Path::new(DEFAULT_CONFIG), false)?,
        };
        statsd_flags(&mut options, &args.statsd_udp, &args.statsd_unix, &args.statsd_stream)?;
        let endpoints = if args.collector.is_empty() {
            options.upstream.clone()
        } else {
            let mut endpoints = Vec::new();
            for text in &args.collector {
                let endpoint = parse_endpoint(text)?;
                if endpoints.contains(&endpoint) {
                    bail!("COLLECTOR {endpoint} is given twice");
                }
                endpoints.push(endpoint);
            }
            endpoints
        };
        if endpoints.is_empty() {
            bail!(
                "COLLECTOR is required (host, host:port or tcp://host:port; several for failover), \
                 on the command line or as collector = [...] in the config file"
            );
        }
        let collectors =
            collectors::select(args.collectors.as_deref(), &options, &args.no_collector)?;
        if collectors.is_empty() {
            bail!("no collector left to run; check --collectors and --no-collector");
        }
        let spool = spool_config(args.spool_dir.as_deref(), args.spool_size, args.interval)?;
        let name = args.name.unwrap_or_else(curvemon_keys::keygen::local_hostname);
        if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_control()) {
            bail!("--name {name:?}: expected 1 to 253 printable characters");
        }
        Ok(Config {
            keys_dir,
            collector_key,
            endpoints,
            interval: args.interval,
            stale_after: args.stale_after,
            name,
            proc_root: args.proc_root,
            etc_root: args.etc_root,
            sys_root: args.sys_root,
            rootfs: args.rootfs,
            collectors,
            options,
            spool,
        })
    }
}

/// The smallest spool bound accepted.
const MIN_SPOOL_BYTES: u64 = 1 << 20;

/// `--spool-dir` and `--spool-size`.
fn spool_config(
    dir: Option<&str>,
    size: u64,
    interval: Duration,
) -> anyhow::Result<crate::spool::Config> {
    // Connected, the spool still holds what the collector has not yet
    // acknowledged: up to 64 samples or 5 s of them (docs/protocol.md),
    // each segment (a sixteenth of the bound) opening with the host's
    // schema. Below 1 MiB that window alone can fill it, and the spool
    // would drop samples on a healthy link.
    if size < MIN_SPOOL_BYTES {
        bail!("--spool-size {size}: at least 1MiB (it holds the samples not yet acknowledged)");
    }
    let defaults = crate::spool::Config::default();
    let (dir, dir_explicit) = match dir {
        None => (defaults.dir.clone(), false),
        Some("" | "off") => (None, true),
        Some(path) if path.starts_with('/') => (Some(PathBuf::from(path)), true),
        Some(path) => bail!("--spool-dir {path:?}: expected an absolute path or off"),
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Ok(crate::spool::Config {
        dir,
        dir_explicit,
        max_bytes: size,
        // In memory (no directory, or a failing disk) a sixteenth of it, at
        // least 1 MiB and at most 8 MiB.
        memory_bytes: (size / 16).clamp(1 << 20, 8 << 20),
        interval,
        boot_id,
        ..defaults
    })
}

/// `--statsd-udp`, `--statsd-unix` and `--statsd-stream` over the file's
/// `[statsd]` section.
fn statsd_flags(
    options: &mut Options,
    udp: &Option<String>,
    unix: &Option<String>,
    stream: &Option<String>,
) -> anyhow::Result<()> {
    let sources = &mut options.sources;
    let mut statsd = sources.statsd.take().unwrap_or_else(|| crate::sources::statsd::Config {
        udp: None,
        unix: None,
        stream: None,
        ..crate::sources::statsd::Config::default()
    });
    let off = |v: &str| v.is_empty() || v == "off";
    if let Some(udp) = udp {
        statsd.udp = if off(udp) {
            None
        } else {
            Some(udp.parse().with_context(|| {
                format!("--statsd-udp {udp:?}: expected an address such as 127.0.0.1:8125 or off")
            })?)
        };
    }
    for (flag, value, slot) in
        [("--statsd-unix", unix, &mut statsd.unix), ("--statsd-stream", stream, &mut statsd.stream)]
    {
        if let Some(value) = value {
            *slot = if off(value) {
                None
            } else if value.starts_with('/') {
                Some(value.into())
            } else {
                bail!("{flag} {value:?}: expected an absolute path or off");
            };
        }
    }
    let any = statsd.udp.is_some() || statsd.unix.is_some() || statsd.stream.is_some();
    sources.statsd = any.then_some(statsd);
    Ok(())
}

/// Turns `host`, `host:port`, `[v6]:port` or `tcp://host:port` into a
/// `tcp://host:port` endpoint.
///
/// # Errors
/// Another scheme, an empty host, or a port that is not 1–65535.
pub fn parse_endpoint(text: &str) -> anyhow::Result<String> {
    let rest = match text.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => bail!("collector {text:?}: only tcp:// is supported, not {scheme}://"),
        None => text,
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .with_context(|| format!("collector {text:?}: missing ] after an IPv6 address"))?;
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        bail!("collector {text:?}: expected host, host:port or tcp://host:port");
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).with_context(|| {
            format!("collector {text:?}: port {p:?} is not a number from 1 to 65535")
        })?,
    };
    Ok(format!("tcp://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("mon.example").unwrap(), "tcp://mon.example:5556");
        assert_eq!(parse_endpoint("10.0.0.1:7000").unwrap(), "tcp://10.0.0.1:7000");
        assert_eq!(parse_endpoint("tcp://h:1").unwrap(), "tcp://h:1");
        assert_eq!(parse_endpoint("tcp://h").unwrap(), "tcp://h:5556");
        assert_eq!(parse_endpoint("[::1]:9").unwrap(), "tcp://[::1]:9");
        assert_eq!(parse_endpoint("[::1]").unwrap(), "tcp://[::1]:5556");
        for bad in ["udp://h:1", "h:0", "h:99999", "h:x", "", ":5556", "[::1"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    /// A spool smaller than the window of samples waiting for their
    /// acknowledgement would drop samples on a healthy link: refused, and
    /// the message says why.
    #[test]
    fn a_spool_below_one_mebibyte_is_refused() {
        let interval = Duration::from_secs(1);
        let err = spool_config(Some("off"), 512 << 10, interval).unwrap_err().to_string();
        assert!(err.contains("--spool-size 524288: at least 1MiB"), "{err}");
        assert!(err.contains("not yet acknowledged"), "{err}");
        let config = spool_config(Some("off"), 1 << 20, interval).unwrap();
        assert_eq!(config.max_bytes, 1 << 20);
    }
}
