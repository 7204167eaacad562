//! One example of every message, shared by the round-trip and golden tests.

use curvemon_protocol::{
    Bye, Family, Hello, Kind, Label, Message, Metrics, Model, Ping, Reject, RejectReason, Schema,
};

/// A name for each example (the golden file's stem) and the message.
pub fn examples() -> Vec<(&'static str, Message)> {
    let schema = Schema::new(vec![
        Family {
            name: "node_cpu_seconds_total".into(),
            help: "Seconds the CPUs spent in each mode.".into(),
            kind: Kind::Counter,
            series: vec![
                vec![Label::new("cpu", "0"), Label::new("mode", "idle")],
                vec![Label::new("cpu", "0"), Label::new("mode", "user")],
            ],
        },
        Family {
            name: "node_load1".into(),
            help: "1m load average.".into(),
            kind: Kind::Gauge,
            series: vec![vec![]],
        },
    ]);
    vec![
        (
            "hello",
            Message::Hello(Hello {
                agent_version: "0.1.0".into(),
                hostname: "web-01".into(),
                machine_id: "4c4c4544004e4b10804bb4c04f4e4d32".into(),
                boot_id: "0b7e1f1c-0f2e-4d55-9a3c-2f1d6f0e9a11".into(),
                interval_ms: 5000,
            }),
        ),
        ("model_request", Message::ModelRequest),
        (
            "model",
            Message::Model(Model {
                hostname: "web-01".into(),
                machine_id: "4c4c4544004e4b10804bb4c04f4e4d32".into(),
                boot_id: "0b7e1f1c-0f2e-4d55-9a3c-2f1d6f0e9a11".into(),
                kernel: "6.1.0-18-amd64".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                cpu_model: "AMD EPYC 7B13".into(),
                cpu_count: 2,
                mem_total_bytes: 25_769_803_776,
                swap_total_bytes: 0,
                boot_time_unix: 1_763_700_000,
                agent_version: "0.1.0".into(),
                interval_ms: 5000,
                schema,
            }),
        ),
        (
            "metrics",
            Message::Metrics(Metrics {
                seq: 42,
                taken_at_ms: 1_763_760_000_123,
                schema_revision: 0x0123_4567_89ab_cdef,
                values: vec![1234.5, 99.25, 0.42],
            }),
        ),
        ("ping", Message::Ping(Ping { sent_at_ms: 1_763_760_000_000 })),
        (
            "reject",
            Message::Reject(Reject {
                reason: RejectReason::NameTaken { name: "web-01".into() },
                detail: "the name web-01 belongs to another key".into(),
            }),
        ),
        ("bye", Message::Bye(Bye { reason: "received SIGTERM".into() })),
        (
            "reject_invalid_model",
            Message::Reject(Reject {
                reason: RejectReason::InvalidModel {
                    problem: "label \"host\" in family \"x\" is added by the collector; rename it"
                        .into(),
                },
                detail: "the collector refused this agent's model".into(),
            }),
        ),
    ]
}
