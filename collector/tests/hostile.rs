//! Hostile input against a real collector: a flood from an authenticated
//! agent, a client without CURVE, an oversized frame. After each, the
//! collector keeps serving the honest agent and the API, and nothing the
//! honest agent sent is lost.

mod common;

use std::time::Duration;

use common::{Fleet, http_get, parse_exposition, promtool_check, raw_peer, wait_for};
use curvemon_protocol::{
    Family, Kind, Label, Message, Metrics, Model, Reject, RejectReason, Schema, codec,
};

const LIMIT: Duration = Duration::from_secs(30);

fn metric(fleet: &Fleet, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = http_get(fleet.http_port, "/metrics").unwrap();
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse_exposition(&text).get(&(name.to_string(), labels)).copied().unwrap_or(0.0)
}

fn seq(fleet: &Fleet) -> u64 {
    fleet.host("honest").unwrap()["latest"]["seq"].as_u64().unwrap()
}

/// The honest agent goes on: three more samples, none missed.
fn honest_agent_unaffected(fleet: &Fleet) {
    let now = seq(fleet);
    let host = fleet.wait_host("honest", "three more samples", LIMIT, |h| {
        h["state"] == "up" && h["latest"]["seq"].as_u64() >= Some(now + 3)
    });
    assert_eq!(host["missed_samples"], 0, "nothing the honest agent sent was lost");
    assert_eq!(http_get(fleet.http_port, "/healthz").unwrap().0, 200);
}

/// A collector with one honest agent, and a raw authenticated socket whose
/// key is allowlisted before the collector starts.
fn honest_fleet(
    ctx: &zmq::Context,
) -> (Fleet, common::Proc, common::Proc, zmq::Socket, curvemon_keys::KeyPair) {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("honest", true);
    let (raw, pair) = raw_peer(&fleet, ctx);
    let collector = fleet.start_collector(&[], "collector.log");
    let agent = fleet.start_agent("honest", &keys, &["--interval", "200ms"]);
    fleet.wait_host("honest", "up", LIMIT, |h| h["latest"].is_object());
    raw.set_sndtimeo(5000).unwrap();
    (fleet, collector, agent, raw, pair)
}

#[test]
fn a_flooding_agent_is_throttled_and_others_are_not() {
    let ctx = zmq::Context::new();
    let (fleet, collector, _agent, flood, pair) = honest_fleet(&ctx);
    flood.connect(&fleet.endpoint()).unwrap();
    let frame = codec::encode(&Message::ModelRequest);
    for _ in 0..5000 {
        flood.send(&frame[..], 0).unwrap();
    }
    wait_for("throttled frames", LIMIT, || {
        (metric(&fleet, "curvemon_collector_throttled_frames_total", &[]) >= 1000.0).then_some(())
    });
    collector.wait_for_log("Throttling an agent", LIMIT);
    assert!(collector.log().contains(&pair.public.to_z85()), "the log names the key");
    honest_agent_unaffected(&fleet);
}

#[test]
fn a_client_without_curve_never_reaches_the_handler() {
    let ctx = zmq::Context::new();
    let (fleet, _collector, _agent, _raw, _) = honest_fleet(&ctx);
    let before = metric(&fleet, "curvemon_collector_frames_received_total", &[]);
    let plain = ctx.socket(zmq::DEALER).unwrap();
    plain.set_linger(0).unwrap();
    plain.connect(&fleet.endpoint()).unwrap();
    plain.send(&codec::encode(&Message::ModelRequest)[..], zmq::DONTWAIT).ok();
    // Both ends see the mismatch at once: when libzmq's collector side is
    // first it counts `mechanism_mismatch`; when the client is, it hangs up
    // (for good: libzmq does not retry after a protocol error) and the
    // collector counts `closed`. The raw-greeting test below pins the first.
    wait_for("a failed handshake", LIMIT, || {
        let failures = |reason| {
            metric(&fleet, "curvemon_collector_handshake_failures_total", &[("reason", reason)])
        };
        (failures("mechanism_mismatch") + failures("closed") >= 1.0).then_some(())
    });
    honest_agent_unaffected(&fleet);
    let after = metric(&fleet, "curvemon_collector_frames_received_total", &[]);
    let honest_frames = 10.0; // generous: the honest agent's samples meanwhile
    assert!(after - before < 3.0 * honest_frames, "the plain client's frame was not received");
    assert_eq!(fleet.stats()["decode_errors"], 0);
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_buffered() {
    let ctx = zmq::Context::new();
    let (fleet, _collector, _agent, big, _) = honest_fleet(&ctx);
    big.connect(&fleet.endpoint()).unwrap();
    let frames_before = metric(&fleet, "curvemon_collector_frames_received_total", &[]);
    let bytes_before = metric(&fleet, "curvemon_collector_bytes_received_total", &[]);
    big.send(vec![0u8; 4 << 20], 0).unwrap();
    honest_agent_unaffected(&fleet);
    honest_agent_unaffected(&fleet);
    let bytes_after = metric(&fleet, "curvemon_collector_bytes_received_total", &[]);
    let frames_after = metric(&fleet, "curvemon_collector_frames_received_total", &[]);
    // Only the honest agent's small frames arrived: no 4 MiB among them.
    assert!(bytes_after - bytes_before < 1_000_000.0, "{bytes_before} -> {bytes_after}");
    assert!(frames_after > frames_before);
    assert_eq!(fleet.stats()["decode_errors"], 0, "never handed to the decoder");
}

/// A ZMTP 3.0 greeting (RFC 23) offering `mechanism`, as a client.
fn greeting(mechanism: &str) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    let mut name = mechanism.as_bytes().to_vec();
    name.resize(20, 0);
    g.extend_from_slice(&name);
    g.push(0); // as-server: no
    g.resize(64, 0);
    g
}

/// A CURVE HELLO (RFC 26) whose signature box is garbage: the server
/// cannot open it.
fn bogus_hello() -> Vec<u8> {
    let mut body = b"\x05HELLO\x01\x00".to_vec();
    body.resize(8 + 72, 0);
    body.extend((0..32 + 8 + 80).map(|i| i as u8));
    let mut frame = vec![0x04, u8::try_from(body.len()).unwrap()];
    frame.extend_from_slice(&body);
    frame
}

/// Connects over plain TCP and waits until the collector has seen the
/// connection, so that what follows is a failure of a known peer.
fn connect_seen(fleet: &Fleet) -> std::net::TcpStream {
    let before = metric(fleet, "curvemon_collector_connections_accepted_total", &[]);
    let stream = std::net::TcpStream::connect(("127.0.0.1", fleet.zmq_port)).unwrap();
    wait_for("the collector to see the connection", LIMIT, || {
        (metric(fleet, "curvemon_collector_connections_accepted_total", &[]) > before).then_some(())
    });
    stream
}

#[test]
fn handshake_failures_are_logged_with_the_peer_address() {
    use std::io::Write;
    let ctx = zmq::Context::new();
    let (fleet, collector, _agent, _raw, _) = honest_fleet(&ctx);
    let cases = [
        ("NULL mechanism", greeting("NULL"), "mechanism mismatch", "mechanism_mismatch"),
        (
            "wrong server key",
            [greeting("CURVE"), bogus_hello()].concat(),
            "cryptographic error",
            "cryptographic",
        ),
    ];
    for (what, bytes, words, reason) in cases {
        let before =
            metric(&fleet, "curvemon_collector_handshake_failures_total", &[("reason", reason)]);
        let mut stream = connect_seen(&fleet);
        let peer = stream.local_addr().unwrap().to_string();
        stream.write_all(&bytes).unwrap();
        wait_for(&format!("the {what} failure logged with {peer}"), LIMIT, || {
            collector
                .log()
                .lines()
                .any(|l| {
                    l.contains("CURVE handshake failed") && l.contains(&peer) && l.contains(words)
                })
                .then_some(())
        });
        let after =
            metric(&fleet, "curvemon_collector_handshake_failures_total", &[("reason", reason)]);
        assert_eq!(after, before + 1.0, "{what}: counted once under {reason}");
    }
    honest_agent_unaffected(&fleet);
    assert_eq!(fleet.stats()["decode_errors"], 0);
}

/// A model as the raw peer (pinned to the name "raw") would declare it.
fn raw_model(families: Vec<Family>) -> Model {
    Model {
        hostname: "raw".into(),
        machine_id: "m".into(),
        boot_id: "b".into(),
        kernel: "k".into(),
        os: "o".into(),
        cpu_model: "c".into(),
        cpu_count: 1,
        mem_total_bytes: 1,
        swap_total_bytes: 0,
        boot_time_unix: 0,
        agent_version: "hostile".into(),
        interval_ms: 1000,
        schema: Schema::new(families),
    }
}

fn gauge(name: &str, series: Vec<Vec<Label>>) -> Family {
    Family { name: name.into(), help: "h".into(), kind: Kind::Gauge, series }
}

/// The next message the collector sends `socket` that is not a ping,
/// within the limit.
fn answer(socket: &zmq::Socket) -> Message {
    wait_for("an answer from the collector", LIMIT, || {
        let frame = socket.recv_bytes(0).ok()?;
        Some(codec::decode(&frame).unwrap()).filter(|m| !matches!(m, Message::Ping(_)))
    })
}

/// An authorized client declares models one agent must never be able to
/// slip into the fleet's /metrics: each is refused with a reject that says
/// what is wrong, counted by reason and logged with the peer; a model
/// whose label values hold quotes, backslashes and newlines is accepted
/// and exported escaped; promtool parses the whole exposition throughout.
#[test]
fn bad_models_are_refused_and_the_scrape_stays_valid() {
    let ctx = zmq::Context::new();
    let (fleet, collector, _agent, raw, pair) = honest_fleet(&ctx);
    raw.connect(&fleet.endpoint()).unwrap();
    let l = |n: &str, v: &str| Label::new(n, v);
    let mut newline_host = raw_model(vec![gauge("x", vec![vec![]])]);
    newline_host.hostname = "raw\nx".into();
    let cases: Vec<(&str, Model, &str, &str)> = vec![
        (
            "a quote in a label name",
            raw_model(vec![gauge("x", vec![vec![l("a\"b", "1")]])]),
            "label_name",
            "label name",
        ),
        (
            "a quote in a metric name",
            raw_model(vec![gauge("a\"b", vec![vec![]])]),
            "metric_name",
            "metric name",
        ),
        (
            "a newline in a metric name",
            raw_model(vec![gauge("x\ny", vec![vec![]])]),
            "metric_name",
            "metric name",
        ),
        (
            "a host label",
            raw_model(vec![gauge("x", vec![vec![l("host", "web-01")]])]),
            "reserved_label",
            "\"host\"",
        ),
        (
            "the collector's own name",
            raw_model(vec![gauge("curvemon_host_up", vec![vec![]])]),
            "reserved_name",
            "reserves",
        ),
        (
            "a duplicate series",
            raw_model(vec![gauge("x", vec![vec![l("a", "1")], vec![l("a", "1")]])]),
            "duplicate_series",
            "two series",
        ),
        (
            "a 100 kB label value",
            raw_model(vec![gauge("x", vec![vec![l("a", &"v".repeat(100_000))]])]),
            "too_long",
            "at most 1024",
        ),
        ("a newline in the host name", newline_host, "hostname", "host name"),
    ];
    for (what, model, reason, words) in cases {
        let before =
            metric(&fleet, "curvemon_collector_models_refused_total", &[("reason", reason)]);
        raw.send(codec::encode(&Message::Model(model)), 0).unwrap();
        match answer(&raw) {
            Message::Reject(Reject { reason: RejectReason::InvalidModel { problem }, detail }) => {
                assert!(problem.contains(words), "{what}: {problem}");
                assert!(detail.contains(&problem), "{what}: {detail}");
            }
            other => panic!("{what}: expected a reject, got {other:?}"),
        }
        let after =
            metric(&fleet, "curvemon_collector_models_refused_total", &[("reason", reason)]);
        assert_eq!(after, before + 1.0, "{what}: counted once under {reason}");
        let (_, text) = http_get(fleet.http_port, "/metrics").unwrap();
        let (code, report) = promtool_check(&text);
        assert_ne!(code, Some(1), "{what}: promtool could not parse /metrics:\n{report}");
    }
    let refusals =
        collector.log().lines().filter(|l| l.contains("Refused an agent's model")).count();
    assert!(refusals >= 8, "each refusal is logged");
    assert!(collector.log().contains(&pair.public.to_z85()), "with the key");
    assert!(fleet.host("raw").is_none_or(|h| h["model"].is_null()), "no bad model was kept");

    // Hostile label values are fine: escaped on the way out.
    let nasty = "a\"b\\c\nd";
    let model = raw_model(vec![gauge("hostile_gauge", vec![vec![l("v", nasty)]])]);
    let revision = model.schema.revision;
    raw.send(codec::encode(&Message::Model(model)), 0).unwrap();
    let metrics = Metrics { seq: 1, taken_at_ms: 1, schema_revision: revision, values: vec![42.0] };
    raw.send(codec::encode(&Message::Metrics(metrics)), 0).unwrap();
    let value = wait_for("the hostile gauge in /metrics", LIMIT, || {
        let (_, text) = http_get(fleet.http_port, "/metrics")?;
        let labels = [("host", "raw"), ("v", nasty)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_exposition(&text).get(&("hostile_gauge".to_string(), labels)).copied()
    });
    assert_eq!(value, 42.0);
    let (_, text) = http_get(fleet.http_port, "/metrics").unwrap();
    let (code, report) = promtool_check(&text);
    assert_ne!(code, Some(1), "promtool could not parse /metrics:\n{report}");
    honest_agent_unaffected(&fleet);
}
