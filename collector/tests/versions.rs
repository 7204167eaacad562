//! Protocol versions across releases: a collector of this release serves
//! an agent of the previous one (version 1 frames, as frozen in
//! protocol/tests/data/v1) in version 1, and an agent of this release falls
//! back to version 1 when its collector is of the previous release (which
//! answers anything newer with `Reject(UnsupportedVersion)`).

mod common;

use std::time::Duration;

use common::{Fleet, raw_peer, wait_for};
use curvemon_protocol::{
    Family, Hello, Kind, Message, Metrics, Model, Reject, RejectReason, Schema,
    codec::{self, encode_with_version},
    decode_versioned, peek_version,
};

const LIMIT: Duration = Duration::from_secs(30);

/// A version 1 agent, speaking raw frames: hello, model, metrics.
#[test]
fn a_version_1_agent_is_served_in_version_1() {
    let fleet = Fleet::new();
    let ctx = zmq::Context::new();
    let (old, _) = raw_peer(&fleet, &ctx);
    let _collector = fleet.start_collector(&[], "collector.log");
    old.connect(&fleet.endpoint()).unwrap();
    let hello = Message::Hello(Hello {
        agent_version: "0.1.0".into(),
        hostname: "raw".into(),
        machine_id: "m".into(),
        boot_id: "b".into(),
        interval_ms: 1000,
    });
    old.send(encode_with_version(&hello, 1), 0).unwrap();
    let frame = wait_for("a model request", LIMIT, || {
        let frame = old.recv_bytes(0).ok()?;
        matches!(decode_versioned(&frame), Ok((_, Message::ModelRequest))).then_some(frame)
    });
    assert_eq!(peek_version(&frame), Ok(1), "answered in the agent's version");
    let schema = Schema::new(vec![Family {
        name: "node_load1".into(),
        help: "1m load average.".into(),
        kind: Kind::Gauge,
        series: vec![vec![]],
    }]);
    let revision = schema.revision;
    let model = Message::Model(Model {
        hostname: "raw".into(),
        machine_id: "m".into(),
        boot_id: "b".into(),
        kernel: "k".into(),
        os: "o".into(),
        cpu_model: "c".into(),
        cpu_count: 1,
        mem_total_bytes: 1 << 30,
        swap_total_bytes: 0,
        boot_time_unix: 1,
        agent_version: "0.1.0".into(),
        interval_ms: 1000,
        schema,
    });
    old.send(encode_with_version(&model, 1), 0).unwrap();
    let metrics = |seq| {
        Message::Metrics(Metrics {
            seq,
            taken_at_ms: 1_763_760_000_000 + seq,
            schema_revision: revision,
            values: vec![0.25 * seq as f64],
        })
    };
    old.send(encode_with_version(&metrics(1), 1), 0).unwrap();
    old.send(encode_with_version(&metrics(2), 1), 0).unwrap();
    let host = fleet.wait_host("raw", "two samples", LIMIT, |h| h["latest"]["seq"] == 2);
    assert_eq!(host["latest"]["load1"], 0.5);
    assert_eq!(host["missed_samples"], 0);
    assert_eq!(fleet.stats()["decode_errors"], 0);
}

/// What the previous release's collector does: anything but version 1 is
/// answered with `Reject(UnsupportedVersion)` in version 1; version 1 is
/// served. The agent falls back and reports its host in version 1.
#[test]
fn an_agent_falls_back_to_a_version_1_collector() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("new-agent", false);
    let server =
        curvemon_keys::cert::read_secret(&fleet.collector_keys().join("collector.key_secret"))
            .unwrap();
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_curve_server(true).unwrap();
    router.set_curve_secretkey(server.pair.secret.as_bytes()).unwrap();
    router.set_linger(0).unwrap();
    router.set_rcvtimeo(200).unwrap();
    router.bind(&fleet.endpoint()).unwrap();
    let agent = fleet.start_agent("new-agent", &keys, &["--interval", "200ms"]);
    let (mut rejects, mut metrics, mut hellos_v1) = (0, Vec::new(), 0);
    wait_for("version 1 metrics from the new agent", LIMIT, || {
        let Ok(routing) = router.recv_bytes(0) else { return None };
        let frame = router.recv_bytes(0).ok()?;
        let version = peek_version(&frame).ok()?;
        let answer = if version != 1 {
            rejects += 1;
            Some(Message::Reject(Reject {
                reason: RejectReason::UnsupportedVersion { collector: 1, agent: version },
                detail: "this collector speaks protocol version 1".into(),
            }))
        } else {
            match codec::decode(&frame).ok()? {
                Message::Hello(_) => {
                    hellos_v1 += 1;
                    Some(Message::ModelRequest)
                }
                Message::Metrics(m) => {
                    metrics.push(m.seq);
                    None
                }
                _ => None,
            }
        };
        if let Some(answer) = answer {
            router.send(&routing, zmq::SNDMORE).unwrap();
            router.send(encode_with_version(&answer, 1), 0).unwrap();
        }
        (metrics.len() >= 5).then_some(())
    });
    assert!(rejects >= 1, "the agent tried version 2 first");
    assert_eq!(hellos_v1, 1, "one hello again, in version 1");
    assert!(metrics.windows(2).all(|w| w[1] == w[0] + 1), "{metrics:?}");
    let log = agent.log();
    assert!(log.contains("speaks an older protocol version"), "{log}");
    assert!(!log.contains("Reconnecting"), "it never reconnected: {log}");
}
