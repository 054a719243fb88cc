//! The end of a rollout, for people: one line per node, then the totals.

use crate::model::NodeResult;
use crate::report::Style;

/// How one node ended, for people: `NAME: applied 3 changes in 4.2s, healthy`, `NAME: FAILED,
/// rolled back: ...` (a second, indented line says how it was left). The summary's lines, and
/// the line a terminal or a CI log shows as each node ends.
pub fn node_line(name: &str, r: &NodeResult, st: Style) -> String {
    match r {
        NodeResult::Applied {
            changes,
            handlers,
            seconds,
        } => st.green(&format!(
            "{name}: applied {changes} changes{} in {seconds:.1}s, healthy",
            if handlers.is_empty() {
                String::new()
            } else {
                format!(", ran {}", handlers.join(", "))
            }
        )),
        NodeResult::Unchanged => format!("{name}: no changes"),
        NodeResult::Failed { error } => st.red(&format!("{name}: FAILED: {error}")),
        NodeResult::RolledBack {
            error,
            healthy,
            detail,
        } => {
            let line = format!("{name}: FAILED, rolled back: {error}\n    rollback: {detail}");
            if *healthy {
                st.yellow(&line)
            } else {
                st.red(&line)
            }
        }
        NodeResult::RollbackFailed { error, why } => st.red(&format!(
            "{name}: FAILED, rollback failed: {error}\n    rollback: {why}"
        )),
        NodeResult::Lost {
            error,
            restored,
            detail,
        } => {
            let line = format!("{name}: FAILED, lost: {error}\n    guard: {detail}");
            if *restored {
                st.yellow(&line)
            } else {
                st.red(&line)
            }
        }
        NodeResult::Untouched => st.yellow(&format!("{name}: untouched (rollout stopped)")),
    }
}

/// The summary of a rollout.
pub fn summary(results: &[(String, NodeResult)], seconds: f64, st: Style) -> String {
    let mut text = String::from("\nApply summary:\n");
    let (mut done, mut failed, mut untouched) = (0, 0, 0);
    for (name, r) in results {
        match r {
            NodeResult::Applied { .. } => done += 1,
            NodeResult::Untouched => untouched += 1,
            r if r.is_failure() => failed += 1,
            _ => {}
        }
        text.push_str("  ");
        text.push_str(&node_line(name, r, st));
        text.push('\n');
    }
    text.push_str(&format!(
        "Apply: {done} applied, {failed} failed, {untouched} untouched, in {seconds:.1}s.\n"
    ));
    text
}
