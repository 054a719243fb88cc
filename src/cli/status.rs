//! `strata status`: the fleet at a glance. One round trip per node (the same probe as plan):
//! the revision each node runs, whether the repo moved past it, whether it drifted.

use crate::cli::plan::{load_selected, node_reports, runtime, Format};
use crate::engine;
use crate::error::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK};
use crate::report::{redact, short_commit, utc, LastApplied};
use clap::Args;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::Path;

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Nodes or groups (default: all).
    pub nodes: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 2 when any node drifted or has pending changes.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[arg(long, default_value_t = 10)]
    pub parallel: usize,
}

#[derive(Debug, Serialize)]
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

pub fn status(repo: &Path, inventory: Option<&Path>, args: StatusArgs) -> anyhow::Result<i32> {
    let Some((nodes, secrets)) = load_selected(repo, inventory, &args.nodes)? else {
        return Ok(EXIT_ERROR);
    };
    let rt = runtime()?;
    let outcomes = rt.block_on(async {
        let progress = std::io::stderr().is_terminal();
        let mut o = engine::gather_all(nodes, repo, args.parallel, progress, true).await;
        engine::close_all(&mut o).await;
        o
    });
    let rows: Vec<NodeStatus> = node_reports(&outcomes)
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
        .collect();
    match args.format {
        Format::Json => println!(
            "{}",
            redact(&serde_json::to_string_pretty(&rows)?, &secrets)
        ),
        Format::Markdown => print!("{}", redact(&markdown(&rows), &secrets)),
        Format::Text => print!("{}", redact(&table(&rows), &secrets)),
    }
    let unreachable = rows.iter().any(|r| !r.reachable);
    let moved = rows.iter().any(|r| r.changes > 0);
    Ok(if unreachable {
        EXIT_ERROR
    } else if args.detailed_exitcode && moved {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}

/// Header and one row of cells per node.
fn cells(rows: &[NodeStatus]) -> Vec<Vec<String>> {
    let mut lines = vec![["NODE", "ADDRESS", "REVISION", "REPO", "NODE STATE"]
        .map(String::from)
        .to_vec()];
    for r in rows {
        let (revision, repo, state) = if let Some(e) = &r.error {
            (
                "-".to_string(),
                "-".to_string(),
                format!("unreachable: {}", e.lines().next().unwrap_or("")),
            )
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
