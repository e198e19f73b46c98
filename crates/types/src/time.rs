//! Time as the services store it: unix seconds (row timestamps) and unix milliseconds (leases,
//! line order). Where time decides behaviour, the deciding function takes "now" as an argument
//! (the order sweeper's `run_once_at`, payment's `poll_trades`, the admission limiter), so its
//! tests drive it with made-up times; the handlers read the system clock through these two.

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` as unix seconds; 0 before the epoch, `i64::MAX` past its range.
pub fn secs_of(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// `time` as unix milliseconds; 0 before the epoch, `i64::MAX` past its range.
pub fn millis_of(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Now as unix seconds, by the system clock.
pub fn unix_secs() -> i64 {
    secs_of(SystemTime::now())
}

/// Now as unix milliseconds, by the system clock.
pub fn unix_millis() -> i64 {
    millis_of(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_system_clock_agrees_with_itself() {
        let secs = unix_secs();
        let millis = unix_millis();
        // 2024-01-01: any machine running these tests is past it.
        assert!(secs > 1_704_067_200, "{secs}");
        assert!((millis / 1_000 - secs).abs() <= 1, "{millis} {secs}");
    }

    #[test]
    fn conversions_clamp_at_the_epoch() {
        assert_eq!(secs_of(UNIX_EPOCH), 0);
        assert_eq!(millis_of(UNIX_EPOCH + Duration::from_millis(1_500)), 1_500);
        assert_eq!(secs_of(UNIX_EPOCH + Duration::from_millis(1_500)), 1);
        assert_eq!(secs_of(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(millis_of(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
