//! Prometheus remote write (1.0): one thread per target reads the store's
//! export journal from the target's position, sends what it finds in
//! requests of at most `batch_values` values, and moves the position (in
//! the store, durably) once the receiver took them.
//!
//! The protocol's rules: a 2xx is delivered; 5xx, 429 and network errors
//! are sent again, the same request, after a pause that doubles up to 30 s
//! (one request in flight, so each series stays in order); any other 4xx
//! is refused for good: counted, logged with the receiver's words, and
//! passed over. A target that falls more than `queue_samples` host samples
//! behind skips the oldest, counted; samples the store's retention deleted
//! before they were sent are counted as missing.
//!
//! Liveness (`curvemon_host_up`) is the collector's judgement now, not a
//! stored sample: it is added to the next request every `liveness_every`
//! and not replayed after an outage.
//!
//! Shutdown: [`Exporter::stop`] sets a flag every wait checks; a request in
//! flight finishes or times out first.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{debug, error, info, warn};

use super::{
    prompb::{self, TimeSeries, WriteRequest},
    series::{Layouts, push_host, push_liveness},
    target::Target,
};
use crate::{
    registry::{Registry, State},
    store::{Store, block::Stored, journal::Entry},
};

/// Counters of one target, for `/metrics`.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// Values the receiver accepted.
    pub sent_values: AtomicU64,
    /// Host samples the receiver accepted.
    pub sent_samples: AtomicU64,
    /// Requests accepted.
    pub requests: AtomicU64,
    /// Requests that failed and were sent again (5xx, 429, network).
    pub retries: AtomicU64,
    /// Host samples the receiver refused for good (4xx other than 429).
    pub rejected_samples: AtomicU64,
    /// Host samples skipped because the target fell behind its bound.
    pub dropped_samples: AtomicU64,
    /// Host samples the store no longer had (retention) or could not read.
    pub missing_samples: AtomicU64,
    /// Host samples journaled but not yet delivered.
    pub pending_samples: AtomicU64,
    /// Newest sample time delivered, Unix ms.
    pub last_sent_ms: AtomicU64,
}

/// The running targets.
pub struct Exporter {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Each target's name and counters, for `/metrics`.
    pub stats: Vec<(String, Arc<TargetStats>)>,
}

/// Host samples a read of the journal takes at most.
const ENTRIES_PER_READ: usize = 512;
/// First pause after a failed request; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often an idle target looks at the journal.
const IDLE: Duration = Duration::from_millis(250);

impl Exporter {
    /// Starts a thread per target. A target new to this store starts at the
    /// journal's end; the others resume where they were.
    ///
    /// # Errors
    /// The store cannot be read, a target's client or token cannot be set up.
    pub fn start(
        store: Arc<dyn Store>,
        targets: Vec<Target>,
        registry: Arc<Mutex<Registry>>,
    ) -> anyhow::Result<Exporter> {
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        store.keep_exports(&names)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut exporter =
            Exporter { stop: Arc::clone(&stop), threads: Vec::new(), stats: Vec::new() };
        for target in targets {
            let cursor = match store.cursor(&target.name)? {
                Some(c) => c,
                None => {
                    let (head, _) = store.journal_head()?;
                    store.advance(&target.name, head)?;
                    head
                }
            };
            info!(target = %target.name, url = %target.url, position = cursor, "Remote write starts.");
            let stats = Arc::new(TargetStats::default());
            let sender = Sender {
                agent: target.agent()?,
                token: target.bearer_token()?,
                target,
                store: Arc::clone(&store),
                registry: Arc::clone(&registry),
                layouts: Layouts::default(),
                stats: Arc::clone(&stats),
                stop: Arc::clone(&stop),
                cursor,
                next_liveness: Instant::now(),
                warned: HashMap::new(),
            };
            exporter.stats.push((sender.target.name.clone(), stats));
            exporter.threads.push(
                std::thread::Builder::new()
                    .name("remote-write".into())
                    .spawn(move || sender.run())?,
            );
        }
        Ok(exporter)
    }

    /// Stops every target and waits for its thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// What became of a request.
enum Outcome {
    Delivered,
    Refused,
    /// Still failing, and the target is further behind than its bound.
    Overflowed,
    Stopped,
}

struct Sender {
    target: Target,
    agent: ureq::Agent,
    token: Option<String>,
    store: Arc<dyn Store>,
    registry: Arc<Mutex<Registry>>,
    layouts: Layouts,
    stats: Arc<TargetStats>,
    stop: Arc<AtomicBool>,
    /// The last journal entry delivered.
    cursor: u64,
    next_liveness: Instant,
    /// When each kind of problem was last logged (at most once a minute).
    warned: HashMap<&'static str, Instant>,
}

impl Sender {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.turn() {
                Ok(true) => {}
                Ok(false) => {
                    self.pause(IDLE);
                }
                Err(e) => {
                    let name = self.target.name.clone();
                    self.warn_once("store", || {
                        error!(target = %name, error = %e, "Remote write cannot read the store; trying again.")
                    });
                    self.pause(Duration::from_secs(1));
                }
            }
        }
        debug!(target = %self.target.name, "Remote write stopped.");
    }

    /// Sleeps up to `d`, waking for a stop.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        true
    }

    fn warn_once(&mut self, kind: &'static str, log: impl FnOnce()) {
        let now = Instant::now();
        let last = self.warned.get(kind).copied();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            log();
            self.warned.insert(kind, now);
        }
    }

    /// Sends one request if there is anything; false when idle.
    fn turn(&mut self) -> Result<bool, crate::store::StoreError> {
        let (head, head_total) = self.store.journal_head()?;
        let mut entries = self.store.journal(self.cursor, ENTRIES_PER_READ)?;
        self.skip_past_bound(&mut entries, head_total)?;
        // The journal's running total before this request's first sample.
        let start_total = match entries.first() {
            Some((_, Ok(e))) => e.total - e.count,
            _ => head_total,
        };
        let pending = head_total.saturating_sub(start_total);
        self.stats.pending_samples.store(pending, Ordering::Relaxed);
        let mut request = WriteRequest::default();
        let liveness_due = Instant::now() >= self.next_liveness;
        if liveness_due {
            push_liveness(&mut request.timeseries, &self.liveness(), crate::time::now_ms());
        }
        let (mut last, mut values, mut samples, mut newest) = (self.cursor, 0usize, 0u64, 0u64);
        for (key, entry) in entries {
            if values >= self.target.batch_values && last != self.cursor {
                break;
            }
            last = key;
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    warn!(target = %self.target.name, position = key, error = %e, "A journal entry is damaged; its samples are not forwarded.");
                    self.stats.missing_samples.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let (added, found) = self.add_entry(&mut request.timeseries, &entry)?;
            values += added;
            samples += found;
            newest = newest.max(entry.to_ms);
        }
        if request.timeseries.is_empty() {
            if last != self.cursor {
                self.store.advance(&self.target.name, last)?;
                self.cursor = last;
            }
            if liveness_due {
                self.next_liveness = Instant::now() + self.target.liveness_every;
            }
            return Ok(last < head);
        }
        match self.send(&request, start_total) {
            Outcome::Delivered => {
                self.stats.sent_values.fetch_add(values as u64, Ordering::Relaxed);
                self.stats.sent_samples.fetch_add(samples, Ordering::Relaxed);
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.last_sent_ms.fetch_max(newest, Ordering::Relaxed);
            }
            Outcome::Refused => {
                self.stats.rejected_samples.fetch_add(samples, Ordering::Relaxed);
            }
            Outcome::Overflowed => {
                self.stats.dropped_samples.fetch_add(samples, Ordering::Relaxed);
                let (name, bound) = (self.target.name.clone(), self.target.queue_samples);
                self.warn_once("bound", || {
                    warn!(target = %name, dropped = samples, bound, "Remote write fell further behind than its queue bound (queue_samples) while the receiver failed; gave up the oldest request.")
                });
            }
            Outcome::Stopped => return Ok(false),
        }
        if liveness_due {
            self.next_liveness = Instant::now() + self.target.liveness_every;
        }
        if last != self.cursor {
            self.store.advance(&self.target.name, last)?;
            self.cursor = last;
        }
        Ok(true)
    }

    /// Past the bound: drops entries from the front until the target is at
    /// most `queue_samples` behind the journal's end, counting them.
    fn skip_past_bound(
        &mut self,
        entries: &mut crate::store::JournalRead,
        head_total: u64,
    ) -> Result<(), crate::store::StoreError> {
        let bound = self.target.queue_samples;
        let behind = |e: &Entry| head_total.saturating_sub(e.total - e.count);
        let mut dropped = 0u64;
        while let Some((key, Ok(first))) = entries.first() {
            if behind(first) <= bound {
                break;
            }
            let key = *key;
            dropped += first.count;
            drop(entries.remove(0));
            if entries.is_empty() {
                *entries = self.store.journal(key, ENTRIES_PER_READ)?;
            }
            self.cursor = key;
        }
        if dropped > 0 {
            self.stats.dropped_samples.fetch_add(dropped, Ordering::Relaxed);
            self.store.advance(&self.target.name, self.cursor)?;
            let name = self.target.name.clone();
            self.warn_once("bound", || {
                warn!(target = %name, dropped, bound, "Remote write fell further behind than its queue bound (queue_samples); skipped the oldest samples.")
            });
        }
        Ok(())
    }

    /// Adds an entry's samples; returns the values added and the samples
    /// found.
    fn add_entry(
        &mut self,
        out: &mut Vec<TimeSeries>,
        entry: &Entry,
    ) -> Result<(usize, u64), crate::store::StoreError> {
        let read = self.store.samples(&entry.host, entry.from_ms, entry.to_ms)?;
        let mine: Vec<&Stored> =
            read.items.iter().filter(|s| entry.holds(s.epoch, s.seq)).collect();
        let missing = entry.count.saturating_sub(mine.len() as u64);
        if missing > 0 {
            self.stats.missing_samples.fetch_add(missing, Ordering::Relaxed);
        }
        let mut added = 0;
        let mut start = 0;
        // Runs of one schema revision (a host's layout may change mid-entry).
        while start < mine.len() {
            let revision = mine[start].revision;
            let end = mine[start..]
                .iter()
                .position(|s| s.revision != revision)
                .map_or(mine.len(), |n| start + n);
            if let Some(layout) = self.layout(revision)? {
                added += push_host(out, &layout, &entry.name, &mine[start..end]);
            } else {
                self.stats.missing_samples.fetch_add((end - start) as u64, Ordering::Relaxed);
            }
            start = end;
        }
        Ok((added, mine.len() as u64))
    }

    fn layout(
        &mut self,
        revision: u64,
    ) -> Result<Option<Arc<Vec<Vec<super::prompb::Label>>>>, crate::store::StoreError> {
        if let Some(l) = self.layouts.get(revision) {
            return Ok(Some(l));
        }
        for schema in self.store.schemas()? {
            self.layouts.insert(&schema);
        }
        Ok(self.layouts.get(revision))
    }

    /// Every named host and whether it is up, under a short lock.
    fn liveness(&self) -> Vec<(String, bool)> {
        let reg = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        reg.hosts().filter_map(|h| Some((h.hostname.clone()?, h.state == State::Up))).collect()
    }

    /// Sends until delivered, refused for good, or stopped.
    /// `start_total`: the journal's running total before the request's
    /// samples, to tell when failing has put the target past its bound.
    fn send(&mut self, request: &WriteRequest, start_total: u64) -> Outcome {
        let body = match prompb::encode(request) {
            Ok(b) => b,
            Err(e) => {
                error!(target = %self.target.name, error = %e, "Cannot compress a remote-write request.");
                return Outcome::Refused;
            }
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Outcome::Stopped;
            }
            let mut call = self
                .agent
                .post(&self.target.url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0");
            for (name, value) in &self.target.headers {
                call = call.header(name, value);
            }
            if let Some(token) = &self.token {
                call = call.header("Authorization", format!("Bearer {token}"));
            }
            let why = match call.send(&body[..]) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        return Outcome::Delivered;
                    }
                    let text = response
                        .body_mut()
                        .with_config()
                        .limit(1024)
                        .read_to_string()
                        .unwrap_or_default();
                    if status != 429 && (400..500).contains(&status) {
                        let name = self.target.name.clone();
                        self.warn_once("refused", || {
                            warn!(target = %name, status, answer = %text.trim(), "The receiver refused a remote-write request (not sent again; its samples are counted as rejected).")
                        });
                        return Outcome::Refused;
                    }
                    format!("HTTP {status}: {}", text.trim())
                }
                Err(e) => e.to_string(),
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let name = self.target.name.clone();
            self.warn_once("retry", || {
                warn!(target = %name, error = %why, "Remote write failed; sending the same request again with growing pauses.")
            });
            if !self.pause(backoff) {
                return Outcome::Stopped;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let behind =
                self.store.journal_head().map_or(0, |(_, t)| t.saturating_sub(start_total));
            if behind > self.target.queue_samples {
                return Outcome::Overflowed;
            }
        }
    }
}
