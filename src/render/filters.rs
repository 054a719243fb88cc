//! The Ansible filters operators use, with Ansible's semantics (ansible-core
//! `plugins/filter/core.py`, `ansible.utils.ipaddr`): to_yaml/to_nice_yaml (PyYAML's emitter),
//! to_json/to_nice_json (Python's json.dumps), from_json, regex_replace/regex_search/
//! regex_findall/regex_escape, b64encode/b64decode, ipaddr, ternary, combine,
//! dict2items/items2dict, basename/dirname, quote, mandatory, hash.
//!
//! Known differences: strata's maps are sorted by key (vars are read into sorted maps), so
//! `to_json` lists keys sorted where Ansible keeps the source order (to_nice_json and the YAML
//! filters sort in Ansible too). Regexes are Rust's (`regex-lite`): no look-around and no
//! backreferences inside a pattern; `\1` and `\g<name>` in replacements work.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use std::collections::BTreeMap;

pub fn add_to(env: &mut Environment<'static>) {
    // Each under its short name and Ansible's fully qualified one (`ansible.builtin.to_json`).
    macro_rules! both {
        ($($name:literal => $f:expr),* $(,)?) => {$(
            env.add_filter($name, $f);
            env.add_filter(concat!("ansible.builtin.", $name), $f);
        )*};
    }
    both! {
        "to_yaml" => to_yaml,
        "to_nice_yaml" => to_nice_yaml,
        "to_json" => to_json,
        "to_nice_json" => to_nice_json,
        "from_json" => from_json,
        "regex_replace" => regex_replace,
        "regex_search" => regex_search,
        "regex_findall" => regex_findall,
        "regex_escape" => regex_escape,
        "b64encode" => b64encode,
        "b64decode" => b64decode,
        "ternary" => ternary,
        "combine" => combine,
        "dict2items" => dict2items,
        "items2dict" => items2dict,
        "basename" => basename,
        "dirname" => dirname,
        "quote" => quote,
        "mandatory" => mandatory,
        "hash" => hash,
    }
    env.add_filter("ipaddr", ipaddr);
    env.add_filter("ansible.utils.ipaddr", ipaddr);
    // Ansible's regex tests: `x is match(re)` (anchored at the start), `search`, `regex`.
    for (name, anchored) in [("match", true), ("search", false), ("regex", false)] {
        let t = move |v: Value, re: String, kwargs: Kwargs| -> Result<bool, Error> {
            regex_test(v, re, kwargs, anchored)
        };
        env.add_test(name, t);
        env.add_test(format!("ansible.builtin.{name}"), t);
    }
}

/// Jinja2's `indent(width=4, first=False, blank=False)`, which keeps a trailing newline
/// (minijinja's drops it); used for the Ansible style.
pub fn jinja2_indent(
    s: String,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = match width.or(kw(&kwargs, "width")?) {
        None => " ".repeat(4),
        Some(w) => match w.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(w).map_err(|e| err(e.to_string()))?),
        },
    };
    let first = first.or(kw(&kwargs, "first")?).unwrap_or(false);
    let blank = blank.or(kw(&kwargs, "blank")?).unwrap_or(false);
    kwargs.assert_all_used()?;
    let s = format!("{s}\n");
    let lines: Vec<&str> = s.lines().collect();
    let mut rv = if blank {
        lines.join(&format!("\n{width}"))
    } else {
        let mut rv = lines[0].to_string();
        if lines.len() > 1 {
            rv.push('\n');
            let rest: Vec<String> = lines[1..]
                .iter()
                .map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("{width}{l}")
                    }
                })
                .collect();
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first {
        rv = format!("{width}{rv}");
    }
    Ok(rv)
}

fn regex_test(v: Value, re: String, kwargs: Kwargs, anchored: bool) -> Result<bool, Error> {
    let ic = kw(&kwargs, "ignorecase")?.unwrap_or(false);
    let ml = kw(&kwargs, "multiline")?.unwrap_or(false);
    let mt: Option<String> = kw(&kwargs, "match_type")?;
    kwargs.assert_all_used()?;
    let anchored = match mt.as_deref() {
        Some("match") => true,
        Some("search") => false,
        Some(other) => return Err(err(format!("match_type `{other}` is not supported"))),
        None => anchored,
    };
    let pattern = if anchored { format!("\\A(?:{re})") } else { re };
    Ok(compile(&pattern, ic, ml)?.is_match(&text_of(&v)))
}

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Plain data, as Python sees it.
#[derive(Debug, Clone, PartialEq)]
enum Py {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

fn py(v: &Value) -> Result<Py, Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => return Err(err("undefined value")),
        ValueKind::None => Py::None,
        ValueKind::Bool => Py::Bool(v.is_true()),
        ValueKind::Number => match i128::try_from(v.clone()) {
            Ok(i) if v.is_integer() => Py::Int(i),
            _ => Py::Float(f64::try_from(v.clone()).map_err(|e| err(e.to_string()))?),
        },
        ValueKind::String => Py::Str(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Map => {
            let mut out = Vec::new();
            for k in v.try_iter()? {
                let val = v.get_item(&k)?;
                out.push((py(&k)?, py(&val)?));
            }
            Py::Dict(out)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            Py::List(v.try_iter()?.map(|x| py(&x)).collect::<Result<_, _>>()?)
        }
        _ => Py::Str(v.to_string()),
    })
}

fn sort_keys(p: &mut Py) {
    match p {
        Py::Dict(items) => {
            items.sort_by(|a, b| key_order(&a.0, &b.0));
            items.iter_mut().for_each(|(_, v)| sort_keys(v));
        }
        Py::List(xs) => xs.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

fn key_order(a: &Py, b: &Py) -> std::cmp::Ordering {
    match (a, b) {
        (Py::Str(a), Py::Str(b)) => a.cmp(b),
        (Py::Int(a), Py::Int(b)) => a.cmp(b),
        _ => format!("{a:?}").cmp(&format!("{b:?}")),
    }
}

/// Python's `repr(float)`: shortest round-trip digits; exponent form below 1e-4 or from 1e16.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let e = format!("{f:e}"); // like 1.5e-7, 1e20, -2.5e0
    let (mant, exp) = e.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent number");
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

/// Python's `repr` of plain data (`['a', 1]`, `{'k': True}`, `None`), as Jinja2 prints it.
pub fn python_repr(v: &Value) -> Result<String, Error> {
    fn rep(p: &Py, out: &mut String) {
        match p {
            Py::None => out.push_str("None"),
            Py::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Py::Int(i) => out.push_str(&i.to_string()),
            Py::Float(f) => out.push_str(&py_float(*f)),
            Py::Str(s) => {
                let q = if s.contains('\'') && !s.contains('"') {
                    '"'
                } else {
                    '\''
                };
                out.push(q);
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if c == q => {
                            out.push('\\');
                            out.push(c);
                        }
                        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                            out.push_str(&format!("\\x{:02x}", c as u32))
                        }
                        c => out.push(c),
                    }
                }
                out.push(q);
            }
            Py::List(xs) => {
                out.push('[');
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    rep(x, out);
                }
                out.push(']');
            }
            Py::Dict(xs) => {
                out.push('{');
                for (i, (k, x)) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    rep(k, out);
                    out.push_str(": ");
                    rep(x, out);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    rep(&py(v)?, &mut out);
    Ok(out)
}

// ---------------------------------------------------------------- JSON (Python json.dumps)

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                // ensure_ascii=True: everything else outside ASCII as \uXXXX (UTF-16).
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(p: &Py, indent: Option<usize>, level: usize, out: &mut String) -> Result<(), Error> {
    let (item_sep, nl) = match indent {
        Some(_) => (",", true),
        None => (", ", false),
    };
    let pad = |out: &mut String, l: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * l));
        }
    };
    match p {
        Py::None => out.push_str("null"),
        Py::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Py::Int(i) => out.push_str(&i.to_string()),
        Py::Float(f) if f.is_nan() => out.push_str("NaN"),
        Py::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Py::Float(f) => out.push_str(&py_float(*f)),
        Py::Str(s) => json_str(s, out),
        Py::List(xs) if xs.is_empty() => out.push_str("[]"),
        Py::Dict(xs) if xs.is_empty() => out.push_str("{}"),
        Py::List(xs) => {
            out.push('[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                pad(out, level + 1);
                json(x, indent, level + 1, out)?;
            }
            if nl {
                pad(out, level);
            }
            out.push(']');
        }
        Py::Dict(xs) => {
            out.push('{');
            for (i, (k, v)) in xs.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                pad(out, level + 1);
                // json.dumps turns int, float, bool and None keys into strings.
                let key = match k {
                    Py::Str(s) => s.clone(),
                    Py::Int(i) => i.to_string(),
                    Py::Bool(b) => b.to_string(),
                    Py::None => "null".into(),
                    Py::Float(f) => py_float(*f),
                    _ => return Err(err("keys must be str, int, float, bool or None")),
                };
                json_str(&key, out);
                out.push_str(": ");
                json(v, indent, level + 1, out)?;
            }
            if nl {
                pad(out, level);
            }
            out.push('}');
        }
    }
    Ok(())
}

fn kw<T: for<'a> minijinja::value::ArgType<'a, Output = T>>(
    kwargs: &Kwargs,
    name: &str,
) -> Result<Option<T>, Error> {
    kwargs.get::<Option<T>>(name)
}

/// `to_json`: `json.dumps(a)` (options: `indent`, `sort_keys`).
pub fn to_json(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kw(&kwargs, "indent")?;
    let sort: bool = kw(&kwargs, "sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let mut p = py(&v)?;
    if sort {
        sort_keys(&mut p);
    }
    let mut out = String::new();
    json(&p, indent, 0, &mut out)?;
    Ok(out)
}

/// `to_nice_json`: `json.dumps(a, indent=4, sort_keys=True, separators=(',', ': '))`.
pub fn to_nice_json(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: usize = kw(&kwargs, "indent")?.unwrap_or(4);
    let sort: bool = kw(&kwargs, "sort_keys")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let mut p = py(&v)?;
    if sort {
        sort_keys(&mut p);
    }
    let mut out = String::new();
    json(&p, Some(indent), 0, &mut out)?;
    Ok(out)
}

pub fn from_json(s: String) -> Result<Value, Error> {
    let v: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| err(format!("from_json: {e}")))?;
    Ok(Value::from_serialize(&v))
}

// ---------------------------------------------------------------- YAML (PyYAML's emitter)

/// A YAML 1.1 plain scalar PyYAML's resolver would not read back as a string.
fn resolves_to_non_str(s: &str) -> bool {
    use std::sync::OnceLock;
    static RES: OnceLock<Vec<regex_lite::Regex>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
            r"^(?:<<)$",
            r"^(?:~|null|Null|NULL|)$",
            r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
            r"^(?:=)$",
        ]
        .iter()
        .map(|r| regex_lite::Regex::new(r).expect("resolver regex"))
        .collect()
    });
    res.iter().any(|r| r.is_match(s))
}

#[derive(Default)]
struct Analysis {
    empty: bool,
    multiline: bool,
    flow_plain: bool,
    block_plain: bool,
    single_quoted: bool,
}

const BREAKS: &[char] = &['\n', '\u{85}', '\u{2028}', '\u{2029}'];

fn is_ws(c: Option<char>) -> bool {
    matches!(
        c,
        None | Some('\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
    )
}

/// PyYAML `Emitter.analyze_scalar` (allow_unicode=True).
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            empty: true,
            block_plain: true,
            single_quoted: true,
            ..Default::default()
        };
    }
    let ch: Vec<char> = s.chars().collect();
    let (mut block_ind, mut flow_ind) = (false, false);
    let (mut line_breaks, mut special) = (false, false);
    let (mut lead_space, mut lead_break, mut trail_space, mut trail_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_ind = true;
        flow_ind = true;
    }
    let mut preceded_ws = true;
    let mut followed_ws = ch.len() == 1 || is_ws(ch.get(1).copied());
    let (mut prev_space, mut prev_break) = (false, false);
    for (i, &c) in ch.iter().enumerate() {
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                flow_ind = true;
                block_ind = true;
            }
            if "?:".contains(c) {
                flow_ind = true;
                if followed_ws {
                    block_ind = true;
                }
            }
            if c == '-' && followed_ws {
                flow_ind = true;
                block_ind = true;
            }
        } else {
            if ",?[]{}".contains(c) {
                flow_ind = true;
            }
            if c == ':' {
                flow_ind = true;
                if followed_ws {
                    block_ind = true;
                }
            }
            if c == '#' && preceded_ws {
                flow_ind = true;
                block_ind = true;
            }
        }
        if BREAKS.contains(&c) {
            line_breaks = true;
        }
        if !(c == '\n' || (' '..='~').contains(&c)) {
            let printable = c == '\u{85}'
                || ('\u{A0}'..='\u{D7FF}').contains(&c)
                || ('\u{E000}'..='\u{FFFD}').contains(&c)
                || ('\u{10000}'..'\u{10FFFF}').contains(&c);
            if !printable || c == '\u{FEFF}' {
                special = true;
            }
        }
        if c == ' ' {
            lead_space |= i == 0;
            trail_space |= i == ch.len() - 1;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if BREAKS.contains(&c) {
            lead_break |= i == 0;
            trail_break |= i == ch.len() - 1;
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = is_ws(Some(c));
        followed_ws = i + 2 >= ch.len() || is_ws(ch.get(i + 2).copied());
    }
    let mut a = Analysis {
        empty: false,
        multiline: line_breaks,
        flow_plain: true,
        block_plain: true,
        single_quoted: true,
    };
    if lead_space || lead_break || trail_space || trail_break {
        a.flow_plain = false;
        a.block_plain = false;
    }
    if break_space {
        a.flow_plain = false;
        a.block_plain = false;
        a.single_quoted = false;
    }
    if space_break || special || line_breaks {
        a.flow_plain = false;
        a.block_plain = false;
    }
    if space_break || special {
        a.single_quoted = false;
    }
    if flow_ind {
        a.flow_plain = false;
    }
    if block_ind {
        a.block_plain = false;
    }
    a
}

/// A node as PyYAML's SafeRepresenter makes it.
enum YNode {
    /// text, and whether the plain text reads back as this value's type (`implicit[0]`).
    Scalar(String, bool),
    Seq(Vec<YNode>, bool),
    Map(Vec<(YNode, YNode)>, bool),
}

fn represent(p: &Py, flow: Option<bool>) -> YNode {
    let scalar = |s: String| YNode::Scalar(s, true);
    match p {
        Py::None => scalar("null".into()),
        Py::Bool(b) => scalar(if *b { "true" } else { "false" }.into()),
        Py::Int(i) => scalar(i.to_string()),
        Py::Float(f) => scalar(if f.is_nan() {
            ".nan".into()
        } else if f.is_infinite() {
            if *f > 0.0 { ".inf" } else { "-.inf" }.into()
        } else {
            let v = py_float(*f).to_lowercase();
            if !v.contains('.') && v.contains('e') {
                v.replacen('e', ".0e", 1)
            } else {
                v
            }
        }),
        Py::Str(s) => YNode::Scalar(s.clone(), !resolves_to_non_str(s)),
        Py::List(xs) => {
            let items: Vec<YNode> = xs.iter().map(|x| represent(x, flow)).collect();
            let best = items.iter().all(|i| matches!(i, YNode::Scalar(..)));
            YNode::Seq(items, flow.unwrap_or(best))
        }
        Py::Dict(xs) => {
            let items: Vec<(YNode, YNode)> = xs
                .iter()
                .map(|(k, v)| (represent(k, flow), represent(v, flow)))
                .collect();
            let best = items
                .iter()
                .all(|(k, v)| matches!(k, YNode::Scalar(..)) && matches!(v, YNode::Scalar(..)));
            YNode::Map(items, flow.unwrap_or(best))
        }
    }
}

/// A port of the parts of PyYAML's `Emitter` that a dump of plain data uses.
struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
    flow_level: usize,
    best_indent: usize,
    best_width: usize,
    root: bool,
    mapping_ctx: bool,
    simple_key_ctx: bool,
}

impl Emitter {
    fn write(&mut self, s: &str) {
        self.column += s.chars().count();
        self.out.push_str(s);
    }

    fn indicator(&mut self, ind: &str, need_ws: bool, whitespace: bool, indention: bool) {
        if self.whitespace || !need_ws {
            self.write(ind);
        } else {
            self.write(&format!(" {ind}"));
        }
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
        self.open_ended = false;
    }

    fn line_break(&mut self) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
        self.out.push('\n');
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.line_break();
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.write(&pad);
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        self.indent = match self.indent {
            None => Some(if flow { self.best_indent } else { 0 }),
            Some(i) if !indentless => Some(i + self.best_indent),
            same => same,
        };
    }

    fn node(&mut self, n: &YNode, root: bool, mapping: bool, simple_key: bool) {
        self.root = root;
        self.mapping_ctx = mapping;
        self.simple_key_ctx = simple_key;
        match n {
            YNode::Scalar(s, implicit) => {
                self.increase_indent(true, false);
                self.scalar(s, *implicit);
                self.indent = self.indents.pop().flatten();
            }
            YNode::Seq(items, flow) => {
                if self.flow_level > 0 || *flow || items.is_empty() {
                    self.flow_seq(items)
                } else {
                    self.block_seq(items)
                }
            }
            YNode::Map(items, flow) => {
                if self.flow_level > 0 || *flow || items.is_empty() {
                    self.flow_map(items)
                } else {
                    self.block_map(items)
                }
            }
        }
    }

    fn flow_seq(&mut self, items: &[YNode]) {
        self.indicator("[", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.indicator(",", false, false, false);
            }
            if self.column > self.best_width {
                self.write_indent();
            }
            self.node(it, false, false, false);
        }
        self.indent = self.indents.pop().flatten();
        self.flow_level -= 1;
        self.indicator("]", false, false, false);
    }

    fn flow_map(&mut self, items: &[(YNode, YNode)]) {
        self.indicator("{", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, (k, v)) in items.iter().enumerate() {
            if i > 0 {
                self.indicator(",", false, false, false);
            }
            if self.column > self.best_width {
                self.write_indent();
            }
            self.node(k, false, true, true);
            self.indicator(":", false, false, false);
            self.node(v, false, true, false);
        }
        self.indent = self.indents.pop().flatten();
        self.flow_level -= 1;
        self.indicator("}", false, false, false);
    }

    fn block_seq(&mut self, items: &[YNode]) {
        let indentless = self.mapping_ctx && !self.indention;
        self.increase_indent(false, indentless);
        for it in items {
            self.write_indent();
            self.indicator("-", true, false, true);
            self.node(it, false, false, false);
        }
        self.indent = self.indents.pop().flatten();
    }

    fn block_map(&mut self, items: &[(YNode, YNode)]) {
        self.increase_indent(false, false);
        for (k, v) in items {
            self.write_indent();
            self.node(k, false, true, true);
            self.indicator(":", false, false, false);
            self.node(v, false, true, false);
        }
        self.indent = self.indents.pop().flatten();
    }

    fn scalar(&mut self, s: &str, implicit: bool) {
        let a = analyze(s);
        let split = !self.simple_key_ctx;
        let plain = implicit
            && !(self.simple_key_ctx && (a.empty || a.multiline))
            && ((self.flow_level > 0 && a.flow_plain) || (self.flow_level == 0 && a.block_plain));
        if plain {
            self.plain(s, split)
        } else if a.single_quoted && !(self.simple_key_ctx && a.multiline) {
            self.single_quoted(s, split)
        } else {
            self.double_quoted(s, split)
        }
    }

    fn plain(&mut self, text: &str, split: bool) {
        if self.root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let ch: Vec<char> = text.chars().collect();
        let (mut spaces, mut start) = (false, 0);
        for end in 0..=ch.len() {
            let c = ch.get(end).copied();
            if spaces {
                if c != Some(' ') {
                    if start + 1 == end && self.column > self.best_width && split {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let s: String = ch[start..end].iter().collect();
                        self.write(&s);
                    }
                    start = end;
                }
            } else if c.is_none() || c == Some(' ') {
                let s: String = ch[start..end].iter().collect();
                self.write(&s);
                start = end;
            }
            spaces = c == Some(' ');
        }
    }

    fn single_quoted(&mut self, text: &str, split: bool) {
        self.indicator("'", true, false, false);
        let ch: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks, mut start) = (false, false, 0);
        for end in 0..=ch.len() {
            let c = ch.get(end).copied();
            if spaces {
                if c != Some(' ') {
                    if start + 1 == end
                        && self.column > self.best_width
                        && split
                        && start != 0
                        && end != ch.len()
                    {
                        self.write_indent();
                    } else {
                        let s: String = ch[start..end].iter().collect();
                        self.write(&s);
                    }
                    start = end;
                }
            } else if breaks {
                if c.is_none_or(|c| !BREAKS.contains(&c)) {
                    if ch[start] == '\n' {
                        self.line_break();
                    }
                    for &br in &ch[start..end] {
                        if br == '\n' {
                            self.line_break();
                        } else {
                            self.out.push(br);
                            self.line_break_only();
                        }
                    }
                    self.write_indent();
                    start = end;
                }
            } else if (c.is_none()
                || c == Some(' ')
                || c == Some('\'')
                || c.is_some_and(|c| BREAKS.contains(&c)))
                && start < end
            {
                let s: String = ch[start..end].iter().collect();
                self.write(&s);
                start = end;
            }
            if c == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = c {
                spaces = c == ' ';
                breaks = BREAKS.contains(&c);
            }
        }
        self.indicator("'", false, false, false);
    }

    fn line_break_only(&mut self) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
    }

    fn double_quoted(&mut self, text: &str, split: bool) {
        self.indicator("\"", true, false, false);
        let ch: Vec<char> = text.chars().collect();
        let mut start = 0;
        let n = ch.len();
        for end in 0..=n {
            let c = ch.get(end).copied();
            let needs_escape = match c {
                None => true,
                Some(c) => {
                    "\"\\\u{85}\u{2028}\u{2029}\u{FEFF}".contains(c)
                        || !((' '..='~').contains(&c)
                            || ('\u{A0}'..='\u{D7FF}').contains(&c)
                            || ('\u{E000}'..='\u{FFFD}').contains(&c))
                }
            };
            if needs_escape {
                if start < end {
                    let s: String = ch[start..end].iter().collect();
                    self.write(&s);
                    start = end;
                }
                if let Some(c) = c {
                    let esc = match c {
                        '\0' => "\\0".to_string(),
                        '\u{7}' => "\\a".into(),
                        '\u{8}' => "\\b".into(),
                        '\t' => "\\t".into(),
                        '\n' => "\\n".into(),
                        '\u{b}' => "\\v".into(),
                        '\u{c}' => "\\f".into(),
                        '\r' => "\\r".into(),
                        '\u{1b}' => "\\e".into(),
                        '"' => "\\\"".into(),
                        '\\' => "\\\\".into(),
                        '\u{85}' => "\\N".into(),
                        '\u{A0}' => "\\_".into(),
                        '\u{2028}' => "\\L".into(),
                        '\u{2029}' => "\\P".into(),
                        c if (c as u32) <= 0xff => format!("\\x{:02X}", c as u32),
                        c if (c as u32) <= 0xffff => format!("\\u{:04X}", c as u32),
                        c => format!("\\U{:08X}", c as u32),
                    };
                    self.write(&esc);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < n
                && (c == Some(' ') || start >= end)
                && self.column + end.saturating_sub(start) > self.best_width
                && split
            {
                let s: String = ch[start.min(end)..end].iter().collect();
                if start < end {
                    start = end;
                }
                self.write(&format!("{s}\\"));
                self.write_indent();
                self.whitespace = false;
                self.indention = false;
                if ch.get(start) == Some(&' ') {
                    self.write("\\");
                }
            }
        }
        self.indicator("\"", false, false, false);
    }
}

/// `yaml.dump(p, Dumper=SafeDumper, allow_unicode=True, ...)` as PyYAML writes it.
fn yaml_dump(p: &Py, indent: usize, width: usize, flow: Option<bool>) -> String {
    let mut p = p.clone();
    sort_keys(&mut p);
    let best_indent = if (2..10).contains(&indent) { indent } else { 2 };
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
        open_ended: false,
        indent: None,
        indents: Vec::new(),
        flow_level: 0,
        best_indent,
        best_width: if width > best_indent * 2 { width } else { 80 },
        root: false,
        mapping_ctx: false,
        simple_key_ctx: false,
    };
    let node = represent(&p, flow);
    e.node(&node, true, false, false);
    // Document end, then stream end ("..." after an open-ended plain root scalar).
    e.write_indent();
    if e.open_ended {
        e.indicator("...", true, false, false);
        e.write_indent();
    }
    e.out
}

/// `to_yaml`: `yaml.dump(a, allow_unicode=True, default_flow_style=None)` (options: `indent`,
/// `width`, `default_flow_style`).
pub fn to_yaml(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: usize = kw(&kwargs, "indent")?.unwrap_or(2);
    let width: usize = kw(&kwargs, "width")?.unwrap_or(80);
    let flow: Option<bool> = kw(&kwargs, "default_flow_style")?;
    kwargs.assert_all_used()?;
    Ok(yaml_dump(&py(&v)?, indent, width, flow))
}

/// `to_nice_yaml`: `to_yaml(a, indent=4, default_flow_style=False)`.
pub fn to_nice_yaml(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: usize = kw(&kwargs, "indent")?.unwrap_or(4);
    let width: usize = kw(&kwargs, "width")?.unwrap_or(80);
    kwargs.assert_all_used()?;
    Ok(yaml_dump(&py(&v)?, indent, width, Some(false)))
}

// ---------------------------------------------------------------- regex

fn compile(pattern: &str, ignorecase: bool, multiline: bool) -> Result<regex_lite::Regex, Error> {
    let mut p = String::new();
    if ignorecase {
        p.push_str("(?i)");
    }
    if multiline {
        p.push_str("(?m)");
    }
    // Python's `\Z` (end of text) is `\z` here.
    p.push_str(&pattern.replace("\\Z", "\\z"));
    regex_lite::Regex::new(&p).map_err(|e| err(format!("bad regular expression `{pattern}`: {e}")))
}

/// A Python `re.sub` replacement (`\1`, `\g<1>`, `\g<name>`, `\n`, `\\`) in Rust's syntax.
fn replacement(r: &str) -> String {
    let ch: Vec<char> = r.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < ch.len() {
        match (ch[i], ch.get(i + 1)) {
            ('$', _) => out.push_str("$$"),
            ('\\', Some(d)) if d.is_ascii_digit() => {
                let mut j = i + 1;
                while j < ch.len() && j < i + 3 && ch[j].is_ascii_digit() {
                    j += 1;
                }
                out.push_str(&format!("${{{}}}", ch[i + 1..j].iter().collect::<String>()));
                i = j;
                continue;
            }
            ('\\', Some('g')) if ch.get(i + 2) == Some(&'<') => {
                if let Some(close) = ch[i + 3..].iter().position(|c| *c == '>') {
                    let name: String = ch[i + 3..i + 3 + close].iter().collect();
                    out.push_str(&format!("${{{name}}}"));
                    i += 4 + close;
                    continue;
                }
                out.push('\\');
            }
            ('\\', Some('n')) => {
                out.push('\n');
                i += 2;
                continue;
            }
            ('\\', Some('t')) => {
                out.push('\t');
                i += 2;
                continue;
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                i += 2;
                continue;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    out
}

fn text_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None if v.is_none() => String::new(),
        None => v.to_string(),
    }
}

/// `regex_replace(pattern, replacement, ignorecase=False, multiline=False, count=0)`.
pub fn regex_replace(
    value: Value,
    pattern: String,
    repl: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let ic = kw(&kwargs, "ignorecase")?.unwrap_or(false);
    let ml = kw(&kwargs, "multiline")?.unwrap_or(false);
    let count: usize = kw(&kwargs, "count")?.unwrap_or(0);
    let mandatory: usize = kw(&kwargs, "mandatory_count")?.unwrap_or(0);
    kwargs.assert_all_used()?;
    let re = compile(&pattern, ic, ml)?;
    let value = text_of(&value);
    let rep = replacement(&repl.unwrap_or_default());
    let found = re.find_iter(&value).count();
    let subs = if count == 0 { found } else { found.min(count) };
    if mandatory > 0 && mandatory != subs {
        return Err(err(format!(
            "'{pattern}' should match {mandatory} times, but matches {subs} times in '{value}'"
        )));
    }
    Ok(re.replacen(&value, count, rep.as_str()).into_owned())
}

/// `regex_search(regex, '\\1', '\\g<name>', ..., ignorecase=, multiline=)`: the match, or
/// the listed groups, or none.
pub fn regex_search(
    value: Value,
    regex: String,
    args: minijinja::value::Rest<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let ic = kw(&kwargs, "ignorecase")?.unwrap_or(false);
    let ml = kw(&kwargs, "multiline")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let re = compile(&regex, ic, ml)?;
    let value = text_of(&value);
    let Some(caps) = re.captures(&value) else {
        return Ok(Value::from(()));
    };
    if args.is_empty() {
        return Ok(Value::from(
            caps.get(0).map(|m| m.as_str()).unwrap_or_default(),
        ));
    }
    let mut out = Vec::new();
    for a in args.iter() {
        let m = if let Some(name) = a.strip_prefix("\\g<").and_then(|n| n.strip_suffix('>')) {
            match name.parse::<usize>() {
                Ok(i) => caps.get(i),
                Err(_) => caps.name(name),
            }
        } else if let Some(n) = a.strip_prefix('\\').and_then(|n| n.parse::<usize>().ok()) {
            caps.get(n)
        } else {
            return Err(err("Unknown argument"));
        };
        out.push(
            m.map(|m| Value::from(m.as_str()))
                .unwrap_or(Value::from(())),
        );
    }
    Ok(Value::from(out))
}

/// `regex_findall(regex, multiline=, ignorecase=)`: Python's `re.findall`.
pub fn regex_findall(value: Value, regex: String, kwargs: Kwargs) -> Result<Value, Error> {
    let ic = kw(&kwargs, "ignorecase")?.unwrap_or(false);
    let ml = kw(&kwargs, "multiline")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let re = compile(&regex, ic, ml)?;
    let value = text_of(&value);
    let groups = re.captures_len() - 1;
    let mut out = Vec::new();
    for c in re.captures_iter(&value) {
        let g = |i: usize| Value::from(c.get(i).map(|m| m.as_str()).unwrap_or_default());
        out.push(match groups {
            0 => g(0),
            1 => g(1),
            n => Value::from((1..=n).map(g).collect::<Vec<_>>()),
        });
    }
    Ok(Value::from(out))
}

/// `regex_escape`: Python's `re.escape` (every ASCII character but letters, digits and `_`).
pub fn regex_escape(s: String) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------- strings and data

pub fn b64encode(s: String, kwargs: Kwargs) -> Result<String, Error> {
    use base64::Engine;
    let urlsafe = kw(&kwargs, "urlsafe")?.unwrap_or(false);
    let _: Option<String> = kw(&kwargs, "encoding")?;
    kwargs.assert_all_used()?;
    Ok(if urlsafe {
        base64::engine::general_purpose::URL_SAFE.encode(s.as_bytes())
    } else {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    })
}

pub fn b64decode(s: String, kwargs: Kwargs) -> Result<String, Error> {
    use base64::Engine;
    let urlsafe = kw(&kwargs, "urlsafe")?.unwrap_or(false);
    let _: Option<String> = kw(&kwargs, "encoding")?;
    kwargs.assert_all_used()?;
    let bytes = if urlsafe {
        base64::engine::general_purpose::URL_SAFE.decode(s.trim())
    } else {
        base64::engine::general_purpose::STANDARD.decode(s.trim())
    }
    .map_err(|e| err(format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|_| err("b64decode: the decoded bytes are not UTF-8 text"))
}

/// `ternary(true_val, false_val, none_val=None)`.
pub fn ternary(v: Value, t: Value, f: Value, none: Option<Value>) -> Value {
    match none {
        Some(n) if v.is_none() && !n.is_none() => n,
        _ if v.is_true() => t,
        _ => f,
    }
}

fn is_map(v: &Value) -> bool {
    v.kind() == ValueKind::Map
}

fn to_map(v: &Value) -> Result<BTreeMap<Value, Value>, Error> {
    let mut m = BTreeMap::new();
    for k in v.try_iter()? {
        let val = v.get_item(&k)?;
        m.insert(k, val);
    }
    Ok(m)
}

fn merge(a: &Value, b: &Value, recursive: bool, list_merge: &str) -> Result<Value, Error> {
    let mut out = to_map(a)?;
    for (k, bv) in to_map(b)? {
        let merged = match out.get(&k) {
            Some(av) if recursive && is_map(av) && is_map(&bv) => {
                merge(av, &bv, recursive, list_merge)?
            }
            Some(av) if av.kind() == ValueKind::Seq && bv.kind() == ValueKind::Seq => {
                let (x, y): (Vec<Value>, Vec<Value>) =
                    (av.try_iter()?.collect(), bv.try_iter()?.collect());
                match list_merge {
                    "replace" => bv.clone(),
                    "keep" => av.clone(),
                    "append" => Value::from([x, y].concat()),
                    "prepend" => Value::from([y, x].concat()),
                    "append_rp" => Value::from(
                        [x.into_iter().filter(|i| !y.contains(i)).collect(), y].concat(),
                    ),
                    "prepend_rp" => {
                        let rest: Vec<Value> = x.into_iter().filter(|i| !y.contains(i)).collect();
                        Value::from([y, rest].concat())
                    }
                    other => return Err(err(format!("combine: unknown list_merge `{other}`"))),
                }
            }
            _ => bv,
        };
        out.insert(k, merged);
    }
    Ok(Value::from(out))
}

/// `combine(*dicts, recursive=False, list_merge='replace')`; a list of dicts is flattened.
pub fn combine(
    first: Value,
    rest: minijinja::value::Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let recursive = kw(&kwargs, "recursive")?.unwrap_or(false);
    let list_merge: String = kw(&kwargs, "list_merge")?.unwrap_or_else(|| "replace".into());
    kwargs.assert_all_used()?;
    let mut terms = Vec::new();
    for t in std::iter::once(first).chain(rest.iter().cloned()) {
        if t.kind() == ValueKind::Seq {
            terms.extend(t.try_iter()?);
        } else {
            terms.push(t);
        }
    }
    let mut acc = Value::from(BTreeMap::<Value, Value>::new());
    for t in terms {
        if !is_map(&t) {
            return Err(err(format!(
                "combine: expects dictionaries, got {}",
                t.kind()
            )));
        }
        acc = merge(&acc, &t, recursive, &list_merge)?;
    }
    Ok(acc)
}

/// `dict2items(key_name='key', value_name='value')`.
pub fn dict2items(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let kn: String = kw(&kwargs, "key_name")?.unwrap_or_else(|| "key".into());
    let vn: String = kw(&kwargs, "value_name")?.unwrap_or_else(|| "value".into());
    kwargs.assert_all_used()?;
    if !is_map(&v) {
        return Err(err(format!(
            "dict2items requires a dictionary, got {}",
            v.kind()
        )));
    }
    let mut out = Vec::new();
    for k in v.try_iter()? {
        let val = v.get_item(&k)?;
        let mut m = BTreeMap::new();
        m.insert(kn.clone(), k);
        m.insert(vn.clone(), val);
        out.push(Value::from(m));
    }
    Ok(Value::from(out))
}

/// `items2dict(key_name='key', value_name='value')`.
pub fn items2dict(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let kn: String = kw(&kwargs, "key_name")?.unwrap_or_else(|| "key".into());
    let vn: String = kw(&kwargs, "value_name")?.unwrap_or_else(|| "value".into());
    kwargs.assert_all_used()?;
    let mut out = BTreeMap::new();
    for it in v.try_iter()? {
        let k = it.get_attr(&kn)?;
        let val = it.get_attr(&vn)?;
        if k.is_undefined() || val.is_undefined() {
            return Err(err(format!(
                "items2dict: each item needs `{kn}` and `{vn}`"
            )));
        }
        out.insert(k, val);
    }
    Ok(Value::from(out))
}

/// Python's `os.path.basename`.
pub fn basename(p: String) -> String {
    p.rsplit('/').next().unwrap_or_default().to_string()
}

/// Python's `os.path.dirname`.
pub fn dirname(p: String) -> String {
    let head = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    if !head.is_empty() && head.chars().any(|c| c != '/') {
        head.trim_end_matches('/').to_string()
    } else {
        head.to_string()
    }
}

/// `quote`: Python's `shlex.quote` (none is the empty string).
pub fn quote(v: Value) -> String {
    let s = text_of(&v);
    if s.is_empty() {
        return "''".into();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    {
        return s;
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// `mandatory(msg=None)`: an error for an undefined value.
pub fn mandatory(v: Value, msg: Option<String>) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(err(
            msg.unwrap_or_else(|| "Mandatory variable not defined.".into())
        ));
    }
    Ok(v)
}

/// `hash('sha1')`: hex digest (sha1, sha224, sha256, sha384, sha512, md5).
pub fn hash(v: Value, kind: Option<String>) -> Result<String, Error> {
    use sha2::Digest;
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    let data = text_of(&v);
    let d = data.as_bytes();
    Ok(match kind.as_deref().unwrap_or("sha1") {
        "sha1" => hex(&sha1::Sha1::digest(d)),
        "sha224" => hex(&sha2::Sha224::digest(d)),
        "sha256" => hex(&sha2::Sha256::digest(d)),
        "sha384" => hex(&sha2::Sha384::digest(d)),
        "sha512" => hex(&sha2::Sha512::digest(d)),
        "md5" => hex(&md5::Md5::digest(d)),
        other => return Err(err(format!("unsupported hash type {other}"))),
    })
}

// ---------------------------------------------------------------- ipaddr

#[derive(Debug, Clone, Copy)]
struct Net {
    ip: std::net::IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => {
                if let Ok(n) = p.parse::<u8>() {
                    n
                } else if let Ok(std::net::IpAddr::V4(m)) = p.parse::<std::net::IpAddr>() {
                    // A netmask (`192.0.2.1/255.255.255.0`).
                    let bits = u32::from(m);
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return None;
                    }
                    bits.leading_ones() as u8
                } else {
                    return None;
                }
            }
        };
        (prefix <= max).then_some(Net { ip, prefix })
    }

    fn bits(&self) -> (u128, u32) {
        match self.ip {
            std::net::IpAddr::V4(a) => (u32::from(a) as u128, 32),
            std::net::IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(&self) -> u128 {
        let (_, w) = self.bits();
        match self.prefix as u32 {
            0 => 0,
            p => (u128::MAX << (128 - p)) >> (128 - w),
        }
    }

    fn addr(&self, bits: u128) -> String {
        match self.ip {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::from(bits as u32).to_string(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::from(bits).to_string(),
        }
    }

    fn network(&self) -> u128 {
        self.bits().0 & self.mask()
    }

    fn size(&self) -> u128 {
        let (_, w) = self.bits();
        let host = w - self.prefix as u32;
        if host >= 128 {
            u128::MAX
        } else {
            1u128 << host
        }
    }

    /// netaddr's broadcast: none for a /31, /32 (and IPv6, which has none).
    fn broadcast(&self) -> Option<u128> {
        let (_, w) = self.bits();
        (self.ip.is_ipv4() && self.prefix as u32 + 1 < w)
            .then(|| self.network() | (!self.mask() & 0xffff_ffff))
    }

    fn is_host_address(&self) -> bool {
        self.size() == 1
            || self.bits().0 != self.network()
            || self.broadcast().is_none()
            || self.ip.is_ipv6()
    }
}

fn ipaddr_one(v: &Value, query: &str) -> Result<Value, Error> {
    let no = Ok(Value::from(false));
    let s = match v.as_str() {
        Some(s) => s.to_string(),
        None if v.kind() == ValueKind::Number => {
            // An integer is an IPv4 (or IPv6) address in ansible.utils.
            let n = i128::try_from(v.clone()).unwrap_or(-1);
            if !(0..=u32::MAX as i128).contains(&n) {
                return no;
            }
            std::net::Ipv4Addr::from(n as u32).to_string()
        }
        None => return no,
    };
    let Some(n) = Net::parse(&s) else { return no };
    let cidr = |bits: u128| format!("{}/{}", n.addr(bits), n.prefix);
    Ok(match query {
        "" => Value::from(s),
        "address" => {
            if n.is_host_address() {
                Value::from(n.addr(n.bits().0))
            } else {
                Value::from(false)
            }
        }
        "host" => {
            if n.is_host_address() {
                Value::from(cidr(n.bits().0))
            } else {
                Value::from(false)
            }
        }
        "network" => Value::from(n.addr(n.network())),
        "subnet" | "cidr" => Value::from(cidr(n.network())),
        "net" => {
            if n.size() > 1 && n.bits().0 == n.network() {
                Value::from(cidr(n.network()))
            } else {
                Value::from(false)
            }
        }
        "prefix" => Value::from(n.prefix),
        "netmask" => Value::from(n.addr(n.mask())),
        "broadcast" => n
            .broadcast()
            .map(|b| Value::from(n.addr(b)))
            .unwrap_or(Value::from(())),
        "size" => Value::from(n.size()),
        "ipv4" => {
            if n.ip.is_ipv4() {
                Value::from(s)
            } else {
                Value::from(false)
            }
        }
        "ipv6" => {
            if n.ip.is_ipv6() {
                Value::from(s)
            } else {
                Value::from(false)
            }
        }
        "version" => Value::from(if n.ip.is_ipv4() { 4 } else { 6 }),
        other => {
            return Err(err(format!(
                "ipaddr: query `{other}` is not supported (address, host, network, subnet, net, \
                 prefix, netmask, broadcast, size, ipv4, ipv6, version)"
            )))
        }
    })
}

/// `ipaddr(query='')` of `ansible.utils`: a list keeps the items for which the query is true.
pub fn ipaddr(v: Value, query: Option<String>) -> Result<Value, Error> {
    let q = query.unwrap_or_default();
    if v.kind() == ValueKind::Seq {
        let mut out = Vec::new();
        for it in v.try_iter()? {
            let r = ipaddr_one(&it, &q)?;
            if r.is_true() || r.kind() == ValueKind::Number {
                out.push(r);
            }
        }
        return Ok(Value::from(out));
    }
    ipaddr_one(&v, &q)
}

#[cfg(test)]
mod tests {
    //! Expected values are taken from the documentation named above each test (Ansible's filter
    //! guide "Manipulating data"/"Using filters", ansible.utils' ipaddr guide, Python's library
    //! reference), not from strata's output.
    use super::*;

    fn env() -> Environment<'static> {
        let mut e = Environment::new();
        e.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        add_to(&mut e);
        e
    }

    fn r(src: &str) -> String {
        env().render_str(src, minijinja::context! {}).unwrap()
    }

    fn r_err(src: &str) -> String {
        env()
            .render_str(src, minijinja::context! {})
            .unwrap_err()
            .to_string()
    }

    // PyYAML documentation ("Dumping YAML"): `yaml.dump({'name': 'Silenthand Olleander',
    // 'race': 'Human', 'traits': ['ONE_HAND', 'ONE_EYE']})` prints
    // "name: Silenthand Olleander\nrace: Human\ntraits: [ONE_HAND, ONE_EYE]\n";
    // with default_flow_style=False the list is a block list.
    #[test]
    fn to_yaml_as_pyyaml_documents() {
        let v =
            "{'name': 'Silenthand Olleander', 'race': 'Human', 'traits': ['ONE_HAND', 'ONE_EYE']}";
        assert_eq!(
            r(&format!("{{{{ {v} | to_yaml }}}}")),
            "name: Silenthand Olleander\nrace: Human\ntraits: [ONE_HAND, ONE_EYE]\n"
        );
        assert_eq!(
            r(&format!(
                "{{{{ {v} | to_yaml(default_flow_style=false) }}}}"
            )),
            "name: Silenthand Olleander\nrace: Human\ntraits:\n- ONE_HAND\n- ONE_EYE\n"
        );
        // PyYAML docs: `print(yaml.dump([1,2,3], explicit_start=True))`... and a plain scalar
        // document is open-ended: `yaml.dump('abc')` is "abc\n...\n".
        assert_eq!(r("{{ 'abc' | to_yaml }}"), "abc\n...\n");
        // YAML 1.1 resolves yes/no/on/off, numbers and null: such strings are quoted.
        assert_eq!(
            r("{{ ['yes', 'off', '1', '1.5', 'null', '', 'a: b', '- x', '#c'] | to_yaml }}"),
            "['yes', 'off', '1', '1.5', 'null', '', 'a: b', '- x', '#c']\n"
        );
        assert_eq!(
            r("{{ {'a': none, 'b': true, 'c': 1.0} | to_yaml }}"),
            "{a: null, b: true, c: 1.0}\n"
        );
    }

    // Ansible's filter guide ("Formatting data: YAML and JSON"): to_nice_yaml uses an indent
    // of 4; PyYAML writes a block list under a mapping key without indenting the dashes and
    // indents a mapping inside a list item to the indent.
    #[test]
    fn to_nice_yaml_indents_by_four() {
        assert_eq!(
            r("{{ {'users': [{'name': 'a', 'groups': ['x', 'y']}], 'port': 22} | to_nice_yaml }}"),
            "port: 22\nusers:\n-   groups:\n    - x\n    - y\n    name: a\n"
        );
        assert_eq!(
            r("{{ {'a': {'b': {'c': 1}}} | to_nice_yaml(indent=2) }}"),
            "a:\n  b:\n    c: 1\n"
        );
        // A multi-line string is single-quoted with its line break doubled (YAML folding).
        assert_eq!(r("{{ {'k': 'a\nb'} | to_nice_yaml }}"), "k: 'a\n\n    b'\n");
        assert_eq!(
            r("{{ {'k': 'tab\there'} | to_nice_yaml }}"),
            "k: \"tab\\there\"\n"
        );
    }

    // Python's json.dumps documentation: `json.dumps(['foo', {'bar': ('baz', None, 1.0, 2)}])`
    // is '["foo", {"bar": ["baz", null, 1.0, 2]}]'; `json.dumps("\"foo\bar")` is
    // '"\"foo\bar"'; `json.dumps('\u1234')` is '"\u1234"'; with sort_keys=True and indent=4:
    // '{\n    "4": 5,\n    "6": 7\n}'.
    #[test]
    fn to_json_as_python_documents() {
        assert_eq!(
            r("{{ ['foo', {'bar': ['baz', none, 1.0, 2]}] | to_json }}"),
            r#"["foo", {"bar": ["baz", null, 1.0, 2]}]"#
        );
        assert_eq!(r("{{ '\"foo\\bar' | to_json }}"), r#""\"foo\bar""#);
        assert_eq!(r("{{ '\u{1234}' | to_json }}"), r#""\u1234""#);
        assert_eq!(
            r("{{ {'4': 5, '6': 7} | to_nice_json }}"),
            "{\n    \"4\": 5,\n    \"6\": 7\n}"
        );
        assert_eq!(
            r("{{ {'a': [1, 2]} | to_nice_json(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}"
        );
        assert_eq!(r("{{ ([] | to_json) ~ ({} | to_nice_json) }}"), "[]{}");
        assert_eq!(r("{{ ('{\"a\": [1, 2]}' | from_json).a[1] }}"), "2");
    }

    // Ansible's filter guide, "Searching strings with regular expressions" and
    // "Replacing text with regular expressions".
    #[test]
    fn regex_filters_as_ansible_documents() {
        // "{{ 'ansible' | regex_replace('^a.*i(.*)$', 'a\\1') }}" => 'able'
        assert_eq!(
            r(r"{{ 'ansible' | regex_replace('^a.*i(.*)$', 'a\\1') }}"),
            "able"
        );
        // "{{ 'foobar' | regex_replace('^f.*o(.*)$', '\\1') }}" => 'bar'
        assert_eq!(
            r(r"{{ 'foobar' | regex_replace('^f.*o(.*)$', '\\1') }}"),
            "bar"
        );
        // "{{ 'localhost:80' | regex_replace('^(?P<host>.+):(?P<port>\\d+)$', '\\g<host>, \\g<port>') }}" => 'localhost, 80'
        assert_eq!(
            r(
                r"{{ 'localhost:80' | regex_replace('^(?P<host>.+):(?P<port>\\d+)$', '\\g<host>, \\g<port>') }}"
            ),
            "localhost, 80"
        );
        // "{{ 'localhost:80' | regex_replace(':80') }}" => 'localhost'
        assert_eq!(
            r("{{ 'localhost:80' | regex_replace(':80') }}"),
            "localhost"
        );
        // "{{ 'foo=bar=baz' | regex_replace('=', ':', count=1) }}" => 'foo:bar=baz'
        assert_eq!(
            r("{{ 'foo=bar=baz' | regex_replace('=', ':', count=1) }}"),
            "foo:bar=baz"
        );
        // "{{ 'database42' | regex_search('database[0-9]+') }}" => 'database42'
        assert_eq!(
            r("{{ 'database42' | regex_search('database[0-9]+') }}"),
            "database42"
        );
        // "{{ 'foo\nBAR' | regex_search('^bar', multiline=True, ignorecase=True) }}" => 'BAR'
        assert_eq!(
            r("{{ 'foo\nBAR' | regex_search('^bar', multiline=True, ignorecase=True) }}"),
            "BAR"
        );
        // "{{ 'server1/database42' | regex_search('server([0-9]+)/database([0-9]+)', '\\1', '\\2') }}" => ['1', '42']
        assert_eq!(
            r(
                r"{{ 'server1/database42' | regex_search('server([0-9]+)/database([0-9]+)', '\\1', '\\2') }}"
            ),
            r#"["1", "42"]"#
        );
        // "{{ 'Our current IP address is 192.168.1.1' | regex_findall('\\b(?:[0-9]{1,3}\\.){3}[0-9]{1,3}\\b') }}" => ['192.168.1.1']
        assert_eq!(
            r(
                r"{{ 'Our current IP address is 192.168.1.1' | regex_findall('\\b(?:[0-9]{1,3}\\.){3}[0-9]{1,3}\\b') }}"
            ),
            r#"["192.168.1.1"]"#
        );
        // "{{ '^f.*o(.*)$' | regex_escape() }}" => '\^f\.\*o\(\.\*\)\$'
        assert_eq!(
            r("{{ '^f.*o(.*)$' | regex_escape() }}"),
            r"\^f\.\*o\(\.\*\)\$"
        );
    }

    // Jinja2's docs for indent: "Return a copy of the string with each line indented by 4
    // spaces. The first line and blank lines are not indented by default."
    #[test]
    fn jinja2_indent_keeps_the_trailing_newline() {
        let mut e = env();
        e.add_filter("indent", jinja2_indent);
        let r = |s: &str| e.render_str(s, minijinja::context! {}).unwrap();
        assert_eq!(r("{{ 'a\nb\n\nc\n' | indent(2) }}"), "a\n  b\n\n  c\n");
        assert_eq!(r("{{ 'a\nb' | indent(first=true) }}"), "    a\n    b");
        assert_eq!(r("{{ 'a\nb' | indent('> ') }}"), "a\n> b");
    }

    // Ansible's "Tests" guide, "Testing strings": url is match('https://example.com/users/.*/resources')
    // is true for 'https://example.com/users/foo/resources/bar', `search('users/.*/resources/.*')`
    // too, and `match('/users/.*/resources')` is false (match is anchored at the start).
    #[test]
    fn regex_tests() {
        let u = "'https://example.com/users/foo/resources/bar'";
        assert_eq!(
            r(&format!(
                "{{{{ {u} is match('https://example.com/users/.*/resources') }}}}"
            )),
            "True"
        );
        assert_eq!(
            r(&format!("{{{{ {u} is search('users/.*/resources/.*') }}}}")),
            "True"
        );
        assert_eq!(
            r(&format!("{{{{ {u} is match('/users/.*/resources') }}}}")),
            "False"
        );
        assert_eq!(
            r(&format!("{{{{ {u} is regex('example\\.com/\\w+/foo') }}}}")),
            "True"
        );
    }

    // Ansible's filter guide, "Base64 encoding and decoding": `{{ encoded | b64decode }}`; the
    // values are RFC 4648 section 10's test vectors ("foobar" <-> "Zm9vYmFy", "fo" <-> "Zm8=").
    #[test]
    fn base64() {
        assert_eq!(r("{{ 'foobar' | b64encode }}"), "Zm9vYmFy");
        assert_eq!(r("{{ 'fo' | b64encode }}"), "Zm8=");
        assert_eq!(r("{{ 'Zm9vYmFy' | b64decode }}"), "foobar");
    }

    // ansible.utils "ipaddr filter" guide: '192.0.2.1/24' | ipaddr('address') => 192.0.2.1,
    // ('network') => 192.0.2.0, ('prefix') => 24, ('netmask') => 255.255.255.0,
    // ('broadcast') => 192.0.2.255, ('subnet') => 192.0.2.0/24, ('host') => 192.0.2.1/24;
    // a list keeps the valid items: ['192.24.2.1', 'host.fqdn', '::1', '192.168.32.0/24',
    // 'fe80::100/10', True, '', '42540766412265424405338506004571095040/64'] | ipaddr =>
    // ['192.24.2.1', '::1', '192.168.32.0/24', 'fe80::100/10'] (strata: without the integer
    // CIDR form).
    #[test]
    fn ipaddr_as_ansible_utils_documents() {
        let q = |s: &str| r(&format!("{{{{ '192.0.2.1/24' | ipaddr('{s}') }}}}"));
        assert_eq!(q("address"), "192.0.2.1");
        assert_eq!(q("network"), "192.0.2.0");
        assert_eq!(q("prefix"), "24");
        assert_eq!(q("netmask"), "255.255.255.0");
        assert_eq!(q("broadcast"), "192.0.2.255");
        assert_eq!(q("subnet"), "192.0.2.0/24");
        assert_eq!(q("host"), "192.0.2.1/24");
        assert_eq!(r("{{ '192.0.2.0/24' | ipaddr('address') }}"), "False");
        assert_eq!(r("{{ '192.0.2.0/24' | ipaddr('net') }}"), "192.0.2.0/24");
        assert_eq!(
            r("{{ ['192.24.2.1', 'host.fqdn', '::1', '192.168.32.0/24', 'fe80::100/10', true, ''] | ipaddr }}"),
            r#"["192.24.2.1", "::1", "192.168.32.0/24", "fe80::100/10"]"#
        );
        assert_eq!(
            r("{{ '2001:db8::1/64' | ipaddr('network') }}"),
            "2001:db8::"
        );
        assert_eq!(r("{{ '10.0.0.1/255.255.0.0' | ipaddr('prefix') }}"), "16");
    }

    // Ansible's filter guide: "{{ (status == 'needs_restart') | ternary('restart', 'continue') }}";
    // "{{ enabled | ternary('no shutdown', 'shutdown', omit) }}" (none_val for None).
    #[test]
    fn ternary_() {
        assert_eq!(
            r("{{ (1 == 1) | ternary('restart', 'continue') }}"),
            "restart"
        );
        assert_eq!(
            r("{{ false | ternary('restart', 'continue') }}"),
            "continue"
        );
        assert_eq!(r("{{ none | ternary('yes', 'no', 'null') }}"), "null");
        assert_eq!(r("{{ none | ternary('yes', 'no') }}"), "no");
    }

    // Ansible's filter guide, "Combining hashes/dictionaries": {'a':1, 'b':2} | combine({'b':3})
    // => {'a':1, 'b':3}; with recursive=True, {'a':{'foo':1, 'bar':2}, 'b':2} combined with
    // {'a':{'bar':3, 'baz':4}} => {'a':{'foo':1, 'bar':3, 'baz':4}, 'b':2}; list_merge='append'
    // appends the lists.
    #[test]
    fn combine_() {
        assert_eq!(
            r("{{ {'a':1, 'b':2} | combine({'b':3}) }}"),
            r#"{"a": 1, "b": 3}"#
        );
        assert_eq!(
            r("{{ {'a':{'foo':1, 'bar':2}, 'b':2} | combine({'a':{'bar':3, 'baz':4}}) }}"),
            r#"{"a": {"bar": 3, "baz": 4}, "b": 2}"#
        );
        assert_eq!(
            r("{{ {'a':{'foo':1, 'bar':2}, 'b':2} | combine({'a':{'bar':3, 'baz':4}}, recursive=true) }}"),
            r#"{"a": {"bar": 3, "baz": 4, "foo": 1}, "b": 2}"#
        );
        assert_eq!(
            r("{{ {'a':[1, 2]} | combine({'a':[3]}, list_merge='append') }}"),
            r#"{"a": [1, 2, 3]}"#
        );
        assert_eq!(
            r("{{ [{'a':1}, {'b':2}] | combine }}"),
            r#"{"a": 1, "b": 2}"#
        );
    }

    // Ansible's filter guide, "Transforming dictionaries into lists" and back:
    // {'a': 1} | dict2items => [{'key': 'a', 'value': 1}]; key_name/value_name rename them.
    #[test]
    fn dict2items_and_back() {
        assert_eq!(
            r("{{ {'a': 1} | dict2items }}"),
            r#"[{"key": "a", "value": 1}]"#
        );
        assert_eq!(
            r("{{ {'Application': 'payment'} | dict2items(key_name='key', value_name='value') | items2dict }}"),
            r#"{"Application": "payment"}"#
        );
        assert_eq!(
            r("{{ [{'fruit': 'apple', 'color': 'red'}] | items2dict(key_name='fruit', value_name='color') }}"),
            r#"{"apple": "red"}"#
        );
    }

    // Python's os.path docs: basename('/foo/bar/') is ''; Ansible's guide:
    // '/etc/asdf/foo.txt' | basename => 'foo.txt', | dirname => '/etc/asdf'.
    #[test]
    fn paths() {
        assert_eq!(r("{{ '/etc/asdf/foo.txt' | basename }}"), "foo.txt");
        assert_eq!(r("{{ '/etc/asdf/foo.txt' | dirname }}"), "/etc/asdf");
        assert_eq!(r("{{ '/foo/bar/' | basename }}"), "");
        assert_eq!(r("{{ 'foo' | dirname }}"), "");
        assert_eq!(r("{{ '/foo' | dirname }}"), "/");
    }

    // Python's shlex.quote docs: quote("somefile; rm -rf ~") is "'somefile; rm -rf ~'", and
    // a single quote becomes '"'"'.
    #[test]
    fn quote_() {
        assert_eq!(
            r("{{ 'somefile; rm -rf ~' | quote }}"),
            "'somefile; rm -rf ~'"
        );
        assert_eq!(r("{{ \"it's\" | quote }}"), "'it'\"'\"'s'");
        assert_eq!(r("{{ 'plain-word_1.2:x' | quote }}"), "plain-word_1.2:x");
        assert_eq!(r("{{ '' | quote }}"), "''");
    }

    // Ansible's guide: `{{ variable | mandatory }}` fails when the variable is undefined;
    // hash: 'test1' | hash('sha1') => 'b444ac06613fc8d63795be9ad0beaf55011936ac',
    // 'test1' | hash('md5') => '5a105e8b9d40e1329780d62ea2265d8a'; sha256 from FIPS 180-2's
    // "abc" vector.
    #[test]
    fn mandatory_and_hash() {
        assert_eq!(r("{{ 'x' | mandatory }}"), "x");
        assert!(r_err("{{ nothing | mandatory }}").contains("Mandatory variable not defined"));
        assert!(r_err("{{ nothing | mandatory('say so') }}").contains("say so"));
        assert_eq!(
            r("{{ 'test1' | hash('sha1') }}"),
            "b444ac06613fc8d63795be9ad0beaf55011936ac"
        );
        assert_eq!(
            r("{{ 'test1' | hash('md5') }}"),
            "5a105e8b9d40e1329780d62ea2265d8a"
        );
        assert_eq!(
            r("{{ 'abc' | hash('sha256') }}"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    // Python's float repr: repr(1e16) == '1e+16', repr(0.0001) == '0.0001', repr(1e-05) == '1e-05'.
    #[test]
    fn python_float_repr() {
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(2.5), "2.5");
        assert_eq!(py_float(3.0), "3.0");
    }
}
