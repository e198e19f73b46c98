//! A circuit breaker per target service.
//!
//! Closed, it counts calls and failures (`UNAVAILABLE`, `DEADLINE_EXCEEDED`) over a rolling
//! window; when at least `min_calls` were made and `failure_percent` of them failed, it opens.
//! Open, calls fail at once with `UNAVAILABLE "circuit open"` without reaching the target. After
//! `open_for` it lets `half_open_probes` calls through: as many successes close it, one failure
//! opens it again. Business errors (`NOT_FOUND`, `FAILED_PRECONDITION`, ...) and shed calls
//! (`RESOURCE_EXHAUSTED`) say nothing about the target's health and count as successes.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::{BoxError, TrailerCode, response_code};
use crate::around::Around;
use crate::error::{NotSent, not_sent, not_sent_reason};

use crate::config::BreakerSettings;

/// The rolling window is kept as this many buckets (its resolution, not a tunable).
const WINDOW_BUCKETS: u64 = 10;

/// What the state gauge reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; failures are counted.
    Closed = 0,
    /// Calls fail fast.
    Open = 1,
    /// A few probe calls decide.
    HalfOpen = 2,
}

enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: u32, passed: u32 },
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    calls: u32,
    failures: u32,
}

struct Inner {
    mode: Mode,
    buckets: [Bucket; WINDOW_BUCKETS as usize],
    /// Reloadable ([`Breaker::reconfigure`]), so kept under the same lock as the counts.
    settings: BreakerSettings,
    bucket_ms: u64,
}

fn bucket_ms(settings: &BreakerSettings) -> u64 {
    (u64::try_from(settings.window.as_millis()).unwrap_or(u64::MAX) / WINDOW_BUCKETS).max(1)
}

/// The breaker of one target service.
pub(crate) struct Breaker {
    target: Arc<str>,
    started: Instant,
    inner: Mutex<Inner>,
    state: Gauge,
}

/// Permission to make one call; report how it went with [`Permit::record`]. Dropped without a
/// record (the caller went away), it only frees its probe slot.
pub(crate) struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    pub(crate) fn new(target: Arc<str>, settings: &BreakerSettings, state: Gauge) -> Arc<Self> {
        state.set(BreakerState::Closed as i64);
        Arc::new(Breaker {
            target,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                mode: Mode::Closed,
                buckets: [Bucket::default(); WINDOW_BUCKETS as usize],
                settings: settings.clone(),
                bucket_ms: bucket_ms(settings),
            }),
            state,
        })
    }

    /// Takes new settings (a config-centre reload). The state stays; a new window length
    /// starts the counts afresh, since old buckets no longer line up with it.
    pub(crate) fn reconfigure(&self, settings: &BreakerSettings) {
        let mut inner = self.inner.lock();
        let ms = bucket_ms(settings);
        if ms != inner.bucket_ms {
            inner.buckets = [Bucket::default(); WINDOW_BUCKETS as usize];
            inner.bucket_ms = ms;
        }
        inner.settings = settings.clone();
    }

    /// The current state.
    pub(crate) fn state(&self) -> BreakerState {
        let inner = self.inner.lock();
        match inner.mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { .. } => BreakerState::Open,
            Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Lets a call through, or refuses it with `UNAVAILABLE "circuit open"`.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Permit, Status> {
        let mut inner = self.inner.lock();
        if let Mode::Open { until } = inner.mode {
            if Instant::now() < until {
                return Err(self.refusal());
            }
            inner.mode = Mode::HalfOpen {
                probing: 0,
                passed: 0,
            };
            self.state.set(BreakerState::HalfOpen as i64);
            tracing::info!(target_service = %self.target, "circuit half-open: probing");
        }
        let probes = inner.settings.half_open_probes;
        let probe = match &mut inner.mode {
            Mode::HalfOpen { probing, passed } => {
                if *probing + *passed >= probes {
                    return Err(self.refusal());
                }
                *probing += 1;
                true
            }
            _ => false,
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    fn refusal(&self) -> Status {
        Status::unavailable(format!("circuit open: {} is failing", self.target))
    }

    fn finish(&self, probe: bool, outcome: Option<bool>) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        if probe {
            let probes = inner.settings.half_open_probes;
            let Mode::HalfOpen { probing, passed } = &mut inner.mode else {
                return;
            };
            *probing = probing.saturating_sub(1);
            match outcome {
                None => {}
                Some(true) => self.open(&mut inner, now),
                Some(false) => {
                    *passed += 1;
                    if *passed >= probes {
                        inner.mode = Mode::Closed;
                        inner.buckets = [Bucket::default(); WINDOW_BUCKETS as usize];
                        self.state.set(BreakerState::Closed as i64);
                        tracing::info!(target_service = %self.target, "circuit closed");
                    }
                }
            }
            return;
        }
        let (Mode::Closed, Some(failed)) = (&inner.mode, outcome) else {
            return;
        };
        let epoch = now.duration_since(self.started).as_millis() as u64 / inner.bucket_ms;
        let bucket = &mut inner.buckets[(epoch % WINDOW_BUCKETS) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(failed);
        if !failed {
            return;
        }
        let (calls, failures) = inner
            .buckets
            .iter()
            .filter(|b| b.epoch + WINDOW_BUCKETS > epoch)
            .fold((0u64, 0u64), |(c, f), b| {
                (c + u64::from(b.calls), f + u64::from(b.failures))
            });
        if calls >= u64::from(inner.settings.min_calls)
            && failures * 100 >= calls * u64::from(inner.settings.failure_percent)
        {
            tracing::warn!(
                target_service = %self.target,
                calls,
                failures,
                open_ms = inner.settings.open_for.as_millis() as u64,
                "circuit open"
            );
            self.open(&mut inner, now);
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.mode = Mode::Open {
            until: now + inner.settings.open_for,
        };
        self.state.set(BreakerState::Open as i64);
    }
}

impl Permit {
    /// Records the call's outcome: `failed` when it ended `UNAVAILABLE` or `DEADLINE_EXCEEDED`.
    pub(crate) fn record(mut self, failed: bool) {
        self.recorded = true;
        self.breaker.finish(self.probe, Some(failed));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.finish(self.probe, None);
        }
    }
}

/// The breaker as a client layer: refuses calls while open (marked [`NotSent::CircuitOpen`]) and
/// records how each admitted call ended.
#[derive(Clone)]
pub(crate) struct BreakerLayer {
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) rejected: Counter,
}

impl Around<http::Request<Body>, http::Response<Body>, BoxError> for BreakerLayer {
    fn around<S>(
        &self,
        mut inner: S,
        req: http::Request<Body>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, BoxError>>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(refused) => {
                self.rejected.inc();
                let refused = not_sent(NotSent::CircuitOpen, refused);
                return Box::pin(std::future::ready(Err(refused.into())));
            }
        };
        Box::pin(async move {
            let result = inner.call(req).await;
            match failed(&result) {
                Some(failed) => permit.record(failed),
                // Nothing was called: the breaker learns nothing from it.
                None => drop(permit),
            }
            result
        })
    }
}

/// Whether a call's outcome counts as a failure of the target (`UNAVAILABLE` or
/// `DEADLINE_EXCEEDED`, however it came); `None` when nothing was called (no instance known, no
/// time left).
fn failed(result: &Result<http::Response<Body>, BoxError>) -> Option<bool> {
    let unhealthy = |code| {
        matches!(
            code,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        )
    };
    match result {
        Ok(resp) => {
            let code = resp
                .extensions()
                .get::<TrailerCode>()
                .map(|c| c.0)
                .or_else(|| response_code(resp));
            Some(code.is_some_and(unhealthy))
        }
        Err(e) => match e.downcast_ref::<Status>() {
            Some(status) => match not_sent_reason(status) {
                Some(NotSent::NoInstance | NotSent::NoTimeLeft) => None,
                _ => Some(unhealthy(status.code())),
            },
            None => Some(true),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker(open_ms: u64) -> Arc<Breaker> {
        let settings = BreakerSettings {
            window: Duration::from_secs(10),
            min_calls: 10,
            failure_percent: 50,
            open_for: Duration::from_millis(open_ms),
            half_open_probes: 2,
        };
        Breaker::new(Arc::from("product"), &settings, Gauge::default())
    }

    #[test]
    fn opens_on_the_failure_rate_once_enough_calls_were_seen() {
        let b = breaker(60_000);
        // Few calls: even all failing keeps it closed.
        for _ in 0..9 {
            b.admit().expect("closed").record(true);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Successes dilute the rate below 50%...
        for _ in 0..12 {
            b.admit().expect("closed").record(false);
        }
        b.admit().expect("closed").record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        // ...until failures reach half of the window.
        for _ in 0..2 {
            b.admit().expect("closed").record(true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.state.get(), BreakerState::Open as i64);
        let refused = b.admit().err().expect("open");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().contains("circuit open"), "{refused:?}");
    }

    #[test]
    fn half_open_probes_close_it_or_a_failure_reopens_it() {
        let b = breaker(30);
        for _ in 0..10 {
            b.admit().expect("closed").record(true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));

        // Two probes at most; a third call is refused while they run.
        let p1 = b.admit().expect("probe");
        let p2 = b.admit().expect("probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err());
        // A probe that fails reopens it.
        p1.record(true);
        drop(p2);
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));

        // A dropped probe frees its slot; two successes close it.
        drop(b.admit().expect("probe"));
        b.admit().expect("probe").record(false);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.admit().expect("probe").record(false);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.state.get(), BreakerState::Closed as i64);
        // The window starts afresh.
        for _ in 0..9 {
            b.admit().expect("closed").record(true);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
