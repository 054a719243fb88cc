//! The only code that touches a node: one multiplexed OpenSSH connection per node (openssh
//! crate, ControlMaster), reused for every command; or, for a command that reads a node in
//! one round trip (plan, status), that one command's own plain `ssh`. Scripts travel on stdin.

use crate::model::{HostKeyChecking, NodeIdentity};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Why a node could not be talked to. Decisions (stand the guard down or not, retry, report
/// unreachable) match on these, never on a message's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No connection could be made: refused, no route, connect timeout, authentication.
    Unreachable(String),
    /// The node presented a host key that does not match the known_hosts file.
    HostKey(String),
    /// The connection dropped (or the remote shell died) while a step ran.
    ConnectionLost(String),
    /// The step did not finish within its deadline.
    Timeout { secs: u64 },
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Unreachable(m) => write!(f, "unreachable: {m}"),
            TransportError::HostKey(m) => write!(
                f,
                "host key mismatch: {m} (the node's host key does not match the known_hosts file)"
            ),
            TransportError::ConnectionLost(m) => write!(f, "connection lost: {m}"),
            TransportError::Timeout { secs } => {
                write!(f, "no answer within its deadline of {secs}s")
            }
        }
    }
}

impl std::error::Error for TransportError {}

/// The line the login shell prints right before it starts the script's shell (`shell_cmd`).
const BEGIN: &str = "@strata-begin";

/// The script's own output: what follows the BEGIN line. What came before it is the login
/// shell's (a banner from ~/.bashrc) and is dropped; with no BEGIN line the command never
/// ran, and the output is left as it is.
fn script_output<'a>(node: &str, raw: &'a str) -> &'a str {
    if let Some(rest) = raw.strip_prefix(BEGIN).and_then(|r| r.strip_prefix('\n')) {
        return rest;
    }
    // (The first BEGIN is the login shell's: it runs before the script. A banner without a
    // final newline ends on the same line.)
    match raw.find(&format!("{BEGIN}\n")) {
        Some(at) => {
            let noise = raw[..at].lines().count();
            tracing::debug!(node = %node, step = "ssh", "the login shell printed {noise} line(s) before the script (its rc files?): ignored");
            &raw[at + BEGIN.len() + 1..]
        }
        None => raw,
    }
}

/// What a remote command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// An open connection to one node.
pub struct Conn {
    link: Link,
    /// Where to leave the master for the next command (`ssh.persist`), if kept.
    keep: Option<PathBuf>,
    /// Run scripts through `sudo -n` (a non-root user with `become: sudo`).
    sudo: bool,
    pub node: String,
}

/// How a node's commands reach it.
enum Link {
    /// A ControlMaster: every command over it (`ssh -S`), one TCP connection for all.
    Master(Session),
    /// No master: each command is its own plain `ssh` (ssh options, destination). Only for
    /// a command that runs one script on the node (the probe of plan and status), where a
    /// master would cost its start, a second client process and its exit, and save nothing.
    Once { args: Vec<String>, dest: String },
    /// A master the first command starts itself (`ControlMaster=yes` with `ControlPersist`:
    /// ssh runs that command as its first client and leaves the master in the background for
    /// the next): one ssh process for the connection and the probe, as `Once`, and a master
    /// for whatever follows (an apply). Its socket is `m` in `dir`, private to this process.
    Lazy {
        args: Vec<String>,
        dest: String,
        dir: tempfile::TempDir,
        started: std::sync::atomic::AtomicBool,
    },
}

pub fn expand(repo: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let pb = PathBuf::from(p);
    if pb.is_absolute() {
        pb
    } else {
        repo.join(pb)
    }
}

/// The ssh options strata uses for a node, also for plain `ssh` invocations (benchmarks, the
/// connectivity confirmation): the same user, port, key, jump hosts and known_hosts policy.
/// `-l`/`-p` only when the inventory sets them: otherwise ssh_config decides. The
/// destination (`NodeIdentity::ssh_dest`) goes after these, after `--`.
pub fn ssh_args(node: &NodeIdentity, repo: &Path) -> Vec<String> {
    let s = &node.ssh;
    let mut a = Vec::new();
    if let Some(f) = &s.config_file {
        a.extend(["-F".into(), expand(repo, f).display().to_string()]);
    }
    a.extend([
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!("ConnectTimeout={}", s.connect_timeout_secs),
        "-o".into(),
        match s.host_key_checking {
            HostKeyChecking::Strict => "StrictHostKeyChecking=yes".into(),
            HostKeyChecking::AcceptNew => "StrictHostKeyChecking=accept-new".into(),
        },
    ]);
    if s.port_set {
        a.extend(["-p".into(), s.port.to_string()]);
    }
    if s.user_set {
        a.extend(["-l".into(), s.user.clone()]);
    }
    if let Some(j) = &s.proxy_jump {
        a.extend(["-J".into(), j.clone()]);
    }
    if let Some(k) = &s.identity_file {
        a.extend([
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-i".into(),
            expand(repo, k).display().to_string(),
        ]);
    }
    if let Some(kh) = &s.known_hosts {
        a.extend([
            "-o".into(),
            format!("UserKnownHostsFile={}", expand(repo, kh).display()),
        ]);
    }
    a
}

impl Conn {
    /// The node's connection: a master kept by an earlier command for exactly these settings
    /// (`ssh.persist`), or a new one. Host keys are checked against the inventory's
    /// known_hosts file (strictly unless it says `accept-new`).
    pub async fn open(node: &NodeIdentity, repo: &Path) -> Result<Conn, TransportError> {
        let Some(secs) = node.ssh.persist_secs.filter(|_| Conn::persists(node)) else {
            return Conn::open_new(node, repo).await;
        };
        let Some(dir) = persist::dir() else {
            return Conn::open_new(node, repo).await;
        };
        let keep = dir.join(persist::key(node, repo));
        if let Some(session) = persist::resume(&keep).await {
            return Ok(Conn {
                link: Link::Master(session),
                keep: Some(keep),
                sudo: sudo(node),
                node: node.name.clone(),
            });
        }
        let mut c = Conn::connect(node, repo, secs, &dir).await?;
        c.keep = Some(keep);
        Ok(c)
    }

    /// Does `open` keep this node's master for the next command (`ssh.persist`)?
    pub fn persists(node: &NodeIdentity) -> bool {
        node.ssh.persist_secs.is_some() && persist::enabled()
    }

    /// No master: each command its own plain `ssh` (see `Link::Once`), so nothing is opened
    /// here; a failure to connect comes from the command, as `Unreachable` or `HostKey`.
    pub fn once(node: &NodeIdentity, repo: &Path) -> Conn {
        let mut args = ssh_args(node, repo);
        for o in [
            "ControlMaster=no",
            "ControlPath=none",
            "ServerAliveInterval=5",
        ] {
            args.extend(["-o".to_string(), o.to_string()]);
        }
        Conn {
            link: Link::Once {
                args,
                dest: node.ssh_dest().to_string(),
            },
            keep: None,
            sudo: sudo(node),
            node: node.name.clone(),
        }
    }

    /// A master started by the first command (see `Link::Lazy`), closed after use. The
    /// connection is made by that first command, so its failure comes from it, as
    /// `Unreachable` or `HostKey`.
    pub fn lazy(node: &NodeIdentity, repo: &Path) -> Result<Conn, TransportError> {
        let dir = tempfile::Builder::new()
            .prefix(".strata-ssh")
            .tempdir()
            .map_err(|e| TransportError::Unreachable(format!("a directory for the master: {e}")))?;
        let mut args = ssh_args(node, repo);
        args.extend(["-o".to_string(), "ServerAliveInterval=5".to_string()]);
        Ok(Conn {
            link: Link::Lazy {
                args,
                dest: node.ssh_dest().to_string(),
                dir,
                started: std::sync::atomic::AtomicBool::new(false),
            },
            keep: None,
            sudo: sudo(node),
            node: node.name.clone(),
        })
    }

    /// Is this command the one that makes the connection (no master yet)?
    fn connects(&self) -> bool {
        match &self.link {
            Link::Once { .. } => true,
            Link::Lazy { started, .. } => !started.load(std::sync::atomic::Ordering::SeqCst),
            Link::Master(_) => false,
        }
    }

    /// The master's control socket, once there is one.
    fn control_socket(&self) -> Option<PathBuf> {
        match &self.link {
            Link::Master(session) => Some(session.control_socket().to_path_buf()),
            Link::Lazy { dir, started, .. }
                if started.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                Some(dir.path().join("m"))
            }
            _ => None,
        }
    }

    /// A NEW master: its own TCP connection and authentication, never a kept one (the
    /// connectivity guard's proof that an operator can still get in), closed after use.
    pub async fn open_new(node: &NodeIdentity, repo: &Path) -> Result<Conn, TransportError> {
        Conn::connect(node, repo, master_idle_secs(), &std::env::temp_dir()).await
    }

    async fn connect(
        node: &NodeIdentity,
        repo: &Path,
        persist_secs: u64,
        control_dir: &Path,
    ) -> Result<Conn, TransportError> {
        let s = &node.ssh;
        let mut b = SessionBuilder::default();
        if s.user_set {
            b.user(s.user.clone());
        }
        if s.port_set {
            b.port(s.port);
        }
        if let Some(f) = &s.config_file {
            b.config_file(expand(repo, f));
        }
        if let Some(j) = &s.proxy_jump {
            // ssh -J: the hops' own settings (key, known_hosts) come from ssh_config.
            b.jump_hosts(j.split(','));
        }
        b.connect_timeout(Duration::from_secs(s.connect_timeout_secs.max(1)))
            .server_alive_interval(Duration::from_secs(5))
            // If strata dies, the master goes away by itself once idle.
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(persist_secs.max(1) as usize).expect("nonzero"),
            ))
            .control_directory(control_dir)
            .known_hosts_check(match s.host_key_checking {
                HostKeyChecking::Strict => KnownHosts::Strict,
                HostKeyChecking::AcceptNew => KnownHosts::Add,
            });
        if let Some(k) = &s.identity_file {
            b.keyfile(expand(repo, k));
        }
        if let Some(kh) = &s.known_hosts {
            b.user_known_hosts_file(expand(repo, kh));
        }
        // -vv: the master logs at debug level into its `-E` file, read below. The config file
        // only sets LogLevel, then includes the usual ones (ssh reads it at start: dropped after).
        let debug_config = ssh_log_enabled()
            .then(|| debug_config(s.config_file.as_deref().map(|f| expand(repo, f)).as_deref()))
            .flatten();
        if let Some(cfg) = &debug_config {
            b.config_file(cfg.path());
        }
        let interrupts = crate::interrupt::count();
        let mut attempt = b.connect(node.ssh_dest()).await;
        if attempt.is_err() && crate::interrupt::count() != interrupts {
            // A Ctrl-C reached the master while it was still connecting (it leaves the
            // terminal's process group only once connected): the rollout goes on, so try again.
            attempt = b.connect(node.ssh_dest()).await;
        }
        drop(debug_config);
        if let Err(e) = &attempt {
            // What the master's own log (openssh's `-E` file) said is in the error already.
            tracing::debug!(node = %node.name, step = "ssh", "master failed: {}", describe_error(e));
        }
        let session = attempt.map_err(|e| {
            let msg = describe_error(&e);
            if msg.contains("Host key verification failed")
                || msg.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            {
                TransportError::HostKey(msg)
            } else {
                TransportError::Unreachable(msg)
            }
        })?;
        if ssh_log_enabled() {
            // The master's own log (openssh's `-E` file beside the control socket): its
            // connection, key exchange and authentication, at debug level (see above).
            let log = session.control_socket().with_file_name("log");
            for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
                tracing::debug!(node = %node.name, step = "ssh", "master: {}", l.trim_end());
            }
        }
        Ok(Conn {
            link: Link::Master(session),
            keep: None,
            sudo: sudo(node),
            node: node.name.clone(),
        })
    }

    /// Run a POSIX sh script (sent on stdin) as root: directly, or via `sudo -n`; give up
    /// after `deadline` (the node then counts as failed at this step; the others go on).
    pub async fn run(&self, script: &str, deadline: Duration) -> Result<Output, TransportError> {
        match tokio::time::timeout(deadline, self.run_unbounded(script)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                secs: deadline.as_secs(),
            }),
        }
    }

    async fn run_unbounded(&self, script: &str) -> Result<Output, TransportError> {
        let t = std::time::Instant::now();
        let connects = self.connects();
        let mut child = self.spawn_shell(Stdio::piped())?;
        let sending =
            |e: std::io::Error| TransportError::ConnectionLost(format!("sending the script: {e}"));
        // A command that could not connect ends before it reads its script: its exit says
        // why (below), not the broken pipe.
        let mut sent = Ok(());
        if let Some(mut stdin) = child.stdin.take() {
            sent = match stdin.write_all(script.as_bytes()).await {
                Ok(()) => stdin.shutdown().await,
                Err(e) => Err(e),
            };
        }
        if sent.is_err() && !connects {
            return Err(sent.map_err(sending).unwrap_err());
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| TransportError::ConnectionLost(format!("waiting for ssh: {e}")))?;
        let (ssh_log, stderr) = split_ssh_log(&String::from_utf8_lossy(&out.stderr));
        for l in ssh_log {
            tracing::debug!(node = %self.node, step = "ssh", "{l}");
        }
        // -vv, a master started by this command: its log (connection, key exchange,
        // authentication) is in the `-E` file, where ssh also put any error.
        let mut master_log = String::new();
        if let (true, Link::Lazy { dir, .. }) = (connects && ssh_log_enabled(), &self.link) {
            master_log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            for l in master_log.lines() {
                tracing::debug!(node = %self.node, step = "ssh", "master: {}", l.trim_end());
            }
        }
        tracing::debug!(
            node = %self.node,
            elapsed_ms = t.elapsed().as_millis() as u64,
            script_bytes = script.len() as u64,
            reply_bytes = out.stdout.len() as u64,
            exit = out.status.code().map(i64::from).unwrap_or(-1),
            "round trip"
        );
        if connects && out.status.code() == Some(255) && out.stdout.is_empty() {
            // This command was the connection: it never got to the script.
            return Err(connect_failure(&format!("{master_log}\n{stderr}")));
        }
        sent.map_err(sending)?;
        if out.status.code() == Some(255) || out.status.code().is_none() {
            // ssh's own failure (the master or the node went away), not the script's exit.
            return Err(TransportError::ConnectionLost(lost_words(
                &out.status,
                &stderr,
            )));
        }
        Ok(Output {
            code: out.status.code(),
            stdout: script_output(&self.node, &String::from_utf8_lossy(&out.stdout)).to_string(),
            stderr,
        })
    }

    /// `sh -s` on the node, through this node's master. The ssh client runs in its own process
    /// group: a Ctrl-C on the terminal reaches strata (which decides what stops, see
    /// `interrupt`), not the step a node is in the middle of.
    fn spawn_shell(&self, stderr: Stdio) -> Result<tokio::process::Child, TransportError> {
        let mut cmd = tokio::process::Command::new("ssh");
        // A client of the master on `ctl`.
        let over = |cmd: &mut tokio::process::Command, ctl: &Path| {
            cmd.arg("-S")
                .arg(ctl)
                .args(["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-T"])
                // -vv: the step client's own log on its stderr (split from the script's).
                .args(ssh_log_enabled().then_some("-v"))
                // The discard port: never a new connection if the master is gone.
                .args(["-p", "9", "none", "--", self.shell_cmd()]);
        };
        match &self.link {
            Link::Master(session) => over(&mut cmd, session.control_socket()),
            Link::Once { args, dest } => {
                cmd.args(args)
                    .arg("-T")
                    // -vv: the client's log (its connection and authentication too).
                    .args(ssh_log_enabled().then_some("-v"))
                    .args(["--", dest, self.shell_cmd()]);
            }
            Link::Lazy {
                args,
                dest,
                dir,
                started,
            } => {
                let ctl = dir.path().join("m");
                if started.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    over(&mut cmd, &ctl);
                } else {
                    // The master backgrounds itself with its stdio on /dev/null (its `-vv`
                    // log goes to the file, never to our pipe, which it would hold open).
                    cmd.args(args)
                        .args(["-o", "ControlMaster=yes", "-o"])
                        .arg(format!("ControlPath={}", ctl.display()))
                        .arg("-o")
                        .arg(format!("ControlPersist={}s", master_idle_secs()))
                        .arg("-T");
                    if ssh_log_enabled() {
                        cmd.arg("-v").arg("-E").arg(dir.path().join("log"));
                    }
                    cmd.args(["--", dest, self.shell_cmd()]);
                }
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: the closure only calls signal(2), which is async-signal-safe.
        unsafe { cmd.pre_exec(crate::interrupt::ignore_in_child) };
        cmd.spawn()
            .map_err(|e| TransportError::ConnectionLost(format!("starting ssh: {e}")))
    }

    /// Start a script that keeps running while we hold its stdin open (the apply lock), and
    /// return its first line of output.
    pub async fn hold(
        &self,
        script: &str,
        deadline: Duration,
    ) -> Result<(Held<'_>, String), TransportError> {
        let lost = |e: String| TransportError::ConnectionLost(e);
        let mut child = self.spawn_shell(Stdio::null())?;
        let mut stdin = child.stdin.take().ok_or_else(|| lost("no stdin".into()))?;
        // The script, then nothing more: stdin stays open as the keep-alive until release.
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| lost(e.to_string()))?;
        stdin.flush().await.map_err(|e| lost(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| lost("no stdout".into()))?;
        let mut reader = tokio::io::BufReader::new(stdout);
        let mut line = String::new();
        use tokio::io::AsyncBufReadExt;
        // The script's first line, after whatever the login shell printed before BEGIN.
        let first = async {
            let mut noise = 0;
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                if line.trim_end().ends_with(BEGIN) {
                    break;
                }
                noise += 1;
            }
            if noise > 0 {
                tracing::debug!(node = %self.node, step = "ssh", "the login shell printed {noise} line(s) before the script (its rc files?): ignored");
            }
            line.clear();
            reader.read_line(&mut line).await.map(|_| ())
        };
        match tokio::time::timeout(deadline, first).await {
            Ok(r) => r.map_err(|e| lost(e.to_string()))?,
            Err(_) => {
                return Err(TransportError::Timeout {
                    secs: deadline.as_secs(),
                })
            }
        };
        Ok((
            Held {
                child,
                stdin: Some(stdin),
                out: reader,
                _conn: std::marker::PhantomData,
            },
            line.trim().to_string(),
        ))
    }

    fn shell_cmd(&self) -> &'static str {
        // The login shell runs this after its rc files (~/.bashrc, /etc/bash.bashrc), which may
        // print a banner on stdout: the BEGIN line marks where the script's own output starts.
        // SSH_CONNECTION does not survive sudo; pass the client address along explicitly.
        if self.sudo {
            "echo @strata-begin; exec sudo -n env STRATA_CLIENT=\"$SSH_CONNECTION\" /bin/sh -s"
        } else {
            "echo @strata-begin; exec /bin/sh -s"
        }
    }

    /// Is the master still there? (Its hello on the control socket, read in-process: no round
    /// trip to the node.)
    pub async fn alive(&self) -> bool {
        match self.control_socket() {
            Some(ctl) => mux::answers(&ctl).await,
            // No master yet (or none ever): the next command connects.
            None => true,
        }
    }

    /// Done with the node: close the master, or leave it for the next command (`persist`).
    pub async fn close(self) {
        let ctl = self.control_socket();
        match (self.link, self.keep) {
            (Link::Master(session), Some(keep)) => persist::leave(session, &keep),
            (Link::Master(session), None) => {
                let (ctl, _) = session.detach();
                end_master(&ctl).await;
                if let Some(dir) = ctl.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            (Link::Lazy { dir, .. }, _) => {
                if let Some(ctl) = ctl {
                    end_master(&ctl).await;
                }
                drop(dir);
            }
            (Link::Once { .. }, _) => {}
        }
    }
}

/// How long a master of this command stays once idle: 60 s, so that a strata that dies
/// leaves none behind for long. `STRATA_SSH_MASTER_IDLE_SECS` shortens it (the e2e case of a
/// node whose master ended while it waited its turn).
fn master_idle_secs() -> u64 {
    std::env::var("STRATA_SSH_MASTER_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| (1..=3600).contains(&s))
        .unwrap_or(60)
}

fn sudo(node: &NodeIdentity) -> bool {
    node.ssh.r#become.as_deref() == Some("sudo") && node.ssh.user != "root"
}

/// Warm connections (`ssh.persist`): a node's master outlives the command for the next one,
/// in a private per-user directory, under a name that hashes every setting that decides how
/// strata reaches the node, so a changed user, port, key or host-key setting never reuses an
/// old master. `strata ssh close` ends them all.
pub mod persist {
    use super::*;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};

    /// Off when `STRATA_SSH_PERSIST=0`, and in CI (`CI` set) unless `STRATA_SSH_PERSIST=1`.
    pub fn enabled() -> bool {
        match std::env::var("STRATA_SSH_PERSIST").as_deref() {
            Ok("0") => false,
            Ok("1") => true,
            _ => std::env::var_os("CI").is_none(),
        }
    }

    /// `$XDG_RUNTIME_DIR/strata-ssh` or `~/.cache/strata/ssh`: created 0700; refused (None)
    /// unless it is ours and private.
    pub fn dir() -> Option<PathBuf> {
        let d = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(r) if !r.is_empty() => PathBuf::from(r).join("strata-ssh"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/strata/ssh"),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .ok()?;
        let m = std::fs::symlink_metadata(&d).ok()?;
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        (m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0).then_some(d)
    }

    /// The name of a node's kept master: a hash of how strata reaches it.
    pub fn key(node: &NodeIdentity, repo: &Path) -> String {
        let s = &node.ssh;
        let path = |p: &Option<String>| {
            p.as_deref()
                .map(|p| expand(repo, p).display().to_string())
                .unwrap_or_default()
        };
        // The effective user and port (ssh_config's when the inventory leaves them unset):
        // a changed `User`/`Port` there never reuses an old master either.
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{:?}\n{:?}\n{}\n{}\n{}\n{}\n{}\n",
            node.address,
            s.port,
            s.user,
            path(&s.identity_file),
            path(&s.known_hosts),
            s.host_key_checking,
            s.r#become,
            node.ssh_dest(),
            s.proxy_jump.as_deref().unwrap_or(""),
            path(&s.config_file),
            s.user_set,
            s.port_set,
        );
        format!("{}.ctl", &blake3::hash(text.as_bytes()).to_hex()[..32])
    }

    /// The master recorded at `keep`, if it still answers.
    pub async fn resume(keep: &Path) -> Option<Session> {
        let ctl = std::fs::read_to_string(keep).ok()?;
        let ctl = PathBuf::from(ctl.trim());
        if !ctl.starts_with(keep.parent()?) || !ctl.exists() {
            let _ = std::fs::remove_file(keep);
            return None;
        }
        if mux::answers(&ctl).await {
            Some(Session::resume(ctl.into_boxed_path(), None))
        } else {
            let _ = std::fs::remove_file(keep);
            None
        }
    }

    /// Leave the master running and record where it listens (0600).
    pub fn leave(session: Session, keep: &Path) {
        let (ctl, _) = session.detach();
        let tmp = keep.with_extension("tmp");
        let ok = std::fs::write(&tmp, ctl.display().to_string()).is_ok()
            && std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).is_ok()
            && std::fs::rename(&tmp, keep).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// End every kept master (`strata ssh close`); how many were ended.
    pub async fn close_all() -> usize {
        let Some(d) = dir() else { return 0 };
        let mut n = 0;
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "ctl") {
                if let Some(s) = resume(&p).await {
                    if end_master(&s.detach().0).await {
                        n += 1;
                    }
                }
                let _ = std::fs::remove_file(&p);
            }
        }
        // The masters' own directories (openssh's `.ssh-connection*`), now empty of sockets.
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
        n
    }
}

/// End the master on `ctl`: in-process (the mux's terminate request), else `ssh -O exit` as
/// openssh does. Did it end?
async fn end_master(ctl: &Path) -> bool {
    mux::terminate(ctl).await || Session::resume(ctl.into(), None).close().await.is_ok()
}

/// OpenSSH's ControlMaster protocol (PROTOCOL.mux), the two requests strata makes itself
/// rather than start an `ssh -O` process for each: is a master there, and end it.
mod mux {
    use std::path::Path;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    const HELLO: u32 = 0x0000_0001;
    const TERMINATE: u32 = 0x1000_0005;
    const OK: u32 = 0x8000_0001;
    const WAIT: Duration = Duration::from_secs(5);

    /// One message: its length, then the payload.
    async fn read_msg(s: &mut UnixStream) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let len = u32::from_be_bytes(len) as usize;
        if !(4..=64 * 1024).contains(&len) {
            return None;
        }
        let mut msg = vec![0u8; len];
        s.read_exact(&mut msg).await.ok()?;
        Some(msg)
    }

    fn word(msg: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(msg.get(at..at + 4)?.try_into().ok()?))
    }

    /// Connected, and the master's hello read (it greets every client first).
    async fn hello(ctl: &Path) -> Option<UnixStream> {
        let mut s = UnixStream::connect(ctl).await.ok()?;
        let msg = read_msg(&mut s).await?;
        (word(&msg, 0)? == HELLO).then_some(s)
    }

    /// Does an ssh master listen on `ctl`? (`ssh -O check`, in-process.)
    pub async fn answers(ctl: &Path) -> bool {
        matches!(tokio::time::timeout(WAIT, hello(ctl)).await, Ok(Some(_)))
    }

    /// Ask the master on `ctl` to end (`ssh -O exit`, in-process); did it agree?
    pub async fn terminate(ctl: &Path) -> bool {
        let ask = async {
            let mut s = hello(ctl).await?;
            let mut out = Vec::new();
            for (len, kind, arg) in [(8u32, HELLO, 4u32), (8, TERMINATE, 1)] {
                out.extend(len.to_be_bytes());
                out.extend(kind.to_be_bytes());
                out.extend(arg.to_be_bytes());
            }
            s.write_all(&out).await.ok()?;
            // The master acknowledges, or (OpenSSH: "exit happens too soon - message never
            // makes it to client") just closes the connection as it exits.
            match read_msg(&mut s).await {
                Some(reply) => (word(&reply, 0)? == OK && word(&reply, 4)? == 1).then_some(()),
                None => Some(()),
            }
        };
        if !matches!(tokio::time::timeout(WAIT, ask).await, Ok(Some(()))) {
            return false;
        }
        // Ended means its socket no longer answers (it is removed as the master exits).
        for _ in 0..40 {
            if !answers(ctl).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }
}

/// An ssh config for a `-vv` master: debug logging, then exactly what ssh reads otherwise:
/// the inventory's `config_file` (`-F`), or the user's config then the system's (the first
/// value of an option wins, as usual). None (no debug log) for a path ssh could not quote.
fn debug_config(config_file: Option<&Path>) -> Option<tempfile::NamedTempFile> {
    use std::io::Write;
    let text = debug_config_text(config_file)?;
    let mut f = tempfile::Builder::new()
        .prefix("strata-ssh-debug.")
        .tempfile()
        .ok()?;
    f.write_all(text.as_bytes()).ok()?;
    Some(f)
}

fn debug_config_text(config_file: Option<&Path>) -> Option<String> {
    match config_file {
        None => {
            Some("LogLevel DEBUG1\nInclude ~/.ssh/config\nInclude /etc/ssh/ssh_config\n".into())
        }
        Some(f) => {
            let f = f.to_str()?;
            (!f.contains(['"', '\n', '\r'])).then(|| format!("LogLevel DEBUG1\nInclude \"{f}\"\n"))
        }
    }
}

/// `-vv`: ssh's own log is wanted.
fn ssh_log_enabled() -> bool {
    tracing::enabled!(target: "strata::transport", tracing::Level::DEBUG)
}

/// A step client's stderr under `ssh -v`: its own log lines (`debug1: ...`, its banner and
/// transfer counts), and the rest, which is what the remote script wrote.
pub fn split_ssh_log(stderr: &str) -> (Vec<String>, String) {
    let mut log = Vec::new();
    let mut rest = String::new();
    for l in stderr.split_inclusive('\n') {
        let t = l.trim_end_matches(['\r', '\n']);
        let ours = [
            "debug1: ",
            "debug2: ",
            "debug3: ",
            "OpenSSH_",
            "Authenticated to ",
            "Transferred: ",
            "Bytes per second: ",
        ]
        .iter()
        .any(|p| t.starts_with(p));
        if ours {
            log.push(t.to_string());
        } else {
            rest.push_str(l);
        }
    }
    (log, rest)
}

/// A plain `ssh` that never reached the script: the host key, or no connection at all.
fn connect_failure(stderr: &str) -> TransportError {
    let words = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .collect::<Vec<_>>()
        .join(" ");
    if words.contains("Host key verification failed")
        || words.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    {
        TransportError::HostKey(words)
    } else if words.is_empty() {
        TransportError::Unreachable("ssh exited 255".into())
    } else {
        TransportError::Unreachable(words)
    }
}

/// Why ssh itself failed (exit 255 or a signal), in its own last words.
fn lost_words(status: &std::process::ExitStatus, stderr: &str) -> String {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let how = match status.code() {
        Some(c) => format!("ssh exited {c}"),
        None => "ssh was killed".to_string(),
    };
    if last.is_empty() {
        format!("the connection ended ({how})")
    } else {
        format!("the connection ended ({how}: {last})")
    }
}

/// openssh's errors, with the ssh client's own words (host key, refused, timed out).
fn describe_error(e: &openssh::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(t.trim());
        }
        src = s.source();
    }
    msg
}

/// A remote script kept alive by its open stdin (see `Conn::hold`).
pub struct Held<'a> {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    /// What the script prints after its first line (the re-read under the lock).
    out: tokio::io::BufReader<tokio::process::ChildStdout>,
    /// The lock lives as long as the connection it was taken on.
    _conn: std::marker::PhantomData<&'a Conn>,
}

impl Held<'_> {
    /// The script's next lines, up to and with the line `last`, within `deadline`.
    pub async fn read_through(
        &mut self,
        last: &str,
        deadline: Duration,
    ) -> Result<String, TransportError> {
        use tokio::io::AsyncBufReadExt;
        let read = async {
            let mut text = String::new();
            loop {
                let mut line = String::new();
                let n = self.out.read_line(&mut line).await.map_err(|e| {
                    TransportError::ConnectionLost(format!("reading the script's output: {e}"))
                })?;
                if n == 0 {
                    return Err(TransportError::ConnectionLost(format!(
                        "the script ended before its line `{last}`"
                    )));
                }
                let done = line.trim_end_matches(['\r', '\n']) == last;
                text.push_str(&line);
                if done {
                    return Ok(text);
                }
            }
        };
        tokio::time::timeout(deadline, read)
            .await
            .unwrap_or(Err(TransportError::Timeout {
                secs: deadline.as_secs(),
            }))
    }

    /// Close stdin: the remote script finishes (and releases what it held).
    pub async fn release(mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.shutdown().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_shell_banner_before_the_begin_line_is_not_the_script_output() {
        assert_eq!(script_output("n", "@strata-begin\nOK\n"), "OK\n");
        assert_eq!(script_output("n", "@strata-begin\n"), "");
        // A banner that even looks like a probe header is the shell's, not the script's.
        assert_eq!(
            script_output(
                "n",
                "Welcome!\n@strata-probe 1\n@strata-begin\n@strata-probe 1\nR -\n"
            ),
            "@strata-probe 1\nR -\n"
        );
        // Only the first BEGIN counts; one the script prints is its own output.
        assert_eq!(
            script_output("n", "@strata-begin\nx\n@strata-begin\n"),
            "x\n@strata-begin\n"
        );
        assert_eq!(script_output("n", "no newline@strata-begin\nOK\n"), "OK\n");
        // No BEGIN: the command never ran; what ssh printed stays for the error.
        assert_eq!(script_output("n", "oops\n"), "oops\n");
        assert_eq!(script_output("n", ""), "");
    }

    #[test]
    fn ssh_log_lines_are_split_from_the_script_stderr() {
        let stderr = "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\n\
                      debug1: auto-mux: Trying existing master\n\
                      Authenticated to 10.77.1.2 ([10.77.1.2]:22) using \"publickey\".\n\
                      FAIL validate /etc/x: line 3\n\
                      debug1: mux_client_request_session: master session id: 2\n\
                      something debug1: not at the start\n\
                      Transferred: sent 2380, received 2932 bytes, in 0.2 seconds\n\
                      Bytes per second: sent 11000.0, received 13000.0\n";
        let (log, rest) = split_ssh_log(stderr);
        assert_eq!(log.len(), 6, "{log:?}");
        assert!(log[1].starts_with("debug1: auto-mux"));
        assert_eq!(
            rest,
            "FAIL validate /etc/x: line 3\nsomething debug1: not at the start\n"
        );
        // Without -v nothing is taken away.
        let plain = "sh: 1: nope: not found\n";
        assert_eq!(split_ssh_log(plain), (vec![], plain.to_string()));
    }

    #[test]
    fn ssh_args_pass_user_and_port_only_when_set() {
        let mut id = crate::model::testing::identity("v-1");
        let a = ssh_args(&id, Path::new("/r"));
        assert!(a.windows(2).any(|w| w == ["-l", "root"]), "{a:?}");
        assert!(a.windows(2).any(|w| w == ["-p", "22"]), "{a:?}");
        id.ssh.user_set = false;
        id.ssh.port_set = false;
        id.ssh.proxy_jump = Some("root@10.77.1.2".into());
        id.ssh.config_file = Some("inventory/ssh_config".into());
        let a = ssh_args(&id, Path::new("/r"));
        assert!(!a.iter().any(|x| x == "-l" || x == "-p"), "{a:?}");
        assert_eq!(a[..2], ["-F", "/r/inventory/ssh_config"]);
        assert!(a.windows(2).any(|w| w == ["-J", "root@10.77.1.2"]), "{a:?}");
    }

    #[test]
    fn debug_config_keeps_the_config_ssh_would_read() {
        let t = debug_config_text(None).unwrap();
        assert!(t.starts_with("LogLevel DEBUG1\n") && t.contains("Include ~/.ssh/config\n"));
        let t = debug_config_text(Some(Path::new("/r/inventory/ssh config"))).unwrap();
        assert_eq!(t, "LogLevel DEBUG1\nInclude \"/r/inventory/ssh config\"\n");
        assert_eq!(debug_config_text(Some(Path::new("/r/a\"b"))), None);
    }

    #[test]
    fn persist_key_changes_with_every_way_of_reaching_the_node() {
        let base = crate::model::testing::identity("v-1");
        let k = |f: &dyn Fn(&mut NodeIdentity)| {
            let mut id = base.clone();
            f(&mut id);
            persist::key(&id, Path::new("/r"))
        };
        let k0 = k(&|_| {});
        for other in [
            k(&|i| i.ssh.host = Some("v1".into())),
            k(&|i| i.ssh.proxy_jump = Some("b".into())),
            k(&|i| i.ssh.config_file = Some("c".into())),
            k(&|i| i.ssh.user_set = false),
            k(&|i| i.ssh.port = 2222),
        ] {
            assert_ne!(k0, other);
        }
        assert_eq!(k0, k(&|_| {}));
    }
}
