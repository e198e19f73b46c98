//! Request ids: the caller's `x-request-id` when it sends a usable one, else a new UUID; set on
//! the request for the layers and handler inside, and echoed on every response.

use std::convert::Infallible;

use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture};
use crate::around::Around;
use crate::context::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};

/// The request id of the call, as an extension of the request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIds;

impl Around<HttpRequest, HttpResponse, Infallible> for RequestIds {
    fn around<S>(&self, mut inner: S, mut req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
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
        Box::pin(async move {
            let Ok(mut resp) = inner.call(req).await;
            if let Some(v) = header {
                resp.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(resp)
        })
    }
}
