//! What the engine tells the operator, as data: the command layer renders each event for a
//! terminal, a CI log or a machine (and redacts secrets there, in one place). Questions go
//! through the same interface, so the engine never touches a terminal itself.

use crate::error::Result;
use crate::model::NodeResult;
use crate::report::PlanReport;

#[derive(Debug, Clone)]
pub enum Event {
    /// Live state gathered from `done` of `total` nodes; `node` is the one that just finished.
    Gathered {
        done: usize,
        total: usize,
        node: String,
    },
    /// The plan, before anything changes (apply, rollback and bootstrap show it, then ask).
    Plan(Box<PlanReport>),
    /// The plan has nothing to change.
    NoChanges,
    /// A node enters a step of its apply ("taking the lock", "changes", "handlers", ...).
    Step { node: String, step: String },
    /// The node's changes can cut SSH access: strata confirms over a new connection.
    Confirming { node: String, window_secs: u64 },
    /// No new connection reached the node: its guard will restore it by itself.
    Lost { node: String, why: String },
    /// A node's apply ended.
    NodeDone { node: String, result: NodeResult },
    /// A step of `strata bootstrap` (`1/5` ... `5/5`).
    Bootstrap { step: &'static str, message: String },
    /// The end of a rollout: how every node ended, and how long it took.
    Summary {
        results: Vec<(String, NodeResult)>,
        seconds: f64,
    },
    /// A line for the operator (standard output).
    Say(String),
    /// A warning for the operator (standard error).
    Warn(String),
}

/// The one consumer of the engine's events, and the one place it asks the operator.
pub trait Ui: Send + Sync {
    fn event(&self, e: Event);
    /// Ask a yes/no question; an error when there is no one to ask (no terminal).
    fn confirm(&self, question: &str) -> Result<bool>;
}

/// A Ui that drops every event and answers yes (tests of engine logic, `--yes` paths).
pub struct Quiet;

impl Ui for Quiet {
    fn event(&self, _: Event) {}
    fn confirm(&self, _: &str) -> Result<bool> {
        Ok(true)
    }
}
