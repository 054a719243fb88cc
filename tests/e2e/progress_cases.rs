//! End-to-end: what an apply prints while it runs, on real lab nodes.
//! - `apply --format json` of two fresh nodes: every line of standard output is one JSON
//!   event that validates against schema/events.schema.json (python3 jsonschema), with each
//!   node's steps, its end, and the summary as the last line.
//! - On a terminal (a pseudo-terminal from util-linux `script`): the live progress line,
//!   read while strata still runs, shows the node's step and a time that goes up (a chrony
//!   restart made 3 s slow by a drop-in on the node).
//! - Without a terminal: timestamped lines, one per step and one at the node's end, no
//!   escape code anywhere, and their times are the real ones (the slow restart shows).

use crate::common::*;
use crate::plan_apply_cases::{canary_envs, expect_code, out};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![case_fresh(
        "progress::json_events_validate_terminal_shows_live_steps_log_has_timestamps",
        &["validator-1", "validator-2"],
        progress,
    )]
}

/// strata on the lab inventory, with the secrets its modules read.
fn st() -> Command {
    let mut c = st_env(Command::new(strata_bin()));
    c.arg("--repo")
        .arg(repo())
        .args(["--inventory", "inventory/lab.yaml"]);
    c
}

/// Every line valid against the events schema (python3 jsonschema), then parsed.
fn validate_lines(stdout: &str) -> Result<Vec<Value>> {
    let schema = repo().join("schema/events.schema.json");
    let mut check = Command::new("python3")
        .args([
            "-c",
            "import json,sys,jsonschema\n\
             s=json.load(open(sys.argv[1]))\n\
             n=0\n\
             for l in sys.stdin:\n    jsonschema.validate(json.loads(l), s); n+=1\n\
             print('valid', n)",
        ])
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("python3 (with jsonschema) is needed")?;
    check
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdout.as_bytes())?;
    let r = check.wait_with_output()?;
    let said = String::from_utf8_lossy(&r.stdout);
    ensure!(
        said.trim() == format!("valid {}", stdout.lines().count()),
        "not every line validates: {said}{}\n{stdout}",
        String::from_utf8_lossy(&r.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

fn progress() -> Result<()> {
    json_stream()?;
    // The handler of a chrony.conf change restarts chrony: 3 s slower from here on.
    let _slow = SlowChrony::install("validator-1")?;
    on_a_terminal()?;
    in_a_log()
}

fn json_stream() -> Result<()> {
    let o = st()
        .args([
            "apply",
            "--yes",
            "--format",
            "json",
            "validator-1",
            "validator-2",
        ])
        .output()?;
    expect_code(&o, 0, "apply --format json")?;
    let stdout = out(&o);
    let lines = validate_lines(&stdout)?;
    let kind = |v: &Value| v["event"].as_str().unwrap_or("").to_string();
    ensure!(lines.iter().all(|v| v["format_version"] == 1), "{stdout}");
    // The stream's own clock never goes back.
    let ms: Vec<u64> = lines
        .iter()
        .filter_map(|v| v["elapsed_ms"].as_u64())
        .collect();
    ensure!(
        ms.len() == lines.len() && ms.windows(2).all(|w| w[0] <= w[1]),
        "elapsed_ms: {ms:?}"
    );
    ensure!(
        lines.iter().filter(|v| kind(v) == "gathered").count() == 2,
        "{stdout}"
    );
    let plan = lines
        .iter()
        .find(|v| kind(v) == "plan")
        .context("no plan event")?;
    ensure!(plan["plan"]["summary"]["nodes_with_changes"] == 2, "{plan}");
    for node in ["validator-1", "validator-2"] {
        let steps: Vec<&Value> = lines
            .iter()
            .filter(|v| kind(v) == "step" && v["node"] == node)
            .collect();
        let names: Vec<&str> = steps.iter().filter_map(|v| v["step"].as_str()).collect();
        for want in ["taking the lock", "changes", "handlers", "health check"] {
            ensure!(names.contains(&want), "{node}: no `{want}` step: {names:?}");
        }
        let node_ms: Vec<u64> = steps
            .iter()
            .filter_map(|v| v["node_elapsed_ms"].as_u64())
            .collect();
        ensure!(
            node_ms.first() == Some(&0) && node_ms.windows(2).all(|w| w[0] <= w[1]),
            "{node}: node_elapsed_ms {node_ms:?}"
        );
        let done = lines
            .iter()
            .position(|v| kind(v) == "node_done" && v["node"] == node)
            .with_context(|| format!("{node}: no node_done\n{stdout}"))?;
        let d = &lines[done];
        ensure!(
            d["result"] == "applied"
                && d["changes"].as_u64().is_some_and(|c| c > 10)
                && d["node_elapsed_ms"].as_u64() >= node_ms.last().copied(),
            "{d}"
        );
        // Its steps all came before its end.
        let last_step = lines
            .iter()
            .rposition(|v| kind(v) == "step" && v["node"] == node)
            .unwrap_or(0);
        ensure!(last_step < done, "{node}: a step after node_done\n{stdout}");
    }
    // serial: 1 — validator-2 starts after validator-1 ended.
    let pos = |k: &str, n: &str| {
        lines
            .iter()
            .position(|v| kind(v) == k && v["node"] == n)
            .unwrap_or(usize::MAX)
    };
    ensure!(
        pos("node_done", "validator-1") < pos("step", "validator-2"),
        "{stdout}"
    );
    let last = lines.last().context("no lines")?;
    ensure!(
        kind(last) == "summary"
            && last["applied"] == 2
            && last["failed"] == 0
            && last["nodes"].as_array().is_some_and(|n| n.len() == 2),
        "the last line is not the summary: {last}"
    );
    ensure!(
        lines.iter().filter(|v| kind(v) == "summary").count() == 1,
        "{stdout}"
    );
    // Nothing else went to standard output, and standard error has no event on it.
    let stderr = String::from_utf8_lossy(&o.stderr);
    ensure!(!stderr.contains("\"event\""), "{stderr}");
    Ok(())
}

/// A systemd drop-in on the node that makes chrony's (re)start take 3 s more; removed on drop.
struct SlowChrony(&'static str);

const DROP_IN: &str = "/etc/systemd/system/chrony.service.d/zz-e2e-slow.conf";

impl SlowChrony {
    fn install(node: &'static str) -> Result<SlowChrony> {
        ssh_ok(
            node,
            "root",
            &format!(
                "mkdir -p {d} && printf '[Service]\\nExecStartPre=/bin/sleep 3\\n' > {DROP_IN} && systemctl daemon-reload",
                d = DROP_IN.rsplit_once('/').map(|x| x.0).unwrap_or("/tmp")
            ),
        )?;
        Ok(SlowChrony(node))
    }
}

impl Drop for SlowChrony {
    fn drop(&mut self) {
        let _ = ssh(
            self.0,
            "root",
            &format!("rm -f {DROP_IN} && systemctl daemon-reload"),
        );
    }
}

/// A hand edit of chrony.conf: the next apply has one change and one handler (the restart).
fn hand_edit(node: &str) -> Result<()> {
    ssh_ok(
        node,
        "root",
        "echo '# hand edit' >> /etc/chrony/chrony.conf",
    )?;
    Ok(())
}

fn on_a_terminal() -> Result<()> {
    let node = "validator-1";
    hand_edit(node)?;
    let dir = tempfile::tempdir()?;
    let typescript = dir.path().join("typescript");
    let cmd = format!(
        "{} --repo {} --inventory inventory/lab.yaml apply --yes {node}",
        strata_bin().display(),
        repo().display()
    );
    // -f: the typescript is flushed as output comes, so it can be read while strata runs.
    let mut child = st_env(Command::new("script"))
        .args(["-qfec", &cmd])
        .arg(&typescript)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("script (util-linux)")?;
    let started = Instant::now();
    let ticking = format!("\x1b[2K{node}: handlers 2s");
    let mut seen_live = None;
    loop {
        let so_far = std::fs::read(&typescript).unwrap_or_default();
        let so_far = String::from_utf8_lossy(&so_far);
        let running = child.try_wait()?.is_none();
        if running && seen_live.is_none() && so_far.contains(&ticking) {
            seen_live = Some(started.elapsed());
        }
        if !running {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("the apply on a terminal did not end in 120 s:\n{so_far}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait()?;
    let screen = String::from_utf8_lossy(&std::fs::read(&typescript)?).to_string();
    ensure!(
        status.success(),
        "apply on a terminal: {status}\n{screen:?}"
    );
    ensure!(
        seen_live.is_some(),
        "never saw `{ticking}` while the apply ran:\n{screen:?}"
    );
    // The line names the node, its step and the step's time, redrawn in place (\r, erase).
    for step in [
        "taking the lock 0s",
        "changes 0s",
        "handlers 0s",
        "handlers 1s",
        "handlers 2s",
        "health check 0s",
    ] {
        ensure!(
            screen.contains(&format!("\r\x1b[2K{node}: {step}")),
            "no live `{step}`:\n{screen:?}"
        );
    }
    // The node's end stays on screen; the summary comes after the line was erased.
    let end = screen
        .find(&format!(
            "{node}: applied 1 changes, ran restart chrony in "
        ))
        .with_context(|| format!("no end line:\n{screen:?}"))?;
    let summary = screen
        .find("Apply summary:")
        .with_context(|| format!("no summary:\n{screen:?}"))?;
    ensure!(end < summary, "{screen:?}");
    let last_draw = screen[..summary]
        .rfind(&format!("\x1b[2K{node}: "))
        .unwrap_or(0);
    ensure!(
        screen[last_draw + 4..summary].contains("\r\x1b[2K"),
        "the progress line was not erased before the summary:\n{screen:?}"
    );
    Ok(())
}

/// The secrets the lab's modules read, on any command.
fn st_env(mut c: Command) -> Command {
    c.envs(canary_envs())
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    c
}

/// `2026-12-03T10:00:00Z` at the start of a line: its unix seconds.
fn stamp(line: &str) -> Option<u64> {
    let t = line.get(..20)?;
    let b = t.as_bytes();
    if b[4] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<u64>().ok();
    let (h, m, s) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Compared within one run only: ordered, and exact within a month.
    let day = (n(0..4)? * 12 + n(5..7)?) * 31 + n(8..10)?;
    Some(day * 86_400 + h * 3600 + m * 60 + s)
}

fn in_a_log() -> Result<()> {
    let node = "validator-1";
    hand_edit(node)?;
    let o = st().args(["apply", "--yes", node]).output()?;
    expect_code(&o, 0, "apply without a terminal")?;
    let (stdout, stderr) = (out(&o), String::from_utf8_lossy(&o.stderr).to_string());
    ensure!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "an escape code without a terminal:\n{stdout}\n{stderr:?}"
    );
    ensure!(stdout.contains("Apply summary:"), "{stdout}");
    // Every step and the node's end: `<RFC 3339> validator-1: <what>`, in order.
    let mut at = Vec::new();
    for want in [
        "taking the lock",
        "changes",
        "handlers",
        "health check",
        "applied 1 changes, ran restart chrony in",
    ] {
        let line = stderr
            .lines()
            .find(|l| {
                l.get(20..)
                    .is_some_and(|r| r.starts_with(&format!(" {node}: {want}")))
            })
            .with_context(|| format!("no timestamped `{want}` line:\n{stderr}"))?;
        at.push(stamp(line).with_context(|| format!("no timestamp: {line}"))?);
    }
    ensure!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}\n{stderr}");
    // The restart (handlers) took 3 s or more: the health check's line is 2+ s later.
    ensure!(
        at[3] - at[2] >= 2,
        "handlers -> health check {} s:\n{stderr}",
        at[3] - at[2]
    );
    // Nothing on standard error without a timestamp, but the indented second line of an end.
    for l in stderr.lines() {
        ensure!(
            stamp(l).is_some() || l.starts_with("    "),
            "a line without a timestamp: {l:?}\n{stderr}"
        );
    }
    Ok(())
}
