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

use crate::cli::apply::{audit, confirm, git_commit, print_summary, who};
use crate::cli::plan::{load_selected, node_reports, runtime, style};
use crate::engine::node_apply::{apply_node, needs_apply, run_step, Opts};
use crate::engine::{self, Outcome};
use crate::error::{EXIT_ERROR, EXIT_OK};
use crate::model::{DesiredState, NodeIdentity};
use crate::remote::bootstrap::{self as bs, Requirements};
use crate::report::{self, PlanReport};
use crate::transport::{expand, Conn};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// The node, as added to the inventory (`strata node add`).
    pub node: String,
    /// Who strata logs in as the first time: root, or the provider's sudo user. Afterwards it
    /// uses the inventory's (deploy) user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// The host key fingerprint from the provider's console (`SHA256:...`): the key is pinned
    /// into the inventory's known_hosts only if it matches.
    #[arg(long, conflicts_with = "accept_new_host_key")]
    pub host_key: Option<String>,
    /// Trust the host key the host presents on first contact (and pin it).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Preflight: free space needed on / (MiB).
    #[arg(long, default_value_t = 2048)]
    pub min_free_mb: u64,
    /// Preflight: largest clock offset against this machine (seconds).
    #[arg(long, default_value_t = 10)]
    pub max_clock_offset: i64,
    /// Do not ask before the apply.
    #[arg(long)]
    pub yes: bool,
    /// As for apply: the connectivity guard's confirm window, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub confirm_timeout: u64,
}

fn say(step: &str, msg: &str) {
    eprintln!("bootstrap [{step}] {msg}");
    let _ = std::io::stderr().flush();
}

pub fn bootstrap(repo: &Path, inventory: Option<&Path>, args: BootstrapArgs) -> Result<i32> {
    let started = Instant::now();
    let Some((all, secrets)) = load_selected(repo, inventory, &[])? else {
        return Ok(EXIT_ERROR);
    };
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
    let known_hosts = id
        .ssh
        .known_hosts
        .as_deref()
        .map(|k| expand(repo, k))
        .context(
            "bootstrap pins the host key: the inventory needs `ssh.known_hosts` (defaults or host)",
        )?;
    let identity = id
        .ssh
        .identity_file
        .as_deref()
        .map(|k| expand(repo, k))
        .context(
            "bootstrap installs the operator's public key: the inventory needs `ssh.identity_file`",
        )?;
    let pub_path = PathBuf::from(format!("{}.pub", identity.display()));
    let pubkeys = std::fs::read_to_string(&pub_path)
        .with_context(|| format!("reading the operator's public key {}", pub_path.display()))?;

    // 1. The host key, before anything else is sent.
    pin_host_key(&id, &known_hosts, &args)?;

    let rt = runtime()?;
    rt.block_on(async {
        let conn = login(&id, repo, &args).await?;
        converge(repo, conn, desired, all, &args, &secrets, &pubkeys, started).await
    })
}

/// `[addr]:port` as known_hosts names a host on a non-default port.
fn host_name(id: &NodeIdentity) -> String {
    if id.ssh.port == 22 {
        id.address.clone()
    } else {
        format!("[{}]:{}", id.address, id.ssh.port)
    }
}

fn pin_host_key(id: &NodeIdentity, known_hosts: &Path, args: &BootstrapArgs) -> Result<()> {
    let name = host_name(id);
    let recorded = Command::new("ssh-keygen")
        .args(["-l", "-F", &name, "-f"])
        .arg(known_hosts)
        .stderr(Stdio::null())
        .output()
        .context("running ssh-keygen (openssh-client)")?;
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
    // ssh-keyscan fetches the keys the host presents; no credential or command is sent.
    let scan = Command::new("ssh-keyscan")
        .args([
            "-T",
            "10",
            "-p",
            &id.ssh.port.to_string(),
            "-t",
            "ed25519,ecdsa,rsa",
        ])
        .arg(&id.address)
        .stderr(Stdio::null())
        .output()
        .context("running ssh-keyscan (openssh-client)")?;
    let lines: Vec<String> = String::from_utf8_lossy(&scan.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!(
            "{}: no host key from {}:{} (is sshd reachable?)",
            id.name,
            id.address,
            id.ssh.port
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
    if let Some(dir) = known_hosts.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(known_hosts)
        .with_context(|| format!("opening {}", known_hosts.display()))?;
    for l in &keep {
        writeln!(f, "{l}")?;
    }
    say(
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
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running ssh-keygen")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{line}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    bs::fingerprints(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("ssh-keygen could not read the host key `{line}`"))
}

/// The deploy user if it already works (a rerun), else the first-contact user.
async fn login(id: &NodeIdentity, repo: &Path, args: &BootstrapArgs) -> Result<(Conn, bool)> {
    let deploy_err = match Conn::open(id, repo).await {
        Ok(c) => match c.run("echo ok").await {
            Ok(o) if o.success() && o.stdout.trim() == "ok" => {
                say(
                    "2/5",
                    &format!("logged in as the deploy user {} (sudo works)", id.ssh.user),
                );
                return Ok((c, true));
            }
            other => {
                c.close().await;
                match other {
                    Ok(o) => format!("sudo -n failed: {}", o.stderr.trim()),
                    Err(e) => e,
                }
            }
        },
        Err(e) => e,
    };
    let first = first_contact(id, &args.user);
    match Conn::open(&first, repo).await {
        Ok(c) => {
            say(
                "2/5",
                &format!("logged in as {} (first contact)", args.user),
            );
            Ok((c, false))
        }
        Err(e) => bail!(
            "{}: cannot log in as the deploy user {} ({}) nor as {} ({e})",
            id.name,
            id.ssh.user,
            deploy_err.lines().last().unwrap_or(""),
            args.user
        ),
    }
}

fn first_contact(id: &NodeIdentity, user: &str) -> NodeIdentity {
    let mut first = id.clone();
    first.ssh.user = user.to_string();
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
) -> Result<i32> {
    let id = desired.node.clone();
    // 2. Preflight: read-only, every problem at once.
    let req = Requirements {
        ssh_port: id.ssh.port,
        min_free_mb: args.min_free_mb,
        max_clock_offset_secs: args.max_clock_offset,
    };
    let t0 = crate::engine::node_apply::now() as i64;
    let out = conn
        .run(&bs::preflight_script())
        .await
        .map_err(|e| anyhow!("{}: preflight: {e}", id.name));
    let t1 = crate::engine::node_apply::now() as i64;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            conn.close().await;
            return Err(e);
        }
    };
    let problems = bs::preflight_problems(&out.stdout, &req, (t0 + t1) / 2);
    if !problems.is_empty() {
        conn.close().await;
        eprintln!("error: {} failed preflight; nothing was changed:", id.name);
        for p in &problems {
            eprintln!("  - {p}");
        }
        return Ok(EXIT_ERROR);
    }
    say(
        "2/5",
        "preflight passed: systemd, OS release, free disk, clock, SSH port, tools",
    );

    // 3-4. Base, then root login off only once the deploy user has proven it can get in.
    let deploy_conn = if as_deploy {
        let changes = base(&conn, &id, pubkeys, "no").await?;
        say("3/5", &describe_changes(&changes));
        conn
    } else {
        let changes = match base(&conn, &id, pubkeys, "prohibit-password").await {
            Ok(c) => c,
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        say("3/5", &describe_changes(&changes));
        let deploy = match Conn::open(&id, repo).await {
            Ok(c) => c,
            Err(e) => {
                conn.close().await;
                bail!("{}: a new connection as the deploy user {} failed ({e}); root login was left on", id.name, id.ssh.user);
            }
        };
        if let Err(e) = run_step(&deploy, "echo OK\n", "sudo as the deploy user").await {
            deploy.close().await;
            conn.close().await;
            bail!("{}: {e}; root login was left on", id.name);
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
            "4/5",
            &format!(
                "logged in again as {} over a new connection; {}",
                id.ssh.user,
                describe_changes(&changes)
            ),
        );
        deploy
    };

    // 5. The node's full apply, exactly as `strata apply` does it, once nothing of an
    //    interrupted earlier run still moves on the node.
    if let Err(e) = run_step(
        &deploy_conn,
        &crate::remote::apply::quiesce_script(),
        "waiting for an earlier run",
    )
    .await
    {
        deploy_conn.close().await;
        bail!("{}: {e}", id.name);
    }
    let g = match engine::gather_on(deploy_conn, desired.clone(), true).await {
        Outcome::Planned(g) => g,
        Outcome::Failed { error, .. } => bail!("{}: {error}", id.name),
    };
    let mut outcomes = vec![Outcome::Planned(g)];
    let report = PlanReport::new(node_reports(&outcomes));
    print!("{}", report::text(&report, style(), secrets));
    if report.has_changes() && !args.yes && !confirm()? {
        eprintln!("Bootstrap stopped before the apply.");
        engine::close_all(&mut outcomes).await;
        return Ok(EXIT_ERROR);
    }
    say("5/5", &format!("applying {}'s configuration", id.name));
    let opts = Opts {
        repo: repo.to_path_buf(),
        by: who(),
        commit: git_commit(repo),
        rollback: true,
        confirm_timeout: args.confirm_timeout,
        kind: "apply".into(),
        rolled_back_from: None,
        revision: None,
    };
    let Outcome::Planned(g) = &mut outcomes[0] else {
        unreachable!("built as Planned above")
    };
    // A bootstrapped node, recorded at this configuration: nothing to lock or record.
    let result = if needs_apply(g) {
        apply_node(g, &opts).await
    } else {
        crate::engine::node_apply::NodeResult::Unchanged
    };
    let failed = result.is_failure();
    let results = vec![(id.name.clone(), result)];
    print_summary(&results, secrets, started);
    audit(repo, &results, opts.commit.as_deref(), &opts.by, secrets);
    engine::close_all(&mut outcomes).await;
    if failed {
        return Ok(EXIT_ERROR);
    }
    // 6. The rest of the fleet: which nodes render the fleet and now differ.
    let others: Vec<DesiredState> = all.into_iter().filter(|d| d.node.name != id.name).collect();
    if !others.is_empty() {
        let mut o = engine::gather_all(others, repo, 10, false, true).await;
        engine::close_all(&mut o).await;
        let mut pending = Vec::new();
        let mut unknown = Vec::new();
        for n in node_reports(&o) {
            if let Some(e) = &n.error {
                unknown.push(format!("{} ({})", n.node, e.lines().next().unwrap_or("")));
            } else if n.summary.total() > 0 {
                pending.push((n.node.clone(), n.summary.total()));
            }
        }
        if pending.is_empty() {
            println!("No other node has pending changes.");
        } else {
            println!(
                "\nThese nodes now have pending changes (configs that render the fleet): {}",
                pending
                    .iter()
                    .map(|(n, c)| format!("{n} ({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "Review and apply them with: strata plan {0} && strata apply {0}",
                pending
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if !unknown.is_empty() {
            println!("Could not check: {}", unknown.join(", "));
        }
    }
    Ok(EXIT_OK)
}

async fn base(
    conn: &Conn,
    id: &NodeIdentity,
    pubkeys: &str,
    root_login: &str,
) -> Result<Vec<String>> {
    let out = conn
        .run(&bs::base_script(
            &id.name,
            &id.ssh.user,
            pubkeys,
            root_login,
        ))
        .await
        .map_err(|e| anyhow!("{}: base setup: {e}", id.name))?;
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
