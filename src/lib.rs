//! strata: an agentless, declarative reconciler for a fleet of validator hosts.
//!
//! Pipeline (see README): load -> resolve -> render -> gather -> diff -> apply -> report.
//! Layers, each importing only the ones below it:
//!
//! ```text
//! cli        one file per command: clap args + a short exec; the only code that prints
//! engine     gather, rollout, node apply, guard, rollback, bootstrap: emits events
//! plan       pure: diff, drift, lockout
//! render     pure: repo + secret source -> desired state
//! report     pure formatters (text, JSON, markdown)
//! remote     pure: the sh text of each remote step beside the parser of its reply
//! transport  the only code that touches a node
//! config     every file read: inventory, base, nodes, modules, templates
//! model      data at the bottom
//! ```
//!
//! `error` (the one error type) and `interrupt` (Ctrl-C) are used by every layer.

pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod interrupt;
pub mod model;
pub mod plan;
pub mod remote;
pub mod render;
pub mod report;
pub mod transport;
