//! Fleet-wide exclusive services: a service (a signing validator) that may be active on at
//! most one node of its set. Which node is active is part of the config (inventory
//! `exclusive:`); each member's desired state carries its set, resolved at render.

use crate::model::{HealthCheck, LiveService, NodeIdentity};
use serde::Serialize;
use std::collections::BTreeMap;

/// One node's view of an exclusive set it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExclusiveSet {
    pub name: String,
    /// Unit name without `.service`.
    pub service: String,
    /// The node the config names active.
    pub active: String,
    /// Every node of the set (the nodes that declare the service), in inventory order.
    pub members: Vec<NodeIdentity>,
    /// Ports the service listens on (checked closed after a stop).
    pub ports: Vec<u16>,
    /// Node -> fence command, run on the operator's machine.
    pub fence: BTreeMap<String, String>,
    /// This node's health gate as the active node (the group's full gate); a standby's own
    /// gate leaves out the exclusive unit and the check that probes it.
    pub takeover_health: HealthCheck,
}

impl ExclusiveSet {
    pub fn member(&self, name: &str) -> Option<&NodeIdentity> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// What a node's probe says about an exclusive service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// The unit is active (or starting, reloading, stopping: its process may still sign).
    Active,
    Inactive,
    /// The node could not be read: treated as active unless the operator says otherwise.
    Unknown,
}

impl Signing {
    /// From the probe's `systemctl show` of the unit; a unit that is not there is inactive.
    pub fn of(s: Option<&LiveService>) -> Signing {
        match s.map(|s| s.active.as_str()) {
            Some("active" | "activating" | "reloading" | "deactivating" | "refreshing") => {
                Signing::Active
            }
            Some(_) | None => Signing::Inactive,
        }
    }

    /// From `systemctl is-active UNIT` output.
    pub fn of_is_active(out: &str) -> Signing {
        Signing::of(Some(&LiveService {
            active: out.trim().to_string(),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_states_that_may_sign_count_as_active() {
        for s in ["active", "activating", "deactivating", "reloading"] {
            assert_eq!(Signing::of_is_active(s), Signing::Active, "{s}");
        }
        for s in ["inactive", "failed", "unknown", ""] {
            assert_eq!(Signing::of_is_active(s), Signing::Inactive, "{s}");
        }
        assert_eq!(Signing::of(None), Signing::Inactive);
    }
}
