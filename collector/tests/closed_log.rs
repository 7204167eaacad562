//! A daemon whose log reader goes away (a closed pipe: `journalctl`-less
//! setups piping into a logger that died, a demo's `sed` killed first)
//! keeps working and still stops on SIGTERM. Logging's own fallback,
//! `eprintln!`, panics on a broken stderr: it once took the collector's
//! router thread with it on the next log line (no more ingest) and the
//! signal task on SIGTERM (a collector that would not stop), and the agent
//! with its first line.

mod common;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{Fleet, agent_bin, collector_bin, http_get, wait_for};
use rustix::process::Signal;

const LIMIT: Duration = Duration::from_secs(30);

/// Starts `bin` with its stderr on a pipe whose reading end is closed at
/// once: every log line it writes fails with EPIPE.
fn spawn_with_closed_stderr(bin: &Path, args: &[&str]) -> Child {
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info")
        .env("CURVEMON_STATSD_UDP", "off")
        .env("CURVEMON_STATSD_UNIX", "off")
        .env("CURVEMON_STATSD_STREAM", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    child
}

fn terminate(child: &mut Child, what: &str) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    let status =
        wait_for(&format!("{what} to exit on SIGTERM"), LIMIT, || child.try_wait().unwrap());
    assert!(status.success(), "{what} exited with {status}");
}

#[test]
fn collector_and_agent_work_and_stop_with_their_log_reader_gone() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("quiet", true);
    let collector_keys = fleet.collector_keys();
    let (listen, http) = (fleet.endpoint(), format!("127.0.0.1:{}", fleet.http_port));
    let data = fleet.path("data");
    let mut collector = spawn_with_closed_stderr(
        &collector_bin(),
        &[
            "--keys",
            collector_keys.to_str().unwrap(),
            "--listen",
            &listen,
            "--http",
            &http,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    wait_for("the collector's HTTP port", LIMIT, || {
        http_get(fleet.http_port, "/healthz").filter(|(status, _)| *status == 200)
    });
    let spool = fleet.path("spool");
    let mut agent = spawn_with_closed_stderr(
        &agent_bin(),
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--name",
            "quiet",
            "--interval",
            "250ms",
            "--spool-dir",
            spool.to_str().unwrap(),
            &listen,
        ],
    );
    // Each of these logs on both sides (hello, model, state changes):
    // the host comes up and its samples keep arriving.
    let up_from = |seq: u64| {
        move |h: &serde_json::Value| h["state"] == "up" && h["latest"]["seq"].as_u64() >= Some(seq)
    };
    let first = fleet.wait_host("quiet", "up", LIMIT, up_from(2));
    let seq = first["latest"]["seq"].as_u64().unwrap();
    fleet.wait_host("quiet", "up, samples still arriving", LIMIT, up_from(seq + 4));
    // The agent's SIGTERM: it says goodbye, the collector logs the host
    // down, and both stop when asked.
    terminate(&mut agent, "the agent");
    fleet.wait_host("quiet", "down", LIMIT, |h| h["state"] == "down");
    terminate(&mut collector, "the collector");
}
