//! Pure formatters: the plan as text (coloured on a terminal), markdown or JSON (stable
//! schema, see README); the apply summary; the status table. Secrets are redacted by the one
//! output sink (cli::output) that prints all of it, with `redact` below.

pub mod apply;
pub mod events;
pub mod resources;
pub mod status;

use crate::model::{Action, Change, NodePlan};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Replace every secret value by `<redacted>`: as it is, and as JSON and Rust's `{:?}` escape
/// it. A value with a quote, a backslash or a control character is printed escaped in JSON
/// output and in log fields, where the value itself would not match.
pub fn redact(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_string();
    for sec in secrets.iter().filter(|s| s.len() >= 3) {
        let json = serde_json::to_string(sec).unwrap_or_default();
        let debug = format!("{sec:?}");
        for form in [
            sec.as_str(),
            unquote(&json).unwrap_or(sec),
            unquote(&debug).unwrap_or(sec),
        ] {
            if out.contains(form) {
                out = out.replace(form, "<redacted>");
            }
        }
    }
    out
}

fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('"')?.strip_suffix('"')
}

#[derive(
    Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl Counts {
    pub fn of(p: &NodePlan) -> Counts {
        Counts {
            add: p.count(Action::Add),
            change: p.count(Action::Change),
            remove: p.count(Action::Remove),
        }
    }
    pub fn total(&self) -> usize {
        self.add + self.change + self.remove
    }
}

/// One node in the machine-readable plan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeReport {
    pub node: String,
    pub address: String,
    /// `planned` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub summary: Counts,
    /// Changes caused by a hand edit on the node / by the repo moving (both count in each).
    pub drifted: usize,
    pub pending: usize,
    /// The node's record of the last apply; None: never applied by strata (or unreachable).
    pub last_applied: Option<LastApplied>,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
    pub handlers: Vec<crate::model::Handler>,
    /// blake3 of the live state the plan was computed from, and of the desired state.
    pub live_fingerprint: Option<String>,
    pub desired_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct LastApplied {
    pub applied_at: u64,
    pub applied_by: String,
    pub commit: Option<String>,
    pub revision: String,
    /// Set when `strata rollback` put this revision back: the revision it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<String>,
    /// The configuration the node was last applied with differs from the repo's now.
    pub repo_moved: bool,
}

impl LastApplied {
    pub fn from_record(r: &crate::model::Record, desired_fingerprint: &str) -> LastApplied {
        LastApplied {
            applied_at: r.applied_at,
            applied_by: r.applied_by.clone(),
            commit: r.commit.clone(),
            revision: r.revision.clone(),
            rolled_back_from: r.rolled_back_from.clone(),
            repo_moved: r.desired_fingerprint != desired_fingerprint,
        }
    }

    pub fn describe(&self) -> String {
        let commit = self
            .commit
            .as_deref()
            .map(|c| format!(" at commit {}", short_commit(c)))
            .unwrap_or_default();
        match &self.rolled_back_from {
            Some(from) => format!(
                "rolled back to revision {} (from {from}) {} by {}{commit}",
                self.revision,
                utc(self.applied_at),
                self.applied_by
            ),
            None => format!(
                "last applied {} by {}{commit}",
                utc(self.applied_at),
                self.applied_by
            ),
        }
    }
}

/// `revision 1764... (apply of commit 3f2a9c1d0e 2026-11-24 16:00 UTC by ops@laptop)`.
pub fn revision_line(h: &crate::model::Revision) -> String {
    format!(
        "revision {} ({}{} {} by {})",
        h.revision,
        h.kind,
        h.commit
            .as_deref()
            .map(|c| format!(" of commit {}", short_commit(c)))
            .unwrap_or_default(),
        utc(h.applied_at),
        h.applied_by
    )
}

/// `a, b, c` of anything printable.
fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn short_commit(c: &str) -> String {
    let (hash, dirty) = c
        .split_once('-')
        .map(|(h, d)| (h, format!("-{d}")))
        .unwrap_or((c, String::new()));
    format!("{}{dirty}", &hash[..hash.len().min(10)])
}

/// `2026-11-24 16:05 UTC` from unix seconds.
pub fn utc(secs: u64) -> String {
    let (y, m, d, hh, mm, _) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// RFC 3339 in UTC (`2026-11-24T16:00:44Z`), for times a machine or a log reader parses.
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// RFC 3339 with milliseconds, from unix milliseconds (log lines).
pub fn rfc3339_ms(ms: u64) -> String {
    let s = rfc3339(ms / 1000);
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms % 1000)
}

/// (year, month, day, hour, minute, second) from unix seconds (civil-from-days, no tz data).
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanReport {
    pub format_version: u32,
    pub nodes: Vec<NodeReport>,
    pub summary: FleetSummary,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FleetSummary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub drifted: usize,
    pub pending: usize,
    pub nodes: usize,
    pub nodes_with_changes: usize,
    pub failed: usize,
    /// Facts the operator must act on (a key file to place by hand), over all nodes.
    #[serde(default)]
    pub warnings: usize,
}

impl PlanReport {
    pub fn new(nodes: Vec<NodeReport>) -> PlanReport {
        let mut s = FleetSummary {
            nodes: nodes.len(),
            ..Default::default()
        };
        for n in &nodes {
            s.add += n.summary.add;
            s.change += n.summary.change;
            s.remove += n.summary.remove;
            s.drifted += n.drifted;
            s.pending += n.pending;
            if n.summary.total() > 0 {
                s.nodes_with_changes += 1;
            }
            if n.status == "failed" {
                s.failed += 1;
            }
            s.warnings += n.warnings.len();
        }
        PlanReport {
            format_version: 1,
            nodes,
            summary: s,
        }
    }

    pub fn has_changes(&self) -> bool {
        self.summary.add + self.summary.change + self.summary.remove > 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan serialises")
    }
}

/// ANSI colours, only on a terminal and without NO_COLOR.
#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
    /// Print new files in full (`--diff full`); by default a new file is one line.
    pub full_diff: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

fn action_colour(st: Style, a: Action, s: &str) -> String {
    match a {
        Action::Add => st.green(s),
        Action::Change => st.yellow(s),
        Action::Remove => st.red(s),
    }
}

pub fn summary_line(name: &str, c: Counts) -> String {
    format!(
        "{name}: {} to add, {} to change, {} to remove",
        c.add, c.change, c.remove
    )
}

/// How many lines of a change's diff a short plan shows.
pub const SHORT_DIFF_LINES: usize = 12;

/// The human plan.
pub fn text(report: &PlanReport, st: Style) -> String {
    let mut o = String::new();
    for n in &report.nodes {
        let _ = writeln!(o, "{}", st.bold(&format!("{} ({})", n.node, n.address)));
        if n.error.is_none() {
            let applied = match &n.last_applied {
                Some(l) => l.describe(),
                None => "never applied by strata".to_string(),
            };
            let _ = writeln!(o, "  {}", st.dim(&applied));
        }
        if let Some(e) = &n.error {
            let _ = writeln!(o, "  {} {e}", st.red("error:"));
            let _ = writeln!(o, "{}: failed\n", n.node);
            continue;
        }
        if n.changes.is_empty() {
            let _ = writeln!(o, "  no changes: the node matches the configuration");
        }
        for c in &n.changes {
            let new_file = c.action == Action::Add && c.id.file().is_some();
            let head = format!("  {} {}", c.action.sigil(), c.id);
            let _ = write!(o, "{}", action_colour(st, c.action, &head));
            if c.cause != crate::model::Cause::Unrecorded {
                let _ = write!(o, " {}", st.bold(&format!("[{}]", c.cause.label())));
            }
            if !c.details.is_empty() {
                let _ = write!(o, "  {}", c.details.join("; "));
            }
            if !c.handlers.is_empty() {
                let _ = write!(o, "  {}", st.dim(&format!("-> {}", join(&c.handlers))));
            }
            let _ = writeln!(o);
            if let Some(d) = c.diff.as_ref().filter(|_| st.full_diff || !new_file) {
                // Short mode keeps a plan readable: a long diff (a package's default config
                // being replaced) shows its start and says how much more there is.
                let all: Vec<&str> = d.lines().collect();
                let shown = if st.full_diff {
                    all.len()
                } else {
                    all.len().min(SHORT_DIFF_LINES)
                };
                for line in &all[..shown] {
                    let line = *line;
                    let painted = if line.starts_with("+++") || line.starts_with("---") {
                        st.bold(line)
                    } else if line.starts_with('+') {
                        st.green(line)
                    } else if line.starts_with('-') {
                        st.red(line)
                    } else {
                        line.to_string()
                    };
                    let _ = writeln!(o, "      {painted}");
                }
                if shown < all.len() {
                    let _ = writeln!(
                        o,
                        "      {}",
                        st.dim(&format!(
                            "... {} more lines of diff (--diff full shows them)",
                            all.len() - shown
                        ))
                    );
                }
            }
        }
        if !n.handlers.is_empty() {
            let _ = writeln!(o, "  handlers: {}", join(&n.handlers));
        }
        let cause = if n.last_applied.is_some() && n.summary.total() > 0 {
            format!(" ({} drifted, {} pending)", n.drifted, n.pending)
        } else {
            String::new()
        };
        let _ = writeln!(o, "{}{cause}\n", summary_line(&n.node, n.summary));
    }
    // What strata will not do but the operator must: once, with the nodes it concerns.
    let mut needs: Vec<(&str, Vec<&str>)> = Vec::new();
    for n in &report.nodes {
        for w in &n.warnings {
            match needs.iter_mut().find(|(m, _)| m == w) {
                Some((_, nodes)) => nodes.push(&n.node),
                None => needs.push((w, vec![&n.node])),
            }
        }
    }
    if !needs.is_empty() {
        let _ = writeln!(o, "{}", st.yellow("Needs you (strata will not do it):"));
        for (w, nodes) in needs {
            let _ = writeln!(o, "  {} {}: {w}", st.yellow("!"), nodes.join(", "));
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "{}", st.bold(&fleet_line(&report.summary)));
    o
}

/// The plan's last line, as a sentence.
pub fn fleet_line(s: &FleetSummary) -> String {
    let nodes = |n: usize| format!("{n} node{}", if n == 1 { "" } else { "s" });
    if s.add + s.change + s.remove == 0 {
        return match s.failed {
            0 => format!("Plan: no changes on {}.", nodes(s.nodes)),
            f => format!(
                "Plan: no changes on {} of {}; {} could not be planned.",
                nodes(s.nodes - f),
                s.nodes,
                nodes(f)
            ),
        };
    }
    format!(
        "Plan: {} to add, {} to change, {} to remove, on {} of {} ({} failed; {} drifted, {} pending).",
        s.add,
        s.change,
        s.remove,
        s.nodes_with_changes,
        nodes(s.nodes),
        s.failed,
        s.drifted,
        s.pending
    )
}

/// The plan as GitHub-flavoured markdown (a CI job summary or PR comment): a summary table,
/// then each node's changes in a collapsible block. Secrets redacted like everything else.
pub fn markdown(report: &PlanReport) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let _ = writeln!(o, "### strata plan: {} to add, {} to change, {} to remove ({} drifted, {} pending, {} failed)\n", s.add, s.change, s.remove, s.drifted, s.pending, s.failed);
    let _ = writeln!(
        o,
        "| node | status | add | change | remove | drifted | pending | last applied |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---|");
    for n in &report.nodes {
        let status = match (&n.error, n.summary.total()) {
            (Some(_), _) => "failed",
            (None, 0) => "no changes",
            _ => "changes",
        };
        let applied = n
            .last_applied
            .as_ref()
            .map(|l| l.describe())
            .unwrap_or_else(|| "never".into());
        let _ = writeln!(
            o,
            "| {} | {status} | {} | {} | {} | {} | {} | {} |",
            n.node,
            n.summary.add,
            n.summary.change,
            n.summary.remove,
            n.drifted,
            n.pending,
            applied.replace('|', "/")
        );
    }
    for n in &report.nodes {
        if n.error.is_none() && n.changes.is_empty() && n.warnings.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\n<details><summary><b>{}</b>: {}</summary>\n",
            n.node,
            summary_line(&n.node, n.summary)
        );
        if let Some(e) = &n.error {
            let _ = writeln!(o, "**error:** `{}`\n", e.replace('`', "'"));
        }
        if !n.changes.is_empty() {
            let _ = writeln!(
                o,
                "| | resource | cause | details | handlers |\n|---|---|---|---|---|"
            );
            for c in &n.changes {
                let _ = writeln!(
                    o,
                    "| `{}` | `{}` | {} | {} | {} |",
                    c.action.sigil(),
                    c.id,
                    c.cause.label(),
                    c.details.join("; ").replace('|', "/"),
                    join(&c.handlers)
                );
            }
            let diffs: Vec<&Change> = n.changes.iter().filter(|c| c.diff.is_some()).collect();
            for c in diffs {
                let _ = writeln!(
                    o,
                    "\n```diff\n{}```",
                    c.diff.as_deref().unwrap_or("").replace("```", "'''")
                );
            }
        }
        for w in &n.warnings {
            let _ = writeln!(o, "\n> :warning: {w}");
        }
        let _ = writeln!(o, "\n</details>");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_occurrence() {
        let s = redact("token=abc123 again abc123", &["abc123".into()]);
        assert_eq!(s, "token=<redacted> again <redacted>");
    }

    #[test]
    fn redaction_catches_a_secret_escaped_by_json_or_debug() {
        let sec = "pa\"ss\\wo\nrd\u{1}".to_string();
        let json = serde_json::json!({ "diff": format!("+token: {sec}") }).to_string();
        assert!(!json.contains(&sec), "the JSON form differs: {json}");
        assert_eq!(
            redact(&json, &[sec.clone()]),
            r#"{"diff":"+token: <redacted>"}"#
        );
        let debug = format!("said={:?}", format!("x {sec} y"));
        assert_eq!(redact(&debug, &[sec.clone()]), r#"said="x <redacted> y""#);
        assert_eq!(redact(&format!("raw {sec}"), &[sec]), "raw <redacted>");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        // Checked against `date -u -d @1795536044`.
        assert_eq!(utc(1795536044), "2026-11-24 16:00 UTC");
        assert_eq!(rfc3339(1795536044), "2026-11-24T16:00:44Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951782400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn a_short_plan_cuts_long_diffs_and_keeps_new_files_to_one_line() {
        use crate::model::{Change, ChangeId, NodePlan};
        let change = |action, id: &str, diff_lines: usize| Change {
            id: ChangeId::parse(id).unwrap(),
            action,
            details: vec!["0644 root:root, 40 lines".into()],
            diff: Some((0..diff_lines).map(|i| format!("+line {i}\n")).collect()),
            secret: false,
            handlers: vec![],
            ops: vec![],
            cause: Default::default(),
            restore_from: None,
        };
        let plan = NodePlan {
            changes: vec![
                change(Action::Add, "file:/etc/new", 40),
                change(Action::Change, "file:/etc/long", 40),
            ],
            warnings: vec!["key_file:/k is missing".into()],
            refusals: vec![],
        };
        let n = NodeReport {
            node: "n-1".into(),
            address: "127.0.0.1".into(),
            status: "planned".into(),
            error: None,
            summary: Counts::of(&plan),
            drifted: 0,
            pending: 0,
            last_applied: None,
            changes: plan.changes.clone(),
            warnings: plan.warnings.clone(),
            handlers: vec![],
            live_fingerprint: None,
            desired_fingerprint: String::new(),
        };
        let r = PlanReport::new(vec![
            n.clone(),
            NodeReport {
                node: "n-2".into(),
                ..n
            },
        ]);
        let short = text(
            &r,
            Style {
                color: false,
                full_diff: false,
            },
        );
        // The new file: its line only; the changed file: 12 lines of diff and a note.
        assert_eq!(short.matches("+line 0").count(), 2, "{short}");
        assert!(!short.contains("+line 12"), "{short}");
        assert_eq!(
            short.matches("... 28 more lines of diff").count(),
            2,
            "{short}"
        );
        // The warning once, naming both nodes.
        assert_eq!(
            short.matches("key_file:/k is missing").count(),
            1,
            "{short}"
        );
        assert!(
            short.contains("n-1, n-2: key_file:/k is missing"),
            "{short}"
        );
        assert_eq!(r.summary.warnings, 2);
        let full = text(
            &r,
            Style {
                color: false,
                full_diff: true,
            },
        );
        assert_eq!(full.matches("+line 39").count(), 4, "{full}");
    }

    #[test]
    fn the_fleet_line_reads_as_a_sentence() {
        let s = |add, nodes, failed| FleetSummary {
            add,
            nodes,
            failed,
            nodes_with_changes: if add > 0 { 1 } else { 0 },
            ..Default::default()
        };
        assert_eq!(fleet_line(&s(0, 3, 0)), "Plan: no changes on 3 nodes.");
        assert_eq!(fleet_line(&s(0, 1, 0)), "Plan: no changes on 1 node.");
        assert_eq!(
            fleet_line(&s(0, 3, 1)),
            "Plan: no changes on 2 nodes of 3; 1 node could not be planned."
        );
        assert_eq!(
            fleet_line(&s(2, 3, 0)),
            "Plan: 2 to add, 0 to change, 0 to remove, on 1 of 3 nodes (0 failed; 0 drifted, 0 pending)."
        );
    }

    #[test]
    fn summary_line_matches_the_documented_shape() {
        assert_eq!(
            summary_line(
                "validator-2",
                Counts {
                    add: 2,
                    change: 1,
                    remove: 0
                }
            ),
            "validator-2: 2 to add, 1 to change, 0 to remove"
        );
    }
}

/// The JSON Schema of `plan --format json` (and of the file `plan -o` writes), generated from
/// the same types that print it; checked in as schema/plan.schema.json.
pub fn plan_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(PlanReport)).expect("schema serialises")
        + "\n"
}

/// The JSON Schema of `status --format json` (schema/status.schema.json).
pub fn status_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(status::StatusReport))
        .expect("schema serialises")
        + "\n"
}
