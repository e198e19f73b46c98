//! The checkout service's black-box tests, in one test binary: the saga's outcomes and faults
//! (`saga`), and a few hundred randomized checkouts checked against the saga invariants
//! (`invariants`). `support` has what both build on.

mod invariants;
mod saga;
mod support;
