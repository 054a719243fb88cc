//! `strata-lab`: a local lab of real Debian nodes (systemd + sshd) on one Linux machine,
//! for end-to-end tests. Each node is an overlayfs over a cached debootstrap base, booted
//! with systemd-nspawn in its own network namespace, reached at 10.77.<i>.2. Packages come
//! from the lab's local apt repository (apt_repo.rs), bound into every node.
//!
//! The lab only ever stops processes it started, by the PID it recorded.

use crate::inventory::{NodeKind, NodeSpec, Release, ReleaseChoice, MAX_NODES};
use crate::node::{self, Lab};
use crate::LabCmd;
use crate::{apt_repo, base, inventory, net, sys};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a node may take from nspawn start to sshd answering.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `down` lets a node power off in order before killing it.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn run(repo: &Path, cmd: LabCmd) -> Result<i32> {
    let lab = Lab::new(repo)?;
    match cmd {
        LabCmd::Up(u) => up(&lab, u.nodes, u.release),
        LabCmd::Down => down(&lab),
        LabCmd::Status => status(&lab),
        LabCmd::Reset { nodes, release } => reset(&lab, &nodes, release),
        LabCmd::Stop { node } => stop(&lab, &node),
        LabCmd::Start { node } => start(&lab, &node),
        LabCmd::Disk(d) => disk(&lab, &d.node, d.mib, d.at.as_str()),
        LabCmd::Add(a) => add(&lab, &a.name, a.bare, a.release.unwrap_or_default()),
    }
}

/// Tools the lab runs, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("systemd-nspawn", "systemd-container"),
    ("debootstrap", "debootstrap"),
    ("ip", "iproute2"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("setsid", "util-linux"),
    ("chroot", "coreutils"),
    ("dpkg-scanpackages", "dpkg-dev"),
    ("losetup", "mount"),
    ("nsenter", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
];

/// Fail at once, saying everything that is missing and how to get it.
fn preflight() -> Result<()> {
    let mut missing = Vec::new();
    if sys::euid() != Some(0) {
        missing.push("root: the lab mounts overlayfs, creates veth interfaces and runs systemd-nspawn (run as root)".to_string());
    }
    for (tool, pkg) in TOOLS {
        if sys::find_tool(tool).is_none() {
            missing.push(format!("`{tool}` (Debian package: {pkg})"));
        }
    }
    if !overlay_supported() {
        missing.push("overlayfs support in the kernel (`modprobe overlay`)".to_string());
    }
    if !missing.is_empty() {
        bail!(
            "strata-lab cannot run here; missing:\n  - {}",
            missing.join("\n  - ")
        );
    }
    Ok(())
}

/// Nodes booted at once (`STRATA_LAB_BOOT_PARALLEL`, default 8).
fn boot_parallel() -> usize {
    std::env::var("STRATA_LAB_BOOT_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(8)
}

/// `MemAvailable` of /proc/meminfo, in KiB.
fn mem_available_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What N nodes need of the host's per-user limits, each raised (and said) when lower. Every
/// node's systemd, journald, logind and udev take inotify instances: with the default 128, the
/// 20th node's systemd fails with "Failed to allocate manager object: Too many open files".
/// Never lowered; `lab down` leaves them raised (they are limits, not resources).
pub fn host_limits(n: usize) -> [(&'static str, u64); 3] {
    let n = n as u64;
    [
        ("/proc/sys/fs/inotify/max_user_instances", 128 + 16 * n),
        ("/proc/sys/fs/inotify/max_user_watches", 65536 + 16384 * n),
        ("/proc/sys/kernel/keys/maxkeys", 200 + 50 * n),
    ]
}

fn raise_host_limits(n: usize) -> Result<()> {
    for (path, need) in host_limits(n) {
        let Some(now) = std::fs::read_to_string(path)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            continue;
        };
        if now < need {
            std::fs::write(path, need.to_string())
                .with_context(|| format!("cannot raise {path} from {now} to {need}"))?;
            let name = path.trim_start_matches("/proc/sys/").replace('/', ".");
            println!("lab: raised {name} from {now} to {need} for {n} nodes");
        }
    }
    Ok(())
}

fn overlay_supported() -> bool {
    let has = || {
        std::fs::read_to_string("/proc/filesystems")
            .map(|f| {
                f.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            })
            .unwrap_or(false)
    };
    has() || {
        let _ = sys::tool("modprobe").arg("overlay").output();
        has()
    }
}

/// Serialise lab commands on one repo (two `lab up`s at once would race on the nodes).
fn lock(lab: &Lab) -> Result<std::fs::File> {
    std::fs::create_dir_all(&lab.state_dir)?;
    let f = std::fs::File::create(lab.state_dir.join("lock"))?;
    f.lock().context("cannot lock the lab state")?;
    Ok(f)
}

fn ensure_ssh_key(lab: &Lab) -> Result<String> {
    let key = lab.key();
    if !key.exists() {
        std::fs::create_dir_all(key.parent().unwrap())?;
        sys::run(
            sys::tool("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "strata-lab", "-f"])
                .arg(&key),
        )?;
    }
    std::fs::read_to_string(key.with_extension("pub")).context("cannot read the lab public key")
}

/// The stand-in validator, built by cargo next to the strata binary.
fn standin_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("monad-standin");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build` (it is installed on nodes as /usr/local/bin/monad-validator)",
            p.display()
        );
    }
    Ok(p)
}

/// What booting any node needs, built or found once per command: per release, its base and
/// its local apt repository.
struct Prepared {
    pubkey: String,
    standin: PathBuf,
    releases: BTreeMap<Release, (PathBuf, PathBuf)>,
}

impl Prepared {
    /// (base, apt repository) of a release this command prepared.
    fn of(&self, r: Release) -> Result<&(PathBuf, PathBuf)> {
        self.releases
            .get(&r)
            .ok_or_else(|| anyhow!("the {} base was not prepared", r.suite()))
    }
}

fn prepare(lab: &Lab, releases: impl IntoIterator<Item = Release>) -> Result<Prepared> {
    let pubkey = ensure_ssh_key(lab)?;
    let standin = standin_binary()?;
    let mut out = BTreeMap::new();
    for r in releases.into_iter().collect::<BTreeSet<_>>() {
        let base = base::ensure_base(r)?;
        let apt_repo = apt_repo::ensure_repo(&base)?;
        out.insert(r, (base, apt_repo));
    }
    Ok(Prepared {
        pubkey,
        standin,
        releases: out,
    })
}

fn up(lab: &Lab, n: usize, release: Option<ReleaseChoice>) -> Result<i32> {
    if n == 0 || n > MAX_NODES as usize {
        bail!("--nodes must be 1..={MAX_NODES}");
    }
    preflight()?;
    let _lock = lock(lab)?;
    raise_host_limits(n)?;
    net::setup()?;
    let mem0 = mem_available_kib();
    let t0 = Instant::now();

    let existing = lab.existing_nodes();
    // Asked for: that release. Not asked: a node keeps the one it has; a new one is bookworm.
    let desired = inventory::specs(n as u32, |i| match release {
        Some(c) => c.for_index(i),
        None => existing
            .iter()
            .find(|e| e.kind == NodeKind::Lab && e.index == i)
            .map_or(Release::Bookworm, |e| e.release),
    });
    let prep = prepare(lab, desired.iter().map(|s| s.release))?;
    let t_nodes = Instant::now();
    // The release each running node was booted with (node.json is rewritten below).
    let running: BTreeMap<String, Release> = existing
        .iter()
        .filter(|e| lab.running_pid(e).is_some())
        .map(|e| (e.name.clone(), e.release))
        .collect();
    // Nodes from `lab add` are left alone; `lab up` must not take their index or name.
    for a in existing.iter().filter(|e| e.kind != NodeKind::Lab) {
        if a.index <= n as u32 || desired.iter().any(|d| d.name == a.name) {
            bail!(
                "{} (added with `strata-lab add`, {}) is in the way of validator-1..{n}: \
                 use --nodes {} or fewer, or `strata-lab down` first",
                a.name,
                a.address(),
                a.index - 1
            );
        }
    }
    // The lab converges to exactly N of its own nodes: those beyond N are stopped and removed.
    for extra in existing
        .iter()
        .filter(|e| e.kind == NodeKind::Lab && e.index > n as u32)
    {
        node::stop(lab, extra, STOP_GRACE)?;
        node::remove(lab, extra)?;
    }

    parallel(&desired, |s| node::init(lab, s))?;
    write_listings(lab)?;

    // Booted in bounded batches: on 2 cores, dozens of systemds starting at once time out.
    let mut results = Vec::new();
    let kept =
        |s: &NodeSpec| running.get(&s.name) == Some(&s.release) && lab.running_pid(s).is_some();
    let booted_before = desired.iter().filter(|s| kept(s)).count();
    for batch in desired.chunks(boot_parallel()) {
        results.extend(parallel_collect(batch, |s| {
            if kept(s) {
                return Ok("running (left alone)".to_string());
            }
            start_fresh(lab, s, &prep)?;
            Ok(match running.get(&s.name) {
                Some(was) => format!("booted fresh (was {})", was.suite()),
                None => "booted".to_string(),
            })
        }));
    }
    write_state(lab)?;

    println!("{:<14} {:<12} {:<9} STATE", "NODE", "ADDRESS", "RELEASE");
    let mut errors = Vec::new();
    for (s, r) in desired.iter().zip(&results) {
        let release = s.release.suite();
        match r {
            Ok(state) => println!("{:<14} {:<12} {release:<9} {state}", s.name, s.address()),
            Err(e) => {
                println!("{:<14} {:<12} {release:<9} FAILED", s.name, s.address());
                errors.push(format!("{e:#}"));
            }
        }
    }
    println!(
        "lab up: {n} nodes in {:.1}s (nodes {:.1}s)",
        t0.elapsed().as_secs_f64(),
        t_nodes.elapsed().as_secs_f64()
    );
    let booted = n - booted_before;
    if booted > 0 {
        let used = mem0
            .zip(mem_available_kib())
            .map(|(a, b)| a.saturating_sub(b));
        println!(
            "lab up: {booted} booted, {:.2}s per node{}",
            t_nodes.elapsed().as_secs_f64() / booted as f64,
            used.map(|u| format!(
                "; host memory in use +{} MiB ({} MiB per node)",
                u / 1024,
                u / 1024 / booted as u64
            ))
            .unwrap_or_default()
        );
    }
    if !errors.is_empty() {
        bail!("lab up failed:\n{}", errors.join("\n"));
    }
    Ok(0)
}

/// Stop whatever is left of the node, then create, boot and wait for sshd.
fn start_fresh(lab: &Lab, s: &NodeSpec, p: &Prepared) -> Result<()> {
    let (base, apt_repo) = p.of(s.release)?;
    node::stop(lab, s, Duration::ZERO)?;
    node::create(lab, s, base, &p.standin, &p.pubkey)?;
    let pid = node::boot(lab, s, apt_repo)?;
    node::configure_veth(lab, s, pid, Duration::from_secs(15))?;
    node::wait_ssh(lab, s, pid, BOOT_TIMEOUT)
}

fn down(lab: &Lab) -> Result<i32> {
    if sys::euid() != Some(0) {
        bail!("strata-lab down must run as root (it unmounts overlayfs and removes veths)");
    }
    let _lock = lock(lab)?;
    let t0 = Instant::now();
    let nodes = lab.existing_nodes();
    let results = parallel_collect(&nodes, |s| {
        node::stop(lab, s, STOP_GRACE)?;
        node::remove(lab, s)
    });
    write_state(lab)?;
    let cgroups_left = node::remove_lab_cgroups(lab);
    net::teardown();
    let _ = std::fs::write(lab.known_hosts(), "");
    let mut errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    let left = net::live_leftovers();
    if !left.is_empty() {
        errors.push(format!("lab network left on the host: {}", left.join("; ")));
    }
    for d in cgroups_left {
        errors.push(format!(
            "cgroup {} left (a process in it would not die)",
            d.display()
        ));
    }
    println!(
        "lab down: {} nodes stopped in {:.1}s (base cache kept in {})",
        nodes.len(),
        t0.elapsed().as_secs_f64(),
        base::CACHE_DIR
    );
    if !errors.is_empty() {
        bail!("lab down failed:\n{}", errors.join("\n"));
    }
    Ok(0)
}

/// Exit 0 when the lab has nodes and every one runs and answers ssh; 1 otherwise.
fn status(lab: &Lab) -> Result<i32> {
    let nodes = lab.existing_nodes();
    if nodes.is_empty() {
        println!("lab is down (no nodes)");
        return Ok(1);
    }
    let rows = parallel_collect(&nodes, |s| {
        let pid = lab.running_pid(s);
        let ssh = pid.is_some() && lab.ssh_answers(s, 2);
        Ok((pid, ssh))
    });
    println!(
        "{:<14} {:<12} {:<10} {:<6} {:<9} SSH",
        "NODE", "ADDRESS", "PID", "KIND", "RELEASE"
    );
    let mut healthy = true;
    for (s, r) in nodes.iter().zip(rows) {
        let (pid, ssh) = r?;
        healthy &= pid.is_some() && ssh;
        let pid = pid.map_or("dead".to_string(), |p| p.to_string());
        let ssh = if ssh { "answers" } else { "no answer" };
        println!(
            "{:<14} {:<12} {:<10} {:<6} {:<9} {ssh}",
            s.name,
            s.address(),
            pid,
            s.kind.as_str(),
            s.release.suite()
        );
    }
    Ok(if healthy { 0 } else { 1 })
}

/// Nodes back to fresh; a bare node back to bare (host keys are kept), each on its own
/// release or the one asked for. Several nodes are booted in batches of
/// `STRATA_LAB_BOOT_PARALLEL`, as by `up`.
fn reset(lab: &Lab, names: &[String], release: Option<Release>) -> Result<i32> {
    let existing = lab.existing_nodes();
    let mut nodes = Vec::new();
    for name in names {
        let Some(s) = existing.iter().find(|s| &s.name == name) else {
            bail!("{name} is not a lab node (see `strata-lab status`)");
        };
        if !nodes.iter().any(|n: &NodeSpec| n.name == s.name) {
            nodes.push(s.clone());
        }
    }
    preflight()?;
    let _lock = lock(lab)?;
    let t0 = Instant::now();
    if let Some(r) = release {
        for s in nodes.iter_mut().filter(|s| s.release != r) {
            s.release = r;
            node::init(lab, s)?;
        }
    }
    let prep = prepare(lab, nodes.iter().map(|s| s.release))?;
    // The nodes' state is thrown away: no need for an orderly poweroff.
    let mut results = Vec::new();
    for batch in nodes.chunks(boot_parallel()) {
        results.extend(parallel_collect(batch, |s| start_fresh(lab, s, &prep)));
    }
    write_state(lab)?;
    let mut errors = Vec::new();
    for (s, r) in nodes.iter().zip(results) {
        match r {
            Ok(()) if nodes.len() == 1 => {
                let what = if s.kind == NodeKind::Bare {
                    "bare"
                } else {
                    "fresh"
                };
                println!(
                    "lab reset: {} {what} ({}) in {:.1}s",
                    s.name,
                    s.release.suite(),
                    t0.elapsed().as_secs_f64()
                );
            }
            Ok(()) => {}
            Err(e) => errors.push(format!("{}: {e:#}", s.name)),
        }
    }
    if nodes.len() > 1 {
        println!(
            "lab reset: {} nodes in {:.1}s",
            nodes.len() - errors.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    if !errors.is_empty() {
        bail!("lab reset failed:\n{}", errors.join("\n"));
    }
    Ok(0)
}

/// The lab node called `name`.
fn find(lab: &Lab, name: &str) -> Result<NodeSpec> {
    lab.existing_nodes()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow!("{name} is not a lab node (see `strata-lab status`)"))
}

/// `strata-lab stop NAME`: the node powers off (killed after the grace time); its disk stays.
fn stop(lab: &Lab, name: &str) -> Result<i32> {
    let s = find(lab, name)?;
    let _lock = lock(lab)?;
    let t0 = Instant::now();
    node::stop(lab, &s, STOP_GRACE)?;
    write_state(lab)?;
    println!(
        "lab stop: {name} stopped in {:.1}s (its state is kept: `strata-lab start {name}`)",
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// `strata-lab start NAME`: boot a stopped node on the state it had.
fn start(lab: &Lab, name: &str) -> Result<i32> {
    let s = find(lab, name)?;
    preflight()?;
    let _lock = lock(lab)?;
    if lab.running_pid(&s).is_some() {
        println!("lab start: {name} is running (left alone)");
        return Ok(0);
    }
    let t0 = Instant::now();
    let prep = prepare(lab, [s.release])?;
    let (base, apt_repo) = prep.of(s.release)?;
    net::setup()?;
    node::stop(lab, &s, Duration::ZERO)?;
    node::mount_overlay(lab, &s, base)?;
    let pid = node::boot(lab, &s, apt_repo)?;
    node::configure_veth(lab, &s, pid, Duration::from_secs(15))?;
    node::wait_ssh(lab, &s, pid, BOOT_TIMEOUT)?;
    write_state(lab)?;
    println!(
        "lab start: {name} booted in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// `strata-lab disk NAME [--mib N] [--at PATH]`.
fn disk(lab: &Lab, name: &str, mib: u32, at: &str) -> Result<i32> {
    let s = find(lab, name)?;
    if !(8..=1024).contains(&mib) {
        bail!("--mib must be 8..=1024");
    }
    let _lock = lock(lab)?;
    let dev = node::attach_disk(lab, &s, mib, at)?;
    println!("lab disk: {mib} MiB ext4 ({dev}) mounted at {at} on {name}, until it stops");
    Ok(0)
}

/// `strata-lab add NAME [--bare] [--release R]`: one more node next to the running lab.
fn add(lab: &Lab, name: &str, bare: bool, release: Release) -> Result<i32> {
    if let Some(problem) = inventory::name_problem(name) {
        bail!("{problem}");
    }
    preflight()?;
    let _lock = lock(lab)?;
    raise_host_limits(lab.existing_nodes().len() + 1)?;
    let t0 = Instant::now();
    let existing = lab.existing_nodes();
    if existing.iter().any(|e| e.name == name) || lab.nodes_dir().join(name).exists() {
        bail!("{name} is already a lab node (see `strata-lab status`; `strata-lab reset {name} [--release R]` makes it fresh)");
    }
    let used: Vec<u32> = existing.iter().map(|e| e.index).collect();
    let index = inventory::allocate_index(name, &used)
        .ok_or_else(|| anyhow!("the lab has no free node index: all {MAX_NODES} are in use"))?;
    let s = NodeSpec {
        index,
        name: name.to_string(),
        kind: if bare {
            NodeKind::Bare
        } else {
            NodeKind::Added
        },
        release,
    };
    // The interface name and the /24 are global to this machine, not to this repo's lab.
    if sys::link_exists(&s.veth()) {
        bail!(
            "network interface {} already exists on this machine (another checkout's lab?): \
             stop that lab or pick another name",
            s.veth()
        );
    }
    if let Some(dev) = sys::subnet_user(&s.host_cidr()) {
        bail!(
            "{} is already in use on this machine (interface {dev}; another checkout's lab?): stop that lab first",
            s.host_cidr()
        );
    }
    let prep = prepare(lab, [release])?;
    let t_node = Instant::now();
    node::init(lab, &s)?;
    // Before boot: the lab's own ssh checks a non-bare node against .lab/known_hosts.
    let booted = write_listings(lab).and_then(|()| start_fresh(lab, &s, &prep));
    if let Err(e) = booted {
        // A node that did not come up is not left half made: its name stays free.
        let _ = node::stop(lab, &s, Duration::ZERO);
        let _ = node::remove(lab, &s);
        write_listings(lab)?;
        write_state(lab)?;
        return Err(e.context(format!("lab add {name} failed; the node was removed")));
    }
    write_state(lab)?;
    let booted = t_node.elapsed();

    println!("{:<14} {:<12} {:<6} RELEASE", "NODE", "ADDRESS", "KIND");
    println!(
        "{:<14} {:<12} {:<6} {}",
        s.name,
        s.address(),
        s.kind.as_str(),
        s.release.suite()
    );
    println!("host key fingerprints:");
    for (t, fp) in node::fingerprints(lab, &s)? {
        println!("  {t:<8} {fp}");
    }
    let key = lab.key();
    let key = key.strip_prefix(&lab.repo).unwrap_or(&key).display();
    if bare {
        println!(
            "login: root@{} with {key} (password login is on; no deploy user; \
             the host key is not in .lab/known_hosts: check it against the fingerprint above)",
            s.address()
        );
        println!(
            "apt: the node's only source is the lab's local repository (file:{})",
            apt_repo::NODE_PATH
        );
    } else {
        println!(
            "login: root@{} or deploy@{} with {key} (host key in .lab/known_hosts, node in inventory/lab.yaml)",
            s.address(),
            s.address()
        );
    }
    println!(
        "lab add: {name} in {:.1}s (node {:.1}s)",
        t0.elapsed().as_secs_f64(),
        booted.as_secs_f64()
    );
    Ok(0)
}

/// Rewrite `.lab/known_hosts` and `inventory/lab.yaml` for the lab's nodes now on disk.
/// Bare nodes are in neither; what the operator added for one (its `node add` entry, the
/// host key bootstrap recorded) is carried over, not lost.
fn write_listings(lab: &Lab) -> Result<()> {
    let nodes = lab.existing_nodes();
    let (bare, listed): (Vec<NodeSpec>, Vec<NodeSpec>) =
        nodes.into_iter().partition(|n| n.kind == NodeKind::Bare);

    let mut lines = Vec::new();
    for s in &listed {
        lines.extend(node::known_host_lines(lab, s)?);
    }
    let old = std::fs::read_to_string(lab.known_hosts()).unwrap_or_default();
    let bare_addresses: Vec<String> = bare.iter().map(|b| b.address()).collect();
    lines.extend(inventory::known_hosts_for(&old, &bare_addresses));
    std::fs::create_dir_all(&lab.lab_dir)?;
    std::fs::write(lab.known_hosts(), lines.join("\n") + "\n")?;

    let p = lab.repo.join("inventory/lab.yaml");
    std::fs::create_dir_all(p.parent().unwrap())?;
    let old = std::fs::read_to_string(&p).unwrap_or_default();
    let bare_names: Vec<&str> = bare.iter().map(|b| b.name.as_str()).collect();
    let text = inventory::lab_inventory(&listed, &inventory::host_blocks(&old, &bare_names));
    // Unchanged content is not rewritten (keeps mtimes, and git, quiet).
    if old != text {
        std::fs::write(&p, text)?;
    }
    Ok(())
}

/// `.lab/state.json`: what the lab started, for tests and humans.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    pub state_dir: PathBuf,
    pub nodes: Vec<NodeState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    pub address: String,
    /// The systemd-nspawn PID the lab recorded.
    pub pid: Option<u32>,
    /// The node's overlay mount point.
    pub root: PathBuf,
    /// `lab` (from `lab up`), `added` or `bare` (from `lab add`).
    #[serde(default)]
    pub kind: NodeKind,
    /// A bare node: no deploy user, no module packages, not in the inventory or known_hosts.
    #[serde(default)]
    pub bare: bool,
    /// Its Debian release: `bookworm` or `trixie`.
    #[serde(default)]
    pub release: Release,
}

fn write_state(lab: &Lab) -> Result<()> {
    let state = LabState {
        state_dir: lab.state_dir.clone(),
        nodes: lab
            .existing_nodes()
            .iter()
            .map(|s| NodeState {
                name: s.name.clone(),
                address: s.address(),
                pid: lab.recorded_pid(s),
                root: lab.root(s),
                kind: s.kind,
                bare: s.kind == NodeKind::Bare,
                release: s.release,
            })
            .collect(),
    };
    std::fs::create_dir_all(&lab.lab_dir)?;
    std::fs::write(
        lab.lab_dir.join("state.json"),
        serde_json::to_string_pretty(&state)? + "\n",
    )?;
    Ok(())
}

/// Run `f` for every node on its own thread; fail with every error.
fn parallel<F>(nodes: &[NodeSpec], f: F) -> Result<()>
where
    F: Fn(&NodeSpec) -> Result<()> + Sync,
{
    let errors: Vec<String> = parallel_collect(nodes, f)
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

fn parallel_collect<T: Send, F>(nodes: &[NodeSpec], f: F) -> Vec<Result<T>>
where
    F: Fn(&NodeSpec) -> Result<T> + Sync,
{
    std::thread::scope(|scope| {
        let handles: Vec<_> = nodes.iter().map(|s| scope.spawn(|| f(s))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("node thread panicked")))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_round_trips() {
        let s = LabState {
            state_dir: "/var/lib/strata-lab/abc".into(),
            nodes: vec![NodeState {
                name: "validator-1".into(),
                address: "10.77.1.2".into(),
                pid: Some(42),
                root: "/var/lib/strata-lab/abc/nodes/validator-1/root".into(),
                kind: NodeKind::Bare,
                bare: true,
                release: Release::Trixie,
            }],
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<LabState>(&j).unwrap(), s);
    }
}
