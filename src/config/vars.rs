//! Variables: the base (the schema), group and node overrides, merged with provenance.
//!
//! Rules: maps merge deeply, lists and scalars replace; an override of a key the base does not
//! have is an error (typo protection); an override touching a locked key is an error.

use crate::config::yaml;
use crate::error::Diag;
use marked_yaml::Node;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A plain variable value (YAML 1.2 core schema for plain scalars).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    Map(BTreeMap<String, Val>),
}

impl Val {
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Int(_) | Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::List(_) => "a list",
            Val::Map(_) => "a map",
        }
    }

    /// Look up a dotted path (`validator.p2p_port`).
    pub fn get_path(&self, dotted: &str) -> Option<&Val> {
        let mut cur = self;
        for part in dotted.split('.') {
            match cur {
                Val::Map(m) => cur = m.get(part)?,
                _ => return None,
            }
        }
        Some(cur)
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Null => write!(f, "null"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Float(x) => write!(f, "{x}"),
            Val::Str(s) => write!(f, "{}", serde_json::to_string(s).unwrap_or_default()),
            other => write!(f, "{}", serde_json::to_string(other).unwrap_or_default()),
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `base`, `group <name>` or `node`.
    pub layer: String,
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.layer, self.file.display(), self.line)
    }
}

/// Names a template sees as something other than a var: strata's own context values (`node`,
/// `nodes`, `groups`), the template functions (strata's `env`, `file`, `secret_file`,
/// minijinja's and minijinja-contrib's), and names templates read as literals or loop
/// helpers. A base var with one of these names would be shadowed or would shadow, silently,
/// so it is an error at load. (render's tests check this list against the real environment.)
pub const RESERVED: &[&str] = &[
    // strata's context
    "node",
    "nodes",
    "groups", // strata's functions
    "env",
    "file",
    "secret_file", // minijinja's functions
    "range",
    "dict",
    "debug",
    "namespace", // minijinja-contrib's functions
    "cycler",
    "joiner",
    "lipsum",
    "now",
    "randrange", // literals and template helpers
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
];

/// One YAML layer of vars: its values, and the line of every dotted key.
#[derive(Debug, Clone)]
pub struct Layer {
    pub layer: String,
    pub file: PathBuf,
    pub value: Val,
    /// dotted key -> line, for every map entry (leaves and inner maps).
    pub lines: BTreeMap<String, usize>,
}

impl Layer {
    pub fn from_node(layer: &str, file: &Path, node: &Node) -> Layer {
        let mut lines = BTreeMap::new();
        let value = to_val(node, "", &mut lines);
        Layer {
            layer: layer.to_string(),
            file: file.to_path_buf(),
            value,
            lines,
        }
    }

    pub fn line_of(&self, dotted: &str) -> usize {
        self.lines.get(dotted).copied().unwrap_or(0)
    }

    pub fn origin(&self, dotted: &str) -> Origin {
        Origin {
            layer: self.layer.clone(),
            file: self.file.clone(),
            line: self.line_of(dotted),
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Convert a YAML node to a value, recording each map key's line under its dotted path.
pub fn to_val(node: &Node, path: &str, lines: &mut BTreeMap<String, usize>) -> Val {
    match node {
        Node::Scalar(s) => scalar(s.as_str(), s.may_coerce()),
        Node::Sequence(seq) => Val::List(seq.iter().map(|n| to_val(n, path, lines)).collect()),
        Node::Mapping(map) => {
            let mut out = BTreeMap::new();
            for (k, v) in map.iter() {
                let p = join(path, k.as_str());
                lines.insert(p.clone(), k.span().start().map(|m| m.line()).unwrap_or(0));
                out.insert(k.as_str().to_string(), to_val(v, &p, lines));
            }
            Val::Map(out)
        }
    }
}

/// A plain (unquoted) scalar is typed like YAML 1.2's core schema; a quoted one is a string.
pub fn scalar(s: &str, plain: bool) -> Val {
    if !plain {
        return Val::Str(s.to_string());
    }
    match s {
        "" | "~" | "null" | "Null" | "NULL" => Val::Null,
        "true" | "True" | "TRUE" => Val::Bool(true),
        "false" | "False" | "FALSE" => Val::Bool(false),
        _ => {
            if let Ok(i) = s.parse::<i64>() {
                Val::Int(i)
            } else if s.chars().any(|c| c.is_ascii_digit())
                && !s.contains(':')
                && s.parse::<f64>().is_ok()
            {
                Val::Float(s.parse().unwrap_or(0.0))
            } else {
                Val::Str(s.to_string())
            }
        }
    }
}

/// The merged vars of one node, with the origin of every dotted key.
#[derive(Debug, Clone)]
pub struct Merged {
    pub value: Val,
    pub origins: BTreeMap<String, Origin>,
}

/// Merge `layers` (base first) into one value. The base is the schema; `locked` keys may not
/// be overridden by any later layer. Returns every problem found, not only the first.
pub fn merge(base: &Layer, locked: &[String], overrides: &[&Layer]) -> Result<Merged, Vec<Diag>> {
    let mut origins = BTreeMap::new();
    record_origins(&base.value, "", base, &mut origins);
    let mut value = base.value.clone();
    let mut errors = Vec::new();
    for layer in overrides {
        merge_into(
            &mut value,
            &layer.value,
            "",
            base,
            locked,
            layer,
            &mut origins,
            &mut errors,
        );
    }
    if errors.is_empty() {
        Ok(Merged { value, origins })
    } else {
        Err(errors)
    }
}

fn record_origins(v: &Val, path: &str, layer: &Layer, out: &mut BTreeMap<String, Origin>) {
    if !path.is_empty() {
        out.insert(path.to_string(), layer.origin(path));
    }
    if let Val::Map(m) = v {
        for (k, child) in m {
            record_origins(child, &join(path, k), layer, out);
        }
    }
}

/// Is `key` locked, or inside / above a locked key?
fn locked_hit<'a>(locked: &'a [String], key: &str) -> Option<&'a String> {
    locked.iter().find(|l| {
        key == l.as_str() || key.starts_with(&format!("{l}.")) || l.starts_with(&format!("{key}."))
    })
}

#[allow(clippy::too_many_arguments)]
fn merge_into(
    dst: &mut Val,
    src: &Val,
    path: &str,
    base: &Layer,
    locked: &[String],
    layer: &Layer,
    origins: &mut BTreeMap<String, Origin>,
    errors: &mut Vec<Diag>,
) {
    let (Val::Map(dmap), Val::Map(smap)) = (&mut *dst, src) else {
        return;
    };
    // An empty map in the base is a free-form map (e.g. extra environment variables, labels):
    // overrides may add any keys to it, at any depth. Decided by the base, not by `dst`,
    // which earlier keys and earlier layers have already filled.
    if !path.is_empty() && free_form(&base.value, path) {
        merge_free(dmap, smap, path, layer, origins);
        return;
    }
    for (k, sv) in smap {
        let p = join(path, k);
        let line = layer.line_of(&p);
        let Some(dv) = dmap.get_mut(k) else {
            errors.push(Diag::new(
                &layer.file,
                line,
                &p,
                format!(
                    "the base config has no key `{p}` (overrides may only change keys defined in {})",
                    base.file.display()
                ),
            ));
            continue;
        };
        if let Some(l) = locked_hit(locked, &p) {
            // A map that only descends towards a locked key is fine if it does not reach it.
            let descends = l.starts_with(&format!("{p}.")) && matches!(sv, Val::Map(_));
            if !descends {
                errors.push(Diag::new(
                    &layer.file,
                    line,
                    &p,
                    format!(
                        "`{l}` is locked in {} and may not be overridden",
                        base.file.display()
                    ),
                ));
                continue;
            }
        }
        match (&*dv, sv) {
            (Val::Map(_), Val::Map(_)) => {
                merge_into(dv, sv, &p, base, locked, layer, origins, errors);
                continue;
            }
            (Val::Map(_), other) => {
                errors.push(Diag::new(
                    &layer.file,
                    line,
                    &p,
                    format!(
                        "the base has a map here, the override gives {}",
                        other.kind()
                    ),
                ));
                continue;
            }
            (Val::Null, _) => {}
            (Val::List(_), other) if !matches!(other, Val::List(_)) => {
                errors.push(Diag::new(
                    &layer.file,
                    line,
                    &p,
                    format!(
                        "the base has a list here, the override gives {}",
                        other.kind()
                    ),
                ));
                continue;
            }
            (_, Val::Map(_)) if !matches!(dv, Val::Null) => {
                errors.push(Diag::new(
                    &layer.file,
                    line,
                    &p,
                    format!("the base has {} here, the override gives a map", dv.kind()),
                ));
                continue;
            }
            _ => {}
        }
        // Replace (lists replace, scalars replace): drop origins below, record the new ones.
        let prefix = format!("{p}.");
        origins.retain(|key, _| !key.starts_with(&prefix));
        *dv = sv.clone();
        record_origins(sv, &p, layer, origins);
    }
}

/// Is `dotted` (or a map above it) an empty map in the base, i.e. free-form?
fn free_form(base: &Val, dotted: &str) -> bool {
    let mut cur = base;
    for part in dotted.split('.') {
        match cur {
            Val::Map(m) if m.is_empty() => return true,
            Val::Map(m) => match m.get(part) {
                Some(next) => cur = next,
                None => return false,
            },
            _ => return false,
        }
    }
    matches!(cur, Val::Map(m) if m.is_empty())
}

/// Merge into a free-form map: no schema below it, so maps merge deeply, anything else replaces.
fn merge_free(
    dmap: &mut BTreeMap<String, Val>,
    smap: &BTreeMap<String, Val>,
    path: &str,
    layer: &Layer,
    origins: &mut BTreeMap<String, Origin>,
) {
    for (k, sv) in smap {
        let p = join(path, k);
        match (dmap.get_mut(k), sv) {
            (Some(dv @ Val::Map(_)), Val::Map(sm)) => {
                origins.insert(p.clone(), layer.origin(&p));
                if let Val::Map(dm) = dv {
                    merge_free(dm, sm, &p, layer, origins);
                }
            }
            _ => {
                let prefix = format!("{p}.");
                origins.retain(|key, _| !key.starts_with(&prefix));
                dmap.insert(k.clone(), sv.clone());
                record_origins(sv, &p, layer, origins);
            }
        }
    }
}

/// Flatten to (dotted key, leaf value) pairs in key order; lists are leaves.
pub fn leaves(v: &Val) -> Vec<(String, &Val)> {
    fn walk<'a>(v: &'a Val, path: &str, out: &mut Vec<(String, &'a Val)>) {
        match v {
            Val::Map(m) if !m.is_empty() => {
                for (k, c) in m {
                    walk(c, &join(path, k), out);
                }
            }
            _ => out.push((path.to_string(), v)),
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Parse a YAML text into a layer (for tests and loaders).
pub fn layer_from_str(layer: &str, file: &Path, text: &str) -> Result<Layer, Diag> {
    let node = yaml::parse(file, text)?;
    Ok(Layer::from_node(layer, file, &node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, file: &str, text: &str) -> Layer {
        layer_from_str(name, Path::new(file), text).unwrap()
    }

    const BASE: &str = "\
chain:
  id: monad-1
  name: testnet
validator:
  p2p_port: 8000
  peers: [a, b]
  tuning:
    nice: 0
    memory_max: 8G
";

    #[test]
    fn maps_merge_deeply_lists_and_scalars_replace() {
        let base = layer("base", "base.yaml", BASE);
        let node = layer(
            "node",
            "nodes/v1/vars.yaml",
            "validator:\n  peers: [c]\n  tuning:\n    nice: -5\n",
        );
        let m = merge(&base, &[], &[&node]).unwrap();
        assert_eq!(
            m.value.get_path("validator.peers"),
            Some(&Val::List(vec![Val::Str("c".into())]))
        );
        assert_eq!(
            m.value.get_path("validator.tuning.nice"),
            Some(&Val::Int(-5))
        );
        assert_eq!(
            m.value.get_path("validator.tuning.memory_max"),
            Some(&Val::Str("8G".into()))
        );
        assert_eq!(
            m.value.get_path("validator.p2p_port"),
            Some(&Val::Int(8000))
        );
    }

    #[test]
    fn provenance_names_the_layer_file_and_line() {
        let base = layer("base", "base.yaml", BASE);
        let group = layer(
            "group validators",
            "inventory/hosts.yaml",
            "validator:\n  p2p_port: 8100\n",
        );
        let node = layer(
            "node",
            "nodes/v1/vars.yaml",
            "\n\nvalidator:\n  tuning:\n    nice: 5\n",
        );
        let m = merge(&base, &[], &[&group, &node]).unwrap();
        let o = &m.origins["validator.p2p_port"];
        assert_eq!((o.layer.as_str(), o.line), ("group validators", 2));
        let o = &m.origins["validator.tuning.nice"];
        assert_eq!(
            (o.file.to_str().unwrap(), o.line),
            ("nodes/v1/vars.yaml", 5)
        );
        let o = &m.origins["validator.tuning.memory_max"];
        assert_eq!((o.layer.as_str(), o.line), ("base", 9));
        assert_eq!(o.to_string(), "base (base.yaml:9)");
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_line_and_key() {
        let base = layer("base", "base.yaml", BASE);
        let node = layer(
            "node",
            "nodes/v1/vars.yaml",
            "validator:\n  p2p_prot: 9000\n",
        );
        let errs = merge(&base, &[], &[&node]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].file, Path::new("nodes/v1/vars.yaml"));
        assert_eq!(errs[0].line, 2);
        assert_eq!(errs[0].key, "validator.p2p_prot");
    }

    #[test]
    fn locked_keys_cannot_be_overridden_directly_or_through_a_parent() {
        let base = layer("base", "base.yaml", BASE);
        let locked = vec!["chain.id".to_string()];
        let ok = layer("node", "n.yaml", "chain:\n  name: devnet\n");
        assert!(merge(&base, &locked, &[&ok]).is_ok());
        let direct = layer("node", "n.yaml", "chain:\n  id: evil\n");
        let errs = merge(&base, &locked, &[&direct]).unwrap_err();
        assert_eq!((errs[0].line, errs[0].key.as_str()), (2, "chain.id"));
        assert!(errs[0].message.contains("locked"), "{}", errs[0].message);
        let parent = layer("node", "n.yaml", "chain: replaced\n");
        let errs = merge(&base, &locked, &[&parent]).unwrap_err();
        assert_eq!(errs[0].key, "chain");
    }

    #[test]
    fn an_empty_base_map_is_free_form() {
        let base = layer("base", "base.yaml", "validator:\n  extra_env: {}\n");
        let node = layer(
            "node",
            "n.yaml",
            "validator:\n  extra_env:\n    RUST_LOG: debug\n",
        );
        let m = merge(&base, &[], &[&node]).unwrap();
        assert_eq!(
            m.value.get_path("validator.extra_env.RUST_LOG"),
            Some(&Val::Str("debug".into()))
        );
        assert_eq!(m.origins["validator.extra_env.RUST_LOG"].line, 3);
    }

    #[test]
    fn a_free_form_map_takes_every_key_of_every_layer() {
        let base = layer(
            "base",
            "base.yaml",
            "node_meta:\n  labels: {}\n  name: x\nvalidator:\n  extra_env: {}\n",
        );
        let group = layer(
            "group validators",
            "inventory/hosts.yaml",
            "node_meta:\n  labels:\n    tier: silver\n    rack: {row: 3, slot: 7}\n    owners: [a]\n",
        );
        let node = layer(
            "node",
            "nodes/v1/vars.yaml",
            "node_meta:\n  labels:\n    tier: gold\n    operator: acme\n    az: us-east-1a\n    \
             rack: {slot: 9, cage: b}\n    owners: [b, c]\nvalidator:\n  extra_env:\n    \
             A: '1'\n    B: '2'\n    C: {nested: true}\n",
        );
        let m = merge(&base, &[], &[&group, &node]).unwrap();
        let get = |k: &str| m.value.get_path(k).cloned();
        let s = |v: &str| Some(Val::Str(v.into()));
        assert_eq!(get("node_meta.labels.tier"), s("gold"));
        assert_eq!(get("node_meta.labels.operator"), s("acme"));
        assert_eq!(get("node_meta.labels.az"), s("us-east-1a"));
        // Maps inside a free-form map merge deeply across layers; lists replace.
        assert_eq!(get("node_meta.labels.rack.row"), Some(Val::Int(3)));
        assert_eq!(get("node_meta.labels.rack.slot"), Some(Val::Int(9)));
        assert_eq!(get("node_meta.labels.rack.cage"), s("b"));
        assert_eq!(
            get("node_meta.labels.owners"),
            Some(Val::List(vec![Val::Str("b".into()), Val::Str("c".into())]))
        );
        assert_eq!(get("validator.extra_env.A"), s("1"));
        assert_eq!(get("validator.extra_env.B"), s("2"));
        assert_eq!(get("validator.extra_env.C.nested"), Some(Val::Bool(true)));
        // Provenance: the layer that set each key last.
        assert_eq!(m.origins["node_meta.labels.tier"].layer, "node");
        assert_eq!(m.origins["node_meta.labels.az"].line, 5);
        assert_eq!(
            m.origins["node_meta.labels.rack.row"].layer,
            "group validators"
        );
        assert_eq!(m.origins["node_meta.labels.rack.slot"].layer, "node");
        assert_eq!(m.origins["validator.extra_env.C.nested"].line, 12);
        // The schema still holds next to and above a free-form map.
        let typo = layer(
            "node",
            "n.yaml",
            "node_meta:\n  nmae: y\n  labels: {a: b}\n",
        );
        let errs = merge(&base, &[], &[&typo]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].key.as_str(), errs[0].line), ("node_meta.nmae", 2));
        let shape = layer("node", "n.yaml", "node_meta:\n  labels: [a]\n");
        let errs = merge(&base, &[], &[&shape]).unwrap_err();
        assert!(errs[0].message.contains("map"), "{errs:?}");
    }

    #[test]
    fn a_locked_free_form_map_stays_locked() {
        let base = layer("base", "base.yaml", "validator:\n  extra_env: {}\n");
        let node = layer("node", "n.yaml", "validator:\n  extra_env:\n    A: b\n");
        let errs = merge(&base, &["validator.extra_env".into()], &[&node]).unwrap_err();
        assert_eq!(errs[0].key, "validator.extra_env");
        assert!(errs[0].message.contains("locked"));
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let base = layer("base", "base.yaml", BASE);
        let node = layer(
            "node",
            "n.yaml",
            "chain:\n  id: x\nvalidator:\n  typo: 1\n  tuning: 3\n",
        );
        let errs = merge(&base, &["chain.id".into()], &[&node]).unwrap_err();
        let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["chain.id", "validator.tuning", "validator.typo"]);
    }

    #[test]
    fn plain_scalars_are_typed_quoted_ones_are_strings() {
        let l = layer(
            "b",
            "b.yaml",
            "a: 8000\nb: '8000'\nc: true\nd: ~\ne: 1.5\nf: 10:30\n",
        );
        assert_eq!(l.value.get_path("a"), Some(&Val::Int(8000)));
        assert_eq!(l.value.get_path("b"), Some(&Val::Str("8000".into())));
        assert_eq!(l.value.get_path("c"), Some(&Val::Bool(true)));
        assert_eq!(l.value.get_path("d"), Some(&Val::Null));
        assert_eq!(l.value.get_path("e"), Some(&Val::Float(1.5)));
        assert_eq!(l.value.get_path("f"), Some(&Val::Str("10:30".into())));
    }
}
