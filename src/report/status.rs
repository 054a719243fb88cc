//! The fleet at a glance (`strata status`): one row per node, as a table or markdown.

use crate::report::{short_commit, utc, LastApplied, NodeReport};
use serde::Serialize;

/// `status --format json`: versioned like the plan; `format_version` changes only when a
/// field is removed or changes meaning (new fields may appear in any version).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StatusReport {
    pub format_version: u32,
    pub nodes: Vec<NodeStatus>,
}

impl StatusReport {
    pub fn new(nodes: Vec<NodeStatus>) -> StatusReport {
        StatusReport {
            format_version: 1,
            nodes,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NodeStatus {
    pub node: String,
    pub address: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// None: never applied by strata.
    pub last_applied: Option<LastApplied>,
    /// Changes the node needs, and how many of them are drift (hand edits) or pending.
    pub changes: usize,
    pub drifted: usize,
    pub pending: usize,
}

/// One status row per node of a plan.
pub fn rows(reports: Vec<NodeReport>) -> Vec<NodeStatus> {
    reports
        .into_iter()
        .map(|n| NodeStatus {
            reachable: n.error.is_none(),
            changes: n.summary.total(),
            node: n.node,
            address: n.address,
            error: n.error,
            last_applied: n.last_applied,
            drifted: n.drifted,
            pending: n.pending,
        })
        .collect()
}

/// Header and one row of cells per node.
fn cells(rows: &[NodeStatus]) -> Vec<Vec<String>> {
    let mut lines = vec![["NODE", "ADDRESS", "REVISION", "REPO", "NODE STATE"]
        .map(String::from)
        .to_vec()];
    for r in rows {
        let (revision, repo, state) = if let Some(e) = &r.error {
            ("-".to_string(), "-".to_string(), {
                // The transport's own words already say `unreachable: ...`.
                let first = e.lines().next().unwrap_or("");
                if first.starts_with("unreachable: ") {
                    first.to_string()
                } else {
                    format!("unreachable: {first}")
                }
            })
        } else {
            match &r.last_applied {
                None => (
                    "never applied by strata".to_string(),
                    "-".to_string(),
                    format!("{} changes to apply", r.changes),
                ),
                Some(l) => (
                    format!(
                        "{}{} {} by {}",
                        l.commit
                            .as_deref()
                            .map(short_commit)
                            .unwrap_or_else(|| "no-commit".into()),
                        match &l.rolled_back_from {
                            Some(from) => {
                                format!(" (rolled back to {} from {from})", l.revision)
                            }
                            None => String::new(),
                        },
                        utc(l.applied_at),
                        l.applied_by
                    ),
                    if l.repo_moved {
                        format!("moved ({} pending)", r.pending)
                    } else {
                        "current".into()
                    },
                    if r.drifted > 0 {
                        format!("drifted ({} changes)", r.drifted)
                    } else {
                        "as applied".into()
                    },
                ),
            }
        };
        lines.push(vec![
            r.node.clone(),
            r.address.clone(),
            revision,
            repo,
            state,
        ]);
    }
    lines
}

pub fn table(rows: &[NodeStatus]) -> String {
    let lines = cells(rows);
    let widths: Vec<usize> = (0..5)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in lines {
        let row: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 4 {
                    c.clone()
                } else {
                    format!("{c:w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(row.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The status table as markdown (a CI job summary).
pub fn markdown(rows: &[NodeStatus]) -> String {
    let mut out = String::from("### strata status\n\n");
    for (i, row) in cells(rows).iter().enumerate() {
        out.push_str(&format!(
            "| {} |\n",
            row.iter()
                .map(|c| c.replace('|', "/"))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        if i == 0 {
            out.push_str(&format!("|{}\n", "---|".repeat(row.len())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_node_is_said_unreachable_once() {
        let row = |error: &str| NodeStatus {
            node: "v-1".into(),
            address: "10.0.0.1".into(),
            reachable: false,
            error: Some(error.into()),
            last_applied: None,
            changes: 0,
            drifted: 0,
            pending: 0,
        };
        let c = cells(&[
            row("unreachable: ssh: connect to host 10.0.0.1 port 22: Connection refused"),
            row("the probe said nothing\nsecond line"),
        ]);
        assert_eq!(
            c[1][4],
            "unreachable: ssh: connect to host 10.0.0.1 port 22: Connection refused"
        );
        assert_eq!(c[2][4], "unreachable: the probe said nothing");
    }
}
