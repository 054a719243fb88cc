//! Pure: desired state + live state -> a node's plan (diff, drift vs pending, lockout).

pub mod diff;
pub mod drift;
pub mod exclusive;
pub mod lockout;
