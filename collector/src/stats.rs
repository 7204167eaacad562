//! The collector's own counters, shared between the socket threads (which
//! increment) and the HTTP API (which reads). Relaxed atomics: each counter
//! is independent and only ever grows.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of what arrived on the agent socket.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames received from authenticated agents.
    pub frames_received: AtomicU64,
    /// Bytes in those frames.
    pub bytes_received: AtomicU64,
    /// Frames that did not decode (bad magic, malformed body, wrong shape).
    pub decode_errors: AtomicU64,
    /// Frames of another protocol version (answered with a reject).
    pub version_mismatches: AtomicU64,
    /// TCP connections accepted on the agent socket (before any handshake).
    pub connections_accepted: AtomicU64,
    /// CURVE handshakes that failed (wrong server key, NULL mechanism, ...).
    pub handshake_failures: AtomicU64,
    /// Agents refused by the allowlist.
    pub agents_refused: AtomicU64,
    /// Replies that could not be queued (peer gone or queue full).
    pub replies_dropped: AtomicU64,
    /// Frames refused because their key was revoked during the session.
    pub revoked_frames: AtomicU64,
    /// Frames dropped because their agent exceeded its message rate.
    pub throttled_frames: AtomicU64,
    /// Failed handshakes by reason, in [`HANDSHAKE_REASONS`] order.
    pub handshake_reasons: [AtomicU64; HANDSHAKE_REASONS.len()],
}

/// Why CURVE handshakes fail, as the `reason` label says it.
pub const HANDSHAKE_REASONS: [&str; 5] = [
    "key_refused",        // ZAP refused the client key (allowlist)
    "cryptographic",      // the client used another server key, or garbage
    "mechanism_mismatch", // the client does not speak CURVE (NULL, PLAIN)
    "protocol",           // another ZMTP protocol error
    "closed",             // the peer closed the connection mid-handshake
];

/// A point-in-time copy of [`Stats`], for JSON.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub frames_received: u64,
    pub bytes_received: u64,
    pub decode_errors: u64,
    pub version_mismatches: u64,
    pub connections_accepted: u64,
    pub handshake_failures: u64,
    pub agents_refused: u64,
    pub replies_dropped: u64,
    pub revoked_frames: u64,
    pub throttled_frames: u64,
    pub handshake_reasons: [u64; HANDSHAKE_REASONS.len()],
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            frames_received: get(&self.frames_received),
            bytes_received: get(&self.bytes_received),
            decode_errors: get(&self.decode_errors),
            version_mismatches: get(&self.version_mismatches),
            connections_accepted: get(&self.connections_accepted),
            handshake_failures: get(&self.handshake_failures),
            agents_refused: get(&self.agents_refused),
            replies_dropped: get(&self.replies_dropped),
            revoked_frames: get(&self.revoked_frames),
            throttled_frames: get(&self.throttled_frames),
            handshake_reasons: std::array::from_fn(|i| get(&self.handshake_reasons[i])),
        }
    }
}
