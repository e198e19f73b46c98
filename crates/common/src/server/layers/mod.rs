//! The layers every RPC passes through, outermost first:
//!
//! 1. [`request_id`]: the caller's `x-request-id` (or a new one), echoed on the response;
//! 2. [`trace`]: the server span, continuing the caller's W3C trace context while traces are
//!    exported;
//! 3. [`metrics`]: the RED metrics and the per-RPC log line, and the status on the span (taken
//!    from the headers, or from the trailers as the body goes by);
//! 4. [`load_shed`]: admission — an adaptive concurrency limit, a bounded waiting room served
//!    fairly across methods, `RESOURCE_EXHAUSTED` when neither has room;
//! 5. [`access`]: the service's access table and the bearer token, before any handler runs;
//! 6. [`deadline`]: the caller's `grpc-timeout` and the request id become the task's request
//!    context, which outgoing calls read.
//!
//! Each is an [`Around`](crate::around::Around), stacked as an
//! [`AroundLayer`](crate::around::AroundLayer). A layer that refuses a call answers with a trailers-only status response, so the layers
//! outside it see and record it like any other answer.

pub mod access;
pub mod deadline;
pub mod load_shed;
pub mod metrics;
pub mod request_id;
pub mod trace;

use std::convert::Infallible;

use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;

/// The request and response types of every layer.
pub type HttpRequest = http::Request<Body>;
/// The response of every layer.
pub type HttpResponse = http::Response<Body>;
/// The future of every layer.
pub type LayerFuture = BoxFuture<'static, Result<HttpResponse, Infallible>>;

pub use crate::context::split_path;

/// A refusal as a trailers-only response.
pub fn refuse(status: Status) -> HttpResponse {
    status.into_http::<Body>()
}
