//! `strata plan`: render, gather every selected node over SSH, diff, report.

use crate::cli::offline::load_and_render;
use crate::engine::{self, Outcome};
use crate::error::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK};
use crate::report::{self, Counts, NodeReport, PlanReport, Style};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// GitHub-flavoured markdown, for a CI job summary or a PR comment.
    Markdown,
}

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

pub fn style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Build the report for gathered outcomes.
pub fn node_reports(outcomes: &[Outcome]) -> Vec<NodeReport> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Planned(g) => NodeReport {
                node: g.desired.node.name.clone(),
                address: g.desired.node.address.clone(),
                status: "planned".into(),
                error: None,
                summary: Counts::of(&g.plan),
                drifted: crate::plan::drift::counts(&g.plan).0,
                pending: crate::plan::drift::counts(&g.plan).1,
                last_applied: crate::model::Record::parse(g.live.record.as_deref())
                    .map(|r| report::LastApplied::from_record(&r, &g.desired.fingerprint())),
                changes: g.plan.changes.clone(),
                warnings: g.plan.warnings.clone(),
                handlers: g.plan.handlers(),
                live_fingerprint: Some(g.live.fingerprint()),
                desired_fingerprint: g.desired.fingerprint(),
            },
            Outcome::Failed { desired, error } => NodeReport {
                node: desired.node.name.clone(),
                address: desired.node.address.clone(),
                status: "failed".into(),
                error: Some(error.clone()),
                summary: Counts::default(),
                drifted: 0,
                pending: 0,
                last_applied: None,
                changes: vec![],
                warnings: vec![],
                handlers: vec![],
                live_fingerprint: None,
                desired_fingerprint: desired.fingerprint(),
            },
        })
        .collect()
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Load, render and select the nodes of a command that goes to the fleet, with the secrets
/// to redact. None: the config is broken (the problems were printed).
pub fn load_selected(
    repo: &Path,
    inventory: Option<&Path>,
    selectors: &[String],
) -> anyhow::Result<Option<(Vec<crate::model::DesiredState>, Vec<String>)>> {
    let (_, rendered) = match load_and_render(repo, inventory) {
        Ok(v) => v,
        Err(d) => {
            eprintln!("{d}");
            return Ok(None);
        }
    };
    let nodes = engine::select(rendered.nodes, selectors).map_err(anyhow::Error::msg)?;
    Ok(Some((nodes, rendered.secrets)))
}

pub fn plan(repo: &Path, inventory: Option<&Path>, args: PlanArgs) -> anyhow::Result<i32> {
    let mut selectors = args.nodes.clone();
    selectors.extend(args.limit.iter().cloned());
    let Some((nodes, secrets)) = load_selected(repo, inventory, &selectors)? else {
        return Ok(EXIT_ERROR);
    };
    let progress = std::io::stderr().is_terminal();
    let rt = runtime()?;
    let outcomes = rt.block_on(async {
        let mut outcomes = engine::gather_all(nodes, repo, args.parallel, progress, true).await;
        engine::close_all(&mut outcomes).await;
        outcomes
    });
    let report = PlanReport::new(node_reports(&outcomes));
    match args.format {
        Format::Text => print!("{}", report::text(&report, style(), &secrets)),
        Format::Json => println!("{}", report.to_json(&secrets)),
        Format::Markdown => print!("{}", report::markdown(&report, &secrets)),
    }
    if let Some(out) = &args.out {
        std::fs::write(out, report.to_json(&secrets))?;
        eprintln!("saved the plan to {}", out.display());
    }
    Ok(if report.summary.failed > 0 {
        EXIT_ERROR
    } else if args.detailed_exitcode && report.has_changes() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
