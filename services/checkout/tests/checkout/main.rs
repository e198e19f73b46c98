//! The checkout service's black-box tests, in one test binary: the saga's outcomes and faults
//! (`saga`), and a few hundred randomized checkouts checked against the saga invariants
//! (`invariants`), and the lean checkout's statement budget (`lean`). `support` has what they
//! build on.

mod invariants;
mod lean;
mod saga;
mod support;

/// `checkout --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_checkout"), "checkout", &[]);
}
