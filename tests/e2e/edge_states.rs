//! Trust at the edges, on real nodes: every odd live state of a managed path, unit, user,
//! package or firewall is planned truthfully and applied as planned (or refused as planned),
//! and nothing outside the managed paths changes (a checksum sweep before and after).
//!
//! Shared with the drift fuzzer (fuzz_cases.rs): the sweep, the managed-path list, the temp
//! file search.

use crate::common::*;
use crate::plan_apply_cases::{expect_code, out, st_in, TempRepo};
use anyhow::{bail, ensure, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What strata manages on a node, from `strata render` (paths and unit names).
#[derive(Debug, Clone, Default)]
pub struct Managed {
    pub paths: Vec<String>,
    pub units: Vec<String>,
}

pub fn managed(repo: &Path, node: &str) -> Result<Managed> {
    let o = st_in(repo, &["render", node]);
    expect_code(&o, 0, "render")?;
    let mut m = Managed::default();
    for line in out(&o).lines() {
        let Some(id) = line.split_whitespace().next() else {
            continue;
        };
        if let Some((kind, rest)) = id.split_once(':') {
            match kind {
                "file" | "directory" | "key_file" => m.paths.push(rest.to_string()),
                "service" => m.units.push(rest.to_string()),
                _ => {}
            }
        }
    }
    ensure!(!m.paths.is_empty(), "render listed no paths:\n{}", out(&o));
    Ok(m)
}

/// Left out of the sweep besides the managed paths, because they legitimately change while
/// a node runs or is applied: strata's own state (/var/lib/strata: record, backups, locks),
/// dpkg and apt's databases and ucf's registry (a package reinstalled), systemd's state,
/// the services' own data (Prometheus' TSDB, chrony's drift file, logrotate's status, sudo's
/// timestamps), ufw's rule and state files (the firewall is managed as a whole), and for
/// each managed unit its enablement links (`*.wants/UNIT`, a mask, an alias).
pub const LEGIT_CHURN: &[&str] = &[
    "/var/lib/strata",
    "/var/lib/apt",
    "/var/lib/dpkg",
    "/var/lib/ucf",
    "/var/lib/systemd",
    "/var/lib/private",
    "/var/lib/prometheus",
    "/var/lib/chrony",
    "/var/lib/logrotate",
    "/var/lib/sudo",
    "/etc/ufw/user.rules",
    "/etc/ufw/user6.rules",
    "/etc/ufw/ufw.conf",
    "/etc/default/ufw",
];

/// The account databases: changed by a user edit and its repair (allowed per edit).
pub const ACCOUNTS: &[&str] = &[
    "/etc/passwd",
    "/etc/passwd-",
    "/etc/group",
    "/etc/group-",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/subuid",
    "/etc/subuid-",
    "/etc/subgid",
    "/etc/subgid-",
    "/etc/.pwd.lock",
];

/// path -> "type mode owner:group [sha256 | -> link target]" for everything under /etc,
/// /usr/local and /var/lib except the managed paths and LEGIT_CHURN.
pub fn sweep(node: &str, m: &Managed) -> Result<BTreeMap<String, String>> {
    let mut prune: Vec<String> = m
        .paths
        .iter()
        .chain(
            LEGIT_CHURN
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .iter(),
        )
        .map(|p| format!("-path '{p}'"))
        .collect();
    for u in &m.units {
        prune.push(format!("-path '/etc/systemd/system/{u}.service'"));
        prune.push(format!("-path '/etc/systemd/system/*/{u}.service'"));
        prune.push(format!("-lname '*/{u}.service'"));
    }
    let prune = prune.join(" -o ");
    let cmd = format!(
        "find /etc /usr/local /var/lib -xdev \\( {prune} \\) -prune -o \\( -type l -printf 'l %m %u:%g %p\\t-> %l\\n' -o -printf '%y %m %u:%g %p\\n' \\); echo @@sha; find /etc /usr/local /var/lib -xdev \\( {prune} \\) -prune -o -type f -print0 | xargs -0 sha256sum"
    );
    let text = ssh_ok(node, "root", &cmd)?;
    let (meta, shas) = text.split_once("@@sha").context("sweep output")?;
    let mut map = BTreeMap::new();
    for line in meta.lines().filter(|l| !l.is_empty()) {
        let mut f = line.splitn(4, ' ');
        let (ty, mode, own, rest) = (f.next(), f.next(), f.next(), f.next());
        let (Some(ty), Some(mode), Some(own), Some(rest)) = (ty, mode, own, rest) else {
            continue;
        };
        let (path, link) = rest.split_once('\t').unwrap_or((rest, ""));
        map.insert(path.to_string(), format!("{ty} {mode} {own} {link}"));
    }
    for line in shas.lines() {
        if let Some((sha, path)) = line.split_once("  ") {
            if let Some(v) = map.get_mut(path) {
                v.push(' ');
                v.push_str(sha);
            }
        }
    }
    ensure!(map.len() > 100, "the sweep saw only {} paths", map.len());
    Ok(map)
}

/// Paths whose entry differs between two sweeps, except `allowed` (exact paths or prefixes
/// ending in `/`).
pub fn changed(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Vec<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .filter(|k| {
            !allowed
                .iter()
                .any(|p| k.as_str() == *p || (p.ends_with('/') && k.starts_with(p)))
        })
        .map(|k| {
            format!(
                "{k}: {} -> {}",
                a.get(k).map(String::as_str).unwrap_or("(none)"),
                b.get(k).map(String::as_str).unwrap_or("(none)")
            )
        })
        .collect()
}

/// strata's temp files anywhere on the node's root file system (staged files, rollback and
/// restore copies, record temp files).
pub fn temp_files(node: &str) -> Result<Vec<String>> {
    let o = ssh_ok(
        node,
        "root",
        "find / -xdev \\( -name '.*.strata-*' -o -name '.strata-rollback-*' -o -name '.strata-restore-*' -o -name '.desired.*' -o -name '.state.*' \\) -print 2>/dev/null",
    )?;
    Ok(o.lines().map(str::to_string).collect())
}

/// The lines of the node's part of a text plan that are not diff body lines.
pub fn plan_lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_string()).collect()
}

pub fn missing_lines(text: &str, want: &[&str]) -> Vec<String> {
    let have = plan_lines(text);
    want.iter()
        .filter(|w| !have.iter().any(|h| h == *w))
        .map(|w| w.to_string())
        .collect()
}

/// One odd live state, made by hand on a converged node.
pub struct State {
    pub name: &'static str,
    /// sh run on the node to make the state.
    pub setup: &'static str,
    /// Exact lines the node's text plan must hold.
    pub plan: &'static [&'static str],
    /// The plan is an error for the node, apply does not start on it; `fix` then repairs it
    /// by hand.
    pub refused: bool,
    pub fix: &'static str,
    /// Paths outside the managed ones this state (its making and its repair) may change.
    pub allow: &'static [&'static str],
    /// sh that must succeed on the node after the apply.
    pub check: &'static str,
}

const V1: &str = "validator-1";

pub fn states() -> Vec<State> {
    vec![
        State {
            name: "symlink to a file (/etc/passwd) at a file's path",
            setup: "rm -f /etc/logrotate.d/monad && ln -s /etc/passwd /etc/logrotate.d/monad",
            plan: &["  ~ file:/etc/logrotate.d/monad [drift]  a symlink to /etc/passwd (a file) is there; it will be replaced by a file (the link itself; its target is not touched), 0644 root:root, 19 lines"],
            refused: false,
            fix: "",
            allow: &[],
            check: "[ -f /etc/logrotate.d/monad ] && [ ! -L /etc/logrotate.d/monad ] && grep -q '^root:x:0:0' /etc/passwd",
        },
        State {
            name: "symlink to a directory at a file's path",
            setup: "rm -f /etc/chrony/chrony.conf && ln -s /etc/ssh /etc/chrony/chrony.conf",
            plan: &["  ~ file:/etc/chrony/chrony.conf [drift]  a symlink to /etc/ssh (a directory) is there; it will be replaced by a file (the link itself; its target is not touched), 0644 root:root, 37 lines  -> restart chrony"],
            refused: false,
            fix: "",
            allow: &[],
            check: "[ -f /etc/chrony/chrony.conf ] && [ ! -L /etc/chrony/chrony.conf ] && ! ls -a /etc/ssh | grep -q strata",
        },
        State {
            name: "dangling symlink at a file's path",
            setup: "rm -f /etc/default/prometheus-node-exporter && ln -s /nonexistent/x /etc/default/prometheus-node-exporter",
            plan: &["  ~ file:/etc/default/prometheus-node-exporter [drift]  a symlink to /nonexistent/x (dangling) is there; it will be replaced by a file (the link itself; its target is not touched), 0644 root:root, 7 lines  -> restart prometheus-node-exporter"],
            refused: false,
            fix: "",
            allow: &[],
            check: "[ -f /etc/default/prometheus-node-exporter ] && [ ! -e /nonexistent ]",
        },
        State {
            name: "empty directory at a file's path",
            setup: "rm -f /etc/prometheus/rules/strata-alerts.yml && mkdir /etc/prometheus/rules/strata-alerts.yml",
            plan: &["  ~ file:/etc/prometheus/rules/strata-alerts.yml [drift]  an empty directory is there; it will be replaced by a file, 0644 root:root, 185 lines  -> reload prometheus"],
            refused: false,
            fix: "",
            allow: &[],
            check: "[ -f /etc/prometheus/rules/strata-alerts.yml ]",
        },
        State {
            name: "non-empty directory at a file's path (refused)",
            setup: "rm -f /etc/logrotate.d/monad && mkdir /etc/logrotate.d/monad && echo keep > /etc/logrotate.d/monad/data",
            plan: &["  error: strata will not change this node as it is: file:/etc/logrotate.d/monad: a non-empty directory is there; strata will not replace it with a file (move it away by hand)"],
            refused: true,
            fix: "rm -rf /etc/logrotate.d/monad",
            allow: &[],
            check: "[ -f /etc/logrotate.d/monad ]",
        },
        State {
            name: "fifo at a file's path",
            setup: "rm -f /etc/logrotate.d/monad && mkfifo /etc/logrotate.d/monad",
            plan: &["  ~ file:/etc/logrotate.d/monad [drift]  a fifo is there; it will be replaced by a file, 0644 root:root, 19 lines"],
            refused: false,
            fix: "",
            allow: &[],
            check: "[ -f /etc/logrotate.d/monad ]",
        },
        State {
            name: "socket at a file's path",
            setup: "rm -f /etc/logrotate.d/monad && python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"/etc/logrotate.d/monad\")'",
            plan: &["  ~ file:/etc/logrotate.d/monad [drift]  a socket is there; it will be replaced by a file, 0644 root:root, 19 lines"],
            refused: false,
            fix: "",
            allow: &[],
            check: "[ -f /etc/logrotate.d/monad ]",
        },
        State {
            name: "device node at a file's path (refused)",
            setup: "rm -f /etc/logrotate.d/monad && mknod /etc/logrotate.d/monad c 1 3",
            plan: &["  error: strata will not change this node as it is: file:/etc/logrotate.d/monad: a character device is there; strata will not replace it with a file (move it away by hand)"],
            refused: true,
            fix: "rm -f /etc/logrotate.d/monad",
            allow: &[],
            check: "[ -f /etc/logrotate.d/monad ]",
        },
        State {
            name: "file at a directory's path (refused)",
            setup: "rm -rf /etc/prometheus/rules && echo x > /etc/prometheus/rules",
            plan: &["  error: strata will not change this node as it is: directory:/etc/prometheus/rules: a regular file is there, not a directory; strata will not replace it or write through it (fix it by hand)"],
            refused: true,
            fix: "rm -f /etc/prometheus/rules",
            allow: &[],
            check: "[ -d /etc/prometheus/rules ] && [ -f /etc/prometheus/rules/strata-alerts.yml ]",
        },
        State {
            name: "symlink at a directory's path (refused, its target untouched)",
            setup: "mkdir -p /srv/rules-elsewhere && cp -a /etc/prometheus/rules/. /srv/rules-elsewhere/ && rm -rf /etc/prometheus/rules && ln -s /srv/rules-elsewhere /etc/prometheus/rules && sha256sum /srv/rules-elsewhere/* > /srv/rules.sha",
            plan: &["  error: strata will not change this node as it is: directory:/etc/prometheus/rules: a symlink to /srv/rules-elsewhere (a directory) is there, not a directory; strata will not replace it or write through it (fix it by hand)"],
            refused: true,
            fix: "sha256sum -c --quiet /srv/rules.sha && rm -f /etc/prometheus/rules && rm -rf /srv/rules-elsewhere /srv/rules.sha",
            allow: &[],
            check: "[ -d /etc/prometheus/rules ] && [ ! -L /etc/prometheus/rules ]",
        },
        State {
            name: "masked unit",
            setup: "systemctl mask prometheus-node-exporter",
            plan: &["  ~ service:prometheus-node-exporter [drift]  masked -> unmasked; enabled: masked -> enabled"],
            refused: false,
            fix: "",
            allow: &[],
            check: "systemctl is-enabled prometheus-node-exporter && systemctl is-active prometheus-node-exporter",
        },
        State {
            name: "runtime-masked and stopped unit",
            setup: "systemctl stop prometheus-node-exporter && systemctl mask --runtime prometheus-node-exporter",
            plan: &["  ~ service:prometheus-node-exporter [drift]  masked (runtime) -> unmasked; enabled: masked-runtime -> enabled; state: inactive -> active"],
            refused: false,
            fix: "",
            allow: &[],
            check: "systemctl is-enabled prometheus-node-exporter && systemctl is-active prometheus-node-exporter && [ ! -e /run/systemd/system/prometheus-node-exporter.service ]",
        },
        State {
            name: "unit whose (managed) file is gone",
            setup: "rm /etc/systemd/system/monad-validator.service",
            plan: &["  + file:/etc/systemd/system/monad-validator.service [drift]  0644 root:root, 47 lines  -> daemon-reload, restart monad-validator"],
            refused: false,
            fix: "",
            allow: &[],
            check: "systemctl is-active monad-validator",
        },
        State {
            name: "unit whose (packaged) file is gone (refused)",
            // Its unit file and its init script (the sysv generator would stand in) gone,
            // systemd reloaded: not-found.
            setup: "mkdir -p /root/ne && cp -a /lib/systemd/system/prometheus-node-exporter.service /etc/init.d/prometheus-node-exporter /root/ne/ && rm /lib/systemd/system/prometheus-node-exporter.service /etc/init.d/prometheus-node-exporter && systemctl daemon-reload",
            plan: &["  error: strata will not change this node as it is: service:prometheus-node-exporter: its unit file is gone (systemd: not-found) and nothing this plan writes or installs provides it (reinstall its package)"],
            refused: true,
            fix: "cp -a /root/ne/prometheus-node-exporter.service /lib/systemd/system/ && cp -a /root/ne/prometheus-node-exporter /etc/init.d/ && rm -rf /root/ne && systemctl daemon-reload",
            allow: &[],
            check: "systemctl is-active prometheus-node-exporter",
        },
        State {
            name: "failed unit",
            setup: "systemctl kill -s KILL chrony; sleep 1; systemctl is-failed chrony",
            plan: &["  ~ service:chrony [drift]  state: failed -> active"],
            refused: false,
            fix: "",
            allow: &[],
            check: "systemctl is-active chrony",
        },
        State {
            name: "user with another shell",
            setup: "usermod -s /bin/bash monad",
            plan: &["  ~ user:monad [drift]  shell /bin/bash -> /usr/sbin/nologin"],
            refused: false,
            fix: "",
            allow: ACCOUNTS,
            check: "getent passwd monad | grep -q ':/var/lib/monad:/usr/sbin/nologin$'",
        },
        // (usermod refuses to change the home of a user with running processes: such an
        // apply fails at its user step, before any live change.)
        State {
            name: "user with another shell and home",
            setup: "usermod -s /bin/bash -d /home/elsewhere promtail",
            plan: &["  ~ user:promtail [drift]  shell /bin/bash -> /usr/sbin/nologin; home /home/elsewhere -> /var/lib/promtail"],
            refused: false,
            fix: "",
            allow: ACCOUNTS,
            check: "getent passwd promtail | grep -q ':/var/lib/promtail:/usr/sbin/nologin$' && [ ! -e /home/elsewhere ]",
        },
        State {
            name: "user with other groups",
            setup: "gpasswd -d promtail adm >/dev/null && usermod -aG sudo promtail",
            plan: &["  ~ user:promtail [drift]  add to groups adm; remove from groups sudo"],
            refused: false,
            fix: "",
            allow: ACCOUNTS,
            check: "id -nG promtail | tr ' ' '\\n' | sort | tr '\\n' ' ' | grep -qx 'adm monad promtail systemd-journal '",
        },
        State {
            name: "user deleted",
            setup: "userdel promtail",
            plan: &[
                "  + user:promtail [drift]  system user, home /var/lib/promtail",
                "  ~ directory:/var/lib/promtail [drift]  owner UNKNOWN:UNKNOWN -> promtail:promtail",
            ],
            refused: false,
            fix: "",
            allow: ACCOUNTS,
            check: "id promtail",
        },
        State {
            name: "package removed",
            setup: "dpkg -r prometheus-node-exporter >/dev/null 2>&1",
            plan: &[
                "  + package:prometheus-node-exporter [drift]  install (apt); dpkg says \"deinstall ok config-files\"",
                "  ~ service:prometheus-node-exporter [drift]  unit not installed yet; enabled: none -> enabled; state: inactive -> active",
            ],
            refused: false,
            fix: "",
            allow: &["/etc/ld.so.cache", "/etc/init.d/prometheus-node-exporter", "/etc/default/prometheus-node-exporter", "/etc/logrotate.d/prometheus-node-exporter"],
            check: "systemctl is-active prometheus-node-exporter && dpkg -s prometheus-node-exporter | grep -q 'install ok installed'",
        },
        State {
            name: "package half-installed",
            setup: "sed -i '/^Package: logrotate$/,/^$/s/^Status: install ok installed$/Status: install ok half-configured/' /var/lib/dpkg/status && dpkg -s logrotate | grep -q half-configured",
            plan: &["  + package:logrotate [drift]  install (apt); dpkg says \"install ok half-configured\""],
            refused: false,
            fix: "",
            allow: &["/etc/ld.so.cache"],
            check: "dpkg -s logrotate | grep -q 'install ok installed'",
        },
        State {
            name: "ufw: an IPv6 rule, a route rule, an outgoing rule, an app rule",
            setup: "ufw allow from 2001:db8::/32 to any port 5000 proto tcp >/dev/null && ufw route allow in on host0 out on host0 to 10.9.9.9 port 80 proto tcp >/dev/null && ufw allow out 25/tcp >/dev/null && ufw allow OpenSSH >/dev/null",
            plan: &[
                "  - ufw:allow 5000/tcp from 2001:db8::/32 [drift]  not declared",
                "  - ufw:route allow in on host0 out on host0 proto tcp from any to 10.9.9.9 port 80 [drift]  not declared (strata declares only incoming rules to any address)",
                "  - ufw:allow out proto tcp from any to any port 25 [drift]  not declared (strata declares only incoming rules to any address)",
                "  - ufw:allow in from any to any app OpenSSH [drift]  not declared (strata declares only incoming rules to any address)",
            ],
            refused: false,
            fix: "",
            allow: &[],
            check: "! grep -q 'route:\\|out$\\|OpenSSH\\|2001:db8' /etc/ufw/user.rules /etc/ufw/user6.rules",
        },
        State {
            name: "ufw: a rule inserted by number, the SSH rule's IPv6 twin deleted",
            setup: "ufw insert 1 deny 3306/tcp >/dev/null && n=$(ufw status numbered | grep '22/tcp (v6)' | sed 's/^\\[ *\\([0-9]*\\)\\].*/\\1/') && ufw --force delete $n >/dev/null",
            plan: &[
                "  - ufw:deny 3306/tcp from any [drift]  not declared",
                "  ~ ufw:allow 22/tcp from any [drift]  in one address family only (its IPv4 or IPv6 twin was deleted); it will be added again",
            ],
            refused: false,
            fix: "",
            allow: &[],
            check: "grep -q '^### tuple ### allow tcp 22 ::/0 any ::/0' /etc/ufw/user6.rules",
        },
        State {
            name: "ufw: defaults changed",
            setup: "ufw default allow incoming >/dev/null",
            plan: &["  ~ firewall:ufw [drift]  default incoming allow -> deny"],
            refused: false,
            fix: "",
            allow: &[],
            check: "grep -q DEFAULT_INPUT_POLICY=.DROP /etc/default/ufw",
        },
        State {
            name: "ufw: disabled",
            setup: "ufw disable >/dev/null",
            plan: &["  ~ firewall:ufw [drift]  status: inactive -> active"],
            refused: false,
            fix: "",
            allow: &[],
            check: "ufw status | grep -q 'Status: active'",
        },
    ]
}

/// Each state on validator-1, converged first: plan text, apply (or its refusal), plan
/// exits 0, the sweep shows nothing else changed, no temp file left. Every state is tried;
/// the case fails at the end with all that went wrong.
pub fn every_state() -> Result<()> {
    let repo = crate::common::repo();
    let o = st_in(&repo, &["apply", "--yes", V1]);
    expect_code(&o, 0, "converging validator-1")?;
    let m = managed(&repo, V1)?;
    let only = std::env::var("STRATA_EDGE_ONLY").ok();
    let mut failures = Vec::new();
    for s in states() {
        if only
            .as_deref()
            .is_some_and(|o| !o.split('|').any(|o| s.name.contains(o)))
        {
            continue;
        }
        let t = std::time::Instant::now();
        match one_state(&repo, &m, &s) {
            Ok(()) => println!("    ok   {} ({:.1}s)", s.name, t.elapsed().as_secs_f64()),
            Err(e) => {
                println!("    FAIL {}: {e:#}", s.name);
                failures.push(format!("{}: {e:#}", s.name));
                // Leave the node converged for the next state.
                let _ = st_in(&repo, &["apply", "--yes", V1]);
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of the states failed:\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}

fn one_state(repo: &Path, m: &Managed, s: &State) -> Result<()> {
    let before = sweep(V1, m)?;
    ssh_ok(V1, "root", s.setup).context("making the state")?;
    let o = st_in(repo, &["plan", "--detailed-exitcode", V1]);
    let text = out(&o);
    expect_code(&o, if s.refused { 1 } else { 2 }, "plan")?;
    let missing = missing_lines(&text, s.plan);
    ensure!(missing.is_empty(), "plan lacks {missing:#?}:\n{text}");
    if s.refused {
        let mid = sweep(V1, m)?;
        let o = st_in(repo, &["apply", "--yes", V1]);
        expect_code(&o, 1, "apply of a refused node")?;
        let t = out(&o);
        ensure!(
            t.contains("strata will not change this node as it is") && !t.contains("applied"),
            "apply did not refuse as planned:\n{t}"
        );
        let after = sweep(V1, m)?;
        let c = changed(&mid, &after, &[]);
        ensure!(c.is_empty(), "a refused apply changed the node: {c:#?}");
        ssh_ok(V1, "root", s.fix).context("fixing by hand")?;
    }
    let o = st_in(repo, &["apply", "--yes", V1]);
    expect_code(&o, 0, "apply")?;
    let o = st_in(repo, &["plan", "--detailed-exitcode", V1]);
    expect_code(&o, 0, "the plan after apply")?;
    let after = sweep(V1, m)?;
    let c = changed(&before, &after, s.allow);
    ensure!(c.is_empty(), "changed outside the managed paths: {c:#?}");
    let tmp = temp_files(V1)?;
    ensure!(tmp.is_empty(), "temp files left: {tmp:?}");
    ssh_ok(V1, "root", s.check).context("the check after apply")?;
    Ok(())
}

/// Each injected failure: the plan is applied to validator-1 and validator-2 (serial 1);
/// validator-1 fails at a step of the changes script after files went live; it is back on
/// its previous files, services and firewall, reported rolled back; validator-2 untouched.
struct Injection {
    name: &'static str,
    /// sh on validator-1 that makes the step fail (and a hand edit that needs that step).
    setup: &'static str,
    /// sh on validator-1 that undoes `setup`'s failure mechanism (not its hand edit).
    cleanup: &'static str,
    /// The repo edit: (file, from, to).
    edit: (&'static str, &'static str, &'static str),
    /// What the apply summary says of validator-1 (each must be in it).
    said: &'static [&'static str],
    /// Paths the injection itself puts outside the managed ones.
    allow: &'static [&'static str],
}

/// sh: a ufw rule strata will delete, and a `ufw` first on PATH whose deletions fail.
macro_rules! ufw_delete_fails {
    () => {
        "ufw allow 3306/tcp >/dev/null && printf '#!/bin/sh\\ncase \"$*\" in *delete*) echo injected >&2; exit 1;; esac\\nexec /usr/sbin/ufw \"$@\"\\n' > /usr/local/sbin/ufw && chmod 0755 /usr/local/sbin/ufw"
    };
}
/// sh: undoes `ufw_delete_fails!` (the wrapper, then the rule).
macro_rules! ufw_wrapper_gone {
    () => {
        "rm -f /usr/local/sbin/ufw && ufw delete allow 3306/tcp >/dev/null"
    };
}

fn injections() -> Vec<Injection> {
    // Every injection also changes chrony.conf (files go live first), so the rollback has a
    // file to put back.
    vec![
        Injection {
            name: "an apt package that does not exist",
            setup: "true",
            cleanup: "true",
            edit: ("modules/chrony/module.yaml", "packages: [chrony]", "packages: [chrony, strata-no-such-package]"),
            said: &["validator-1: FAILED: changes failed (exit code 1)", "strata-no-such-package", "no file, service or firewall rule was changed"],
            allow: &[],
        },
        Injection {
            name: "a ufw command that fails",
            setup: ufw_delete_fails!(),
            cleanup: ufw_wrapper_gone!(),
            edit: ("modules/chrony/templates/chrony.conf.j2", "\n", "\n# injected: ufw fails\n"),
            said: &["validator-1: FAILED, rolled back: changes failed (exit code 1)", "ufw delete"],
            allow: &["/usr/local/sbin/ufw", "/usr/local/sbin/"],
        },
        Injection {
            // A file whose mode only was changed by hand: the apply chmods it back, the
            // rollback puts the hand-set mode back (as it was before the apply).
            name: "a ufw command that fails after a file's mode was changed",
            setup: concat!("chmod 0600 /etc/logrotate.d/monad && ", ufw_delete_fails!()),
            cleanup: concat!("chmod 0644 /etc/logrotate.d/monad; ", ufw_wrapper_gone!()),
            edit: ("modules/chrony/templates/chrony.conf.j2", "\n", "\n# injected: ufw fails after a chmod\n"),
            said: &["validator-1: FAILED, rolled back: changes failed (exit code 1)", "ufw delete"],
            allow: &["/usr/local/sbin/ufw", "/usr/local/sbin/"],
        },
        Injection {
            // The rename of a later file fails (even root's): chrony.conf, renamed before it,
            // is put back; the immutable file, never replaced, is left as it was, and no
            // staged copy of it or of the files after it stays.
            name: "an immutable managed file (chattr +i)",
            setup: "echo '# hand edit' >> /etc/prometheus/prometheus.yml && chattr +i /etc/prometheus/prometheus.yml",
            cleanup: "chattr -i /etc/prometheus/prometheus.yml",
            edit: ("modules/chrony/templates/chrony.conf.j2", "\n", "\n# injected: immutable file\n"),
            said: &["validator-1: FAILED, rolled back: changes failed (exit code 1)", "rename /etc/prometheus/prometheus.yml: it has the attributes ----i", "chattr -i"],
            allow: &[],
        },
        Injection {
            name: "a masked unit that cannot be unmasked",
            setup: "systemctl mask prometheus-node-exporter && printf '#!/bin/sh\\ncase \"$1\" in unmask) echo injected >&2; exit 1;; esac\\nexec /usr/bin/systemctl \"$@\"\\n' > /usr/local/sbin/systemctl && chmod 0755 /usr/local/sbin/systemctl",
            cleanup: "rm -f /usr/local/sbin/systemctl && systemctl unmask prometheus-node-exporter",
            edit: ("modules/chrony/templates/chrony.conf.j2", "\n", "\n# injected: unmask fails\n"),
            said: &["validator-1: FAILED, rolled back: changes failed (exit code 1)", "systemctl unmask prometheus-node-exporter.service"],
            allow: &["/usr/local/sbin/systemctl", "/usr/local/sbin/"],
        },
    ]
}

pub fn injected_failures() -> Result<()> {
    let repo = crate::common::repo();
    let o = st_in(&repo, &["apply", "--yes", V1, "validator-2"]);
    expect_code(&o, 0, "converging validator-1 and -2")?;
    let m = managed(&repo, V1)?;
    let mut failures = Vec::new();
    for inj in injections() {
        let t = std::time::Instant::now();
        match one_injection(&m, &inj) {
            Ok(()) => println!("    ok   {} ({:.1}s)", inj.name, t.elapsed().as_secs_f64()),
            Err(e) => {
                println!("    FAIL {}: {e:#}", inj.name);
                failures.push(format!("{}: {e:#}", inj.name));
            }
        }
        let _ = ssh(V1, "root", inj.cleanup);
        let _ = st_in(&repo, &["apply", "--yes", V1, "validator-2"]);
    }
    if !failures.is_empty() {
        bail!(
            "{} injections failed:\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}

fn one_injection(m: &Managed, inj: &Injection) -> Result<()> {
    let r = TempRepo::new()?;
    let (file, from, to) = inj.edit;
    r.edit(file, from, to)?;
    let sweep2 = sweep("validator-2", m)?;
    let rec2 = ssh_ok(
        "validator-2",
        "root",
        "sha256sum /var/lib/strata/state.json",
    )?;
    ssh_ok(V1, "root", inj.setup).context("injecting")?;
    let before = sweep(V1, m)?;
    let state = |n: &str| {
        ssh_ok(
            n,
            "root",
            "sha256sum /etc/chrony/chrony.conf; stat -c '%a %U %G' /etc/logrotate.d/monad; systemctl is-enabled prometheus-node-exporter chrony monad-validator; systemctl is-active prometheus-node-exporter chrony monad-validator; cat /etc/ufw/user.rules /etc/ufw/user6.rules | grep '^### tuple'; ufw status | head -1",
        )
    };
    let live_before = state(V1)?;
    let o = st_in(r.path(), &["apply", "--yes", V1, "validator-2"]);
    expect_code(&o, 1, "apply with an injected failure")?;
    let t = out(&o);
    for said in inj.said {
        ensure!(t.contains(said), "summary lacks {said:?}:\n{t}");
    }
    ensure!(
        t.contains("validator-2: untouched"),
        "validator-2 was not left untouched:\n{t}"
    );
    let live_after = state(V1)?;
    ensure!(
        live_before == live_after,
        "validator-1 is not back on its previous files, services and firewall:\nbefore:\n{live_before}\nafter:\n{live_after}"
    );
    let after = sweep(V1, m)?;
    let c = changed(&before, &after, inj.allow);
    ensure!(c.is_empty(), "changed outside the managed paths: {c:#?}");
    let tmp = temp_files(V1)?;
    ensure!(tmp.is_empty(), "temp files left: {tmp:?}");
    let c = changed(&sweep2, &sweep("validator-2", m)?, &[]);
    ensure!(c.is_empty(), "validator-2 changed: {c:#?}");
    ensure!(
        ssh_ok(
            "validator-2",
            "root",
            "sha256sum /var/lib/strata/state.json"
        )? == rec2,
        "validator-2's record changed"
    );
    Ok(())
}

/// A unit named by its alias (chronyd for chrony): converged, it is no change; stopped by
/// hand, it is started through the alias; disabled, it is enabled through its unit (systemctl
/// refuses to enable an alias name).
pub fn alias() -> Result<()> {
    let r = TempRepo::new()?;
    r.edit(
        "modules/chrony/module.yaml",
        "{name: chrony, enabled: true, state: started}",
        "{name: chronyd, enabled: true, state: started}",
    )?;
    r.edit(
        "modules/chrony/module.yaml",
        "notify: [restart chrony]",
        "notify: [restart chronyd]",
    )?;
    let o = st_in(r.path(), &["apply", "--yes", V1]);
    expect_code(&o, 0, "apply with the alias")?;
    let o = st_in(r.path(), &["plan", "--detailed-exitcode", V1]);
    expect_code(&o, 0, "an enabled alias is converged")?;
    ssh_ok(V1, "root", "systemctl stop chrony")?;
    let o = st_in(r.path(), &["plan", "--detailed-exitcode", V1]);
    expect_code(&o, 2, "plan of a stopped alias")?;
    let want = ["  ~ service:chronyd [drift]  state: inactive -> active; chronyd.service is an alias of chrony.service"];
    let missing = missing_lines(&out(&o), &want);
    ensure!(missing.is_empty(), "plan lacks {missing:?}:\n{}", out(&o));
    let o = st_in(r.path(), &["apply", "--yes", V1]);
    expect_code(&o, 0, "apply through the alias")?;
    let o = st_in(r.path(), &["plan", "--detailed-exitcode", V1]);
    expect_code(&o, 0, "plan after apply")?;
    ssh_ok(V1, "root", "systemctl is-active chrony")?;
    Ok(())
}
