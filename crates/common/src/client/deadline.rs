//! Deadlines of outgoing calls: the call's own `grpc-timeout`, else the per-method default
//! (`client.method_timeout`), else `client.request_timeout`; capped by what is left of the
//! deadline of the RPC this task is handling, so a caller's deadline holds across hops. The
//! deadline is enforced here around every attempt together and handed to the balancer, which
//! sends what is left of it with each attempt. A call with no time left is not sent
//! ([`NotSent::NoTimeLeft`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::RwLock;
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::{BoxError, CallDeadline};
use crate::around::Around;
use crate::config::ClientSettings;
use crate::context::{GRPC_TIMEOUT_HEADER, current_deadline, parse_grpc_timeout};
use crate::error::{NotSent, not_sent};

/// See the module docs.
#[derive(Clone)]
pub(crate) struct DeadlineLayer {
    pub(crate) service: Arc<str>,
    /// `client.request_timeout` and `client.method_timeout`, reloadable.
    pub(crate) settings: Arc<RwLock<ClientSettings>>,
}

impl DeadlineLayer {
    /// The deadline of a call to `path` that sets none.
    fn default_for(&self, path: &str) -> Duration {
        let method = path.rsplit('/').next().unwrap_or_default();
        let settings = self.settings.read();
        settings
            .method_timeout
            .get(&*self.service)
            .and_then(|per_method| {
                per_method
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(method))
            })
            .map_or(settings.request_timeout, |(_, timeout)| *timeout)
    }
}

impl Around<http::Request<Body>, http::Response<Body>, BoxError> for DeadlineLayer {
    fn around<S>(
        &self,
        mut inner: S,
        mut req: http::Request<Body>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, BoxError>>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let service = self.service.clone();
        let own = req
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(parse_grpc_timeout)
            .unwrap_or_else(|| self.default_for(req.uri().path()));
        let remaining = current_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = remaining.map_or(own, |r| r.min(own));
        if timeout.is_zero() {
            let status = not_sent(
                NotSent::NoTimeLeft,
                Status::deadline_exceeded(format!("deadline exceeded before calling {service}")),
            );
            return Box::pin(std::future::ready(Err(status.into())));
        }
        let deadline = Instant::now() + timeout;
        req.extensions_mut().insert(CallDeadline(deadline));
        let call = inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), call).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "{service} did not answer within {} ms",
                    timeout.as_millis()
                ))
                .into()),
            }
        })
    }
}
