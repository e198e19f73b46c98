//! Access control before any handler runs: the RPC's rule in its service's [`AccessTable`], the
//! bearer token and (with mutual TLS) the client certificate decide; the
//! [`Caller`](crate::auth::Caller) goes into the request for the handler. Services without a
//! table (health, reflection) are public; an RPC missing from its table is refused (fail closed).

use std::convert::Infallible;
use std::sync::Arc;

use tonic::Status;
use tower::Service;

use super::{HttpRequest, HttpResponse, LayerFuture, refuse, split_path};
use crate::around::Around;
use crate::auth::{AccessTable, Caller, Gate, Tokens, Transport, bearer};

/// See the module docs.
#[derive(Clone)]
pub struct AccessLayer {
    // One `Arc` for all of it: the layer is cloned with the service stack on every call.
    gate: Arc<AccessGate>,
}

struct AccessGate {
    tables: Vec<AccessTable>,
    tokens: Arc<Tokens>,
    audience: Box<str>,
    mutual_tls: bool,
}

impl AccessLayer {
    /// Enforces `tables` for the service `audience`, verifying tokens with `tokens`; with
    /// `mutual_tls` the calling service is the one its client certificate names.
    pub fn new(
        tables: Vec<AccessTable>,
        tokens: Arc<Tokens>,
        audience: &str,
        mutual_tls: bool,
    ) -> Self {
        AccessLayer {
            gate: Arc::new(AccessGate {
                tables,
                tokens,
                audience: audience.into(),
                mutual_tls,
            }),
        }
    }
}

impl AccessGate {
    /// The caller of `path` as its rule admits it; `peer` is the service the client
    /// certificate names (mutual TLS only).
    async fn admit(
        &self,
        path: &str,
        bearer: Option<&str>,
        peer: Option<&str>,
    ) -> Result<Option<Caller>, Status> {
        let (service, method) = split_path(path);
        let Some(table) = self.tables.iter().find(|t| t.service == service) else {
            return Ok(None);
        };
        let access = table.access(method).ok_or_else(|| {
            Status::permission_denied(format!("no access rule for {service}/{method}"))
        })?;
        let gate = Gate {
            audience: &self.audience,
            rpc: path.trim_start_matches('/'),
            transport: if self.mutual_tls {
                Transport::MutualTls { peer }
            } else {
                Transport::Plain
            },
        };
        self.tokens.admit(access, bearer, gate).await
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
        let gate = self.gate.clone();
        Box::pin(async move {
            let token = bearer(req.headers()).map(str::to_string);
            let peer = gate
                .mutual_tls
                .then(|| crate::tls::peer_service(req.extensions()))
                .flatten();
            match gate
                .admit(req.uri().path(), token.as_deref(), peer.as_deref())
                .await
            {
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
