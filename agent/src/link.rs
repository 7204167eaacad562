//! The agent's link to its collector, as a state machine the event loop
//! drives without ever blocking: waiting to reconnect, connecting (name
//! resolution, TCP, the CURVE handshake: [`curvemon_zmtp::Connector`]), and
//! up. While it connects or waits, the loop goes on reading StatsD and
//! sampling.
//!
//! It speaks the newest protocol version and falls back to the
//! collector's: a collector that does not know this agent's version answers
//! its hello with `Reject(UnsupportedVersion)` naming its own, in its own
//! version; the link then speaks that version on this connection and says
//! so ([`Event::Downgraded`]), and the agent says hello again.
//!
//! Reconnecting: 250 ms after a connection that worked, doubling to 30 s
//! while attempts fail; each failure is logged with what to check, at error
//! level the first time and once a minute while it repeats.
//!
//! Failover: given several collectors, the link stays on the one it is
//! connected to as long as that works, and moves to the next in the list
//! when a connection fails, is refused, or goes stale (nothing heard for
//! `stale_after`); the next is tried at once, and the back-off grows only
//! after a whole round failed. It does not return to the first by itself
//! (a host that moves back and forth splits its history between two
//! collectors, and a collector that just came back is the likeliest to go
//! again): [`Link::return_to_first`] (SIGHUP) brings it back.

use std::{
    os::fd::BorrowedFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use curvemon_keys::{PublicKey, SecretCert};
use curvemon_protocol::{
    DecodeError, MAX_FRAME_BYTES, MIN_VERSION, Message, PROTOCOL_VERSION, RejectReason, codec,
};
use curvemon_zmtp::{Client, Connector, Keys, Options, Progress, ZmtpError};
use rustix::event::PollFlags;
use tracing::{debug, error, info, warn};

use crate::{
    backoff::{self, Backoff},
    session::Session,
};

/// The first retry after a connection that worked, and the longest wait
/// between failing attempts.
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// For the name lookup, TCP connect and CURVE handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of messages that may wait for a slow connection (beyond the
/// kernel's send buffer); past it, a send is refused.
const SEND_QUEUE: usize = 4 << 20;

/// What happened on the link, for the agent to act on.
#[derive(Debug)]
pub enum Event {
    /// The handshake completed: say hello.
    Connected,
    /// A message from the collector.
    Message(Box<Message>),
    /// The collector speaks an older version: say hello again in it.
    Downgraded {
        /// The version now spoken.
        version: u16,
    },
    /// The connection ended; the link waits before connecting again.
    Lost {
        /// Why, for the log.
        why: String,
    },
}

/// An established connection.
struct Up {
    client: Client,
    session: Session,
    version: u16,
}

enum State {
    Waiting { until: Instant },
    Connecting(Box<Connector>),
    Up(Box<Up>),
}

/// Who the agent is and which collector it trusts, to connect and to say
/// which file to check when that fails.
pub struct Identity {
    /// The agent's key pair.
    pub cert: SecretCert,
    /// The collector's public key.
    pub collector: PublicKey,
    /// Where the agent's keys are (for messages).
    pub keys_dir: PathBuf,
    /// The collector's key file (for messages).
    pub collector_key_file: PathBuf,
}

/// The link.
pub struct Link {
    endpoints: Vec<String>,
    /// Index in `endpoints` of the collector used now.
    current: usize,
    /// Failures since the last connection that worked (a whole round of
    /// them makes the back-off grow).
    failures: usize,
    identity: Identity,
    stale_after: Duration,
    state: State,
    backoff: Backoff,
    last_failure: Option<(String, Instant)>,
}

impl Link {
    /// A link that connects at once, to the first of `endpoints` (at
    /// least one).
    pub fn new(endpoints: Vec<String>, identity: Identity, stale_after: Duration) -> Link {
        assert!(!endpoints.is_empty(), "a link needs a collector");
        Link {
            endpoints,
            current: 0,
            failures: 0,
            identity,
            stale_after,
            state: State::Waiting { until: Instant::now() },
            backoff: Backoff::new(RECONNECT_BASE, RECONNECT_MAX),
            last_failure: None,
        }
    }

    /// The address of the collector used now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// After a failure: the next collector, at once unless a whole round
    /// has failed (then after `delay`).
    fn next_endpoint(&mut self, delay: Duration, now: Instant) -> Instant {
        self.failures += 1;
        if self.endpoints.len() == 1 {
            return now + delay;
        }
        let from = self.current;
        self.current = (self.current + 1) % self.endpoints.len();
        info!(from = %self.endpoints[from], to = %self.endpoints[self.current], "Failing over to the next collector.");
        if self.failures.is_multiple_of(self.endpoints.len()) { now + delay } else { now }
    }

    /// Goes back to the first collector (SIGHUP), saying `bye` to the
    /// current one, so it shows the host down at once with the reason.
    pub fn return_to_first(&mut self, bye: &Message, linger: Duration, now: Instant) {
        if self.current == 0 {
            info!(collector = %self.endpoint(), "Already on the first collector.");
            return;
        }
        info!(from = %self.endpoint(), to = %self.endpoints[0], "Returning to the first collector.");
        if self.is_up() {
            self.send(bye);
        }
        if let State::Up(up) = &mut self.state {
            up.client.linger(now + linger);
        }
        self.current = 0;
        self.failures = 0;
        self.backoff.reset();
        self.state = State::Waiting { until: now };
    }

    /// Whether a connection is up.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_))
    }

    /// The version spoken on the connection that is up.
    pub fn version(&self) -> Option<u16> {
        match &self.state {
            State::Up(up) => Some(up.version),
            _ => None,
        }
    }

    /// The connection's pure decisions (model requests, staleness).
    pub fn session(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Up(up) => Some(&mut up.session),
            _ => None,
        }
    }

    /// The descriptor to poll and for what, if any.
    pub fn poll_item(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        match &self.state {
            State::Waiting { .. } => None,
            State::Connecting(c) => Some((c.fd(), c.interest())),
            State::Up(up) => {
                let flags = if up.client.wants_write() {
                    PollFlags::IN | PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                Some((up.client.fd(), flags))
            }
        }
    }

    /// When [`Link::advance`] must run next even if nothing is readable.
    pub fn deadline(&self) -> Instant {
        match &self.state {
            State::Waiting { until } => *until,
            State::Connecting(c) => c.deadline(),
            State::Up(up) => up.session.next_deadline(),
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            public: *self.identity.cert.pair.public.as_bytes(),
            secret: zeroize::Zeroizing::new(*self.identity.cert.pair.secret.as_bytes()),
            server: *self.identity.collector.as_bytes(),
        }
    }

    /// Does what is due: starts or moves on a connection, reads what
    /// arrived, notices a stale or broken connection.
    pub fn advance(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        match &mut self.state {
            State::Waiting { until } => {
                if now < *until {
                    return events;
                }
                let options = Options {
                    timeout: HANDSHAKE_TIMEOUT,
                    interrupt: None,
                    max_message: MAX_FRAME_BYTES,
                    send_queue: SEND_QUEUE,
                };
                match Connector::start(&self.endpoints[self.current], self.keys(), &options) {
                    Ok(connector) => self.state = State::Connecting(Box::new(connector)),
                    Err(error) => self.failed(&error, now),
                }
                // A numeric address may connect at once: try right away.
                if matches!(self.state, State::Connecting(_)) {
                    events.extend(self.advance(now));
                }
            }
            State::Connecting(connector) => match connector.advance() {
                Ok(Progress::Done(client)) => {
                    debug!(collector = %client.peer(), "CURVE handshake done.");
                    let mut session = Session::new(now, self.stale_after);
                    session.connection_established();
                    self.last_failure = None;
                    self.failures = 0;
                    self.state =
                        State::Up(Box::new(Up { client, session, version: PROTOCOL_VERSION }));
                    events.push(Event::Connected);
                }
                Ok(Progress::Pending) if now >= connector.deadline() => {
                    let error = ZmtpError::Timeout(connector.waiting_for());
                    self.failed(&error, now);
                }
                Ok(Progress::Pending) => {}
                Err(error) => self.failed(&error, now),
            },
            State::Up(up) => {
                let result = Self::pump(up, now, &mut events);
                let stale = up.session.is_stale(now);
                let healthy = up.session.heard_any();
                let why = match result {
                    Err(error) => Some(format!("lost the connection: {error}")),
                    Ok(()) if stale => Some(format!(
                        "nothing heard from the collector for {}",
                        humantime::format_duration(self.stale_after)
                    )),
                    Ok(()) => None,
                };
                if let Some(why) = why {
                    self.lost(why, healthy, now, &mut events);
                }
            }
        }
        events
    }

    /// Writes what is queued and reads what arrived.
    fn pump(up: &mut Up, now: Instant, events: &mut Vec<Event>) -> Result<(), ZmtpError> {
        up.client.flush()?;
        while let Some(frame) = up.client.receive()? {
            let message = match codec::decode(&frame) {
                Ok(message) => message,
                Err(DecodeError::UnsupportedVersion { theirs, ours }) => {
                    error!(
                        collector_version = theirs,
                        agent_version = ours,
                        "The collector speaks a newer protocol version than this agent; upgrade the agent."
                    );
                    continue;
                }
                Err(error) => {
                    warn!(%error, bytes = frame.len(), "Ignoring a malformed frame from the collector.");
                    continue;
                }
            };
            up.session.heard(now);
            if let Message::Reject(reject) = &message
                && let RejectReason::UnsupportedVersion { collector, .. } = reject.reason
            {
                if collector == up.version {
                    // It answers a frame sent before the fall-back.
                    debug!(collector_version = collector, "A version reject already acted on.");
                    continue;
                }
                if (MIN_VERSION..up.version).contains(&collector) {
                    warn!(
                        collector_version = collector,
                        agent_version = up.version,
                        "The collector speaks an older protocol version; using it on this \
                             connection (application metrics are not sent to it)."
                    );
                    up.version = collector;
                    events.push(Event::Downgraded { version: collector });
                    continue;
                }
            }
            events.push(Event::Message(Box::new(message)));
        }
        Ok(())
    }

    fn lost(&mut self, why: String, healthy: bool, now: Instant, events: &mut Vec<Event>) {
        if healthy {
            self.backoff.reset();
        }
        let delay = self.backoff.next(backoff::jitter());
        debug!(?delay, "Waiting before connecting again.");
        let until = self.next_endpoint(delay, now);
        self.state = State::Waiting { until };
        events.push(Event::Lost { why });
    }

    /// Drops the connection now (the collector rejected this agent).
    pub fn reconnect(&mut self, why: String, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        self.lost(why, false, now, &mut events);
        events
    }

    fn failed(&mut self, error: &ZmtpError, now: Instant) {
        let message = self.describe(error);
        let repeat = self.last_failure.as_ref().is_some_and(|(last, at)| {
            *last == message && now.duration_since(*at) < Duration::from_secs(60)
        });
        if repeat {
            debug!(%message, "Link failure (repeat).");
        } else {
            error!("Link failure: {message}.");
            self.last_failure = Some((message, now));
        }
        let delay = self.backoff.next(backoff::jitter());
        debug!(?delay, "Waiting before connecting again.");
        let until = self.next_endpoint(delay, now);
        self.state = State::Waiting { until };
    }

    /// Words for a failed connection that say what to check.
    fn describe(&self, error: &ZmtpError) -> String {
        let endpoint = self.endpoint();
        let key_file = self.identity.collector_key_file.display();
        match error {
            ZmtpError::Refused(status) => format!(
                "the collector refused this agent's key {} (ZAP status {status}); add {} to the \
                 collector's authorized_agents/ directory",
                self.identity.cert.pair.public,
                self.identity.keys_dir.join("agent.key").display()
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

    /// Sends `message` in the connection's version; false when it was not
    /// (the link is down, the send queue is full, or the version lacks it).
    pub fn send(&mut self, message: &Message) -> bool {
        let State::Up(up) = &mut self.state else { return false };
        if message.since() > up.version {
            return false;
        }
        match up.client.send(&codec::encode_with_version(message, up.version)) {
            Ok(sent) => sent,
            Err(error) => {
                // The next advance finds the connection broken.
                debug!(%error, kind = message.kind(), "Sending to the collector failed.");
                false
            }
        }
    }

    /// Gives queued messages up to `linger` to leave, then closes.
    pub fn close(&mut self, linger: Duration) {
        if let State::Up(up) = &mut self.state {
            up.client.linger(Instant::now() + linger);
        }
        self.state = State::Waiting { until: Instant::now() + RECONNECT_MAX };
    }
}
