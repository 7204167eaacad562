//! Per-family options, from the agent's TOML config file
//! (`/etc/curvemon/agent.toml` by default; see `docs/metrics.md`).
//!
//! Every section is optional and every key has a default. An unknown key, a
//! value of the wrong type or a pattern that does not compile is an error
//! that names the file, the line and what was expected, never a silent
//! default.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use regex_lite::Regex;
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

/// node_exporter's default: partitions, loop, ram, zram and floppy devices.
pub const DEFAULT_DISK_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
/// node_exporter's default pseudo mount points, plus container storage.
pub const DEFAULT_MOUNT_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default pseudo file systems, plus container overlays.
pub const DEFAULT_FSTYPE_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";
/// Loopback and container veth pairs: they churn and say little.
pub const DEFAULT_NETWORK_EXCLUDE: &str = r"^(lo|veth.*)$";
/// How long one `statvfs` may take before its mount is reported as stuck.
pub const DEFAULT_FS_TIMEOUT: Duration = Duration::from_secs(1);

/// A config file error: where, and what was expected.
#[derive(Debug, Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when the whole file is concerned).
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A name from the config file and the line it is on, so that a name
/// checked later (against the collector catalog) can still be reported
/// with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The name as written.
    pub name: String,
    /// 1-based line.
    pub line: usize,
}

/// The validated options every collector reads.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file these came from (`None` for the defaults).
    pub file: Option<PathBuf>,
    /// The curvemon collectors to report to, in order (`collector = [...]`;
    /// the command line's COLLECTOR... overrides), as `tcp://` endpoints.
    pub upstream: Vec<String>,
    /// Collectors to run, if the file names them (flags override); checked
    /// against the catalog by [`crate::collectors::select`].
    pub collectors: Option<Vec<Named>>,
    /// Block devices to skip.
    pub disk_exclude: Regex,
    /// Mount points to skip.
    pub mount_exclude: Regex,
    /// File system types to skip.
    pub fstype_exclude: Regex,
    /// Time box of one `statvfs`.
    pub fs_timeout: Duration,
    /// Network interfaces to skip.
    pub network_exclude: Regex,
    /// cgroup parents whose children are reported (one per service or container).
    pub cgroup_parents: Vec<String>,
    /// Named process groups.
    pub process_groups: Vec<ProcessGroup>,
    /// Per-collector intervals from `[intervals]`, over the catalog's
    /// defaults; names checked by [`crate::collectors::select`].
    pub intervals: Vec<(Named, Duration)>,
    /// Application sources: `[statsd]` and `[[scrape]]`.
    pub sources: crate::sources::Config,
    /// Availability checks: `[[check]]`.
    pub checks: Vec<crate::checks::Check>,
}

/// A group of processes the operator names; matches if any matcher does.
#[derive(Debug, Clone)]
pub struct ProcessGroup {
    /// The group's label value.
    pub name: String,
    /// Exact process names (`comm`, as in `ps -o comm`).
    pub comm: Vec<String>,
    /// Pattern over the command line (arguments joined by spaces).
    pub cmdline: Option<Regex>,
    /// A file holding a PID (the process, not its children).
    pub pidfile: Option<PathBuf>,
    /// A systemd unit: processes whose cgroup path ends in it.
    pub unit: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| unreachable!("built-in pattern: {e}"));
        Options {
            file: None,
            upstream: Vec::new(),
            collectors: None,
            disk_exclude: re(DEFAULT_DISK_EXCLUDE),
            mount_exclude: re(DEFAULT_MOUNT_EXCLUDE),
            fstype_exclude: re(DEFAULT_FSTYPE_EXCLUDE),
            fs_timeout: DEFAULT_FS_TIMEOUT,
            network_exclude: re(DEFAULT_NETWORK_EXCLUDE),
            cgroup_parents: vec!["system.slice".into(), "machine.slice".into()],
            process_groups: Vec::new(),
            intervals: Vec::new(),
            sources: crate::sources::Config {
                statsd: Some(crate::sources::statsd::Config::default()),
                limits: crate::apps::Limits::default(),
                default_app: DEFAULT_APP.into(),
                scrape: Vec::new(),
            },
            checks: Vec::new(),
        }
    }
}

/// The application of StatsD names with neither a dot nor an `app` tag.
pub const DEFAULT_APP: &str = "statsd";

impl Options {
    /// An error at `line` of the file these options came from.
    pub fn error_at(&self, line: usize, message: String) -> ConfigFileError {
        ConfigFileError { path: self.file.clone().unwrap_or_default(), line, message }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileText {
    collector: Option<Spanned<Vec<Spanned<String>>>>,
    collectors: Option<Vec<Spanned<String>>>,
    disk: DiskSection,
    filesystem: FilesystemSection,
    network: NetworkSection,
    cgroups: CgroupSection,
    process: Vec<Spanned<ProcessSection>>,
    intervals: std::collections::BTreeMap<String, Spanned<String>>,
    statsd: StatsdSection,
    scrape: Vec<Spanned<ScrapeSection>>,
    check: Vec<Spanned<crate::checks::config::Section>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StatsdSection {
    udp: Option<Spanned<String>>,
    unix: Option<Spanned<String>>,
    stream: Option<Spanned<String>>,
    socket_mode: Option<Spanned<String>>,
    max_connections: Option<usize>,
    default_app: Option<Spanned<String>>,
    max_series: Option<usize>,
    max_series_per_app: Option<usize>,
    ttl: Option<Spanned<String>>,
    max_set_members: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrapeSection {
    url: Spanned<String>,
    app: String,
    instance: Option<String>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_bytes: Option<usize>,
    max_series: Option<usize>,
    path: Option<String>,
    #[serde(default)]
    allow_remote: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DiskSection {
    exclude: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FilesystemSection {
    mount_points_exclude: Option<Spanned<String>>,
    fs_types_exclude: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NetworkSection {
    exclude: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CgroupSection {
    parents: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessSection {
    name: String,
    #[serde(default)]
    comm: Vec<String>,
    cmdline: Option<Spanned<String>>,
    pidfile: Option<PathBuf>,
    unit: Option<String>,
}

impl Options {
    /// Reads `path`. A missing file is an error only if `required` (the
    /// operator named it with `--config`); otherwise defaults apply.
    ///
    /// # Errors
    /// [`ConfigFileError`] naming file, line and expectation.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Options::default());
            }
            Err(e) => {
                return Err(ConfigFileError {
                    path: path.to_path_buf(),
                    line: 0,
                    message: e.to_string(),
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only for messages.
    ///
    /// # Errors
    /// [`ConfigFileError`] naming file, line and expectation.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigFileError> {
        let at = |offset: usize, message: String| ConfigFileError {
            path: path.to_path_buf(),
            line: text[..offset.min(text.len())].matches('\n').count() + 1,
            message,
        };
        let file: FileText = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().to_string())
        })?;
        let pattern = |value: &Option<Spanned<String>>, default: &Regex, key: &str| match value {
            None => Ok(default.clone()),
            Some(v) => Regex::new(v.get_ref()).map_err(|e| {
                at(v.span().start, format!("{key}: expected a regular expression: {e}"))
            }),
        };
        let defaults = Options::default();
        let fs_timeout = match &file.filesystem.timeout {
            None => defaults.fs_timeout,
            Some(v) => humantime::parse_duration(v.get_ref()).map_err(|e| {
                at(v.span().start, format!("timeout: expected a duration such as 1s or 500ms: {e}"))
            })?,
        };
        let mut process_groups: Vec<ProcessGroup> = Vec::new();
        for spanned in &file.process {
            let start = spanned.span().start;
            let section = spanned.get_ref();
            if section.name.is_empty() {
                return Err(at(start, "[[process]]: expected a non-empty `name`".into()));
            }
            if process_groups.iter().any(|g| g.name == section.name) {
                return Err(at(
                    start,
                    format!("[[process]]: the name {:?} is used twice", section.name),
                ));
            }
            let cmdline = match &section.cmdline {
                None => None,
                Some(v) => Some(Regex::new(v.get_ref()).map_err(|e| {
                    at(v.span().start, format!("cmdline: expected a regular expression: {e}"))
                })?),
            };
            if section.comm.is_empty()
                && cmdline.is_none()
                && section.pidfile.is_none()
                && section.unit.is_none()
            {
                return Err(at(
                    start,
                    format!(
                        "[[process]] {:?}: expected at least one of `comm`, `cmdline`, `pidfile` or `unit`",
                        section.name
                    ),
                ));
            }
            process_groups.push(ProcessGroup {
                name: section.name.clone(),
                comm: section.comm.clone(),
                cmdline,
                pidfile: section.pidfile.clone(),
                unit: section.unit.clone(),
            });
        }
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut intervals = Vec::new();
        for (family, value) in &file.intervals {
            let start = value.span().start;
            let duration = humantime::parse_duration(value.get_ref()).map_err(|e| {
                at(
                    start,
                    format!("[intervals] {family}: expected a duration such as 1s or 30s: {e}"),
                )
            })?;
            if duration.is_zero() {
                return Err(at(
                    start,
                    format!("[intervals] {family}: expected a duration above zero"),
                ));
            }
            intervals.push((Named { name: family.clone(), line: line(start) }, duration));
        }
        let collectors = file.collectors.map(|names| {
            names
                .into_iter()
                .map(|n| Named { line: line(n.span().start), name: n.into_inner() })
                .collect()
        });
        let duration = |value: &Option<Spanned<String>>, key: &str, default: Duration| match value {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.get_ref()).map_err(|e| {
                at(v.span().start, format!("{key}: expected a duration such as 10s or 5m: {e}"))
            }),
        };
        let mut upstream = Vec::new();
        for endpoint in file.collector.iter().flat_map(|c| c.get_ref()) {
            let parsed = crate::config::parse_endpoint(endpoint.get_ref())
                .map_err(|e| at(endpoint.span().start, format!("collector: {e}")))?;
            if upstream.contains(&parsed) {
                return Err(at(
                    endpoint.span().start,
                    format!("collector: {parsed} is listed twice"),
                ));
            }
            upstream.push(parsed);
        }
        if let Some(list) = &file.collector
            && list.get_ref().is_empty()
        {
            return Err(at(list.span().start, "collector: expected at least one address".into()));
        }
        let sources = sources(&file.statsd, &file.scrape, &at, &duration)?;
        let checks = crate::checks::config::parse(&file.check, path, &at)?;
        Ok(Options {
            sources,
            checks,
            file: Some(path.to_path_buf()),
            intervals,
            upstream,
            collectors,
            disk_exclude: pattern(&file.disk.exclude, &defaults.disk_exclude, "exclude")?,
            mount_exclude: pattern(
                &file.filesystem.mount_points_exclude,
                &defaults.mount_exclude,
                "mount_points_exclude",
            )?,
            fstype_exclude: pattern(
                &file.filesystem.fs_types_exclude,
                &defaults.fstype_exclude,
                "fs_types_exclude",
            )?,
            fs_timeout,
            network_exclude: pattern(&file.network.exclude, &defaults.network_exclude, "exclude")?,
            cgroup_parents: file.cgroups.parents.unwrap_or(defaults.cgroup_parents),
            process_groups,
        })
    }
}

/// `off` (or empty) turns a socket off; anything else is its address.
fn on(value: &Option<Spanned<String>>) -> Option<Option<&Spanned<String>>> {
    match value {
        None => None,
        Some(v) if v.get_ref().is_empty() || v.get_ref() == "off" => Some(None),
        Some(v) => Some(Some(v)),
    }
}

type At<'a> = dyn Fn(usize, String) -> ConfigFileError + 'a;
type DurationAt<'a> =
    dyn Fn(&Option<Spanned<String>>, &str, Duration) -> Result<Duration, ConfigFileError> + 'a;

/// The `[statsd]` and `[[scrape]]` sections, checked.
fn sources(
    statsd: &StatsdSection,
    scrape: &[Spanned<ScrapeSection>],
    at: &At<'_>,
    duration: &DurationAt<'_>,
) -> Result<crate::sources::Config, ConfigFileError> {
    use crate::sources::{scrape::Target, statsd::Config as Statsd};
    let defaults = Statsd::default();
    let udp = match on(&statsd.udp) {
        None => defaults.udp,
        Some(None) => None,
        Some(Some(v)) => Some(v.get_ref().parse().map_err(|_| {
            at(
                v.span().start,
                format!(
                    "udp: expected an address such as 127.0.0.1:8125 or \"off\", got {:?}",
                    v.get_ref()
                ),
            )
        })?),
    };
    let path = |value: &Option<Spanned<String>>, default: Option<PathBuf>| match on(value) {
        None => Ok(default),
        Some(None) => Ok(None),
        Some(Some(v)) if v.get_ref().starts_with('/') => Ok(Some(PathBuf::from(v.get_ref()))),
        Some(Some(v)) => Err(at(
            v.span().start,
            format!("expected an absolute path or \"off\", got {:?}", v.get_ref()),
        )),
    };
    let socket_mode = match &statsd.socket_mode {
        None => defaults.socket_mode,
        Some(v) => u32::from_str_radix(v.get_ref().trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                at(
                    v.span().start,
                    format!(
                        "socket_mode: expected an octal mode such as \"0666\", got {:?}",
                        v.get_ref()
                    ),
                )
            })?,
    };
    let config = Statsd {
        udp,
        unix: path(&statsd.unix, defaults.unix.clone())?,
        stream: path(&statsd.stream, defaults.stream.clone())?,
        socket_mode,
        max_connections: statsd.max_connections.unwrap_or(defaults.max_connections),
    };
    let any = config.udp.is_some() || config.unix.is_some() || config.stream.is_some();
    let limits = crate::apps::Limits::default();
    let limits = crate::apps::Limits {
        max_series: statsd.max_series.unwrap_or(limits.max_series),
        max_series_per_app: statsd.max_series_per_app.unwrap_or(limits.max_series_per_app),
        ttl: duration(&statsd.ttl, "ttl", limits.ttl)?,
        max_set_members: statsd.max_set_members.unwrap_or(limits.max_set_members),
    };
    let default_app = match &statsd.default_app {
        None => DEFAULT_APP.to_string(),
        Some(v) if v.get_ref().trim().is_empty() => {
            return Err(at(v.span().start, "default_app: expected a non-empty name".into()));
        }
        Some(v) => v.get_ref().clone(),
    };
    let mut targets = Vec::new();
    for entry in scrape {
        let start = entry.span().start;
        let s = entry.get_ref();
        let url = crate::sources::scrape::Url::parse(
            s.url.get_ref(),
            s.path.as_deref().unwrap_or("/metrics"),
        )
        .map_err(|e| at(s.url.span().start, format!("[[scrape]] url: {e}")))?;
        if !url.is_local() && !s.allow_remote {
            return Err(at(
                s.url.span().start,
                format!(
                    "[[scrape]] {url}: not on this host; set allow_remote = true to scrape it anyway"
                ),
            ));
        }
        if s.app.trim().is_empty() {
            return Err(at(start, "[[scrape]]: expected a non-empty `app`".into()));
        }
        let interval = duration(&s.interval, "interval", Duration::from_secs(10))?;
        let timeout = duration(&s.timeout, "timeout", Duration::from_secs(5).min(interval))?;
        if interval.is_zero() || timeout.is_zero() {
            return Err(at(start, "[[scrape]]: interval and timeout must be above zero".into()));
        }
        let instance = s.instance.clone().unwrap_or_else(|| match &url {
            crate::sources::scrape::Url::Http { host, port, .. } => format!("{host}:{port}"),
            crate::sources::scrape::Url::Unix { socket, .. } => socket.display().to_string(),
        });
        targets.push(Target {
            url,
            app: s.app.clone(),
            instance,
            interval,
            timeout,
            max_bytes: s.max_bytes.unwrap_or(4 << 20),
            max_series: s.max_series.unwrap_or(1_000),
        });
    }
    Ok(crate::sources::Config {
        statsd: any.then_some(config),
        limits,
        default_app,
        scrape: targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Options, String> {
        Options::parse(text, Path::new("/etc/curvemon/agent.toml")).map_err(|e| e.to_string())
    }

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

    /// The packages install this file as /etc/curvemon/agent.toml: valid
    /// as shipped, and with every example setting switched on.
    #[test]
    fn the_packaged_example_is_valid_commented_and_uncommented() {
        let text = include_str!("../../dist/etc/agent.toml");
        let shipped = parse(text).unwrap();
        assert!(shipped.checks.is_empty() && shipped.collectors.is_none());
        let on = uncomment(text);
        let all = parse(&on).unwrap_or_else(|e| panic!("{e}\n{on}"));
        assert_eq!(all.checks.len(), 1, "{on}");
        assert_eq!(all.collectors.map(|c| c.len()), Some(16), "{on}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let o = parse("").unwrap();
        assert!(o.disk_exclude.is_match("sda1") && !o.disk_exclude.is_match("sda"));
        assert!(o.disk_exclude.is_match("loop0") && o.disk_exclude.is_match("nvme0n1p2"));
        assert!(!o.disk_exclude.is_match("nvme0n1") && !o.disk_exclude.is_match("vda"));
        assert!(o.fstype_exclude.is_match("overlay") && !o.fstype_exclude.is_match("ext4"));
        assert!(o.mount_exclude.is_match("/proc/sys") && !o.mount_exclude.is_match("/"));
        assert!(o.network_exclude.is_match("lo") && o.network_exclude.is_match("veth12ab"));
        assert!(!o.network_exclude.is_match("eth0"));
        assert_eq!(o.fs_timeout, Duration::from_secs(1));
    }

    #[test]
    fn full_file() {
        let o = parse(
            r#"
collectors = ["cpu", "memory"]

[disk]
exclude = "^loop"

[filesystem]
timeout = "250ms"

[cgroups]
parents = ["system.slice", "docker"]

[[process]]
name = "leaky"
cmdline = "python3 .*leak\\.py"

[[process]]
name = "web"
comm = ["nginx"]
unit = "nginx.service"
"#,
        )
        .unwrap();
        let names: Vec<&str> = o.collectors.iter().flatten().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["cpu", "memory"]);
        assert_eq!(o.collectors.as_ref().unwrap()[0].line, 2);
        assert!(o.disk_exclude.is_match("loop7") && !o.disk_exclude.is_match("sda1"));
        assert_eq!(o.fs_timeout, Duration::from_millis(250));
        assert_eq!(o.cgroup_parents, ["system.slice", "docker"]);
        assert_eq!(o.process_groups.len(), 2);
        assert!(o.process_groups[0].cmdline.as_ref().unwrap().is_match("python3 /srv/leak.py"));
        assert_eq!(o.process_groups[1].unit.as_deref(), Some("nginx.service"));
    }

    #[test]
    fn errors_name_file_line_and_expectation() {
        let e = parse("[disk]\nexclud = \"x\"\n").unwrap_err();
        assert!(e.starts_with("/etc/curvemon/agent.toml:2: unknown field `exclud`"), "{e}");
        assert!(e.contains("expected `exclude`"), "{e}");
        let e = parse("[network]\n\nexclude = \"(\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/curvemon/agent.toml:3: exclude: expected a regular expression"),
            "{e}"
        );
        let e = parse("[filesystem]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(e.starts_with("/etc/curvemon/agent.toml:2: timeout: expected a duration"), "{e}");
        let e = parse("[disk]\nexclude = 3\n").unwrap_err();
        assert!(e.starts_with("/etc/curvemon/agent.toml:2:"), "{e}");
        let e = parse("\n[[process]]\nname = \"x\"\n").unwrap_err();
        assert!(e.contains(":2: [[process]] \"x\": expected at least one of"), "{e}");
        let e = parse("[[process]]\nname = \"a\"\ncomm = [\"a\"]\n[[process]]\nname = \"a\"\ncomm = [\"b\"]\n").unwrap_err();
        assert!(e.contains(":4:") && e.contains("used twice"), "{e}");
    }

    #[test]
    fn collectors_to_report_to_in_order() {
        let o = parse("collector = [\"mon-a\", \"tcp://mon-b:7000\"]\n").unwrap();
        assert_eq!(o.upstream, ["tcp://mon-a:5556", "tcp://mon-b:7000"]);
        let e = parse("\ncollector = [\"a\", \"a:5556\"]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/curvemon/agent.toml:2: collector: tcp://a:5556 is listed twice"),
            "{e}"
        );
        let e = parse("collector = []\n").unwrap_err();
        assert!(e.contains(":1: collector: expected at least one"), "{e}");
        let e = parse("collector = [\"udp://x\"]\n").unwrap_err();
        assert!(e.contains(":1: collector: collector \"udp://x\": only tcp://"), "{e}");
    }

    #[test]
    fn statsd_and_scrape_sections() {
        let o = parse("").unwrap();
        let statsd = o.sources.statsd.unwrap();
        assert_eq!(statsd.udp, Some("127.0.0.1:8125".parse().unwrap()));
        assert_eq!(o.sources.default_app, "statsd");
        let o = parse(
            "[statsd]\nudp = \"off\"\nunix = \"/tmp/s.sock\"\nstream = \"off\"\nttl = \"1m\"\nmax_series = 5\n\n\
             [[scrape]]\nurl = \"http://127.0.0.1:9/metrics\"\napp = \"billing\"\ninterval = \"2s\"\n",
        )
        .unwrap();
        let statsd = o.sources.statsd.unwrap();
        assert_eq!((statsd.udp, statsd.stream), (None, None));
        assert_eq!(statsd.unix.as_deref(), Some(Path::new("/tmp/s.sock")));
        assert_eq!(o.sources.limits.ttl, Duration::from_secs(60));
        assert_eq!(o.sources.limits.max_series, 5);
        assert_eq!(o.sources.scrape[0].app, "billing");
        assert_eq!(o.sources.scrape[0].instance, "127.0.0.1:9");
        assert_eq!(o.sources.scrape[0].interval, Duration::from_secs(2));
        let off = parse("[statsd]\nudp = \"off\"\nunix = \"off\"\nstream = \"\"\n").unwrap();
        assert!(off.sources.statsd.is_none());
        let e = parse("[statsd]\nudp = \"localhost\"\n").unwrap_err();
        assert!(e.contains(":2: udp: expected an address"), "{e}");
        let e = parse("\n[[scrape]]\nurl = \"http://10.1.1.1:9/m\"\napp = \"x\"\n").unwrap_err();
        assert!(e.contains(":3: [[scrape]] http://10.1.1.1:9/m: not on this host"), "{e}");
        let e = parse("[statsd]\nsocket_mode = \"999\"\n").unwrap_err();
        assert!(e.contains(":2: socket_mode"), "{e}");
    }

    #[test]
    fn missing_file_is_fine_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        assert!(Options::load(&path, false).is_ok());
        assert!(Options::load(&path, true).unwrap_err().to_string().contains("agent.toml:0:"));
    }

    #[test]
    fn bad_intervals_name_the_line_and_what_was_expected() {
        let e = parse("[intervals]\nvmstat = \"soon\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/curvemon/agent.toml:2: [intervals] vmstat: expected a duration"),
            "{e}"
        );
        let e = parse("[intervals]\nvmstat = \"0s\"\n").unwrap_err();
        assert!(e.contains(":2: [intervals] vmstat: expected a duration above zero"), "{e}");
    }
}
