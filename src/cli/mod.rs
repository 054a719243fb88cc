//! The command line: one file per command (its clap args and a short `exec`); the only layer
//! that prints or prompts, through the one output sink (`output`). Errors are printed once,
//! here, and become the exit code.

pub mod apply;
pub mod bootstrap;
pub mod check;
pub mod completions;
pub mod failover;
pub mod import;
pub mod log;
pub mod node;
pub mod output;
pub mod plan;
pub mod probe_script;
pub mod render;
pub mod rollback;
pub mod secrets;
pub mod ssh;
pub mod status;
pub mod vars;

use crate::error::{Result, EXIT_OK};
use clap::{Parser, Subcommand, ValueEnum};
use output::Output;
use std::path::{Path, PathBuf};

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
    /// Colour: auto (on a terminal, unless NO_COLOR is set and not empty), always, never.
    #[arg(long, global = true, value_enum, default_value_t = output::ColorChoice::Auto)]
    pub color: output::ColorChoice,
    /// Plans show a new file as one line (mode, owner, line count); `full` prints its content
    /// too. Changed files always show their unified diff; JSON always carries every diff.
    #[arg(long, global = true, value_enum, default_value_t = DiffMode::Short)]
    pub diff: DiffMode,
    /// Log to standard error: -v each node's steps with their times, -vv also every round
    /// trip (script and reply sizes) and ssh's own log. Redacted like all output.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text or as JSON objects, one per line (timestamp, level, node, step,
    /// elapsed_ms, message); json also wraps strata's other standard-error lines.
    #[arg(long, global = true, value_enum, default_value_t = log::LogFormat::Text)]
    pub log_format: log::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load, resolve and render every node; report every problem found.
    Check(check::CheckArgs),
    /// Render nodes' desired state: list resources with digests, or write files to --out.
    Render(render::RenderArgs),
    /// Show a node's merged vars, each with its origin.
    Vars(vars::VarsArgs),
    /// List every secret the config needs (env vars, secret files), where the repo uses it
    /// and whether it is available here; never prints a value.
    Secrets(secrets::SecretsArgs),
    /// Show what apply would change on each node (gathers live state over SSH).
    Plan(plan::PlanArgs),
    /// Plan, confirm, then apply in rolling batches with health gates.
    Apply(apply::ApplyArgs),
    /// Return a node to a revision it ran before (default: the previous one), from the
    /// state stored on the node; shows the plan and asks, like apply.
    Rollback(rollback::RollbackArgs),
    /// Take a fresh host (root or the provider's sudo user, by key) to a converged node:
    /// pin its host key, preflight, deploy user + sudo + sshd hardening, root login off, apply.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Move an exclusive service (inventory `exclusive:`) to the node the config now names
    /// active: stop and verify on the old node, then start behind the health gate.
    Failover(failover::FailoverArgs),
    /// The fleet at a glance: revision, repo moved, drifted, reachable.
    Status(status::StatusArgs),
    /// Print the probe script strata sends to a node (what `plan` runs there, read-only).
    #[command(hide = true)]
    ProbeScript(probe_script::ProbeScriptArgs),
    /// Write a strata repo from another tool's inventory (offline): `import ansible INVENTORY`.
    #[command(subcommand)]
    Import(import::ImportCmd),
    /// Add a node to the fleet: inventory entry and nodes/NAME/vars.yaml (offline).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Print a shell completion script: `source <(strata completions bash)`.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff): `strata man > strata.1`.
    Man,
    /// Print the JSON Schema of a JSON output: `plan`, `status`, or `events` (one line of
    /// `apply --format json`, and of rollback's and bootstrap's).
    Schema(SchemaArgs),
    /// Kept SSH connections (`ssh.persist`).
    #[command(subcommand)]
    Ssh(ssh::SshCmd),
}

#[derive(clap::Args, Debug, Clone)]
pub struct SchemaArgs {
    /// Which output.
    #[arg(value_enum)]
    pub output: SchemaOf,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SchemaOf {
    Plan,
    Status,
    Events,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DiffMode {
    Short,
    Full,
}

/// Output formats of the commands that report on the fleet.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// GitHub-flavoured markdown, for a CI job summary or a PR comment.
    Markdown,
}

/// What every command gets: where the repo is, which inventory, and the output sink.
pub struct Ctx<'a> {
    pub repo: &'a Path,
    pub inventory: Option<&'a Path>,
    pub out: std::sync::Arc<Output>,
}

/// Entry point for the binary: returns the process exit code.
pub fn main() -> i32 {
    // Usage errors exit 1 like every other error (clap's own exit code, 2, is what
    // `--detailed-exitcode` means by "changes pending"); help and version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_exit(&e),
    };
    let out = std::sync::Arc::new(Output::new(cli.color));
    out.set_full_diff(cli.diff == DiffMode::Full);
    out.set_log(cli.verbose, cli.log_format == log::LogFormat::Json);
    log::install(out.clone(), cli.verbose, cli.log_format);
    let notice = out.clone();
    crate::interrupt::install(move || {
        notice.err(
            "\ninterrupted: no new node will start; the running nodes finish (or roll back), then the summary.\n\
             Press Ctrl-C again to stop now (a node's connectivity guard still undoes a half-done firewall or sshd change).\n",
        )
    });
    let ctx = Ctx {
        repo: &cli.repo,
        inventory: cli.inventory.as_deref(),
        out: out.clone(),
    };
    let res = run(cli.command, &ctx);
    if let Err(e) = &res {
        out.error(e);
    }
    // `--format json`: the summary (or the error) is the stream's last line.
    out.finish(res.as_ref().err());
    match res {
        Ok(code) => code,
        Err(e) => e.exit_code(),
    }
}

/// Print clap's message (help and version on stdout, errors on stderr) and give the exit
/// code: 0 for `--help` and `--version`, 1 for every usage error.
fn usage_exit(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_OK,
        _ => crate::error::EXIT_ERROR,
    }
}

/// Run one command; Ok is its exit code (0, or 2 for changes with --detailed-exitcode).
pub fn run(cmd: Command, ctx: &Ctx) -> Result<i32> {
    match cmd {
        Command::Check(a) => {
            secrets::maybe_placeholders(&a.secrets.clone(), ctx, || check::exec(a, ctx))
        }
        Command::Render(a) => {
            secrets::maybe_placeholders(&a.secrets.clone(), ctx, || render::exec(a, ctx))
        }
        Command::Vars(a) => {
            secrets::maybe_placeholders(&a.secrets.clone(), ctx, || vars::exec(a, ctx))
        }
        Command::Secrets(a) => secrets::exec(a, ctx),
        Command::Plan(a) => plan::exec(a, ctx),
        Command::Apply(a) => apply::exec(a, ctx),
        Command::Rollback(a) => rollback::exec(a, ctx),
        Command::Bootstrap(a) => bootstrap::exec(a, ctx),
        Command::Status(a) => status::exec(a, ctx),
        Command::Failover(a) => failover::exec(a, ctx),
        Command::ProbeScript(a) => probe_script::exec(a, ctx),
        Command::Node(node::NodeCmd::Add(a)) => node::exec_add(a, ctx).map(|()| EXIT_OK),
        Command::Import(c) => import::exec(c, ctx),
        Command::Completions(a) => completions::exec(a, ctx),
        Command::Man => completions::man(ctx),
        Command::Ssh(c) => ssh::exec(c, ctx),
        Command::Schema(a) => {
            ctx.out.out(&match a.output {
                SchemaOf::Plan => crate::report::plan_schema(),
                SchemaOf::Status => crate::report::status_schema(),
                SchemaOf::Events => crate::report::events::schema(),
            });
            Ok(EXIT_OK)
        }
    }
}
