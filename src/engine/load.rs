//! Load the repo and render every node: the first step of every command.

use crate::config::Repo;
use crate::error::{Error, Result};
use crate::model::DesiredState;
use crate::render::{self, Rendered};
use std::path::Path;

/// Load and render everything, or every problem found.
pub fn load_and_render(repo: &Path, inventory: Option<&Path>) -> Result<(Repo, Rendered)> {
    let repo = Repo::load(repo, inventory)?;
    let rendered = render::render_all(&repo)?;
    Ok((repo, rendered))
}

/// The nodes a command that goes to the fleet selected, with the secrets to redact.
pub fn load_selected(
    repo: &Path,
    inventory: Option<&Path>,
    selectors: &[String],
) -> Result<(Vec<DesiredState>, Vec<String>)> {
    let (_, rendered) = load_and_render(repo, inventory)?;
    let nodes = crate::engine::select(rendered.nodes, selectors).map_err(Error::Usage)?;
    Ok((nodes, rendered.secrets))
}
