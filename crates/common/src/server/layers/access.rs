//! Access control before any handler runs: the RPC's rule in its service's [`AccessTable`] and
//! the bearer token decide; the [`Caller`](crate::auth::Caller) goes into the request for the
//! handler. Services without a table (health, reflection) are public; an RPC missing from its
//! table is refused (fail closed).

use std::convert::Infallible;
use std::sync::Arc;

use tonic::Status;
use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture, refuse, split_path};
use crate::around::Around;
use crate::auth::{AccessTable, Caller, Tokens, bearer};

/// See the module docs.
#[derive(Clone)]
pub struct AccessLayer {
    tables: Arc<Vec<AccessTable>>,
    tokens: Arc<Tokens>,
}

impl AccessLayer {
    /// Enforces `tables`, verifying tokens with `tokens`.
    pub fn new(tables: Vec<AccessTable>, tokens: Arc<Tokens>) -> Self {
        AccessLayer {
            tables: Arc::new(tables),
            tokens,
        }
    }

    /// The caller of `path` as its rule admits it.
    async fn admit(&self, path: &str, bearer: Option<&str>) -> Result<Option<Caller>, Status> {
        let (service, method) = split_path(path);
        let Some(table) = self.tables.iter().find(|t| t.service == service) else {
            return Ok(None);
        };
        let access = table.access(method).ok_or_else(|| {
            Status::permission_denied(format!("no access rule for {service}/{method}"))
        })?;
        self.tokens.admit(access, bearer).await
    }
}

impl Around<HttpRequest, HttpResponse, Infallible> for AccessLayer {
    fn around<S>(&self, mut inner: S, mut req: HttpRequest) -> LayerFuture
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let layer = self.clone();
        Box::pin(async move {
            let token = bearer(req.headers()).map(str::to_string);
            match layer.admit(req.uri().path(), token.as_deref()).await {
                Ok(Some(caller)) => {
                    req.extensions_mut().insert(caller);
                }
                Ok(None) => {}
                Err(status) => return Ok(refuse(status)),
            }
            inner.call(req).await
        })
    }
}
