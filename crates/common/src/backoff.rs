//! Exponential backoff with jitter, shared by discovery (Consul retries) and the balancer
//! (ejections).

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (0-based): `base · 2^attempt`, capped at `cap`,
/// then jittered uniformly into its upper half, so many clients failing together do not retry
/// in lockstep.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let full = exponential(attempt, base, cap);
    let half = full / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

fn exponential(attempt: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(3);
        for attempt in 0..40 {
            let d = backoff(attempt, base, cap);
            let full = exponential(attempt, base, cap);
            assert!(d <= cap, "{d:?}");
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?} vs {full:?}");
        }
        assert_eq!(exponential(0, base, cap), base);
        assert_eq!(exponential(3, base, cap), Duration::from_millis(800));
        assert_eq!(exponential(30, base, cap), cap);
    }
}
