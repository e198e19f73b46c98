//! The innermost client layer: which instance gets a call, and the attempt on it.
//!
//! Which instance: the power of two choices over the calls each instance has in
//! flight, skipping instances ejected for failing.
//!
//! In-flight calls are the load signal because they need no tuning and react within one call:
//! an instance that slows down or stalls keeps its calls longer, so it loses most choices while
//! callers keep it busy, and instances that answer alike are chosen alike (ties are broken at
//! random). An instance that fails to connect or answers `UNAVAILABLE` is ejected for a
//! jittered, exponentially growing time and comes back on its own when that passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use rand::Rng;
use tonic::Status;
use tonic::body::Body;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::{Attempted, BoxError, CallDeadline, ReadWhole, TrailerCode, response_code};
use crate::context::{GRPC_TIMEOUT_HEADER, format_grpc_timeout};
use crate::error::{NotSent, not_sent};

use crate::backoff::backoff;
use crate::config::BalanceSettings;

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
pub(crate) fn pick(instances: &[Arc<Instance>], tried: &[String]) -> Option<Arc<Instance>> {
    let now = Instant::now();
    let untried: Vec<&Arc<Instance>> = instances
        .iter()
        .filter(|i| !tried.contains(&i.addr))
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

/// The instances of one target service, as discovery last reported them.
pub(crate) struct Target {
    /// The service name (`product`).
    pub(crate) service: Arc<str>,
    pub(crate) instances: RwLock<Vec<Arc<Instance>>>,
    /// False until discovery first answered (Consul's first lookup); calls wait for it, so a
    /// freshly started service does not fail its first calls for want of a lookup.
    pub(crate) resolved: tokio::sync::watch::Receiver<bool>,
    /// `client.balance.*`, reloadable.
    pub(crate) settings: RwLock<BalanceSettings>,
    pub(crate) ejections: Counter,
}

impl Target {
    /// Whether an instance not in `tried` is known.
    pub(crate) fn has_untried(&self, tried: &[String]) -> bool {
        self.instances
            .read()
            .iter()
            .any(|i| !tried.contains(&i.addr))
    }

    /// The addresses currently known.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.instances
            .read()
            .iter()
            .map(|i| i.addr.clone())
            .collect()
    }
}

/// Sends each call to one instance picked by [`pick`] (never one the call already tried, see
/// [`Attempted`]), ejects it when it fails to connect or answers `UNAVAILABLE`, and reports
/// transport failures as statuses: `UNAVAILABLE` (marked [`NotSent::Unreachable`] when no
/// connection could be made) or `DEADLINE_EXCEEDED`.
#[derive(Clone)]
pub(crate) struct Balance {
    pub(crate) target: Arc<Target>,
}

impl Service<http::Request<Body>> for Balance {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let target = self.target.clone();
        Box::pin(async move { target.send(req).await.map_err(BoxError::from) })
    }
}

impl Target {
    async fn send(&self, mut req: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        if !*self.resolved.borrow() {
            let mut resolved = self.resolved.clone();
            // The sender going away (the watch ended) counts as resolved too.
            let _ = resolved.wait_for(|done| *done).await;
        }
        let attempted = req.extensions().get::<Attempted>().cloned();
        let picked = {
            let tried = attempted.as_ref().map(Attempted::addrs).unwrap_or_default();
            pick(&self.instances.read(), &tried)
        };
        let Some(instance) = picked else {
            return Err(not_sent(
                NotSent::NoInstance,
                Status::unavailable(format!("no instance of {} is known", self.service)),
            ));
        };
        if let Some(attempted) = &attempted {
            attempted.push(&instance.addr);
        }
        if let Some(deadline) = req.extensions().get::<CallDeadline>() {
            let left = deadline.0.saturating_duration_since(Instant::now());
            req.headers_mut()
                .insert(GRPC_TIMEOUT_HEADER, format_grpc_timeout(left));
        }
        let whole = req.extensions().get::<ReadWhole>().is_some();
        let span = crate::telemetry::trace::enabled()
            .then(|| super::trace::attempt_span(&instance.addr, req.headers_mut()));
        let outcome = match &span {
            Some(span) => {
                self.attempt(&instance, req, whole)
                    .instrument(span.clone())
                    .await
            }
            None => self.attempt(&instance, req, whole).await,
        };
        match &outcome {
            Ok(resp) if super::answered_unavailable(resp) => {
                self.eject(&instance, "answered UNAVAILABLE")
            }
            Ok(_) => instance.succeeded(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                self.eject(&instance, status.message())
            }
            Err(_) => {}
        }
        match span {
            Some(span) => super::trace::end(span, outcome, Status::code),
            None => outcome,
        }
    }

    fn eject(&self, instance: &Instance, why: &str) {
        let ejected_for = instance.eject(&self.settings.read());
        self.ejections.inc();
        tracing::warn!(
            target_service = %self.service,
            instance = %instance.addr,
            ejected_ms = ejected_for.as_millis() as u64,
            error = %why,
            "instance unavailable; ejected"
        );
    }

    /// One attempt on `instance`. With `whole`, the answer is read to its end here (the calls
    /// that may be retried are unary and small), so an instance dying between the response
    /// headers and the message, or a status `UNAVAILABLE` sent in the trailers, is seen here
    /// and retried rather than reaching the caller as a broken body.
    async fn attempt(
        &self,
        instance: &Arc<Instance>,
        req: http::Request<Body>,
        whole: bool,
    ) -> Result<http::Response<Body>, Status> {
        let _in_flight = instance.start();
        let channel = instance.channel.clone();
        let answer: Result<http::Response<Body>, BoxError> = async {
            let resp = channel.oneshot(req).await?;
            if !whole || response_code(&resp).is_some() {
                return Ok(resp);
            }
            let (mut parts, body) = resp.into_parts();
            let whole = body.collect().await?;
            let code = whole
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i32>().ok());
            if let Some(code) = code {
                parts
                    .extensions
                    .insert(TrailerCode(tonic::Code::from(code)));
            }
            Ok(http::Response::from_parts(parts, Body::new(whole)))
        }
        .await;
        answer.map_err(|e| self.transport_failure(e.as_ref()))
    }

    fn transport_failure(&self, e: &(dyn std::error::Error + 'static)) -> Status {
        if caused_by::<tonic::TimeoutExpired>(e) {
            Status::deadline_exceeded(format!("{} did not answer in time", self.service))
        } else if caused_by::<tonic::ConnectError>(e) {
            not_sent(
                NotSent::Unreachable,
                Status::unavailable(format!("{} unavailable: {e}", self.service)),
            )
        } else {
            Status::unavailable(format!("{} unavailable: {e}", self.service))
        }
    }
}

/// Whether `T` is somewhere in the chain of `error`.
fn caused_by<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<T>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Replaces the instance list with `addrs`, keeping the instances (channel, in-flight count,
/// ejection) of addresses already known.
pub(crate) fn update_instances(
    target: &Target,
    addrs: &[String],
    connect: impl Fn(&str) -> Result<tonic::transport::Channel, tonic::transport::Error>,
) {
    let mut current = target.instances.write();
    let mut next = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if let Some(known) = current.iter().find(|i| &i.addr == addr) {
            next.push(known.clone());
            continue;
        }
        match connect(addr) {
            Ok(ch) => next.push(Instance::new(addr.clone(), ch)),
            Err(e) => {
                tracing::warn!(service = %target.service, %addr, error = %e, "ignoring a bad instance address")
            }
        }
    }
    *current = next;
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
        let tried = [all[0].addr.clone(), all[2].addr.clone()];
        all[1].eject(&settings);
        assert_eq!(pick(&all, &tried).expect("pick").addr, all[1].addr);
        let everyone = [
            all[0].addr.clone(),
            all[1].addr.clone(),
            all[2].addr.clone(),
        ];
        assert!(pick(&all, &everyone).is_none());
        assert!(pick(&[], &[]).is_none());
    }
}
