//! Paces acknowledgements to agents.
//!
//! The store commits every few milliseconds, and an acknowledgement after
//! each would wake every agent once a sample: a message to receive, open
//! and record. Live samples are acknowledged at most every [`ACK_EVERY`]
//! per host (the agent keeps those few seconds more in its spool); what an
//! agent waits for (the answer to its resume, a gap, a backfill batch) and
//! a backlog of [`ACK_AFTER`] samples go at once.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use curvemon_keys::PublicKey;

use crate::store::writer::AckOut;

/// The longest a stored live sample waits for its acknowledgement.
pub const ACK_EVERY: Duration = Duration::from_secs(5);
/// Unacknowledged samples past which an acknowledgement goes at once.
pub const ACK_AFTER: u64 = 64;

/// Per host: the last acknowledgement sent and one waiting. The work per
/// call is what is due, not the number of hosts: acknowledgements that go
/// at once are listed as they are offered, the others wait in the order
/// their pacing ends.
#[derive(Debug, Default)]
pub struct AckPacer {
    /// Epoch, sequence and time of the last sent (`None`: its pacing ended
    /// with nothing waiting, so the next goes at once).
    sent: HashMap<PublicKey, (u64, u64, Option<Instant>)>,
    waiting: HashMap<PublicKey, AckOut>,
    /// Hosts whose waiting acknowledgement goes at the next call.
    urgent: Vec<PublicKey>,
    /// When each host's pacing ends, in that order.
    timers: VecDeque<(Instant, PublicKey)>,
}

impl AckPacer {
    /// Takes the writer's acknowledgements.
    pub fn offer(&mut self, acks: Vec<AckOut>) {
        for ack in acks {
            let entry = self.waiting.entry(ack.host).or_insert(ack);
            let prompt = entry.prompt || ack.prompt;
            if entry.epoch != ack.epoch || ack.seq >= entry.seq {
                *entry = ack;
            }
            entry.prompt = prompt;
            let now = match self.sent.get(&ack.host) {
                Some((epoch, seq, Some(_))) if *epoch == entry.epoch => {
                    entry.prompt || entry.seq.saturating_sub(*seq) >= ACK_AFTER
                }
                _ => true,
            };
            if now {
                self.urgent.push(ack.host);
            }
        }
    }

    /// The acknowledgements to send now.
    pub fn due(&mut self, now: Instant) -> Vec<AckOut> {
        let mut out = Vec::new();
        for host in std::mem::take(&mut self.urgent) {
            if let Some(ack) = self.waiting.remove(&host) {
                self.sent_now(ack, now, &mut out);
            }
        }
        while let Some(&(at, host)) = self.timers.front() {
            if at > now {
                break;
            }
            self.timers.pop_front();
            // Only the timer of the last acknowledgement sent counts.
            let current = self
                .sent
                .get(&host)
                .and_then(|s| s.2)
                .is_some_and(|sent_at| sent_at + ACK_EVERY <= now);
            if !current {
                continue;
            }
            match self.waiting.remove(&host) {
                Some(ack) => self.sent_now(ack, now, &mut out),
                None => {
                    if let Some(s) = self.sent.get_mut(&host) {
                        s.2 = None;
                    }
                }
            }
        }
        out
    }

    fn sent_now(&mut self, ack: AckOut, now: Instant, out: &mut Vec<AckOut>) {
        self.sent.insert(ack.host, (ack.epoch, ack.seq, Some(now)));
        self.timers.push_back((now + ACK_EVERY, ack.host));
        out.push(ack);
    }

    /// Forgets a host (it said hello again: its next acknowledgement is
    /// the answer to its resume and goes at once).
    pub fn forget(&mut self, host: &PublicKey) {
        self.sent.remove(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, prompt: bool) -> AckOut {
        AckOut { host: PublicKey::from_bytes([1; 32]), epoch: 9, seq, prompt }
    }

    #[test]
    fn live_acks_are_paced_and_awaited_ones_are_not() {
        let mut p = AckPacer::default();
        let t0 = Instant::now();
        p.offer(vec![ack(1, false)]);
        assert_eq!(p.due(t0).len(), 1, "the first goes at once");
        p.offer(vec![ack(2, false)]);
        p.offer(vec![ack(3, false)]);
        assert!(p.due(t0 + Duration::from_secs(1)).is_empty());
        let late = p.due(t0 + ACK_EVERY);
        assert_eq!(late.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![3]);
        p.offer(vec![ack(4, true)]);
        assert_eq!(p.due(t0 + ACK_EVERY).len(), 1, "a prompt one goes at once");
        p.offer(vec![ack(4 + ACK_AFTER, false)]);
        assert_eq!(p.due(t0 + ACK_EVERY).len(), 1, "a backlog goes at once");
        p.offer(vec![ack(200, false)]);
        p.forget(&PublicKey::from_bytes([1; 32]));
        assert_eq!(p.due(t0 + ACK_EVERY).len(), 1, "after a hello, at once");
    }
}
