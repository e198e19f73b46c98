//! The TikTokMall platform crate: everything that is the same in all seven services.
//!
//! A service is built from these rooms, each a small module:
//!
//! - [`config`]: typed settings, layered defaults → YAML → `MALL__SECTION__KEY`, validated at start;
//! - [`telemetry`]: the tracing subscriber and the Prometheus registry with RED metrics;
//! - [`server`]: a tonic server with health, reflection, access control, metrics and tracing
//!   layers, an admin HTTP port and graceful shutdown;
//! - [`store`]: the SQL pool chosen by URL scheme, with per-backend migrations;
//! - [`cache`]: the [`cache::Cache`] trait with in-process (moka) and Redis implementations;
//! - [`error`]: turning failures into safe `tonic::Status`es, logging the cause once;
//! - [`discovery`]: the Consul registry (agent registration, gRPC check, keep-alive) and resolver
//!   (blocking health queries);
//! - [`client`]: `Clients::client::<T>("product")`, a ready tonic client for a named service;
//! - [`access`]: which RPCs are public, for users, internal or admin-only;
//! - [`auth`]: access and service tokens, the [`auth::Caller`], revocation;
//! - [`platform`]: database + cache + tokens + clients, opened in one call at start;
//! - [`validate`]: input rules several services share (ids, email) and the [`validate::Invalid`] error.

pub mod access;
pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod discovery;
pub mod error;
pub mod paging;
pub mod platform;
pub mod reply;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod validate;

pub use config::Settings;
