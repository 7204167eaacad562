//! The live side, against a real collector with real agents: event streams
//! (latency, resumption, a stalled client), the history API, and /metrics
//! through promtool with values that match what the agents sent.

mod common;

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{Fleet, SseClient, http_get, parse_exposition, promtool_check, wait_for};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn stream_delivers_each_sample_within_two_intervals() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("streamed", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let _agent = fleet.start_agent("streamed", &keys, &["--interval", "1s"]);
    fleet.wait_host("streamed", "up", LIMIT, |h| h["latest"].is_object());

    let id = fleet.host("streamed").unwrap()["id"].as_str().unwrap().to_string();
    // One stream at a time, read as events come (a stream not being read
    // would queue its events and measure the test, not the collector).
    for path in ["/api/stream".to_string(), format!("/api/hosts/{id}/stream")] {
        let mut stream = SseClient::connect(fleet.http_port, &path, None);
        for _ in 0..3 {
            let event = stream.next_of("sample", LIMIT).expect("a sample event");
            let received = now_ms();
            let data: Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(data["host"]["hostname"], "streamed");
            let taken = data["point"]["t"].as_u64().expect("a point with its time");
            assert!(received.saturating_sub(taken) <= 2_000, "taken {taken}, received {received}");
            assert!(
                data["point"]["cpu_percent"].is_number() && data["point"]["cores"].is_array(),
                "{data}"
            );
            assert!(event.id.is_some());
        }
    }
    assert_eq!(common::http_get(fleet.http_port, "/api/hosts/0000/stream").unwrap().0, 404);
}

#[test]
fn a_reconnecting_client_resumes_where_it_left_off() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("resumed", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let _agent = fleet.start_agent("resumed", &keys, &["--interval", "200ms"]);
    fleet.wait_host("resumed", "up", LIMIT, |h| h["latest"].is_object());

    let mut first = SseClient::connect(fleet.http_port, "/api/stream", None);
    let last = first.next_of("sample", LIMIT).unwrap().id.unwrap();
    drop(first);
    // Let events happen while disconnected.
    let seq = |f: &Fleet| f.host("resumed").unwrap()["latest"]["seq"].as_u64().unwrap();
    let at_drop = seq(&fleet);
    fleet.wait_host("resumed", "three more samples", LIMIT, |h| {
        h["latest"]["seq"].as_u64() >= Some(at_drop + 3)
    });
    let mut again = SseClient::connect(fleet.http_port, "/api/stream", Some(last));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(again.next(LIMIT).unwrap().id.unwrap());
    }
    assert_eq!(ids, [last + 1, last + 2, last + 3], "no gap and no repeat");
}

#[test]
fn a_stalled_client_does_not_hold_up_another() {
    let fleet = Fleet::new();
    let names = ["busy-a", "busy-b", "busy-c", "busy-d"];
    let keys: Vec<_> = names.iter().map(|name| fleet.agent_keys(name, true)).collect();
    let _collector = fleet.start_collector(&["--stream-queue", "4"], "collector.log");
    // Forty events a second: enough to fill what the server buffers for a
    // client (hyper's ~400 KiB write buffer and a 128 KiB socket buffer)
    // within seconds.
    let agents: Vec<_> = names
        .iter()
        .zip(&keys)
        .map(|(name, keys)| fleet.start_agent(name, keys, &["--interval", "100ms"]))
        .collect();
    for name in names {
        fleet.wait_host(name, "up", LIMIT, |h| h["latest"].is_object());
    }

    // A client that asks for the stream and never reads it, with a tiny
    // receive buffer so the server's writes back up quickly.
    let stalled = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(&stalled, 2048).unwrap();
    let addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, fleet.http_port);
    rustix::net::connect(&stalled, &addr).unwrap();
    let mut stalled = TcpStream::from(stalled);
    write!(stalled, "GET /api/stream HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n").unwrap();

    let mut healthy = SseClient::connect(fleet.http_port, "/api/stream", None);
    for _ in 0..100 {
        healthy
            .next_of("sample", Duration::from_secs(5))
            .expect("the reading client keeps getting events");
    }
    wait_for("the stalled client to be dropped", LIMIT, || {
        let (_, text) = http_get(fleet.http_port, "/metrics")?;
        let metrics = parse_exposition(&text);
        let dropped = metrics.get(&(
            "curvemon_collector_stream_clients_dropped_total".to_string(),
            Default::default(),
        ));
        dropped.is_some_and(|d| *d >= 1.0).then_some(())
    });
    // And the reading client still gets events after that.
    healthy.next_of("sample", Duration::from_secs(5)).expect("events after the drop");
    drop(agents);
}

#[test]
fn history_api_serves_columns_since_a_time() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("recorded", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let _agent = fleet.start_agent("recorded", &keys, &["--interval", "200ms"]);
    let host = fleet
        .wait_host("recorded", "ten samples", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(10));
    let id = host["id"].as_str().unwrap();

    let all = fleet.json(&format!("/api/hosts/{id}/history")).unwrap();
    let t: Vec<u64> = serde_json::from_value(all["t"].clone()).unwrap();
    assert!(t.len() >= 9, "{t:?}");
    assert!(t.windows(2).all(|w| w[0] < w[1]), "time-ordered");
    for field in [
        "cpu_percent",
        "mem_used_bytes",
        "load1",
        "net_rx_bytes_per_second",
        "disk_read_bytes_per_second",
    ] {
        assert_eq!(all[field].as_array().unwrap().len(), t.len(), "{field}");
    }
    assert_eq!(all["cores"].as_array().unwrap().len() as u64, common::cpu_count());
    assert!(all["mem_used_bytes"][t.len() - 1].as_f64().unwrap() > 0.0);

    // (The store keeps growing meanwhile: the range is closed.)
    let (since, until) = (t[t.len() - 3], t[t.len() - 1]);
    let recent = fleet
        .json(&format!(
            "/api/hosts/{id}/history?since={since}&until={until}&metric=cpu_percent,load1"
        ))
        .unwrap();
    assert_eq!(recent["t"].as_array().unwrap().len(), 3);
    assert!(recent.get("mem_used_bytes").is_none(), "only what was asked");
    let (status, body) =
        http_get(fleet.http_port, &format!("/api/hosts/{id}/history?metric=cpu")).unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("unknown metric") && body.contains("cpu_percent"), "{body}");
    assert_eq!(
        http_get(fleet.http_port, &format!("/api/hosts/{id}/history?since=yesterday")).unwrap().0,
        400
    );
}

#[test]
fn metrics_pass_promtool_and_match_what_agents_sent() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("scraped", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    let _agent = fleet.start_agent("scraped", &keys, &["--interval", "300ms"]);
    let host =
        fleet.wait_host("scraped", "samples", LIMIT, |h| h["latest"]["seq"].as_u64() >= Some(5));
    let _stream = SseClient::connect(fleet.http_port, "/api/stream", None);

    let (status, text) = http_get(fleet.http_port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let (code, report) = promtool_check(&text);
    // Exit 1 is a parse error; 3 is lint remarks. The only remarks allowed
    // are on names kept identical to node_exporter's (camelCase fields,
    // counters without _total, bits) - its own output gets the same ones.
    assert_ne!(code, Some(1), "promtool could not parse /metrics:\n{report}");
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            name.starts_with("node_")
                && (line.contains("camelCase")
                    || line.contains("_total\" suffix")
                    || line.contains("base unit")),
            "unexpected promtool remark: {line}"
        );
    }

    let metrics = parse_exposition(&text);
    let get = |name: &str, labels: &[(&str, &str)]| {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        metrics.get(&(name.to_string(), labels)).copied()
    };
    let h = [("host", "scraped")];
    assert_eq!(get("curvemon_host_up", &h), Some(1.0));
    assert_eq!(get("node_memory_MemTotal_bytes", &h), host["model"]["mem_total_bytes"].as_f64());
    assert_eq!(
        get("node_boot_time_seconds", &h),
        Some(
            humantime::parse_rfc3339(host["model"]["boot_time"].as_str().unwrap())
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        )
    );
    assert_eq!(get("curvemon_collector_stream_clients", &[]), Some(1.0));
    assert!(get("curvemon_collector_frames_received_total", &[]).unwrap() >= 4.0);
    assert!(get("curvemon_collector_ingest_delay_seconds_count", &[]).unwrap() >= 3.0);
    let info = metrics
        .keys()
        .find(|(n, l)| n == "curvemon_host_info" && l.get("host").is_some_and(|h| h == "scraped"));
    let (_, labels) = info.expect("the model as an info metric");
    assert_eq!(labels["kernel"], host["model"]["kernel"].as_str().unwrap());
}
