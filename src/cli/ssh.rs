//! `strata ssh close`: end every SSH master kept for later commands (`ssh.persist`).

use crate::cli::Ctx;
use crate::engine::local::runtime;
use crate::error::{Result, EXIT_OK};
use clap::Subcommand;

#[derive(Subcommand, Debug, Clone)]
pub enum SshCmd {
    /// End every kept SSH master (see `ssh.persist` in the inventory).
    Close,
}

pub fn exec(cmd: SshCmd, ctx: &Ctx) -> Result<i32> {
    match cmd {
        SshCmd::Close => {
            let n = runtime()?.block_on(crate::engine::local::close_kept_connections());
            ctx.out.out(&format!(
                "closed {n} kept SSH connection{}\n",
                if n == 1 { "" } else { "s" }
            ));
            Ok(EXIT_OK)
        }
    }
}
