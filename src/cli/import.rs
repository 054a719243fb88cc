//! `strata import ansible INVENTORY`: an Ansible inventory with its group_vars/ and host_vars/
//! as a strata repo (inventory/hosts.yaml, base-config/vars.yaml, nodes/*/vars.yaml), with
//! everything it could not map listed by file:line. Offline: nothing is run or contacted.

use crate::cli::Ctx;
use crate::config::{self, ansible, Repo};
use crate::error::{Error, Result, EXIT_OK};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Subcommand, Debug, Clone)]
pub enum ImportCmd {
    /// Import an Ansible inventory (INI or YAML file, or a directory of them) and its
    /// group_vars/ and host_vars/ (files or directories of files).
    ///
    /// Group `all`'s vars become base-config/vars.yaml, other groups' vars `groups.G.vars`,
    /// a host's own vars nodes/HOST/vars.yaml; ansible_host, ansible_user, ansible_port,
    /// ansible_ssh_private_key_file and ansible_become become the ssh settings. Host ranges
    /// (web[01:10]) are expanded. A value strata's layers would give a host differently from
    /// Ansible's precedence is pinned in the host's node file. Dynamic inventories, vaulted
    /// values (written as env("NAME")), Jinja in vars, and what cannot be pinned (a map var
    /// Ansible replaces, strata merges) are listed by file:line. The written repo is read back
    /// with strata's loader. Existing files are never overwritten without --force.
    Ansible(AnsibleArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AnsibleArgs {
    /// The inventory: an INI or YAML file, or a directory of them.
    pub inventory: PathBuf,
    /// group_vars directory (default: group_vars/ next to the inventory).
    #[arg(long)]
    pub group_vars: Option<PathBuf>,
    /// host_vars directory (default: host_vars/ next to the inventory).
    #[arg(long)]
    pub host_vars: Option<PathBuf>,
    /// The strata repo to write (default: --repo).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace files that exist already.
    #[arg(long)]
    pub force: bool,
}

pub fn exec(c: ImportCmd, ctx: &Ctx) -> Result<i32> {
    let ImportCmd::Ansible(a) = c;
    let inv = ansible::load(&ansible::Sources {
        inventory: &a.inventory,
        group_vars: a.group_vars.as_deref(),
        host_vars: a.host_vars.as_deref(),
    })
    .map_err(Error::Usage)?;
    let conv = ansible::convert::convert(&inv, &a.inventory.display().to_string());
    if conv.hosts == 0 {
        let notes: String = conv.notes.iter().map(|n| format!("  {n}\n")).collect();
        return Err(Error::Usage(format!(
            "no hosts found in {}; nothing imported\n{notes}",
            a.inventory.display()
        )));
    }
    let out_dir = a.out.clone().unwrap_or_else(|| ctx.repo.to_path_buf());
    // Every precondition before the first write: nothing is half imported.
    if !a.force {
        let existing: Vec<String> = conv
            .files
            .iter()
            .map(|(p, _)| out_dir.join(p))
            .filter(|p| p.exists())
            .map(|p| format!("  {}", p.display()))
            .collect();
        if !existing.is_empty() {
            return Err(Error::Usage(format!(
                "these files exist already (--force replaces them):\n{}",
                existing.join("\n")
            )));
        }
    }
    for (p, text) in &conv.files {
        let path = out_dir.join(p);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| Error::local(d.display(), e))?;
        }
        // Written next to the target and renamed: a file is the old one or the new one.
        let tmp = path.with_extension("yaml.strata-tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::local(path.display(), e))?;
    }
    let mut text = format!(
        "imported {} hosts and {} groups from {} into {}:\n",
        conv.hosts,
        conv.groups,
        a.inventory.display(),
        out_dir.display()
    );
    for (p, _) in &conv.files {
        writeln!(text, "  wrote {}", p.display())?;
    }
    if conv.notes.is_empty() {
        text.push_str("everything was mapped\n");
    } else {
        writeln!(text, "not mapped as Ansible has it ({}):", conv.notes.len())?;
        for n in &conv.notes {
            writeln!(text, "  {n}")?;
        }
    }
    // Read back with strata's own loader and merge (secrets are not needed for that): what
    // Ansible accepted and strata does not (an address, a kind of value) is said now.
    let errs = reload(&out_dir);
    if !errs.is_empty() {
        ctx.out.out(&text);
        let n = errs.len();
        ctx.out.err(&format!(
            "the imported repo does not load as it is ({n} problem{}); fix it in the files named:\n",
            if n == 1 { "" } else { "s" }
        ));
        return Err(errs.into());
    }
    text.push_str("next: `strata check` (with --placeholder-secrets until the env(...) secrets are set), then add modules to the groups\n");
    ctx.out.out(&text);
    Ok(EXIT_OK)
}

/// Every problem strata's loader and merge find in the written repo.
fn reload(dir: &std::path::Path) -> Vec<crate::error::Diag> {
    let repo = match Repo::load(dir, None) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut errs = Vec::new();
    for h in &repo.hosts {
        let mut layers = config::group_layers(&repo, h);
        if let Some(n) = repo.node_vars.get(&h.name) {
            layers.push(n);
        }
        if let Err(mut e) = config::vars::merge(&repo.base, &repo.locked, &layers) {
            errs.append(&mut e);
        }
    }
    errs.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    errs.dedup();
    errs
}
