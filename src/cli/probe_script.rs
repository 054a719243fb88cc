//! `strata probe-script NODE` (hidden): the probe strata sends to a node, for debugging and
//! for capturing parser fixtures.

use crate::cli::Ctx;
use crate::engine::load::load_and_render;
use crate::error::{Result, EXIT_OK};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ProbeScriptArgs {
    pub node: String,
}

pub fn exec(a: ProbeScriptArgs, ctx: &Ctx) -> Result<i32> {
    let (_, r) = load_and_render(ctx.repo, ctx.inventory)?;
    ctx.out.set_secrets(&r.secrets);
    let d = crate::cli::render::select(&r.nodes, std::slice::from_ref(&a.node))?;
    ctx.out.out(&crate::remote::probe::script(d[0]));
    Ok(EXIT_OK)
}
