//! The server span of every RPC, named and attributed by the OpenTelemetry RPC conventions
//! (`rpc.system`, `rpc.service`, `rpc.method`, `server.address`, later `rpc.grpc.status_code`),
//! with the request id and the caller's deadline (without export, only the attributes a log line
//! needs: service, method, status, request id, deadline). With trace export on, it continues the
//! caller's W3C trace context (`traceparent`, `tracestate`) and belongs to this service (see
//! [`crate::telemetry::trace`]); the [`metrics`](super::metrics) layer inside records the
//! status on it when the RPC ends.

use std::convert::Infallible;
use std::sync::Arc;

use tower::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::request_id::RequestId;
use super::{HttpRequest, HttpResponse, LayerFuture, split_path};
use crate::around::Around;
use crate::context::{GRPC_TIMEOUT_HEADER, parse_grpc_timeout};
use crate::telemetry::trace::ServiceTrace;

/// See the module docs.
#[derive(Clone)]
pub struct TraceLayer {
    // One `Arc` for all of it: the layer is cloned with the service stack on every call.
    spans: Arc<ServerSpans>,
}

struct ServerSpans {
    /// This service's side of the export; `None` while export is off.
    trace: Option<ServiceTrace>,
    /// Where the server listens (`server.address`).
    address: String,
}

impl TraceLayer {
    /// Spans of the server of `service` listening on `address`.
    pub fn new(service: &str, address: String) -> Self {
        TraceLayer {
            spans: Arc::new(ServerSpans {
                trace: crate::telemetry::trace::for_service(service),
                address,
            }),
        }
    }

    /// This service's side of the export, when on.
    pub fn service_trace(&self) -> Option<&ServiceTrace> {
        self.spans.trace.as_ref()
    }
}

impl Around<HttpRequest, HttpResponse, Infallible> for TraceLayer {
    fn around<S>(&self, mut inner: S, req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let (service, method) = split_path(req.uri().path());
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.as_str())
            .unwrap_or_default();
        let timeout_ms = req
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(parse_grpc_timeout)
            .map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        let span = match &self.spans.trace {
            Some(_) => tracing::info_span!(
                "rpc",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                server.address = %self.spans.address,
                request_id = %request_id,
                grpc.timeout_ms = timeout_ms
            ),
            // Without export the span only gives the log lines their context: the attributes
            // only the exporter reads (the OpenTelemetry name and kind, constants of this
            // server) are not formatted into every line.
            None => tracing::info_span!(
                "rpc",
                otel.status_code = tracing::field::Empty,
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                request_id = %request_id,
                grpc.timeout_ms = timeout_ms
            ),
        };
        if let Some(trace) = &self.spans.trace {
            // Only fails without the OpenTelemetry layer, which export installs.
            let _ = span.set_parent(trace.incoming(req.headers()));
        }
        Box::pin(async move { inner.call(req).await }.instrument(span))
    }
}
