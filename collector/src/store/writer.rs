//! The store's own thread: takes what the router hands it, writes it in
//! batches (one durable transaction each), and hands back, per host, the
//! acknowledgements to send once a batch has committed.
//!
//! Live samples are gathered per host into runs ([`super::run`]) of up to
//! [`RUN_SAMPLES`] samples or [`RUN_AGE`], each written as one row: the
//! store's cost per sample is then a share of a row, not a row. A host's
//! run is written at once when its agent waits (a resume, a gap, a
//! backfill batch). Its samples are acknowledged only once written, so an
//! agent holds them until then, as it does any unacknowledged sample; the
//! acknowledgement pacer delays live acknowledgements by seconds anyway.
//! Runs wait in proportion to the fleet ([`RUN_FULL_FROM`]): a few hosts
//! are written at every commit, as before runs.
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

use super::{
    Batch, Store, StoredGap,
    block::Stored,
    run::{Run, RunBuilder},
    seqs::HostSeq,
};
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

/// Hosts compacted in one transaction at most.
const COMPACT_HOSTS: usize = 32;
/// Recent samples of a host compacted past this many...
const COMPACT_COUNT: usize = 300;
/// ...or once the oldest is this old.
const COMPACT_AGE_MS: u64 = 10 * 60_000;
/// How long a batch of live samples gathers before its commit.
const LIVE_WINDOW: Duration = Duration::from_millis(20);
/// How long a batch gathers when an agent waits for its acknowledgement.
const PROMPT_WINDOW: Duration = Duration::from_millis(5);
/// A host's run is written once it holds this many samples...
pub const RUN_SAMPLES: usize = 16;
/// ...or its first sample has waited this long, in a fleet of
/// [`RUN_FULL_FROM`] hosts or more. The acknowledgement pacer's
/// [`crate::acks::ACK_EVERY`] spaces live acknowledgements more than that,
/// so an agent hardly holds its samples longer.
pub const RUN_AGE: Duration = Duration::from_secs(4);
/// Runs wait in proportion to the fleet, up to [`RUN_AGE`] from this many
/// hosts: a small fleet costs the disk little whatever it does, and its
/// agents (some with spools of a few samples) get their acknowledgements
/// within milliseconds; a large one pays a row per host every few seconds.
pub const RUN_FULL_FROM: usize = 1_000;
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
        open: HashMap::new(),
        due: VecDeque::new(),
        runs_opened: 0,
        compact_queue: VecDeque::new(),
        compact_queued: HashSet::new(),
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
    /// Each host's accounted samples as committed.
    seqs: HashMap<PublicKey, HostSeq>,
    /// Hosts with samples or accounting not yet written.
    open: HashMap<PublicKey, Open>,
    /// When each open run is due, in that order (with its run's number,
    /// so a run written earlier for another reason is passed over).
    due: VecDeque<(Instant, PublicKey, u64)>,
    runs_opened: u64,
    /// Hosts to compact, in turn.
    compact_queue: VecDeque<PublicKey>,
    compact_queued: HashSet<PublicKey>,
    schemas: HashMap<u64, Arc<(Schema, Layout)>>,
    stored_schemas: HashSet<u64>,
    /// The last few samples of each host, for rates.
    prev: HashMap<PublicKey, VecDeque<Prev>>,
    /// Recent entries per host: how many samples, and the oldest's time.
    recent: HashMap<PublicKey, (usize, u64)>,
    retention: Retention,
    journal: bool,
    acks: mpsc::Sender<Vec<AckOut>>,
    poke: UnixStream,
    last_error_log: Option<Instant>,
}

/// A host's state not yet written: its accounting as it will be, its
/// finished runs and the one gathering. It is written whole, in one
/// transaction, so the stored accounting never claims a sample the store
/// lacks.
struct Open {
    seq: HostSeq,
    name: Arc<str>,
    done: Vec<Run>,
    run: Option<(RunBuilder, u64)>,
    /// Acknowledge once written, and whether promptly.
    ack: Option<bool>,
}

struct Prev {
    epoch: u64,
    seq: u64,
    t_ms: u64,
    revision: u64,
    values: Arc<Vec<f64>>,
}

/// One batch in the making.
#[derive(Default)]
struct Pending {
    batch: Batch,
    /// Hosts to write in this batch.
    write: HashSet<PublicKey>,
    /// Some agent waits for an acknowledgement of this batch.
    prompt: bool,
    lost: Vec<(GapReason, u64)>,
}

/// The export journal's entry for `run` of `host`.
fn journal_entry(host: PublicKey, name: &str, run: &Run) -> super::journal::Entry {
    super::journal::Entry {
        host,
        name: name.to_string(),
        epoch: run.epoch,
        from_seq: run.seqs.0,
        to_seq: run.seqs.1,
        from_ms: run.times.0,
        to_ms: run.times.1,
        count: run.count,
        total: 0,
    }
}

impl Writer {
    fn run(&mut self, ops: &mpsc::Receiver<Op>) {
        let mut next_maintenance = Instant::now() + Duration::from_secs(10);
        let mut next_retention = Instant::now() + Duration::from_secs(30);
        loop {
            let wait = self
                .due
                .front()
                .map_or(Duration::from_millis(250), |(at, _, _)| {
                    at.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(250));
            // Closed: what is gathered is written before the loop ends.
            let (first, mut closed) = match ops.recv_timeout(wait) {
                Ok(op) => (Some(op), false),
                Err(mpsc::RecvTimeoutError::Timeout) => (None, false),
                Err(mpsc::RecvTimeoutError::Disconnected) => (None, true),
            };
            let mut pending = Pending::default();
            if let Some(op) = first {
                let started = Instant::now();
                self.take(op, &mut pending);
                // Group commit: what arrives within a window, up to a
                // bound. A durable commit costs the same for one run as
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
            self.take_due(&mut pending, closed);
            if !pending.write.is_empty() || !pending.batch.schemas.is_empty() {
                self.commit(pending, ops);
            }
            self.compact_some();
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

    /// Adds the hosts whose runs are due (all of them when closing).
    fn take_due(&mut self, pending: &mut Pending, all: bool) {
        if all {
            pending.write.extend(self.open.keys().copied());
            self.due.clear();
            return;
        }
        let now = Instant::now();
        while let Some(&(at, host, number)) = self.due.front() {
            if at > now {
                break;
            }
            self.due.pop_front();
            if self.open.get(&host).is_some_and(|o| o.run.as_ref().is_some_and(|r| r.1 == number)) {
                pending.write.insert(host);
            }
        }
    }

    /// `host`'s open state, started from what is committed.
    fn open(&mut self, host: PublicKey, name: Option<&Arc<str>>) -> &mut Open {
        let seqs = &self.seqs;
        let open = self.open.entry(host).or_insert_with(|| Open {
            seq: seqs.get(&host).cloned().unwrap_or_default(),
            name: Arc::from(""),
            done: Vec::new(),
            run: None,
            ack: None,
        });
        if let Some(name) = name {
            open.name = Arc::clone(name);
        }
        open
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
                let open = self.open(host, None);
                let st = &mut open.seq;
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
                open.ack = Some(true);
                pending.write.insert(host);
                pending.prompt = true;
            }
            Op::Gap { host, gap } => {
                let open = self.open(host, None);
                let st = &mut open.seq;
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
                open.ack = Some(true);
                pending.write.insert(host);
                pending.prompt = true;
            }
            Op::Samples { host, epoch, name, samples, point: given } => {
                // A live sample comes alone; a backfill batch in many, and
                // its agent waits for the answer.
                let backfill = samples.len() > 1;
                let samples_len = samples.len();
                {
                    let st = &mut self.open(host, Some(&name)).seq;
                    if st.epoch != epoch {
                        st.restart(epoch);
                    }
                }
                for m in samples {
                    if self.open(host, None).seq.has(m.seq) {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let point = match (&given, samples_len) {
                        (Some(p), 1) => p.clone(),
                        _ => self.point(host, epoch, &m),
                    };
                    let stored = Stored {
                        epoch,
                        seq: m.seq,
                        t_ms: m.taken_at_ms,
                        revision: m.schema_revision,
                        values: m.values,
                        point,
                    };
                    self.gather(host, &stored, pending);
                }
                let open = self.open(host, None);
                open.ack = Some(open.ack.unwrap_or(false) || backfill);
                // Nothing new gathered (all duplicates): answered now, as
                // no run will come due.
                let gathered = open.run.is_some() || !open.done.is_empty();
                if backfill || !gathered {
                    pending.write.insert(host);
                }
                pending.prompt |= backfill;
            }
        }
    }

    /// Adds a new sample to its host's run.
    fn gather(&mut self, host: PublicKey, s: &Stored, pending: &mut Pending) {
        let number = self.runs_opened;
        let open = self.open(host, None);
        open.seq.add(s.seq, s.seq);
        if open.run.as_ref().is_some_and(|(run, _)| !run.fits(s.epoch, s.revision)) {
            // A new epoch or schema starts a new run; both are written
            // together.
            if let Some((run, _)) = open.run.take() {
                open.done.push(run.finish());
            }
        }
        let opened = open.run.is_none();
        let (run, _) =
            open.run.get_or_insert_with(|| (RunBuilder::new(s.epoch, s.revision), number));
        run.push(s);
        if run.len() >= RUN_SAMPLES {
            pending.write.insert(host);
        }
        if opened {
            self.runs_opened += 1;
            let age = RUN_AGE.mul_f64((self.seqs.len() as f64 / RUN_FULL_FROM as f64).min(1.0));
            self.due.push_back((Instant::now() + age, host, number));
        }
    }

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

    fn commit(&mut self, mut pending: Pending, ops: &mpsc::Receiver<Op>) {
        let mut pause = Duration::from_millis(100);
        let mut written: Vec<(PublicKey, Open)> = Vec::with_capacity(pending.write.len());
        for host in pending.write.drain() {
            let Some(mut open) = self.open.remove(&host) else { continue };
            if let Some((run, _)) = open.run.take() {
                open.done.push(run.finish());
            }
            for run in open.done.drain(..) {
                if self.journal {
                    pending.batch.journal.push(journal_entry(host, &open.name, &run));
                }
                pending.batch.samples.push((host, run));
            }
            pending.batch.hosts.push((host, open.seq.clone()));
            written.push((host, open));
        }
        let batch = pending.batch;
        let samples: u64 = batch.samples.iter().map(|(_, r)| r.count).sum();
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
                        error!(error = %e, samples, "Cannot write to the history store; nothing is acknowledged until it works again (agents keep their samples). Trying again.");
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
        self.stats.stored.fetch_add(samples, Ordering::Relaxed);
        for (reason, n) in pending.lost {
            self.stats.lost[reason_index(reason)].fetch_add(n, Ordering::Relaxed);
        }
        let added: u64 = batch.samples.iter().map(|(_, r)| r.bytes.len() as u64).sum();
        self.stats.bytes.fetch_add(added, Ordering::Relaxed);
        // Hosts with enough recent samples are compacted, a few per batch
        // (only this batch's hosts can have just passed the mark).
        for (host, run) in &batch.samples {
            let entry = self.recent.entry(*host).or_insert((0, run.times.0));
            entry.0 += run.count as usize;
            entry.1 = entry.1.min(run.times.0);
            if entry.0 >= COMPACT_COUNT {
                self.queue_compaction(*host);
            }
        }
        let mut acks = Vec::new();
        for (host, open) in written {
            if let Some(prompt) = open.ack {
                acks.push(AckOut { host, epoch: open.seq.epoch, seq: open.seq.hw, prompt });
            }
            self.seqs.insert(host, open.seq);
        }
        if !acks.is_empty() && self.acks.send(acks).is_ok() {
            let _ = (&self.poke).write(&[1]);
        }
    }

    /// Queues `host` for compaction.
    fn queue_compaction(&mut self, host: PublicKey) {
        if self.compact_queued.insert(host) {
            self.compact_queue.push_back(host);
        }
    }

    /// Compacts the next few queued hosts, in one transaction.
    fn compact_some(&mut self) {
        let n = self.compact_queue.len().min(COMPACT_HOSTS);
        if n == 0 {
            return;
        }
        let hosts: Vec<PublicKey> = self.compact_queue.drain(..n).collect();
        match self.store.compact(&hosts) {
            Ok(_) => {
                for host in &hosts {
                    self.recent.remove(host);
                    self.compact_queued.remove(host);
                }
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(hosts = hosts.len(), error = %e, "Cannot compact hosts' recent history; trying later.");
                self.compact_queue.extend(hosts);
            }
        }
    }

    /// Queues hosts whose recent entries are old.
    fn compact_old(&mut self) {
        let now = crate::time::now_ms();
        let old: Vec<PublicKey> = self
            .recent
            .iter()
            .filter(|(_, (_, oldest))| now.saturating_sub(*oldest) >= COMPACT_AGE_MS)
            .map(|(k, _)| *k)
            .collect();
        for host in old {
            self.queue_compaction(host);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;

    fn key(i: usize) -> PublicKey {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        PublicKey::from_bytes(k)
    }

    fn live(host: PublicKey, seq: u64) -> Op {
        Op::Samples {
            host,
            epoch: 9,
            name: Arc::from("h"),
            point: None,
            samples: vec![Metrics {
                seq,
                taken_at_ms: 1_000_000 + seq * 1_000,
                schema_revision: 5,
                values: vec![seq as f64, 1e9 + (seq * seq) as f64, 0.5],
            }],
        }
    }

    /// Acknowledgements for `host` until one reaches `seq` (or none within
    /// the deadline).
    fn acked(handle: &Handle, host: PublicKey, seq: u64, limit: Duration) -> Option<u64> {
        let deadline = Instant::now() + limit;
        let mut best = None;
        while Instant::now() < deadline {
            for ack in handle.take_acks().into_iter().filter(|a| a.host == host) {
                best = best.max(Some(ack.seq));
            }
            if best >= Some(seq) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        best
    }

    #[test]
    fn a_large_fleet_is_written_in_runs_acknowledged_once_written_and_kept_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        let retention = Retention { age: Duration::from_secs(86_400), bytes: u64::MAX };
        let handle = start(Arc::clone(&store) as Arc<dyn Store>, retention, false).unwrap();
        // A fleet of RUN_FULL_FROM hosts: runs wait their full age.
        for i in 0..RUN_FULL_FROM {
            let resume = Resume { epoch: 9, oldest_seq: 1, next_seq: 1 };
            assert!(handle.send(Op::Resume { host: key(i), resume }));
        }
        let host = key(0);
        assert_eq!(acked(&handle, host, 0, Duration::from_secs(10)), Some(0));
        // Not yet a full run: nothing stored, nothing acknowledged.
        for seq in 1..RUN_SAMPLES as u64 {
            assert!(handle.send(live(host, seq)));
        }
        assert_eq!(acked(&handle, host, 1, RUN_AGE / 4), None);
        assert!(store.samples(&host, 0, u64::MAX).unwrap().items.is_empty());
        // The run's last sample: written as one row, then acknowledged.
        assert!(handle.send(live(host, RUN_SAMPLES as u64)));
        assert_eq!(acked(&handle, host, RUN_SAMPLES as u64, Duration::from_secs(10)), Some(16));
        let read = store.samples(&host, 0, u64::MAX).unwrap();
        let seqs: Vec<u64> = read.items.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (1..=16).collect::<Vec<_>>());
        assert!(read.items.iter().all(|s| s.values[1] == 1e9 + (s.seq * s.seq) as f64));
        // A resent sample of the run is a duplicate, answered at once.
        assert!(handle.send(live(host, 3)));
        assert_eq!(acked(&handle, host, 16, Duration::from_secs(10)), Some(16));
        assert_eq!(handle.stats.duplicates.load(Ordering::Relaxed), 1);
        // A run under way is written when its age passes...
        assert!(handle.send(live(host, 17)));
        assert_eq!(acked(&handle, host, 17, RUN_AGE * 3), Some(17));
        // ...and what is still gathering when the writer stops.
        for seq in 18..=20 {
            assert!(handle.send(live(host, seq)));
        }
        handle.stop();
        let seqs: Vec<u64> =
            store.samples(&host, 0, u64::MAX).unwrap().items.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        let accounted = store.hosts().unwrap().into_iter().find(|(k, _)| *k == host).unwrap().1;
        assert_eq!(accounted.hw, 20);
    }
}
