//! Trace export over OTLP/gRPC, and W3C trace context on the wire.
//!
//! Off unless `telemetry.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) names a collector:
//! then [`super::init`] installs one [`Export`] for the process and the OpenTelemetry layer of
//! the subscriber. Off, nothing is built: no exporter, no thread, no extra spans or headers.
//!
//! **One name per service.** Every service of the process gets its own tracer provider (its
//! resource's `service.name`, its batch exporter), made when its server binds
//! ([`for_service`]). The server span puts that service's tracer in the OpenTelemetry context
//! it starts from, and the [`RoutingTracer`] the layer uses starts every span with the tracer
//! found in its parent's context, so a span belongs to the service whose RPC (or worker) it
//! runs under. Spans under no service (a tool's own calls) report under the process's name.
//!
//! Sampling is the SDK's: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, by default
//! `parentbased_always_on` (a caller's sampling decision holds across the fleet). Export is
//! batched on the SDK's own thread and never waits on a request; the batch is flushed when the
//! server shuts down gracefully and when the process ends ([`shutdown`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanBuilder, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use parking_lot::RwLock;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The instrumentation scope of the platform's spans.
pub const INSTRUMENTATION_SCOPE: &str = "mall-common";

/// The process's export, once [`install`] has made it.
static EXPORT: OnceLock<Arc<Export>> = OnceLock::new();

/// The tracer providers of the process, one per service name.
pub(crate) struct Export {
    endpoint: String,
    /// `telemetry.flush_timeout`.
    flush_timeout: Duration,
    /// The process's own name (`mall`, or the service a binary runs).
    default: Provider,
    services: RwLock<HashMap<String, Provider>>,
}

/// One service's provider and its tracer.
#[derive(Clone)]
struct Provider {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Provider {
    /// A provider batching `service`'s spans to `endpoint`. Must run inside the Tokio runtime
    /// (the exporter's channel lives there).
    fn new(endpoint: &str, service: &str) -> anyhow::Result<Provider> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_string())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer(INSTRUMENTATION_SCOPE);
        Ok(Provider { provider, tracer })
    }
}

/// Makes the process's export to `endpoint`, reporting spans under no service as `process`;
/// flushes wait at most `flush_timeout`.
/// `None` (with a warning) outside a Tokio runtime or when the exporter cannot be built; the
/// second call returns the first export.
pub(crate) fn install(
    process: &str,
    endpoint: &str,
    flush_timeout: Duration,
) -> Option<Arc<Export>> {
    if let Some(existing) = EXPORT.get() {
        return Some(existing.clone());
    }
    if tokio::runtime::Handle::try_current().is_err() {
        tracing::warn!("trace export needs the Tokio runtime; spans are not exported");
        return None;
    }
    let default = match Provider::new(endpoint, process) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "trace exporter failed; spans are not exported");
            return None;
        }
    };
    let mut services = HashMap::new();
    services.insert(process.to_string(), default.clone());
    let export = Arc::new(Export {
        endpoint: endpoint.to_string(),
        flush_timeout,
        default,
        services: RwLock::new(services),
    });
    Some(EXPORT.get_or_init(|| export).clone())
}

/// Whether spans leave this process (decides whether clients and servers trace at all).
pub fn enabled() -> bool {
    EXPORT.get().is_some()
}

impl Export {
    /// The tracer the subscriber's layer starts spans with.
    pub(crate) fn router(&self) -> RoutingTracer {
        RoutingTracer {
            default: self.default.tracer.clone(),
        }
    }

    /// The provider of `service`, made on first use.
    fn provider(&self, service: &str) -> Provider {
        if let Some(p) = self.services.read().get(service) {
            return p.clone();
        }
        let made = match Provider::new(&self.endpoint, service) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, service, "trace exporter failed; using the process's");
                self.default.clone()
            }
        };
        self.services
            .write()
            .entry(service.to_string())
            .or_insert(made)
            .clone()
    }
}

/// The tracer of one service, put in the OpenTelemetry context its spans start from.
#[derive(Clone)]
struct ServiceTracer(SdkTracer);

/// Starts each span with the tracer of the service found in its parent context (see the
/// module docs), else the process's.
pub struct RoutingTracer {
    default: SdkTracer,
}

impl Tracer for RoutingTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        match parent_cx.get::<ServiceTracer>() {
            Some(service) => service.0.build_with_context(builder, parent_cx),
            None => self.default.build_with_context(builder, parent_cx),
        }
    }
}

/// One service's side of the export: the context its spans start from, and its flush.
#[derive(Clone)]
pub struct ServiceTrace {
    provider: Provider,
    flush_timeout: Duration,
}

/// The trace side of `service` while export is on (see the module docs); `None` when off.
pub fn for_service(service: &str) -> Option<ServiceTrace> {
    let export = EXPORT.get()?;
    Some(ServiceTrace {
        provider: export.provider(service),
        flush_timeout: export.flush_timeout,
    })
}

impl ServiceTrace {
    /// The context a span of this service starts from: the caller's W3C trace context from
    /// `headers` (`traceparent`, `tracestate`) when it sent one, tagged with this service.
    pub fn incoming(&self, headers: &http::HeaderMap) -> Context {
        extract(headers).with_value(ServiceTracer(self.provider.tracer.clone()))
    }

    /// A fresh root context of this service, for work no RPC started (background workers).
    pub fn root(&self) -> Context {
        Context::new().with_value(ServiceTracer(self.provider.tracer.clone()))
    }

    /// Exports the spans this service has ended so far, waiting at most
    /// `telemetry.flush_timeout` (on a blocking thread: the batch thread needs the runtime to
    /// send them).
    pub async fn flush(&self) {
        let provider = self.provider.provider.clone();
        let flushing = tokio::task::spawn_blocking(move || provider.force_flush());
        match tokio::time::timeout(self.flush_timeout, flushing).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "flushing spans failed"),
            Ok(Err(_)) => tracing::warn!("flushing spans failed"),
            Err(_) => tracing::warn!("flushing spans timed out; the last spans may be lost"),
        }
    }
}

/// Flushes and stops every provider of the process, waiting at most `telemetry.flush_timeout`
/// for each, and writes the log lines still waiting ([`super::flush_logs`]); call once, as the
/// process ends.
pub async fn shutdown() {
    super::flush_logs();
    let Some(export) = EXPORT.get() else {
        return;
    };
    let providers: Vec<SdkTracerProvider> = export
        .services
        .read()
        .values()
        .map(|p| p.provider.clone())
        .collect();
    let timeout = export.flush_timeout;
    let stopped = tokio::task::spawn_blocking(move || {
        for p in providers {
            // Already shut down (a second call) is fine.
            let _ = p.shutdown_with_timeout(timeout);
        }
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("stopping the trace export failed");
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) in `headers`; empty when absent or
/// malformed (the call then starts a trace of its own).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `cx`'s span as `traceparent` (and `tracestate`) into `headers`.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// The `traceparent` of the current span while traces are exported (to store with work that
/// may be finished by another process, see [`adopt`]); `None` when off or outside any span.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut headers = http::HeaderMap::new();
    inject(&tracing::Span::current().context(), &mut headers);
    let value = headers.get("traceparent")?.to_str().ok()?;
    Some(value.to_string())
}

/// Makes `span` (a background worker's, not under any RPC) a root span of `service`, linked
/// to the span a stored [`current_traceparent`] names, so a trace of work resumed elsewhere
/// leads back to the trace that started it. No-op while traces are not exported.
pub fn adopt(span: &tracing::Span, service: &str, linked: Option<&str>) {
    let Some(trace) = for_service(service) else {
        return;
    };
    let _ = span.set_parent(trace.root());
    let mut headers = http::HeaderMap::new();
    if let Some(value) = linked.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        headers.insert("traceparent", value);
    }
    let remote = extract(&headers);
    let link = remote.span().span_context().clone();
    if link.is_valid() {
        span.add_link(link);
    }
}

/// Whether `headers` carry a valid W3C trace context.
pub fn has_parent(headers: &http::HeaderMap) -> bool {
    extract(headers).span().span_context().is_valid()
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The trace and span id (lowercase hex) of `span` in `dispatch`, when it has a valid
/// OpenTelemetry context; what JSON log lines carry as `trace_id` and `span_id`.
pub fn span_ids(
    span: &tracing::span::Id,
    dispatch: &tracing::Dispatch,
) -> Option<(String, String)> {
    let cx = tracing_opentelemetry::get_otel_context(span, dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The trace id (lowercase hex) of `span` when traces are exported and its trace is sampled:
/// an exemplar worth linking to (an unsampled trace never reaches Jaeger). `None` when off.
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

/// Whether a server answering `code` failed, by the OpenTelemetry gRPC conventions: the
/// caller's mistakes (`INVALID_ARGUMENT`, `NOT_FOUND`, ...) are not the server's errors.
pub fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// Records the end of an RPC on its span: the status code, and the error mark when `error`.
pub fn record_status(span: &tracing::Span, code: tonic::Code, error: bool) {
    span.record("rpc.grpc.status_code", code as i32);
    if error {
        span.record("otel.status_code", "error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        headers.insert("tracestate", http::HeaderValue::from_static("vendor=1"));
        assert!(has_parent(&headers));
        let cx = extract(&headers);
        let mut out = http::HeaderMap::new();
        inject(&cx, &mut out);
        assert_eq!(out["traceparent"], headers["traceparent"]);
        assert_eq!(out["tracestate"], "vendor=1");

        let mut bad = http::HeaderMap::new();
        bad.insert("traceparent", http::HeaderValue::from_static("00-zz-00-01"));
        assert!(!has_parent(&bad));
        assert!(!has_parent(&http::HeaderMap::new()));
    }

    #[test]
    fn only_the_server_s_own_failures_mark_its_span() {
        use tonic::Code::*;
        for code in [
            Unknown,
            DeadlineExceeded,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
        ] {
            assert!(is_server_error(code), "{code:?}");
        }
        for code in [
            Ok,
            InvalidArgument,
            NotFound,
            FailedPrecondition,
            PermissionDenied,
        ] {
            assert!(!is_server_error(code), "{code:?}");
        }
    }

    #[test]
    fn export_is_off_until_installed() {
        assert!(!enabled());
        assert!(for_service("cart").is_none());
    }
}
