//! The template environment: a loader confined to the module that uses a template, the
//! whitespace settings (strata's own, or Ansible's template module's), the `#jinja2:` header,
//! and the functions and filters templates get (`env`, `file`, `secret_file`, Ansible filters,
//! Python string/dict methods).
//!
//! Template names are `modules/<m>/templates/<path>`. An `include`/`import`/`extends`/`from`
//! inside one resolves like Ansible's template module: first against the module's
//! `templates/`, then against the including template's own directory; a name that is
//! absolute or whose `..` leaves `modules/<m>/` is an error at the including line, and so is a
//! symlink leading out of the module.

use crate::error::Diag;
use crate::render::secrets::{self, Sink};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How a template's whitespace is handled. `Default` is strata's historical behaviour
/// (Jinja2's defaults plus `keep_trailing_newline`), so existing modules render unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Whitespace {
    pub trim_blocks: bool,
    pub lstrip_blocks: bool,
    pub keep_trailing_newline: bool,
    /// Ansible's rule: the output ends with at least as many newlines as the template file.
    pub ansible_newlines: bool,
    /// Print values as Jinja2 under Ansible does: lists and dicts as Python's repr
    /// (`['a', 1]`, `{'k': True}`), none as nothing.
    pub python_output: bool,
}

impl Default for Whitespace {
    fn default() -> Self {
        Whitespace {
            trim_blocks: false,
            lstrip_blocks: false,
            keep_trailing_newline: true,
            ansible_newlines: false,
            python_output: false,
        }
    }
}

impl Whitespace {
    /// Ansible's template module: `trim_blocks: true`, `lstrip_blocks: false`, Jinja2's
    /// `keep_trailing_newline: false` and then the template's trailing newlines restored
    /// (ansible-core `plugins/action/template.py`, `_engine.py` `_post_render_mutation`).
    pub const ANSIBLE: Whitespace = Whitespace {
        trim_blocks: true,
        lstrip_blocks: false,
        keep_trailing_newline: false,
        ansible_newlines: true,
        python_output: true,
    };
}

/// `template_options:` of a module (for all its files) or of one file. `style: ansible`
/// starts from Ansible's template module defaults; the other keys override one setting.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateOptions {
    pub style: Option<Style>,
    pub trim_blocks: Option<bool>,
    pub lstrip_blocks: Option<bool>,
    pub keep_trailing_newline: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    Strata,
    Ansible,
}

impl TemplateOptions {
    /// `self` applied over `base`.
    pub fn apply(&self, base: Whitespace) -> Whitespace {
        let mut w = match self.style {
            Some(Style::Ansible) => Whitespace::ANSIBLE,
            Some(Style::Strata) => Whitespace::default(),
            None => base,
        };
        if let Some(v) = self.trim_blocks {
            w.trim_blocks = v;
        }
        if let Some(v) = self.lstrip_blocks {
            w.lstrip_blocks = v;
        }
        if let Some(v) = self.keep_trailing_newline {
            w.keep_trailing_newline = v;
        }
        w
    }
}

/// Ansible's `#jinja2: key: value, ...` first line: its whitespace settings over `base`.
/// `None` when the template has no such header. Only the whitespace keys are supported.
pub fn header(src: &str, base: Whitespace) -> Option<Result<Whitespace, String>> {
    let rest = src.strip_prefix("#jinja2:")?;
    let Some(eol) = rest.find('\n') else {
        return Some(Err("missing newline after the `#jinja2:` header".into()));
    };
    let mut w = base;
    for pair in rest[..eol].split(',') {
        let Some((k, v)) = pair.split_once(':') else {
            return Some(Err(format!(
                "`#jinja2:` header: `{}` is not `key: value`",
                pair.trim()
            )));
        };
        let key = k.trim();
        if !["trim_blocks", "lstrip_blocks", "keep_trailing_newline"].contains(&key) {
            return Some(Err(format!(
                "`#jinja2:` header: `{key}` is not supported (only trim_blocks, \
                 lstrip_blocks, keep_trailing_newline)"
            )));
        }
        let b = match v.trim() {
            "True" | "true" => true,
            "False" | "false" => false,
            other => {
                return Some(Err(format!(
                    "`#jinja2:` header: `{key}: {other}`: strata supports True or False here"
                )))
            }
        };
        match key {
            "trim_blocks" => w.trim_blocks = b,
            "lstrip_blocks" => w.lstrip_blocks = b,
            _ => w.keep_trailing_newline = b,
        }
    }
    Some(Ok(w))
}

/// Lines a `#jinja2:` header takes off the top of `src` (error lines are shifted back).
fn header_lines(src: &str) -> usize {
    usize::from(src.starts_with("#jinja2:") && src.contains('\n'))
}

/// Ansible's trailing-newline rule, applied after rendering `src` to `out`.
pub fn finish(w: Whitespace, src: &str, mut out: String) -> String {
    if w.ansible_newlines {
        let want = src.len() - src.trim_end_matches('\n').len();
        let have = out.len() - out.trim_end_matches('\n').len();
        for _ in have..want {
            out.push('\n');
        }
    }
    out
}

/// The environments of one render (one per whitespace setting in use), built on demand and
/// sharing one secrets sink.
pub struct Envs {
    root: PathBuf,
    sink: Sink,
    envs: Mutex<BTreeMap<Whitespace, Arc<Environment<'static>>>>,
}

impl Envs {
    pub fn new(root: &Path, sink: Sink) -> Self {
        Envs {
            root: root.to_path_buf(),
            sink,
            envs: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn get(&self, w: Whitespace) -> Arc<Environment<'static>> {
        self.envs
            .lock()
            .expect("envs lock")
            .entry(w)
            .or_insert_with(|| Arc::new(environment(&self.root, w, self.sink.clone())))
            .clone()
    }

    /// Render the file template `name` (`modules/<m>/templates/<t>`) with `ctx`, whitespace
    /// from `base` (module and file options) and the template's own `#jinja2:` header.
    /// `Err(None)`: there is no such template.
    pub fn render_file(
        &self,
        name: &str,
        base: Whitespace,
        ctx: &minijinja::Value,
    ) -> Result<String, Option<Diag>> {
        let src = match load(&self.root, name, false) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(None),
            Err(e) => return Err(Some(template_diag(&self.root, &e, name))),
        };
        let w = match header(&src, base) {
            None => base,
            Some(Ok(w)) => w,
            Some(Err(msg)) => return Err(Some(Diag::new(PathBuf::from(name), 1, "template", msg))),
        };
        let env = self.get(w);
        let tmpl = env
            .get_template(name)
            .map_err(|e| Some(template_diag(&self.root, &e, name)))?;
        let out = tmpl
            .render(ctx)
            .map_err(|e| Some(template_diag(&self.root, &e, name)))?;
        Ok(finish(w, &src, out))
    }
}

/// A template environment with strata's settings, restricted loader, functions and filters.
pub fn environment(root: &Path, w: Whitespace, sink: Sink) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(w.keep_trailing_newline);
    env.set_trim_blocks(w.trim_blocks);
    env.set_lstrip_blocks(w.lstrip_blocks);
    // Config files are not HTML or JSON: never auto-escape (the json feature would quote
    // every string in a .yml template).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    if w.python_output {
        env.add_filter("indent", crate::render::filters::jinja2_indent);
        env.set_formatter(|out, state, v| {
            use minijinja::value::ValueKind;
            match v.kind() {
                ValueKind::None => Ok(()),
                ValueKind::Seq | ValueKind::Map | ValueKind::Bool | ValueKind::Number => {
                    let s = crate::render::filters::python_repr(v)?;
                    out.write_str(&s).map_err(Error::from)
                }
                _ => minijinja::escape_formatter(out, state, v),
            }
        });
    }
    let r = root.to_path_buf();
    env.set_loader(move |name| load(&r, name, true));
    let r = root.to_path_buf();
    env.set_path_join_callback(move |name, parent| join(&r, name, parent).into());
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    crate::render::filters::add_to(&mut env);

    let seen = sink.clone();
    env.add_function("env", move |name: String| -> Result<String, Error> {
        match secrets::env_var(&name) {
            Some(v) => {
                secrets::record(&seen, &v);
                Ok(v)
            }
            None => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable {name} is not set (env(\"{name}\"))"),
            )),
        }
    });
    let r = root.to_path_buf();
    env.add_function("file", move |path: String| -> Result<String, Error> {
        secrets::read_repo_file(&r, &path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("file(\"{path}\"): {e}"),
            )
        })
    });
    let r = root.to_path_buf();
    env.add_function(
        "secret_file",
        move |path: String| -> Result<String, Error> {
            let v = secrets::read_secret_file(&r, &path).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("secret_file(\"{path}\"): {e}"),
                )
            })?;
            secrets::record(&sink, &v);
            Ok(v)
        },
    );
    env
}

/// Names the loader refuses carry their reason after this mark (a path never contains NUL).
const REFUSED: char = '\0';

/// `modules/<m>/` of a template name, if it has that shape.
fn module_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("modules/")?;
    let m = rest.split('/').next()?;
    (!m.is_empty() && rest.len() > m.len()).then(|| &name[..8 + m.len()])
}

/// `base/rel` normalised, or `None` when `..` climbs above `floor` (a prefix of `base`).
fn normalise(base: &str, rel: &str, floor: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    let min = floor.split('/').filter(|p| !p.is_empty()).count();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir if parts.len() > min => {
                parts.pop();
            }
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// Resolve `name` as included from `parent`, like Ansible's search path: the module's
/// `templates/` first, then the including template's directory.
fn join(root: &Path, name: &str, parent: &str) -> String {
    let refused = |why: String| format!("{REFUSED}{why}");
    let Some(module) = module_of(parent) else {
        return refused(format!(
            "`{name}`: include, import and extends work in template files only"
        ));
    };
    if name.starts_with('/') {
        return refused(format!(
            "`{name}` is an absolute path: a template may only include templates of its own \
             module ({module}/), by a path relative to it"
        ));
    }
    let dir = parent.rsplit_once('/').map(|(d, _)| d).unwrap_or(module);
    let candidates: Vec<String> = [format!("{module}/templates"), dir.to_string()]
        .iter()
        .filter_map(|b| normalise(b, name, module))
        .collect();
    match candidates
        .iter()
        .find(|c| root.join(c).is_file())
        .or(candidates.first())
    {
        Some(c) => c.clone(),
        None => refused(format!(
            "`{name}` leaves the module: a template may only include templates of its own \
             module ({module}/)"
        )),
    }
}

/// Read template `name`, which must be a file inside `modules/<m>/` (symlinks resolved).
/// With `strip`, a `#jinja2:` header line is taken off (its settings are read by
/// `render_file`, from the source read without `strip`).
fn load(root: &Path, name: &str, strip: bool) -> Result<Option<String>, Error> {
    let refuse = |why: String| Err(Error::new(ErrorKind::InvalidOperation, why));
    if let Some(why) = name.strip_prefix(REFUSED) {
        return refuse(why.to_string());
    }
    let Some(module) = module_of(name) else {
        return refuse(format!("`{name}` is not a template of a module"));
    };
    if normalise("", name, module).as_deref() != Some(name) {
        return refuse(format!(
            "`{name}` is not a normalised path inside {module}/"
        ));
    }
    let path = root.join(name);
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return refuse(format!(
                "cannot read template {name}: {}",
                secrets::io_words(&e)
            ))
        }
    };
    let real_module = root.join(module).canonicalize().map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot read {module}: {}", secrets::io_words(&e)),
        )
    })?;
    if !real.starts_with(&real_module) {
        return refuse(format!(
            "`{name}` leads outside {module}/ (to {}): a template may only read its own module",
            real.display()
        ));
    }
    match std::fs::read_to_string(&real) {
        Ok(s) if strip && header_lines(&s) == 1 => {
            Ok(Some(s[s.find('\n').unwrap_or(0) + 1..].to_string()))
        }
        Ok(s) => Ok(Some(s)),
        Err(e) => refuse(format!(
            "cannot read template {name}: {}",
            secrets::io_words(&e)
        )),
    }
}

/// A template error located in the template file (the including one for a refused include),
/// with the offending source line.
pub fn template_diag(root: &Path, e: &minijinja::Error, name: &str) -> Diag {
    let tname = e.name().unwrap_or(name).to_string();
    let src = std::fs::read_to_string(root.join(&tname)).ok();
    let shift = src.as_deref().map(header_lines).unwrap_or(0);
    let line = e.line().map(|l| l + shift).unwrap_or(0);
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(l) = src
        .as_deref()
        .and_then(|s| s.lines().nth(line.saturating_sub(1)))
        .filter(|_| line > 0)
    {
        msg.push_str(&format!(" in `{}`", l.trim()));
    }
    Diag::new(PathBuf::from(&tname), line, "template", msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        dir
    }

    fn render(dir: &Path, name: &str, w: Whitespace) -> Result<String, Diag> {
        let envs = Envs::new(dir, Sink::default());
        envs.render_file(
            name,
            w,
            &minijinja::context! { xs => vec![1, 2], on => true },
        )
        .map_err(|e| e.expect("template exists"))
    }

    #[test]
    fn includes_resolve_inside_the_module_only() {
        let d = repo(&[
            ("modules/m/templates/a.j2", "A{% include \"parts/b.j2\" %}"),
            ("modules/m/templates/parts/b.j2", "B{% include \"c.j2\" %}"),
            // c.j2 is found next to b.j2 (the including template's directory).
            (
                "modules/m/templates/parts/c.j2",
                "C{% import \"../macros.j2\" as x %}{{ x.m() }}",
            ),
            (
                "modules/m/templates/macros.j2",
                "{% macro m() %}M{% endmacro %}",
            ),
            (
                "modules/m/templates/base.j2",
                "<{% block b %}{% endblock %}>",
            ),
            (
                "modules/m/templates/child.j2",
                "{% extends \"base.j2\" %}{% block b %}kid{% endblock %}",
            ),
            (
                "modules/m/templates/env.j2",
                "x\n{% include \"../../../../proc/self/environ\" %}\n",
            ),
            (
                "modules/m/templates/abs.j2",
                "{% include \"/etc/passwd\" %}",
            ),
            (
                "modules/m/templates/other.j2",
                "{% include \"../../n/templates/t.j2\" %}",
            ),
            ("modules/n/templates/t.j2", "module n"),
            ("secret.txt", "s"),
        ]);
        let w = Whitespace::default();
        assert_eq!(
            render(d.path(), "modules/m/templates/a.j2", w).unwrap(),
            "ABCM"
        );
        assert_eq!(
            render(d.path(), "modules/m/templates/child.j2", w).unwrap(),
            "<kid>"
        );
        // The case of issue 14: an error at the including file and line, nothing read.
        let e = render(d.path(), "modules/m/templates/env.j2", w).unwrap_err();
        assert_eq!(e.file, PathBuf::from("modules/m/templates/env.j2"));
        assert_eq!(e.line, 2, "{e:?}");
        assert!(e.message.contains("leaves the module"), "{}", e.message);
        let e = render(d.path(), "modules/m/templates/abs.j2", w).unwrap_err();
        assert!(e.message.contains("is an absolute path"), "{}", e.message);
        assert_eq!(
            (e.file.to_str().unwrap(), e.line),
            ("modules/m/templates/abs.j2", 1)
        );
        let e = render(d.path(), "modules/m/templates/other.j2", w).unwrap_err();
        assert!(e.message.contains("leaves the module"), "{}", e.message);
    }

    #[test]
    fn a_symlink_out_of_the_module_is_refused() {
        let d = repo(&[
            ("modules/m/templates/a.j2", "{% include \"link.j2\" %}"),
            ("outside.txt", "TOP SECRET"),
        ]);
        std::os::unix::fs::symlink(
            d.path().join("outside.txt"),
            d.path().join("modules/m/templates/link.j2"),
        )
        .unwrap();
        let e = render(d.path(), "modules/m/templates/a.j2", Whitespace::default()).unwrap_err();
        assert!(
            e.message.contains("leads outside modules/m/"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("TOP SECRET"));
    }

    // Jinja2 docs, "Whitespace Control": with trim_blocks the first newline after a block tag
    // is removed; lstrip_blocks strips spaces and tabs from the start of a line to a block.
    #[test]
    fn whitespace_styles() {
        let src = "<div>\n    {% if on %}\n        yay\n    {% endif %}\n</div>\n";
        let d = repo(&[("modules/m/templates/t.j2", src)]);
        let name = "modules/m/templates/t.j2";
        // Jinja2 defaults (and strata's): every block line leaves its newline and indent.
        assert_eq!(
            render(d.path(), name, Whitespace::default()).unwrap(),
            "<div>\n    \n        yay\n    \n</div>\n"
        );
        // The docs' example output with both trim_blocks and lstrip_blocks.
        let both = TemplateOptions {
            trim_blocks: Some(true),
            lstrip_blocks: Some(true),
            ..Default::default()
        };
        assert_eq!(
            render(d.path(), name, both.apply(Whitespace::default())).unwrap(),
            "<div>\n        yay\n</div>\n"
        );
        // Ansible (trim_blocks only): the indent before each block tag stays.
        assert_eq!(
            render(d.path(), name, Whitespace::ANSIBLE).unwrap(),
            "<div>\n            yay\n    </div>\n"
        );
    }

    #[test]
    fn ansible_keeps_the_templates_trailing_newline_after_a_block() {
        let d = repo(&[("modules/m/templates/t.j2", "{% if on %}x{% endif %}\n")]);
        let name = "modules/m/templates/t.j2";
        assert_eq!(render(d.path(), name, Whitespace::ANSIBLE).unwrap(), "x\n");
        let opts = TemplateOptions {
            trim_blocks: Some(true),
            ..Default::default()
        };
        // trim_blocks alone in strata's style eats the final newline, as Jinja2 would.
        assert_eq!(
            render(d.path(), name, opts.apply(Whitespace::default())).unwrap(),
            "x"
        );
    }

    #[test]
    fn jinja2_header_overrides_whitespace_and_keeps_line_numbers() {
        let d = repo(&[
            (
                "modules/m/templates/t.j2",
                "#jinja2: trim_blocks: False\n{% if on %}\nx\n{% endif %}\n",
            ),
            (
                "modules/m/templates/e.j2",
                "#jinja2:trim_blocks:False\nok\n{{ nope }}\n",
            ),
            (
                "modules/m/templates/b.j2",
                "#jinja2: variable_start_string: '[%'\n",
            ),
        ]);
        assert_eq!(
            render(d.path(), "modules/m/templates/t.j2", Whitespace::ANSIBLE).unwrap(),
            "\nx\n"
        );
        let e = render(d.path(), "modules/m/templates/e.j2", Whitespace::ANSIBLE).unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.message.contains("{{ nope }}"), "{}", e.message);
        let e = render(d.path(), "modules/m/templates/b.j2", Whitespace::ANSIBLE).unwrap_err();
        assert!(e.message.contains("not supported"), "{}", e.message);
    }

    #[test]
    fn loop_controls_and_python_methods() {
        let d = repo(&[(
            "modules/m/templates/t.j2",
            "{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %} \
             {{ 'a,b'.split(',') }} {{ 'abc'.startswith('ab') }} {{ {'k': 1}.items() | list }} {{ 'a b'|urlencode }}",
        )]);
        assert_eq!(
            render(d.path(), "modules/m/templates/t.j2", Whitespace::default()).unwrap(),
            "13 [\"a\", \"b\"] True [[\"k\", 1]] a%20b"
        );
    }

    #[test]
    fn file_and_secret_file() {
        let d = repo(&[
            (
                "modules/m/templates/t.j2",
                "{{ file('files/motd') }}|{{ secret_file('secrets/token') | trim }}",
            ),
            (
                "modules/m/templates/bad.j2",
                "line1\n{{ file('../etc/passwd') }}",
            ),
            ("files/motd", "hi"),
            ("secrets/token", "tok-123456\n"),
        ]);
        let sink = Sink::default();
        let envs = Envs::new(d.path(), sink.clone());
        let out = envs
            .render_file(
                "modules/m/templates/t.j2",
                Whitespace::default(),
                &minijinja::context! {},
            )
            .unwrap();
        assert_eq!(out, "hi|tok-123456");
        assert!(sink.lock().unwrap().contains("tok-123456"));
        assert!(!sink.lock().unwrap().contains("hi"));
        let e = envs
            .render_file(
                "modules/m/templates/bad.j2",
                Whitespace::default(),
                &minijinja::context! {},
            )
            .unwrap_err()
            .unwrap();
        assert_eq!(e.line, 2);
        assert!(
            e.message
                .contains("file(\"../etc/passwd\"): `../etc/passwd` leaves the repo"),
            "{}",
            e.message
        );
    }
}
