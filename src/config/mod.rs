//! Loading the repo: inventory, base config, node overrides, modules. Every problem found is
//! collected as a `Diag` naming file, line and key; nothing here touches the network.

pub mod ansible;
pub mod inventory_edit;
pub mod ssh_config;
pub mod vars;
pub mod yaml;

use crate::config::vars::{Layer, Val};
use crate::error::Diag;
use crate::model::{names, HealthCheck, HostKeyChecking, SshSettings};
use marked_yaml::Node;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    groups: BTreeMap<String, GroupSpec>,
    #[serde(default)]
    hosts: BTreeMap<String, HostSpec>,
    /// Fleet-wide exclusive services (see `Exclusive`).
    #[serde(default)]
    exclusive: BTreeMap<String, ExclusiveSpec>,
}

/// `exclusive: {validators: {service: monad-validator, active: validator-1}}`: a service
/// that may be active on at most one node of the set (every node that declares it).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ExclusiveSpec {
    service: String,
    active: String,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    fence: BTreeMap<String, String>,
}

/// One exclusive set as loaded, with the lines its diagnostics name.
#[derive(Debug, Clone)]
pub struct Exclusive {
    pub name: String,
    pub service: String,
    /// The one node that may run the service (the reviewed one-line change of a failover).
    pub active: String,
    /// Ports the service listens on: a failover checks them closed on the old node.
    pub ports: Vec<u16>,
    /// Per node: a command run on the operator's machine to fence it (power off, cut off)
    /// when a failover finds it unreachable.
    pub fence: BTreeMap<String, String>,
    pub line: usize,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    #[serde(default)]
    ssh: SshSpec,
    /// Applied revisions each node keeps (backups, stored desired state, history); at least 2
    /// so `strata rollback` always has the previous one.
    keep_revisions: Option<usize>,
    /// Deadlines of the remote steps (see `model::Timeouts`).
    #[serde(default)]
    timeouts: crate::model::Timeouts,
}

pub use crate::model::DEFAULT_KEEP_REVISIONS;

/// SSH settings as written; every field optional so hosts can override a subset.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub host_key_checking: Option<String>,
    #[serde(rename = "become")]
    pub become_: Option<String>,
    pub connect_timeout: Option<u64>,
    /// Keep the node's SSH master this many seconds after a command, for the next one
    /// (opt-in; ignored when CI is set, see transport::persist).
    pub persist: Option<u64>,
    /// The ssh destination (an ssh_config alias or a DNS name); per host only.
    pub host: Option<String>,
    /// `ssh -J` hops; `none` undoes a default or group's.
    pub proxy_jump: Option<String>,
    /// An ssh_config file passed as `-F` (relative to the repo).
    pub config_file: Option<String>,
}

/// A group's SSH settings: only how its nodes are reached through a bastion.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct GroupSsh {
    pub proxy_jump: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(default)]
    pub modules: Vec<String>,
    pub serial: Option<usize>,
    /// Nodes of the group applied first and soaked before the rest (default 0: none).
    pub canary: Option<usize>,
    /// Seconds the canaries are watched before the rest go on (default 0).
    pub soak_secs: Option<u64>,
    /// Seconds between health checks during the soak (default 10).
    pub soak_check_secs: Option<u64>,
    /// `push`: artifacts are fetched on the operator's machine and sent over SSH (nodes
    /// that cannot reach the URL); `node`: the node downloads them. Default: the module's.
    pub artifact_fetch: Option<String>,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    #[serde(default)]
    pub ssh: GroupSsh,
    /// Group vars: parsed separately (with lines) from the raw node.
    #[serde(default, skip_deserializing)]
    pub vars_present: bool,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct HostSpec {
    address: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    region: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ssh: SshSpec,
}

/// One host of the inventory, resolved against the defaults.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    pub region: String,
    pub provider: String,
    pub labels: BTreeMap<String, String>,
    pub ssh: SshSettings,
    pub keep_revisions: usize,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub modules: Vec<String>,
    pub serial: usize,
    pub canary: usize,
    pub soak_secs: u64,
    pub soak_check_secs: u64,
    /// `artifact_fetch`: Some(true) push, Some(false) node, None the module's setting.
    pub artifact_push: Option<bool>,
    pub health: HealthCheck,
    pub vars: Option<Layer>,
    pub line: usize,
}

/// A module as loaded: its parsed (unrendered) module.yaml and where its templates live.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub file: PathBuf,
    pub dir: PathBuf,
    pub node: Node,
}

/// The whole repo, loaded and checked for shape; rendering happens per node later.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
    pub inventory_file: PathBuf,
    pub hosts: Vec<Host>,
    pub groups: BTreeMap<String, Group>,
    pub base: Layer,
    pub locked: Vec<String>,
    pub node_vars: BTreeMap<String, Layer>,
    pub modules: BTreeMap<String, Module>,
    pub exclusive: BTreeMap<String, Exclusive>,
}

/// Paths in diagnostics are shown relative to the repo, as the user wrote them.
fn rel(root: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

fn read(root: &Path, path: &Path) -> Result<String, Diag> {
    std::fs::read_to_string(path)
        .map_err(|e| Diag::new(rel(root, path), 0, "", format!("cannot read: {e}")))
}

/// The inventory file: `--inventory` (relative to the repo: the inventory is part of it), or
/// `inventory/hosts.yaml`.
pub fn inventory_path(root: &Path, inventory: Option<&Path>) -> PathBuf {
    match inventory {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => root.join(p),
        None => root.join("inventory/hosts.yaml"),
    }
}

impl Repo {
    /// Load everything; on failure return every problem found.
    pub fn load(root: &Path, inventory: Option<&Path>) -> Result<Repo, Vec<Diag>> {
        let mut errs = Vec::new();
        let inventory_path = inventory_path(root, inventory);
        let inv_rel = rel(root, &inventory_path);

        let loaded = load_inventory(root, &inventory_path, &inv_rel);
        // A node directory is checked against the hosts only when the inventory was read
        // (an empty one included: then every node directory is one it does not name).
        let inventory_read = loaded.is_ok();
        let (hosts, groups, exclusive) = match loaded {
            Ok(v) => v,
            Err(mut e) => {
                errs.append(&mut e);
                (Vec::new(), BTreeMap::new(), BTreeMap::new())
            }
        };

        let base_path = root.join("base-config/vars.yaml");
        let base_rel = rel(root, &base_path);
        let (base, locked) = match load_base(root, &base_path, &base_rel) {
            Ok(v) => v,
            Err(mut e) => {
                errs.append(&mut e);
                (
                    Layer::from_node("base", &base_rel, &empty_map()),
                    Vec::new(),
                )
            }
        };

        let mut node_vars = BTreeMap::new();
        let nodes_dir = root.join("nodes");
        // Every entry of nodes/ is a node's directory and its overrides are vars.yaml: an
        // override that is there but cannot be read is an error, never silently the base.
        let entries = match std::fs::read_dir(&nodes_dir) {
            Ok(rd) => rd.map(|e| e.map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(e),
        };
        let mut names: Vec<PathBuf> = entries.unwrap_or_else(|e| {
            errs.push(Diag::new(
                rel(root, &nodes_dir),
                0,
                "nodes",
                format!("cannot read: {e}"),
            ));
            vec![]
        });
        names.sort();
        for dir in names {
            let name = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.starts_with('.') {
                continue;
            }
            if !dir.is_dir() {
                errs.push(Diag::new(
                    rel(root, &dir),
                    0,
                    &name,
                    "not a directory: each entry of nodes/ is a node's directory holding its vars.yaml",
                ));
                continue;
            }
            let file = dir.join("vars.yaml");
            let file_rel = rel(root, &file);
            if !hosts.iter().any(|h| h.name == name) && inventory_read {
                errs.push(Diag::new(
                    &file_rel,
                    0,
                    &name,
                    format!(
                        "node `{name}` is not in the inventory {}",
                        inv_rel.display()
                    ),
                ));
                continue;
            }
            if std::fs::symlink_metadata(&file).is_err() {
                // A misnamed override would be silently ignored: say which name counts.
                for other in ["vars.yml", "vars.YAML", "vars.json", "vars"] {
                    if std::fs::symlink_metadata(dir.join(other)).is_ok() {
                        errs.push(Diag::new(
                            rel(root, &dir.join(other)),
                            0,
                            &name,
                            "a node's overrides are read from vars.yaml only (rename it)",
                        ));
                    }
                }
                continue;
            }
            match read(root, &file).and_then(|t| yaml::parse(&file_rel, &t)) {
                Ok(node) => {
                    node_vars.insert(name, Layer::from_node("node", &file_rel, &node));
                }
                Err(d) => errs.push(d),
            }
        }

        let mut modules = BTreeMap::new();
        let mut wanted: Vec<(&str, &Group)> = Vec::new();
        for g in groups.values() {
            for m in &g.modules {
                wanted.push((m, g));
            }
        }
        for (m, g) in wanted {
            if modules.contains_key(m) {
                continue;
            }
            let dir = root.join("modules").join(m);
            let file = dir.join("module.yaml");
            // An invalid name was reported by the inventory check; never joined to a path.
            if names::module_name(m).is_err() || !file.exists() {
                errs.push(Diag::new(
                    &inv_rel,
                    g.line,
                    format!("groups.{}.modules", g.name),
                    format!(
                        "module `{m}` does not exist (no {})",
                        rel(root, &file).display()
                    ),
                ));
                continue;
            }
            let file_rel = rel(root, &file);
            match read(root, &file).and_then(|t| yaml::parse(&file_rel, &t)) {
                Ok(node) => {
                    modules.insert(
                        m.to_string(),
                        Module {
                            name: m.to_string(),
                            file: file_rel,
                            dir,
                            node,
                        },
                    );
                }
                Err(d) => errs.push(d),
            }
        }

        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Repo {
            root: root.to_path_buf(),
            inventory_file: inv_rel,
            hosts,
            groups,
            base,
            locked,
            node_vars,
            modules,
            exclusive,
        })
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

fn empty_map() -> Node {
    yaml::parse(Path::new(""), "").expect("empty map parses")
}

fn load_base(root: &Path, path: &Path, file: &Path) -> Result<(Layer, Vec<String>), Vec<Diag>> {
    let text = read(root, path).map_err(|d| vec![d])?;
    let node = yaml::parse(file, &text).map_err(|d| vec![d])?;
    let map = node.as_mapping().expect("top level is a mapping");
    let mut errs = Vec::new();
    for (k, _) in map.iter() {
        if !matches!(k.as_str(), "vars" | "locked") {
            errs.push(Diag::new(
                file,
                k.span().start().map(|m| m.line()).unwrap_or(0),
                k.as_str(),
                "unknown top-level key (expected `vars` and `locked`)",
            ));
        }
    }
    let vars_node = map.get_node("vars").cloned().unwrap_or_else(empty_map);
    if vars_node.as_mapping().is_none() {
        errs.push(Diag::new(
            file,
            yaml::line(&vars_node),
            "vars",
            "must be a map",
        ));
    }
    if let Some(vars) = vars_node.as_mapping() {
        for (k, _) in vars.iter() {
            if vars::RESERVED.contains(&k.as_str()) {
                errs.push(Diag::new(
                    file,
                    k.span().start().map(|m| m.line()).unwrap_or(0),
                    k.as_str(),
                    format!(
                        "`{}` is a name templates reserve (strata's `node`, `nodes`, `groups`, \
                         and template functions like `env`, `file`, `range`); rename this var",
                        k.as_str()
                    ),
                ));
            }
        }
    }
    let base = Layer::from_node("base", file, &vars_node);
    let mut locked = Vec::new();
    if let Some(l) = map.get_node("locked") {
        match yaml::typed::<Vec<String>>(file, l, "locked") {
            Ok(keys) => {
                for k in keys {
                    if base.value.get_path(&k).is_none() {
                        errs.push(Diag::new(
                            file,
                            yaml::line(l),
                            "locked",
                            format!("locked key `{k}` is not defined under `vars`"),
                        ));
                    }
                    locked.push(k);
                }
            }
            Err(d) => errs.push(d),
        }
    }
    if errs.is_empty() {
        Ok((base, locked))
    } else {
        Err(errs)
    }
}

fn load_inventory(
    root: &Path,
    path: &Path,
    file: &Path,
) -> Result<
    (
        Vec<Host>,
        BTreeMap<String, Group>,
        BTreeMap<String, Exclusive>,
    ),
    Vec<Diag>,
> {
    let text = read(root, path).map_err(|d| vec![d])?;
    let node = yaml::parse(file, &text).map_err(|d| vec![d])?;
    let map = node.as_mapping().expect("top level is a mapping");
    let mut errs = Vec::new();

    // Group vars are free-form (checked against the base later), so lift them out before the
    // typed parse, keeping their lines.
    let mut group_vars: BTreeMap<String, Layer> = BTreeMap::new();
    let mut stripped = node.clone();
    if let Some(groups) = stripped
        .as_mapping_mut()
        .and_then(|m| m.get_mut("groups"))
        .and_then(|g| g.as_mapping_mut())
    {
        for (gname, g) in groups.iter_mut() {
            if let Some(gm) = g.as_mapping_mut() {
                if let Some(v) = gm.remove("vars") {
                    group_vars.insert(
                        gname.as_str().to_string(),
                        Layer::from_node(&format!("group {}", gname.as_str()), file, &v),
                    );
                }
            }
        }
    }
    // Prefix group var lines with nothing: their dotted keys are relative to the vars map.
    let inv: InventoryFile = match yaml::typed(file, &stripped, "inventory") {
        Ok(i) => i,
        Err(d) => return Err(vec![d]),
    };
    let line_of = |section: &str, name: &str| -> usize {
        map.get_mapping(section)
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == name))
            .and_then(|(k, _)| k.span().start().map(|m| m.line()))
            .unwrap_or(0)
    };

    let t = &inv.defaults.timeouts;
    for (k, v) in [
        ("probe", t.probe),
        ("lock", t.lock),
        ("changes", t.changes),
        ("handlers", t.handlers),
        ("step", t.step),
    ] {
        if v == 0 {
            errs.push(Diag::new(
                file,
                line_of("defaults", "timeouts"),
                format!("defaults.timeouts.{k}"),
                "a deadline must be at least 1 second",
            ));
        }
    }

    check_ssh(
        &mut errs,
        file,
        &node,
        &["defaults", "ssh"],
        &inv.defaults.ssh,
    );
    if inv.defaults.ssh.host.is_some() {
        errs.push(Diag::new(
            file,
            line_at(&node, &["defaults", "ssh", "host"]),
            "defaults.ssh.host",
            "`host` is per host (the destination of one node): set it under hosts.NAME.ssh",
        ));
    }
    let mut groups = BTreeMap::new();
    for (name, g) in &inv.groups {
        let line = line_of("groups", name);
        check_group(&mut errs, file, &node, name, g);
        if let Some(j) = &g.ssh.proxy_jump {
            let path = ["groups", name.as_str(), "ssh", "proxy_jump"];
            check(&mut errs, file, &node, &path, j, names::proxy_jump);
        }
        if g.serial == Some(0) {
            errs.push(Diag::new(
                file,
                line,
                format!("groups.{name}.serial"),
                "serial must be at least 1",
            ));
        }
        if g.soak_check_secs == Some(0) {
            errs.push(Diag::new(
                file,
                line,
                format!("groups.{name}.soak_check_secs"),
                "soak_check_secs must be at least 1",
            ));
        }
        if let Some(h) = &g.health {
            let mut bad = |key: &str, why: String| {
                errs.push(Diag::new(
                    file,
                    line,
                    format!("groups.{name}.health.{key}"),
                    why,
                ))
            };
            if let Some(p) = &h.expect_progress {
                if let Err(e) = names::http_url(&p.http) {
                    bad(
                        "expect_progress.http",
                        format!("`{}` {e}", names::shown(&p.http)),
                    );
                }
                if let Err(e) = names::json_field(&p.field) {
                    bad(
                        "expect_progress.field",
                        format!("`{}` {e}", names::shown(&p.field)),
                    );
                }
                if p.within_secs == 0 || p.within_secs > 600 {
                    bad(
                        "expect_progress.within_secs",
                        "must be 1 to 600 seconds".into(),
                    );
                }
            }
            for v in &h.expect_version {
                let ok = match (&v.command, &v.http, &v.field) {
                    (Some(_), None, None) => true,
                    (None, Some(u), Some(f)) => {
                        names::http_url(u).is_ok() && names::json_field(f).is_ok()
                    }
                    _ => false,
                };
                if !ok || v.value.is_empty() {
                    bad(
                        "expect_version",
                        "give `value` and either `command` or `http` and `field`".into(),
                    );
                }
            }
        }
        let artifact_push = match g.artifact_fetch.as_deref() {
            None => None,
            Some("push") => Some(true),
            Some("node") => Some(false),
            Some(other) => {
                errs.push(Diag::new(
                    file,
                    line,
                    format!("groups.{name}.artifact_fetch"),
                    format!("`{}` is not `node` or `push`", names::shown(other)),
                ));
                None
            }
        };
        if g.soak_secs.unwrap_or(0) > 0 && g.canary.unwrap_or(0) == 0 {
            errs.push(Diag::new(
                file,
                line,
                format!("groups.{name}.soak_secs"),
                "soak_secs needs canary: at least 1 (the nodes that are soaked)",
            ));
        }
        groups.insert(
            name.clone(),
            Group {
                name: name.clone(),
                modules: g.modules.clone(),
                serial: g.serial.unwrap_or(1),
                canary: g.canary.unwrap_or(0),
                soak_secs: g.soak_secs.unwrap_or(0),
                soak_check_secs: g.soak_check_secs.unwrap_or(10),
                artifact_push,
                health: g.health.clone().unwrap_or_default(),
                vars: group_vars.remove(name),
                line,
            },
        );
    }

    let d = &inv.defaults.ssh;
    let mut hosts = Vec::new();
    let mut seen_addr: BTreeMap<String, String> = BTreeMap::new();
    // Keep the file's order of hosts (the typed map is sorted; re-sort by line).
    let mut specs: Vec<(&String, &HostSpec, usize)> = inv
        .hosts
        .iter()
        .map(|(n, h)| (n, h, line_of("hosts", n)))
        .collect();
    specs.sort_by_key(|(_, _, l)| *l);
    for (name, h, line) in specs {
        let key = format!("hosts.{name}");
        if let Err(e) = names::node_name(name) {
            errs.push(Diag::new(
                file,
                line,
                &key,
                format!("host name `{}` {e}", names::shown(name)),
            ));
        }
        check(
            &mut errs,
            file,
            &node,
            &["hosts", name, "address"],
            &h.address,
            names::address,
        );
        if let Some(other) = seen_addr.insert(h.address.clone(), name.clone()) {
            errs.push(Diag::new(
                file,
                line_at(&node, &["hosts", name, "address"]),
                format!("{key}.address"),
                format!("address {} is already used by {other}", h.address),
            ));
        }
        check_ssh(&mut errs, file, &node, &["hosts", name, "ssh"], &h.ssh);
        if h.groups.is_empty() {
            errs.push(Diag::new(
                file,
                line,
                format!("{key}.groups"),
                "a host needs at least one group",
            ));
        }
        for g in &h.groups {
            if !groups.contains_key(g) {
                errs.push(Diag::new(
                    file,
                    line,
                    format!("{key}.groups"),
                    format!("group `{g}` is not defined under `groups`"),
                ));
            }
        }
        let s = &h.ssh;
        let hkc = s
            .host_key_checking
            .as_ref()
            .or(d.host_key_checking.as_ref());
        let host_key_checking = match hkc.map(String::as_str) {
            None | Some("strict") => HostKeyChecking::Strict,
            Some("accept-new") => HostKeyChecking::AcceptNew,
            Some(other) => {
                errs.push(Diag::new(
                    file,
                    line,
                    format!("{key}.ssh.host_key_checking"),
                    format!("`{other}` is not `strict` or `accept-new`"),
                ));
                HostKeyChecking::Strict
            }
        };
        // Checked where written (defaults.ssh or hosts.NAME.ssh) by check_ssh.
        let become_ = s.become_.clone().or_else(|| d.become_.clone());
        let proxy_jump = proxy_jump_of(&mut errs, file, line, name, h, s, d, &inv.groups);
        let config_file = s.config_file.clone().or_else(|| d.config_file.clone());
        let (user, port) = (s.user.clone().or_else(|| d.user.clone()), s.port.or(d.port));
        // What the inventory leaves unset is the ssh client's own choice (ssh_config), read
        // once per host with `ssh -G` (local, no connection) for the checks that need it.
        // Only with settings that passed their checks (never a bad one handed to ssh).
        let valid = s.host.as_deref().is_none_or(|h| names::ssh_host(h).is_ok())
            && proxy_jump
                .as_deref()
                .is_none_or(|j| names::proxy_jump(j).is_ok())
            && config_file
                .as_deref()
                .is_none_or(|c| names::local_path(c).is_ok())
            && user.as_deref().is_none_or(|u| names::unix_user(u).is_ok())
            && names::address(&h.address).is_ok();
        let (eff_user, eff_port) = if valid && (user.is_none() || port.is_none()) {
            let q = ssh_config::Query {
                dest: s.host.as_deref().unwrap_or(&h.address),
                user: user.as_deref(),
                port,
                proxy_jump: proxy_jump.as_deref(),
                config_file: config_file
                    .as_deref()
                    .map(|c| crate::transport::expand(root, c)),
            };
            match ssh_config::resolve(&q) {
                Ok(r) => (r.user, r.port),
                Err(e) => {
                    errs.push(Diag::new(file, line, format!("{key}.ssh"), e));
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        hosts.push(Host {
            keep_revisions: inv
                .defaults
                .keep_revisions
                .unwrap_or(DEFAULT_KEEP_REVISIONS)
                .max(2),
            name: name.clone(),
            address: h.address.clone(),
            groups: h.groups.clone(),
            region: h.region.clone(),
            provider: h.provider.clone(),
            labels: h.labels.clone(),
            ssh: SshSettings {
                user_set: user.is_some(),
                port_set: port.is_some(),
                user: user.or(eff_user).unwrap_or_else(|| "root".into()),
                port: port.or(eff_port).unwrap_or(22),
                host: s.host.clone(),
                proxy_jump,
                config_file,
                identity_file: s.identity_file.clone().or_else(|| d.identity_file.clone()),
                known_hosts: s.known_hosts.clone().or_else(|| d.known_hosts.clone()),
                host_key_checking,
                r#become: become_,
                connect_timeout_secs: s.connect_timeout.or(d.connect_timeout).unwrap_or(10),
                persist_secs: s.persist.or(d.persist).filter(|&p| p > 0),
                timeouts: inv.defaults.timeouts,
            },
            line,
        });
    }
    let exclusive = exclusive_sets(&inv.exclusive, &hosts, file, map, &mut errs);
    if errs.is_empty() {
        Ok((hosts, groups, exclusive))
    } else {
        Err(errs)
    }
}

/// A host's jump hosts: its own `ssh.proxy_jump`, else its groups' (which must agree), else
/// the defaults'; `none` means a direct connection.
#[allow(clippy::too_many_arguments)]
fn proxy_jump_of(
    errs: &mut Vec<Diag>,
    file: &Path,
    line: usize,
    name: &str,
    h: &HostSpec,
    s: &SshSpec,
    d: &SshSpec,
    groups: &BTreeMap<String, GroupSpec>,
) -> Option<String> {
    let from_groups: Vec<(&String, &String)> = h
        .groups
        .iter()
        .filter_map(|g| Some((g, groups.get(g)?.ssh.proxy_jump.as_ref()?)))
        .collect();
    if s.proxy_jump.is_none() {
        if let Some((g1, j1)) = from_groups.first() {
            if let Some((g2, j2)) = from_groups.iter().find(|(_, j)| j != j1) {
                errs.push(Diag::new(
                    file,
                    line,
                    format!("hosts.{name}.ssh.proxy_jump"),
                    format!("its groups disagree on proxy_jump ({g1}: {j1}, {g2}: {j2}): set it on the host"),
                ));
            }
        }
    }
    let j = s
        .proxy_jump
        .as_ref()
        .or(from_groups.first().map(|(_, j)| *j))
        .or(d.proxy_jump.as_ref())?;
    (j != "none").then(|| j.clone())
}

/// The `exclusive:` sets, checked against the hosts: `active` and every `fence` key must be
/// a host (which hosts declare the service is checked after rendering).
fn exclusive_sets(
    specs: &BTreeMap<String, ExclusiveSpec>,
    hosts: &[Host],
    file: &Path,
    map: &marked_yaml::types::MarkedMappingNode,
    errs: &mut Vec<Diag>,
) -> BTreeMap<String, Exclusive> {
    let set_node = |name: &str| {
        map.get_mapping("exclusive")
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == name))
            .map(|(k, v)| (k.clone(), v.clone()))
    };
    let line_in = |name: &str, key: &str| -> usize {
        let Some((k, v)) = set_node(name) else {
            return 0;
        };
        v.as_mapping()
            .and_then(|m| m.iter().find(|(kk, _)| kk.as_str() == key))
            .and_then(|(kk, _)| kk.span().start().map(|m| m.line()))
            .or_else(|| k.span().start().map(|m| m.line()))
            .unwrap_or(0)
    };
    let mut out = BTreeMap::new();
    for (name, e) in specs {
        let known = |n: &str| hosts.iter().any(|h| h.name == n);
        if !known(&e.active) {
            errs.push(Diag::new(
                file,
                line_in(name, "active"),
                format!("exclusive.{name}.active"),
                format!("`{}` is not a host of the inventory", e.active),
            ));
        }
        if e.service.trim().is_empty() || e.service.contains(char::is_whitespace) {
            errs.push(Diag::new(
                file,
                line_in(name, "service"),
                format!("exclusive.{name}.service"),
                "the service must be a unit name",
            ));
        }
        for n in e.fence.keys().filter(|n| !known(n)) {
            errs.push(Diag::new(
                file,
                line_in(name, "fence"),
                format!("exclusive.{name}.fence.{n}"),
                format!("`{n}` is not a host of the inventory"),
            ));
        }
        out.insert(
            name.clone(),
            Exclusive {
                name: name.clone(),
                service: e.service.trim_end_matches(".service").to_string(),
                active: e.active.clone(),
                ports: e.ports.clone(),
                fence: e.fence.clone(),
                line: line_in(name, "active"),
            },
        );
    }
    out
}

pub fn valid_node_name(name: &str) -> bool {
    names::node_name(name).is_ok()
}

/// The line of the deepest key of `path` present under `node` (a number walks into a list):
/// a problem with `hosts.v-1.ssh.user` is shown at the `user:` line when there is one.
fn line_at(node: &Node, path: &[&str]) -> usize {
    let mut cur = node;
    let mut line = yaml::line(node);
    for p in path {
        let next = match cur {
            Node::Mapping(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == *p)
                .map(|(k, v)| (k.span().start().map(|m| m.line()), v)),
            Node::Sequence(s) => p
                .parse::<usize>()
                .ok()
                .and_then(|i| s.get(i))
                .map(|v| (v.span().start().map(|m| m.line()), v)),
            Node::Scalar(_) => None,
        };
        match next {
            Some((l, v)) => {
                line = l.unwrap_or(line);
                cur = v;
            }
            None => break,
        }
    }
    line
}

/// Check one value with a `names` rule: a Diag at the value's line naming its dotted key.
fn check(
    errs: &mut Vec<Diag>,
    file: &Path,
    root: &Node,
    path: &[&str],
    value: &str,
    rule: fn(&str) -> Result<(), String>,
) {
    if let Err(e) = rule(value) {
        errs.push(Diag::new(
            file,
            line_at(root, path),
            path.join("."),
            format!("`{}` {e}", names::shown(value)),
        ));
    }
}

/// The SSH settings as written at `prefix` (`defaults.ssh` or `hosts.NAME.ssh`).
fn check_ssh(errs: &mut Vec<Diag>, file: &Path, root: &Node, prefix: &[&str], s: &SshSpec) {
    let at = |k: &'static str| -> Vec<&str> {
        let mut p = prefix.to_vec();
        p.push(k);
        p
    };
    if let Some(u) = &s.user {
        check(errs, file, root, &at("user"), u, names::unix_user);
    }
    if let Some(p) = s.port {
        if let Err(e) = names::port(p.into()) {
            let path = at("port");
            errs.push(Diag::new(file, line_at(root, &path), path.join("."), e));
        }
    }
    if let Some(f) = &s.identity_file {
        check(errs, file, root, &at("identity_file"), f, names::local_path);
    }
    if let Some(f) = &s.known_hosts {
        check(errs, file, root, &at("known_hosts"), f, names::local_path);
    }
    if let Some(f) = &s.config_file {
        check(errs, file, root, &at("config_file"), f, names::local_path);
    }
    if let Some(h) = &s.host {
        check(errs, file, root, &at("host"), h, names::ssh_host);
    }
    if let Some(j) = &s.proxy_jump {
        check(errs, file, root, &at("proxy_jump"), j, names::proxy_jump);
    }
    if let Some(b) = &s.become_ {
        if b != "sudo" {
            let path = at("become");
            errs.push(Diag::new(
                file,
                line_at(root, &path),
                path.join("."),
                format!("`{}`: only `sudo` is supported", names::shown(b)),
            ));
        }
    }
    if s.connect_timeout == Some(0) {
        let path = at("connect_timeout");
        errs.push(Diag::new(
            file,
            line_at(root, &path),
            path.join("."),
            "must be at least 1 second",
        ));
    }
}

/// A group's name, modules and health check.
fn check_group(errs: &mut Vec<Diag>, file: &Path, root: &Node, name: &str, g: &GroupSpec) {
    check(errs, file, root, &["groups", name], name, names::group_name);
    for (i, m) in g.modules.iter().enumerate() {
        let i = i.to_string();
        check(
            errs,
            file,
            root,
            &["groups", name, "modules", &i],
            m,
            names::module_name,
        );
    }
    let Some(h) = &g.health else { return };
    for (i, u) in h.units.iter().enumerate() {
        let i = i.to_string();
        check(
            errs,
            file,
            root,
            &["groups", name, "health", "units", &i],
            u,
            names::unit_name,
        );
    }
    if let Some(u) = &h.http {
        check(
            errs,
            file,
            root,
            &["groups", name, "health", "http"],
            u,
            names::http_url,
        );
    }
    if let Some(t) = &h.tcp {
        check(
            errs,
            file,
            root,
            &["groups", name, "health", "tcp"],
            t,
            names::tcp_addr,
        );
    }
}

/// A group's vars layer is checked against the base like a node's.
pub fn group_layers<'a>(repo: &'a Repo, host: &Host) -> Vec<&'a Layer> {
    host.groups
        .iter()
        .filter_map(|g| repo.groups.get(g).and_then(|g| g.vars.as_ref()))
        .collect()
}

/// The value used when a template or module asks for something that must exist.
pub fn as_map(v: &Val) -> BTreeMap<String, Val> {
    match v {
        Val::Map(m) => m.clone(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_at_finds_the_deepest_key_present() {
        let n = yaml::parse(
            Path::new("h.yaml"),
            "hosts:\n  v-1:\n    address: x\n    ssh:\n      user: Root\ngroups:\n  g:\n    health:\n      units:\n        - a\n        - b\n",
        )
        .unwrap();
        assert_eq!(line_at(&n, &["hosts", "v-1", "ssh", "user"]), 5);
        assert_eq!(line_at(&n, &["hosts", "v-1", "ssh", "port"]), 4);
        assert_eq!(line_at(&n, &["hosts", "v-9", "address"]), 1);
        assert_eq!(line_at(&n, &["groups", "g", "health", "units", "1"]), 11);
    }

    #[test]
    fn canary_settings_are_checked_with_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        let load = |inv: &str| -> String {
            let p = d.path().join("inv.yaml");
            std::fs::write(&p, inv).unwrap();
            let errs = load_inventory(d.path(), &p, Path::new("inv.yaml"))
                .err()
                .unwrap_or_default();
            errs.iter()
                .map(|e| format!("{}:{} {}: {}", e.file.display(), e.line, e.key, e.message))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // A negative count is a type error at its own line.
        let t = load("groups:\n  x:\n    serial: 1\n    canary: -1\nhosts: {}\n");
        assert!(
            t.contains("inv.yaml:4 inventory.groups.x.canary: expected an integer"),
            "{t}"
        );
        let t = load("groups:\n  v:\n    serial: 1\n    soak_secs: 6\n  w:\n    canary: 1\n    soak_check_secs: 0\nhosts: {}\n");
        assert!(
            t.contains("groups.v.soak_secs: soak_secs needs canary"),
            "{t}"
        );
        assert!(
            t.contains("groups.w.soak_check_secs: soak_check_secs must be at least 1"),
            "{t}"
        );
        // canary larger than the group is allowed.
        let t = load("groups:\n  v:\n    canary: 5\n    soak_secs: 6\nhosts: {}\n");
        assert!(!t.contains("canary"), "{t}");
    }

    #[test]
    fn ssh_destination_jump_and_ssh_config_settings() {
        let d = tempfile::tempdir().unwrap();
        let load = |inv: &str| {
            let p = d.path().join("inv.yaml");
            std::fs::write(&p, inv).unwrap();
            load_inventory(d.path(), &p, Path::new("inv.yaml"))
        };
        let errs = |inv: &str| -> String {
            load(inv)
                .err()
                .unwrap_or_default()
                .iter()
                .map(|e| format!("{}:{} {}: {}", e.file.display(), e.line, e.key, e.message))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let t = errs("defaults:\n  ssh:\n    host: x\n    proxy_jump: -oProxyCommand=sh\ngroups:\n  g: {}\nhosts: {}\n");
        assert!(
            t.contains("inv.yaml:3 defaults.ssh.host: `host` is per host"),
            "{t}"
        );
        assert!(
            t.contains(
                "inv.yaml:4 defaults.ssh.proxy_jump: `-oProxyCommand=sh` is not a jump host list"
            ),
            "{t}"
        );
        let t = errs("groups:\n  g:\n    ssh:\n      proxy_jump: a b\nhosts:\n  v-1:\n    address: 10.0.0.1\n    groups: [g]\n    ssh: {user: root, port: 22, host: -x}\n");
        assert!(
            t.contains("inv.yaml:4 groups.g.ssh.proxy_jump: `a b` is not a jump host list"),
            "{t}"
        );
        assert!(
            t.contains("inv.yaml:9 hosts.v-1.ssh.host: `-x` is not an ssh host"),
            "{t}"
        );
        // Groups that disagree are an error at the host; the host's own setting wins.
        let inv = "defaults:\n  ssh: {user: root, port: 22, proxy_jump: d}\ngroups:\n  a:\n    ssh: {proxy_jump: ja}\n  b:\n    ssh: {proxy_jump: jb}\n  c: {}\nhosts:\n  v-1:\n    address: 10.0.0.1\n    groups: [a, b]\n";
        let t = errs(inv);
        assert!(t.contains("inv.yaml:10 hosts.v-1.ssh.proxy_jump: its groups disagree on proxy_jump (a: ja, b: jb)"), "{t}");
        let inv = "defaults:\n  ssh: {user: root, port: 22, proxy_jump: d}\ngroups:\n  a:\n    ssh: {proxy_jump: ja}\n  c: {}\nhosts:\n  v-1:\n    address: 10.0.0.1\n    groups: [a]\n  v-2:\n    address: 10.0.0.2\n    groups: [c]\n  v-3:\n    address: 10.0.0.3\n    groups: [a]\n    ssh: {proxy_jump: none, host: v3.example.org}\n";
        let (hosts, _, _) = load(inv).unwrap();
        let j: Vec<_> = hosts.iter().map(|h| h.ssh.proxy_jump.as_deref()).collect();
        assert_eq!(j, [Some("ja"), Some("d"), None]);
        assert_eq!(hosts[2].ssh.host.as_deref(), Some("v3.example.org"));
        assert!(hosts.iter().all(|h| h.ssh.user_set && h.ssh.port_set));
        // Left unset, user and port are what ssh_config says (read with the real `ssh -G`),
        // and are not passed to ssh.
        std::fs::write(
            d.path().join("ssh_config"),
            "Host v1\n  HostName 10.0.0.1\n  User ops\n  Port 2222\n",
        )
        .unwrap();
        let inv = "defaults:\n  ssh: {config_file: ssh_config}\ngroups:\n  g: {}\nhosts:\n  v-1:\n    address: 10.0.0.1\n    groups: [g]\n    ssh: {host: v1}\n  v-2:\n    address: 10.0.0.2\n    groups: [g]\n    ssh: {user: deploy}\n";
        let (hosts, _, _) = load(inv).unwrap();
        let s = &hosts[0].ssh;
        assert_eq!(
            (s.user.as_str(), s.port, s.user_set, s.port_set),
            ("ops", 2222, false, false)
        );
        let s = &hosts[1].ssh;
        assert_eq!(
            (s.user.as_str(), s.port, s.user_set, s.port_set),
            ("deploy", 22, true, false)
        );
        // A broken ssh config is an error at the host, in ssh's words.
        std::fs::write(d.path().join("ssh_config"), "Host v1\n  NoSuchOption 1\n").unwrap();
        let t = errs(inv);
        assert!(
            t.contains("inv.yaml:6 hosts.v-1.ssh: `ssh -G v1` failed reading the ssh config"),
            "{t}"
        );
    }
}
