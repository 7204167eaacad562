//! The agent's event loop: one CURVE connection to the collector and the
//! signal descriptor, polled together on one thread.
//!
//! A link is one [`Client`] (ZMTP 3.1 with CURVE, in Rust: see the zmtp
//! crate for why not libzmq). Each completed handshake is followed by a
//! hello, so a restarted collector learns about the agent at once. When the
//! connection drops, or the collector has been silent for the stale window
//! (a half-open TCP connection looks like that), the agent reconnects after
//! a backoff: 250 ms after a connection that worked, doubling to 30 s while
//! attempts fail.
//!
//! Shutdown: SIGTERM or SIGINT, also in the middle of a connect or a
//! handshake → a `Bye` is sent, the socket lingers at most [`BYE_LINGER`]
//! to deliver it, and the connection closes.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use curvemon_keys::{PublicKey, SecretCert, cert};
use curvemon_protocol::{Bye, DecodeError, Hello, MAX_FRAME_BYTES, Message, Metrics, codec};
use curvemon_zmtp::{Client, Keys, Options, ZmtpError};
use rustix::event::{PollFd, PollFlags, Timespec};
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

/// The first retry after a connection that worked, and the longest wait
/// between failing attempts.
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// For the TCP connect and the CURVE handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of messages that may wait for a slow connection (beyond the
/// kernel's send buffer); past it, samples are dropped and counted.
const SEND_QUEUE: usize = 4 << 20;

/// Runs the agent until SIGTERM or SIGINT.
///
/// # Errors
/// Set-up problems only (keys, unreadable `/proc`); once running, network
/// trouble is logged and retried, never returned.
pub fn run(config: Config, signals: &Signals) -> anyhow::Result<()> {
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

    let sampler = Sampler::new(collectors::build(&config.collectors, &config.options))
        .with_cadence(|name| collectors::every(name, &config.options, config.interval));
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
        broken: None,
    };
    let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_MAX);
    loop {
        match agent.connect(signals) {
            Ok(mut link) => {
                info!(collector = %link.peer(), "Connected to the collector (CURVE handshake done).");
                agent.last_failure = None;
                match agent.serve(&mut link, signals)? {
                    Outcome::Shutdown(reason) => {
                        info!(reason, "Shutting down.");
                        agent.send(&mut link, &Message::Bye(Bye { reason }));
                        link.linger(Instant::now() + BYE_LINGER);
                        return Ok(());
                    }
                    Outcome::Reconnect { why, healthy } => {
                        if healthy {
                            backoff.reset();
                        }
                        warn!(why, "Reconnecting to the collector.");
                    }
                }
            }
            Err(ZmtpError::Interrupted) => {}
            Err(error) => {
                let message = agent.describe(&error);
                agent.link_failure(message);
            }
        }
        if let Some(reason) = signals.received() {
            info!(reason, "Shutting down.");
            return Ok(());
        }
        let delay = backoff.next(backoff::jitter());
        debug!(?delay, "Waiting before connecting again.");
        if let Some(reason) = wait_for_signal(signals, delay)? {
            info!(reason, "Shutting down.");
            return Ok(());
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
    /// Messages dropped because the send queue was full.
    dropped: u64,
    /// The last link failure logged, to log repeats quietly.
    last_failure: Option<(String, Instant)>,
    /// Why the current connection failed while sending, if it did.
    broken: Option<ZmtpError>,
}

impl Agent {
    /// Connects and completes the handshake; a signal interrupts it.
    fn connect(&self, signals: &Signals) -> Result<Client, ZmtpError> {
        let keys = Keys {
            public: *self.identity.pair.public.as_bytes(),
            secret: zeroize::Zeroizing::new(*self.identity.pair.secret.as_bytes()),
            server: *self.collector_key.as_bytes(),
        };
        let options = Options {
            timeout: HANDSHAKE_TIMEOUT,
            interrupt: Some(signals.borrow_fd()),
            max_message: MAX_FRAME_BYTES,
            send_queue: SEND_QUEUE,
        };
        Client::connect(&self.config.endpoint, keys, &options)
    }

    /// Words for a failed connection that say what to check.
    fn describe(&self, error: &ZmtpError) -> String {
        let endpoint = &self.config.endpoint;
        let key_file = self.config.collector_key.display();
        match error {
            ZmtpError::Refused(status) => format!(
                "the collector refused this agent's key {} (ZAP status {status}); add {} to the \
                 collector's authorized_agents/ directory",
                self.identity.pair.public,
                self.config.keys_dir.join("agent.key").display()
            ),
            ZmtpError::Closed(_) | ZmtpError::Crypto(_) => format!(
                "CURVE handshake with {endpoint} failed: {error}; check that {key_file} holds \
                 this collector's public key (or the collector refused this agent)"
            ),
            ZmtpError::NotZmtp | ZmtpError::Mechanism(_) | ZmtpError::Protocol(_) => {
                format!("{endpoint} is not a curvemon collector: {error}")
            }
            _ => format!("{endpoint}: {error}"),
        }
    }

    fn serve(&mut self, link: &mut Client, signals: &Signals) -> anyhow::Result<Outcome> {
        let mut session = Session::new(Instant::now(), self.config.stale_after);
        session.connection_established();
        let hello = Message::Hello(Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: self.config.name.clone(),
            machine_id: self.facts.machine_id.clone(),
            boot_id: self.facts.boot_id.clone(),
            interval_ms: self.interval_ms,
        });
        self.send(link, &hello);
        let mut next_sample = Instant::now();
        let mut model_revision_sent: Option<u64> = None;
        loop {
            if let Some(error) = self.broken.take() {
                return Ok(Outcome::Reconnect {
                    why: format!("lost the connection: {error}"),
                    healthy: session.heard_any(),
                });
            }
            let now = Instant::now();
            let wake = session.next_deadline().min(next_sample);
            let timeout = wake.saturating_duration_since(now).min(Duration::from_secs(1));
            let socket_events =
                if link.wants_write() { PollFlags::IN | PollFlags::OUT } else { PollFlags::IN };
            let mut items = [
                PollFd::from_borrowed_fd(link.fd(), socket_events),
                PollFd::from_borrowed_fd(signals.borrow_fd(), PollFlags::IN),
            ];
            poll(&mut items, timeout.max(Duration::from_millis(1)))
                .context("polling the collector socket")?;
            if let Some(reason) = signals.received() {
                return Ok(Outcome::Shutdown(reason.to_string()));
            }
            if let Err(error) = link.flush() {
                self.broken = Some(error);
                continue;
            }
            loop {
                let frame = match link.receive() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        self.broken = Some(error);
                        break;
                    }
                };
                if let Some(outcome) = self.on_frame(&frame, &mut session) {
                    return Ok(outcome);
                }
            }
            if self.broken.is_some() {
                continue;
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

    /// Logs a link failure at error level the first time, and repeats of the
    /// same failure once a minute, so a misconfigured agent does not flood
    /// the journal while it retries.
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

    /// Sends one message; false when it was dropped (queue full) or the
    /// connection failed (noted in `broken` for the loop).
    fn send(&mut self, link: &mut Client, message: &Message) -> bool {
        match link.send(&codec::encode(message)) {
            Ok(sent) => sent,
            Err(error) => {
                debug!(%error, kind = message.kind(), "Sending to the collector failed.");
                self.broken.get_or_insert(error);
                false
            }
        }
    }

    fn send_model(
        &mut self,
        link: &mut Client,
        session: &mut Session,
        now: Instant,
    ) -> Option<u64> {
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
        if self.send(link, &Message::Model(model)) {
            debug!(revision, "Sent the model.");
            Some(revision)
        } else {
            None
        }
    }

    fn send_metrics(&mut self, link: &mut Client) {
        let Some(sample) = &self.last_sample else { return };
        self.seq += 1;
        let metrics = Message::Metrics(Metrics {
            seq: self.seq,
            taken_at_ms: unix_ms(),
            schema_revision: sample.revision,
            values: sample.values.clone(),
        });
        if !self.send(link, &metrics) {
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
        let mut items = [PollFd::from_borrowed_fd(signals.borrow_fd(), PollFlags::IN)];
        poll(&mut items, left).context("waiting before reconnecting")?;
    }
}

/// Waits up to `timeout` for any of `items`; a signal arriving (EINTR) is
/// a normal wake-up, which the caller checks for.
fn poll(items: &mut [PollFd<'_>], timeout: Duration) -> rustix::io::Result<()> {
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
    match rustix::event::poll(items, Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e),
    }
}
