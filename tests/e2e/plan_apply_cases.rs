//! End-to-end: `strata plan` and `strata apply` against real lab nodes over real SSH.

use crate::common::*;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Canary secrets: they must never appear in any output.
pub const CANARY_TELEGRAM: &str = "canary-telegram-7f3a9";
pub const CANARY_DISCORD: &str = "https://discord.invalid/canary-webhook-51c2";
pub const CANARY_SMTP: &str = "canary-smtp-e04b";
pub const CANARY_PAGERDUTY: &str = "canary-pagerduty-3d8e";
pub const CANARY_HEARTBEAT: &str = "https://heartbeat.invalid/ping/canary-6a1f";

/// The five secrets the example reads from the environment, set to the canaries.
pub fn canary_envs() -> [(&'static str, &'static str); 5] {
    [
        ("STRATA_TELEGRAM_BOT_TOKEN", CANARY_TELEGRAM),
        ("STRATA_DISCORD_WEBHOOK_URL", CANARY_DISCORD),
        ("STRATA_SMTP_PASSWORD", CANARY_SMTP),
        ("STRATA_PAGERDUTY_ROUTING_KEY", CANARY_PAGERDUTY),
        ("STRATA_HEARTBEAT_URL", CANARY_HEARTBEAT),
    ]
}

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "plan::fresh_node_is_all_add_exit_2",
            &["validator-1"],
            fresh_node_plan,
        ),
        case_fresh(
            "apply::converges_then_second_apply_is_a_noop",
            &["validator-1", "validator-2"],
            converge_then_noop,
        ),
        case_fresh(
            "plan::each_hand_edit_reported_exactly",
            &["validator-1"],
            hand_edits,
        ),
        case_fresh(
            "plan::unreachable_nodes_and_host_key_mismatch",
            &["validator-3"],
            unreachable,
        ),
        case_fresh(
            "plan::secrets_never_printed",
            &["validator-1"],
            secrets_redacted,
        ),
        case_fresh(
            "apply::a_node_whose_master_ended_while_it_waited_its_turn_is_reconnected",
            &["validator-1", "validator-2"],
            master_ended_while_waiting,
        ),
        case_fresh(
            "secrets::age_file_token_reaches_the_node_and_nothing_else",
            &["validator-1"],
            age_secret_file,
        ),
        case_fresh(
            "apply::failed_validation_leaves_live_files_untouched",
            &["validator-1", "validator-2"],
            validation_failure,
        ),
        case_fresh(
            "apply::failed_health_check_stops_the_rollout",
            &["validator-1", "validator-2", "validator-3"],
            health_failure,
        ),
        case_fresh(
            "apply::lock_held_elsewhere_names_the_holder",
            &["validator-1"],
            lock_held,
        ),
        case_fresh(
            "apply::stale_saved_plan_is_refused",
            &["validator-1"],
            stale_plan,
        ),
        case_fresh(
            "apply::connection_cut_mid_apply_leaves_old_or_new",
            &["validator-1"],
            connection_cut,
        ),
        case_fresh(
            "apply::serial_one_restarts_validators_one_at_a_time",
            &["validator-1", "validator-2", "validator-3"],
            serial_restarts,
        ),
        case_fresh(
            "apply::failed_health_gate_rolls_the_node_back",
            &["validator-1", "validator-2", "validator-3"],
            rollback_on_failed_health,
        ),
        case_fresh(
            "plan::firewall_that_locks_strata_out_is_refused",
            &["validator-1"],
            lockout_refused,
        ),
    ]
}

/// strata with the canary secrets, against `repo` and the lab inventory.
pub fn st_in(repo: &Path, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("--repo")
        .arg(repo)
        .args(["--inventory", "inventory/lab.yaml"])
        .args(args)
        .envs(canary_envs())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

fn st(args: &[&str]) -> Output {
    st_in(&repo(), args)
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn expect_code(o: &Output, code: i32, what: &str) -> Result<()> {
    if o.status.code() != Some(code) {
        bail!(
            "{what}: expected exit {code}, got {:?}\n{}",
            o.status.code(),
            text(o)
        );
    }
    Ok(())
}

pub fn apply_ok(repo: &Path, nodes: &[&str]) -> Result<String> {
    let mut args = vec!["apply", "--yes"];
    args.extend_from_slice(nodes);
    let o = st_in(repo, &args);
    expect_code(&o, 0, "apply")?;
    Ok(out(&o))
}

pub fn plan_json(repo: &Path, nodes: &[&str]) -> Result<(Option<i32>, Value)> {
    let mut args = vec!["plan", "--format", "json", "--detailed-exitcode"];
    args.extend_from_slice(nodes);
    let o = st_in(repo, &args);
    let v: Value =
        serde_json::from_slice(&o.stdout).with_context(|| format!("plan JSON:\n{}", text(&o)))?;
    Ok((o.status.code(), v))
}

pub fn node<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|x| x["node"] == name))
        .unwrap_or(&Value::Null)
}

/// (action, id) of every change in a node's plan.
pub fn changes(plan: &Value, name: &str) -> BTreeSet<(String, String)> {
    node(plan, name)["changes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["action"].as_str().unwrap_or("").to_string(),
                        c["id"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn pair(a: &str, id: &str) -> (String, String) {
    (a.to_string(), id.to_string())
}

/// A throwaway copy of the repo (config only) whose lab state is the real lab's.
pub struct TempRepo(tempfile::TempDir);

impl TempRepo {
    pub fn new() -> Result<TempRepo> {
        let t = tempfile::tempdir()?;
        for d in ["inventory", "base-config", "nodes", "modules"] {
            let st = Command::new("cp")
                .arg("-a")
                .arg(repo().join(d))
                .arg(t.path())
                .status()?;
            ensure!(st.success(), "copying {d}");
        }
        std::os::unix::fs::symlink(repo().join(".lab"), t.path().join(".lab"))?;
        Ok(TempRepo(t))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn edit(&self, rel: &str, from: &str, to: &str) -> Result<()> {
        let p: PathBuf = self.path().join(rel);
        let s = std::fs::read_to_string(&p)?;
        ensure!(s.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(&p, s.replacen(from, to, 1))?;
        Ok(())
    }
}

pub fn fresh_node_plan() -> Result<()> {
    let o = st(&["plan", "--detailed-exitcode", "validator-1"]);
    expect_code(&o, 2, "plan of a fresh node")?;
    let t = out(&o);
    for want in [
        "+ file:/etc/monad/node.toml",
        "+ file:/etc/systemd/system/monad-validator.service",
        "+ user:monad",
        "+ ufw:allow 22/tcp from any",
    ] {
        ensure!(t.contains(want), "missing `{want}` in:\n{t}");
    }
    ensure!(
        t.lines()
            .any(|l| l.starts_with("validator-1: ") && l.ends_with("0 to remove")),
        "no summary line:\n{t}"
    );
    // For people: a new file is one line, so a fresh node's plan fits on a screen; the
    // missing key files are said once, at the end; `--diff full` prints every new file.
    let lines = t.lines().count();
    println!("    fresh node plan: {lines} lines");
    // Six package-default configs are replaced (their diffs cut at 12 lines each), about
    // 30 resources are new: one line each.
    ensure!(
        lines <= 140 && !t.contains("+++ /etc/monad/node.toml"),
        "{lines} lines:\n{t}"
    );
    ensure!(
        t.contains("Needs you (strata will not do it):")
            && t.matches("key_file:/etc/monad/keys/secp.key is missing")
                .count()
                == 1,
        "{t}"
    );
    let full = out(&st(&["--diff", "full", "plan", "validator-1"]));
    ensure!(
        full.lines().count() > lines + 100 && full.contains("+++ /etc/monad/node.toml"),
        "--diff full:\n{full}"
    );
    let (_, v) = plan_json(&repo(), &["validator-1"])?;
    let n = node(&v, "validator-1");
    ensure!(
        n["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["action"] == "add")),
        "no adds"
    );
    ensure!(
        n["live_fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 64),
        "fingerprint"
    );
    Ok(())
}

pub fn converge_then_noop() -> Result<()> {
    let (_, fresh) = plan_json(&repo(), &["validator-1"])?;
    let declared_rules = changes(&fresh, "validator-1")
        .iter()
        .filter(|(a, id)| a == "add" && id.starts_with("ufw:"))
        .count();
    let first = apply_ok(&repo(), &["validator-1", "validator-2"])?;
    ensure!(
        first.contains("validator-1: applied") && first.contains("validator-2: applied"),
        "{first}"
    );
    for n in ["validator-1", "validator-2"] {
        let active = ssh_ok(n, "root", "systemctl is-active monad-validator prometheus prometheus-node-exporter prometheus-alertmanager chrony")?;
        ensure!(
            active.lines().all(|l| l == "active"),
            "{n}: services not all active:\n{active}"
        );
        let ufw = ssh_ok(
            n,
            "root",
            "ufw status | head -n1; ufw show added | tail -n +2 | wc -l",
        )?;
        ensure!(ufw.starts_with("Status: active"), "{n}: {ufw}");
        let rules: usize = ufw.lines().last().unwrap_or("0").trim().parse()?;
        ensure!(
            rules == declared_rules,
            "{n}: {rules} ufw rules, {declared_rules} declared"
        );
        let status = ssh_ok(n, "root", "curl -fsS http://127.0.0.1:8080/status")?;
        let v: Value = serde_json::from_str(&status)?;
        ensure!(v["block_height"].as_u64().is_some(), "{status}");
        // SSH still reachable, as root and as the sudo user.
        ssh_ok(n, "deploy", "sudo -n true")?;
        let rec: Value =
            serde_json::from_str(&ssh_ok(n, "root", "cat /var/lib/strata/state.json")?)?;
        ensure!(
            rec["desired_fingerprint"]
                .as_str()
                .is_some_and(|f| f.len() == 64),
            "record: {rec}"
        );
    }
    let second = apply_ok(&repo(), &["validator-1", "validator-2"])?;
    ensure!(second.contains("No changes."), "second apply:\n{second}");
    ensure!(
        !second.contains(" ran ")
            && !second.contains(": applied")
            && !second.contains("Apply summary"),
        "second apply ran something:\n{second}"
    );
    let (code, v) = plan_json(&repo(), &["validator-1", "validator-2"])?;
    ensure!(code == Some(0), "plan after apply exited {code:?}: {v}");
    let p = st(&["plan", "validator-1"]);
    ensure!(
        out(&p).contains("no changes: the node matches the configuration"),
        "{}",
        text(&p)
    );
    // A converged fleet's plan is a few lines, ending in a sentence.
    let both = out(&st(&["plan", "validator-1", "validator-2"]));
    ensure!(
        both.lines().count() <= 16 && both.contains("Plan: no changes on 2 nodes."),
        "converged plan:\n{both}"
    );
    Ok(())
}

pub fn hand_edits() -> Result<()> {
    apply_ok(&repo(), &["validator-1"])?;
    ssh_ok(
        "validator-1",
        "root",
        "echo '# hand edit' >> /etc/chrony/chrony.conf; chmod 0600 /etc/logrotate.d/monad; \
         chown nobody /etc/monad/node.toml; rm /etc/default/prometheus-node-exporter; \
         systemctl stop prometheus-alertmanager; systemctl disable --quiet prometheus-node-exporter; \
         ufw allow 3306/tcp >/dev/null",
    )?;
    let (code, v) = plan_json(&repo(), &["validator-1"])?;
    ensure!(code == Some(2), "exit {code:?}");
    let got = changes(&v, "validator-1");
    let want: BTreeSet<_> = [
        pair("change", "file:/etc/chrony/chrony.conf"),
        pair("change", "file:/etc/logrotate.d/monad"),
        pair("change", "file:/etc/monad/node.toml"),
        pair("add", "file:/etc/default/prometheus-node-exporter"),
        pair("change", "service:prometheus-alertmanager"),
        pair("change", "service:prometheus-node-exporter"),
        pair("remove", "ufw:allow 3306/tcp from any"),
    ]
    .into();
    ensure!(
        got == want,
        "plan reported\n{got:#?}\nexpected exactly\n{want:#?}"
    );
    let n = node(&v, "validator-1");
    let find = |id: &str| {
        n["changes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    ensure!(
        find("file:/etc/chrony/chrony.conf")["diff"]
            .as_str()
            .is_some_and(|d| d.contains("-# hand edit")),
        "diff"
    );
    ensure!(
        find("file:/etc/logrotate.d/monad")["details"][0] == "mode 0600 -> 0644",
        "{}",
        find("file:/etc/logrotate.d/monad")
    );
    ensure!(
        find("file:/etc/monad/node.toml")["details"][0] == "owner nobody:monad -> root:monad",
        "{}",
        find("file:/etc/monad/node.toml")
    );

    // Converge, then turn the firewall off: exactly that is reported.
    apply_ok(&repo(), &["validator-1"])?;
    ssh_ok("validator-1", "root", "ufw disable >/dev/null")?;
    let (code, v) = plan_json(&repo(), &["validator-1"])?;
    ensure!(code == Some(2), "exit {code:?}");
    let got = changes(&v, "validator-1");
    ensure!(
        got == [pair("change", "firewall:ufw")].into(),
        "after ufw disable: {got:?}"
    );
    Ok(())
}

fn unreachable() -> Result<()> {
    // validator-2 gets validator-1's host key in a copied known_hosts: a mismatch.
    let r = TempRepo::new()?;
    std::fs::remove_file(r.path().join(".lab"))?;
    std::fs::create_dir(r.path().join(".lab"))?;
    std::os::unix::fs::symlink(repo().join(".lab/ssh"), r.path().join(".lab/ssh"))?;
    let kh = std::fs::read_to_string(repo().join(".lab/known_hosts"))?;
    let v1_keys: Vec<&str> = kh.lines().filter(|l| l.starts_with("10.77.1.2 ")).collect();
    ensure!(
        !v1_keys.is_empty(),
        "no known_hosts line for validator-1:\n{kh}"
    );
    let mut forged: String = kh
        .lines()
        .filter(|l| !l.starts_with("10.77.2.2 "))
        .map(|l| format!("{l}\n"))
        .collect();
    for k in v1_keys {
        forged.push_str(&k.replacen("10.77.1.2", "10.77.2.2", 1));
        forged.push('\n');
    }
    std::fs::write(r.path().join(".lab/known_hosts"), forged)?;
    // A closed loopback port: nothing listens on 127.0.0.1:1.
    let inv = std::fs::read_to_string(r.path().join("inventory/lab.yaml"))?;
    std::fs::write(
        r.path().join("inventory/lab.yaml"),
        format!("{inv}  ghost-1:\n    address: 127.0.0.1\n    groups: [validators]\n    region: lab-z\n    provider: nspawn\n    ssh: {{port: 1}}\n"),
    )?;
    // And validator-3's sshd is stopped.
    ssh_ok(
        "validator-3",
        "root",
        "systemctl stop ssh.service ssh.socket 2>/dev/null; true",
    )?;
    let o = st_in(r.path(), &["plan", "--format", "json"]);
    expect_code(&o, 1, "plan with unreachable nodes")?;
    let v: Value = serde_json::from_slice(&o.stdout)?;
    ensure!(
        node(&v, "validator-1")["status"] == "planned",
        "validator-1 should still be planned: {}",
        node(&v, "validator-1")
    );
    let err = |n: &str| node(&v, n)["error"].as_str().unwrap_or("").to_string();
    ensure!(
        node(&v, "validator-2")["status"] == "failed" && err("validator-2").contains("host key"),
        "validator-2: {}",
        err("validator-2")
    );
    ensure!(
        err("ghost-1").contains("refused"),
        "ghost-1: {}",
        err("ghost-1")
    );
    ensure!(
        node(&v, "validator-3")["status"] == "failed" && err("validator-3").contains("unreachable"),
        "validator-3: {}",
        err("validator-3")
    );
    fresh(&["validator-3"])?;
    Ok(())
}

fn secrets_redacted() -> Result<()> {
    let canaries = [
        CANARY_TELEGRAM,
        CANARY_DISCORD,
        CANARY_SMTP,
        CANARY_PAGERDUTY,
        CANARY_HEARTBEAT,
    ];
    let mut outputs = Vec::new();
    for args in [
        vec!["plan", "validator-1"],
        vec!["plan", "--format", "json", "validator-1"],
        vec!["render", "validator-1"],
        vec!["vars", "validator-1"],
    ] {
        let o = st(&args);
        ensure!(
            o.status.code().is_some_and(|c| c != 101),
            "{args:?} crashed"
        );
        outputs.push((args, o));
    }
    apply_ok(&repo(), &["validator-1"])?;
    // The secret file's content is on the node, in full.
    let live = ssh_ok(
        "validator-1",
        "root",
        "cat /etc/prometheus/alertmanager.yml",
    )?;
    ensure!(
        live.contains(CANARY_TELEGRAM),
        "the secret must reach the node"
    );
    // Change it by hand: the plan says it changed, and nothing about the content.
    ssh_ok(
        "validator-1",
        "root",
        "sed -i 's/canary/kanary/' /etc/prometheus/alertmanager.yml",
    )?;
    let o = st(&["plan", "validator-1"]);
    ensure!(out(&o).contains("secret content changed"), "{}", text(&o));
    ensure!(
        !out(&o).contains("kanary"),
        "live secret content printed:\n{}",
        text(&o)
    );
    outputs.push((vec!["plan after edit"], o));
    for (args, o) in &outputs {
        let all = text(o);
        for c in canaries {
            ensure!(
                !all.contains(c),
                "`{c}` appears in the output of {args:?}:\n{all}"
            );
        }
    }
    Ok(())
}

/// The Telegram token kept in an age file in the repo (as sops/age users keep it): plan,
/// plan -o, JSON and apply work with the identity set and print nothing of it (nor write it
/// into the saved plan or the audit log); the node's alertmanager.yml has it; without the
/// identity, plan fails naming the file and changes nothing.
fn age_secret_file() -> Result<()> {
    use age::secrecy::ExposeSecret;
    const AGE_TOKEN: &str = "987654:AGE-telegram-canary-b71e";
    let r = TempRepo::new()?;
    r.edit(
        "modules/alertmanager/templates/alertmanager.yml.j2",
        r#"bot_token: {{ q(env("STRATA_TELEGRAM_BOT_TOKEN")) }}"#,
        r#"bot_token: {{ q(secret_file("secrets/telegram.age") | trim) }}"#,
    )?;
    let id = age::x25519::Identity::generate();
    let armored = age::encrypt_and_armor(&id.to_public(), format!("{AGE_TOKEN}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("age: {e}"))?;
    std::fs::create_dir_all(r.path().join("secrets"))?;
    std::fs::write(r.path().join("secrets/telegram.age"), armored)?;
    let key = id.to_string().expose_secret().to_string();
    let run = |args: &[&str], identity: bool| -> Output {
        let mut c = Command::new(strata_bin());
        c.arg("--repo")
            .arg(r.path())
            .args(["--inventory", "inventory/lab.yaml"])
            .args(args)
            .envs(canary_envs())
            .env_remove("STRATA_TELEGRAM_BOT_TOKEN")
            .env_remove("STRATA_AGE_IDENTITY")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        if identity {
            c.env("STRATA_AGE_IDENTITY", &key);
        }
        c.output().expect("run strata")
    };
    // Without the identity: an error naming the file; nothing reaches the node.
    let o = run(&["plan", "validator-1"], false);
    expect_code(&o, 1, "plan without the age identity")?;
    ensure!(
        text(&o).contains("secrets/telegram.age") && text(&o).contains("no age identity"),
        "{}",
        text(&o)
    );
    let before = sha("validator-1", "/etc/prometheus/alertmanager.yml")?;
    let o = run(&["apply", "--yes", "validator-1"], false);
    expect_code(&o, 1, "apply without the age identity")?;
    ensure!(
        sha("validator-1", "/etc/prometheus/alertmanager.yml")? == before,
        "alertmanager.yml changed by an apply that could not render"
    );
    // With it.
    let plan_file = r.path().join("saved.plan");
    let mut outputs = vec![
        ("plan", run(&["plan", "validator-1"], true)),
        (
            "plan json",
            run(&["plan", "--format", "json", "validator-1"], true),
        ),
        ("render", run(&["render", "validator-1"], true)),
        (
            "plan -o",
            run(
                &["plan", "-o", plan_file.to_str().unwrap(), "validator-1"],
                true,
            ),
        ),
    ];
    let o = run(&["apply", "--yes", "--format", "json", "validator-1"], true);
    expect_code(&o, 0, "apply with the age identity")?;
    outputs.push(("apply --format json", o));
    let live = ssh_ok(
        "validator-1",
        "root",
        "cat /etc/prometheus/alertmanager.yml",
    )?;
    ensure!(
        live.contains(&format!("bot_token: '{AGE_TOKEN}'")),
        "the age file's token did not reach the node:\n{live}"
    );
    let o = run(&["plan", "--detailed-exitcode", "validator-1"], true);
    expect_code(&o, 0, "plan after the apply")?;
    outputs.push(("plan after apply", o));
    for (what, o) in &outputs {
        ensure!(
            !text(o).contains(AGE_TOKEN) && !text(o).contains("AGE-telegram"),
            "the token appears in the output of {what}:\n{}",
            text(o)
        );
    }
    // Nothing strata wrote in the repo holds it: the saved plan, the audit log, any record.
    let grep = Command::new("grep")
        .args([
            "-rl",
            "AGE-telegram",
            "--exclude-dir=.lab",
            "--exclude=*.j2",
        ])
        .arg(r.path())
        .output()?;
    ensure!(
        grep.stdout.is_empty(),
        "the token is written in: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    ensure!(
        r.path().join(".strata/audit.jsonl").exists() && plan_file.exists(),
        "no audit log or saved plan to check"
    );
    // Nor in the record strata keeps on the node.
    let rec = ssh_ok(
        "validator-1",
        "root",
        "grep -l AGE-telegram /var/lib/strata/state.json || true",
    )?;
    ensure!(rec.is_empty(), "the token is in the node's record: {rec}");
    Ok(())
}

/// serial 1: validator-2 waits while validator-1 applies (~10 s). With the masters' idle
/// time cut to 2 s its master ends meanwhile (as a real one does after 60 s, on a rollout of
/// a few nodes): strata reconnects it before its turn instead of failing it.
fn master_ended_while_waiting() -> Result<()> {
    let o = Command::new(strata_bin())
        .arg("--repo")
        .arg(repo())
        .args(["--inventory", "inventory/lab.yaml", "-vv", "apply", "--yes"])
        .args(["validator-1", "validator-2"])
        .env("STRATA_SSH_MASTER_IDLE_SECS", "2")
        .envs(canary_envs())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    expect_code(&o, 0, "serial apply with 2 s master idle time")?;
    ensure!(
        err.contains("validator-2")
            && err.contains("the master ended while the node waited: reconnecting"),
        "validator-2's master did not end while it waited (the case proves nothing):\n{}",
        text(&o)
    );
    for n in ["validator-1", "validator-2"] {
        ensure!(
            out(&o).contains(&format!("{n}: applied")),
            "{n} not applied:\n{}",
            out(&o)
        );
    }
    let o = st(&["plan", "--detailed-exitcode", "validator-1", "validator-2"]);
    expect_code(&o, 0, "plan after the apply")?;
    Ok(())
}

pub fn sha(node: &str, path: &str) -> Result<String> {
    ssh_ok(
        node,
        "root",
        &format!("sha256sum {path} 2>/dev/null || echo absent"),
    )
}

fn validation_failure() -> Result<()> {
    let r = TempRepo::new()?;
    // promtool rejects this duration.
    r.edit(
        "base-config/vars.yaml",
        "scrape_interval: 15s",
        "scrape_interval: 15 seconds",
    )?;
    let before = sha("validator-1", "/etc/prometheus/prometheus.yml")?;
    // The validators' own temp directories (mktemp -d in /tmp), before and after.
    let tmp_dirs = || ssh_ok("validator-1", "root", "ls -d /tmp/tmp.* 2>/dev/null | sort");
    let tmp_before = tmp_dirs()?;
    let o = st_in(r.path(), &["apply", "--yes", "validator-1", "validator-2"]);
    expect_code(&o, 1, "apply with an invalid prometheus.yml")?;
    let t = out(&o);
    ensure!(
        t.contains("validator-1: FAILED")
            && t.contains("validation of /etc/prometheus/prometheus.yml"),
        "{t}"
    );
    // promtool's own words, though every validator ran at once.
    ensure!(
        t.contains("  | ") && t.contains("not a valid duration string: \"15 seconds\""),
        "the validator's output is not shown:\n{t}"
    );
    ensure!(
        tmp_dirs()? == tmp_before,
        "validator directories left in /tmp: {}",
        tmp_dirs()?
    );
    ensure!(
        ssh_ok(
            "validator-1",
            "root",
            "find /etc -name '.*.strata-*' | wc -l"
        )? == "0",
        "staged temp files left behind"
    );
    ensure!(t.contains("validator-2: untouched"), "{t}");
    ensure!(
        sha("validator-1", "/etc/prometheus/prometheus.yml")? == before,
        "the live prometheus.yml changed"
    );
    // No file was renamed into place on validator-1 (all are validated first) ...
    ensure!(
        sha("validator-1", "/etc/monad/node.toml")?.contains("absent"),
        "node.toml was written despite a failed validation"
    );
    ensure!(
        ssh_ok(
            "validator-1",
            "root",
            "ls -a /etc/prometheus | grep -c strata- || true"
        )? == "0",
        "temp files left behind"
    );
    // ... and validator-2 was not touched at all.
    ensure!(
        ssh_ok(
            "validator-2",
            "root",
            "test -e /var/lib/strata/state.json || test -e /etc/monad || echo clean"
        )? == "clean",
        "validator-2 was touched"
    );
    Ok(())
}

fn health_failure() -> Result<()> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "http: \"http://127.0.0.1:8080/status\"",
        "http: \"http://127.0.0.1:8081/status\"",
    )?;
    r.edit("inventory/lab.yaml", "timeout_secs: 30", "timeout_secs: 4")?;
    let o = st_in(r.path(), &["apply", "--yes"]);
    expect_code(&o, 1, "apply with a failing health check")?;
    let t = out(&o);
    ensure!(
        t.contains("validator-1: FAILED") && t.contains("health check failed"),
        "{t}"
    );
    ensure!(
        t.contains("validator-2: untouched") && t.contains("validator-3: untouched"),
        "{t}"
    );
    for n in ["validator-2", "validator-3"] {
        ensure!(
            ssh_ok(
                n,
                "root",
                "test -e /etc/monad || test -e /var/lib/strata/state.json || echo clean"
            )? == "clean",
            "{n} was touched"
        );
    }
    Ok(())
}

fn lock_held() -> Result<()> {
    // A real flock holder with an owner record, as another strata would leave.
    let mut holder = Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(repo().join(".lab/ssh/id_ed25519"))
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", repo().join(".lab/known_hosts").display()))
        .arg("root@10.77.1.2")
        .arg("mkdir -p /var/lib/strata; exec 9>>/var/lib/strata/lock; flock 9; echo 'alice@laptop pid 4242 at 1' > /var/lib/strata/lock.owner; echo held; sleep 60")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )?;
    ensure!(line.trim() == "held", "holder did not start: {line}");
    let o = st(&["apply", "--yes", "validator-1"]);
    let _ = holder.kill();
    let _ = holder.wait();
    expect_code(&o, 1, "apply while locked")?;
    ensure!(
        out(&o).contains("another apply holds the lock on validator-1: alice@laptop pid 4242"),
        "{}",
        text(&o)
    );
    ensure!(
        sha("validator-1", "/etc/monad/node.toml")?.contains("absent"),
        "changed while locked"
    );
    Ok(())
}

fn stale_plan() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let saved = dir.path().join("plan.json");
    let o = st(&["plan", "-o", saved.to_str().unwrap(), "validator-1"]);
    expect_code(&o, 0, "plan -o")?;
    ssh_ok(
        "validator-1",
        "root",
        "echo '# edited after the plan' >> /etc/chrony/chrony.conf",
    )?;
    let o = st(&[
        "apply",
        "--yes",
        "--plan",
        saved.to_str().unwrap(),
        "validator-1",
    ]);
    expect_code(&o, 1, "apply of a stale plan")?;
    ensure!(
        String::from_utf8_lossy(&o.stderr)
            .contains("validator-1: the node changed since the plan was saved"),
        "{}",
        text(&o)
    );
    ensure!(
        sha("validator-1", "/etc/monad/node.toml")?.contains("absent"),
        "a stale plan was applied"
    );
    // A fresh plan of the same node applies.
    let o = st(&["plan", "-o", saved.to_str().unwrap(), "validator-1"]);
    expect_code(&o, 0, "plan -o again")?;
    let o = st(&[
        "apply",
        "--yes",
        "--plan",
        saved.to_str().unwrap(),
        "validator-1",
    ]);
    expect_code(&o, 0, "apply of a fresh saved plan")?;
    Ok(())
}

fn connection_cut() -> Result<()> {
    // What a fresh node has, before strata writes anything.
    let render_dir = tempfile::tempdir()?;
    let o = st(&[
        "render",
        "validator-1",
        "--out",
        render_dir.path().to_str().unwrap(),
    ]);
    expect_code(&o, 0, "render")?;
    let mut files = Vec::new();
    collect(&render_dir.path().join("validator-1"), &mut files)?;
    let rel = |p: &Path| {
        format!(
            "/{}",
            p.strip_prefix(render_dir.path().join("validator-1"))
                .unwrap()
                .display()
        )
    };
    let mut old = std::collections::BTreeMap::new();
    for f in &files {
        old.insert(rel(f), sha("validator-1", &rel(f))?);
    }
    // Start an apply and kill its remote sessions as soon as its changes script starts (its
    // directories step creates /etc/monad, before files are staged, validated, renamed).
    let child = Command::new(strata_bin())
        .arg("--repo")
        .arg(repo())
        .args([
            "--inventory",
            "inventory/lab.yaml",
            "apply",
            "--yes",
            "validator-1",
        ])
        .envs(canary_envs())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    ssh_ok(
        "validator-1",
        "root",
        "for i in $(seq 400); do [ -d /etc/monad ] && break; sleep 0.02; done; \
         for j in $(seq 60); do for p in $(pgrep -f '^/bin/sh -s$'); do kill -9 $(ps -o ppid= -p $p) $p 2>/dev/null; done; sleep 0.05; done; true",
    )?;
    let o = child.wait_with_output()?;
    // The cut must have hit the changes step (else this case proves nothing).
    ensure!(
        o.status.code() == Some(1) && out(&o).contains("validator-1: FAILED: changes"),
        "the apply was not interrupted:\n{}",
        text(&o)
    );
    eprintln!(
        "    apply after the cut: {}",
        out(&o).lines().find(|l| l.contains("FAILED")).unwrap_or("")
    );
    // Every managed file is the old or the new version, never partial.
    for f in &files {
        let path = rel(f);
        let now = sha("validator-1", &path)?;
        let new = String::from_utf8_lossy(&Command::new("sha256sum").arg(f).output()?.stdout)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string();
        ensure!(
            now == old[&path] || now.starts_with(&new),
            "{path} is neither old nor new after the cut:\n{now}\n(apply said:\n{})",
            text(&o)
        );
    }
    // A rerun converges.
    apply_ok(&repo(), &["validator-1"])?;
    let (code, _) = plan_json(&repo(), &["validator-1"])?;
    ensure!(code == Some(0), "not converged after rerun: {code:?}");
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Unix time of the last "Started" of monad-validator on a node.
pub fn last_start(node: &str) -> Result<f64> {
    let j = ssh_ok(node, "root", "journalctl -u monad-validator -o short-unix --no-pager | grep 'Started monad-validator' | tail -n1")?;
    j.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("{node}: no start in the journal: {j}"))
}

fn serial_restarts() -> Result<()> {
    apply_ok(&repo(), &[])?;
    let first: Vec<f64> = ["validator-1", "validator-2", "validator-3"]
        .iter()
        .map(|n| last_start(n))
        .collect::<Result<_>>()?;
    // A change to every validator's unit: each is restarted, one node at a time.
    let r = TempRepo::new()?;
    r.edit("base-config/vars.yaml", "restart_sec: 10", "restart_sec: 7")?;
    let t = apply_ok(r.path(), &[])?;
    ensure!(t.matches("restart monad-validator").count() >= 3, "{t}");
    let second: Vec<f64> = ["validator-1", "validator-2", "validator-3"]
        .iter()
        .map(|n| last_start(n))
        .collect::<Result<_>>()?;
    for i in 0..3 {
        ensure!(
            second[i] > first[i],
            "validator-{} was not restarted",
            i + 1
        );
    }
    ensure!(
        second[0] < second[1] && second[1] < second[2],
        "restarts not in rollout order: {second:?}"
    );
    Ok(())
}

/// A change whose new validator unit fails the health gate (a bad ExecStart argument): the
/// node is put back to its previous unit, running and healthy, and the rollout stops.
pub fn rollback_on_failed_health() -> Result<()> {
    apply_ok(&repo(), &[])?;
    let unit = "/etc/systemd/system/monad-validator.service";
    let before = sha("validator-1", unit)?;
    let r = TempRepo::new()?;
    r.edit(
        "modules/validator/templates/monad-validator.service.j2",
        "--node-name",
        "--no-such-flag --node-name",
    )?;
    r.edit("inventory/lab.yaml", "timeout_secs: 30", "timeout_secs: 5")?;
    // And a firewall rule: the apply is guarded, so its health gate runs while the confirm
    // over a new connection does.
    r.edit(
        "base-config/vars.yaml",
        "allowed_cidrs: [any]",
        "allowed_cidrs: [any, \"10.77.0.0/16\"]",
    )?;
    let o = st_in(r.path(), &["apply", "--yes"]);
    expect_code(&o, 1, "apply of a unit that fails its health check")?;
    let t = out(&o);
    ensure!(
        t.contains("validator-1: FAILED, rolled back: health check failed"),
        "{t}"
    );
    ensure!(
        t.contains("allow 22/tcp from 10.77.0.0/16"),
        "the plan has no firewall change:\n{t}"
    );
    let rules = ssh_ok("validator-1", "root", "ufw status")?;
    ensure!(
        !rules
            .lines()
            .any(|l| l.starts_with("22/tcp ") && l.contains("10.77.0.0/16"))
            && rules.contains("Status: active"),
        "the guarded apply's firewall rule is not rolled back:\n{rules}"
    );
    ensure!(t.contains("healthy again"), "{t}");
    ensure!(
        t.contains("validator-2: untouched") && t.contains("validator-3: untouched"),
        "{t}"
    );
    ensure!(
        sha("validator-1", unit)? == before,
        "the old unit is not back"
    );
    ensure!(
        ssh_ok("validator-1", "root", "systemctl is-active monad-validator")? == "active",
        "validator not running"
    );
    ssh_ok(
        "validator-1",
        "root",
        "curl -fsS http://127.0.0.1:8080/status",
    )?;
    // --no-rollback leaves the failed state for debugging.
    let o = st_in(
        r.path(),
        &["apply", "--yes", "--no-rollback", "validator-1"],
    );
    expect_code(&o, 1, "apply --no-rollback")?;
    ensure!(
        out(&o).contains("left as is: --no-rollback"),
        "{}",
        text(&o)
    );
    ensure!(
        sha("validator-1", unit)? != before,
        "--no-rollback rolled back"
    );
    Ok(())
}

/// A repo copy whose firewall admits SSH only from a documentation range (written into a
/// rule, never connected to): it locks strata out.
pub fn lockout_repo() -> Result<TempRepo> {
    let r = TempRepo::new()?;
    r.edit(
        "base-config/vars.yaml",
        "allowed_cidrs: [any]",
        "allowed_cidrs: [\"192.0.2.0/24\"]",
    )?;
    Ok(r)
}

/// SSH allowed only from a network that does not hold strata's own address: the plan is an
/// error for that node and apply changes nothing.
pub fn lockout_refused() -> Result<()> {
    let r = lockout_repo()?;
    let o = st_in(r.path(), &["plan", "validator-1"]);
    expect_code(&o, 1, "plan of a firewall that locks strata out")?;
    ensure!(
        out(&o).contains("would not admit SSH port 22 from 10.77.1.1"),
        "{}",
        text(&o)
    );
    let o = st_in(r.path(), &["apply", "--yes", "validator-1"]);
    expect_code(&o, 1, "apply of a firewall that locks strata out")?;
    ensure!(
        sha("validator-1", "/etc/monad/node.toml")?.contains("absent"),
        "applied anyway"
    );
    Ok(())
}
