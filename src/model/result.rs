//! How a node's apply ended (the summary, the audit log and the JSON of a run).

use serde::Serialize;

/// How one node's apply ended.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum NodeResult {
    Applied {
        changes: usize,
        handlers: Vec<String>,
        seconds: f64,
    },
    Unchanged,
    Failed {
        error: String,
    },
    /// Failed its gate, then restored to its previous files and services.
    RolledBack {
        error: String,
        healthy: bool,
        detail: String,
    },
    RollbackFailed {
        error: String,
        why: String,
    },
    /// No new SSH connection could reach the node after its changes: its guard restores it.
    Lost {
        error: String,
        /// The guard restored the node and strata reached it again.
        restored: bool,
        detail: String,
    },
    Untouched,
}

impl NodeResult {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            NodeResult::Failed { .. }
                | NodeResult::RolledBack { .. }
                | NodeResult::RollbackFailed { .. }
                | NodeResult::Lost { .. }
        )
    }
}
