//! Resolve and render: base <- groups <- node vars, then every module of the node's groups
//! rendered with minijinja into a `DesiredState`. Pure: reads only the repo and env().

use crate::config::vars::{self, Merged, Origin, Val};
use crate::config::yaml;
use crate::config::{Host, Module, Repo};
use crate::error::Diag;
use crate::model::names;
use crate::model::*;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::Node;
use minijinja::{Environment, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod exclusive;
pub mod filters;
pub mod pgp;
pub mod secrets;
pub mod templates;

/// One node's resolved config: merged vars with provenance, and which keys hold secrets.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub host: Host,
    pub vars: Merged,
    /// Dotted keys whose value came from `env()`.
    pub secret_keys: BTreeSet<String>,
}

/// Resolve every host's vars. Errors for every host are collected.
pub fn resolve(repo: &Repo) -> (Vec<NodeConfig>, Vec<Diag>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut secrets = BTreeSet::new();
    let mut seen_group_errs = BTreeSet::new();
    for host in &repo.hosts {
        let mut layers = crate::config::group_layers(repo, host);
        if let Some(n) = repo.node_vars.get(&host.name) {
            layers.push(n);
        }
        match vars::merge(&repo.base, &repo.locked, &layers) {
            Ok(mut merged) => {
                let mut secret_keys = BTreeSet::new();
                let mut env_errs = Vec::new();
                resolve_env_refs(&mut merged, &mut secret_keys, &mut secrets, &mut env_errs);
                // A base or group var's error repeats for every host: report it once.
                for d in env_errs {
                    if seen_group_errs.insert(d.clone()) {
                        errs.push(d);
                    }
                }
                out.push(NodeConfig {
                    host: host.clone(),
                    vars: merged,
                    secret_keys,
                });
            }
            Err(e) => {
                // A group's error repeats for every host of the group: report it once.
                for d in e {
                    if seen_group_errs.insert(d.clone()) {
                        errs.push(d);
                    }
                }
            }
        }
    }
    (out, errs, secrets)
}

/// `NAME` if `s` is exactly `{{ env("NAME") }}` (a var that is a secret reference).
pub fn env_ref(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let arg = inner.strip_prefix("env(")?.strip_suffix(')')?.trim();
    let name = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .or_else(|| arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')))?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

fn resolve_env_refs(
    merged: &mut Merged,
    secret_keys: &mut BTreeSet<String>,
    secrets: &mut BTreeSet<String>,
    errs: &mut Vec<Diag>,
) {
    let refs: Vec<(String, String)> = vars::leaves(&merged.value)
        .into_iter()
        .filter_map(|(k, v)| match v {
            Val::Str(s) => env_ref(s).map(|n| (k, n.to_string())),
            _ => None,
        })
        .collect();
    for (key, name) in refs {
        let origin = merged.origins.get(&key).cloned();
        match secrets::env_var(&name) {
            Some(val) => {
                set_path(&mut merged.value, &key, Val::Str(val.clone()));
                secrets.insert(val);
                secret_keys.insert(key);
            }
            None => {
                let (file, line) = origin.map(|o| (o.file, o.line)).unwrap_or_default();
                errs.push(Diag::new(
                    file,
                    line,
                    key,
                    format!("environment variable {name} is not set (env(\"{name}\"))"),
                ));
            }
        }
    }
}

fn set_path(v: &mut Val, dotted: &str, new: Val) {
    let mut cur = v;
    for part in dotted.split('.') {
        match cur {
            Val::Map(m) => match m.get_mut(part) {
                Some(next) => cur = next,
                None => return,
            },
            _ => return,
        }
    }
    *cur = new;
}

/// Renders nodes. Holds the template environment (templates are compiled once) and the
/// secrets seen, so that every output can be redacted.
pub struct Renderer<'r> {
    repo: &'r Repo,
    env: Environment<'static>,
    /// File templates' environments, one per whitespace setting.
    envs: templates::Envs,
    env_secrets: Arc<Mutex<BTreeSet<String>>>,
    nodes_value: Value,
    groups_value: Value,
}

/// The rendered fleet: desired states, plus every secret value (for redaction).
pub struct Rendered {
    pub nodes: Vec<DesiredState>,
    pub configs: Vec<NodeConfig>,
    pub secrets: Vec<String>,
}

/// Load-resolve-render the whole fleet; every problem found is returned, including every
/// unset `env()` name: rendering stops at the first unset one of a var or template, so after a
/// failed pass the unset names found so far are stood in for by placeholders and the fleet is
/// rendered again, until no new one turns up. Only the errors of those passes are kept.
pub fn render_all(repo: &Repo) -> Result<Rendered, Vec<Diag>> {
    /// More unset names than this in one repo: report what was found.
    const MAX_PASSES: usize = 64;
    let mut stand_in = BTreeSet::new();
    let mut errs = BTreeSet::new();
    for _ in 0..MAX_PASSES {
        let (res, missed) = secrets::find_missing_env(&stand_in, || render_pass(repo));
        match res {
            Ok(r) if stand_in.is_empty() => return Ok(r),
            Ok(_) => {}
            Err(e) => errs.extend(e),
        }
        let new: Vec<String> = missed.difference(&stand_in).cloned().collect();
        if new.is_empty() {
            break;
        }
        stand_in.extend(new);
    }
    if errs.is_empty() {
        // An unset name no caller turned into an error: render for real, without stand-ins.
        return render_pass(repo);
    }
    Err(errs.into_iter().collect())
}

/// One resolve-and-render pass over the fleet.
fn render_pass(repo: &Repo) -> Result<Rendered, Vec<Diag>> {
    let (configs, mut errs, var_secrets) = resolve(repo);
    if !errs.is_empty() {
        return Err(errs);
    }
    let r = Renderer::new(repo, &configs);
    let mut nodes = Vec::new();
    for c in &configs {
        match r.render_node(c) {
            Ok(d) => nodes.push(d),
            Err(mut e) => errs.append(&mut e),
        }
    }
    if errs.is_empty() {
        errs = exclusive::impose(&repo.exclusive, &repo.inventory_file, &mut nodes);
    }
    if !errs.is_empty() {
        errs.sort();
        errs.dedup();
        return Err(errs);
    }
    let mut secrets: BTreeSet<String> = var_secrets;
    secrets.extend(r.env_secrets.lock().expect("secrets lock").iter().cloned());
    let secrets: Vec<String> = secrets.into_iter().collect();
    for n in &mut nodes {
        n.secrets = secrets.clone();
        // A file that contains a secret value is itself secret.
        for res in &mut n.resources {
            if let Resource::File(f) = res {
                if !f.secret && secrets.iter().any(|s| f.content.contains(s.as_str())) {
                    f.secret = true;
                }
            }
        }
    }
    Ok(Rendered {
        nodes,
        configs,
        secrets,
    })
}

fn identity_value(h: &Host) -> Val {
    let mut m = BTreeMap::new();
    m.insert("name".into(), Val::Str(h.name.clone()));
    m.insert("address".into(), Val::Str(h.address.clone()));
    m.insert("region".into(), Val::Str(h.region.clone()));
    m.insert("provider".into(), Val::Str(h.provider.clone()));
    m.insert(
        "groups".into(),
        Val::List(h.groups.iter().cloned().map(Val::Str).collect()),
    );
    m.insert(
        "labels".into(),
        Val::Map(
            h.labels
                .iter()
                .map(|(k, v)| (k.clone(), Val::Str(v.clone())))
                .collect(),
        ),
    );
    m.insert("ssh_port".into(), Val::Int(h.ssh.port as i64));
    Val::Map(m)
}

impl<'r> Renderer<'r> {
    pub fn new(repo: &'r Repo, configs: &[NodeConfig]) -> Self {
        let env_secrets: secrets::Sink = Arc::new(Mutex::new(BTreeSet::new()));
        let env = templates::environment(
            &repo.root,
            templates::Whitespace::default(),
            env_secrets.clone(),
        );
        let envs = templates::Envs::new(&repo.root, env_secrets.clone());
        let mut nodes = BTreeMap::new();
        for c in configs {
            let mut v = c.vars.value.clone();
            if let Val::Map(m) = &mut v {
                m.insert("node".into(), identity_value(&c.host));
            }
            nodes.insert(c.host.name.clone(), v);
        }
        let mut groups: BTreeMap<String, Vec<String>> = repo
            .groups
            .keys()
            .map(|g| (g.clone(), Vec::new()))
            .collect();
        for h in &repo.hosts {
            for g in &h.groups {
                groups.entry(g.clone()).or_default().push(h.name.clone());
            }
        }
        Renderer {
            repo,
            env,
            envs,
            env_secrets,
            nodes_value: Value::from_serialize(&nodes),
            groups_value: Value::from_serialize(&groups),
        }
    }

    fn context(&self, c: &NodeConfig) -> Value {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        if let Val::Map(m) = &c.vars.value {
            for (k, v) in m {
                ctx.insert(k.clone(), Value::from_serialize(v));
            }
        }
        ctx.insert(
            "node".into(),
            Value::from_serialize(identity_value(&c.host)),
        );
        ctx.insert("nodes".into(), self.nodes_value.clone());
        ctx.insert("groups".into(), self.groups_value.clone());
        Value::from(ctx)
    }

    /// The node's modules in order: its groups in inventory order, each group's modules.
    fn modules_of(&self, host: &Host) -> Vec<&'r Module> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for g in &host.groups {
            if let Some(group) = self.repo.groups.get(g) {
                for m in &group.modules {
                    if seen.insert(m.clone()) {
                        if let Some(module) = self.repo.modules.get(m) {
                            out.push(module);
                        }
                    }
                }
            }
        }
        out
    }

    pub fn render_node(&self, c: &NodeConfig) -> Result<DesiredState, Vec<Diag>> {
        let ctx = self.context(c);
        let mut b = Builder::default();
        for m in self.modules_of(&c.host) {
            self.render_module(m, &ctx, &mut b);
        }
        let host = &c.host;
        let mut health = HealthCheck::default();
        let mut serial = usize::MAX;
        let mut canary = crate::model::CanaryPolicy::default();
        for g in host.groups.iter().filter_map(|g| self.repo.groups.get(g)) {
            serial = serial.min(g.serial);
            // The first group with a canary decides (a node is soaked once, not per group).
            if canary.canary == 0 && g.canary > 0 {
                canary = crate::model::CanaryPolicy {
                    group: g.name.clone(),
                    canary: g.canary,
                    soak_secs: g.soak_secs,
                    soak_check_secs: g.soak_check_secs,
                };
            }
            for u in &g.health.units {
                if !health.units.contains(u) {
                    health.units.push(u.clone());
                }
            }
            health.http = health.http.take().or_else(|| g.health.http.clone());
            health.tcp = health.tcp.take().or_else(|| g.health.tcp.clone());
            health.timeout_secs = health.timeout_secs.max(g.health.timeout_secs);
            health
                .expect_version
                .extend(g.health.expect_version.iter().cloned());
            health.expect_progress = health
                .expect_progress
                .take()
                .or_else(|| g.health.expect_progress.clone());
        }
        health.expect_version.append(&mut b.version_checks);
        if serial == usize::MAX {
            serial = 1;
        }
        let mut resources = b.finish(host, &mut self.repo.inventory_file.clone());
        // A group's `artifact_fetch` decides for its nodes (the first group that says).
        if let Some(push) = host
            .groups
            .iter()
            .filter_map(|g| self.repo.groups.get(g))
            .find_map(|g| g.artifact_push)
        {
            for r in resources.iter_mut() {
                // A release kept in the repo can only be pushed.
                if let Resource::Artifact(a) = r {
                    a.push = push || url_in_repo(&a.url);
                }
            }
        }
        // A notified handler must be built in or declared by one of this node's modules
        // (declared elsewhere in the repo is not enough: it would never run here).
        for r in &resources {
            let notify = match r {
                Resource::File(f) => &f.notify,
                Resource::Artifact(a) => &a.notify,
                _ => continue,
            };
            {
                for h in notify.iter().filter(|h| match h {
                    Handler::Named(n) => !b.handlers.contains_key(n),
                    _ => false,
                }) {
                    let (file, line) = b.seen.get(&r.id()).cloned().unwrap_or_default();
                    b.errs.push(Diag::new(
                        file,
                        line,
                        if matches!(r, Resource::Artifact(_)) {
                            "artifacts[].notify"
                        } else {
                            "files[].notify"
                        },
                        format!(
                            "handler `{h}` is not declared by any module of {}",
                            host.name
                        ),
                    ));
                }
            }
        }
        if !b.errs.is_empty() {
            return Err(b.errs);
        }
        Ok(DesiredState {
            node: NodeIdentity {
                name: host.name.clone(),
                address: host.address.clone(),
                region: host.region.clone(),
                provider: host.provider.clone(),
                groups: host.groups.clone(),
                labels: host.labels.clone(),
                ssh: host.ssh.clone(),
            },
            resources,
            handlers: b.handlers,
            health,
            serial,
            canary,
            keep_revisions: host.keep_revisions,
            secrets: Vec::new(),
            exclusive: Vec::new(),
        })
    }

    fn render_module(&self, m: &Module, ctx: &Value, b: &mut Builder) {
        let file = &m.file;
        let Some(map) = m.node.as_mapping() else {
            b.errs
                .push(Diag::new(file, 0, "", "module.yaml must be a map"));
            return;
        };
        const SECTIONS: [&str; 12] = [
            "description",
            "apt_repositories",
            "artifacts",
            "template_options",
            "files",
            "directories",
            "users",
            "packages",
            "services",
            "key_files",
            "firewall",
            "handlers",
        ];
        for (k, v) in map.iter() {
            if !SECTIONS.contains(&k.as_str()) {
                b.errs.push(Diag::new(
                    file,
                    yaml::line(v).max(k.span().start().map(|m| m.line()).unwrap_or(0)),
                    k.as_str(),
                    format!("unknown key (expected one of: {})", SECTIONS.join(", ")),
                ));
            }
        }
        // Render every scalar of module.yaml with the node's context, keeping lines.
        let rendered = match self.render_node_tree(&m.node, ctx, file) {
            Ok(n) => n,
            Err(d) => {
                b.errs.push(d);
                return;
            }
        };
        let map = rendered.as_mapping().expect("still a map");
        let mut errs = Vec::new();
        let ws = match map.get_node("template_options") {
            None => templates::Whitespace::default(),
            Some(n) => match yaml::typed::<templates::TemplateOptions>(file, n, "template_options")
            {
                Ok(o) => o.apply(templates::Whitespace::default()),
                Err(d) => {
                    errs.push(d);
                    templates::Whitespace::default()
                }
            },
        };
        let mut items = |name: &str| section_items(map, name, file, &mut errs);
        let (files, dirs, users, pkgs, svcs, keys, arts, repos) = (
            items("files"),
            items("directories"),
            items("users"),
            items("packages"),
            items("services"),
            items("key_files"),
            items("artifacts"),
            items("apt_repositories"),
        );
        for n in repos {
            match yaml::typed::<AptRepoSpec>(file, &n, "apt_repositories[]") {
                Ok(spec) if spec.when.unwrap_or(true) => {
                    match apt_repository(m, spec, file, yaml::line(&n)) {
                        Ok(r) => b.add(Resource::AptRepository(r), file, yaml::line(&n)),
                        Err(d) => errs.push(d),
                    }
                }
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        for n in arts {
            match yaml::typed::<ArtifactSpec>(file, &n, "artifacts[]") {
                Ok(spec) if spec.when.unwrap_or(true) => {
                    match self.artifact(m, spec, file, yaml::line(&n)) {
                        Ok((a, check)) => {
                            if let Some(c) = check {
                                b.version_checks.push(c);
                            }
                            b.add(Resource::Artifact(a), file, yaml::line(&n))
                        }
                        Err(d) => errs.push(d),
                    }
                }
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        for n in files {
            match yaml::typed::<FileSpec>(file, &n, "files[]") {
                Ok(spec) if spec.when.unwrap_or(true) => match self.file(m, spec, ctx, &n, ws) {
                    Ok(f) => b.add(Resource::File(f), file, yaml::line(&n)),
                    Err(d) => errs.push(d),
                },
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        for n in dirs {
            match yaml::typed::<DirSpec>(file, &n, "directories[]") {
                Ok(s) if s.when.unwrap_or(true) => {
                    let line = yaml::line(&n);
                    if !check_values(
                        &mut errs,
                        file,
                        line,
                        &[
                            ("directories[].owner", s.owner.as_deref(), names::unix_user),
                            ("directories[].group", s.group.as_deref(), names::unix_group),
                        ],
                    ) {
                        continue;
                    }
                    match (check_path(&s.path), mode_of(&s.mode, 0o755)) {
                        (Ok(()), Some(mode)) => b.add(
                            Resource::Directory(DirRes {
                                path: s.path.trim_end_matches('/').to_string(),
                                owner: s.owner.unwrap_or_else(|| "root".into()),
                                group: s.group.unwrap_or_else(|| "root".into()),
                                mode,
                                module: m.name.clone(),
                            }),
                            file,
                            line,
                        ),
                        (Err(e), _) => errs.push(Diag::new(file, line, "directories[].path", e)),
                        (_, None) => errs.push(bad_mode(file, line, "directories[].mode", &s.mode)),
                    }
                }
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        for n in users {
            match yaml::typed::<UserSpec>(file, &n, "users[]") {
                Ok(s) if s.when.unwrap_or(true) => {
                    let line = yaml::line(&n);
                    let mut checks: Vec<Check> = vec![
                        ("users[].name", Some(s.name.as_str()), names::unix_user),
                        ("users[].home", s.home.as_deref(), names::abs_path),
                        ("users[].shell", s.shell.as_deref(), names::abs_path),
                    ];
                    for g in s.groups.iter().flatten() {
                        checks.push(("users[].groups", Some(g.as_str()), names::unix_group));
                    }
                    if !check_values(&mut errs, file, line, &checks) {
                        continue;
                    }
                    b.add(
                        Resource::User(UserRes {
                            name: s.name,
                            system: s.system.unwrap_or(false),
                            home: s.home,
                            shell: s.shell,
                            groups: s.groups.unwrap_or_default(),
                            module: m.name.clone(),
                        }),
                        file,
                        line,
                    )
                }
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        for n in pkgs {
            // A package is a name, or `{name, when}`.
            let spec = if matches!(n, Node::Mapping(_)) {
                yaml::typed::<PackageSpec>(file, &n, "packages[]")
                    .map(|p| p.when.unwrap_or(true).then_some(p.name))
            } else {
                yaml::typed::<String>(file, &n, "packages[]").map(Some)
            };
            match spec {
                Ok(None) => {}
                Ok(Some(name)) if valid_pkg(&name) => b.add(
                    Resource::Package(PackageRes {
                        name,
                        module: m.name.clone(),
                    }),
                    file,
                    yaml::line(&n),
                ),
                Ok(Some(name)) => errs.push(Diag::new(
                    file,
                    yaml::line(&n),
                    "packages[]",
                    format!("`{name}` is not a valid package name"),
                )),
                Err(d) => errs.push(d),
            }
        }
        for n in svcs {
            match yaml::typed::<ServiceSpec>(file, &n, "services[]") {
                Ok(s) if s.when.unwrap_or(true) => {
                    let state = match s.state.as_deref().unwrap_or("started") {
                        "started" => Some(ServiceState::Started),
                        "stopped" => Some(ServiceState::Stopped),
                        _ => None,
                    };
                    let Some(state) = state else {
                        errs.push(Diag::new(
                            file,
                            yaml::line(&n),
                            "services[].state",
                            "must be `started` or `stopped`",
                        ));
                        continue;
                    };
                    if !check_values(
                        &mut errs,
                        file,
                        yaml::line(&n),
                        &[("services[].name", Some(s.name.as_str()), names::unit_name)],
                    ) {
                        continue;
                    }
                    b.add(
                        Resource::Service(ServiceRes {
                            name: s.name.trim_end_matches(".service").to_string(),
                            enabled: s.enabled.unwrap_or(true),
                            state,
                            module: m.name.clone(),
                        }),
                        file,
                        yaml::line(&n),
                    )
                }
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        for n in keys {
            match yaml::typed::<DirSpec>(file, &n, "key_files[]") {
                Ok(s) if s.when.unwrap_or(true) => {
                    let line = yaml::line(&n);
                    if !check_values(
                        &mut errs,
                        file,
                        line,
                        &[
                            ("key_files[].owner", s.owner.as_deref(), names::unix_user),
                            ("key_files[].group", s.group.as_deref(), names::unix_group),
                        ],
                    ) {
                        continue;
                    }
                    match (check_path(&s.path), mode_of(&s.mode, 0o600)) {
                        (Ok(()), Some(mode)) => b.add(
                            Resource::KeyFile(KeyFileRes {
                                path: s.path,
                                owner: s.owner.unwrap_or_else(|| "root".into()),
                                group: s.group.unwrap_or_else(|| "root".into()),
                                mode,
                                module: m.name.clone(),
                            }),
                            file,
                            line,
                        ),
                        (Err(e), _) => errs.push(Diag::new(file, line, "key_files[].path", e)),
                        (_, None) => errs.push(bad_mode(file, line, "key_files[].mode", &s.mode)),
                    }
                }
                Ok(_) => {}
                Err(d) => errs.push(d),
            }
        }
        if let Some(fw) = map.get_node("firewall") {
            match yaml::typed::<FirewallSpec>(file, fw, "firewall") {
                Ok(spec) => b.firewall(m, spec, file, fw, &mut errs),
                Err(d) => errs.push(d),
            }
        }
        if let Some(h) = map.get_node("handlers") {
            match yaml::typed::<BTreeMap<String, String>>(file, h, "handlers") {
                Ok(hs) => {
                    for (name, cmd) in hs {
                        // The line of this handler's own key.
                        let line = h
                            .as_mapping()
                            .and_then(|hm| hm.iter().find(|(k, _)| k.as_str() == name))
                            .and_then(|(k, _)| k.span().start().map(|m| m.line()))
                            .unwrap_or_else(|| yaml::line(h));
                        if let Err(e) = names::handler_name(&name) {
                            errs.push(Diag::new(
                                file,
                                line,
                                format!("handlers.{}", names::shown(&name)),
                                format!("`{}` {e}", names::shown(&name)),
                            ));
                        } else if builtin_handler(&name)
                            || !matches!(Handler::parse(&name), Handler::Named(_))
                        {
                            errs.push(Diag::new(
                                file,
                                line,
                                format!("handlers.{name}"),
                                "`daemon-reload`, `restart <unit>` and `reload <unit>` are built-in handlers; do not redeclare them (or name this one differently)",
                            ));
                        } else if let Some(prev) = b.handlers.get(&name).filter(|p| **p != cmd) {
                            errs.push(Diag::new(
                                file,
                                line,
                                format!("handlers.{name}"),
                                format!(
                                    "declared by another module with a different command: {prev}"
                                ),
                            ));
                        } else {
                            b.handlers.insert(name, cmd);
                        }
                    }
                }
                Err(d) => errs.push(d),
            }
        }
        b.errs.append(&mut errs);
    }

    /// The first notified name that is neither built in nor declared by any module, said.
    fn unknown_handler(&self, notify: &[String]) -> Option<String> {
        notify
            .iter()
            .find(|h| !builtin_handler(h) && !self.module_declares_handler(h))
            .map(|h| format!("no handler named `{h}` (built-ins: daemon-reload, restart <unit>, reload <unit>)"))
    }

    /// An `artifacts[]` entry, checked; and the version check it adds to the health gate.
    fn artifact(
        &self,
        m: &Module,
        s: ArtifactSpec,
        file: &Path,
        line: usize,
    ) -> Result<(ArtifactRes, Option<VersionCheck>), Diag> {
        let bad = |key: &str, why: String| Diag::new(file, line, format!("artifacts[].{key}"), why);
        names::artifact_name(&s.name)
            .map_err(|e| bad("name", format!("`{}` {e}", names::shown(&s.name))))?;
        names::artifact_version(&s.version)
            .map_err(|e| bad("version", format!("`{}` {e}", names::shown(&s.version))))?;
        let sha256 = s.sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(
                "sha256",
                format!(
                    "`{}` is not a SHA-256 (64 hex digits); it is required",
                    names::shown(&s.sha256)
                ),
            ));
        }
        let (url, in_repo) = release_url(&s.url).map_err(|e| bad("url", e))?;
        let path = url.split(['?', '#']).next().unwrap_or(&url);
        let format = match s.format.as_deref() {
            Some("file") => ArtifactFormat::File,
            Some("tar.gz") => ArtifactFormat::TarGz,
            Some("tar.zst") => ArtifactFormat::TarZst,
            Some(f) => {
                return Err(bad(
                    "format",
                    format!("`{}` is not one of: file, tar.gz, tar.zst", names::shown(f)),
                ))
            }
            None if path.ends_with(".tar.gz") || path.ends_with(".tgz") => ArtifactFormat::TarGz,
            None if path.ends_with(".tar.zst") => ArtifactFormat::TarZst,
            None => ArtifactFormat::File,
        };
        let mut install = Vec::new();
        for (i, e) in s.install.iter().enumerate() {
            let mode = mode_of(&e.mode, 0o755).ok_or_else(|| {
                bad_mode(
                    file,
                    line,
                    &format!("artifacts[].install[{i}].mode"),
                    &e.mode,
                )
            })?;
            let from = match (&e.from, format) {
                (_, ArtifactFormat::File) => String::new(),
                (Some(f), _) => f.trim_start_matches("./").to_string(),
                (None, _) => {
                    return Err(bad(
                        &format!("install[{i}].from"),
                        "which member of the archive (a path inside it)".into(),
                    ))
                }
            };
            let to = e.to.clone().unwrap_or_else(|| from.clone());
            for (k, v) in [("from", &from), ("to", &to)] {
                if (k == "to" || !v.is_empty()) && names::relative_path(v).is_err() {
                    return Err(bad(
                        &format!("install[{i}].{k}"),
                        format!(
                            "`{}` must be a relative path without `..`, spaces or a leading `.`",
                            names::shown(v)
                        ),
                    ));
                }
            }
            install.push(ArtifactMember { from, to, mode });
        }
        if install.is_empty() {
            if format != ArtifactFormat::File {
                return Err(bad(
                    "install",
                    "name the archive members to install ({from, to, mode})".into(),
                ));
            }
            let base = path.rsplit('/').next().unwrap_or("").to_string();
            if names::relative_path(&base).is_err() {
                return Err(bad(
                    "install",
                    "the URL names no file: say where it goes (install: [{to: bin/x}])".into(),
                ));
            }
            install.push(ArtifactMember {
                from: String::new(),
                to: base,
                mode: 0o755,
            });
        }
        if format == ArtifactFormat::File && install.len() > 1 {
            return Err(bad("install", "a plain file installs as one entry".into()));
        }
        let keep = s.keep.unwrap_or(3);
        if keep < 2 {
            return Err(bad(
                "keep",
                "keep at least 2 versions (the live one and the one a rollback returns to)".into(),
            ));
        }
        let push = match s.fetch.as_deref() {
            _ if in_repo => true,
            None | Some("node") => false,
            Some("push") => true,
            Some(f) => {
                return Err(bad(
                    "fetch",
                    format!("`{}` is not `node` or `push`", names::shown(f)),
                ))
            }
        };
        self.unknown_handler(&s.notify)
            .map_or(Ok(()), |why| Err(bad("notify", why)))?;
        let signature = match s.signature {
            None => None,
            Some(sig) => Some(self.signature(sig, &bad)?),
        };
        let check = match s.expect_version {
            None => None,
            Some(v) => {
                let ok = match (&v.command, &v.http, &v.field) {
                    (Some(_), None, None) => true,
                    (None, Some(u), Some(f)) => {
                        names::http_url(u).is_ok() && names::json_field(f).is_ok()
                    }
                    _ => false,
                };
                if !ok {
                    return Err(bad("expect_version", "give `command` (its output must contain the version), or `http` and `field` (a top-level JSON field equal to it)".into()));
                }
                Some(VersionCheck {
                    value: s.version.clone(),
                    ..v
                })
            }
        };
        Ok((
            ArtifactRes {
                name: s.name,
                version: s.version,
                url,
                sha256,
                format,
                install,
                keep,
                push,
                signature,
                notify: s.notify.iter().map(|h| Handler::parse(h)).collect(),
                module: m.name.clone(),
            },
            check,
        ))
    }

    /// An artifact's `signature`: its URL checked like the artifact's, its key read from the
    /// repo (armored or binary), dearmored for `gpgv`.
    fn signature(
        &self,
        s: SignatureSpec,
        bad: &dyn Fn(&str, String) -> Diag,
    ) -> Result<ArtifactSig, Diag> {
        let kind = match s.kind.as_str() {
            "gpg" => SigKind::Gpg,
            "minisign" => {
                return Err(bad(
                    "signature.type",
                    "minisign is not supported yet: sign the release with gpg (verified by gpgv on the node)".into(),
                ))
            }
            t => {
                return Err(bad(
                    "signature.type",
                    format!("`{}` is not a signature type strata checks (gpg)", names::shown(t)),
                ))
            }
        };
        let (url, _) = release_url(&s.url).map_err(|e| bad("signature.url", e))?;
        let key_path = s.key.trim().to_string();
        let key_err = |why: String| {
            bad(
                "signature.key",
                format!("`{}` {why}", names::shown(&key_path)),
            )
        };
        let real = secrets::inside(&self.repo.root, &key_path).map_err(|e| {
            bad(
                "signature.key",
                format!("{e} (the public key: a file of the repo)"),
            )
        })?;
        let bytes = std::fs::read(&real)
            .map_err(|e| key_err(format!("cannot be read: {}", secrets::io_words(&e))))?;
        let key = pgp::public_key(&bytes).map_err(key_err)?;
        use base64::Engine as _;
        Ok(ArtifactSig {
            kind,
            url,
            key_path,
            keyring: base64::engine::general_purpose::STANDARD.encode(&key.packets),
            fingerprints: key.fingerprints,
        })
    }

    fn file(
        &self,
        m: &Module,
        s: FileSpec,
        ctx: &Value,
        n: &Node,
        ws: templates::Whitespace,
    ) -> Result<FileRes, Diag> {
        let file = &m.file;
        let line = yaml::line(n);
        check_path(&s.dest).map_err(|e| Diag::new(file, line, "files[].dest", e))?;
        let mut errs = Vec::new();
        check_values(
            &mut errs,
            file,
            line,
            &[
                ("files[].owner", s.owner.as_deref(), names::unix_user),
                ("files[].group", s.group.as_deref(), names::unix_group),
            ],
        );
        if let Some(d) = errs.into_iter().next() {
            return Err(d);
        }
        let mode =
            mode_of(&s.mode, 0o644).ok_or_else(|| bad_mode(file, line, "files[].mode", &s.mode))?;
        let content = match (&s.template, &s.content) {
            (Some(t), None) => {
                if t.starts_with('/') || t.split('/').any(|p| p == ".." || p.is_empty()) {
                    return Err(Diag::new(
                        file,
                        line,
                        "files[].template",
                        format!("`{t}` must be a relative path inside templates/ without `..`"),
                    ));
                }
                let name = format!("modules/{}/templates/{t}", m.name);
                let ws = s.template_options.as_ref().map_or(ws, |o| o.apply(ws));
                self.envs.render_file(&name, ws, ctx).map_err(|e| {
                    e.unwrap_or_else(|| {
                        Diag::new(
                            file,
                            line,
                            "files[].template",
                            format!("template {name} does not exist"),
                        )
                    })
                })?
            }
            (None, Some(c)) => c.clone(),
            _ => {
                return Err(Diag::new(
                    file,
                    line,
                    "files[]",
                    "give exactly one of `template` and `content`",
                ));
            }
        };
        if let Some(why) = self.unknown_handler(&s.notify) {
            return Err(Diag::new(file, line, "files[].notify", why));
        }
        let validate_local = match s.validate_local {
            None => None,
            Some(_) if s.validate.is_none() => {
                return Err(Diag::new(
                    file,
                    line,
                    "files[].validate_local",
                    "says how to run `validate` off the node, but the file has no `validate`",
                ));
            }
            Some(v) => {
                if v.replace.iter().any(|r| r.from.is_empty()) {
                    return Err(Diag::new(
                        file,
                        line,
                        "files[].validate_local.replace",
                        "`from` must not be empty",
                    ));
                }
                Some(LocalValidate {
                    command: v.command,
                    replace: v.replace.into_iter().map(|r| (r.from, r.to)).collect(),
                })
            }
        };
        Ok(FileRes {
            dest: s.dest,
            content,
            owner: s.owner.unwrap_or_else(|| "root".into()),
            group: s.group.unwrap_or_else(|| "root".into()),
            mode,
            validate: s.validate,
            validate_local,
            secret: s.secret.unwrap_or(false),
            notify: s.notify.iter().map(|h| Handler::parse(h)).collect(),
            module: m.name.clone(),
        })
    }

    fn module_declares_handler(&self, name: &str) -> bool {
        self.repo.modules.values().any(|m| {
            m.node
                .as_mapping()
                .and_then(|mm| mm.get_mapping("handlers"))
                .is_some_and(|h| h.get_node(name).is_some())
        })
    }

    /// Render every string scalar of a module.yaml tree. A scalar that is exactly one
    /// `{{ expr }}` keeps the expression's type (list, map, bool, number).
    fn render_node_tree(&self, node: &Node, ctx: &Value, file: &Path) -> Result<Node, Diag> {
        Ok(match node {
            Node::Scalar(s) => {
                let src = s.as_str();
                if !src.contains("{{") && !src.contains("{%") {
                    return Ok(node.clone());
                }
                let span = *s.span();
                let line = yaml::line(node);
                let err = |e: minijinja::Error| {
                    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
                    Diag::new(file, line, src.trim(), format!("{}{detail}", e.kind()))
                };
                if let Some(expr) = single_expression(src) {
                    let v = self
                        .env
                        .compile_expression(expr)
                        .map_err(err)?
                        .eval(ctx)
                        .map_err(err)?;
                    if v.is_undefined() {
                        return Err(Diag::new(file, line, src.trim(), "undefined value"));
                    }
                    value_to_node(&v, span)
                } else {
                    let out = self.env.render_str(src, ctx).map_err(err)?;
                    let mut n = MarkedScalarNode::new(span, out);
                    n.set_coerce(false);
                    Node::Scalar(n)
                }
            }
            Node::Sequence(seq) => {
                let mut items = Vec::new();
                for n in seq.iter() {
                    items.push(self.render_node_tree(n, ctx, file)?);
                }
                let mut out = MarkedSequenceNode::new(*seq.span(), items);
                *out.span_mut() = *seq.span();
                Node::Sequence(out)
            }
            Node::Mapping(map) => {
                let mut out = map.clone();
                for (_, v) in out.iter_mut() {
                    *v = self.render_node_tree(v, ctx, file)?;
                }
                Node::Mapping(out)
            }
        })
    }
}

/// The items of a list section of module.yaml (absent or null: none).
fn section_items(
    map: &MarkedMappingNode,
    name: &str,
    file: &Path,
    errs: &mut Vec<Diag>,
) -> Vec<Node> {
    match map.get_node(name) {
        Some(Node::Sequence(s)) => s.iter().cloned().collect(),
        Some(n) if yaml::is_null(n) => Vec::new(),
        Some(n) => {
            errs.push(Diag::new(file, yaml::line(n), name, "must be a list"));
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// `expr` if `s` is exactly `{{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

fn value_to_node(v: &Value, span: marked_yaml::Span) -> Node {
    use minijinja::value::ValueKind;
    let scalar = |s: String, coerce: bool| {
        let mut n = MarkedScalarNode::new(span, s);
        n.set_coerce(coerce);
        Node::Scalar(n)
    };
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => scalar("null".into(), true),
        ValueKind::Bool | ValueKind::Number => scalar(v.to_string(), true),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Node> = v
                .try_iter()
                .map(|it| it.map(|x| value_to_node(&x, span)).collect())
                .unwrap_or_default();
            let mut s = MarkedSequenceNode::new(span, items);
            *s.span_mut() = span;
            Node::Sequence(s)
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            if let Ok(keys) = v.try_iter() {
                for k in keys {
                    let val = v.get_item(&k).unwrap_or_default();
                    entries.push((
                        MarkedScalarNode::new(span, k.to_string()),
                        value_to_node(&val, span),
                    ));
                }
            }
            let mut m: MarkedMappingNode = entries.into_iter().collect();
            *m.span_mut() = span;
            Node::Mapping(m)
        }
        _ => scalar(
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
            false,
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    dest: String,
    template: Option<String>,
    content: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    mode: Option<String>,
    validate: Option<String>,
    validate_local: Option<LocalValidateSpec>,
    secret: Option<bool>,
    #[serde(default)]
    notify: Vec<String>,
    when: Option<bool>,
    /// Whitespace settings for this file's template (over the module's `template_options`).
    template_options: Option<templates::TemplateOptions>,
}

/// `validate_local: {command: ..., replace: [{from: ..., to: ...}]}` (both optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalValidateSpec {
    command: Option<String>,
    #[serde(default)]
    replace: Vec<ReplaceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceSpec {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirSpec {
    path: String,
    owner: Option<String>,
    group: Option<String>,
    mode: Option<String>,
    when: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    name: String,
    system: Option<bool>,
    home: Option<String>,
    shell: Option<String>,
    groups: Option<Vec<String>>,
    when: Option<bool>,
}

/// One word or a list of them (`uris: http://x` or `uris: [http://x, http://y]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

impl Words {
    fn list(self) -> Vec<String> {
        match self {
            Words::One(w) => vec![w],
            Words::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AptRepoSpec {
    name: String,
    uris: Words,
    suites: Words,
    components: Option<Words>,
    architectures: Option<Words>,
    /// A file of the module (relative to its directory): the ASCII-armored public key.
    key_file: Option<String>,
    /// Or the key itself.
    key: Option<String>,
    when: Option<bool>,
}

/// A release's (or its signature's) URL, trimmed: http(s)://, file:/// or a path relative to
/// the repo (a file kept in the repo, always pushed: the bool).
fn release_url(url: &str) -> Result<(String, bool), String> {
    let url = url.trim().to_string();
    let scheme_ok = ["https://", "http://", "file:///"]
        .iter()
        .any(|p| url.starts_with(p));
    let in_repo = url_in_repo(&url) && names::relative_path(&url).is_ok();
    if !(scheme_ok || in_repo) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` is not an http(s):// or file:/// URL, nor a path in the repo",
            names::shown(&url)
        ));
    }
    Ok((url, in_repo))
}

/// An `apt_repositories[]` entry: its deb822 entry and key, checked.
fn apt_repository(
    m: &Module,
    s: AptRepoSpec,
    file: &Path,
    line: usize,
) -> Result<AptRepoRes, Diag> {
    let bad =
        |key: &str, why: String| Diag::new(file, line, format!("apt_repositories[].{key}"), why);
    names::artifact_name(&s.name)
        .map_err(|e| bad("name", format!("`{}` {e}", names::shown(&s.name))))?;
    let word_ok = |w: &str| {
        !w.is_empty() && !w.starts_with('-') && w.chars().all(|c| c.is_ascii_graphic() && c != '#')
    };
    let mut fields = Vec::new();
    for (key, words) in [
        ("uris", Some(s.uris)),
        ("suites", Some(s.suites)),
        ("components", s.components),
        ("architectures", s.architectures),
    ] {
        let Some(words) = words else { continue };
        let list = words.list();
        if list.is_empty() || !list.iter().all(|w| word_ok(w)) {
            return Err(bad(
                key,
                "one or more plain words (no spaces or `#`)".into(),
            ));
        }
        if key == "uris"
            && !list
                .iter()
                .all(|u| names::http_url(u).is_ok() || u.starts_with("file:/"))
        {
            return Err(bad(key, "each must be an http(s):// or file:/ URI".into()));
        }
        fields.push((key, list.join(" ")));
    }
    let key = match (s.key_file, s.key) {
        (Some(k), None) => {
            names::relative_path(&k)
                .map_err(|e| bad("key_file", format!("`{}` {e}", names::shown(&k))))?;
            std::fs::read_to_string(m.dir.join(&k)).map_err(|e| {
                bad(
                    "key_file",
                    format!("cannot read {}: {e}", m.dir.join(&k).display()),
                )
            })?
        }
        (None, Some(k)) => k,
        _ => {
            return Err(bad(
                "key_file",
                "give the signing key: `key_file` (a file of the module) or `key`".into(),
            ))
        }
    };
    if !key
        .trim_start()
        .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    {
        return Err(bad(
            "key_file",
            "the signing key must be an ASCII-armored public key (gpg --armor --export)".into(),
        ));
    }
    let key_path = format!("/etc/apt/keyrings/{}.asc", s.name);
    let mut sources = format!("# Managed by strata (module {}).\nTypes: deb\n", m.name);
    for (k, v) in fields {
        let title = match k {
            "uris" => "URIs",
            "suites" => "Suites",
            "components" => "Components",
            _ => "Architectures",
        };
        sources.push_str(&format!("{title}: {v}\n"));
    }
    sources.push_str(&format!("Signed-By: {key_path}\n"));
    Ok(AptRepoRes {
        sources_path: format!("/etc/apt/sources.list.d/{}.sources", s.name),
        name: s.name,
        sources,
        key_path,
        key,
        module: m.name.clone(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactSpec {
    name: String,
    version: String,
    url: String,
    sha256: String,
    format: Option<String>,
    #[serde(default)]
    install: Vec<MemberSpec>,
    keep: Option<usize>,
    fetch: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
    expect_version: Option<VersionCheck>,
    signature: Option<SignatureSpec>,
    when: Option<bool>,
}

/// `signature: {url, key, type}`: a detached signature of the download, made with `key` (a
/// public key file of the repo).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSpec {
    url: String,
    key: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSpec {
    from: Option<String>,
    to: Option<String>,
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageSpec {
    name: String,
    when: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    enabled: Option<bool>,
    state: Option<String>,
    when: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirewallSpec {
    defaults: Option<FwDefaults>,
    #[serde(default)]
    rules: Vec<marked_yaml::Spanned<RuleSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FwDefaults {
    incoming: String,
    outgoing: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    action: Option<String>,
    port: String,
    proto: Option<String>,
    from: Option<OneOrMany>,
    comment: Option<String>,
    when: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Collects resources of one node, checking conflicts across modules.
#[derive(Default)]
struct Builder {
    resources: Vec<(usize, Resource)>,
    /// resource id -> (module file, line) of its first declaration.
    seen: BTreeMap<String, (PathBuf, usize)>,
    handlers: BTreeMap<String, String>,
    fw: Option<(FirewallRes, PathBuf, usize)>,
    fw_defaults_from: Option<(PathBuf, usize)>,
    /// Artifacts' `expect_version`, added to the node's health gate.
    version_checks: Vec<VersionCheck>,
    errs: Vec<Diag>,
}

fn kind_rank(r: &Resource) -> usize {
    match r {
        Resource::Package(_) => 0,
        Resource::User(_) => 1,
        Resource::Directory(_) => 2,
        // Written before packages are installed, switched before the files are staged (see
        // remote::apply).
        Resource::AptRepository(_) => 0,
        Resource::Artifact(_) => 3,
        Resource::File(_) => 4,
        Resource::KeyFile(_) => 5,
        Resource::Service(_) => 6,
        Resource::Firewall(_) => 7,
    }
}

impl Builder {
    fn add(&mut self, r: Resource, file: &Path, line: usize) {
        let id = r.id();
        // A key file and a managed file at the same path would have strata write a key.
        let path_id = match &r {
            Resource::KeyFile(k) => Some(format!("file:{}", k.path)),
            Resource::File(f) => Some(format!("key_file:{}", f.dest)),
            _ => None,
        };
        for probe in std::iter::once(&id).chain(path_id.as_ref()) {
            if let Some((pf, pl)) = self.seen.get(probe) {
                self.errs.push(Diag::new(
                    file,
                    line,
                    &id,
                    format!(
                        "also declared at {}:{pl}; a path may be managed by one declaration only",
                        pf.display()
                    ),
                ));
                return;
            }
        }
        self.seen.insert(id, (file.to_path_buf(), line));
        self.resources.push((self.resources.len(), r));
    }

    fn firewall(
        &mut self,
        m: &Module,
        spec: FirewallSpec,
        file: &Path,
        node: &Node,
        errs: &mut Vec<Diag>,
    ) {
        let line = yaml::line(node);
        let (fw, _, _) = self.fw.get_or_insert_with(|| {
            (
                FirewallRes {
                    default_incoming: "deny".into(),
                    default_outgoing: "allow".into(),
                    rules: Vec::new(),
                    module: m.name.clone(),
                },
                file.to_path_buf(),
                line,
            )
        });
        if !fw.module.split(',').any(|x| x == m.name) {
            fw.module = format!("{},{}", fw.module, m.name);
        }
        if let Some(d) = spec.defaults {
            if let Some((pf, pl)) = &self.fw_defaults_from {
                errs.push(Diag::new(
                    file,
                    line,
                    "firewall.defaults",
                    format!("already set at {}:{pl}", pf.display()),
                ));
            } else {
                for (k, v) in [("incoming", &d.incoming), ("outgoing", &d.outgoing)] {
                    if !matches!(v.as_str(), "allow" | "deny" | "reject") {
                        errs.push(Diag::new(
                            file,
                            line,
                            format!("firewall.defaults.{k}"),
                            format!("`{v}` is not allow, deny or reject"),
                        ));
                    }
                }
                fw.default_incoming = d.incoming;
                fw.default_outgoing = d.outgoing;
                self.fw_defaults_from = Some((file.to_path_buf(), line));
            }
        }
        for r in spec.rules {
            let rline = r.span().start().map(|m| m.line()).unwrap_or(line);
            if !r.when.unwrap_or(true) {
                continue;
            }
            let action = r.action.clone().unwrap_or_else(|| "allow".into());
            let proto = r.proto.clone().unwrap_or_else(|| "tcp".into());
            let froms = match &r.from {
                None => vec!["any".to_string()],
                Some(OneOrMany::One(s)) => vec![s.clone()],
                Some(OneOrMany::Many(v)) => v.clone(),
            };
            let mut bad = |k: &str, msg: String| {
                errs.push(Diag::new(file, rline, format!("firewall.rules[].{k}"), msg))
            };
            if !matches!(action.as_str(), "allow" | "deny" | "limit" | "reject") {
                bad(
                    "action",
                    format!("`{action}` is not allow, deny, limit or reject"),
                );
                continue;
            }
            if !matches!(proto.as_str(), "tcp" | "udp" | "any") {
                bad("proto", format!("`{proto}` is not tcp, udp or any"));
                continue;
            }
            if let Some(Err(e)) = r.comment.as_deref().map(names::comment) {
                bad("comment", e);
                continue;
            }
            if !crate::model::valid_port(&r.port) {
                bad(
                    "port",
                    format!("`{}` is not a port (1-65535) or range (a:b)", r.port),
                );
                continue;
            }
            for from in froms {
                if from != "any" && !crate::model::valid_cidr(&from) {
                    bad(
                        "from",
                        format!("`{from}` is not `any`, an address or a CIDR"),
                    );
                    continue;
                }
                if let Some(w) = crate::model::firewall::ufw_form(&from) {
                    bad(
                        "from",
                        format!("`{from}`: ufw writes it as `{w}`, so the rule would never read back as declared; write `{w}`"),
                    );
                    continue;
                }
                let rule = FwRule {
                    action: action.clone(),
                    port: r.port.clone(),
                    proto: proto.clone(),
                    from,
                    comment: r.comment.clone(),
                };
                if !fw.rules.iter().any(|x| x.same(&rule)) {
                    fw.rules.push(rule);
                }
            }
        }
    }

    fn finish(&mut self, host: &Host, inventory: &mut PathBuf) -> Vec<Resource> {
        if let Some((fw, file, line)) = self.fw.take() {
            // The SSH port strata itself uses must stay open, by construction.
            let port = host.ssh.port.to_string();
            let open = fw.default_incoming == "allow"
                || fw.rules.iter().any(|r| {
                    matches!(r.action.as_str(), "allow" | "limit")
                        && r.proto != "udp"
                        && crate::model::port_matches(&r.port, host.ssh.port)
                });
            if !open {
                self.errs.push(Diag::new(
                    &file,
                    line,
                    format!("firewall (node {})", host.name),
                    format!("no rule allows SSH port {port} (the port strata uses for {}, see {}); applying it would lock strata out", host.name, inventory.display()),
                ));
            }
            self.add(Resource::Firewall(fw), &file, line);
        }
        let mut rs = std::mem::take(&mut self.resources);
        rs.sort_by_key(|(i, r)| (kind_rank(r), *i));
        rs.into_iter().map(|(_, r)| r).collect()
    }
}

fn valid_pkg(s: &str) -> bool {
    names::package_name(s).is_ok()
}

pub fn builtin_handler(name: &str) -> bool {
    name == "daemon-reload"
        || ["restart ", "reload "].iter().any(|p| {
            name.strip_prefix(p)
                .is_some_and(|u| names::unit_name(u).is_ok())
        })
}

/// A managed path must be absolute, normalised, and not `/` itself (see `names::abs_path`).
pub fn check_path(p: &str) -> Result<(), String> {
    names::abs_path(p)
}

/// (dotted key, value if given, its `names` rule).
type Check<'a> = (&'a str, Option<&'a str>, fn(&str) -> Result<(), String>);

/// Check values of one module.yaml entry with their `names` rules: one Diag per bad value,
/// at the entry's line, naming the section and key (`users[].shell`).
fn check_values(errs: &mut Vec<Diag>, file: &Path, line: usize, checks: &[Check]) -> bool {
    let before = errs.len();
    for (key, value, rule) in checks {
        if let Some(v) = value {
            if let Err(e) = rule(v) {
                // Some rules' words already name the value (`abs_path`'s do).
                let said = if e.starts_with('`') {
                    e
                } else {
                    format!("`{}` {e}", names::shown(v))
                };
                errs.push(Diag::new(file, line, *key, said));
            }
        }
    }
    errs.len() == before
}

fn mode_of(s: &Option<String>, default: u32) -> Option<u32> {
    match s {
        None => Some(default),
        Some(m) => parse_mode(m),
    }
}

fn bad_mode(file: &Path, line: usize, key: &str, s: &Option<String>) -> Diag {
    Diag::new(
        file,
        line,
        key,
        format!(
            "`{}` is not an octal mode like \"0644\"",
            s.as_deref().unwrap_or("")
        ),
    )
}

/// Provenance for `strata vars`: (key, value shown, origin).
pub fn vars_listing(
    c: &NodeConfig,
    locked: &[String],
) -> Vec<(String, String, Option<Origin>, bool)> {
    vars::leaves(&c.vars.value)
        .into_iter()
        .map(|(k, v)| {
            let shown = if c.secret_keys.contains(&k) {
                "<secret>".to_string()
            } else {
                v.to_string()
            };
            let is_locked = locked
                .iter()
                .any(|l| k == *l || k.starts_with(&format!("{l}.")));
            let origin = c.vars.origins.get(&k).cloned();
            (k, shown, origin, is_locked)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_template_context_holds_is_reserved_for_vars() {
        let env = templates::environment(
            Path::new("/nonexistent"),
            templates::Whitespace::default(),
            Arc::new(Mutex::new(BTreeSet::new())),
        );
        let names: Vec<String> = env.globals().map(|(n, _)| n.to_string()).collect();
        for f in ["env", "file", "secret_file", "range", "dict"] {
            assert!(names.iter().any(|n| n == f), "{f} in {names:?}");
        }
        for (name, _) in env.globals() {
            assert!(
                vars::RESERVED.contains(&name),
                "template global `{name}` is not in config::vars::RESERVED"
            );
        }
        for name in ["node", "nodes", "groups"] {
            assert!(vars::RESERVED.contains(&name), "{name}");
        }
    }

    #[test]
    fn env_refs_are_exact() {
        assert_eq!(env_ref("{{ env(\"A_1\") }}"), Some("A_1"));
        assert_eq!(env_ref(" {{env('B')}} "), Some("B"));
        for not in [
            "{{ env(\"A\") }}x",
            "{{ env(A) }}",
            "{{ env(\"\") }}",
            "{{ env(\"A B\") }}",
            "{{ env(\"$(id)\") }}",
            "env(\"A\")",
        ] {
            assert_eq!(env_ref(not), None, "{not}");
        }
    }
}
