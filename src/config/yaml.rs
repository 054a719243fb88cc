//! YAML with line numbers: every value keeps where it came from, so errors can name file:line.
//!
//! marked-yaml keeps spans (serde_yaml does not); this module turns its errors into `Diag`s
//! and its scalars into typed values the way YAML 1.2 core schema reads plain scalars.

use crate::error::Diag;
use marked_yaml::{LoadError, LoaderOptions, Node};
use serde::de::DeserializeOwned;
use std::path::Path;

pub use marked_yaml::Node as YNode;

/// Deepest nesting of maps and lists a file may have (config is a few levels deep; the limit
/// keeps every recursive walk, ours and the parser's, far from the end of the stack).
pub const MAX_DEPTH: usize = 64;

/// Parse a YAML document whose top level must be a mapping. Duplicate keys, merge keys (`<<`),
/// anchors, tags, a second document and nesting deeper than `MAX_DEPTH` are errors.
pub fn parse(file: &Path, text: &str) -> Result<Node, Diag> {
    // A byte order mark is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Node::Mapping(
            marked_yaml::types::MarkedMappingNode::new_empty(marked_yaml::Span::new_blank()),
        ));
    }
    check_shape(file, text)?;
    let opts = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let node =
        marked_yaml::parse_yaml_with_options(0, text, opts).map_err(|e| load_error(file, e))?;
    no_merge_keys(file, &node)?;
    Ok(node)
}

/// Walk the parser's event stream (iterative, unlike its loader): refuse nesting deeper than
/// `MAX_DEPTH` and more than one document, before the recursive load runs.
fn check_shape(file: &Path, text: &str) -> Result<(), Diag> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut docs = 0usize;
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(t) => t,
            // The loader reports syntax errors with its own wording.
            Err(_) => return Ok(()),
        };
        match ev {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                docs += 1;
                if docs > 1 {
                    return Err(Diag::new(
                        file,
                        mark.line(),
                        "",
                        "a second YAML document (after `---` or `...`): a config file holds one",
                    ));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Diag::new(
                        file,
                        mark.line(),
                        "",
                        format!("nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// YAML 1.1's merge key (`<<: *base`) is not YAML 1.2; marked-yaml reads it as a key named
/// `<<`. Say so instead of calling it an unknown key.
fn no_merge_keys(file: &Path, node: &Node) -> Result<(), Diag> {
    match node {
        Node::Mapping(m) => {
            for (k, v) in m.iter() {
                if k.as_str() == "<<" && k.may_coerce() {
                    return Err(Diag::new(
                        file,
                        k.span().start().map(|m| m.line()).unwrap_or(0),
                        "<<",
                        "YAML merge keys (`<<`) are not supported: write the keys out",
                    ));
                }
                no_merge_keys(file, v)?;
            }
            Ok(())
        }
        Node::Sequence(s) => s.iter().try_for_each(|v| no_merge_keys(file, v)),
        Node::Scalar(_) => Ok(()),
    }
}

fn load_error(file: &Path, e: LoadError) -> Diag {
    let (line, key, msg) = match &e {
        LoadError::TopLevelMustBeMapping(m) => {
            (m.line(), "", "the top level must be a mapping".to_string())
        }
        LoadError::TopLevelMustBeSequence(m) => {
            (m.line(), "", "the top level must be a sequence".to_string())
        }
        LoadError::UnexpectedAnchor(m) => (
            m.line(),
            "",
            "YAML anchors and aliases are not supported".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => (
            m.line(),
            "",
            "mapping keys must be plain strings".to_string(),
        ),
        LoadError::UnexpectedTag(m) => (
            m.line(),
            "",
            "YAML tags (!tag) are not supported".to_string(),
        ),
        LoadError::ScanError(m, s) => (m.line(), "", format!("YAML syntax error: {}", s.info())),
        LoadError::DuplicateKey(inner) => {
            let line = inner.key.span().start().map(|m| m.line()).unwrap_or(0);
            return Diag::new(file, line, inner.key.as_str(), "duplicate key");
        }
    };
    Diag::new(file, line, key, msg)
}

/// The line a node starts on (1-based; 0 when unknown).
pub fn line(node: &Node) -> usize {
    node.span().start().map(|m| m.line()).unwrap_or(0)
}

/// Deserialize a node into a typed struct; unknown fields and type errors become a Diag at
/// the offending line. `what` names the thing for the message ("host validator-1").
pub fn typed<T: DeserializeOwned>(file: &Path, node: &Node, what: &str) -> Result<T, Diag> {
    let node = without_nulls(node);
    marked_yaml::from_node::<T>(&node).map_err(|e| {
        let line = e
            .start_mark()
            .map(|m| m.line())
            .unwrap_or_else(|| line(&node));
        let path = e.path().unwrap_or("").trim_start_matches('.').to_string();
        let msg = describe(&e.into_inner());
        let key = if path.is_empty() || path == "?" {
            what.to_string()
        } else {
            format!("{what}.{path}")
        };
        Diag::new(file, line, key, msg)
    })
}

fn describe(e: &marked_yaml::spanned_serde::Error) -> String {
    use marked_yaml::spanned_serde::Error as E;
    match e {
        E::NotBoolean(_) => "expected true or false".into(),
        E::IntegerParseFailure(p, _) => format!("expected an integer ({p})"),
        E::FloatParseFailure(p, _) => format!("expected a number ({p})"),
        E::UnknownFieldError(f, expected, _) => {
            format!(
                "unknown key `{f}` (expected one of: {})",
                expected.join(", ")
            )
        }
        E::Other(m, _) => m.clone(),
    }
}

/// True for a plain `null`, `~` or empty scalar.
pub fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

/// marked-yaml maps `key: null` to `Some("null")`; drop null entries so `Option`s become `None`.
fn without_nulls(node: &Node) -> Node {
    match node {
        Node::Mapping(m) => {
            let mut out = m.clone();
            out.retain(|_, v| !is_null(v));
            for (_, v) in out.iter_mut() {
                *v = without_nulls(v);
            }
            Node::Mapping(out)
        }
        Node::Sequence(s) => {
            let mut out = s.clone();
            for v in out.iter_mut() {
                *v = without_nulls(v);
            }
            Node::Sequence(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> Diag {
        parse(Path::new("f.yaml"), text).unwrap_err()
    }

    #[test]
    fn nesting_is_bounded_before_the_recursive_load() {
        let ok = format!(
            "a: {}1{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(Path::new("f.yaml"), &ok).is_ok());
        let deep = format!("a:\n  {}x\n", "- ".repeat(MAX_DEPTH + 1));
        assert!(err(&deep).message.contains("nested more than"));
        let d = err(&format!("{}x\n", "? ".repeat(10_000)));
        assert_eq!(d.line, 1);
    }

    #[test]
    fn one_document_no_merge_keys_bom_skipped() {
        let d = err("a: 1\n---\nb: 2\n");
        assert_eq!(
            (d.line, d.message.contains("second YAML document")),
            (2, true)
        );
        let d = err("a:\n  b: 1\n  <<: {c: 1}\n");
        assert_eq!((d.line, d.key.as_str()), (3, "<<"));
        // Quoted, `<<` is an ordinary key.
        assert!(parse(Path::new("f"), "a:\n  \"<<\": 1\n").is_ok());
        let n = parse(Path::new("f"), "\u{feff}a: 1\n").unwrap();
        assert!(n.as_mapping().unwrap().get_node("a").is_some());
        assert!(parse(Path::new("f"), "---\na: 1\n...\n").is_ok());
    }

    #[test]
    fn duplicate_keys_anchors_and_tags_are_errors() {
        assert_eq!(err("a: 1\na: 2\n").line, 2);
        assert!(err("a: &x 1\nb: *x\n").message.contains("anchors"));
        assert!(err("a: !!int 1\n").message.contains("tags"));
        assert!(err("- 1\n").message.contains("mapping"));
    }
}
