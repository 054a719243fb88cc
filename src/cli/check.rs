//! `strata check`: load, resolve and render every node; report every problem found; with
//! `--validate`, also run each rendered file's validator here.

use crate::cli::Ctx;
use crate::engine::load::load_and_render;
use crate::error::{Error, Result, EXIT_ERROR, EXIT_OK};
use clap::{Args, ValueEnum};

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Also run every rendered file's `validate` command here, on this machine
    /// (promtool, amtool, ...): exit 1 if one fails; a missing tool is listed as not checked.
    #[arg(long)]
    pub validate: bool,
    /// `markdown` for a CI job summary.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    #[command(flatten)]
    pub secrets: crate::cli::secrets::PlaceholderArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    Text,
    /// GitHub-flavoured markdown, for a CI job summary.
    Markdown,
}

pub fn exec(a: CheckArgs, ctx: &Ctx) -> Result<i32> {
    // (exit code, what goes to stdout, what goes to stderr)
    let (code, out, err) = match load_and_render(ctx.repo, ctx.inventory) {
        Ok((repo, r)) => {
            ctx.out.set_secrets(&r.secrets);
            let total: usize = r.nodes.iter().map(|n| n.resources.len()).sum();
            let mut out = format!(
                "ok: {} nodes, {} modules, {} resources rendered from {}\n",
                r.nodes.len(),
                repo.modules.len(),
                total,
                repo.inventory_file.display()
            );
            if !a.validate {
                (EXIT_OK, out, String::new())
            } else {
                let rep = crate::engine::validate::validate_all(&repo, &r.nodes, &r.secrets);
                out.push_str(&rep.out);
                (
                    if rep.failed > 0 { EXIT_ERROR } else { EXIT_OK },
                    out,
                    rep.err,
                )
            }
        }
        Err(Error::Config(d)) => {
            let n = d.0.len();
            let s = if n == 1 { "" } else { "s" };
            (
                EXIT_ERROR,
                String::new(),
                format!("{d}\ncheck failed: {n} problem{s}\n"),
            )
        }
        Err(e) => return Err(e),
    };
    if a.format == CheckFormat::Markdown {
        // A CI job summary: a verdict line, then everything check said, verbatim.
        let verdict = if code == EXIT_OK { "passed" } else { "FAILED" };
        let what = if a.validate { " --validate" } else { "" };
        let fence = "```";
        ctx.out.out(&format!(
            "### strata check{what}: {verdict}\n\n{fence}\n{}{}{fence}\n",
            err.replace(fence, "'''"),
            out.replace(fence, "'''")
        ));
    } else {
        ctx.out.err(&err);
        ctx.out.out(&out);
    }
    Ok(code)
}
