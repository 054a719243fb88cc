//! Exclusive services and `strata failover`: the stand-in validator never runs on two nodes
//! of its set at once.

use crate::common::*;
use crate::plan_apply_cases::{apply_ok, expect_code, out, st_in, TempRepo};
use anyhow::{ensure, Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SVC: &str = "monad-validator";

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "failover::switch_runs_the_validator_on_one_node_at_every_instant",
            &["validator-1", "validator-2", "validator-3"],
            switch_never_twice,
        ),
        case_fresh(
            "failover::config_starting_it_on_a_second_node_plan_errors_apply_changes_nothing",
            &["validator-1", "validator-2", "validator-3"],
            second_starter_refused,
        ),
        case_fresh(
            "failover::bad_health_gate_on_new_node_starts_old_node_again",
            &["validator-1", "validator-2", "validator-3"],
            bad_gate_restores_old,
        ),
        case_fresh(
            "failover::rollback_of_a_standby_never_starts_it",
            &["validator-1", "validator-2", "validator-3"],
            rollback_standby,
        ),
        case_fresh(
            "failover::unreachable_old_node_refused_unless_old_node_is_down",
            &["validator-1", "validator-2", "validator-3"],
            unreachable_old,
        ),
    ]
}

/// The lab repo with the validator exclusive to one node (validator-1 unless `active`).
fn fleet(active: &str, extra: &str) -> Result<TempRepo> {
    let r = TempRepo::new()?;
    let p = r.path().join("inventory/lab.yaml");
    let mut s = std::fs::read_to_string(&p)?;
    s = s.replace("timeout_secs: 30", "timeout_secs: 8");
    s.push_str(&format!(
        "exclusive:\n  validators:\n    service: {SVC}\n    active: {active}\n    ports: [8000, 8080, 8889]\n{extra}"
    ));
    std::fs::write(&p, s)?;
    Ok(r)
}

fn set_active(r: &TempRepo, from: &str, to: &str) -> Result<()> {
    r.edit(
        "inventory/lab.yaml",
        &format!("active: {from}"),
        &format!("active: {to}"),
    )
}

fn state(node: &str) -> Result<String> {
    ssh_ok(node, "root", &format!("systemctl is-active {SVC} || true"))
}

/// Place a node's own (dummy) key files with the module's owner and mode.
fn place_keys(node: &str) -> Result<()> {
    ssh_ok(
        node,
        "root",
        "install -d -o monad -g monad -m 0700 /etc/monad/keys && for k in secp bls; do [ -f /etc/monad/keys/$k.key ] || install -o monad -g monad -m 0600 /dev/null /etc/monad/keys/$k.key; done",
    )
    .map(|_| ())
}

/// The common start: validator-1 signs, validator-2 and -3 stand by, keys in place.
fn converged(r: &TempRepo) -> Result<()> {
    apply_ok(r.path(), &[])?;
    for n in ["validator-1", "validator-2", "validator-3"] {
        place_keys(n)?;
    }
    ensure!(state("validator-1")? == "active", "validator-1 should sign");
    ensure!(
        state("validator-2")? != "active",
        "validator-2 should stand by"
    );
    ensure!(
        state("validator-3")? != "active",
        "validator-3 should stand by"
    );
    Ok(())
}

/// Poll a node's unit state from a long-running ssh session, timestamped on the node (the
/// lab's nodes share the host clock).
struct Poller {
    child: std::process::Child,
    samples: Arc<Mutex<Vec<(f64, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn poll(node: &str) -> Result<Poller> {
    let addr = address(node)?;
    let mut child = Command::new("ssh")
        .args(["-i"])
        .arg(repo().join(".lab/ssh/id_ed25519"))
        .args(["-o", "BatchMode=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            repo().join(".lab/known_hosts").display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes", &format!("root@{addr}")])
        .arg(format!(
            "while :; do echo \"$(date +%s.%N) $(systemctl is-active {SVC})\"; sleep 0.05; done"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .context("ssh poller")?;
    let stdout = child.stdout.take().expect("piped");
    let samples = Arc::new(Mutex::new(Vec::new()));
    let s2 = samples.clone();
    let thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if let Some((t, st)) = line.split_once(' ') {
                if let Ok(t) = t.parse::<f64>() {
                    s2.lock().unwrap().push((t, st.to_string()));
                }
            }
        }
    });
    Ok(Poller {
        child,
        samples,
        thread: Some(thread),
    })
}

impl Poller {
    fn stop(mut self) -> Vec<(f64, String)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = self.samples.lock().unwrap().clone();
        s
    }
}

fn signs(state: &str) -> bool {
    matches!(
        state,
        "active" | "activating" | "deactivating" | "reloading"
    )
}

/// validator-1 -> validator-2: at no sampled instant both run it; afterwards only
/// validator-2 does; both records say failover; the audit log has the switch.
fn switch_never_twice() -> Result<()> {
    let r = fleet("validator-1", "")?;
    converged(&r)?;
    // The command refuses while the config still names validator-1.
    let o = st_in(
        r.path(),
        &["failover", "validators", "--to", "validator-2", "--yes"],
    );
    expect_code(&o, 1, "failover before the config change")?;
    ensure!(
        text(&o).contains("active: validator-2   # was: validator-1"),
        "{}",
        text(&o)
    );
    set_active(&r, "validator-1", "validator-2")?;
    let plan = st_in(r.path(), &["plan"]);
    expect_code(
        &plan,
        1,
        "plan with the config switched, before the failover",
    )?;
    ensure!(
        out(&plan).contains("drift: validator-1 signs, config says validator-2"),
        "{}",
        text(&plan)
    );
    let (p1, p2) = (poll("validator-1")?, poll("validator-2")?);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = Instant::now();
    let o = st_in(
        r.path(),
        &["failover", "validators", "--to", "validator-2", "--yes"],
    );
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (s1, s2) = (p1.stop(), p2.stop());
    println!("{}", text(&o));
    expect_code(&o, 0, "failover")?;
    // Timeline: state changes of each node, merged by time.
    let mut events: Vec<(f64, &str, &str)> = Vec::new();
    for (name, s) in [("validator-1", &s1), ("validator-2", &s2)] {
        let mut last = "";
        for (t, st) in s.iter() {
            if st != last {
                events.push((*t, name, st));
                last = st;
            }
        }
    }
    events.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let t0 = events.first().map(|e| e.0).unwrap_or(0.0);
    println!("timeline ({} + {} samples):", s1.len(), s2.len());
    for (t, n, st) in &events {
        println!("  +{:7.3}s  {n}: {st}", t - t0);
    }
    ensure!(s1.len() > 10 && s2.len() > 10, "too few samples");
    let last1 = s1
        .iter()
        .filter(|(_, s)| signs(s))
        .map(|(t, _)| *t)
        .fold(0.0, f64::max);
    let first2 = s2
        .iter()
        .filter(|(_, s)| signs(s))
        .map(|(t, _)| *t)
        .fold(f64::MAX, f64::min);
    ensure!(
        last1 < first2,
        "validator-1 still ran it at {last1} after validator-2 started at {first2}"
    );
    ensure!(state("validator-1")? != "active" && state("validator-2")? == "active");
    ensure!(
        ssh_ok(
            "validator-1",
            "root",
            &format!("systemctl is-enabled {SVC} || true")
        )? == "disabled"
    );
    for n in ["validator-1", "validator-2"] {
        let rec = ssh_ok(n, "root", "cat /var/lib/strata/state.json")?;
        let v: serde_json::Value = serde_json::from_str(&rec)?;
        ensure!(v["kind"] == "failover", "{n} record: {rec}");
    }
    let audit = std::fs::read_to_string(r.path().join(".strata/audit.jsonl"))?;
    ensure!(
        audit
            .lines()
            .filter(|l| l.contains("\"failover\":{"))
            .count()
            == 2,
        "{audit}"
    );
    let plan = st_in(r.path(), &["plan"]);
    expect_code(&plan, 0, "plan after the failover")?;
    println!("FAILOVER TIME: {secs:.2}s from the command to validator-2 healthy (the command's own figure is in its output)");
    Ok(())
}

/// The config names validator-2 active while validator-1 signs: plan errors naming both,
/// apply refuses and changes nothing.
fn second_starter_refused() -> Result<()> {
    let r = fleet("validator-1", "")?;
    converged(&r)?;
    set_active(&r, "validator-1", "validator-2")?;
    let rec = |n| ssh_ok(n, "root", "cat /var/lib/strata/state.json");
    let before = (rec("validator-1")?, rec("validator-2")?);
    let o = st_in(r.path(), &["plan"]);
    expect_code(&o, 1, "plan")?;
    let t = text(&o);
    ensure!(
        t.contains(
            "the plan would start monad-validator on validator-2 while validator-1 has it active"
        ),
        "{t}"
    );
    let o = st_in(r.path(), &["apply", "--yes"]);
    expect_code(&o, 1, "apply")?;
    ensure!(text(&o).contains("nothing was applied"), "{}", text(&o));
    ensure!(state("validator-1")? == "active" && state("validator-2")? != "active");
    ensure!(
        before == (rec("validator-1")?, rec("validator-2")?),
        "records changed"
    );
    Ok(())
}

/// A health gate that fails on validator-2 (its unit serves the status port elsewhere, by a
/// drop-in strata does not manage): validator-2 is stopped again, validator-1 started again.
fn bad_gate_restores_old() -> Result<()> {
    let r = fleet("validator-1", "")?;
    converged(&r)?;
    let exec = ssh_ok(
        "validator-2",
        "root",
        &format!(
            "systemctl show -p ExecStart --value {SVC} | sed 's/.*argv\\[\\]=\\([^;]*\\);.*/\\1/'"
        ),
    )?;
    ensure!(exec.contains("--status-port 8080"), "{exec}");
    let bad = exec
        .trim()
        .replace("--status-port 8080", "--status-port 8081");
    ssh_ok(
        "validator-2",
        "root",
        &format!("printf '[Service]\\nExecStart=\\nExecStart={bad}\\n' > /etc/systemd/system/{SVC}.service.d/zz-break.conf && systemctl daemon-reload"),
    )?;
    set_active(&r, "validator-1", "validator-2")?;
    let o = st_in(
        r.path(),
        &["failover", "validators", "--to", "validator-2", "--yes"],
    );
    println!("{}", text(&o));
    expect_code(&o, 1, "failover with a bad gate")?;
    let t = text(&o);
    ensure!(
        t.contains("validator-1: monad-validator started again, healthy"),
        "{t}"
    );
    ensure!(
        state("validator-1")? == "active",
        "validator-1 runs it again"
    );
    ensure!(state("validator-2")? != "active", "validator-2 stopped");
    Ok(())
}

/// validator-2 once ran the validator (an apply without the exclusive set); rolled back to
/// that revision as a standby, it keeps it stopped.
fn rollback_standby() -> Result<()> {
    let plain = TempRepo::new()?;
    apply_ok(plain.path(), &["validator-2"])?;
    ensure!(state("validator-2")? == "active");
    ssh_ok("validator-2", "root", &format!("systemctl stop {SVC}"))?;
    let r = fleet("validator-1", "")?;
    // validator-1 must sign for the set; validator-2 stands by.
    apply_ok(r.path(), &[])?;
    ensure!(state("validator-2")? != "active");
    // Change something so the revision differs, then roll back to the plain revision.
    let o = st_in(r.path(), &["rollback", "validator-2", "--yes"]);
    println!("{}", text(&o));
    ensure!(
        state("validator-2")? != "active",
        "rollback started the standby: {}",
        text(&o)
    );
    ensure!(
        ssh_ok(
            "validator-2",
            "root",
            &format!("systemctl is-enabled {SVC} || true")
        )? == "disabled"
    );
    Ok(())
}

/// validator-1's sshd stopped, its unit still running: refused without --old-node-is-down;
/// with it (and a fence hook), validator-2 takes over and the output says what was assumed.
fn unreachable_old() -> Result<()> {
    let r = fleet(
        "validator-1",
        "    fence:\n      validator-1: \"echo fenced validator-1 > .strata-fence-ran\"\n",
    )?;
    converged(&r)?;
    set_active(&r, "validator-1", "validator-2")?;
    ssh_ok(
        "validator-1",
        "root",
        "systemctl stop ssh.socket 2>/dev/null; systemctl stop ssh; true",
    )
    .ok();
    let o = st_in(
        r.path(),
        &["failover", "validators", "--to", "validator-2", "--yes"],
    );
    expect_code(&o, 1, "failover, old node unreachable")?;
    ensure!(text(&o).contains("--old-node-is-down"), "{}", text(&o));
    ensure!(state("validator-2")? != "active");
    let o = st_in(
        r.path(),
        &[
            "failover",
            "validators",
            "--to",
            "validator-2",
            "--yes",
            "--old-node-is-down",
        ],
    );
    println!("{}", text(&o));
    expect_code(&o, 0, "failover --old-node-is-down")?;
    let t = text(&o);
    ensure!(
        t.contains("ASSUMED (you confirmed it with --old-node-is-down): validator-1 is fenced"),
        "{t}"
    );
    ensure!(
        r.path().join(".strata-fence-ran").exists(),
        "fence hook did not run"
    );
    ensure!(state("validator-2")? == "active");
    Ok(())
}
