//! One lab node: an overlayfs over the base, booted with systemd-nspawn, reached over a veth.
//!
//! Node state lives under /var/lib/strata-lab/<hash of repo path>/nodes/<name>/
//! (`node.json`, `upper`, `work`, `root`, `hostkeys`, `known_hosts` for a bare node, `pid`,
//! `console.log`): overlayfs needs a real filesystem for its upper dir, which the repo's
//! filesystem need not be.

use crate::inventory::{NodeKind, NodeSpec};
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where a lab's files are.
#[derive(Debug, Clone)]
pub struct Lab {
    pub repo: PathBuf,
    /// `<repo>/.lab`: SSH key, known_hosts, state.json (small, per repo).
    pub lab_dir: PathBuf,
    /// `/var/lib/strata-lab/<hash>`: node roots (big, needs overlayfs-capable filesystem).
    pub state_dir: PathBuf,
}

impl Lab {
    pub fn new(repo: &Path) -> Result<Lab> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("repo {} not found", repo.display()))?;
        let hash = blake3::hash(repo.as_os_str().as_encoded_bytes()).to_hex()[..12].to_string();
        Ok(Lab {
            lab_dir: repo.join(".lab"),
            state_dir: PathBuf::from("/var/lib/strata-lab").join(hash),
            repo,
        })
    }
    pub fn key(&self) -> PathBuf {
        self.lab_dir.join("ssh/id_ed25519")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.lab_dir.join("known_hosts")
    }
    pub fn nodes_dir(&self) -> PathBuf {
        self.state_dir.join("nodes")
    }
    pub fn node_dir(&self, n: &NodeSpec) -> PathBuf {
        self.nodes_dir().join(&n.name)
    }
    pub fn root(&self, n: &NodeSpec) -> PathBuf {
        self.node_dir(n).join("root")
    }
    pub fn log(&self, n: &NodeSpec) -> PathBuf {
        self.node_dir(n).join("console.log")
    }
    fn pid_file(&self, n: &NodeSpec) -> PathBuf {
        self.node_dir(n).join("pid")
    }
    fn hostkeys(&self, n: &NodeSpec) -> PathBuf {
        self.node_dir(n).join("hostkeys")
    }
    fn record_file(&self, n: &NodeSpec) -> PathBuf {
        self.node_dir(n).join("node.json")
    }

    /// The known_hosts file the lab's own ssh checks a node against: the repo's for nodes
    /// in the inventory; a bare node's key is kept out of it (bootstrap must verify it), so
    /// the lab checks it against the node's own file.
    pub fn known_hosts_for(&self, n: &NodeSpec) -> PathBuf {
        match n.kind {
            NodeKind::Bare => self.node_dir(n).join("known_hosts"),
            NodeKind::Lab | NodeKind::Added => self.known_hosts(),
        }
    }

    /// Nodes that have state on disk, in index order: each dir's `node.json`, or for a
    /// lab started before records existed, its `validator-N` name.
    pub fn existing_nodes(&self) -> Vec<NodeSpec> {
        let mut v: Vec<NodeSpec> = std::fs::read_dir(self.nodes_dir())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        std::fs::read_to_string(e.path().join("node.json"))
                            .ok()
                            .and_then(|j| serde_json::from_str::<NodeSpec>(&j).ok())
                            .filter(|s| s.name == name)
                            .or_else(|| NodeSpec::parse(&name))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|n| n.index);
        v
    }

    /// The PID recorded for a node, if it is still the lab's nspawn for this node (a PID
    /// may be reused after a reboot: check the process is what we started).
    pub fn running_pid(&self, n: &NodeSpec) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(n))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        self.recorded_pid_is_ours(n, pid).then_some(pid)
    }

    pub fn recorded_pid(&self, n: &NodeSpec) -> Option<u32> {
        std::fs::read_to_string(self.pid_file(n))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn recorded_pid_is_ours(&self, n: &NodeSpec, pid: u32) -> bool {
        sys::pid_alive(pid)
            && sys::cmdline(pid)
                .iter()
                .any(|a| a == &format!("--machine={}", n.name))
    }

    /// An ssh command to a node with the lab key and strict host key checking.
    pub fn ssh(&self, n: &NodeSpec, user: &str, connect_timeout: u32) -> Command {
        let mut c = sys::tool("ssh");
        c.args(["-F", "/dev/null", "-i"])
            .arg(self.key())
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_for(n).display()
            ))
            .args(["-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("ConnectTimeout={connect_timeout}"))
            .arg(format!("{user}@{}", n.address()));
        c
    }

    /// Does the node answer `ssh root@node true`?
    pub fn ssh_answers(&self, n: &NodeSpec, connect_timeout: u32) -> bool {
        self.ssh(n, "root", connect_timeout)
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

/// Record the node (`node.json`: index, name, kind) and generate its SSH host keys once
/// (kept outside the overlay, so a reset keeps them and known_hosts stays valid). A bare
/// node's own known_hosts file is written here too.
pub fn init(lab: &Lab, n: &NodeSpec) -> Result<()> {
    std::fs::create_dir_all(lab.node_dir(n))?;
    std::fs::write(lab.record_file(n), serde_json::to_string(n)? + "\n")?;
    let dir = lab.hostkeys(n);
    if !dir.join("etc/ssh/ssh_host_ed25519_key.pub").exists() {
        std::fs::create_dir_all(dir.join("etc/ssh"))?;
        sys::run(sys::tool("ssh-keygen").arg("-A").arg("-f").arg(&dir))?;
    }
    if n.kind == NodeKind::Bare {
        std::fs::write(
            lab.known_hosts_for(n),
            known_host_lines(lab, n)?.join("\n") + "\n",
        )?;
    }
    Ok(())
}

/// The node's host key fingerprints as `ssh-keygen -lf` gives them, as (type, `SHA256:...`),
/// ed25519 first: what a provider's console shows for a new host.
pub fn fingerprints(lab: &Lab, n: &NodeSpec) -> Result<Vec<(String, String)>> {
    let dir = lab.hostkeys(n).join("etc/ssh");
    let mut out = Vec::new();
    for t in ["ed25519", "ecdsa", "rsa"] {
        let p = dir.join(format!("ssh_host_{t}_key.pub"));
        if !p.exists() {
            continue;
        }
        let o = sys::run(sys::tool("ssh-keygen").arg("-lf").arg(&p))?;
        let line = String::from_utf8_lossy(&o.stdout).into_owned();
        out.push(
            parse_fingerprint(&line)
                .ok_or_else(|| anyhow!("unexpected ssh-keygen -lf output: {line:?}"))?,
        );
    }
    Ok(out)
}

/// `256 SHA256:abc root@host (ED25519)` -> (`ED25519`, `SHA256:abc`).
pub fn parse_fingerprint(line: &str) -> Option<(String, String)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let fp = f.get(1).filter(|f| f.starts_with("SHA256:"))?;
    let t = f.last()?.strip_prefix('(')?.strip_suffix(')')?;
    Some((t.to_string(), fp.to_string()))
}

/// known_hosts lines for a node: `ADDRESS TYPE KEY` for each of its host keys.
pub fn known_host_lines(lab: &Lab, n: &NodeSpec) -> Result<Vec<String>> {
    let dir = lab.hostkeys(n).join("etc/ssh");
    let mut pubs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("no host keys in {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    pubs.sort();
    pubs.iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            known_host_line(&n.address(), &text)
                .ok_or_else(|| anyhow!("unreadable host key {}", p.display()))
        })
        .collect()
}

/// `TYPE KEY [COMMENT]` -> `ADDRESS TYPE KEY`.
pub fn known_host_line(address: &str, pubkey: &str) -> Option<String> {
    let mut f = pubkey.split_whitespace();
    let (t, k) = (f.next()?, f.next()?);
    Some(format!("{address} {t} {k}"))
}

/// Fresh overlay over the base plus the node's identity (a bare node made bare first).
/// Any previous upper dir is wiped.
pub fn create(lab: &Lab, n: &NodeSpec, base: &Path, standin: &Path, pubkey: &str) -> Result<()> {
    let dir = lab.node_dir(n);
    let root = lab.root(n);
    if sys::is_mounted(&root) {
        bail!("{} is still mounted", root.display());
    }
    for d in ["upper", "work"] {
        let p = dir.join(d);
        if p.exists() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove {}", p.display()))?;
        }
        std::fs::create_dir_all(&p)?;
    }
    mount_overlay(lab, n, base)?;
    if n.kind == NodeKind::Bare {
        crate::bare::make_bare(&root)?;
    }
    personalise(lab, n, &root, standin, pubkey)
}

/// Mount the node's root: its upper dir (as it is) over the base.
pub fn mount_overlay(lab: &Lab, n: &NodeSpec, base: &Path) -> Result<()> {
    let dir = lab.node_dir(n);
    let root = lab.root(n);
    std::fs::create_dir_all(&root)?;
    sys::run(
        sys::tool("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                base.display(),
                dir.join("upper").display(),
                dir.join("work").display()
            ))
            .arg(&root),
    )
    .context("mounting the node's overlayfs failed")?;
    Ok(())
}

/// Write what makes the node itself: hostname, address, machine-id, host keys, the
/// lab's authorized key, the stand-in validator binary. All land in the upper dir.
fn personalise(lab: &Lab, n: &NodeSpec, root: &Path, standin: &Path, pubkey: &str) -> Result<()> {
    write(root, "etc/hostname", &format!("{}\n", n.name), 0o644, None)?;
    write(
        root,
        "etc/hosts",
        &format!("127.0.0.1 localhost\n127.0.1.1 {}\n::1 localhost\n", n.name),
        0o644,
        None,
    )?;
    write(
        root,
        "etc/systemd/network/10-host0.network",
        &n.network_file(),
        0o644,
        None,
    )?;
    // Stable per node and repo: a reset node is the same machine, fresh.
    let id = blake3::hash(format!("strata-lab {} {}", lab.state_dir.display(), n.name).as_bytes());
    write(
        root,
        "etc/machine-id",
        &format!("{}\n", &id.to_hex()[..32]),
        0o444,
        None,
    )?;

    let keys = lab.hostkeys(n).join("etc/ssh");
    for e in std::fs::read_dir(&keys)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mode = if name.ends_with(".pub") { 0o644 } else { 0o600 };
        let content = std::fs::read_to_string(e.path())?;
        write(root, &format!("etc/ssh/{name}"), &content, mode, None)?;
    }

    write(root, "root/.ssh/authorized_keys", pubkey, 0o600, None)?;
    // A bare node has no deploy user: root is the provider's only login.
    if n.kind != NodeKind::Bare {
        let deploy = passwd_ids(root, "deploy")?;
        write(
            root,
            "home/deploy/.ssh/authorized_keys",
            pubkey,
            0o600,
            Some(deploy),
        )?;
    }

    // The stand-in twice: as the validator binary, and where the lab's releases (the
    // wrapper scripts strata installs as /opt/monad/<version>/bin/monad-validator) run it.
    for rel in [
        "usr/local/bin/monad-validator",
        "usr/local/lib/monad-standin",
    ] {
        let bin = root.join(rel);
        std::fs::create_dir_all(bin.parent().expect("has a parent"))?;
        std::fs::copy(standin, &bin)
            .with_context(|| format!("cannot copy {} into the node", standin.display()))?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn write(
    root: &Path,
    rel: &str,
    content: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap())?;
    // Remove first: the base may have it read-only (machine-id is 0444).
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, content).with_context(|| format!("cannot write {}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(&p, Some(u), Some(g))?;
    }
    Ok(())
}

/// uid and gid of a user in the node's /etc/passwd.
fn passwd_ids(root: &Path, user: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
    parse_passwd_ids(&passwd, user).ok_or_else(|| anyhow!("no user {user} in the base"))
}

pub fn parse_passwd_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Start systemd-nspawn detached (own session, stdin from /dev/null, output to the
/// node's console.log) and record its PID. The lab's apt repository is bound read-only at
/// the path the node's apt sources name.
///
/// Each node gets its own cgroup first: with --keep-unit, nspawn builds its `supervisor`
/// and `payload` cgroups under the cgroup it runs in, so nodes started from one process
/// would share them and their systemds would fight over units (status=219/CGROUP).
/// A shell moves itself into the node's cgroups and execs `setsid`, which execs nspawn in
/// place (it is not a process group leader): the PID we get is nspawn's.
pub fn boot(lab: &Lab, n: &NodeSpec, apt_repo: &Path) -> Result<u32> {
    let procs = node_cgroups(lab, n)?
        .iter()
        .map(|d| d.join("cgroup.procs").display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let log = std::fs::File::create(lab.log(n))?;
    let child = Command::new("/bin/sh")
        .args(["-c", MOVE_AND_EXEC, "sh"])
        .env("STRATA_CGROUP_PROCS", procs)
        .arg(sys::find_tool("setsid").unwrap_or_else(|| "setsid".into()))
        .arg(sys::find_tool("systemd-nspawn").unwrap_or_else(|| "systemd-nspawn".into()))
        .arg("-D")
        .arg(lab.root(n))
        .args(["-b", "--register=no", "--keep-unit"])
        // nspawn names the host side `ve-MACHINE` (hashed when too long): a name that does
        // not fit gets an explicit pair, the same inside (host0) and a short name outside.
        .arg(if n.veth() == format!("ve-{}", n.name) {
            "--network-veth".to_string()
        } else {
            format!("--network-veth-extra={}:host0", n.veth())
        })
        .arg(format!("--machine={}", n.name))
        .arg(format!("--hostname={}", n.name))
        .arg("--console=read-only")
        .arg(format!(
            "--bind-ro={}:{}",
            apt_repo.display(),
            crate::apt_repo::NODE_PATH
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start systemd-nspawn")?;
    let pid = child.id();
    std::fs::write(lab.pid_file(n), format!("{pid}\n"))?;
    Ok(pid)
}

/// Descriptors the lab inherited (a `flock LOCK cargo test` holds its lock on fd 3) are closed
/// first: a node outlives the command that booted it and must not keep its lock held.
const MOVE_AND_EXEC: &str = r#"IFS=:
for f in $STRATA_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done
unset IFS STRATA_CGROUP_PROCS
for fd in 3 4 5 6 7 8 9; do eval "exec $fd>&-"; done
exec "$@""#;

/// The node's own cgroup in each hierarchy nspawn uses (cgroup2, and v1 name=systemd on
/// hybrid hosts), created if missing: `<mount>/strata-lab/<lab>/<node>`.
fn node_cgroups(lab: &Lab, n: &NodeSpec) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for d in lab_cgroups(lab) {
        let d = d.join(&n.name);
        std::fs::create_dir_all(&d)
            .with_context(|| format!("cannot create cgroup {}", d.display()))?;
        dirs.push(d);
    }
    Ok(dirs)
}

/// Remove the node's cgroups (deepest first; a cgroup is removed with rmdir once empty).
pub fn remove_cgroups(lab: &Lab, n: &NodeSpec) {
    for d in lab_cgroups(lab) {
        rmdir_tree(&d.join(&n.name));
    }
}

/// After the last node is gone: remove the lab's cgroups, those of nodes removed earlier
/// included, and report any that is left.
pub fn remove_lab_cgroups(lab: &Lab) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for d in lab_cgroups(lab) {
        rmdir_tree(&d);
        if d.exists() {
            left.push(d.clone());
        }
        if let Some(parent) = d.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    left
}

/// `<mount>/strata-lab/<lab>` in each cgroup hierarchy nspawn uses.
fn lab_cgroups(lab: &Lab) -> Vec<PathBuf> {
    let lab_id = lab
        .state_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    sys::parse_cgroup_mounts(&mounts)
        .into_iter()
        .map(|m| m.join("strata-lab").join(&lab_id))
        .collect()
}

/// rmdir a cgroup tree. A process still in it once its node's nspawn is gone is a leftover of
/// that node (the kernel may also take a moment to drop exited tasks): it is killed, and
/// each rmdir retried for up to 5 s instead of leaving the cgroup behind.
fn rmdir_tree(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let t = Instant::now();
    while d.exists() && std::fs::remove_dir(d).is_err() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            sys::signal(pid, "KILL");
        }
        if t.elapsed() > Duration::from_secs(5) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Give the host end of the node's veth its address once nspawn has created it.
pub fn configure_veth(lab: &Lab, n: &NodeSpec, pid: u32, timeout: Duration) -> Result<()> {
    let veth = n.veth();
    let t = Instant::now();
    while !sys::link_exists(&veth) {
        if !sys::pid_alive(pid) {
            bail!("{}: systemd-nspawn exited\n{}", n.name, log_tail(lab, n));
        }
        if t.elapsed() > timeout {
            bail!(
                "{}: interface {veth} did not appear\n{}",
                n.name,
                log_tail(lab, n)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sys::run(sys::tool("ip").args(["addr", "add", &n.host_cidr(), "dev", &veth]))?;
    sys::run(sys::tool("ip").args(["link", "set", &veth, "up"]))?;
    crate::net::link_up(&veth)
}

/// Attach a small disk to a running node, like a cloud volume: an ext4 image of `mib` MiB
/// (no journal, no reserved blocks, so "% full" is plain arithmetic) on a loop device, mounted
/// at `at` inside the node. The node's /dev has no loop devices and its cgroup may not open one,
/// so the host makes the device node and mounts it from inside the node's mount namespace
/// (nsenter -m, the host's cgroup). The loop device is detached at once: the kernel frees it
/// when the mount goes away with the node. Returns the loop device.
pub fn attach_disk(lab: &Lab, n: &NodeSpec, mib: u32, at: &str) -> Result<String> {
    let pid = lab
        .running_pid(n)
        .ok_or_else(|| anyhow!("{} is not running", n.name))?;
    let init = sys::descendants(pid)
        .into_iter()
        .find(|&p| sys::is_namespace_init(p))
        .ok_or_else(|| anyhow!("{}: no init process in its namespace", n.name))?;
    if !at.starts_with('/') || at.contains(char::is_whitespace) || at.contains('\'') {
        bail!("--at {at:?}: give an absolute path without spaces or quotes");
    }
    let image = lab.node_dir(n).join(format!(
        "disk-{}.img",
        at.trim_matches('/').replace('/', "-")
    ));
    let f = std::fs::File::create(&image)
        .with_context(|| format!("cannot create {}", image.display()))?;
    f.set_len(u64::from(mib) << 20)?;
    drop(f);
    sys::run(
        sys::tool("mkfs.ext4")
            .args(["-q", "-F", "-O", "^has_journal", "-m", "0"])
            .arg(&image),
    )?;
    let out = sys::run(sys::tool("losetup").args(["--find", "--show"]).arg(&image))?;
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = dev.trim_start_matches("/dev/");
    let result = (|| {
        let majmin = std::fs::read_to_string(format!("/sys/block/{name}/dev"))?;
        let (maj, min) = majmin
            .trim()
            .split_once(':')
            .ok_or_else(|| anyhow!("{dev}: odd device number {majmin:?}"))?;
        let script = format!(
            "set -e; mkdir -p '{at}'; rm -f /dev/lab-{name}; mknod /dev/lab-{name} b {maj} {min}; \
             mount -t ext4 /dev/lab-{name} '{at}'"
        );
        sys::run(
            sys::tool("nsenter")
                .args(["-t", &init.to_string(), "-m", "--", "/bin/sh", "-c"])
                .arg(&script),
        )
        .map(|_| ())
    })();
    // Detached now, freed by the kernel when the node's mount namespace ends.
    let _ = sys::run(sys::tool("losetup").args(["-d", &dev]));
    result.with_context(|| format!("{}: mounting {dev} at {at}", n.name))?;
    Ok(dev)
}

/// Wait until sshd on the node accepts the lab key with strict host key checking.
pub fn wait_ssh(lab: &Lab, n: &NodeSpec, pid: u32, timeout: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        if lab.ssh_answers(n, 2) {
            return Ok(());
        }
        if !sys::pid_alive(pid) {
            bail!("{}: systemd-nspawn exited\n{}", n.name, log_tail(lab, n));
        }
        if t.elapsed() > timeout {
            bail!(
                "{}: ssh root@{} did not answer within {}s\n{}",
                n.name,
                n.address(),
                timeout.as_secs(),
                log_tail(lab, n)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last lines of the node's console log, for error messages.
pub fn log_tail(lab: &Lab, n: &NodeSpec) -> String {
    let text = std::fs::read_to_string(lab.log(n)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", lab.log(n).display())
}

/// Stop the node's nspawn by its recorded PID: SIGTERM (nspawn then powers the container
/// off in order), SIGKILL of its process tree after `grace`. Then unmount the overlay and
/// remove the veth if the kernel has not already.
pub fn stop(lab: &Lab, n: &NodeSpec, grace: Duration) -> Result<()> {
    if let Some(pid) = lab.running_pid(n) {
        if grace > Duration::ZERO {
            sys::signal(pid, "TERM");
            wait_gone(pid, grace);
        }
        if sys::pid_alive(pid) {
            // Killing the container's init ends its whole PID namespace.
            for d in sys::descendants(pid) {
                sys::signal(d, "KILL");
            }
            sys::signal(pid, "KILL");
            if !wait_gone(pid, Duration::from_secs(10)) {
                bail!("{}: systemd-nspawn (pid {pid}) did not exit", n.name);
            }
        }
    }
    let _ = std::fs::remove_file(lab.pid_file(n));
    remove_cgroups(lab, n);
    unmount(&lab.root(n))?;
    if sys::link_exists(&n.veth()) {
        let _ = sys::run(sys::tool("ip").args(["link", "del", &n.veth()]));
    }
    Ok(())
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let t = Instant::now();
    while sys::pid_alive(pid) {
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Unmount the node's overlay, retrying briefly: the last container processes may
/// still hold it for a moment after nspawn exits.
fn unmount(root: &Path) -> Result<()> {
    for _ in 0..50 {
        if !sys::is_mounted(root) {
            return Ok(());
        }
        let _ = sys::run(sys::tool("umount").arg(root));
        std::thread::sleep(Duration::from_millis(50));
    }
    if sys::is_mounted(root) {
        bail!("cannot unmount {}", root.display());
    }
    Ok(())
}

/// Remove a stopped node's state (refuses while its root is still mounted, so the
/// removal can never reach through into the base).
pub fn remove(lab: &Lab, n: &NodeSpec) -> Result<()> {
    let dir = lab.node_dir(n);
    if sys::is_mounted(&lab.root(n)) {
        bail!("{} is still mounted; not removing", lab.root(n).display());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_host_line_drops_comment() {
        assert_eq!(
            known_host_line("10.77.1.2", "ssh-ed25519 AAAAC3Nz root@host\n").as_deref(),
            Some("10.77.1.2 ssh-ed25519 AAAAC3Nz")
        );
        assert_eq!(known_host_line("a", "junk"), None);
    }

    #[test]
    fn fingerprint_from_ssh_keygen() {
        assert_eq!(
            parse_fingerprint("256 SHA256:Ab+c/1 root@build (ED25519)\n"),
            Some(("ED25519".into(), "SHA256:Ab+c/1".into()))
        );
        assert_eq!(parse_fingerprint("3072 MD5:aa:bb x (RSA)"), None);
        assert_eq!(parse_fingerprint(""), None);
    }

    #[test]
    fn passwd_ids_found() {
        let p = "root:x:0:0:root:/root:/bin/bash\ndeploy:x:1000:1000::/home/deploy:/bin/bash\n";
        assert_eq!(parse_passwd_ids(p, "deploy"), Some((1000, 1000)));
        assert_eq!(parse_passwd_ids(p, "nobody"), None);
    }
}
