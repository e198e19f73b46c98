//! Which instance gets a call: the power of two choices over the calls each instance has in
//! flight, skipping instances ejected for failing.
//!
//! In-flight calls are the load signal because they need no tuning and react within one call:
//! an instance that slows down or stalls keeps its calls longer, so it loses most choices while
//! callers keep it busy, and instances that answer alike are chosen alike (ties are broken at
//! random). An instance that fails to connect or answers `UNAVAILABLE` is ejected for a
//! jittered, exponentially growing time and comes back on its own when that passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::config::BalanceSettings;
use crate::discovery::backoff;

/// One instance of a target service.
pub(crate) struct Instance {
    /// `host:port`.
    pub(crate) addr: String,
    /// Its (lazily connecting, reconnecting) HTTP/2 channel.
    pub(crate) channel: tonic::transport::Channel,
    in_flight: AtomicUsize,
    ejection: Mutex<Ejection>,
}

#[derive(Default)]
struct Ejection {
    /// Failures since the last success; sets the length of the next ejection.
    consecutive: u32,
    until: Option<Instant>,
}

impl Instance {
    pub(crate) fn new(addr: String, channel: tonic::transport::Channel) -> Arc<Self> {
        Arc::new(Instance {
            addr,
            channel,
            in_flight: AtomicUsize::new(0),
            ejection: Mutex::default(),
        })
    }

    /// Calls sent to this instance and not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a call as in flight until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn ejected(&self, now: Instant) -> bool {
        let ejection = self.ejection.lock();
        ejection.until.is_some_and(|until| until > now)
    }

    /// Takes the instance out of rotation after a failure; returns for how long.
    pub(crate) fn eject(&self, settings: &BalanceSettings) -> Duration {
        let mut ejection = self.ejection.lock();
        let time = backoff(
            ejection.consecutive,
            settings.eject_base,
            settings.eject_max,
        );
        ejection.consecutive = ejection.consecutive.saturating_add(1);
        ejection.until = Some(Instant::now() + time);
        time
    }

    /// The instance answered: the next failure starts the backoff from the beginning.
    pub(crate) fn succeeded(&self) {
        let mut ejection = self.ejection.lock();
        if ejection.consecutive != 0 {
            *ejection = Ejection::default();
        }
    }
}

/// A call in flight on an instance.
pub(crate) struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks an instance for the next attempt, never one in `tried`. Ejected instances are skipped
/// while others remain; when every candidate is ejected they are tried anyway, since refusing
/// all of them would turn a partial failure into a full outage (the circuit breaker is what
/// stops calls to a service that is really down).
pub(crate) fn pick(instances: &[Arc<Instance>], tried: &[Arc<Instance>]) -> Option<Arc<Instance>> {
    let now = Instant::now();
    let untried: Vec<&Arc<Instance>> = instances
        .iter()
        .filter(|i| !tried.iter().any(|t| t.addr == i.addr))
        .collect();
    let healthy: Vec<&Arc<Instance>> = untried
        .iter()
        .copied()
        .filter(|i| !i.ejected(now))
        .collect();
    let candidates = if healthy.is_empty() { untried } else { healthy };
    least_loaded_of_two(&candidates).cloned()
}

/// The less busy of two distinct instances drawn at random (the first drawn on a tie).
fn least_loaded_of_two<'a>(candidates: &[&'a Arc<Instance>]) -> Option<&'a Arc<Instance>> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (candidates[a], candidates[b]);
            Some(if b.in_flight() < a.in_flight() { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(n: usize) -> Vec<Arc<Instance>> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i);
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("endpoint")
                    .connect_lazy();
                Instance::new(addr, channel)
            })
            .collect()
    }

    fn share(picks: &[String], addr: &str) -> usize {
        picks.iter().filter(|p| *p == addr).count()
    }

    #[tokio::test]
    async fn idle_instances_share_calls_and_busy_ones_lose_choices() {
        let all = instances(3);
        let picks: Vec<String> = (0..3_000)
            .map(|_| pick(&all, &[]).expect("pick").addr.clone())
            .collect();
        for i in &all {
            let n = share(&picks, &i.addr);
            assert!((850..=1150).contains(&n), "{} got {n} of 3000", i.addr);
        }

        // Two calls stuck on the first instance: it only wins when drawn against itself, never.
        let _stuck = (all[0].start(), all[0].start());
        let picks: Vec<String> = (0..1_000)
            .map(|_| pick(&all, &[]).expect("pick").addr.clone())
            .collect();
        assert_eq!(share(&picks, &all[0].addr), 0);
    }

    #[tokio::test]
    async fn ejected_instances_are_skipped_until_their_time_passes_and_tried_ones_never() {
        let all = instances(3);
        let settings = BalanceSettings {
            eject_base: Duration::from_millis(60),
            eject_max: Duration::from_secs(1),
        };
        let time = all[1].eject(&settings);
        assert!(time >= Duration::from_millis(30) && time <= Duration::from_millis(60));
        for _ in 0..200 {
            assert_ne!(pick(&all, &[]).expect("pick").addr, all[1].addr);
        }
        // Another failure doubles the ejection; a success resets it.
        let longer = all[1].eject(&settings);
        assert!(longer >= Duration::from_millis(60), "{longer:?}");
        all[1].succeeded();
        let reset = all[1].eject(&settings);
        assert!(reset <= Duration::from_millis(60), "{reset:?}");
        std::thread::sleep(Duration::from_millis(70));
        assert!((0..500).any(|_| pick(&all, &[]).expect("pick").addr == all[1].addr));

        // Excluding tried instances; all left are ejected: tried anyway; none left: None.
        let tried = [all[0].clone(), all[2].clone()];
        all[1].eject(&settings);
        assert_eq!(pick(&all, &tried).expect("pick").addr, all[1].addr);
        let everyone = [all[0].clone(), all[1].clone(), all[2].clone()];
        assert!(pick(&all, &everyone).is_none());
        assert!(pick(&[], &[]).is_none());
    }
}
