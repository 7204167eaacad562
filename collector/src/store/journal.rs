//! The export journal: in what order samples reached the store, for the
//! exports that forward them (remote write).
//!
//! Each committed batch appends one entry per host it holds: which samples
//! (epoch, sequence range, time range) and the host's name. An export reads
//! the journal from its cursor, fetches those samples from the store, and
//! moves its cursor once the receiver took them, in the same file; so after
//! a crash or a restart it resumes where it left off, and backfilled
//! samples (older than live ones already sent) are forwarded too, in the
//! order they arrived. Entries every export has passed are deleted.
//!
//! The journal is written only while some export is configured: an export
//! added later starts from its first run (the store's older history is
//! not replayed).

use curvemon_keys::PublicKey;

use super::block::BlockError;

const FORMAT: u8 = 1;

/// One host's samples in one committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The agent.
    pub host: PublicKey,
    /// The host's name when they arrived (exports label series with it).
    pub name: String,
    /// The agent's epoch.
    pub epoch: u64,
    /// Lowest sequence number among them.
    pub from_seq: u64,
    /// Highest.
    pub to_seq: u64,
    /// Earliest time taken, Unix ms.
    pub from_ms: u64,
    /// Latest.
    pub to_ms: u64,
    /// How many.
    pub count: u64,
    /// Samples journaled up to and including this entry, since the store
    /// began (so the distance between two entries is a subtraction).
    pub total: u64,
}

impl Entry {
    /// The stored bytes (checksummed, like every other record).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = vec![FORMAT];
        body.extend_from_slice(self.host.as_bytes());
        for n in [
            self.epoch,
            self.from_seq,
            self.to_seq,
            self.from_ms,
            self.to_ms,
            self.count,
            self.total,
        ] {
            body.extend_from_slice(&n.to_le_bytes());
        }
        body.extend_from_slice(self.name.as_bytes());
        let mut out = crc32fast::hash(&body).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Reads [`Entry::encode`]'s bytes.
    ///
    /// # Errors
    /// Damaged or foreign bytes.
    pub fn decode(bytes: &[u8]) -> Result<Entry, BlockError> {
        let (crc, body) = bytes.split_at_checked(4).ok_or(BlockError::Format("too short"))?;
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(BlockError::Checksum);
        }
        if body.first() != Some(&FORMAT) || body.len() < 1 + 32 + 7 * 8 {
            return Err(BlockError::Format("not a journal entry"));
        }
        let host: [u8; 32] = body[1..33].try_into().map_err(|_| BlockError::Format("key"))?;
        let n = |i: usize| {
            let at = 33 + 8 * i;
            u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or_default())
        };
        let name = std::str::from_utf8(&body[33 + 56..])
            .map_err(|_| BlockError::Format("name is not UTF-8"))?
            .to_string();
        Ok(Entry {
            host: PublicKey::from_bytes(host),
            name,
            epoch: n(0),
            from_seq: n(1),
            to_seq: n(2),
            from_ms: n(3),
            to_ms: n(4),
            count: n(5),
            total: n(6),
        })
    }

    /// Whether a stored sample is one of this entry's.
    pub fn holds(&self, epoch: u64, seq: u64) -> bool {
        epoch == self.epoch && (self.from_seq..=self.to_seq).contains(&seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_found() {
        let e = Entry {
            host: PublicKey::from_bytes([7; 32]),
            name: "web-1".into(),
            epoch: 3,
            from_seq: 10,
            to_seq: 12,
            from_ms: 1_000,
            to_ms: 3_000,
            count: 3,
            total: 99,
        };
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert_eq!(Entry::decode(&bad), Err(BlockError::Checksum));
        assert!(e.holds(3, 11) && !e.holds(3, 13) && !e.holds(4, 11));
    }
}
