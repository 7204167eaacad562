//! Numbers an agent or a browser chooses never panic the collector, in the
//! debug builds tests run (where integer overflow panics): arbitrary
//! sequence numbers, timestamps, boot times, intervals, CPU labels and
//! values through the registry, the views, the live-event hub and the
//! Prometheus exposition, and arbitrary `Last-Event-ID`s through the hub.

use std::time::Duration;

use curvemon_collector::{
    exposition::{self, StreamStats},
    registry::{DEFAULT_RETENTION, Liveness, Now, Peer, Registry},
    stats::Stats,
    stream::Hub,
    view::{self, HostView},
};
use curvemon_keys::KeyPair;
use curvemon_protocol::{Bye, Family, Hello, Kind, Label, Message, Metrics, Model, Schema};
use proptest::prelude::*;

/// Mostly numbers a real host could have, plus the extremes.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![2 => 0..10_000u64, 1 => any::<u64>(), 2 => Just(u64::MAX), 1 => Just(u64::MAX - 1)]
}

/// CPU labels: small numbers, huge ones, and text.
fn cpu_label() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..8u32).prop_map(|n| n.to_string()),
        Just(u32::MAX.to_string()),
        Just(u64::MAX.to_string()),
        Just("-1".to_string()),
        "\\PC{0,8}",
    ]
}

fn schema() -> impl Strategy<Value = Schema> {
    let cpu = prop::collection::vec((cpu_label(), prop_oneof!["idle", "user", "iowait"]), 0..6)
        .prop_map(|series| Family {
            name: "node_cpu_seconds_total".into(),
            help: "h".into(),
            kind: Kind::Counter,
            series: series
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|(c, m)| vec![Label::new("cpu", c), Label::new("mode", m)])
                .collect(),
        });
    let scalars = prop::sample::subsequence(
        vec![
            "node_load1",
            "node_memory_MemAvailable_bytes",
            "node_memory_MemTotal_bytes",
            "node_network_receive_bytes_total",
            "curvemon_uptime_seconds",
        ],
        0..5,
    );
    (cpu, scalars).prop_map(|(cpu, scalars)| {
        let mut families = vec![cpu];
        families.extend(scalars.into_iter().map(|name| Family {
            name: name.into(),
            help: "h".into(),
            kind: Kind::Gauge,
            series: vec![vec![]],
        }));
        Schema::new(families)
    })
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(f64::MAX), -1e6..1e12f64]
}

#[derive(Debug, Clone)]
enum Step {
    Hello {
        peer: usize,
        interval_ms: u32,
    },
    Model {
        peer: usize,
        boot_time: u64,
        interval_ms: u32,
        schema: Schema,
    },
    /// Metrics following the peer's last model (or a random revision).
    Metrics {
        peer: usize,
        seq: u64,
        taken_at_ms: u64,
        known: bool,
        values: Vec<f64>,
    },
    Bye {
        peer: usize,
    },
    Advance(u64),
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    let peer = 0..3usize;
    prop_oneof![
        (peer.clone(), any::<u32>())
            .prop_map(|(peer, interval_ms)| Step::Hello { peer, interval_ms }),
        (peer.clone(), number(), any::<u32>(), schema()).prop_map(
            |(peer, boot_time, interval_ms, schema)| Step::Model {
                peer,
                boot_time,
                interval_ms,
                schema
            }
        ),
        (
            peer.clone(),
            number(),
            number(),
            prop::bool::weighted(0.9),
            prop::collection::vec(value(), 1..12)
        )
            .prop_map(|(peer, seq, taken_at_ms, known, values)| Step::Metrics {
                peer,
                seq,
                taken_at_ms,
                known,
                values
            }),
        peer.prop_map(|peer| Step::Bye { peer }),
        prop_oneof![0..5_000u64, Just(86_400_000u64)].prop_map(Step::Advance),
        Just(Step::Sweep),
    ]
}

fn hello(name: &str, interval_ms: u32) -> Message {
    Message::Hello(Hello {
        agent_version: "p".into(),
        hostname: name.into(),
        machine_id: "m".into(),
        boot_id: "b".into(),
        interval_ms,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_agent_numbers_panic_the_collector(
        steps in prop::collection::vec(step(), 1..40),
        last_ids in prop::collection::vec(number(), 1..4),
    ) {
        let mut registry = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let hub = Hub::new(8);
        let peers: Vec<Peer> = (0..3u8)
            .map(|i| Peer {
                key: KeyPair::generate().unwrap().public,
                routing_id: vec![i],
                address: format!("127.0.0.1:{i}"),
                pinned: None,
                version: curvemon_protocol::PROTOCOL_VERSION,
            })
            .collect();
        let mut schemas: [Option<Schema>; 3] = [None, None, None];
        let mut now = Now::current();
        for step in steps {
            match step {
                Step::Hello { peer, interval_ms } => {
                    registry.on_message(&peers[peer], hello(&format!("h{peer}"), interval_ms), now);
                }
                Step::Model { peer, boot_time, interval_ms, schema } => {
                    schemas[peer] = Some(schema.clone());
                    let model = Model {
                        hostname: format!("h{peer}"),
                        machine_id: "m".into(),
                        boot_id: "b".into(),
                        kernel: "k".into(),
                        os: "o".into(),
                        cpu_model: "c".into(),
                        cpu_count: 1,
                        mem_total_bytes: boot_time,
                        swap_total_bytes: 0,
                        boot_time_unix: boot_time,
                        agent_version: "p".into(),
                        interval_ms,
                        schema,
                    };
                    registry.on_message(&peers[peer], Message::Model(model), now);
                }
                Step::Metrics { peer, seq, taken_at_ms, known, values } => {
                    // Following the peer's schema, values of the right count.
                    let (schema_revision, values) = match &schemas[peer] {
                        Some(schema) if known => (
                            schema.revision,
                            values.iter().copied().cycle().take(schema.series_count()).collect(),
                        ),
                        _ => (seq, values),
                    };
                    let metrics = Metrics { seq, taken_at_ms, schema_revision, values };
                    registry.on_message(&peers[peer], Message::Metrics(metrics), now);
                }
                Step::Bye { peer } => {
                    registry.on_message(&peers[peer], Message::Bye(Bye { reason: "p".into() }), now);
                }
                Step::Advance(ms) => now = now.after(Duration::from_millis(ms)),
                Step::Sweep => {
                    registry.sweep(now);
                }
            }
            for change in registry.drain_changes() {
                if let Some(event) = view::event(&registry, &change) {
                    hub.publish(event);
                }
            }
        }
        for host in registry.hosts() {
            let _ = HostView::new(host, &registry, true);
        }
        // What goes to the store: its accounting takes any numbers.
        let mut seqs = curvemon_collector::store::seqs::HostSeq::default();
        for op in registry.drain_store_ops() {
            match op {
                curvemon_collector::store::writer::Op::Samples { samples, .. } => {
                    for s in samples {
                        let _ = seqs.has(s.seq);
                        seqs.add(s.seq, s.seq);
                        let _ = seqs.missing_in(s.seq.saturating_sub(5), s.seq);
                    }
                }
                curvemon_collector::store::writer::Op::Resume { resume, .. } => {
                    seqs.add(1, resume.oldest_seq.saturating_sub(1));
                }
                _ => {}
            }
        }
        let rendered =
            exposition::render(&registry, &Stats::default().snapshot(), StreamStats::default(), &Default::default(), &[]);
        prop_assert!(rendered.is_ok(), "{rendered:?}");
        for last in last_ids {
            let _ = hub.subscribe(None, Some(last));
            let _ = hub.subscribe(Some("x".into()), Some(last));
        }
    }
}
