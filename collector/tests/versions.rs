//! Protocol versions across releases: a collector of this release serves
//! agents of earlier ones (version 1 and 2 frames, as frozen in
//! protocol/tests/data/) in their own version, and an agent of this release
//! falls back to the version of an older collector (which answers anything
//! newer with `Reject(UnsupportedVersion)`), leaving out what that version
//! lacks: application series for version 1, checks for versions 1 and 2.

mod common;

use std::time::Duration;

use common::{Fleet, raw_peer, wait_for};
use curvemon_protocol::{
    Family, Hello, Kind, Message, Metrics, Model, Reject, RejectReason, Schema,
    codec::{self, encode_with_version},
    decode_versioned, peek_version,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Version 1 and 2 agents, speaking raw frames: hello, model, metrics.
#[test]
fn version_1_and_2_agents_are_served_in_their_versions() {
    served_in(1);
    served_in(2);
}

fn served_in(version: u16) {
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
    old.send(encode_with_version(&hello, version), 0).unwrap();
    let frame = wait_for("a model request", LIMIT, || {
        let frame = old.recv_bytes(0).ok()?;
        matches!(decode_versioned(&frame), Ok((_, Message::ModelRequest))).then_some(frame)
    });
    assert_eq!(peek_version(&frame), Ok(version), "answered in the agent's version");
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
    old.send(encode_with_version(&model, version), 0).unwrap();
    let metrics = |seq| {
        Message::Metrics(Metrics {
            seq,
            taken_at_ms: 1_763_760_000_000 + seq,
            schema_revision: revision,
            values: vec![0.25 * seq as f64],
        })
    };
    old.send(encode_with_version(&metrics(1), version), 0).unwrap();
    old.send(encode_with_version(&metrics(2), version), 0).unwrap();
    let host = fleet.wait_host("raw", "two samples", LIMIT, |h| h["latest"]["seq"] == 2);
    assert_eq!(host["latest"]["load1"], 0.5);
    assert_eq!(host["missed_samples"], 0);
    assert_eq!(fleet.stats()["decode_errors"], 0);
}

/// What an older release's collector does: anything newer than its own
/// version is answered with `Reject(UnsupportedVersion)` in its version;
/// its own version is served. The agent falls back, reports its host in
/// that version, and sends nothing the version lacks.
#[test]
fn an_agent_falls_back_to_a_version_1_collector() {
    let (log, kinds) = fall_back_to(1);
    assert!(log.contains("speaks an older protocol version"), "{log}");
    assert!(kinds.iter().all(|k| ["hello", "metrics", "model"].contains(&k.as_str())), "{kinds:?}");
}

/// A version 2 collector gets samples and application series but no
/// checks; the agent says once that they are not sent.
#[test]
fn an_agent_with_checks_falls_back_to_a_version_2_collector() {
    let (log, kinds) = fall_back_to(2);
    assert!(kinds.iter().any(|k| k == "sample"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k.starts_with("check")), "{kinds:?}");
    assert_eq!(log.matches("cannot take check results").count(), 1, "{log}");
}

/// Runs an agent with a check against a fake collector of version `old`
/// until fifteen samples arrive; the agent's log and the kinds of message it
/// sent in version `old`.
fn fall_back_to(old: u16) -> (String, Vec<String>) {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("new-agent", false);
    let config = fleet.path("agent.toml");
    std::fs::write(
        &config,
        "[[check]]\nname = \"nothing\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\ninterval = \"1s\"\n",
    )
    .unwrap();
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
    let agent = fleet.start_agent(
        "new-agent",
        &keys,
        &["--interval", "200ms", "--config", config.to_str().unwrap()],
    );
    let (mut rejects, mut seqs, mut hellos, mut kinds) = (0, Vec::new(), 0, Vec::new());
    wait_for(&format!("version {old} samples from the new agent"), LIMIT, || {
        let Ok(routing) = router.recv_bytes(0) else { return None };
        let frame = router.recv_bytes(0).ok()?;
        let version = peek_version(&frame).ok()?;
        let answer = if version != old {
            rejects += 1;
            Some(Message::Reject(Reject {
                reason: RejectReason::UnsupportedVersion { collector: old, agent: version },
                detail: format!("this collector speaks protocol version {old}"),
            }))
        } else {
            let message = codec::decode(&frame).ok()?;
            kinds.push(message.kind().to_string());
            match message {
                Message::Hello(_) => {
                    hellos += 1;
                    Some(Message::ModelRequest)
                }
                Message::Metrics(m) => {
                    seqs.push(m.seq);
                    None
                }
                Message::Sample(s) => {
                    seqs.push(s.seq);
                    None
                }
                _ => None,
            }
        };
        if let Some(answer) = answer {
            router.send(&routing, zmq::SNDMORE).unwrap();
            router.send(encode_with_version(&answer, old), 0).unwrap();
        }
        // Three seconds: the check (every second) reports while connected.
        (seqs.len() >= 15).then_some(())
    });
    assert!(rejects >= 1, "the agent tried its own version first");
    assert_eq!(hellos, 1, "one hello again, in version {old}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    agent.wait_for_log("Check failed.", LIMIT);
    let log = agent.log();
    assert!(!log.contains("Reconnecting"), "it never reconnected: {log}");
    (log, kinds)
}
