//! The Grafana dashboard in `grafana/curvemon.json` parses, and every
//! metric its queries name is in a real collector's `/metrics`: with a
//! real agent on this machine, one on the checked-in fixture host (its
//! services' cgroups), an HTTPS check and a failing TCP check, a StatsD
//! application, and a remote-write target.

mod common;

use std::{collections::BTreeSet, net::UdpSocket, path::PathBuf, time::Duration};

use common::{Fleet, free_port, http_get, servers::Https};
use serde_json::Value;

fn dashboard() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../grafana/curvemon.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Every `expr` of every panel (and of variables' queries).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression names: curvemon's, node_exporter's
/// and the cgroup and process-group families' (label names, functions and
/// variables have none of these prefixes).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let quoted = start > 0 && bytes[start - 1] == b'"';
            if !quoted
                && ["node_", "curvemon_", "container_", "namedprocess_"]
                    .iter()
                    .any(|p| word.starts_with(p))
            {
                names.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_dashboard_parses_and_names_only_metrics_the_collector_has() {
    let dash = dashboard();
    assert!(dash["panels"].as_array().is_some_and(|p| p.len() > 10), "no panels");
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() > 20, "only {} queries", all.len());
    let wanted: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    assert!(wanted.contains("node_cpu_seconds_total") && wanted.contains("curvemon_check_up"));

    let https = Https::start();
    let fleet = Fleet::new();
    let config = fleet.path("collector.toml");
    let closed = free_port();
    std::fs::write(
        &config,
        format!("[[remote_write]]\nurl = \"http://127.0.0.1:{closed}/api/v1/write\"\n"),
    )
    .unwrap();
    let _collector =
        fleet.start_collector(&["--config", config.to_str().unwrap()], "collector.log");
    let agent_config = fleet.path("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "[[check]]\nname = \"web\"\nkind = \"http\"\nurl = \"https://127.0.0.1:{}/\"\nverify_tls = false\ninterval = \"1s\"\n\n\
             [[check]]\nname = \"closed\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{closed}\"\ninterval = \"1s\"\n",
            https.port
        ),
    )
    .unwrap();
    let statsd = format!("127.0.0.1:{}", free_port());
    let live_keys = fleet.agent_keys("live", true);
    let _live = fleet.start_agent(
        "live",
        &live_keys,
        &[
            "--interval",
            "500ms",
            "--config",
            agent_config.to_str().unwrap(),
            "--statsd-udp",
            &statsd,
        ],
    );
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures");
    let fixture = |name: &str| fixtures.join(name).display().to_string();
    let (proc, sys, etc) = (fixture("proc"), fixture("sys-unified"), fixture("etc"));
    let fixture_keys = fleet.agent_keys("fixture", true);
    let _fixture = fleet.start_agent(
        "fixture",
        &fixture_keys,
        &["--interval", "500ms", "--proc-root", &proc, "--sys-root", &sys, "--etc-root", &etc],
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let missing = common::poll(Duration::from_secs(30), || {
        socket.send_to(b"shop.requests:1|c|#instance:web-1", &statsd).unwrap();
        let text = http_get(fleet.http_port, "/metrics")?.1;
        let have: BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|n| {
                !["", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| have.contains(format!("{n}{s}").as_str()))
            })
            .collect();
        missing.is_empty().then_some(())
    });
    if missing.is_none() {
        let text = http_get(fleet.http_port, "/metrics").map(|r| r.1).unwrap_or_default();
        let have: BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let absent: Vec<&String> = wanted.iter().filter(|n| !have.contains(n.as_str())).collect();
        panic!("the dashboard names metrics /metrics does not have: {absent:?}");
    }
}
