//! The end of a rollout, for people: one line per node, then the totals.

use crate::model::NodeResult;
use crate::report::Style;

/// The summary of a rollout.
pub fn summary(results: &[(String, NodeResult)], seconds: f64, st: Style) -> String {
    let mut text = String::from("\nApply summary:\n");
    let (mut done, mut failed, mut untouched) = (0, 0, 0);
    for (name, r) in results {
        let line = match r {
            NodeResult::Applied {
                changes,
                handlers,
                seconds,
            } => {
                done += 1;
                st.green(&format!(
                    "  {name}: applied {changes} changes{} in {seconds:.1}s, healthy",
                    if handlers.is_empty() {
                        String::new()
                    } else {
                        format!(", ran {}", handlers.join(", "))
                    }
                ))
            }
            NodeResult::Unchanged => format!("  {name}: no changes"),
            NodeResult::Failed { error } => {
                failed += 1;
                st.red(&format!("  {name}: FAILED: {error}"))
            }
            NodeResult::RolledBack {
                error,
                healthy,
                detail,
            } => {
                failed += 1;
                let line =
                    format!("  {name}: FAILED, rolled back: {error}\n    rollback: {detail}");
                if *healthy {
                    st.yellow(&line)
                } else {
                    st.red(&line)
                }
            }
            NodeResult::RollbackFailed { error, why } => {
                failed += 1;
                st.red(&format!(
                    "  {name}: FAILED, rollback failed: {error}\n    rollback: {why}"
                ))
            }
            NodeResult::Lost {
                error,
                restored,
                detail,
            } => {
                failed += 1;
                let line = format!("  {name}: FAILED, lost: {error}\n    guard: {detail}");
                if *restored {
                    st.yellow(&line)
                } else {
                    st.red(&line)
                }
            }
            NodeResult::Untouched => {
                untouched += 1;
                st.yellow(&format!("  {name}: untouched (rollout stopped)"))
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&format!(
        "Apply: {done} applied, {failed} failed, {untouched} untouched, in {seconds:.1}s.\n"
    ));
    text
}
