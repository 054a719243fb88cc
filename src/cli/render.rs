//! `strata render`: list each node's resources with digests, or write its files to --out.

use crate::cli::Ctx;
use crate::engine::load::load_and_render;
use crate::error::{Error, Result, EXIT_OK};
use crate::model::{DesiredState, Resource};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// Nodes to render (default: all).
    pub nodes: Vec<String>,
    /// Write each node's files under DIR/<node>/ instead of listing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub secrets: crate::cli::secrets::PlaceholderArgs,
}

pub fn exec(a: RenderArgs, ctx: &Ctx) -> Result<i32> {
    let (_, r) = load_and_render(ctx.repo, ctx.inventory)?;
    ctx.out.set_secrets(&r.secrets);
    let selected = select(&r.nodes, &a.nodes)?;
    match &a.out {
        Some(dir) => {
            for d in &selected {
                for res in &d.resources {
                    if let Resource::File(f) = res {
                        let path: PathBuf =
                            dir.join(&d.node.name).join(f.dest.trim_start_matches('/'));
                        write_out(&path, &f.content, f.secret)
                            .map_err(|e| Error::local(format!("writing {}", path.display()), e))?;
                    }
                }
            }
            ctx.out.out(&format!(
                "rendered {} nodes into {}\n",
                selected.len(),
                dir.display()
            ));
        }
        None => ctx.out.out(&crate::report::resources::listing(&selected)),
    }
    Ok(EXIT_OK)
}

/// The named nodes (all when none is named); an unknown name is an error.
pub fn select<'a>(nodes: &'a [DesiredState], names: &[String]) -> Result<Vec<&'a DesiredState>> {
    for n in names {
        if !nodes.iter().any(|d| &d.node.name == n) {
            return Err(Error::Usage(format!(
                "no node named `{n}` in the inventory"
            )));
        }
    }
    Ok(nodes
        .iter()
        .filter(|d| names.is_empty() || names.contains(&d.node.name))
        .collect())
}

/// Rendered files are the operator's own output (`--out`), written here as they would be on
/// the node; secret files owner-only, since they hold env() values.
fn write_out(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    // Written beside it and renamed over it: a file already there keeps no mode of its own
    // (a 0644 left by an earlier render would keep a secret world-readable), and a symlink
    // there is replaced, never written through.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.strata-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
