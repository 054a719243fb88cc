//! `strata plan`: render, gather every selected node over SSH, diff, report.

use crate::cli::{Ctx, Format};
use crate::engine::{self, load::load_selected, local::runtime};
use crate::error::{Error, Result, EXIT_CHANGES, EXIT_OK};
use crate::report::{self, PlanReport};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Nodes or groups to plan (default: all).
    pub nodes: Vec<String>,
    /// Limit to these nodes or groups (repeatable, or comma separated).
    #[arg(long, value_delimiter = ',')]
    pub limit: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 2 when there are changes (0: none, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// How many nodes to gather at once.
    #[arg(long, default_value_t = 10)]
    pub parallel: usize,
    /// Save the plan (with live and desired fingerprints) for `apply --plan`.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
}

pub fn exec(a: PlanArgs, ctx: &Ctx) -> Result<i32> {
    let mut selectors = a.nodes.clone();
    selectors.extend(a.limit.iter().cloned());
    let (nodes, secrets) = load_selected(ctx.repo, ctx.inventory, &selectors)?;
    ctx.out.set_secrets(&secrets);
    let (outcomes, verdicts) = runtime()?.block_on(engine::exclusive::read_fleet(
        nodes,
        ctx.repo,
        a.parallel,
        ctx.out.clone(),
    ));
    let report = PlanReport::new(engine::node_reports(&outcomes));
    match a.format {
        Format::Text => ctx.out.out(&report::text(&report, ctx.out.style())),
        Format::Json => ctx.out.out(&format!("{}\n", report.to_json())),
        Format::Markdown => ctx.out.out(&report::markdown(&report)),
    }
    // Exclusive sets (inventory `exclusive:`): who signs, drift, and a plan that may not run.
    if a.format != Format::Json {
        for v in &verdicts {
            ctx.out
                .out(&format!("{}\n", engine::exclusive::lines(v).join("\n")));
        }
    }
    let refused: Vec<String> = verdicts.iter().flat_map(|v| v.errors.clone()).collect();
    if let Some(path) = &a.out {
        std::fs::write(path, ctx.out.redact(&report.to_json()))
            .map_err(|e| Error::local(format!("saving the plan to {}", path.display()), e))?;
        ctx.out
            .err(&format!("saved the plan to {}\n", path.display()));
    }
    if !refused.is_empty() {
        return Err(Error::Failed(refused.join("\n")));
    }
    if report.summary.failed > 0 {
        return Err(Error::Failed(format!(
            "{} node(s) could not be planned",
            report.summary.failed
        )));
    }
    Ok(if a.detailed_exitcode && report.has_changes() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
