//! The drift fuzzer: random combinations of hand edits on converged lab nodes. Each round
//! checks that the plan lists exactly the edited resources (or refuses the node as the edit
//! requires), that apply repairs them, that the next plan exits 0, that nothing outside the
//! managed paths changed (the sweep of edge_states.rs) and that no strata temp file is left.
//!
//! `STRATA_FUZZ_SEED` reproduces a run (the seed is printed first), `STRATA_FUZZ_ROUNDS` sets
//! the rounds (default 3, for CI); `scripts/fuzz-drift.sh N` runs many more.

use crate::common::*;
use crate::edge_states::{changed, managed, sweep, temp_files, ACCOUNTS};
use crate::plan_apply_cases::{changes, expect_code, node, out, plan_json, st_in};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeSet;

/// splitmix64: tiny, deterministic, good enough to pick edits.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One kind of hand edit.
pub struct Edit {
    pub name: &'static str,
    pub sh: &'static str,
    /// (action, change id) the plan must list for it.
    pub expect: &'static [(&'static str, &'static str)],
    /// Set for an edit strata refuses: what the node's error names; `fix` repairs it by
    /// hand, after which the plan lists `expect`.
    pub refusal: Option<&'static str>,
    pub fix: &'static str,
    /// More tokens no other edit of the same node and round may share (besides `expect`).
    pub excl: &'static [&'static str],
    /// Paths outside the managed ones the edit (and its repair) may change.
    pub allow: &'static [&'static str],
}

const fn e(
    name: &'static str,
    sh: &'static str,
    expect: &'static [(&'static str, &'static str)],
) -> Edit {
    Edit {
        name,
        sh,
        expect,
        refusal: None,
        fix: "",
        excl: &[],
        allow: &[],
    }
}

const LOGROTATE: &str = "file:/etc/logrotate.d/monad";
const NE_DEFAULT: &str = "file:/etc/default/prometheus-node-exporter";
const PROMTAIL_CONF: &str = "file:/etc/promtail/config.yml";
const RULES_FILE: &str = "file:/etc/prometheus/rules/strata-alerts.yml";
const UFW_ACTIVE: &str = "ufw-active";

pub fn catalogue() -> Vec<Edit> {
    vec![
        e("content", "echo '# hand edit' >> /etc/chrony/chrony.conf", &[("change", "file:/etc/chrony/chrony.conf")]),
        e("secret file content", "echo '# hand edit' >> /etc/monad/node.toml", &[("change", "file:/etc/monad/node.toml")]),
        e("mode", "chmod 0600 /etc/logrotate.d/monad", &[("change", LOGROTATE)]),
        e("owner", "chown nobody /etc/prometheus/prometheus.yml", &[("change", "file:/etc/prometheus/prometheus.yml")]),
        e("deleted file", "rm /etc/default/prometheus-node-exporter", &[("add", NE_DEFAULT)]),
        e("deleted drop-in", "rm /etc/systemd/system/monad-validator.service.d/override.conf", &[("add", "file:/etc/systemd/system/monad-validator.service.d/override.conf")]),
        // With the reload an operator (or any other edit's systemctl call) makes, the unit is
        // not-found: its service is planned too (seed 1796245689124080462 found the case
        // where another edit's daemon-reload made it so).
        e("deleted unit file", "rm /etc/systemd/system/monad-validator.service && systemctl daemon-reload", &[("add", "file:/etc/systemd/system/monad-validator.service"), ("change", "service:monad-validator")]),
        e("symlink to /etc/passwd", "rm -f /etc/logrotate.d/monad && ln -s /etc/passwd /etc/logrotate.d/monad", &[("change", LOGROTATE)]),
        e("symlink to a directory", "rm -f /etc/promtail/config.yml && ln -s /etc/ssh /etc/promtail/config.yml", &[("change", PROMTAIL_CONF)]),
        e("dangling symlink", "rm -f /etc/prometheus/rules/strata-alerts.yml && ln -s /nonexistent/x /etc/prometheus/rules/strata-alerts.yml", &[("change", RULES_FILE)]),
        e("empty directory", "rm -f /etc/promtail/config.yml && mkdir /etc/promtail/config.yml", &[("change", PROMTAIL_CONF)]),
        e("fifo", "rm -f /etc/logrotate.d/monad && mkfifo /etc/logrotate.d/monad", &[("change", LOGROTATE)]),
        e("socket", "rm -f /etc/default/prometheus-node-exporter && python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"/etc/default/prometheus-node-exporter\")'", &[("change", NE_DEFAULT)]),
        Edit {
            refusal: Some("file:/etc/logrotate.d/monad: a non-empty directory is there"),
            fix: "rm -rf /etc/logrotate.d/monad",
            ..e("non-empty directory (refused)", "rm -f /etc/logrotate.d/monad && mkdir /etc/logrotate.d/monad && echo keep > /etc/logrotate.d/monad/data", &[("add", LOGROTATE)])
        },
        Edit {
            refusal: Some("file:/etc/promtail/config.yml: a character device is there"),
            fix: "rm -f /etc/promtail/config.yml",
            ..e("device node (refused)", "rm -f /etc/promtail/config.yml && mknod /etc/promtail/config.yml c 1 3", &[("add", PROMTAIL_CONF)])
        },
        Edit {
            refusal: Some("directory:/etc/prometheus/rules: a regular file is there"),
            fix: "rm -f /etc/prometheus/rules",
            ..e("file at a directory's path (refused)", "rm -rf /etc/prometheus/rules && echo x > /etc/prometheus/rules", &[("add", "directory:/etc/prometheus/rules"), ("add", RULES_FILE)])
        },
        Edit {
            refusal: Some("directory:/var/log/monad: a symlink to /srv/monad-logs (a directory) is there"),
            fix: "rm -f /var/log/monad && mv /srv/monad-logs /var/log/monad",
            excl: &["directory:/var/log/monad"],
            ..e("symlink at a directory's path (refused)", "mv /var/log/monad /srv/monad-logs && ln -s /srv/monad-logs /var/log/monad", &[])
        },
        e("directory mode", "chmod 0777 /etc/monad", &[("change", "directory:/etc/monad")]),
        e("directory owner", "chown nobody /var/log/monad", &[("change", "directory:/var/log/monad")]),
        e("stopped service", "systemctl stop prometheus-node-exporter", &[("change", "service:prometheus-node-exporter")]),
        e("disabled service", "systemctl disable chrony 2>/dev/null", &[("change", "service:chrony")]),
        e("masked service", "systemctl mask prometheus-alertmanager 2>/dev/null", &[("change", "service:prometheus-alertmanager")]),
        e("runtime-masked, stopped service", "systemctl stop prometheus && systemctl mask --runtime prometheus 2>/dev/null", &[("change", "service:prometheus")]),
        e("failed service", "systemctl kill -s KILL chrony && sleep 1 && systemctl is-failed chrony >/dev/null", &[("change", "service:chrony")]),
        Edit {
            allow: ACCOUNTS,
            ..e("user shell", "usermod -s /bin/bash monad", &[("change", "user:monad")])
        },
        Edit {
            allow: ACCOUNTS,
            ..e("user home and shell", "usermod -s /bin/sh -d /home/pt promtail", &[("change", "user:promtail")])
        },
        Edit {
            allow: ACCOUNTS,
            ..e("user groups", "gpasswd -d promtail adm >/dev/null && usermod -aG sudo promtail", &[("change", "user:promtail")])
        },
        Edit {
            allow: ACCOUNTS,
            ..e("user deleted", "userdel promtail", &[("add", "user:promtail"), ("change", "directory:/var/lib/promtail")])
        },
        Edit {
            excl: &[NE_DEFAULT],
            allow: &["/etc/ld.so.cache"],
            ..e("package removed", "dpkg -r prometheus-node-exporter >/dev/null 2>&1", &[("add", "package:prometheus-node-exporter"), ("change", "service:prometheus-node-exporter")])
        },
        Edit {
            allow: &["/etc/ld.so.cache"],
            ..e("package half-installed", "sed -i '/^Package: logrotate$/,/^$/s/^Status: install ok installed$/Status: install ok half-configured/' /var/lib/dpkg/status", &[("add", "package:logrotate")])
        },
        e("extra ufw rule", "ufw allow 3306/tcp >/dev/null", &[("remove", "ufw:allow 3306/tcp from any")]),
        e("missing ufw rule", "ufw delete allow proto tcp from 10.77.0.0/16 to any port 9100 >/dev/null", &[("add", "ufw:allow 9100/tcp from 10.77.0.0/16")]),
        e("ufw rule inserted by number", "ufw insert 1 deny 3307/tcp >/dev/null", &[("remove", "ufw:deny 3307/tcp from any")]),
        e("ufw comment changed", "ufw allow proto tcp from 10.77.0.0/16 to any port 9090 comment 'by hand' >/dev/null", &[("change", "ufw:allow 9090/tcp from 10.77.0.0/16")]),
        e("ufw IPv6 rule", "ufw allow from 2001:db8::/32 to any port 5000 proto tcp >/dev/null", &[("remove", "ufw:allow 5000/tcp from 2001:db8::/32")]),
        e("ufw route rule", "ufw route allow in on host0 out on host0 to 10.9.9.9 port 80 proto tcp >/dev/null", &[("remove", "ufw:route allow in on host0 out on host0 proto tcp from any to 10.9.9.9 port 80")]),
        e("ufw outgoing rule", "ufw allow out 25/tcp >/dev/null", &[("remove", "ufw:allow out proto tcp from any to any port 25")]),
        e("ufw app rule", "ufw allow OpenSSH >/dev/null", &[("remove", "ufw:allow in from any to any app OpenSSH")]),
        Edit {
            excl: &[UFW_ACTIVE],
            ..e("ufw IPv6 twin deleted", "n=$(ufw status numbered | grep '22/tcp (v6)' | sed 's/^\\[ *\\([0-9]*\\)\\].*/\\1/') && ufw --force delete $n >/dev/null", &[("change", "ufw:allow 22/tcp from any")])
        },
        e("ufw default changed", "ufw default allow incoming >/dev/null", &[("change", "firewall:ufw")]),
        Edit {
            excl: &[UFW_ACTIVE],
            ..e("ufw disabled", "ufw disable >/dev/null", &[("change", "firewall:ufw")])
        },
    ]
}

fn tokens(e: &Edit) -> Vec<&'static str> {
    e.expect
        .iter()
        .map(|(_, id)| *id)
        .chain(e.excl.iter().copied())
        .chain(std::iter::once(e.name))
        .collect()
}

const NODES: [&str; 3] = ["validator-1", "validator-2", "validator-3"];

pub fn drift_fuzzer() -> Result<()> {
    let seed: u64 = match std::env::var("STRATA_FUZZ_SEED") {
        Ok(s) => s.parse().context("STRATA_FUZZ_SEED")?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let rounds: usize = std::env::var("STRATA_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let cat = catalogue();
    println!(
        "    fuzz: seed {seed} (STRATA_FUZZ_SEED={seed} reproduces), {rounds} rounds, {} kinds of edit",
        cat.len()
    );
    let mut rng = Rng(seed);
    let repo = repo();
    let o = st_in(&repo, &["apply", "--yes"]);
    expect_code(&o, 0, "converging the lab")?;
    let m = managed(&repo, "validator-1")?;
    let mut edits_done = 0;
    let started = std::time::Instant::now();
    for round in 1..=rounds {
        let t = std::time::Instant::now();
        // Per node: 1 to 5 edits that touch different resources.
        let mut picked: Vec<Vec<usize>> = Vec::new();
        for _ in NODES {
            let want = 1 + rng.below(5);
            let mut mine: Vec<usize> = Vec::new();
            let mut used: BTreeSet<&str> = BTreeSet::new();
            for _ in 0..want * 4 {
                if mine.len() == want {
                    break;
                }
                let i = rng.below(cat.len());
                if tokens(&cat[i]).iter().any(|t| used.contains(t)) {
                    continue;
                }
                used.extend(tokens(&cat[i]));
                mine.push(i);
            }
            picked.push(mine);
        }
        let names: Vec<String> = NODES
            .iter()
            .zip(&picked)
            .map(|(n, p)| {
                format!(
                    "{n}: {}",
                    p.iter()
                        .map(|i| cat[*i].name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        println!("    round {round}: {}", names.join("; "));
        round_once(&repo, &m, &cat, &picked)
            .with_context(|| format!("round {round} of seed {seed} ({})", names.join("; ")))?;
        edits_done += picked.iter().map(Vec::len).sum::<usize>();
        println!("    round {round} ok ({:.1}s)", t.elapsed().as_secs_f64());
    }
    println!(
        "    fuzz: {rounds} rounds, {edits_done} edits of {} kinds, seed {seed}, {:.0}s",
        cat.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn expected(cat: &[Edit], picked: &[usize], fixed: bool) -> BTreeSet<(String, String)> {
    picked
        .iter()
        .filter(|i| fixed || cat[**i].refusal.is_none())
        .flat_map(|i| cat[*i].expect.iter())
        .map(|(a, id)| (a.to_string(), id.to_string()))
        .collect()
}

fn check_plan(cat: &[Edit], picked: &[Vec<usize>], fixed: bool) -> Result<()> {
    let (code, v) = plan_json(&repo(), &[])?;
    let refused = !fixed && picked.iter().flatten().any(|i| cat[*i].refusal.is_some());
    let want_code = if refused { 1 } else { 2 };
    ensure!(
        code == Some(want_code),
        "plan exited {code:?}, not {want_code}: {v:#}"
    );
    for (n, p) in NODES.iter().zip(picked) {
        let refusals: Vec<&str> = p.iter().filter_map(|i| cat[*i].refusal).collect();
        if !fixed && !refusals.is_empty() {
            let err = node(&v, n)["error"].as_str().unwrap_or("").to_string();
            for r in refusals {
                ensure!(err.contains(r), "{n}: the error lacks {r:?}: {err}");
            }
            continue;
        }
        let got = changes(&v, n);
        let want = expected(cat, p, fixed);
        ensure!(
            got == want,
            "{n}: the plan lists\n  {got:?}\nnot exactly the edited\n  {want:?}\n(error: {})",
            node(&v, n)["error"]
        );
    }
    Ok(())
}

fn round_once(
    repo: &std::path::Path,
    m: &crate::edge_states::Managed,
    cat: &[Edit],
    picked: &[Vec<usize>],
) -> Result<()> {
    let before: Vec<_> = NODES.iter().map(|n| sweep(n, m)).collect::<Result<_>>()?;
    for (n, p) in NODES.iter().zip(picked) {
        for i in p {
            ssh_ok(n, "root", cat[*i].sh).with_context(|| format!("{n}: {}", cat[*i].name))?;
        }
    }
    check_plan(cat, picked, false)?;
    if picked.iter().flatten().any(|i| cat[*i].refusal.is_some()) {
        let o = st_in(repo, &["apply", "--yes"]);
        expect_code(&o, 1, "apply with a refused node")?;
        ensure!(
            String::from_utf8_lossy(&o.stderr).contains("nothing was applied"),
            "apply started although a node was refused:\n{}",
            text(&o)
        );
        for (n, p) in NODES.iter().zip(picked) {
            for i in p.iter().filter(|i| cat[**i].refusal.is_some()) {
                ssh_ok(n, "root", cat[*i].fix).with_context(|| format!("{n}: fixing"))?;
            }
        }
        check_plan(cat, picked, true)?;
    }
    let o = st_in(repo, &["apply", "--yes"]);
    expect_code(&o, 0, "apply")?;
    let o = st_in(repo, &["plan", "--detailed-exitcode"]);
    if o.status.code() != Some(0) {
        bail!("the plan after apply is not empty:\n{}", out(&o));
    }
    for ((n, p), b) in NODES.iter().zip(picked).zip(&before) {
        let allow: Vec<&str> = p
            .iter()
            .flat_map(|i| cat[*i].allow.iter().copied())
            .collect();
        let c = changed(b, &sweep(n, m)?, &allow);
        ensure!(
            c.is_empty(),
            "{n}: changed outside the managed paths: {c:#?}"
        );
        let tmp = temp_files(n)?;
        ensure!(tmp.is_empty(), "{n}: temp files left: {tmp:?}");
    }
    Ok(())
}
