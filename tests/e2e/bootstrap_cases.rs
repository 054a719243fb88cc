//! `strata node add` + `strata bootstrap` on a bare lab node (`strata-lab add NAME --bare`):
//! a fresh provider host, root by key only, password login on, no deploy user, none of the
//! modules' packages (they come from the lab's local apt repository).

use crate::common::*;
use crate::plan_apply_cases::{apply_ok, changes, expect_code, out, pair, plan_json, TempRepo};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "validator-4";

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "bootstrap::bare_node_to_converged_validator_then_rerun_is_a_noop",
            &["validator-1", "validator-2", "validator-3"],
            bare_to_converged,
        ),
        case(
            "bootstrap::killed_midway_rerun_converges_never_locked_out",
            killed_midway,
        ),
        case(
            "bootstrap::first_contact_as_the_providers_sudo_user",
            as_provider_sudo_user,
        ),
    ]
}

/// A field of a node's entry in the lab state (`.lab/state.json`), if the node is there.
fn lab_node_field(node: &str, field: &str) -> Result<Option<String>> {
    Ok(lab_state()?["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == node)
        .and_then(|n| n[field].as_str().map(str::to_string)))
}

/// A fresh bare validator-4 and its host key fingerprint (as `lab add` prints it), on the
/// Debian release validator-4 has in the lab the harness set up (see `release_of`).
fn bare_node() -> Result<(String, String)> {
    let release = release_of(NODE);
    if lab_node_field(NODE, "name")?.is_some() {
        lab_ok(&["reset", NODE, "--release", release])?;
    } else {
        lab_ok(&["add", NODE, "--bare", "--release", release])?;
    }
    ensure!(
        lab_node_field(NODE, "release")?.as_deref() == Some(release),
        "{NODE} is not a {release} node: {}",
        lab_state()?
    );
    let addr = lab_node_field(NODE, "address")?.context("validator-4 not in the lab state")?;
    // The fingerprint the "provider console" shows: the node's key file, read on the host.
    let o = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(Path::new(&node_root(NODE)?).join("etc/ssh/ssh_host_ed25519_key.pub"))
        .output()?;
    let fp = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
        .context("ssh-keygen -lf")?;
    Ok((addr, fp))
}

/// A repo copy whose inventory pins host keys in its own known_hosts (a copy of the lab's).
fn repo_copy() -> Result<TempRepo> {
    let r = TempRepo::new()?;
    std::fs::copy(
        repo().join(".lab/known_hosts"),
        r.path().join("known_hosts"),
    )?;
    r.edit(
        "inventory/lab.yaml",
        "known_hosts: .lab/known_hosts",
        "known_hosts: known_hosts",
    )?;
    Ok(r)
}

/// `strata node add validator-4` into the copy, with a deploy user.
fn node_add(r: &TempRepo, addr: &str) -> Result<()> {
    let o = st(
        r.path(),
        &[
            "node",
            "add",
            NODE,
            "--address",
            addr,
            "--region",
            "lab-d",
            "--provider",
            "nspawn",
            "--user",
            "deploy",
        ],
    );
    expect_code(&o, 0, "node add")?;
    Ok(())
}

fn repo_with_node(addr: &str) -> Result<TempRepo> {
    let r = repo_copy()?;
    node_add(&r, addr)?;
    Ok(r)
}

fn st(repo: &Path, args: &[&str]) -> Output {
    crate::plan_apply_cases::st_in(repo, args)
}

/// ssh to addr as user with the lab key, checking the host key against the repo's own
/// known_hosts (where bootstrap pinned it).
fn ssh_as(r: &Path, addr: &str, user: &str, cmd: &str) -> Output {
    ssh_to(addr, user, &r.join("known_hosts"), 5, cmd)
}

/// The authentication methods sshd offers (what a password-guessing client would see). The
/// host key is not checked here: nothing but the probe's user name is sent.
fn offered_methods(addr: &str) -> String {
    let o = Command::new("ssh")
        .args([
            "-v",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=none",
        ])
        .arg(format!("nobody-strata-test@{addr}"))
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .find_map(|l| l.split("Authentications that can continue: ").nth(1))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Root on the bare node for the test's own checks, trusting the host key read from the
/// node's disk (as an operator trusts the provider's console); never via the repo under test.
fn admin(r: &Path, addr: &str, cmd: &str) -> Result<String> {
    let kh = r.join("admin_known_hosts");
    if !kh.exists() {
        let root = node_root(NODE)?;
        let key =
            std::fs::read_to_string(Path::new(&root).join("etc/ssh/ssh_host_ed25519_key.pub"))?;
        std::fs::write(&kh, format!("{addr} {key}"))?;
    }
    let o = ssh_to(addr, "root", &kh, 5, cmd);
    ensure!(o.status.success(), "admin ssh `{cmd}`: {}", text(&o));
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn node_root(node: &str) -> Result<String> {
    lab_node_field(node, "root")?.context("node root")
}

/// Successful logins sshd logged so far (this query's own login included).
fn accepted_logins(r: &Path, addr: &str) -> Result<usize> {
    let o = admin(
        r,
        addr,
        "journalctl -u ssh --no-pager -q | grep -c 'Accepted publickey' || true",
    )?;
    Ok(o.trim().parse().unwrap_or(0))
}

/// `strata bootstrap validator-4 --host-key FP --yes --confirm-timeout 10 EXTRA...` must
/// exit 0 and leave the node converged (plan exit 0) with root login refused.
fn bootstrap_converges(
    r: &Path,
    addr: &str,
    fp: &str,
    extra: &[&str],
    what: &str,
) -> Result<Output> {
    let mut args = vec![
        "bootstrap",
        NODE,
        "--host-key",
        fp,
        "--yes",
        "--confirm-timeout",
        "10",
    ];
    args.extend_from_slice(extra);
    let o = st(r, &args);
    expect_code(&o, 0, what)?;
    let (code, _) = plan_json(r, &[NODE])?;
    ensure!(code == Some(0), "{what}: plan of the node exit {code:?}");
    let root = ssh_as(r, addr, "root", "true");
    ensure!(!root.status.success(), "{what}: root login still works");
    ensure!(text(&root).contains("Permission denied"), "{}", text(&root));
    Ok(o)
}

pub fn bare_to_converged() -> Result<()> {
    let (addr, fp) = bare_node()?;
    let r = repo_copy()?;
    // The 3-node fleet, converged before validator-4 joins.
    apply_ok(r.path(), &["validator-1", "validator-2", "validator-3"])?;
    node_add(&r, &addr)?;
    let methods = offered_methods(&addr);
    ensure!(
        methods.contains("password"),
        "a bare node offers password login: {methods:?}"
    );

    // A wrong fingerprint: refused before any login; nothing pinned, nothing changed.
    let logins = accepted_logins(r.path(), &addr)?;
    let kh_before = std::fs::read_to_string(r.path().join("known_hosts"))?;
    let o = st(
        r.path(),
        &[
            "bootstrap",
            NODE,
            "--host-key",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "--yes",
        ],
    );
    expect_code(&o, 1, "bootstrap with a wrong host key")?;
    ensure!(text(&o).contains("HOST KEY MISMATCH"), "{}", text(&o));
    ensure!(
        std::fs::read_to_string(r.path().join("known_hosts"))? == kh_before,
        "known_hosts changed"
    );
    // Only the count query itself logged in since.
    let after = accepted_logins(r.path(), &addr)?;
    ensure!(
        after == logins + 1,
        "bootstrap logged in despite the mismatch: {logins} -> {after}"
    );
    // No key for the node at all: refused, naming the two ways forward.
    let o = st(r.path(), &["bootstrap", NODE, "--yes"]);
    expect_code(&o, 1, "bootstrap without a host key")?;
    ensure!(text(&o).contains("--host-key SHA256:"), "{}", text(&o));

    // Preflight: an unsupported OS and too little disk, both reported, nothing changed.
    let version = admin(r.path(), &addr, ". /usr/lib/os-release; echo $VERSION_ID")?;
    admin(r.path(), &addr, "cp /usr/lib/os-release /tmp/os-release.bak && sed -i 's/^ID=debian/ID=centos/' /usr/lib/os-release")?;
    let o = st(
        r.path(),
        &[
            "bootstrap",
            NODE,
            "--host-key",
            &fp,
            "--min-free-mb",
            "100000000",
            "--yes",
        ],
    );
    admin(
        r.path(),
        &addr,
        "cp /tmp/os-release.bak /usr/lib/os-release",
    )?;
    expect_code(&o, 1, "bootstrap of a host failing preflight")?;
    let t = text(&o);
    ensure!(t.contains("failed preflight; nothing was changed"), "{t}");
    ensure!(
        t.contains(&format!("unsupported OS `centos {version}`")) && t.contains("MiB free on /"),
        "{t}"
    );
    ensure!(
        admin(r.path(), &addr, "id deploy >/dev/null 2>&1 && echo yes || echo no; test -e /etc/ssh/sshd_config.d/00-strata.conf && echo yes || echo no")?
            == "no\nno",
        "preflight failure changed the host"
    );

    // The bootstrap.
    let t0 = Instant::now();
    let o = bootstrap_converges(r.path(), &addr, &fp, &[], "bootstrap")?;
    let took = t0.elapsed();
    let s = out(&o);
    ensure!(
        s.contains(&format!("{NODE}: applied")) && s.contains("healthy"),
        "{}",
        text(&o)
    );
    ensure!(
        s.contains(
            "These nodes now have pending changes (configs that render the fleet): validator-1"
        ) && s.contains("strata apply validator-1 validator-2 validator-3"),
        "{}",
        text(&o)
    );
    println!(
        "    bootstrap of a bare node to converged: {:.1}s",
        took.as_secs_f64()
    );

    // Validator running, firewall on with exactly the declared rules (plan exit 0), root and
    // password login refused, deploy + sudo works.
    let d = ssh_as(
        r.path(),
        &addr,
        "deploy",
        "sudo -n systemctl is-active monad-validator; sudo -n ufw status | head -n 1",
    );
    ensure!(
        String::from_utf8_lossy(&d.stdout).trim() == "active\nStatus: active",
        "{}",
        text(&d)
    );
    let methods = offered_methods(&addr);
    ensure!(
        methods == "publickey",
        "sshd offers {methods:?} after bootstrap"
    );

    // The rest of the fleet: exactly the new target where configs render the fleet.
    let (code, p) = plan_json(r.path(), &["validator-1", "validator-2", "validator-3"])?;
    ensure!(code == Some(2), "fleet plan exit {code:?}");
    // Every watcher scrapes and alerts about the new node (issue 16's topology): its peers'
    // scrape targets, Alertmanager cluster peers and firewall openings for its address.
    let want: BTreeSet<(String, String)> = [
        pair("change", "file:/etc/monad/node.toml"),
        pair("change", "file:/etc/prometheus/prometheus.yml"),
        pair("change", "file:/etc/default/prometheus-alertmanager"),
        pair("add", &format!("ufw:allow 8889/tcp from {addr}")),
        pair("add", &format!("ufw:allow 9090/tcp from {addr}")),
        pair("add", &format!("ufw:allow 9093/tcp from {addr}")),
        pair("add", &format!("ufw:allow 9094/tcp from {addr}")),
        pair("add", &format!("ufw:allow 9094/udp from {addr}")),
        pair("add", &format!("ufw:allow 9100/tcp from {addr}")),
    ]
    .into_iter()
    .collect();
    for n in ["validator-1", "validator-2", "validator-3"] {
        ensure!(changes(&p, n) == want, "{n}: {:?}", changes(&p, n));
        for c in crate::plan_apply_cases::node(&p, n)["changes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(diff) = c["diff"].as_str() {
                let added: Vec<&str> = diff
                    .lines()
                    .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                    .collect();
                ensure!(
                    !added.is_empty() && added.iter().any(|l| l.contains(&addr)),
                    "{n} {}: {diff}",
                    c["id"]
                );
                ensure!(
                    !diff
                        .lines()
                        .any(|l| l.starts_with('-') && !l.starts_with("---")),
                    "{n}: removes lines: {diff}"
                );
            }
        }
    }

    // The key is pinned now: a different --host-key is refused before anything is sent.
    let o = st(
        r.path(),
        &[
            "bootstrap",
            NODE,
            "--host-key",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "--yes",
        ],
    );
    expect_code(&o, 1, "bootstrap with a key other than the pinned one")?;
    ensure!(
        text(&o).contains("does not match the key already pinned"),
        "{}",
        text(&o)
    );
    // The same bootstrap again: nothing changes, no handler runs.
    let o = st(r.path(), &["bootstrap", NODE, "--host-key", &fp, "--yes"]);
    expect_code(&o, 0, "second bootstrap")?;
    ensure!(
        text(&o).contains("base already in place: no change"),
        "{}",
        text(&o)
    );
    // The one rollout (as for apply): a converged, recorded node is left alone.
    ensure!(
        out(&o).contains("No changes. The fleet matches the configuration.")
            && !out(&o).contains("Apply summary"),
        "{}",
        text(&o)
    );
    ensure!(!out(&o).contains(" ran "), "a handler ran: {}", text(&o));
    ensure!(text(&o).contains("already pinned"), "{}", text(&o));

    // A host that presents another key than the pinned one (re-keyed, or spoofed) is refused,
    // even with --accept-new-host-key: that flag only ever adds a key for an unknown host.
    let kh = r.path().join("known_hosts");
    let other = tempfile::tempdir()?;
    let key = other.path().join("k");
    let g = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()?;
    ensure!(g.success(), "ssh-keygen");
    let fake = std::fs::read_to_string(key.with_extension("pub"))?;
    let kept: Vec<String> = std::fs::read_to_string(&kh)?
        .lines()
        .filter(|l| !l.starts_with(&format!("{addr} ")))
        .map(str::to_string)
        .collect();
    std::fs::write(&kh, format!("{}\n{addr} {fake}", kept.join("\n")))?;
    let o = st(
        r.path(),
        &["bootstrap", NODE, "--accept-new-host-key", "--yes"],
    );
    expect_code(&o, 1, "bootstrap of a host whose key changed")?;
    ensure!(text(&o).contains("host key does not match"), "{}", text(&o));
    Ok(())
}

fn killed_midway() -> Result<()> {
    // Each point on a fresh bare node: after the base (root still on), after root login was
    // turned off, in the middle of the apt installs, and in the guard's confirm window.
    for (i, (marker, delay)) in [
        ("bootstrap [3/5]", Duration::ZERO),
        ("bootstrap [4/5]", Duration::ZERO),
        ("bootstrap [5/5]", Duration::from_millis(1500)),
        ("confirming over a new SSH connection", Duration::ZERO),
    ]
    .into_iter()
    .enumerate()
    {
        let (addr, fp) = bare_node()?;
        let r = repo_with_node(&addr)?;
        // The first run trusts the key the host presents (--accept-new-host-key); it must be
        // the node's real key, as the rerun's --host-key then checks.
        let trust = if i == 0 {
            "--accept-new-host-key".to_string()
        } else {
            format!("--host-key={fp}")
        };
        strata_killed_at(
            r.path(),
            &["bootstrap", NODE, &trust, "--yes"],
            marker,
            delay,
        )?;
        // Never locked out: root or the deploy user still gets in over a new connection.
        let root = ssh_as(r.path(), &addr, "root", "true").status.success();
        let deploy = ssh_as(r.path(), &addr, "deploy", "sudo -n true")
            .status
            .success();
        ensure!(root || deploy, "locked out after a kill at {marker:?}");
        // The same command finishes the job.
        bootstrap_converges(
            r.path(),
            &addr,
            &fp,
            &[],
            &format!("bootstrap after a kill at {marker:?}"),
        )?;
        println!(
            "    killed at {marker:?}: root login {root}, deploy login {deploy}; rerun converged"
        );
    }
    let _ = apply_ok;
    Ok(())
}

/// Images like Debian's cloud images log in as a sudo user (`admin`), not root: bootstrap
/// --user admin does everything through `sudo -n`.
fn as_provider_sudo_user() -> Result<()> {
    let (addr, fp) = bare_node()?;
    let r = repo_with_node(&addr)?;
    admin(
        r.path(),
        &addr,
        "useradd --create-home --shell /bin/bash admin && usermod -p '*' admin && \
         install -d -m 0700 -o admin -g admin /home/admin/.ssh && \
         install -m 0600 -o admin -g admin /root/.ssh/authorized_keys /home/admin/.ssh/authorized_keys && \
         echo 'admin ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-cloud-admin && chmod 0440 /etc/sudoers.d/90-cloud-admin",
    )?;
    let o = bootstrap_converges(
        r.path(),
        &addr,
        &fp,
        &["--user", "admin"],
        "bootstrap --user admin",
    )?;
    ensure!(
        text(&o).contains("logged in as admin (first contact)"),
        "{}",
        text(&o)
    );
    let d = ssh_as(r.path(), &addr, "deploy", "sudo -n id -un");
    ensure!(
        String::from_utf8_lossy(&d.stdout).trim() == "root",
        "{}",
        text(&d)
    );
    Ok(())
}
