//! The TikTokMall platform crate: everything that is the same in all seven services.
//!
//! Its modules read top-down; each uses only the ones above it:
//!
//! 1. [`error`]: the error vocabulary ([`error::ServiceError`]) and the one place failures
//!    become `tonic::Status`;
//! 2. [`backoff`]: exponential backoff with jitter; [`http`]: the one way to build an HTTP
//!    client (HTTPS with rustls and ring);
//! 3. [`config`]: typed settings, layered defaults → YAML → `MALL__SECTION__KEY`, one file per
//!    section, unknown keys refused;
//! 4. [`context`]: the request context (request id, deadline) shared by server and client,
//!    and [`around`]: the one shape of every request-path layer;
//! 5. [`telemetry`]: logging and the Prometheus metrics of servers;
//! 6. [`store`]: the SQL pool chosen by URL scheme, with per-backend migrations;
//! 7. [`cache`]: the [`cache::Cache`] trait with in-process (moka) and Redis implementations;
//! 8. [`tls`]: mutual TLS, and the calling service named by its certificate; [`auth`]: tokens,
//!    the [`auth::Caller`], access tables;
//! 9. [`discovery`]: the [`discovery::Resolve`] / [`discovery::Register`] traits, static and
//!    Consul;
//! 10. [`client`]: `Clients::client::<T>("product")`, a stack of layers (credentials, breaker,
//!     deadline, retry, balance) per target service;
//! 11. [`server`]: a tonic server with health, reflection, a stack of layers (request id,
//!     metrics, load shedding, access, deadline), an admin port and graceful shutdown;
//! 12. [`worker`]: background loops that stop with the server;
//! 13. [`events`]: the asynchronous event contract, the [`events::EventBus`] (in-process, NATS
//!     JetStream, Kafka), the transactional [`events::Outbox`] and its [`events::Relay`];
//! 14. [`platform`]: database + cache + tokens + discovery + clients + event bus, opened in one
//!     call, and the server wired to them.
//!
//! [`paging`] and [`reply`] are small helpers for the services' gRPC edges.

pub mod error;

pub mod around;
pub mod backoff;
pub mod config;
pub mod context;
pub mod http;
pub mod telemetry;

pub mod store;

pub mod cache;

pub mod tls;

pub mod auth;

pub mod discovery;

pub mod client;

pub mod server;

pub mod worker;

pub mod events;

pub mod platform;

pub mod paging;
pub mod reply;

pub use config::Settings;
