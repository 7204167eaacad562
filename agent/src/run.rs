//! The agent's event loop: one DEALER socket to the collector, its monitor
//! socket and the signal descriptor, polled together.
//!
//! A link is one DEALER socket. libzmq reconnects it by itself when TCP
//! drops (the collector restarted), and every completed CURVE handshake makes
//! the agent say hello again, so a restarted collector learns about it at
//! once. When the collector has been silent for the stale window, the agent
//! closes the socket and opens a new one after a backoff: that also recovers
//! from half-open TCP connections that libzmq cannot see.
//!
//! Shutdown: SIGTERM or SIGINT → a `Bye` is queued, the socket lingers at
//! most [`BYE_LINGER`] to deliver it, sockets close, then the context.

use std::{
    cell::Cell,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use curvemon_keys::{PublicKey, SecretCert, cert};
use curvemon_link::{Event, EventKind};
use curvemon_protocol::{Bye, DecodeError, Hello, MAX_FRAME_BYTES, Message, Metrics, codec};
use tracing::{debug, error, info, warn};

use crate::{
    backoff::{self, Backoff},
    collectors,
    config::Config,
    model::{self, HostFacts},
    roots::Roots,
    sampler::{Sample, Sampler},
    session::Session,
    signals::Signals,
};

/// How long the socket may keep trying to deliver `Bye` on shutdown.
pub const BYE_LINGER: Duration = Duration::from_secs(1);

/// libzmq's own reconnect interval, doubling up to [`RECONNECT_MAX`]; kept
/// short so that an agent is back within seconds of a collector restart.
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Runs the agent until SIGTERM or SIGINT.
///
/// # Errors
/// Set-up problems only (keys, libzmq without CURVE, unreadable `/proc`);
/// once running, network trouble is logged and retried, never returned.
pub fn run(config: Config, signals: &Signals) -> anyhow::Result<()> {
    curvemon_link::require_curve()?;
    let secret_path = config.keys_dir.join("agent.key_secret");
    let identity = cert::read_secret(&secret_path).with_context(|| {
        format!(
            "cannot load this agent's key; generate it with `agent keygen --keys {}`",
            config.keys_dir.display()
        )
    })?;
    let collector_key = cert::read_public(&config.collector_key)
        .with_context(|| {
            format!(
                "cannot load the collector's public key; copy the collector's collector.key to {} \
                 or pass --collector-key FILE",
                config.collector_key.display()
            )
        })?
        .public;
    let root = Roots::new(&config.proc_root).with_sys(&config.sys_root).with_rootfs(&config.rootfs);
    let facts = model::read_facts(&root, &config.etc_root)
        .with_context(|| format!("cannot read host facts under {}", config.proc_root.display()))?;
    info!(
        collector = %config.endpoint,
        name = %config.name,
        agent_key = %identity.pair.public,
        collector_key = %collector_key,
        interval = ?config.interval,
        collectors = %config.collectors.join(","),
        "Starting agent."
    );

    let sampler = Sampler::new(collectors::build(&config.collectors, &config.options));
    let ctx = zmq::Context::new();
    let mut agent = Agent {
        interval_ms: u32::try_from(config.interval.as_millis()).unwrap_or(u32::MAX),
        config,
        identity,
        collector_key,
        root,
        facts,
        sampler,
        last_sample: None,
        seq: 0,
        dropped: 0,
        last_failure: None,
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut generation = 0u64;
    loop {
        generation += 1;
        let link = Link::open(&ctx, &agent, generation)?;
        match agent.serve(&link, signals)? {
            Outcome::Shutdown(reason) => {
                info!(reason, "Shutting down.");
                link.send_bye(&reason, agent.seq);
                return Ok(());
            }
            Outcome::Reconnect { why, healthy } => {
                drop(link);
                if healthy {
                    backoff.reset();
                }
                let delay = backoff.next(backoff::jitter());
                warn!(why, delay = ?delay, "Reconnecting to the collector.");
                if let Some(reason) = wait_for_signal(signals, delay)? {
                    info!(reason, "Shutting down.");
                    return Ok(());
                }
            }
        }
    }
}

/// Why [`Agent::serve`] returned.
enum Outcome {
    Shutdown(String),
    Reconnect { why: String, healthy: bool },
}

struct Agent {
    config: Config,
    identity: SecretCert,
    collector_key: PublicKey,
    root: Roots,
    facts: HostFacts,
    sampler: Sampler,
    interval_ms: u32,
    last_sample: Option<Sample>,
    /// Sequence number of the last metrics message; continues across links.
    seq: u64,
    /// Messages dropped because the socket's send queue was full.
    dropped: u64,
    /// The last link failure logged, to log repeats quietly.
    last_failure: Option<(String, Instant)>,
}

/// One DEALER socket and its monitor.
struct Link {
    dealer: zmq::Socket,
    monitor: zmq::Socket,
    /// Whether the current TCP connection finished its handshake.
    handshake_done: Cell<bool>,
    /// Whether a handshake failure was logged for the current connection.
    failure_reported: Cell<bool>,
}

impl Link {
    fn open(ctx: &zmq::Context, agent: &Agent, generation: u64) -> anyhow::Result<Self> {
        let dealer = ctx.socket(zmq::DEALER).context("creating the DEALER socket")?;
        curvemon_link::apply_client(&dealer, &agent.identity.pair, &agent.collector_key)?;
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        dealer.set_linger(0)?;
        dealer.set_reconnect_ivl(ms(RECONNECT_BASE))?;
        dealer.set_reconnect_ivl_max(ms(RECONNECT_MAX))?;
        dealer.set_handshake_ivl(10_000)?;
        dealer.set_maxmsgsize(MAX_FRAME_BYTES as i64)?;
        dealer.set_sndhwm(1000)?;
        let monitor = curvemon_link::attach_monitor(ctx, &dealer, &format!("agent-{generation}"))?;
        dealer
            .connect(&agent.config.endpoint)
            .with_context(|| format!("connecting to {}", agent.config.endpoint))?;
        Ok(Link {
            dealer,
            monitor,
            handshake_done: Cell::new(false),
            failure_reported: Cell::new(false),
        })
    }

    /// Sends without blocking; returns false if the frame was dropped.
    fn send(&self, message: &Message) -> bool {
        match self.dealer.send(codec::encode(message), zmq::DONTWAIT) {
            Ok(()) => true,
            Err(zmq::Error::EAGAIN) => false,
            Err(error) => {
                warn!(%error, kind = message.kind(), "Sending to the collector failed.");
                false
            }
        }
    }

    fn send_bye(&self, reason: &str, seq: u64) {
        let _ = self.dealer.set_linger(i32::try_from(BYE_LINGER.as_millis()).unwrap_or(1000));
        if self.send(&Message::Bye(Bye { reason: reason.to_string() })) {
            debug!(seq, "Sent bye.");
        }
    }
}

impl Agent {
    fn serve(&mut self, link: &Link, signals: &Signals) -> anyhow::Result<Outcome> {
        let mut session = Session::new(Instant::now(), self.config.stale_after);
        let mut next_sample = Instant::now();
        let mut model_revision_sent: Option<u64> = None;
        loop {
            let now = Instant::now();
            let wake = session.next_deadline().min(next_sample);
            let timeout = wake.saturating_duration_since(now).min(Duration::from_secs(1));
            let mut items = [
                link.dealer.as_poll_item(zmq::POLLIN),
                link.monitor.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(signals.fd(), zmq::POLLIN),
            ];
            match zmq::poll(&mut items, i64::try_from(timeout.as_millis()).unwrap_or(1000).max(1)) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e).context("polling the collector socket"),
            }
            if let Some(reason) = signals.received() {
                return Ok(Outcome::Shutdown(reason.to_string()));
            }
            while let Some(event) = curvemon_link::read_event(&link.monitor)? {
                self.on_event(&event, link, &mut session);
            }
            loop {
                let frame = match link.dealer.recv_bytes(zmq::DONTWAIT) {
                    Ok(frame) => frame,
                    Err(zmq::Error::EAGAIN) => break,
                    Err(e) => return Err(e).context("receiving from the collector"),
                };
                if let Some(outcome) = self.on_frame(&frame, &mut session) {
                    return Ok(outcome);
                }
            }
            let now = Instant::now();
            if now >= next_sample {
                let sample = self.sampler.sample(&self.root);
                // A changed schema (a new disk, a failed collector) goes out
                // unasked, so the collector does not drop values meanwhile.
                if model_revision_sent.is_some_and(|r| r != sample.revision) {
                    session.schema_changed();
                }
                self.last_sample = Some(sample);
                if session.model_due(now) {
                    model_revision_sent = self.send_model(link, &mut session, now);
                }
                self.send_metrics(link);
                next_sample += self.config.interval;
                if next_sample < now {
                    // Slept through whole intervals (suspend): skip them.
                    next_sample = now + self.config.interval;
                }
            } else if session.model_due(now) {
                model_revision_sent = self.send_model(link, &mut session, now);
            }
            if session.is_stale(now) {
                return Ok(Outcome::Reconnect {
                    why: format!(
                        "nothing heard from the collector for {}",
                        humantime::format_duration(self.config.stale_after)
                    ),
                    healthy: session.heard_any(),
                });
            }
        }
    }

    fn on_frame(&mut self, frame: &[u8], session: &mut Session) -> Option<Outcome> {
        let message = match codec::decode(frame) {
            Ok(message) => message,
            Err(DecodeError::UnsupportedVersion { theirs, ours }) => {
                error!(
                    collector_version = theirs,
                    agent_version = ours,
                    "The collector speaks another protocol version; upgrade the older side."
                );
                return None;
            }
            Err(error) => {
                warn!(%error, bytes = frame.len(), "Ignoring a malformed frame from the collector.");
                return None;
            }
        };
        session.heard(Instant::now());
        match message {
            Message::ModelRequest => {
                debug!("Collector asked for the model.");
                session.model_requested();
            }
            Message::Ping(ping) => {
                let skew_ms = unix_ms().abs_diff(ping.sent_at_ms);
                if skew_ms > 60_000 {
                    warn!(skew_ms, "Clock differs from the collector's by more than a minute.");
                }
                debug!("Ping from the collector.");
            }
            Message::Reject(reject) => {
                error!(reason = ?reject.reason, detail = %reject.detail, "The collector rejected this agent.");
                return Some(Outcome::Reconnect {
                    why: format!("rejected: {}", reject.detail),
                    healthy: false,
                });
            }
            other => {
                warn!(kind = other.kind(), "Ignoring a message the collector should not send.");
            }
        }
        None
    }

    fn on_event(&mut self, event: &Event, link: &Link, session: &mut Session) {
        match event.kind {
            EventKind::HandshakeSucceeded => {
                link.handshake_done.set(true);
                session.connection_established();
                self.last_failure = None;
                info!(collector = %event.endpoint, "Connected to the collector (CURVE handshake done).");
                let hello = Message::Hello(Hello {
                    agent_version: env!("CARGO_PKG_VERSION").to_string(),
                    hostname: self.config.name.clone(),
                    machine_id: self.facts.machine_id.clone(),
                    boot_id: self.facts.boot_id.clone(),
                    interval_ms: self.interval_ms,
                });
                link.send(&hello);
            }
            EventKind::HandshakeFailedAuth => {
                link.failure_reported.set(true);
                self.link_failure(format!(
                    "the collector refused this agent's key {} (ZAP status {}); add {} to the \
                     collector's authorized_agents/ directory",
                    self.identity.pair.public,
                    event.value,
                    self.config.keys_dir.join("agent.key").display()
                ));
            }
            EventKind::HandshakeFailedProtocol | EventKind::HandshakeFailedNoDetail => {
                link.failure_reported.set(true);
                self.link_failure(format!(
                    "CURVE handshake with {} failed: {}; check that {} holds this collector's \
                     public key",
                    event.endpoint,
                    event.describe(),
                    self.config.collector_key.display()
                ));
            }
            // The failure event above already said why; this is its echo.
            EventKind::Disconnected if link.failure_reported.replace(false) => {}
            EventKind::Disconnected if !link.handshake_done.get() => self.link_failure(format!(
                "{} closed the connection during the CURVE handshake: {} is probably not this \
                 collector's public key (or the collector refused this agent)",
                event.endpoint,
                self.config.collector_key.display()
            )),
            EventKind::Disconnected => {
                link.handshake_done.set(false);
                warn!(collector = %event.endpoint, "Lost the connection to the collector; libzmq reconnects.");
            }
            EventKind::Connected => debug!(collector = %event.endpoint, "TCP connected."),
            EventKind::ConnectRetried => debug!(collector = %event.endpoint, "Connect retried."),
            EventKind::Accepted | EventKind::Other(_) => {}
        }
    }

    /// Logs a link failure at error level the first time, and repeats of the
    /// same failure once a minute, so a misconfigured agent does not flood
    /// the journal while libzmq retries.
    fn link_failure(&mut self, message: String) {
        let now = Instant::now();
        let repeat = self.last_failure.as_ref().is_some_and(|(last, at)| {
            *last == message && now.duration_since(*at) < Duration::from_secs(60)
        });
        if repeat {
            debug!(%message, "Link failure (repeat).");
        } else {
            error!("Link failure: {message}.");
            self.last_failure = Some((message, now));
        }
    }

    fn send_model(&mut self, link: &Link, session: &mut Session, now: Instant) -> Option<u64> {
        let sample = match &self.last_sample {
            Some(sample) => sample,
            None => self.last_sample.insert(self.sampler.sample(&self.root)),
        };
        let revision = sample.revision;
        if let Ok(facts) = model::read_facts(&self.root, &self.config.etc_root) {
            self.facts = facts;
        }
        let model =
            model::build(self.facts.clone(), &self.config.name, self.interval_ms, sample.schema());
        session.model_sent(now);
        if link.send(&Message::Model(model)) {
            debug!(revision, "Sent the model.");
            Some(revision)
        } else {
            None
        }
    }

    fn send_metrics(&mut self, link: &Link) {
        let Some(sample) = &self.last_sample else { return };
        self.seq += 1;
        let metrics = Message::Metrics(Metrics {
            seq: self.seq,
            taken_at_ms: unix_ms(),
            schema_revision: sample.revision,
            values: sample.values.clone(),
        });
        if !link.send(&metrics) {
            self.dropped += 1;
            debug!(seq = self.seq, dropped = self.dropped, "Send queue full; dropped a sample.");
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Sleeps for `delay` unless a signal arrives first.
fn wait_for_signal(signals: &Signals, delay: Duration) -> anyhow::Result<Option<&'static str>> {
    let deadline = Instant::now() + delay;
    loop {
        if let Some(reason) = signals.received() {
            return Ok(Some(reason));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut items = [zmq::PollItem::from_fd(signals.fd(), zmq::POLLIN)];
        match zmq::poll(&mut items, i64::try_from(left.as_millis()).unwrap_or(1000).max(1)) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e).context("waiting before reconnecting"),
        }
    }
}
