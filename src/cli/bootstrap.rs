//! `strata bootstrap NAME`: from a fresh host (root or the provider's sudo user, by key) to a
//! converged node (see engine::bootstrap for the steps and why they are in that order).

use crate::cli::Ctx;
use crate::engine::bootstrap;
use crate::engine::load::load_selected;
use crate::error::{Result, EXIT_OK};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// The node, as added to the inventory (`strata node add`).
    pub node: String,
    /// Who strata logs in as the first time: root, or the provider's sudo user. Afterwards it
    /// uses the inventory's (deploy) user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// The host key fingerprint from the provider's console (`SHA256:...`): the key is pinned
    /// into the inventory's known_hosts only if it matches.
    #[arg(long, conflicts_with = "accept_new_host_key")]
    pub host_key: Option<String>,
    /// Trust the host key the host presents on first contact (and pin it).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Preflight: free space needed on / (MiB).
    #[arg(long, default_value_t = 2048)]
    pub min_free_mb: u64,
    /// Preflight: largest clock offset against this machine (seconds).
    #[arg(long, default_value_t = 10)]
    pub max_clock_offset: i64,
    /// The operator's public key(s) to authorize for the deploy user. Default: the inventory
    /// identity_file's `.pub`, else every key the ssh-agent holds (`ssh-add -L`).
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<std::path::PathBuf>,
    /// Do not ask before the apply.
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

pub fn exec(a: BootstrapArgs, ctx: &Ctx) -> Result<i32> {
    ctx.out
        .set_json_events(a.format == crate::cli::output::EventFormat::Json);
    let (all, secrets) = load_selected(ctx.repo, ctx.inventory, &[])?;
    ctx.out.set_secrets(&secrets);
    bootstrap::bootstrap(
        ctx.repo,
        all,
        secrets,
        bootstrap::BootstrapArgs {
            node: a.node,
            user: a.user,
            host_key: a.host_key,
            accept_new_host_key: a.accept_new_host_key,
            min_free_mb: a.min_free_mb,
            max_clock_offset: a.max_clock_offset,
            pubkey: a.pubkey,
            yes: a.yes,
            confirm_timeout: a.confirm_timeout,
        },
        ctx.out.clone(),
    )?;
    Ok(EXIT_OK)
}
