//! Test harness: real `collector` and `agent` processes on loopback TCP, keys
//! made by the binaries' own `keygen`, logs captured to files, and polling
//! with deadlines instead of sleeps.

#![allow(dead_code)]

pub mod servers;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The collector binary cargo built for this test.
pub fn collector_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_collector"))
}

/// The agent binary: built by `cargo test --workspace` next to the
/// collector; built here if this crate's tests run alone.
pub fn agent_bin() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| workspace_bin("curvemon-agent", "agent")).clone()
}

/// The bench binary (the load generator), likewise.
pub fn bench_bin() -> PathBuf {
    static BENCH: OnceLock<PathBuf> = OnceLock::new();
    BENCH.get_or_init(|| workspace_bin("curvemon-bench", "bench")).clone()
}

/// The generator of man pages and completions (`dist/`), likewise.
pub fn dist_bin() -> PathBuf {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| workspace_bin("curvemon-dist", "dist")).clone()
}

/// Builds `bin` of `package` (a no-op when it is up to date) and returns
/// its path beside the collector's. scripts/test builds every binary first
/// and says so with CURVEMON_TEST_BINS_BUILT: it runs some tests beside a
/// `cargo test`, which holds cargo's lock while its tests run.
fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let path = collector_bin().with_file_name(bin);
    if std::env::var_os("CURVEMON_TEST_BINS_BUILT").is_some() && path.exists() {
        return path;
    }
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    assert!(path.exists(), "{} missing after cargo build", path.display());
    path
}

/// The Python of target/py (scripts/test makes it), or CURVEMON_PYTHON.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CURVEMON_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python3")
    });
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it installs the Python clients of examples/requirements.txt)",
        path.display()
    );
    path
}

/// A helper script of `tests/py/`.
pub fn script(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(name).display().to_string()
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it returns `Some`, or `None` after
/// `limit` (for a caller that reports what it saw last).
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `limit` with `what` and the last value seen.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process whose stderr goes to a file; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    /// Starts `bin`. Agents get their StatsD sockets turned off and their
    /// spool kept in memory through the environment (tests run many agents
    /// at once; a test that wants either passes `--statsd-*` or
    /// `--spool-dir` flags, which win); a collector keeps its store next to
    /// its log, in `data-NAME/` (a restarted collector of the same name
    /// finds it again).
    pub fn spawn(bin: &Path, args: &[&str], log: PathBuf, name: &str) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let data: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let data = log.parent().unwrap_or(Path::new("/tmp")).join(format!("data-{data}"));
        let child = Command::new(bin)
            .args(args)
            .env("CURVEMON_STATSD_UDP", "off")
            .env("CURVEMON_STATSD_UNIX", "off")
            .env("CURVEMON_STATSD_STREAM", "off")
            .env("CURVEMON_SPOOL_DIR", "off")
            .env("CURVEMON_DATA_DIR", data)
            .env(
                "RUST_LOG",
                std::env::var("CURVEMON_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proc { child, log, name: name.to_string() }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        wait_for(&format!("{:?} in the {} log", needle, self.name), limit, || {
            self.log().contains(needle).then_some(())
        });
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let name = self.name.clone();
        wait_for(&format!("{name} to exit"), limit, || self.child.try_wait().unwrap())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("CURVEMON_TEST_LOGS").is_some() {
            eprintln!("---- {} log ({}) ----\n{}", self.name, self.log.display(), self.log());
        }
    }
}

/// Runs a binary to completion; returns (success, stdout, stderr).
pub fn run(bin: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch directory with a collector key pair and helpers to add agents.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub zmq_port: u16,
    pub http_port: u16,
}

impl Fleet {
    pub fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Fleet { dir, zmq_port: free_port(), http_port: free_port() };
        let keys = fleet.collector_keys();
        let (ok, _, err) = run(&collector_bin(), &["keygen", "--keys", keys.to_str().unwrap()]);
        assert!(ok, "collector keygen failed: {err}");
        fleet
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn collector_keys(&self) -> PathBuf {
        self.path("collector-keys")
    }

    /// Generates an agent key directory holding the collector's public key.
    /// With `allow`, the agent's key goes into the collector's allowlist.
    pub fn agent_keys(&self, name: &str, allow: bool) -> PathBuf {
        let keys = self.path(&format!("agent-{name}"));
        let (ok, _, err) =
            run(&agent_bin(), &["keygen", "--keys", keys.to_str().unwrap(), "--name", name]);
        assert!(ok, "agent keygen failed: {err}");
        std::fs::copy(self.collector_keys().join("collector.key"), keys.join("collector.key"))
            .unwrap();
        if allow {
            let allow_dir = self.collector_keys().join("authorized_agents");
            std::fs::create_dir_all(&allow_dir).unwrap();
            std::fs::copy(keys.join("agent.key"), allow_dir.join(format!("{name}.key"))).unwrap();
        }
        keys
    }

    /// Allowlists the agent key in `keys` without pinning a host name.
    pub fn allow_unpinned(&self, keys: &Path, file_name: &str) {
        let mut cert = curvemon_keys::cert::read_public(&keys.join("agent.key")).unwrap();
        cert.name = None;
        let dir = self.collector_keys().join("authorized_agents");
        curvemon_keys::cert::write_public(&dir, file_name, &cert, false).unwrap();
    }

    pub fn endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.zmq_port)
    }

    /// Starts the collector with extra flags and waits until HTTP answers.
    pub fn start_collector(&self, extra: &[&str], log_name: &str) -> Proc {
        let keys = self.collector_keys();
        let listen = self.endpoint();
        let http = format!("127.0.0.1:{}", self.http_port);
        let mut args = vec!["--keys", keys.to_str().unwrap(), "--listen", &listen, "--http", &http];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(&collector_bin(), &args, self.path(log_name), "collector");
        wait_for("the collector's HTTP port", Duration::from_secs(20), || {
            http_get(self.http_port, "/healthz").filter(|(status, _)| *status == 200)
        });
        proc
    }

    /// Makes this fleet's collector the same as `other`'s to its agents:
    /// its key pair and allowlist (collectors an agent fails over between
    /// share them).
    pub fn share_keys_from(&self, other: &Fleet) {
        let (from, to) = (other.collector_keys(), self.collector_keys());
        std::fs::remove_dir_all(&to).unwrap();
        std::fs::create_dir_all(to.join("authorized_agents")).unwrap();
        for name in ["collector.key", "collector.key_secret"] {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
        for entry in std::fs::read_dir(from.join("authorized_agents")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join("authorized_agents").join(entry.file_name()))
                .unwrap();
        }
    }

    /// Starts an agent with a key directory from [`Fleet::agent_keys`] and
    /// a spool of its own (`spool-KEYDIR-NAME/`, kept across restarts).
    pub fn start_agent(&self, name: &str, keys: &Path, extra: &[&str]) -> Proc {
        self.start_agent_to(name, keys, extra, &[self.endpoint()])
    }

    /// [`Fleet::start_agent`] with the collectors to report to, in order.
    pub fn start_agent_to(
        &self,
        name: &str,
        keys: &Path,
        extra: &[&str],
        endpoints: &[String],
    ) -> Proc {
        // Keyed by the agent's keys and its name: tests run two agents with
        // one name or one key, and a spool directory is locked by its agent.
        let key_dir = keys.file_name().unwrap().to_string_lossy();
        let spool = self.path(&format!("spool-{key_dir}-{name}"));
        let spool = spool.to_str().unwrap().to_string();
        let mut args = vec!["--keys", keys.to_str().unwrap(), "--name", name];
        if !extra.contains(&"--spool-dir") {
            args.extend(["--spool-dir", &spool]);
        }
        args.extend_from_slice(extra);
        args.extend(endpoints.iter().map(String::as_str));
        Proc::spawn(
            &agent_bin(),
            &args,
            self.path(&format!("agent-{name}.log")),
            &format!("agent {name}"),
        )
    }

    /// `GET /api/hosts`.
    pub fn hosts(&self) -> Vec<Value> {
        self.json("/api/hosts").and_then(|v| v.as_array().cloned()).unwrap_or_default()
    }

    /// The host called `name`, if listed.
    pub fn host(&self, name: &str) -> Option<Value> {
        self.hosts().into_iter().find(|h| h["hostname"] == name)
    }

    /// Waits until host `name` satisfies `check`, returning its JSON.
    pub fn wait_host(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(&format!("host {name}: {what}"), limit, || self.host(name).filter(|h| check(h)))
    }

    pub fn stats(&self) -> Value {
        self.json("/api/stats").unwrap_or(Value::Null)
    }

    pub fn json(&self, path: &str) -> Option<Value> {
        let (status, body) = http_get(self.http_port, path)?;
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }
}

/// The status line and headers of a GET, lowercased.
pub fn http_head(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split("\r\n\r\n").next().unwrap_or("").to_lowercase()
}

/// A one-shot HTTP/1.1 GET; `None` if nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// MemTotal of this machine in bytes, from /proc/meminfo.
pub fn mem_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// CPUs listed in /proc/stat.
pub fn cpu_count() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count() as u64
}

/// One series of a Prometheus text exposition: name and sorted labels.
pub type SeriesKey = (String, std::collections::BTreeMap<String, String>);

/// Parses the Prometheus text format (samples only; comments skipped).
/// Panics on a line it cannot read: the test should fail loudly then.
pub fn parse_exposition(text: &str) -> std::collections::HashMap<SeriesKey, f64> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|e| panic!("{e} in {line:?}")))
        .collect()
}

/// `name{a="x",b="y\"z"} 1.5 [timestamp]` → ((name, labels), value).
fn parse_sample(line: &str) -> Result<(SeriesKey, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = line[..name_end].to_string();
    let mut labels = std::collections::BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().ok_or("unterminated labels")?;
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' | ' ' if key.is_empty() => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err("label value without quotes".into());
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().ok_or("unterminated label value")?.1 {
                            '\\' => match chars.next().ok_or("dangling escape")?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = match rest.split_whitespace().next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(((name, labels), value))
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// A minimal SSE client over HTTP/1.0 (so the body is not chunked).
pub struct SseClient {
    reader: std::io::BufReader<TcpStream>,
}

impl SseClient {
    pub fn connect(port: u16, path: &str, last_event_id: Option<u64>) -> SseClient {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\n{resume}\r\n").unwrap();
        let mut client = SseClient { reader: std::io::BufReader::new(stream) };
        let status = client.line(Duration::from_secs(10)).expect("a status line");
        assert!(status.contains(" 200 "), "{path}: {status}");
        while client.line(Duration::from_secs(10)).is_some_and(|l| !l.is_empty()) {}
        client
    }

    fn line(&mut self, limit: Duration) -> Option<String> {
        use std::io::BufRead;
        let deadline = Instant::now() + limit;
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => {
                    return Some(line.trim_end_matches(['\r', '\n']).to_string());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() > deadline {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The next event (comments and retry lines skipped), or `None` after
    /// `limit` or when the server closed the stream.
    pub fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + limit;
        let mut event = SseEvent { id: None, event: "message".into(), data: String::new() };
        let mut seen_field = false;
        loop {
            let line = self.line(deadline.saturating_duration_since(Instant::now()))?;
            if line.is_empty() {
                if seen_field && !event.data.is_empty() {
                    return Some(event);
                }
                seen_field = false;
                continue;
            }
            if let Some(v) = line.strip_prefix("id:") {
                event.id = v.trim().parse().ok();
                seen_field = true;
            } else if let Some(v) = line.strip_prefix("event:") {
                event.event = v.trim().to_string();
                seen_field = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                event.data.push_str(v.trim_start());
                seen_field = true;
            }
        }
    }

    /// The next event of kind `kind`.
    pub fn next_of(&mut self, kind: &str, limit: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + limit;
        loop {
            let event = self.next(deadline.saturating_duration_since(Instant::now()))?;
            if event.event == kind {
                return Some(event);
            }
        }
    }
}

/// A raw DEALER with an allowlisted key: authenticated, but not an agent.
pub fn raw_peer(fleet: &Fleet, ctx: &zmq::Context) -> (zmq::Socket, curvemon_keys::KeyPair) {
    let pair = curvemon_keys::KeyPair::generate().unwrap();
    let allow = fleet.collector_keys().join("authorized_agents");
    curvemon_keys::cert::write_pair(&allow, "raw", &pair, "raw", false).unwrap();
    std::fs::remove_file(allow.join("raw.key_secret")).unwrap();
    let server = curvemon_keys::cert::read_public(&fleet.collector_keys().join("collector.key"))
        .unwrap()
        .public;
    let socket = ctx.socket(zmq::DEALER).unwrap();
    curvemon_link::apply_client(&socket, &pair, &server).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(200).unwrap();
    (socket, pair)
}

/// Runs `promtool check metrics` on an exposition: its exit code (1 means
/// it could not parse it) and what it printed.
pub fn promtool_check(text: &str) -> (Option<i32>, String) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus); scripts/test installs it");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), report)
}

/// Percent-encodes a query parameter's value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
