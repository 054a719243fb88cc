//! One error type that knows its exit code; only the top level (cli::main) prints it.

use std::fmt;
use std::path::PathBuf;

/// Exit codes (Terraform's convention for --detailed-exitcode).
pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_CHANGES: i32 = 2;
/// Stopped by Ctrl-C (128 + SIGINT, what a shell reports for an interrupted program).
pub const EXIT_INTERRUPTED: i32 = 130;

/// A problem in the user's input, located at file:line, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diag {
    pub file: PathBuf,
    pub line: usize,
    /// Dotted key or resource path the problem is about ("validator.p2p_port").
    pub key: String,
    pub message: String,
}

impl Diag {
    pub fn new(
        file: impl Into<PathBuf>,
        line: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diag {
            file: file.into(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{file}: {}", self.message),
            (0, false) => write!(f, "{file}: {}: {}", self.key, self.message),
            (l, true) => write!(f, "{file}:{l}: {}", self.message),
            (l, false) => write!(f, "{file}:{l}: {}: {}", self.key, self.message),
        }
    }
}

/// Several input problems, reported together.
#[derive(Debug, Default)]
pub struct Diags(pub Vec<Diag>);

impl fmt::Display for Diags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diags {}
impl std::error::Error for Diag {}

/// strata's one error type. Every error exits 1 (an interrupted rollout 130); only `cli::main`
/// prints it.
#[derive(Debug)]
pub enum Error {
    /// Problems in the user's input, each at file:line (all of them, not the first).
    Config(Diags),
    /// The request cannot be carried out as asked (unknown node, conflicting flags, ...).
    Usage(String),
    /// One node could not be reached or prepared (before any change was made to it).
    Node { node: String, message: String },
    /// A run ended with failed nodes; the summary printed before says which and why.
    Failed(String),
    /// The operator declined at the prompt, or there was no terminal to ask on.
    Declined(String),
    /// A file or program on the operator's machine.
    Local(String),
    /// Several problems found at once, one `error: ...` line each, then a verdict line.
    Problems(String),
    /// Ctrl-C stopped a rollout between nodes; the summary printed before says what was done.
    Interrupted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted(_) => EXIT_INTERRUPTED,
            _ => EXIT_ERROR,
        }
    }

    pub fn node(node: impl Into<String>, message: impl fmt::Display) -> Error {
        Error::Node {
            node: node.into(),
            message: message.to_string(),
        }
    }

    pub fn local(what: impl fmt::Display, e: impl fmt::Display) -> Error {
        Error::Local(format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(d) => write!(f, "{d}"),
            Error::Usage(m) | Error::Failed(m) | Error::Declined(m) | Error::Local(m) => {
                write!(f, "error: {m}")
            }
            Error::Node { node, message } => write!(f, "error: {node}: {message}"),
            Error::Problems(text) => write!(f, "{text}"),
            Error::Interrupted(m) => write!(f, "interrupted: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Diags> for Error {
    fn from(d: Diags) -> Error {
        Error::Config(d)
    }
}

impl From<Vec<Diag>> for Error {
    fn from(d: Vec<Diag>) -> Error {
        Error::Config(Diags(d))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Local(e.to_string())
    }
}

impl From<fmt::Error> for Error {
    fn from(e: fmt::Error) -> Error {
        Error::Local(e.to_string())
    }
}
