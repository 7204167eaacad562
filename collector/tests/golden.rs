//! The golden end-to-end scrape (node_exporter's `e2e-output.txt`): a real
//! agent reads the checked-in fixture trees (`agent/tests/fixtures`) and
//! reports to a real collector, whose /metrics for that host must equal
//! `tests/golden/metrics.prom` line for line. Any change in a name, a label
//! or a value is a visible diff in review.
//!
//! Left out because they change from run to run: how long collectors took,
//! and when the host was last seen. The root file system is a directory
//! that does not exist, so every mount of the fixture is reported as failed
//! (`node_filesystem_device_error 1`) rather than measured on this machine.
//! The fixtures were taken at 100 clock ticks a second and 4 KiB pages, as
//! on x86_64 Linux. To accept a change: `UPDATE_GOLDEN=1 cargo test -p
//! curvemon-collector --test golden`, then review the diff.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{Fleet, http_get, wait_for};

/// Families whose values differ between runs.
const VOLATILE: [&str; 4] = [
    "curvemon_agent_collector_duration_seconds",
    "curvemon_host_last_seen_timestamp_seconds",
    // What the spool holds depends on when the last acknowledgement came.
    "curvemon_agent_spool_bytes",
    "curvemon_agent_spool_samples",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures")
}

#[test]
fn the_scrape_of_a_fixture_host_matches_the_golden_file() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("golden", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let config = fleet.path("agent.toml");
    std::fs::write(
        &config,
        "[[process]]\nname = \"demo\"\ncomm = [\"leakdemo\"]\n\n\
         [[process]]\nname = \"web\"\nunit = \"nginx.service\"\n",
    )
    .unwrap();
    let fixture = |name: &str| fixtures().join(name).display().to_string();
    let (proc, sys, etc) = (fixture("proc"), fixture("sys-unified"), fixture("etc"));
    let _agent = fleet.start_agent(
        "golden",
        &keys,
        &[
            "--interval",
            "500ms",
            "--proc-root",
            &proc,
            "--sys-root",
            &sys,
            "--etc-root",
            &etc,
            "--rootfs",
            "/nonexistent-golden-rootfs",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    fleet.wait_host("golden", "two samples", Duration::from_secs(30), |h| {
        h["latest"]["seq"].as_u64() >= Some(2)
    });
    let text = wait_for("/metrics", Duration::from_secs(10), || {
        http_get(fleet.http_port, "/metrics").map(|(_, text)| text)
    });
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("host=\"golden\""))
        .filter(|l| !VOLATILE.iter().any(|v| l.starts_with(&format!("{v}{{"))))
        .collect();
    lines.sort_unstable();
    let got = lines.join("\n") + "\n";

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with UPDATE_GOLDEN=1)", path.display()));
    if got != want {
        let diff: Vec<String> = want
            .lines()
            .filter(|l| !got.lines().any(|g| g == *l))
            .map(|l| format!("- {l}"))
            .chain(got.lines().filter(|l| !want.lines().any(|w| w == *l)).map(|l| format!("+ {l}")))
            .collect();
        panic!(
            "/metrics for the fixture host differs from {} ({} lines):\n{}",
            path.display(),
            diff.len(),
            diff.join("\n")
        );
    }
    assert!(want.lines().count() > 150, "the golden file covers every family");
}
