//! The RED metrics of every RPC (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`, calls in flight) and its log line, and its status on the
//! server span (made by the [`trace`](super::trace) layer outside). An RPC ends when
//! its status is known: in the response headers for errors (trailers-only), else in the trailers
//! as the body goes by; a response dropped before that (the client went away) ends `CANCELLED`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture};
use crate::around::Around;
use crate::telemetry::trace::{is_server_error, record_status, sampled_trace_id};
use crate::telemetry::{RpcMetrics, RpcSeries};

/// See the module docs.
#[derive(Clone)]
pub struct MetricsLayer {
    // One `Arc`: the layer is cloned with the service stack on every call.
    metrics: Arc<RpcMetrics>,
}

impl MetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        MetricsLayer {
            metrics: Arc::new(metrics),
        }
    }
}

impl Around<HttpRequest, HttpResponse, Infallible> for MetricsLayer {
    fn around<S>(&self, mut inner: S, req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let series = self.metrics.series(req.uri().path());
        // The server span of the trace layer, which calls this layer inside it.
        let span = tracing::Span::current();
        self.metrics.started(&series);
        let completion = Completion {
            metrics: self.metrics.clone(),
            series,
            started: Instant::now(),
            span,
            done: false,
        };
        Box::pin(async move {
            let Ok(resp) = inner.call(req).await;
            let (parts, body) = resp.into_parts();
            // Errors are usually trailers-only: the status is in the headers already.
            if let Some(code) = grpc_status(&parts.headers) {
                completion.finish(code);
                return Ok(http::Response::from_parts(parts, body));
            }
            let body = Body::new(CompletionBody {
                inner: body,
                completion: Some(completion),
            });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let v = headers.get("grpc-status")?.to_str().ok()?;
    v.parse::<i32>().ok().map(tonic::Code::from)
}

/// Records the end of one RPC exactly once: when its status is known, or as `Canceled` when the
/// response is dropped before (client went away).
struct Completion {
    metrics: Arc<RpcMetrics>,
    series: Arc<RpcSeries>,
    started: Instant,
    span: tracing::Span,
    done: bool,
}

impl Completion {
    fn finish(mut self, code: tonic::Code) {
        self.done = true;
        let elapsed = self.started.elapsed();
        self.metrics
            .finished(&self.series, code, elapsed, sampled_trace_id(&self.span));
        let ms = elapsed.as_secs_f64() * 1000.0;
        record_status(&self.span, code, is_server_error(code));
        self.span.in_scope(|| match code {
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                tracing::error!(code = ?code, elapsed_ms = ms, "rpc failed")
            }
            _ => tracing::info!(code = ?code, elapsed_ms = ms, "rpc finished"),
        });
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.metrics.finished(
            &self.series,
            tonic::Code::Cancelled,
            self.started.elapsed(),
            sampled_trace_id(&self.span),
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports the RPC's status when the trailers go by.
    struct CompletionBody {
        #[pin]
        inner: Body,
        completion: Option<Completion>,
    }
}

impl HttpBody for CompletionBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or(tonic::Code::Unknown)),
            Poll::Ready(Some(Err(_))) => Some(tonic::Code::Internal),
            Poll::Ready(None) => Some(tonic::Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(completion) = this.completion.take()
        {
            completion.finish(code);
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
