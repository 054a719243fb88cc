//! `strata bootstrap NAME`: from a fresh host (root or the provider's sudo user, by key) to a
//! converged, monitored validator, without ever locking the operator out.
//!
//! 1. host key: pinned from `--host-key SHA256:..` (or `--accept-new-host-key`) into the repo's
//!    known_hosts before any credential is sent; strict from then on;
//! 2. preflight, read-only, every problem at once; a failing host is left untouched;
//! 3. base: hostname, deploy user (operator's keys, passwordless sudo), sshd hardening with
//!    root login still allowed by key;
//! 4. a NEW connection as the deploy user with sudo; only then root login off;
//! 5. the node's full apply (the engine of `strata apply`), health gate included;
//! 6. which other nodes now have pending changes (configs that render the fleet).
//!
//! Rerunnable: it first tries the deploy user; every step changes only what is not done yet.

use crate::engine::events::{Event, Ui};
use crate::engine::local::{git_commit, now, who};
use crate::engine::node_apply::{run_step, Opts};
use crate::engine::rollout::{self, Rollout};
use crate::engine::{self, Outcome};
use crate::error::{Error, Result};
use crate::model::{DesiredState, NodeIdentity, Timeouts};
use crate::remote::bootstrap::{self as bs, Requirements};
use crate::transport::{expand, Conn};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// What the operator asked of a bootstrap.
#[derive(Debug, Clone)]
pub struct BootstrapArgs {
    /// The node, as added to the inventory (`strata node add`).
    pub node: String,
    /// Who strata logs in as the first time: root, or the provider's sudo user.
    pub user: String,
    /// The host key fingerprint from the provider's console (`SHA256:...`).
    pub host_key: Option<String>,
    /// Trust the host key the host presents on first contact (and pin it).
    pub accept_new_host_key: bool,
    pub min_free_mb: u64,
    pub max_clock_offset: i64,
    /// The public key file to authorize (`--pubkey`); None: identity_file's `.pub`, else the
    /// agent's keys.
    pub pubkey: Option<PathBuf>,
    /// Do not ask before the apply.
    pub yes: bool,
    pub confirm_timeout: u64,
}

macro_rules! bail {
    ($($t:tt)*) => { return Err(Error::Usage(format!($($t)*))) };
}

fn say(ui: &dyn Ui, step: &'static str, msg: &str) {
    ui.event(Event::Bootstrap {
        step,
        message: msg.to_string(),
    });
}

/// Bootstrap `args.node` of the loaded fleet `all`.
pub fn bootstrap(
    repo: &Path,
    all: Vec<DesiredState>,
    secrets: Vec<String>,
    args: BootstrapArgs,
    ui: Arc<dyn Ui>,
) -> Result<()> {
    let started = Instant::now();
    let Some(desired) = all.iter().find(|d| d.node.name == args.node).cloned() else {
        bail!(
            "`{}` is not a host in the inventory: add it first with `strata node add {} --address ADDR --region REGION --user DEPLOY_USER`",
            args.node,
            args.node
        );
    };
    let id = desired.node.clone();
    if id.ssh.user == "root" {
        bail!(
            "the inventory logs in to {} as root: give the host a deploy user (`ssh: {{user: deploy, become: sudo}}`, or `node add --user deploy`) so bootstrap can turn root login off",
            id.name
        );
    }
    if id.ssh.r#become.as_deref() != Some("sudo") {
        bail!(
            "{}: the deploy user `{}` needs `become: sudo` in the inventory",
            id.name,
            id.ssh.user
        );
    }
    let Some(known_hosts) = id.ssh.known_hosts.as_deref().map(|k| expand(repo, k)) else {
        bail!(
            "bootstrap pins the host key: the inventory needs `ssh.known_hosts` (defaults or host)"
        );
    };
    let (pubkeys, whence) = operator_keys(&id, repo, args.pubkey.as_deref())?;
    say(
        ui.as_ref(),
        "1/5",
        &format!(
            "the deploy user {} will accept {} key(s) from {whence}",
            id.ssh.user,
            pubkeys.lines().count()
        ),
    );

    // 1. The host key, before anything else is sent.
    pin_host_key(&id, repo, &known_hosts, &args, ui.as_ref())?;

    let rt = crate::engine::local::runtime()?;
    rt.block_on(async {
        let conn = login(&id, repo, &args, ui.as_ref()).await?;
        converge(
            repo, conn, desired, all, &args, &secrets, &pubkeys, started, ui,
        )
        .await
    })
}

/// The operator's public keys the deploy user will accept: `--pubkey FILE`, else the
/// inventory identity_file's `.pub`, else the ssh-agent's, the one ssh uses (a key in 1Password, Secretive,
/// gpg-agent or on a hardware token has no file on disk). Each line is checked to be a
/// public key (`ssh-keygen -l`) before it is sent anywhere.
fn operator_keys(
    id: &NodeIdentity,
    repo: &Path,
    pubkey: Option<&Path>,
) -> Result<(String, String)> {
    let identity = id.ssh.identity_file.as_deref().map(|k| expand(repo, k));
    let from_file = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| Error::local(format!("reading the public key {}", p.display()), e))
    };
    let (text, whence) = match (pubkey, identity) {
        (Some(p), _) => (from_file(p)?, p.display().to_string()),
        (None, Some(i)) => {
            let p = PathBuf::from(format!("{}.pub", i.display()));
            if !p.exists() {
                bail!(
                    "bootstrap installs the operator's public key: {} does not exist; pass --pubkey FILE (or leave identity_file out to use the ssh-agent's keys)",
                    p.display()
                );
            }
            (from_file(&p)?, p.display().to_string())
        }
        (None, None) => {
            // The agent ssh itself uses for this node: ssh_config's IdentityAgent (as
            // 1Password or Secretive set it up), else SSH_AUTH_SOCK.
            let mut add = Command::new("ssh-add");
            if let Some(sock) = resolved(id, repo)?.identity_agent {
                add.env("SSH_AUTH_SOCK", sock);
            }
            let o = add
                .arg("-L")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error::local("running ssh-add -L (openssh-client)", e))?;
            if !o.status.success() {
                let said = format!(
                    "{} {}",
                    String::from_utf8_lossy(&o.stdout).trim(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                bail!(
                    "bootstrap installs the operator's public key: the inventory has no identity_file and the ssh-agent gave none ({}); pass --pubkey FILE",
                    said.trim()
                );
            }
            (
                String::from_utf8_lossy(&o.stdout).to_string(),
                "the ssh-agent (ssh-add -L)".to_string(),
            )
        }
    };
    let keys = public_key_lines(&text);
    if keys.is_empty() {
        bail!("no public key in {whence}");
    }
    for k in &keys {
        if fingerprint_of(k).is_err() {
            bail!(
                "{whence}: `{}` is not an ssh public key",
                crate::model::names::shown(k.split_whitespace().next().unwrap_or(""))
            );
        }
    }
    Ok((keys.join("\n") + "\n", whence))
}

/// The non-blank, non-comment lines of a public key file or `ssh-add -L` output.
fn public_key_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// What ssh makes of the node's destination (ssh_config applied): the name its host key is
/// looked up under in known_hosts, and the host and port it really connects to.
fn resolved(id: &NodeIdentity, repo: &Path) -> Result<crate::config::ssh_config::Resolved> {
    use crate::config::ssh_config::{resolve, Query};
    let s = &id.ssh;
    resolve(&Query {
        dest: id.ssh_dest(),
        user: s.user_set.then_some(s.user.as_str()),
        port: s.port_set.then_some(s.port),
        proxy_jump: s.proxy_jump.as_deref(),
        config_file: s.config_file.as_deref().map(|c| expand(repo, c)),
    })
    .map_err(|e| Error::node(&id.name, e))
}

fn pin_host_key(
    id: &NodeIdentity,
    repo: &Path,
    known_hosts: &Path,
    args: &BootstrapArgs,
    ui: &dyn Ui,
) -> Result<()> {
    let r = resolved(id, repo)?;
    let name = r.known_hosts_name(&id.address);
    let recorded = Command::new("ssh-keygen")
        .args(["-l", "-F", &name, "-f"])
        .arg(known_hosts)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Error::local("running ssh-keygen (openssh-client)", e))?;
    let recorded_fps = bs::fingerprints(&String::from_utf8_lossy(&recorded.stdout));
    if recorded.status.success() && !recorded_fps.is_empty() {
        if let Some(want) = &args.host_key {
            let want = normalise_fp(want);
            if !recorded_fps.contains(&want) {
                bail!(
                    "{}: --host-key {want} does not match the key already pinned in {} ({}); refusing",
                    id.name,
                    known_hosts.display(),
                    recorded_fps.join(", ")
                );
            }
        }
        say(
            ui,
            "1/5",
            &format!(
                "host key of {} already pinned in {} (checked strictly)",
                id.name,
                known_hosts.display()
            ),
        );
        return Ok(());
    }
    if args.host_key.is_none() && !args.accept_new_host_key {
        bail!(
            "{}: its host key is not in {} yet: pass --host-key SHA256:... (the fingerprint from the provider's console) or, knowingly, --accept-new-host-key",
            id.name,
            known_hosts.display()
        );
    }
    let host = r.hostname.clone().unwrap_or_else(|| id.address.clone());
    let port = r.port.unwrap_or(id.ssh.port);
    let presented = match &id.ssh.proxy_jump {
        None => keyscan(&host, port)?,
        Some(_) => keys_through_jump(id, repo)?,
    };
    // Recorded under the name ssh looks them up by (HostKeyAlias, or [host]:port).
    let lines: Vec<String> = presented
        .iter()
        .filter_map(|l| key_part(l))
        .map(|k| format!("{name} {k}"))
        .collect();
    if lines.is_empty() {
        let via = match &id.ssh.proxy_jump {
            Some(j) => format!(" through {j}"),
            None => String::new(),
        };
        bail!(
            "{}: no host key from {host}:{port}{via} (is sshd reachable?)",
            id.name,
        );
    }
    let mut keep = Vec::new();
    let mut seen = Vec::new();
    for l in &lines {
        let fp = fingerprint_of(l)?;
        seen.push(fp.clone());
        match &args.host_key {
            Some(want) if normalise_fp(want) == fp => keep.push(l.clone()),
            Some(_) => {}
            None => keep.push(l.clone()),
        }
    }
    if keep.is_empty() {
        bail!(
            "{}: HOST KEY MISMATCH: the host presents {} but --host-key says {}; nothing was sent to it and nothing was recorded",
            id.name,
            seen.join(", "),
            normalise_fp(args.host_key.as_deref().unwrap_or(""))
        );
    }
    let fail = |e: std::io::Error| Error::local(format!("writing {}", known_hosts.display()), e);
    if let Some(dir) = known_hosts.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(known_hosts)
        .map_err(fail)?;
    for l in &keep {
        writeln!(f, "{l}").map_err(fail)?;
    }
    say(
        ui,
        "1/5",
        &format!(
            "pinned the host key of {} ({}) in {}",
            id.name,
            keep.iter()
                .filter_map(|l| fingerprint_of(l).ok())
                .collect::<Vec<_>>()
                .join(", "),
            known_hosts.display()
        ),
    );
    Ok(())
}

/// The keys the host presents, read by ssh-keyscan: no credential or command is sent.
fn keyscan(host: &str, port: u16) -> Result<Vec<String>> {
    let scan = Command::new("ssh-keyscan")
        .args([
            "-T",
            "10",
            "-p",
            &port.to_string(),
            "-t",
            "ed25519,ecdsa,rsa",
            "--",
        ])
        .arg(host)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Error::local("running ssh-keyscan (openssh-client)", e))?;
    Ok(known_hosts_lines(&String::from_utf8_lossy(&scan.stdout)))
}

/// The host key algorithms read through a jump host, one connection each (as keyscan's `-t`).
const KEY_ALGORITHMS: [&str; 3] = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"];

/// The keys the host presents, read through its jump hosts (ssh-keyscan cannot use one): ssh
/// with every authentication method off records the key it is shown in a private, empty
/// known_hosts file and then gives up at "Permission denied"; no credential or command is
/// sent to the node. The jump hosts themselves are checked as the ssh config says (the
/// `-o` options here apply to the node only, as with `ssh -J`).
fn keys_through_jump(id: &NodeIdentity, repo: &Path) -> Result<Vec<String>> {
    let tmp = tempfile::tempdir().map_err(|e| Error::local("creating a private directory", e))?;
    let file = tmp.path().join("known_hosts");
    let mut got = Vec::new();
    for alg in KEY_ALGORITHMS {
        let _ = std::fs::remove_file(&file);
        let out = Command::new("ssh")
            .args(first_contact_args(id, repo, &file, alg))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| Error::local("running ssh (openssh-client)", e))?;
        drop(out);
        if let Ok(text) = std::fs::read_to_string(&file) {
            got.extend(known_hosts_lines(&text));
        }
    }
    Ok(got)
}

/// `ssh` arguments of one host key read through the jump hosts: the node's own ssh options
/// (config file, jump, user and port when set), a throwaway known_hosts and no authentication.
fn first_contact_args(id: &NodeIdentity, repo: &Path, file: &Path, alg: &str) -> Vec<String> {
    let mut a = crate::transport::ssh_args(id, repo);
    // ssh takes the first value of an option it is given: these go before the node's own.
    let mut first: Vec<String> = [
        "StrictHostKeyChecking=accept-new".to_string(),
        format!("UserKnownHostsFile={}", file.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "HashKnownHosts=no".into(),
        "UpdateHostKeys=no".into(),
        format!("HostKeyAlgorithms={alg}"),
        "PubkeyAuthentication=no".into(),
        "PasswordAuthentication=no".into(),
        "KbdInteractiveAuthentication=no".into(),
        "GSSAPIAuthentication=no".into(),
        "HostbasedAuthentication=no".into(),
        "BatchMode=yes".into(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect();
    // `-F` must stay first-class (it is not an -o); keep it ahead too.
    if a.first().map(String::as_str) == Some("-F") {
        let f: Vec<String> = a.drain(..2).collect();
        first.splice(0..0, f);
    }
    first.extend(a);
    first.extend(["--".into(), id.ssh_dest().to_string(), "true".into()]);
    first
}

/// The key lines of known_hosts or ssh-keyscan text (no comments, no blanks).
fn known_hosts_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// `TYPE KEY` of a known_hosts line `NAMES TYPE KEY [COMMENT]`.
fn key_part(line: &str) -> Option<String> {
    let mut f = line.split_whitespace();
    let _names = f.next()?;
    let (t, k) = (f.next()?, f.next()?);
    Some(format!("{t} {k}"))
}

fn normalise_fp(fp: &str) -> String {
    let f = fp.trim();
    if f.starts_with("SHA256:") {
        f.to_string()
    } else {
        format!("SHA256:{f}")
    }
}

/// The SHA256 fingerprint of one known_hosts line (`ssh-keygen -lf -`).
fn fingerprint_of(line: &str) -> Result<String> {
    let fail = |e: std::io::Error| Error::local("running ssh-keygen", e);
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(fail)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .map_err(fail)?;
    }
    let out = child.wait_with_output().map_err(fail)?;
    bs::fingerprints(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .next()
        .ok_or_else(|| Error::Local(format!("ssh-keygen could not read the host key `{line}`")))
}

/// The deploy user if it already works (a rerun), else the first-contact user.
async fn login(
    id: &NodeIdentity,
    repo: &Path,
    args: &BootstrapArgs,
    ui: &dyn Ui,
) -> Result<(Conn, bool)> {
    let step = Timeouts::secs(id.ssh.timeouts.step);
    let deploy_err = match Conn::open(id, repo).await {
        Ok(c) => match c.run("echo ok", step).await {
            Ok(o) if o.success() && o.stdout.trim() == "ok" => {
                say(
                    ui,
                    "2/5",
                    &format!("logged in as the deploy user {} (sudo works)", id.ssh.user),
                );
                return Ok((c, true));
            }
            other => {
                c.close().await;
                match other {
                    Ok(o) => format!("sudo -n failed: {}", o.stderr.trim()),
                    Err(e) => e.to_string(),
                }
            }
        },
        Err(e) => e.to_string(),
    };
    let first = first_contact(id, &args.user);
    match Conn::open_new(&first, repo).await {
        Ok(c) => {
            say(
                ui,
                "2/5",
                &format!("logged in as {} (first contact)", args.user),
            );
            Ok((c, false))
        }
        Err(e) => Err(Error::node(
            &id.name,
            format!(
                "cannot log in as the deploy user {} ({}) nor as {} ({e})",
                id.ssh.user,
                deploy_err.lines().last().unwrap_or(""),
                args.user
            ),
        )),
    }
}

fn first_contact(id: &NodeIdentity, user: &str) -> NodeIdentity {
    let mut first = id.clone();
    first.ssh.user = user.to_string();
    first.ssh.user_set = true;
    first.ssh.r#become = if user == "root" {
        None
    } else {
        Some("sudo".into())
    };
    first
}

#[allow(clippy::too_many_arguments)]
async fn converge(
    repo: &Path,
    (conn, as_deploy): (Conn, bool),
    desired: DesiredState,
    all: Vec<DesiredState>,
    args: &BootstrapArgs,
    secrets: &[String],
    pubkeys: &str,
    started: Instant,
    ui: Arc<dyn Ui>,
) -> Result<()> {
    let id = desired.node.clone();
    let step = Timeouts::secs(id.ssh.timeouts.step);
    let u = ui.as_ref();
    // 2. Preflight: read-only, every problem at once.
    let req = Requirements {
        ssh_port: id.ssh.port,
        min_free_mb: args.min_free_mb,
        max_clock_offset_secs: args.max_clock_offset,
    };
    let t0 = now() as i64;
    let out = conn.run(&bs::preflight_script(), step).await;
    let t1 = now() as i64;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            conn.close().await;
            return Err(Error::node(&id.name, format!("preflight: {e}")));
        }
    };
    let problems = bs::preflight_problems(&out.stdout, &req, (t0 + t1) / 2);
    if !problems.is_empty() {
        conn.close().await;
        return Err(Error::node(
            &id.name,
            format!(
                "failed preflight; nothing was changed:\n  - {}",
                problems.join("\n  - ")
            ),
        ));
    }
    say(
        u,
        "2/5",
        "preflight passed: systemd, OS release, free disk, clock, SSH port, tools",
    );

    // 3-4. Base, then root login off only once the deploy user has proven it can get in.
    let deploy_conn = if as_deploy {
        let changes = match base(&conn, &id, pubkeys, "no").await {
            Ok(c) => c,
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        say(u, "3/5", &describe_changes(&changes));
        conn
    } else {
        let changes = match base(&conn, &id, pubkeys, "prohibit-password").await {
            Ok(c) => c,
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        say(u, "3/5", &describe_changes(&changes));
        let deploy = match Conn::open_new(&id, repo).await {
            Ok(c) => c,
            Err(e) => {
                conn.close().await;
                return Err(Error::node(
                    &id.name,
                    format!(
                        "a new connection as the deploy user {} failed ({e}); root login was left on",
                        id.ssh.user
                    ),
                ));
            }
        };
        if let Err(e) = run_step(&deploy, "echo OK\n", "sudo as the deploy user", step).await {
            deploy.close().await;
            conn.close().await;
            return Err(Error::node(
                &id.name,
                format!("{e}; root login was left on"),
            ));
        }
        let changes = match base(&deploy, &id, pubkeys, "no").await {
            Ok(c) => c,
            Err(e) => {
                deploy.close().await;
                conn.close().await;
                return Err(e);
            }
        };
        conn.close().await;
        say(
            u,
            "4/5",
            &format!(
                "logged in again as {} over a new connection; {}",
                id.ssh.user,
                describe_changes(&changes)
            ),
        );
        deploy
    };

    // 5. The node's full apply through the one rollout, once nothing of an interrupted
    //    earlier run still moves on the node.
    if let Err(e) = run_step(
        &deploy_conn,
        &crate::remote::apply::quiesce_script(),
        "waiting for an earlier run",
        Timeouts::secs(id.ssh.timeouts.lock),
    )
    .await
    {
        deploy_conn.close().await;
        return Err(Error::node(&id.name, e));
    }
    let g = match engine::gather_on(deploy_conn, desired.clone(), true).await {
        Outcome::Planned(g) => g,
        Outcome::Failed { error, .. } => return Err(Error::node(&id.name, error)),
    };
    let mut outcomes = vec![Outcome::Planned(g)];
    say(u, "5/5", &format!("applying {}'s configuration", id.name));
    let r = Rollout {
        opts: Opts {
            repo: repo.to_path_buf(),
            by: who(),
            commit: git_commit(repo),
            rollback: true,
            confirm_timeout: args.confirm_timeout,
            kind: "apply".into(),
            rolled_back_from: None,
            revision: None,
        },
        yes: args.yes,
        question: "Apply these changes? Only 'yes' will be accepted",
        saved: None,
        secrets,
        started,
        unknown_is_inactive: false,
    };
    let res = rollout::run(repo, &mut outcomes, &r, u).await;
    engine::close_all(&mut outcomes).await;
    match res {
        Err(Error::Declined(_)) => {
            return Err(Error::Declined("bootstrap stopped before the apply".into()))
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    // 6. The rest of the fleet: which nodes render the fleet and now differ.
    let others: Vec<DesiredState> = all.into_iter().filter(|d| d.node.name != id.name).collect();
    if !others.is_empty() {
        let mut o = engine::gather_all(
            others,
            repo,
            10,
            true,
            engine::Reach::OneRead,
            Arc::new(crate::engine::events::Quiet),
        )
        .await;
        engine::close_all(&mut o).await;
        let mut pending = Vec::new();
        let mut unknown = Vec::new();
        for n in engine::node_reports(&o) {
            if let Some(e) = &n.error {
                unknown.push(format!("{} ({})", n.node, e.lines().next().unwrap_or("")));
            } else if n.summary.total() > 0 {
                pending.push((n.node.clone(), n.summary.total()));
            }
        }
        if pending.is_empty() {
            ui.event(Event::Say("No other node has pending changes.".into()));
        } else {
            ui.event(Event::Say(format!(
                "\nThese nodes now have pending changes (configs that render the fleet): {}",
                pending
                    .iter()
                    .map(|(n, c)| format!("{n} ({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
            ui.event(Event::Say(format!(
                "Review and apply them with: strata plan {0} && strata apply {0}",
                pending
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        if !unknown.is_empty() {
            ui.event(Event::Say(format!(
                "Could not check: {}",
                unknown.join(", ")
            )));
        }
    }
    Ok(())
}

async fn base(
    conn: &Conn,
    id: &NodeIdentity,
    pubkeys: &str,
    root_login: &str,
) -> Result<Vec<String>> {
    let out = conn
        .run(
            &bs::base_script(&id.name, &id.ssh.user, pubkeys, root_login),
            Timeouts::secs(id.ssh.timeouts.changes),
        )
        .await
        .map_err(|e| Error::node(&id.name, format!("base setup: {e}")))?;
    if !(out.success() && out.stdout.lines().any(|l| l == "OK")) {
        let why: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect();
        bail!(
            "{}: base setup failed: {}{}",
            id.name,
            why.join("; "),
            if out.stderr.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", out.stderr.trim())
            }
        );
    }
    Ok(bs::changed(&out.stdout))
}

fn describe_changes(c: &[String]) -> String {
    if c.is_empty() {
        "base already in place: no change".into()
    } else {
        format!("base: {}", c.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_contact_through_a_jump_sends_no_credential() {
        let mut id = crate::model::testing::identity("v-2");
        id.ssh.proxy_jump = Some("root@10.77.1.2".into());
        id.ssh.config_file = Some("cfg".into());
        id.ssh.known_hosts = Some("inventory/known_hosts".into());
        id.ssh.host = Some("v2".into());
        let a = first_contact_args(&id, Path::new("/r"), Path::new("/t/kh"), "ssh-ed25519");
        assert_eq!(a[..2], ["-F", "/r/cfg"]);
        let pos = |o: &str| a.iter().position(|x| x == o);
        // The throwaway file and accept-new come before the node's own (ssh keeps the first).
        assert!(
            pos("UserKnownHostsFile=/t/kh") < pos("UserKnownHostsFile=/r/inventory/known_hosts")
        );
        assert!(pos("StrictHostKeyChecking=accept-new") < pos("StrictHostKeyChecking=yes"));
        for off in [
            "PubkeyAuthentication=no",
            "PasswordAuthentication=no",
            "KbdInteractiveAuthentication=no",
            "GSSAPIAuthentication=no",
            "HostbasedAuthentication=no",
        ] {
            assert!(pos(off).is_some(), "{off}");
        }
        assert!(a.windows(2).any(|w| w == ["-J", "root@10.77.1.2"]));
        assert_eq!(a[a.len() - 3..], ["--", "v2", "true"]);
    }

    #[test]
    fn operator_keys_are_checked_before_they_are_sent() {
        let d = tempfile::tempdir().unwrap();
        let mut id = crate::model::testing::identity("v-2");
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop";
        let f = d.path().join("op.pub");
        std::fs::write(&f, format!("# mine\n\n{good}\n")).unwrap();
        let (keys, whence) = operator_keys(&id, d.path(), Some(&f)).unwrap();
        assert_eq!(
            (keys, whence),
            (format!("{good}\n"), f.display().to_string())
        );
        std::fs::write(&f, format!("{good}\nnot a key\n")).unwrap();
        let e = operator_keys(&id, d.path(), Some(&f))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`not` is not an ssh public key"), "{e}");
        std::fs::write(&f, "# nothing\n").unwrap();
        let e = operator_keys(&id, d.path(), Some(&f))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no public key in"), "{e}");
        // An identity_file without its .pub: named, and the two ways out said.
        id.ssh.identity_file = Some("id_missing".into());
        let e = operator_keys(&id, d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("id_missing.pub does not exist; pass --pubkey FILE"),
            "{e}"
        );
    }

    #[test]
    fn key_lines_are_renamed_to_the_pinned_name() {
        assert_eq!(
            key_part("10.77.2.2 ssh-ed25519 AAAA comment").as_deref(),
            Some("ssh-ed25519 AAAA")
        );
        assert_eq!(key_part("10.77.2.2 ssh-ed25519"), None);
        assert_eq!(
            known_hosts_lines("# 10.77.2.2:22 SSH-2.0\n\n10.77.2.2 ssh-rsa B\n"),
            ["10.77.2.2 ssh-rsa B"]
        );
    }
}
