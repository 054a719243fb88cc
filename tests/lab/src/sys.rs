//! Thin helpers over the host: run tools, find them, look at processes and mounts.
//! Kept free of lab policy so the lab logic reads as a sequence of steps.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Directories searched for tools besides $PATH: root's tools live in sbin, and a
/// non-login shell's PATH often lacks it.
const EXTRA_PATH: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Locate an executable by name.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_PATH.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A command for a tool found via `find_tool` (falls back to the bare name, so the
/// error message still names it).
pub fn tool(name: &str) -> Command {
    Command::new(find_tool(name).unwrap_or_else(|| PathBuf::from(name)))
}

/// Run a command to completion; fail with its stderr if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Like `run`, but the command's output goes to the terminal (long builds show progress).
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Effective uid, read from /proc (std has no geteuid and we avoid a libc dependency).
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_euid(&status)
}

/// `Uid:\treal\teffective\tsaved\tfs` -> effective.
pub fn parse_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The state letter from /proc/PID/stat (R, S, Z, ...), None if the process is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(state, _)| state)
}

/// Parse `pid (comm) S ppid ...` -> (state, ppid). comm may contain spaces and
/// parentheses, so split at the last ')'.
pub fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Alive and not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The process's argv, NUL-separated in /proc.
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every live descendant of `pid` (children first discovered breadth-first).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((_, ppid)) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// PID 1 of a PID namespace nested in ours (a container's init): `NSpid: <ours> ... 1`.
pub fn is_namespace_init(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| parse_namespace_init(&s))
        .unwrap_or(false)
}

pub fn parse_namespace_init(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            let ids: Vec<&str> = v.split_whitespace().collect();
            ids.len() > 1 && ids.last() == Some(&"1")
        })
        .unwrap_or(false)
}

/// Send a signal with kill(1) (no libc dependency).
pub fn signal(pid: u32, sig: &str) {
    let _ = tool("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Overlay mount points currently mounted (from /proc/self/mounts).
pub fn overlay_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| parse_overlay_mounts(&m))
        .unwrap_or_default()
}

/// Lines are `source target fstype options 0 0`; spaces in paths are octal-escaped.
pub fn parse_overlay_mounts(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] == "overlay").then(|| PathBuf::from(unescape_mount(f[1])))
        })
        .collect()
}

/// Mount points of the cgroup hierarchies systemd-nspawn places a container in: every
/// cgroup2 mount and the v1 `name=systemd` one (hybrid hosts).
pub fn parse_cgroup_mounts(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let wanted = f.len() >= 4
                && (f[2] == "cgroup2"
                    || (f[2] == "cgroup" && f[3].split(',').any(|o| o == "name=systemd")));
            wanted.then(|| PathBuf::from(unescape_mount(f[1])))
        })
        .collect()
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub fn is_mounted(path: &Path) -> bool {
    overlay_mounts().iter().any(|m| m == path)
}

/// Does a network interface exist?
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The interface that already has an IPv4 address in the /24 of `cidr` (`10.77.4.1/24`),
/// if any: the lab's subnets are global to the machine.
pub fn subnet_user(cidr: &str) -> Option<String> {
    let out = tool("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()?;
    parse_subnet_user(&String::from_utf8_lossy(&out.stdout), cidr)
}

/// From `ip -o -4 addr show` lines (`5: ve-x    inet 10.77.4.1/24 brd ...`).
pub fn parse_subnet_user(ip_output: &str, cidr: &str) -> Option<String> {
    let net = cidr.split('/').next()?.rsplit_once('.')?.0.to_string() + ".";
    ip_output.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let i = f.iter().position(|w| *w == "inet")?;
        let dev = f.get(1)?.trim_end_matches(':');
        f.get(i + 1)?
            .starts_with(&net)
            .then(|| dev.split('@').next().unwrap_or(dev).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_init_from_status() {
        assert!(parse_namespace_init("Name:\tsystemd\nNSpid:\t4242\t1\n"));
        assert!(!parse_namespace_init("Name:\tsshd\nNSpid:\t4250\t77\n"));
        assert!(!parse_namespace_init("Name:\tinit\nNSpid:\t1\n"));
        assert!(!parse_namespace_init("Name:\tx\n"));
    }

    #[test]
    fn subnet_in_use() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   7: ve-validator-1@if2    inet 10.77.1.1/24 scope global ve-validator-1\\ x\n\
                   9: ve-v-4    inet 10.77.14.1/24 scope global ve-v-4\n";
        assert_eq!(
            parse_subnet_user(out, "10.77.1.1/24").as_deref(),
            Some("ve-validator-1")
        );
        assert_eq!(parse_subnet_user(out, "10.77.4.1/24"), None);
        assert_eq!(
            parse_subnet_user(out, "10.77.14.1/24").as_deref(),
            Some("ve-v-4")
        );
    }

    #[test]
    fn euid_is_the_second_uid_field() {
        let s = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(parse_euid(s), Some(0));
        assert_eq!(parse_euid("Name: x\n"), None);
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "1234 (we ird) proc)) S 77 1234 1234 0 -1";
        assert_eq!(parse_stat(s), Some(('S', 77)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn cgroup_mounts_hybrid_and_unified() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
                      cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            parse_cgroup_mounts(hybrid),
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
        let v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(
            parse_cgroup_mounts(v2),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
    }

    #[test]
    fn overlay_mounts_are_found_and_unescaped() {
        let m = "/dev/vda / ext4 rw 0 0\n\
                 overlay /var/lib/strata-lab/x/nodes/validator-1/root overlay rw,lowerdir=/a 0 0\n\
                 overlay /tmp/with\\040space overlay rw 0 0\n\
                 proc /proc proc rw 0 0\n";
        assert_eq!(
            parse_overlay_mounts(m),
            vec![
                PathBuf::from("/var/lib/strata-lab/x/nodes/validator-1/root"),
                PathBuf::from("/tmp/with space")
            ]
        );
    }
}
