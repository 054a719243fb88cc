//! SSH as the operator has it set up: an ssh_config `Host` alias whose `User` and `Port` are
//! honoured when the inventory leaves them unset, and a node reachable only through a
//! bastion (`ssh.proxy_jump`). Both use a repo copy with its own ssh config file
//! (`defaults.ssh.config_file`, passed to ssh as `-F`), and reset the node they changed.

use crate::common::*;
use crate::plan_apply_cases::{apply_ok, changes, expect_code, plan_json, st_in, TempRepo};
use anyhow::{ensure, Context, Result};
use std::process::Command;

pub fn cases() -> Vec<Case> {
    vec![
        case_fresh(
            "ssh_config::host_alias_user_and_port_from_ssh_config",
            &["validator-1"],
            alias_user_and_port,
        ),
        case_fresh(
            "ssh_config::node_behind_a_bastion_plan_apply_bootstrap_through_proxy_jump",
            &["validator-1", "validator-2"],
            behind_a_bastion,
        ),
    ]
}

/// Resets the node when the case ends, passed or not: later cases find it fresh.
struct ResetAfter(&'static str);

impl Drop for ResetAfter {
    fn drop(&mut self) {
        let _ = lab(&["reset", self.0]);
    }
}

/// A repo copy whose inventory leaves `user` and `port` to ssh, reading `ssh_config` (the
/// repo copy's own file, written by the case).
fn repo_with_ssh_config(ssh_config: &str) -> Result<TempRepo> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "    user: root\n    port: 22\n",
        "    config_file: ssh_config\n",
    )?;
    std::fs::write(r.path().join("ssh_config"), ssh_config)?;
    Ok(r)
}

/// `Host lab-v1` with `User ops` and `Port 2222`; the node's sshd listens on 2222 only and
/// refuses root: only a connection that honours both gets in.
fn alias_user_and_port() -> Result<()> {
    let _reset = ResetAfter("validator-1");
    ssh_ok(
        "validator-1",
        "root",
        "set -e; useradd -m -s /bin/sh ops; install -d -m 700 -o ops -g ops /home/ops/.ssh; \
         install -m 600 -o ops -g ops /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys; \
         echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops; \
         printf 'Port 2222\\nPermitRootLogin no\\n' > /etc/ssh/sshd_config.d/00-e2e.conf; \
         systemctl restart ssh",
    )?;
    // The node as the old defaults would reach it (root, 22) is closed now.
    let o = ssh("validator-1", "root", "true");
    ensure!(!o.status.success(), "root@:22 still gets in:\n{}", text(&o));

    let r = repo_with_ssh_config("Host lab-v1\n  HostName 10.77.1.2\n  User ops\n  Port 2222\n")?;
    r.edit(
        "inventory/lab.yaml",
        "  validator-1:\n    address: 10.77.1.2\n",
        "  validator-1:\n    address: 10.77.1.2\n    ssh: {host: lab-v1, become: sudo}\n",
    )?;
    // The known_hosts entry is `[10.77.1.2]:2222` now (ssh names a non-22 port so).
    let kh = r.path().join("known_hosts");
    let pinned = std::fs::read_to_string(repo().join(".lab/known_hosts"))?
        .lines()
        .filter_map(|l| l.strip_prefix("10.77.1.2 "))
        .map(|k| format!("[10.77.1.2]:2222 {k}\n"))
        .collect::<String>();
    ensure!(!pinned.is_empty(), "validator-1 not in .lab/known_hosts");
    std::fs::write(&kh, pinned)?;
    r.edit(
        "inventory/lab.yaml",
        "known_hosts: .lab/known_hosts",
        "known_hosts: known_hosts",
    )?;

    // Plan: it connects (as ops, sudo, on 2222), and the firewall it renders opens 2222,
    // the effective port ssh_config gave (node.ssh_port), not 22.
    let (code, plan) = plan_json(r.path(), &["validator-1"])?;
    ensure!(code == Some(2), "plan exit {code:?}: {plan}");
    let c = changes(&plan, "validator-1");
    let ufw: Vec<_> = c.iter().filter(|(_, id)| id.starts_with("ufw:")).collect();
    ensure!(
        ufw.iter()
            .any(|(_, id)| id.starts_with("ufw:allow 2222/tcp")),
        "no ufw rule for 2222: {ufw:?}"
    );
    ensure!(
        !ufw.iter().any(|(_, id)| id.starts_with("ufw:allow 22/tcp")),
        "a rule for 22: {ufw:?}"
    );
    println!("    through the alias: {ufw:?}");
    let o = st_in(r.path(), &["status", "validator-1"]);
    expect_code(&o, 0, "status through the alias")?;

    // The inventory's own `user`, when set, wins over ssh_config (it is passed as -l): root
    // is refused by this sshd, so the plan cannot get in.
    r.edit(
        "inventory/lab.yaml",
        "ssh: {host: lab-v1, become: sudo}",
        "ssh: {host: lab-v1, become: sudo, user: root}",
    )?;
    let o = st_in(r.path(), &["plan", "validator-1"]);
    ensure!(
        o.status.code() != Some(0) && o.status.code() != Some(2),
        "plan as root got in:\n{}",
        text(&o)
    );
    Ok(())
}

/// The lab routes between its nodes (see tests/lab/src/net.rs); the forwarding and routes
/// set here restate that for the two nodes (written before the lab did it itself, kept as
/// they are harmless). What makes validator-1 a bastion: validator-2 drops SSH from anyone
/// but validator-1 (its own netfilter raw table, which ufw never touches). Undone when the
/// case ends: both nodes reset (which also gives their links back the lab's forwarding).
struct Bastion;

const LINKS: [&str; 2] = ["ve-validator-1", "ve-validator-2"];

impl Bastion {
    fn set_up() -> Result<Bastion> {
        let b = Bastion;
        for l in LINKS {
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{l}/forwarding"), "1")
                .with_context(|| format!("forwarding on the lab link {l}"))?;
        }
        ssh_ok(
            "validator-1",
            "root",
            "ip route replace 10.77.2.0/24 via 10.77.1.1",
        )?;
        ssh_ok(
            "validator-2",
            "root",
            "ip route replace 10.77.1.0/24 via 10.77.2.1 && \
             iptables -t raw -I PREROUTING -p tcp --dport 22 ! -s 10.77.1.2 -j DROP",
        )?;
        Ok(b)
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        for l in LINKS {
            let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{l}/forwarding"), "0");
        }
        let _ = lab(&["reset", "validator-2"]);
        let _ = lab(&["reset", "validator-1"]);
    }
}

/// An ssh-agent of the case's own holding the lab key, whose file is gone: the key exists
/// only in the agent (as with 1Password, Secretive or a hardware key). Ended on drop.
struct Agent {
    child: std::process::Child,
    sock: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn with_lab_key() -> Result<Agent> {
        let dir = tempfile::tempdir()?;
        let sock = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting ssh-agent")?;
        let a = Agent {
            child,
            sock,
            _dir: dir,
        };
        let t0 = std::time::Instant::now();
        while !a.sock.exists() {
            ensure!(t0.elapsed().as_secs() < 5, "ssh-agent did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let copy = a._dir.path().join("key");
        std::fs::copy(repo().join(".lab/ssh/id_ed25519"), &copy)?;
        let o = Command::new("ssh-add")
            .arg(&copy)
            .env("SSH_AUTH_SOCK", &a.sock)
            .output()?;
        ensure!(o.status.success(), "ssh-add: {}", text(&o));
        std::fs::remove_file(&copy)?;
        Ok(a)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// validator-2 answers SSH only from validator-1: direct connections fail; plan, apply and a
/// no-op plan work with `proxy_jump` through validator-1 (whose own settings come from the
/// ssh config), and bootstrap pins validator-2's host key through it. No key file anywhere:
/// the key is in an ssh-agent the ssh config names (`IdentityAgent`), and bootstrap
/// authorizes the agent's key for the deploy user.
fn behind_a_bastion() -> Result<()> {
    let _bastion = Bastion::set_up()?;
    let agent = Agent::with_lab_key()?;
    let kh = repo().join(".lab/known_hosts");
    let o = ssh_to("10.77.2.2", "root", &kh, 3, "true");
    ensure!(!o.status.success(), "validator-2 still answers directly");
    let o = st_in(&repo(), &["plan", "validator-2"]);
    ensure!(
        text(&o).contains("unreachable"),
        "a plan without the jump reached validator-2:\n{}",
        text(&o)
    );

    let r = repo_with_ssh_config(&format!(
        "Host *\n  IdentityAgent {}\nHost 10.77.1.2\n  User root\n  \
         UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
        agent.sock.display(),
        kh.display()
    ))?;
    r.edit(
        "inventory/lab.yaml",
        "    identity_file: .lab/ssh/id_ed25519\n",
        "",
    )?;
    r.edit(
        "inventory/lab.yaml",
        "  validator-2:\n    address: 10.77.2.2\n",
        "  validator-2:\n    address: 10.77.2.2\n    ssh: {proxy_jump: 10.77.1.2, user: root}\n",
    )?;
    let (code, plan) = plan_json(r.path(), &["validator-2"])?;
    ensure!(
        code == Some(2),
        "plan through the bastion exit {code:?}: {plan}"
    );
    ensure!(
        !changes(&plan, "validator-2").is_empty(),
        "no changes: {plan}"
    );
    let t = apply_ok(r.path(), &["validator-2"])?;
    ensure!(t.contains("validator-2"), "{t}");
    let (code, plan) = plan_json(r.path(), &["validator-2"])?;
    ensure!(code == Some(0), "not a no-op after apply: {code:?} {plan}");

    // Bootstrap with its own known_hosts, validator-2 not in it: the key is read through
    // the bastion (ssh-keyscan cannot be), checked against --host-key, pinned.
    let theirs = Command::new("ssh-keygen")
        .args(["-l", "-F", "10.77.2.2", "-f"])
        .arg(&kh)
        .output()?;
    let fp = String::from_utf8_lossy(&theirs.stdout)
        .lines()
        .find(|l| l.contains("ED25519"))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(str::to_string)
        .context("validator-2's ed25519 key in .lab/known_hosts")?;
    let own = std::fs::read_to_string(&kh)?
        .lines()
        .filter(|l| !l.starts_with("10.77.2.2 "))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    std::fs::write(r.path().join("known_hosts"), own)?;
    r.edit(
        "inventory/lab.yaml",
        "known_hosts: .lab/known_hosts",
        "known_hosts: known_hosts",
    )?;
    r.edit(
        "inventory/lab.yaml",
        "ssh: {proxy_jump: 10.77.1.2, user: root}",
        // A deploy user the lab node does not have yet (the lab's `deploy` exists already):
        // only bootstrap can give it a key, the agent's.
        "ssh: {proxy_jump: 10.77.1.2, user: strata, become: sudo}",
    )?;
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let o = st_in(
        r.path(),
        &["bootstrap", "validator-2", "--host-key", wrong, "--yes"],
    );
    expect_code(&o, 1, "bootstrap through the bastion with a wrong host key")?;
    ensure!(text(&o).contains("HOST KEY MISMATCH"), "{}", text(&o));
    let o = st_in(
        r.path(),
        &[
            "bootstrap",
            "validator-2",
            "--host-key",
            &fp,
            "--yes",
            "--confirm-timeout",
            "10",
        ],
    );
    expect_code(&o, 0, "bootstrap through the bastion")?;
    for l in text(&o)
        .lines()
        .filter(|l| l.contains("[1/5]") || l.contains("[2/5]") || l.contains("[4/5]"))
    {
        println!("    {l}");
    }
    for want in [
        "the deploy user strata will accept 1 key(s) from the ssh-agent (ssh-add -L)",
        "logged in as root (first contact)",
        "logged in again as strata over a new connection",
    ] {
        ensure!(text(&o).contains(want), "no `{want}`:\n{}", text(&o));
    }
    let pinned = std::fs::read_to_string(r.path().join("known_hosts"))?;
    ensure!(
        pinned
            .lines()
            .any(|l| l.starts_with("10.77.2.2 ssh-ed25519 ")),
        "not pinned:\n{pinned}"
    );
    let (code, plan) = plan_json(r.path(), &["validator-2"])?;
    ensure!(
        code == Some(0),
        "plan as the deploy user after bootstrap: {code:?} {plan}"
    );
    // Everything went through the bastion: validator-2 still refuses direct connections.
    let o = ssh_to("10.77.2.2", "root", &kh, 3, "true");
    ensure!(
        !o.status.success(),
        "validator-2 answers directly after apply"
    );
    Ok(())
}
