//! `strata completions SHELL` and `strata man`: generated from the same clap definition as
//! the parser, so they cannot drift from the real flags.

use crate::cli::{Cli, Ctx};
use crate::error::{Error, Result, EXIT_OK};
use clap::{Args, CommandFactory};

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn exec(a: CompletionsArgs, ctx: &Ctx) -> Result<i32> {
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "strata", &mut buf);
    ctx.out.out(&String::from_utf8_lossy(&buf));
    Ok(EXIT_OK)
}

/// The man page (roff) on standard output: `strata man > strata.1`.
pub fn man(ctx: &Ctx) -> Result<i32> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Error::local("rendering the man page", e))?;
    ctx.out.out(&String::from_utf8_lossy(&buf));
    Ok(EXIT_OK)
}
