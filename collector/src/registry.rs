//! Every host the collector knows: identity, model, latest values and
//! liveness. Pure: it takes messages and the time, and returns the replies
//! to send; the router thread owns the socket. That keeps every decision
//! (is this host stale? whose name is this? do we need the model?) testable
//! without sockets or sleeps.
//!
//! A host is identified by its agent's public key (ZAP's `User-Id`), never by
//! the ROUTER routing id, which changes on every reconnect.
//!
//! Liveness: `up` on any valid message; `stale` after `stale_after` without
//! one (default 3 agent intervals); `down` after `down_after` (default 10
//! intervals), or at once on `Bye`.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    time::{Duration, Instant, SystemTime},
};

use curvemon_keys::PublicKey;
use curvemon_protocol::{
    Bye, Hello, Message, Metrics, Model, ModelError, Reject, RejectReason, Schema, validate,
};
use serde::Serialize;
use tracing::{debug, info, warn};

use std::sync::Arc;

use crate::store::writer::Op as StoreOp;
use crate::{
    apps::Apps,
    derive::{Latest, Layout},
    history::Point,
};

/// Transitions kept per host.
const TRANSITIONS_KEPT: usize = 32;

/// Do not ask the same host for its model more often than this.
const MODEL_REQUEST_GAP: Duration = Duration::from_secs(2);

/// The time, as both the monotonic clock (for ages) and the wall clock (for
/// what people read). Tests build it by hand.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For measuring ages; immune to clock steps.
    pub mono: Instant,
    /// For timestamps shown to people.
    pub wall: SystemTime,
}

impl Now {
    /// The current time.
    pub fn current() -> Self {
        Now { mono: Instant::now(), wall: SystemTime::now() }
    }

    /// This time plus `d`, on both clocks.
    pub fn after(self, d: Duration) -> Self {
        Now { mono: self.mono + d, wall: self.wall + d }
    }
}

/// Liveness of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A message arrived within the stale window.
    Up,
    /// Silent for longer than the stale window.
    Stale,
    /// Silent for longer than the down window, or said bye.
    Down,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Up => "up",
            State::Stale => "stale",
            State::Down => "down",
        })
    }
}

/// One change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// When it happened.
    pub at: SystemTime,
    /// The state before (`None` for a host's first appearance).
    pub from: Option<State>,
    /// The new state.
    pub to: State,
    /// Why, in words.
    pub reason: String,
}

/// What changed, for the live streams: the router turns these into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New values for the host with this id.
    Sample(String),
    /// The host with this id appeared or changed liveness.
    State(String),
}

impl Change {
    /// The id of the host it is about (its stream topic).
    pub fn host_id(&self) -> &str {
        match self {
            Change::Sample(id) | Change::State(id) => id,
        }
    }
}

/// Seconds from a sample being taken on the agent to the collector applying
/// it, as a Prometheus histogram (clock skew between hosts shows here too).
#[derive(Debug, Clone, Default)]
pub struct DelayHistogram {
    /// Cumulative counts per bucket of [`DELAY_BUCKETS`].
    pub buckets: [u64; DELAY_BUCKETS.len()],
    /// Sum of all observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Upper bounds of the ingest delay buckets, seconds.
pub const DELAY_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl DelayHistogram {
    /// Records one delay.
    pub fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(DELAY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// The stale and down windows; `None` means "a multiple of the agent's interval".
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness {
    /// `--stale-after`, or 3 intervals.
    pub stale_after: Option<Duration>,
    /// `--down-after`, or 10 intervals.
    pub down_after: Option<Duration>,
}

impl Liveness {
    /// The windows for a host sampling every `interval`.
    pub fn windows(&self, interval: Duration) -> (Duration, Duration) {
        let stale = self.stale_after.unwrap_or(interval * 3);
        let down = self.down_after.unwrap_or(interval * 10).max(stale);
        (stale, down)
    }
}

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The authenticated agent key (ZAP `User-Id`).
    pub key: PublicKey,
    /// The ROUTER routing id of the connection, to address replies.
    pub routing_id: Vec<u8>,
    /// The TCP peer address, for logs.
    pub address: String,
    /// The host name the allowlist pins this key to, if any.
    pub pinned: Option<String>,
    /// The protocol version of the frame (replies go in the same).
    pub version: u16,
}

/// The reason a revoked agent's host is down.
pub const REVOKED: &str = "key revoked";

/// Everything known about one host.
#[derive(Debug, Clone)]
pub struct Host {
    /// The agent's public key.
    pub key: PublicKey,
    /// Hex of the key: stable across reconnects, safe in a URL.
    pub id: String,
    /// Routing id of the agent's current connection.
    pub routing_id: Vec<u8>,
    /// The protocol version its agent speaks (of its last message).
    pub version: u16,
    /// The agent's TCP address.
    pub address: String,
    /// Name from the hello or model; `None` until one arrives.
    pub hostname: Option<String>,
    /// [`Host::label`], shared with the store's operations (one per
    /// sample: no allocation each).
    label: Arc<str>,
    /// The last hello.
    pub hello: Option<Hello>,
    /// The last model (its schema's families are in `shape`, shared with
    /// every host of that revision; here only the revision is kept).
    pub model: Option<Model>,
    shape: Option<Arc<crate::shapes::Shape>>,
    /// Current liveness.
    pub state: State,
    /// Recent transitions, oldest first.
    pub transitions: VecDeque<Transition>,
    /// Monotonic time of the last valid message.
    pub last_seen: Instant,
    /// Wall time of the last valid message.
    pub last_seen_wall: SystemTime,
    /// The agent's sampling interval.
    pub interval: Duration,
    /// Derived latest values.
    pub latest: Option<Latest>,
    /// The latest values, in the model's schema order (shared with a
    /// scrape's snapshot).
    pub values: Option<Arc<Vec<f64>>>,
    /// The newest metrics that arrived before their model.
    pending: Option<Metrics>,
    last_seq: Option<u64>,
    /// Metrics messages that never arrived (sequence gaps).
    pub missed: u64,
    /// The dashboard point of the latest sample (history is in the store).
    pub last_point: Option<Point>,
    /// The epoch the host's samples are stored under: its agent's spool's
    /// (from `Resume`), or a random one per session for agents without.
    pub epoch: u64,
    /// Its services, containers and process groups over time.
    pub groups: crate::groups::Groups,
    /// When the values in `values` were taken, Unix milliseconds.
    last_taken_ms: Option<u64>,
    model_requested_at: Option<Instant>,
}

impl Host {
    fn new(peer: &Peer, now: Now) -> Self {
        let mut host = Host {
            key: peer.key,
            id: peer.key.to_hex(),
            routing_id: peer.routing_id.clone(),
            version: peer.version,
            address: peer.address.clone(),
            hostname: None,
            label: Arc::from(peer.key.to_z85()),
            hello: None,
            model: None,
            shape: None,
            state: State::Up,
            transitions: VecDeque::new(),
            last_seen: now.mono,
            last_seen_wall: now.wall,
            interval: Duration::from_secs(5),
            latest: None,
            values: None,
            pending: None,
            last_seq: None,
            missed: 0,
            last_point: None,
            epoch: session_epoch(),
            groups: crate::groups::Groups::default(),
            last_taken_ms: None,
            model_requested_at: None,
        };
        host.transitions.push_back(Transition {
            at: now.wall,
            from: None,
            to: State::Up,
            reason: "first message".into(),
        });
        host
    }

    /// Where each family's values are in this host's metrics.
    pub fn layout(&self) -> Option<&Layout> {
        self.shape.as_deref().map(|s| &s.layout)
    }

    /// The families, names and labels of this host's metrics.
    pub fn schema(&self) -> Option<&Schema> {
        self.shape.as_deref().map(|s| &s.schema)
    }

    /// The shared shape of this host's metrics.
    pub fn shape(&self) -> Option<&Arc<crate::shapes::Shape>> {
        self.shape.as_ref()
    }

    /// The state's start time and reason.
    pub fn current_transition(&self) -> Option<&Transition> {
        self.transitions.back()
    }

    /// The name to log: host name, or the key while none is known.
    pub fn label(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| self.key.to_z85())
    }

    fn set_state(&mut self, to: State, reason: String, now: Now, outbox: &mut Vec<Change>) {
        if self.state == to {
            return;
        }
        outbox.push(Change::State(self.id.clone()));
        let from = self.state;
        self.state = to;
        info!(host = %self.label(), %from, %to, %reason, "Host changed state.");
        self.transitions.push_back(Transition { at: now.wall, from: Some(from), to, reason });
        while self.transitions.len() > TRANSITIONS_KEPT {
            self.transitions.pop_front();
        }
    }

    fn seen(&mut self, peer: &Peer, now: Now, outbox: &mut Vec<Change>) {
        self.last_seen = now.mono;
        self.last_seen_wall = now.wall;
        self.routing_id.clone_from(&peer.routing_id);
        self.version = peer.version;
        self.address.clone_from(&peer.address);
        if self.state != State::Up {
            self.set_state(State::Up, "heard from the agent again".into(), now, outbox);
        }
    }

    /// A `ModelRequest`, unless one was sent very recently.
    fn request_model(&mut self, now: Now) -> Option<Message> {
        if self.model_requested_at.is_some_and(|at| now.mono.duration_since(at) < MODEL_REQUEST_GAP)
        {
            return None;
        }
        self.model_requested_at = Some(now.mono);
        Some(Message::ModelRequest)
    }
}

/// Counters of unusual but survivable events, for `/api/stats`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RegistryCounters {
    /// Metrics that arrived before the model they follow (dropped; model requested).
    pub metrics_without_model: u64,
    /// Metrics whose value count does not match their schema.
    pub schema_mismatches: u64,
    /// Hellos and models refused by [`curvemon_protocol::validate`].
    pub models_refused: u64,
    /// The same, by [`ModelError::reason`], in [`ModelError::REASONS`] order.
    #[serde(skip)]
    pub models_refused_by_reason: [u64; ModelError::REASONS.len()],
    /// Hellos or models refused because another key owns the name.
    pub names_refused: u64,
    /// Messages an agent should never send (ping, reject, ...).
    pub unexpected_messages: u64,
    /// Samples that never arrived live (sequence gaps), over every host.
    pub missed_samples: u64,
}

/// All hosts, by key.
#[derive(Debug)]
pub struct Registry {
    hosts: HashMap<PublicKey, Host>,
    /// Schemas and their indexes, one per revision in use.
    shapes: crate::shapes::Shapes,
    /// Which key each host name belongs to (a lookup per hello, not a scan).
    names: HashMap<String, PublicKey>,
    liveness: Liveness,
    retention: Duration,
    outbox: Vec<Change>,
    /// Survivable oddities, counted.
    pub counters: RegistryCounters,
    /// Agent-to-collector delay of applied samples.
    pub ingest_delay: DelayHistogram,
    /// The hosts' applications.
    pub apps: Apps,
    /// The hosts' availability checks.
    pub checks: crate::checks::Checks,
    /// What the store is to write, in order (drained by the router).
    store_ops: Vec<StoreOp>,
    /// Schema revisions handed to the store.
    schemas_sent: std::collections::HashSet<u64>,
}

/// How long each host's services and groups are kept in memory: only the
/// latest point (their charts' history is derived from the store when
/// asked, so memory does not grow with how much history is kept).
pub const DEFAULT_RETENTION: Duration = Duration::ZERO;

impl Registry {
    /// An empty registry with these windows, keeping `retention` of each
    /// host's services and groups in memory.
    pub fn new(liveness: Liveness, retention: Duration) -> Self {
        Registry {
            hosts: HashMap::new(),
            shapes: crate::shapes::Shapes::default(),
            names: HashMap::new(),
            liveness,
            retention,
            outbox: Vec::new(),
            counters: RegistryCounters::default(),
            ingest_delay: DelayHistogram::default(),
            apps: Apps::new(crate::config::DEFAULT_APP_STEP),
            checks: crate::checks::Checks::default(),
            store_ops: Vec::new(),
            schemas_sent: std::collections::HashSet::new(),
        }
    }

    /// Merges application timers in steps of `step` (`--app-step`).
    #[must_use]
    pub fn with_app_step(mut self, step: Duration) -> Self {
        self.apps = Apps::new(step);
        self
    }

    /// What the store is to write since the last call, in order.
    pub fn drain_store_ops(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.store_ops)
    }

    /// The changes since the last call, for the live streams.
    pub fn drain_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.outbox)
    }

    /// All hosts, in no particular order.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// The host with this URL id (the hex of its key: a lookup, not a
    /// scan).
    pub fn by_id(&self, id: &str) -> Option<&Host> {
        self.hosts.get(&PublicKey::from_hex(id)?)
    }

    /// The host of this key.
    pub fn get(&self, key: &PublicKey) -> Option<&Host> {
        self.hosts.get(key)
    }

    /// The liveness windows of a host.
    pub fn windows(&self, host: &Host) -> (Duration, Duration) {
        self.liveness.windows(host.interval)
    }

    /// Applies one authenticated message and returns the replies for its sender.
    pub fn on_message(&mut self, peer: &Peer, message: Message, now: Now) -> Vec<Message> {
        match message {
            Message::Hello(hello) => self.on_hello(peer, hello, now),
            Message::Model(model) => self.on_model(peer, model, now),
            Message::Metrics(metrics) => self.on_metrics(peer, metrics, now),
            Message::Sample(sample) => {
                let metrics = Metrics {
                    seq: sample.seq,
                    taken_at_ms: sample.taken_at_ms,
                    schema_revision: sample.host.schema_revision,
                    values: sample.host.values,
                };
                let replies = self.on_metrics(peer, metrics, now);
                if !sample.apps.is_empty() {
                    self.apps.points(peer.key, sample.taken_at_ms, sample.apps);
                }
                replies
            }
            Message::AppSeries(series) => {
                Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                match self.apps.declare(peer.key, series) {
                    Ok(()) => Vec::new(),
                    Err(error) => self.refuse(peer, "application series", &error),
                }
            }
            Message::Checks(checks) => {
                Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                match self.checks.declare(peer.key, checks) {
                    Ok(()) => Vec::new(),
                    Err(error) => self.refuse(peer, "checks", &error),
                }
            }
            Message::CheckResults(results) => {
                let host = Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                let name = host.label();
                if let Err(error) = self.checks.results(peer.key, &name, results) {
                    // Results are not worth a reconnect: dropped and counted.
                    self.counters.models_refused += 1;
                    if let Some(i) = ModelError::REASONS.iter().position(|r| *r == error.reason()) {
                        self.counters.models_refused_by_reason[i] += 1;
                    }
                    warn!(peer = %peer.address, key = %peer.key, reason = error.reason(), %error, "Dropped an agent's check results.");
                }
                Vec::new()
            }
            Message::Resume(resume) => {
                if let Err(error) = validate::resume(&resume) {
                    return self.refuse(peer, "resume", &error);
                }
                let host = Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                host.epoch = resume.epoch;
                self.store_ops.push(StoreOp::Resume { host: peer.key, resume });
                Vec::new()
            }
            Message::Backfill(backfill) => {
                if let Err(error) = validate::backfill(&backfill) {
                    self.drop_delivery(peer, "backfill", &error);
                    return Vec::new();
                }
                let host = Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                let epoch = host.epoch;
                self.store_ops.push(StoreOp::Samples {
                    host: peer.key,
                    epoch,
                    name: Arc::clone(&host.label),
                    samples: backfill.samples,
                    point: None,
                });
                Vec::new()
            }
            Message::Schema(record) => {
                if let Err(error) = validate::schema(&record.schema) {
                    self.drop_delivery(peer, "schema", &error);
                    return Vec::new();
                }
                Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                if self.schemas_sent.insert(record.schema.revision) {
                    self.store_ops.push(StoreOp::Schema(Arc::new(record.schema)));
                }
                Vec::new()
            }
            Message::Gap(gap) => {
                if let Err(error) = validate::gap(&gap) {
                    self.drop_delivery(peer, "gap", &error);
                    return Vec::new();
                }
                Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
                self.store_ops.push(StoreOp::Gap { host: peer.key, gap });
                Vec::new()
            }
            Message::Bye(bye) => {
                self.on_bye(peer, bye, now);
                Vec::new()
            }
            other @ (Message::ModelRequest
            | Message::Ping(_)
            | Message::Reject(_)
            | Message::Ack(_)) => {
                self.counters.unexpected_messages += 1;
                warn!(peer = %peer.address, key = %peer.key, kind = other.kind(), "Ignoring a message agents do not send.");
                Vec::new()
            }
        }
    }

    /// Refuses `name` for `key` while another key's host of that name is up
    /// or stale. A down host's name may be taken over (a reinstalled machine
    /// with a new key); the old entry is then forgotten.
    fn claim_name(&mut self, peer: &Peer, name: &str, now: Now) -> Result<(), Reject> {
        if let Some(pinned) = peer.pinned.as_deref().filter(|p| *p != name) {
            self.counters.names_refused += 1;
            warn!(name, pinned, key = %peer.key, peer = %peer.address, "Refused a name the allowlist does not give this key.");
            return Err(Reject {
                reason: RejectReason::NameTaken { name: name.to_string() },
                detail: format!(
                    "this agent's key is allowed only as {pinned:?}; run it with --name {pinned}"
                ),
            });
        }
        let owner = self
            .names
            .get(name)
            .filter(|k| **k != peer.key)
            .and_then(|k| self.hosts.get(k))
            .filter(|h| h.hostname.as_deref() == Some(name))
            .map(|h| (h.key, h.state));
        match owner {
            Some((owner, state)) if state != State::Down => {
                self.counters.names_refused += 1;
                warn!(
                    name,
                    owner_key = %owner,
                    claimant_key = %peer.key,
                    peer = %peer.address,
                    "Refused a host name that another key owns."
                );
                Err(Reject {
                    reason: RejectReason::NameTaken { name: name.to_string() },
                    detail: format!(
                        "the name {name:?} is in use by the agent with key {owner}; give this agent \
                         another --name, or stop the other one"
                    ),
                })
            }
            Some((owner, _)) => {
                info!(name, old_key = %owner, new_key = %peer.key, at = ?now.wall, "A new key took over the name of a down host.");
                self.hosts.remove(&owner);
                self.apps.forget(&owner);
                self.checks.forget(&owner);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Gives `host` the name `name`, in the index too.
    fn name_host(names: &mut HashMap<String, PublicKey>, host: &mut Host, name: &str) {
        if host.hostname.as_deref() == Some(name) {
            return;
        }
        if let Some(old) = host.hostname.take()
            && names.get(&old) == Some(&host.key)
        {
            names.remove(&old);
        }
        names.insert(name.to_string(), host.key);
        host.hostname = Some(name.to_string());
        host.label = Arc::from(name);
    }

    /// The sender's entry, created on first contact and marked seen. Takes
    /// the map rather than `self` so callers can still count in `self.counters`.
    fn host_mut<'a>(
        hosts: &'a mut HashMap<PublicKey, Host>,
        outbox: &mut Vec<Change>,
        peer: &Peer,
        now: Now,
    ) -> &'a mut Host {
        let host = hosts.entry(peer.key).or_insert_with(|| {
            let host = Host::new(peer, now);
            outbox.push(Change::State(host.id.clone()));
            host
        });
        host.seen(peer, now, outbox);
        host
    }

    /// Counts and logs a delivery message that breaks the rules; it is
    /// dropped without a reply (what it carried is sent again, or lost and
    /// reported).
    fn drop_delivery(&mut self, peer: &Peer, what: &str, error: &ModelError) {
        self.counters.models_refused += 1;
        if let Some(i) = ModelError::REASONS.iter().position(|r| *r == error.reason()) {
            self.counters.models_refused_by_reason[i] += 1;
        }
        warn!(peer = %peer.address, key = %peer.key, reason = error.reason(), %error, "Dropped an agent's {what}.");
    }

    /// Counts, logs and answers a hello or model that breaks the rules;
    /// the host's entry (if any) is left as it was.
    fn refuse(&mut self, peer: &Peer, what: &str, error: &ModelError) -> Vec<Message> {
        self.counters.models_refused += 1;
        if let Some(i) = ModelError::REASONS.iter().position(|r| *r == error.reason()) {
            self.counters.models_refused_by_reason[i] += 1;
        }
        warn!(peer = %peer.address, key = %peer.key, reason = error.reason(), %error, "Refused an agent's {what}.");
        vec![Message::Reject(Reject {
            reason: RejectReason::InvalidModel { problem: error.to_string() },
            detail: format!(
                "the collector refused this agent's {what}: {error}; fix the agent's \
                 configuration (or upgrade it)"
            ),
        })]
    }

    fn on_hello(&mut self, peer: &Peer, hello: Hello, now: Now) -> Vec<Message> {
        if let Err(error) = validate::hello(&hello) {
            return self.refuse(peer, "hello", &error);
        }
        if let Err(reject) = self.claim_name(peer, &hello.hostname, now) {
            return vec![Message::Reject(reject)];
        }
        let host = Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
        info!(host = %hello.hostname, peer = %peer.address, agent_version = %hello.agent_version, "Agent said hello.");
        Self::name_host(&mut self.names, host, &hello.hostname);
        host.interval = Duration::from_millis(u64::from(hello.interval_ms.max(1)));
        host.hello = Some(hello);
        // Until (unless) its Resume names the spool's epoch.
        host.epoch = session_epoch();
        // A new agent process: its sequence numbers and counters start over.
        host.last_seq = None;
        host.values = None;
        // Its first sample may have arrived before this hello (the agent
        // says hello once the handshake completes) and asked already.
        host.request_model(now).into_iter().collect()
    }

    fn on_model(&mut self, peer: &Peer, model: Model, now: Now) -> Vec<Message> {
        if let Err(error) = validate::model(&model) {
            return self.refuse(peer, "model", &error);
        }
        if let Err(reject) = self.claim_name(peer, &model.hostname, now) {
            return vec![Message::Reject(reject)];
        }
        let host = Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
        match host.schema() {
            None => {
                info!(host = %model.hostname, series = model.schema.series_count(), "Received the host model.")
            }
            Some(old) if old.revision != model.schema.revision => info!(
                host = %model.hostname,
                series = model.schema.series_count(),
                was = old.series_count(),
                "The host's metric schema changed (a disk, mount or interface came or went)."
            ),
            Some(_) => debug!(host = %model.hostname, "Received the host model again."),
        }
        let mut model = model;
        let revision = model.schema.revision;
        let schema =
            std::mem::replace(&mut model.schema, Schema { revision, families: Vec::new() });
        // The same schema again (answering a second request) changes no
        // layout: keep the previous values, or the next CPU percent is lost.
        if host.schema().is_none_or(|s| s.revision != revision) {
            let shape = self.shapes.intern(schema);
            host.groups.relayout(Arc::clone(&shape.groups));
            host.shape = Some(shape);
            host.values = None;
        }
        Self::name_host(&mut self.names, host, &model.hostname);
        host.interval = Duration::from_millis(u64::from(model.interval_ms.max(1)));
        if self.schemas_sent.insert(revision)
            && let Some(shape) = &host.shape
        {
            self.store_ops.push(StoreOp::Schema(Arc::new(shape.schema.clone())));
        }
        host.model = Some(model);
        match host.pending.take() {
            Some(pending) if pending.schema_revision == revision => {
                self.apply(peer.key, pending, now)
            }
            _ => Vec::new(),
        }
    }

    fn on_metrics(&mut self, peer: &Peer, metrics: Metrics, now: Now) -> Vec<Message> {
        let host = Self::host_mut(&mut self.hosts, &mut self.outbox, peer, now);
        let known =
            host.model.as_ref().is_some_and(|m| m.schema.revision == metrics.schema_revision);
        if !known {
            // Keep the newest such sample: it is applied when the model
            // arrives, so the first sample of a connection is not lost.
            self.counters.metrics_without_model += 1;
            host.pending = Some(metrics);
            return host.request_model(now).into_iter().collect();
        }
        self.apply(peer.key, metrics, now)
    }

    fn apply(&mut self, key: PublicKey, metrics: Metrics, now: Now) -> Vec<Message> {
        let Some(host) = self.hosts.get_mut(&key) else { return Vec::new() };
        let taken = crate::time::from_unix_ms(metrics.taken_at_ms);
        let delay = now.wall.duration_since(taken).map_or(0.0, |d| d.as_secs_f64());
        let stored = metrics.clone();
        let replies = Self::apply_metrics(host, metrics, &mut self.counters, now, self.retention);
        if replies.is_empty() {
            self.ingest_delay.observe(delay);
            self.outbox.push(Change::Sample(host.id.clone()));
            self.store_ops.push(StoreOp::Samples {
                host: key,
                epoch: host.epoch,
                name: Arc::clone(&host.label),
                samples: vec![stored],
                point: host.last_point.clone(),
            });
        }
        replies
    }

    fn apply_metrics(
        host: &mut Host,
        metrics: Metrics,
        counters: &mut RegistryCounters,
        now: Now,
        retention: Duration,
    ) -> Vec<Message> {
        let expected = host.schema().map_or(0, Schema::series_count);
        if metrics.values.len() != expected {
            counters.schema_mismatches += 1;
            warn!(host = %host.label(), got = metrics.values.len(), expected, "Metrics do not match their schema; asking for the model again.");
            return host.request_model(now).into_iter().collect();
        }
        match host.last_seq {
            Some(last) if metrics.seq > last.saturating_add(1) => {
                host.missed = host.missed.saturating_add(metrics.seq - last - 1);
                counters.missed_samples =
                    counters.missed_samples.saturating_add(metrics.seq - last - 1);
            }
            Some(last) if metrics.seq <= last => {
                warn!(host = %host.label(), last, seq = metrics.seq, "Sequence number went backwards.");
            }
            _ => {}
        }
        host.last_seq = Some(metrics.seq);
        let previous =
            host.values.as_deref().zip(host.last_taken_ms).map(|(v, t)| (t, v.as_slice()));
        let Some(shape) = host.shape.clone() else { return Vec::new() };
        let point = shape.layout.point(previous, metrics.taken_at_ms, &metrics.values);
        host.last_point = Some(point);
        host.groups.update(
            &metrics.values,
            metrics.taken_at_ms,
            u64::try_from(retention.as_millis()).unwrap_or(u64::MAX),
        );
        host.last_taken_ms = Some(metrics.taken_at_ms);
        let (cpu_percent, cpu_percent_per_core) = host
            .values
            .as_deref()
            .and_then(|prev| shape.layout.cpu_percent(prev, &metrics.values))
            .map_or((None, Vec::new()), |(all, cores)| (Some(all), cores));
        let scalar = |name: &str| shape.layout.scalar(&metrics.values, name);
        host.latest = Some(Latest {
            seq: metrics.seq,
            taken_at: crate::time::rfc3339(crate::time::from_unix_ms(metrics.taken_at_ms)),
            cpu_percent,
            cpu_percent_per_core,
            mem_available_bytes: scalar("node_memory_MemAvailable_bytes"),
            mem_total_bytes: scalar("node_memory_MemTotal_bytes"),
            uptime_seconds: scalar("curvemon_uptime_seconds"),
            load1: scalar("node_load1"),
            load5: scalar("node_load5"),
            load15: scalar("node_load15"),
        });
        host.values = Some(Arc::new(metrics.values));
        Vec::new()
    }

    fn on_bye(&mut self, peer: &Peer, bye: Bye, now: Now) {
        if let Some(host) = self.hosts.get_mut(&peer.key) {
            host.last_seen = now.mono;
            host.last_seen_wall = now.wall;
            host.set_state(
                State::Down,
                format!("agent said bye: {}", bye.reason),
                now,
                &mut self.outbox,
            );
        }
    }

    /// Credits every host that was not down the time the collector itself
    /// was away (`stalled`): silence the collector caused is not the
    /// agent's.
    pub fn forgive(&mut self, stalled: Duration) {
        let now = Instant::now();
        for host in self.hosts.values_mut().filter(|h| h.state != State::Down) {
            host.last_seen = (host.last_seen + stalled).min(now);
        }
    }

    /// Moves silent hosts to stale or down. Returns how many changed.
    pub fn sweep(&mut self, now: Now) -> usize {
        let mut changed = 0;
        for host in self.hosts.values_mut() {
            if host.state == State::Down {
                continue;
            }
            let (stale, down) = self.liveness.windows(host.interval);
            let silent = now.mono.saturating_duration_since(host.last_seen);
            let words =
                || format!("no message for {}", humantime::format_duration(round_secs(silent)));
            if silent >= down {
                host.set_state(State::Down, words(), now, &mut self.outbox);
                changed += 1;
            } else if silent >= stale && host.state == State::Up {
                host.set_state(State::Stale, words(), now, &mut self.outbox);
                changed += 1;
            }
        }
        changed
    }

    /// Marks a host down because its key was revoked. Returns the routing id
    /// of its connection to tell it so, the first time only.
    pub fn revoke(&mut self, key: &PublicKey, now: Now) -> Option<Vec<u8>> {
        let host = self.hosts.get_mut(key)?;
        if host.state == State::Down
            && host.current_transition().is_some_and(|t| t.reason == REVOKED)
        {
            return None;
        }
        host.set_state(State::Down, REVOKED.into(), now, &mut self.outbox);
        Some(host.routing_id.clone())
    }

    /// How many hosts are up, stale and down: for the service manager's
    /// status line, a few times a minute (a scan, like the sweep's).
    pub fn census(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for host in self.hosts.values() {
            counts[host.state as usize] += 1;
        }
        counts
    }

    /// Keys of every known host.
    pub fn keys(&self) -> Vec<PublicKey> {
        self.hosts.keys().copied().collect()
    }

    /// Routing ids (and the version each speaks) to ping: every host not
    /// down by its own choice.
    pub fn ping_targets(&self) -> Vec<(Vec<u8>, u16)> {
        self.hosts
            .values()
            .filter(|h| {
                h.state != State::Down
                    || !h.current_transition().is_some_and(|t| {
                        t.reason.starts_with("agent said bye") || t.reason == REVOKED
                    })
            })
            .map(|h| (h.routing_id.clone(), h.version))
            .collect()
    }
}

/// History points for a host sampling every `interval`.
/// A random epoch for a session of an agent that names none.
fn session_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes).max(1)
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use curvemon_keys::KeyPair;
    use curvemon_protocol::{Family, Kind, Label, Schema};

    use super::*;

    fn peer(routing: u8) -> Peer {
        Peer {
            key: KeyPair::generate().unwrap().public,
            routing_id: vec![routing],
            address: "127.0.0.1".into(),
            pinned: None,
            version: curvemon_protocol::PROTOCOL_VERSION,
        }
    }

    fn hello(name: &str) -> Message {
        Message::Hello(Hello {
            agent_version: "t".into(),
            hostname: name.into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            interval_ms: 1000,
        })
    }

    fn model(name: &str) -> Model {
        Model {
            hostname: name.into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            kernel: "k".into(),
            os: "o".into(),
            cpu_model: "c".into(),
            cpu_count: 1,
            mem_total_bytes: 100,
            swap_total_bytes: 0,
            boot_time_unix: 0,
            agent_version: "t".into(),
            interval_ms: 1000,
            schema: Schema::new(vec![
                Family {
                    name: "node_memory_MemAvailable_bytes".into(),
                    help: String::new(),
                    kind: Kind::Gauge,
                    series: vec![vec![]],
                },
                Family {
                    name: "node_cpu_seconds_total".into(),
                    help: String::new(),
                    kind: Kind::Counter,
                    series: vec![
                        vec![Label::new("cpu", "0"), Label::new("mode", "idle")],
                        vec![Label::new("cpu", "0"), Label::new("mode", "user")],
                    ],
                },
            ]),
        }
    }

    fn metrics(seq: u64, revision: u64, values: Vec<f64>) -> Message {
        Message::Metrics(Metrics { seq, taken_at_ms: 0, schema_revision: revision, values })
    }

    #[test]
    fn hello_model_metrics_then_stale_then_down() {
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let p = peer(1);
        assert_eq!(reg.on_message(&p, hello("web"), t0), vec![Message::ModelRequest]);
        let m = model("web");
        let rev = m.schema.revision;
        assert!(reg.on_message(&p, Message::Model(m), t0).is_empty());
        reg.on_message(&p, metrics(1, rev, vec![50.0, 10.0, 0.0]), t0);
        reg.on_message(
            &p,
            metrics(2, rev, vec![40.0, 11.0, 1.0]),
            t0.after(Duration::from_secs(1)),
        );
        let host = reg.get(&p.key).unwrap();
        let latest = host.latest.as_ref().unwrap();
        assert_eq!(latest.seq, 2);
        assert_eq!(latest.mem_available_bytes, Some(40.0));
        assert_eq!(latest.cpu_percent, Some(50.0));
        assert_eq!(host.state, State::Up);

        // Interval 1 s: stale after 3 s of silence, down after 10 s.
        let last = t0.after(Duration::from_secs(1));
        assert_eq!(reg.sweep(last.after(Duration::from_millis(2900))), 0);
        assert_eq!(reg.sweep(last.after(Duration::from_secs(3))), 1);
        assert_eq!(reg.get(&p.key).unwrap().state, State::Stale);
        assert_eq!(reg.sweep(last.after(Duration::from_secs(10))), 1);
        let host = reg.get(&p.key).unwrap();
        assert_eq!(host.state, State::Down);
        assert_eq!(host.current_transition().unwrap().reason, "no message for 10s");
        let states: Vec<_> = host.transitions.iter().map(|t| t.to).collect();
        assert_eq!(states, vec![State::Up, State::Stale, State::Down]);

        // It comes back.
        reg.on_message(
            &p,
            metrics(3, rev, vec![40.0, 12.0, 1.0]),
            last.after(Duration::from_secs(11)),
        );
        assert_eq!(reg.get(&p.key).unwrap().state, State::Up);
    }

    #[test]
    fn bye_is_down_at_once_with_reason() {
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let p = peer(1);
        reg.on_message(&p, hello("web"), t0);
        reg.on_message(&p, Message::Bye(Bye { reason: "received SIGTERM".into() }), t0);
        let host = reg.get(&p.key).unwrap();
        assert_eq!(host.state, State::Down);
        assert_eq!(host.current_transition().unwrap().reason, "agent said bye: received SIGTERM");
        assert!(reg.ping_targets().is_empty());
    }

    #[test]
    fn metrics_from_a_stranger_ask_for_the_model_once_per_gap() {
        // What a restarted collector sees: no hello, just metrics.
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let p = peer(7);
        assert_eq!(reg.on_message(&p, metrics(40, 1, vec![1.0]), t0), vec![Message::ModelRequest]);
        assert!(
            reg.on_message(&p, metrics(41, 1, vec![1.0]), t0.after(Duration::from_secs(1)))
                .is_empty()
        );
        assert_eq!(
            reg.on_message(&p, metrics(42, 1, vec![1.0]), t0.after(Duration::from_secs(2))),
            vec![Message::ModelRequest]
        );
        assert_eq!(reg.counters.metrics_without_model, 3);
        assert!(reg.get(&p.key).unwrap().latest.is_none());
        let m = model("web");
        let rev = m.schema.revision;
        reg.on_message(&p, metrics(43, rev, vec![5.0, 1.0, 1.0]), t0.after(Duration::from_secs(2)));
        reg.on_message(&p, Message::Model(m), t0.after(Duration::from_secs(2)));
        let host = reg.get(&p.key).unwrap();
        assert_eq!(host.hostname.as_deref(), Some("web"));
        let latest = host.latest.as_ref().expect("the sample that came first is applied");
        assert_eq!((latest.seq, latest.mem_available_bytes), (43, Some(5.0)));
    }

    #[test]
    fn a_name_belongs_to_one_live_key() {
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let (a, b) = (peer(1), peer(2));
        reg.on_message(&a, hello("web"), t0);
        let replies = reg.on_message(&b, hello("web"), t0);
        assert!(matches!(
            &replies[..],
            [Message::Reject(Reject { reason: RejectReason::NameTaken { .. }, .. })]
        ));
        assert!(reg.get(&b.key).is_none(), "the claimant is not registered");
        assert_eq!(reg.get(&a.key).unwrap().state, State::Up, "the owner is not disturbed");
        // Once the owner is down, the name may move.
        reg.sweep(t0.after(Duration::from_secs(60)));
        assert_eq!(
            reg.on_message(&b, hello("web"), t0.after(Duration::from_secs(61))),
            vec![Message::ModelRequest]
        );
        assert!(reg.get(&a.key).is_none());
    }

    #[test]
    fn a_repeated_model_keeps_the_rates_going() {
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let p = peer(1);
        // The first sample can overtake the hello: only one model request.
        let m = model("web");
        let rev = m.schema.revision;
        assert_eq!(
            reg.on_message(&p, metrics(1, rev, vec![1.0, 1.0, 1.0]), t0),
            vec![Message::ModelRequest]
        );
        assert!(
            reg.on_message(&p, hello("web"), t0).is_empty(),
            "no second request right after the first"
        );
        reg.on_message(&p, Message::Model(m.clone()), t0);
        reg.on_message(&p, metrics(2, rev, vec![1.0, 2.0, 2.0]), t0.after(Duration::from_secs(1)));
        reg.on_message(&p, Message::Model(m), t0.after(Duration::from_secs(1)));
        reg.on_message(&p, metrics(3, rev, vec![1.0, 3.0, 3.0]), t0.after(Duration::from_secs(2)));
        let latest = reg.get(&p.key).unwrap().latest.clone().unwrap();
        assert_eq!(
            (latest.seq, latest.cpu_percent),
            (3, Some(50.0)),
            "CPU percent survives the repeated model"
        );
    }

    #[test]
    fn pinned_names_and_revocation() {
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let mut p = peer(1);
        p.pinned = Some("web-01".into());
        let replies = reg.on_message(&p, hello("laptop"), t0);
        assert!(
            matches!(&replies[..], [Message::Reject(r)] if r.detail.contains("--name web-01")),
            "{replies:?}"
        );
        assert_eq!(reg.on_message(&p, hello("web-01"), t0), vec![Message::ModelRequest]);
        assert_eq!(reg.revoke(&p.key, t0), Some(vec![1]));
        let host = reg.get(&p.key).unwrap();
        assert_eq!(
            (host.state, host.current_transition().unwrap().reason.as_str()),
            (State::Down, REVOKED)
        );
        assert_eq!(reg.revoke(&p.key, t0), None, "once");
        assert!(reg.ping_targets().is_empty());
    }

    #[test]
    fn counts_gaps_and_refuses_inconsistent_data() {
        let mut reg = Registry::new(Liveness::default(), DEFAULT_RETENTION);
        let t0 = Now::current();
        let p = peer(1);
        reg.on_message(&p, hello("web"), t0);
        let m = model("web");
        let rev = m.schema.revision;
        reg.on_message(&p, Message::Model(m.clone()), t0);
        reg.on_message(&p, metrics(1, rev, vec![1.0, 1.0, 1.0]), t0);
        reg.on_message(&p, metrics(5, rev, vec![1.0, 1.0, 1.0]), t0);
        assert_eq!(reg.get(&p.key).unwrap().missed, 3);
        reg.on_message(&p, metrics(6, rev, vec![1.0]), t0.after(Duration::from_secs(5)));
        assert_eq!(reg.counters.schema_mismatches, 1);
        let mut forged = m;
        forged.schema.revision ^= 1;
        let replies = reg.on_message(&p, Message::Model(forged), t0);
        assert!(matches!(
            &replies[..],
            [Message::Reject(Reject { reason: RejectReason::InvalidModel { problem }, .. })]
                if problem.contains("does not match its content")
        ));
        assert_eq!(reg.counters.models_refused, 1);
    }

    #[test]
    fn explicit_windows_override_interval_multiples() {
        let l = Liveness { stale_after: Some(Duration::from_secs(2)), down_after: None };
        assert_eq!(
            l.windows(Duration::from_secs(1)),
            (Duration::from_secs(2), Duration::from_secs(10))
        );
        let l = Liveness {
            stale_after: Some(Duration::from_secs(20)),
            down_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            l.windows(Duration::from_secs(1)).1,
            Duration::from_secs(20),
            "down never before stale"
        );
    }
}
