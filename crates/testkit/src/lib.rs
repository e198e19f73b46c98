//! Test support for TikTokMall (a dev-dependency only): [`consul::FakeConsul`], a stateful fake
//! Consul agent that runs gRPC health checks like the real one.
#![forbid(unsafe_code)]

pub mod consul;
