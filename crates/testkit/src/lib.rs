//! Test support for TikTokMall (for tests and the `loadgen` benchmarks, never for services):
//! - [`consul::FakeConsul`], a stateful fake Consul agent that runs gRPC health checks like the
//!   real one (also run on its own by the `fake-consul` binary, for a fleet of processes);
//! - [`alipay::FakeAlipay`], a fake Alipay OpenAPI gateway (`alipay.trade.query`,
//!   `alipay.trade.refund`, RSA2-signed answers) that also sends signed notifications;
//! - [`grpc::StubGrpc`], a gRPC server whose answers are scripted (errors on demand);
//! - [`proxy::LatencyProxy`], a TCP proxy that makes a real server slow;
//! - [`otlp::Collector`], an in-process OTLP trace collector for the tests of trace export;
//! - [`smtp::SmtpSink`], a tiny real SMTP server that keeps the mail it receives (and fails on
//!   demand).

pub mod alipay;
pub mod consul;
pub mod grpc;
pub mod otlp;
pub mod proxy;
pub mod smtp;

/// A `reqwest` client builder for the fakes (HTTPS-capable: installs ring as the process's
/// rustls provider first, as `mall_common::http::client` does; testkit does not depend on the
/// platform crate).
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}
