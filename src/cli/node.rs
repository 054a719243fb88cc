//! `strata node add`: put a new host into the inventory and scaffold nodes/NAME/vars.yaml
//! (see engine::node_add). Offline: nothing here connects anywhere.

use crate::cli::Ctx;
use crate::engine::node_add;
use crate::error::Result;
use clap::{Args, Subcommand};

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
    Add(NodeAddArgs),
}

#[derive(Args, Debug, Clone)]
pub struct NodeAddArgs {
    /// The new host's name: a-z, 0-9 and '-', starting with a letter, at most 63 characters.
    pub name: String,
    /// Its IP address or DNS name (unique in the inventory; nothing connects to it here).
    #[arg(long)]
    pub address: String,
    /// Its region, e.g. eu-central (free text, not empty).
    #[arg(long)]
    pub region: String,
    /// Its provider, e.g. ovh.
    #[arg(long)]
    pub provider: Option<String>,
    /// A group it joins (repeat, or separate with commas); each must be defined under
    /// `groups:` in the inventory. Default: `validators` when the inventory defines that group;
    /// otherwise --group is required.
    #[arg(long = "group", value_name = "GROUP", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// SSH port for this host (written as `ssh: {port: N}`; default: the inventory's defaults).
    #[arg(long)]
    pub port: Option<u16>,
    /// SSH user for this host: the deploy user `strata bootstrap` creates (written as
    /// `ssh: {user: U, become: sudo}`; default: the inventory's defaults).
    #[arg(long)]
    pub user: Option<String>,
    /// The ssh destination, if not the address: an ssh_config `Host` alias or a DNS name
    /// (written as `ssh: {host: HOST}`; the configs keep using --address).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Jump hosts to reach it through, `[user@]host[:port]`, comma-separated (as `ssh -J`;
    /// written as `ssh: {proxy_jump: ...}`), or `none` for a direct connection whatever its
    /// groups and the defaults say. Default: theirs.
    #[arg(long, value_name = "JUMPS")]
    pub proxy_jump: Option<String>,
}

pub fn exec_add(a: NodeAddArgs, ctx: &Ctx) -> Result<()> {
    let report = node_add::add(
        ctx.repo,
        ctx.inventory,
        node_add::NodeAddArgs {
            name: a.name,
            address: a.address,
            region: a.region,
            provider: a.provider,
            groups: a.groups,
            port: a.port,
            user: a.user,
            host: a.host,
            proxy_jump: a.proxy_jump,
        },
    )?;
    ctx.out.out(&report);
    Ok(())
}
