//! gRPC-Web for browsers (`server.grpc_web`): `tonic-web` translates `application/grpc-web`
//! (and `-text`) requests, over HTTP/1.1 or HTTP/2, into gRPC for the same layers and services;
//! with `server.cors_origins`, CORS answers preflights and marks answers for those origins.
//! Off by default: without it a browser cannot reach the services except through a gateway.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::ServerSettings;
use crate::context::{PUSHBACK_HEADER, REQUEST_ID_HEADER, SHED_HEADER};

/// Request headers a gRPC-Web page may send.
const ALLOWED: [&str; 9] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    REQUEST_ID_HEADER,
    "traceparent",
    "tracestate",
    "grpc-accept-encoding",
];
/// Response headers a gRPC-Web page may read.
const EXPOSED: [&str; 6] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    REQUEST_ID_HEADER,
    SHED_HEADER,
    PUSHBACK_HEADER,
];

/// gRPC-Web as `settings` configure it; `None` when off.
#[derive(Debug, Clone)]
pub struct GrpcWeb {
    origins: Vec<String>,
}

impl GrpcWeb {
    /// From `server.grpc_web` and `server.cors_origins`.
    pub fn from_settings(settings: &ServerSettings) -> Option<Self> {
        settings.grpc_web.then(|| GrpcWeb {
            origins: settings.cors_origins.clone(),
        })
    }

    /// The CORS layer for the configured origins; `None` without any (same origin only).
    pub fn cors(&self) -> Option<CorsLayer> {
        if self.origins.is_empty() {
            return None;
        }
        let origin = if self.origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            // Validated as origins (and so as header values) with the settings.
            AllowOrigin::list(
                self.origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::POST, Method::OPTIONS])
                .allow_headers(ALLOWED.map(HeaderName::from_static))
                .expose_headers(EXPOSED.map(HeaderName::from_static))
                .max_age(Duration::from_secs(24 * 3_600)),
        )
    }
}
