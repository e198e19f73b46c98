//! The request id of the RPC this task is handling goes on every call it makes
//! (`x-request-id`), unless the request sets one, so one request's log lines share an id across
//! the fleet.

use std::task::{Context, Poll};

use tonic::body::Body;
use tower::{Layer, Service};

use crate::context::{REQUEST_ID_HEADER, current_request_id};

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RequestIdService<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for RequestIdService<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if !req.headers().contains_key(REQUEST_ID_HEADER)
            && let Some(id) = current_request_id()
            && let Ok(value) = http::HeaderValue::from_str(&id)
        {
            req.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        self.inner.call(req)
    }
}
