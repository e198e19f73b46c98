//! Admission at the server edge: an adaptive concurrency limit, two priority classes, and
//! calls that cannot meet their deadline dropped before any work. Health and reflection are
//! never refused (they must answer while the service is busy).
//!
//! **The limit follows latency** (a gradient limiter, after Netflix's concurrency-limits
//! `Gradient2`, with Vegas' minimum as the baseline): completed calls are averaged over short
//! windows (≥ 10 calls and 20 ms, or 1 s); the fastest window, allowed to creep up by 0.1% a
//! window, is the latency the server has without a queue. When a window is slower than 1.5 ×
//! that, the limit shrinks by the ratio (at most by half per window); otherwise it grows by
//! about √limit; each change smoothed, between `server.min_concurrent_rpcs` and
//! `server.max_concurrent_rpcs`. It does not grow while the server uses less than half of it.
//! A queue of a few calls is never taken for an overload (Vegas' rule: what matters is how
//! many calls wait, `limit × (1 − no-queue / now)`, not by how much the latency grew): the
//! limit shrinks only as far as leaves [`QUEUE_ALLOWANCE`] calls waiting. That matters for small
//! limits only — a server whose calls wait on two cores doubles its latency with two calls
//! queued, and a ratio alone would throttle it below the concurrency it needs for its peak.
//! With `server.adaptive_concurrency = false` the limit is `server.max_concurrent_rpcs`.
//!
//! **Past the limit a call is refused at once** with `RESOURCE_EXHAUSTED` and the
//! `x-mall-shed` header (`limit`), never queued: it did not run, so a client may send it to
//! another instance (the platform's clients do, within their retry budget), and it is no sign
//! of an unhealthy instance (breakers do not count it). It also carries gRPC's retry pushback
//! (`grpc-retry-pushback-ms`, gRFC A6): the mean latency of the last window times one plus the
//! refusals per completed call in it, so a crowd of refused clients that honours it comes back
//! more slowly the larger it is, instead of each one spinning on refusals that cost the server
//! (and, on a shared machine, the load tool) CPU the admitted calls need.
//!
//! **Internal calls first.** The adaptive limit governs public calls (a user's or anonymous):
//! they may use it less `server.internal_reserve_percent`. A call carrying a service token (a
//! saga step, another service's call) counts against the limit but is refused only at the
//! ceiling, `server.max_concurrent_rpcs`: its caller admitted the request it is part of at its
//! own edge, and refusing it here would fail work in flight (a checkout half done must be
//! compensated) to save less than it wastes. So a browsing flood cannot starve the checkouts in
//! flight, and an overloaded fleet sheds where requests enter it.
//! The class is read from the token's header (service tokens are HS256, access tokens EdDSA)
//! before it is verified: a forged service token wins admission and is refused by the access
//! layer right after, without a database or cache call.
//!
//! **Deadlines.** A call whose `grpc-timeout` is shorter than the fastest call of the last
//! window cannot finish in time: it is refused at once with `DEADLINE_EXCEEDED` (`x-mall-shed:
//! deadline`) instead of taking a slot.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tonic::Status;
use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture, refuse, split_path};
use crate::around::Around;
use crate::auth::bearer;
use crate::context::{GRPC_TIMEOUT_HEADER, parse_grpc_timeout};

pub use crate::context::{PUSHBACK_HEADER, SHED_HEADER};

/// How much slower than the no-queue latency a window may be before the limit shrinks.
const TOLERANCE: f64 = 1.5;
/// Where an adaptive limit starts, as a multiple of its floor.
const START_FACTOR: f64 = 16.0;
/// How many calls may wait (by the latency estimate) without the limit shrinking.
pub const QUEUE_ALLOWANCE: f64 = 4.0;
/// Weight of a new estimate in the limit (the rest is the old limit).
const SMOOTHING: f64 = 0.2;
/// How much the no-queue latency estimate may rise per window.
const LONG_DRIFT: f64 = 1.001;
/// A window closes after this many calls (and at least [`MIN_WINDOW`])...
const WINDOW_CALLS: u32 = 10;
/// ...but not before this long,
const MIN_WINDOW: Duration = Duration::from_millis(20);
/// ...and after this long with at least one call.
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// The pushback before any window closed.
const FIRST_PUSHBACK: Duration = Duration::from_millis(10);
/// The pushback's bounds.
const MIN_PUSHBACK: Duration = Duration::from_millis(1);
/// ...
pub const MAX_PUSHBACK: Duration = Duration::from_secs(2);

/// `server.*` settings of admission.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Whether the limit adapts (else it is `max`).
    pub adaptive: bool,
    /// The limit's floor.
    pub min: u32,
    /// The limit's ceiling (and the fixed limit).
    pub max: u32,
    /// Share of the limit only internal calls may use, in percent.
    pub internal_reserve_percent: u32,
}

/// The priority class of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Carries a service token.
    Internal,
    /// Anything else.
    Public,
}

impl Class {
    fn of(headers: &http::HeaderMap) -> Class {
        match bearer(headers).and_then(jwt_alg) {
            Some(alg) if alg == "HS256" => Class::Internal,
            _ => Class::Public,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Internal => "internal",
            Class::Public => "public",
        }
    }
}

/// The `alg` of a JWT's header, unverified.
fn jwt_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    if header.len() > 256 {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    serde_json::from_slice::<Header>(&json).ok().map(|h| h.alg)
}

/// The adaptive limit and the calls in flight (see the module docs).
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    settings: Admission,
    limit: f64,
    in_flight: u32,
    /// The no-queue latency estimate (the fastest window, creeping up), seconds.
    long: Option<f64>,
    /// The fastest call of the last closed window, seconds.
    floor: Option<f64>,
    /// What a refused caller is told to wait (see the module docs).
    pushback: Duration,
    window: Window,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    calls: u32,
    sum: f64,
    fastest: f64,
    busiest: u32,
    /// Calls refused past the limit while it was open.
    refused: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            started: now,
            calls: 0,
            sum: 0.0,
            fastest: f64::INFINITY,
            busiest: 0,
            refused: 0,
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No room under the limit for its class.
    Limit,
    /// Its deadline is shorter than the fastest recent call.
    Deadline,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::Deadline => "deadline",
        }
    }
}

impl Limiter {
    /// A limiter starting at the floor (adaptive) or at `max` (fixed).
    pub fn new(settings: Admission) -> Self {
        let settings = Self::sane(settings);
        let start = Self::start(&settings);
        Limiter {
            state: Mutex::new(State {
                settings,
                limit: start,
                in_flight: 0,
                long: None,
                floor: None,
                pushback: FIRST_PUSHBACK,
                window: Window::new(Instant::now()),
            }),
        }
    }

    fn sane(settings: Admission) -> Admission {
        let max = settings.max.max(1);
        Admission {
            max,
            min: settings.min.clamp(1, max),
            internal_reserve_percent: settings.internal_reserve_percent.min(90),
            ..settings
        }
    }

    fn start(settings: &Admission) -> f64 {
        if settings.adaptive {
            // Room for a burst at start and to find the knee quickly, without admitting a
            // stampede.
            f64::from(settings.max).min(f64::from(settings.min) * START_FACTOR)
        } else {
            f64::from(settings.max)
        }
    }

    /// New settings while running (the config centre): the limit moves into the new bounds
    /// (fixed: to the new `max`); calls in flight are not touched.
    pub fn reconfigure(&self, settings: Admission) {
        let settings = Self::sane(settings);
        let mut state = self.state.lock();
        state.limit = if settings.adaptive {
            if state.settings.adaptive {
                state.limit
            } else {
                Self::start(&settings)
            }
            .clamp(f64::from(settings.min), f64::from(settings.max))
        } else {
            f64::from(settings.max)
        };
        state.settings = settings;
    }

    /// The current limit (whole calls).
    pub fn limit(&self) -> u32 {
        whole(self.state.lock().limit)
    }

    /// Admits a call of `class` whose caller waits at most `timeout`, or says why not.
    pub fn admit(&self, class: Class, timeout: Option<Duration>) -> Result<(), Refusal> {
        let mut state = self.state.lock();
        if let (Some(timeout), Some(floor)) = (timeout, state.floor)
            && timeout.as_secs_f64() < floor
        {
            return Err(Refusal::Deadline);
        }
        let cap = match class {
            Class::Internal => state.settings.max,
            Class::Public => {
                let share = f64::from(100 - state.settings.internal_reserve_percent) / 100.0;
                whole(state.limit * share).max(1)
            }
        };
        if state.in_flight >= cap {
            state.window.refused = state.window.refused.saturating_add(1);
            return Err(Refusal::Limit);
        }
        state.in_flight += 1;
        let busy = state.in_flight;
        state.window.busiest = state.window.busiest.max(busy);
        Ok(())
    }

    /// How long a caller refused past the limit should wait before trying this server again.
    pub fn pushback(&self) -> Duration {
        self.state.lock().pushback
    }

    /// Records the end of an admitted call that took `elapsed`; the limit after it.
    pub fn finished(&self, elapsed: Duration) -> u32 {
        self.finished_at(elapsed, Instant::now())
    }

    fn finished_at(&self, elapsed: Duration, now: Instant) -> u32 {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let rtt = elapsed.as_secs_f64();
        let window = &mut state.window;
        window.calls += 1;
        window.sum += rtt;
        window.fastest = window.fastest.min(rtt);
        let age = now.saturating_duration_since(window.started);
        if (window.calls >= WINDOW_CALLS && age >= MIN_WINDOW) || age >= MAX_WINDOW {
            Self::close_window(&mut state, now);
        }
        whole(state.limit)
    }

    fn close_window(state: &mut State, now: Instant) {
        let window = std::mem::replace(&mut state.window, Window::new(now));
        let short = window.sum / f64::from(window.calls.max(1));
        state.floor = Some(window.fastest);
        let crowd = 1.0 + f64::from(window.refused) / f64::from(window.calls.max(1));
        state.pushback = Duration::from_secs_f64((short * crowd).min(MAX_PUSHBACK.as_secs_f64()))
            .clamp(MIN_PUSHBACK, MAX_PUSHBACK);
        // The fastest window seen, allowed to creep up (0.1% a window) so a lasting change in
        // the work (a slower disk, bigger carts) becomes the new normal over minutes, while an
        // overload of seconds cannot pass for it.
        let long = match state.long {
            None => short,
            Some(long) => short.min(long * LONG_DRIFT),
        };
        state.long = Some(long);
        if !state.settings.adaptive {
            return;
        }
        // Not using half the limit says nothing about a higher one.
        if f64::from(window.busiest) < state.limit / 2.0 {
            return;
        }
        // The ratio the latency allows, or what leaves QUEUE_ALLOWANCE calls waiting, whichever
        // is more: limit × (no-queue / now) calls are served without waiting.
        let served = long / short.max(f64::EPSILON);
        let gradient = (TOLERANCE * served)
            .max(served + QUEUE_ALLOWANCE / state.limit)
            .clamp(0.5, 1.0);
        let target = state.limit * gradient + state.limit.sqrt();
        let limit = state.limit * (1.0 - SMOOTHING) + target * SMOOTHING;
        state.limit = limit.clamp(f64::from(state.settings.min), f64::from(state.settings.max));
    }
}

fn whole(limit: f64) -> u32 {
    // The limit is clamped to [1, u32::MAX] by construction.
    limit.floor().clamp(1.0, f64::from(u32::MAX)) as u32
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    reason: &'static str,
    class: &'static str,
}

/// See the module docs.
#[derive(Clone)]
pub struct LoadShedLayer {
    // One `Arc` for all of it: the layer is cloned with the service stack on every call.
    admission: Arc<Admitter>,
}

struct Admitter {
    limiter: Limiter,
    governed: BTreeSet<&'static str>,
    shed: Family<ShedLabels, Counter>,
    limit: Gauge,
}

impl LoadShedLayer {
    /// Admits calls to the gRPC services named in `governed` by `settings`, registering
    /// `grpc_server_shed_total{reason,class}` and `grpc_server_concurrency_limit` in `registry`.
    pub fn new(
        settings: Admission,
        governed: impl IntoIterator<Item = &'static str>,
        registry: &mut Registry,
    ) -> Self {
        let shed = Family::<ShedLabels, Counter>::default();
        let limit = Gauge::default();
        registry.register(
            "grpc_server_shed",
            "Calls refused before any work, by reason (limit, deadline) and class",
            shed.clone(),
        );
        registry.register(
            "grpc_server_concurrency_limit",
            "Calls the server admits at once right now (adaptive)",
            limit.clone(),
        );
        let limiter = Limiter::new(settings);
        limit.set(i64::from(limiter.limit()));
        LoadShedLayer {
            admission: Arc::new(Admitter {
                limiter,
                governed: governed.into_iter().collect(),
                shed,
                limit,
            }),
        }
    }
}

impl LoadShedLayer {
    /// New settings while running (see [`Limiter::reconfigure`]).
    pub fn reconfigure(&self, settings: Admission) {
        let a = &self.admission;
        a.limiter.reconfigure(settings);
        a.limit.set(i64::from(a.limiter.limit()));
    }
}

/// Releases an admitted call's slot (also when its future is dropped).
struct Slot {
    admission: Arc<Admitter>,
    started: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let limit = self.admission.limiter.finished(self.started.elapsed());
        self.admission.limit.set(i64::from(limit));
    }
}

impl Around<HttpRequest, HttpResponse, Infallible> for LoadShedLayer {
    fn around<S>(&self, mut inner: S, req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let a = &self.admission;
        let (service, _) = split_path(req.uri().path());
        if !a.governed.contains(service) {
            return Box::pin(inner.call(req));
        }
        let class = Class::of(req.headers());
        let timeout = req
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(parse_grpc_timeout);
        if let Err(refusal) = a.limiter.admit(class, timeout) {
            a.shed
                .get_or_create(&ShedLabels {
                    reason: refusal.label(),
                    class: class.label(),
                })
                .inc();
            let status = match refusal {
                Refusal::Limit => Status::resource_exhausted("server overloaded; retry later"),
                Refusal::Deadline => {
                    Status::deadline_exceeded("the deadline is shorter than this server's calls")
                }
            };
            let mut refusal_response = refuse(status);
            let headers = refusal_response.headers_mut();
            headers.insert(SHED_HEADER, http::HeaderValue::from_static(refusal.label()));
            if refusal == Refusal::Limit {
                let ms = a.limiter.pushback().as_millis().max(1);
                headers.insert(
                    PUSHBACK_HEADER,
                    http::HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
                );
            }
            return Box::pin(std::future::ready(Ok(refusal_response)));
        }
        let slot = Slot {
            admission: a.clone(),
            started: Instant::now(),
        };
        Box::pin(async move {
            let resp = inner.call(req).await;
            drop(slot);
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adaptive limiter without a reserve, so public calls may use the whole limit.
    fn adaptive(min: u32, max: u32) -> Limiter {
        Limiter::new(Admission {
            adaptive: true,
            min,
            max,
            internal_reserve_percent: 0,
        })
    }

    /// Runs `windows` windows of `calls` calls each at `concurrency`, each taking `rtt`.
    fn drive(limiter: &Limiter, windows: u32, concurrency: u32, rtt: Duration, at: &mut Instant) {
        for _ in 0..windows {
            for _ in 0..WINDOW_CALLS {
                let admitted = (0..concurrency)
                    .filter(|_| limiter.admit(Class::Public, None).is_ok())
                    .count();
                *at += MIN_WINDOW;
                for _ in 0..admitted {
                    limiter.finished_at(rtt, *at);
                }
            }
        }
    }

    #[test]
    fn the_limit_grows_while_latency_holds_and_shrinks_when_it_rises() {
        let limiter = adaptive(4, 200);
        let mut at = Instant::now();
        let start = limiter.limit();
        assert_eq!(start, 64);
        // Saturated at the no-queue latency: the limit grows.
        drive(&limiter, 30, 500, Duration::from_millis(10), &mut at);
        let grown = limiter.limit();
        assert!(grown > start + start / 2, "{start} -> {grown}");
        // Latency triples (a queue formed): the limit comes down.
        drive(&limiter, 10, 500, Duration::from_millis(30), &mut at);
        let shrunk = limiter.limit();
        assert!(shrunk < grown / 2, "{grown} -> {shrunk}");
        // An overload that lasts (hundreds of windows) does not become the new normal.
        drive(&limiter, 30, 500, Duration::from_millis(30), &mut at);
        let held = limiter.limit();
        assert!(held < grown / 2, "{grown} -> {held}");
        // Never below the floor, never above the ceiling.
        let floored = adaptive(12, 200);
        drive(&floored, 30, 500, Duration::from_millis(10), &mut at);
        drive(&floored, 50, 500, Duration::from_millis(300), &mut at);
        assert_eq!(floored.limit(), 12);
        let capped = adaptive(4, 20);
        drive(&capped, 100, 500, Duration::from_millis(10), &mut at);
        assert_eq!(capped.limit(), 20);
    }

    /// A server like the embedded fleet on two cores: its no-queue latency is 10 ms and every
    /// call admitted beside another adds 4 ms (40 ms at 8 calls), while throughput still grows
    /// a little with each.
    fn crowded_rtt(admitted: usize) -> Duration {
        let others = u32::try_from(admitted.saturating_sub(1)).unwrap_or(u32::MAX);
        Duration::from_millis(10) + Duration::from_millis(4) * others
    }

    /// `iterations` rounds of up to `callers` calls at once, each taking `crowded_rtt`.
    fn drive_crowded(limiter: &Limiter, iterations: u32, callers: u32, at: &mut Instant) {
        for _ in 0..iterations {
            let admitted = (0..callers)
                .filter(|_| limiter.admit(Class::Public, None).is_ok())
                .count();
            *at += MIN_WINDOW;
            let rtt = crowded_rtt(admitted);
            for _ in 0..admitted {
                limiter.finished_at(rtt, *at);
            }
        }
    }

    #[test]
    fn a_short_queue_is_not_taken_for_an_overload() {
        // One caller first (the no-queue latency), then a flood of 500. The latency ratio alone
        // (1.5×) would hold the limit near 6 calls; the queue allowance lets it settle where
        // about four calls wait, near 10 — far from the flood, and above what the ratio allows.
        let limiter = adaptive(1, 1_000);
        let mut at = Instant::now();
        drive_crowded(&limiter, 300, 1, &mut at);
        drive_crowded(&limiter, 100, 500, &mut at);
        let settled = limiter.limit();
        assert!(
            (8..=13).contains(&settled),
            "settled at {settled} (queue allowance {QUEUE_ALLOWANCE})"
        );
    }

    #[test]
    fn the_pushback_grows_with_the_crowd_refused() {
        let limiter = adaptive(4, 16);
        let mut at = Instant::now();
        assert_eq!(limiter.pushback(), FIRST_PUSHBACK, "before any window");
        // Within the limit: nothing refused, so about one call's latency.
        drive(&limiter, 5, 8, Duration::from_millis(20), &mut at);
        let calm = limiter.pushback();
        assert!(
            (Duration::from_millis(19)..=Duration::from_millis(21)).contains(&calm),
            "{calm:?}"
        );
        // Five hundred callers at a limit of 16: tens of refusals per completed call.
        drive(&limiter, 5, 500, Duration::from_millis(20), &mut at);
        let crowded = limiter.pushback();
        assert!(crowded > calm * 20, "{calm:?} -> {crowded:?}");
        assert!(crowded <= MAX_PUSHBACK);
        // The crowd gone, the pushback is one call's latency again.
        drive(&limiter, 2, 4, Duration::from_millis(20), &mut at);
        assert!(limiter.pushback() < calm * 2, "{:?}", limiter.pushback());
    }

    #[test]
    fn new_limits_apply_while_running() {
        let limiter = adaptive(4, 200);
        limiter.reconfigure(Admission {
            adaptive: false,
            min: 1,
            max: 3,
            internal_reserve_percent: 0,
        });
        assert_eq!(limiter.limit(), 3);
        let admitted = (0..10)
            .filter(|_| limiter.admit(Class::Public, None).is_ok())
            .count();
        assert_eq!(admitted, 3);
        limiter.reconfigure(Admission {
            adaptive: true,
            min: 8,
            max: 100,
            internal_reserve_percent: 20,
        });
        assert_eq!(
            limiter.limit(),
            100,
            "adaptive again: from the new floor (capped)"
        );
    }

    #[test]
    fn an_idle_server_does_not_raise_its_limit() {
        let limiter = adaptive(4, 200);
        let mut at = Instant::now();
        drive(&limiter, 50, 2, Duration::from_millis(10), &mut at);
        assert_eq!(limiter.limit(), 64);
    }

    #[test]
    fn internal_calls_keep_a_reserve_public_ones_cannot_take() {
        let limiter = Limiter::new(Admission {
            adaptive: false,
            min: 1,
            max: 10,
            internal_reserve_percent: 20,
        });
        let public = (0..20)
            .filter(|_| limiter.admit(Class::Public, None).is_ok())
            .count();
        assert_eq!(public, 8);
        let internal = (0..20)
            .filter(|_| limiter.admit(Class::Internal, None).is_ok())
            .count();
        assert_eq!(internal, 2);
        assert_eq!(limiter.admit(Class::Internal, None), Err(Refusal::Limit));
        limiter.finished(Duration::from_millis(1));
        assert_eq!(limiter.admit(Class::Public, None), Err(Refusal::Limit));
        assert_eq!(limiter.admit(Class::Internal, None), Ok(()));
    }

    #[test]
    fn internal_calls_pass_the_adaptive_limit_up_to_the_ceiling() {
        let limiter = Limiter::new(Admission {
            adaptive: true,
            min: 1,
            max: 50,
            internal_reserve_percent: 20,
        });
        assert_eq!(limiter.limit(), 16);
        let public = (0..20)
            .filter(|_| limiter.admit(Class::Public, None).is_ok())
            .count();
        assert_eq!(public, 12, "80% of the adaptive limit");
        let internal = (0..100)
            .filter(|_| limiter.admit(Class::Internal, None).is_ok())
            .count();
        assert_eq!(internal, 38, "internal calls up to the ceiling");
        assert_eq!(limiter.admit(Class::Public, None), Err(Refusal::Limit));
    }

    #[test]
    fn a_deadline_shorter_than_the_fastest_call_is_refused() {
        let limiter = adaptive(4, 100);
        let mut at = Instant::now();
        // No window closed yet: nothing is known, every deadline is tried.
        assert_eq!(
            limiter.admit(Class::Public, Some(Duration::from_micros(1))),
            Ok(())
        );
        limiter.finished_at(Duration::from_millis(5), at);
        drive(&limiter, 1, 4, Duration::from_millis(5), &mut at);
        assert_eq!(
            limiter.admit(Class::Public, Some(Duration::from_millis(2))),
            Err(Refusal::Deadline)
        );
        assert_eq!(
            limiter.admit(Class::Public, Some(Duration::from_millis(50))),
            Ok(())
        );
    }

    #[test]
    fn the_class_is_read_from_the_token_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(Class::of(&headers), Class::Public);
        let service = format!(
            "{}.e30.sig",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"typ":"JWT","alg":"HS256"}"#)
        );
        headers.insert(
            "authorization",
            format!("Bearer {service}").parse().unwrap(),
        );
        assert_eq!(Class::of(&headers), Class::Internal);
        let user = format!(
            "{}.e30.sig",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"typ":"JWT","alg":"EdDSA"}"#)
        );
        headers.insert("authorization", format!("Bearer {user}").parse().unwrap());
        assert_eq!(Class::of(&headers), Class::Public);
        headers.insert("authorization", "Bearer garbage".parse().unwrap());
        assert_eq!(Class::of(&headers), Class::Public);
    }
}
