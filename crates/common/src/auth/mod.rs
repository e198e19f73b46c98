//! Tokens and callers, used by every service: [`tokens`] signs, verifies and revokes,
//! [`caller`] is who is calling, [`access`] is who may call which RPC.
//!
//! - Access tokens are EdDSA JWTs signed by auth ([`Claims`]: `sub`, `name`, `role`, `jti`,
//!   `iat`, `exp`, plus `sid`, the session they belong to). Every service verifies them locally
//!   with auth's public key — no call to auth on the hot path — and checks [`revocation`] in the
//!   shared cache (Redis in a fleet,
//!   the process-wide memory cache in the embedded one), so a logout is seen everywhere at once;
//!   a cache that lost its revocations fails closed until auth restores them.
//! - Service tokens (`typ = service`, a minute long, `aud` = the service called) are minted by
//!   [`crate::client`] with the same key and attached to every outgoing call; a server accepts
//!   only those addressed to it, and an internal RPC only from the services its rule names (the
//!   token's subject, or with mutual TLS the service named by the client certificate).
//! - The server verifies the bearer token before the handler runs (see [`crate::server`]) and
//!   puts the [`Caller`] in the request; handlers read it with [`caller`] and check ownership
//!   with [`Caller::authorize`].

pub mod access;
pub mod caller;
pub mod claims;
pub mod revocation;
pub mod tokens;

pub use access::{Access, AccessTable};
pub use caller::{Caller, bearer, caller, token_from_field_or_metadata};
pub use claims::Claims;
pub use mall_types::{Role, TokenKind};
pub use tokens::*;
