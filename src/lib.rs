//! strata: an agentless, declarative reconciler for a fleet of validator hosts.
//!
//! Pipeline (see README): load -> resolve -> render -> gather -> diff -> apply -> report.
//! Everything above `gather` is pure and needs no network.

pub mod apply_script;
pub mod bootstrap_script;
pub mod cli;
pub mod cmd_apply;
pub mod cmd_bootstrap;
pub mod cmd_node;
pub mod cmd_plan;
pub mod cmd_rollback;
pub mod cmd_status;
pub mod commands;
pub mod config;
pub mod diff;
pub mod drift;
pub mod engine;
pub mod error;
pub mod guard;
pub mod inventory_edit;
pub mod model;
pub mod node_apply;
pub mod probe;
pub mod render;
pub mod report;
pub mod transport;
pub mod validate_local;
pub mod vars;
pub mod yaml;
