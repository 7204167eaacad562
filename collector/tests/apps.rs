//! Applications report through the agent, end to end: real agents and a
//! real collector over CURVE, and real Python applications using the PyPI
//! clients (`statsd`, `datadog`, `prometheus_client`, installed into
//! target/py by scripts/test). Values, rates and merged percentiles arrive
//! in /api/apps and /metrics within the documented error; caps, TTL and
//! bad input are counted and the agent keeps running.

mod common;

use std::{
    net::UdpSocket,
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Fleet, Proc, free_port, http_get, parse_exposition, python, script, wait_for};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(40);

/// The documented bound of the collector's percentiles (1.083 %).
const BOUND: f64 = curvemon_protocol::sketch::RELATIVE_ERROR;

/// Runs a Python script to completion; panics with its output if it fails.
fn run_python(args: &[&str]) {
    let out = Command::new(python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deterministic log-normal values in milliseconds (median ~40 ms).
fn log_normal_ms(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            // Whole microseconds, as StatsD clients print them.
            ((40.0 * (0.6 * z).exp()) * 1000.0).round() / 1000.0
        })
        .collect()
}

fn write_values(path: &Path, values: &[f64]) {
    let text: String = values.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The exact value of rank floor(q·(n−1)), as the sketch defines it.
fn exact(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

fn metrics(fleet: &Fleet) -> std::collections::HashMap<common::SeriesKey, f64> {
    parse_exposition(&http_get(fleet.http_port, "/metrics").map(|(_, t)| t).unwrap_or_default())
}

fn value(fleet: &Fleet, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    metrics(fleet).get(&(name.to_string(), labels)).copied()
}

fn app(fleet: &Fleet, name: &str) -> Option<Value> {
    fleet.json(&format!("/api/apps/{name}"))
}

fn timer<'a>(app: &'a Value, key: &str) -> Option<&'a Value> {
    app["timers"].as_array()?.iter().find(|t| t["key"] == key)
}

fn statsd_agent(fleet: &Fleet, name: &str, udp: u16, extra: &[&str]) -> Proc {
    let keys = fleet.agent_keys(name, true);
    let addr = format!("127.0.0.1:{udp}");
    let mut args = vec!["--interval", "500ms", "--statsd-udp", &addr];
    args.extend_from_slice(extra);
    fleet.start_agent(name, &keys, &args)
}

/// Counters, gauges, timers, a set (the `statsd` client) and tagged
/// distributions (the `datadog` client): each arrives with its value, and
/// the timer's percentiles are within the bound of the exact ones.
#[test]
fn statsd_from_python_clients_arrives_with_values_and_percentiles() {
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&["--app-step", "2s"], "collector.log");
    let port = free_port();
    let _agent = statsd_agent(&fleet, "web", port, &[]);
    fleet.wait_host("web", "up", LIMIT, |h| h["latest"].is_object());

    let values = log_normal_ms(5_000, 0x5eed);
    let file = fleet.path("values.txt");
    write_values(&file, &values);
    run_python(&[
        &script("send_statsd.py"),
        "mix",
        &format!("udp://127.0.0.1:{port}"),
        file.to_str().unwrap(),
    ]);

    let shop = wait_for("the shop's timer and counter in /api/apps", LIMIT, || {
        let shop = app(&fleet, "shop")?;
        let requests =
            shop["counters"].as_array()?.iter().find(|c| c["key"] == "requests_total")?;
        let checkout = timer(&shop, "checkout_seconds")?;
        (requests["total"] == 5000.0
            && checkout["count"] == 5000
            && timer(&shop, "payload_size{env=\"prod\"}")?["count"] == 1000)
            .then_some(shop)
    });
    // Percentiles of every observation, merged on the collector.
    let mut sorted: Vec<f64> = values.iter().map(|ms| ms / 1000.0).collect();
    sorted.sort_by(f64::total_cmp);
    let checkout = timer(&shop, "checkout_seconds").unwrap();
    for (q, field) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        let (want, got) = (exact(&sorted, q), checkout["since_start"][field].as_f64().unwrap());
        let error = (got - want).abs() / want;
        eprintln!("checkout {field}: {got:.6} s vs exact {want:.6} s: {:.3} %", 100.0 * error);
        assert!(error <= BOUND, "{field}: {got} vs {want} ({error})");
    }
    let size = timer(&shop, "payload_size{env=\"prod\"}").unwrap();
    let p50 = size["since_start"]["p50"].as_f64().unwrap();
    assert!((p50 - 500.0).abs() / 500.0 <= BOUND, "{p50}");

    // /metrics: host, app and the tags as labels; totals as totals.
    let l = [("app", "shop"), ("host", "web")];
    assert_eq!(value(&fleet, "requests_total", &l), Some(5000.0));
    assert_eq!(value(&fleet, "queue", &l), Some(15.0), "10, then +5");
    assert_eq!(value(&fleet, "users", &l), Some(7.0), "7 distinct members");
    assert_eq!(value(&fleet, "checkout_seconds_count", &l), Some(5000.0));
    let sum = value(&fleet, "checkout_seconds_sum", &l).unwrap();
    let exact_sum: f64 = sorted.iter().sum();
    assert!((sum - exact_sum).abs() < 1e-6 * exact_sum, "{sum} vs {exact_sum}");
    let tagged = [("app", "shop"), ("env", "prod"), ("host", "web"), ("le", "+Inf")];
    assert_eq!(value(&fleet, "payload_size_bucket", &tagged), Some(1000.0));
    let dropped = |reason| {
        value(&fleet, "curvemon_statsd_dropped_total", &[("host", "web"), ("reason", reason)])
    };
    assert_eq!(dropped("parse_error"), Some(0.0));
    assert_eq!(dropped("receive_buffer"), Some(0.0));
    let (_, text) = http_get(fleet.http_port, "/metrics").unwrap();
    let (code, report) = common::promtool_check(&text);
    assert_ne!(code, Some(1), "promtool could not parse /metrics:\n{report}");
    let list = fleet.json("/api/apps").unwrap();
    assert_eq!(list[0]["app"], "shop");
    assert_eq!(list[0]["hosts"], serde_json::json!(["web"]));
}

/// One application on two hosts: two instances, and percentiles of the
/// union of their observations, from the merged sketches.
#[test]
fn instances_on_two_hosts_merge_into_one_application() {
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&["--app-step", "2s"], "collector.log");
    let (pa, pb) = (free_port(), free_port());
    let _a = statsd_agent(&fleet, "node-a", pa, &[]);
    let _b = statsd_agent(&fleet, "node-b", pb, &[]);
    fleet.wait_host("node-a", "up", LIMIT, |h| h["latest"].is_object());
    fleet.wait_host("node-b", "up", LIMIT, |h| h["latest"].is_object());
    let fast = log_normal_ms(3_000, 1);
    let slow: Vec<f64> = log_normal_ms(3_000, 2).iter().map(|v| v * 4.0).collect();
    let (fa, fb) = (fleet.path("a.txt"), fleet.path("b.txt"));
    write_values(&fa, &fast);
    write_values(&fb, &slow);
    run_python(&[
        &script("send_statsd.py"),
        "timers",
        &format!("udp://127.0.0.1:{pa}"),
        "bookings",
        fa.to_str().unwrap(),
    ]);
    run_python(&[
        &script("send_statsd.py"),
        "timers",
        &format!("udp://127.0.0.1:{pb}"),
        "bookings",
        fb.to_str().unwrap(),
    ]);
    let bookings = wait_for("both instances' timers merged", LIMIT, || {
        let b = app(&fleet, "bookings")?;
        (timer(&b, "checkout_seconds")?["count"] == 6000).then_some(b)
    });
    let labels: Vec<&str> = bookings["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["node-a", "node-b"], "one instance per host");
    let mut union: Vec<f64> = fast.iter().chain(&slow).map(|ms| ms / 1000.0).collect();
    union.sort_by(f64::total_cmp);
    let merged = &timer(&bookings, "checkout_seconds").unwrap()["since_start"];
    for (q, field) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        let (want, got) = (exact(&union, q), merged[field].as_f64().unwrap());
        assert!((got - want).abs() / want <= BOUND, "{field}: {got} vs {want}");
    }
    // Each host's own series stays in /metrics with its host label.
    for (host, n) in [("node-a", 3000.0), ("node-b", 3000.0)] {
        let l = [("app", "bookings"), ("host", host)];
        assert_eq!(value(&fleet, "checkout_seconds_count", &l), Some(n), "{host}");
    }
}

/// Past the series cap new series are refused and counted; idle series
/// expire after the TTL; malformed, binary and oversized datagrams are
/// counted, the first logged with the sender, and the agent runs on.
#[test]
fn caps_ttl_and_bad_input_are_counted_and_the_agent_runs_on() {
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&[], "collector.log");
    let port = free_port();
    let unix = fleet.path("statsd.sock");
    let config = fleet.path("agent.toml");
    std::fs::write(&config, "[statsd]\nmax_series = 3\nttl = \"3s\"\n").unwrap();
    let agent = statsd_agent(
        &fleet,
        "capped",
        port,
        &["--config", config.to_str().unwrap(), "--statsd-unix", unix.to_str().unwrap()],
    );
    fleet.wait_host("capped", "up", LIMIT, |h| h["latest"].is_object());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = socket.local_addr().unwrap().to_string();
    let to = ("127.0.0.1", port);
    for name in ["a", "b", "c", "d", "e"] {
        socket.send_to(format!("capped.{name}:1|c").as_bytes(), to).unwrap();
    }
    for bad in [&b"no pipe at all"[..], b"x:1|zz", b"\xff\xfe\x00\x01", b"x:one|c"] {
        socket.send_to(bad, to).unwrap();
    }
    let datagram = UnixDatagram::unbound().unwrap();
    datagram.send_to(&vec![b'x'; 100_000], &unix).unwrap();
    let dropped = |reason| {
        value(&fleet, "curvemon_statsd_dropped_total", &[("host", "capped"), ("reason", reason)])
    };
    wait_for("the refusals counted", LIMIT, || {
        (dropped("parse_error") == Some(4.0)
            && dropped("series_cap") == Some(2.0)
            && dropped("too_long") == Some(1.0))
        .then_some(())
    });
    let series = |fleet: &Fleet| {
        metrics(fleet)
            .into_keys()
            .filter(|(n, l)| n.ends_with("_total") && l.get("app").is_some_and(|a| a == "capped"))
            .count()
    };
    assert_eq!(series(&fleet), 3, "three series, not five");
    let log = agent.log();
    assert!(log.contains("Dropped a malformed StatsD line"), "{log}");
    assert!(log.contains(&sender), "logged with the sender {sender}: {log}");
    // Idle past the TTL: gone from the collector too; room again.
    wait_for("the idle series to expire", LIMIT, || (series(&fleet) == 0).then_some(()));
    socket.send_to(b"capped.f:1|c", to).unwrap();
    wait_for("a new series once there is room", LIMIT, || {
        value(&fleet, "f_total", &[("app", "capped"), ("host", "capped")])
    });
    // Still sampling, nothing missed.
    let seq = fleet.host("capped").unwrap()["latest"]["seq"].as_u64().unwrap();
    let host = fleet.wait_host("capped", "more samples", LIMIT, |h| {
        h["latest"]["seq"].as_u64() >= Some(seq + 2)
    });
    assert_eq!(host["missed_samples"], 0);
}

/// 100,000 lines as fast as the Python client writes them over the Unix
/// stream socket: every one is counted (the kernel holds the sender back
/// instead of dropping).
#[test]
fn the_stream_socket_loses_nothing_under_a_burst_of_100000_lines() {
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&[], "collector.log");
    let stream = fleet.path("statsd-stream.sock");
    let _agent =
        statsd_agent(&fleet, "bursty", free_port(), &["--statsd-stream", stream.to_str().unwrap()]);
    fleet.wait_host("bursty", "up", LIMIT, |h| h["latest"].is_object());
    run_python(&[
        &script("send_statsd.py"),
        "burst",
        &format!("unix://{}", stream.display()),
        "100000",
    ]);
    let total = wait_for("100,000 hits", LIMIT, || {
        let total: f64 = metrics(&fleet)
            .into_iter()
            .filter(|((n, l), _)| n == "hits_total" && l.get("app").is_some_and(|a| a == "burst"))
            .map(|(_, v)| v)
            .sum();
        (total >= 100_000.0).then_some(total)
    });
    assert_eq!(total, 100_000.0);
    // The sender's process is known over a Unix socket: its instance.
    let burst = app(&fleet, "burst").unwrap();
    let instance = &burst["instances"][0];
    assert!(instance["instance"].as_str().unwrap().starts_with("python3["), "{instance}");
    assert_eq!(instance["source"], "statsd-stream");
}

/// A real prometheus_client endpoint, scraped by the agent every 500 ms:
/// its counter, gauge, histogram and summary arrive under its application,
/// and its process metrics give the instance's CPU and memory.
#[test]
fn a_prometheus_client_endpoint_is_scraped_under_its_application() {
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&[], "collector.log");
    let port = free_port();
    let mut server = Command::new(python())
        .args([&script("prom_app.py"), &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    let _server = Kill(server);
    assert_eq!(ready.trim(), "ready");
    let config = fleet.path("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape]]\nurl = \"http://127.0.0.1:{port}/metrics\"\napp = \"billing\"\ninterval = \"500ms\"\n"
        ),
    )
    .unwrap();
    let keys = fleet.agent_keys("biller", true);
    let _agent = fleet.start_agent(
        "biller",
        &keys,
        &["--interval", "500ms", "--config", config.to_str().unwrap()],
    );
    let instance = format!("127.0.0.1:{port}");
    let l = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("app", "billing"), ("host", "biller"), ("instance", instance.as_str())];
        l.extend_from_slice(extra);
        l
    };
    let first = wait_for("the scraped counter", LIMIT, || {
        value(&fleet, "invoices_total", &l(&[("kind", "monthly")])).filter(|v| *v > 0.0)
    });
    wait_for("the counter to grow", LIMIT, || {
        value(&fleet, "invoices_total", &l(&[("kind", "monthly")])).filter(|v| *v > first)
    });
    assert!(value(&fleet, "queue_depth", &l(&[])).is_some_and(|v| (0.0..7.0).contains(&v)));
    let jobs = value(&fleet, "job_seconds_bucket", &l(&[("le", "0.1")])).unwrap();
    let below = value(&fleet, "job_seconds_bucket", &l(&[("le", "0.05")])).unwrap();
    assert!(jobs > 0.0 && below == 0.0, "0.07 s jobs land in le=0.1: {below} {jobs}");
    assert!(value(&fleet, "rpc_seconds_count", &l(&[])).is_some_and(|v| v > 0.0));
    assert_eq!(
        value(
            &fleet,
            "curvemon_scrape_up",
            &[("host", "biller"), ("target", &format!("http://127.0.0.1:{port}/metrics"))]
        ),
        Some(1.0)
    );
    let billing = wait_for("the instance's memory", LIMIT, || {
        let b = app(&fleet, "billing")?;
        b["instances"][0]["rss_bytes"].as_f64().filter(|v| *v > 1e6).map(|_| b)
    });
    assert_eq!(
        billing["instances"][0]["source"],
        format!("scrape http://127.0.0.1:{port}/metrics")
    );
    assert!(timer(&billing, "job_seconds").is_some(), "the histogram is a timer: {billing}");
    let (_, text) = http_get(fleet.http_port, "/metrics").unwrap();
    let (code, report) = common::promtool_check(&text);
    assert_ne!(code, Some(1), "promtool could not parse /metrics:\n{report}");
}
