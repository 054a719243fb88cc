//! strata: an agentless, declarative reconciler for a fleet of validator hosts.
//!
//! Pipeline (see README): load -> resolve -> render -> gather -> diff -> apply -> report.
//! Everything above `gather` is pure and needs no network.

pub mod cli;
pub mod error;
pub mod lab;
pub mod model;
