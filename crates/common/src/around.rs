//! The one shape of every request-path layer. A layer says what it does around the service
//! inside it ([`Around::around`]); [`AroundLayer`] turns that into a tower `Layer`, and
//! [`AroundService`] does the plumbing every layer would otherwise repeat: readiness is the inner
//! service's, and the call gets the clone that was driven to readiness (tower's rule for services
//! called from a future), leaving a fresh clone behind.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

/// What a layer does with one call: usually something before, `inner.call(req)`, something after.
pub trait Around<Req, Res, E>: Clone + Send + Sync + 'static {
    /// Handles `req`, calling `inner` (ready) when it passes the call on.
    fn around<S>(&self, inner: S, req: Req) -> BoxFuture<'static, Result<Res, E>>
    where
        S: Service<Req, Response = Res, Error = E> + Clone + Send + 'static,
        S::Future: Send + 'static;
}

/// An [`Around`] as a tower layer.
#[derive(Debug, Clone)]
pub struct AroundLayer<A>(pub A);

impl<A: Clone, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;
    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            around: self.0.clone(),
            inner,
        }
    }
}

/// The service an [`AroundLayer`] makes.
#[derive(Debug, Clone)]
pub struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S, Req, Res, E> Service<Req> for AroundService<A, S>
where
    A: Around<Req, Res, E>,
    S: Service<Req, Response = Res, Error = E> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Res;
    type Error = E;
    type Future = BoxFuture<'static, Result<Res, E>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.around.around(inner, req)
    }
}
