//! End-to-end: drift vs pending, `strata status`, and behaviour without a terminal.

use crate::common::*;
use crate::plan_apply_cases::*;
use anyhow::{ensure, Result};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "drift::hand_edit_is_drift_repo_change_is_pending",
            &["validator-1", "validator-2", "validator-3"],
            drift_vs_pending,
        ),
        case_fresh(
            "drift::status_shows_each_nodes_commit_and_drift",
            &["validator-1", "validator-2"],
            status_commits,
        ),
        case_fresh(
            "drift::no_terminal_no_prompt_no_colour",
            &["validator-1"],
            no_terminal,
        ),
        case_fresh(
            "drift::ci_example_jobs_run_against_the_lab",
            &["validator-1", "validator-2", "validator-3"],
            ci_example_jobs,
        ),
    ]
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let o = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.invalid"])
        .args(args)
        .output()?;
    ensure!(o.status.success(), "git {args:?}: {}", text(&o));
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn git_repo() -> Result<TempRepo> {
    let r = TempRepo::new()?;
    std::fs::write(r.path().join(".gitignore"), ".lab\n.strata/\n")?;
    git(r.path(), &["init", "-q"])?;
    git(r.path(), &["add", "-A"])?;
    git(r.path(), &["commit", "-qm", "first"])?;
    Ok(r)
}

fn cause(plan: &Value, node_name: &str, id: &str) -> String {
    node(plan, node_name)["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
        .map(|c| c["cause"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| "absent".into())
}

fn drift_vs_pending() -> Result<()> {
    let r = git_repo()?;
    apply_ok(r.path(), &[])?;
    // A hand edit on validator-2: exactly one drifted change there, nothing elsewhere.
    ssh_ok(
        "validator-2",
        "root",
        "echo '# hand edit' >> /etc/chrony/chrony.conf",
    )?;
    let (code, p) = plan_json(r.path(), &[])?;
    ensure!(code == Some(2), "exit {code:?}");
    ensure!(
        changes(&p, "validator-2") == [pair("change", "file:/etc/chrony/chrony.conf")].into(),
        "{:?}",
        changes(&p, "validator-2")
    );
    ensure!(
        cause(&p, "validator-2", "file:/etc/chrony/chrony.conf") == "drift",
        "{}",
        node(&p, "validator-2")
    );
    ensure!(
        node(&p, "validator-2")["drifted"] == 1 && node(&p, "validator-2")["pending"] == 0,
        "{}",
        node(&p, "validator-2")
    );
    ensure!(
        changes(&p, "validator-1").is_empty() && changes(&p, "validator-3").is_empty(),
        "other nodes changed"
    );
    // A repo change not yet applied: pending on every node it touches.
    r.edit("base-config/vars.yaml", "restart_sec: 10", "restart_sec: 7")?;
    // And the same file edited by hand on validator-3: both.
    ssh_ok(
        "validator-3",
        "root",
        "sed -i 's/^RestartSec=.*/RestartSec=3/' /etc/systemd/system/monad-validator.service",
    )?;
    let (code, p) = plan_json(r.path(), &[])?;
    ensure!(code == Some(2), "exit {code:?}");
    let unit = "file:/etc/systemd/system/monad-validator.service";
    ensure!(
        cause(&p, "validator-1", unit) == "pending",
        "validator-1: {}",
        node(&p, "validator-1")
    );
    ensure!(
        cause(&p, "validator-2", unit) == "pending",
        "validator-2: {}",
        node(&p, "validator-2")
    );
    ensure!(
        cause(&p, "validator-2", "file:/etc/chrony/chrony.conf") == "drift",
        "validator-2 chrony"
    );
    ensure!(
        cause(&p, "validator-3", unit) == "both",
        "validator-3: {}",
        node(&p, "validator-3")
    );
    let t = out(&st_in(r.path(), &["plan", "validator-2"]));
    ensure!(
        t.contains("validator-2: 0 to add, 2 to change, 0 to remove (1 drifted, 1 pending)"),
        "{t}"
    );
    Ok(())
}

fn status_commits() -> Result<()> {
    let r = git_repo()?;
    let first = git(r.path(), &["rev-parse", "HEAD"])?;
    apply_ok(r.path(), &["validator-1"])?;
    r.edit("base-config/vars.yaml", "restart_sec: 10", "restart_sec: 7")?;
    git(r.path(), &["commit", "-qam", "second"])?;
    let second = git(r.path(), &["rev-parse", "HEAD"])?;
    apply_ok(r.path(), &["validator-2"])?;
    ssh_ok("validator-1", "root", "chmod 0600 /etc/logrotate.d/monad")?;
    let o = st_in(
        r.path(),
        &["status", "--format", "json", "validator-1", "validator-2"],
    );
    expect_code(&o, 0, "status")?;
    let v: Value = serde_json::from_slice(&o.stdout)?;
    ensure!(
        v["format_version"] == 1,
        "status JSON has no format_version 1: {v}"
    );
    let row = |n: &str| {
        v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["node"] == n))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (v1, v2) = (row("validator-1"), row("validator-2"));
    ensure!(
        v1["last_applied"]["commit"] == first.as_str() && v1["last_applied"]["repo_moved"] == true,
        "{v1}"
    );
    ensure!(
        v2["last_applied"]["commit"] == second.as_str()
            && v2["last_applied"]["repo_moved"] == false,
        "{v2}"
    );
    ensure!(v1["drifted"] == 1 && v2["drifted"] == 0, "drift: {v1} {v2}");
    let t = out(&st_in(r.path(), &["status"]));
    ensure!(t.contains(&first[..10]) && t.contains(&second[..10]), "{t}");
    Ok(())
}

fn no_terminal() -> Result<()> {
    // No stdin, no ssh-agent, no terminal: apply refuses rather than prompt.
    let run = |args: &[&str]| {
        Command::new(strata_bin())
            .arg("--repo")
            .arg(repo())
            .args(["--inventory", "inventory/lab.yaml"])
            .args(args)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("NO_COLOR")
            .envs(canary_envs())
            .stdin(Stdio::null())
            .output()
    };
    let o = run(&["apply", "validator-1"])?;
    expect_code(&o, 1, "apply without --yes and without a terminal")?;
    ensure!(
        String::from_utf8_lossy(&o.stderr).contains("no terminal to ask on (use --yes)"),
        "{}",
        text(&o)
    );
    ensure!(
        ssh_ok(
            "validator-1",
            "root",
            "test -e /etc/monad && echo touched || echo clean"
        )? == "clean",
        "applied without confirmation"
    );
    let o = run(&["plan", "--detailed-exitcode", "validator-1"])?;
    expect_code(&o, 2, "plan")?;
    ensure!(
        !o.stdout.contains(&0x1b) && !o.stderr.contains(&0x1b),
        "colour codes without a terminal:\n{}",
        text(&o)
    );
    Ok(())
}

/// The example CI jobs (scripts/ci-example.sh, the commands of .github/workflows/strata.yml)
/// run against the lab: the PR job passes with changes pending, the drift job fails with 2
/// on a drifted fleet, and the markdown summary never holds a secret.
pub fn ci_example_jobs() -> Result<()> {
    let r = git_repo()?;
    apply_ok(r.path(), &["validator-1"])?;
    let job = |name: &str| -> Result<(std::process::Output, String)> {
        let summary = tempfile::NamedTempFile::new()?;
        let o = Command::new("bash")
            .arg(repo().join("scripts/ci-example.sh"))
            .arg(name)
            .current_dir(repo())
            .env("STRATA_BIN", strata_bin())
            .env("GITHUB_STEP_SUMMARY", summary.path())
            .envs(canary_envs())
            .stdin(Stdio::null())
            .output()?;
        let md = std::fs::read_to_string(summary.path())?;
        for c in [
            CANARY_TELEGRAM,
            CANARY_DISCORD,
            CANARY_SMTP,
            CANARY_PAGERDUTY,
            CANARY_HEARTBEAT,
        ] {
            ensure!(
                !md.contains(c) && !text(&o).contains(c),
                "{name}: secret in the output"
            );
        }
        ensure!(
            md.contains("### strata plan") && md.contains("| validator-1 |"),
            "{name}: no markdown summary:\n{md}\n{}",
            text(&o)
        );
        Ok((o, md))
    };
    let (pr, _) = job("pr")?;
    expect_code(&pr, 0, "the PR job (changes pending do not fail it)")?;
    ssh_ok(
        "validator-1",
        "root",
        "echo '# hand edit' >> /etc/chrony/chrony.conf",
    )?;
    let (drift, md) = job("drift")?;
    expect_code(&drift, 2, "the drift job on a drifted fleet")?;
    // The drifted resource is named in the summary, with its cause.
    ensure!(
        md.contains("`file:/etc/chrony/chrony.conf` | drift"),
        "{md}"
    );
    Ok(())
}
