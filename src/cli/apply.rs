//! `strata apply`: plan, confirm, then change nodes in rolling batches with a health gate.

use crate::cli::Ctx;
use crate::engine::local::{git_commit, runtime, who};
use crate::engine::node_apply::Opts;
use crate::engine::rollout::{self, Rollout};
use crate::engine::{self, load::load_selected, Reach};
use crate::error::{Error, Result, EXIT_OK};
use crate::report::PlanReport;
use clap::Args;
use std::path::PathBuf;
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
    /// Keep a node whose apply failed after its first change as it is (for debugging)
    /// instead of rolling it back to its previous files, firewall and services.
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
    /// How many nodes to gather (read their live state) at once; batches are the groups' `serial`.
    #[arg(long, default_value_t = 10)]
    pub parallel: usize,
    /// Exclusive services (inventory `exclusive:`): count a member of a set that cannot be
    /// reached as NOT running the service. Without it, an unreachable member counts as
    /// active, and no node of its set gets the service started.
    #[arg(long)]
    pub unreachable_members_inactive: bool,
    /// Output: text for people, or json for machines: the engine's events as JSON lines on
    /// standard output, the summary last (schema: `strata schema events`).
    #[arg(long, value_enum, default_value_t = crate::cli::output::EventFormat::Text)]
    pub format: crate::cli::output::EventFormat,
}

pub fn exec(a: ApplyArgs, ctx: &Ctx) -> Result<i32> {
    let started = Instant::now();
    ctx.out
        .set_json_events(a.format == crate::cli::output::EventFormat::Json);
    let mut selectors = a.nodes.clone();
    selectors.extend(a.limit.iter().cloned());
    let (nodes, secrets) = load_selected(ctx.repo, ctx.inventory, &selectors)?;
    ctx.out.set_secrets(&secrets);
    let saved: Option<PlanReport> = match &a.plan {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::local(format!("reading {}", p.display()), e))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                Error::Usage(format!("{}: not a saved strata plan: {e}", p.display()))
            })?)
        }
        None => None,
    };
    let r = Rollout {
        opts: Opts {
            repo: ctx.repo.to_path_buf(),
            by: who(),
            commit: git_commit(ctx.repo),
            rollback: !a.no_rollback,
            confirm_timeout: a.confirm_timeout,
            kind: "apply".into(),
            rolled_back_from: None,
            revision: None,
        },
        yes: a.yes,
        question: "Apply these changes? Only 'yes' will be accepted",
        saved: saved.as_ref(),
        secrets: &secrets,
        started,
        unknown_is_inactive: a.unreachable_members_inactive,
    };
    runtime()?.block_on(async {
        let mut outcomes = engine::gather_all(
            nodes,
            ctx.repo,
            a.parallel,
            !a.skip_lockout_check,
            Reach::Master,
            ctx.out.clone(),
        )
        .await;
        let res = rollout::run(ctx.repo, &mut outcomes, &r, ctx.out.as_ref()).await;
        engine::close_all(&mut outcomes).await;
        res.map(|_| EXIT_OK)
    })
}
