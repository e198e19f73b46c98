//! Admission at the server edge: an adaptive concurrency limit, a bounded waiting room served
//! fairly across methods, two priority classes, and calls that cannot meet their deadline
//! dropped before any work. Health and reflection are never refused (they must answer while the
//! service is busy).
//!
//! **The limit follows latency** (a gradient limiter, after Netflix's concurrency-limits
//! `Gradient2`, with Vegas' minimum as the baseline): admitted calls are averaged over short
//! windows (≥ 10 calls and 20 ms, or 1 s); the fastest window, allowed to creep up by 0.1% a
//! window, is the latency the server has without a queue. When a window is slower than 1.5 ×
//! that, the limit shrinks by the ratio (at most by half per window); otherwise it grows by
//! about √limit; each change smoothed, between `server.min_concurrent_rpcs` and
//! `server.max_concurrent_rpcs`. It does not grow while the server uses less than half of it.
//! A queue of a few calls is never taken for an overload (Vegas' rule: what matters is how
//! many calls wait, `limit × (1 − no-queue / now)`, not by how much the latency grew): the
//! limit shrinks only as far as leaves [`QUEUE_ALLOWANCE`] calls waiting.
//! With `server.adaptive_concurrency = false` the limit is `server.max_concurrent_rpcs`.
//!
//! **Past the limit a public call waits for a slot** in a waiting room of at most
//! `server.max_queued_rpcs` calls, for at most `server.queue_timeout` (less the fastest recent
//! call, within its own deadline) — Netflix's `LifoBlockingLimiter` and Facebook's adaptive
//! LIFO with CoDel's "standing queue" test. A waiting call costs a timer and a few hundred
//! bytes; answering it costs as much as a small call. So a client that comes straight back
//! after a refusal (most do: load tools, gateways, naive retry loops, whatever the pushback
//! says) is held instead of spun: the refusals a crowd can draw are bounded by the room's size
//! over its timeout, not by how fast the server can say no. Freed slots go to the method with
//! the fewest calls in flight first (a flood of Login cannot starve ValidateToken); within a
//! method to the oldest call, or the newest once the room has not been empty for
//! [`STANDING_QUEUE`] — under a lasting overload the newest waited least, so what is served
//! stays fast, and the oldest leave at their timeout. A full room takes a call whose method
//! holds fewer calls than the busiest one by pushing out that method's oldest waiting call;
//! otherwise the call is refused at once.
//!
//! **Refusals** are `RESOURCE_EXHAUSTED` with `x-mall-shed: limit` (the room was full: an
//! answer at once) or `queue` (it waited as long as it may): the call did not run in either
//! case, so a client may send it to
//! another instance (the platform's clients do, within their retry budget), and it is no sign
//! of an unhealthy instance (breakers do not count it). Both carry gRPC's retry pushback
//! (`grpc-retry-pushback-ms`, gRFC A6): the mean latency of the last window times one plus the
//! refusals per completed call in it.
//!
//! **Internal calls first.** The adaptive limit governs public calls (a user's or anonymous):
//! they may use it less `server.internal_reserve_percent`. A call carrying a service token
//! addressed to this service, with a valid signature (and with mutual TLS from a peer whose
//! certificate names a service), counts against the limit but is refused only at the ceiling,
//! `server.max_concurrent_rpcs`, and never waits: its caller admitted the request it is part of
//! at its own edge, and refusing it here would fail work in flight (a checkout half done must
//! be compensated). The class comes from that check only — an HMAC over the token, no lookup;
//! an unverified header claiming anything is a public call. Access tokens (EdDSA) are not
//! verified here: a public call is a public call, whoever makes it.
//!
//! **Deadlines.** A call whose `grpc-timeout` is shorter than the fastest call of the last
//! window cannot finish in time: it is refused at once with `DEADLINE_EXCEEDED` (`x-mall-shed:
//! deadline`) instead of taking a slot — unless nothing is in flight.
//!
//! **Nothing latches.** Calls whose callers went away before the answer (a store stall past
//! their deadline) count towards the latency mean but not as the fastest call; the fastest call
//! and the pushback of a window stop counting [`STALE_AFTER`] after it closed, so a server
//! that admitted nothing for that long admits again and measures anew; the limit grows back by
//! about √limit a window once calls are fast again.
//!
//! **Bounded series.** Methods are those of the server's access tables; calls to any other
//! method of a governed service share one bucket here and one label set in the RED metrics.

pub mod limiter;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tonic::Status;
use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture, refuse, split_path};
use crate::around::Around;
use crate::auth::{Tokens, bearer};
use crate::context::{GRPC_TIMEOUT_HEADER, parse_grpc_timeout};

pub use self::limiter::{
    Admission, Class, Limiter, MAX_PUSHBACK, QUEUE_ALLOWANCE, Refusal, STALE_AFTER, STANDING_QUEUE,
};
use self::limiter::{Admit, Sample, Ticket};
pub use crate::context::{PUSHBACK_HEADER, SHED_HEADER};

/// Who may claim the internal class: the token verifier, this service's name (the audience
/// of the service tokens it accepts), and whether calls arrive over mutual TLS.
#[derive(Clone)]
pub struct Verifier {
    /// Verifies service tokens.
    pub tokens: Arc<Tokens>,
    /// This service (`product`).
    pub audience: String,
    /// Calls arrive over mutual TLS (the peer certificate must name a service too).
    pub mutual_tls: bool,
}

impl Verifier {
    /// The class of a call with these headers and extensions (see the module docs).
    pub fn class_of(&self, headers: &http::HeaderMap, extensions: &http::Extensions) -> Class {
        let Some(token) = bearer(headers) else {
            return Class::Public;
        };
        // Service tokens are HS256: an access token (EdDSA) is not worth verifying here.
        if jwt_alg(token).as_deref() != Some("HS256") {
            return Class::Public;
        }
        if self.mutual_tls && crate::tls::peer_service(extensions).is_none() {
            return Class::Public;
        }
        if self.tokens.is_service_token_for(token, &self.audience) {
            Class::Internal
        } else {
            Class::Public
        }
    }
}

/// The `alg` of a JWT's header, unverified (only to skip verifying what cannot be a service
/// token).
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
    /// `/service/method` → its index in the limiter (unknown methods: `methods.len()`).
    methods: HashMap<Box<str>, usize>,
    verifier: Verifier,
    shed: Family<ShedLabels, Counter>,
    limit: Gauge,
    queued: Gauge,
}

impl LoadShedLayer {
    /// Admits calls to the gRPC services named in `governed`, whose methods are `methods`
    /// (`/service/method` paths), by `settings`, classing them with `verifier`; registers
    /// `grpc_server_shed_total{reason,class}`, `grpc_server_concurrency_limit` and
    /// `grpc_server_queued` in `registry`.
    pub fn new(
        settings: Admission,
        governed: impl IntoIterator<Item = &'static str>,
        methods: impl IntoIterator<Item = String>,
        verifier: Verifier,
        registry: &mut Registry,
    ) -> Self {
        let shed = Family::<ShedLabels, Counter>::default();
        let limit = Gauge::default();
        let queued = Gauge::default();
        registry.register(
            "grpc_server_shed",
            "Calls refused before any work, by reason (limit, queue, deadline) and class",
            shed.clone(),
        );
        registry.register(
            "grpc_server_concurrency_limit",
            "Calls the server admits at once right now (adaptive)",
            limit.clone(),
        );
        registry.register(
            "grpc_server_queued",
            "Public calls waiting for a slot right now",
            queued.clone(),
        );
        let mut index = HashMap::new();
        for path in methods {
            let next = index.len();
            index.entry(path.into_boxed_str()).or_insert(next);
        }
        let limiter = Limiter::new(settings, index.len());
        limit.set(i64::from(limiter.limit()));
        LoadShedLayer {
            admission: Arc::new(Admitter {
                limiter,
                governed: governed.into_iter().collect(),
                methods: index,
                verifier,
                shed,
                limit,
                queued,
            }),
        }
    }

    /// New settings while running (see [`Limiter::reconfigure`]).
    pub fn reconfigure(&self, settings: Admission) {
        let a = &self.admission;
        a.limiter.reconfigure(settings);
        a.limit.set(i64::from(a.limiter.limit()));
        a.queued.set(i64::from(a.limiter.waiting()));
    }
}

impl Admitter {
    /// The refusal as a trailers-only response, counted.
    fn refusal(&self, refusal: Refusal, class: Class) -> HttpResponse {
        self.shed
            .get_or_create(&ShedLabels {
                reason: refusal.label(),
                class: class.label(),
            })
            .inc();
        let status = match refusal {
            Refusal::Limit | Refusal::Queue => {
                Status::resource_exhausted("server overloaded; retry later")
            }
            Refusal::Deadline => {
                Status::deadline_exceeded("the deadline is shorter than this server's calls")
            }
        };
        let mut response = refuse(status);
        let headers = response.headers_mut();
        headers.insert(SHED_HEADER, http::HeaderValue::from_static(refusal.label()));
        if refusal != Refusal::Deadline {
            let ms = self.limiter.pushback_at(Instant::now()).as_millis().max(1);
            headers.insert(
                PUSHBACK_HEADER,
                http::HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
            );
        }
        response
    }

    /// Waits in the room for a slot, or until the ticket's time is up.
    async fn wait(self: Arc<Self>, ticket: Ticket) -> Result<Slot, Refusal> {
        self.queued.inc();
        let mut waiting = Waiting {
            admission: self.clone(),
            method: ticket.method,
            id: ticket.id,
            rx: ticket.rx,
            settled: false,
        };
        let outcome = tokio::time::timeout(ticket.max_wait, &mut waiting.rx).await;
        waiting.settled = true;
        self.queued.dec();
        let admitted = match outcome {
            Ok(Ok(())) => true,
            // Pushed out of a full room by a call of a method holding fewer.
            Ok(Err(_)) => false,
            // Out of time, unless a slot came in the meantime.
            Err(_) => {
                self.limiter
                    .leave(waiting.method, waiting.id, &mut waiting.rx, Instant::now())
            }
        };
        if admitted {
            Ok(Slot::new(self.clone(), waiting.method))
        } else {
            Err(Refusal::Queue)
        }
    }
}

/// A call in the waiting room; if its caller goes away, it leaves (and hands on a slot it was
/// given meanwhile).
struct Waiting {
    admission: Arc<Admitter>,
    method: usize,
    id: u64,
    rx: oneshot::Receiver<()>,
    settled: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let a = &self.admission;
        a.queued.dec();
        let now = Instant::now();
        if a.limiter.leave(self.method, self.id, &mut self.rx, now) {
            a.limiter.finished_at(self.method, None, now);
        }
    }
}

/// An admitted call's slot, released (with the call's time) when dropped.
struct Slot {
    admission: Arc<Admitter>,
    method: usize,
    started: Instant,
    answered: bool,
}

impl Slot {
    fn new(admission: Arc<Admitter>, method: usize) -> Slot {
        Slot {
            admission,
            method,
            started: Instant::now(),
            answered: false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        let sample = Sample {
            elapsed: now.saturating_duration_since(self.started),
            answered: self.answered,
        };
        let limit = self
            .admission
            .limiter
            .finished_at(self.method, Some(sample), now);
        self.admission.limit.set(i64::from(limit));
    }
}

/// Runs the call in its slot; the slot is released when the answer is ready (or the caller
/// went away).
async fn serve<S>(
    mut inner: S,
    req: HttpRequest,
    mut slot: Slot,
) -> Result<HttpResponse, Infallible>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
{
    let resp = inner.call(req).await;
    slot.answered = true;
    drop(slot);
    resp
}

impl Around<HttpRequest, HttpResponse, Infallible> for LoadShedLayer {
    fn around<S>(&self, inner: S, req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let a = &self.admission;
        let path = req.uri().path();
        let (service, _) = split_path(path);
        if !a.governed.contains(service) {
            let mut inner = inner;
            return Box::pin(inner.call(req));
        }
        let method = a.methods.get(path).copied().unwrap_or(a.methods.len());
        let class = a.verifier.class_of(req.headers(), req.extensions());
        let timeout = req
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(parse_grpc_timeout);
        match a.limiter.admit_at(class, method, timeout, Instant::now()) {
            Err(refusal) => Box::pin(std::future::ready(Ok(a.refusal(refusal, class)))),
            Ok(Admit::Now) => Box::pin(serve(inner, req, Slot::new(a.clone(), method))),
            Ok(Admit::Wait(ticket)) => {
                let a = a.clone();
                Box::pin(async move {
                    match a.clone().wait(ticket).await {
                        Ok(slot) => serve(inner, req, slot).await,
                        Err(refusal) => Ok(a.refusal(refusal, class)),
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
