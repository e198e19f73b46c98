//! Deadlines: the caller's `grpc-timeout` becomes the deadline of the task handling the call,
//! together with its request id, in the [`RequestContext`] that outgoing calls read (so a
//! caller's deadline holds across hops and the request id follows the call).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use super::request_id::RequestId;
use super::{HttpRequest, HttpResponse, LayerFuture, take_ready};
use crate::context::{GRPC_TIMEOUT_HEADER, RequestContext, parse_grpc_timeout};

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
}

impl<S> Service<HttpRequest> for DeadlineService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = LayerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let deadline = req
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout);
        let id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let context = RequestContext { id, deadline };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(context.scope(inner.call(req)))
    }
}
