//! The agent's event loop: one thread polls the signal descriptor, the
//! link to the collector, the StatsD sockets and the wake descriptors of
//! the scrape worker and the checks together, samples on its interval, and
//! starts check runs when they are due.
//!
//! Nothing in the loop blocks: the link connects as a state machine
//! ([`crate::link`]), StatsD sockets are read in bounded batches, and
//! scrapes run on their own thread. So StatsD is read while the collector
//! is slow or away, and a signal is noticed at once.
//!
//! Each completed handshake is followed by a hello, so a restarted
//! collector learns about the agent at once; in version 2 every
//! application series and in version 3 every check follow it, and the
//! model follows when the collector asks.
//!
//! Shutdown: SIGTERM or SIGINT → a `Bye` is sent if connected, the socket
//! lingers at most [`BYE_LINGER`] to deliver it, the StatsD socket files
//! are removed, and the process exits.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use curvemon_keys::cert;
use curvemon_notify::Notifier;
use curvemon_protocol::{
    AppPoint, AppSeries, Bye, CheckResult, CheckResults, Hello, HostValues, MAX_FRAME_BYTES,
    Message, Metrics, Resume, Sample as SampleMessage,
};
use rustix::event::{PollFd, PollFlags, Timespec};
use tracing::{debug, error, info, warn};

use crate::{
    apps::Drop,
    checks::Checker,
    collectors,
    config::Config,
    delivery::Delivery,
    link::{Event, Identity, Link},
    model::{self, HostFacts},
    roots::Roots,
    sampler::{Sample, Sampler},
    signals::Signals,
    sources::Sources,
    spool::Spool,
};

/// How long the socket may keep trying to deliver `Bye` on shutdown.
pub const BYE_LINGER: Duration = Duration::from_secs(1);

/// Application series declared per message: a full declaration of
/// thousands of series travels in several frames, each well under the
/// frame limit.
const DECLARATIONS_PER_MESSAGE: usize = 2_000;

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
        collectors = %config.endpoints.join(","),
        name = %config.name,
        agent_key = %identity.pair.public,
        collector_key = %collector_key,
        interval = ?config.interval,
        collectors = %config.collectors.join(","),
        "Starting agent."
    );
    let link = Link::new(
        config.endpoints.clone(),
        Identity {
            cert: identity,
            collector: collector_key,
            keys_dir: config.keys_dir.clone(),
            collector_key_file: config.collector_key.clone(),
        },
        config.stale_after,
    );
    let sampler = Sampler::new(collectors::build(&config.collectors, &config.options))
        .with_cadence(|name| collectors::every(name, &config.options, config.interval));
    let sources = Sources::open(&config.options.sources, &root);
    let spool = Spool::open(config.spool.clone())?;
    let checker = if config.options.checks.is_empty() {
        None
    } else {
        info!(checks = config.options.checks.len(), "Running availability checks.");
        Some(Checker::new(config.options.checks.clone()).context("starting the checks")?)
    };
    let mut agent = Agent {
        notifier: Notifier::from_env(),
        spool,
        delivery: Delivery::new(Instant::now()),
        gaps_sent: std::collections::HashSet::new(),
        checker,
        pending_checks: Vec::new(),
        interval_ms: u32::try_from(config.interval.as_millis()).unwrap_or(u32::MAX),
        config,
        root,
        facts,
        sampler,
        sources,
        link,
        last_sample: None,
        dropped: 0,
        model_revision_sent: None,
        told_old_collector: false,
        told_old_collector_checks: false,
    };
    // Keys, config and the spool are loaded: systemd may count the agent
    // started (Type=notify); connecting is its work from here on.
    let status = agent.status_line();
    agent.notifier.ready(&status, Instant::now());
    let result = agent.serve(signals);
    agent.notifier.stopping("stopping");
    agent.sources.close();
    agent.spool.close();
    result
}

struct Agent {
    /// READY, STATUS and the watchdog for systemd, fed by this loop.
    notifier: Notifier,
    /// Every sample until the collector has stored it.
    spool: Spool,
    /// This connection's part of acknowledged delivery.
    delivery: Delivery,
    /// The spool's gaps sent on this connection (epoch, from, to).
    gaps_sent: std::collections::HashSet<(u64, u64, u64)>,
    /// Availability checks, if any are configured.
    checker: Option<Checker>,
    /// Check results not yet sent (the link is down): the latest per check.
    pending_checks: Vec<CheckResult>,
    config: Config,
    root: Roots,
    facts: HostFacts,
    sampler: Sampler,
    sources: Sources,
    link: Link,
    interval_ms: u32,
    last_sample: Option<Sample>,
    /// Live samples the link refused (queue full; the spool keeps them).
    dropped: u64,
    /// The schema revision of the model sent on this connection.
    model_revision_sent: Option<u64>,
    /// Whether this connection's lack of application support was logged.
    told_old_collector: bool,
    /// The same for checks.
    told_old_collector_checks: bool,
}

impl Agent {
    fn serve(&mut self, signals: &Signals) -> anyhow::Result<()> {
        let mut next_sample = Instant::now();
        loop {
            let now = Instant::now();
            let link_deadline = self.link.deadline();
            let mut wake = next_sample.min(link_deadline);
            if let Some(due) = self.checker.as_ref().and_then(Checker::next_due) {
                wake = wake.min(due);
            }
            let mut timeout = wake.saturating_duration_since(now).min(Duration::from_secs(1));
            if let Some(every) = self.notifier.watchdog_interval() {
                timeout = timeout.min(every);
            }
            let (link_ready, checks_ready, sources_ready) = {
                let link_item = self.link.poll_item();
                let has_link = link_item.is_some();
                let has_checks = self.checker.is_some();
                let mut items = vec![PollFd::from_borrowed_fd(signals.borrow_fd(), PollFlags::IN)];
                items.extend(link_item.map(|(fd, flags)| PollFd::from_borrowed_fd(fd, flags)));
                items.extend(
                    self.checker.as_ref().map(|c| PollFd::from_borrowed_fd(c.fd(), PollFlags::IN)),
                );
                items.extend(
                    self.sources
                        .fds()
                        .into_iter()
                        .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)),
                );
                poll(&mut items, timeout.max(Duration::from_millis(1)))
                    .context("polling the agent's sockets")?;
                let link_ready = has_link && !items[1].revents().is_empty();
                let checks_at = 1 + usize::from(has_link);
                let checks_ready = has_checks && !items[checks_at].revents().is_empty();
                let skip = checks_at + usize::from(has_checks);
                let sources: Vec<bool> =
                    items[skip..].iter().map(|i| !i.revents().is_empty()).collect();
                (link_ready, checks_ready, sources)
            };
            if let Some(reason) = signals.received() {
                info!(reason, "Shutting down.");
                if self.link.is_up() {
                    self.link.send(&Message::Bye(Bye { reason: reason.to_string() }));
                    self.link.close(BYE_LINGER);
                }
                return Ok(());
            }
            let now = Instant::now();
            // The loop turned: tell systemd's watchdog. A wedged loop stops
            // these and is restarted (WatchdogSec= in the unit).
            self.notifier.watchdog(now);
            if signals.take_hup() {
                let bye =
                    Message::Bye(Bye { reason: "moved to another collector (SIGHUP)".into() });
                self.link.return_to_first(&bye, BYE_LINGER, now);
            }
            if sources_ready.iter().any(|r| *r) {
                self.sources.read(&sources_ready, now);
            }
            if link_ready || now >= link_deadline {
                for event in self.link.advance(now) {
                    self.on_event(event, now);
                }
            }
            self.spool.tick(now);
            self.backfill(now);
            if let Some(checker) = &mut self.checker {
                checker.start_due(now);
                if checks_ready {
                    let results = checker.take();
                    self.report_checks(results);
                }
            }
            if now >= next_sample {
                self.sample(now);
                self.report_status();
                next_sample += self.config.interval;
                if next_sample < now {
                    // Slept through whole intervals (suspend): skip them.
                    next_sample = now + self.config.interval;
                }
            }
            self.send_model_if_due(now);
        }
    }

    /// Tells systemd the status line, when it listens (the line counts
    /// the spool: not worth doing for nobody).
    fn report_status(&mut self) {
        if self.notifier.is_active() {
            let status = self.status_line();
            self.notifier.status(&status);
        }
    }

    /// What `systemctl status` shows: where the link stands and what waits.
    fn status_line(&self) -> String {
        let held = self.spool.held();
        let collector = self.link.endpoint();
        if self.link.is_up() {
            format!("connected to {collector}, {held} samples not yet acknowledged")
        } else {
            format!("connecting to {collector}, {held} samples spooled")
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                info!(collector = %self.link.endpoint(), "Connected to the collector (CURVE handshake done).");
                self.model_revision_sent = None;
                self.told_old_collector = false;
                self.told_old_collector_checks = false;
                self.hello();
            }
            Event::Downgraded { .. } => self.hello(),
            Event::Message(message) => self.on_message(*message, now),
            Event::Lost { why } => warn!(why, "Reconnecting to the collector."),
        }
        self.report_status();
    }

    /// Says hello and, in version 2, declares every application series:
    /// before any sample of this connection, so that the ids its samples
    /// use mean what they say to this collector.
    fn hello(&mut self) {
        let hello = Message::Hello(Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: self.config.name.clone(),
            machine_id: self.facts.machine_id.clone(),
            boot_id: self.facts.boot_id.clone(),
            interval_ms: self.interval_ms,
        });
        self.link.send(&hello);
        if self.link.version().is_some_and(|v| v >= 2) {
            let full = self.sources.full();
            self.declare(full);
        }
        if let Some(checker) = &self.checker {
            if self.link.version().is_some_and(|v| v >= 3) {
                self.link.send(&Message::Checks(checker.declaration()));
            }
            let pending = std::mem::take(&mut self.pending_checks);
            self.report_checks(pending);
        }
        self.delivery = Delivery::new(Instant::now());
        self.gaps_sent.clear();
        if self.link.version().is_some_and(|v| v >= 4) {
            // Losses first: the collector then knows why samples before
            // the oldest one held are missing when the Resume says so.
            self.send_gaps();
            self.link.send(&Message::Resume(Resume {
                epoch: self.spool.epoch(),
                oldest_seq: self.spool.oldest_seq(),
                next_seq: self.spool.next_seq(),
            }));
        } else {
            // An older collector neither stores nor acknowledges: what the
            // spool holds cannot go to it.
            let held = self.spool.held();
            if held > 0 {
                warn!(
                    samples = held,
                    "The collector speaks an older protocol and takes no backlog; the samples taken while disconnected are not sent to it. Upgrade the collector."
                );
            }
            self.spool.ack(self.spool.epoch(), self.spool.next_seq().saturating_sub(1));
        }
    }

    /// Sends the spool's gaps this connection has not had (they stay in
    /// the spool until an acknowledgement covers them, and are sent again
    /// on the next connection until then).
    fn send_gaps(&mut self) {
        for gap in self.spool.gaps() {
            if self.gaps_sent.insert((gap.epoch, gap.from_seq, gap.to_seq)) {
                self.link.send(&Message::Gap(gap.clone()));
            }
        }
    }

    /// Sends what the spool holds, as far as the window allows (and any
    /// loss the spool recorded meanwhile).
    fn backfill(&mut self, now: Instant) {
        if self.link.version().is_none_or(|v| v < 4) {
            return;
        }
        self.send_gaps();
        for message in self.delivery.backfill(&mut self.spool, now) {
            let first = match &message {
                Message::Backfill(b) => b.samples.first().map(|s| s.seq),
                _ => None,
            };
            if !self.link.send(&message) {
                // The send queue is full: take it up again from here.
                if let Some(first) = first {
                    self.delivery.unsend(first);
                }
                break;
            }
        }
    }

    /// Sends check results, or keeps the latest of each check for the next
    /// connection. A collector older than version 3 cannot take them: that
    /// is said once per connection.
    fn report_checks(&mut self, results: Vec<CheckResult>) {
        if results.is_empty() {
            return;
        }
        match self.link.version() {
            Some(v) if v >= 3 => {
                if !self.link.send(&Message::CheckResults(CheckResults { results })) {
                    debug!("Send queue full; dropped check results.");
                }
            }
            Some(_) => {
                if !self.told_old_collector_checks {
                    warn!(
                        collector = %self.link.endpoint(),
                        "The collector speaks an older protocol and cannot take check results; \
                         they are not sent to it. Upgrade the collector."
                    );
                    self.told_old_collector_checks = true;
                }
            }
            None => {
                for result in results {
                    self.pending_checks.retain(|p| p.id != result.id);
                    self.pending_checks.push(result);
                }
            }
        }
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        match message {
            Message::ModelRequest => {
                debug!("Collector asked for the model.");
                if let Some(session) = self.link.session() {
                    session.model_requested();
                }
            }
            Message::Ping(ping) => {
                let skew_ms = unix_ms().abs_diff(ping.sent_at_ms);
                if skew_ms > 60_000 {
                    warn!(skew_ms, "Clock differs from the collector's by more than a minute.");
                }
                debug!("Ping from the collector.");
            }
            Message::Ack(ack) => {
                if ack.epoch != self.spool.epoch() {
                    warn!(
                        theirs = ack.epoch,
                        ours = self.spool.epoch(),
                        "An acknowledgement for another epoch; ignored."
                    );
                    return;
                }
                self.spool.ack(ack.epoch, ack.seq);
                if !self.delivery.resumed() {
                    debug!(acked = ack.seq, next = self.spool.next_seq(), "Resumed delivery.");
                }
                self.delivery.on_ack(ack.seq, now);
            }
            Message::Reject(reject) => {
                error!(reason = ?reject.reason, detail = %reject.detail, "The collector rejected this agent.");
                for event in self.link.reconnect(format!("rejected: {}", reject.detail), now) {
                    self.on_event(event, now);
                }
            }
            other => {
                warn!(kind = other.kind(), "Ignoring a message the collector should not send.");
            }
        }
    }

    /// Takes a sample of the host and ends the applications' interval, and
    /// sends both if the link is up.
    fn sample(&mut self, now: Instant) {
        let own = self.own_families();
        let sample = self.sampler.sample_with(&self.root, own);
        // A changed schema (a new disk, a failed collector) goes out
        // unasked, so the collector does not drop values meanwhile.
        if self.model_revision_sent.is_some_and(|r| r != sample.revision)
            && let Some(session) = self.link.session()
        {
            session.schema_changed();
        }
        // Every sample goes to the spool first, connected or not.
        let seq = self.spool.take_seq();
        let taken_at_ms = unix_ms();
        let host = HostValues { schema_revision: sample.revision, values: sample.values.clone() };
        self.spool.append(
            Metrics {
                seq,
                taken_at_ms,
                schema_revision: host.schema_revision,
                values: host.values.clone(),
            },
            || sample.schema(),
        );
        self.last_sample = Some(sample);
        self.send_model_if_due(now);
        let apps = self.sources.flush(now);
        let Some(version) = self.link.version() else {
            // Not connected: the next connection declares every series anew,
            // and the spool's samples go as backfill (without application
            // points: their interval has passed).
            return;
        };
        let message = if version >= 2 {
            if let Some(declarations) = apps.declarations {
                self.declare(declarations);
            }
            let points = self.fit(apps.points, &host);
            Message::Sample(SampleMessage { seq, taken_at_ms, host, apps: points })
        } else {
            if !apps.points.is_empty() && !self.told_old_collector {
                warn!(
                    collector = %self.link.endpoint(),
                    "The collector speaks protocol version 1 and cannot take application \
                     metrics; they are not sent to it. Upgrade the collector."
                );
                self.told_old_collector = true;
            }
            Message::Metrics(Metrics {
                seq,
                taken_at_ms,
                schema_revision: host.schema_revision,
                values: host.values,
            })
        };
        if !self.link.send(&message) {
            self.dropped += 1;
            debug!(seq, dropped = self.dropped, "Send queue full; the sample waits in the spool.");
        } else if version >= 4 {
            self.delivery.sent_live(seq);
        } else {
            // No acknowledgements from older collectors: sent is done.
            self.spool.ack(self.spool.epoch(), seq);
        }
    }

    /// The agent's own families: its StatsD and scrape sources', its checks'.
    fn own_families(&mut self) -> Vec<crate::collectors::FamilySample> {
        let mut own = self.sources.families();
        own.extend(self.checker.as_ref().map(Checker::families).unwrap_or_default());
        own.extend(self.spool.families());
        own
    }

    /// Keeps the application points that fit one frame beside the host's
    /// values; the rest are counted as dropped (only thousands of busy
    /// distributions in one interval come near the limit).
    fn fit(&mut self, mut points: Vec<AppPoint>, host: &HostValues) -> Vec<AppPoint> {
        let budget = MAX_FRAME_BYTES - 64 - host.values.len() * 9;
        let mut used = 0usize;
        let mut keep = points.len();
        for (i, point) in points.iter().enumerate() {
            used += point_size(point);
            if used > budget {
                keep = i;
                break;
            }
        }
        if keep < points.len() {
            let dropped = points.len() - keep;
            warn!(dropped, "Application points past the frame limit this interval were dropped.");
            self.sources.apps.counts.drop(Drop::FrameLimit, dropped as u64);
            points.truncate(keep);
        }
        points
    }

    /// Sends application declarations, split into frames of a bounded size.
    fn declare(&mut self, mut declarations: AppSeries) {
        if declarations.declare.len() <= DECLARATIONS_PER_MESSAGE {
            self.link.send(&Message::AppSeries(declarations));
            return;
        }
        let rest = declarations.declare.split_off(DECLARATIONS_PER_MESSAGE);
        self.link.send(&Message::AppSeries(declarations));
        for chunk in rest.chunks(DECLARATIONS_PER_MESSAGE) {
            self.link.send(&Message::AppSeries(AppSeries {
                full: false,
                instances: Vec::new(),
                declare: chunk.to_vec(),
                retire: Vec::new(),
                retire_instances: Vec::new(),
            }));
        }
    }

    /// Sends the model when the collector asked for it (or the schema
    /// changed) and the answer window allows.
    fn send_model_if_due(&mut self, now: Instant) {
        let due = self.link.session().is_some_and(|s| s.model_due(now));
        if !due {
            return;
        }
        let sample = match &self.last_sample {
            Some(sample) => sample,
            None => {
                let own = self.own_families();
                self.last_sample.insert(self.sampler.sample_with(&self.root, own))
            }
        };
        let revision = sample.revision;
        if let Ok(facts) = model::read_facts(&self.root, &self.config.etc_root) {
            self.facts = facts;
        }
        let model =
            model::build(self.facts.clone(), &self.config.name, self.interval_ms, sample.schema());
        if let Some(session) = self.link.session() {
            session.model_sent(now);
        }
        if self.link.send(&Message::Model(model)) {
            debug!(revision, "Sent the model.");
            self.model_revision_sent = Some(revision);
        }
    }
}

/// Roughly the encoded size of a point (for the frame budget).
fn point_size(point: &AppPoint) -> usize {
    use curvemon_protocol::AppValue;
    6 + match &point.value {
        AppValue::Counter(_) | AppValue::Gauge(_) => 9,
        AppValue::Distribution(s) => 48 + 12 * (s.positive.0.len() + s.negative.0.len()),
        AppValue::Histogram { counts, .. } => 10 + 9 * counts.len(),
        AppValue::Summary { values, .. } => 20 + 9 * values.len(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
