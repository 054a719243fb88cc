//! `strata-lab add`: a bare node looks like a fresh provider host and gets its packages
//! from the lab's local apt repository; a normal added node is a lab node like the others.
//!
//! These cases add validator-4 (bare) and validator-5 (normal) and leave them running:
//! the down case checks that `lab down` removes them too.

use crate::common::*;
use crate::ensure_that;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BARE: &str = "validator-4";
const ADDED: &str = "validator-5";
/// The packages the example modules install (see src/lab/bare.rs), purged from a bare node.
const MODULE_PACKAGES: &[&str] = &[
    "prometheus",
    "prometheus-node-exporter",
    "prometheus-alertmanager",
    "chrony",
    "ufw",
    "logrotate",
];

pub fn cases() -> Vec<Case> {
    vec![
        case("bare::add_refuses_bad_names", add_refuses_bad_names),
        case(
            "bare::add_bare_prints_the_real_host_key",
            add_bare_prints_the_real_host_key,
        ),
        case(
            "bare::bare_node_looks_like_a_fresh_provider_host",
            bare_node_looks_fresh,
        ),
        case(
            "bare::packages_install_from_the_local_repository_only",
            packages_install_from_local_repo,
        ),
        case(
            "bare::reset_returns_a_bare_node_to_bare",
            reset_returns_bare,
        ),
        case(
            "bare::added_node_is_a_normal_lab_node",
            added_node_is_normal,
        ),
        case(
            "bare::lab_up_leaves_added_nodes_and_bare_entries_alone",
            lab_up_leaves_added_nodes_alone,
        ),
    ]
}

/// A node's entry in `.lab/state.json`.
fn state_of(name: &str) -> Result<Option<serde_json::Value>> {
    let state = lab_state()?;
    Ok(state["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == name)
        .cloned())
}

fn address_of(name: &str) -> Result<String> {
    state_of(name)?
        .and_then(|n| n["address"].as_str().map(str::to_string))
        .with_context(|| format!("{name} is not in the lab state"))
}

/// The bare node, added if an earlier case did not (when cases are run one by one).
fn ensure_bare() -> Result<String> {
    if state_of(BARE)?.is_none() {
        lab_ok(&["add", BARE, "--bare"])?;
    }
    address_of(BARE)
}

/// A temp known_hosts for first contact with a bare node, as an operator would have.
fn temp_known_hosts() -> Result<(tempfile::TempDir, PathBuf)> {
    let d = tempfile::tempdir()?;
    let p = d.path().join("known_hosts");
    Ok((d, p))
}

/// ssh to a lab address with the lab key and the given known_hosts and checking mode.
fn ssh_kh(addr: &str, user: &str, known_hosts: &Path, checking: &str, cmd: &str) -> Output {
    ensure_lab_address(addr);
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(repo().join(".lab/ssh/id_ed25519"))
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .arg("-o")
        .arg(format!("StrictHostKeyChecking={checking}"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "HostKeyAlgorithms=ssh-ed25519"])
        .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
        .arg(format!("{user}@{addr}"))
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ssh")
}

/// Network rule: only the lab's own nodes.
fn ensure_lab_address(addr: &str) {
    assert!(addr.starts_with("10.77."), "not a lab address: {addr}");
}

fn ssh_kh_ok(addr: &str, known_hosts: &Path, cmd: &str) -> Result<String> {
    let out = ssh_kh(addr, "root", known_hosts, "yes", cmd);
    if !out.status.success() {
        bail!(
            "ssh root@{addr} {cmd:?} failed ({}):\n{}",
            out.status,
            text(&out)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `SHA256:...` of the first key in a public key or known_hosts file (`ssh-keygen -lf`).
fn fingerprint_of(file: &Path) -> Result<String> {
    let out = Command::new("ssh-keygen").arg("-lf").arg(file).output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .with_context(|| format!("no fingerprint from ssh-keygen -lf {}: {s}", file.display()))
}

/// The ED25519 fingerprint in `lab add`'s output.
fn printed_fingerprint(stdout: &str) -> Result<String> {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ED25519"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("SHA256:")))
        .map(str::to_string)
        .with_context(|| format!("lab add printed no ED25519 fingerprint:\n{stdout}"))
}

fn add_refuses_bad_names() -> Result<()> {
    for (args, says) in [
        (vec!["add", "validator-1"], "already a lab node"),
        (vec!["add", "abcdefghijklm", "--bare"], "1 to 12 characters"),
        (vec!["add", "Bad_Name"], "lowercase letters"),
    ] {
        let out = lab(&args);
        let all = text(&out);
        ensure_that!(
            out.status.code() == Some(1) && all.contains(says),
            "`strata-lab {}` should fail saying {says:?}:\n{all}",
            args.join(" ")
        );
    }
    Ok(())
}

fn add_bare_prints_the_real_host_key() -> Result<()> {
    ensure_that!(
        state_of(BARE)?.is_none(),
        "{BARE} is already in the lab (left by an earlier run? `strata-lab down` first)"
    );
    let t = Instant::now();
    let out = lab_ok(&["add", BARE, "--bare"])?;
    println!(
        "    (lab add --bare took {:.1}s)",
        t.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let printed = printed_fingerprint(&stdout)?;

    let node = state_of(BARE)?.context("no state for the new node")?;
    ensure_that!(
        node["bare"] == true && node["kind"] == "bare",
        "state does not record bare: {node}"
    );
    let addr = address_of(BARE)?;
    ensure_that!(addr == "10.77.4.2", "validator-4 got {addr}");
    ensure_that!(
        stdout.contains(&addr),
        "lab add did not print the address:\n{stdout}"
    );

    // The key file inside the node's root, read on the host through the recorded root.
    let root = PathBuf::from(node["root"].as_str().unwrap_or_default());
    let on_disk = fingerprint_of(&root.join("etc/ssh/ssh_host_ed25519_key.pub"))?;
    ensure_that!(
        on_disk == printed,
        "printed {printed}, the node's key file has {on_disk}"
    );
    // And the key the node's sshd really presents, on first contact.
    let (_d, kh) = temp_known_hosts()?;
    let first = ssh_kh(&addr, "root", &kh, "accept-new", "true");
    ensure_that!(
        first.status.success(),
        "first contact failed:\n{}",
        text(&first)
    );
    let served = fingerprint_of(&kh)?;
    ensure_that!(
        served == printed,
        "printed {printed}, sshd presented {served}"
    );

    // Bootstrap must verify it: it is in neither the lab's known_hosts nor its inventory.
    let known = std::fs::read_to_string(repo().join(".lab/known_hosts"))?;
    ensure_that!(
        !known.lines().any(|l| l.starts_with(&format!("{addr} "))),
        "{addr} is in .lab/known_hosts:\n{known}"
    );
    let inv = std::fs::read_to_string(repo().join("inventory/lab.yaml"))?;
    ensure_that!(!inv.contains(BARE), "{BARE} is in inventory/lab.yaml");
    // Strict checking against the lab's known_hosts refuses it.
    let strict = ssh_kh(
        &addr,
        "root",
        &repo().join(".lab/known_hosts"),
        "yes",
        "true",
    );
    ensure_that!(
        !strict.status.success(),
        "strict ssh with .lab/known_hosts accepted the bare node"
    );
    Ok(())
}

fn bare_node_looks_fresh() -> Result<()> {
    let addr = ensure_bare()?;
    let (_d, kh) = temp_known_hosts()?;
    ensure_that!(
        ssh_kh(&addr, "root", &kh, "accept-new", "true")
            .status
            .success(),
        "no root login by key"
    );
    let out = ssh_kh_ok(&addr, &kh, "id -u; hostname")?;
    ensure_that!(out == format!("0\n{BARE}"), "unexpected {out:?}");
    let sshd = ssh_kh_ok(
        &addr,
        &kh,
        "sshd -T | grep -E '^(passwordauthentication|permitrootlogin) '",
    )?;
    ensure_that!(
        sshd.contains("passwordauthentication yes"),
        "sshd -T says:\n{sshd}"
    );
    // No deploy user, home or sudoers entry; it cannot log in.
    let deploy = ssh_kh(&addr, "root", &kh, "yes", "id deploy");
    ensure_that!(
        !deploy.status.success(),
        "id deploy succeeded: {}",
        text(&deploy)
    );
    let left = ssh_kh_ok(
        &addr,
        &kh,
        "ls -d /home/deploy /etc/sudoers.d/deploy 2>/dev/null; true",
    )?;
    ensure_that!(left.is_empty(), "deploy leftovers: {left}");
    let login = ssh_kh(&addr, "deploy", &kh, "yes", "true");
    ensure_that!(!login.status.success(), "deploy can log in");
    // None of the modules' packages.
    for p in MODULE_PACKAGES {
        let out = ssh_kh(&addr, "root", &kh, "yes", &format!("dpkg -s {p}"));
        ensure_that!(
            !out.status.success(),
            "{p} is installed on the bare node:\n{}",
            text(&out)
        );
    }
    // The only apt source is the lab's repository.
    let sources = ssh_kh_ok(
        &addr,
        &kh,
        "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v '^#' | grep .",
    )?;
    ensure_that!(
        sources == "deb [trusted=yes] file:/srv/strata-apt ./",
        "apt sources:\n{sources}"
    );
    Ok(())
}

fn packages_install_from_local_repo() -> Result<()> {
    let addr = ensure_bare()?;
    let (_d, kh) = temp_known_hosts()?;
    ssh_kh(&addr, "root", &kh, "accept-new", "true");
    let update = ssh_kh_ok(&addr, &kh, "apt-get update 2>&1")?;
    let fetched: Vec<&str> = update
        .lines()
        .filter(|l| {
            ["Get:", "Hit:", "Ign:", "Err:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    ensure_that!(
        !fetched.is_empty(),
        "apt-get update fetched nothing:\n{update}"
    );
    ensure_that!(
        fetched.iter().all(|l| l.contains("file:/srv/strata-apt")),
        "apt-get update used another source:\n{update}"
    );
    ensure_that!(
        !update.contains("W:") && !update.contains("E:"),
        "apt-get update warned:\n{update}"
    );
    let policy = ssh_kh_ok(&addr, &kh, "apt-cache policy")?;
    let sources: Vec<&str> = policy
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    ensure_that!(
        sources.len() == 2
            && sources.iter().any(|l| l.ends_with("/var/lib/dpkg/status"))
            && sources
                .iter()
                .any(|l| l.contains("file:/srv/strata-apt ./ Packages")),
        "apt-cache policy lists other sources:\n{policy}"
    );

    let t = Instant::now();
    let install = ssh_kh(
        &addr,
        "root",
        &kh,
        "yes",
        &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q {} 2>&1",
            MODULE_PACKAGES.join(" ")
        ),
    );
    let took = t.elapsed();
    ensure_that!(
        install.status.success(),
        "apt-get install failed:\n{}",
        text(&install)
    );
    println!(
        "    (apt-get install of {} packages took {:.1}s)",
        MODULE_PACKAGES.len(),
        took.as_secs_f64()
    );
    for p in MODULE_PACKAGES {
        let st = ssh_kh_ok(&addr, &kh, &format!("dpkg-query -W -f='${{Status}}' {p}"))?;
        ensure_that!(st == "install ok installed", "{p}: {st}");
    }
    let from = ssh_kh_ok(&addr, &kh, "apt-cache policy prometheus")?;
    ensure_that!(
        from.contains("file:/srv/strata-apt"),
        "prometheus not from the local repository:\n{from}"
    );
    // The daemons the packages bring start in the container (chrony via the lab's drop-in).
    let active = ssh_kh(
        &addr,
        "root",
        &kh,
        "yes",
        "systemctl is-active prometheus chrony prometheus-node-exporter",
    );
    ensure_that!(
        active.status.success(),
        "services not active after install:\n{}",
        text(&active)
    );
    Ok(())
}

fn reset_returns_bare() -> Result<()> {
    let addr = ensure_bare()?;
    let (_d, kh) = temp_known_hosts()?;
    ssh_kh(&addr, "root", &kh, "accept-new", "true");
    ssh_kh_ok(
        &addr,
        &kh,
        "DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && apt-get install -y -q logrotate >/dev/null && useradd deploy",
    )?;
    let t = Instant::now();
    let out = lab_ok(&["reset", BARE])?;
    let took = t.elapsed();
    println!("    (reset of a bare node took {:.1}s)", took.as_secs_f64());
    ensure_that!(
        String::from_utf8_lossy(&out.stdout).contains("bare"),
        "reset output: {}",
        text(&out)
    );
    ensure_that!(took < Duration::from_secs(15), "reset took {took:?}");
    // Same host key (strict check with the known_hosts from before the reset), bare again.
    let out = ssh_kh_ok(
        &addr,
        &kh,
        "dpkg -s logrotate >/dev/null 2>&1 && echo logrotate; id deploy >/dev/null 2>&1 && echo deploy; \
         sshd -T | grep '^passwordauthentication'",
    )?;
    ensure_that!(
        out == "passwordauthentication yes",
        "not bare after reset: {out:?}"
    );
    ensure_that!(
        state_of(BARE)?.is_some_and(|n| n["bare"] == true),
        "state lost bare-ness"
    );
    Ok(())
}

fn added_node_is_normal() -> Result<()> {
    let inv_before = std::fs::read_to_string(repo().join("inventory/lab.yaml"))?;
    let result = added_node_checks();
    // The suite leaves the tracked inventory as the 3-node lab wrote it.
    std::fs::write(repo().join("inventory/lab.yaml"), inv_before)?;
    result
}

fn added_node_checks() -> Result<()> {
    let t = Instant::now();
    let out = lab_ok(&["add", ADDED])?;
    println!("    (lab add took {:.1}s)", t.elapsed().as_secs_f64());
    let addr = address_of(ADDED)?;
    ensure_that!(addr == "10.77.5.2", "{ADDED} got {addr}");
    ensure_that!(
        String::from_utf8_lossy(&out.stdout).contains("added"),
        "{}",
        text(&out)
    );
    // In the inventory and the lab's known_hosts, so the usual strict ssh works.
    let inv = std::fs::read_to_string(repo().join("inventory/lab.yaml"))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&inv)?;
    ensure_that!(
        v["hosts"][ADDED]["address"].as_str() == Some(addr.as_str()),
        "{ADDED} not in inventory/lab.yaml:\n{inv}"
    );
    ensure_that!(
        v["hosts"].get(BARE).is_none(),
        "the bare node got into the inventory"
    );
    let out = ssh_ok(ADDED, "deploy", "id -un; sudo -n id -u")?;
    ensure_that!(out == "deploy\n0", "deploy on {ADDED}: {out:?}");
    let pkgs = ssh_ok(
        ADDED,
        "root",
        &format!(
            "dpkg-query -W -f='${{Status}}\\n' {} | sort -u",
            MODULE_PACKAGES.join(" ")
        ),
    )?;
    ensure_that!(
        pkgs == "install ok installed",
        "packages on {ADDED}: {pkgs}"
    );
    // Every lab node has the repository bound and as its only source.
    let repo_ok = ssh_ok(
        ADDED,
        "root",
        "test -r /srv/strata-apt/Packages && ! touch /srv/strata-apt/x 2>/dev/null && apt-get update -q 2>&1 | grep -c file:/srv/strata-apt",
    )?;
    ensure_that!(repo_ok != "0", "no local repository on {ADDED}");
    let status = lab_ok(&["status"])?;
    let s = String::from_utf8_lossy(&status.stdout);
    for (n, kind) in [(BARE, "bare"), (ADDED, "added"), ("validator-1", "lab")] {
        ensure_that!(
            s.lines().any(|l| l.starts_with(n)
                && l.contains(&format!(" {kind} "))
                && l.ends_with("answers")),
            "lab status does not show {n} as {kind}, answering:\n{s}"
        );
    }
    Ok(())
}

/// `lab up` again: added nodes keep running, and what an operator added for a bare node
/// (its inventory entry, its host key) survives the rewrite of those files.
fn lab_up_leaves_added_nodes_alone() -> Result<()> {
    let bare_addr = ensure_bare()?;
    let inv_path = repo().join("inventory/lab.yaml");
    let kh_path = repo().join(".lab/known_hosts");
    let inv_before = std::fs::read_to_string(&inv_path)?;
    let kh_before = std::fs::read_to_string(&kh_path)?;
    let result = (|| -> Result<()> {
        let pid =
            |n: &str| -> Result<Option<u64>> { Ok(state_of(n)?.and_then(|s| s["pid"].as_u64())) };
        let pids = (pid(BARE)?, pid(ADDED)?);
        // As `strata node add` and bootstrap would.
        let entry = format!(
            "  {BARE}:\n    # added by the operator\n    address: {bare_addr}\n    groups: [validators]\n    region: lab-a\n"
        );
        std::fs::write(&inv_path, format!("{inv_before}{entry}"))?;
        let state = state_of(BARE)?.context("no bare state")?;
        let key = std::fs::read_to_string(
            Path::new(state["root"].as_str().unwrap_or_default())
                .join("etc/ssh/ssh_host_ed25519_key.pub"),
        )?;
        let key_line = format!(
            "{bare_addr} {}",
            key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        );
        std::fs::write(&kh_path, format!("{kh_before}{key_line}\n"))?;

        lab_ok(&["up", "--nodes", "3"])?;
        ensure_that!(
            (pid(BARE)?, pid(ADDED)?) == pids,
            "lab up restarted or removed added nodes"
        );
        let inv = std::fs::read_to_string(&inv_path)?;
        ensure_that!(
            inv.ends_with(&entry),
            "the bare node's entry was lost:\n{inv}"
        );
        ensure_that!(inv.contains(&format!("  {ADDED}:")), "{ADDED} was dropped");
        let kh = std::fs::read_to_string(&kh_path)?;
        ensure_that!(
            kh.contains(&key_line),
            "the bare node's host key was lost:\n{kh}"
        );
        // A lab too big for the added nodes is refused, naming the one in the way.
        let out = lab(&["up", "--nodes", "4"]);
        ensure_that!(
            !out.status.success() && text(&out).contains(BARE),
            "lab up --nodes 4 over {BARE}:\n{}",
            text(&out)
        );
        Ok(())
    })();
    std::fs::write(&inv_path, inv_before)?;
    std::fs::write(&kh_path, kh_before)?;
    result
}
