//! The socket thread: the CURVE ROUTER that agents connect to, its monitor,
//! the liveness sweep and the pings. It owns the sockets (zmq sockets are not
//! thread-safe) and shares only the [`Registry`] (behind a mutex, locked once
//! per message) and the [`Stats`] with the HTTP side.
//!
//! Each inbound message is two frames: the routing id ROUTER prepends, and
//! the agent's payload. The payload is received as a `zmq::Message` so that
//! its `User-Id` (the key ZAP authenticated) can be read; `recv_multipart`
//! would lose it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use curvemon_keys::PublicKey;
use curvemon_link::{Event, EventKind};
use curvemon_protocol::{
    DecodeError, MIN_VERSION, Message, PROTOCOL_VERSION, Ping, Reject, RejectReason, codec,
    peek_version,
};
use tracing::{debug, error, info, warn};

use crate::{
    auth::SharedAllowlist,
    handshakes::{Failure, Handshakes, OwnDescriptors, PeerLogLimit},
    registry::{Now, Peer, Registry},
    stats::Stats,
    stream::Hub,
    view::EventData,
};

/// How often silent hosts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How often the service manager's status line is brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// A loop turn this much later than due means the collector itself did not
/// run.
const STALL: Duration = Duration::from_secs(2);

/// The router thread's state.
pub struct Router {
    /// The bound ROUTER socket.
    pub socket: zmq::Socket,
    /// Its monitor (handshake failures, accepted connections).
    pub monitor: zmq::Socket,
    /// Shared host state.
    pub registry: Arc<Mutex<Registry>>,
    /// Shared counters.
    pub stats: Arc<Stats>,
    /// How often every host is pinged.
    pub ping_interval: Duration,
    /// Connections in their handshake, with their peers' addresses.
    pub handshakes: std::cell::RefCell<Handshakes>,
    /// How those addresses are read.
    pub peers: OwnDescriptors,
    /// Rate limit for handshake-failure warnings, per peer.
    pub failure_log: std::cell::RefCell<PeerLogLimit>,
    /// Where live events go.
    pub hub: Arc<Hub>,
    /// The allowlist, as the ZAP handler sees it.
    pub allowlist: SharedAllowlist,
    /// Bumped on every allowlist reload; the router then cuts revoked keys.
    pub allowlist_generation: Arc<AtomicU64>,
    /// Messages per second each agent may send (with a burst of twice that).
    pub max_rate: f64,
    /// Per-agent token buckets.
    pub buckets: std::cell::RefCell<HashMap<PublicKey, Bucket>>,
    /// The history store's writer: samples go to it, acknowledgements
    /// come back from it.
    pub writer: crate::store::writer::Handle,
    /// When acknowledgements go out.
    pub acks: std::cell::RefCell<crate::acks::AckPacer>,
    /// The watchdog and status line for systemd, fed from this loop.
    pub notifier: std::cell::RefCell<curvemon_notify::Notifier>,
}

/// A token bucket: `rate` tokens a second, at most `2 × rate` saved up.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    warned: Option<Instant>,
    dropped: u64,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Self {
        Bucket { tokens: 2.0 * rate, at: now, warned: None, dropped: 0 }
    }

    /// Takes a token if there is one.
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Router {
    /// Serves agents until `stop` is set.
    ///
    /// # Errors
    /// Only when the socket itself fails; per-message problems are logged and
    /// counted.
    pub fn serve(self, stop: &AtomicBool) -> anyhow::Result<()> {
        let result = self.serve_until(stop);
        // The store's writer finishes what it holds before the process ends.
        self.writer.stop();
        result
    }

    fn serve_until(&self, stop: &AtomicBool) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd as _;
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut next_ping = Instant::now() + self.ping_interval;
        let mut next_status = Instant::now();
        let mut generation = self.allowlist_generation.load(Ordering::Relaxed);
        let mut last_turn = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now_generation = self.allowlist_generation.load(Ordering::Relaxed);
            if now_generation != generation {
                generation = now_generation;
                self.revoke_unlisted();
            }
            let wait = next_sweep.saturating_duration_since(Instant::now());
            let acks_fd = self.writer.fd().as_raw_fd();
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
                self.monitor.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(acks_fd, zmq::POLLIN),
            ];
            match zmq::poll(&mut items, i64::try_from(wait.as_millis()).unwrap_or(250).max(1)) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let acks_ready = items[2].is_readable();
            // The loop turns at least every SWEEP_EVERY; a much longer pause
            // means this process did not run (stopped, a stalled VM). Read
            // what queued meanwhile before judging any host.
            let stalled = last_turn.elapsed();
            last_turn = Instant::now();
            if stalled > STALL {
                self.recover_from_stall(stalled)?;
            }
            self.pump_monitor()?;
            // Bounded, so a flood cannot starve the sweep and pings.
            let mut received = 0;
            while received < 1024 && self.receive_one()? {
                received += 1;
            }
            if acks_ready {
                self.acks.borrow_mut().offer(self.writer.take_acks());
            }
            self.send_acks();
            let now = Instant::now();
            if now >= next_sweep {
                let events = {
                    let mut reg = self.lock();
                    let now = Now::current();
                    reg.sweep(now);
                    reg.apps.close_steps(crate::time::now_ms());
                    self.take_events(&mut reg)
                };
                self.publish(events);
                next_sweep = now + SWEEP_EVERY;
                // Fed by the loop that does the work, so a wedged router
                // stops the pings and systemd restarts the collector.
                self.notifier.borrow_mut().watchdog(now);
            }
            if now >= next_status && self.notifier.borrow().is_active() {
                let [up, stale, down] = self.lock().census();
                self.notifier
                    .borrow_mut()
                    .status(&format!("{up} hosts up, {stale} stale, {down} down"));
                next_status = now + STATUS_EVERY;
            }
            if now >= next_ping {
                self.ping_all();
                next_ping = now + self.ping_interval;
            }
            // A busy fleet sends all the time: waking for every message
            // costs two context switches (here and in libzmq's I/O thread)
            // per message. A short pause after a light turn lets messages
            // gather, so each turn takes many; a full turn goes on at once.
            if received > 0 && received < 1024 {
                std::thread::sleep(GATHER);
            }
        }
        debug!("Router stopped.");
        Ok(())
    }

    /// After the collector itself did not run for `stalled`: every queued
    /// message is read first, and hosts are credited the time the
    /// collector was away, so none is marked stale or down for it.
    fn recover_from_stall(&self, stalled: Duration) -> anyhow::Result<()> {
        warn!(
            stalled_ms = stalled.as_millis() as u64,
            "The collector did not run for a while (stopped or starved); reading what queued before judging liveness."
        );
        while self.receive_one()? {}
        self.lock().forgive(stalled);
        Ok(())
    }

    /// Sends the acknowledgements the store's writer has ready, to agents
    /// that speak version 4 and are connected with that epoch.
    fn send_acks(&self) {
        let acks = self.acks.borrow_mut().due(Instant::now());
        if acks.is_empty() {
            return;
        }
        let targets: Vec<(Vec<u8>, u16, curvemon_protocol::Ack)> = {
            let reg = self.lock();
            acks.into_iter()
                .filter_map(|a| {
                    let host = reg.get(&a.host)?;
                    (host.version >= 4
                        && host.epoch == a.epoch
                        && host.state != crate::registry::State::Down)
                        .then(|| {
                            (
                                host.routing_id.clone(),
                                host.version,
                                curvemon_protocol::Ack { epoch: a.epoch, seq: a.seq },
                            )
                        })
                })
                .collect()
        };
        for (routing, version, ack) in targets {
            self.send(&routing, &Message::Ack(ack), version);
        }
    }

    /// Hands what the registry produced for the store to its writer.
    fn to_store(&self, ops: Vec<crate::store::writer::Op>) {
        for op in ops {
            if !self.writer.send(op) {
                // Counted by the writer's handle; agents send it again.
                debug!(
                    "The store's queue is full; dropped a write (not acknowledged, so it comes again)."
                );
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Receives and handles one message; false when none was waiting.
    fn receive_one(&self) -> anyhow::Result<bool> {
        let routing = match self.socket.recv_msg(zmq::DONTWAIT) {
            Ok(msg) => msg,
            Err(zmq::Error::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if !routing.get_more() {
            Stats::bump(&self.stats.decode_errors);
            warn!("Dropping a message without a payload frame.");
            return Ok(true);
        }
        let mut payload = self.socket.recv_msg(0)?;
        let mut extra = 0;
        while self.socket.get_rcvmore()? {
            let _ = self.socket.recv_msg(0)?;
            extra += 1;
        }
        let address = payload.gets("Peer-Address").unwrap_or("?").to_string();
        let user_id = payload.gets("User-Id").map(str::to_string);
        Stats::bump(&self.stats.frames_received);
        self.stats.bytes_received.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let Some(key) = user_id.and_then(|k| k.parse::<PublicKey>().ok()) else {
            // Cannot happen with CURVE and our ZAP handler; refuse to guess.
            Stats::bump(&self.stats.decode_errors);
            warn!(peer = %address, "Dropping a message without an authenticated key.");
            return Ok(true);
        };
        if extra > 0 {
            Stats::bump(&self.stats.decode_errors);
            warn!(peer = %address, %key, extra, "Dropping a message with more than one payload frame.");
            return Ok(true);
        }
        if !self.admit(&key, &address) {
            return Ok(true);
        }
        // ZAP checks keys only at the handshake: a key removed from the
        // allowlist since then is refused here, message by message.
        let (allowed, pinned) =
            match self.allowlist.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            {
                None => (true, None),
                Some(list) => {
                    list.get(&key).map_or((false, None), |agent| (true, agent.name.clone()))
                }
            };
        if !allowed {
            Stats::bump(&self.stats.revoked_frames);
            self.revoke(&key, routing.to_vec());
            return Ok(true);
        }
        // The frame's version, where readable: replies go in the same.
        let version = peek_version(&payload)
            .ok()
            .filter(|v| (MIN_VERSION..=PROTOCOL_VERSION).contains(v))
            .unwrap_or(PROTOCOL_VERSION);
        let peer = Peer { key, routing_id: routing.to_vec(), address, pinned, version };
        match codec::decode(&payload) {
            Ok(message) => {
                if matches!(message, Message::Hello(_)) {
                    self.acks.borrow_mut().forget(&peer.key);
                }
                let (replies, events, ops) = {
                    let mut reg = self.lock();
                    let replies = reg.on_message(&peer, message, Now::current());
                    (replies, self.take_events(&mut reg), reg.drain_store_ops())
                };
                self.to_store(ops);
                self.publish(events);
                for reply in replies {
                    self.send(&peer.routing_id, &reply, peer.version);
                }
            }
            Err(DecodeError::UnsupportedVersion { theirs, ours }) => {
                Stats::bump(&self.stats.version_mismatches);
                warn!(peer = %peer.address, key = %peer.key, agent_version = theirs, collector_version = ours, "Agent speaks a protocol version this collector does not; rejecting (a newer agent falls back).");
                let reject = Message::Reject(Reject {
                    reason: RejectReason::UnsupportedVersion { collector: ours, agent: theirs },
                    detail: format!(
                        "this collector speaks protocol versions {MIN_VERSION} to {ours}, the agent \
                         sent version {theirs}; upgrade the older side"
                    ),
                });
                // In the newest version this side speaks to a newer agent
                // (which can read it), in the oldest to an older one.
                let answer_in = if theirs > ours { ours } else { MIN_VERSION };
                self.send(&peer.routing_id, &reject, answer_in);
            }
            Err(error) => {
                Stats::bump(&self.stats.decode_errors);
                let version = peek_version(&payload).ok();
                warn!(peer = %peer.address, key = %peer.key, %error, bytes = payload.len(), ?version, "Dropping a malformed frame.");
            }
        }
        Ok(true)
    }

    /// The agent's rate limit: false (and counted, and logged at most once
    /// a minute per agent) when this message is over it.
    fn admit(&self, key: &PublicKey, address: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.borrow_mut();
        let bucket = buckets.entry(*key).or_insert_with(|| Bucket::new(self.max_rate, now));
        if bucket.take(self.max_rate, now) {
            return true;
        }
        Stats::bump(&self.stats.throttled_frames);
        bucket.dropped += 1;
        if bucket.warned.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60)) {
            warn!(%key, peer = %address, limit = self.max_rate, dropped = bucket.dropped, "Throttling an agent that sends faster than its limit.");
            bucket.warned = Some(now);
            bucket.dropped = 0;
        }
        false
    }

    /// Marks a revoked key's host down and tells its agent (which then
    /// reconnects and is refused by ZAP).
    fn revoke(&self, key: &PublicKey, fallback_routing: Vec<u8>) {
        let (routing, events) = {
            let mut reg = self.lock();
            let routing = reg.revoke(key, Now::current());
            (routing, self.take_events(&mut reg))
        };
        self.publish(events);
        let first_time = routing.is_some();
        let routing = routing.unwrap_or(fallback_routing);
        if first_time {
            warn!(%key, "Cut off an agent whose key was revoked.");
        }
        let reject = Message::Reject(Reject {
            reason: RejectReason::KeyNotAuthorized,
            detail: "this agent's key was removed from the collector's allowlist".into(),
        });
        let version = self.lock().get(key).map_or(MIN_VERSION, |h| h.version);
        self.send(&routing, &reject, version);
    }

    /// After an allowlist reload: cut every known host whose key is gone.
    fn revoke_unlisted(&self) {
        let unlisted: Vec<PublicKey> = {
            let list = self.allowlist.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(list) = list.as_ref() else { return };
            self.lock().keys().into_iter().filter(|k| list.get(k).is_none()).collect()
        };
        for key in unlisted {
            let known = self.lock().get(&key).map(|h| h.routing_id.clone());
            if let Some(routing) = known {
                self.revoke(&key, routing);
            }
        }
    }

    /// The registry's changes as stream events (built under its lock,
    /// published after it is released); applications' only for topics
    /// somebody listens to.
    fn take_events(&self, registry: &mut Registry) -> Vec<EventData> {
        let changes = registry.drain_changes();
        let mut skipped = false;
        let mut events: Vec<EventData> = Vec::new();
        for change in &changes {
            if self.hub.wants(change.host_id()) {
                events.extend(crate::view::event(registry, change));
            } else {
                skipped = true;
            }
        }
        if skipped {
            self.hub.skipped();
        }
        events.extend(crate::apps::view::events(registry, |topic| self.hub.wants(topic)));
        events.extend(crate::checks::view::events(registry, |topic| self.hub.wants(topic)));
        events
    }

    fn publish(&self, events: Vec<EventData>) {
        for event in events {
            self.hub.publish(event);
        }
    }

    fn send(&self, routing_id: &[u8], message: &Message, version: u16) {
        let frame = codec::encode_with_version(message, version);
        let sent = self
            .socket
            .send(routing_id, zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| self.socket.send(frame, zmq::DONTWAIT));
        if let Err(error) = sent {
            Stats::bump(&self.stats.replies_dropped);
            debug!(%error, kind = message.kind(), "Could not queue a reply.");
        }
    }

    fn ping_all(&self) {
        let targets = self.lock().ping_targets();
        let ping = Message::Ping(Ping { sent_at_ms: unix_ms() });
        for (routing_id, version) in targets {
            self.send(&routing_id, &ping, version);
        }
    }

    /// Handles every waiting monitor event. The peers of new connections
    /// are looked up first, then the queue is read again to see whether a
    /// connection closed meanwhile (see [`crate::handshakes`]).
    fn pump_monitor(&self) -> zmq::Result<()> {
        let mut batch = drain(&self.monitor)?;
        while !batch.is_empty() {
            let mut peers = Handshakes::look_up(&batch, &self.peers);
            let next = drain(&self.monitor)?;
            Handshakes::distrust(&batch, &mut peers, &next);
            for (event, peer) in batch.iter().zip(peers) {
                self.on_event(event, peer);
            }
            batch = next;
        }
        Ok(())
    }

    fn on_event(&self, event: &Event, peer: Option<std::net::SocketAddr>) {
        if let Some(failure) = self.handshakes.borrow_mut().on_event(event, peer) {
            self.log_failure(&failure);
        }
        match event.kind {
            EventKind::Accepted => {
                Stats::bump(&self.stats.connections_accepted);
                debug!(peer = %show(peer), fd = event.value, "TCP connection accepted.");
            }
            EventKind::HandshakeSucceeded => {
                debug!(peer = %event.endpoint, "CURVE handshake done.")
            }
            EventKind::HandshakeFailedAuth => {
                // The ZAP handler has logged the key; count the failure here.
                Stats::bump(&self.stats.handshake_failures);
                Stats::bump(&self.stats.handshake_reasons[0]);
            }
            EventKind::HandshakeFailedProtocol | EventKind::HandshakeFailedNoDetail => {
                Stats::bump(&self.stats.handshake_failures);
                let reason = match (event.kind, event.value) {
                    (EventKind::HandshakeFailedNoDetail, _) => 4,
                    (_, 0x1100_0001) => 1,
                    (_, 0x1100_0002) => 2,
                    _ => 3,
                };
                Stats::bump(&self.stats.handshake_reasons[reason]);
            }
            EventKind::Disconnected => debug!(fd = event.value, "Connection closed."),
            _ => {}
        }
    }

    /// A misconfigured agent retries every few seconds: each peer and kind
    /// of failure is logged once a minute, with how many were held back.
    fn log_failure(&self, failure: &Failure) {
        let ip = failure.peer.map(|p| p.ip());
        if let Some(suppressed) =
            self.failure_log.borrow_mut().allow(ip, failure.event.value, Instant::now())
        {
            warn!(
                peer = %show(failure.peer),
                endpoint = %failure.event.endpoint,
                reason = %failure.event.describe(),
                suppressed,
                "CURVE handshake failed (an agent with a wrong collector key, or not a curvemon agent)."
            );
        }
    }
}

/// Every monitor event waiting now.
fn drain(monitor: &zmq::Socket) -> zmq::Result<Vec<Event>> {
    let mut events = Vec::new();
    while let Some(event) = curvemon_link::read_event(monitor)? {
        events.push(event);
    }
    Ok(events)
}

/// A peer address for logs.
fn show(peer: Option<std::net::SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".into(), |p| p.to_string())
}

/// The pause after a turn that took some messages but not a full batch.
const GATHER: Duration = Duration::from_millis(2);

/// Connections waiting to be accepted (see [`bind`]).
pub const LISTEN_BACKLOG: i32 = 4096;
/// Frames queued from one agent before libzmq stops reading its socket.
pub const RECEIVE_HWM: i32 = 32;
/// Replies queued to one agent before more are dropped.
pub const SEND_HWM: i32 = 64;

/// Creates, configures and binds the ROUTER. The ZAP handler must already be
/// bound in the same context.
///
/// # Errors
/// Socket options or the bind.
pub fn bind(
    ctx: &zmq::Context,
    identity: &curvemon_keys::KeyPair,
    listen: &str,
) -> anyhow::Result<(zmq::Socket, zmq::Socket)> {
    use anyhow::Context as _;
    let mut socket = ctx.socket(zmq::ROUTER)?;
    curvemon_link::apply_server(&mut socket, identity)?;
    socket.set_linger(0)?;
    // Refuse oversized frames inside libzmq, before they are buffered.
    socket.set_maxmsgsize(curvemon_protocol::MAX_FRAME_BYTES as i64)?;
    // Sized for a fleet reconnecting at once (a collector restart): the
    // kernel's accept queue holds a burst of connections (it caps this at
    // net.core.somaxconn, 4096 by default) instead of refusing them into
    // the agents' back-off; a handshake may wait its turn behind thousands
    // (~0.5 ms of CPU each) before a stalled one is dropped.
    socket.set_backlog(LISTEN_BACKLOG)?;
    socket.set_handshake_ivl(30_000)?;
    // Bounded queues per agent: a backlog of frames from one agent waits in
    // its TCP connection (the agent keeps it spooled), not in our memory;
    // replies beyond a few dozen to one agent are dropped and counted.
    socket.set_rcvhwm(RECEIVE_HWM)?;
    socket.set_sndhwm(SEND_HWM)?;
    socket.set_ipv6(listen.contains('['))?;
    let monitor = curvemon_link::attach_monitor(ctx, &socket, "router")?;
    socket.bind(listen).with_context(|| format!("binding the agent socket to {listen}"))?;
    info!(%listen, protocol_version = PROTOCOL_VERSION, "Listening for agents.");
    Ok((socket, monitor))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Logs and swallows a router failure (the caller shuts down).
pub fn log_failure(error: &anyhow::Error) {
    error!(error = %format!("{error:#}"), "The agent socket failed.");
}
