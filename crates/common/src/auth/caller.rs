//! Who is calling: the [`Caller`] the server puts in every authenticated request, and reading
//! the bearer token off a request.

use mall_types::{Role, UserId};
use tonic::Status;

use super::claims::Claims;

/// Who is calling, as established by the server from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An end user (or admin) with a valid access token.
    User {
        /// Account id.
        user_id: UserId,
        /// Username at the time the token was issued.
        username: String,
        /// [`Role::User`] or [`Role::Admin`].
        role: Role,
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
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Caller::User { user_id, .. } => Some(*user_id),
            Caller::Service { .. } => None,
        }
    }

    /// True for the `admin` role.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Caller::User {
                role: Role::Admin,
                ..
            }
        )
    }

    /// May this caller act on `user_id`'s data? Their own data, an admin, or a service acting
    /// for a user; anyone else is `PERMISSION_DENIED`. It takes a parsed id, so a request is
    /// parsed (a bad id is `INVALID_ARGUMENT`) before it is authorized, in every service.
    pub fn authorize(&self, user_id: UserId) -> Result<(), Status> {
        match self {
            Caller::Service { .. } => Ok(()),
            Caller::User { user_id: me, .. } if *me == user_id => Ok(()),
            Caller::User {
                role: Role::Admin, ..
            } => Ok(()),
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
