//! Wall-clock times that come from agents, turned into text without a
//! panic. An agent chooses `taken_at_ms` and `boot_time_unix`: adding
//! `u64::MAX` to the epoch overflows `SystemTime`, and humantime's RFC 3339
//! formatter panics past the year 9999. Such times are shown as the last
//! instant of 9999 instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const LAST_MS: u64 = 253_402_300_799_999;

/// Unix milliseconds as a time, capped at the year 9999.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS))
}

/// Unix seconds as a time, capped at the year 9999.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    from_unix_ms(secs.saturating_mul(1000))
}

/// The wall clock, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 with milliseconds, in UTC; times past 9999 are capped there.
pub fn rfc3339(t: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_millis(LAST_MS);
    humantime::format_rfc3339_millis(t.min(last)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_time_formats() {
        assert_eq!(rfc3339(from_unix_ms(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(from_unix_ms(1_763_760_000_123)), "2025-11-21T21:20:00.123Z");
        assert_eq!(rfc3339(from_unix_ms(u64::MAX)), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(from_unix_secs(u64::MAX)), "9999-12-31T23:59:59.999Z");
    }
}
