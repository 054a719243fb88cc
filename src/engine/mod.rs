//! The engine: load, gather, rollout, node apply (with its guard), rollback, bootstrap, node
//! add, local validation. It tells the operator what happens through `events::Ui` and never
//! prints; it never reads clap types.

pub mod artifacts;
pub mod bootstrap;
pub mod events;
pub mod exclusive;
pub mod failover;
pub mod gather;
pub mod load;
pub mod local;
pub mod node_add;
pub mod node_apply;
pub mod rollback;
pub mod rollout;
pub mod validate;

pub use gather::*;
