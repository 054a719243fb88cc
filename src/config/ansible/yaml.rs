//! Ansible's YAML, read the way Ansible (PyYAML, YAML 1.1) reads it, with the line of every
//! value: `yes`/`no`/`on`/`off` are booleans, `0755` is octal, anchors, aliases and merge keys
//! (`<<`) work, and a `!vault` tag is kept so the value can be reported instead of used.
//!
//! strata's own loader (config::yaml) refuses tags, anchors and merge keys on purpose; an
//! Ansible repo uses them, so this reader walks yaml-rust2's event stream itself.

use crate::config::vars::Val;
use std::collections::BTreeMap;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// A YAML value with the line it starts at and its tag, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum YNode {
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
        line: usize,
    },
    Seq(Vec<YNode>, usize),
    /// Entries in file order (keys are scalars; a complex key is read as its text).
    Map(Vec<(String, usize, YNode)>, usize),
}

impl YNode {
    pub fn line(&self) -> usize {
        match self {
            YNode::Scalar { line, .. } | YNode::Seq(_, line) | YNode::Map(_, line) => *line,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, YNode::Scalar { text, plain: true, tag: None, .. } if is_null(text))
    }

    pub fn entries(&self) -> Option<&[(String, usize, YNode)]> {
        match self {
            YNode::Map(e, _) => Some(e),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&YNode> {
        self.entries()?
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
    }
}

/// A problem in a value that is read on (the caller reports it at `line`).
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// `!vault |`: encrypted with ansible-vault; strata cannot decrypt it.
    Vault,
    /// `{{ ... }}` or `{% ... %}`: Ansible templates vars lazily; strata vars are plain data.
    Jinja,
}

/// Parse one YAML document (an empty text is `None`). Errors carry the line.
pub fn parse(text: &str) -> Result<Option<YNode>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut events = Vec::new();
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => events.push((ev, mark.line())),
            Err(e) => return Err((e.marker().line(), e.info().to_string())),
        }
    }
    let mut b = Builder {
        events,
        pos: 0,
        anchors: BTreeMap::new(),
        depth: 0,
        built: 0,
    };
    b.document()
}

struct Builder {
    events: Vec<(Event, usize)>,
    pos: usize,
    /// Anchored nodes with their size in nodes (an alias costs its anchor's size).
    anchors: BTreeMap<usize, (YNode, usize)>,
    depth: usize,
    /// Nodes built so far, aliases expanded: bounds a "billion laughs" file.
    built: usize,
}

/// Most nodes one file may expand to (far above any inventory; aliases counted expanded).
const MAX_NODES: usize = 1_000_000;

impl Builder {
    fn next(&mut self) -> Option<(Event, usize)> {
        let e = self.events.get(self.pos).cloned();
        self.pos += 1;
        e
    }

    fn document(&mut self) -> Result<Option<YNode>, (usize, String)> {
        let mut root = None;
        while let Some((ev, line)) = self.next() {
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart => {
                    if root.is_some() {
                        return Err((line, "a second YAML document: Ansible reads one".into()));
                    }
                }
                ev => {
                    if root.is_some() {
                        return Err((line, "a second YAML document: Ansible reads one".into()));
                    }
                    root = Some(self.node(ev, line)?);
                }
            }
        }
        Ok(root)
    }

    fn node(&mut self, ev: Event, line: usize) -> Result<YNode, (usize, String)> {
        self.depth += 1;
        if self.depth > crate::config::yaml::MAX_DEPTH {
            return Err((line, "nested too deep".into()));
        }
        let start = self.built;
        self.built += 1;
        if self.built > MAX_NODES {
            return Err((line, "too many values (aliases expanded)".into()));
        }
        let n = match ev {
            Event::Alias(id) => {
                let (n, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or((line, "an alias to an unknown anchor".to_string()))?;
                self.built += size;
                if self.built > MAX_NODES {
                    return Err((line, "too many values (aliases expanded)".into()));
                }
                n
            }
            Event::Scalar(text, style, anchor, tag) => {
                // A block scalar's mark is its first content line; its `|` or `>` (and the
                // key, the tag) are on the line before.
                let line = match style {
                    TScalarStyle::Literal | TScalarStyle::Folded => line.saturating_sub(1).max(1),
                    _ => line,
                };
                let n = YNode::Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                    tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                    line,
                };
                self.anchor(anchor, &n, start);
                n
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, l) = self.next().ok_or((line, "unterminated list".to_string()))?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(ev, l)?);
                }
                let n = YNode::Seq(items, line);
                self.anchor(anchor, &n, start);
                n
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(String, usize, YNode)> = Vec::new();
                let mut merged: Vec<(String, usize, YNode)> = Vec::new();
                loop {
                    let (ev, l) = self.next().ok_or((line, "unterminated map".to_string()))?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(ev, l)?;
                    let (vev, vl) = self
                        .next()
                        .ok_or((l, "a key without a value".to_string()))?;
                    let val = self.node(vev, vl)?;
                    let k = match &key {
                        YNode::Scalar { text, .. } => text.clone(),
                        other => format!("{:?}", to_val(other, "", &mut |_, _, _| None)),
                    };
                    if k == "<<" {
                        // Merge key: the merged maps' entries, overridden by explicit ones.
                        let sources = match &val {
                            YNode::Seq(items, _) => items.clone(),
                            one => vec![one.clone()],
                        };
                        for s in sources {
                            let Some(e) = s.entries() else {
                                return Err((l, "`<<` merges a map (or a list of maps)".into()));
                            };
                            for (mk, ml, mv) in e {
                                if !merged.iter().any(|(x, _, _)| x == mk) {
                                    merged.push((mk.clone(), *ml, mv.clone()));
                                }
                            }
                        }
                        continue;
                    }
                    // PyYAML keeps the last of duplicate keys.
                    entries.retain(|(x, _, _)| *x != k);
                    entries.push((k, key.line(), val));
                }
                for m in merged {
                    if !entries.iter().any(|(x, _, _)| *x == m.0) {
                        entries.push(m);
                    }
                }
                let n = YNode::Map(entries, line);
                self.anchor(anchor, &n, start);
                n
            }
            other => return Err((line, format!("unexpected YAML event {other:?}"))),
        };
        self.depth -= 1;
        Ok(n)
    }

    fn anchor(&mut self, id: usize, n: &YNode, start: usize) {
        if id > 0 {
            self.anchors.insert(id, (n.clone(), self.built - start));
        }
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// A plain scalar as PyYAML's YAML 1.1 resolver types it (sexagesimal numbers aside).
pub fn scalar_11(s: &str) -> Val {
    if is_null(s) {
        return Val::Null;
    }
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Val::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Val::Bool(false)
        }
        _ => {}
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = body.replace('_', "");
    let int = if let Some(h) = digits.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(b) = digits.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    };
    if let Some(i) = int.filter(|_| !body.starts_with('_')) {
        return Val::Int(if neg { -i } else { i });
    }
    // YAML 1.1 floats need a '.' (`1e3` is a string to PyYAML).
    if body.contains('.')
        && body.chars().any(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
    {
        if let Ok(f) = digits.parse::<f64>() {
            return Val::Float(if neg { -f } else { f });
        }
    }
    Val::Str(s.to_string())
}

/// Does a string hold Jinja (Ansible templates it when the var is used)?
pub fn has_jinja(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The value of a node at dotted `path`. `found(line, path, finding)` is told of every
/// vaulted or templated scalar and may give the value to use instead (a vaulted one is
/// `Val::Null` otherwise).
pub fn to_val(
    n: &YNode,
    path: &str,
    found: &mut dyn FnMut(usize, &str, Finding) -> Option<Val>,
) -> Val {
    match n {
        YNode::Scalar {
            text, plain, tag, ..
        } => {
            if tag.as_deref() == Some("!vault") {
                return found(n.line(), path, Finding::Vault).unwrap_or(Val::Null);
            }
            // `!unsafe` text is never templated by Ansible either: literal, as in strata.
            if has_jinja(text) && tag.as_deref() != Some("!unsafe") {
                if let Some(v) = found(n.line(), path, Finding::Jinja) {
                    return v;
                }
            }
            // `!unsafe` (and `!!str`) mark a string that is never templated or typed.
            if *plain && tag.is_none() {
                scalar_11(text)
            } else {
                Val::Str(text.clone())
            }
        }
        YNode::Seq(items, _) => Val::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_val(v, &format!("{path}[{i}]"), found))
                .collect(),
        ),
        YNode::Map(entries, _) => Val::Map(
            entries
                .iter()
                .map(|(k, _, v)| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    (k.clone(), to_val(v, &p, found))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(text: &str) -> Val {
        to_val(&parse(text).unwrap().unwrap(), "", &mut |_, _, _| None)
    }

    #[test]
    fn scalars_are_typed_as_pyyaml_types_them() {
        // PyYAML (YAML 1.1): yes/on are booleans, a leading 0 is octal, 1e3 is a string.
        assert_eq!(scalar_11("yes"), Val::Bool(true));
        assert_eq!(scalar_11("Off"), Val::Bool(false));
        assert_eq!(scalar_11("0644"), Val::Int(420));
        assert_eq!(scalar_11("0x1f"), Val::Int(31));
        assert_eq!(scalar_11("-12"), Val::Int(-12));
        assert_eq!(scalar_11("1_000"), Val::Int(1000));
        assert_eq!(scalar_11("1.5"), Val::Float(1.5));
        assert_eq!(scalar_11("1e3"), Val::Str("1e3".into()));
        assert_eq!(scalar_11("~"), Val::Null);
        assert_eq!(scalar_11("0.9.3"), Val::Str("0.9.3".into()));
        assert_eq!(scalar_11("08"), Val::Str("08".into()));
        // Quoted is always a string.
        assert_eq!(val("a: 'yes'"), val("a: \"yes\""));
        assert_eq!(val("a: 'yes'").get_path("a"), Some(&Val::Str("yes".into())));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = val("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b]\n");
        assert_eq!(v.get_path("other.x"), Some(&Val::Int(1)));
        assert_eq!(v.get_path("other.y"), Some(&Val::Int(3)));
        assert!(matches!(v.get_path("list"), Some(Val::List(l)) if l.len() == 1));
    }

    #[test]
    fn vault_and_jinja_are_found_at_their_lines() {
        let text = "a: 1\npw: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6134\nurl: \"http://{{ host }}/\"\nraw: !unsafe '{{ x }}'\n";
        let n = parse(text).unwrap().unwrap();
        let mut seen = Vec::new();
        let v = to_val(&n, "", &mut |l, p, f| {
            seen.push((l, p.to_string(), f));
            None
        });
        assert_eq!(
            seen,
            vec![
                (2, "pw".into(), Finding::Vault),
                (5, "url".into(), Finding::Jinja)
            ]
        );
        assert_eq!(v.get_path("pw"), Some(&Val::Null));
        // Keys keep their own lines.
        let lines: Vec<usize> = n.entries().unwrap().iter().map(|e| e.1).collect();
        assert_eq!(lines, vec![1, 2, 5, 6]);
        assert_eq!(v.get_path("raw"), Some(&Val::Str("{{ x }}".into())));
    }

    #[test]
    fn broken_yaml_is_an_error_with_a_line_never_a_panic() {
        assert_eq!(parse("").unwrap(), None);
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.0 >= 2, "{e:?}");
        assert!(parse("x: *nothing\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        let deep = "a: ".to_string() + &"[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep).is_err());
        // Aliases of aliases: a few lines that expand past any real file.
        let mut laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 0..8 {
            let (p, c) = ((b'a' + i) as char, (b'b' + i) as char);
            laughs += &format!(
                "{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            );
        }
        assert!(parse(&laughs).unwrap_err().1.contains("too many"));
    }
}
