//! Availability checks: the agent probes the services its host's
//! applications depend on (`[[check]]` in its config), speaking each one's
//! real protocol, and reports every result to the collector.
//!
//! Each run of a check is a short-lived thread with one deadline (the
//! check's timeout) over every phase: a lookup, the connection, TLS, the
//! protocol's exchange. So a hanging service costs a sleeping thread, never
//! a late sample; the event loop only starts runs when they are due and
//! takes their results through a channel, woken by a socket pair. A check
//! whose previous run has not finished when it is due again is not started
//! twice: that round is skipped and counted.
//!
//! Shutdown: runs are bounded by their timeouts and hold nothing that
//! needs closing; the agent does not wait for them when it exits.
//!
//! Layout: [`config`] reads `[[check]]`; [`http`], [`tcp`], [`postgres`],
//! [`redis`] and [`amqp`] are the kinds; [`tls`] is shared by all of them.

pub mod amqp;
pub mod config;
pub mod http;
pub mod postgres;
pub mod redis;
pub mod tcp;
pub mod tls;

use std::{
    io::{Read, Write},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::{Arc, mpsc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use curvemon_protocol::{
    CheckFailure, CheckKind, CheckResult, CheckSpec, Checks, FailureReason, Phase, PhaseTime,
};
use tracing::{debug, info, warn};

use crate::net::{Address, Conn, Deadline, Failure, Socket};
pub use tls::{Stream, Tls};

/// One configured check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Its name, unique in the config.
    pub name: String,
    /// What it probes, for people (no credentials).
    pub target: String,
    /// How often it runs.
    pub interval: Duration,
    /// The deadline of one run, over all its phases.
    pub timeout: Duration,
    /// The kind and its parameters.
    pub probe: Probe,
}

/// A kind of check with its parameters.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An HTTP(S) request.
    Http(http::Http),
    /// A TCP connection and optional exchange.
    Tcp(tcp::Tcp),
    /// A PostgreSQL login and `SELECT 1`.
    Postgres(postgres::Postgres),
    /// A Redis `PING`.
    Redis(redis::Redis),
    /// An AMQP 0-9-1 connection.
    Amqp(amqp::Amqp),
}

impl Probe {
    /// The wire kind.
    pub fn kind(&self) -> CheckKind {
        match self {
            Probe::Http(_) => CheckKind::Http,
            Probe::Tcp(_) => CheckKind::Tcp,
            Probe::Postgres(_) => CheckKind::Postgres,
            Probe::Redis(_) => CheckKind::Redis,
            Probe::Amqp(_) => CheckKind::Amqp,
        }
    }

    /// One run: connect (TLS first, but for PostgreSQL, which asks for it
    /// in its own protocol), then the kind's exchange.
    fn run(&self, deadline: Deadline, record: &mut Record) -> Result<(), Failure> {
        let (address, tls) = match self {
            Probe::Postgres(p) => return p.run(deadline, record),
            Probe::Http(p) => (&p.url.address, &p.tls),
            Probe::Tcp(p) => (&p.address, &p.tls),
            Probe::Redis(p) => (&p.address, &p.tls),
            Probe::Amqp(p) => (&p.address, &p.tls),
        };
        let mut conn = open(address, tls.as_ref(), deadline, record)?;
        match self {
            Probe::Http(p) => p.exchange(&mut conn, record),
            Probe::Tcp(p) => p.exchange(&mut conn),
            Probe::Redis(p) => p.exchange(&mut conn, record),
            Probe::Amqp(p) => p.exchange(&mut conn, record),
            Probe::Postgres(_) => unreachable!("returned above"),
        }
    }
}

/// What a run found besides success or failure.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Record {
    /// The phases, in order.
    pub phases: Vec<PhaseTime>,
    /// The HTTP status.
    pub http_status: Option<u16>,
    /// The certificate's expiry, Unix seconds.
    pub cert_not_after: Option<i64>,
    /// What the server said of itself.
    pub server: String,
}

impl Record {
    /// Adds a phase's duration.
    pub fn phase(&mut self, phase: Phase, took: Duration) {
        self.phases.push(PhaseTime { phase, seconds: took.as_secs_f64() });
    }
}

/// Connects to `address` (recording `dns` and `connect`) and, with `tls`,
/// runs the handshake for `host`: the start of every kind but PostgreSQL,
/// which asks for TLS in its own protocol first.
///
/// # Errors
/// As [`Socket::connect`] and [`Tls::handshake`].
pub fn open(
    address: &Address,
    tls: Option<&Tls>,
    deadline: Deadline,
    record: &mut Record,
) -> Result<Conn<Stream>, Failure> {
    let socket = connect(address, deadline, record)?;
    let stream = match (tls, address.host()) {
        (Some(tls), Some(host)) => tls.handshake(socket, host, deadline, record)?,
        (Some(tls), None) => tls.handshake(socket, "localhost", deadline, record)?,
        (None, _) => Stream::Plain(socket),
    };
    Ok(Conn::new(stream, deadline, Stream::socket))
}

/// Connects, recording `dns` and `connect`.
///
/// # Errors
/// As [`Socket::connect`].
pub fn connect(
    address: &Address,
    deadline: Deadline,
    record: &mut Record,
) -> Result<Socket, Failure> {
    Socket::connect(address, deadline, |phase, took| {
        let phase = if phase == "dns" { Phase::Dns } else { Phase::Connect };
        record.phase(phase, took);
    })
}

/// Runs `check` once, now.
pub fn run_once(check: &Check) -> CheckResult {
    let started_at_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let started = Instant::now();
    let mut record = Record::default();
    let outcome = check.probe.run(Deadline::after(check.timeout), &mut record);
    CheckResult {
        id: 0,
        started_at_ms,
        seconds: started.elapsed().as_secs_f64(),
        failure: outcome.err().map(|f| CheckFailure { reason: f.reason, detail: f.detail }),
        phases: record.phases,
        http_status: record.http_status,
        cert_not_after: record.cert_not_after,
        server: record.server,
    }
}

/// Runs the checks on their intervals, from the agent's event loop.
pub struct Checker {
    checks: Vec<Arc<Check>>,
    due: Vec<Instant>,
    running: Vec<bool>,
    /// The last state of each, to log changes.
    up: Vec<Option<bool>>,
    /// Rounds skipped because the previous run had not finished, in all.
    pub skipped: u64,
    sender: mpsc::Sender<(usize, CheckResult)>,
    results: mpsc::Receiver<(usize, CheckResult)>,
    wake: UnixStream,
    poke: Arc<UnixStream>,
}

impl Checker {
    /// Ready to start `checks`: the first runs are spread over the first
    /// second rather than all at once.
    ///
    /// # Errors
    /// When no socket pair can be had.
    pub fn new(checks: Vec<Check>) -> std::io::Result<Checker> {
        let (wake, poke) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        poke.set_nonblocking(true)?;
        let (sender, results) = mpsc::channel();
        let now = Instant::now();
        let n = checks.len().max(1) as u32;
        let due = (0..checks.len() as u32).map(|i| now + Duration::from_secs(1) * i / n).collect();
        Ok(Checker {
            running: vec![false; checks.len()],
            up: vec![None; checks.len()],
            due,
            checks: checks.into_iter().map(Arc::new).collect(),
            skipped: 0,
            sender,
            results,
            wake,
            poke: Arc::new(poke),
        })
    }

    /// The declaration the collector gets after every hello; ids are
    /// positions in the config.
    pub fn declaration(&self) -> Checks {
        Checks {
            checks: self
                .checks
                .iter()
                .enumerate()
                .map(|(id, c)| CheckSpec {
                    id: id as u32,
                    name: c.name.clone(),
                    kind: c.probe.kind(),
                    target: c.target.clone(),
                    interval_ms: u32::try_from(c.interval.as_millis()).unwrap_or(u32::MAX),
                    timeout_ms: u32::try_from(c.timeout.as_millis()).unwrap_or(u32::MAX),
                })
                .collect(),
        }
    }

    /// When the next run is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.iter().min().copied()
    }

    /// Starts every run that is due (each on its own thread).
    pub fn start_due(&mut self, now: Instant) {
        for i in 0..self.checks.len() {
            if self.due[i] > now {
                continue;
            }
            let check = &self.checks[i];
            self.due[i] += check.interval;
            if self.due[i] <= now {
                // Asleep through whole intervals (suspend): skip them.
                self.due[i] = now + check.interval;
            }
            if self.running[i] {
                self.skipped += 1;
                warn!(check = %check.name, timeout = ?check.timeout, interval = ?check.interval, "A check is still running at its next interval; skipping this round.");
                continue;
            }
            let (check, sender, poke) =
                (Arc::clone(check), self.sender.clone(), Arc::clone(&self.poke));
            let spawned = std::thread::Builder::new()
                .name(format!("check {}", check.name))
                .stack_size(256 * 1024)
                .spawn(move || {
                    let result = run_once(&check);
                    // The loop may be gone (shutting down): nothing to do.
                    if sender.send((i, result)).is_ok() {
                        let _ = (&*poke).write(&[1]);
                    }
                });
            match spawned {
                Ok(_) => self.running[i] = true,
                Err(e) => {
                    warn!(check = %self.checks[i].name, error = %e, "Cannot start a check's thread; trying at its next interval.")
                }
            }
        }
    }

    /// The descriptor that turns readable when results wait.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The results that arrived, with their ids set; state changes logged.
    pub fn take(&mut self) -> Vec<CheckResult> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        let mut out = Vec::new();
        for (i, mut result) in self.results.try_iter() {
            self.running[i] = false;
            result.id = i as u32;
            let check = &self.checks[i];
            let up = result.failure.is_none();
            match (&result.failure, self.up[i]) {
                (Some(f), Some(true) | None) => {
                    warn!(check = %check.name, target = %check.target, reason = f.reason.as_str(), detail = %f.detail, "Check failed.");
                }
                (None, Some(false)) => {
                    info!(check = %check.name, target = %check.target, "Check passes again.");
                }
                _ => debug!(check = %check.name, up, seconds = result.seconds, "Check ran."),
            }
            self.up[i] = Some(up);
            out.push(result);
        }
        out
    }

    /// The checker's own health, sampled with the host.
    pub fn families(&self) -> Vec<crate::collectors::FamilySample> {
        vec![crate::collectors::FamilySample::single(
            "curvemon_agent_check_runs_skipped_total",
            "Check runs not started because the check's previous run had not finished.",
            curvemon_protocol::Kind::Counter,
            self.skipped as f64,
        )]
    }

    /// How many checks there are.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// A failure of `reason` from a protocol's answer.
pub(crate) fn fail(reason: FailureReason, detail: impl Into<String>) -> Failure {
    Failure::new(reason, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts (the kernel's backlog) and never answers.
    fn silent() -> (std::net::TcpListener, Address) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, Address::Tcp { host: "127.0.0.1".into(), port })
    }

    #[test]
    fn a_run_still_going_is_not_started_twice() {
        let (_listener, address) = silent();
        let check = Check {
            name: "slow".into(),
            target: address.to_string(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(600),
            probe: Probe::Tcp(tcp::Tcp {
                address,
                tls: None,
                send: None,
                expect: Some(regex_lite::Regex::new("never").unwrap()),
            }),
        };
        let mut checker = Checker::new(vec![check]).unwrap();
        let start = Instant::now();
        checker.start_due(start);
        assert!(checker.running[0]);
        // Due again four times while the first run waits for its answer.
        for i in 1..=4 {
            checker.start_due(start + Duration::from_millis(100 * i));
        }
        assert_eq!(checker.skipped, 4);
        let results = loop {
            let results = checker.take();
            if !results.is_empty() {
                break results;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "the run never ended");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(results.len(), 1, "one run, one result");
        let failure = results[0].failure.as_ref().unwrap();
        assert_eq!(failure.reason, FailureReason::Timeout);
        assert!((0.55..2.0).contains(&results[0].seconds), "{}", results[0].seconds);
        assert!(!checker.running[0]);
        assert_eq!(checker.families()[0].series[0].1, 4.0);
    }
}
