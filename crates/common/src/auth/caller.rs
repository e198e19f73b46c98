//! Who is calling: the [`Caller`] the server puts in every authenticated request, the claims of
//! the token it came from, and reading the bearer token off a request.

use serde::{Deserialize, Serialize};
use tonic::Status;

use super::tokens::ROLE_ADMIN;

/// The claims of every token we sign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id (access) or service name (service).
    pub sub: String,
    /// Username (access) or service name.
    pub name: String,
    /// `user`, `admin` or `service`.
    pub role: String,
    /// Unique token id (revocation key).
    pub jti: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Not valid before, unix seconds (= `iat`).
    pub nbf: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Session (refresh-token family) of an access token; empty for service tokens.
    #[serde(default)]
    pub sid: String,
    /// `access` or `service`.
    pub typ: String,
    /// Always [`ISSUER`](super::tokens::ISSUER).
    pub iss: String,
    /// The service a service token is addressed to (the only server that accepts it); absent
    /// from access tokens, which every service accepts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aud: String,
}

/// Who is calling, as established by the server from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An end user (or admin) with a valid access token.
    User {
        /// Account id.
        user_id: u64,
        /// Username at the time the token was issued.
        username: String,
        /// `user` or `admin`.
        role: String,
        /// The token's claims (for logout).
        claims: Box<Claims>,
    },
    /// Another service of the fleet.
    Service {
        /// Its name, e.g. `checkout`.
        name: String,
    },
}

impl Caller {
    /// The user id of an end-user caller.
    pub fn user_id(&self) -> Option<u64> {
        match self {
            Caller::User { user_id, .. } => Some(*user_id),
            Caller::Service { .. } => None,
        }
    }

    /// True for the `admin` role.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::User { role, .. } if role == ROLE_ADMIN)
    }

    /// May this caller act on `user_id`'s data? Their own data, an admin, or a service acting
    /// for a user; anyone else is `PERMISSION_DENIED`.
    pub fn authorize(&self, user_id: u64) -> Result<(), Status> {
        match self {
            Caller::Service { .. } => Ok(()),
            Caller::User { user_id: me, .. } if *me == user_id => Ok(()),
            Caller::User { role, .. } if role == ROLE_ADMIN => Ok(()),
            Caller::User { .. } => Err(Status::permission_denied(
                "not allowed to act on another user's data",
            )),
        }
    }
}

/// The [`Caller`] the server attached to `request` (RPCs that need one are never public, so a
/// missing caller is `UNAUTHENTICATED`).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("missing access token"))
}

/// The bearer token in `authorization` metadata, if any.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token of an RPC that may carry it in its body (user's `Info`, auth's `Logout`, ...): the
/// `field` when set, else the bearer token in `authorization` metadata. Such RPCs are public at
/// the gate (which sees only metadata) and verify this token in the handler with
/// [`Tokens::verify_end_user`].
pub fn token_from_field_or_metadata<'a>(
    field: &'a str,
    metadata: &'a tonic::metadata::MetadataMap,
) -> Option<&'a str> {
    if field.is_empty() {
        bearer(metadata.as_ref())
    } else {
        Some(field)
    }
}
