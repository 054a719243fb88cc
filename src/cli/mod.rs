//! Command line: parse arguments, run a command, print errors once, return the exit code.

pub mod apply;
pub mod bootstrap;
pub mod node;
pub mod offline;
pub mod plan;
pub mod rollback;
pub mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Declarative reconciler for validator hosts"
)]
pub struct Cli {
    /// The infra repository (inventory/, base-config/, nodes/, modules/).
    #[arg(long, global = true, default_value = ".")]
    pub repo: PathBuf,
    /// Inventory file, relative to --repo (default: inventory/hosts.yaml).
    #[arg(long, global = true)]
    pub inventory: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load, resolve and render every node; report every problem found.
    Check {
        /// Also run every rendered file's `validate` command here, on this machine
        /// (promtool, amtool, ...): exit 1 if one fails; a missing tool is listed as not checked.
        #[arg(long)]
        validate: bool,
        /// `markdown` for a CI job summary (json is not offered for check).
        #[arg(long, value_enum, default_value_t = crate::cli::plan::Format::Text)]
        format: crate::cli::plan::Format,
    },
    /// Render nodes' desired state: list resources with digests, or write files to --out.
    Render {
        nodes: Vec<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a node's merged vars, each with its origin.
    Vars { node: String },
    /// Show what apply would change on each node (gathers live state over SSH).
    Plan(crate::cli::plan::PlanArgs),
    /// Plan, confirm, then apply in rolling batches with health gates.
    Apply(crate::cli::apply::ApplyArgs),
    /// Return a node to a revision it ran before (default: the previous one), from the
    /// state stored on the node; shows the plan and asks, like apply.
    Rollback(crate::cli::rollback::RollbackArgs),
    /// Take a fresh host (root or the provider's sudo user, by key) to a converged node:
    /// pin its host key, preflight, deploy user + sudo + sshd hardening, root login off, apply.
    Bootstrap(crate::cli::bootstrap::BootstrapArgs),
    /// The fleet at a glance: revision, repo moved, drifted, reachable.
    Status(crate::cli::status::StatusArgs),
    /// Print the probe script strata sends to a node (what `plan` runs there, read-only).
    #[command(hide = true)]
    ProbeScript { node: String },
    /// Add a node to the fleet: inventory entry and nodes/NAME/vars.yaml (offline).
    #[command(subcommand)]
    Node(NodeCmd),
}

#[derive(Subcommand, Debug, Clone)]
pub enum NodeCmd {
    /// Add a host to the inventory and write nodes/NAME/vars.yaml (connects nowhere).
    ///
    /// The host is inserted as text after the last entry under `hosts:`, in the file's own
    /// indentation, so every comment, blank line and key order is kept. nodes/NAME/vars.yaml
    /// gets the overrides a new validator typically needs (P2P port, memory cap, chrony
    /// sources for the region, ...), each commented out, so `strata check` passes right after.
    ///
    /// Every precondition is checked before anything is written: NAME and ADDRESS not used
    /// yet, the groups defined, no nodes/NAME yet (an existing one is never overwritten), an
    /// inventory layout it can edit (a block mapping `hosts:`; a flow mapping, tabs, anchors
    /// or merge keys are refused). After writing, the repo is loaded again; if the host does
    /// not read back exactly as given, the inventory's old bytes are restored.
    Add(crate::cli::node::NodeAddArgs),
}

/// Entry point for the binary: returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            crate::error::EXIT_ERROR
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let inv = cli.inventory.as_deref();
    match cli.command {
        Command::Check { validate, format } => {
            if format == crate::cli::plan::Format::Json {
                anyhow::bail!("check has no JSON output: use --format text or markdown");
            }
            Ok(offline::check(
                &cli.repo,
                inv,
                validate,
                format == crate::cli::plan::Format::Markdown,
            ))
        }
        Command::Render { nodes, out } => offline::render(&cli.repo, inv, &nodes, out.as_deref()),
        Command::Vars { node } => offline::vars(&cli.repo, inv, &node),
        Command::Plan(args) => crate::cli::plan::plan(&cli.repo, inv, args),
        Command::Apply(args) => crate::cli::apply::apply(&cli.repo, inv, args),
        Command::ProbeScript { node } => offline::probe_script(&cli.repo, inv, &node),
        Command::Rollback(args) => crate::cli::rollback::rollback(&cli.repo, inv, args),
        Command::Bootstrap(args) => crate::cli::bootstrap::bootstrap(&cli.repo, inv, args),
        Command::Status(args) => crate::cli::status::status(&cli.repo, inv, args),
        Command::Node(NodeCmd::Add(args)) => crate::cli::node::add(&cli.repo, inv, args),
    }
}
