//! `strata rollback NODE [--to REVISION] [--list]`: put a node back to a revision it ran
//! before, from the state stored on the node (see engine::rollback).

use crate::cli::Ctx;
use crate::engine::load::load_selected;
use crate::engine::local::{runtime, who};
use crate::engine::rollback;
use crate::error::{Error, Result, EXIT_OK};
use crate::transport::Conn;
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
    #[arg(long)]
    pub list: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// As for apply: the connectivity guard's confirm window, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub confirm_timeout: u64,
}

pub fn exec(a: RollbackArgs, ctx: &Ctx) -> Result<i32> {
    let started = Instant::now();
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
    runtime()?.block_on(async {
        let name = current.node.name.clone();
        let conn = Conn::open(&current.node, ctx.repo)
            .await
            .map_err(|e| Error::node(&name, e))?;
        let revs = match rollback::read_revisions(&conn, &current).await {
            Ok(r) => r,
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        if a.list {
            conn.close().await;
            let mut text = format!("Revisions of {name} (newest first):\n");
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
        let prepared = match rollback::prepare(&conn, current, revs, a.to.as_deref()).await {
            Ok(p) => p,
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        rollback::execute(
            ctx.repo,
            conn,
            prepared,
            who(),
            a.yes,
            a.confirm_timeout,
            &secrets,
            started,
            ctx.out.as_ref(),
        )
        .await
        .map(|_| EXIT_OK)
    })
}
