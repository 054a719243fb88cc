//! `strata apply`: plan, confirm, then change nodes in rolling batches with a health gate.

use crate::cli::plan::{load_selected, node_reports, runtime, style};
pub use crate::engine::node_apply::NodeResult;
use crate::engine::node_apply::{apply_node, needs_apply, now, Opts};
use crate::engine::{self, Gathered, Outcome};
use crate::error::{EXIT_ERROR, EXIT_OK};
use crate::report::{self, redact, PlanReport};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Nodes or groups to apply (default: all).
    pub nodes: Vec<String>,
    /// Limit to these nodes or groups (repeatable, or comma separated).
    #[arg(long, value_delimiter = ',')]
    pub limit: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Keep a node that failed its health gate as it is (for debugging) instead of rolling it
    /// back to its previous files and services.
    #[arg(long)]
    pub no_rollback: bool,
    /// Seconds a node waits, after a change that can cut SSH access (ufw, sshd), for strata
    /// to confirm over a new connection before it restores its previous state by itself.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub confirm_timeout: u64,
    /// Apply even when the plan says the firewall would not admit strata's own address
    /// (the connectivity guard still restores a node strata cannot reach again).
    #[arg(long)]
    pub skip_lockout_check: bool,
    /// Apply a plan saved by `plan -o`; refused if any node changed since.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub parallel: usize,
}

pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(|| {
            let out = std::process::Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|u| !u.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// The repo's git commit (with `-dirty` if the work tree has changes), if it is a git repo.
pub fn git_commit(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()?;
    if !dirty.stdout.is_empty() {
        c.push_str("-dirty");
    }
    Some(c)
}

/// Ask on the terminal; without one, refuse (use --yes).
pub fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("refusing to apply without confirmation: no terminal to ask on (use --yes)");
    }
    eprint!("Apply these changes? Only 'yes' will be accepted: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Group nodes with changes into rolling batches: a batch never holds more nodes than the
/// smallest `serial` of the nodes in it.
pub fn batches(serials: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cap = usize::MAX;
    for (i, &s) in serials.iter().enumerate() {
        let s = s.max(1);
        if !cur.is_empty() && (cur.len() + 1 > cap.min(s)) {
            out.push(std::mem::take(&mut cur));
            cap = usize::MAX;
        }
        cap = cap.min(s);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub fn apply(repo: &Path, inventory: Option<&Path>, args: ApplyArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let mut selectors = args.nodes.clone();
    selectors.extend(args.limit.iter().cloned());
    let Some((nodes, secrets)) = load_selected(repo, inventory, &selectors)? else {
        return Ok(EXIT_ERROR);
    };
    let saved: Option<PlanReport> = match &args.plan {
        Some(p) => Some(
            serde_json::from_str(&std::fs::read_to_string(p)?)
                .map_err(|e| anyhow::anyhow!("{}: not a saved strata plan: {e}", p.display()))?,
        ),
        None => None,
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let progress = std::io::stderr().is_terminal();
        let mut outcomes = engine::gather_all(
            nodes,
            repo,
            args.parallel,
            progress,
            !args.skip_lockout_check,
        )
        .await;
        let report = PlanReport::new(node_reports(&outcomes));
        print!("{}", report::text(&report, style(), &secrets));
        let code = run_apply(
            repo,
            &mut outcomes,
            &report,
            saved.as_ref(),
            &args,
            &secrets,
            started,
        )
        .await;
        engine::close_all(&mut outcomes).await;
        code
    })
}

async fn run_apply(
    repo: &Path,
    outcomes: &mut [Outcome],
    report: &PlanReport,
    saved: Option<&PlanReport>,
    args: &ApplyArgs,
    secrets: &[String],
    started: Instant,
) -> anyhow::Result<i32> {
    if report.summary.failed > 0 {
        eprintln!(
            "error: {} node(s) could not be planned; nothing was applied",
            report.summary.failed
        );
        return Ok(EXIT_ERROR);
    }
    if let Some(saved) = saved {
        let stale = stale_nodes(saved, report);
        if !stale.is_empty() {
            eprintln!("error: the saved plan is stale, nothing was applied:");
            for s in &stale {
                eprintln!("  {s}");
            }
            eprintln!("run `strata plan -o FILE` again and review it");
            return Ok(EXIT_ERROR);
        }
    }
    let todo: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Planned(g) if needs_apply(g) => Some(i),
            _ => None,
        })
        .collect();
    if !report.has_changes() {
        println!("No changes. The fleet matches the configuration.");
        // Still record nodes that were never recorded at this configuration.
        if todo.is_empty() {
            return Ok(EXIT_OK);
        }
    } else if !args.yes && !confirm()? {
        eprintln!("Apply cancelled.");
        return Ok(EXIT_ERROR);
    }

    let opts = Opts {
        repo: repo.to_path_buf(),
        by: who(),
        commit: git_commit(repo),
        rollback: !args.no_rollback,
        confirm_timeout: args.confirm_timeout,
        kind: "apply".into(),
        rolled_back_from: None,
        revision: None,
    };
    let serials: Vec<usize> = todo
        .iter()
        .map(|&i| match &outcomes[i] {
            Outcome::Planned(g) => g.desired.serial,
            Outcome::Failed { .. } => 1,
        })
        .collect();
    let mut results: Vec<(String, NodeResult)> = outcomes
        .iter()
        .map(|o| (o.name().to_string(), NodeResult::Unchanged))
        .collect();
    for &i in &todo {
        results[i].1 = NodeResult::Untouched;
    }
    let mut failed = false;
    for batch in batches(&serials) {
        let idx: Vec<usize> = batch.iter().map(|&b| todo[b]).collect();
        let mut futs = Vec::new();
        // Borrow each gathered node of the batch mutably, in parallel.
        let mut refs: Vec<(usize, &mut Gathered)> = Vec::new();
        for (i, o) in outcomes.iter_mut().enumerate() {
            if idx.contains(&i) {
                if let Outcome::Planned(g) = o {
                    refs.push((i, g));
                }
            }
        }
        for (i, g) in refs {
            let opts = &opts;
            futs.push(async move { (i, apply_node(g, opts).await) });
        }
        for (i, r) in futures_join_all(futs).await {
            if r.is_failure() {
                failed = true;
            }
            results[i].1 = r;
        }
        if failed {
            break;
        }
    }
    print_summary(&results, secrets, started);
    audit(repo, &results, opts.commit.as_deref(), &opts.by, secrets);
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
}

/// Run futures concurrently (a batch is small: at most `serial` nodes).
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}

fn stale_nodes(saved: &PlanReport, now: &PlanReport) -> Vec<String> {
    let mut out = Vec::new();
    for n in &now.nodes {
        match saved.nodes.iter().find(|s| s.node == n.node) {
            None => out.push(format!("{}: not in the saved plan", n.node)),
            Some(s) => {
                if s.desired_fingerprint != n.desired_fingerprint {
                    out.push(format!(
                        "{}: the configuration changed since the plan was saved",
                        n.node
                    ));
                }
                if s.live_fingerprint != n.live_fingerprint {
                    out.push(format!(
                        "{}: the node changed since the plan was saved",
                        n.node
                    ));
                }
            }
        }
    }
    out
}

pub fn print_summary(results: &[(String, NodeResult)], secrets: &[String], started: Instant) {
    let st = style();
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
        "Apply: {done} applied, {failed} failed, {untouched} untouched, in {:.1}s.\n",
        started.elapsed().as_secs_f64()
    ));
    print!("{}", redact(&text, secrets));
}

/// Append one JSON line per node to `.strata/audit.jsonl` in the repo.
pub fn audit(
    repo: &Path,
    results: &[(String, NodeResult)],
    commit: Option<&str>,
    by: &str,
    secrets: &[String],
) {
    let dir = repo.join(".strata");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("audit.jsonl"))
    else {
        return;
    };
    for (node, r) in results {
        let line = serde_json::json!({"at": now(), "by": by, "commit": commit, "node": node, "outcome": r});
        let _ = writeln!(f, "{}", redact(&line.to_string(), secrets));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_serial() {
        assert_eq!(batches(&[1, 1, 1]), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(batches(&[2, 2, 2]), vec![vec![0, 1], vec![2]]);
        assert_eq!(batches(&[3, 1, 3]), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(batches(&[]), Vec::<Vec<usize>>::new());
    }
}
