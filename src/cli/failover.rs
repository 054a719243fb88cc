//! `strata failover SET --to NODE`: move an exclusive service to NODE (see engine::failover).
//! The config must already name NODE active: the reviewed one-line change comes first.

use crate::cli::Ctx;
use crate::engine::failover::{self, Request};
use crate::engine::load::load_and_render;
use crate::engine::local::{git_commit, runtime, who};
use crate::engine::node_apply::Opts;
use crate::error::{Result, EXIT_OK};
use clap::Args;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct FailoverArgs {
    /// The exclusive set (inventory `exclusive:`).
    pub set: String,
    /// The node that takes over; the config must already name it `active`.
    #[arg(long)]
    pub to: String,
    /// Confirm that every member strata cannot reach is fenced (powered off, or cut off
    /// from the network) and does not run the service. Its fence hook, if any, runs first.
    #[arg(long)]
    pub old_node_is_down: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// As for apply: the connectivity guard's confirm window, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub confirm_timeout: u64,
}

pub fn exec(a: FailoverArgs, ctx: &Ctx) -> Result<i32> {
    let started = Instant::now();
    let (repo, rendered) = load_and_render(ctx.repo, ctx.inventory)?;
    ctx.out.set_secrets(&rendered.secrets);
    let req = Request {
        set: a.set,
        to: a.to,
        old_node_is_down: a.old_node_is_down,
        yes: a.yes,
        opts: Opts {
            repo: ctx.repo.to_path_buf(),
            by: who(),
            commit: git_commit(ctx.repo),
            rollback: true,
            confirm_timeout: a.confirm_timeout,
            kind: "failover".into(),
            rolled_back_from: None,
            revision: None,
        },
        inventory_file: repo.inventory_file.clone(),
        secrets: rendered.secrets.clone(),
        started,
    };
    runtime()?
        .block_on(failover::run(rendered.nodes, &req, ctx.out.as_ref()))
        .map(|()| EXIT_OK)
}
