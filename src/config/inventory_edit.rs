//! Add a host to an inventory file by inserting text, so that every comment, blank line and
//! key order already in the file stays byte for byte. Pure: text in, new text (or a refusal
//! naming a line) out; `cmd_node` reads, writes and re-checks the file.
//!
//! What it edits: a top-level block mapping `hosts:` (anywhere among the top-level keys), its
//! entries indented with spaces, each a block mapping (or a one-line `{...}` map). The new
//! entry goes after the last host, in the indentation the existing entries use, with a blank
//! line before it when the existing entries are separated by blank lines. An empty `hosts:`
//! or `hosts: {}` gets its first entry (the `{}` is removed; nothing else changes). LF or CRLF
//! line endings (not mixed) are kept, and so is a missing final newline.
//!
//! What it refuses, naming the line: no top-level `hosts:`, a flow mapping `hosts: {...}`,
//! a list or a scalar under `hosts`, tabs, anchors / aliases / tags / merge keys (`<<`) in the
//! hosts block, several YAML documents, mixed line endings, text that does not parse. Every
//! edit is parsed again before it is returned: the new entry must read back as exactly the
//! given fields, with the other hosts and top-level keys in their order.

use marked_yaml::{LoaderOptions, Node};
use std::fmt;

/// The host to add, as given on the command line (already validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHost {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    pub region: String,
    pub provider: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// `ssh.host`: the ssh destination (an ssh_config alias or a DNS name), if not `address`.
    pub host: Option<String>,
    /// `ssh.proxy_jump`: `ssh -J` hops, or `none` for a direct connection.
    pub proxy_jump: Option<String>,
}

impl NewHost {
    /// Whether the entry gets an `ssh:` map.
    fn has_ssh(&self) -> bool {
        self.port.is_some()
            || self.user.is_some()
            || self.host.is_some()
            || self.proxy_jump.is_some()
    }
}

/// The edited text and where the new entry is in it (1-based, inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: String,
    pub first_line: usize,
    pub last_line: usize,
}

/// Why the file was not edited; `line` is 1-based, 0 when it is about the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

fn refuse<T>(line: usize, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        line,
        message: message.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Content,
}

fn kind(l: &str) -> Kind {
    let t = l.trim_start_matches([' ', '\t']);
    if t.is_empty() {
        Kind::Blank
    } else if t.starts_with('#') {
        Kind::Comment
    } else {
        Kind::Content
    }
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// The file's line ending: `\n`, or `\r\n` when every line ends so. Mixed endings and a bare
/// `\r` are refused.
fn newline(text: &str) -> Result<&'static str, Refusal> {
    let crlf = text.contains("\r\n");
    let mut line = 1;
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\r' if b.get(i + 1) != Some(&b'\n') => {
                return refuse(
                    line,
                    "carriage return without a line feed: use LF (or CRLF) line endings",
                )
            }
            b'\n' => {
                if crlf && (i == 0 || b[i - 1] != b'\r') {
                    return refuse(
                        line,
                        "mixed line endings (CRLF and LF): use one kind throughout the file",
                    );
                }
                line += 1;
            }
            _ => {}
        }
    }
    Ok(if crlf { "\r\n" } else { "\n" })
}

/// A scalar as YAML text: plain when that reads back as the same string in YAML 1.1 and 1.2
/// (no `yes`/`no`/`null`, nothing numeric, only safe characters), double-quoted otherwise.
pub fn yaml_scalar(s: &str) -> String {
    const RESERVED: &[&str] = &[
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n",
    ];
    let safe_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    let lower = s.to_ascii_lowercase();
    // Rust reads `inf`/`nan` as numbers, YAML does not (only `.inf`): digits are needed.
    let numeric = (s.parse::<f64>().is_ok() && s.contains(|c: char| c.is_ascii_digit()))
        || lower.starts_with("0x")
        || lower.starts_with("0o")
        || (s.contains('_')
            && s.chars()
                .all(|c| c.is_ascii_digit() || c == '_' || c == '.'));
    let plain = !s.is_empty()
        && safe_chars
        && !s.starts_with(['-', '.'])
        && !RESERVED.contains(&lower.as_str())
        && !numeric;
    if plain {
        s.to_string()
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        serde_json::to_string(s).expect("a string serialises")
    }
}

/// The lines of the new entry, the name at `entry` spaces, its fields at `field` spaces.
fn entry_lines(h: &NewHost, entry: usize, field: usize) -> Vec<String> {
    let e = " ".repeat(entry);
    let f = " ".repeat(field);
    let groups: Vec<String> = h.groups.iter().map(|g| yaml_scalar(g)).collect();
    let mut out = vec![
        format!("{e}{}:", yaml_scalar(&h.name)),
        format!("{f}address: {}", yaml_scalar(&h.address)),
        format!("{f}groups: [{}]", groups.join(", ")),
        format!("{f}region: {}", yaml_scalar(&h.region)),
    ];
    if let Some(p) = &h.provider {
        out.push(format!("{f}provider: {}", yaml_scalar(p)));
    }
    let mut ssh = Vec::new();
    if let Some(d) = &h.host {
        ssh.push(format!("host: {}", yaml_scalar(d)));
    }
    if let Some(p) = h.port {
        ssh.push(format!("port: {p}"));
    }
    if let Some(u) = &h.user {
        ssh.push(format!("user: {}", yaml_scalar(u)));
        // A deploy user other than root escalates with sudo (bootstrap gives it NOPASSWD).
        if u != "root" {
            ssh.push("become: sudo".into());
        }
    }
    if let Some(j) = &h.proxy_jump {
        ssh.push(format!("proxy_jump: {}", yaml_scalar(j)));
    }
    if !ssh.is_empty() {
        out.push(format!("{f}ssh: {{{}}}", ssh.join(", ")));
    }
    out
}

/// Where a node starts: at the start of the line, or after `- `, `: `, `? `, `[`, `{`, `,`.
fn at_node_start(prev: Option<char>, spaced: bool) -> bool {
    match prev {
        None => true,
        Some('[' | '{' | ',') => true,
        Some('-' | ':' | '?') => spaced,
        _ => false,
    }
}

/// The first anchor, alias, tag or merge key in one line of YAML, outside quotes and comments.
fn node_property(l: &str) -> Option<&'static str> {
    let t = l.trim_start();
    if t.starts_with("<<") || t.starts_with("- <<") {
        return Some("a merge key (<<)");
    }
    let chars: Vec<char> = t.chars().collect();
    let mut prev: Option<char> = None; // last non-blank character outside quotes
    let mut spaced = false; // blank seen since `prev`
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' {
            spaced = true;
            i += 1;
            continue;
        }
        if c == '#' && (spaced || prev.is_none()) {
            break;
        }
        if at_node_start(prev, spaced) {
            match c {
                '&' => return Some("an anchor (&)"),
                '*' => return Some("an alias (*)"),
                '!' => return Some("a tag (!)"),
                '<' if chars.get(i + 1) == Some(&'<') => return Some("a merge key (<<)"),
                '\'' | '"' => {
                    // Skip the quoted scalar ('' and \" are escapes).
                    i += 1;
                    while i < chars.len() {
                        if c == '"' && chars[i] == '\\' {
                            i += 2;
                            continue;
                        }
                        if chars[i] == c {
                            if c == '\'' && chars.get(i + 1) == Some(&'\'') {
                                i += 2;
                                continue;
                            }
                            break;
                        }
                        i += 1;
                    }
                }
                _ => {}
            }
        }
        prev = Some(chars[i.min(chars.len() - 1)]);
        spaced = false;
        i += 1;
    }
    None
}

/// What the YAML parser sees: the line of the top-level `hosts` key, what its value is, and
/// the hosts' names with their lines.
struct Parsed {
    top_keys: Vec<String>,
    hosts_line: Option<usize>,
    hosts: HostsValue,
}

enum HostsValue {
    Missing,
    Empty,
    Map(Vec<(String, usize, Node)>),
    Other(&'static str, usize),
}

fn key_line(k: &marked_yaml::types::MarkedScalarNode) -> usize {
    k.span().start().map(|m| m.line()).unwrap_or(0)
}

fn parse(text: &str) -> Result<Parsed, Refusal> {
    let opts = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let node = marked_yaml::parse_yaml_with_options(0, text, opts).map_err(|e| {
        let line = match &e {
            marked_yaml::LoadError::TopLevelMustBeMapping(m)
            | marked_yaml::LoadError::TopLevelMustBeSequence(m)
            | marked_yaml::LoadError::UnexpectedAnchor(m)
            | marked_yaml::LoadError::MappingKeyMustBeScalar(m)
            | marked_yaml::LoadError::UnexpectedTag(m)
            | marked_yaml::LoadError::ScanError(m, _) => m.line(),
            marked_yaml::LoadError::DuplicateKey(d) => key_line(&d.key),
        };
        Refusal {
            line,
            message: format!("the file does not parse as plain YAML: {e}"),
        }
    })?;
    let map = node
        .as_mapping()
        .expect("parse_yaml with index 0 returns a mapping");
    let top_keys = map.keys().map(|k| k.as_str().to_string()).collect();
    let Some((k, v)) = map.iter().find(|(k, _)| k.as_str() == "hosts") else {
        return Ok(Parsed {
            top_keys,
            hosts_line: None,
            hosts: HostsValue::Missing,
        });
    };
    let vline = v.span().start().map(|m| m.line()).unwrap_or(key_line(k));
    let hosts = match v {
        Node::Mapping(m) if m.is_empty() => HostsValue::Empty,
        Node::Mapping(m) => HostsValue::Map(
            m.iter()
                .map(|(hk, hv)| (hk.as_str().to_string(), key_line(hk), hv.clone()))
                .collect(),
        ),
        Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "" | "~" | "null") => {
            HostsValue::Empty
        }
        Node::Scalar(_) => HostsValue::Other("a scalar", vline),
        Node::Sequence(_) => HostsValue::Other("a list", vline),
    };
    Ok(Parsed {
        top_keys,
        hosts_line: Some(key_line(k)),
        hosts,
    })
}

/// The part of a line before its comment (a `#` after a blank), ignoring quotes: used only on
/// the `hosts:` line, whose value must be empty or `{}`.
fn before_comment(s: &str) -> &str {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return &s[..i];
        }
    }
    s
}

/// Insert `host` as the last entry of the top-level `hosts:` mapping of `text`.
pub fn add_host(text: &str, host: &NewHost) -> Result<Edit, Refusal> {
    let nl = newline(text)?;
    if text.trim().is_empty() {
        return refuse(0, "the file is empty: it has no top-level `hosts:` mapping");
    }
    let trailing = text.ends_with('\n');
    let body = if trailing {
        &text[..text.len() - nl.len()]
    } else {
        text
    };
    let mut lines: Vec<String> = body.split(nl).map(str::to_string).collect();

    let parsed = parse(text)?;

    // One document only: a `---` after content, or any `...`, is refused.
    let mut seen_content = false;
    for (i, l) in lines.iter().enumerate() {
        let marker = |m: &str| {
            l.starts_with(m) && l[3..].trim().is_empty() || l.starts_with(&format!("{m} "))
        };
        if (marker("---") && seen_content) || marker("...") {
            return refuse(
                i + 1,
                "several YAML documents in one file: node add edits a single-document inventory",
            );
        }
        if kind(l) == Kind::Content && !l.starts_with('%') && !marker("---") {
            seen_content = true;
        }
    }

    // The `hosts:` line, found as text and confirmed by the parser.
    let scanned = lines.iter().position(|l| {
        l.strip_prefix("hosts:")
            .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
    });
    let hosts_line = match (parsed.hosts_line, scanned) {
        (None, _) => {
            return refuse(
                0,
                "no top-level `hosts:` mapping: add `hosts:` (a block mapping of host name -> address, groups, ...) first",
            )
        }
        (Some(p), Some(s)) if p == s + 1 => s,
        (Some(p), _) => {
            return refuse(
                p,
                "`hosts` is not written as a plain `hosts:` key at the start of its line; node add cannot edit it",
            )
        }
    };
    if let HostsValue::Other(what, line) = parsed.hosts {
        return refuse(
            line,
            format!("`hosts` is {what}; it must be a mapping of host name -> settings"),
        );
    }
    if lines[hosts_line].contains('\t') {
        return refuse(hosts_line + 1, "a tab character: indent with spaces only");
    }
    let value = before_comment(&lines[hosts_line]["hosts:".len()..]).trim();
    let empty_flow = value.starts_with('{') && value[1..].trim() == "}";
    if !value.is_empty() && !empty_flow {
        let msg = match value.chars().next() {
            Some('{') => "`hosts` is a flow mapping (`hosts: {...}`); node add only edits a block mapping (`hosts:` on its own line, one `name:` line per host): rewrite it in block style first".to_string(),
            Some('&' | '*' | '!') => "`hosts` has an anchor, alias or tag; node add does not edit those".to_string(),
            _ => format!("`hosts: {value}` is not a block mapping node add can edit"),
        };
        return refuse(hosts_line + 1, msg);
    }

    // The hosts block: up to the next line of content at column 0.
    let end = (hosts_line + 1..lines.len())
        .find(|&i| kind(&lines[i]) == Kind::Content && indent(&lines[i]) == 0)
        .unwrap_or(lines.len());
    let block = hosts_line + 1..end;
    for i in block.clone() {
        let l = &lines[i];
        let lead = &l[..l.len() - l.trim_start_matches([' ', '\t']).len()];
        if lead.contains('\t') || (kind(l) == Kind::Content && l.contains('\t')) {
            return refuse(i + 1, "a tab character: indent with spaces only");
        }
        if kind(l) == Kind::Content {
            if let Some(what) = node_property(l) {
                return refuse(
                    i + 1,
                    format!("{what} in the hosts block: node add only edits plain YAML there (write the host out in full)"),
                );
            }
        }
    }
    let content: Vec<usize> = block
        .clone()
        .filter(|&i| kind(&lines[i]) == Kind::Content)
        .collect();
    if empty_flow && !content.is_empty() {
        return refuse(hosts_line + 1, "`hosts: {}` followed by indented lines");
    }

    // Indentation: the entries' own, the fields' own; for an empty block the file's step.
    let step = lines
        .iter()
        .find(|l| kind(l) == Kind::Content && indent(l) > 0)
        .map(|l| indent(l))
        .unwrap_or(2);
    let entry_indent = content.first().map(|&i| indent(&lines[i])).unwrap_or(step);
    let mut entries = Vec::new(); // line indices of host names
    let mut field_indent = None; // the first field of the first block-style entry
    let mut after_entry = false;
    for &i in &content {
        let l = &lines[i];
        let n = indent(l);
        if n < entry_indent {
            return refuse(i + 1, "the hosts block's indentation is not consistent");
        }
        if n == entry_indent {
            let t = l.trim_start();
            if t == "-" || t.starts_with("- ") {
                return refuse(i + 1, "`hosts` is a list; it must be a mapping");
            }
            entries.push(i);
        } else if after_entry && field_indent.is_none() {
            field_indent = Some(n);
        }
        after_entry = n == entry_indent;
    }
    let field_indent = field_indent.unwrap_or(entry_indent + step);

    // The parser must see the same entries on the same lines.
    let parsed_hosts = match &parsed.hosts {
        HostsValue::Map(h) => h.clone(),
        _ => Vec::new(),
    };
    let scanned_lines: Vec<usize> = entries.iter().map(|i| i + 1).collect();
    let parsed_lines: Vec<usize> = parsed_hosts.iter().map(|h| h.1).collect();
    if scanned_lines != parsed_lines {
        let at = scanned_lines
            .iter()
            .zip(&parsed_lines)
            .find(|(a, b)| a != b)
            .map(|(a, _)| *a)
            .unwrap_or(hosts_line + 1);
        return refuse(
            at,
            "cannot tell where the hosts' entries start (the text and the YAML parser disagree); node add does not edit this layout",
        );
    }
    if let Some((_, line, _)) = parsed_hosts.iter().find(|h| h.0 == host.name) {
        return refuse(
            *line,
            format!("host `{}` is already in the inventory", host.name),
        );
    }

    // Blank lines between entries (ignoring comments just above a name) are the file's style.
    let blank_between = entries.len() >= 2
        && entries[1..].iter().all(|&e| {
            let mut j = e;
            while j > hosts_line + 1 && kind(&lines[j - 1]) == Kind::Comment {
                j -= 1;
            }
            j > hosts_line + 1 && kind(&lines[j - 1]) == Kind::Blank
        });

    // After the last line of the block that is content or an indented comment: column-0
    // comments and blank lines after it belong to what follows.
    let last = block
        .clone()
        .rev()
        .find(|&i| match kind(&lines[i]) {
            Kind::Content => true,
            Kind::Comment => indent(&lines[i]) > 0,
            Kind::Blank => false,
        })
        .unwrap_or(hosts_line);

    if empty_flow {
        let l = &lines[hosts_line];
        let close = l.find('}').expect("empty flow has a closing brace");
        lines[hosts_line] = format!("hosts:{}", &l[close + 1..]);
    }
    let mut new = Vec::new();
    if blank_between {
        new.push(String::new());
    }
    let first_line = last + 2 + new.len();
    new.extend(entry_lines(host, entry_indent, field_indent));
    let last_line = first_line + new.len() - 1 - usize::from(blank_between);
    let at = last + 1;
    lines.splice(at..at, new);
    let mut out = lines.join(nl);
    if trailing {
        out.push_str(nl);
    }

    verify(&out, host, &parsed, &parsed_hosts)?;
    Ok(Edit {
        text: out,
        first_line,
        last_line,
    })
}

/// Parse the edited text: the top-level keys and the other hosts keep their order, and the new
/// entry reads back as exactly the given fields.
fn verify(
    text: &str,
    h: &NewHost,
    before: &Parsed,
    before_hosts: &[(String, usize, Node)],
) -> Result<(), Refusal> {
    let bug = |what: &str| {
        refuse(
            0,
            format!(
                "the edited inventory did not read back as intended ({what}); nothing was written"
            ),
        )
    };
    let after = match parse(text) {
        Ok(p) => p,
        Err(r) => return bug(&format!("line {}: {}", r.line, r.message)),
    };
    if after.top_keys != before.top_keys {
        return bug("the top-level keys changed");
    }
    let HostsValue::Map(hosts) = after.hosts else {
        return bug("`hosts` is not a mapping");
    };
    let names: Vec<&str> = hosts.iter().map(|x| x.0.as_str()).collect();
    let mut want: Vec<&str> = before_hosts.iter().map(|x| x.0.as_str()).collect();
    want.push(&h.name);
    if names != want {
        return bug("the hosts are not the old ones followed by the new one");
    }
    for (old, new) in before_hosts.iter().zip(&hosts) {
        if !same(&old.2, &new.2) {
            return bug(&format!("host `{}` changed", old.0));
        }
    }
    let entry = &hosts.last().expect("one host at least").2;
    let Some(m) = entry.as_mapping() else {
        return bug("the new entry is not a mapping");
    };
    let s = |n: &Node| n.as_scalar().map(|x| x.as_str().to_string());
    let mut keys: Vec<&str> = vec!["address", "groups", "region"];
    if h.provider.is_some() {
        keys.push("provider");
    }
    if h.has_ssh() {
        keys.push("ssh");
    }
    let got: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
    if got != keys {
        return bug(&format!("the new entry has keys {got:?}"));
    }
    let field = |k: &str| m.get_node(k).and_then(s);
    let groups: Option<Vec<String>> = m
        .get_node("groups")
        .and_then(Node::as_sequence)
        .map(|q| q.iter().filter_map(s).collect());
    let ok = field("address").as_deref() == Some(&h.address)
        && field("region").as_deref() == Some(&h.region)
        && field("provider") == h.provider
        && groups.as_ref() == Some(&h.groups);
    if !ok {
        return bug("a field of the new entry reads back differently");
    }
    if let Some(ssh) = m.get_node("ssh") {
        let sm = ssh.as_mapping();
        let port = sm.and_then(|x| x.get_node("port")).and_then(s);
        let user = sm.and_then(|x| x.get_node("user")).and_then(s);
        let become_ = sm.and_then(|x| x.get_node("become")).and_then(s);
        let dest = sm.and_then(|x| x.get_node("host")).and_then(s);
        let jump = sm.and_then(|x| x.get_node("proxy_jump")).and_then(s);
        let count = sm.map_or(0, |x| x.len());
        let want_become = h
            .user
            .as_deref()
            .filter(|u| *u != "root")
            .map(|_| "sudo".to_string());
        let want_count = [
            h.port.is_some(),
            h.user.is_some(),
            want_become.is_some(),
            h.host.is_some(),
            h.proxy_jump.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if port != h.port.map(|p| p.to_string())
            || user != h.user
            || become_ != want_become
            || dest != h.host
            || jump != h.proxy_jump
            || count != want_count
        {
            return bug("the new entry's ssh settings read back differently");
        }
    }
    Ok(())
}

/// Structural equality of two YAML nodes, ignoring where they are.
fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Scalar(x), Node::Scalar(y)) => x.as_str() == y.as_str(),
        (Node::Sequence(x), Node::Sequence(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        (Node::Mapping(x), Node::Mapping(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((k1, v1), (k2, v2))| k1.as_str() == k2.as_str() && same(v1, v2))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str) -> NewHost {
        NewHost {
            name: name.into(),
            address: address.into(),
            groups: vec!["validators".into()],
            region: "eu-central".into(),
            provider: Some("ovh".into()),
            port: None,
            user: None,
            host: None,
            proxy_jump: None,
        }
    }

    /// Add `h` and check that the new text is the old one with exactly the reported lines
    /// inserted (plus one blank separator line when `blank` is set).
    fn add_ok(text: &str, h: &NewHost) -> Edit {
        let e = add_host(text, h).unwrap_or_else(|r| panic!("refused: {r}\n{text}"));
        let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let lines: Vec<&str> = e.text.split(nl).collect();
        let mut kept: Vec<&str> = lines[..e.first_line - 1].to_vec();
        kept.extend(&lines[e.last_line..]);
        let mut back = kept.join(nl);
        if back.len() > text.len() {
            // The blank separator line before the entry, if any, is also inserted.
            let sep = e.first_line - 2;
            if lines[sep].is_empty() {
                let mut k: Vec<&str> = lines[..sep].to_vec();
                k.extend(&lines[e.last_line..]);
                back = k.join(nl);
            }
        }
        assert_eq!(
            back, text,
            "the old text is not kept byte for byte:\n{}",
            e.text
        );
        assert!(lines[e.first_line - 1]
            .trim_end()
            .ends_with(&format!("{}:", h.name)));
        e
    }

    fn refused(text: &str, line: usize, needle: &str) {
        let r = add_host(text, &host("validator-4", "10.77.4.2")).unwrap_err();
        assert_eq!(r.line, line, "{r}");
        assert!(r.message.contains(needle), "{r}");
    }

    const EXAMPLE: &str = "\
# Example fleet.

defaults:
  ssh:
    user: strata

groups:
  validators:
    modules: [validator]

hosts:
  validator-1:
    address: 192.0.2.10
    groups: [validators]
    labels: {az: us-east-1a}

  # The EU one.
  validator-2:
    address: 198.51.100.20
    groups: [validators]
    labels:
      dc: fsn1

  validator-3:
    address: 203.0.113.30
    groups: [validators]
    # OVH runs sshd on 2222 here.
    ssh: {port: 2222}
";

    #[test]
    fn example_shape_blank_lines_comments_nested_maps() {
        let e = add_ok(EXAMPLE, &host("validator-4", "10.77.4.2"));
        let want = format!(
            "{EXAMPLE}\n  validator-4:\n    address: 10.77.4.2\n    groups: [validators]\n    region: eu-central\n    provider: ovh\n"
        );
        assert_eq!(e.text, want);
        assert_eq!((e.first_line, e.last_line), (30, 34));
    }

    #[test]
    fn four_space_indentation_no_blank_lines_port_and_user() {
        let text = "hosts:\n    a-1:\n        address: 127.0.0.1\n        groups: [g]\n    a-2:\n        address: 127.0.0.2\n        groups: [g]\ngroups:\n    g: {}\n";
        let mut h = host("a-3", "127.0.0.3");
        h.groups = vec!["g".into()];
        h.provider = None;
        h.port = Some(2222);
        h.user = Some("deploy".into());
        let e = add_ok(text, &h);
        assert_eq!(
            e.text,
            "hosts:\n    a-1:\n        address: 127.0.0.1\n        groups: [g]\n    a-2:\n        address: 127.0.0.2\n        groups: [g]\n    a-3:\n        address: 127.0.0.3\n        groups: [g]\n        region: eu-central\n        ssh: {port: 2222, user: deploy, become: sudo}\ngroups:\n    g: {}\n"
        );
        assert_eq!((e.first_line, e.last_line), (8, 12));
    }

    #[test]
    fn ssh_destination_and_jump_hosts_join_the_ssh_map() {
        let text = "hosts:\n  a-1:\n    address: 127.0.0.1\n";
        let mut h = host("a-2", "10.77.4.2");
        h.host = Some("sgp-validator".into());
        h.proxy_jump = Some("ops@bastion-eu:2222,jump.example.org".into());
        h.user = Some("deploy".into());
        let e = add_ok(text, &h);
        // The hops hold `@`, `:` and `,`: quoted, so the flow map reads them as one value.
        assert!(
            e.text.ends_with("    ssh: {host: sgp-validator, user: deploy, become: sudo, proxy_jump: \"ops@bastion-eu:2222,jump.example.org\"}\n"),
            "{}",
            e.text
        );
        let mut h = host("a-2", "10.77.4.2");
        h.proxy_jump = Some("none".into());
        let e = add_ok(text, &h);
        assert!(
            e.text
                .ends_with("    provider: ovh\n    ssh: {proxy_jump: none}\n"),
            "{}",
            e.text
        );
    }

    #[test]
    fn hosts_before_other_keys_keeps_their_comments_after_the_new_entry() {
        let text = "hosts:\n  a-1:\n    address: 127.0.0.1\n    # indented: about a-1\n\n# About the groups below.\ngroups:\n  validators: {}\n";
        let e = add_ok(text, &host("a-2", "127.0.0.2"));
        assert_eq!(
            e.text,
            "hosts:\n  a-1:\n    address: 127.0.0.1\n    # indented: about a-1\n  a-2:\n    address: 127.0.0.2\n    groups: [validators]\n    region: eu-central\n    provider: ovh\n\n# About the groups below.\ngroups:\n  validators: {}\n"
        );
    }

    #[test]
    fn comments_between_hosts_at_column_zero() {
        let text = "hosts:\n  a-1:\n    address: 127.0.0.1\n# --- second region ---\n  a-2:\n    address: 127.0.0.2\n# trailing comment of the file\n";
        let e = add_ok(text, &host("a-3", "127.0.0.3"));
        assert!(e
            .text
            .ends_with("    address: 127.0.0.2\n  a-3:\n    address: 127.0.0.3\n    groups: [validators]\n    region: eu-central\n    provider: ovh\n# trailing comment of the file\n"));
    }

    #[test]
    fn file_without_final_newline_stays_without() {
        let text = "hosts:\n  a-1:\n    address: 127.0.0.1";
        let e = add_ok(text, &host("a-2", "127.0.0.2"));
        assert_eq!(
            e.text,
            "hosts:\n  a-1:\n    address: 127.0.0.1\n  a-2:\n    address: 127.0.0.2\n    groups: [validators]\n    region: eu-central\n    provider: ovh"
        );
    }

    #[test]
    fn crlf_is_kept_mixed_endings_refused() {
        let text = "hosts:\r\n  a-1:\r\n    address: 127.0.0.1\r\n";
        let e = add_ok(text, &host("a-2", "127.0.0.2"));
        assert_eq!(
            e.text,
            "hosts:\r\n  a-1:\r\n    address: 127.0.0.1\r\n  a-2:\r\n    address: 127.0.0.2\r\n    groups: [validators]\r\n    region: eu-central\r\n    provider: ovh\r\n"
        );
        refused(
            "hosts:\r\n  a-1:\n    address: 127.0.0.1\r\n",
            2,
            "mixed line endings",
        );
        refused("hosts:\r  a-1: {address: x}\r", 1, "carriage return");
    }

    #[test]
    fn empty_hosts_gets_its_first_entry() {
        let text = "defaults:\n    ssh: {user: root}\nhosts:\ngroups:\n    validators: {}\n";
        let e = add_ok(text, &host("a-1", "127.0.0.1"));
        assert_eq!(
            e.text,
            "defaults:\n    ssh: {user: root}\nhosts:\n    a-1:\n        address: 127.0.0.1\n        groups: [validators]\n        region: eu-central\n        provider: ovh\ngroups:\n    validators: {}\n"
        );
        // Only comments under it: after them.
        let text = "hosts:\n  # none yet\n";
        let e = add_ok(text, &host("a-1", "127.0.0.1"));
        assert!(e
            .text
            .starts_with("hosts:\n  # none yet\n  a-1:\n    address: 127.0.0.1\n"));
        assert_eq!((e.first_line, e.last_line), (3, 7));
    }

    #[test]
    fn empty_flow_hosts_loses_only_its_braces() {
        let text = "groups:\n  validators: {}\nhosts: {}   # filled by strata node add\n";
        let e = add_host(text, &host("a-1", "127.0.0.1")).unwrap();
        assert_eq!(
            e.text,
            "groups:\n  validators: {}\nhosts:   # filled by strata node add\n  a-1:\n    address: 127.0.0.1\n    groups: [validators]\n    region: eu-central\n    provider: ovh\n"
        );
        assert_eq!((e.first_line, e.last_line), (4, 8));
    }

    #[test]
    fn flow_style_host_entries_get_a_block_entry() {
        let text = "hosts:\n  a-1: {address: 127.0.0.1, groups: [validators]}\n  a-2: {address: 127.0.0.2, groups: [validators]}\n";
        let e = add_ok(text, &host("a-3", "127.0.0.3"));
        assert!(e.text.ends_with("  a-3:\n    address: 127.0.0.3\n    groups: [validators]\n    region: eu-central\n    provider: ovh\n"));
    }

    #[test]
    fn refusals_name_the_line() {
        refused(
            "groups: {}\nhosts: {a-1: {address: 127.0.0.1}}\n",
            2,
            "flow mapping",
        );
        refused(
            "hosts: {\n  a-1: {address: 127.0.0.1}}\n",
            1,
            "flow mapping",
        );
        refused("groups: {}\n", 0, "no top-level `hosts:`");
        refused("", 0, "empty");
        refused("hosts:\n  - a-1\n", 2, "a list");
        refused("hosts: all\n", 1, "a scalar");
        refused("hosts:\n  a-1:\n    address: 127.0.0.1\t\n", 3, "tab");
        refused(
            "hosts:\n  a-1:\n    address:\t127.0.0.1\n",
            3,
            "does not parse",
        );
        refused("x: &d {groups: [g]}\nhosts:\n  a-1: *d\n", 1, "anchor");
        refused(
            "hosts:\n  a-1:\n    <<: {groups: [g]}\n    address: 127.0.0.1\n",
            3,
            "merge key",
        );
        refused("hosts:\n  a-1:\n    address: !!str 127.0.0.1\n", 3, "tag");
        refused(
            "hosts:\n  a-1: {address: 127.0.0.1}\n---\nhosts: {}\n",
            3,
            "several YAML documents",
        );
        refused("hosts:\n  a-1: [\n", 3, "does not parse");
        refused(
            "hosts:\n  validator-4:\n    address: 127.0.0.1\n",
            2,
            "already in the inventory",
        );
        refused("\"hosts\":\n  a-1: {address: x}\n", 1, "plain `hosts:` key");
    }

    #[test]
    fn values_are_quoted_when_plain_would_change_them() {
        let text = "hosts:\n  a-1:\n    address: 127.0.0.1\n";
        let mut h = host("a-2", "::1");
        h.region = "eu central #2".into();
        h.provider = Some("yes".into());
        h.user = Some("on".into());
        h.groups = vec!["validators".into(), "1.5".into()];
        let e = add_ok(text, &h);
        assert!(
            e.text.ends_with("  a-2:\n    address: \"::1\"\n    groups: [validators, \"1.5\"]\n    region: \"eu central #2\"\n    provider: \"yes\"\n    ssh: {user: \"on\", become: sudo}\n"),
            "{}",
            e.text
        );
        assert_eq!(yaml_scalar("10.77.4.2"), "10.77.4.2");
        assert_eq!(yaml_scalar("node.example.org"), "node.example.org");
        assert_eq!(yaml_scalar("12"), "\"12\"");
        assert_eq!(yaml_scalar("Null"), "\"Null\"");
        assert_eq!(yaml_scalar("0x1f"), "\"0x1f\"");
        assert_eq!(yaml_scalar("1e3"), "\"1e3\"");
        assert_eq!(yaml_scalar("infinity"), "infinity");
        assert_eq!(yaml_scalar("-x"), "\"-x\"");
        assert_eq!(yaml_scalar("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn node_properties_are_found_outside_quotes_only() {
        assert_eq!(node_property("  a: &x 1"), Some("an anchor (&)"));
        assert_eq!(node_property("  a: [1, *x]"), Some("an alias (*)"));
        assert_eq!(node_property("  - !t 1"), Some("a tag (!)"));
        assert_eq!(node_property("  <<: {a: 1}"), Some("a merge key (<<)"));
        assert_eq!(node_property("  a: \"&x *y !z\""), None);
        assert_eq!(node_property("  a: 'it''s &x'"), None);
        assert_eq!(node_property("  a: b&c*d!e"), None);
        assert_eq!(node_property("  a: http://x # &anchor in a comment"), None);
    }
}
