//! Load tools for TikTokMall, one subcommand each:
//!
//! - [`bench`] (`loadgen bench`, the default): the call path between services measured in one
//!   process, as ratios against a plain tonic channel;
//! - [`shop`] (`loadgen shop`): shoppers against a running fleet over the network, with a
//!   report per operation;
//! - [`check`] (`loadgen check`): the fleet's invariants, read from its databases.

pub mod args;
pub mod bench;
pub mod check;
pub mod shop;

pub use bench::{Measurement, Options, Report, run};
