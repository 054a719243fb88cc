//! The offline commands: check, render, vars. They load, resolve and render; no network.

use crate::config::Repo;
use crate::error::{Diag, Diags, EXIT_ERROR, EXIT_OK};
use crate::model::{fmt_mode, Resource};
use crate::render::{self, Rendered};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Load and render everything, or return every problem found.
pub fn load_and_render(repo: &Path, inventory: Option<&Path>) -> Result<(Repo, Rendered), Diags> {
    let repo = Repo::load(repo, inventory).map_err(Diags)?;
    let rendered = render::render_all(&repo).map_err(Diags)?;
    Ok((repo, rendered))
}

fn report(diags: &Diags) -> i32 {
    eprintln!("{diags}");
    let n = diags.0.len();
    eprintln!("check failed: {n} problem{}", if n == 1 { "" } else { "s" });
    EXIT_ERROR
}

pub fn check(repo: &Path, inventory: Option<&Path>, validate: bool, markdown: bool) -> i32 {
    // (exit code, what goes to stdout, what goes to stderr)
    let (code, out, err) = match load_and_render(repo, inventory) {
        Ok((repo, r)) => {
            let total: usize = r.nodes.iter().map(|n| n.resources.len()).sum();
            let mut out = format!(
                "ok: {} nodes, {} modules, {} resources rendered from {}\n",
                r.nodes.len(),
                repo.modules.len(),
                total,
                repo.inventory_file.display()
            );
            if !validate {
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
        Err(d) => {
            let n = d.0.len();
            let s = if n == 1 { "" } else { "s" };
            (
                EXIT_ERROR,
                String::new(),
                format!("{d}\ncheck failed: {n} problem{s}\n"),
            )
        }
    };
    if markdown {
        // A CI job summary: a verdict line, then everything check said, verbatim.
        let verdict = if code == EXIT_OK { "passed" } else { "FAILED" };
        let what = if validate { " --validate" } else { "" };
        let fence = "```";
        println!("### strata check{what}: {verdict}\n");
        println!(
            "{fence}\n{}{}{fence}",
            err.replace(fence, "'''"),
            out.replace(fence, "'''")
        );
    } else {
        eprint!("{err}");
        print!("{out}");
    }
    code
}

fn select<'a>(
    r: &'a Rendered,
    names: &[String],
) -> Result<Vec<&'a crate::model::DesiredState>, String> {
    for n in names {
        if !r.nodes.iter().any(|d| &d.node.name == n) {
            return Err(format!("no node named `{n}` in the inventory"));
        }
    }
    Ok(r.nodes
        .iter()
        .filter(|d| names.is_empty() || names.contains(&d.node.name))
        .collect())
}

/// One line per resource, with a digest of what it would put on the node.
pub fn describe(r: &Resource) -> String {
    match r {
        Resource::File(f) => format!(
            "{} {}:{} blake3:{}{}",
            fmt_mode(f.mode),
            f.owner,
            f.group,
            &blake3::hash(f.content.as_bytes()).to_hex()[..16],
            if f.secret { " (secret)" } else { "" }
        ),
        Resource::Directory(d) => format!("{} {}:{}", fmt_mode(d.mode), d.owner, d.group),
        Resource::KeyFile(k) => format!(
            "{} {}:{} (content never read)",
            fmt_mode(k.mode),
            k.owner,
            k.group
        ),
        Resource::User(u) => format!(
            "{}{}",
            if u.system { "system user" } else { "user" },
            u.home
                .as_ref()
                .map(|h| format!(" home {h}"))
                .unwrap_or_default()
        ),
        Resource::Package(_) => "installed".into(),
        Resource::Service(s) => format!(
            "{} {:?}",
            if s.enabled { "enabled" } else { "disabled" },
            s.state
        )
        .to_lowercase(),
        Resource::Firewall(f) => format!(
            "incoming {} outgoing {}, {} rules",
            f.default_incoming,
            f.default_outgoing,
            f.rules.len()
        ),
    }
}

pub fn render(
    repo: &Path,
    inventory: Option<&Path>,
    nodes: &[String],
    out: Option<&Path>,
) -> anyhow::Result<i32> {
    let (_, r) = match load_and_render(repo, inventory) {
        Ok(v) => v,
        Err(d) => return Ok(report(&d)),
    };
    let selected = select(&r, nodes).map_err(anyhow::Error::msg)?;
    let mut text = String::new();
    for d in &selected {
        match out {
            Some(dir) => {
                for res in &d.resources {
                    if let Resource::File(f) = res {
                        let path: PathBuf =
                            dir.join(&d.node.name).join(f.dest.trim_start_matches('/'));
                        write_out(&path, &f.content, f.secret)?;
                    }
                }
            }
            None => {
                writeln!(
                    text,
                    "{} ({}, {}):",
                    d.node.name, d.node.address, d.node.region
                )?;
                let width = d.resources.iter().map(|r| r.id().len()).max().unwrap_or(0);
                for res in &d.resources {
                    writeln!(text, "  {:width$}  {}", res.id(), describe(res))?;
                }
                writeln!(text, "  fingerprint {}", &d.fingerprint()[..16])?;
            }
        }
    }
    match out {
        Some(dir) => println!("rendered {} nodes into {}", selected.len(), dir.display()),
        None => print!("{text}"),
    }
    Ok(EXIT_OK)
}

fn write_out(path: &Path, content: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    // Secret files are written owner-only: they hold env() values.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

pub fn vars(repo: &Path, inventory: Option<&Path>, node: &str) -> anyhow::Result<i32> {
    let repo = match Repo::load(repo, inventory) {
        Ok(r) => r,
        Err(d) => return Ok(report(&Diags(d))),
    };
    if repo.host(node).is_none() {
        anyhow::bail!(
            "no node named `{node}` in the inventory {}",
            repo.inventory_file.display()
        );
    }
    let (configs, errs, _) = render::resolve(&repo);
    let errs: Vec<Diag> = errs;
    if !errs.is_empty() {
        return Ok(report(&Diags(errs)));
    }
    let c = configs
        .iter()
        .find(|c| c.host.name == node)
        .expect("host resolved");
    let rows = render::vars_listing(c, &repo.locked);
    let kw = rows
        .iter()
        .map(|r| r.0.len() + r.1.len() + 3)
        .max()
        .unwrap_or(0)
        .min(70);
    for (k, v, origin, locked) in rows {
        let kv = format!("{k} = {v}");
        let o = origin.map(|o| o.to_string()).unwrap_or_default();
        println!("{kv:kw$}  # {o}{}", if locked { " [locked]" } else { "" });
    }
    Ok(EXIT_OK)
}

/// The probe script for one node, for debugging and for capturing parser fixtures.
pub fn probe_script(repo: &Path, inventory: Option<&Path>, node: &str) -> anyhow::Result<i32> {
    let (_, r) = match load_and_render(repo, inventory) {
        Ok(v) => v,
        Err(d) => return Ok(report(&d)),
    };
    let d = select(&r, &[node.to_string()]).map_err(anyhow::Error::msg)?;
    print!("{}", crate::remote::probe::script(d[0]));
    Ok(EXIT_OK)
}
