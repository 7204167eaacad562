//! The bytes of stored samples.
//!
//! A *recent* entry is one sample as it arrived: its values as little-endian
//! `f64`s and its dashboard point. A *block* is many samples of one host,
//! one epoch and one schema, compacted: the columns (sequence numbers,
//! times, every series' values, every dashboard field, every core's busy
//! percent) each compressed with pco, a numeric codec that finds the
//! deltas and repeats in a column. Every entry and block starts with the
//! CRC-32 of the rest, so damage on disk is found and reported, never
//! decoded into wrong numbers.

use crate::history::{FIELDS, Point};

const FORMAT: u8 = 1;

/// Why stored bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The checksum does not match: the bytes changed on disk.
    #[error("stored bytes are damaged (checksum mismatch)")]
    Checksum,
    /// The bytes end early or do not follow the format.
    #[error("stored bytes are not a block of this format: {0}")]
    Format(&'static str),
}

/// One sample with its dashboard point.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The agent's epoch.
    pub epoch: u64,
    /// Its sequence number.
    pub seq: u64,
    /// When it was taken, Unix ms.
    pub t_ms: u64,
    /// The schema revision its values follow.
    pub revision: u64,
    /// The values, in schema order.
    pub values: Vec<f64>,
    /// What the dashboard draws of it.
    pub point: Point,
}

pub(super) fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body).to_le_bytes();
    body.splice(0..0, crc);
    body
}

pub(super) fn checked(bytes: &[u8]) -> Result<&[u8], BlockError> {
    let (crc, body) = bytes.split_at_checked(4).ok_or(BlockError::Format("too short"))?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(BlockError::Checksum);
    }
    Ok(body)
}

/// A reader over a byte slice; running out is a format error.
pub(super) struct Cursor<'a>(pub(super) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], BlockError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(BlockError::Format("ends early"))?;
        self.0 = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, BlockError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, BlockError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    pub(super) fn u32(&mut self) -> Result<u32, BlockError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    pub(super) fn u64(&mut self) -> Result<u64, BlockError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    pub(super) fn f32(&mut self) -> Result<f32, BlockError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    pub(super) fn f64(&mut self) -> Result<f64, BlockError> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn section(&mut self) -> Result<&'a [u8], BlockError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// A recent entry's bytes.
pub fn encode_recent(s: &Stored) -> Vec<u8> {
    let mut b =
        Vec::with_capacity(48 + 8 * s.values.len() + 4 * (FIELDS.len() + s.point.cores.len()));
    b.push(FORMAT);
    for v in [s.epoch, s.seq, s.t_ms, s.revision] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(s.values.len() as u32).to_le_bytes());
    for v in &s.values {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for f in &s.point.fields {
        b.extend_from_slice(&f.to_le_bytes());
    }
    b.extend_from_slice(&(s.point.cores.len() as u16).to_le_bytes());
    for c in &s.point.cores {
        b.extend_from_slice(&c.to_le_bytes());
    }
    with_crc(b)
}

/// The inverse of [`encode_recent`].
///
/// # Errors
/// Damaged or foreign bytes.
pub fn decode_recent(bytes: &[u8]) -> Result<Stored, BlockError> {
    let mut c = Cursor(checked(bytes)?);
    if c.u8()? != FORMAT {
        return Err(BlockError::Format("unknown format"));
    }
    let (epoch, seq, t_ms, revision) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
    let m = c.u32()? as usize;
    if m > curvemon_protocol::validate::MAX_SERIES {
        return Err(BlockError::Format("too many values"));
    }
    let values = (0..m).map(|_| c.f64()).collect::<Result<Vec<_>, _>>()?;
    let mut fields = [0f32; FIELDS.len()];
    for f in &mut fields {
        *f = c.f32()?;
    }
    let cores = c.u16()? as usize;
    let cores = (0..cores).map(|_| c.f32()).collect::<Result<Vec<_>, _>>()?;
    Ok(Stored {
        epoch,
        seq,
        t_ms,
        revision,
        values,
        point: Point { t_ms, fields, cores: cores.into_boxed_slice() },
    })
}

fn compress<T: pco::data_types::Number>(nums: &[T]) -> Vec<u8> {
    // Compressing numbers this process made cannot fail; an empty column
    // (no samples) stays empty.
    pco::standalone::simpler_compress(nums, pco::DEFAULT_COMPRESSION_LEVEL).unwrap_or_default()
}

fn decompress<T: pco::data_types::Number>(bytes: &[u8], n: usize) -> Result<Vec<T>, BlockError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let out: Vec<T> = pco::standalone::simple_decompress(bytes)
        .map_err(|_| BlockError::Format("a column does not decode"))?;
    if out.len() != n {
        return Err(BlockError::Format("a column of the wrong length"));
    }
    Ok(out)
}

fn section(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    b.extend_from_slice(bytes);
}

/// A block of samples of one epoch and revision, in `seq` order.
pub fn encode_block(samples: &[Stored]) -> Vec<u8> {
    let n = samples.len();
    let m = samples.first().map_or(0, |s| s.values.len());
    let cores = samples.iter().map(|s| s.point.cores.len()).max().unwrap_or(0);
    let mut b = Vec::new();
    b.push(FORMAT);
    b.extend_from_slice(&samples.first().map_or(0, |s| s.epoch).to_le_bytes());
    b.extend_from_slice(&samples.first().map_or(0, |s| s.revision).to_le_bytes());
    b.extend_from_slice(&(n as u32).to_le_bytes());
    b.extend_from_slice(&(m as u32).to_le_bytes());
    b.extend_from_slice(&(cores as u16).to_le_bytes());
    section(&mut b, &compress(&samples.iter().map(|s| s.seq).collect::<Vec<_>>()));
    section(&mut b, &compress(&samples.iter().map(|s| s.t_ms).collect::<Vec<_>>()));
    let mut values = Vec::with_capacity(n * m);
    for j in 0..m {
        values.extend(samples.iter().map(|s| s.values.get(j).copied().unwrap_or(f64::NAN)));
    }
    section(&mut b, &compress(&values));
    let mut fields = Vec::with_capacity(n * FIELDS.len());
    for j in 0..FIELDS.len() {
        fields.extend(samples.iter().map(|s| s.point.fields[j]));
    }
    section(&mut b, &compress(&fields));
    let mut core_cols = Vec::with_capacity(n * cores);
    for j in 0..cores {
        core_cols.extend(samples.iter().map(|s| s.point.cores.get(j).copied().unwrap_or(f32::NAN)));
    }
    section(&mut b, &compress(&core_cols));
    with_crc(b)
}

/// A block's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its epoch.
    pub epoch: u64,
    /// Its schema revision.
    pub revision: u64,
    /// Samples in it.
    pub n: usize,
}

/// A block's sequence numbers and points, without decoding the values.
///
/// # Errors
/// Damaged or foreign bytes.
pub fn decode_points(bytes: &[u8]) -> Result<(Header, Vec<u64>, Vec<Point>), BlockError> {
    let (header, seqs, ts, _, points) = decode(bytes, false)?;
    let points = points
        .into_iter()
        .zip(ts)
        .map(|(mut p, t)| {
            p.t_ms = t;
            p
        })
        .collect();
    Ok((header, seqs, points))
}

/// A block's samples, values included.
///
/// # Errors
/// Damaged or foreign bytes.
pub fn decode_block(bytes: &[u8]) -> Result<(Header, Vec<Stored>), BlockError> {
    let (header, seqs, ts, values, points) = decode(bytes, true)?;
    let m = values.len().checked_div(header.n).unwrap_or(0);
    let samples = (0..header.n)
        .map(|i| Stored {
            epoch: header.epoch,
            seq: seqs[i],
            t_ms: ts[i],
            revision: header.revision,
            values: (0..m).map(|j| values[j * header.n + i]).collect(),
            point: Point { t_ms: ts[i], ..points[i].clone() },
        })
        .collect();
    Ok((header, samples))
}

type Decoded = (Header, Vec<u64>, Vec<u64>, Vec<f64>, Vec<Point>);

fn decode(bytes: &[u8], with_values: bool) -> Result<Decoded, BlockError> {
    let mut c = Cursor(checked(bytes)?);
    if c.u8()? != FORMAT {
        return Err(BlockError::Format("unknown format"));
    }
    let epoch = c.u64()?;
    let revision = c.u64()?;
    let n = c.u32()? as usize;
    let m = c.u32()? as usize;
    let cores = c.u16()? as usize;
    if n > 1_000_000 || m > curvemon_protocol::validate::MAX_SERIES {
        return Err(BlockError::Format("an impossible size"));
    }
    let seqs: Vec<u64> = decompress(c.section()?, n)?;
    let ts: Vec<u64> = decompress(c.section()?, n)?;
    let values_bytes = c.section()?;
    let values: Vec<f64> = if with_values { decompress(values_bytes, n * m)? } else { Vec::new() };
    let fields: Vec<f32> = decompress(c.section()?, n * FIELDS.len())?;
    let core_cols: Vec<f32> = decompress(c.section()?, n * cores)?;
    let points = (0..n)
        .map(|i| {
            let mut f = [f32::NAN; FIELDS.len()];
            for (j, slot) in f.iter_mut().enumerate() {
                *slot = fields[j * n + i];
            }
            Point { t_ms: 0, fields: f, cores: (0..cores).map(|j| core_cols[j * n + i]).collect() }
        })
        .collect();
    Ok((Header { epoch, revision, n }, seqs, ts, values, points))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64) -> Stored {
        let mut fields = [0f32; FIELDS.len()];
        fields[0] = seq as f32 * 0.5;
        fields[3] = f32::NAN;
        Stored {
            epoch: 9,
            seq,
            t_ms: 1_000 * seq,
            revision: 0xabc,
            values: vec![seq as f64 * 1024.0, 0.25, f64::NAN, 1e12 + seq as f64],
            point: Point {
                t_ms: 1_000 * seq,
                fields,
                cores: vec![10.0, seq as f32].into_boxed_slice(),
            },
        }
    }

    fn same(a: &Stored, b: &Stored) -> bool {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let fbits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        (a.epoch, a.seq, a.t_ms, a.revision) == (b.epoch, b.seq, b.t_ms, b.revision)
            && bits(&a.values) == bits(&b.values)
            && fbits(&a.point.fields) == fbits(&b.point.fields)
            && fbits(&a.point.cores) == fbits(&b.point.cores)
    }

    #[test]
    fn recent_entries_and_blocks_round_trip() {
        let one = stored(7);
        assert!(same(&decode_recent(&encode_recent(&one)).unwrap(), &one));
        let many: Vec<Stored> = (1..=300).map(stored).collect();
        let bytes = encode_block(&many);
        let (header, back) = decode_block(&bytes).unwrap();
        assert_eq!(header, Header { epoch: 9, revision: 0xabc, n: 300 });
        assert!(many.iter().zip(&back).all(|(a, b)| same(a, b)));
        let (_, seqs, points) = decode_points(&bytes).unwrap();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
        assert_eq!(points[9].t_ms, 10_000);
        assert!(bytes.len() < 300 * 8 * 4, "compressed: {} bytes", bytes.len());
    }

    #[test]
    fn damage_is_found() {
        let bytes = encode_block(&(1..=50).map(stored).collect::<Vec<_>>());
        for i in [0, 4, 10, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_block(&bad).is_err(), "byte {i}");
        }
        assert_eq!(decode_recent(&[1, 2]), Err(BlockError::Format("too short")));
    }
}
