//! `strata node add`: put a new host into the inventory (by inserting text, see
//! `inventory_edit`) and scaffold its `nodes/<name>/vars.yaml`. Every precondition is checked
//! before anything is written; after writing, the repo is loaded again with the normal loader
//! and the new host must be there with exactly the given fields, or the inventory gets its old
//! bytes back and the scaffold is removed. Offline: nothing here connects anywhere.

use crate::config::inventory_edit::{self, yaml_scalar, NewHost};
use crate::config::vars::{self, Val};
use crate::config::{self, Repo};
use crate::error::{Diags, Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct NodeAddArgs {
    /// The new host's name: a-z, 0-9 and '-', starting with a letter, at most 63 characters.
    pub name: String,
    /// Its IP address or DNS name (unique in the inventory; nothing connects to it here).
    pub address: String,
    /// Its region, e.g. eu-central (free text, not empty).
    pub region: String,
    /// Its provider, e.g. ovh.
    pub provider: Option<String>,
    /// A group it joins (repeat, or separate with commas); each must be defined under
    /// `groups:` in the inventory. Default: `validators` when the inventory defines that group;
    /// otherwise --group is required.
    pub groups: Vec<String>,
    /// SSH port for this host (written as `ssh: {port: N}`; default: the inventory's defaults).
    pub port: Option<u16>,
    /// SSH user for this host: the deploy user `strata bootstrap` creates (written as
    /// `ssh: {user: U, become: sudo}`; default: the inventory's defaults).
    pub user: Option<String>,
    /// The ssh destination (`ssh.host`: an ssh_config alias or a DNS name); default: the
    /// address.
    pub host: Option<String>,
    /// `ssh.proxy_jump`: jump hosts (`[user@]host[:port]`, comma-separated), or `none` for a
    /// direct connection whatever the groups and defaults say; default: theirs.
    pub proxy_jump: Option<String>,
}

/// A host name as `node add` accepts it: one DNS label, lower case, starting with a letter.
pub use crate::model::names::new_node_name as check_name;

/// An IP address (v4 or v6), or a DNS name (see `model::names::address`).
pub use crate::model::names::address as check_address;

/// Two inventory addresses name the same host: equal IPs (`::1` and `0::1`), or the same
/// DNS name in any case, with or without a final dot.
pub fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
    }
}

/// A login name as useradd accepts it by default.
use crate::model::names::unix_user as check_user;

/// Free text on one line: not empty, no control characters, no blanks around it.
fn check_text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("may not be empty".into())
    } else if s.chars().any(char::is_control) {
        Err("may not contain control characters".into())
    } else if s.trim() != s {
        Err("may not start or end with blanks".into())
    } else {
        Ok(())
    }
}

/// Paths in messages are shown relative to the repo.
fn rel(root: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// The scaffold: nodes/<name>/vars.yaml with the overrides a new validator typically needs.

/// One commented-out override: its dotted key, the comment explaining it, and its YAML lines
/// under the section (relative indentation).
struct Suggestion {
    key: String,
    comment: Vec<String>,
    yaml: Vec<String>,
}

/// A value as YAML flow text (`[a, b]`, `{type: pool, host: x}`); map keys `type`, `host`,
/// `options` first (the order chrony sources are written in), then the rest sorted.
fn flow(v: &Val) -> String {
    match v {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(x) => {
            let s = x.to_string();
            if s.contains(['.', 'e', 'E']) || !x.is_finite() {
                s
            } else {
                format!("{s}.0")
            }
        }
        Val::Str(s) => yaml_scalar(s),
        Val::List(l) => format!("[{}]", l.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Val::Map(m) => {
            let first = ["type", "host", "options"];
            let mut keys: Vec<&String> = first
                .iter()
                .filter_map(|k| m.get_key_value(*k).map(|(k, _)| k))
                .collect();
            keys.extend(m.keys().filter(|k| !first.contains(&k.as_str())));
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", yaml_scalar(k), flow(&m[*k])))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// The NTP pool zone for a region name, by its first word (`eu-central` -> europe).
fn pool_zone(region: &str) -> Option<&'static str> {
    let r = region.to_ascii_lowercase();
    let first = r.split(['-', '_', ' ', '.']).next().unwrap_or("");
    Some(match first {
        "us" | "ca" | "na" | "mx" | "northamerica" => "north-america",
        "eu" | "europe" | "uk" | "de" | "fr" | "nl" | "fi" | "pl" => "europe",
        "ap" | "asia" | "sg" | "jp" | "kr" | "in" | "hk" | "tw" | "me" | "il" => "asia",
        "sa" | "southamerica" | "br" => "south-america",
        "au" | "nz" | "oc" | "oceania" => "oceania",
        "af" | "africa" | "za" => "africa",
        _ => return None,
    })
}

/// Locked, or above or below a locked key: a node may not override it.
fn is_locked(key: &str, locked: &[String]) -> bool {
    locked
        .iter()
        .any(|l| l == key || l.starts_with(&format!("{key}.")) || key.starts_with(&format!("{l}.")))
}

/// The overrides to suggest, each only if the base defines the key and it is not locked.
fn suggestions(region: &str, base: &Val, locked: &[String]) -> Vec<Suggestion> {
    let mut out = Vec::new();
    let mut add = |key: &str, comment: Vec<String>, yaml: Vec<String>| {
        out.push(Suggestion {
            key: key.into(),
            comment,
            yaml,
        })
    };
    let get = |k: &str| base.get_path(k).filter(|_| !is_locked(k, locked));

    if let Some(v) = get("validator.p2p_port") {
        add(
            "validator.p2p_port",
            vec![
                format!(
                    "P2P port the other validators dial and the firewall opens (base: {}).",
                    flow(v)
                ),
                "Change it if the provider filters or forwards that port.".into(),
            ],
            vec![format!("p2p_port: {}", flow(v))],
        );
    }
    if let Some(v) = get("validator.memory_max") {
        add(
            "validator.memory_max",
            vec![
                format!(
                    "systemd MemoryMax of the validator (base: {}): set it below the",
                    flow(v)
                ),
                "host's RAM, leaving room for the exporters (e.g. 112G on 128 GiB).".into(),
            ],
            vec![format!("memory_max: {}", flow(v))],
        );
    }
    if let Some(v @ Val::List(_)) = get("validator.cpu_affinity") {
        add(
            "validator.cpu_affinity",
            vec![format!(
                "CPUs to pin the validator to, e.g. [\"0-23\"] (base: {}, no pinning).",
                flow(v)
            )],
            vec![format!("cpu_affinity: {}", flow(v))],
        );
    }
    // An empty map in the base is free-form: a node may add any name.
    if let Some(Val::Map(m)) = get("validator.extra_env") {
        if m.is_empty() {
            add(
                "validator.extra_env",
                vec![
                    "Extra environment of the validator process, NAME: value (base: none).".into(),
                ],
                vec!["extra_env:".into(), "  RUST_LOG: info".into()],
            );
        }
    }
    if let Some(Val::List(sources)) = get("chrony.sources") {
        let is_pool = |s: &Val| matches!(s.get_path("type"), Some(Val::Str(t)) if t == "pool");
        let zone = pool_zone(region);
        let pool_host = match zone {
            Some(z) => format!("{z}.pool.ntp.org"),
            None => "pool.ntp.org".into(),
        };
        let mut items = Vec::new();
        // The base's pool entry with the region's zone, then the base's servers.
        if let Some(Val::Map(p)) = sources.iter().find(|s| is_pool(s)) {
            let mut p = p.clone();
            p.insert("host".into(), Val::Str(pool_host.clone()));
            items.push(Val::Map(p));
        }
        items.extend(sources.iter().filter(|s| !is_pool(s)).cloned());
        if items.iter().all(|i| matches!(i, Val::Map(_))) && !items.is_empty() {
            let why = match zone {
                Some(z) => {
                    format!("the pool's {z} zone (from the region `{region}`; check it)")
                }
                None => format!("the global pool (no zone known for the region `{region}`)"),
            };
            let mut yaml = vec!["sources:".to_string()];
            yaml.extend(items.iter().map(|i| format!("  - {}", flow(i))));
            add(
                "chrony.sources",
                vec![
                    "Time sources close to this host; this list replaces the base's list.".into(),
                    format!("Suggested: {why}."),
                ],
                yaml,
            );
        }
    }
    if let Some(v) = get("prometheus.peers_scrape_timeout") {
        add(
            "prometheus.peers_scrape_timeout",
            vec![
                format!(
                    "Scrapes of the other validators cross regions (base: {});",
                    flow(v)
                ),
                "raise it for a far-away region, keeping it below the scrape interval.".into(),
            ],
            vec![format!("peers_scrape_timeout: {}", flow(v))],
        );
    }
    out
}

/// The text of `nodes/<name>/vars.yaml`: a header, then each suggested override commented out
/// (`# ` in front of every line: remove it from a section line and the key's lines to use it).
/// Parsed as it is, the file has no keys, so the base applies until the operator uncomments.
pub fn scaffold(
    name: &str,
    region: &str,
    provider: Option<&str>,
    base: &Val,
    locked: &[String],
) -> String {
    let where_ = match provider {
        Some(p) => format!("{region}, {p}"),
        None => region.to_string(),
    };
    let mut out = format!(
        "# {name} ({where_}): this node's overrides of base-config/vars.yaml.\n\
         # Written by `strata node add`. Every setting below is commented out, so the\n\
         # base applies until you use one: remove the \"# \" in front of its section\n\
         # line (e.g. \"validator:\") and in front of its own lines, then edit the value.\n\
         # `strata vars {name}` shows each value and where it comes from.\n"
    );
    let mut sections: BTreeMap<usize, (String, Vec<Suggestion>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for s in suggestions(region, base, locked) {
        let section = s.key.split('.').next().unwrap_or("").to_string();
        let idx = match order.iter().position(|o| *o == section) {
            Some(i) => i,
            None => {
                order.push(section.clone());
                order.len() - 1
            }
        };
        sections
            .entry(idx)
            .or_insert_with(|| (section, Vec::new()))
            .1
            .push(s);
    }
    for (_, (section, items)) in sections {
        out.push_str(&format!("\n# {section}:\n"));
        for s in items {
            for c in &s.comment {
                out.push_str(&format!("#   # {c}\n"));
            }
            for y in &s.yaml {
                out.push_str(&format!("#   {y}\n"));
            }
        }
    }
    out
}

/// Read a scaffold back: each suggestion's dotted key and the (0-based) lines that make it
/// live once uncommented: its section line, its comment lines, its own lines. The inverse of
/// `scaffold`, used to prove that every suggestion is a valid override.
pub fn scaffold_entries(text: &str) -> Vec<(String, Vec<usize>)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.is_empty()).unwrap_or(0);
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let (mut section, mut header, mut pending) = (String::new(), 0, Vec::new());
    for (i, l) in lines.iter().enumerate().skip(start) {
        let Some(rest) = l.strip_prefix("# ") else {
            continue;
        };
        if !rest.starts_with(' ') {
            section = rest.trim_end_matches(':').to_string();
            header = i;
        } else if rest.starts_with("  # ") {
            pending.push(i);
        } else if rest.starts_with("    ") {
            if let Some(last) = out.last_mut() {
                last.1.push(i);
            }
        } else {
            let key = rest.trim().split(':').next().unwrap_or("");
            let mut idx = vec![header];
            idx.append(&mut pending);
            idx.push(i);
            out.push((format!("{section}.{key}"), idx));
        }
    }
    out
}

/// `text` with the leading `# ` removed from `which` lines (see `scaffold_entries`).
pub fn uncomment(text: &str, which: &[usize]) -> String {
    let mut s = text
        .lines()
        .enumerate()
        .map(|(i, l)| match l.strip_prefix("# ") {
            Some(rest) if which.contains(&i) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsynced, renamed
/// over it (keeping the old file's permissions), then the directory fsynced. With `expect`,
/// refuse if the file no longer holds exactly those bytes (someone edited it meanwhile).
fn write_atomic(path: &Path, bytes: &[u8], expect: Option<&[u8]>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".strata-tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    let perms = match fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            fs::Permissions::from_mode(0o644)
        }
    };
    tmp.as_file().set_permissions(perms)?;
    tmp.as_file().sync_all()?;
    if let Some(expect) = expect {
        if fs::read(path)? != expect {
            return Err(Error::Local(format!(
                "{} changed on disk while node add ran; nothing was written",
                path.display()
            )));
        }
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What `commit` puts on disk.
pub struct Plan<'a> {
    /// The inventory file (symlinks resolved), its bytes as read, and its new text.
    pub inventory: &'a Path,
    pub old: &'a [u8],
    pub new: &'a str,
    /// `nodes/` and the scaffold's text.
    pub nodes_dir: &'a Path,
    pub node_name: &'a str,
    pub scaffold: &'a str,
}

/// Write the inventory and the scaffold, then run `verify`; if writing the scaffold or the
/// verification fails, put the inventory's old bytes back and remove what was created.
pub fn commit(p: &Plan, verify: impl FnOnce() -> Result<(), String>) -> Result<()> {
    write_atomic(p.inventory, p.new.as_bytes(), Some(p.old))?;
    let created_nodes_dir = !p.nodes_dir.exists();
    let node_dir = p.nodes_dir.join(p.node_name);
    let mut created_node_dir = false;
    let scaffolded = (|| -> Result<()> {
        fs::create_dir_all(p.nodes_dir)?;
        // Fails if it appeared since the checks: then it is not ours to write or remove.
        fs::create_dir(&node_dir)?;
        created_node_dir = true;
        write_atomic(&node_dir.join("vars.yaml"), p.scaffold.as_bytes(), None)
    })();
    let failure = match scaffolded {
        Err(e) => Some(format!(
            "cannot write {}: {e}",
            node_dir.join("vars.yaml").display()
        )),
        Ok(()) => verify().err(),
    };
    let Some(why) = failure else {
        return Ok(());
    };
    // Undo: the inventory's old bytes, then only what this run created.
    let restored = write_atomic(p.inventory, p.old, None);
    if created_node_dir {
        let _ = fs::remove_file(node_dir.join("vars.yaml"));
        let _ = fs::remove_dir(&node_dir);
    }
    if created_nodes_dir {
        let _ = fs::remove_dir(p.nodes_dir);
    }
    match restored {
        Ok(()) => {
            return Err(Error::Local(format!(
                "{why}\nnode add: {} has its previous content again{}; nothing changed",
                p.inventory.display(),
                if created_node_dir {
                    format!(" and {} was removed", node_dir.display())
                } else {
                    String::new()
                }
            )))
        }
        Err(e) => {
            return Err(Error::Local(format!(
                "{why}\nnode add: could not restore {}: {e}; its previous content was:\n{}",
                p.inventory.display(),
                String::from_utf8_lossy(p.old)
            )))
        }
    }
}

/// After the write: the repo loads with the normal loader, the new host has exactly the given
/// fields, every other host is as before, and the new node's vars merge with the base.
fn verify(root: &Path, inventory: Option<&Path>, h: &NewHost, before: &Repo) -> Result<(), String> {
    let repo = Repo::load(root, inventory)
        .map_err(|d| format!("the repo does not load after the edit:\n{}", Diags(d)))?;
    let inv = repo.inventory_file.display().to_string();
    let got = repo
        .host(&h.name)
        .ok_or_else(|| format!("{inv}: `{}` is not among the hosts after the edit", h.name))?;
    let mut wrong = Vec::new();
    if got.address != h.address {
        wrong.push(format!("address is {}", got.address));
    }
    if got.groups != h.groups {
        wrong.push(format!("groups are {:?}", got.groups));
    }
    if got.region != h.region {
        wrong.push(format!("region is {:?}", got.region));
    }
    if got.provider != h.provider.clone().unwrap_or_default() {
        wrong.push(format!("provider is {:?}", got.provider));
    }
    if !got.labels.is_empty() {
        wrong.push(format!("labels are {:?}", got.labels));
    }
    if h.port.is_some_and(|p| p != got.ssh.port) {
        wrong.push(format!("ssh port is {}", got.ssh.port));
    }
    if h.user.as_ref().is_some_and(|u| *u != got.ssh.user) {
        wrong.push(format!("ssh user is {}", got.ssh.user));
    }
    if got.ssh.host != h.host {
        wrong.push(format!("ssh host is {:?}", got.ssh.host));
    }
    // `none` is a direct connection: no jump hosts at all.
    if let Some(j) = &h.proxy_jump {
        let want = (j != "none").then_some(j);
        if got.ssh.proxy_jump.as_ref() != want {
            wrong.push(format!("ssh proxy_jump is {:?}", got.ssh.proxy_jump));
        }
    }
    if repo.hosts.len() != before.hosts.len() + 1 {
        wrong.push(format!(
            "the inventory has {} hosts instead of {}",
            repo.hosts.len(),
            before.hosts.len() + 1
        ));
    }
    for b in &before.hosts {
        let same = repo.host(&b.name).is_some_and(|a| {
            a.address == b.address
                && a.groups == b.groups
                && a.region == b.region
                && a.provider == b.provider
                && a.labels == b.labels
                && a.ssh == b.ssh
        });
        if !same {
            wrong.push(format!("host `{}` changed", b.name));
        }
    }
    if repo.groups.keys().ne(before.groups.keys()) {
        wrong.push("the groups changed".into());
    }
    if !wrong.is_empty() {
        return Err(format!(
            "{inv}: after the edit, `{}` does not read back as given: {}",
            h.name,
            wrong.join("; ")
        ));
    }
    let Some(node_layer) = repo.node_vars.get(&h.name) else {
        return Err(format!("nodes/{}/vars.yaml was not loaded", h.name));
    };
    let mut layers = config::group_layers(&repo, got);
    layers.push(node_layer);
    vars::merge(&repo.base, &repo.locked, &layers).map_err(|d| {
        format!(
            "{}'s vars do not merge with the base:\n{}",
            h.name,
            Diags(d)
        )
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The command.

pub fn add(root: &Path, inventory: Option<&Path>, a: NodeAddArgs) -> Result<String> {
    let inv_path = config::inventory_path(root, inventory);
    let inv_rel = rel(root, &inv_path);
    let inv = inv_rel.display().to_string();
    let mut problems: Vec<String> = Vec::new();

    // The arguments on their own.
    let name_ok = match check_name(&a.name) {
        Ok(()) => true,
        Err(e) => {
            problems.push(format!("NAME `{}` {e}", a.name));
            false
        }
    };
    if let Err(e) = check_address(&a.address) {
        problems.push(format!("--address `{}` {e}", a.address));
    }
    if let Err(e) = check_text(&a.region) {
        problems.push(format!("--region {e}"));
    }
    if let Some(p) = &a.provider {
        if let Err(e) = check_text(p) {
            problems.push(format!("--provider {e}"));
        }
    }
    if a.port == Some(0) {
        problems.push("--port must be 1 to 65535".into());
    }
    if let Some(u) = &a.user {
        if let Err(e) = check_user(u) {
            problems.push(format!("--user `{u}` {e}"));
        }
    }
    if let Some(h) = &a.host {
        if let Err(e) = crate::model::names::ssh_host(h) {
            problems.push(format!("--host `{h}` {e}"));
        }
    }
    if let Some(j) = a.proxy_jump.as_deref().filter(|j| *j != "none") {
        if let Err(e) = crate::model::names::proxy_jump(j) {
            problems.push(format!("--proxy-jump `{j}` {e}"));
        }
    }
    for (i, g) in a.groups.iter().enumerate() {
        if a.groups[..i].contains(g) {
            problems.push(format!("--group `{g}` is given twice"));
        }
    }

    // nodes/NAME must not exist: node add writes it and never overwrites one.
    let nodes_dir = root.join("nodes");
    let node_dir = nodes_dir.join(&a.name);
    let node_rel = rel(root, &node_dir);
    let node_dir_exists = name_ok && node_dir.symlink_metadata().is_ok();
    if node_dir_exists {
        problems.push(format!(
            "{}: already exists; node add writes a new {}/vars.yaml and never overwrites one \
             (move it away, run node add, then merge your settings into the new file)",
            node_rel.display(),
            node_rel.display()
        ));
    }

    // The repo as it is: it must load.
    let repo = match Repo::load(root, inventory) {
        Ok(r) => Some(r),
        Err(diags) => {
            for d in diags {
                // Said better above.
                if node_dir_exists && d.file.starts_with(&node_rel) {
                    continue;
                }
                problems.push(d.to_string());
            }
            None
        }
    };

    let mut groups = a.groups.clone();
    if let Some(repo) = &repo {
        let known: Vec<&str> = repo.groups.keys().map(String::as_str).collect();
        let known_list = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        if groups.is_empty() {
            if repo.groups.contains_key("validators") {
                groups.push("validators".into());
            } else {
                problems.push(format!(
                    "{inv}: no `validators` group to put `{}` in by default: name its groups with --group (known groups: {known_list})",
                    a.name
                ));
            }
        }
        for g in &a.groups {
            if !repo.groups.contains_key(g) {
                problems.push(format!(
                    "{inv}: group `{g}` is not defined under `groups` (known groups: {known_list})"
                ));
            }
        }
        if let Some(h) = repo.host(&a.name) {
            problems.push(format!(
                "{inv}:{}: host `{}` is already in the inventory",
                h.line, a.name
            ));
        }
        for h in &repo.hosts {
            if same_address(&h.address, &a.address) {
                problems.push(format!(
                    "{inv}:{}: address {} is already used by host `{}`",
                    h.line, h.address, h.name
                ));
            }
        }
    }

    // The text edit itself (refuses shapes it does not understand).
    let host = NewHost {
        name: a.name.clone(),
        address: a.address.clone(),
        groups: if groups.is_empty() {
            vec!["validators".into()]
        } else {
            groups.clone()
        },
        region: a.region.clone(),
        provider: a.provider.clone(),
        port: a.port,
        user: a.user.clone(),
        host: a.host.clone(),
        proxy_jump: a.proxy_jump.clone(),
    };
    let old = fs::read(&inv_path);
    let edit = match &old {
        Err(e) => {
            problems.push(format!("{inv}: cannot read: {e}"));
            None
        }
        Ok(bytes) => match std::str::from_utf8(bytes) {
            Err(_) => {
                problems.push(format!("{inv}: is not UTF-8 text"));
                None
            }
            Ok(text) => match inventory_edit::add_host(text, &host) {
                Ok(e) => Some(e),
                Err(r) => {
                    let at = if r.line == 0 {
                        inv.clone()
                    } else {
                        format!("{inv}:{}", r.line)
                    };
                    // A duplicate name was reported above when the repo loaded.
                    let said = repo.is_some() && repo.as_ref().unwrap().host(&a.name).is_some();
                    if !said {
                        problems.push(format!("{at}: {}", r.message));
                    }
                    None
                }
            },
        },
    };

    let (Some(repo), Some(edit), Ok(old), true) = (repo, edit, old, problems.is_empty()) else {
        let n = problems.len();
        let mut msg = String::new();
        for p in &problems {
            msg.push_str(&format!("error: {p}\n"));
        }
        msg.push_str(&format!(
            "node add refused: {n} problem{}; nothing was written",
            if n == 1 { "" } else { "s" }
        ));
        return Err(Error::Problems(msg));
    };

    // Write, reload, verify (or undo).
    let target = fs::canonicalize(&inv_path)?;
    let text = scaffold(
        &a.name,
        &a.region,
        a.provider.as_deref(),
        &repo.base.value,
        &repo.locked,
    );
    commit(
        &Plan {
            inventory: &target,
            old: &old,
            new: &edit.text,
            nodes_dir: &nodes_dir,
            node_name: &a.name,
            scaffold: &text,
        },
        || verify(root, inventory, &host, &repo),
    )?;

    // Report.
    let nl = if edit.text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let entry: Vec<&str> = edit
        .text
        .split(nl)
        .skip(edit.first_line - 1)
        .take(edit.last_line - edit.first_line + 1)
        .collect();
    let mut out = String::new();
    writeln!(
        out,
        "added {} to {}, lines {}-{}:",
        a.name, inv, edit.first_line, edit.last_line
    )?;
    for l in entry {
        writeln!(out, "{l}")?;
    }
    writeln!(
        out,
        "wrote {}/vars.yaml: suggested overrides, all commented out (the base applies until you uncomment one)",
        node_rel.display()
    )?;
    let mut strata = String::from("strata");
    if root != Path::new(".") {
        strata.push_str(&format!(" --repo {}", root.display()));
    }
    if let Some(i) = inventory {
        strata.push_str(&format!(" --inventory {}", i.display()));
    }
    let steps = [
        (
            format!("{strata} check"),
            format!("renders every node with {} in the fleet", a.name),
        ),
        (
            format!("{strata} bootstrap {}", a.name),
            "first contact with the new host, then its full apply".into(),
        ),
        (
            format!("{strata} plan"),
            "the other nodes' fleet-wide configs (peers, scrape targets, firewall) change too"
                .into(),
        ),
    ];
    let w = steps.iter().map(|s| s.0.len()).max().unwrap_or(0);
    writeln!(out, "\nnext steps:")?;
    for (cmd, why) in steps {
        writeln!(out, "  {cmd:w$}  # {why}")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_users() {
        assert!(check_name("validator-4").is_ok());
        assert!(check_name(&"a".repeat(63)).is_ok());
        for bad in ["", "4validator", "-a", "a-", "Val", "a.b", "a_b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(64)).is_err());
        // Addresses: model::names::address, tested there.
        assert!(same_address("::1", "0:0::1"));
        assert!(same_address("Node.Example.org.", "node.example.org"));
        assert!(!same_address("10.77.4.2", "10.77.4.20"));
        assert!(check_user("deploy").is_ok() && check_user("_svc-1").is_ok());
        assert!(check_user("Root").is_err() && check_user("1x").is_err());
        assert!(check_text("eu-central").is_ok());
        assert!(
            check_text("").is_err() && check_text(" x").is_err() && check_text("a\nb").is_err()
        );
    }

    #[test]
    fn pool_zones_from_region_names() {
        assert_eq!(pool_zone("eu-central"), Some("europe"));
        assert_eq!(pool_zone("us-east"), Some("north-america"));
        assert_eq!(pool_zone("ap-southeast"), Some("asia"));
        assert_eq!(pool_zone("lab-a"), None);
    }

    fn example_base() -> (crate::config::vars::Layer, Vec<String>) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = fs::read_to_string(root.join("base-config/vars.yaml")).unwrap();
        let node = crate::config::yaml::parse(Path::new("base"), &text).unwrap();
        let map = node.as_mapping().unwrap();
        let base = crate::config::vars::Layer::from_node(
            "base",
            Path::new("base"),
            map.get_node("vars").unwrap(),
        );
        let locked = map
            .get_node("locked")
            .and_then(|l| l.as_sequence())
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.as_scalar())
                    .map(|s| s.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default();
        (base, locked)
    }

    #[test]
    fn scaffold_is_empty_yaml_and_each_suggestion_is_a_valid_override() {
        let (base, locked) = example_base();
        let text = scaffold(
            "validator-4",
            "eu-central",
            Some("ovh"),
            &base.value,
            &locked,
        );
        let layer = vars::layer_from_str("node", Path::new("n"), &text).unwrap();
        assert_eq!(layer.value, Val::Map(BTreeMap::new()), "{text}");
        assert!(
            text.lines().all(|l| l.is_empty() || l.starts_with('#')),
            "every line is commented out:\n{text}"
        );
        let all = scaffold_entries(&text);
        let keys: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            keys,
            [
                "validator.p2p_port",
                "validator.memory_max",
                "validator.cpu_affinity",
                "validator.extra_env",
                "chrony.sources",
                "prometheus.peers_scrape_timeout"
            ]
        );
        let mut every = Vec::new();
        for (key, idx) in &all {
            every.extend(idx.iter().copied());
            let one = uncomment(&text, idx);
            let layer = vars::layer_from_str("node", Path::new("n"), &one)
                .unwrap_or_else(|d| panic!("{key}: {d}\n{one}"));
            assert!(
                layer.value.get_path(key).is_some(),
                "{key} not set by:\n{one}"
            );
            vars::merge(&base, &locked, &[&layer]).unwrap_or_else(|d| panic!("{key}: {d:?}"));
        }
        let layer =
            vars::layer_from_str("node", Path::new("n"), &uncomment(&text, &every)).unwrap();
        let merged = vars::merge(&base, &locked, &[&layer]).unwrap();
        let sources = merged.value.get_path("chrony.sources").unwrap().to_string();
        assert!(sources.contains("europe.pool.ntp.org"), "{sources}");
    }

    #[test]
    fn scaffold_leaves_out_keys_the_base_lacks_or_locks() {
        let base = vars::layer_from_str(
            "base",
            Path::new("b"),
            "validator:\n  p2p_port: 9000\n  memory_max: 8G\nchrony:\n  sources: [{type: server, host: a}]\n",
        )
        .unwrap();
        let text = scaffold(
            "n-1",
            "lab",
            None,
            &base.value,
            &["validator.memory_max".into()],
        );
        let keys: Vec<String> = scaffold_entries(&text).into_iter().map(|e| e.0).collect();
        assert_eq!(keys, ["validator.p2p_port", "chrony.sources"]);
        assert!(text.contains("#   p2p_port: 9000\n"), "{text}");
        assert!(text.starts_with("# n-1 (lab): "), "{text}");
        // No pool in the base: only its servers are suggested.
        assert!(text.contains("#     - {type: server, host: a}\n"), "{text}");
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let inv = d.path().join("hosts.yaml");
        fs::write(&inv, "hosts: {}\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&inv, fs::Permissions::from_mode(0o640)).unwrap();
        let nodes = d.path().join("nodes");
        (d, inv, nodes)
    }

    #[test]
    fn commit_writes_both_and_keeps_the_mode() {
        let (_d, inv, nodes) = setup();
        let p = Plan {
            inventory: &inv,
            old: b"hosts: {}\n",
            new: "hosts:\n  a-1: {address: x}\n",
            nodes_dir: &nodes,
            node_name: "a-1",
            scaffold: "# a-1\n",
        };
        commit(&p, || Ok(())).unwrap();
        assert_eq!(fs::read_to_string(&inv).unwrap(), p.new);
        assert_eq!(
            fs::read_to_string(nodes.join("a-1/vars.yaml")).unwrap(),
            "# a-1\n"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&inv).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(inv.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn commit_restores_the_old_bytes_when_the_reload_fails() {
        let (_d, inv, nodes) = setup();
        let p = Plan {
            inventory: &inv,
            old: b"hosts: {}\n",
            new: "hosts:\n  a-1: {address: x}\n",
            nodes_dir: &nodes,
            node_name: "a-1",
            scaffold: "# a-1\n",
        };
        let mut saw = String::new();
        let e = commit(&p, || {
            // The new text is in place while verifying.
            saw = fs::read_to_string(&inv).unwrap();
            Err("the host did not read back".into())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(saw, p.new);
        assert!(
            e.contains("the host did not read back") && e.contains("previous content"),
            "{e}"
        );
        assert_eq!(fs::read(&inv).unwrap(), b"hosts: {}\n");
        assert!(!nodes.exists(), "nodes/ created by this run is removed");
    }

    #[test]
    fn commit_leaves_a_node_directory_that_appeared_meanwhile_alone() {
        let (_d, inv, nodes) = setup();
        fs::create_dir_all(nodes.join("a-1")).unwrap();
        fs::write(nodes.join("a-1/vars.yaml"), "theirs\n").unwrap();
        let p = Plan {
            inventory: &inv,
            old: b"hosts: {}\n",
            new: "hosts:\n  a-1: {address: x}\n",
            nodes_dir: &nodes,
            node_name: "a-1",
            scaffold: "# a-1\n",
        };
        let e = commit(&p, || Ok(())).unwrap_err().to_string();
        assert!(
            e.contains("cannot write") && e.contains("previous content"),
            "{e}"
        );
        assert_eq!(fs::read(&inv).unwrap(), b"hosts: {}\n");
        assert_eq!(
            fs::read_to_string(nodes.join("a-1/vars.yaml")).unwrap(),
            "theirs\n"
        );
    }

    #[test]
    fn commit_refuses_a_file_changed_meanwhile() {
        let (_d, inv, nodes) = setup();
        let p = Plan {
            inventory: &inv,
            old: b"hosts: {}   # as read before\n",
            new: "hosts:\n  a-1: {address: x}\n",
            nodes_dir: &nodes,
            node_name: "a-1",
            scaffold: "",
        };
        let e = commit(&p, || Ok(())).unwrap_err().to_string();
        assert!(e.contains("changed on disk"), "{e}");
        assert_eq!(fs::read(&inv).unwrap(), b"hosts: {}\n");
        assert!(!nodes.exists());
    }
}
