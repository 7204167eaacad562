//! The agent's view of one link to the collector, as pure decisions over an
//! injected clock: when the link is stale, and when a requested model may be
//! sent. The socket code asks; this module never touches a socket.

use std::time::{Duration, Instant};

/// The agent answers at most one model request per this long; a request in
/// between is remembered and answered when the window ends.
pub const MODEL_ANSWER_GAP: Duration = Duration::from_secs(5);

/// State of one link (one DEALER socket).
#[derive(Debug, Clone)]
pub struct Session {
    stale_after: Duration,
    last_heard: Instant,
    heard_any: bool,
    model_pending: bool,
    last_model_sent: Option<Instant>,
}

impl Session {
    /// A new link opened at `now`; the stale clock starts now.
    pub fn new(now: Instant, stale_after: Duration) -> Self {
        Session {
            stale_after,
            last_heard: now,
            heard_any: false,
            model_pending: false,
            last_model_sent: None,
        }
    }

    /// A valid message arrived from the collector.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.heard_any = true;
    }

    /// Whether anything has been heard on this link.
    pub fn heard_any(&self) -> bool {
        self.heard_any
    }

    /// The collector asked for the model.
    pub fn model_requested(&mut self) {
        self.model_pending = true;
    }

    /// A new connection completed its handshake: the collector behind it may
    /// be a restarted one that knows nothing, so the answer window restarts.
    /// (Reconnecting is itself rate-limited by the reconnect backoff, so this
    /// does not let a collector make the agent send models in a loop.)
    pub fn connection_established(&mut self) {
        self.last_model_sent = None;
    }

    /// The schema changed since the last model: send one now, outside the
    /// rate limit (that limit is for requests, not for news).
    pub fn schema_changed(&mut self) {
        self.model_pending = true;
        self.last_model_sent = None;
    }

    /// Whether a requested model may be sent now.
    pub fn model_due(&self, now: Instant) -> bool {
        self.model_pending
            && self.last_model_sent.is_none_or(|sent| now.duration_since(sent) >= MODEL_ANSWER_GAP)
    }

    /// A model went out (asked for or not).
    pub fn model_sent(&mut self, now: Instant) {
        self.model_pending = false;
        self.last_model_sent = Some(now);
    }

    /// True once nothing has been heard for the stale window.
    pub fn is_stale(&self, now: Instant) -> bool {
        now.duration_since(self.last_heard) >= self.stale_after
    }

    /// The next instant at which one of the decisions above can change.
    pub fn next_deadline(&self) -> Instant {
        let stale = self.last_heard + self.stale_after;
        match (self.model_pending, self.last_model_sent) {
            (true, Some(sent)) => stale.min(sent + MODEL_ANSWER_GAP),
            _ => stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_stale_only_after_silence() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, Duration::from_secs(30));
        assert!(!s.is_stale(t0 + Duration::from_secs(29)));
        s.heard(t0 + Duration::from_secs(20));
        assert!(!s.is_stale(t0 + Duration::from_secs(49)));
        assert!(s.is_stale(t0 + Duration::from_secs(50)));
        assert_eq!(s.next_deadline(), t0 + Duration::from_secs(50));
    }

    #[test]
    fn answers_one_model_request_per_window() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, Duration::from_secs(30));
        assert!(!s.model_due(t0));
        s.model_requested();
        assert!(s.model_due(t0));
        s.model_sent(t0);
        s.model_requested();
        assert!(
            !s.model_due(t0 + Duration::from_secs(4)),
            "second request inside the window waits"
        );
        assert_eq!(s.next_deadline(), t0 + MODEL_ANSWER_GAP);
        assert!(s.model_due(t0 + MODEL_ANSWER_GAP), "and is answered when it ends");
    }

    #[test]
    fn a_new_connection_may_ask_at_once() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, Duration::from_secs(30));
        s.model_sent(t0);
        s.model_requested();
        assert!(!s.model_due(t0 + Duration::from_secs(1)));
        s.connection_established();
        assert!(s.model_due(t0 + Duration::from_secs(1)));
    }
}
