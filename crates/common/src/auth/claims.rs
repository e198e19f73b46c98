//! The claims of every token the fleet signs: access tokens (end users, signed by auth) and
//! service tokens (each service, for its outgoing calls). `role` and `typ` are typed: a token
//! naming a role or kind the fleet does not know does not decode.

use mall_types::{Role, TokenKind};
use serde::{Deserialize, Serialize};

/// The claims of every token we sign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id (access) or service name (service).
    pub sub: String,
    /// Username (access) or service name.
    pub name: String,
    /// `user`, `admin` or `service`.
    pub role: Role,
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
    pub typ: TokenKind,
    /// Always [`ISSUER`](super::tokens::ISSUER).
    pub iss: String,
    /// The service a service token is addressed to (the only server that accepts it); absent
    /// from access tokens, which every service accepts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aud: String,
}
