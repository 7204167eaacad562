//! One spool segment file: a header, then records.
//!
//! Header: `CMSP` (4 bytes), the format (u32 LE, 1), the epoch (u64 LE).
//! Record: its length (u32 LE), the CRC-32 of its bytes (u32 LE), then the
//! bytes: one protocol frame (`Metrics` or `Schema`, from the one codec).
//!
//! Reading is forgiving by design, because a crash or a bad disk can leave
//! anything behind: a record whose length runs past the end (a torn write)
//! ends the segment; a record whose checksum or frame is wrong is skipped,
//! and reading resumes at the next position where a whole, valid record
//! starts, so one bad byte costs one record, not the rest of the file.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use curvemon_protocol::{Message, Metrics, Schema, codec};

/// First bytes of a segment.
pub const MAGIC: &[u8; 4] = b"CMSP";
/// The format this code writes and reads.
pub const FORMAT: u32 = 1;
/// Header length.
pub const HEADER: u64 = 16;
/// Largest record taken: a frame is at most 1 MiB.
pub const MAX_RECORD: usize = curvemon_protocol::MAX_FRAME_BYTES;

/// A record of the spool.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A sample.
    Sample(Metrics),
    /// The schema the samples after it (up to the next) refer to.
    Schema(Schema),
}

impl Record {
    /// Its bytes: a protocol frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Sample(m) => codec::encode(&Message::Metrics(m.clone())),
            Record::Schema(s) => codec::encode(&Message::Schema(curvemon_protocol::SchemaRecord {
                schema: s.clone(),
            })),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        match codec::decode(bytes).ok()? {
            Message::Metrics(m) => Some(Record::Sample(m)),
            Message::Schema(s) => Some(Record::Schema(s.schema)),
            _ => None,
        }
    }
}

/// The bytes of a record on disk: length, checksum, frame.
pub fn framed(record: &Record) -> Vec<u8> {
    let bytes = record.encode();
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// What a scan of a segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The records, in file order, with the offset after each.
    pub records: Vec<(Record, u64)>,
    /// Where the last whole record ends (appends go here).
    pub end: u64,
    /// Bytes skipped as damaged (not counting a torn tail).
    pub damaged: u64,
    /// A torn record at the end (a crash mid-write) was cut off.
    pub torn: bool,
}

/// Creates a segment for `epoch` at `path`.
///
/// # Errors
/// The file cannot be created or written.
pub fn create(path: &Path, epoch: u64) -> io::Result<File> {
    let mut file = OpenOptions::new().create_new(true).read(true).append(true).open(path)?;
    let mut header = Vec::with_capacity(HEADER as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&epoch.to_le_bytes());
    file.write_all(&header)?;
    Ok(file)
}

/// Reads a segment's header: its epoch, or `None` when it is not a
/// segment of this format.
///
/// # Errors
/// The file cannot be read.
pub fn epoch(path: &Path) -> io::Result<Option<u64>> {
    let mut header = [0u8; HEADER as usize];
    let mut file = File::open(path)?;
    if file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    if &header[..4] != MAGIC
        || u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) != FORMAT
    {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(header[8..16].try_into().unwrap_or_default())))
}

/// Reads every record of the segment at `path`.
///
/// # Errors
/// The file cannot be read.
pub fn scan(path: &Path) -> io::Result<Scan> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(scan_bytes(&bytes))
}

/// [`scan`] over bytes already read (the header included).
pub fn scan_bytes(bytes: &[u8]) -> Scan {
    let mut scan = Scan { end: HEADER.min(bytes.len() as u64), ..Scan::default() };
    let mut at = HEADER as usize;
    // Where unreadable bytes began, and whether the first of them looked
    // like a record cut short by the end of the file.
    let mut damaged_from: Option<(usize, bool)> = None;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Parsed::Record(record, next) => {
                if let Some((from, _)) = damaged_from.take() {
                    scan.damaged += (at - from) as u64;
                }
                scan.records.push((record, next as u64));
                scan.end = next as u64;
                at = next;
            }
            parsed => {
                // Look for the next whole record one byte further on: a
                // damaged length can look like a torn tail.
                damaged_from.get_or_insert((at, matches!(parsed, Parsed::Torn)));
                at += 1;
            }
        }
    }
    match damaged_from {
        // Nothing whole after a record that ran past the end: a write
        // torn by a crash.
        Some((_, true)) => scan.torn = true,
        Some((from, false)) => scan.damaged += (bytes.len() - from) as u64,
        None => {}
    }
    scan
}

enum Parsed {
    Record(Record, usize),
    /// The record's length runs past the end.
    Torn,
    /// Not a valid record here.
    Bad,
}

fn record_at(bytes: &[u8], at: usize) -> Parsed {
    let Some(header) = bytes.get(at..at + 8) else { return Parsed::Torn };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD {
        return Parsed::Bad;
    }
    let Some(body) = bytes.get(at + 8..at + 8 + len) else { return Parsed::Torn };
    if crc32fast::hash(body) != crc {
        return Parsed::Bad;
    }
    match Record::decode(body) {
        Some(record) => Parsed::Record(record, at + 8 + len),
        None => Parsed::Bad,
    }
}

/// Cuts a segment back to `end` (a torn tail) so appends follow the last
/// whole record.
///
/// # Errors
/// The file cannot be opened or truncated.
pub fn truncate(path: &Path, end: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(end)?;
    file.sync_data()
}

/// Opens an existing segment to append to.
///
/// # Errors
/// The file cannot be opened.
pub fn reopen(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new().read(true).append(true).open(path)?;
    file.seek(SeekFrom::End(0))?;
    Ok(file)
}

/// A segment's file name: its first sequence number, zero-padded so that
/// names sort as numbers do.
pub fn name(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// The first sequence number a segment's file name holds.
pub fn first_seq_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Record {
        Record::Sample(Metrics {
            seq,
            taken_at_ms: 1_000 * seq,
            schema_revision: 7,
            values: vec![seq as f64, 0.5],
        })
    }

    fn segment(records: &[Record]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(&9u64.to_le_bytes());
        for r in records {
            bytes.extend_from_slice(&framed(r));
        }
        bytes
    }

    fn seqs(scan: &Scan) -> Vec<u64> {
        scan.records
            .iter()
            .filter_map(|(r, _)| match r {
                Record::Sample(m) => Some(m.seq),
                Record::Schema(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_torn_tail_ends_the_segment() {
        let whole = segment(&[sample(1), sample(2), sample(3)]);
        for cut in [whole.len() - 1, whole.len() - 20, whole.len() - 30] {
            let scan = scan_bytes(&whole[..cut]);
            assert_eq!(seqs(&scan), [1, 2], "cut at {cut}");
            assert!(scan.torn);
            assert_eq!(scan.damaged, 0);
        }
        let scan = scan_bytes(&whole);
        assert_eq!((seqs(&scan), scan.end, scan.torn), (vec![1, 2, 3], whole.len() as u64, false));
    }

    #[test]
    fn a_damaged_length_is_not_taken_for_a_torn_tail() {
        let mut bytes = segment(&[sample(1), sample(2), sample(3)]);
        let one = framed(&sample(1)).len();
        // Record 2 claims to run past the end of the file.
        bytes[HEADER as usize + one + 2] = 0x0f;
        let scan = scan_bytes(&bytes);
        assert_eq!(seqs(&scan), [1, 3]);
        assert!(!scan.torn && scan.damaged > 0);
    }

    #[test]
    fn a_flipped_byte_costs_one_record() {
        let whole = segment(&[sample(1), sample(2), sample(3), sample(4)]);
        let one = framed(&sample(1)).len();
        // Every byte of the second record, in turn.
        for i in 0..one {
            let mut bytes = whole.clone();
            bytes[HEADER as usize + one + i] ^= 0x40;
            let scan = scan_bytes(&bytes);
            assert_eq!(seqs(&scan), [1, 3, 4], "byte {i} of record 2");
            assert!(scan.damaged > 0);
        }
    }
}
