//! Reading an Ansible inventory (INI or YAML, a file or a directory of them) with its
//! `group_vars/` and `host_vars/`, into one model with the file and line of every group, host
//! and var. What cannot be read as data (dynamic inventories, vault, Jinja) becomes a `Note`.
//! `convert` maps the model onto strata's repo; the command is cli::import.

pub mod convert;
pub mod ini;
pub mod yaml;

use crate::config::vars::Val;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Something the import could not map, at file:line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl Note {
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> Note {
        Note {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// One var as Ansible set it, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct VarDef {
    pub value: Val,
    pub file: PathBuf,
    pub line: usize,
}

pub type Vars = BTreeMap<String, VarDef>;

#[derive(Debug, Clone, Default)]
pub struct GroupDef {
    pub children: BTreeSet<String>,
    pub hosts: BTreeSet<String>,
    /// Vars from the inventory file itself (`[g:vars]`, `vars:`).
    pub vars: Vars,
    /// Vars from group_vars/ (higher precedence than the inventory file's, as in Ansible).
    pub file_vars: Vars,
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct HostDef {
    pub vars: Vars,
    pub file_vars: Vars,
    pub file: PathBuf,
    pub line: usize,
}

/// The inventory as Ansible would hold it: groups (with `all` and `ungrouped`) and hosts.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub groups: BTreeMap<String, GroupDef>,
    pub hosts: BTreeMap<String, HostDef>,
    /// Host names in the order first seen.
    pub order: Vec<String>,
    pub notes: Vec<Note>,
}

impl Inventory {
    pub fn group(&mut self, name: &str, file: &Path, line: usize) -> &mut GroupDef {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| GroupDef {
                file: file.to_path_buf(),
                line,
                ..GroupDef::default()
            })
    }

    pub fn add_host(&mut self, group: &str, name: &str, file: &Path, line: usize) {
        self.group(group, file, line).hosts.insert(name.to_string());
        if !self.hosts.contains_key(name) {
            self.order.push(name.to_string());
            self.hosts.insert(
                name.to_string(),
                HostDef {
                    file: file.to_path_buf(),
                    line,
                    ..HostDef::default()
                },
            );
        }
    }

    pub fn set_group_var(&mut self, group: &str, k: &str, value: Val, file: &Path, line: usize) {
        let def = VarDef {
            value,
            file: file.to_path_buf(),
            line,
        };
        self.group(group, file, line)
            .vars
            .insert(k.to_string(), def);
    }

    pub fn set_host_var(&mut self, host: &str, k: &str, value: Val, file: &Path, line: usize) {
        if let Some(h) = self.hosts.get_mut(host) {
            let def = VarDef {
                value,
                file: file.to_path_buf(),
                line,
            };
            h.vars.insert(k.to_string(), def);
        }
    }

    /// Ansible's implicit groups: every group is under `all`; a host in no group but `all`
    /// is in `ungrouped`.
    pub fn finish(&mut self) {
        let p = PathBuf::new();
        self.group("all", &p, 0);
        let named: BTreeSet<String> = self
            .groups
            .iter()
            .filter(|(n, _)| n.as_str() != "all")
            .map(|(n, _)| n.clone())
            .collect();
        let children: BTreeSet<String> = self
            .groups
            .values()
            .flat_map(|g| g.children.iter().cloned())
            .collect();
        let all = self.groups.get_mut("all").expect("just added");
        for n in named.difference(&children) {
            all.children.insert(n.clone());
        }
        let grouped: BTreeSet<String> = self
            .groups
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "all" | "ungrouped"))
            .flat_map(|(_, g)| g.hosts.iter().cloned())
            .collect();
        let lone: Vec<String> = self
            .order
            .iter()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        if !lone.is_empty() {
            let g = self.group("ungrouped", &p, 0);
            g.hosts.extend(lone);
            self.groups
                .get_mut("all")
                .expect("added")
                .children
                .insert("ungrouped".into());
        }
        // A host listed in `ungrouped` and also in a named group is not ungrouped.
        if let Some(u) = self.groups.get_mut("ungrouped") {
            u.hosts.retain(|h| !grouped.contains(h));
        }
    }

    /// Every group a host belongs to, its ancestors included, `all` included.
    pub fn host_groups(&self, host: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.hosts.contains(host))
            .map(|(n, _)| n.clone())
            .collect();
        while let Some(g) = todo.pop() {
            if out.insert(g.clone()) {
                for (p, pg) in &self.groups {
                    if pg.children.contains(&g) {
                        todo.push(p.clone());
                    }
                }
            }
        }
        out.insert("all".into());
        out
    }

    /// A group's depth below `all` (the longest path, as Ansible counts it), cycle-safe.
    pub fn depth(&self, group: &str) -> usize {
        fn walk(inv: &Inventory, g: &str, seen: &mut Vec<String>) -> usize {
            if g == "all" || seen.iter().any(|s| s == g) {
                return 0;
            }
            seen.push(g.to_string());
            let d = inv
                .groups
                .iter()
                .filter(|(_, pg)| pg.children.contains(g))
                .map(|(p, _)| walk(inv, p, seen) + 1)
                .max()
                .unwrap_or(1);
            seen.pop();
            d
        }
        walk(self, group, &mut Vec::new())
    }

    /// A host's groups in the order Ansible combines their vars (later wins): by depth, then
    /// `ansible_group_priority`, then name (Ansible's `sort_groups`).
    pub fn sorted_groups(&self, host: &str) -> Vec<String> {
        let mut gs: Vec<String> = self.host_groups(host).into_iter().collect();
        gs.sort_by_key(|g| (self.depth(g), self.priority(g), g.clone()));
        gs
    }

    fn priority(&self, group: &str) -> i64 {
        let g = &self.groups[group];
        match g
            .file_vars
            .get("ansible_group_priority")
            .or(g.vars.get("ansible_group_priority"))
            .map(|v| &v.value)
        {
            Some(Val::Int(i)) => *i,
            Some(Val::Str(s)) => s.parse().unwrap_or(1),
            _ => 1,
        }
    }
}

/// Most hosts one pattern may expand to (a typo like `[1:1000000]` is refused, not expanded).
const MAX_HOSTS: usize = 100_000;

/// Expand Ansible's host ranges: `web[01:03]` -> web01 web02 web03, `db-[a:c]`, `[1:9:2]`
/// (a stride); several ranges multiply.
pub fn expand_pattern(p: &str) -> Result<Vec<String>, String> {
    let Some(open) = p.find('[') else {
        return Ok(vec![p.to_string()]);
    };
    let close = p[open..]
        .find(']')
        .map(|c| c + open)
        .ok_or("a `[` without `]`")?;
    let (head, range, tail) = (&p[..open], &p[open + 1..close], &p[close + 1..]);
    let parts: Vec<&str> = range.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        // Not a range (e.g. an IPv6 address in brackets): the name is taken as written.
        return Ok(vec![p.to_string()]);
    }
    let (beg, end) = (parts[0], parts[1]);
    let stride: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("stride `{s}` is not a positive number"))?,
        None => 1,
    };
    let items: Vec<String> = if let (Ok(b), Ok(e)) = (beg.parse::<u64>(), end.parse::<u64>()) {
        // A leading zero fixes the width (web[01:10] -> web01..web10), as Ansible does.
        let width = if beg.len() > 1 && beg.starts_with('0') {
            beg.len()
        } else {
            0
        };
        if b > e {
            return Err(format!("range start {beg} is after its end {end}"));
        }
        if e - b >= MAX_HOSTS as u64 {
            return Err(format!("expands to more than {MAX_HOSTS} hosts"));
        }
        (b..=e)
            .step_by(stride)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        let (b, e) = (single_letter(beg)?, single_letter(end)?);
        if b > e {
            return Err(format!("range start {beg} is after its end {end}"));
        }
        (b..=e).step_by(stride).map(|c| c.to_string()).collect()
    };
    let tails = expand_pattern(tail)?;
    if items.len().saturating_mul(tails.len()) > MAX_HOSTS {
        return Err(format!("expands to more than {MAX_HOSTS} hosts"));
    }
    let mut out = Vec::new();
    for i in &items {
        for rest in &tails {
            out.push(format!("{head}{i}{rest}"));
        }
    }
    Ok(out)
}

fn single_letter(s: &str) -> Result<char, String> {
    let mut c = s.chars();
    match (c.next(), c.next()) {
        (Some(ch), None) if ch.is_ascii_alphabetic() => Ok(ch),
        _ => Err(format!(
            "`{s}` is neither a number nor a single letter (a range is [01:10] or [a:f])"
        )),
    }
}

/// Where the inventory's parts are, as given on the command line.
pub struct Sources<'a> {
    pub inventory: &'a Path,
    pub group_vars: Option<&'a Path>,
    pub host_vars: Option<&'a Path>,
}

/// Read everything. Paths in notes are shown as given (relative to where the user ran it).
/// Only reading a file can fail hard; every problem in content is a note.
pub fn load(src: &Sources) -> Result<Inventory, String> {
    let mut inv = Inventory::default();
    let inv_path = src.inventory;
    let meta = std::fs::metadata(inv_path)
        .map_err(|e| format!("{}: cannot read: {e}", inv_path.display()))?;
    let (files, base_dir) = if meta.is_dir() {
        let mut files = Vec::new();
        for f in dir_files(inv_path)? {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            // Ansible's inventory-directory rule: these are not inventory sources.
            if name.ends_with('~')
                || name.starts_with('.')
                || [".orig", ".ini.bak", ".retry", ".pyc", ".pyo", ".cfg"]
                    .iter()
                    .any(|x| name.ends_with(x))
            {
                continue;
            }
            files.push(f);
        }
        (files, inv_path.to_path_buf())
    } else {
        let parent = inv_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (vec![inv_path.to_path_buf()], parent)
    };
    for f in &files {
        read_inventory_file(&mut inv, f)?;
    }
    inv.finish();
    let gv = src
        .group_vars
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base_dir.join("group_vars"));
    let hv = src
        .host_vars
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base_dir.join("host_vars"));
    for (name, file, vars) in vars_dir(&mut inv.notes, &gv, src.group_vars.is_some())? {
        match inv.groups.get_mut(&name) {
            Some(g) => g.file_vars.extend(vars),
            None => inv.notes.push(Note::new(
                &file,
                0,
                format!("group_vars for `{name}`, a group the inventory does not define: not read"),
            )),
        }
    }
    for (name, file, vars) in vars_dir(&mut inv.notes, &hv, src.host_vars.is_some())? {
        match inv.hosts.get_mut(&name) {
            Some(h) => h.file_vars.extend(vars),
            None => inv.notes.push(Note::new(
                &file,
                0,
                format!("host_vars for `{name}`, a host the inventory does not define: not read"),
            )),
        }
    }
    Ok(inv)
}

/// A directory's files and subdirectories, sorted (hidden ones left out).
fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .starts_with('.')
        })
        .collect();
    v.sort();
    Ok(v)
}

fn read_inventory_file(inv: &mut Inventory, f: &Path) -> Result<(), String> {
    if f.is_dir() {
        // group_vars/ and host_vars/ next to the inventory are read separately.
        return Ok(());
    }
    let bytes = std::fs::read(f).map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
    let executable = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(f)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let Ok(text) = String::from_utf8(bytes) else {
        inv.notes
            .push(Note::new(f, 0, "not UTF-8 text: not an inventory, skipped"));
        return Ok(());
    };
    if executable || text.starts_with("#!") {
        inv.notes.push(Note::new(
            f,
            1,
            "a dynamic inventory script: not run (run `ansible-inventory -i SCRIPT --list -y > \
             static.yml` and import that file)",
        ));
        return Ok(());
    }
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        inv.notes.push(Note::new(
            f,
            1,
            "a vault-encrypted inventory: not read (decrypt a copy with ansible-vault and \
             import that)",
        ));
        return Ok(());
    }
    let ext = f.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let looks_yaml = matches!(ext, "yml" | "yaml" | "json")
        || text.trim_start().starts_with('{')
        || (!matches!(ext, "ini" | "cfg")
            && text
                .lines()
                .find(|l| {
                    let l = l.trim();
                    !l.is_empty() && !l.starts_with('#') && !l.starts_with(';')
                })
                .is_some_and(|l| l.trim_end().ends_with(':') || l.trim() == "---"));
    if looks_yaml {
        yaml_inventory(inv, f, &text);
    } else {
        ini::parse(inv, f, &text);
    }
    Ok(())
}

/// A value read from YAML, with its vaulted and templated parts reported at their lines.
/// A vaulted value becomes `{{ env("NAME") }}`; `{{ lookup('env', 'X') }}` becomes
/// `{{ env("X") }}`; other Jinja is kept as text.
pub fn yaml_value(notes: &mut Vec<Note>, file: &Path, name: &str, n: &yaml::YNode) -> Val {
    // Connection vars are not written as vars: convert reports what it cannot take of them.
    let connection = name.starts_with("ansible_");
    yaml::to_val(n, name, &mut |line, path, f| match f {
        _ if connection => None,
        yaml::Finding::Vault => {
            let env = env_name(path);
            notes.push(Note::new(
                file,
                line,
                format!(
                    "`{path}` is vaulted (!vault): not decrypted; written as \
                     {{{{ env(\"{env}\") }}}}: export {env}, or move it to an age file"
                ),
            ));
            Some(Val::Str(format!("{{{{ env(\"{env}\") }}}}")))
        }
        yaml::Finding::Jinja => {
            let text = match n_text(n, path, name) {
                Some(t) => t,
                None => return None,
            };
            if let Some(e) = env_lookup(&text) {
                return Some(Val::Str(format!("{{{{ env(\"{e}\") }}}}")));
            }
            notes.push(Note::new(
                file,
                line,
                format!(
                    "`{path}` is a Jinja expression ({}): strata vars are data, not templates; \
                     kept as the literal text",
                    short(&text)
                ),
            ));
            None
        }
    })
}

/// The text of the scalar at `path` under `n` (whose own path is `root`).
fn n_text(n: &yaml::YNode, path: &str, root: &str) -> Option<String> {
    let rest = path.strip_prefix(root)?;
    let mut cur = n;
    let mut s = rest;
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            match cur {
                yaml::YNode::Seq(items, _) => cur = items.get(i)?,
                _ => return None,
            }
            s = &r[end + 1..];
        } else {
            return None;
        }
    }
    match cur {
        yaml::YNode::Scalar { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s.to_string()
    }
}

/// `{{ lookup('env', 'X') }}` (Ansible's environment lookup) -> `X`.
pub fn env_lookup(s: &str) -> Option<String> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let args = inner
        .strip_prefix("lookup(")
        .or(inner.strip_prefix("lookup ("))?
        .strip_suffix(')')?;
    let (a, b) = args.split_once(',')?;
    let unq = |x: &str| -> Option<String> {
        let x = x.trim();
        let q = x.chars().next()?;
        (matches!(q, '\'' | '"') && x.len() >= 2 && x.ends_with(q))
            .then(|| x[1..x.len() - 1].to_string())
    };
    let name = unq(b)?;
    (unq(a)? == "env"
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

/// The env var a vaulted value is read from: its dotted path, upper case.
pub fn env_name(path: &str) -> String {
    path.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Ansible's YAML inventory: groups at the top (usually `all`), each with `hosts`, `vars`
/// and `children`.
fn yaml_inventory(inv: &mut Inventory, file: &Path, text: &str) {
    let root = match yaml::parse(text) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err((line, e)) => {
            inv.notes
                .push(Note::new(file, line, format!("not valid YAML: {e}")));
            return;
        }
    };
    let Some(entries) = root.entries() else {
        inv.notes.push(Note::new(
            file,
            root.line(),
            "a YAML inventory is a map of groups",
        ));
        return;
    };
    if let Some(m) = root.get("_meta") {
        inv.notes.push(Note::new(
            file,
            m.line(),
            "`ansible-inventory --list` JSON (with `_meta`): import the YAML form instead \
             (`ansible-inventory --list -y`)",
        ));
        return;
    }
    if let Some(p) = root.get("plugin") {
        inv.notes.push(Note::new(
            file,
            p.line(),
            "an inventory plugin config (`plugin:`): a dynamic inventory, not run (run \
             `ansible-inventory -i FILE --list -y > static.yml` and import that file)",
        ));
        return;
    }
    for (name, line, g) in entries {
        yaml_group(inv, file, name, *line, g, 0);
    }
}

fn yaml_group(
    inv: &mut Inventory,
    file: &Path,
    name: &str,
    line: usize,
    g: &yaml::YNode,
    depth: usize,
) {
    inv.group(name, file, line);
    if g.is_null() {
        return;
    }
    if depth > 32 {
        inv.notes
            .push(Note::new(file, line, "groups nested more than 32 deep"));
        return;
    }
    let Some(entries) = g.entries() else {
        inv.notes.push(Note::new(
            file,
            g.line(),
            format!("group `{name}` must be a map (hosts, vars, children)"),
        ));
        return;
    };
    for (k, kline, v) in entries {
        match k.as_str() {
            "hosts" => {
                let what = format!("`{name}.hosts` must be a map of host names");
                let Some(hosts) = map_or_note(inv, file, *kline, v, &what) else {
                    continue;
                };
                for (pattern, hline, hv) in hosts {
                    let names = match expand_pattern(pattern) {
                        Ok(n) => n,
                        Err(e) => {
                            inv.notes.push(Note::new(
                                file,
                                *hline,
                                format!("host pattern `{pattern}`: {e}"),
                            ));
                            continue;
                        }
                    };
                    for h in names {
                        inv.add_host(name, &h, file, *hline);
                        let what = format!("host `{h}`: its vars must be a map");
                        let Some(vars) = map_or_note(inv, file, *hline, hv, &what) else {
                            continue;
                        };
                        for (vk, vl, vv) in vars {
                            let val = yaml_value(&mut inv.notes, file, vk, vv);
                            inv.set_host_var(&h, vk, val, file, *vl);
                        }
                    }
                }
            }
            "vars" => {
                let what = format!("`{name}.vars` must be a map");
                let Some(vars) = map_or_note(inv, file, *kline, v, &what) else {
                    continue;
                };
                for (vk, vl, vv) in vars {
                    let val = yaml_value(&mut inv.notes, file, vk, vv);
                    inv.set_group_var(name, vk, val, file, *vl);
                }
            }
            "children" => {
                let what = format!("`{name}.children` must be a map of groups");
                let Some(children) = map_or_note(inv, file, *kline, v, &what) else {
                    continue;
                };
                for (c, cl, cv) in children {
                    inv.group(name, file, line).children.insert(c.clone());
                    yaml_group(inv, file, c, *cl, cv, depth + 1);
                }
            }
            other => inv.notes.push(Note::new(
                file,
                *kline,
                format!(
                    "`{other}` in group `{name}`: only hosts, vars and children are valid \
                     (Ansible skips it too)"
                ),
            )),
        }
    }
}

/// The entries of a map; `None` for an empty value (nothing to read) and, with a note, for
/// anything that is not a map.
fn map_or_note<'a>(
    inv: &mut Inventory,
    file: &Path,
    line: usize,
    v: &'a yaml::YNode,
    what: &str,
) -> Option<&'a [(String, usize, yaml::YNode)]> {
    if v.is_null() {
        return None;
    }
    let e = v.entries();
    if e.is_none() {
        inv.notes.push(Note::new(file, line, what));
    }
    e
}

/// group_vars/ or host_vars/: `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`, or a directory
/// `NAME/` of such files (read in sorted order, later files winning). A missing directory is
/// fine unless it was named on the command line.
fn vars_dir(
    notes: &mut Vec<Note>,
    dir: &Path,
    given: bool,
) -> Result<Vec<(String, PathBuf, Vars)>, String> {
    if !dir.exists() {
        if given {
            return Err(format!("{}: no such directory", dir.display()));
        }
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for p in dir_files(dir)? {
        let fname = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if p.is_dir() {
            let mut vars = Vars::new();
            for f in walk(&p)? {
                vars.extend(vars_file(notes, &f)?);
            }
            out.push((fname, p.clone(), vars));
            continue;
        }
        let name = match fname.rsplit_once('.') {
            Some((n, "yml" | "yaml" | "json")) => n.to_string(),
            Some(_) => {
                notes.push(Note::new(
                    &p,
                    0,
                    "not .yml, .yaml or .json: Ansible does not read it either",
                ));
                continue;
            }
            None => fname.clone(),
        };
        let vars = vars_file(notes, &p)?;
        out.push((name, p, vars));
    }
    Ok(out)
}

/// The files under a directory, depth first in sorted order (as Ansible reads a vars dir).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in dir_files(dir)? {
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            let n = p.to_string_lossy().to_string();
            if n.ends_with(".yml")
                || n.ends_with(".yaml")
                || n.ends_with(".json")
                || !n.contains('.')
            {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn vars_file(notes: &mut Vec<Note>, f: &Path) -> Result<Vars, String> {
    let text =
        std::fs::read_to_string(f).map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
    let mut vars = Vars::new();
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        notes.push(Note::new(
            f,
            1,
            "a vault-encrypted file: not read (its vars are missing from the import; decrypt a \
             copy with ansible-vault, or keep the secrets in an age file)",
        ));
        return Ok(vars);
    }
    let root = match yaml::parse(&text) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(vars),
        Err((line, e)) => {
            notes.push(Note::new(f, line, format!("not valid YAML, not read: {e}")));
            return Ok(vars);
        }
    };
    let Some(entries) = root.entries() else {
        notes.push(Note::new(
            f,
            root.line(),
            "a vars file must be a map: not read",
        ));
        return Ok(vars);
    };
    for (k, line, v) in entries {
        let value = yaml_value(notes, f, k, v);
        vars.insert(
            k.clone(),
            VarDef {
                value,
                file: f.to_path_buf(),
                line: *line,
            },
        );
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_as_ansible_expands_them() {
        assert_eq!(
            expand_pattern("web[01:03].ex").unwrap(),
            vec!["web01.ex", "web02.ex", "web03.ex"]
        );
        assert_eq!(expand_pattern("h[1:5:2]").unwrap(), vec!["h1", "h3", "h5"]);
        assert_eq!(
            expand_pattern("db-[a:c]").unwrap(),
            vec!["db-a", "db-b", "db-c"]
        );
        assert_eq!(
            expand_pattern("r[1:2]-[a:b]").unwrap(),
            vec!["r1-a", "r1-b", "r2-a", "r2-b"]
        );
        assert_eq!(expand_pattern("plain").unwrap(), vec!["plain"]);
        assert!(expand_pattern("h[5:1]").is_err());
        assert!(expand_pattern("h[1:9:0]").is_err());
        assert!(expand_pattern("h[aa:b]").is_err());
        assert!(expand_pattern("h[1:99999999]").is_err());
        // Ranges multiply: each is small, the product is not.
        assert!(expand_pattern("h[1:9999]-[1:9999]").is_err());
    }

    #[test]
    fn group_order_is_depth_then_priority_then_name() {
        let mut inv = Inventory::default();
        let f = Path::new("i");
        inv.add_host("web", "w1", f, 1);
        inv.add_host("zeta", "w1", f, 2);
        inv.group("prod", f, 3).children.insert("web".into());
        inv.finish();
        // all (0), then prod and zeta (depth 1, by name), then web (depth 2, child of prod).
        assert_eq!(inv.sorted_groups("w1"), vec!["all", "prod", "zeta", "web"]);
        inv.groups.get_mut("prod").unwrap().vars.insert(
            "ansible_group_priority".into(),
            VarDef {
                value: Val::Int(5),
                file: f.into(),
                line: 3,
            },
        );
        assert_eq!(inv.sorted_groups("w1"), vec!["all", "zeta", "prod", "web"]);
    }

    #[test]
    fn env_lookups_and_env_names() {
        assert_eq!(
            env_lookup("{{ lookup('env', 'TG_TOKEN') }}").as_deref(),
            Some("TG_TOKEN")
        );
        assert_eq!(env_lookup("{{ lookup('file', 'x') }}"), None);
        assert_eq!(env_name("db.password"), "DB_PASSWORD");
    }

    #[test]
    fn yaml_inventory_shapes_and_mistakes() {
        let mut inv = Inventory::default();
        let f = Path::new("hosts.yml");
        let text = "all:\n  hosts: [a, b]\n  children:\n    prod:\n      children:\n        web:\n          hosts:\n            web[1:2]:\n              port: 1\n            db: x\n      vars: 5\n    other:\n      weird: 1\n";
        yaml_inventory(&mut inv, f, text);
        inv.finish();
        assert_eq!(inv.order, vec!["web1", "web2", "db"]);
        assert!(inv.groups["prod"].children.contains("web"));
        assert_eq!(inv.hosts["web2"].vars["port"].value, Val::Int(1));
        assert_eq!(inv.hosts["web2"].vars["port"].line, 9);
        let notes: Vec<String> = inv.notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            notes,
            vec![
                "hosts.yml:2: `all.hosts` must be a map of host names",
                "hosts.yml:10: host `db`: its vars must be a map",
                "hosts.yml:11: `prod.vars` must be a map",
                "hosts.yml:13: `weird` in group `other`: only hosts, vars and children are valid (Ansible skips it too)",
            ]
        );
        let mut inv = Inventory::default();
        yaml_inventory(&mut inv, f, "plugin: aws_ec2\n");
        assert!(inv.notes[0].message.contains("dynamic inventory"));
        let mut inv = Inventory::default();
        yaml_inventory(&mut inv, f, "all: {hosts: {a: 1}\n");
        assert!(
            inv.notes[0].message.starts_with("not valid YAML"),
            "{:?}",
            inv.notes
        );
    }
}
