//! Load shedding: at most `server.max_concurrent_rpcs` calls of the service's own RPCs are
//! handled at once; past that a call is refused at once with `RESOURCE_EXHAUSTED` rather than
//! queued, so latency stays bounded and callers can go elsewhere. Health and reflection are
//! never refused (they must answer while the service is busy).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::Status;
use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture, refuse, split_path};
use crate::around::Around;

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

impl Around<HttpRequest, HttpResponse, Infallible> for LoadShedLayer {
    fn around<S>(&self, mut inner: S, req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let (service, _) = split_path(req.uri().path());
        let permit = if self.governed.contains(service) {
            match self.permits.clone().try_acquire_owned() {
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
        Box::pin(async move {
            let resp = inner.call(req).await;
            drop(permit);
            resp
        })
    }
}
