//! The checkout service's black-box tests, in one test binary: the saga's outcomes and faults
//! (`saga`), and a few hundred randomized checkouts checked against the saga invariants
//! (`invariants`), and the lean checkout's statement budget (`lean`). `support` has what they
//! build on.

mod invariants;
mod lean;
mod saga;
mod support;
