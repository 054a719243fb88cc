//! `strata rollback`: a node returned to the revision it ran before.

use crate::common::*;
use crate::plan_apply_cases::{
    apply_ok, changes, expect_code, out, pair, plan_json, st_in, TempRepo,
};
use anyhow::{ensure, Result};
use std::collections::BTreeSet;
use std::time::Instant;

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "rollback::returns_files_services_and_firewall_then_repo_is_pending",
            &["validator-1"],
            rollback_after_good_apply,
        ),
        case_fresh(
            "rollback::revisions_pruned_to_keep_revisions",
            &["validator-1"],
            pruned_to_keep,
        ),
        case_fresh(
            "rollback::an_unreadable_record_is_said_kept_aside_and_prunes_no_revision",
            &["validator-1"],
            unreadable_record,
        ),
    ]
}

fn revision_dirs() -> Result<Vec<String>> {
    Ok(ssh_ok(
        "validator-1",
        "root",
        "ls /var/lib/strata/backup | grep -E '^[0-9]+$' | sort",
    )?
    .lines()
    .map(str::to_string)
    .collect())
}

/// A copy of the repo whose inventory keeps two revisions.
fn keeping_two() -> Result<TempRepo> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "defaults:\n",
        "defaults:\n  keep_revisions: 2\n",
    )?;
    Ok(r)
}

/// One apply of validator-1 per log level, in turn (from the repo's `info`).
fn applied_log_levels(r: &TempRepo, levels: &[&str]) -> Result<()> {
    let mut level = "info";
    for next in levels {
        r.edit(
            "base-config/vars.yaml",
            &format!("log_level: {level}"),
            &format!("log_level: {next}"),
        )?;
        apply_ok(r.path(), &["validator-1"])?;
        level = next;
    }
    Ok(())
}

/// A record cut short on the node (a hand edit, a crash): plan says so instead of a silent
/// "never applied"; the next apply keeps the unreadable file aside and, its history being
/// unknown, removes no stored revision (before, all but the new one went).
fn unreadable_record() -> Result<()> {
    let r = keeping_two()?;
    applied_log_levels(&r, &["debug", "warn"])?;
    let before = revision_dirs()?;
    ensure!(before.len() == 2, "stored revisions: {before:?}");
    let cut = ssh_ok(
        "validator-1",
        "root",
        "f=/var/lib/strata/state.json; head -c 100 $f > /root/cut && cat /root/cut > $f && sha256sum < $f",
    )?;
    let o = st_in(r.path(), &["plan", "validator-1"]);
    expect_code(&o, 0, "plan with an unreadable record")?;
    let t = out(&o);
    ensure!(
        t.contains("never applied by strata")
            && t.contains("/var/lib/strata/state.json is unreadable (EOF while parsing")
            && t.contains("removes none of the revisions stored for rollback"),
        "plan does not say the record is unreadable:\n{t}"
    );
    r.edit(
        "base-config/vars.yaml",
        "log_level: warn",
        "log_level: error",
    )?;
    apply_ok(r.path(), &["validator-1"])?;
    let after = revision_dirs()?;
    ensure!(
        after.len() == 3 && before.iter().all(|d| after.contains(d)),
        "stored revisions before {before:?}, after the apply {after:?}"
    );
    let kept = ssh_ok(
        "validator-1",
        "root",
        &format!(
            "sha256sum < /var/lib/strata/state.json.unreadable-{}",
            after[2]
        ),
    )?;
    ensure!(
        kept == cut,
        "the unreadable record was not kept aside as it was"
    );
    let t = out(&st_in(r.path(), &["plan", "validator-1"]));
    ensure!(
        !t.contains("unreadable") && !t.contains("never applied"),
        "the new record does not read back:\n{t}"
    );
    // The lost history is rebuilt from the stored revisions: the newer one of the two can be
    // returned to (keep_revisions 2: the new one and it), and a rollback to it works.
    let o = st_in(r.path(), &["rollback", "validator-1", "--list"]);
    expect_code(&o, 0, "rollback --list")?;
    let t = out(&o);
    let rebuilt = format!("revision {} (apply ", before[1]);
    ensure!(
        t.lines().any(|l| l.contains(&rebuilt)
            && l.contains("by unknown")
            && l.ends_with("[can return to]"))
            && t.lines()
                .any(|l| l.contains(&after[2]) && l.ends_with("[current]"))
            && t.lines().count() == 3,
        "rollback --list after an unreadable record:\n{t}"
    );
    let o = st_in(
        r.path(),
        &["rollback", "validator-1", "--to", &before[1], "--yes"],
    );
    expect_code(&o, 0, "rollback to a rebuilt revision")?;
    let level = ssh_ok(
        "validator-1",
        "root",
        "grep -E '^level = ' /etc/monad/node.toml",
    )?;
    ensure!(
        level.trim() == "level = \"warn\"",
        "after the rollback to {} the node's log level: {level}",
        before[1]
    );
    Ok(())
}

/// `defaults.keep_revisions: 2`: after three applies, two revisions (and their backups) are
/// left on the node, and the history names exactly them.
fn pruned_to_keep() -> Result<()> {
    let r = keeping_two()?;
    applied_log_levels(&r, &["debug", "warn", "error"])?;
    let dirs = ssh_ok(
        "validator-1",
        "root",
        "ls /var/lib/strata/backup | grep -E '^[0-9]+$' | sort | tr '\\n' ' '",
    )?;
    let dirs: Vec<&str> = dirs.split_whitespace().collect();
    let o = st_in(r.path(), &["rollback", "validator-1", "--list"]);
    let list = out(&o);
    let listed: Vec<&str> = list
        .lines()
        .filter_map(|l| l.trim().strip_prefix("revision "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure!(listed.len() == 2, "history: {list}");
    let mut sorted = listed.clone();
    sorted.sort();
    ensure!(dirs == sorted, "backup dirs {dirs:?} vs history {listed:?}");
    Ok(())
}

fn facts(node: &str) -> Result<String> {
    ssh_ok(
        node,
        "root",
        "sha256sum /etc/monad/node.toml /etc/motd; ls /etc/systemd/system/monad-validator.service.d/; systemctl show -p Environment monad-validator; systemctl is-active prometheus-node-exporter; systemctl is-enabled prometheus-node-exporter; ufw status | grep -c '^22/tcp .*10.77.0.0/16' || true",
    )
}

pub fn rollback_after_good_apply() -> Result<()> {
    // Revision A: the repo as it is.
    apply_ok(&repo(), &["validator-1"])?;
    let a = facts("validator-1")?;
    // Revision B: a file, a service and a firewall rule change, plus a module that adds a
    // unit drop-in (a new file) and takes over /etc/motd (a file that was there before).
    let r = TempRepo::new()?;
    let m = r.path().join("modules/extra");
    std::fs::create_dir_all(m.join("templates"))?;
    std::fs::write(
        m.join("module.yaml"),
        "description: test only - a drop-in and a taken-over file\nfiles:\n  - dest: /etc/systemd/system/monad-validator.service.d/debug.conf\n    template: debug.conf.j2\n    mode: \"0644\"\n    notify: [daemon-reload, restart monad-validator]\n  - dest: /etc/motd\n    template: motd.j2\n    mode: \"0644\"\n",
    )?;
    std::fs::write(
        m.join("templates/debug.conf.j2"),
        "[Service]\nEnvironment=STRATA_DEBUG=1\n",
    )?;
    std::fs::write(
        m.join("templates/motd.j2"),
        "managed by strata (revision B)\n",
    )?;
    r.edit(
        "inventory/lab.yaml",
        "modules: [validator,",
        "modules: [extra, validator,",
    )?;
    r.edit(
        "base-config/vars.yaml",
        "log_level: info",
        "log_level: debug",
    )?;
    r.edit(
        "base-config/vars.yaml",
        "allowed_cidrs: [any]",
        "allowed_cidrs: [any, \"10.77.0.0/16\"]",
    )?;
    r.edit(
        "modules/node_exporter/module.yaml",
        "enabled: true, state: started",
        "enabled: false, state: stopped",
    )?;
    let (_, b_plan) = plan_json(r.path(), &["validator-1"])?;
    let b_changes = changes(&b_plan, "validator-1");
    let want: BTreeSet<(String, String)> = [
        pair("change", "file:/etc/monad/node.toml"),
        pair("change", "service:prometheus-node-exporter"),
        pair("add", "ufw:allow 22/tcp from 10.77.0.0/16"),
        pair(
            "add",
            "file:/etc/systemd/system/monad-validator.service.d/debug.conf",
        ),
        pair("change", "file:/etc/motd"),
    ]
    .into_iter()
    .collect();
    ensure!(b_changes == want, "revision B's plan: {b_changes:?}");
    apply_ok(r.path(), &["validator-1"])?;
    let b = facts("validator-1")?;
    ensure!(b != a, "revision B changed nothing: {b}");
    ensure!(
        b.contains("inactive")
            && b.contains("disabled")
            && b.ends_with('1')
            && b.contains("debug.conf")
            && b.contains("STRATA_DEBUG=1"),
        "{b}"
    );

    let o = st_in(r.path(), &["rollback", "validator-1", "--list"]);
    expect_code(&o, 0, "rollback --list")?;
    let list = out(&o);
    ensure!(
        list.contains("[current]") && list.contains("[can return to]"),
        "{list}"
    );

    let t = Instant::now();
    let o = st_in(r.path(), &["rollback", "validator-1", "--yes"]);
    let took = t.elapsed();
    expect_code(&o, 0, "rollback")?;
    let s = out(&o);
    ensure!(s.contains("Rolling validator-1 back from revision"), "{s}");
    ensure!(s.contains("validator-1: applied 5 changes"), "{s}");
    ensure!(
        s.contains("- file:/etc/systemd/system/monad-validator.service.d/debug.conf")
            && s.contains("strata created it: remove")
            && s.contains("put back the version from before strata managed it"),
        "{s}"
    );
    ensure!(facts("validator-1")? == a, "not back to revision A");
    println!("    rollback of one node: {:.1}s", took.as_secs_f64());

    // The node matches the original repo again: nothing to do for it.
    let (code, _) = plan_json(&repo(), &["validator-1"])?;
    ensure!(code == Some(0), "plan of revision A's repo exit {code:?}");
    // Against revision B's repo, exactly B's changes are back, as pending (not drift).
    let (code, p) = plan_json(r.path(), &["validator-1"])?;
    ensure!(code == Some(2), "plan exit {code:?}");
    ensure!(changes(&p, "validator-1") == want, "{p}");
    for c in p["nodes"][0]["changes"].as_array().into_iter().flatten() {
        ensure!(c["cause"] == "pending", "not pending: {c}");
    }
    let o = st_in(r.path(), &["status", "validator-1"]);
    ensure!(out(&o).contains("rolled back to"), "{}", text(&o));
    // Nothing earlier than A: rolling back again goes to B (the previous revision), and a
    // revision that is not in the history is refused with a clear error.
    let o = st_in(
        r.path(),
        &["rollback", "validator-1", "--yes", "--to", "123"],
    );
    expect_code(&o, 1, "rollback to an unknown revision")?;
    ensure!(
        text(&o).contains("revision 123 is not in the node's history"),
        "{}",
        text(&o)
    );
    Ok(())
}
