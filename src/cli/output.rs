//! The one output sink: everything strata prints goes through here, on its way redacted of
//! every secret value the config holds. It renders the engine's events for a terminal
//! (colour, a live progress line) or for a log (plain lines), and asks the operator's
//! questions.

use crate::engine::events::{Event, Ui};
use crate::error::{Error, Result};
use crate::report::{self, redact, Style};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, RwLock};

pub struct Output {
    secrets: RwLock<Vec<String>>,
    /// Colour on standard output.
    color: bool,
    /// Standard error is a terminal: show live progress there.
    err_tty: bool,
    /// A progress line is on screen (to be cleared before other output).
    progress: Mutex<bool>,
    /// `--diff full`: new files printed in full.
    full_diff: RwLock<bool>,
    /// `-v` count: the log's step lines replace the plain step lines in a log.
    verbose: AtomicU8,
    /// `--log-format json`: every line on standard error is a JSON object.
    json_log: AtomicBool,
}

/// no-color.org: colour is off when NO_COLOR is set to a non-empty value.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Output {
    pub fn new(color: ColorChoice) -> Output {
        let tty = std::io::stdout().is_terminal();
        Output {
            secrets: RwLock::new(Vec::new()),
            color: match color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => tty && !no_color(),
            },
            err_tty: std::io::stderr().is_terminal(),
            progress: Mutex::new(false),
            full_diff: RwLock::new(false),
            verbose: AtomicU8::new(0),
            json_log: AtomicBool::new(false),
        }
    }

    /// `-v` and `--log-format`: JSON lines on standard error have no terminal progress line.
    pub fn set_log(&self, verbose: u8, json: bool) {
        self.verbose.store(verbose, Ordering::Relaxed);
        self.json_log.store(json, Ordering::Relaxed);
    }

    fn json_log(&self) -> bool {
        self.json_log.load(Ordering::Relaxed)
    }

    /// A formatted log line (`cli::log`), redacted like everything else, on standard error.
    pub fn log(&self, line: &str) {
        self.clear_progress();
        raw_err(&self.redact(&format!("{line}\n")));
    }

    /// `--diff full`: print new files in full in plans.
    pub fn set_full_diff(&self, full: bool) {
        *self.full_diff.write().expect("not poisoned") = full;
    }

    /// A node's step: on a terminal, one live line (replaced by the next); in a log, a
    /// timestamped line per step, so a long serial rollout shows where it is.
    fn step(&self, node: &str, step: &str) {
        if self.verbose.load(Ordering::Relaxed) > 0 && (!self.err_tty || self.json_log()) {
            // The log's own line for the step (with node and step fields) stands for it.
            return;
        }
        if self.json_log() {
            // Without -v, a step is still one structured line: node, step, "start".
            let f = crate::cli::log::Fields {
                message: "start".into(),
                node: Some(node.to_string()),
                step: Some(step.to_string()),
                ..Default::default()
            };
            self.log(&crate::cli::log::json_line(
                crate::cli::log::now_ms(),
                "INFO",
                &f,
            ));
            return;
        }
        if self.err_tty {
            let mut p = self.progress.lock().expect("not poisoned");
            let line = self.redact(&format!("{node}: {step} ..."));
            raw_err(&format!("\r\x1b[2K{line}"));
            *p = true;
        } else {
            let now = crate::report::rfc3339(crate::engine::local::now());
            self.err(&format!("{now} {node}: {step}\n"));
        }
    }

    /// The secret values to keep out of everything printed from now on.
    pub fn set_secrets(&self, secrets: &[String]) {
        *self.secrets.write().expect("not poisoned") = secrets.to_vec();
    }

    pub fn redact(&self, s: &str) -> String {
        redact(s, &self.secrets.read().expect("not poisoned"))
    }

    pub fn style(&self) -> Style {
        Style {
            color: self.color,
            full_diff: *self.full_diff.read().expect("not poisoned"),
        }
    }

    fn clear_progress(&self) {
        let mut p = self.progress.lock().expect("not poisoned");
        if *p {
            raw_err("\r\x1b[2K");
            *p = false;
        }
    }

    /// Standard output.
    pub fn out(&self, s: &str) {
        self.clear_progress();
        let mut o = std::io::stdout().lock();
        let r = o
            .write_all(self.redact(s).as_bytes())
            .and_then(|_| o.flush());
        if r.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            // The reader went away (`strata plan | head`): end as a Unix tool does, unless
            // nodes are being changed, which always finish (nothing more is printed).
            crate::interrupt::broken_pipe();
        }
    }

    /// Standard error.
    pub fn err(&self, s: &str) {
        self.err_at("INFO", s)
    }

    /// Standard error, at a log level: with `--log-format json`, each line becomes a JSON
    /// object (`{"timestamp", "level", "message"}`) so the stream stays machine-readable.
    fn err_at(&self, level: &str, s: &str) {
        self.clear_progress();
        if self.json_log() {
            let lines: String = s
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| crate::cli::log::json_message(level, l) + "\n")
                .collect();
            raw_err(&self.redact(&lines));
        } else {
            raw_err(&self.redact(s));
        }
    }

    /// An error, the way the top level reports it.
    pub fn error(&self, e: &Error) {
        self.err_at("ERROR", &format!("{e}\n"));
    }
}

/// Standard error, ignoring a reader that went away (never a panic, as `eprint!` would).
fn raw_err(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes()).and_then(|_| e.flush());
}

/// `--color`: auto (a terminal, and NO_COLOR unset or empty), always, never.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl Ui for Output {
    fn event(&self, e: Event) {
        match e {
            Event::Gathered { done, total, node } => {
                if self.err_tty && !self.json_log() {
                    let mut p = self.progress.lock().expect("not poisoned");
                    if done < total {
                        raw_err(&format!(
                            "\r\x1b[2Kgathering live state: {done}/{total} nodes ({node} done)"
                        ));
                        *p = true;
                    } else if *p {
                        raw_err("\r\x1b[2K");
                        *p = false;
                    }
                }
            }
            Event::Plan(report) => self.out(&report::text(&report, self.style())),
            Event::NoChanges => self.out("No changes. The fleet matches the configuration.\n"),
            Event::Step { node, step } => self.step(&node, &step),
            Event::NodeDone { .. } => {}
            Event::Confirming { node, window_secs } => self.err(&format!(
                "{node}: confirming over a new SSH connection (the node restores itself in {window_secs}s otherwise)\n"
            )),
            Event::Lost { node, why } => self.err(&format!(
                "{node}: LOST: no new SSH connection succeeded ({why}); waiting for the node to restore itself\n"
            )),
            Event::Bootstrap { step, message } => {
                self.err(&format!("bootstrap [{step}] {message}\n"))
            }
            Event::Summary { results, seconds } => {
                self.out(&report::apply::summary(&results, seconds, self.style()))
            }
            Event::Say(line) => self.out(&format!("{line}\n")),
            Event::Warn(line) => self.err_at("WARN", &format!("{line}\n")),
        }
    }

    fn confirm(&self, question: &str) -> Result<bool> {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Declined(
                "refusing to apply without confirmation: no terminal to ask on (use --yes)".into(),
            ));
        }
        // The question itself stays plain text: a person is reading it.
        self.clear_progress();
        raw_err(&self.redact(&format!("{question}: ")));
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::local("reading the answer", e))?;
        Ok(line.trim() == "yes")
    }
}
