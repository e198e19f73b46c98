//! `tls.*`: mutual TLS between the services (off by default).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate, ensure};

/// Default of `tls.enabled`: plain TCP (services prove themselves with service tokens only).
pub const DEFAULT_TLS_ENABLED: bool = false;
/// Default of `tls.ca`: the CA certificate `mall certs` writes.
pub const DEFAULT_TLS_CA: &str = "certs/ca.pem";
/// Default of `tls.cert`; `{service}` is replaced by the service name.
pub const DEFAULT_TLS_CERT: &str = "certs/{service}.pem";
/// Default of `tls.key`; `{service}` is replaced by the service name.
pub const DEFAULT_TLS_KEY: &str = "certs/{service}.key";
/// Default of `tls.handshake_timeout`.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `tls.*`: with `enabled`, every gRPC listener requires a client certificate signed by `ca`
/// and every client presents `cert`; the calling service is the one its certificate names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsSettings {
    /// Mutual TLS on every gRPC listener and every outgoing call.
    pub enabled: bool,
    /// PEM file of the CA that signs every certificate of the fleet.
    pub ca: String,
    /// PEM file of this service's certificate (`{service}` → the service name).
    pub cert: String,
    /// PEM file of this service's private key (`{service}` → the service name).
    pub key: String,
    /// How long a server waits for a client to finish the handshake.
    #[serde(with = "super::duration")]
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            enabled: DEFAULT_TLS_ENABLED,
            ca: DEFAULT_TLS_CA.into(),
            cert: DEFAULT_TLS_CERT.into(),
            key: DEFAULT_TLS_KEY.into(),
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsSettings {
    /// `(certificate, key)` paths of `service`.
    pub fn identity_paths(&self, service: &str) -> (String, String) {
        (
            self.cert.replace("{service}", service),
            self.key.replace("{service}", service),
        )
    }
}

impl Validate for TlsSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, path) in [
            ("tls.ca", &self.ca),
            ("tls.cert", &self.cert),
            ("tls.key", &self.key),
        ] {
            ensure(
                !path.trim().is_empty(),
                key,
                "must name a PEM file when tls.enabled",
            )?;
        }
        ensure(
            !self.handshake_timeout.is_zero(),
            "tls.handshake_timeout",
            "must be more than 0",
        )
    }
}
