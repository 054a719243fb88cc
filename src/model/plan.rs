//! A node's plan: the ordered changes, their diffs and the handlers they notify.

use crate::model::{ChangeId, Handler};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Add,
    Change,
    Remove,
}

impl Action {
    pub fn sigil(self) -> char {
        match self {
            Action::Add => '+',
            Action::Change => '~',
            Action::Remove => '-',
        }
    }
}

/// What has to happen to one resource (or one firewall rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    pub id: ChangeId,
    pub action: Action,
    /// Human-readable facts: "mode 0644 -> 0600", "active: inactive -> active".
    pub details: Vec<String>,
    /// Unified diff of file content (3 lines of context); never present for secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub secret: bool,
    /// Handlers this change notifies.
    pub handlers: Vec<Handler>,
    /// Which parts need doing (for apply): content, meta (mode/owner), enable, start, ...
    pub ops: Vec<Op>,
    /// Drift (hand edit), pending (repo moved), both, or never applied (see drift.rs).
    #[serde(default)]
    pub cause: crate::model::Cause,
    /// For a file `Delete` (a rollback dropping a file only a newer revision declared): the
    /// backup copy on the node to put back; none means the file is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Write,
    Meta,
    Create,
    Install,
    /// `systemctl unmask` (a mask in /etc), before an enable or start.
    Unmask,
    /// `systemctl unmask --runtime` (a mask in /run).
    UnmaskRuntime,
    Enable,
    Disable,
    Start,
    Stop,
    FwEnable,
    FwDefaults,
    FwAdd,
    FwDelete,
    /// Download (or receive) an artifact, check its sha256 and unpack it (before any change).
    Fetch,
    /// Point an artifact's `current` at the desired version.
    Switch,
    /// Remove a file no longer declared (or put back its pre-strata copy): rollback only.
    Delete,
}

/// One node's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct NodePlan {
    pub changes: Vec<Change>,
    /// Things strata will not do but the operator must know (a key file to place by hand).
    pub warnings: Vec<String>,
    /// What strata will not do on this node as it is (a non-empty directory where a file
    /// belongs, a symlink where a directory belongs, ...): the node is not applied, and its
    /// plan is an error until someone fixes the node by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
}

impl NodePlan {
    pub fn count(&self, a: Action) -> usize {
        self.changes.iter().filter(|c| c.action == a).count()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Handlers to run, deduplicated, daemon-reload first, then in order of first mention.
    pub fn handlers(&self) -> Vec<Handler> {
        let mut out: Vec<Handler> = Vec::new();
        for c in &self.changes {
            for h in &c.handlers {
                if !out.contains(h) {
                    out.push(h.clone());
                }
            }
        }
        out.sort_by_key(|h| if *h == Handler::DaemonReload { 0 } else { 1 });
        out
    }
}

/// Why a change is in the plan.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The node moved away from what strata applied (a hand edit).
    Drift,
    /// The repo moved since the last apply.
    Pending,
    /// Both at once.
    Both,
    /// strata never applied this node (no record): nothing to compare with.
    #[default]
    Unrecorded,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::Drift => "drift",
            Cause::Pending => "pending",
            Cause::Both => "drift+pending",
            Cause::Unrecorded => "never applied",
        }
    }
}
