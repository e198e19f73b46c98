//! Request ids: the caller's `x-request-id` when it sends a usable one, else a new UUID; set on
//! the request for the layers and handler inside, and echoed on every response.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{HttpRequest, HttpResponse, LayerFuture, take_ready};
use crate::context::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};

/// The request id of the call, as an extension of the request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S> Service<HttpRequest> for RequestIdService<S>
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

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        let id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let header = http::HeaderValue::from_str(&id).ok();
        if let Some(v) = &header {
            req.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
        }
        req.extensions_mut().insert(RequestId(id));
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let Ok(mut resp) = inner.call(req).await;
            if let Some(v) = header {
                resp.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(resp)
        })
    }
}
