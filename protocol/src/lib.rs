//! The curvemon wire protocol: what an agent and a collector say to each other.
//!
//! One ZeroMQ frame carries one message. Every frame starts with a fixed
//! six-byte header (the magic `CMON` and a big-endian protocol version) and
//! then the body, a bincode-encoded [`Message`]. The header is checked before
//! the body is decoded, so a peer of another version is recognised as such
//! instead of being read as garbage. `docs/protocol.md` is the full
//! specification.
//!
//! Layout:
//! - [`message`]: the message enum and the small messages (hello, ping,
//!   reject, bye).
//! - [`model`]: the slow-changing host inventory and the metric schema.
//! - [`metrics`]: the periodic sample, values only, in schema order.
//! - [`app`]: application series (version 2): declared once, sent by id.
//! - [`sketch`]: the mergeable distribution application timers travel as.
//! - [`check`]: availability checks (version 3): declared after each
//!   hello, results by id.
//! - [`delivery`]: acknowledged delivery (version 4): resume, ack,
//!   backfill, gaps.
//! - [`codec`]: the only place that turns messages into bytes and back.
//! - [`error`]: why a frame could not be decoded.
//! - [`validate`]: what a collector accepts of what an agent declares.
//!
//! This crate does no I/O: transports live in the binaries.

pub mod app;
pub mod check;
pub mod codec;
pub mod delivery;
pub mod error;
pub mod message;
pub mod metrics;
pub mod model;
pub mod sketch;
pub mod validate;

pub use app::{
    AppInstance, AppKind, AppPoint, AppSeries, AppSeriesDecl, AppValue, HostValues, Sample,
};
pub use check::{
    CheckFailure, CheckKind, CheckResult, CheckResults, CheckSpec, Checks, FailureReason, Phase,
    PhaseTime,
};
pub use codec::{
    MAGIC, MAX_FRAME_BYTES, MIN_VERSION, PROTOCOL_VERSION, decode, decode_versioned, encode,
    peek_version,
};
pub use delivery::{Ack, Backfill, Gap, GapReason, Resume, SchemaRecord};
pub use error::DecodeError;
pub use message::{Bye, Hello, Message, Ping, Reject, RejectReason};
pub use metrics::Metrics;
pub use model::{Family, Kind, Label, Model, RevisionHasher, Schema};
pub use sketch::Sketch;
pub use validate::ModelError;
