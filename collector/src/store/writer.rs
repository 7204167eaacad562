//! The store's own thread: takes what the router hands it, writes it in
//! batches (one durable transaction each), and hands back, per host, the
//! acknowledgements to send once a batch has committed.
//!
//! It owns which samples of each host are accounted for, so it drops
//! duplicates (a backlog sent again after a crash between commit and
//! acknowledgement) before they are written, and records losses: gaps the
//! agents report, and on `Resume` whatever the store lacks below the
//! oldest sample the agent still holds. It derives each sample's dashboard
//! point from the previous sample of the same host, epoch and schema, and
//! compacts hosts' recent samples into blocks and enforces the retention
//! between batches.
//!
//! A batch that fails to commit (a full disk) is kept and tried again with
//! growing pauses, logged once a minute and counted; meanwhile nothing is
//! acknowledged, so agents keep their samples, and the router drops what
//! overflows the bounded queue (agents send it again).
//!
//! Shutdown: dropping the [`Handle`]'s sender ends the loop after the
//! batch in progress; [`Handle::stop`] waits for it.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::{Read, Write},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use curvemon_keys::PublicKey;
use curvemon_protocol::{Gap, GapReason, Metrics, Resume, Schema};
use tracing::{debug, error, info, warn};

use super::{Batch, Store, StoredGap, block::Stored, seqs::HostSeq};
use crate::{derive::Layout, history::Point};

/// What the router hands the writer.
#[derive(Debug)]
pub enum Op {
    /// A schema samples may use.
    Schema(Arc<Schema>),
    /// Samples of a host (live or backfilled), with the host's epoch.
    Samples {
        /// The agent.
        host: PublicKey,
        /// Its epoch (a random one per session for agents that have none).
        epoch: u64,
        /// The host's name now (for the export journal).
        name: Arc<str>,
        /// A live sample's dashboard point, as the registry derived it
        /// (backfilled samples are derived here).
        point: Option<Point>,
        /// The samples.
        samples: Vec<Metrics>,
    },
    /// An agent's `Resume`.
    Resume {
        /// The agent.
        host: PublicKey,
        /// What it said.
        resume: Resume,
    },
    /// An agent's `Gap`.
    Gap {
        /// The agent.
        host: PublicKey,
        /// What it lost.
        gap: Gap,
    },
}

/// An acknowledgement to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckOut {
    /// The agent.
    pub host: PublicKey,
    /// Its epoch.
    pub epoch: u64,
    /// Everything up to here is accounted for.
    pub seq: u64,
    /// The agent waits for it (after a resume, a gap or a backfill batch);
    /// others may be paced.
    pub prompt: bool,
}

/// Counters of the store, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Samples written.
    pub stored: AtomicU64,
    /// Samples dropped as already stored.
    pub duplicates: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions that failed.
    pub errors: AtomicU64,
    /// Operations the router dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Samples reported lost, by [`GapReason`] (in `REASONS` order).
    pub lost: [AtomicU64; REASONS.len()],
    /// Bytes of samples in the store.
    pub bytes: AtomicU64,
    /// Entries found damaged when compacting or reading.
    pub damaged: AtomicU64,
    /// Nanoseconds spent committing, in all.
    pub commit_nanos: AtomicU64,
}

/// The gap reasons, as the `reason` label orders them.
pub const REASONS: [GapReason; 5] = [
    GapReason::SpoolFull,
    GapReason::SpoolFailed,
    GapReason::Unavailable,
    GapReason::Unsynced,
    GapReason::Skipped,
];

fn reason_index(r: GapReason) -> usize {
    REASONS.iter().position(|x| *x == r).unwrap_or(0)
}

/// How the writer keeps the store.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Samples older than this go.
    pub age: Duration,
    /// Then the oldest, until this many bytes are left.
    pub bytes: u64,
}

/// Recent samples of a host compacted past this many...
const COMPACT_COUNT: usize = 300;
/// ...or once the oldest is this old.
const COMPACT_AGE_MS: u64 = 10 * 60_000;
/// How long a batch of live samples gathers before its commit.
const LIVE_WINDOW: Duration = Duration::from_millis(20);
/// How long a batch gathers when an agent waits for its acknowledgement.
const PROMPT_WINDOW: Duration = Duration::from_millis(5);
/// Operations in one batch at most.
const BATCH_OPS: usize = 50_000;
/// Operations the queue holds; past it the router drops (agents resend).
pub const QUEUE: usize = 200_000;

/// The router's side of the writer.
pub struct Handle {
    ops: mpsc::SyncSender<Op>,
    acks: mpsc::Receiver<Vec<AckOut>>,
    wake: UnixStream,
    /// The counters.
    pub stats: Arc<StoreStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Queues `op`; false (and counted) when the queue is full.
    pub fn send(&self, op: Op) -> bool {
        match self.ops.try_send(op) {
            Ok(()) => true,
            Err(_) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Readable when acknowledgements wait.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The acknowledgements that are ready.
    pub fn take_acks(&self) -> Vec<AckOut> {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.acks.try_iter().flatten().collect()
    }

    /// Ends the writer after what it holds and waits for it.
    pub fn stop(mut self) {
        let Handle { ops, thread, .. } = &mut self;
        drop(std::mem::replace(ops, mpsc::sync_channel(1).0));
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the writer over `store`.
///
/// # Errors
/// The store cannot be read at start, or no thread can be had.
/// Starts the writer; with `journal`, each batch's samples are also
/// entered in the export journal (some export forwards them).
///
/// # Errors
/// The store cannot be read, or the thread not started.
pub fn start(store: Arc<dyn Store>, retention: Retention, journal: bool) -> anyhow::Result<Handle> {
    let seqs: HashMap<PublicKey, HostSeq> = store.hosts()?.into_iter().collect();
    let mut schemas = HashMap::new();
    for schema in store.schemas()? {
        let layout = Layout::new(&schema);
        schemas.insert(schema.revision, Arc::new((schema, layout)));
    }
    let recent =
        store.recent_counts()?.into_iter().map(|(host, n, oldest)| (host, (n, oldest))).collect();
    let stats = Arc::new(StoreStats::default());
    stats.bytes.store(store.bytes(), Ordering::Relaxed);
    info!(
        hosts = seqs.len(),
        schemas = schemas.len(),
        bytes = store.bytes(),
        "Opened the history store."
    );
    let (ops_tx, ops) = mpsc::sync_channel(QUEUE);
    let (acks_tx, acks) = mpsc::channel();
    let (wake, poke) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    poke.set_nonblocking(true)?;
    let mut writer = Writer {
        store,
        stats: Arc::clone(&stats),
        seqs,
        stored_schemas: schemas.keys().copied().collect(),
        schemas,
        prev: HashMap::new(),
        recent,
        retention,
        journal,
        acks: acks_tx,
        poke,
        last_error_log: None,
    };
    let thread =
        std::thread::Builder::new().name("store".into()).spawn(move || writer.run(&ops))?;
    Ok(Handle { ops: ops_tx, acks, wake, stats, thread: Some(thread) })
}

struct Writer {
    store: Arc<dyn Store>,
    stats: Arc<StoreStats>,
    seqs: HashMap<PublicKey, HostSeq>,
    schemas: HashMap<u64, Arc<(Schema, Layout)>>,
    stored_schemas: HashSet<u64>,
    /// The last few samples of each host, for rates.
    prev: HashMap<PublicKey, VecDeque<Prev>>,
    /// Recent entries per host: how many, and the oldest's time.
    recent: HashMap<PublicKey, (usize, u64)>,
    retention: Retention,
    journal: bool,
    acks: mpsc::Sender<Vec<AckOut>>,
    poke: UnixStream,
    last_error_log: Option<Instant>,
}

struct Prev {
    epoch: u64,
    seq: u64,
    t_ms: u64,
    revision: u64,
    values: Arc<Vec<f64>>,
}

/// One batch in the making: the writes, and the hosts' accounting as it
/// will be once they commit.
#[derive(Default)]
struct Pending {
    batch: Batch,
    seqs: HashMap<PublicKey, HostSeq>,
    /// Hosts to acknowledge, and whether promptly (a resume, a gap, a
    /// backfill batch: the agent waits for it).
    ack: HashMap<PublicKey, bool>,
    /// Some agent waits for an acknowledgement of this batch.
    prompt: bool,
    lost: Vec<(GapReason, u64)>,
}

/// Enters the samples `batch` gained from index `first` on (all of
/// `host`, one epoch) in the export journal.
fn journal_entry(batch: &mut Batch, first: usize, host: PublicKey, epoch: u64, name: &str) {
    let added = &batch.samples[first..];
    if added.is_empty() {
        return;
    }
    let span = |f: fn(&Stored) -> u64| {
        let values = added.iter().map(|(_, s)| f(s));
        (values.clone().min().unwrap_or(0), values.max().unwrap_or(0))
    };
    let (from_seq, to_seq) = span(|s| s.seq);
    let (from_ms, to_ms) = span(|s| s.t_ms);
    batch.journal.push(super::journal::Entry {
        host,
        name: name.to_string(),
        epoch,
        from_seq,
        to_seq,
        from_ms,
        to_ms,
        count: added.len() as u64,
        total: 0,
    });
}

impl Writer {
    fn run(&mut self, ops: &mpsc::Receiver<Op>) {
        let mut next_maintenance = Instant::now() + Duration::from_secs(10);
        let mut next_retention = Instant::now() + Duration::from_secs(30);
        loop {
            let first = match ops.recv_timeout(Duration::from_millis(250)) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut pending = Pending::default();
            let mut closed = false;
            if let Some(op) = first {
                let started = Instant::now();
                self.take(op, &mut pending);
                // Group commit: what arrives within a window, up to a
                // bound. A durable commit costs the same for one sample as
                // for thousands; agents waiting for an acknowledgement (a
                // resume, a gap, a backfill batch) get a short window.
                let mut taken = 1;
                while taken < BATCH_OPS {
                    let window = if pending.prompt { PROMPT_WINDOW } else { LIVE_WINDOW };
                    let left = (started + window).saturating_duration_since(Instant::now());
                    match ops.recv_timeout(left) {
                        Ok(op) => self.take(op, &mut pending),
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                    taken += 1;
                }
            }
            if !pending.ack.is_empty()
                || !pending.batch.samples.is_empty()
                || !pending.batch.schemas.is_empty()
            {
                self.commit(pending, ops);
            }
            if closed {
                break;
            }
            if Instant::now() >= next_maintenance {
                self.compact_old();
                next_maintenance = Instant::now() + Duration::from_secs(10);
            }
            if Instant::now() >= next_retention {
                self.retain();
                next_retention = Instant::now() + Duration::from_secs(60);
            }
        }
        debug!("Store writer stopped.");
    }

    fn staged<'a>(&self, pending: &'a mut Pending, host: PublicKey) -> &'a mut HostSeq {
        pending
            .seqs
            .entry(host)
            .or_insert_with(|| self.seqs.get(&host).cloned().unwrap_or_default())
    }

    fn take(&mut self, op: Op, pending: &mut Pending) {
        match op {
            Op::Schema(schema) => {
                self.schemas.entry(schema.revision).or_insert_with(|| {
                    let layout = Layout::new(&schema);
                    Arc::new(((*schema).clone(), layout))
                });
                if self.stored_schemas.insert(schema.revision) {
                    pending.batch.schemas.push(schema);
                }
            }
            Op::Resume { host, resume } => {
                let last_t = self
                    .prev
                    .get(&host)
                    .and_then(|p| p.back())
                    .map_or_else(crate::time::now_ms, |p| p.t_ms);
                let st = self.staged(pending, host);
                if st.epoch != resume.epoch {
                    if st.epoch != 0 {
                        info!(%host, old_epoch = st.epoch, new_epoch = resume.epoch, "An agent's spool started a new epoch (it was lost or reset); its numbering starts anew.");
                    }
                    st.restart(resume.epoch);
                }
                if resume.oldest_seq > st.hw.saturating_add(1) {
                    let (from, to) = (st.hw + 1, resume.oldest_seq - 1);
                    let lost = st.missing_in(from, to);
                    st.add(from, to);
                    if lost > 0 {
                        warn!(%host, from_seq = from, to_seq = to, samples = lost, "An agent no longer holds samples the store never got; recorded as lost.");
                        let gap = Gap {
                            epoch: resume.epoch,
                            from_seq: from,
                            to_seq: to,
                            from_ms: last_t,
                            to_ms: last_t,
                            reason: GapReason::Unavailable,
                        };
                        pending.lost.push((GapReason::Unavailable, lost));
                        pending.batch.gaps.push((host, StoredGap { gap, lost }));
                    }
                }
                *pending.ack.entry(host).or_default() = true;
                pending.prompt = true;
            }
            Op::Gap { host, gap } => {
                let st = self.staged(pending, host);
                if st.epoch != gap.epoch {
                    // Agents report their gaps before their Resume, so a
                    // gap may be the first word of a new epoch.
                    if st.epoch != 0 {
                        info!(%host, old_epoch = st.epoch, new_epoch = gap.epoch, "An agent's spool started a new epoch (it was lost or reset); its numbering starts anew.");
                    }
                    st.restart(gap.epoch);
                }
                // Agents send a gap on every connection until it is
                // acknowledged: only its numbers not yet accounted for are
                // new. Skipped numbers were never used: kept, not lost.
                let new = st.missing_in(gap.from_seq, gap.to_seq);
                let lost = if super::counts_as_lost(gap.reason) { new } else { 0 };
                st.add(gap.from_seq, gap.to_seq);
                if lost > 0 {
                    warn!(%host, from_seq = gap.from_seq, to_seq = gap.to_seq, samples = lost, reason = gap.reason.as_str(), "An agent lost samples; recorded.");
                    pending.lost.push((gap.reason, lost));
                }
                if new > 0 {
                    pending.batch.gaps.push((host, StoredGap { gap, lost }));
                }
                *pending.ack.entry(host).or_default() = true;
                pending.prompt = true;
            }
            Op::Samples { host, epoch, name, samples, point: given } => {
                // A live sample comes alone; a backfill batch in many.
                let backfill = samples.len() > 1;
                let samples_len = samples.len();
                let first = pending.batch.samples.len();
                {
                    let st = self.staged(pending, host);
                    if st.epoch != epoch {
                        st.restart(epoch);
                    }
                }
                for m in samples {
                    let st = self.staged(pending, host);
                    if st.has(m.seq) {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    st.add(m.seq, m.seq);
                    let point = match (&given, samples_len) {
                        (Some(p), 1) => p.clone(),
                        _ => self.point(host, epoch, &m),
                    };
                    pending.batch.samples.push((
                        host,
                        Stored {
                            epoch,
                            seq: m.seq,
                            t_ms: m.taken_at_ms,
                            revision: m.schema_revision,
                            values: m.values,
                            point,
                        },
                    ));
                }
                *pending.ack.entry(host).or_default() |= backfill;
                pending.prompt |= backfill;
                if self.journal {
                    journal_entry(&mut pending.batch, first, host, epoch, &name);
                }
            }
        }
    }

    /// The dashboard point of `m`, with rates from the host's previous
    /// sample when it is the one just before (same epoch and schema).
    fn point(&mut self, host: PublicKey, epoch: u64, m: &Metrics) -> Point {
        let values = Arc::new(m.values.clone());
        let prev = self.prev.entry(host).or_default();
        let point = match self.schemas.get(&m.schema_revision) {
            Some(entry) if entry.0.series_count() == m.values.len() => {
                let before = prev.iter().find(|p| {
                    p.epoch == epoch && p.seq + 1 == m.seq && p.revision == m.schema_revision
                });
                entry.1.point(
                    before.map(|p| (p.t_ms, p.values.as_slice())),
                    m.taken_at_ms,
                    &m.values,
                )
            }
            _ => Point {
                t_ms: m.taken_at_ms,
                fields: [f32::NAN; crate::history::FIELDS.len()],
                cores: Box::new([]),
            },
        };
        prev.push_back(Prev {
            epoch,
            seq: m.seq,
            t_ms: m.taken_at_ms,
            revision: m.schema_revision,
            values,
        });
        while prev.len() > 8 {
            prev.pop_front();
        }
        point
    }

    fn commit(&mut self, pending: Pending, ops: &mpsc::Receiver<Op>) {
        let mut pause = Duration::from_millis(100);
        let mut batch = pending.batch;
        batch.hosts = pending.seqs.iter().map(|(k, v)| (*k, v.clone())).collect();
        loop {
            let started = Instant::now();
            match self.store.commit(&batch) {
                Ok(()) => {
                    self.stats
                        .commit_nanos
                        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if self
                        .last_error_log
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                    {
                        error!(error = %e, samples = batch.samples.len(), "Cannot write to the history store; nothing is acknowledged until it works again (agents keep their samples). Trying again.");
                        self.last_error_log = Some(now);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                    // An I/O error sticks to an open redb file: reopen it.
                    if let Err(e) = self.store.recover() {
                        debug!(error = %e, "Cannot reopen the history store yet.");
                    }
                    // Stop trying when the collector stops.
                    if matches!(ops.try_recv(), Err(mpsc::TryRecvError::Disconnected)) {
                        return;
                    }
                }
            }
        }
        if self.last_error_log.take().is_some() {
            info!("The history store takes writes again.");
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.stored.fetch_add(batch.samples.len() as u64, Ordering::Relaxed);
        for (reason, n) in pending.lost {
            self.stats.lost[reason_index(reason)].fetch_add(n, Ordering::Relaxed);
        }
        let added: u64 = batch.samples.iter().map(|(_, s)| 64 + 8 * s.values.len() as u64).sum();
        self.stats.bytes.fetch_add(added, Ordering::Relaxed);
        for (host, s) in &batch.samples {
            let entry = self.recent.entry(*host).or_insert((0, s.t_ms));
            entry.0 += 1;
            entry.1 = entry.1.min(s.t_ms);
        }
        for (host, seq) in pending.seqs {
            self.seqs.insert(host, seq);
        }
        let acks: Vec<AckOut> = pending
            .ack
            .into_iter()
            .filter_map(|(host, prompt)| {
                let st = self.seqs.get(&host)?;
                Some(AckOut { host, epoch: st.epoch, seq: st.hw, prompt })
            })
            .collect();
        if !acks.is_empty() && self.acks.send(acks).is_ok() {
            let _ = (&self.poke).write(&[1]);
        }
        // Compaction of hosts with many recent entries, a few per batch.
        let due: Vec<PublicKey> = self
            .recent
            .iter()
            .filter(|(_, (n, _))| *n >= COMPACT_COUNT)
            .map(|(k, _)| *k)
            .take(16)
            .collect();
        for host in due {
            self.compact(host);
        }
    }

    fn compact(&mut self, host: PublicKey) {
        match self.store.compact(&host) {
            Ok(_) => {
                self.recent.remove(&host);
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(%host, error = %e, "Cannot compact a host's recent history; trying later.");
            }
        }
    }

    /// Compacts hosts whose recent entries are old.
    fn compact_old(&mut self) {
        let now = crate::time::now_ms();
        let old: Vec<PublicKey> = self
            .recent
            .iter()
            .filter(|(_, (_, oldest))| now.saturating_sub(*oldest) >= COMPACT_AGE_MS)
            .map(|(k, _)| *k)
            .collect();
        for host in old {
            self.compact(host);
        }
    }

    /// Enforces the retention.
    fn retain(&mut self) {
        let now = crate::time::now_ms();
        let before =
            now.saturating_sub(u64::try_from(self.retention.age.as_millis()).unwrap_or(u64::MAX));
        match self.store.retain(before, self.retention.bytes) {
            Ok(r) => self.stats.bytes.store(r.bytes, Ordering::Relaxed),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "Cannot enforce the history's retention; trying later.");
            }
        }
    }
}
