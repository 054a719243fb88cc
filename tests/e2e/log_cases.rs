//! End-to-end: `-v`/`-vv` logs and `--log-format json` on a real apply and plan of a lab
//! node: every step of the apply is logged with a sane elapsed time, every JSON line parses,
//! ssh's own log appears at -vv, and a secret with a quote and a backslash never does.

use crate::common::*;
use crate::plan_apply_cases::{expect_code, out};
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// A secret that JSON and Debug escape differently from its raw form.
const HOSTILE_SECRET: &str = r#"canary"smtp\log-0c7e"#;

pub fn cases() -> Vec<Case> {
    vec![case_fresh(
        "log::verbose_apply_times_every_step_and_json_plan_parses",
        &["validator-1"],
        verbose_logs,
    )]
}

fn st(args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("--repo")
        .arg(repo())
        .args(["--inventory", "inventory/lab.yaml"])
        .args(args)
        .env("STRATA_TELEGRAM_BOT_TOKEN", "canary-telegram-log-1")
        .env(
            "STRATA_DISCORD_WEBHOOK_URL",
            "https://discord.invalid/canary-log-2",
        )
        .env("STRATA_SMTP_PASSWORD", HOSTILE_SECRET)
        .env("STRATA_PAGERDUTY_ROUTING_KEY", "canary-pagerduty-log-3")
        .env(
            "STRATA_HEARTBEAT_URL",
            "https://heartbeat.invalid/canary-log-4",
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

/// The secret in every form a formatter could print it.
fn assert_no_secret(o: &Output, what: &str) -> Result<()> {
    let all = text(o);
    let json = serde_json::to_string(HOSTILE_SECRET)?;
    for form in [
        HOSTILE_SECRET,
        json.trim_matches('"'),
        &format!("{HOSTILE_SECRET:?}"),
        "smtp\\log-0c7e",
    ] {
        ensure!(!all.contains(form), "{what}: `{form}` printed:\n{all}");
    }
    Ok(())
}

/// `... INFO  validator-1 <step>: done (<ms> ms)` lines: (step, ms) in order.
fn done_steps(stderr: &str, node: &str) -> Vec<(String, u64)> {
    let head = format!(" INFO  {node} ");
    stderr
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find(&head)? + head.len()..];
            let (step, tail) = rest.split_once(": done (")?;
            let ms = tail.strip_suffix(" ms)")?.parse().ok()?;
            Some((step.to_string(), ms))
        })
        .collect()
}

fn verbose_logs() -> Result<()> {
    let node = "validator-1";
    // Default output has no log lines: the flags are what turns them on.
    let quiet = st(&["plan", node]);
    expect_code(&quiet, 0, "plan")?;
    let quiet_err = String::from_utf8_lossy(&quiet.stderr).to_string();
    ensure!(
        !quiet_err.contains(" INFO ") && !quiet_err.contains(" connect: "),
        "plan without -v logged:\n{quiet_err}"
    );

    let t = Instant::now();
    let o = st(&["-v", "apply", "--yes", node]);
    let wall_ms = t.elapsed().as_millis() as u64;
    expect_code(&o, 0, "-v apply")?;
    assert_no_secret(&o, "-v apply")?;
    ensure!(
        out(&o).contains(&format!("{node}: applied")),
        "{}",
        text(&o)
    );
    // The secret did reach the node, so it was in play (rendered, sent, validated).
    let live = ssh_ok(node, "root", "cat /etc/prometheus/alertmanager.yml")?;
    ensure!(live.contains("log-0c7e"), "the secret must reach the node");

    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let steps = done_steps(&stderr, node);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    // A fresh node's apply: the firewall changes, so the guard is armed (by the changes
    // script itself, no step of its own) and confirmed. The probe's ssh makes the
    // connection and starts the master (no separate connect step). The confirm and the
    // health check run at once (either may end first), between the handlers and the record.
    ensure!(
        !names.contains(&"connect"),
        "an apply with a separate connect step:\n{stderr}"
    );
    ensure!(
        !names.contains(&"arming the connectivity guard"),
        "an apply that arms the guard in a round trip of its own:\n{stderr}"
    );
    let want = [
        "gather",
        "taking the lock",
        "re-reading the node under the lock",
        "changes",
        "handlers",
        "recording the apply",
    ];
    let mut at = 0;
    let mut after_handlers = 0;
    for w in want {
        let i = names[at..]
            .iter()
            .position(|n| *n == w)
            .with_context(|| format!("no `{w}: done` line after {:?}:\n{stderr}", &names[..at]))?;
        if w == "recording the apply" {
            for both in ["confirming over a new connection", "health check"] {
                ensure!(
                    names[after_handlers..at + i].contains(&both),
                    "no `{both}: done` line between the handlers and the record:\n{stderr}"
                );
            }
        }
        at += i + 1;
        if w == "handlers" {
            after_handlers = at;
        }
    }
    // Each step started before it ended, and the times add up to no more than the run.
    for (s, _) in &steps {
        ensure!(
            stderr.contains(&format!("{node} {s}: start")),
            "`{s}` has no start line:\n{stderr}"
        );
    }
    // (The health check runs during the confirm: counted once, as the confirm.)
    let sum: u64 = steps
        .iter()
        .filter(|(s, _)| s != "health check")
        .map(|(_, ms)| ms)
        .sum();
    ensure!(
        sum <= wall_ms,
        "steps add up to {sum} ms, the run took {wall_ms} ms:\n{stderr}"
    );
    let changes_ms = steps.iter().find(|(s, _)| s == "changes").map(|x| x.1);
    ensure!(
        changes_ms.is_some_and(|ms| ms > 0),
        "changes took no time?\n{stderr}"
    );
    ensure!(
        stderr.contains(&format!("{node}: apply of the node ended: applied (")),
        "{stderr}"
    );
    // With -v the log's step lines stand for the plain ones (no duplicate `node: step`).
    ensure!(
        !stderr
            .lines()
            .any(|l| l.ends_with(&format!("Z {node}: changes"))),
        "{stderr}"
    );

    // -vv: the node times each step of the changes and handlers; a hand edit gives one of each.
    ssh_ok(
        node,
        "root",
        "echo '# hand edit' >> /etc/chrony/chrony.conf",
    )?;
    let o = st(&["-vv", "apply", "--yes", node]);
    expect_code(&o, 0, "-vv apply")?;
    assert_no_secret(&o, "-vv apply")?;
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    // Apply's master logs its own connection and authentication.
    ensure!(
        stderr.lines().any(
            |l| l.contains(&format!("DEBUG {node} ssh: master: ")) && l.contains("Authenticat")
        ),
        "no master log at -vv apply:\n{stderr}"
    );
    for want in [
        format!("DEBUG {node} changes: on the node: stage /etc/chrony/chrony.conf ("),
        format!("DEBUG {node} changes: on the node, 1 x stage ("),
        format!("DEBUG {node} handlers: on the node: handler restart chrony ("),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&want))
            .with_context(|| format!("no `{want}` line:\n{stderr}"))?;
        let ms: u64 = line
            .rsplit_once(" (")
            .and_then(|(_, t)| t.strip_suffix(" ms)"))
            .and_then(|t| t.parse().ok())
            .with_context(|| format!("no time in {line}"))?;
        ensure!(ms < 60_000, "{line}");
    }

    // -vv, JSON: a no-op plan; every line of standard error is one JSON object.
    let o = st(&["-vv", "--log-format", "json", "plan", node]);
    expect_code(&o, 0, "-vv --log-format json plan")?;
    assert_no_secret(&o, "-vv json plan")?;
    ensure!(
        out(&o).contains("no changes"),
        "stdout is the plan, as without -vv:\n{}",
        text(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let mut lines = Vec::new();
    for l in stderr.lines() {
        let v: Value =
            serde_json::from_str(l).with_context(|| format!("not a JSON line: {l:?}\n{stderr}"))?;
        for k in ["timestamp", "level", "message"] {
            ensure!(v[k].is_string(), "no {k}: {l}");
        }
        ensure!(
            v["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "timestamp not RFC 3339 UTC with ms: {l}"
        );
        lines.push(v);
    }
    let step_ms = |step: &str| {
        lines
            .iter()
            .find(|v| v["step"] == step && v["message"] == "done")
            .and_then(|v| v["elapsed_ms"].as_u64())
    };
    // The plan's probe makes the connection (no separate `connect` step): gather's time.
    let ms = step_ms("gather").with_context(|| format!("no timed `gather` line:\n{stderr}"))?;
    ensure!(ms < 60_000, "gather: {ms} ms");
    ensure!(
        step_ms("connect").is_none(),
        "a plan with a separate connect step:\n{stderr}"
    );
    let trip = lines
        .iter()
        .find(|v| v["message"] == "round trip")
        .with_context(|| format!("no round trip line at -vv:\n{stderr}"))?;
    ensure!(
        trip["node"] == node
            && trip["script_bytes"].as_u64().is_some_and(|b| b > 100)
            && trip["reply_bytes"].as_u64().is_some_and(|b| b > 100)
            && trip["exit"] == 0,
        "{trip}"
    );
    ensure!(
        lines.iter().any(|v| v["step"] == "ssh"
            && v["level"] == "DEBUG"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("debug1: "))),
        "no ssh client log at -vv:\n{stderr}"
    );
    // A plan's probe is its own ssh (no master): its log has the connection and the
    // authentication, and there is no master.
    ensure!(
        lines.iter().any(|v| v["step"] == "ssh"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Authenticated to "))),
        "no authentication in the plan's ssh log at -vv:\n{stderr}"
    );
    ensure!(
        !lines.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("master: "))),
        "a plan started a master:\n{stderr}"
    );
    Ok(())
}
