//! What goes back to the collector from the spool, and when: the
//! per-connection side of acknowledged delivery (protocol version 4).
//!
//! After each hello the agent sends `Resume`; the collector's first `Ack`
//! says where it stands. From then on new samples go out live as they are
//! taken, and the backlog (what the spool holds after the acknowledged
//! point and before the first live sample of this connection) goes out
//! oldest first in `Backfill` batches of [`BATCH`], never more than
//! [`WINDOW`] samples ahead of the last acknowledgement. So live data is
//! never queued behind a backlog (it goes first), a backlog drains as fast
//! as the collector's store commits, and thousands of agents coming back
//! after an outage cannot flood it: each has at most a window in flight.
//! Samples sent and not acknowledged within [`RESEND_AFTER`] (a message lost
//! with a connection, a store that failed to commit) are sent again; the
//! collector drops what it already has.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use curvemon_protocol::{Backfill, Message, Metrics, SchemaRecord};

use crate::spool::{Record, Spool};

/// Samples per `Backfill` message (about 110 KB for the default families).
pub const BATCH: usize = 64;
/// Samples sent beyond the last acknowledgement at most.
pub const WINDOW: u64 = 4 * BATCH as u64;
/// Sent and not acknowledged for this long: send again.
pub const RESEND_AFTER: Duration = Duration::from_secs(30);

/// One connection's delivery state.
#[derive(Debug)]
pub struct Delivery {
    /// The collector answered this connection's `Resume`.
    resumed: bool,
    /// The backlog's position: the last sample backfilled.
    sent: u64,
    /// The highest sample sent on this connection, live or backfilled.
    highest: u64,
    /// The first sample sent live on this connection: the backlog ends
    /// before it.
    live_from: Option<u64>,
    /// Schemas sent on this connection.
    schemas: HashSet<u64>,
    /// The last acknowledgement, and when it last moved.
    acked: u64,
    progress: Instant,
}

impl Delivery {
    /// A new connection: nothing sent, waiting for the first `Ack`.
    pub fn new(now: Instant) -> Self {
        Delivery {
            resumed: false,
            sent: 0,
            highest: 0,
            live_from: None,
            schemas: HashSet::new(),
            acked: 0,
            progress: now,
        }
    }

    /// The collector acknowledged up to `seq` (already applied to the
    /// spool). The first acknowledgement starts the backlog after it.
    pub fn on_ack(&mut self, seq: u64, now: Instant) {
        if !self.resumed {
            self.resumed = true;
            self.sent = self.sent.max(seq);
        }
        if seq > self.acked || self.acked == 0 {
            self.acked = seq;
            self.progress = now;
        }
    }

    /// Whether the first `Ack` of this connection came.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// A send from `seq` on did not go out (the queue was full): they are
    /// taken up again at the next call.
    pub fn unsend(&mut self, seq: u64) {
        self.sent = self.sent.min(seq.saturating_sub(1));
    }

    /// A sample went out live.
    pub fn sent_live(&mut self, seq: u64) {
        self.live_from.get_or_insert(seq);
        self.highest = self.highest.max(seq);
    }

    /// The messages that move the backlog on, if the window allows;
    /// `spool` supplies them. Samples sent long ago and still not
    /// acknowledged are sent again.
    pub fn backfill(&mut self, spool: &mut Spool, now: Instant) -> Vec<Message> {
        if !self.resumed {
            return Vec::new();
        }
        let acked = spool.acked();
        if acked > self.acked {
            self.acked = acked;
            self.progress = now;
        }
        if self.highest.max(self.sent) > acked && now.duration_since(self.progress) >= RESEND_AFTER
        {
            tracing::debug!(
                from = acked + 1,
                to = self.highest.max(self.sent),
                "Nothing acknowledged for a while; sending again."
            );
            self.sent = acked;
            self.highest = acked;
            self.live_from = None;
            self.progress = now;
        }
        // The backlog ends before the first live sample; with none sent
        // live yet, at the newest sample taken.
        let end = self.live_from.map_or(spool.next_seq().saturating_sub(1), |l| l - 1);
        let mut out = Vec::new();
        while self.sent < end && self.sent.saturating_sub(acked) < WINDOW {
            let room = usize::try_from((end - self.sent).min(BATCH as u64)).unwrap_or(BATCH);
            let records = spool.read_after(self.sent, room);
            let mut samples: Vec<Metrics> = Vec::new();
            for record in records {
                match record {
                    Record::Schema(schema) => {
                        if self.schemas.insert(schema.revision) {
                            if !samples.is_empty() {
                                out.push(Message::Backfill(Backfill {
                                    samples: std::mem::take(&mut samples),
                                }));
                            }
                            out.push(Message::Schema(SchemaRecord { schema }));
                        }
                    }
                    Record::Sample(m) if m.seq <= end => samples.push(m),
                    Record::Sample(_) => {}
                }
            }
            let Some(last) = samples.last().map(|m| m.seq) else {
                // Nothing more is held before `end` (lost, or acknowledged).
                self.sent = end;
                break;
            };
            self.sent = last;
            self.highest = self.highest.max(last);
            out.push(Message::Backfill(Backfill { samples }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Config;
    use curvemon_protocol::{Family, Kind, Schema};

    fn spool_with(n: u64) -> (tempfile::TempDir, Spool, Schema) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(Config {
            dir: Some(dir.path().to_path_buf()),
            dir_explicit: true,
            ..Config::default()
        })
        .unwrap();
        let schema = Schema::new(vec![Family {
            name: "node_load1".into(),
            help: String::new(),
            kind: Kind::Gauge,
            series: vec![vec![]],
        }]);
        for _ in 0..n {
            let seq = spool.take_seq();
            spool.append(
                Metrics {
                    seq,
                    taken_at_ms: seq,
                    schema_revision: schema.revision,
                    values: vec![1.0],
                },
                || schema.clone(),
            );
        }
        (dir, spool, schema)
    }

    fn backfilled(messages: &[Message]) -> Vec<u64> {
        messages
            .iter()
            .flat_map(|m| match m {
                Message::Backfill(b) => b.samples.iter().map(|s| s.seq).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_backlog_goes_in_windows_and_stops_before_live_samples() {
        let (_dir, mut spool, _) = spool_with(1_000);
        let now = Instant::now();
        let mut delivery = Delivery::new(now);
        assert!(delivery.backfill(&mut spool, now).is_empty(), "nothing before the first Ack");
        spool.ack(spool.epoch(), 100);
        delivery.on_ack(100, now);
        delivery.sent_live(901);
        let first = delivery.backfill(&mut spool, now);
        assert!(matches!(first[0], Message::Schema(_)), "the schema first");
        let seqs = backfilled(&first);
        assert_eq!(seqs, (101..=356).collect::<Vec<_>>(), "one window");
        assert!(delivery.backfill(&mut spool, now).is_empty(), "the window is full");
        spool.ack(spool.epoch(), 356);
        let next = backfilled(&delivery.backfill(&mut spool, now));
        assert_eq!(next.first(), Some(&357));
        let mut last = *next.last().unwrap();
        loop {
            spool.ack(spool.epoch(), last);
            let more = backfilled(&delivery.backfill(&mut spool, now));
            let Some(&end) = more.last() else { break };
            assert_eq!(more[0], last + 1, "in order, nothing skipped");
            last = end;
        }
        assert_eq!(last, 900, "up to the first live sample");
        // Silence: after a while the unacknowledged part goes again.
        let later = now + RESEND_AFTER + Duration::from_secs(1);
        let again = backfilled(&delivery.backfill(&mut spool, later));
        assert_eq!(again.first(), Some(&901), "from the last acknowledgement, live ones included");
    }
}
