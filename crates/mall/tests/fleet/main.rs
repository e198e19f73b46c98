//! The fleet as a whole, in one test binary: the contract between the protos and the access
//! tables, the services' settings sections, the identity journey across auth, user and product,
//! and the whole fleet on Consul. (`request_id.rs` has a binary of its own: it captures logs.)

mod config_centre;
mod consul;
mod contract;
mod exposure;
mod identity_journey;
mod service_identity;
mod settings;
