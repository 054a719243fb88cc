//! Helpers for end-to-end cases: run strata, ssh to lab nodes, reset nodes.
//!
//! Network rule: cases connect only to loopback and the lab's 10.77.x.x nodes.
#![allow(dead_code)] // not every helper is used by every set of cases

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One end-to-end case.
pub struct Case {
    pub name: &'static str,
    /// Nodes reset to fresh before the case runs.
    pub fresh: &'static [&'static str],
    pub run: fn() -> Result<()>,
    /// The Debian release of the lab's validator-1..3 while it runs (`strata-lab up
    /// --release`): `bookworm`, `trixie`, or `mixed` (validator-2 trixie, the others
    /// bookworm); None: the suite's release (`suite_release`).
    pub release: Option<&'static str>,
}

/// A case that needs no fresh nodes.
pub fn case(name: &'static str, run: fn() -> Result<()>) -> Case {
    Case {
        name,
        fresh: &[],
        run,
        release: None,
    }
}

/// A case that runs on freshly reset nodes.
pub fn case_fresh(
    name: &'static str,
    fresh: &'static [&'static str],
    run: fn() -> Result<()>,
) -> Case {
    Case {
        name,
        fresh,
        run,
        release: None,
    }
}

/// A case that runs on freshly reset nodes of a lab of `release` (see `Case::release`).
pub fn case_on(
    release: &'static str,
    name: &'static str,
    fresh: &'static [&'static str],
    run: fn() -> Result<()>,
) -> Case {
    Case {
        name,
        fresh,
        run,
        release: Some(release),
    }
}

/// The release the suite's cases run on unless they ask for one: `STRATA_E2E_RELEASE`
/// (`bookworm`, `trixie` or `mixed`; scripts/e2e-trixie.sh), default bookworm.
pub fn suite_release() -> &'static str {
    match std::env::var("STRATA_E2E_RELEASE").as_deref() {
        Ok("trixie") => "trixie",
        Ok("mixed") => "mixed",
        _ => "bookworm",
    }
}

/// The release the harness last brought validator-1..3 to.
static LAB_RELEASE: std::sync::Mutex<&str> = std::sync::Mutex::new("bookworm");

pub fn lab_release() -> &'static str {
    *LAB_RELEASE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Debian release (`bookworm`, `trixie`) of a lab node `validator-<i>` in the lab as
/// the harness set it up (a mixed lab: even nodes trixie, as `strata-lab up --release mixed`).
pub fn release_of(node: &str) -> &'static str {
    match lab_release() {
        "mixed" => {
            let even = node
                .strip_prefix("validator-")
                .and_then(|i| i.parse::<u32>().ok())
                .is_some_and(|i| i.is_multiple_of(2));
            if even {
                "trixie"
            } else {
                "bookworm"
            }
        }
        r => r,
    }
}

/// Bring validator-1..3 to `release` (`strata-lab up --nodes 3 --release R`: nodes of another
/// release are booted fresh on it) and check each runs that Debian (`VERSION_ID` 12 or 13),
/// so a case meant for trixie can never run on bookworm unnoticed.
pub fn switch_lab_release(release: &'static str) -> Result<()> {
    lab_ok(&["up", "--nodes", "3", "--release", release])?;
    *LAB_RELEASE.lock().unwrap_or_else(|e| e.into_inner()) = release;
    for n in ["validator-1", "validator-2", "validator-3"] {
        let want = match release_of(n) {
            "trixie" => "13",
            _ => "12",
        };
        let got = ssh_ok(n, "root", ". /etc/os-release; echo $VERSION_ID")?;
        if got != want {
            bail!("{n} runs Debian {got:?}, not {want} ({release} lab)");
        }
    }
    Ok(())
}

/// The crate root: the repo the lab belongs to (`.lab/`, `inventory/lab.yaml`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// Run `strata --repo <repo> --inventory inventory/lab.yaml ARGS...`.
pub fn strata(args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("--repo")
        .arg(repo())
        .args(["--inventory", "inventory/lab.yaml"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the strata binary")
}

/// The lab's own binary (test tooling, built by `cargo build --workspace` next to strata).
pub fn lab_bin() -> PathBuf {
    strata_bin().with_file_name("strata-lab")
}

/// Run `strata-lab --repo <repo> ARGS...`.
pub fn lab(args: &[&str]) -> Output {
    Command::new(lab_bin())
        .arg("--repo")
        .arg(repo())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the strata-lab binary (cargo build --workspace)")
}

/// Like `lab`, but an error unless it exits 0.
pub fn lab_ok(args: &[&str]) -> Result<Output> {
    let out = lab(args);
    if !out.status.success() {
        bail!("strata-lab {} failed:\n{}", args.join(" "), text(&out));
    }
    Ok(out)
}

/// Like `strata`, but an error unless it exits 0.
pub fn strata_ok(args: &[&str]) -> Result<Output> {
    let out = strata(args);
    if !out.status.success() {
        bail!(
            "strata {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            text(&out)
        );
    }
    Ok(out)
}

/// The lab address of `validator-<i>`.
pub fn address(node: &str) -> Result<String> {
    let i: u32 = node
        .strip_prefix("validator-")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| anyhow!("not a lab node name: {node}"))?;
    Ok(format!("10.77.{i}.2"))
}

/// Run `cmd` on a lab node as `user` over ssh with the lab key and strict host key checking.
pub fn ssh(node: &str, user: &str, cmd: &str) -> Output {
    let known_hosts = repo().join(".lab/known_hosts");
    ssh_to(
        &address(node).expect("node name"),
        user,
        &known_hosts,
        5,
        cmd,
    )
}

/// Run `cmd` on `addr` as `user` with the lab key, host keys checked strictly against
/// `known_hosts`, giving up on the connection after `timeout` seconds.
pub fn ssh_to(addr: &str, user: &str, known_hosts: &Path, timeout: u32, cmd: &str) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(repo().join(".lab/ssh/id_ed25519"))
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o"])
        .arg(format!("ConnectTimeout={timeout}"))
        .arg(format!("{user}@{addr}"))
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ssh")
}

/// `ssh` that must succeed; returns trimmed stdout.
pub fn ssh_ok(node: &str, user: &str, cmd: &str) -> Result<String> {
    let out = ssh(node, user, cmd);
    if !out.status.success() {
        bail!(
            "ssh {user}@{node} {cmd:?} failed ({}):\n{}",
            out.status,
            text(&out)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Reset nodes to their fresh state (one `strata-lab reset`: they boot in parallel).
pub fn fresh(nodes: &[&str]) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    let mut args = vec!["reset"];
    args.extend_from_slice(nodes);
    lab_ok(&args).with_context(|| format!("resetting {}", nodes.join(", ")))?;
    Ok(())
}

/// stdout and stderr of a command, for error messages.
pub fn text(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `.lab/state.json` as written by the lab: what it started.
pub fn lab_state() -> Result<serde_json::Value> {
    let p = repo().join(".lab/state.json");
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(serde_json::from_str(&s)?)
}

/// (name, pid, root) of every node in the lab state.
pub fn recorded_nodes() -> Result<Vec<(String, Option<u32>, PathBuf)>> {
    let state = lab_state()?;
    let nodes = state["nodes"].as_array().cloned().unwrap_or_default();
    Ok(nodes
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["pid"].as_u64().map(|p| p as u32),
                PathBuf::from(n["root"].as_str().unwrap_or_default()),
            )
        })
        .collect())
}

/// Is `pid` a live (not zombie) process whose argv contains `needle`?
pub fn process_matches(pid: u32, needle: &str) -> bool {
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().chars().next()))
        .flatten()
        .is_some_and(|st| st != 'Z' && st != 'X');
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    alive && String::from_utf8_lossy(&cmdline).contains(needle)
}

/// Overlay mount points under `dir`.
pub fn overlay_mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "overlay" && Path::new(f[1]).starts_with(dir))
                .then(|| f[1].to_string())
        })
        .collect()
}

/// A plain HTTP GET from the host to a lab node (or loopback): (status code, body).
pub fn http_get(host: &str, port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse()?;
    let ip = addr.ip().to_string();
    // Network rule, enforced where the connection is made.
    if !(ip.starts_with("10.77.") || addr.ip().is_loopback()) {
        bail!("refusing to connect to {ip}: tests reach only loopback and lab nodes");
    }
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP response: {resp:?}"))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Check a condition or fail the case with a message.
#[macro_export]
macro_rules! ensure_that {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            anyhow::bail!($($msg)+);
        }
    };
}

/// Run strata (against `repo` and the lab inventory, with the canary secrets), wait until its
/// stderr shows `marker`, wait `delay`, then kill it with SIGKILL together with its ssh
/// masters (their control sockets live in a TMPDIR of its own, which names them). Returns
/// the stderr seen; an error if the marker never appeared.
pub fn strata_killed_at(
    repo: &Path,
    args: &[&str],
    marker: &str,
    delay: std::time::Duration,
) -> Result<String> {
    use crate::plan_apply_cases::canary_envs;
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir()?;
    let mut child = Command::new(strata_bin())
        .arg("--repo")
        .arg(repo)
        .args(["--inventory", "inventory/lab.yaml"])
        .args(args)
        .env("TMPDIR", tmp.path())
        .envs(canary_envs())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut seen = String::new();
    let mut hit = false;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            hit = true;
            break;
        }
    }
    std::thread::sleep(delay);
    child.kill()?;
    let _ = child.wait();
    let _ = Command::new("pkill")
        .args(["-KILL", "-f"])
        .arg(tmp.path())
        .status();
    if !hit {
        bail!("strata {args:?} never printed {marker:?}:\n{seen}");
    }
    Ok(seen)
}

/// Serve `dir` over HTTP/1.0 on each node's host-side address (10.77.N.1), one port for
/// all (an apt client asks for `/./InRelease` of a flat repository). Threads live until the test process ends.
pub fn serve_dir(dir: PathBuf, hosts: &[String]) -> Result<u16> {
    let mut port = 0;
    for (i, h) in hosts.iter().enumerate() {
        let l = TcpListener::bind((h.as_str(), port))
            .with_context(|| format!("cannot listen on {h}:{port}"))?;
        if i == 0 {
            port = l.local_addr()?.port();
        }
        let dir = dir.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let dir = dir.clone();
                std::thread::spawn(move || serve_conn(s, &dir));
            }
        });
    }
    Ok(port)
}

/// HTTP/1.1 requests on one connection, in order (apt pipelines them), until it closes.
fn serve_conn(s: std::net::TcpStream, dir: &Path) {
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // The headers, up to the empty line.
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let name = parts.next().unwrap_or("/");
        let name = name.trim_start_matches('/').trim_start_matches("./");
        let body = (!name.contains('/') && !name.starts_with('.'))
            .then(|| std::fs::read(dir.join(name)).ok())
            .flatten();
        let head = |code: &str, len: usize| {
            format!("HTTP/1.1 {code}\r\nContent-Length: {len}\r\nConnection: keep-alive\r\n\r\n")
        };
        let ok = match &body {
            Some(b) => w
                .write_all(head("200 OK", b.len()).as_bytes())
                .and_then(|_| {
                    if method == "HEAD" {
                        Ok(())
                    } else {
                        w.write_all(b)
                    }
                }),
            None => w.write_all(head("404 Not Found", 0).as_bytes()),
        };
        if ok.is_err() {
            return;
        }
    }
}
