//! The message enum and the small control messages.
//!
//! Variants are only ever appended: bincode encodes the variant index, so
//! reordering would silently change the meaning of old bytes. The golden
//! files under `tests/data/v*/` fail if that happens. Each variant belongs
//! to the protocol version that introduced it ([`Message::since`]): a frame
//! of version 1 may not carry a version 2 message.

use serde::{Deserialize, Serialize};

use crate::{
    app::{AppSeries, Sample},
    check::{CheckResults, Checks},
    delivery::{Ack, Backfill, Gap, Resume, SchemaRecord},
    metrics::Metrics,
    model::Model,
};

/// Everything that can travel in one frame, in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Agent → collector, first message of every connection.
    Hello(Hello),
    /// Collector → agent: send your [`Model`] (after a hello, or when a
    /// metrics message names a schema revision the collector does not know).
    ModelRequest,
    /// Agent → collector: inventory and metric schema.
    Model(Model),
    /// Agent → collector: one periodic sample.
    Metrics(Metrics),
    /// Collector → agent: proof of life; the agent reconnects when it hears
    /// nothing for its stale window.
    Ping(Ping),
    /// Collector → agent: the collector will not accept this agent as it is.
    Reject(Reject),
    /// Agent → collector on clean shutdown; the host goes down at once.
    Bye(Bye),
    /// Agent → collector (version 2): application instances and series
    /// declared or retired.
    AppSeries(AppSeries),
    /// Agent → collector (version 2): one interval's host values and the
    /// application series that changed.
    Sample(Sample),
    /// Agent → collector (version 3): every availability check the agent
    /// runs, after each hello.
    Checks(Checks),
    /// Agent → collector (version 3): probes that finished.
    CheckResults(CheckResults),
    /// Agent → collector (version 4), after every hello: its epoch and the
    /// range of samples it holds.
    Resume(Resume),
    /// Collector → agent (version 4): samples up to here are stored.
    Ack(Ack),
    /// Agent → collector (version 4): spooled samples, oldest first.
    Backfill(Backfill),
    /// Agent → collector (version 4): a schema backfilled samples use.
    Schema(SchemaRecord),
    /// Agent → collector (version 4): samples it took and lost.
    Gap(Gap),
}

impl Message {
    /// Short name of the variant, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::ModelRequest => "model_request",
            Message::Model(_) => "model",
            Message::Metrics(_) => "metrics",
            Message::Ping(_) => "ping",
            Message::Reject(_) => "reject",
            Message::Bye(_) => "bye",
            Message::AppSeries(_) => "app_series",
            Message::Sample(_) => "sample",
            Message::Checks(_) => "checks",
            Message::CheckResults(_) => "check_results",
            Message::Resume(_) => "resume",
            Message::Ack(_) => "ack",
            Message::Backfill(_) => "backfill",
            Message::Schema(_) => "schema",
            Message::Gap(_) => "gap",
        }
    }

    /// The protocol version that introduced this message.
    pub fn since(&self) -> u16 {
        match self {
            Message::AppSeries(_) | Message::Sample(_) => 2,
            Message::Checks(_) | Message::CheckResults(_) => 3,
            Message::Resume(_)
            | Message::Ack(_)
            | Message::Backfill(_)
            | Message::Schema(_)
            | Message::Gap(_) => 4,
            _ => 1,
        }
    }
}

/// Who the agent is. Sent on every new connection, so that a collector that
/// restarted learns about the agent without waiting for its stale window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's own version (`CARGO_PKG_VERSION`), for the operator.
    pub agent_version: String,
    /// The name the host is shown under (the agent's `--name`).
    pub hostname: String,
    /// `/etc/machine-id`: stable across reboots, distinguishes clones.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`: changes on every boot.
    pub boot_id: String,
    /// How often the agent samples, in milliseconds; the collector's default
    /// stale and down windows are multiples of it.
    pub interval_ms: u32,
}

/// Collector → agent heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The collector's wall clock (Unix milliseconds), so that an agent can
    /// report clock skew.
    pub sent_at_ms: u64,
}

/// Why the collector refuses an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The agent's frames carry a protocol version the collector does not speak.
    UnsupportedVersion {
        /// The version the collector speaks.
        collector: u16,
        /// The version the agent sent.
        agent: u16,
    },
    /// The agent's key is not allowed (sent only where the transport lets the
    /// collector answer at all; a key refused by ZAP never gets a session).
    KeyNotAuthorized,
    /// Another key already owns this host name.
    NameTaken {
        /// The contested name.
        name: String,
    },
    /// The hello or model breaks a rule of [`crate::validate`] (a name
    /// Prometheus cannot represent, a reserved label, a duplicate series,
    /// a limit). Appended in version 1: only an agent that sends such a
    /// model meets it.
    InvalidModel {
        /// What is wrong, as [`crate::ModelError`] says it.
        problem: String,
    },
}

/// Collector → agent refusal; the agent logs it and retries with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Machine-readable reason.
    pub reason: RejectReason,
    /// A sentence for the operator, naming what to change.
    pub detail: String,
}

/// Agent → collector, last message of a clean shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bye {
    /// Why the agent is leaving (for example "received SIGTERM").
    pub reason: String,
}
