//! Client spans, while traces are exported (off, this layer is not in the stack): one span per
//! call (`{service}/{method}`, kind client, with the OpenTelemetry RPC attributes and the target
//! service as `server.address`) and, inside it, one `attempt` span per attempt (the instance as
//! `server.address`; a retried call has several). Each attempt carries its span's W3C trace
//! context (`traceparent`) to the server, whose span continues it. A call whose request already
//! has a `traceparent` (a gateway passing its caller's on) starts from that instead of the
//! current span. Every non-OK status marks the span as an error; a streamed answer's status is
//! read from the trailers as they go by.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame};
use tonic::Status;
use tonic::body::Body;
use tower::{Service, ServiceExt};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{BoxError, TrailerCode, response_code};
use crate::around::Around;
use crate::context::split_path;
use crate::telemetry::trace;
use crate::telemetry::trace::record_status;

/// The span of each call to one target service; see the module docs.
#[derive(Clone)]
pub(crate) struct CallSpans {
    /// The target service (`server.address` of the call).
    pub(crate) target: std::sync::Arc<str>,
}

impl Around<http::Request<Body>, http::Response<Body>, BoxError> for CallSpans {
    fn around<S>(
        &self,
        inner: S,
        req: http::Request<Body>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, BoxError>>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let (service, method) = split_path(req.uri().path());
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = %self.target,
        );
        if trace::has_parent(req.headers()) {
            let _ = span.set_parent(trace::extract(req.headers()));
        }
        Box::pin(async move {
            let result = inner.oneshot(req).instrument(span.clone()).await;
            end(span, result, |e| {
                e.downcast_ref::<Status>()
                    .map_or(tonic::Code::Unknown, Status::code)
            })
        })
    }
}

/// The span of one attempt on the instance at `addr`, its context written into `headers`.
pub(crate) fn attempt_span(addr: &str, headers: &mut http::HeaderMap) -> tracing::Span {
    let (host, port) = crate::config::parse_authority(addr).unwrap_or((addr, 0));
    let span = tracing::info_span!(
        "attempt",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = %host,
        server.port = port,
    );
    trace::inject(&span.context(), headers);
    span
}

/// Ends `span` with the status of `result`: now when it is known (an error, a trailers-only
/// answer, an answer read whole), else when the body's trailers go by.
pub(crate) fn end<E>(
    span: tracing::Span,
    result: Result<http::Response<Body>, E>,
    code_of: impl Fn(&E) -> tonic::Code,
) -> Result<http::Response<Body>, E> {
    match result {
        Ok(resp) => {
            let known = resp
                .extensions()
                .get::<TrailerCode>()
                .map(|c| c.0)
                .or_else(|| response_code(&resp));
            match known {
                Some(code) => {
                    record(&span, code);
                    Ok(resp)
                }
                None => Ok(resp.map(|body| {
                    Body::new(SpanBody {
                        inner: body,
                        span: Some(span),
                    })
                })),
            }
        }
        Err(e) => {
            record(&span, code_of(&e));
            Err(e)
        }
    }
}

fn record(span: &tracing::Span, code: tonic::Code) {
    record_status(span, code, code != tonic::Code::Ok);
}

fn trailer_code(trailers: &http::HeaderMap) -> tonic::Code {
    trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from)
}

pin_project_lite::pin_project! {
    /// A response body that ends its span when the trailers go by.
    struct SpanBody {
        #[pin]
        inner: Body,
        span: Option<tracing::Span>,
    }
}

impl HttpBody for SpanBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(trailer_code),
            Poll::Ready(Some(Err(e))) => Some(e.code()),
            Poll::Ready(None) => Some(tonic::Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(span) = this.span.take()
        {
            record(&span, code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
