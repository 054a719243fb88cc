//! Canary and soak: the first node of the group goes first and is watched before the rest.

use crate::common::{case_fresh, repo, ssh_ok, strata_bin, Case};
use crate::plan_apply_cases::{apply_ok, canary_envs, last_start, out, st_in, TempRepo};
use anyhow::{ensure, Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const NODES: &[&str] = &["validator-1", "validator-2", "validator-3"];

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "canary::canary_soaked_before_the_others_start",
            NODES,
            soaked_first,
        ),
        case_fresh(
            "canary::failure_during_the_soak_rolls_the_canary_back",
            NODES,
            fault_in_soak,
        ),
    ]
}

/// A repo copy with canary 1, a 6 s soak checked every 2 s, and a change that restarts
/// every validator.
fn canary_repo() -> Result<TempRepo> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "    serial: 1\n",
        "    serial: 1\n    canary: 1\n    soak_secs: 6\n    soak_check_secs: 2\n",
    )?;
    r.edit("base-config/vars.yaml", "restart_sec: 10", "restart_sec: 7")?;
    Ok(r)
}

fn starts() -> Result<Vec<f64>> {
    NODES.iter().map(|n| last_start(n)).collect()
}

fn soaked_first() -> Result<()> {
    apply_ok(&repo(), &[])?;
    let before = starts()?;
    let r = canary_repo()?;
    let o = st_in(r.path(), &["apply", "--yes"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    ensure!(o.status.success(), "apply failed\n{}\n{err}", out(&o));
    ensure!(
        err.contains("validator-1: soaking (6 s, check every 2 s)"),
        "{err}"
    );
    ensure!(
        err.contains("validator-1: soak check 3/3: healthy"),
        "{err}"
    );
    ensure!(!err.contains("validator-2: soaking"), "{err}");
    let after = starts()?;
    for i in 0..3 {
        ensure!(after[i] > before[i], "{} was not restarted", NODES[i]);
    }
    // One at a time, and validator-2 only after the canary's 6 s soak.
    ensure!(
        after[1] - after[0] >= 6.0 && after[2] > after[1],
        "restart times (journal, unix s): {after:?}"
    );
    Ok(())
}

/// The canary's validator stops in the middle of its soak: it is rolled back (previous unit,
/// restarted, healthy), the others are not touched, the summary says why.
fn fault_in_soak() -> Result<()> {
    apply_ok(&repo(), &[])?;
    let before = starts()?;
    let r = canary_repo()?;
    let mut child = Command::new(strata_bin())
        .arg("--repo")
        .arg(r.path())
        .args(["--inventory", "inventory/lab.yaml", "apply", "--yes"])
        .envs(canary_envs())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut err = String::new();
    let mut faulted = false;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        err.push_str(&line);
        err.push('\n');
        if !faulted && line.contains("validator-1: soak check 1/3: healthy") {
            ssh_ok(
                "validator-1",
                "root",
                "systemctl kill -s KILL monad-validator; systemctl stop monad-validator",
            )?;
            faulted = true;
        }
    }
    let o = child.wait_with_output()?;
    let t = out(&o);
    ensure!(faulted, "the soak never started\n{t}\n{err}");
    ensure!(
        o.status.code() == Some(1),
        "exit {:?}\n{t}\n{err}",
        o.status
    );
    ensure!(
        t.contains("validator-1: FAILED, rolled back: soak check"),
        "{t}"
    );
    ensure!(t.contains("healthy again"), "{t}");
    ensure!(
        t.contains("validator-2: untouched") && t.contains("validator-3: untouched"),
        "{t}"
    );
    ensure!(
        ssh_ok("validator-1", "root", "systemctl is-active monad-validator")? == "active",
        "canary not running after rollback"
    );
    let after = starts()?;
    ensure!(
        after[1] == before[1] && after[2] == before[2],
        "other validators restarted: {before:?} -> {after:?}"
    );
    Ok(())
}
