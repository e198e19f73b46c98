//! Outgoing HTTP (Consul's API, the config centre, Alipay's gateway): [`client`] is the one way
//! to build a `reqwest` client in the fleet. reqwest speaks HTTPS through rustls with the
//! platform's trust roots and needs a process-wide crypto provider; this installs ring (the
//! provider the fleet's mutual TLS uses) first, once.

/// Installs ring as the process's rustls provider (a no-op when one is installed already).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: another provider was installed first, which is just as good for reqwest.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A `reqwest` client builder that can speak HTTPS (see the module docs).
pub fn client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_and_can_speak_https() {
        let client = super::client().build().expect("a client");
        // Building an https request needs the TLS backend; nothing is sent.
        client
            .get("https://example.invalid/")
            .build()
            .expect("an https request");
    }
}
