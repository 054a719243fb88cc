//! `strata secrets`: every secret the config needs (env vars and secret files), where the repo
//! uses it and whether it is available here; and `--placeholder-secrets` for check, render and
//! vars. No secret value is ever printed.

use crate::cli::Ctx;
use crate::config::Repo;
use crate::error::{Diags, Result, EXIT_ERROR, EXIT_OK};
use crate::render::secrets::{self, Used};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct SecretsArgs {
    /// Exit 1 when a secret is missing here (for a CI step that must have them all).
    #[arg(long)]
    pub check: bool,
}

/// `--placeholder-secrets`, flattened into the args of check, render and vars only.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PlaceholderArgs {
    /// Replace every env() and secret_file() value by an obviously fake placeholder
    /// (lint a pull request without production secrets; plan and apply never offer this).
    #[arg(long)]
    pub placeholder_secrets: bool,
}

/// Run an offline command with every secret replaced by an obviously fake placeholder
/// (`strata-placeholder-not-a-secret:NAME`). Only check, render and vars offer this; plan and
/// apply have no such flag, so a placeholder never reaches a node.
pub fn maybe_placeholders<T>(p: &PlaceholderArgs, ctx: &Ctx, f: impl FnOnce() -> T) -> T {
    if p.placeholder_secrets {
        ctx.out.err(
            "note: --placeholder-secrets: every env() and secret_file() value is a fake \
             placeholder; nothing rendered here may be applied\n",
        );
        secrets::with_placeholders(f)
    } else {
        f()
    }
}

/// Where a secret is named in the repo's files: (file relative to the repo, line).
type Sites = BTreeMap<Used, BTreeSet<(PathBuf, usize)>>;

fn scan(root: &Path, file: &Path, sites: &mut Sites) {
    use std::sync::OnceLock;
    static RES: OnceLock<(regex_lite::Regex, regex_lite::Regex)> = OnceLock::new();
    let (env_re, file_re) = RES.get_or_init(|| {
        (
            regex_lite::Regex::new(r#"\benv\(\s*["']([A-Za-z0-9_]+)["']\s*\)"#).expect("regex"),
            regex_lite::Regex::new(r#"\bsecret_file\(\s*["']([^"']+)["']\s*\)"#).expect("regex"),
        )
    });
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let rel = file.strip_prefix(root).unwrap_or(file).to_path_buf();
    for (i, line) in text.lines().enumerate() {
        for c in env_re.captures_iter(line) {
            sites
                .entry(Used::Env(c[1].to_string()))
                .or_default()
                .insert((rel.clone(), i + 1));
        }
        for c in file_re.captures_iter(line) {
            sites
                .entry(Used::File(c[1].to_string()))
                .or_default()
                .insert((rel.clone(), i + 1));
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Whether a secret is available here, in words (never its value).
fn status(root: &Path, u: &Used) -> (bool, String) {
    match u {
        Used::Env(n) => match std::env::var(n) {
            Ok(v) if !v.is_empty() => (true, "set".into()),
            Ok(_) => (false, "the variable is empty".into()),
            Err(_) => (false, "the variable is not set".into()),
        },
        Used::File(p) => match secrets::read_secret_file(root, p) {
            Ok(_) if p.ends_with(".age") => (true, "decrypts".into()),
            Ok(_) => (true, "readable".into()),
            Err(e) => (false, e),
        },
    }
}

pub fn exec(args: SecretsArgs, ctx: &Ctx) -> Result<i32> {
    let repo = Repo::load(ctx.repo, ctx.inventory)?;
    let root = repo.root.clone();
    let mut files = vec![
        repo.inventory_file.clone(),
        root.join("base-config/vars.yaml"),
    ];
    walk(&root.join("nodes"), &mut files);
    for m in repo.modules.keys() {
        walk(&root.join("modules").join(m), &mut files);
    }
    let mut sites = Sites::new();
    for f in &files {
        let f = if f.is_absolute() {
            f.clone()
        } else {
            root.join(f)
        };
        scan(&root, &f, &mut sites);
    }
    // Render with placeholders: names a template computes are found too, and a name written
    // in a branch no node takes is still listed (from the scan) but marked unused.
    let (rendered, used) =
        secrets::collect_used(|| secrets::with_placeholders(|| crate::render::render_all(&repo)));
    if let Err(d) = &rendered {
        ctx.out.err(&format!(
            "{}\n(the list below is from reading the files only: rendering failed)\n",
            Diags(d.clone())
        ));
    }
    let all: BTreeSet<Used> = sites.keys().cloned().chain(used.iter().cloned()).collect();
    let mut missing = 0;
    let rows: Vec<(String, bool, String, String)> = all
        .iter()
        .map(|u| {
            let (ok, st) = status(&root, u);
            missing += usize::from(!ok);
            let what = match u {
                Used::Env(n) => format!("env {n}"),
                Used::File(p) => format!("file {p}"),
            };
            let mut at: Vec<String> = sites
                .get(u)
                .map(|s| {
                    s.iter()
                        .map(|(f, l)| format!("{}:{l}", f.display()))
                        .collect()
                })
                .unwrap_or_else(|| vec!["(name computed in a template)".into()]);
            if rendered.is_ok() && !used.contains(u) {
                at.push("(no node renders it)".into());
            }
            (what, ok, st, at.join(", "))
        })
        .collect();
    let w1 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w2 = rows
        .iter()
        .map(|r| if r.1 { r.2.len() } else { 7 })
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (what, ok, st, at) in &rows {
        if *ok {
            text.push_str(&format!("{what:w1$}  {st:w2$}  {at}\n"));
        } else {
            text.push_str(&format!(
                "{what:w1$}  {:w2$}  {at}\n{:w1$}  ({st})\n",
                "MISSING", ""
            ));
        }
    }
    text.push_str(&format!(
        "{} secret{} needed, {} missing here\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        missing
    ));
    ctx.out.out(&text);
    Ok(if args.check && missing > 0 {
        EXIT_ERROR
    } else {
        EXIT_OK
    })
}
