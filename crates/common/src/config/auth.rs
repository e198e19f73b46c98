//! `auth.*`: what every service needs to verify and mint tokens. The auth service's own
//! settings (password hashing, lockout, refresh tokens, the bootstrap admin) are its `accounts`
//! section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;

use super::{ConfigError, Profile, Secret, Validate, ensure};

/// The built-in development signing key. Fine on a laptop; the `online` profile refuses it.
pub const DEFAULT_JWT_SECRET: &str = "tiktokmall-development-signing-key-do-not-use-online";
/// Shortest accepted signing key.
pub const MIN_SECRET_BYTES: usize = 32;
/// Default lifetime of access tokens.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Default lifetime of service-to-service tokens.
pub const DEFAULT_SERVICE_TOKEN_TTL: Duration = Duration::from_secs(60);

/// The seed of the built-in development key pair for access tokens (public: it is in the
/// source). Used only while `auth.verify_key` is empty; refused off loopback and online.
const DEV_ACCESS_SEED: [u8; 32] = *b"tiktokmall-dev-access-token-seed";

/// The Ed25519 keys of access tokens, decoded from `auth.signing_key` / `auth.verify_key`.
#[derive(Clone)]
pub struct AccessKeys {
    /// The private key (32-byte seed): only auth holds it.
    pub signing: Option<[u8; 32]>,
    /// The public key every service verifies with.
    pub verifying: [u8; 32],
    /// True for the built-in development pair.
    pub development: bool,
}

impl AccessKeys {
    /// A fresh random pair, as `(signing_key, verify_key)` setting values (base64).
    pub fn generate() -> (String, String) {
        let seed: [u8; 32] = rand::random();
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        (BASE64.encode(seed), BASE64.encode(public))
    }
}

fn key32(key: &str, value: &str) -> Result<[u8; 32], ConfigError> {
    BASE64
        .decode(value.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| ConfigError::Invalid {
            key: key.into(),
            reason: "must be 32 bytes in base64 (generate a pair with `mall keys`)".into(),
        })
}

/// `auth.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    /// HS256 key shared by the fleet for service tokens, at least 32 bytes. Set it from the
    /// environment (`MALL__AUTH__JWT_SECRET`); the built-in development key is refused online
    /// and off loopback.
    pub jwt_secret: Secret,
    /// Ed25519 private key (base64 32-byte seed) that signs access tokens: set it for auth
    /// only (`MALL__AUTH__SIGNING_KEY`); other services verify with `verify_key` and cannot
    /// mint sessions. Empty with an empty `verify_key`: the development pair.
    pub signing_key: Secret,
    /// Ed25519 public key (base64, 32 bytes) access tokens are verified with; every service
    /// sets it (`MALL__AUTH__VERIFY_KEY`). Empty: the built-in development pair.
    pub verify_key: String,
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
            signing_key: Secret::default(),
            verify_key: String::new(),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            service_token_ttl: DEFAULT_SERVICE_TOKEN_TTL,
        }
    }
}

impl AuthSettings {
    /// The access-token keys these settings name; a signing key that does not belong to the
    /// verify key, or a malformed one, is an error naming the key.
    pub fn access_keys(&self) -> Result<AccessKeys, ConfigError> {
        if self.verify_key.trim().is_empty() {
            ensure(
                self.signing_key.expose().is_empty(),
                "auth.verify_key",
                "must be set with auth.signing_key (the public half of the pair)",
            )?;
            let signing = SigningKey::from_bytes(&DEV_ACCESS_SEED);
            return Ok(AccessKeys {
                signing: Some(DEV_ACCESS_SEED),
                verifying: signing.verifying_key().to_bytes(),
                development: true,
            });
        }
        let verifying = key32("auth.verify_key", &self.verify_key)?;
        let signing = match self.signing_key.expose() {
            "" => None,
            seed => {
                let seed = key32("auth.signing_key", seed)?;
                ensure(
                    SigningKey::from_bytes(&seed).verifying_key().to_bytes() == verifying,
                    "auth.signing_key",
                    "is not the private half of auth.verify_key",
                )?;
                Some(seed)
            }
        };
        Ok(AccessKeys {
            signing,
            verifying,
            development: false,
        })
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
        let keys = self.access_keys()?;
        ensure(
            !(profile == Profile::Online && keys.development),
            "auth.verify_key",
            "the online profile refuses the built-in development key pair; generate one with \
             `mall keys` and set MALL__AUTH__VERIFY_KEY (every service) and \
             MALL__AUTH__SIGNING_KEY (auth only)",
        )?;
        ensure(
            !self.access_token_ttl.is_zero() && !self.service_token_ttl.is_zero(),
            "auth",
            "token lifetimes must be positive",
        )
    }
}
