//! Which samples of a host are accounted for: stored, or reported lost.
//!
//! Per host, an epoch (the agent's spool's) and within it a high-water
//! mark below which nothing is missing, plus the ranges accounted for
//! above it (live samples arrive before the backlog fills the hole below
//! them). The high-water mark is what the collector acknowledges; a sample
//! already accounted for is a duplicate.

/// A host's accounted samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSeq {
    /// The agent's epoch (0 before the first `Resume`).
    pub epoch: u64,
    /// Every sample up to here is accounted for.
    pub hw: u64,
    /// Disjoint, sorted ranges above `hw + 1`, inclusive.
    pub above: Vec<(u64, u64)>,
}

impl HostSeq {
    /// Whether `seq` is accounted for.
    pub fn has(&self, seq: u64) -> bool {
        seq <= self.hw || self.above.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }

    /// Accounts for `from..=to`; the high-water mark moves over every
    /// range that now touches it.
    pub fn add(&mut self, from: u64, to: u64) {
        if to <= self.hw || from > to {
            return;
        }
        let from = from.max(self.hw.saturating_add(1));
        self.above.push((from, to));
        self.above.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.above.len());
        for (a, b) in self.above.drain(..) {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        while merged.first().is_some_and(|(a, _)| *a <= self.hw.saturating_add(1)) {
            let (_, b) = merged.remove(0);
            self.hw = self.hw.max(b);
        }
        self.above = merged;
    }

    /// How many of `from..=to` are not yet accounted for.
    pub fn missing_in(&self, from: u64, to: u64) -> u64 {
        if from > to {
            return 0;
        }
        let mut missing = 0;
        let mut at = from.max(self.hw.saturating_add(1));
        for (a, b) in &self.above {
            if at > to {
                break;
            }
            if *b < at {
                continue;
            }
            if *a > at {
                missing += (*a).min(to.saturating_add(1)) - at;
            }
            at = at.max(b.saturating_add(1));
        }
        if at <= to {
            missing = missing.saturating_add(to - at).saturating_add(1);
        }
        missing
    }

    /// A new epoch: nothing of it is stored yet.
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.hw = 0;
        self.above.clear();
    }

    /// Bytes: epoch, high-water mark, the ranges.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 16 * self.above.len());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.hw.to_le_bytes());
        out.extend_from_slice(&(self.above.len() as u32).to_le_bytes());
        for (a, b) in &self.above {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    /// The inverse of [`HostSeq::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<HostSeq> {
        let u64_at = |i: usize| Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
        let epoch = u64_at(0)?;
        let hw = u64_at(8)?;
        let n = u32::from_le_bytes(bytes.get(16..20)?.try_into().ok()?) as usize;
        if bytes.len() != 20 + 16 * n {
            return None;
        }
        let above = (0..n)
            .map(|i| Some((u64_at(20 + 16 * i)?, u64_at(28 + 16 * i)?)))
            .collect::<Option<_>>()?;
        Some(HostSeq { epoch, hw, above })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_high_water_mark_follows_what_is_contiguous() {
        let mut s = HostSeq { epoch: 1, ..HostSeq::default() };
        s.add(1, 10);
        assert_eq!((s.hw, s.above.clone()), (10, vec![]));
        s.add(20, 25);
        s.add(30, 30);
        assert_eq!((s.hw, s.above.clone()), (10, vec![(20, 25), (30, 30)]));
        assert!(s.has(5) && s.has(22) && s.has(30) && !s.has(11) && !s.has(26));
        assert_eq!(s.missing_in(1, 40), 9 + 4 + 10);
        assert_eq!(s.missing_in(21, 24), 0);
        s.add(11, 19);
        assert_eq!((s.hw, s.above.clone()), (25, vec![(30, 30)]));
        s.add(26, 29);
        assert_eq!((s.hw, s.above.clone()), (30, vec![]));
        s.add(3, 7);
        assert_eq!(s.hw, 30, "old ranges change nothing");
        assert_eq!(HostSeq::from_bytes(&s.to_bytes()), Some(s.clone()));
        s.add(40, 41);
        assert_eq!(HostSeq::from_bytes(&s.to_bytes()), Some(s));
        assert_eq!(HostSeq::from_bytes(&[1, 2, 3]), None);
    }
}
