//! Deadlines: the caller's `grpc-timeout` becomes the deadline of the task handling the call,
//! together with its request id, in the [`RequestContext`] that outgoing calls read (so a
//! caller's deadline holds across hops and the request id follows the call).

use std::convert::Infallible;
use std::time::Instant;

use tower::Service;

use super::request_id::RequestId;
use super::{HttpRequest, HttpResponse, LayerFuture};
use crate::around::Around;
use crate::context::{GRPC_TIMEOUT_HEADER, RequestContext, parse_grpc_timeout};

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadlines;

impl Around<HttpRequest, HttpResponse, Infallible> for Deadlines {
    fn around<S>(&self, mut inner: S, req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
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
        Box::pin(context.scope(inner.call(req)))
    }
}
