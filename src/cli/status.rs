//! `strata status`: the fleet at a glance. One round trip per node (the same probe as plan):
//! the revision each node runs, whether the repo moved past it, whether it drifted.

use crate::cli::{Ctx, Format};
use crate::engine::{self, load::load_selected, local::runtime};
use crate::error::{Error, Result, EXIT_CHANGES, EXIT_OK};
use crate::report::status;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Nodes or groups (default: all).
    pub nodes: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 2 when any node drifted or has pending changes.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// How many nodes to read at once.
    #[arg(long, default_value_t = 10)]
    pub parallel: usize,
}

pub fn exec(a: StatusArgs, ctx: &Ctx) -> Result<i32> {
    let (nodes, secrets) = load_selected(ctx.repo, ctx.inventory, &a.nodes)?;
    ctx.out.set_secrets(&secrets);
    let (outcomes, verdicts) = runtime()?.block_on(engine::exclusive::read_fleet(
        nodes,
        ctx.repo,
        a.parallel,
        ctx.out.clone(),
    ));
    let rows = status::rows(engine::node_reports(&outcomes));
    let drifted = verdicts.iter().any(|v| !v.drift.is_empty());
    let unreachable = rows.iter().filter(|r| !r.reachable).count();
    let moved = rows.iter().any(|r| r.changes > 0) || drifted;
    match a.format {
        Format::Json => ctx.out.out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&status::StatusReport::new(rows))
                .expect("status serialises")
        )),
        Format::Markdown => ctx.out.out(&status::markdown(&rows)),
        Format::Text => ctx.out.out(&status::table(&rows)),
    }
    if a.format != Format::Json {
        for v in &verdicts {
            ctx.out
                .out(&format!("{}\n", engine::exclusive::lines(v).join("\n")));
        }
    }
    if unreachable > 0 {
        return Err(Error::Failed(format!("{unreachable} node(s) unreachable")));
    }
    Ok(if a.detailed_exitcode && moved {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
