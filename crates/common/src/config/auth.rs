//! `auth.*`: what every service needs to verify and mint tokens. The auth service's own
//! settings (password hashing, lockout, refresh tokens, the bootstrap admin) are its `accounts`
//! section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Secret, Validate, ensure};

/// The built-in development signing key. Fine on a laptop; the `online` profile refuses it.
pub const DEFAULT_JWT_SECRET: &str = "tiktokmall-development-signing-key-do-not-use-online";
/// Shortest accepted signing key.
pub const MIN_SECRET_BYTES: usize = 32;
/// Default lifetime of access tokens.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Default lifetime of service-to-service tokens.
pub const DEFAULT_SERVICE_TOKEN_TTL: Duration = Duration::from_secs(60);

/// `auth.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    /// HS256 signing key shared by the fleet, at least 32 bytes. Set it from the environment
    /// (`MALL__AUTH__JWT_SECRET`); the `online` profile refuses the built-in development key.
    pub jwt_secret: Secret,
    /// Lifetime of access tokens.
    #[serde(with = "super::duration")]
    pub access_token_ttl: Duration,
    /// Lifetime of service-to-service tokens.
    #[serde(with = "super::duration")]
    pub service_token_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: Secret::new(DEFAULT_JWT_SECRET),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            service_token_ttl: DEFAULT_SERVICE_TOKEN_TTL,
        }
    }
}

impl Validate for AuthSettings {
    fn validate(&self, profile: Profile) -> Result<(), ConfigError> {
        ensure(
            self.jwt_secret.expose().len() >= MIN_SECRET_BYTES,
            "auth.jwt_secret",
            format!("must be at least {MIN_SECRET_BYTES} bytes"),
        )?;
        ensure(
            !(profile == Profile::Online && self.jwt_secret.expose() == DEFAULT_JWT_SECRET),
            "auth.jwt_secret",
            "the online profile refuses the built-in development key; set MALL__AUTH__JWT_SECRET",
        )?;
        ensure(
            !self.access_token_ttl.is_zero() && !self.service_token_ttl.is_zero(),
            "auth",
            "token lifetimes must be positive",
        )
    }
}
