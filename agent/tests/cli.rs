//! The agent binary as an operator meets it: what it says when something is
//! wrong, and how it stops. Real processes; the DNS test runs the agent in
//! its own mount namespace with a resolver that never answers, and so
//! needs root (as CI has).

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

fn agent() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agent"))
}

fn run(args: &[&str]) -> Output {
    Command::new(agent())
        .args(args)
        .env("RUST_LOG", "info")
        .env("CURVEMON_SPOOL_DIR", "off")
        .output()
        .unwrap()
}

/// An agent key directory that also holds a (made-up) collector key.
fn keys(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    let out = run(&["keygen", "--keys", keys.to_str().unwrap(), "--name", "t"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let collector = curvemon_keys::KeyPair::generate().unwrap();
    curvemon_keys::cert::write_pair(&dir.join("c"), "collector", &collector, "c", false).unwrap();
    std::fs::copy(dir.join("c/collector.key"), keys.join("collector.key")).unwrap();
    keys
}

/// The operating system's error appears once per message, not once per
/// layer of the error chain.
#[test]
fn errors_say_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = run(&["--keys", missing.to_str().unwrap(), "127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("agent.key_secret"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");

    let keys = keys(dir.path());
    let out =
        run(&["--keys", keys.to_str().unwrap(), "--proc-root", "/nonexistent", "127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/stat"), "{stderr}");
    assert!(stderr.matches("No such file").count() <= 1, "{stderr}");
}

/// A collector name the catalog does not have, in the config file, is an
/// error that names the file, the line and the names that exist.
#[test]
fn a_misspelt_collector_in_the_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "collectors = [\n    \"cpu\",\n    \"memroy\",\n]\n").unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "--keys", "/nonexistent", "h:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected = format!(
        "{}:3: collectors: unknown collector \"memroy\"; expected one of cpu, memory,",
        config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

/// A name lookup that never ends (the DNS server does not answer) does not
/// keep the agent from stopping on SIGTERM.
#[test]
fn sigterm_during_a_hanging_name_lookup_stops_the_agent() {
    // A "DNS server" that reads queries and never answers, on an address
    // of its own in 127/8.
    let dns = UdpSocket::bind("127.0.0.153:53")
        .expect("binding 127.0.0.153:53 (this test needs root, as CI has)");
    dns.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.153\noptions timeout:30 attempts:1\n").unwrap();
    let log = dir.path().join("agent.log");
    // The agent's own mount namespace sees this resolv.conf; nothing else does.
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec {} --keys {} --name dns collector.curvemon-test.example",
        resolv.display(),
        agent().display(),
        keys.display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("RUST_LOG", "debug")
        .env("CURVEMON_SPOOL_DIR", "off")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut query = [0u8; 512];
    loop {
        if dns.recv_from(&mut query).is_ok() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent exited before asking DNS: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the agent never asked the DNS server");
    }
    // The agent is inside the lookup now.
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!(
                "the agent did not stop within 5 s of SIGTERM during a lookup: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("Shutting down"), "{log}");
}
