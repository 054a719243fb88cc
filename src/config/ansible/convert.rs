//! The Ansible model mapped onto strata's repo (pure: model in, file texts and notes out).
//!
//! - group `all`'s vars -> base-config/vars.yaml; every other group -> `groups.<g>.vars` in
//!   inventory/hosts.yaml; a host's own vars -> nodes/<host>/vars.yaml.
//! - A host's strata groups are listed in Ansible's combine order (depth, priority, name), so
//!   strata's "later group wins" picks what Ansible picks.
//! - `ansible_host` -> address, `ansible_user`/`ansible_port`/`ansible_ssh_private_key_file`/
//!   `ansible_become` -> ssh settings (in `defaults` when every host has the same value).
//! - strata's base is the schema, so it must hold every key any layer sets: a key that is not
//!   in group `all` is added to the base with the first value Ansible's order gives it.
//! - Then each host's vars are computed both ways (Ansible: top-level vars replace; strata:
//!   maps merge) and every difference is reported, so the import never differs silently.

use super::{Inventory, Note, VarDef, Vars};
use crate::config::vars::{Val, RESERVED};
use crate::model::names;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

/// What the import writes (paths relative to the repo) and what it could not map.
#[derive(Debug, Default)]
pub struct Converted {
    pub files: Vec<(PathBuf, String)>,
    pub notes: Vec<Note>,
    pub hosts: usize,
    pub groups: usize,
}

/// Connection vars strata maps to ssh settings (old `ansible_ssh_*` spellings included).
const CONN: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
    "ansible_become_method",
    "ansible_group_priority",
];

/// Ansible's vars of one host, in its precedence order (later wins, top-level replace), as
/// its default `VARIABLE_PRECEDENCE` combines them: the inventory file's vars of `all`, then
/// of the host's other groups, then group_vars/all, then the other groups' group_vars files,
/// then the host's inventory vars, then host_vars. (So group_vars/all beats `[eu:vars]`.)
pub fn ansible_vars(inv: &Inventory, host: &str) -> Vars {
    let groups = inv.sorted_groups(host);
    let others = || groups.iter().filter(|g| *g != "all");
    let mut out = Vars::new();
    let all = &inv.groups["all"];
    out.extend(all.vars.clone());
    for g in others() {
        out.extend(inv.groups[g].vars.clone());
    }
    out.extend(all.file_vars.clone());
    for g in others() {
        out.extend(inv.groups[g].file_vars.clone());
    }
    if let Some(h) = inv.hosts.get(host) {
        out.extend(h.vars.clone());
        out.extend(h.file_vars.clone());
    }
    out
}

fn is_data(k: &str) -> bool {
    !k.starts_with("ansible_")
}

/// A name strata accepts: lower case, other characters to `sep`; the mapping is reported.
fn fix_name(
    n: &str,
    sep: char,
    keep: &[char],
    ok: fn(&str) -> Result<(), String>,
    prefix: &str,
) -> String {
    if ok(n).is_ok() {
        return n.to_string();
    }
    let mut s: String = n
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == sep || keep.contains(&c) {
                c
            } else {
                sep
            }
        })
        .collect();
    if ok(&s).is_err() {
        s = format!(
            "{prefix}{}",
            s.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        );
    }
    s.truncate(63);
    s
}

pub fn convert(inv: &Inventory, source: &str) -> Converted {
    let mut notes = inv.notes.clone();
    let hosts: Vec<&String> = inv.order.iter().collect();

    // Names: strata's rules are stricter than Ansible's.
    let mut node_of: BTreeMap<&str, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for h in &hosts {
        let mut n = fix_name(h, '-', &['.'], names::node_name, "host-");
        while !taken.insert(n.clone()) {
            n.push('x');
        }
        if n != **h {
            let d = &inv.hosts[h.as_str()];
            notes.push(Note::new(
                &d.file,
                d.line,
                format!("host `{h}` is named `{n}` in strata (its names are a-z, 0-9, '-', '.')"),
            ));
        }
        node_of.insert(h.as_str(), n);
    }
    let mut group_of: BTreeMap<&str, String> = BTreeMap::new();
    let mut gtaken = BTreeSet::new();
    for (g, d) in inv.groups.iter().filter(|(g, _)| g.as_str() != "all") {
        let mut n = fix_name(g, '_', &['-'], names::group_name, "g_");
        while !gtaken.insert(n.clone()) {
            n.push('x');
        }
        if n != *g {
            notes.push(Note::new(
                &d.file,
                d.line,
                format!("group `{g}` is named `{n}` in strata"),
            ));
        }
        group_of.insert(g.as_str(), n);
    }

    // Connection vars not mapped, and reserved names: reported once where they are set.
    let mut every_def: Vec<(&String, &VarDef)> = Vec::new();
    for g in inv.groups.values() {
        every_def.extend(g.vars.iter().chain(g.file_vars.iter()));
    }
    for h in inv.hosts.values() {
        every_def.extend(h.vars.iter().chain(h.file_vars.iter()));
    }
    let mut seen = BTreeSet::new();
    for (k, d) in &every_def {
        if !seen.insert((k.to_string(), d.file.clone(), d.line)) {
            continue;
        }
        if !is_data(k) && !CONN.contains(&k.as_str()) {
            notes.push(Note::new(
                &d.file,
                d.line,
                format!("`{k}`: an Ansible connection/behaviour var strata has no setting for; not imported"),
            ));
        } else if RESERVED.contains(&k.as_str()) {
            notes.push(Note::new(
                &d.file,
                d.line,
                format!("`{k}` is a name strata's templates reserve; not imported (rename it)"),
            ));
        }
    }
    let data = |vars: &Vars| -> BTreeMap<String, VarDef> {
        vars.iter()
            .filter(|(k, _)| is_data(k) && !RESERVED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };

    // SSH and address, per host from Ansible's effective vars.
    struct Conn {
        address: String,
        user: Option<String>,
        port: Option<u16>,
        key: Option<String>,
        become_: bool,
    }
    let mut conns: BTreeMap<&str, Conn> = BTreeMap::new();
    for h in &hosts {
        let eff = ansible_vars(inv, h);
        let get = |a: &str, b: &str| eff.get(a).or(eff.get(b));
        let text = |v: Option<&VarDef>, what: &str, notes: &mut Vec<Note>| -> Option<String> {
            let d = v?;
            match &d.value {
                Val::Str(s) if super::yaml::has_jinja(s) => {
                    notes.push(Note::new(
                        &d.file,
                        d.line,
                        format!("{what} is a Jinja expression: not imported for `{h}`"),
                    ));
                    None
                }
                Val::Str(s) => Some(s.clone()),
                Val::Int(i) => Some(i.to_string()),
                _ => None,
            }
        };
        let address = text(
            get("ansible_host", "ansible_ssh_host"),
            "ansible_host",
            &mut notes,
        )
        .unwrap_or_else(|| h.to_string());
        if let Err(e) = names::address(&address) {
            let d = &inv.hosts[h.as_str()];
            notes.push(Note::new(
                &d.file,
                d.line,
                format!("host `{h}`: address `{address}` {e}"),
            ));
        }
        let user = text(
            get("ansible_user", "ansible_ssh_user"),
            "ansible_user",
            &mut notes,
        );
        let port = text(
            get("ansible_port", "ansible_ssh_port"),
            "ansible_port",
            &mut notes,
        )
        .and_then(|p| p.parse().ok());
        let key = text(
            get("ansible_ssh_private_key_file", "ansible_private_key_file"),
            "ansible_ssh_private_key_file",
            &mut notes,
        );
        let truthy = |v: &Val| match v {
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Str(s) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1"),
            _ => false,
        };
        let mut become_ = eff.get("ansible_become").is_some_and(|d| truthy(&d.value));
        if let Some(m) = eff.get("ansible_become_method") {
            if become_ && m.value != Val::Str("sudo".into()) {
                notes.push(Note::new(
                    &m.file,
                    m.line,
                    format!(
                        "become method {} for `{h}`: strata only has sudo; become left off",
                        m.value
                    ),
                ));
                become_ = false;
            }
        }
        conns.insert(
            h.as_str(),
            Conn {
                address,
                user,
                port,
                key,
                become_,
            },
        );
    }
    // A setting every host shares goes to `defaults`.
    let common = |f: &dyn Fn(&Conn) -> Option<String>| -> Option<String> {
        let mut vals = conns.values().map(f);
        let first = vals.next()??;
        vals.all(|v| v.as_deref() == Some(&first)).then_some(first)
    };
    let d_user = common(&|c| c.user.clone());
    let d_port = common(&|c| c.port.map(|p| p.to_string()));
    let d_key = common(&|c| c.key.clone());
    let d_become = common(&|c| c.become_.then(|| "sudo".to_string()));

    // Layers.
    let all = &inv.groups["all"];
    let mut all_vars = data(&all.vars);
    all_vars.extend(data(&all.file_vars));
    let layer = |vars: &Vars, file_vars: &Vars| {
        let mut v = data(vars);
        v.extend(data(file_vars));
        v
    };
    let mut group_names: Vec<&String> = inv.groups.keys().filter(|g| *g != "all").collect();
    group_names.sort_by_key(|g| (inv.depth(g), g.to_string()));
    let effective: BTreeMap<&str, Vars> = hosts
        .iter()
        .map(|h| (h.as_str(), ansible_vars(inv, h)))
        .collect();
    let mut group_layers: BTreeMap<&str, BTreeMap<String, VarDef>> = BTreeMap::new();
    for g in &group_names {
        let gd = &inv.groups[*g];
        let mut l = layer(&gd.vars, &gd.file_vars);
        // An inventory-file group var that no host of the group ends up with (Ansible reads
        // them all before any group_vars file) would only mislead in the group's vars.
        let members: Vec<&str> = hosts
            .iter()
            .filter(|h| inv.host_groups(h).contains(g.as_str()))
            .map(|h| h.as_str())
            .collect();
        l.retain(|k, d| {
            let lost =
                !members.is_empty() && members.iter().all(|h| effective[h].get(k) != Some(d));
            if lost && gd.vars.get(k) == Some(d) {
                let winner = &effective[members[0]][k];
                notes.push(Note::new(
                    &d.file,
                    d.line,
                    format!(
                        "`{k}` of group `{g}` is overridden for every host of the group (Ansible \
                         reads inventory group vars before any group_vars file; here {}:{} wins): \
                         not imported",
                        winner.file.display(),
                        winner.line
                    ),
                ));
                return false;
            }
            true
        });
        group_layers.insert(g.as_str(), l);
    }
    let host_layers: BTreeMap<&str, BTreeMap<String, VarDef>> = hosts
        .iter()
        .map(|h| {
            (
                h.as_str(),
                layer(&inv.hosts[*h].vars, &inv.hosts[*h].file_vars),
            )
        })
        .collect();

    // The base: group `all`, then every key another layer sets (first value in Ansible order).
    let mut base: BTreeMap<String, VarDef> = all_vars.clone();
    let mut not_in_all: BTreeMap<String, VarDef> = BTreeMap::new();
    let later = group_names
        .iter()
        .map(|g| &group_layers[g.as_str()])
        .chain(hosts.iter().map(|h| &host_layers[h.as_str()]));
    for l in later {
        for (k, d) in l {
            match base.get_mut(k) {
                None => {
                    base.insert(k.clone(), d.clone());
                    not_in_all.insert(k.clone(), d.clone());
                }
                Some(b) => {
                    if let Err(why) = union(&mut b.value, &d.value) {
                        notes.push(Note::new(
                            &d.file,
                            d.line,
                            format!(
                                "`{k}`: {why} ({}:{}), a change of kind strata refuses; the base gets null for it",
                                b.file.display(),
                                b.line
                            ),
                        ));
                        b.value = Val::Null;
                    }
                }
            }
        }
    }
    for (k, d) in &not_in_all {
        // Only worth saying where some host has no such var under Ansible.
        let lacking: Vec<&str> = hosts
            .iter()
            .filter(|h| !effective[h.as_str()].contains_key(k))
            .map(|h| node_of[h.as_str()].as_str())
            .collect();
        if lacking.is_empty() {
            continue;
        }
        let shown = if lacking.len() > 5 {
            format!("{} and {} more", lacking[..5].join(", "), lacking.len() - 5)
        } else {
            lacking.join(", ")
        };
        notes.push(Note::new(
            &d.file,
            d.line,
            format!(
                "`{k}` is not set for group `all`: strata's base must define every key, so it \
                 takes this value, and {shown} (where Ansible leaves it undefined) {} it too",
                if lacking.len() == 1 { "gets" } else { "get" }
            ),
        ));
    }

    // Each host both ways. Where strata's layers would give another value than Ansible's
    // precedence, the host's own file pins Ansible's value (the node layer is applied last);
    // what even that cannot fix (a map Ansible replaces but strata merges) is reported.
    let mut host_layers = host_layers;
    let mut pinned: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for h in &hosts {
        let eff = &effective[h.as_str()];
        let mut strata = Val::Map(
            base.iter()
                .map(|(k, d)| (k.clone(), d.value.clone()))
                .collect(),
        );
        for g in inv.sorted_groups(h).iter().filter(|g| *g != "all") {
            deep_merge(&mut strata, &to_map(&group_layers[g.as_str()]));
        }
        deep_merge(&mut strata, &to_map(&host_layers[h.as_str()]));
        for (k, d) in eff
            .iter()
            .filter(|(k, _)| is_data(k) && !RESERVED.contains(&k.as_str()))
        {
            let got = strata.get_path(k).cloned().unwrap_or(Val::Null);
            if got == d.value {
                continue;
            }
            let mut fixed = got.clone();
            deep_merge(&mut fixed, &d.value);
            if fixed == d.value {
                let layer = host_layers
                    .get_mut(h.as_str())
                    .expect("every host has a layer");
                layer.insert(k.clone(), d.clone());
                pinned.entry(h.as_str()).or_default().insert(k.clone());
            } else {
                notes.push(Note::new(
                    &d.file,
                    d.line,
                    format!(
                        "`{k}` on `{h}`: Ansible gives {} (it replaces a map var as a whole), \
                         the import gives {got} (strata merges maps key by key)",
                        d.value
                    ),
                ));
            }
        }
    }

    // The files.
    let header =
        format!("# Imported from the Ansible inventory {source} by `strata import ansible`.\n");
    let mut inv_text = header.clone();
    let mut ssh = String::new();
    if let Some(u) = &d_user {
        writeln!(ssh, "    user: {}", q(u)).ok();
    }
    if let Some(p) = &d_port {
        writeln!(ssh, "    port: {p}").ok();
    }
    if let Some(k) = &d_key {
        writeln!(ssh, "    identity_file: {}", q(k)).ok();
    }
    if d_become.is_some() {
        ssh.push_str("    become: sudo\n");
    }
    if !ssh.is_empty() {
        inv_text.push_str("\ndefaults:\n  ssh:\n");
        inv_text.push_str(&ssh);
    }
    inv_text.push_str(
        "\n# Ansible's groups. They carry no modules yet: list under `modules:` what each group gets.\ngroups:\n",
    );
    for g in &group_names {
        writeln!(inv_text, "  {}:", key(&group_of[g.as_str()])).ok();
        inv_text.push_str("    modules: []\n");
        let l = &group_layers[g.as_str()];
        if !l.is_empty() {
            inv_text.push_str("    vars:\n");
            emit_vars(&mut inv_text, l, 6);
        }
    }
    inv_text.push_str("\nhosts:\n");
    for h in &hosts {
        let c = &conns[h.as_str()];
        writeln!(inv_text, "  {}:", key(&node_of[h.as_str()])).ok();
        writeln!(inv_text, "    address: {}", q(&c.address)).ok();
        let gs: Vec<String> = inv
            .sorted_groups(h)
            .iter()
            .filter(|g| *g != "all")
            .map(|g| group_of[g.as_str()].clone())
            .collect();
        writeln!(
            inv_text,
            "    # In Ansible's order of precedence: a later group wins."
        )
        .ok();
        writeln!(
            inv_text,
            "    groups: {}",
            serde_json::to_string(&gs).unwrap_or_default()
        )
        .ok();
        let mut s = String::new();
        if d_user.is_none() {
            if let Some(u) = &c.user {
                writeln!(s, "      user: {}", q(u)).ok();
            }
        }
        if d_port.is_none() {
            if let Some(p) = c.port {
                writeln!(s, "      port: {p}").ok();
            }
        }
        if d_key.is_none() {
            if let Some(k) = &c.key {
                writeln!(s, "      identity_file: {}", q(k)).ok();
            }
        }
        if d_become.is_none() && c.become_ {
            s.push_str("      become: sudo\n");
        }
        if !s.is_empty() {
            inv_text.push_str("    ssh:\n");
            inv_text.push_str(&s);
        }
    }
    let mut base_text = header.clone();
    base_text.push_str(
        "# The base is strata's schema: every var any group or host sets is defined here.\nvars:\n",
    );
    if base.is_empty() {
        base_text.push_str("  {}\n");
    }
    emit_vars(&mut base_text, &base, 2);

    let mut files = vec![
        (PathBuf::from("inventory/hosts.yaml"), inv_text),
        (PathBuf::from("base-config/vars.yaml"), base_text),
    ];
    for h in &hosts {
        let mut t = header.clone();
        let l = &host_layers[h.as_str()];
        if l.is_empty() {
            t.push_str("# No host vars in Ansible: only overrides of the base go here.\n");
        }
        let pins = pinned.remove(h.as_str()).unwrap_or_default();
        for (k, d) in l {
            if pins.contains(k) {
                writeln!(
                    t,
                    "# {}:{}, pinned here: strata's layers would give this host another \
                     value; this is the one Ansible's precedence gives it",
                    d.file.display(),
                    d.line
                )
                .ok();
                emit_entry(&mut t, k, &d.value, 0);
            } else {
                writeln!(t, "# {}:{}", d.file.display(), d.line).ok();
                emit_entry(&mut t, k, &d.value, 0);
            }
        }
        files.push((
            PathBuf::from("nodes")
                .join(&node_of[h.as_str()])
                .join("vars.yaml"),
            t,
        ));
    }
    notes.sort();
    notes.dedup();
    Converted {
        files,
        notes,
        hosts: hosts.len(),
        groups: group_names.len(),
    }
}

fn to_map(l: &BTreeMap<String, VarDef>) -> Val {
    Val::Map(
        l.iter()
            .map(|(k, d)| (k.clone(), d.value.clone()))
            .collect(),
    )
}

/// strata's merge: maps merge key by key, everything else replaces.
pub fn deep_merge(dst: &mut Val, src: &Val) {
    match (dst, src) {
        (Val::Map(d), Val::Map(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(dv) if matches!((&*dv, v), (Val::Map(_), Val::Map(_))) => {
                        deep_merge(dv, v)
                    }
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// Add to `base` every map key `v` has that it lacks (the schema must hold them all). Kinds
/// strata cannot override one with the other are an error.
fn union(base: &mut Val, v: &Val) -> Result<(), String> {
    match (base, v) {
        (Val::Map(b), Val::Map(m)) => {
            for (k, x) in m {
                match b.get_mut(k) {
                    None => {
                        b.insert(k.clone(), x.clone());
                    }
                    Some(bx) => {
                        if union(bx, x).is_err() {
                            *bx = Val::Null;
                        }
                    }
                }
            }
            Ok(())
        }
        (b, v) => {
            let (b, v) = (&*b, v);
            let map = |x: &Val| matches!(x, Val::Map(_));
            let list = |x: &Val| matches!(x, Val::List(_));
            if matches!(b, Val::Null) || matches!(v, Val::Null) {
                Ok(())
            } else if map(b) != map(v) || list(b) != list(v) {
                Err(format!("{} here is {} elsewhere", v.kind(), b.kind()))
            } else {
                Ok(())
            }
        }
    }
}

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A map key: plain when YAML cannot read it as anything but that string.
fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        k.to_string()
    } else {
        q(k)
    }
}

/// Top-level vars, each under a comment naming the Ansible file and line it came from.
fn emit_vars(out: &mut String, vars: &BTreeMap<String, VarDef>, indent: usize) {
    let pad = " ".repeat(indent);
    for (k, d) in vars {
        writeln!(out, "{pad}# {}:{}", d.file.display(), d.line).ok();
        emit_entry(out, k, &d.value, indent);
    }
}

fn emit_entry(out: &mut String, k: &str, v: &Val, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Val::Map(m) if !m.is_empty() => {
            writeln!(out, "{pad}{}:", key(k)).ok();
            for (ck, cv) in m {
                emit_entry(out, ck, cv, indent + 2);
            }
        }
        // Scalars and lists inline, in JSON (which YAML reads as the same values).
        other => {
            writeln!(
                out,
                "{pad}{}: {}",
                key(k),
                serde_json::to_string(other).unwrap_or_else(|_| "null".into())
            )
            .ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn def(v: Val, line: usize) -> VarDef {
        VarDef {
            value: v,
            file: "f".into(),
            line,
        }
    }

    #[test]
    fn merge_and_union_follow_strata_rules() {
        let mut a = Val::Map([("x".into(), Val::Int(1))].into());
        deep_merge(&mut a, &Val::Map([("y".into(), Val::Int(2))].into()));
        assert_eq!(a.get_path("x"), Some(&Val::Int(1)));
        assert!(union(&mut Val::Int(1), &Val::List(vec![])).is_err());
        assert!(union(&mut Val::Str("a".into()), &Val::Int(1)).is_ok());
    }

    #[test]
    fn keys_that_yaml_would_retype_are_quoted() {
        assert_eq!(key("ntp_servers"), "ntp_servers");
        assert_eq!(key("yes"), "\"yes\"");
        assert_eq!(key("10"), "\"10\"");
        assert_eq!(key("a.b"), "\"a.b\"");
    }

    #[test]
    fn a_map_var_replaced_in_ansible_is_reported() {
        let mut inv = Inventory::default();
        let f = Path::new("i");
        inv.add_host("web", "w1", f, 1);
        inv.finish();
        let m = |pairs: &[(&str, i64)]| {
            Val::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Val::Int(*v)))
                    .collect(),
            )
        };
        inv.groups
            .get_mut("all")
            .unwrap()
            .file_vars
            .insert("tune".into(), def(m(&[("a", 1), ("b", 2)]), 2));
        inv.groups
            .get_mut("web")
            .unwrap()
            .file_vars
            .insert("tune".into(), def(m(&[("a", 5)]), 7));
        let c = convert(&inv, "i");
        let n: Vec<String> = c.notes.iter().map(|n| n.to_string()).collect();
        assert!(
            n.iter().any(|n| n.starts_with(
                "f:7: `tune` on `w1`: Ansible gives {\"a\":5} (it replaces a map var as a whole), the import gives {\"a\":5,\"b\":2}"
            )),
            "{n:#?}"
        );
    }

    #[test]
    fn a_value_strata_order_would_change_is_pinned_on_the_host() {
        // `zz` sets x inline, `aa` in its group_vars file. Ansible reads every inventory
        // group var before any group_vars file, so host a (in both) gets aa's 2, host b (zz
        // only) zz's 1. strata applies aa then zz (name order): a would get 1, so a's own
        // file pins 2.
        let mut inv = Inventory::default();
        let f = Path::new("hosts.ini");
        inv.add_host("zz", "a", f, 1);
        inv.add_host("aa", "a", f, 2);
        inv.add_host("zz", "b", f, 3);
        inv.finish();
        inv.set_group_var("zz", "x", Val::Int(1), f, 5);
        inv.groups.get_mut("aa").unwrap().file_vars.insert(
            "x".into(),
            VarDef {
                value: Val::Int(2),
                file: "group_vars/aa.yml".into(),
                line: 1,
            },
        );
        let c = convert(&inv, "hosts.ini");
        let file = |p: &str| {
            c.files
                .iter()
                .find(|(q, _)| q == Path::new(p))
                .map(|(_, t)| t.clone())
                .unwrap()
        };
        let a = file("nodes/a/vars.yaml");
        assert!(
            a.contains("# group_vars/aa.yml:1, pinned here") && a.ends_with("x: 2\n"),
            "{a}"
        );
        assert!(!file("nodes/b/vars.yaml").contains("x:"));
        assert!(
            c.notes.iter().all(|n| !n.message.contains("Ansible gives")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn connection_vars_strata_cannot_take_are_reported() {
        let mut inv = Inventory::default();
        let f = Path::new("hosts.ini");
        inv.add_host("web", "Web_1.example.com", f, 1);
        inv.add_host("web", "w2", f, 2);
        inv.finish();
        let set = |inv: &mut Inventory, h: &str, k: &str, v: &str| {
            inv.set_host_var(h, k, Val::Str(v.into()), f, 9)
        };
        set(
            &mut inv,
            "Web_1.example.com",
            "ansible_host",
            "{{ lookup('dig', 'x') }}",
        );
        set(&mut inv, "w2", "ansible_become", "true");
        set(&mut inv, "w2", "ansible_become_method", "su");
        let c = convert(&inv, "hosts.ini");
        let notes: Vec<String> = c.notes.iter().map(|n| n.to_string()).collect();
        let has = |s: &str| notes.iter().any(|n| n.contains(s));
        assert!(
            has("host `Web_1.example.com` is named `web-1.example.com`"),
            "{notes:#?}"
        );
        assert!(has("ansible_host is a Jinja expression"), "{notes:#?}");
        assert!(
            has("become method \"su\" for `w2`: strata only has sudo"),
            "{notes:#?}"
        );
        let inv_text = &c.files[0].1;
        assert!(
            inv_text.contains("  \"web-1.example.com\":\n    address: \"Web_1.example.com\""),
            "{inv_text}"
        );
        assert!(!inv_text.contains("become"), "{inv_text}");
    }
}
