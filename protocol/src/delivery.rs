//! Acknowledged delivery (version 4): no sample an agent took is lost
//! unless its spool overflowed, and then the loss is reported.
//!
//! An agent numbers its samples in an *epoch*: a random id chosen when its
//! spool is created, so that sequence numbers keep their meaning across
//! agent restarts (a new spool, a new epoch, numbering from 1). Every
//! sample goes to the spool first. After each `Hello` the agent sends
//! [`Resume`] (its epoch, the oldest sample it still holds and the next it
//! will take); the collector answers with [`Ack`]: every sample of that
//! epoch up to `seq` is durably stored (or known lost). The agent then
//! sends what it holds after `seq`, oldest first, in [`Backfill`] batches,
//! while new samples keep going out live as `Sample`s; the collector drops
//! any sample it already stored, and acknowledges again after each commit
//! of its store. A sample of a schema the collector may not know is
//! preceded by that [`SchemaRecord`]. Samples the agent had to drop (its
//! spool full) are reported as a [`Gap`].

use serde::{Deserialize, Serialize};

use crate::{metrics::Metrics, model::Schema};

/// Agent → collector, after every `Hello`: where the agent's samples
/// stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The spool's epoch (random, never 0).
    pub epoch: u64,
    /// The oldest sample the agent still holds (`next_seq` if none): the
    /// collector counts anything it lacks below this as lost.
    pub oldest_seq: u64,
    /// The sequence number of the agent's next sample.
    pub next_seq: u64,
}

/// Collector → agent: every sample of `epoch` up to `seq` is durably
/// stored (or was reported lost); the agent may forget them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The epoch the acknowledgement is for.
    pub epoch: u64,
    /// The highest sequence number below which nothing is missing.
    pub seq: u64,
}

/// Agent → collector: spooled samples, oldest first (the host's values
/// only: application points are not kept once their interval has passed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// The samples, in increasing `seq`.
    pub samples: Vec<Metrics>,
}

/// Agent → collector: a schema that samples it sends may refer to, when it
/// is not the one of the agent's current model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// The schema (its revision is its hash).
    pub schema: Schema,
}

/// Agent → collector: samples the agent took and will never send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The epoch of the samples.
    pub epoch: u64,
    /// The first lost sample.
    pub from_seq: u64,
    /// The last lost sample.
    pub to_seq: u64,
    /// When the first was taken (Unix ms).
    pub from_ms: u64,
    /// When the last was taken (Unix ms).
    pub to_ms: u64,
    /// Why they were lost.
    pub reason: GapReason,
}

/// Why samples were lost. Variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GapReason {
    /// The spool was full: the oldest samples made room for new ones.
    SpoolFull,
    /// The agent could not write them to its spool (a full or failing disk)
    /// and its memory bound was reached.
    SpoolFailed,
    /// The collector never got them and the agent no longer holds them
    /// (recorded by the collector on `Resume`: a spool lost or kept in
    /// memory across an agent restart).
    Unavailable,
    /// The host stopped without a clean shutdown (a crash or a power
    /// loss): samples of its last seconds had not reached the disk. Some
    /// of these numbers may never have been used.
    Unsynced,
    /// Sequence numbers the agent reserved and never used (it stopped
    /// without a clean shutdown and does not reuse them): no sample is
    /// missing.
    Skipped,
}

impl GapReason {
    /// A fixed word for labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::SpoolFull => "spool_full",
            GapReason::SpoolFailed => "spool_failed",
            GapReason::Unavailable => "unavailable",
            GapReason::Unsynced => "unsynced",
            GapReason::Skipped => "skipped",
        }
    }
}
