//! Tokens and callers, used by every service: [`tokens`] signs, verifies and revokes,
//! [`caller`] is who is calling, [`access`] is who may call which RPC.
//!
//! - Access tokens are HS256 JWTs (`sub`, `name`, `role`, `jti`, `iat`, `exp`, plus `sid`, the
//!   session they belong to). Every service verifies them locally with the shared key — no call
//!   to auth on the hot path — and checks [`revocation`] in the shared cache (Redis in a fleet,
//!   the process-wide memory cache in the embedded one), so a logout is seen everywhere at once;
//!   a cache that lost its revocations fails closed until auth restores them.
//! - Service tokens (`typ = service`, a minute long) are minted by [`crate::client`] with the same
//!   key and attached to every outgoing call; internal RPCs accept only those.
//! - The server verifies the bearer token before the handler runs (see [`crate::server`]) and
//!   puts the [`Caller`] in the request; handlers read it with [`caller`] and check ownership
//!   with [`Caller::authorize`].

pub mod access;
pub mod caller;
pub mod revocation;
pub mod tokens;

pub use access::{Access, AccessTable};
pub use caller::{Caller, Claims, bearer, caller, token_from_field_or_metadata};
pub use tokens::*;
