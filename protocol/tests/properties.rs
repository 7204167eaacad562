//! Properties over generated input: every message survives encode → decode,
//! and no byte string makes the decoder panic.

use curvemon_protocol::{
    AppInstance, AppKind, AppPoint, AppSeries, AppSeriesDecl, AppValue, Bye, Family, Hello,
    HostValues, Kind, Label, Message, Metrics, Model, Ping, Reject, RejectReason, Sample, Schema,
    Sketch, decode, encode,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn schema() -> impl Strategy<Value = Schema> {
    let label = (text(), text()).prop_map(|(n, v)| Label::new(n, v));
    let family = (
        text(),
        text(),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(label, 0..3), 0..4),
    )
        .prop_map(|(name, help, counter, series)| Family {
            name,
            help,
            kind: if counter { Kind::Counter } else { Kind::Gauge },
            series,
        });
    prop::collection::vec(family, 0..5).prop_map(Schema::new)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (text(), text(), text(), text(), any::<u32>()).prop_map(|(a, h, m, b, i)| Message::Hello(
            Hello { agent_version: a, hostname: h, machine_id: m, boot_id: b, interval_ms: i }
        )),
        Just(Message::ModelRequest),
        (text(), any::<u32>(), any::<u64>(), any::<u64>(), schema()).prop_map(
            |(h, c, m, b, schema)| {
                Message::Model(Model {
                    hostname: h.clone(),
                    machine_id: h.clone(),
                    boot_id: h.clone(),
                    kernel: h.clone(),
                    os: h.clone(),
                    cpu_model: h.clone(),
                    cpu_count: c,
                    mem_total_bytes: m,
                    swap_total_bytes: m / 2,
                    boot_time_unix: b,
                    agent_version: h,
                    interval_ms: c,
                    schema,
                })
            }
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), prop::collection::vec(any::<f64>(), 0..64))
            .prop_map(|(seq, taken_at_ms, schema_revision, values)| Message::Metrics(Metrics {
                seq,
                taken_at_ms,
                schema_revision,
                values
            })),
        any::<u64>().prop_map(|t| Message::Ping(Ping { sent_at_ms: t })),
        (any::<u16>(), any::<u16>(), text()).prop_map(|(c, a, d)| Message::Reject(Reject {
            reason: RejectReason::UnsupportedVersion { collector: c, agent: a },
            detail: d
        })),
        (text(), text()).prop_map(|(n, d)| Message::Reject(Reject {
            reason: RejectReason::NameTaken { name: n },
            detail: d
        })),
        text().prop_map(|r| Message::Bye(Bye { reason: r })),
        app_series(),
        sample(),
    ]
}

fn app_kind() -> impl Strategy<Value = AppKind> {
    prop_oneof![
        Just(AppKind::Counter),
        Just(AppKind::Gauge),
        Just(AppKind::Distribution),
        prop::collection::vec(any::<f64>(), 0..5).prop_map(|bounds| AppKind::Histogram { bounds }),
        prop::collection::vec(any::<f64>(), 0..5)
            .prop_map(|quantiles| AppKind::Summary { quantiles }),
    ]
}

fn app_series() -> impl Strategy<Value = Message> {
    let instance = (any::<u32>(), text(), text(), any::<u32>()).prop_map(|(id, app, name, pid)| {
        AppInstance { id, app, name: name.clone(), pid, unit: name, source: "statsd-udp".into() }
    });
    let label = (text(), text()).prop_map(|(n, v)| Label::new(n, v));
    let decl = (any::<u32>(), any::<u32>(), text(), app_kind(), prop::collection::vec(label, 0..3))
        .prop_map(|(id, instance, name, kind, labels)| AppSeriesDecl {
            id,
            instance,
            name: name.clone(),
            help: name,
            kind,
            labels,
        });
    (
        any::<bool>(),
        prop::collection::vec(instance, 0..3),
        prop::collection::vec(decl, 0..4),
        prop::collection::vec(any::<u32>(), 0..4),
    )
        .prop_map(|(full, instances, declare, retire)| {
            Message::AppSeries(AppSeries {
                full,
                instances,
                declare,
                retire: retire.clone(),
                retire_instances: retire,
            })
        })
}

fn sample() -> impl Strategy<Value = Message> {
    let sketch = prop::collection::vec((any::<f64>(), 1..5u64), 0..20).prop_map(|values| {
        let mut s = Sketch::new();
        values.into_iter().for_each(|(v, w)| s.observe(v, w));
        s
    });
    let value = prop_oneof![
        any::<f64>().prop_map(AppValue::Counter),
        any::<f64>().prop_map(AppValue::Gauge),
        sketch.prop_map(AppValue::Distribution),
        (prop::collection::vec(any::<f64>(), 0..4), any::<f64>())
            .prop_map(|(counts, sum)| AppValue::Histogram { counts, sum }),
        (prop::collection::vec(any::<f64>(), 0..4), any::<f64>(), any::<f64>())
            .prop_map(|(values, sum, count)| AppValue::Summary { values, sum, count }),
    ];
    let point = (any::<u32>(), value).prop_map(|(series, value)| AppPoint { series, value });
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<f64>(), 0..16),
        prop::collection::vec(point, 0..6),
    )
        .prop_map(|(seq, taken_at_ms, schema_revision, values, apps)| {
            Message::Sample(Sample {
                seq,
                taken_at_ms,
                host: HostValues { schema_revision, values },
                apps,
            })
        })
}

proptest! {
    #[test]
    fn every_message_round_trips(message in message()) {
        let frame = encode(&message);
        let back = decode(&frame).expect("our own frames decode");
        // Compared as bytes: NaN values are equal only bit for bit.
        prop_assert_eq!(encode(&back), frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut frame = b"CMON\x00\x01".to_vec();
        frame.extend_from_slice(&body);
        let _ = decode(&frame);
    }
}
