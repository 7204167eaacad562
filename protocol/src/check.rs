//! Availability checks (version 3): the services an agent probes, and what
//! each probe found.
//!
//! Checks come from the agent's configuration, so they change only when
//! the agent restarts: after every hello the agent sends the whole set in
//! one [`Checks`] message, each with an id of its choosing, and then one
//! [`CheckResults`] message whenever probes finish, naming checks by id.
//! The collector keeps a check's state (and "since when") by its name, so
//! a reconnecting agent does not reset it.

use serde::{Deserialize, Serialize};

/// Agent → collector: every check this agent runs (forget any other).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// The checks, ids unique.
    pub checks: Vec<CheckSpec>,
}

/// One configured check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// The agent's id for it.
    pub id: u32,
    /// Its name (`check` label), unique on the host.
    pub name: String,
    /// What it speaks.
    pub kind: CheckKind,
    /// What it probes, for people: a URL or `host:port`, without
    /// credentials (`target` label).
    pub target: String,
    /// How often it runs, in milliseconds.
    pub interval_ms: u32,
    /// The longest one run may take, in milliseconds.
    pub timeout_ms: u32,
}

/// The protocol a check speaks. Variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CheckKind {
    /// An HTTP or HTTPS request.
    Http,
    /// A TCP connection (and an optional send/expect exchange).
    Tcp,
    /// A PostgreSQL login and `SELECT 1`.
    Postgres,
    /// A Redis `PING` (after `AUTH` if configured).
    Redis,
    /// An AMQP 0-9-1 connection opened to a vhost and closed.
    Amqp,
}

impl CheckKind {
    /// Every kind, in declaration order.
    pub const ALL: [CheckKind; 5] =
        [CheckKind::Http, CheckKind::Tcp, CheckKind::Postgres, CheckKind::Redis, CheckKind::Amqp];

    /// The `kind` label and config word.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Postgres => "postgres",
            CheckKind::Redis => "redis",
            CheckKind::Amqp => "amqp",
        }
    }
}

/// Agent → collector: probes that finished since the last such message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResults {
    /// One per finished probe, oldest first.
    pub results: Vec<CheckResult>,
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's id in the last [`Checks`].
    pub id: u32,
    /// When the probe started (Unix milliseconds).
    pub started_at_ms: u64,
    /// How long it took in all, in seconds.
    pub seconds: f64,
    /// `None` when the service answered correctly; otherwise why not.
    pub failure: Option<CheckFailure>,
    /// The phases it went through, each its own duration, in order.
    pub phases: Vec<PhaseTime>,
    /// The HTTP status code, when an HTTP response came.
    pub http_status: Option<u16>,
    /// When the server's certificate expires (Unix seconds), when TLS was
    /// spoken.
    pub cert_not_after: Option<i64>,
    /// What the service said of itself: PostgreSQL's `server_version`,
    /// Redis's role, the AMQP broker's product and version; empty if
    /// nothing.
    pub server: String,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFailure {
    /// A fixed word, for the `reason` label.
    pub reason: FailureReason,
    /// A sentence for people: the error, SQLSTATE or status, and the phase.
    pub detail: String,
}

/// The bounded set of reasons a probe fails. Variants are only ever
/// appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureReason {
    /// No connection: refused, unreachable or reset while connecting.
    Refused,
    /// A phase did not finish within the time left of the check's timeout.
    Timeout,
    /// The name does not resolve.
    Dns,
    /// The TLS handshake failed (including an untrusted or expired
    /// certificate).
    Tls,
    /// The service refused the credentials (or the database or vhost).
    Auth,
    /// The service answered something that is not its protocol.
    Protocol,
    /// The service answered with an error: an HTTP status outside the
    /// accepted set, a PostgreSQL or Redis error.
    Status,
    /// The body did not match the expected pattern, or a TCP exchange did
    /// not get its expected answer.
    Body,
}

impl FailureReason {
    /// Every reason, in declaration order.
    pub const ALL: [FailureReason; 8] = [
        FailureReason::Refused,
        FailureReason::Timeout,
        FailureReason::Dns,
        FailureReason::Tls,
        FailureReason::Auth,
        FailureReason::Protocol,
        FailureReason::Status,
        FailureReason::Body,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Refused => "refused",
            FailureReason::Timeout => "timeout",
            FailureReason::Dns => "dns",
            FailureReason::Tls => "tls",
            FailureReason::Auth => "auth",
            FailureReason::Protocol => "protocol",
            FailureReason::Status => "status",
            FailureReason::Body => "body",
        }
    }
}

/// How long one phase of a probe took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// Which phase.
    pub phase: Phase,
    /// Its own duration, in seconds.
    pub seconds: f64,
}

/// The phases of a probe, in the order they happen. Variants are only ever
/// appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Resolving the name (absent for an address).
    Dns,
    /// The TCP (or Unix socket) connection.
    Connect,
    /// The TLS handshake.
    Tls,
    /// From the request sent to the first byte of the answer (HTTP).
    FirstByte,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [Phase::Dns, Phase::Connect, Phase::Tls, Phase::FirstByte];

    /// The `phase` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::FirstByte => "first_byte",
        }
    }
}
