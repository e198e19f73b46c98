//! Test support for TikTokMall (for tests and the `loadgen` benchmarks, never for services):
//! - [`consul::FakeConsul`], a stateful fake Consul agent that runs gRPC health checks like the
//!   real one;
//! - [`grpc::StubGrpc`], a gRPC server whose answers are scripted (errors on demand);
//! - [`proxy::LatencyProxy`], a TCP proxy that makes a real server slow.

pub mod consul;
pub mod grpc;
pub mod proxy;
