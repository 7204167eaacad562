//! Hostile input against a real collector: a flood from an authenticated
//! agent, a client without CURVE, an oversized frame. After each, the
//! collector keeps serving the honest agent and the API, and nothing the
//! honest agent sent is lost.

mod common;

use std::time::Duration;

use common::{Fleet, http_get, parse_exposition, raw_peer, wait_for};
use curvemon_protocol::{Message, codec};

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
