//! Ctrl-C during a rollout, delivered as a terminal does: SIGINT to strata's whole process
//! group (the ssh processes it started included).

use crate::common::*;
use crate::plan_apply_cases::{canary_envs, expect_code, st_in, TempRepo};
use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const NODES: &[&str] = &["validator-1", "validator-2", "validator-3"];

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "interrupt::first_ctrl_c_finishes_the_running_node_and_starts_no_other",
            NODES,
            first_interrupt,
        ),
        case_fresh(
            "interrupt::second_ctrl_c_stops_at_once_and_the_node_recovers",
            &["validator-1"],
            second_interrupt,
        ),
    ]
}

/// `strata apply --yes NODES` as the leader of its own process group, like a shell job.
fn spawn_apply(repo: &Path, nodes: &[&str]) -> Result<Child> {
    Ok(Command::new(strata_bin())
        .arg("--repo")
        .arg(repo)
        .args(["--inventory", "inventory/lab.yaml", "apply", "--yes"])
        .args(nodes)
        .envs(canary_envs())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?)
}

/// Ctrl-C on a terminal: SIGINT to every process of the foreground group.
fn ctrl_c(child: &Child) -> Result<()> {
    let st = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()?;
    ensure!(st.success(), "kill -INT the process group");
    Ok(())
}

/// Read stderr until a line contains `marker`; the rest of stderr is read on a thread.
fn wait_for(child: &mut Child, marker: &str) -> Result<(String, std::thread::JoinHandle<String>)> {
    let stderr = child.stderr.take().context("stderr")?;
    let mut r = BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("strata ended before it printed {marker:?}:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains(marker) {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    });
    Ok((seen, rest))
}

fn wait_within(child: &mut Child, limit: Duration) -> Result<(ExitStatus, Duration)> {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok((st, t.elapsed()));
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            bail!("strata did not end within {limit:?} of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn plan_code(repo: &Path, node: &str) -> Result<i32> {
    let o = st_in(repo, &["plan", "--detailed-exitcode", node]);
    o.status
        .code()
        .with_context(|| format!("plan {node} was killed:\n{}", text(&o)))
}

/// The first Ctrl-C while validator-1 (serial 1, the first batch) is in its changes step:
/// validator-1 finishes, healthy; validator-2 and -3 are never started; the summary and the
/// audit log are written; strata exits 130.
fn first_interrupt() -> Result<()> {
    let r = TempRepo::new()?;
    let mut child = spawn_apply(r.path(), NODES)?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (before, rest) = wait_for(&mut child, "validator-1: changes")?;
    ctrl_c(&child)?;
    let (status, took) = wait_within(&mut child, Duration::from_secs(300))?;
    let err = format!("{before}{}", rest.join().unwrap_or_default());
    let out = out.join().unwrap_or_default();
    let all = format!("{out}\n{err}");
    ensure!(
        status.code() == Some(130),
        "exit {status:?}, want 130:\n{all}"
    );
    ensure!(
        err.contains("interrupted: no new node will start"),
        "no notice of the interrupt:\n{all}"
    );
    ensure!(
        out.contains("validator-1: applied") && out.contains("healthy"),
        "validator-1 did not finish its apply:\n{all}"
    );
    for n in ["validator-2", "validator-3"] {
        ensure!(
            out.contains(&format!("{n}: untouched")),
            "{n} is not reported untouched:\n{all}"
        );
        ensure!(
            !err.contains(&format!("{n}: taking the lock")),
            "{n} was started after the interrupt:\n{all}"
        );
    }
    ensure!(
        out.contains("Apply summary:") && err.contains("2 node(s) were not started"),
        "no summary of the interrupted rollout:\n{all}"
    );
    let audit = std::fs::read_to_string(r.path().join(".strata/audit.jsonl"))
        .context("the audit log was not written")?;
    ensure!(
        audit.contains("validator-1"),
        "the audit log has no entry for validator-1:\n{audit}"
    );
    // What strata said is what the nodes are: validator-1 done, the others still pending.
    ensure!(
        plan_code(r.path(), "validator-1")? == 0,
        "validator-1 still has changes"
    );
    for n in ["validator-2", "validator-3"] {
        ensure!(plan_code(r.path(), n)? == 2, "{n} has no pending changes");
    }
    println!(
        "    first Ctrl-C: strata ended {:.1}s after it, validator-1 applied, 2 nodes not started",
        took.as_secs_f64()
    );
    Ok(())
}

/// Two Ctrl-Cs while validator-1 is in its changes step: strata ends at once (killed by
/// SIGINT, as shells expect); its lock is released, and the next apply completes the node.
fn second_interrupt() -> Result<()> {
    let r = TempRepo::new()?;
    let mut child = spawn_apply(r.path(), &["validator-1"])?;
    let _stdout = child.stdout.take(); // kept open: strata prints its plan first
    let (before, rest) = wait_for(&mut child, "validator-1: changes")?;
    ctrl_c(&child)?;
    std::thread::sleep(Duration::from_millis(200));
    ctrl_c(&child)?;
    let (status, took) = wait_within(&mut child, Duration::from_secs(5))?;
    let err = format!("{before}{}", rest.join().unwrap_or_default());
    ensure!(
        status.signal() == Some(libc_sigint()),
        "strata was not ended by the second Ctrl-C: {status:?}\n{err}"
    );
    // The node is not wedged: once the running step ends on it, the lock is free again and
    // an apply finishes what was started.
    let t = Instant::now();
    loop {
        let o = st_in(r.path(), &["apply", "--yes", "validator-1"]);
        if o.status.code() == Some(0) {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(120)
                && text(&o).contains("another apply holds the lock"),
            "apply after the abort failed:\n{}",
            text(&o)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    expect_code(
        &st_in(r.path(), &["plan", "--detailed-exitcode", "validator-1"]),
        0,
        "plan after the recovering apply",
    )?;
    println!(
        "    second Ctrl-C: strata ended {:.2}s after it; the next apply completed the node",
        took.as_secs_f64()
    );
    Ok(())
}

fn libc_sigint() -> i32 {
    2
}
