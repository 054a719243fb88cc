//! The connectivity guard: a change that cuts strata off undoes itself on the node.

use crate::common::*;
use crate::plan_apply_cases::{apply_ok, expect_code, lockout_repo, out, st_in, TempRepo};
use anyhow::{ensure, Context, Result};
use std::time::{Duration, Instant};

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "guard::firewall_that_drops_strata_restores_itself",
            &["validator-1"],
            firewall_drop_restores,
        ),
        case_fresh(
            "guard::sshd_moved_to_another_port_restores_itself",
            &["validator-1"],
            sshd_port_restores,
        ),
        case_fresh(
            "guard::sshd_stopped_by_the_plan_restores_itself",
            &["validator-1"],
            sshd_stopped_restores,
        ),
        case_fresh(
            "guard::strata_killed_in_confirm_window_node_restores_itself",
            &["validator-1"],
            killed_in_window,
        ),
    ]
}

/// The confirm window the cases use (the default is 30 s).
const WINDOW: &str = "6";

/// Can a NEW ssh connection log in to the node (short timeout)?
fn reachable(node: &str) -> bool {
    let known_hosts = repo().join(".lab/known_hosts");
    let addr = address(node).expect("lab node");
    ssh_to(&addr, "root", &known_hosts, 2, "true")
        .status
        .success()
}

fn ufw_rules(node: &str) -> Result<String> {
    ssh_ok(
        node,
        "root",
        "sha256sum /etc/ufw/user.rules /etc/ufw/ufw.conf; ufw status | head -n 1",
    )
}

/// Applied with the plan's lockout check bypassed: the node drops new connections from
/// strata, strata cannot confirm, the node puts its old firewall back by itself.
fn firewall_drop_restores() -> Result<()> {
    apply_ok(&repo(), &["validator-1"])?;
    let before = ufw_rules("validator-1")?;
    let r = lockout_repo()?;
    let t = Instant::now();
    let o = st_in(
        r.path(),
        &[
            "apply",
            "--yes",
            "--skip-lockout-check",
            "--confirm-timeout",
            WINDOW,
            "validator-1",
        ],
    );
    let took = t.elapsed();
    expect_code(&o, 1, "apply of a firewall that locks strata out")?;
    let s = out(&o);
    ensure!(s.contains("validator-1: FAILED, lost:"), "{}", text(&o));
    ensure!(
        s.contains("restored its previous state by itself") && s.contains("; healthy"),
        "{}",
        text(&o)
    );
    ensure!(
        text(&o).contains("LOST: no new SSH connection succeeded"),
        "{}",
        text(&o)
    );
    ensure!(reachable("validator-1"), "not reachable after the restore");
    ensure!(
        ufw_rules("validator-1")? == before,
        "the old firewall is not back"
    );
    println!(
        "    firewall lockout: whole apply {:.1}s; {}",
        took.as_secs_f64(),
        figure(&s)
    );
    // The node is as the last good apply left it: nothing pending against the repo.
    let o = st_in(&repo(), &["plan", "--detailed-exitcode", "validator-1"]);
    expect_code(&o, 0, "plan after the guard restored the node")?;
    Ok(())
}

/// "reachable again 7.3s after contact was lost" from the summary.
fn figure(s: &str) -> String {
    s.lines()
        .find(|l| l.contains("reachable again"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// validator-1 applied with `module` first, under the short window: strata loses the node,
/// the node restores itself and takes new connections on port 22 again. The summary.
fn lost_and_restored(r: &TempRepo, module: &str, what: &str) -> Result<String> {
    r.edit(
        "inventory/lab.yaml",
        "modules: [validator,",
        &format!("modules: [{module}, validator,"),
    )?;
    let o = st_in(
        r.path(),
        &["apply", "--yes", "--confirm-timeout", WINDOW, "validator-1"],
    );
    expect_code(&o, 1, what)?;
    let s = out(&o);
    ensure!(
        s.contains("validator-1: FAILED, lost:")
            && s.contains("restored its previous state by itself"),
        "{}",
        text(&o)
    );
    ensure!(reachable("validator-1"), "not reachable on port 22 again");
    Ok(s)
}

/// A module that moves sshd to port 2222 (and restarts it): new connections to port 22 are
/// refused; the guard removes the drop-in and restarts sshd on its old port.
fn sshd_port_restores() -> Result<()> {
    apply_ok(&repo(), &["validator-1"])?;
    let r = TempRepo::new()?;
    let m = r.path().join("modules/sshd_port");
    std::fs::create_dir_all(m.join("templates"))?;
    std::fs::write(
        m.join("module.yaml"),
        "description: test only - moves sshd\nfiles:\n  - dest: /etc/ssh/sshd_config.d/50-port.conf\n    template: port.conf.j2\n    mode: \"0644\"\n    validate: /usr/sbin/sshd -t -f /etc/ssh/sshd_config\n    notify: [restart ssh]\n",
    )?;
    std::fs::write(m.join("templates/port.conf.j2"), "Port 2222\n")?;
    let s = lost_and_restored(&r, "sshd_port", "apply that moves sshd")?;
    ensure!(
        ssh_ok(
            "validator-1",
            "root",
            "test ! -e /etc/ssh/sshd_config.d/50-port.conf && echo gone"
        )? == "gone",
        "the drop-in is still there"
    );
    println!("    sshd port: {}", figure(&s));
    Ok(())
}

/// A module that declares sshd stopped: without the guard (before, only the firewall, files
/// under /etc/ssh and ssh handlers armed it) the node was left with no sshd. Now the plan
/// is guarded, the confirm cannot log in, and the node starts sshd again by itself.
fn sshd_stopped_restores() -> Result<()> {
    apply_ok(&repo(), &["validator-1"])?;
    let r = TempRepo::new()?;
    let m = r.path().join("modules/sshd_off");
    std::fs::create_dir_all(&m)?;
    std::fs::write(
        m.join("module.yaml"),
        "description: test only - stops sshd\nservices:\n  - {name: ssh, enabled: true, state: stopped}\n",
    )?;
    lost_and_restored(&r, "sshd_off", "apply that stops sshd")?;
    ensure!(
        ssh_ok("validator-1", "root", "systemctl is-active ssh")? == "active",
        "ssh is not active again"
    );
    Ok(())
}

/// strata and its SSH connections are killed while it waits to confirm: nobody is left to
/// confirm or to roll back, and the node restores itself.
fn killed_in_window() -> Result<()> {
    apply_ok(&repo(), &["validator-1"])?;
    let before = ufw_rules("validator-1")?;
    let r = lockout_repo()?;
    strata_killed_at(
        r.path(),
        &[
            "apply",
            "--yes",
            "--skip-lockout-check",
            "--confirm-timeout",
            WINDOW,
            "validator-1",
        ],
        "confirming over a new SSH connection",
        Duration::ZERO,
    )?;
    let killed = Instant::now();
    // Really cut off: a new connection does not get in.
    ensure!(
        !reachable("validator-1"),
        "the node still admits new connections: the case proves nothing"
    );
    let mut back = None;
    while killed.elapsed() < Duration::from_secs(90) {
        if reachable("validator-1") {
            back = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let back = back.context("the node did not come back within 90 s")?;
    ensure!(
        ufw_rules("validator-1")? == before,
        "the old firewall is not back"
    );
    let by = ssh_ok(
        "validator-1",
        "root",
        "cat $(ls -d /var/lib/strata/backup/*/guard | sort | tail -n 1)/decided/by",
    )?;
    ensure!(by.trim() == "guard", "decided by {by:?}");
    println!(
        "    killed in the window: reachable again {:.1}s after strata was killed",
        back.as_secs_f64()
    );
    Ok(())
}
