//! Load shedding: at most `server.max_concurrent_rpcs` calls of the service's own RPCs are
//! handled at once; past that a call is refused at once with `RESOURCE_EXHAUSTED` rather than
//! queued, so latency stays bounded and callers can go elsewhere. Health and reflection are
//! never refused (they must answer while the service is busy).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::Status;
use tower::{Layer, Service};

use super::{HttpRequest, HttpResponse, LayerFuture, refuse, split_path, take_ready};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    governed: Arc<BTreeSet<&'static str>>,
}

impl LoadShedLayer {
    /// Admits `max_in_flight` calls at once to the gRPC services named in `governed`.
    pub fn new(max_in_flight: u32, governed: impl IntoIterator<Item = &'static str>) -> Self {
        LoadShedLayer {
            permits: Arc::new(Semaphore::new(
                usize::try_from(max_in_flight).unwrap_or(usize::MAX),
            )),
            governed: Arc::new(governed.into_iter().collect()),
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LoadShedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LoadShedService<S> {
    inner: S,
    layer: LoadShedLayer,
}

impl<S> Service<HttpRequest> for LoadShedService<S>
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
        let (service, _) = split_path(req.uri().path());
        let permit = if self.layer.governed.contains(service) {
            match self.layer.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let refusal =
                        refuse(Status::resource_exhausted("server overloaded; retry later"));
                    return Box::pin(std::future::ready(Ok(refusal)));
                }
            }
        } else {
            None
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let resp = inner.call(req).await;
            drop(permit);
            resp
        })
    }
}
