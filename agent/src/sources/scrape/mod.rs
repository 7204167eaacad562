//! Pull: the agent scrapes local Prometheus endpoints (`[[scrape]]` in its
//! config) and forwards their series under each target's application, so
//! applications already instrumented with a Prometheus client need no
//! StatsD.
//!
//! Scrapes run on one worker thread, one target at a time, each bounded
//! by its timeout and body size: a slow application never delays the
//! host's samples. The worker hands results to the event loop through a
//! channel and wakes it through a socket pair. Shutdown: dropping the
//! [`Scraper`] closes the worker's control channel, and the worker ends
//! after at most the scrape in progress.

pub mod http;
pub mod text;

use std::{
    io::{Read, Write},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::mpsc,
    time::{Duration, Instant},
};

use tracing::{info, warn};

pub use http::Url;

/// One `[[scrape]]` entry.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the page is.
    pub url: Url,
    /// The application its series belong to.
    pub app: String,
    /// The instance name (default: the URL's host and port, or socket).
    pub instance: String,
    /// How often.
    pub interval: Duration,
    /// The longest a scrape may take.
    pub timeout: Duration,
    /// The largest page taken.
    pub max_bytes: usize,
    /// The most series taken from one scrape.
    pub max_series: usize,
}

/// What one scrape gave.
#[derive(Debug)]
pub struct Outcome {
    /// Index into the targets.
    pub target: usize,
    /// The parsed page, or why there is none.
    pub result: Result<text::Parsed, String>,
    /// How long it took.
    pub seconds: f64,
}

/// The worker and its channels.
pub struct Scraper {
    results: mpsc::Receiver<Outcome>,
    wake: UnixStream,
    /// Dropped to stop the worker.
    _stop: mpsc::Sender<()>,
}

impl Scraper {
    /// Starts the worker for `targets` (first scrapes at once).
    ///
    /// # Errors
    /// When no thread or socket pair can be had.
    pub fn start(targets: Vec<Target>) -> std::io::Result<Scraper> {
        let (wake, mut poke) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let (results_tx, results) = mpsc::channel();
        std::thread::Builder::new().name("scrape".into()).spawn(move || {
            let mut due: Vec<Instant> = vec![Instant::now(); targets.len()];
            loop {
                let Some((index, at)) = due.iter().copied().enumerate().min_by_key(|(_, at)| *at)
                else {
                    return;
                };
                let wait = at.saturating_duration_since(Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let target = &targets[index];
                let started = Instant::now();
                let result = http::get(&target.url, target.timeout, target.max_bytes)
                    .map(|page| text::parse(&page));
                let seconds = started.elapsed().as_secs_f64();
                due[index] = (at + target.interval).max(Instant::now());
                if results_tx.send(Outcome { target: index, result, seconds }).is_err() {
                    return;
                }
                let _ = poke.write_all(&[1]);
            }
        })?;
        Ok(Scraper { results, wake, _stop: stop })
    }

    /// The descriptor that turns readable when results wait.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The results that arrived.
    pub fn take(&mut self) -> Vec<Outcome> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.results.try_iter().collect()
    }
}

/// What the agent reports about each target, as host metrics.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// 1 when the last scrape worked.
    pub up: f64,
    /// How long the last scrape took.
    pub seconds: f64,
    /// Series in the last scrape.
    pub series: f64,
    /// Lines skipped, in all.
    pub bad_lines: f64,
    /// Scrapes that failed, in all.
    pub failures: f64,
    /// The last failure, to log changes only.
    last_error: Option<String>,
}

impl Health {
    /// Records an outcome; logs when a target starts or stops failing.
    pub fn record(&mut self, target: &Target, outcome: &Outcome) {
        self.seconds = outcome.seconds;
        match &outcome.result {
            Ok(parsed) => {
                if self.last_error.take().is_some() {
                    info!(url = %target.url, app = %target.app, "Scrape target answers again.");
                }
                if parsed.bad_lines > 0
                    && self.bad_lines == 0.0
                    && let Some((line, why)) = &parsed.first_bad
                {
                    warn!(url = %target.url, line, why, skipped = parsed.bad_lines, "Skipped lines of a scraped page that do not parse.");
                }
                self.up = 1.0;
                self.series = parsed.series.len() as f64;
                self.bad_lines += parsed.bad_lines as f64;
            }
            Err(error) => {
                if self.last_error.as_ref() != Some(error) {
                    warn!(url = %target.url, app = %target.app, %error, "Scrape failed.");
                    self.last_error = Some(error.clone());
                }
                self.up = 0.0;
                self.failures += 1.0;
            }
        }
    }
}
