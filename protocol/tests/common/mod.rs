//! One example of every message, shared by the round-trip and golden tests.

use curvemon_protocol::{
    Ack, AppInstance, AppKind, AppPoint, AppSeries, AppSeriesDecl, AppValue, Backfill, Bye,
    CheckFailure, CheckKind, CheckResult, CheckResults, CheckSpec, Checks, FailureReason, Family,
    Gap, GapReason, Hello, HostValues, Kind, Label, Message, Metrics, Model, Phase, PhaseTime,
    Ping, Reject, RejectReason, Resume, Sample, Schema, SchemaRecord, Sketch,
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
    let schema_copy = schema.clone();
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
        (
            "app_series",
            Message::AppSeries(AppSeries {
                full: true,
                instances: vec![AppInstance {
                    id: 1,
                    app: "bookings".into(),
                    name: "bookings@2.service".into(),
                    pid: 4242,
                    unit: "bookings@2.service".into(),
                    source: "statsd-unix".into(),
                }],
                declare: vec![
                    AppSeriesDecl {
                        id: 1,
                        instance: 1,
                        name: "requests_total".into(),
                        help: "StatsD counter bookings.requests.".into(),
                        kind: AppKind::Counter,
                        labels: vec![Label::new("endpoint", "/book")],
                    },
                    AppSeriesDecl {
                        id: 2,
                        instance: 1,
                        name: "request_seconds".into(),
                        help: "StatsD timer bookings.request.".into(),
                        kind: AppKind::Distribution,
                        labels: vec![],
                    },
                    AppSeriesDecl {
                        id: 3,
                        instance: 1,
                        name: "queue_seconds".into(),
                        help: "scraped".into(),
                        kind: AppKind::Histogram { bounds: vec![0.1, 1.0] },
                        labels: vec![],
                    },
                ],
                retire: vec![9],
                retire_instances: vec![],
            }),
        ),
        (
            "sample",
            Message::Sample(Sample {
                seq: 43,
                taken_at_ms: 1_763_760_001_123,
                host: HostValues {
                    schema_revision: 0x0123_4567_89ab_cdef,
                    values: vec![1234.5, 99.25, 0.42],
                },
                apps: vec![
                    AppPoint { series: 1, value: AppValue::Counter(12.0) },
                    AppPoint {
                        series: 2,
                        value: AppValue::Distribution({
                            let mut s = Sketch::new();
                            for v in [0.012, 0.013, 0.25] {
                                s.observe(v, 1);
                            }
                            s
                        }),
                    },
                    AppPoint {
                        series: 3,
                        value: AppValue::Histogram { counts: vec![1.0, 2.0, 0.0], sum: 1.5 },
                    },
                ],
            }),
        ),
        (
            "checks",
            Message::Checks(Checks {
                checks: vec![
                    CheckSpec {
                        id: 1,
                        name: "api".into(),
                        kind: CheckKind::Http,
                        target: "https://127.0.0.1:8443/health".into(),
                        interval_ms: 30_000,
                        timeout_ms: 5_000,
                    },
                    CheckSpec {
                        id: 2,
                        name: "db".into(),
                        kind: CheckKind::Postgres,
                        target: "127.0.0.1:5432/shop".into(),
                        interval_ms: 60_000,
                        timeout_ms: 2_000,
                    },
                ],
            }),
        ),
        (
            "check_results",
            Message::CheckResults(CheckResults {
                results: vec![
                    CheckResult {
                        id: 1,
                        started_at_ms: 1_763_760_002_000,
                        seconds: 0.0125,
                        failure: None,
                        phases: vec![
                            PhaseTime { phase: Phase::Connect, seconds: 0.0002 },
                            PhaseTime { phase: Phase::Tls, seconds: 0.004 },
                            PhaseTime { phase: Phase::FirstByte, seconds: 0.008 },
                        ],
                        http_status: Some(200),
                        cert_not_after: Some(1_795_296_000),
                        server: String::new(),
                    },
                    CheckResult {
                        id: 2,
                        started_at_ms: 1_763_760_002_500,
                        seconds: 0.003,
                        failure: Some(CheckFailure {
                            reason: FailureReason::Status,
                            detail: "SQLSTATE 3D000: database \"shop\" does not exist".into(),
                        }),
                        phases: vec![PhaseTime { phase: Phase::Connect, seconds: 0.0001 }],
                        http_status: None,
                        cert_not_after: None,
                        server: "15.8".into(),
                    },
                ],
            }),
        ),
        (
            "resume",
            Message::Resume(Resume {
                epoch: 0x5eed_0000_cafe_f00d,
                oldest_seq: 4_001,
                next_seq: 4_700,
            }),
        ),
        ("ack", Message::Ack(Ack { epoch: 0x5eed_0000_cafe_f00d, seq: 4_250 })),
        (
            "backfill",
            Message::Backfill(Backfill {
                samples: vec![
                    Metrics {
                        seq: 4_251,
                        taken_at_ms: 1_763_760_004_251,
                        schema_revision: 0x0123_4567_89ab_cdef,
                        values: vec![1234.5, 99.25, 0.42],
                    },
                    Metrics {
                        seq: 4_252,
                        taken_at_ms: 1_763_760_005_251,
                        schema_revision: 0x0123_4567_89ab_cdef,
                        values: vec![1235.5, 99.5, 0.40],
                    },
                ],
            }),
        ),
        ("schema", Message::Schema(SchemaRecord { schema: schema_copy })),
        (
            "gap",
            Message::Gap(Gap {
                epoch: 0x5eed_0000_cafe_f00d,
                from_seq: 3_001,
                to_seq: 4_000,
                from_ms: 1_763_759_000_000,
                to_ms: 1_763_759_999_000,
                reason: GapReason::SpoolFull,
            }),
        ),
    ]
}
