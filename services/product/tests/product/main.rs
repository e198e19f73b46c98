//! The product service's black-box tests, in one test binary (one link instead of five):
//! the catalog API, client-side balancing over three instances, failover and graceful shutdown
//! of the real binary, load shedding and admission's recovery after a store stall, the near
//! cache across two instances, and the catalog's migrations on a populated database.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set.

mod balancing;
mod catalog;
mod failover;
mod grpc_web;
mod migration;
mod near_cache;
mod shedding;
mod shutdown;
mod stall_recovery;

/// `product --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_product"), "product", &[]);
}
