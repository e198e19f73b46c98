//! Mutual TLS between the services (`tls.*`, off by default).
//!
//! Every service has one certificate, signed by the fleet's CA, whose subject alternative name
//! is `{service}.mall.internal` (`checkout.mall.internal`); `mall certs` writes a development
//! set. It serves as the server certificate of the service's listener and as the client
//! certificate of its calls. A server requires a client certificate signed by the CA (the
//! handshake fails without one), and the calling service is the name in that certificate: the
//! access layer uses it instead of the service token's self-declared subject. A client checks
//! that the server's certificate names the service it meant to call, whatever address discovery
//! gave. rustls with the ring provider; no OpenSSL.

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsSettings;

/// The DNS suffix of every service certificate's name.
pub const SERVICE_DOMAIN: &str = "mall.internal";

/// The certificate name of `service` (`checkout.mall.internal`).
pub fn certificate_name(service: &str) -> String {
    format!("{service}.{SERVICE_DOMAIN}")
}

/// One service's CA and certificate, loaded once at start.
#[derive(Clone)]
pub struct MutualTls {
    ca: Certificate,
    identity: Identity,
    settings: TlsSettings,
}

impl std::fmt::Debug for MutualTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutualTls")
            .field("ca", &self.settings.ca)
            .field("cert", &self.settings.cert)
            .finish_non_exhaustive()
    }
}

fn read(key: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow::anyhow!("`{key}`: cannot read `{path}`: {e} (generate a set with `mall certs`)")
    })
}

impl MutualTls {
    /// The CA and `service`'s certificate and key as `settings` name them; `None` when
    /// `tls.enabled` is off; an error naming the key when a file cannot be read.
    pub fn load(settings: &TlsSettings, service: &str) -> anyhow::Result<Option<MutualTls>> {
        if !settings.enabled {
            return Ok(None);
        }
        let (cert, key) = settings.identity_paths(service);
        Ok(Some(MutualTls {
            ca: Certificate::from_pem(read("tls.ca", &settings.ca)?),
            identity: Identity::from_pem(read("tls.cert", &cert)?, read("tls.key", &key)?),
            settings: settings.clone(),
        }))
    }

    /// The listener's configuration: this certificate, and a client certificate signed by the
    /// CA required.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(self.settings.handshake_timeout)
    }

    /// The configuration of calls to `target`: its certificate must name it and be signed by
    /// the CA; this certificate goes with every call.
    pub fn client(&self, target: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(certificate_name(target))
    }
}

/// The service named by the verified client certificate of a request's connection (its first
/// DNS name `{service}.mall.internal`), `None` without TLS or without such a name.
pub fn peer_service(extensions: &http::Extensions) -> Option<String> {
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
    leaf.valid_dns_names().find_map(service_of_name)
}

/// `checkout` for `checkout.mall.internal`; `None` for any other name.
fn service_of_name(name: &str) -> Option<String> {
    let service = name.strip_suffix(SERVICE_DOMAIN)?.strip_suffix('.')?;
    let valid = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| service.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_under_the_service_domain_name_a_service() {
        assert_eq!(
            service_of_name("checkout.mall.internal").as_deref(),
            Some("checkout")
        );
        assert_eq!(
            service_of_name(&certificate_name("cart")).as_deref(),
            Some("cart")
        );
        for other in [
            "mall.internal",
            ".mall.internal",
            "a.b.mall.internal",
            "checkoutmall.internal",
            "checkout.mall.internal.evil",
            "localhost",
        ] {
            assert_eq!(service_of_name(other), None, "{other}");
        }
    }

    #[test]
    fn disabled_loads_nothing_and_missing_files_name_the_key() {
        let mut settings = TlsSettings::default();
        assert!(MutualTls::load(&settings, "cart").unwrap().is_none());
        settings.enabled = true;
        settings.ca = "/nonexistent/ca.pem".into();
        let err = MutualTls::load(&settings, "cart").unwrap_err().to_string();
        assert!(err.contains("tls.ca"), "{err}");
    }
}
