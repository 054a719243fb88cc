//! `strata rollback NODE [--to REVISION] [--list]`: put a node back to a revision it ran
//! before, from the state stored on the node (see engine::rollback).

use crate::cli::Ctx;
use crate::engine::load::load_selected;
use crate::engine::local::{runtime, who};
use crate::engine::rollback;
use crate::error::{Error, Result, EXIT_OK};
use clap::Args;
use std::fmt::Write as _;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// The node to roll back.
    pub node: String,
    /// The revision to return to (default: the one before the node's current revision).
    #[arg(long)]
    pub to: Option<String>,
    /// List the node's revisions (and which can be returned to), change nothing.
    #[arg(long, conflicts_with = "format")]
    pub list: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// As for apply: the connectivity guard's confirm window, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub confirm_timeout: u64,
    /// Output: text for people, or json for machines: the engine's events as JSON lines on
    /// standard output, the summary last (schema: `strata schema events`).
    #[arg(long, value_enum, default_value_t = crate::cli::output::EventFormat::Text)]
    pub format: crate::cli::output::EventFormat,
}

pub fn exec(a: RollbackArgs, ctx: &Ctx) -> Result<i32> {
    let started = Instant::now();
    ctx.out
        .set_json_events(a.format == crate::cli::output::EventFormat::Json);
    let (mut nodes, secrets) =
        load_selected(ctx.repo, ctx.inventory, std::slice::from_ref(&a.node))?;
    ctx.out.set_secrets(&secrets);
    nodes.retain(|d| d.node.name == a.node);
    let Some(current) = nodes.pop() else {
        return Err(Error::Usage(format!(
            "`{}` is not a node in the inventory (rollback takes one node)",
            a.node
        )));
    };
    if a.list {
        let revs = runtime()?.block_on(rollback::list(&current, ctx.repo))?;
        let mut text = format!("Revisions of {} (newest first):\n", current.node.name);
        for h in &revs.record.history {
            let mark = if h.revision == revs.record.revision {
                "current"
            } else if revs.stored.contains(&h.revision) {
                "can return to"
            } else {
                "not stored"
            };
            writeln!(text, "  {}  [{mark}]", crate::report::revision_line(h))?;
        }
        ctx.out.out(&text);
        return Ok(EXIT_OK);
    }
    runtime()?.block_on(rollback::rollback(
        ctx.repo,
        current,
        a.to.as_deref(),
        who(),
        a.yes,
        a.confirm_timeout,
        &secrets,
        started,
        ctx.out.as_ref(),
    ))?;
    Ok(EXIT_OK)
}
