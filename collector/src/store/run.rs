//! A *run*: the live samples of one host that arrived within a few
//! seconds, written to the store as one entry.
//!
//! One B-tree row per sample made the store's write cost a copy-on-write
//! leaf, a host record and ~2 KB per sample: at 10,000 agents that is what
//! the disk took all its time on. A run gathers a host's samples in the
//! writer's memory (unacknowledged until written, so agents still hold
//! them) and is written as one row, its values coded against the previous
//! sample's: a value that did not change costs a bit, one that changed
//! costs the bytes in which it differs (a counter's XOR with its last value
//! has zero high bytes, and an integer's has zero low bytes too).
//!
//! Layout, after the CRC-32 of the rest: the format (2), epoch, schema
//! revision, sample count, earliest time; then per sample its sequence
//! number, time, value count, core count, dashboard fields and cores, a
//! bitmap of changed values and each changed value's XOR as a control byte
//! (leading zero bytes << 4 | trailing zero bytes) and the bytes between.

use super::block::{BlockError, Cursor, Stored, checked, with_crc};
use crate::history::{FIELDS, Point};

/// The format byte of a run (a single recent sample is 1).
pub const FORMAT: u8 = 2;

/// A run being gathered.
#[derive(Debug)]
pub struct RunBuilder {
    epoch: u64,
    revision: u64,
    body: Vec<u8>,
    /// The previous sample's values' bits.
    prev: Vec<u64>,
    count: u64,
    seqs: (u64, u64),
    times: (u64, u64),
}

/// A finished run: its row and what the journal and the key need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The agent's epoch.
    pub epoch: u64,
    /// The first sample's sequence number (the row's key).
    pub first_seq: u64,
    /// Samples in it.
    pub count: u64,
    /// The lowest and highest sequence numbers.
    pub seqs: (u64, u64),
    /// The earliest and latest times.
    pub times: (u64, u64),
    /// The row.
    pub bytes: Vec<u8>,
}

impl RunBuilder {
    /// An empty run of `epoch` and schema `revision`.
    pub fn new(epoch: u64, revision: u64) -> Self {
        RunBuilder {
            epoch,
            revision,
            body: Vec::new(),
            prev: Vec::new(),
            count: 0,
            seqs: (u64::MAX, 0),
            times: (u64::MAX, 0),
        }
    }

    /// Whether a sample of `epoch` and `revision` may join.
    pub fn fits(&self, epoch: u64, revision: u64) -> bool {
        self.epoch == epoch && self.revision == revision
    }

    /// Samples gathered.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Nothing gathered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `s` (of this run's epoch and revision: see [`Self::fits`]).
    pub fn push(&mut self, s: &Stored) {
        let b = &mut self.body;
        b.extend_from_slice(&s.seq.to_le_bytes());
        b.extend_from_slice(&s.t_ms.to_le_bytes());
        b.extend_from_slice(&(s.values.len() as u32).to_le_bytes());
        b.extend_from_slice(&(s.point.cores.len() as u16).to_le_bytes());
        for f in &s.point.fields {
            b.extend_from_slice(&f.to_le_bytes());
        }
        for c in &s.point.cores {
            b.extend_from_slice(&c.to_le_bytes());
        }
        self.prev.resize(s.values.len(), 0);
        let map_at = b.len();
        b.resize(map_at + s.values.len().div_ceil(8), 0);
        for (i, (v, prev)) in s.values.iter().zip(self.prev.iter_mut()).enumerate() {
            let x = v.to_bits() ^ *prev;
            *prev = v.to_bits();
            if x == 0 {
                continue;
            }
            b[map_at + i / 8] |= 1 << (i % 8);
            let lead = x.leading_zeros() / 8;
            let trail = x.trailing_zeros() / 8;
            b.push(((lead << 4) | trail) as u8);
            b.extend_from_slice(&x.to_le_bytes()[trail as usize..(8 - lead) as usize]);
        }
        self.count += 1;
        self.seqs = (self.seqs.0.min(s.seq), self.seqs.1.max(s.seq));
        self.times = (self.times.0.min(s.t_ms), self.times.1.max(s.t_ms));
    }

    /// The row.
    pub fn finish(self) -> Run {
        let mut bytes = Vec::with_capacity(33 + self.body.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.epoch.to_le_bytes());
        bytes.extend_from_slice(&self.revision.to_le_bytes());
        bytes.extend_from_slice(&(self.count as u32).to_le_bytes());
        bytes.extend_from_slice(&self.times.0.to_le_bytes());
        bytes.extend_from_slice(&self.body);
        Run {
            epoch: self.epoch,
            first_seq: self.seqs.0,
            count: self.count,
            seqs: self.seqs,
            times: self.times,
            bytes: with_crc(bytes),
        }
    }
}

/// How many samples a recent entry (a run or a single sample) holds, and
/// the earliest one's time.
///
/// # Errors
/// Damaged or foreign bytes.
pub fn summary(bytes: &[u8]) -> Result<(usize, u64), BlockError> {
    let mut c = Cursor(checked(bytes)?);
    match c.u8()? {
        FORMAT => {
            let (_, _, count, t) = (c.u64()?, c.u64()?, c.u32()?, c.u64()?);
            Ok((count as usize, t))
        }
        _ => super::block::decode_recent(bytes).map(|s| (1, s.t_ms)),
    }
}

/// The samples of a recent entry (a run or a single sample).
///
/// # Errors
/// Damaged or foreign bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Stored>, BlockError> {
    let mut c = Cursor(checked(bytes)?);
    if c.u8()? != FORMAT {
        return super::block::decode_recent(bytes).map(|s| vec![s]);
    }
    let (epoch, revision, count, _) = (c.u64()?, c.u64()?, c.u32()?, c.u64()?);
    let mut prev: Vec<u64> = Vec::new();
    let mut out = Vec::with_capacity((count as usize).min(4_096));
    while !c.0.is_empty() {
        let (seq, t_ms) = (c.u64()?, c.u64()?);
        let n = c.u32()? as usize;
        if n > curvemon_protocol::validate::MAX_SERIES {
            return Err(BlockError::Format("too many values"));
        }
        let cores = c.u16()? as usize;
        let mut fields = [0f32; FIELDS.len()];
        for f in &mut fields {
            *f = c.f32()?;
        }
        let cores = (0..cores).map(|_| c.f32()).collect::<Result<Box<[f32]>, _>>()?;
        prev.resize(n, 0);
        let map = c.take(n.div_ceil(8))?;
        let mut values = Vec::with_capacity(n);
        for (i, prev) in prev.iter_mut().enumerate() {
            if map[i / 8] & (1 << (i % 8)) != 0 {
                let control = c.u8()?;
                let (lead, trail) = (usize::from(control >> 4), usize::from(control & 15));
                if lead + trail >= 8 {
                    return Err(BlockError::Format("a value's control byte"));
                }
                let mut x = [0u8; 8];
                x[trail..8 - lead].copy_from_slice(c.take(8 - lead - trail)?);
                *prev ^= u64::from_le_bytes(x);
            }
            values.push(f64::from_bits(*prev));
        }
        out.push(Stored {
            epoch,
            seq,
            t_ms,
            revision,
            values,
            point: Point { t_ms, fields, cores },
        });
    }
    if out.len() != count as usize {
        return Err(BlockError::Format("a run's count"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, values: Vec<f64>) -> Stored {
        let mut fields = [f32::NAN; FIELDS.len()];
        fields[1] = seq as f32;
        Stored {
            epoch: 3,
            seq,
            t_ms: 1_000 * seq,
            revision: 77,
            values,
            point: Point { t_ms: 1_000 * seq, fields, cores: vec![1.5, 2.5].into_boxed_slice() },
        }
    }

    fn bits(s: &Stored) -> (u64, u64, Vec<u64>, Vec<u32>, Vec<u32>) {
        (
            s.seq,
            s.t_ms,
            s.values.iter().map(|v| v.to_bits()).collect(),
            s.point.fields.iter().map(|v| v.to_bits()).collect(),
            s.point.cores.iter().map(|v| v.to_bits()).collect(),
        )
    }

    #[test]
    fn runs_round_trip_bit_for_bit_and_unchanged_values_cost_a_bit() {
        let samples: Vec<Stored> = (10..20)
            .map(|i| {
                stored(
                    i,
                    vec![
                        1e6 + i as f64,
                        0.1 * i as f64,
                        f64::NAN,
                        -0.0,
                        f64::INFINITY,
                        42.0,
                        i as f64 * 4096.0,
                        f64::MIN_POSITIVE,
                        1.0 / 3.0,
                    ],
                )
            })
            .chain([stored(20, vec![1.0; 3]), stored(21, vec![2.0; 12])])
            .collect();
        let mut run = RunBuilder::new(3, 77);
        for s in &samples {
            run.push(s);
        }
        let run = run.finish();
        assert_eq!(
            (run.first_seq, run.count, run.seqs, run.times),
            (10, 12, (10, 21), (10_000, 21_000))
        );
        let back = decode(&run.bytes).unwrap();
        assert_eq!(
            back.iter().map(bits).collect::<Vec<_>>(),
            samples.iter().map(bits).collect::<Vec<_>>()
        );
        assert!(back.iter().all(|s| s.epoch == 3 && s.revision == 77 && s.point.t_ms == s.t_ms));
        assert_eq!(summary(&run.bytes).unwrap(), (12, 10_000));

        // 200 values of which 10 change: far below 8 bytes a value.
        let mut run = RunBuilder::new(1, 1);
        for i in 0..5u64 {
            let mut values = vec![123_456.0; 200];
            for v in values.iter_mut().take(10) {
                *v += i as f64;
            }
            run.push(&stored(i, values));
        }
        let bytes = run.finish().bytes.len();
        assert!(bytes < 5 * (60 + 25 + 10 * 4) + 1_700, "{bytes} bytes");
    }

    #[test]
    fn single_sample_entries_still_read_and_damage_is_found() {
        let one = stored(5, vec![1.0, 2.0]);
        let old = super::super::block::encode_recent(&one);
        assert_eq!(decode(&old).unwrap().iter().map(bits).collect::<Vec<_>>(), vec![bits(&one)]);
        assert_eq!(summary(&old).unwrap(), (1, 5_000));
        let mut run = RunBuilder::new(3, 77);
        run.push(&one);
        run.push(&stored(6, vec![1.0, 2.5]));
        let bytes = run.finish().bytes;
        for i in [0, 3, 4, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
    }
}
