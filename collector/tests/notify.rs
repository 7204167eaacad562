//! systemd's notification protocol without systemd as PID 1: a Unix
//! datagram socket given as `NOTIFY_SOCKET` (with `WATCHDOG_USEC`) to real
//! agent and collector processes receives READY=1 once each is ready,
//! STATUS lines that follow what it does, and WATCHDOG=1 from the loop
//! that does the work, which stops while the process is stopped (SIGSTOP)
//! and resumes after SIGCONT.

mod common;

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Fleet, Proc, agent_bin, collector_bin, http_get};
use rustix::process::Signal;

/// systemd's side: what the daemon sent, in order.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<(Instant, String)>,
}

impl Manager {
    fn bind(path: PathBuf) -> Manager {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Manager { socket, path, received: Vec::new() }
    }

    /// Takes datagrams until `limit` has passed.
    fn listen(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.received.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into()));
            }
        }
    }

    /// Takes datagrams until one contains `needle`; returns it.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                self.received.push((Instant::now(), text.clone()));
                if text.contains(needle) {
                    return text;
                }
            }
        }
        panic!("no {needle:?} within {limit:?}; received: {:#?}", self.received);
    }

    /// Times of the WATCHDOG=1 datagrams received since `since`.
    fn watchdogs_since(&self, since: Instant) -> Vec<Instant> {
        self.received
            .iter()
            .filter(|(at, text)| *at >= since && text.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(at, _)| *at)
            .collect()
    }

    /// The watchdog: pings at half the period while the process runs, none
    /// while it is stopped, pings again once it continues.
    fn check_watchdog(&mut self, daemon: &Proc) {
        let start = Instant::now();
        self.listen(Duration::from_secs(4));
        let pings = self.watchdogs_since(start);
        assert!(pings.len() >= 3, "{} WATCHDOG=1 in 4 s with a 2 s period", pings.len());
        let widest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest < Duration::from_millis(1900), "pings {widest:?} apart, period 2 s");

        daemon.signal(Signal::STOP);
        // A datagram sent just before the stop may still be queued.
        self.listen(Duration::from_millis(300));
        let stopped = Instant::now();
        self.listen(Duration::from_secs(3));
        assert_eq!(
            self.watchdogs_since(stopped),
            Vec::<Instant>::new(),
            "WATCHDOG=1 while the process was stopped"
        );
        daemon.signal(Signal::CONT);
        self.wait_for("WATCHDOG=1", Duration::from_secs(3));
    }
}

/// Starts `bin` as systemd would with `NOTIFY_SOCKET` and a 2 s watchdog.
fn spawn_notified(bin: &Path, args: &[&str], manager: &Manager, fleet: &Fleet, name: &str) -> Proc {
    let log = fleet.path(&format!("{name}.log"));
    let child = Command::new(bin)
        .args(args)
        .env("NOTIFY_SOCKET", &manager.path)
        .env("WATCHDOG_USEC", "2000000")
        .env("CURVEMON_STATSD_UDP", "off")
        .env("CURVEMON_STATSD_UNIX", "off")
        .env("CURVEMON_STATSD_STREAM", "off")
        .env("CURVEMON_SPOOL_DIR", "off")
        .env("CURVEMON_DATA_DIR", fleet.path(&format!("data-{name}")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log, name: name.into() }
}

#[test]
fn the_collector_is_ready_once_serving_and_its_router_feeds_the_watchdog() {
    let fleet = Fleet::new();
    let mut manager = Manager::bind(fleet.path("notify.sock"));
    let keys = fleet.collector_keys();
    let (listen, http) = (fleet.endpoint(), format!("127.0.0.1:{}", fleet.http_port));
    let collector = spawn_notified(
        &collector_bin(),
        &["--keys", keys.to_str().unwrap(), "--listen", &listen, "--http", &http],
        &manager,
        &fleet,
        "collector",
    );
    let ready = manager.wait_for("READY=1", Duration::from_secs(30));
    assert!(
        ready.contains(&format!("STATUS=listening for agents on {listen}, HTTP on {http}")),
        "{ready}"
    );
    // Ready means serving: HTTP answers at once.
    assert_eq!(http_get(fleet.http_port, "/healthz").map(|(s, _)| s), Some(200));

    let agent_keys = fleet.agent_keys("web-1", true);
    let _agent = fleet.start_agent("web-1", &agent_keys, &["--interval", "1s"]);
    manager.wait_for("STATUS=1 hosts up, 0 stale, 0 down", Duration::from_secs(30));
    manager.check_watchdog(&collector);
}

#[test]
fn the_agent_is_ready_once_its_keys_are_loaded_and_its_loop_feeds_the_watchdog() {
    let fleet = Fleet::new();
    let mut collector = fleet.start_collector(&[], "collector.log");
    let mut manager = Manager::bind(fleet.path("notify.sock"));
    let keys = fleet.agent_keys("web-1", true);
    let endpoint = fleet.endpoint();
    let args = ["--keys", keys.to_str().unwrap(), "--name", "web-1", "--interval", "1s", &endpoint];
    let agent = spawn_notified(&agent_bin(), &args, &manager, &fleet, "agent");
    let ready = manager.wait_for("READY=1", Duration::from_secs(30));
    assert!(ready.contains(&format!("STATUS=connecting to {endpoint}")), "{ready}");
    manager.wait_for(&format!("STATUS=connected to {endpoint}"), Duration::from_secs(30));
    manager.check_watchdog(&agent);

    // The collector gone: the status says so, with what waits.
    collector.kill();
    let status =
        manager.wait_for(&format!("STATUS=connecting to {endpoint}"), Duration::from_secs(60));
    assert!(status.contains("samples spooled"), "{status}");

    // An agent without its keys never says it is ready.
    let mut broken = spawn_notified(
        &agent_bin(),
        &["--keys", fleet.path("no-keys").to_str().unwrap(), &endpoint],
        &manager,
        &fleet,
        "agent-without-keys",
    );
    let status = broken.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "an agent without keys exits with an error");
    manager.listen(Duration::from_millis(300));
    let readies = manager.received.iter().filter(|(_, t)| t.contains("READY=1")).count();
    assert_eq!(readies, 1, "only the working agent said READY=1: {:#?}", manager.received);
}
