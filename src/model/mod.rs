//! Data at the bottom: desired state, live state, plans, the on-node record, firewall rules.
//! Pure types and their own small rules; no I/O.

pub mod desired;
pub mod exclusive;
pub mod firewall;
pub mod ids;
pub mod live;
pub mod names;
pub mod plan;
pub mod record;
pub mod result;
#[cfg(test)]
pub mod testing;

pub use desired::*;
pub use exclusive::*;
pub use firewall::*;
pub use ids::*;
pub use live::*;
pub use plan::*;
pub use record::*;
pub use result::*;
