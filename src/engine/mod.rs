//! The engine: gather, rollout, node apply, guard, rollback, bootstrap. Emits events; never prints.

pub mod gather;
pub mod node_apply;
pub mod validate;

pub use gather::*;
