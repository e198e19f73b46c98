//! Credentials on outgoing calls: unless the request sets `authorization` itself, the channel's
//! [`Credentials`] go on it: this service's own token addressed to the called service (re-minted
//! shortly before it expires), or a fixed bearer token (an end user's, or an admin's in tools and
//! tests).

use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::BoxError;
use crate::around::Around;
use crate::auth::Tokens;
use mall_types::time::unix_secs as unix_now;

/// A service token is replaced when it has less than this left.
pub const SERVICE_TOKEN_REFRESH_MARGIN_SECS: i64 = 15;

/// The calling service's name and keys, for minting service tokens.
#[derive(Clone)]
pub struct ServiceIdentity {
    /// This service's name (the token's subject).
    pub name: String,
    /// The fleet's token keys.
    pub tokens: Arc<Tokens>,
}

/// What a channel sends as `authorization` when the request carries none.
#[derive(Clone)]
pub(crate) enum Credentials {
    None,
    /// A service token for calling `audience`, re-minted shortly before it expires.
    Service {
        identity: ServiceIdentity,
        audience: Arc<str>,
        current: Arc<Mutex<Option<(String, i64)>>>,
    },
    /// A fixed bearer token.
    Bearer(Arc<str>),
}

impl Credentials {
    /// This service's token for calling `audience`, when it has an identity.
    pub(crate) fn service(identity: Option<&ServiceIdentity>, audience: Arc<str>) -> Self {
        match identity {
            Some(identity) => Credentials::Service {
                identity: identity.clone(),
                audience,
                current: Arc::default(),
            },
            None => Credentials::None,
        }
    }

    fn header(&self) -> Result<Option<http::HeaderValue>, Status> {
        let token = match self {
            Credentials::None => return Ok(None),
            Credentials::Bearer(token) => token.to_string(),
            Credentials::Service {
                identity,
                audience,
                current,
            } => {
                let mut current = current.lock();
                match current.as_ref() {
                    Some((token, exp)) if *exp - unix_now() > SERVICE_TOKEN_REFRESH_MARGIN_SECS => {
                        token.clone()
                    }
                    _ => {
                        let (token, exp) =
                            identity.tokens.issue_service(&identity.name, audience)?;
                        *current = Some((token.clone(), exp));
                        token
                    }
                }
            }
        };
        http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map(Some)
            .map_err(|_| Status::internal("token is not a valid header value"))
    }
}

impl Around<http::Request<Body>, http::Response<Body>, BoxError> for Credentials {
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
        if !req.headers().contains_key(http::header::AUTHORIZATION) {
            match self.header() {
                Ok(Some(value)) => {
                    req.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
                Ok(None) => {}
                Err(status) => return Box::pin(std::future::ready(Err(status.into()))),
            }
        }
        Box::pin(inner.call(req))
    }
}
