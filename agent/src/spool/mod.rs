//! The agent's spool: every sample it takes, until the collector says it
//! is stored.
//!
//! Samples are appended to segment files in the spool directory
//! (`--spool-dir`, `/var/lib/curvemon/spool` by default) as they are taken,
//! connected or not; an acknowledgement from the collector deletes every
//! segment it covers. The spool is bounded (`--spool-size`, 64 MiB by
//! default): past it the oldest segment goes, and its unacknowledged
//! samples become a [`Gap`] that is kept in the state file and reported to
//! the collector, so a loss is counted and shown, never silent.
//!
//! Durability: a record is written with one `write` as it is taken, so it
//! survives the agent being killed; a sample still unacknowledged
//! `sync_every` (10 s) after it was written is synced, and everything on
//! shutdown, so a power loss costs at most that much (what the collector
//! acknowledged is durable there: a connected agent rarely syncs at all).
//! Reading back tolerates what a crash or a bad disk leaves: a torn
//! record at the end is cut off, a damaged record is skipped (see
//! [`segment`]), and the samples it held are reported as a gap.
//!
//! Without a directory (`--spool-dir off`), or while the disk refuses
//! writes (full, read-only), records are kept in memory up to
//! `memory_bytes`; what overflows that is dropped, oldest first, and
//! reported the same way. A disk that works again takes the memory's
//! records first, in order.

pub mod segment;
pub mod state;

use std::{
    collections::VecDeque,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use curvemon_protocol::{Gap, GapReason, Metrics, Schema};
use thiserror::Error;
use tracing::{error, info, warn};

pub use segment::Record;
use state::State;

/// The default spool directory.
pub const DEFAULT_DIR: &str = "/var/lib/curvemon/spool";
/// The default bound of the spool on disk.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// The default bound of records held in memory (no directory, or a disk
/// refusing writes).
pub const DEFAULT_MEMORY_BYTES: u64 = 4 << 20;
/// How often the active segment is synced to disk.
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_secs(10);

/// How the spool is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory; `None` keeps the spool in memory.
    pub dir: Option<PathBuf>,
    /// Whether the directory was named by the operator (an unusable one is
    /// then an error, not a fall-back to memory).
    pub dir_explicit: bool,
    /// Bytes on disk at most.
    pub max_bytes: u64,
    /// Bytes of records in memory at most.
    pub memory_bytes: u64,
    /// How often the active segment is synced.
    pub sync_every: Duration,
    /// The agent's sampling interval (how many samples a power loss can
    /// take with it).
    pub interval: Duration,
    /// The host's boot id (a change after an unclean stop means the host
    /// itself stopped: a crash or a power loss).
    pub boot_id: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: Some(PathBuf::from(DEFAULT_DIR)),
            dir_explicit: false,
            max_bytes: DEFAULT_MAX_BYTES,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            sync_every: DEFAULT_SYNC_EVERY,
            interval: Duration::from_secs(5),
            boot_id: String::new(),
        }
    }
}

/// Sequence numbers reserved ahead in the state file, so that none is
/// used twice whatever happens to the process.
const RESERVE: u64 = 3_600;

/// Why a spool could not be opened.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// The directory cannot be created, read or written.
    #[error("spool directory {}: {error}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// Another agent holds the directory.
    #[error("spool directory {} is in use by another agent (its lock file is held)", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
}

/// What a segment file holds, without its records.
#[derive(Debug, Clone)]
struct SegmentMeta {
    path: PathBuf,
    /// Samples in it.
    samples: u64,
    first_seq: u64,
    last_seq: u64,
    first_ms: u64,
    last_ms: u64,
    bytes: u64,
}

/// A record kept in memory.
#[derive(Debug, Clone)]
struct Held {
    /// The sample's sequence number (for a schema: the next sample's).
    seq: u64,
    record: Record,
    bytes: u64,
}

/// Counts for the agent's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Samples dropped because the spool was full or failing.
    pub dropped: u64,
    /// Writes, syncs or reads of the spool that failed.
    pub errors: u64,
    /// Bytes found damaged when reading segments back.
    pub damaged_bytes: u64,
}

/// The spool.
pub struct Spool {
    config: Config,
    dir: Option<PathBuf>,
    /// Held while the spool is open: one agent per directory.
    _lock: Option<File>,
    epoch: u64,
    next_seq: u64,
    /// Sequence numbers below this are recorded as possibly used.
    reserved: u64,
    acked: u64,
    segments: VecDeque<SegmentMeta>,
    active: Option<File>,
    /// Samples written since the last sync and not acknowledged, with when
    /// they were written: a sync is due when the oldest is `sync_every`
    /// old. What the collector acknowledged is durable there, so a spool
    /// that is acknowledged within seconds never needs to sync.
    unsynced: VecDeque<(u64, Instant)>,
    memory: VecDeque<Held>,
    memory_bytes: u64,
    /// The revision of the last schema appended (to disk or memory).
    last_revision: Option<u64>,
    /// The last schema written to disk: every segment starts with the
    /// schema its first samples use.
    disk_schema: Option<Schema>,
    gaps: Vec<Gap>,
    /// The counts.
    pub counts: Counts,
    state_dirty: bool,
    last_state: Instant,
    /// The disk refused a write; retried at the next tick.
    disk_failed: bool,
    last_error_log: Option<Instant>,
    /// The last segment read back, for consecutive backfill reads.
    cache: Option<(u64, Vec<Record>)>,
    /// The acknowledgement file, rewritten in place on every ack.
    ack_file: Option<File>,
}

fn random_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes).max(1)
}

impl Spool {
    /// Opens (or creates) the spool. An unusable directory that the
    /// operator did not name is logged and the spool kept in memory.
    ///
    /// # Errors
    /// A directory the operator named cannot be used.
    pub fn open(config: Config) -> Result<Spool, SpoolError> {
        let mut spool = Spool {
            dir: None,
            _lock: None,
            epoch: random_epoch(),
            next_seq: 1,
            reserved: 0,
            acked: 0,
            segments: VecDeque::new(),
            active: None,
            unsynced: VecDeque::new(),
            memory: VecDeque::new(),
            memory_bytes: 0,
            last_revision: None,
            disk_schema: None,
            gaps: Vec::new(),
            counts: Counts::default(),
            state_dirty: false,
            last_state: Instant::now(),
            disk_failed: false,
            last_error_log: None,
            cache: None,
            ack_file: None,
            config,
        };
        let Some(dir) = spool.config.dir.clone() else {
            info!(
                memory_bytes = spool.config.memory_bytes,
                "Spool in memory only (--spool-dir off): samples taken while the collector is away are lost if the agent stops."
            );
            return Ok(spool);
        };
        match spool.open_dir(&dir) {
            Ok(()) => Ok(spool),
            Err(e) if spool.config.dir_explicit => Err(e),
            Err(e) => {
                warn!(error = %e, "Cannot use the default spool directory; keeping the spool in memory (set --spool-dir to a writable directory, or off).");
                Ok(spool)
            }
        }
    }

    fn open_dir(&mut self, dir: &Path) -> Result<(), SpoolError> {
        let failed = |error| SpoolError::Dir { path: dir.to_path_buf(), error };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let lock = File::create(dir.join("lock")).map_err(failed)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(SpoolError::Locked { path: dir.to_path_buf() });
        }
        let state = State::load(&dir.join("state"));
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(failed)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| segment::first_seq_of(p).is_some())
            .collect();
        paths.sort_by_key(|p| segment::first_seq_of(p));
        // The epoch: the state's, else the newest segment's, else new.
        let newest_epoch = paths.iter().rev().find_map(|p| segment::epoch(p).ok().flatten());
        self.epoch = state.as_ref().map(|s| s.epoch).or(newest_epoch).unwrap_or(self.epoch);
        if let Some(state) = &state {
            self.acked = state.acked;
            self.gaps = state.gaps.clone();
        }
        // The newest acknowledgement is in its own small file.
        if let Some(acked) = state::load_ack(&dir.join(state::ACK_FILE), self.epoch) {
            self.acked = self.acked.max(acked);
            let acked = self.acked;
            self.gaps.retain(|g| g.to_seq > acked);
        }
        // Holes are counted from the last acknowledged sample on.
        let mut previous: Option<(u64, u64)> = None;
        let mut expected = self.acked + 1;
        for path in paths {
            match segment::epoch(&path) {
                Ok(Some(epoch)) if epoch == self.epoch => {}
                other => {
                    warn!(segment = %path.display(), ?other, epoch = self.epoch, "Removing a spool segment of another epoch or format; its samples cannot be sent.");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            }
            let scan = segment::scan(&path).map_err(failed)?;
            if scan.torn {
                warn!(segment = %path.display(), end = scan.end, "Cut a torn record off the end of a spool segment (a write the agent did not finish).");
                segment::truncate(&path, scan.end).map_err(failed)?;
            }
            if scan.damaged > 0 {
                self.counts.damaged_bytes += scan.damaged;
                error!(segment = %path.display(), bytes = scan.damaged, "Skipped damaged bytes in a spool segment; the samples they held are reported as lost.");
            }
            let samples: Vec<&Metrics> = scan
                .records
                .iter()
                .filter_map(|(r, _)| match r {
                    Record::Sample(m) => Some(m),
                    Record::Schema(_) => None,
                })
                .collect();
            let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            // Samples missing between records (damage) are lost.
            let mut before_ms = previous.map_or(first.taken_at_ms, |(_, ms)| ms);
            for m in &samples {
                if m.seq > expected && m.seq > self.acked + 1 {
                    let from_seq = expected.max(self.acked + 1);
                    self.lose(
                        from_seq,
                        m.seq - 1,
                        before_ms,
                        m.taken_at_ms,
                        GapReason::SpoolFailed,
                    );
                }
                expected = expected.max(m.seq + 1);
                before_ms = m.taken_at_ms;
            }
            previous = Some((last.seq, last.taken_at_ms));
            self.next_seq = self.next_seq.max(last.seq + 1);
            let bytes = std::fs::metadata(&path).map_or(scan.end, |m| m.len());
            let sample_count = samples.len() as u64;
            if let Some(schema) = scan.records.iter().rev().find_map(|(r, _)| match r {
                Record::Schema(s) => Some(s.clone()),
                Record::Sample(_) => None,
            }) {
                self.disk_schema = Some(schema);
            }
            self.segments.push_back(SegmentMeta {
                path,
                samples: sample_count,
                first_seq: first.seq,
                last_seq: last.seq,
                first_ms: first.taken_at_ms,
                last_ms: last.taken_at_ms,
                bytes,
            });
        }
        self.next_seq = self.next_seq.max(self.acked + 1);
        if let Some(state) = &state {
            let (_, held_ms) = previous.unwrap_or((self.acked, 0));
            let ms = if held_ms > 0 { held_ms } else { now_ms() };
            let from = self.next_seq;
            if state.next > from {
                // Numbers up to state.next may have been used: after a
                // clean stop by samples that are now gone (damaged); after
                // an unclean one some were reserved and never used, and
                // none is given out again.
                let to = state.next - 1;
                if state.clean {
                    self.lose(from, to, ms, ms, GapReason::SpoolFailed);
                } else {
                    let host_stopped =
                        !state.boot_id.is_empty() && state.boot_id != self.config.boot_id;
                    let mut skip_from = from;
                    if host_stopped {
                        // The host stopped under the agent (a crash, a power
                        // loss): the samples of its last unsynced seconds
                        // may be gone.
                        let window = self.config.sync_every.as_millis()
                            / self.config.interval.as_millis().max(1);
                        let window = u64::try_from(window).unwrap_or(u64::MAX).saturating_add(2);
                        let unsynced_to = to.min(from.saturating_add(window - 1));
                        self.lose(from, unsynced_to, ms, ms, GapReason::Unsynced);
                        skip_from = unsynced_to + 1;
                    }
                    if skip_from <= to {
                        self.lose(skip_from, to, ms, ms, GapReason::Skipped);
                    }
                }
                self.next_seq = state.next;
            }
        }
        self.dir = Some(dir.to_path_buf());
        self._lock = Some(lock);
        // Acknowledged segments left by a crash between ack and delete.
        self.forget_acked();
        self.reserved = self.next_seq + RESERVE;
        self.write_state(true);
        info!(
            dir = %dir.display(),
            epoch = self.epoch,
            next_seq = self.next_seq,
            held = self.held(),
            bytes = self.disk_bytes(),
            "Opened the spool."
        );
        Ok(())
    }

    /// The spool's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number the next sample gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The oldest sample held (or [`Spool::next_seq`] when none is).
    pub fn oldest_seq(&self) -> u64 {
        let disk = self.segments.front().map(|s| s.first_seq.max(self.acked + 1));
        let memory =
            self.memory.iter().find(|h| matches!(h.record, Record::Sample(_))).map(|h| h.seq);
        disk.or(memory).unwrap_or(self.next_seq).min(self.next_seq)
    }

    /// Samples held and not acknowledged.
    pub fn held(&self) -> u64 {
        self.next_seq.saturating_sub(self.oldest_seq())
    }

    /// Bytes of segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Gaps not yet acknowledged, to report after each resume.
    pub fn gaps(&self) -> &[Gap] {
        &self.gaps
    }

    /// Takes the next sequence number for a sample about to be appended
    /// (extending the reservation in the state file when it runs out).
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.next_seq > self.reserved {
            self.reserved = self.next_seq + RESERVE;
            self.write_state(true);
        }
        seq
    }

    /// Appends a sample (with its schema when the revision changed), to
    /// disk if it can, else to memory.
    pub fn append(&mut self, sample: Metrics, schema: impl FnOnce() -> Schema) {
        let seq = sample.seq;
        self.next_seq = self.next_seq.max(seq + 1);
        let mut records = Vec::with_capacity(2);
        let revision = sample.schema_revision;
        if self.last_revision != Some(revision) {
            records.push(Record::Schema(schema()));
        }
        records.push(Record::Sample(sample));
        if self.dir.is_some() && !self.disk_failed {
            self.flush_memory_to_disk();
        }
        if self.dir.is_some() && !self.disk_failed && self.memory.is_empty() {
            match self.write_disk(seq, &records) {
                Ok(()) => {
                    self.last_revision = Some(revision);
                    self.enforce_disk_bound();
                    return;
                }
                Err(e) => self.disk_error(&e),
            }
        }
        for record in records {
            self.hold(seq, record);
        }
        self.last_revision = Some(revision);
    }

    fn needs_new_segment(&self) -> bool {
        self.active.is_none()
            || self.segments.back().is_none_or(|s| s.bytes >= self.segment_bytes())
    }

    /// A sixteenth of the bound, between 4 KiB and 1 MiB: overflow drops
    /// the oldest sixteenth at most.
    fn segment_bytes(&self) -> u64 {
        (self.config.max_bytes / 16).clamp(4 << 10, 1 << 20)
    }

    fn write_disk(&mut self, seq: u64, records: &[Record]) -> std::io::Result<()> {
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        let mut bytes = Vec::new();
        if self.needs_new_segment() {
            self.sync_active();
            let path = segment::name(&dir, seq);
            let file = segment::create(&path, self.epoch)?;
            self.active = Some(file);
            self.segments.push_back(SegmentMeta {
                path,
                samples: 0,
                first_seq: seq,
                last_seq: seq,
                first_ms: 0,
                last_ms: 0,
                bytes: segment::HEADER,
            });
            // Each segment says which schema its first samples use.
            if !matches!(records.first(), Some(Record::Schema(_)))
                && let Some(schema) = &self.disk_schema
            {
                bytes.extend_from_slice(&segment::framed(&Record::Schema(schema.clone())));
            }
        }
        for record in records {
            bytes.extend_from_slice(&segment::framed(record));
        }
        let Some(file) = self.active.as_mut() else { return Ok(()) };
        if let Err(e) = file.write_all(&bytes) {
            // A partial record may be on disk: the next open cuts it off;
            // meanwhile a new segment takes the next writes.
            self.active = None;
            return Err(e);
        }
        if let Some(seq) = records.iter().rev().find_map(|r| match r {
            Record::Sample(m) => Some(m.seq),
            Record::Schema(_) => None,
        }) {
            self.unsynced.push_back((seq, Instant::now()));
        }
        if let Some(meta) = self.segments.back_mut() {
            meta.bytes += bytes.len() as u64;
            for record in records {
                match record {
                    Record::Sample(m) => {
                        if meta.samples == 0 {
                            meta.first_seq = m.seq;
                            meta.first_ms = m.taken_at_ms;
                        }
                        meta.samples += 1;
                        meta.last_seq = m.seq;
                        meta.last_ms = m.taken_at_ms;
                    }
                    Record::Schema(s) => self.disk_schema = Some(s.clone()),
                }
            }
        }
        Ok(())
    }

    fn disk_error(&mut self, e: &std::io::Error) {
        self.counts.errors += 1;
        self.disk_failed = true;
        self.last_revision = None;
        let now = Instant::now();
        if self.last_error_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            error!(error = %e, dir = ?self.dir, memory_bytes = self.config.memory_bytes, "Cannot write the spool; keeping samples in memory until the disk takes them again.");
            self.last_error_log = Some(now);
        }
    }

    /// Keeps a record in memory, dropping the oldest past the bound.
    fn hold(&mut self, seq: u64, record: Record) {
        let bytes = match &record {
            Record::Sample(m) => 64 + 8 * m.values.len() as u64,
            Record::Schema(_) => 4096,
        };
        self.memory_bytes += bytes;
        self.memory.push_back(Held { seq, record, bytes });
        let reason = if self.dir.is_some() { GapReason::SpoolFailed } else { GapReason::SpoolFull };
        let mut lost: Option<(u64, u64, u64, u64)> = None;
        while self.memory_bytes > self.config.memory_bytes && self.memory.len() > 1 {
            let Some(old) = self.memory.pop_front() else { break };
            self.memory_bytes -= old.bytes;
            if let Record::Sample(m) = &old.record
                && m.seq > self.acked
            {
                let l = lost.get_or_insert((m.seq, m.seq, m.taken_at_ms, m.taken_at_ms));
                l.1 = m.seq;
                l.3 = m.taken_at_ms;
            }
        }
        if let Some((from, to, from_ms, to_ms)) = lost {
            self.lose(from, to, from_ms, to_ms, reason);
        }
    }

    /// Records a loss: counted, kept as a gap until acknowledged, logged.
    /// (Skipped numbers are reported the same way but lose nothing.)
    fn lose(&mut self, from_seq: u64, to_seq: u64, from_ms: u64, to_ms: u64, reason: GapReason) {
        // Only what no gap reports yet (a reopen finds holes again).
        let mut parts = vec![(from_seq, to_seq)];
        for g in &self.gaps {
            parts = parts
                .into_iter()
                .flat_map(|(a, b)| {
                    let mut keep = Vec::new();
                    if a < g.from_seq {
                        keep.push((a, b.min(g.from_seq - 1)));
                    }
                    if b > g.to_seq {
                        keep.push((a.max(g.to_seq + 1), b));
                    }
                    keep
                })
                .collect();
        }
        for (from_seq, to_seq) in parts {
            self.lose_new(from_seq, to_seq, from_ms, to_ms, reason);
        }
        self.gaps.sort_by_key(|g| g.from_seq);
        self.write_state(true);
    }

    fn lose_new(
        &mut self,
        from_seq: u64,
        to_seq: u64,
        from_ms: u64,
        to_ms: u64,
        reason: GapReason,
    ) {
        let n = to_seq - from_seq + 1;
        match reason {
            GapReason::Skipped => {
                info!(
                    from_seq,
                    to_seq,
                    "The agent stopped without a clean shutdown; it does not reuse the sequence numbers it had reserved."
                );
            }
            GapReason::SpoolFull => {
                self.counts.dropped += n;
                warn!(
                    from_seq,
                    to_seq,
                    samples = n,
                    "The spool is full: dropped its oldest samples; the collector will be told."
                );
            }
            _ => {
                self.counts.dropped += n;
                warn!(
                    from_seq,
                    to_seq,
                    samples = n,
                    reason = reason.as_str(),
                    "Samples were lost from the spool; the collector will be told."
                );
            }
        }
        match self.gaps.iter_mut().find(|g| g.to_seq + 1 == from_seq && g.reason == reason) {
            Some(g) => {
                g.to_seq = to_seq;
                g.to_ms = to_ms;
            }
            None => {
                self.gaps.push(Gap { epoch: self.epoch, from_seq, to_seq, from_ms, to_ms, reason })
            }
        }
    }

    /// Deletes the oldest segments while the spool is over its bound.
    fn enforce_disk_bound(&mut self) {
        while self.disk_bytes() > self.config.max_bytes && self.segments.len() > 1 {
            let Some(old) = self.segments.pop_front() else { break };
            if old.last_seq > self.acked {
                let from_seq = old.first_seq.max(self.acked + 1);
                let from_ms = if from_seq == old.first_seq {
                    old.first_ms
                } else {
                    first_ms_after(&old.path, self.acked).unwrap_or(old.first_ms)
                };
                self.lose(from_seq, old.last_seq, from_ms, old.last_ms, GapReason::SpoolFull);
            }
            self.remove(&old.path);
        }
    }

    fn remove(&mut self, path: &Path) {
        if self.cache.as_ref().is_some_and(|(first, _)| segment::first_seq_of(path) == Some(*first))
        {
            self.cache = None;
        }
        if let Err(e) = std::fs::remove_file(path) {
            self.counts.errors += 1;
            warn!(segment = %path.display(), error = %e, "Cannot delete a spool segment.");
        }
    }

    /// Writes what memory holds to disk, oldest first, once the disk takes
    /// writes again.
    fn flush_memory_to_disk(&mut self) {
        while let Some(held) = self.memory.front() {
            let (seq, record) = (held.seq, held.record.clone());
            if let Err(e) = self.write_disk(seq, std::slice::from_ref(&record)) {
                self.disk_error(&e);
                return;
            }
            if let Some(held) = self.memory.pop_front() {
                self.memory_bytes -= held.bytes;
            }
        }
    }

    /// The collector stored every sample of `epoch` up to `seq`.
    pub fn ack(&mut self, epoch: u64, seq: u64) {
        if epoch != self.epoch || seq <= self.acked {
            return;
        }
        self.acked = seq.min(self.next_seq.saturating_sub(1));
        let gaps = self.gaps.len();
        self.forget_acked();
        while self.unsynced.front().is_some_and(|(seq, _)| *seq <= self.acked) {
            self.unsynced.pop_front();
        }
        // At once (without a sync): an acknowledged sample must not come
        // back after the agent is killed. One write in place, not a new
        // state file: at a 1 s interval an ack a second.
        self.write_ack();
        if self.gaps.len() != gaps {
            self.write_state(false);
        }
    }

    fn write_ack(&mut self) {
        let Some(dir) = &self.dir else { return };
        if self.ack_file.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(state::ACK_FILE))
            {
                Ok(file) => self.ack_file = Some(file),
                Err(e) => {
                    self.counts.errors += 1;
                    warn!(error = %e, "Cannot open the spool's acknowledgement file.");
                    self.write_state(false);
                    return;
                }
            }
        }
        let Some(file) = &self.ack_file else { return };
        if let Err(e) = std::os::unix::fs::FileExt::write_all_at(
            file,
            &state::ack_bytes(self.epoch, self.acked),
            0,
        ) {
            self.counts.errors += 1;
            self.ack_file = None;
            warn!(error = %e, "Cannot write the spool's acknowledgement file; writing the state file instead.");
            self.write_state(false);
        }
    }

    fn forget_acked(&mut self) {
        // The segment being written stays (and is written on) until it is
        // full: creating and deleting a file per acknowledgement costs
        // more than the sample.
        while self.segments.front().is_some_and(|s| s.last_seq <= self.acked)
            && (self.segments.len() > 1 || self.active.is_none())
        {
            let Some(old) = self.segments.pop_front() else { break };
            if self.segments.is_empty() {
                self.active = None;
            }
            self.remove(&old.path);
        }
        while self.memory.front().is_some_and(|h| h.seq <= self.acked) {
            if let Some(h) = self.memory.pop_front() {
                self.memory_bytes -= h.bytes;
            }
        }
        let acked = self.acked;
        self.gaps.retain(|g| g.to_seq > acked);
    }

    /// Up to `max` samples after `after_seq`, oldest first, each run of
    /// them preceded by its schema record.
    pub fn read_after(&mut self, after_seq: u64, max: usize) -> Vec<Record> {
        let after_seq = after_seq.max(self.acked);
        let mut out = Vec::new();
        let mut taken = 0;
        let metas: Vec<SegmentMeta> =
            self.segments.iter().filter(|s| s.last_seq > after_seq).cloned().collect();
        for meta in metas {
            if taken >= max {
                break;
            }
            let records = match &self.cache {
                Some((first, records))
                    if *first == meta.first_seq && meta.last_seq <= last_seq(records) =>
                {
                    records.clone()
                }
                _ => match segment::scan(&meta.path) {
                    Ok(scan) => {
                        let records: Vec<Record> =
                            scan.records.into_iter().map(|(r, _)| r).collect();
                        self.cache = Some((meta.first_seq, records.clone()));
                        records
                    }
                    Err(e) => {
                        self.counts.errors += 1;
                        warn!(segment = %meta.path.display(), error = %e, "Cannot read a spool segment back.");
                        continue;
                    }
                },
            };
            taken += take_after(&records, after_seq, max - taken, &mut out);
        }
        if taken < max {
            let records: Vec<Record> = self.memory.iter().map(|h| h.record.clone()).collect();
            take_after(&records, after_seq, max - taken, &mut out);
        }
        out
    }

    /// Syncs the active segment and writes the state when due; tries the
    /// disk again after a failure. Called every second or so.
    pub fn tick(&mut self, now: Instant) {
        if self.disk_failed && self.dir.is_some() {
            self.disk_failed = false;
            self.flush_memory_to_disk();
            if !self.disk_failed {
                info!("The spool's disk takes writes again.");
            }
        }
        if self
            .unsynced
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= self.config.sync_every)
        {
            self.sync_active();
        }
        if self.state_dirty && now.duration_since(self.last_state) >= Duration::from_secs(2) {
            self.write_state(true);
        }
    }

    fn sync_active(&mut self) {
        if let Some(file) = &self.active
            && let Err(e) = file.sync_data()
        {
            self.counts.errors += 1;
            warn!(error = %e, "Cannot sync the spool.");
        }
        self.unsynced.clear();
    }

    fn write_state(&mut self, sync: bool) {
        self.write_state_as(sync, false);
    }

    fn write_state_as(&mut self, sync: bool, clean: bool) {
        let Some(dir) = &self.dir else {
            self.state_dirty = false;
            return;
        };
        let state = State {
            epoch: self.epoch,
            acked: self.acked,
            next: if clean { self.next_seq } else { self.reserved.max(self.next_seq) },
            clean,
            boot_id: self.config.boot_id.clone(),
            gaps: self.gaps.clone(),
        };
        self.last_state = Instant::now();
        match state.store(&dir.join("state"), sync) {
            Ok(()) => self.state_dirty = false,
            Err(e) => {
                self.counts.errors += 1;
                let now = Instant::now();
                if self
                    .last_error_log
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                {
                    error!(error = %e, dir = %dir.display(), "Cannot write the spool's state file.");
                    self.last_error_log = Some(now);
                }
            }
        }
    }

    /// The spool's health, sampled with the host.
    pub fn families(&self) -> Vec<crate::collectors::FamilySample> {
        use crate::collectors::FamilySample;
        use curvemon_protocol::Kind::{Counter, Gauge};
        vec![
            FamilySample::single(
                "curvemon_agent_spool_samples",
                "Samples the spool holds that the collector has not acknowledged.",
                Gauge,
                self.held() as f64,
            ),
            FamilySample::single(
                "curvemon_agent_spool_bytes",
                "Bytes of the spool on disk.",
                Gauge,
                self.disk_bytes() as f64,
            ),
            FamilySample::single(
                "curvemon_agent_dropped_samples_total",
                "Samples taken and lost: the spool was full (oldest first) or could not keep them.",
                Counter,
                self.counts.dropped as f64,
            ),
            FamilySample::single(
                "curvemon_agent_spool_errors_total",
                "Writes, syncs and reads of the spool that failed (a full or failing disk).",
                Counter,
                self.counts.errors as f64,
            ),
        ]
    }

    /// Syncs everything and marks the stop clean (on shutdown).
    pub fn close(&mut self) {
        self.sync_active();
        self.write_state_as(true, true);
    }
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn last_seq(records: &[Record]) -> u64 {
    records
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Sample(m) => Some(m.seq),
            Record::Schema(_) => None,
        })
        .unwrap_or(0)
}

/// Appends to `out` up to `max` samples of `records` after `after_seq`,
/// with the schema each needs first; returns how many samples.
fn take_after(records: &[Record], after_seq: u64, max: usize, out: &mut Vec<Record>) -> usize {
    let mut schema: Option<&Record> = None;
    let mut schema_sent = false;
    let mut taken = 0;
    for record in records {
        if taken >= max {
            break;
        }
        match record {
            Record::Schema(_) => {
                schema = Some(record);
                schema_sent = false;
            }
            Record::Sample(m) if m.seq > after_seq => {
                if !schema_sent {
                    out.extend(schema.cloned());
                    schema_sent = true;
                }
                out.push(record.clone());
                taken += 1;
            }
            Record::Sample(_) => {}
        }
    }
    taken
}

/// When the first sample after `seq` in a segment was taken.
fn first_ms_after(path: &Path, seq: u64) -> Option<u64> {
    segment::scan(path).ok()?.records.into_iter().find_map(|(r, _)| match r {
        Record::Sample(m) if m.seq > seq => Some(m.taken_at_ms),
        _ => None,
    })
}
