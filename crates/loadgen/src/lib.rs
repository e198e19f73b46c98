//! Load tools for TikTokMall, one subcommand each:
//!
//! - [`bench`] (`loadgen bench`, the default): the call path between services measured in one
//!   process, as ratios against a plain tonic channel;
//! - [`shop`] (`loadgen shop`): shoppers against a running fleet over the network, with a
//!   report per operation;
//! - [`check`] (`loadgen check`): the fleet's invariants, read from its databases;
//! - [`floor`] (`loadgen floor`): benchmarks against the physical floor (a bare tonic server,
//!   the database's own commit rate), the overload knee and the fleet's memory.

pub mod bench;
pub mod check;
pub mod floor;
pub mod shop;

pub use bench::{Measurement, Options, Report, run};

/// The global allocator of this binary: `mimalloc` when built with `--features mimalloc`.
pub const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system (glibc malloc)"
};
