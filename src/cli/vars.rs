//! `strata vars NODE`: the node's merged vars, each with the file and line it came from.

use crate::cli::Ctx;
use crate::config::Repo;
use crate::error::{Error, Result, EXIT_OK};
use crate::render;
use clap::Args;
use std::fmt::Write as _;

#[derive(Args, Debug, Clone)]
pub struct VarsArgs {
    pub node: String,
    #[command(flatten)]
    pub secrets: crate::cli::secrets::PlaceholderArgs,
}

pub fn exec(a: VarsArgs, ctx: &Ctx) -> Result<i32> {
    let repo = Repo::load(ctx.repo, ctx.inventory)?;
    if repo.host(&a.node).is_none() {
        return Err(Error::Usage(format!(
            "no node named `{}` in the inventory {}",
            a.node,
            repo.inventory_file.display()
        )));
    }
    let (configs, errs, _) = render::resolve(&repo);
    if !errs.is_empty() {
        return Err(errs.into());
    }
    let c = configs
        .iter()
        .find(|c| c.host.name == a.node)
        .ok_or_else(|| Error::Usage(format!("`{}` did not resolve", a.node)))?;
    let rows = render::vars_listing(c, &repo.locked);
    let kw = rows
        .iter()
        .map(|r| r.0.len() + r.1.len() + 3)
        .max()
        .unwrap_or(0)
        .min(70);
    let mut text = String::new();
    for (k, v, origin, locked) in rows {
        let kv = format!("{k} = {v}");
        let o = origin.map(|o| o.to_string()).unwrap_or_default();
        writeln!(
            text,
            "{kv:kw$}  # {o}{}",
            if locked { " [locked]" } else { "" }
        )?;
    }
    ctx.out.out(&text);
    Ok(EXIT_OK)
}
