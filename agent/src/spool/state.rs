//! The spool's small state file: the epoch, the highest acknowledged
//! sample, the sequence numbers handed out (reserved ahead, so none is
//! ever used twice), whether the agent stopped cleanly and on which boot,
//! and the gaps not yet acknowledged.
//! Text, one item per line, replaced atomically (written to a temporary
//! file, synced, renamed), so it is always one whole version or another.

use std::{
    io::{self, Write},
    path::Path,
};

use curvemon_protocol::{Gap, GapReason};

/// The acknowledgement file: the epoch and the highest acknowledged
/// sample, rewritten in place (24 bytes: epoch, acked, CRC-32 of both, 4
/// zero bytes) on every acknowledgement, which is cheaper than replacing
/// the state file each second. A torn or damaged one is ignored (the state
/// file's older `acked` holds, and the collector drops what is resent).
pub const ACK_FILE: &str = "acked";

/// The acknowledgement file's bytes.
pub fn ack_bytes(epoch: u64, acked: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&epoch.to_le_bytes());
    b[8..16].copy_from_slice(&acked.to_le_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The acknowledged sequence number in the file at `path`, if it is whole
/// and of `epoch`.
pub fn load_ack(path: &Path, epoch: u64) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let b: &[u8; 24] = bytes.get(..24)?.try_into().ok()?;
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    let file_epoch = u64::from_le_bytes(b[..8].try_into().ok()?);
    (crc == crc32fast::hash(&b[..16]) && file_epoch == epoch)
        .then(|| u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()))
}

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The epoch of the spool's samples.
    pub epoch: u64,
    /// Every sample up to here was acknowledged.
    pub acked: u64,
    /// Sequence numbers below this may have been used: after a clean stop
    /// the next sample's; while running, a reservation ahead of it.
    pub next: u64,
    /// Whether the agent closed the spool (a clean stop).
    pub clean: bool,
    /// The host's boot id when the file was written.
    pub boot_id: String,
    /// Samples lost and not yet acknowledged as reported.
    pub gaps: Vec<Gap>,
}

impl State {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "# curvemon agent spool state\nepoch {}\nacked {}\nnext {}\nclean {}\nboot {}\n",
            self.epoch,
            self.acked,
            self.next,
            u8::from(self.clean),
            if self.boot_id.is_empty() { "-" } else { &self.boot_id }
        );
        for g in &self.gaps {
            text.push_str(&format!(
                "gap {} {} {} {} {}\n",
                g.from_seq,
                g.to_seq,
                g.from_ms,
                g.to_ms,
                g.reason.as_str()
            ));
        }
        text
    }

    /// Parses the file's text; `None` if it is not a whole state.
    pub fn parse(text: &str) -> Option<State> {
        let mut state = State::default();
        let mut seen_epoch = false;
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
            match words.next()? {
                "epoch" => {
                    state.epoch = number(words.next())?;
                    seen_epoch = true;
                }
                "acked" => state.acked = number(words.next())?,
                "next" => state.next = number(words.next())?,
                "clean" => state.clean = number(words.next())? == 1,
                "boot" => {
                    state.boot_id = words.next()?.trim_matches('-').to_string();
                }
                "gap" => {
                    let from_seq = number(words.next())?;
                    let to_seq = number(words.next())?;
                    let from_ms = number(words.next())?;
                    let to_ms = number(words.next())?;
                    let reason = match words.next()? {
                        "spool_full" => GapReason::SpoolFull,
                        "spool_failed" => GapReason::SpoolFailed,
                        "unsynced" => GapReason::Unsynced,
                        "skipped" => GapReason::Skipped,
                        _ => GapReason::Unavailable,
                    };
                    state.gaps.push(Gap {
                        epoch: state.epoch,
                        from_seq,
                        to_seq,
                        from_ms,
                        to_ms,
                        reason,
                    });
                }
                _ => return None,
            }
        }
        for g in &mut state.gaps {
            g.epoch = state.epoch;
        }
        (seen_epoch && state.epoch != 0).then_some(state)
    }

    /// Reads `path`; `None` when it is missing or not a whole state.
    pub fn load(path: &Path) -> Option<State> {
        State::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Replaces `path` with this state, atomically; with `sync`, also
    /// durably (a process crash never loses a rename, a power loss can).
    ///
    /// # Errors
    /// The temporary file cannot be written, synced or renamed.
    pub fn store(&self, path: &Path, sync: bool) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(self.to_text().as_bytes())?;
            if sync {
                file.sync_data()?;
            }
        }
        std::fs::rename(&tmp, path)?;
        if sync && let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let state = State {
            epoch: 77,
            acked: 10,
            next: 42,
            clean: true,
            boot_id: "0b7e1f1c-0f2e-4d55-9a3c-2f1d6f0e9a11".into(),
            gaps: vec![Gap {
                epoch: 77,
                from_seq: 3,
                to_seq: 5,
                from_ms: 3_000,
                to_ms: 5_000,
                reason: GapReason::SpoolFull,
            }],
        };
        assert_eq!(State::parse(&state.to_text()), Some(state));
        assert_eq!(State::parse(""), None);
        assert_eq!(State::parse("epoch 0\n"), None);
        assert_eq!(State::parse("epoch 5\nacked x\n"), None);
        assert_eq!(State::parse("epoch 5\nwhat 1\n"), None);
    }
}
