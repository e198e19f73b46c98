//! Time as the services store it: unix seconds (row timestamps) and unix milliseconds (leases,
//! line order), read from a [`Clock`] so a test can hold time still or move it on.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Now as unix seconds.
    fn unix_secs(&self) -> i64 {
        secs_of(self.now())
    }

    /// Now as unix milliseconds.
    fn unix_millis(&self) -> i64 {
        millis_of(self.now())
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move: for tests of expiry, leases and sweeps.
#[derive(Debug, Default)]
pub struct TestClock {
    millis: AtomicI64,
}

impl TestClock {
    /// A clock showing `unix_millis`.
    pub fn at_millis(unix_millis: i64) -> Self {
        TestClock {
            millis: AtomicI64::new(unix_millis),
        }
    }

    /// A clock showing `unix_secs`.
    pub fn at_secs(unix_secs: i64) -> Self {
        TestClock::at_millis(unix_secs.saturating_mul(1_000))
    }

    /// Sets the time to `unix_millis`.
    pub fn set_millis(&self, unix_millis: i64) {
        self.millis.store(unix_millis, Ordering::SeqCst);
    }

    /// Moves the time on by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| {
                Some(ms.saturating_add(by))
            });
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        let ms = self.millis.load(Ordering::SeqCst);
        let since = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        UNIX_EPOCH + since
    }

    fn unix_millis(&self) -> i64 {
        // Exact even before the epoch, where `now` stops.
        self.millis.load(Ordering::SeqCst)
    }

    fn unix_secs(&self) -> i64 {
        self.millis.load(Ordering::SeqCst).div_euclid(1_000)
    }
}

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
    SystemClock.unix_secs()
}

/// Now as unix milliseconds, by the system clock.
pub fn unix_millis() -> i64 {
    SystemClock.unix_millis()
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn the_test_clock_moves_only_when_told() {
        let clock = TestClock::at_secs(1_000);
        assert_eq!((clock.unix_secs(), clock.unix_millis()), (1_000, 1_000_000));
        clock.advance(Duration::from_millis(1_500));
        assert_eq!((clock.unix_secs(), clock.unix_millis()), (1_001, 1_001_500));
        assert_eq!(secs_of(clock.now()), 1_001);
        clock.set_millis(-1);
        assert_eq!((clock.unix_secs(), clock.unix_millis()), (-1, -1));
        clock.set_millis(i64::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.unix_millis(), i64::MAX);
        let shared: std::sync::Arc<dyn Clock> = std::sync::Arc::new(TestClock::at_secs(7));
        assert_eq!(shared.unix_secs(), 7);
    }
}
