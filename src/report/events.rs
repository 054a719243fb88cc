//! `apply --format json` (and rollback, bootstrap): the engine's events as JSON lines on
//! standard output, one object per event, for machines. These types are the stream's
//! contract: they print it and generate its JSON Schema (schema/events.schema.json).

use crate::model::NodeResult;
use crate::report::PlanReport;
use serde::Serialize;

/// The version of the event stream; bumped when a field changes meaning or goes away.
pub const FORMAT_VERSION: u32 = 1;

/// One line of the stream.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EventLine {
    /// Always 1 for this schema.
    #[schemars(extend("const" = 1))]
    pub format_version: u32,
    /// When strata emitted the event: RFC 3339, UTC, milliseconds.
    pub timestamp: String,
    /// Milliseconds since the command started.
    pub elapsed_ms: u64,
    #[serde(flatten)]
    pub event: EventKind,
}

/// What happened; `event` names the kind.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The live state of `node` was read: `done` of `total` nodes so far.
    Gathered {
        node: String,
        done: usize,
        total: usize,
    },
    /// The plan, before anything changes (the same object as `plan --format json`).
    Plan { plan: Box<PlanReport> },
    /// The plan has nothing to change.
    NoChanges {},
    /// A node enters a step of its apply; `node_elapsed_ms`: since its first step.
    Step {
        node: String,
        step: String,
        node_elapsed_ms: u64,
    },
    /// The node's changes can cut SSH access: strata confirms over a new connection.
    Confirming { node: String, window_secs: u64 },
    /// No new connection reached the node: its guard restores it by itself.
    Lost { node: String, why: String },
    /// A node's apply ended: `result` says how (the summary's per-node object).
    NodeDone(NodeDone),
    /// A step of `strata bootstrap` (`1/5` ... `5/5`).
    Bootstrap { step: String, message: String },
    /// A line for the operator (`info`) or a warning (`warn`).
    Message { level: Level, text: String },
    /// The end of the rollout: always the last line when nodes were applied.
    Summary(Summary),
    /// The command failed before a rollout summary: always the last line then.
    Error { message: String },
}

#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
}

/// How one node ended.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NodeDone {
    pub node: String,
    /// Since the node's first step; absent for a node that never started one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_elapsed_ms: Option<u64>,
    #[serde(flatten)]
    pub result: NodeResult,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Every node of the rollout, in inventory order.
    pub nodes: Vec<NodeDone>,
    pub applied: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub untouched: usize,
    pub seconds: f64,
}

impl Summary {
    pub fn new(nodes: Vec<NodeDone>, seconds: f64) -> Summary {
        let count = |f: fn(&NodeResult) -> bool| nodes.iter().filter(|n| f(&n.result)).count();
        Summary {
            applied: count(|r| matches!(r, NodeResult::Applied { .. })),
            unchanged: count(|r| matches!(r, NodeResult::Unchanged)),
            failed: count(NodeResult::is_failure),
            untouched: count(|r| matches!(r, NodeResult::Untouched)),
            nodes,
            seconds,
        }
    }
}

/// One JSON line (no newline) of an event.
pub fn line(timestamp: String, elapsed_ms: u64, event: EventKind) -> String {
    serde_json::to_string(&EventLine {
        format_version: FORMAT_VERSION,
        timestamp,
        elapsed_ms,
        event,
    })
    .expect("events serialise")
}

/// The JSON Schema of one line of the stream (schema/events.schema.json).
pub fn schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(EventLine)).expect("schema serialises")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_flat_and_tagged() {
        let l = line(
            "2026-12-03T10:00:00.000Z".into(),
            12,
            EventKind::NodeDone(NodeDone {
                node: "v1".into(),
                node_elapsed_ms: Some(5),
                result: NodeResult::Failed {
                    error: "boom".into(),
                },
            }),
        );
        assert_eq!(
            l,
            r#"{"format_version":1,"timestamp":"2026-12-03T10:00:00.000Z","elapsed_ms":12,"event":"node_done","node":"v1","node_elapsed_ms":5,"result":"failed","error":"boom"}"#
        );
        let l = line("t".into(), 0, EventKind::NoChanges {});
        assert_eq!(
            l,
            r#"{"format_version":1,"timestamp":"t","elapsed_ms":0,"event":"no_changes"}"#
        );
    }

    #[test]
    fn summary_counts_each_kind() {
        let n = |r| NodeDone {
            node: "n".into(),
            node_elapsed_ms: None,
            result: r,
        };
        let s = Summary::new(
            vec![
                n(NodeResult::Unchanged),
                n(NodeResult::Untouched),
                n(NodeResult::Failed { error: "x".into() }),
                n(NodeResult::Applied {
                    changes: 1,
                    handlers: vec![],
                    seconds: 1.0,
                }),
            ],
            2.0,
        );
        assert_eq!(
            (s.applied, s.unchanged, s.failed, s.untouched),
            (1, 1, 1, 1)
        );
    }
}
