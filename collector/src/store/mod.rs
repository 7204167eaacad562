//! Durable history: every host sample the collector stores, on disk, for
//! the dashboard's charts and the API, kept by age and by size.
//!
//! The store is one [redb](https://docs.rs/redb) file (`--data-dir`,
//! `/var/lib/curvemon/collector/store.redb`): an embedded B-tree with
//! atomic, durable commits, which survive a crash at any point. It is
//! written by one thread ([`writer`]) in batches, one transaction each; an
//! agent's samples are acknowledged only after the transaction that holds
//! them has committed. Each transaction also holds which samples of each
//! host are accounted for ([`seqs::HostSeq`]), so a sample is never stored
//! twice, even across a crash between commit and acknowledgement.
//!
//! Samples land in `recent` in runs ([`run`]: a host's samples of a few
//! seconds, values coded against the previous sample's, with their
//! dashboard points) and are compacted per host into `blocks` ([`block`]:
//! columns compressed with pco) once a few hundred have gathered. Reads (the HTTP
//! side) take their own read transactions and never wait for the writer.
//!
//! Layout: [`Store`] is the small trait the rest of the collector sees;
//! [`RedbStore`] is it on redb; [`writer`] is the thread; [`query`] turns
//! points into what charts draw.

pub mod block;
pub(crate) mod expose;
pub mod journal;
pub mod query;
pub mod run;
pub mod seqs;
pub mod writer;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use curvemon_keys::PublicKey;
use curvemon_protocol::{Gap, GapReason, Message, Schema, codec};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::history::Point;
use block::{BlockError, Stored};
use seqs::HostSeq;

/// Which samples of each host are accounted for (key: the agent's key).
const HOSTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hosts");
/// Schemas by revision (a protocol `Schema` frame).
const SCHEMAS: TableDefinition<u64, &[u8]> = TableDefinition::new("schemas");
/// Runs of samples (key: host, epoch, first seq); stores written before
/// runs hold one sample an entry.
const RECENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("recent");
/// Compacted samples (key: host, first sample's time, epoch, first seq).
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// Samples lost (key: host, first lost sample's time, epoch, first seq).
const GAPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("gaps");
/// Totals (`bytes`: of samples stored; `journal_next`, `journal_total`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The export journal (key: its order), see [`journal`].
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// Each export's position in the journal (the last entry it delivered).
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// redb's page cache: the store's memory does not grow with its file
/// (redb's own default is 1 GiB). Reads are of recent blocks and hosts'
/// records; older history comes from the kernel's page cache.
const CACHE_BYTES: usize = 64 << 20;

fn create(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

/// The store file's name in the data directory.
pub const FILE: &str = "store.redb";

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The file could not be read or written (permissions, a full disk).
    #[error("the store {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What redb said.
        error: String,
    },
}

fn io(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: path.to_path_buf(), error: error.to_string() }
}

/// A lost range, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGap {
    /// What the agent (or the collector) reported.
    pub gap: Gap,
    /// Of its samples, how many the store did not have when it arrived.
    pub lost: u64,
}

/// One transaction's worth of writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// New samples, in runs.
    pub samples: Vec<(PublicKey, run::Run)>,
    /// Schemas not stored yet.
    pub schemas: Vec<Arc<Schema>>,
    /// Losses.
    pub gaps: Vec<(PublicKey, StoredGap)>,
    /// Hosts whose accounted samples changed, as they are now.
    pub hosts: Vec<(PublicKey, HostSeq)>,
    /// Export journal entries (their `total` is set by the store).
    pub journal: Vec<journal::Entry>,
}

/// What a read found, and what it could not read.
#[derive(Debug)]
pub struct Read<T> {
    /// What was read, in time order.
    pub items: Vec<T>,
    /// Entries skipped because they are damaged.
    pub damaged: u64,
}

impl<T> Default for Read<T> {
    fn default() -> Self {
        Read { items: Vec::new(), damaged: 0 }
    }
}

/// What the store did to keep within its retention.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Blocks and entries deleted.
    pub deleted: u64,
    /// Bytes of samples left.
    pub bytes: u64,
}

/// Journal entries by position; a damaged one as its error.
pub type JournalRead = Vec<(u64, Result<journal::Entry, BlockError>)>;

/// What the rest of the collector needs of a history store.
pub trait Store: Send + Sync {
    /// Every host's accounted samples (at start-up).
    ///
    /// # Errors
    /// The store cannot be read.
    fn hosts(&self) -> Result<Vec<(PublicKey, HostSeq)>, StoreError>;

    /// Every stored schema (at start-up).
    ///
    /// # Errors
    /// The store cannot be read.
    fn schemas(&self) -> Result<Vec<Schema>, StoreError>;

    /// Writes a batch in one durable transaction.
    ///
    /// # Errors
    /// The transaction did not commit (nothing of it is stored).
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Moves these hosts' recent entries into compressed blocks, in one
    /// transaction; returns the samples moved.
    ///
    /// # Errors
    /// The transaction did not commit.
    fn compact(&self, hosts: &[PublicKey]) -> Result<usize, StoreError>;

    /// Every host's recent entries: how many, and the oldest's time.
    ///
    /// # Errors
    /// The store cannot be read.
    fn recent_counts(&self) -> Result<Vec<(PublicKey, usize, u64)>, StoreError>;

    /// `host`'s dashboard points taken in `from_ms..=to_ms`.
    ///
    /// # Errors
    /// The store cannot be read.
    fn points(&self, host: &PublicKey, from_ms: u64, to_ms: u64)
    -> Result<Read<Point>, StoreError>;

    /// `host`'s samples taken in `from_ms..=to_ms`, values included.
    ///
    /// # Errors
    /// The store cannot be read.
    fn samples(
        &self,
        host: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Read<Stored>, StoreError>;

    /// `host`'s losses whose first sample was taken in `from_ms..=to_ms`.
    ///
    /// # Errors
    /// The store cannot be read.
    fn gaps(
        &self,
        host: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<StoredGap>, StoreError>;

    /// Deletes samples taken before `before_ms`, then the oldest until at
    /// most `max_bytes` are left.
    ///
    /// # Errors
    /// The transaction did not commit.
    fn retain(&self, before_ms: u64, max_bytes: u64) -> Result<Retained, StoreError>;

    /// Bytes of samples stored.
    fn bytes(&self) -> u64;

    /// Up to `limit` journal entries after position `after`, in order.
    ///
    /// # Errors
    /// The store cannot be read.
    fn journal(&self, after: u64, limit: usize) -> Result<JournalRead, StoreError>;

    /// The journal's last position and its running sample total.
    ///
    /// # Errors
    /// The store cannot be read.
    fn journal_head(&self) -> Result<(u64, u64), StoreError>;

    /// An export's position, if it has one.
    ///
    /// # Errors
    /// The store cannot be read.
    fn cursor(&self, export: &str) -> Result<Option<u64>, StoreError>;

    /// Moves an export's position to `to`, and deletes the journal entries
    /// every export has passed.
    ///
    /// # Errors
    /// The transaction did not commit.
    fn advance(&self, export: &str, to: u64) -> Result<(), StoreError>;

    /// Forgets the positions of exports not in `exports` (no longer
    /// configured), and with none left, the whole journal.
    ///
    /// # Errors
    /// The transaction did not commit.
    fn keep_exports(&self, exports: &[String]) -> Result<(), StoreError>;

    /// Reopens the file after an I/O error (which redb keeps reporting on
    /// an open file until it is reopened).
    ///
    /// # Errors
    /// The file cannot be opened again yet.
    fn recover(&self) -> Result<(), StoreError>;
}

/// The store on redb.
pub struct RedbStore {
    /// `None` only while being reopened.
    db: std::sync::RwLock<Option<Database>>,
    path: PathBuf,
}

/// The largest span of one block (so a time range finds every block that
/// may overlap it).
const MAX_BLOCK_SPAN_MS: u64 = 24 * 3_600_000;

fn key_host(host: &PublicKey) -> [u8; 32] {
    *host.as_bytes()
}

fn key3(host: &PublicKey, a: u64, b: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(host.as_bytes());
    k.extend_from_slice(&a.to_be_bytes());
    k.extend_from_slice(&b.to_be_bytes());
    k
}

fn key4(host: &PublicKey, a: u64, b: u64, c: u64) -> Vec<u8> {
    let mut k = key3(host, a, b);
    k.extend_from_slice(&c.to_be_bytes());
    k
}

fn key_of(bytes: &[u8]) -> Option<PublicKey> {
    Some(PublicKey::from_bytes(bytes.get(..32)?.try_into().ok()?))
}

fn be(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

fn encode_gap(g: &StoredGap) -> Vec<u8> {
    let mut bytes = g.lost.to_le_bytes().to_vec();
    bytes.extend_from_slice(&codec::encode(&Message::Gap(g.gap.clone())));
    bytes
}

fn decode_gap(bytes: &[u8]) -> Option<StoredGap> {
    let lost = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    match codec::decode(bytes.get(8..)?).ok()? {
        Message::Gap(gap) => Some(StoredGap { gap, lost }),
        _ => None,
    }
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`. A file redb cannot read as a
    /// database is moved aside (and the error logged with where it went),
    /// and a new one started, so the collector keeps serving; damage inside
    /// an otherwise readable file is found per block when read.
    ///
    /// # Errors
    /// The directory or file cannot be created, read or written.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join(FILE);
        let db = match create(&path) {
            Ok(db) => db,
            // (redb says "not a redb file" as InvalidData: that is damage.)
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if e.kind() != std::io::ErrorKind::InvalidData =>
            {
                return Err(io(&path, e));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(io(&path, "another collector has it open"));
            }
            Err(e) => {
                let aside = path.with_extension(format!(
                    "redb.damaged-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                ));
                error!(store = %path.display(), moved_to = %aside.display(), error = %e, "The store file cannot be read; it was moved aside and a new store started. History before now is not served (the old file is kept for recovery).");
                std::fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
                create(&path).map_err(|e| io(&path, e))?
            }
        };
        let store = RedbStore { db: std::sync::RwLock::new(Some(db)), path };
        store.init()?;
        Ok(store)
    }

    /// The open database (a read lock: the writer's reopen waits for it).
    fn db(&self) -> Result<DbGuard<'_>, StoreError> {
        let guard = self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            return Err(io(&self.path, "the store is being reopened"));
        }
        Ok(DbGuard(guard))
    }

    fn init(&self) -> Result<(), StoreError> {
        let path = &self.path;
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| io(path, e))?;
        {
            txn.open_table(HOSTS).map_err(|e| io(path, e))?;
            txn.open_table(SCHEMAS).map_err(|e| io(path, e))?;
            txn.open_table(RECENT).map_err(|e| io(path, e))?;
            txn.open_table(BLOCKS).map_err(|e| io(path, e))?;
            txn.open_table(GAPS).map_err(|e| io(path, e))?;
            txn.open_table(META).map_err(|e| io(path, e))?;
            txn.open_table(JOURNAL).map_err(|e| io(path, e))?;
            txn.open_table(CURSORS).map_err(|e| io(path, e))?;
        }
        txn.commit().map_err(|e| io(path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A read lock on the open database.
struct DbGuard<'a>(std::sync::RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for DbGuard<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        // `db()` checked it is there.
        self.0.as_ref().unwrap_or_else(|| unreachable!("checked by RedbStore::db"))
    }
}

impl RedbStore {
    /// `host`'s items taken in `from_ms..=to_ms`, from its blocks (decoded
    /// by `from_block`) and its recent entries (turned by `from_recent`),
    /// in time order; damaged ones skipped and counted.
    fn read_range<T>(
        &self,
        host: &PublicKey,
        from_ms: u64,
        to_ms: u64,
        from_block: impl Fn(&[u8]) -> Result<Vec<T>, BlockError>,
        from_recent: impl Fn(Stored) -> T,
        t_of: impl Fn(&T) -> u64,
    ) -> Result<Read<T>, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let mut read = Read::default();
        let blocks = txn.open_table(BLOCKS).map_err(|e| io(p, e))?;
        let lo = key4(host, from_ms.saturating_sub(MAX_BLOCK_SPAN_MS), 0, 0);
        let hi = key4(host, to_ms, u64::MAX, u64::MAX);
        for entry in blocks.range(lo.as_slice()..=hi.as_slice()).map_err(|e| io(p, e))? {
            let (_, v) = entry.map_err(|e| io(p, e))?;
            match from_block(v.value()) {
                Ok(items) => read
                    .items
                    .extend(items.into_iter().filter(|i| (from_ms..=to_ms).contains(&t_of(i)))),
                Err(e) => damaged(&mut read.damaged, host, &e),
            }
        }
        let recent = txn.open_table(RECENT).map_err(|e| io(p, e))?;
        let lo = key3(host, 0, 0);
        let hi = key3(host, u64::MAX, u64::MAX);
        for entry in recent.range(lo.as_slice()..=hi.as_slice()).map_err(|e| io(p, e))? {
            let (_, v) = entry.map_err(|e| io(p, e))?;
            match run::decode(v.value()) {
                Ok(samples) => read.items.extend(
                    samples
                        .into_iter()
                        .filter(|s| (from_ms..=to_ms).contains(&s.t_ms))
                        .map(&from_recent),
                ),
                Err(e) => damaged(&mut read.damaged, host, &e),
            }
        }
        read.items = by_time(read.items, t_of);
        Ok(read)
    }
}

/// Puts items in time order.
fn by_time<T>(mut items: Vec<T>, t: impl Fn(&T) -> u64) -> Vec<T> {
    items.sort_by_key(|i| t(i));
    items
}

impl Store for RedbStore {
    fn hosts(&self) -> Result<Vec<(PublicKey, HostSeq)>, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let table = txn.open_table(HOSTS).map_err(|e| io(p, e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| io(p, e))? {
            let (k, v) = entry.map_err(|e| io(p, e))?;
            match (key_of(k.value()), HostSeq::from_bytes(v.value())) {
                (Some(key), Some(seq)) => out.push((key, seq)),
                _ => {
                    warn!(store = %p.display(), "A host's record in the store is damaged; its agent will resend what it holds.")
                }
            }
        }
        Ok(out)
    }

    fn schemas(&self) -> Result<Vec<Schema>, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let table = txn.open_table(SCHEMAS).map_err(|e| io(p, e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| io(p, e))? {
            let (_, v) = entry.map_err(|e| io(p, e))?;
            match codec::decode(v.value()) {
                Ok(Message::Schema(record)) => out.push(record.schema),
                _ => {
                    warn!(store = %p.display(), "A stored schema is damaged; samples of it are served without their dashboard fields.")
                }
            }
        }
        Ok(out)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| io(p, e))?;
        {
            let mut added = 0u64;
            let mut recent = txn.open_table(RECENT).map_err(|e| io(p, e))?;
            for (host, run) in &batch.samples {
                added += run.bytes.len() as u64;
                recent
                    .insert(key3(host, run.epoch, run.first_seq).as_slice(), run.bytes.as_slice())
                    .map_err(|e| io(p, e))?;
            }
            let mut schemas = txn.open_table(SCHEMAS).map_err(|e| io(p, e))?;
            for schema in &batch.schemas {
                let frame = codec::encode(&Message::Schema(curvemon_protocol::SchemaRecord {
                    schema: (**schema).clone(),
                }));
                schemas.insert(schema.revision, frame.as_slice()).map_err(|e| io(p, e))?;
            }
            let mut gaps = txn.open_table(GAPS).map_err(|e| io(p, e))?;
            for (host, g) in &batch.gaps {
                let key = key4(host, g.gap.from_ms, g.gap.epoch, g.gap.from_seq);
                // An agent extends a gap it has not had acknowledged (the
                // spool keeps dropping): one record, its losses summed.
                let old = gaps
                    .get(key.as_slice())
                    .map_err(|e| io(p, e))?
                    .and_then(|v| decode_gap(v.value()));
                let mut g = g.clone();
                if let Some(old) = old {
                    g.lost = g.lost.saturating_add(old.lost);
                    g.gap.to_seq = g.gap.to_seq.max(old.gap.to_seq);
                    g.gap.to_ms = g.gap.to_ms.max(old.gap.to_ms);
                }
                gaps.insert(key.as_slice(), encode_gap(&g).as_slice()).map_err(|e| io(p, e))?;
            }
            let mut hosts = txn.open_table(HOSTS).map_err(|e| io(p, e))?;
            for (host, seq) in &batch.hosts {
                hosts
                    .insert(key_host(host).as_slice(), seq.to_bytes().as_slice())
                    .map_err(|e| io(p, e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| io(p, e))?;
            let bytes = meta.get("bytes").map_err(|e| io(p, e))?.map_or(0, |v| v.value());
            meta.insert("bytes", bytes + added).map_err(|e| io(p, e))?;
            if !batch.journal.is_empty() {
                let mut journal = txn.open_table(JOURNAL).map_err(|e| io(p, e))?;
                let get = |meta: &redb::Table<&str, u64>, k: &str| {
                    meta.get(k).map(|v| v.map_or(0, |v| v.value()))
                };
                let mut next = get(&meta, "journal_next").map_err(|e| io(p, e))?.max(1);
                let mut total = get(&meta, "journal_total").map_err(|e| io(p, e))?;
                for entry in &batch.journal {
                    total += entry.count;
                    let entry = journal::Entry { total, ..entry.clone() };
                    journal.insert(next, entry.encode().as_slice()).map_err(|e| io(p, e))?;
                    next += 1;
                }
                meta.insert("journal_next", next).map_err(|e| io(p, e))?;
                meta.insert("journal_total", total).map_err(|e| io(p, e))?;
            }
        }
        txn.commit().map_err(|e| io(p, e))
    }

    fn compact(&self, hosts: &[PublicKey]) -> Result<usize, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| io(p, e))?;
        let mut moved = 0;
        {
            let mut recent = txn.open_table(RECENT).map_err(|e| io(p, e))?;
            let mut blocks = txn.open_table(BLOCKS).map_err(|e| io(p, e))?;
            let mut meta = txn.open_table(META).map_err(|e| io(p, e))?;
            let mut bytes = meta.get("bytes").map_err(|e| io(p, e))?.map_or(0, |v| v.value());
            for host in hosts {
                moved += compact_host(p, host, &mut recent, &mut blocks, &mut bytes)?;
            }
            meta.insert("bytes", bytes).map_err(|e| io(p, e))?;
        }
        txn.commit().map_err(|e| io(p, e))?;
        Ok(moved)
    }

    fn recent_counts(&self) -> Result<Vec<(PublicKey, usize, u64)>, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let table = txn.open_table(RECENT).map_err(|e| io(p, e))?;
        let mut out: Vec<(PublicKey, usize, u64)> = Vec::new();
        for entry in table.iter().map_err(|e| io(p, e))? {
            let (k, v) = entry.map_err(|e| io(p, e))?;
            let Some(key) = key_of(k.value()) else { continue };
            let (count, t) = run::summary(v.value()).unwrap_or((1, 0));
            match out.last_mut() {
                Some((last, n, oldest)) if *last == key => {
                    *n += count;
                    *oldest = (*oldest).min(t);
                }
                _ => out.push((key, count, t)),
            }
        }
        Ok(out)
    }

    fn points(
        &self,
        host: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Read<Point>, StoreError> {
        // Only the dashboard's columns of each block are decoded.
        self.read_range(
            host,
            from_ms,
            to_ms,
            |bytes| block::decode_points(bytes).map(|(_, _, points)| points),
            |stored| stored.point,
            |point| point.t_ms,
        )
    }

    fn samples(
        &self,
        host: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Read<Stored>, StoreError> {
        self.read_range(
            host,
            from_ms,
            to_ms,
            |bytes| block::decode_block(bytes).map(|(_, samples)| samples),
            |stored| stored,
            |stored| stored.t_ms,
        )
    }

    fn gaps(
        &self,
        host: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<StoredGap>, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let table = txn.open_table(GAPS).map_err(|e| io(p, e))?;
        let lo = key4(host, from_ms, 0, 0);
        let hi = key4(host, to_ms, u64::MAX, u64::MAX);
        let mut out = Vec::new();
        for entry in table.range(lo.as_slice()..=hi.as_slice()).map_err(|e| io(p, e))? {
            let (_, v) = entry.map_err(|e| io(p, e))?;
            out.extend(decode_gap(v.value()));
        }
        Ok(out)
    }

    fn retain(&self, before_ms: u64, max_bytes: u64) -> Result<Retained, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| io(p, e))?;
        let mut retained = Retained::default();
        {
            let hosts: Vec<PublicKey> = {
                let table = txn.open_table(HOSTS).map_err(|e| io(p, e))?;
                let mut keys = Vec::new();
                for entry in table.iter().map_err(|e| io(p, e))? {
                    let (k, _) = entry.map_err(|e| io(p, e))?;
                    keys.extend(key_of(k.value()));
                }
                keys
            };
            let mut blocks = txn.open_table(BLOCKS).map_err(|e| io(p, e))?;
            let mut gaps = txn.open_table(GAPS).map_err(|e| io(p, e))?;
            let mut meta = txn.open_table(META).map_err(|e| io(p, e))?;
            let mut bytes = meta.get("bytes").map_err(|e| io(p, e))?.map_or(0, |v| v.value());
            let cut = |blocks: &mut redb::Table<&[u8], &[u8]>,
                       gaps: &mut redb::Table<&[u8], &[u8]>,
                       before: u64,
                       bytes: &mut u64|
             -> Result<u64, StoreError> {
                let mut deleted = 0;
                for host in &hosts {
                    let lo = key4(host, 0, 0, 0);
                    let hi = key4(host, before, 0, 0);
                    for entry in blocks
                        .extract_from_if(lo.as_slice()..hi.as_slice(), |_, _| true)
                        .map_err(|e| io(p, e))?
                    {
                        let (_, v) = entry.map_err(|e| io(p, e))?;
                        *bytes = bytes.saturating_sub(v.value().len() as u64);
                        deleted += 1;
                    }
                    for entry in gaps
                        .extract_from_if(lo.as_slice()..hi.as_slice(), |_, _| true)
                        .map_err(|e| io(p, e))?
                    {
                        entry.map_err(|e| io(p, e))?;
                    }
                }
                Ok(deleted)
            };
            retained.deleted += cut(&mut blocks, &mut gaps, before_ms, &mut bytes)?;
            // Past the size bound: the oldest hour of every host, and again.
            let mut guard = 0;
            while bytes > max_bytes && guard < 24 * 400 {
                let oldest = hosts
                    .iter()
                    .filter_map(|h| {
                        let lo = key4(h, 0, 0, 0);
                        let hi = key4(h, u64::MAX, 0, 0);
                        let mut range = blocks.range(lo.as_slice()..hi.as_slice()).ok()?;
                        let (k, _) = range.next()?.ok()?;
                        Some(be(k.value(), 32))
                    })
                    .min();
                let Some(oldest) = oldest else { break };
                retained.deleted += cut(&mut blocks, &mut gaps, oldest + 3_600_000, &mut bytes)?;
                guard += 1;
            }
            meta.insert("bytes", bytes).map_err(|e| io(p, e))?;
            retained.bytes = bytes;
        }
        txn.commit().map_err(|e| io(p, e))?;
        if retained.deleted > 0 {
            info!(
                blocks = retained.deleted,
                bytes = retained.bytes,
                "Deleted history past the retention."
            );
        }
        Ok(retained)
    }

    fn recover(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Closed first: redb locks the file while it is open.
        *guard = None;
        let db = create(&self.path).map_err(|e| io(&self.path, e))?;
        *guard = Some(db);
        Ok(())
    }

    fn journal(&self, after: u64, limit: usize) -> Result<JournalRead, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let table = txn.open_table(JOURNAL).map_err(|e| io(p, e))?;
        let mut out = Vec::new();
        for entry in table.range(after.saturating_add(1)..).map_err(|e| io(p, e))?.take(limit) {
            let (k, v) = entry.map_err(|e| io(p, e))?;
            out.push((k.value(), journal::Entry::decode(v.value())));
        }
        Ok(out)
    }

    fn journal_head(&self) -> Result<(u64, u64), StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let meta = txn.open_table(META).map_err(|e| io(p, e))?;
        let get = |k: &str| meta.get(k).map(|v| v.map_or(0, |v| v.value())).map_err(|e| io(p, e));
        Ok((get("journal_next")?.saturating_sub(1), get("journal_total")?))
    }

    fn cursor(&self, export: &str) -> Result<Option<u64>, StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| io(p, e))?;
        let table = txn.open_table(CURSORS).map_err(|e| io(p, e))?;
        Ok(table.get(export).map_err(|e| io(p, e))?.map(|v| v.value()))
    }

    fn advance(&self, export: &str, to: u64) -> Result<(), StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| io(p, e))?;
        {
            let mut cursors = txn.open_table(CURSORS).map_err(|e| io(p, e))?;
            cursors.insert(export, to).map_err(|e| io(p, e))?;
            let mut slowest = u64::MAX;
            for entry in cursors.iter().map_err(|e| io(p, e))? {
                slowest = slowest.min(entry.map_err(|e| io(p, e))?.1.value());
            }
            let mut journal = txn.open_table(JOURNAL).map_err(|e| io(p, e))?;
            journal.retain_in(..=slowest, |_, _| false).map_err(|e| io(p, e))?;
        }
        txn.commit().map_err(|e| io(p, e))
    }

    fn keep_exports(&self, exports: &[String]) -> Result<(), StoreError> {
        let p = &self.path;
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| io(p, e))?;
        {
            let mut cursors = txn.open_table(CURSORS).map_err(|e| io(p, e))?;
            cursors.retain(|name, _| exports.iter().any(|e| e == name)).map_err(|e| io(p, e))?;
            if exports.is_empty() {
                let mut journal = txn.open_table(JOURNAL).map_err(|e| io(p, e))?;
                journal.retain(|_, _| false).map_err(|e| io(p, e))?;
            }
        }
        txn.commit().map_err(|e| io(p, e))
    }

    fn bytes(&self) -> u64 {
        let read = || -> Option<u64> {
            let db = self.db().ok()?;
            let txn = db.begin_read().ok()?;
            let table = txn.open_table(META).ok()?;
            Some(table.get("bytes").ok()??.value())
        };
        read().unwrap_or(0)
    }
}

/// Moves one host's recent entries into blocks, within the caller's
/// transaction; `bytes` is the running total of stored bytes.
fn compact_host(
    p: &Path,
    host: &PublicKey,
    recent: &mut redb::Table<&[u8], &[u8]>,
    blocks: &mut redb::Table<&[u8], &[u8]>,
    bytes: &mut u64,
) -> Result<usize, StoreError> {
    let from = key3(host, 0, 0);
    let to = key3(host, u64::MAX, u64::MAX);
    let mut samples = Vec::new();
    let mut removed = 0u64;
    let mut damaged = 0u64;
    for entry in recent
        .extract_from_if(from.as_slice()..=to.as_slice(), |_, _| true)
        .map_err(|e| io(p, e))?
    {
        let (_, v) = entry.map_err(|e| io(p, e))?;
        removed += v.value().len() as u64;
        match run::decode(v.value()) {
            Ok(run) => samples.extend(run),
            Err(_) => damaged += 1,
        }
    }
    if damaged > 0 {
        error!(host = %host, entries = damaged, "Damaged recent samples in the store were dropped while compacting.");
    }
    samples.sort_by_key(|s| (s.epoch, s.seq));
    let moved = samples.len();
    let mut added = 0u64;
    let mut flush = |run: &mut Vec<Stored>| -> Result<(), StoreError> {
        if run.is_empty() {
            return Ok(());
        }
        let start = run.iter().map(|s| s.t_ms).min().unwrap_or(0);
        let encoded = block::encode_block(run);
        added += encoded.len() as u64;
        let key = key4(host, start, run[0].epoch, run[0].seq);
        blocks.insert(key.as_slice(), encoded.as_slice()).map_err(|e| io(p, e))?;
        run.clear();
        Ok(())
    };
    let mut run: Vec<Stored> = Vec::new();
    for s in samples {
        let breaks = run.last().is_some_and(|l: &Stored| {
            l.epoch != s.epoch
                || l.revision != s.revision
                || run.len() >= 4_096
                || s.t_ms.saturating_sub(run[0].t_ms) > MAX_BLOCK_SPAN_MS
                || run[0].t_ms.saturating_sub(s.t_ms) > MAX_BLOCK_SPAN_MS
        });
        if breaks {
            flush(&mut run)?;
        }
        run.push(s);
    }
    flush(&mut run)?;
    *bytes = (*bytes + added).saturating_sub(removed);
    Ok(moved)
}

fn damaged(count: &mut u64, host: &PublicKey, error: &BlockError) {
    *count += 1;
    warn!(host = %host, %error, "Skipped damaged history in the store.");
}

/// Makes sure `reason` is used: the gap reasons the store keeps.
pub fn counts_as_lost(reason: GapReason) -> bool {
    !matches!(reason, GapReason::Skipped)
}
