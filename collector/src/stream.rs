//! Fan-out of live events to server-sent-event clients.
//!
//! Every client has its own bounded queue. Publishing never waits: a client
//! whose queue is full is dropped (its stream ends; the browser reconnects
//! and resumes), so a slow or stalled client can never slow ingestion or
//! the other clients. Events carry increasing ids and the hub keeps the
//! most recent ones, so a reconnecting client that sends `Last-Event-ID`
//! gets what it missed, or a `reset` event telling it to reload when the gap
//! is older than what is kept. Clients that went away are removed on the
//! next publish.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;
use tracing::debug;

use crate::view::EventData;

/// Whether a client subscribed to `wanted` gets an event on `topic`: the
/// fleet stream (`None`) gets every host's events, `app:*` every
/// application's, `check:*` every host's checks, a host's stream its own
/// events and its checks', anything else exactly its topic.
fn matches(wanted: Option<&str>, topic: &str) -> bool {
    match wanted {
        None => !topic.starts_with("app:") && !topic.starts_with("check:"),
        Some("app:*") => topic.starts_with("app:"),
        Some("check:*") => topic.starts_with("check:"),
        Some(t) => t == topic || topic.strip_prefix("check:") == Some(t),
    }
}

/// Events kept for resuming clients.
pub const REPLAY: usize = 4096;

/// One event as sent to clients.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increasing id, sent as the SSE `id:`.
    pub id: u64,
    /// Host id the event is about.
    pub host: Arc<str>,
    /// SSE `event:` name.
    pub kind: &'static str,
    /// JSON data.
    pub data: Arc<str>,
}

struct Client {
    host: Option<String>,
    queue: mpsc::Sender<Event>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    recent: VecDeque<Event>,
    clients: Vec<Client>,
    /// When a client last went away (it may come back for what it missed).
    last_left: Option<std::time::Instant>,
}

/// After a client goes away, events are still built for this long, so
/// that it can resume with `Last-Event-ID` (a browser comes back within
/// seconds); after that, with nobody listening, they are not built.
pub const REPLAY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The hub; shared by the router thread (publishing) and HTTP (subscribing).
pub struct Hub {
    inner: Mutex<Inner>,
    queue: usize,
    /// Clients dropped because their queue was full.
    pub dropped: AtomicU64,
    /// Events published.
    pub published: AtomicU64,
}

/// What a new subscriber gets.
pub struct Subscription {
    /// Events to send first (missed ones, for a resuming client).
    pub replay: Vec<Event>,
    /// True when the client's `Last-Event-ID` is older than what is kept:
    /// it must reload its state.
    pub reset: bool,
    /// Live events.
    pub events: mpsc::Receiver<Event>,
}

impl Hub {
    /// A hub giving each client a queue of `queue` events.
    pub fn new(queue: usize) -> Self {
        Hub {
            inner: Mutex::new(Inner::default()),
            queue: queue.max(1),
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends an event to every interested client without waiting.
    pub fn publish(&self, data: EventData) {
        let mut inner = self.lock();
        inner.next_id += 1;
        let event = Event {
            id: inner.next_id,
            host: data.host.into(),
            kind: data.kind,
            data: data.json.into(),
        };
        if inner.recent.len() == REPLAY {
            inner.recent.pop_front();
        }
        inner.recent.push_back(event.clone());
        let mut dropped = 0;
        let before = inner.clients.len();
        inner.clients.retain(|client| {
            if !matches(client.host.as_deref(), &event.host) {
                return !client.queue.is_closed();
            }
            match client.queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if inner.clients.len() < before {
            inner.last_left = Some(std::time::Instant::now());
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            debug!(dropped, "Dropped stream clients that fell behind.");
        }
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Subscribes to every host's events (`host` = `None`) or one host's,
    /// resuming after `last_id` if given.
    pub fn subscribe(&self, host: Option<String>, last_id: Option<u64>) -> Subscription {
        let (queue, events) = mpsc::channel(self.queue);
        let mut inner = self.lock();
        let (replay, reset) = match last_id {
            None => (Vec::new(), false),
            Some(last) => {
                let oldest = inner.recent.front().map_or(inner.next_id.saturating_add(1), |e| e.id);
                let wanted = |e: &&Event| e.id > last && matches(host.as_deref(), &e.host);
                if last.saturating_add(1) >= oldest || last >= inner.next_id {
                    (inner.recent.iter().filter(wanted).cloned().collect(), false)
                } else {
                    (Vec::new(), true)
                }
            }
        };
        inner.clients.push(Client { host, queue });
        Subscription { replay, reset, events }
    }

    /// Events were left unbuilt (nobody listened): a client resuming from
    /// before now cannot be given what it missed, so it is told to reload
    /// (the kept events are cleared and the id moves on).
    pub fn skipped(&self) {
        let mut inner = self.lock();
        if !inner.recent.is_empty() || inner.next_id == 0 {
            inner.recent.clear();
            inner.next_id += 1;
        }
    }

    /// Whether any client would receive an event on `topic` (so that
    /// nobody's events are not built at all).
    pub fn wants(&self, topic: &str) -> bool {
        let mut inner = self.lock();
        let before = inner.clients.len();
        inner.clients.retain(|c| !c.queue.is_closed());
        if inner.clients.len() < before {
            inner.last_left = Some(std::time::Instant::now());
        }
        inner.clients.iter().any(|c| matches(c.host.as_deref(), topic))
            || inner.last_left.is_some_and(|t| t.elapsed() < REPLAY_GRACE)
    }

    /// Connected clients (those that went away count until the next publish).
    pub fn clients(&self) -> usize {
        self.lock().clients.iter().filter(|c| !c.queue.is_closed()).count()
    }

    /// The id of the latest event (0 before any).
    pub fn last_id(&self) -> u64 {
        self.lock().next_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(host: &str) -> EventData {
        EventData { host: host.into(), kind: "sample", json: "{}".into() }
    }

    #[test]
    fn a_full_client_is_dropped_and_others_continue() {
        let hub = Hub::new(2);
        let mut slow = hub.subscribe(None, None);
        let mut fast = hub.subscribe(None, None);
        for i in 0..5 {
            hub.publish(data("a"));
            assert_eq!(
                fast.events.try_recv().unwrap().id,
                i + 1,
                "the reading client gets every event"
            );
        }
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(slow.events.try_recv().unwrap().id, 1);
        assert_eq!(slow.events.try_recv().unwrap().id, 2);
        assert!(slow.events.try_recv().is_err(), "then its stream ends");
        assert_eq!(hub.clients(), 1);
    }

    #[test]
    fn host_filter_and_resume() {
        let hub = Hub::new(16);
        let mut only_b = hub.subscribe(Some("b".into()), None);
        hub.publish(data("a"));
        hub.publish(data("b"));
        assert_eq!(only_b.events.try_recv().unwrap().id, 2);
        assert!(only_b.events.try_recv().is_err());
        let resumed = hub.subscribe(None, Some(1));
        assert_eq!(resumed.replay.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
        assert!(!resumed.reset);
        assert!(hub.subscribe(None, Some(2)).replay.is_empty(), "nothing missed");
    }

    #[test]
    fn a_gap_older_than_the_replay_buffer_resets() {
        let hub = Hub::new(16);
        for _ in 0..REPLAY + 10 {
            hub.publish(data("a"));
        }
        let sub = hub.subscribe(None, Some(3));
        assert!(sub.reset && sub.replay.is_empty());
        let recent = hub.subscribe(None, Some(hub.last_id() - 1));
        assert_eq!(recent.replay.len(), 1);
    }

    #[test]
    fn application_topics_reach_only_their_subscribers() {
        let hub = Hub::new(16);
        let mut fleet = hub.subscribe(None, None);
        let mut shop = hub.subscribe(Some("app:shop".into()), None);
        let mut every_app = hub.subscribe(Some("app:*".into()), None);
        assert!(hub.wants("app:shop") && hub.wants("abcd") && hub.wants("app:bank"));
        hub.publish(data("app:shop"));
        hub.publish(data("app:bank"));
        hub.publish(data("abcd"));
        assert_eq!(fleet.events.try_recv().unwrap().id, 3, "hosts only");
        assert_eq!(shop.events.try_recv().unwrap().id, 1);
        assert!(shop.events.try_recv().is_err());
        assert_eq!(every_app.events.try_recv().unwrap().id, 1);
        assert_eq!(every_app.events.try_recv().unwrap().id, 2);
        drop((fleet, every_app));
        // For a while after clients left, everything is built (they may
        // resume); then only what somebody listens to.
        assert!(hub.wants("app:bank"), "within the replay grace");
        hub.lock().last_left = std::time::Instant::now().checked_sub(REPLAY_GRACE);
        assert!(hub.wants("app:shop") && !hub.wants("app:bank"));
    }

    #[test]
    fn gone_clients_are_removed() {
        let hub = Hub::new(4);
        let sub = hub.subscribe(None, None);
        assert_eq!(hub.clients(), 1);
        drop(sub);
        hub.publish(data("a"));
        assert_eq!(hub.lock().clients.len(), 0);
    }
}
