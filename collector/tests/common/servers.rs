//! Real servers for the availability checks, from Debian's packages
//! (`scripts/deps.sh` installs them): Redis, PostgreSQL, RabbitMQ, and a
//! Python HTTPS server with a self-signed certificate. Each runs on free
//! loopback ports in a directory of its own, can be stopped and started
//! again on the same port, and is stopped when dropped. Readiness is
//! polled with a deadline, never slept for.

use std::{
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{free_port, python, script, wait_for};

/// How long a server may take to start (RabbitMQ: 5 to 60 s).
pub const START: Duration = Duration::from_secs(90);

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A process in its own process group, so that stopping it stops what it
/// started (RabbitMQ's shell script starts the Erlang VM).
struct Group {
    child: Child,
}

impl Group {
    fn spawn(command: &mut Command, log: &Path) -> Group {
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Group { child }
    }

    /// Waits until `ready`, or panics with the log if the process exits
    /// first (a server that refused its configuration).
    fn wait_ready(&mut self, what: &str, log: &Path, ready: impl Fn() -> bool) {
        wait_for(what, START, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{what}: it exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            ready().then_some(())
        });
    }

    fn stop(&mut self) {
        let pgid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server` on a free port, without persistence.
pub struct Redis {
    pub port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    group: Option<Group>,
}

impl Redis {
    /// Starts one; `extra` are `redis-server` options (`--requirepass x`).
    pub fn start(extra: &[&str]) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            group: None,
        };
        redis.start_again();
        redis
    }

    /// Starts it again on its port.
    pub fn start_again(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir", self.dir.path().to_str().unwrap()])
            .args(&self.args);
        let log = self.dir.path().join("redis.log");
        let port = self.port;
        let group = self.group.insert(Group::spawn(&mut command, &log));
        group.wait_ready("redis-server to listen", &log, || listening(port));
    }

    /// Stops it (SIGKILL: as a crash would).
    pub fn stop(&mut self) {
        self.group.take();
    }
}

/// The PostgreSQL binaries of the newest installed major version.
fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/deps.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no PostgreSQL server under /usr/lib/postgresql").join(name)
}

/// As the `postgres` user (PostgreSQL refuses to run as root), switched
/// to in the child itself, so that its pid is the server's.
fn as_postgres(bin: &Path) -> Command {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let (uid, gid) = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres")).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("a postgres user (the postgresql package creates it)");
    let mut command = Command::new(bin);
    command.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql").current_dir("/");
    command
}

/// A PostgreSQL cluster of its own: TLS on (a self-signed certificate),
/// SCRAM for TCP logins, MD5 for the role `legacy`, trust on its Unix
/// socket. Roles: `shop` (password `shop-pw`, owns database `shop`) and
/// `legacy` (password `legacy-pw`, MD5).
pub struct Postgres {
    pub port: u16,
    /// The directory of its Unix socket.
    pub socket_dir: PathBuf,
    dir: tempfile::TempDir,
    group: Option<Group>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        for d in [&data, &socket_dir] {
            std::fs::create_dir(d).unwrap();
            chown_postgres(d);
        }
        let status = as_postgres(&pg_bin("initdb"))
            .args(["-D", data.to_str().unwrap(), "-U", "postgres"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("host all legacy 127.0.0.1/32 md5\n{rules}")).unwrap();
        let (cert, key) = self_signed(dir.path(), "postgres");
        for f in [&cert, &key] {
            chown_postgres(f);
        }
        let mut pg = Postgres { port: free_port(), socket_dir, dir, group: None };
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n",
            pg.port,
            pg.socket_dir.display(),
            cert.display(),
            key.display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        pg.start_again();
        pg.psql(&[
            "CREATE ROLE shop LOGIN PASSWORD 'shop-pw'",
            "CREATE DATABASE shop OWNER shop",
            "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'",
        ]);
        pg
    }

    /// Its Unix socket file.
    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// Runs each of `statements` (one transaction each) as `postgres`.
    fn psql(&self, statements: &[&str]) {
        let mut command = as_postgres(&pg_bin("psql"));
        command
            .args(["-h", self.socket_dir.to_str().unwrap(), "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]);
        for sql in statements {
            command.args(["-c", sql]);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn start_again(&mut self) {
        let data = self.dir.path().join("data");
        let mut command = as_postgres(&pg_bin("postgres"));
        command.args(["-D", data.to_str().unwrap()]);
        let log = self.dir.path().join("postgres.log");
        let (socket, port) = (self.socket(), self.port);
        let group = self.group.insert(Group::spawn(&mut command, &log));
        group.wait_ready("postgres to accept connections", &log, || {
            socket.exists() && listening(port)
        });
    }

    /// Stops it (SIGKILL: as a crash would).
    pub fn stop(&mut self) {
        self.group.take();
        let _ = std::fs::remove_file(self.socket());
    }
}

fn chown_postgres(path: &Path) {
    let status = Command::new("chown").arg("postgres:postgres").arg(path).status().unwrap();
    assert!(status.success(), "chown postgres {}", path.display());
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, valid 30
/// days: (certificate, key), both PEM, the key mode 0600.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "30", "-subj", "/CN=curvemon test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

/// A certificate's notAfter, Unix seconds (from `openssl x509`).
pub fn not_after(cert: &Path) -> i64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-dateopt", "iso_8601", "-enddate", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text.trim().trim_start_matches("notAfter=");
    let time = humantime::parse_rfc3339_weak(date.trim_end_matches('Z'))
        .unwrap_or_else(|e| panic!("notAfter {date:?}: {e}"));
    time.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A RabbitMQ node of its own (node name, ports and data under a temporary
/// directory), with vhost `shop` and user `shopper` (password `shop-pw`).
pub struct RabbitMq {
    pub port: u16,
    node: String,
    dir: tempfile::TempDir,
    group: Option<Group>,
}

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

impl RabbitMq {
    pub fn start() -> RabbitMq {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let node = format!("curvemon-test-{port}@localhost");
        for sub in ["mnesia", "log"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut rabbit = RabbitMq { port, node, dir, group: None };
        let mut command = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"));
        rabbit.env(&mut command);
        let log = rabbit.dir.path().join("server.log");
        let group = rabbit.group.insert(Group::spawn(&mut command, &log));
        group.wait_ready("rabbitmq-server to listen", &log, || listening(port));
        rabbit.ctl(&["add_vhost", "shop"]);
        rabbit.ctl(&["add_user", "shopper", "shop-pw"]);
        rabbit.ctl(&["set_permissions", "-p", "shop", "shopper", ".*", ".*", ".*"]);
        rabbit
    }

    fn env(&self, command: &mut Command) {
        let dir = self.dir.path();
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let dist = free.local_addr().unwrap().port();
        drop(free);
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILES", dir.join("conf.d"));
    }

    /// Runs `rabbitmqctl` against this node.
    pub fn ctl(&self, args: &[&str]) {
        let out = Command::new(Path::new(RABBIT_BIN).join("rabbitmqctl"))
            .args(["-n", &self.node])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the broker (the Erlang node stays up) and waits for its port
    /// to close.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
        let port = self.port;
        wait_for("RabbitMQ's port to close", START, || (!listening(port)).then_some(()));
    }

    /// Starts the broker again.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        let port = self.port;
        wait_for("RabbitMQ to listen again", START, || listening(port).then_some(()));
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(RABBIT_BIN).join("rabbitmqctl"))
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `tests/py/https_server.py`: HTTPS with a self-signed certificate.
/// `/health` answers 200 `ok`, `/fail` 500, `/degraded` 200 `degraded`.
pub struct Https {
    pub port: u16,
    pub cert: PathBuf,
    key: PathBuf,
    dir: tempfile::TempDir,
    group: Option<Group>,
}

impl Https {
    pub fn start() -> Https {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "https");
        let mut server = Https { port: free_port(), cert, key, dir, group: None };
        server.start_again();
        server
    }

    pub fn start_again(&mut self) {
        let mut command = Command::new(python());
        command
            .arg(script("https_server.py"))
            .args(["--port", &self.port.to_string()])
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key);
        let log = self.dir.path().join("https.log");
        let port = self.port;
        let group = self.group.insert(Group::spawn(&mut command, &log));
        group.wait_ready("the HTTPS server to listen", &log, || listening(port));
    }

    pub fn stop(&mut self) {
        self.group.take();
    }
}

/// Prometheus (Debian's `prometheus`) as a remote-write receiver on a free
/// port, with a data directory of its own that survives a restart, and an
/// out-of-order window (samples an agent backfills after an outage are
/// older than those it sent live).
pub struct Prometheus {
    pub port: u16,
    dir: tempfile::TempDir,
    group: Option<Group>,
}

impl Prometheus {
    pub fn start() -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n",
        )
        .unwrap();
        let mut p = Prometheus { port: free_port(), dir, group: None };
        p.start_again();
        p
    }

    /// The receiver's URL.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// Starts it again on its port and data.
    pub fn start_again(&mut self) {
        let d = self.dir.path();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", d.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver");
        let log = d.join(format!("prometheus-{}.log", self.group.is_some() as u8));
        let port = self.port;
        let group = self.group.insert(Group::spawn(&mut command, &log));
        group.wait_ready("prometheus to be ready", &log, || {
            super::http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
        });
    }

    /// Stops it (SIGKILL: as a crash would; its WAL keeps what it took).
    pub fn stop(&mut self) {
        self.group.take();
    }

    /// Every raw sample of the series matching `selector` in the last
    /// `range` (a PromQL duration): labels → (ms, value) pairs.
    pub fn raw(&self, selector: &str, range: &str) -> Vec<(serde_json::Value, Vec<(u64, f64)>)> {
        let query = format!("{selector}[{range}]");
        let path = format!("/api/v1/query?query={}", super::url_encode(&query));
        let Some((200, body)) = super::http_get(self.port, &path) else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let points = s["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        let t = (p[0].as_f64().unwrap() * 1000.0).round() as u64;
                        (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                    })
                    .collect();
                (s["metric"].clone(), points)
            })
            .collect()
    }
}

/// VictoriaMetrics (Debian's `victoria-metrics`) single-node on a free
/// port, accepting remote write at `/api/v1/write`.
pub struct VictoriaMetrics {
    pub port: u16,
    dir: tempfile::TempDir,
    group: Option<Group>,
}

impl VictoriaMetrics {
    pub fn start() -> VictoriaMetrics {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new("victoria-metrics");
        command
            .arg(format!("-storageDataPath={}", dir.path().join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache");
        let log = dir.path().join("vm.log");
        let mut group = Group::spawn(&mut command, &log);
        group.wait_ready("victoria-metrics to answer", &log, || {
            super::http_get(port, "/health").is_some_and(|(s, _)| s == 200)
        });
        VictoriaMetrics { port, dir, group: Some(group) }
    }

    /// The receiver's URL.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// Every raw sample of the series matching `selector` (its export API).
    pub fn raw(&self, selector: &str) -> Vec<(serde_json::Value, Vec<(u64, f64)>)> {
        let path = format!("/api/v1/export?match[]={}", super::url_encode(selector));
        let Some((200, body)) = super::http_get(self.port, &path) else { return Vec::new() };
        body.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|s| {
                let t = s["timestamps"].as_array().cloned().unwrap_or_default();
                let v = s["values"].as_array().cloned().unwrap_or_default();
                let points = t
                    .iter()
                    .zip(v.iter())
                    .map(|(t, v)| (t.as_u64().unwrap(), v.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                (s["metric"].clone(), points)
            })
            .collect()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.group.take();
        let _ = &self.dir;
    }
}
