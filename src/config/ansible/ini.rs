//! Ansible's INI inventory format, by the rules of its `ini` inventory plugin:
//! `[group]` lists hosts (`pattern[:port] key=value ...`, split like a POSIX shell line, `#`
//! starting a comment), `[group:vars]` holds `key=value` lines, `[group:children]` names child
//! groups; whole-line comments start with `#` or `;`; hosts before any section are ungrouped.
//! Values are read as Python literals (`2222` a number, `True` a boolean, `'x'` a string),
//! everything else as text, as the plugin's `ast.literal_eval` does.

use super::{expand_pattern, Inventory, Note};
use crate::config::vars::Val;
use std::path::Path;

enum State {
    Hosts,
    Vars,
    Children,
    /// After a section header that was refused: its lines are skipped (reported once).
    Skip,
}

/// Read an INI inventory into `inv`; problems go to `inv.notes` with their line.
pub fn parse(inv: &mut Inventory, file: &Path, text: &str) {
    let mut group = "ungrouped".to_string();
    let mut state = State::Hosts;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let note = |inv: &mut Inventory, m: String| inv.notes.push(Note::new(file, line_no, m));
        if let Some(rest) = line.strip_prefix('[') {
            let Some((head, tail)) = rest.split_once(']') else {
                note(
                    inv,
                    format!("`{line}`: a section header needs a closing `]`"),
                );
                continue;
            };
            if !tail.trim().is_empty() && !tail.trim().starts_with('#') {
                note(inv, format!("`{line}`: text after the section header"));
                continue;
            }
            let (name, kind) = match head.split_once(':') {
                Some((n, k)) => (n.trim(), Some(k.trim())),
                None => (head.trim(), None),
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                note(inv, format!("`{line}`: not a group name"));
                continue;
            }
            state = match kind {
                None => State::Hosts,
                Some("vars") => State::Vars,
                Some("children") => State::Children,
                Some(k) => {
                    note(
                        inv,
                        format!(
                            "`[{name}:{k}]`: only `:vars` and `:children` sections exist; \
                             its lines are skipped"
                        ),
                    );
                    state = State::Skip;
                    continue;
                }
            };
            group = name.to_string();
            inv.group(&group, file, line_no);
            continue;
        }
        match state {
            State::Skip => {}
            State::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    note(inv, format!("`{line}`: expected key=value"));
                    continue;
                };
                let value = literal(v.trim());
                inv.set_group_var(&group, k.trim(), value, file, line_no);
            }
            State::Children => {
                let child = line.split_whitespace().next().unwrap_or_default();
                inv.group(child, file, line_no);
                inv.group(&group, file, line_no)
                    .children
                    .insert(child.to_string());
            }
            State::Hosts => match host_line(line) {
                Ok((pattern, port, vars)) => match expand_pattern(&pattern) {
                    Ok(names) => {
                        for name in names {
                            let mut vars = vars.clone();
                            if let Some(p) = port {
                                vars.insert(0, ("ansible_port".to_string(), Val::Int(p.into())));
                            }
                            inv.add_host(&group, &name, file, line_no);
                            for (k, v) in vars {
                                inv.set_host_var(&name, &k, v, file, line_no);
                            }
                        }
                    }
                    Err(e) => note(inv, format!("host pattern `{pattern}`: {e}")),
                },
                Err(e) => note(inv, e),
            },
        }
    }
}

type HostLine = (String, Option<u16>, Vec<(String, Val)>);

/// `pattern[:port] k=v ...`: the pattern, its port and its vars in order.
fn host_line(line: &str) -> Result<HostLine, String> {
    let tokens = shell_split(line)?;
    let Some((first, rest)) = tokens.split_first() else {
        return Err("empty host line".into());
    };
    let (pattern, port) = split_port(first)?;
    let mut vars = Vec::new();
    for t in rest {
        let Some((k, v)) = t.split_once('=') else {
            return Err(format!(
                "`{t}`: expected key=value after the host (Ansible's rule for host variables)"
            ));
        };
        vars.push((k.to_string(), literal(v)));
    }
    Ok((pattern, port, vars))
}

/// `host:22` -> (host, 22). A colon inside `[...]` is a range; several colons outside brackets
/// are an IPv6 address without a port.
fn split_port(p: &str) -> Result<(String, Option<u16>), String> {
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in p.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    if colons.len() != 1 {
        return Ok((p.to_string(), None));
    }
    let (host, port) = (&p[..colons[0]], &p[colons[0] + 1..]);
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{p}`: `{port}` is not a port"))?;
    Ok((host.to_string(), Some(port)))
}

/// Split like Python's `shlex.split(line, comments=True)`: whitespace separates, quotes group,
/// a backslash escapes (inside double quotes only `"` and `\`), `#` outside quotes ends the
/// line.
pub fn shell_split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            // shlex's commenters end the line inside a word too (`k=a#b` is `k=a`).
            '#' => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("`{line}`: no closing quotation")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\')) => {
                            cur.push(chars.next().unwrap_or_default())
                        }
                        Some(c) => cur.push(c),
                        None => return Err(format!("`{line}`: no closing quotation")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err(format!("`{line}`: no escaped character")),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// A value as `ast.literal_eval` reads it, or the text itself when it is not a literal.
pub fn literal(s: &str) -> Val {
    let t = s.trim();
    match t {
        "True" => return Val::Bool(true),
        "False" => return Val::Bool(false),
        "None" => return Val::Null,
        _ => {}
    }
    if let Some(q) = t.chars().next().filter(|c| *c == '\'' || *c == '"') {
        if t.len() >= 2 && t.ends_with(q) {
            let inner = &t[1..t.len() - 1];
            if let Some(s) = unescape(inner, q) {
                return Val::Str(s);
            }
        }
        return Val::Str(s.to_string());
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let clean = body.replace('_', "");
    let underscores_ok = !body.starts_with('_') && !body.ends_with('_') && !body.contains("__");
    let int = if !underscores_ok || clean.is_empty() {
        None
    } else if let Some(h) = clean.strip_prefix("0x").or(clean.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = clean.strip_prefix("0o").or(clean.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = clean.strip_prefix("0b").or(clean.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()
    } else if clean.chars().all(|c| c.is_ascii_digit())
        // Python 3 refuses leading zeros (`0644` is a SyntaxError, so it stays text).
        && (clean == "0" || !clean.starts_with('0') || clean.chars().all(|c| c == '0'))
    {
        clean.parse().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Val::Int(if neg { -i } else { i });
    }
    if underscores_ok
        && clean.chars().any(|c| c.is_ascii_digit())
        && clean.contains(['.', 'e', 'E'])
        && clean
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        if let Ok(f) = clean.parse::<f64>() {
            return Val::Float(if neg { -f } else { f });
        }
    }
    // A list or dict literal: Python's syntax for these is (nearly) YAML flow syntax.
    if t.starts_with(['[', '{']) {
        if let Ok(Some(n)) = super::yaml::parse(&format!("v: {t}")) {
            if let Some(v) = n.get("v") {
                return super::yaml::to_val(v, "", &mut |_, _, _| None);
            }
        }
    }
    Val::Str(s.to_string())
}

/// Python string escapes (the common ones); `None` if the quote char appears unescaped.
fn unescape(s: &str, q: char) -> Option<String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other)
                }
            },
            c if c == q => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_python_literals_or_text() {
        assert_eq!(literal("2222"), Val::Int(2222));
        assert_eq!(literal("-3"), Val::Int(-3));
        assert_eq!(literal("True"), Val::Bool(true));
        // Not Python literals: kept as text, as literal_eval's failure leaves them.
        assert_eq!(literal("true"), Val::Str("true".into()));
        assert_eq!(literal("yes"), Val::Str("yes".into()));
        assert_eq!(literal("0644"), Val::Str("0644".into()));
        assert_eq!(literal("0o644"), Val::Int(420));
        assert_eq!(literal("1.5"), Val::Float(1.5));
        assert_eq!(literal("'a b'"), Val::Str("a b".into()));
        assert_eq!(literal("\"it's\""), Val::Str("it's".into()));
        assert_eq!(literal("None"), Val::Null);
        assert_eq!(
            literal("['a', 'b']"),
            Val::List(vec![Val::Str("a".into()), Val::Str("b".into())])
        );
        assert_eq!(literal("10.0.0.1"), Val::Str("10.0.0.1".into()));
        assert_eq!(literal("v0.9.3"), Val::Str("v0.9.3".into()));
    }

    #[test]
    fn host_lines_split_like_shlex() {
        assert_eq!(
            shell_split(r#"web1 a=1 b="two words" c='x y' # note"#).unwrap(),
            vec!["web1", "a=1", "b=two words", "c=x y"]
        );
        // `#` ends the line even inside a word (ansible-inventory reads `k=a#b` as k: "a"),
        // not inside quotes; quotes join with the word around them.
        assert_eq!(shell_split("h x=a#b y=1").unwrap(), vec!["h", "x=a"]);
        assert_eq!(
            shell_split("h x='a#b' y=p\"q r\"").unwrap(),
            vec!["h", "x=a#b", "y=pq r"]
        );
        assert!(shell_split("h x='open").is_err());
        let (p, port, vars) = host_line("db1.example.com:2222 ansible_user=deploy").unwrap();
        assert_eq!((p.as_str(), port), ("db1.example.com", Some(2222)));
        assert_eq!(vars[0], ("ansible_user".into(), Val::Str("deploy".into())));
        let (p, port, _) = host_line("web[01:03]:22").unwrap();
        assert_eq!((p.as_str(), port), ("web[01:03]", Some(22)));
        let (p, port, _) = host_line("2001:db8::1").unwrap();
        assert_eq!((p.as_str(), port), ("2001:db8::1", None));
        assert!(host_line("h:99999").is_err());
        assert!(host_line("h novalue").is_err());
    }

    #[test]
    fn sections_children_vars_and_comments() {
        let text = "\
# fleet
bastion ansible_host=10.0.0.9

[web]
web[1:2] http_port=8080
; comment
[db]
db1 ansible_port=2200

[prod:children]
web
db

[prod:vars]
ntp = 'pool.example'
[web:bogus]
x
";
        let mut inv = Inventory::default();
        parse(&mut inv, Path::new("hosts.ini"), text);
        assert!(inv.groups["ungrouped"].hosts.contains("bastion"));
        assert_eq!(
            inv.groups["web"].hosts.iter().collect::<Vec<_>>(),
            vec!["web1", "web2"]
        );
        assert!(inv.groups["prod"].children.contains("db"));
        assert_eq!(
            inv.groups["prod"].vars["ntp"].value,
            Val::Str("pool.example".into())
        );
        assert_eq!(inv.groups["prod"].vars["ntp"].line, 15);
        assert_eq!(inv.hosts["db1"].vars["ansible_port"].value, Val::Int(2200));
        assert_eq!(inv.hosts["web2"].vars["http_port"].line, 5);
        assert_eq!(inv.notes.len(), 1, "{:?}", inv.notes);
        assert_eq!(inv.notes[0].line, 16);
    }
}
