//! Exponential reconnect backoff with jitter, so that a fleet whose collector
//! restarts does not reconnect in lockstep.

use std::time::Duration;

/// Delays of base·2ⁿ, capped, each scaled by a random factor in [0.8, 1.2).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`·1.2.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max, attempt: 0 }
    }

    /// The next delay; `jitter` is a random number in [0, 1).
    pub fn next(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(16));
        let delay = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        delay.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }

    /// Back to the base delay, after a link that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number in [0, 1) from the OS; 0.5 if none is available.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let seq: Vec<u64> = (0..7).map(|_| b.next(0.5).as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(800));
        assert_eq!(b.next(0.999_999).as_millis(), 2399);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
