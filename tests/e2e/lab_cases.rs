//! The lab itself: nodes are real Debian hosts reachable the way strata reaches them.

use crate::common::*;
use crate::ensure_that;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: &[&str] = &["validator-1", "validator-2", "validator-3"];

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "lab::recorded_nspawn_pids_are_alive",
            recorded_nspawn_pids_are_alive,
        ),
        case(
            "lab::status_says_every_node_answers",
            status_says_every_node_answers,
        ),
        case("lab::ssh_as_root", ssh_as_root),
        case(
            "lab::ssh_as_deploy_with_passwordless_sudo",
            ssh_as_deploy_with_sudo,
        ),
        case("lab::systemd_is_running_on_every_node", systemd_is_running),
        case("lab::services_the_suite_needs_are_active", services_active),
        case(
            "lab::nodes_have_their_own_identity",
            nodes_have_own_identity,
        ),
        case_fresh(
            "lab::nodes_reach_each_other_and_the_lab_service_and_nothing_else",
            &["validator-1", "validator-2", "validator-3"],
            lab_network,
        ),
        case_fresh(
            "lab::a_disk_attaches_and_a_stopped_node_starts_on_its_state",
            &["validator-1", "validator-3"],
            disk_stop_start,
        ),
        case_fresh(
            "lab::standin_validator_serves_status_and_metrics",
            &["validator-1"],
            standin_serves,
        ),
        case(
            "lab::standin_validator_rejects_bad_arguments",
            standin_rejects_bad_arguments,
        ),
        case("lab::reset_returns_a_node_to_fresh", reset_returns_to_fresh),
    ]
}

fn recorded_nspawn_pids_are_alive() -> Result<()> {
    let nodes = recorded_nodes()?;
    ensure_that!(nodes.len() == 3, "expected 3 recorded nodes, got {nodes:?}");
    for (name, pid, _) in nodes {
        let pid = pid.with_context(|| format!("{name}: no pid recorded"))?;
        ensure_that!(
            process_matches(pid, "systemd-nspawn")
                && process_matches(pid, &format!("--machine={name}")),
            "{name}: recorded pid {pid} is not a live systemd-nspawn for it"
        );
    }
    Ok(())
}

fn status_says_every_node_answers() -> Result<()> {
    let out = lab_ok(&["status"])?;
    let s = String::from_utf8_lossy(&out.stdout);
    for n in NODES {
        let line = s
            .lines()
            .find(|l| l.starts_with(n))
            .with_context(|| format!("{n} missing:\n{s}"))?;
        ensure_that!(line.ends_with("answers"), "{n} does not answer: {line}");
    }
    Ok(())
}

fn ssh_as_root() -> Result<()> {
    for n in NODES {
        let out = ssh_ok(n, "root", "id -u; hostname")?;
        ensure_that!(out == format!("0\n{n}"), "{n}: unexpected output {out:?}");
    }
    Ok(())
}

fn ssh_as_deploy_with_sudo() -> Result<()> {
    let out = ssh_ok(
        "validator-2",
        "deploy",
        "id -un; sudo -n true && sudo -n id -u",
    )?;
    ensure_that!(out == "deploy\n0", "unexpected output {out:?}");
    Ok(())
}

pub fn systemd_is_running() -> Result<()> {
    for n in NODES {
        let out = ssh(n, "root", "timeout 60 systemctl is-system-running --wait");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state != "running" {
            let failed = ssh_ok(
                n,
                "root",
                "for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do \
                 echo \"== $u\"; journalctl -b -u $u --no-pager -o short-monotonic | tail -15; done",
            )?;
            bail!("{n}: system is {state:?}; failed units:\n{failed}");
        }
    }
    Ok(())
}

pub fn services_active() -> Result<()> {
    let units =
        "ssh chrony prometheus prometheus-node-exporter prometheus-alertmanager systemd-networkd";
    for n in NODES {
        let out = ssh(n, "root", &format!("systemctl is-active {units}"));
        let states = String::from_utf8_lossy(&out.stdout);
        let bad: Vec<String> = units
            .split(' ')
            .zip(states.lines())
            .filter(|(_, s)| *s != "active")
            .map(|(u, s)| format!("{u}={s}"))
            .collect();
        ensure_that!(
            out.status.success() && bad.is_empty(),
            "{n}: not active: {bad:?}\n{}",
            text(&out)
        );
    }
    Ok(())
}

/// Distinct host keys (so strict checking means something) and machine ids.
fn nodes_have_own_identity() -> Result<()> {
    let mut keys = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    for n in NODES {
        keys.insert(ssh_ok(
            n,
            "root",
            "cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2",
        )?);
        ids.insert(ssh_ok(n, "root", "cat /etc/machine-id")?);
    }
    ensure_that!(keys.len() == 3, "nodes share host keys");
    ensure_that!(ids.len() == 3, "nodes share machine ids");
    Ok(())
}

fn block_height(json: &str) -> Result<u64> {
    let v: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("bad JSON {json:?}"))?;
    for k in ["uptime", "last_seen"] {
        ensure_that!(v[k].is_u64(), "{k} missing in {json}");
    }
    v["block_height"]
        .as_u64()
        .with_context(|| format!("no block_height in {json}"))
}

fn standin_serves() -> Result<()> {
    let n = "validator-1";
    ssh_ok(
        n,
        "root",
        "systemd-run --unit standin-test /usr/local/bin/monad-validator --config /etc/hostname \
         --data-dir /tmp --p2p-port 8000 --status-port 8080 --metrics-port 8889 --node-name validator-1",
    )?;
    // Wait for it to listen.
    let t = Instant::now();
    let first = loop {
        let out = ssh(n, "root", "curl -fsS http://127.0.0.1:8080/status");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        if t.elapsed() > Duration::from_secs(10) {
            bail!("stand-in never answered /status:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let h1 = block_height(&first)?;
    std::thread::sleep(Duration::from_millis(2100));
    let h2 = block_height(&ssh_ok(
        n,
        "root",
        "curl -fsS http://127.0.0.1:8080/status",
    )?)?;
    ensure_that!(h2 > h1, "block height did not increase: {h1} then {h2}");

    let headers = ssh_ok(
        n,
        "root",
        "curl -fsS -o /dev/null -D - http://127.0.0.1:8080/status",
    )?;
    ensure_that!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "wrong headers:\n{headers}"
    );
    let code = ssh_ok(
        n,
        "root",
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/nope",
    )?;
    ensure_that!(code == "404", "unknown path gave {code}");
    let metrics = ssh_ok(n, "root", "curl -fsS http://127.0.0.1:8889/metrics")?;
    for m in [
        "monad_block_height ",
        "monad_uptime_seconds ",
        "monad_peers ",
    ] {
        ensure_that!(metrics.contains(m), "metrics lack {m}:\n{metrics}");
    }
    // From the host, over the lab network: the node's listener is on 0.0.0.0.
    let (code, body) = http_get(&address(n)?, 8080, "/status")?;
    ensure_that!(
        code == 200 && block_height(&body)? >= h2,
        "host-side /status: {code} {body}"
    );
    // It logged the requests.
    let log = ssh_ok(n, "root", "journalctl -u standin-test --no-pager -o cat")?;
    ensure_that!(log.contains("GET /status"), "no request log lines:\n{log}");
    ssh_ok(n, "root", "systemctl stop standin-test")?;
    Ok(())
}

fn standin_rejects_bad_arguments() -> Result<()> {
    let ok = "--config /etc/hostname --data-dir /tmp --p2p-port 18000 --status-port 18080 --metrics-port 18889";
    let cases = [
        (format!("{ok} --bogus x"), 2),
        (
            "--config /etc/hostname --data-dir /tmp --p2p-port 1 --status-port 2".to_string(),
            2,
        ),
        (ok.replace("/etc/hostname", "/nonexistent"), 1),
        (ok.replace("/etc/hostname", "/etc"), 1),
    ];
    for (args, want) in cases {
        let out = ssh(
            "validator-2",
            "root",
            &format!("timeout 5 /usr/local/bin/monad-validator {args}"),
        );
        ensure_that!(
            out.status.code() == Some(want),
            "`monad-validator {args}` exited {:?}, want {want}\n{}",
            out.status.code(),
            text(&out)
        );
    }
    Ok(())
}

fn reset_returns_to_fresh() -> Result<()> {
    let n = "validator-3";
    ssh_ok(
        n,
        "root",
        "echo dirty > /root/dirty && systemctl mask --now chrony",
    )?;
    let t = Instant::now();
    lab_ok(&["reset", n])?;
    let took = t.elapsed();
    // ssh (strict host key checking) still works: host keys survive a reset.
    let out = ssh_ok(
        n,
        "root",
        "test -e /root/dirty && echo dirty || echo clean; systemctl is-enabled chrony",
    )?;
    ensure_that!(
        out == "clean\nenabled",
        "node not fresh after reset: {out:?}"
    );
    ensure_that!(took < Duration::from_secs(15), "reset took {took:?}");
    println!("    (reset took {:.1}s)", took.as_secs_f64());
    Ok(())
}

/// `lab down` stops exactly what the lab started and leaves no mount or interface behind.
pub fn down_leaves_nothing_behind() -> Result<()> {
    let nodes = recorded_nodes()?;
    let state_dir = lab_state()?["state_dir"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure_that!(
        !nodes.is_empty() && !state_dir.is_empty(),
        "no lab state before down"
    );
    let t = Instant::now();
    lab_ok(&["down"])?;
    println!("    (lab down took {:.1}s)", t.elapsed().as_secs_f64());
    for (name, pid, _) in &nodes {
        if let Some(pid) = pid {
            ensure_that!(
                !process_matches(*pid, "systemd-nspawn"),
                "{name}: nspawn pid {pid} still running"
            );
        }
        let veth = format!("/sys/class/net/ve-{name}");
        ensure_that!(!std::path::Path::new(&veth).exists(), "{veth} still exists");
    }
    let mounts = overlay_mounts_under(std::path::Path::new(&state_dir));
    ensure_that!(mounts.is_empty(), "overlay mounts left: {mounts:?}");
    // No node state (added and bare nodes included) and no cgroup of this lab.
    let left: Vec<_> = std::fs::read_dir(std::path::Path::new(&state_dir).join("nodes"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    ensure_that!(
        left.is_empty(),
        "node state left in {state_dir}/nodes: {left:?}"
    );
    let lab_id = std::path::Path::new(&state_dir)
        .file_name()
        .unwrap_or_default()
        .to_owned();
    for cg in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/systemd",
    ] {
        let d = std::path::Path::new(cg).join("strata-lab").join(&lab_id);
        ensure_that!(!d.exists(), "cgroup {} left", d.display());
    }
    ensure_that!(recorded_nodes()?.is_empty(), "lab state still lists nodes");
    // The lab's routing (policy rules 17700/17701) and its service address on lo.
    let rules = Command::new("ip").args(["rule", "show"]).output()?;
    let rules = String::from_utf8_lossy(&rules.stdout);
    ensure_that!(
        !rules.contains("10.77.0.0/16"),
        "lab policy rules left:\n{rules}"
    );
    let unreachable = Command::new("ip")
        .args(["route", "show", "type", "unreachable"])
        .output()?;
    let unreachable = String::from_utf8_lossy(&unreachable.stdout);
    ensure_that!(
        !unreachable.contains("10.77.0.0/16"),
        "lab route left:\n{unreachable}"
    );
    let lo = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()?;
    let lo = String::from_utf8_lossy(&lo.stdout);
    ensure_that!(
        !lo.contains("10.77.0.1/32"),
        "lab service address left on lo:\n{lo}"
    );
    let status = lab(&["status"]);
    ensure_that!(
        !status.status.success(),
        "lab status still says up:\n{}",
        text(&status)
    );
    Ok(())
}

/// Nodes reach each other (via the host, per-link forwarding) and the lab's service address
/// 10.77.0.1; they have no route to anything else, and the host refuses lab traffic that
/// leaves the lab (policy rule) and to a node that is down (unreachable route).
fn lab_network() -> Result<()> {
    let banner = ssh_ok(
        "validator-1",
        "root",
        "timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.2.2/22; head -c 7 <&3'",
    )?;
    ensure_that!(
        banner == "SSH-2.0",
        "validator-1 -> validator-2:22 gave {banner:?}"
    );
    let l = std::net::TcpListener::bind("10.77.0.1:0").context("listen on 10.77.0.1")?;
    let port = l.local_addr()?.port();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"lab-service\n");
        }
    });
    let got = ssh_ok(
        "validator-3",
        "root",
        &format!("timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.0.1/{port}; head -1 <&3'"),
    )?;
    let _ = t.join();
    ensure_that!(
        got == "lab-service",
        "validator-3 -> 10.77.0.1:{port} gave {got:?}"
    );
    // No route out of the lab (a route lookup only: no packet is sent).
    let out = ssh("validator-2", "root", "ip route get 192.0.2.1");
    ensure_that!(
        !out.status.success() && text(&out).contains("unreachable"),
        "validator-2 has a route out of the lab:\n{}",
        text(&out)
    );
    let rules = Command::new("ip").args(["rule", "show"]).output()?;
    let rules = String::from_utf8_lossy(&rules.stdout);
    ensure_that!(
        rules.contains("from 10.77.0.0/16 prohibit"),
        "no policy rule refusing lab traffic out of the lab:\n{rules}"
    );
    Ok(())
}

/// `strata-lab disk` mounts a real ext4 filesystem in a running node; `stop` powers a node off
/// (its peers cannot reach it) and `start` boots it on the state it had.
fn disk_stop_start() -> Result<()> {
    lab_ok(&[
        "disk",
        "validator-1",
        "--mib",
        "16",
        "--at",
        "/srv/lab-disk",
    ])?;
    let df = ssh_ok(
        "validator-1",
        "root",
        "df --output=fstype,size /srv/lab-disk | tail -1",
    )?;
    let mut w = df.split_whitespace();
    ensure_that!(w.next() == Some("ext4"), "not ext4: {df}");
    let kib: u64 = w.next().and_then(|k| k.parse().ok()).unwrap_or(0);
    ensure_that!((12_000..=16_384).contains(&kib), "size {kib} KiB: {df}");
    ssh_ok("validator-3", "root", "touch /root/kept-across-stop")?;
    lab_ok(&["stop", "validator-3"])?;
    let out = ssh(
        "validator-1",
        "root",
        "timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.3.2/22' 2>&1",
    );
    ensure_that!(
        !out.status.success(),
        "validator-3 answers while stopped:\n{}",
        text(&out)
    );
    lab_ok(&["start", "validator-3"])?;
    ssh_ok("validator-3", "root", "test -f /root/kept-across-stop")?;
    Ok(())
}
