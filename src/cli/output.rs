//! The one output sink: everything strata prints goes through here, on its way redacted of
//! every secret value the config holds. It renders the engine's events for a terminal
//! (colour, a live progress line), for a log (plain timestamped lines) or for a machine
//! (`--format json`: one JSON object per event on standard output), and asks the operator's
//! questions.

use crate::engine::events::{Event, Ui};
use crate::error::{Error, Result};
use crate::report::events::{self as ev, EventKind};
use crate::report::{self, redact, Style};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, RwLock};
use std::time::{Duration, Instant};

pub struct Output {
    secrets: Arc<RwLock<Vec<String>>>,
    /// Colour on standard output / on standard error.
    color: bool,
    err_color: bool,
    /// Standard error is a terminal: show live progress there.
    err_tty: bool,
    /// The live progress line and the nodes it shows (shared with the ticker that redraws it).
    progress: Arc<Mutex<Progress>>,
    ticker: Once,
    /// `--diff full`: new files printed in full in plans.
    full_diff: RwLock<bool>,
    /// `-v` count: the log's step lines replace the plain step lines in a log.
    verbose: AtomicU8,
    /// `--log-format json`: every line on standard error is a JSON object.
    json_log: AtomicBool,
    /// `--format json` of apply, rollback, bootstrap: events as JSON lines on standard output.
    json_events: AtomicBool,
    /// When the command started (every event line's `elapsed_ms`).
    started: Instant,
    /// The JSON stream's summary, held back so that it is the last line (`finish`).
    summary: Mutex<Option<ev::Summary>>,
}

/// What the progress line shows: every node in a step, with when it entered it.
#[derive(Default)]
struct Progress {
    /// A progress line is on screen (to be cleared before other output).
    shown: bool,
    /// Nodes in a step, in the order they started: (node, step, step entered).
    running: Vec<(String, String, Instant)>,
    /// When each node entered its first step (its elapsed time in events and on screen).
    node_start: HashMap<String, Instant>,
}

impl Progress {
    /// The line: `validator-1: changes 3s | validator-2: health check 1s`, cut to `width`.
    fn line(&self, now: Instant, width: usize) -> String {
        let parts: Vec<String> = self
            .running
            .iter()
            .map(|(node, step, at)| {
                format!("{node}: {step} {}s", now.duration_since(*at).as_secs())
            })
            .collect();
        cut(&parts.join(" | "), width)
    }

    /// Draw the line again (after a step, or each second from the ticker).
    fn redraw(&mut self, secrets: &RwLock<Vec<String>>) {
        if self.running.is_empty() {
            self.clear();
            return;
        }
        let line = self.line(Instant::now(), term_width());
        let line = redact(&line, &secrets.read().expect("not poisoned"));
        raw_err(&format!("\r\x1b[2K{line}"));
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            raw_err("\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// At most `width - 1` characters (a full-width line would wrap, and `\r` would then
/// redraw only its last row).
fn cut(s: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(10);
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 3).collect();
    t.push_str("...");
    t
}

/// The terminal's width (standard error), 80 if it cannot be read.
fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass, nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// no-color.org: colour is off when NO_COLOR is set to a non-empty value.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Output {
    pub fn new(color: ColorChoice) -> Output {
        let tty = std::io::stdout().is_terminal();
        let err_tty = std::io::stderr().is_terminal();
        let pick = |tty: bool| match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && !no_color(),
        };
        Output {
            secrets: Arc::new(RwLock::new(Vec::new())),
            color: pick(tty),
            err_color: pick(err_tty),
            err_tty,
            progress: Arc::new(Mutex::new(Progress::default())),
            ticker: Once::new(),
            full_diff: RwLock::new(false),
            verbose: AtomicU8::new(0),
            json_log: AtomicBool::new(false),
            json_events: AtomicBool::new(false),
            started: Instant::now(),
            summary: Mutex::new(None),
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

    /// `--format json` (apply, rollback, bootstrap): from now on every event is one JSON
    /// line on standard output, and nothing else is printed there.
    pub fn set_json_events(&self, on: bool) {
        self.json_events.store(on, Ordering::Relaxed);
    }

    fn json_events(&self) -> bool {
        self.json_events.load(Ordering::Relaxed)
    }

    /// The live progress line on a terminal (not with JSON on either stream).
    fn live(&self) -> bool {
        self.err_tty && !self.json_log() && !self.json_events()
    }

    /// The end of the command: with `--format json`, the held summary is the last line; a
    /// command that failed before any summary ends with an `error` line instead.
    pub fn finish(&self, error: Option<&Error>) {
        if !self.json_events() {
            return;
        }
        let held = self.summary.lock().expect("not poisoned").take();
        match (held, error) {
            (Some(summary), _) => self.emit(EventKind::Summary(summary)),
            (None, Some(e)) => {
                let text = e.to_string();
                let message = text.strip_prefix("error: ").unwrap_or(&text).to_string();
                self.emit(EventKind::Error { message })
            }
            (None, None) => {}
        }
    }

    /// One event line on standard output.
    fn emit(&self, kind: EventKind) {
        let line = ev::line(
            report::rfc3339_ms(crate::cli::log::now_ms()),
            self.started.elapsed().as_millis() as u64,
            kind,
        );
        self.out(&(line + "\n"));
    }

    /// A formatted log line (`cli::log`), redacted like everything else, on standard error.
    pub fn log(&self, line: &str) {
        let _p = self.clear_progress();
        raw_err(&self.redact(&format!("{line}\n")));
    }

    /// `--diff full`: print new files in full in plans.
    pub fn set_full_diff(&self, full: bool) {
        *self.full_diff.write().expect("not poisoned") = full;
    }

    /// A node's step: on a terminal, the live line of every node in a step (redrawn each
    /// second with their elapsed times); in a log, a timestamped line per step, so a long
    /// serial rollout shows where it is; with `--format json`, a `step` event.
    fn step(&self, node: &str, step: &str) {
        let node_ms = {
            let mut p = self.progress.lock().expect("not poisoned");
            let now = Instant::now();
            let first = *p.node_start.entry(node.to_string()).or_insert(now);
            match p.running.iter_mut().find(|(n, _, _)| n == node) {
                Some(r) => *r = (node.to_string(), step.to_string(), now),
                None => p.running.push((node.to_string(), step.to_string(), now)),
            }
            now.duration_since(first).as_millis() as u64
        };
        if self.json_events() {
            self.emit(EventKind::Step {
                node: node.to_string(),
                step: step.to_string(),
                node_elapsed_ms: node_ms,
            });
            return;
        }
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
            self.progress
                .lock()
                .expect("not poisoned")
                .redraw(&self.secrets);
            self.start_ticker();
        } else {
            let now = crate::report::rfc3339(crate::engine::local::now());
            self.err(&format!("{now} {node}: {step}\n"));
        }
    }

    /// A node's apply ended: off the progress line, and one line that stays (on a terminal,
    /// or timestamped in a log) so a serial rollout shows each node's end as it happens.
    fn node_done(&self, node: &str, result: crate::model::NodeResult) {
        let node_ms = {
            let mut p = self.progress.lock().expect("not poisoned");
            p.running.retain(|(n, _, _)| n != node);
            p.node_start
                .get(node)
                .map(|t| t.elapsed().as_millis() as u64)
        };
        if self.json_events() {
            self.emit(EventKind::NodeDone(ev::NodeDone {
                node: node.to_string(),
                node_elapsed_ms: node_ms,
                result,
            }));
            return;
        }
        if self.json_log() || (self.verbose.load(Ordering::Relaxed) > 0 && !self.err_tty) {
            // The log's `apply of the node ended` line says it.
            return;
        }
        let style = Style {
            color: self.err_color,
            full_diff: false,
        };
        let line = report::apply::node_line(node, &result, style);
        if self.err_tty {
            self.err(&format!("{line}\n"));
            self.progress
                .lock()
                .expect("not poisoned")
                .redraw(&self.secrets);
        } else {
            let now = crate::report::rfc3339(crate::engine::local::now());
            self.err(&format!("{now} {line}\n"));
        }
    }

    /// On a terminal, redraw the progress line each second: a step that takes minutes (a
    /// package install, a health gate) still shows its time going up.
    fn start_ticker(&self) {
        self.ticker.call_once(|| {
            let (progress, secrets) = (self.progress.clone(), self.secrets.clone());
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let mut p = progress.lock().expect("not poisoned");
                if !p.running.is_empty() {
                    p.redraw(&secrets);
                }
            });
        });
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

    /// Clear the progress line; the guard keeps the ticker from drawing it again until the
    /// caller's own output is written.
    fn clear_progress(&self) -> MutexGuard<'_, Progress> {
        let mut p = self.progress.lock().expect("not poisoned");
        p.clear();
        p
    }

    /// Standard output.
    pub fn out(&self, s: &str) {
        let _p = self.clear_progress();
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
        let _p = self.clear_progress();
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

/// `--format` of the commands that change nodes (apply, rollback, bootstrap).
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq, Default)]
pub enum EventFormat {
    /// For people: the plan, progress on standard error, the summary.
    #[default]
    Text,
    /// For machines: one JSON object per event on standard output, the summary last
    /// (`strata schema events`).
    Json,
}

impl Ui for Output {
    fn event(&self, e: Event) {
        if self.json_events() {
            return self.json_event(e);
        }
        match e {
            Event::Gathered { done, total, node } => {
                if self.live() {
                    let mut p = self.progress.lock().expect("not poisoned");
                    if done < total {
                        let line = self.redact(&format!(
                            "gathering live state: {done}/{total} nodes ({node} done)"
                        ));
                        raw_err(&format!("\r\x1b[2K{}", cut(&line, term_width())));
                        p.shown = true;
                    } else {
                        p.clear();
                    }
                }
            }
            Event::Plan(report) => self.out(&report::text(&report, self.style())),
            Event::NoChanges => self.out("No changes. The fleet matches the configuration.\n"),
            Event::Step { node, step } => self.step(&node, &step),
            Event::NodeDone { node, result } => self.node_done(&node, result),
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
        let p = self.clear_progress();
        raw_err(&self.redact(&format!("{question}: ")));
        drop(p);
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::local("reading the answer", e))?;
        Ok(line.trim() == "yes")
    }
}

impl Output {
    /// `--format json`: the event as one line on standard output (warnings on standard
    /// error too, for the person who redirected the stream to a file).
    fn json_event(&self, e: Event) {
        let kind = match e {
            Event::Gathered { done, total, node } => EventKind::Gathered { node, done, total },
            Event::Plan(plan) => EventKind::Plan { plan },
            Event::NoChanges => EventKind::NoChanges {},
            Event::Step { node, step } => return self.step(&node, &step),
            Event::NodeDone { node, result } => return self.node_done(&node, result),
            Event::Confirming { node, window_secs } => EventKind::Confirming { node, window_secs },
            Event::Lost { node, why } => EventKind::Lost { node, why },
            Event::Bootstrap { step, message } => EventKind::Bootstrap {
                step: step.to_string(),
                message,
            },
            Event::Summary { results, seconds } => {
                let nodes = {
                    let p = self.progress.lock().expect("not poisoned");
                    results
                        .into_iter()
                        .map(|(node, result)| ev::NodeDone {
                            node_elapsed_ms: p
                                .node_start
                                .get(&node)
                                .map(|t| t.elapsed().as_millis() as u64),
                            node,
                            result,
                        })
                        .collect()
                };
                *self.summary.lock().expect("not poisoned") =
                    Some(ev::Summary::new(nodes, seconds));
                return;
            }
            Event::Say(text) => EventKind::Message {
                level: ev::Level::Info,
                text: text.trim_end().to_string(),
            },
            Event::Warn(text) => {
                self.err_at("WARN", &format!("{text}\n"));
                EventKind::Message {
                    level: ev::Level::Warn,
                    text,
                }
            }
        };
        self.emit(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_every_running_node_and_fits_the_terminal() {
        let t0 = Instant::now();
        let p = Progress {
            shown: false,
            running: vec![
                ("validator-1".into(), "changes".into(), t0),
                ("validator-2".into(), "health check".into(), t0),
            ],
            node_start: HashMap::new(),
        };
        let later = t0 + Duration::from_millis(3_400);
        assert_eq!(
            p.line(later, 200),
            "validator-1: changes 3s | validator-2: health check 3s"
        );
        let cut = p.line(later, 30);
        assert_eq!(cut, "validator-1: changes 3s | ...");
        assert_eq!(cut.chars().count(), 29);
    }
}
