//! Trust at the edges: the strange live states a production host gets into.

use crate::common::*;
use crate::plan_apply_cases::{expect_code, out, st_in, TempRepo};
use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::Instant;

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "edge::hung_probe_fails_that_node_after_its_deadline_even_under_the_lock",
            &["validator-2"],
            hung_probe,
        ),
        case_fresh(
            "edge::every_odd_live_state_planned_and_applied_as_planned",
            &["validator-1"],
            crate::edge_states::every_state,
        ),
        case_fresh(
            "edge::a_unit_named_by_its_alias_is_managed_through_its_unit",
            &["validator-1"],
            crate::edge_states::alias,
        ),
        case_fresh(
            "edge::failure_at_a_changes_step_rolls_the_node_back_next_node_untouched",
            &["validator-1", "validator-2"],
            crate::edge_states::injected_failures,
        ),
        case_fresh(
            "edge::drift_fuzzer_random_hand_edits_planned_exactly_and_repaired",
            &["validator-1", "validator-2", "validator-3"],
            crate::fuzz_cases::drift_fuzzer,
        ),
        case_fresh(
            "edge::ufw_rules_in_one_process_are_the_rules_ufw_writes_one_by_one",
            &["validator-1"],
            ufw_in_one_process,
        ),
        case_fresh(
            "edge::warm_connections_reused_only_for_the_same_settings",
            &["validator-1"],
            warm_connections,
        ),
        case_fresh(
            "edge::a_login_shell_that_prints_a_banner_is_not_read_as_the_node_state",
            &["validator-1"],
            chatty_login_shell,
        ),
        case_fresh(
            "edge::a_unit_stopped_by_its_start_limit_is_started_and_restarted_again",
            &["validator-1"],
            start_limit_hit,
        ),
        case_fresh(
            "edge::a_step_past_its_deadline_is_stopped_on_the_node_before_the_rollback",
            &["validator-1"],
            step_past_deadline,
        ),
    ]
}

/// root's ~/.bashrc and /etc/bash.bashrc print a banner on stdout (bash reads them for a
/// command run over ssh too) and set umask 077: plan, apply (the lock, the changes, the
/// confirm), status and the next plan read only the scripts' own output, and a directory
/// apply creates on the way is 0755 all the same.
fn chatty_login_shell() -> Result<()> {
    ssh_ok(
        "validator-1",
        "root",
        "cp -p /root/.bashrc /root/.bashrc.strata-test && cp -p /etc/bash.bashrc /etc/bash.bashrc.strata-test && sed -i '1i echo \"Welcome to validator-1: be careful\"; echo \"@strata-probe 1\"' /root/.bashrc && sed -i '1i echo \"== production host ==\"; umask 077' /etc/bash.bashrc",
    )?;
    let banner = ssh_ok("validator-1", "root", "true")?;
    let result = (|| -> Result<()> {
        ensure!(
            banner.contains("Welcome to validator-1") && banner.contains("== production host =="),
            "the banner is not printed for an ssh command: {banner:?}"
        );
        let (code, v) = crate::plan_apply_cases::plan_json(&repo(), &["validator-1"])?;
        ensure!(
            code == Some(2) && v["nodes"][0]["status"] == "planned",
            "plan with a banner: exit {code:?}: {v}"
        );
        let o = st_in(&repo(), &["apply", "--yes", "validator-1"]);
        expect_code(&o, 0, "apply with a banner")?;
        let (code, v) = crate::plan_apply_cases::plan_json(&repo(), &["validator-1"])?;
        ensure!(
            code == Some(0),
            "not converged after the apply: exit {code:?}: {v}"
        );
        // The session's umask 077 does not reach a parent directory apply creates.
        // (This test's own ssh gets the banner too: the mode is the last line.)
        let mode = ssh_ok("validator-1", "root", "stat -c %a /etc/promtail")?;
        let mode = mode.lines().last().unwrap_or("");
        ensure!(mode == "755", "/etc/promtail made {mode} under umask 077");
        let o = st_in(&repo(), &["status", "validator-1"]);
        expect_code(&o, 0, "status with a banner")?;
        ensure!(!out(&o).contains("unreachable"), "status: {}", out(&o));
        Ok(())
    })();
    ssh_ok(
        "validator-1",
        "root",
        "mv /root/.bashrc.strata-test /root/.bashrc && mv /etc/bash.bashrc.strata-test /etc/bash.bashrc",
    )?;
    result
}

/// chrony restarted too often (by hand, or by a crash loop) and systemd refuses to start it
/// again (Result start-limit-hit; burst 5 in 10 s): apply starts it when it sits failed (the
/// plan's start), and restarts it when five restarts just went through and it is active (the
/// handler's restart is the sixth): reset-failed, then once more, as systemd's hint says.
/// Before, such an apply failed and was rolled back.
fn start_limit_hit() -> Result<()> {
    crate::plan_apply_cases::apply_ok(&repo(), &["validator-1"])?;
    let restarts = |n: u32| {
        ssh_ok(
            "validator-1",
            "root",
            &format!("for i in $(seq {n}); do systemctl restart chrony 2>/dev/null; done; echo $(systemctl show -p ActiveState --value chrony) $(systemctl show -p Result --value chrony)"),
        )
    };
    // 1. Failed by its start limit: the plan starts it.
    let state = restarts(7)?;
    ensure!(
        state.trim() == "failed start-limit-hit",
        "chrony after 7 restarts: {state}"
    );
    let o = st_in(&repo(), &["apply", "--yes", "validator-1"]);
    expect_code(&o, 0, "apply that starts chrony past its start limit")?;
    ensure!(
        out(&o).contains("service:chrony [drift]  state: failed -> active"),
        "no start planned:\n{}",
        out(&o)
    );
    let active = ssh_ok("validator-1", "root", "systemctl is-active chrony || true")?;
    ensure!(
        active.trim() == "active",
        "chrony after the start: {active}"
    );
    // 2. Active with its limit used up: a config change's handler restarts it.
    let r = TempRepo::new()?;
    r.edit(
        "modules/chrony/templates/chrony.conf.j2",
        "\n",
        "\n# restarts chrony\n",
    )?;
    // (The counter starts afresh: step 1's own start is not in it.)
    ssh_ok("validator-1", "root", "systemctl reset-failed chrony")?;
    let state = restarts(5)?;
    ensure!(
        state.trim() == "active success",
        "chrony after 5 restarts: {state}"
    );
    let o = st_in(r.path(), &["apply", "--yes", "validator-1"]);
    expect_code(
        &o,
        0,
        "apply whose handler restarts chrony past its start limit",
    )?;
    let active = ssh_ok("validator-1", "root", "systemctl is-active chrony || true")?;
    ensure!(
        active.trim() == "active",
        "chrony after the restart: {active}"
    );
    Ok(())
}

/// A handler that takes longer than the handlers' deadline (a unit slow to start, as a
/// validator client replaying its state can be): the node ends the handlers script at the
/// deadline, so the rollback never runs beside it; the node is put back and said so.
fn step_past_deadline() -> Result<()> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "defaults:\n",
        "defaults:\n  timeouts: {handlers: 3}\n",
    )?;
    r.edit(
        "modules/chrony/templates/chrony.conf.j2",
        "\n",
        "\n# a change that restarts chrony\n",
    )?;
    crate::plan_apply_cases::apply_ok(&repo(), &["validator-1"])?;
    let slow = "/etc/systemd/system/chrony.service.d/slow.conf";
    let before = ssh_ok(
        "validator-1",
        "root",
        &format!("mkdir -p /etc/systemd/system/chrony.service.d && printf '[Service]\\nExecStartPre=/bin/sleep 6\\nTimeoutStartSec=60\\n' > {slow} && systemctl daemon-reload && sha256sum /etc/chrony/chrony.conf"),
    )?;
    let t = Instant::now();
    let o = st_in(r.path(), &["apply", "--yes", "validator-1"]);
    let took = t.elapsed().as_secs_f64();
    let cleanup = ssh(
        "validator-1",
        "root",
        &format!("rm -f {slow}; systemctl daemon-reload; systemctl restart chrony"),
    );
    println!("    apply with a 6 s restart under a 3 s handlers deadline took {took:.1}s");
    expect_code(&o, 1, "apply with a handler past its deadline")?;
    let t = out(&o);
    ensure!(
        t.contains("validator-1: FAILED, rolled back: handlers failed (exit code 124): stopped on the node at its deadline of 3s (at handler restart chrony)"),
        "the summary does not say the handlers were stopped at their deadline and rolled back:\n{t}"
    );
    ensure!(
        t.contains("rollback: previous files, firewall and services restored; healthy again"),
        "not healthy after the rollback:\n{t}"
    );
    ensure!(cleanup.status.success(), "cleanup failed");
    let after = ssh_ok(
        "validator-1",
        "root",
        "sha256sum /etc/chrony/chrony.conf; pgrep -x timeout || true",
    )?;
    ensure!(
        after.trim() == before.trim(),
        "chrony.conf not put back, or a script still running on the node:\nbefore {before}\nafter {after}"
    );
    Ok(())
}

/// ufw's files and status after a fresh apply of `node`, and what the wrapper logged.
fn firewall_after_apply(node: &str, wrapper: &str) -> Result<(String, Vec<String>)> {
    ssh_ok(
        node,
        "root",
        &format!(
            "printf '%s' {} > /usr/local/sbin/ufw && chmod 0755 /usr/local/sbin/ufw && rm -f /root/ufw-calls",
            format!("'{}'", wrapper.replace('\'', "'\\''"))
        ),
    )?;
    let o = st_in(&repo(), &["-vv", "apply", "--yes", node]);
    expect_code(&o, 0, "fresh apply")?;
    let (code, _) = crate::plan_apply_cases::plan_json(&repo(), &[node])?;
    ensure!(
        code == Some(0),
        "not converged after the apply: plan exit {code:?}"
    );
    let files = ssh_ok(
        node,
        "root",
        "cat /etc/ufw/user.rules /etc/ufw/user6.rules /etc/ufw/ufw.conf /etc/default/ufw; /usr/sbin/ufw status verbose",
    )?;
    let calls = ssh_ok(
        node,
        "root",
        "cat /root/ufw-calls 2>/dev/null; rm -f /usr/local/sbin/ufw /root/ufw-calls",
    )?;
    Ok((files, calls.lines().map(str::to_string).collect()))
}

/// apply adds a node's ufw rules through ufw's own code in one process. The same fresh
/// node applied twice: with a Python `ufw` first on PATH (the node's own ufw program, which
/// logs its calls: neither the rules nor the enable go through it), then with a shell
/// wrapper (not the Python program strata knows: every rule goes through the `ufw` command,
/// one by one, as an operator's wrapper would see them). Both converge, and ufw's rules,
/// config and status are byte for byte the same.
fn ufw_in_one_process() -> Result<()> {
    let node = "validator-1";
    let py = "#!/usr/bin/python3\nimport os, sys\nopen(\"/root/ufw-calls\", \"a\").write(\" \".join(sys.argv[1:]) + \"\\n\")\nos.execv(\"/usr/sbin/ufw\", [\"ufw\"] + sys.argv[1:])\n";
    let sh = "#!/bin/sh\necho \"$*\" >> /root/ufw-calls\nexec /usr/sbin/ufw \"$@\"\n";
    let (batched, calls) = firewall_after_apply(node, py)?;
    ensure!(
        calls.is_empty(),
        "in one process, nothing should run the ufw command: {calls:?}"
    );
    lab_ok(&["reset", node])?;
    let (one_by_one, calls) = firewall_after_apply(node, sh)?;
    let adds = calls.iter().filter(|c| c.starts_with("allow ")).count();
    ensure!(
        adds >= 10 && calls.last().map(String::as_str) == Some("--force enable"),
        "one by one, every rule should run the ufw command: {calls:?}"
    );
    ensure!(
        batched.contains("### tuple ### allow tcp 22 ") && batched.contains("Status: active"),
        "no ssh rule or not active:\n{batched}"
    );
    ensure!(
        batched == one_by_one,
        "ufw's state differs:\n--- in one process\n{batched}\n--- one by one\n{one_by_one}"
    );
    Ok(())
}

/// validator-2's `dpkg-query` hangs (as it does behind a held dpkg lock or a stuck mount):
/// the plan of validator-1 still finishes, validator-2 fails after its probe deadline, with
/// the step named, and the whole plan takes about the deadline, not forever.
fn hung_probe() -> Result<()> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "defaults:\n",
        "defaults:\n  timeouts: {probe: 4}\n",
    )?;
    ssh_ok(
        "validator-2",
        "root",
        "mv /usr/bin/dpkg-query /usr/bin/dpkg-query.real && printf '#!/bin/sh\\nexec sleep 600\\n' > /usr/bin/dpkg-query && chmod 0755 /usr/bin/dpkg-query",
    )?;
    let t = Instant::now();
    let o = st_in(
        r.path(),
        &["plan", "--format", "json", "validator-1", "validator-2"],
    );
    let took = t.elapsed().as_secs_f64();
    println!("    plan with a hung probe on validator-2 took {took:.1}s (deadline 4s)");
    expect_code(&o, 1, "plan with a hung probe")?;
    let v: Value = serde_json::from_slice(&o.stdout)?;
    let node = |n: &str| {
        v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["node"] == n))
            .cloned()
            .unwrap_or(Value::Null)
    };
    ensure!(
        node("validator-1")["status"] == "planned",
        "validator-1: {}",
        node("validator-1")
    );
    let err = node("validator-2")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        node("validator-2")["status"] == "failed"
            && err.contains("reading the live state")
            && err.contains("deadline of 4s"),
        "validator-2: {err}"
    );
    ensure!(took < 30.0, "the plan waited {took:.1}s for a hung node");

    // Now dpkg-query hangs only under the apply lock (a process above it holds the lock's
    // descriptor): the apply gathers, locks, and fails at the re-read after its deadline;
    // the hung read is ended and the lock is free for the next apply.
    ssh_ok(
        "validator-2",
        "root",
        "cat > /usr/bin/dpkg-query <<'EOF'\n#!/bin/sh\np=$PPID\nfor _ in 1 2 3 4 5; do\n  ls -l /proc/$p/fd 2>/dev/null | grep -q ' /var/lib/strata/lock$' && exec sleep 600\n  p=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$p/status 2>/dev/null); [ -n \"$p\" ] || break\ndone\nexec /usr/bin/dpkg-query.real \"$@\"\nEOF\nchmod 0755 /usr/bin/dpkg-query",
    )?;
    let t = Instant::now();
    let o = st_in(r.path(), &["apply", "--yes", "validator-2"]);
    let took = t.elapsed().as_secs_f64();
    println!("    apply with a read hung under the lock took {took:.1}s (deadline 4s)");
    expect_code(&o, 1, "apply with a read hung under the lock")?;
    ensure!(
        out(&o).contains("re-reading the node under the lock")
            && out(&o).contains("deadline of 4s"),
        "{}",
        text(&o)
    );
    ensure!(
        took < 30.0,
        "the apply waited {took:.1}s for a hung re-read"
    );
    // `timeout` ends the hung read (4 s, then KILL 2 s later); nothing of it is left.
    let mut left = String::new();
    for _ in 0..20 {
        left = ssh_ok("validator-2", "root", "pgrep -af '^sleep 600$' || true")?;
        if left.trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    ensure!(
        left.trim().is_empty(),
        "the hung read is still running: {left}"
    );
    ssh_ok(
        "validator-2",
        "root",
        "mv /usr/bin/dpkg-query.real /usr/bin/dpkg-query",
    )?;
    let o = st_in(r.path(), &["apply", "--yes", "validator-2"]);
    expect_code(&o, 0, "apply after the hung re-read: the lock is free")?;
    fresh(&["validator-2"])?;
    Ok(())
}

/// `ssh.persist`: a node's master outlives the command for the next one; a changed user,
/// known_hosts file, identity file or port never reuses it; `strata ssh close` leaves no ssh
/// process behind; CI (CI set) keeps nothing unless STRATA_SSH_PERSIST=1.
pub fn warm_connections() -> Result<()> {
    use std::process::{Command, Stdio};
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "defaults:\n  ssh:\n",
        "defaults:\n  ssh:\n    persist: 60\n",
    )?;
    let run = tempfile::tempdir()?;
    let kept = run.path().join("strata-ssh");
    let strata = |args: &[&str], force: bool| {
        let mut c = Command::new(strata_bin());
        c.arg("--repo")
            .arg(r.path())
            .args(["--inventory", "inventory/lab.yaml"])
            .args(args)
            .env("XDG_RUNTIME_DIR", run.path())
            // A master of one command (not kept) lives in a temporary directory: this one.
            .env("TMPDIR", run.path())
            .env("STRATA_TELEGRAM_BOT_TOKEN", "t-canary")
            .env("STRATA_DISCORD_WEBHOOK_URL", "https://discord.invalid/x")
            .env("STRATA_SMTP_PASSWORD", "p-canary")
            .env("STRATA_PAGERDUTY_ROUTING_KEY", "pd-canary")
            .env("STRATA_HEARTBEAT_URL", "https://heartbeat.invalid/x")
            .env("CI", "true")
            .stdin(Stdio::null());
        if force {
            c.env("STRATA_SSH_PERSIST", "1");
        } else {
            c.env_remove("STRATA_SSH_PERSIST");
        }
        c.output().expect("run strata")
    };
    // ssh masters whose control socket lives in this test's directory.
    let masters = || -> Vec<String> {
        let o = Command::new("pgrep")
            .args(["-f", &format!("ssh .*{}", kept.display())])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let ctl_files = || -> usize {
        std::fs::read_dir(&kept)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ctl"))
                    .count()
            })
            .unwrap_or(0)
    };
    // In CI, nothing is kept unless asked.
    let o = strata(&["plan", "validator-1"], false);
    ensure!(o.status.code() == Some(0), "plan: {}", text(&o));
    ensure!(
        masters().is_empty() && ctl_files() == 0,
        "kept a master in CI"
    );

    // Kept, then reused: the same master process serves the second plan.
    let o = strata(&["plan", "validator-1"], true);
    ensure!(o.status.code() == Some(0), "plan: {}", text(&o));
    let first = masters();
    ensure!(
        first.len() == 1 && ctl_files() == 1,
        "after one plan: masters {first:?}, {} files",
        ctl_files()
    );
    let mode = std::fs::metadata(&kept)?.permissions();
    ensure!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777 == 0o700,
        "kept directory mode {:o}",
        std::os::unix::fs::PermissionsExt::mode(&mode)
    );
    let o = strata(&["plan", "validator-1"], true);
    ensure!(o.status.code() == Some(0), "second plan: {}", text(&o));
    ensure!(
        masters() == first,
        "the second plan did not reuse the master: {:?} then {:?}",
        first,
        masters()
    );
    // Another user: another master, never the old one.
    r.edit(
        "inventory/lab.yaml",
        "    user: root\n",
        "    user: deploy\n    become: sudo\n",
    )?;
    let o = strata(&["plan", "validator-1"], true);
    ensure!(o.status.code() == Some(0), "plan as deploy: {}", text(&o));
    ensure!(
        masters().len() == 2 && ctl_files() == 2,
        "a changed user reused a master: {:?}",
        masters()
    );
    // Another known_hosts file: a third.
    std::fs::copy(
        repo().join(".lab/known_hosts"),
        r.path().join("known_hosts.copy"),
    )?;
    r.edit(
        "inventory/lab.yaml",
        "known_hosts: .lab/known_hosts",
        "known_hosts: known_hosts.copy",
    )?;
    let o = strata(&["plan", "validator-1"], true);
    ensure!(
        o.status.code() == Some(0),
        "plan with another known_hosts: {}",
        text(&o)
    );
    ensure!(
        masters().len() == 3,
        "a changed known_hosts reused a master: {:?}",
        masters()
    );
    // Another identity file (the same key, elsewhere): a fourth.
    let key = r.path().join("id.copy");
    std::fs::copy(repo().join(".lab/ssh/id_ed25519"), &key)?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    r.edit(
        "inventory/lab.yaml",
        "identity_file: .lab/ssh/id_ed25519",
        "identity_file: id.copy",
    )?;
    let o = strata(&["plan", "validator-1"], true);
    ensure!(
        o.status.code() == Some(0),
        "plan with another key: {}",
        text(&o)
    );
    ensure!(
        masters().len() == 4,
        "a changed identity file reused a master: {:?}",
        masters()
    );
    // Another port: sshd answers on 2222 too; a fifth master, and it is the one on 2222 (a
    // reused master would still be talking to port 22).
    struct ResetAfter;
    impl Drop for ResetAfter {
        fn drop(&mut self) {
            let _ = lab(&["reset", "validator-1"]);
        }
    }
    let _reset = ResetAfter;
    ssh_ok(
        "validator-1",
        "root",
        "printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/00-e2e-port.conf && systemctl restart ssh",
    )?;
    let pinned = std::fs::read_to_string(repo().join(".lab/known_hosts"))?
        .lines()
        .filter_map(|l| l.strip_prefix("10.77.1.2 "))
        .map(|k| format!("[10.77.1.2]:2222 {k}\n"))
        .collect::<String>();
    ensure!(!pinned.is_empty(), "validator-1 not in .lab/known_hosts");
    let mut kh = std::fs::OpenOptions::new()
        .append(true)
        .open(r.path().join("known_hosts.copy"))?;
    std::io::Write::write_all(&mut kh, pinned.as_bytes())?;
    r.edit("inventory/lab.yaml", "    port: 22\n", "    port: 2222\n")?;
    let before = masters();
    let o = strata(&["plan", "validator-1"], true);
    ensure!(
        o.status.code() == Some(0),
        "plan on port 2222: {}",
        text(&o)
    );
    let new: Vec<String> = masters()
        .into_iter()
        .filter(|m| !before.contains(m))
        .collect();
    let argv = |pid: &str| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default()
    };
    ensure!(
        new.len() == 1 && argv(&new[0]).contains("2222"),
        "a changed port reused a master: new {:?} ({})",
        new,
        new.iter().map(|p| argv(p)).collect::<Vec<_>>().join("; ")
    );
    // `strata ssh close`: every kept master ends.
    let o = strata(&["ssh", "close"], true);
    ensure!(
        o.status.code() == Some(0) && text(&o).contains("closed 5 kept SSH connections"),
        "ssh close: {}",
        text(&o)
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    ensure!(
        masters().is_empty() && ctl_files() == 0,
        "left behind: {:?}",
        masters()
    );
    // An apply (not kept, as in CI): the master its probe started ends with the command, its
    // directory too, and so does the confirm's new connection. (On port 22: the firewall the
    // apply turns on admits only that.)
    r.edit("inventory/lab.yaml", "    port: 2222\n", "    port: 22\n")?;
    let o = strata(&["apply", "--yes", "validator-1"], false);
    ensure!(o.status.code() == Some(0), "apply: {}", text(&o));
    let left: Vec<_> = std::fs::read_dir(run.path())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    let any_ssh = Command::new("pgrep")
        .args(["-af", &format!("ssh .*{}", run.path().display())])
        .output()?;
    let any_ssh = String::from_utf8_lossy(&any_ssh.stdout).to_string();
    ensure!(
        any_ssh.trim().is_empty() && ctl_files() == 0 && left.iter().all(|n| n == "strata-ssh"),
        "kept a master in CI: {any_ssh}, {left:?}"
    );
    Ok(())
}
