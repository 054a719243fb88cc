//! `strata node add`, run as the real binary on a temp copy of this crate's example repo
//! (inventory/, base-config/, nodes/, modules/). Nothing here connects anywhere: the example's
//! addresses are documentation addresses and 10.77.4.2 is a lab address, used as text only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use strata::engine::node_add::{scaffold_entries, uncomment};

const SECRETS: [(&str, &str); 5] = [
    (
        "STRATA_TELEGRAM_BOT_TOKEN",
        "123456:DUMMY-telegram-token-for-node-add",
    ),
    (
        "STRATA_DISCORD_WEBHOOK_URL",
        "https://discord.invalid/api/webhooks/1/DUMMY-node-add",
    ),
    ("STRATA_SMTP_PASSWORD", "DUMMY-smtp-password-node-add"),
    (
        "STRATA_PAGERDUTY_ROUTING_KEY",
        "DUMMY-pagerduty-routing-key-node-add",
    ),
    (
        "STRATA_HEARTBEAT_URL",
        "https://heartbeat.invalid/ping/DUMMY-node-add",
    ),
];

/// The render in this process (firewall rules) reads the secrets from the environment; every
/// test calls this first, before it starts any process, so no thread reads the environment
/// while it is being set.
fn secrets() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in SECRETS {
            std::env::set_var(k, v);
        }
    });
}

struct Repo(tempfile::TempDir);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

impl Repo {
    fn example() -> Repo {
        secrets();
        let r = Repo(tempfile::tempdir().unwrap());
        let src = Path::new(env!("CARGO_MANIFEST_DIR"));
        for d in ["inventory", "base-config", "nodes", "modules"] {
            copy_dir(&src.join(d), &r.path().join(d));
        }
        r
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }
    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path().join(rel), text).unwrap();
    }
    fn strata(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--repo")
            .arg(self.path())
            .args(args)
            .envs(SECRETS)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "panic: {err}");
        out
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "strata {args:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    /// Exit 1 and stderr containing every needle on one `error:` line; returns stderr.
    fn fails(&self, args: &[&str], needles: &[&str]) -> String {
        let out = self.strata(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "strata {args:?}\n{err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("error: ") && needles.iter().all(|n| l.contains(n))),
            "no error line with {needles:?} in:\n{err}"
        );
        assert!(err.contains("nothing was written"), "{err}");
        err
    }
    /// Every file of the repo with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        files(self.path())
            .into_iter()
            .map(|p| {
                let b = std::fs::read(self.path().join(&p)).unwrap();
                (p, b)
            })
            .collect()
    }
}

/// Every file under `root`, relative to it.
fn files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

const ADD: &[&str] = &[
    "node",
    "add",
    "validator-4",
    "--address",
    "10.77.4.2",
    "--region",
    "eu-central",
    "--provider",
    "ovh",
];

/// `lines A-B` from node add's first output line.
fn reported_lines(stdout: &str) -> (usize, usize) {
    let first = stdout.lines().next().unwrap();
    let range = first.split("lines ").nth(1).unwrap().trim_end_matches(':');
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn adds_the_host_keeping_every_other_byte_and_check_passes() {
    let r = Repo::example();
    let before = r.read("inventory/hosts.yaml");
    let others = r.snapshot();
    let out = r.ok(ADD);
    let after = r.read("inventory/hosts.yaml");

    // The inserted block, read from the file at the lines the output names.
    let (a, b) = reported_lines(&out);
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(
        lines[a - 1..b],
        [
            "  validator-4:",
            "    address: 10.77.4.2",
            "    groups: [validators]",
            "    region: eu-central",
            "    provider: ovh",
        ]
    );
    // The example separates hosts with a blank line: so does the new entry. Without the blank
    // line and the entry, the file is byte for byte what it was.
    assert_eq!(lines[a - 2], "");
    let mut kept: Vec<&str> = lines[..a - 2].to_vec();
    kept.extend(&lines[b..]);
    assert_eq!(kept.join("\n") + "\n", before);
    assert!(out.contains("wrote nodes/validator-4/vars.yaml"), "{out}");
    assert!(out.contains(" check "), "{out}");
    assert!(out.contains(" bootstrap validator-4 "), "{out}");

    // Nothing else in the repo changed; one file is new.
    let now = r.snapshot();
    for (p, bytes) in &others {
        if p != Path::new("inventory/hosts.yaml") {
            assert_eq!(now.get(p), Some(bytes), "{} changed", p.display());
        }
    }
    let new: Vec<&PathBuf> = now.keys().filter(|p| !others.contains_key(*p)).collect();
    assert_eq!(new, [Path::new("nodes/validator-4/vars.yaml")]);

    let check = r.ok(&["check"]);
    assert!(check.starts_with("ok: 4 nodes"), "{check}");
    // Until something is uncommented, validator-4 gets the base values.
    let vars = r.ok(&["vars", "validator-4"]);
    assert!(vars.contains("validator.p2p_port = 8000"), "{vars}");
    assert!(
        !vars.contains("nodes/validator-4/vars.yaml"),
        "no value comes from the scaffold yet:\n{vars}"
    );
}

#[test]
fn uncommenting_each_scaffolded_override_still_checks_and_takes_effect() {
    let r = Repo::example();
    r.ok(ADD);
    let file = "nodes/validator-4/vars.yaml";
    let text = r.read(file);
    let all = scaffold_entries(&text);
    let keys: Vec<&str> = all.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "validator.p2p_port",
            "validator.memory_max",
            "validator.cpu_affinity",
            "validator.extra_env",
            "chrony.sources",
            "prometheus.peers_scrape_timeout"
        ],
        "{text}"
    );
    let mut every = Vec::new();
    for (key, idx) in &all {
        every.extend(idx.iter().copied());
        r.write(file, &uncomment(&text, idx));
        let check = r.ok(&["check"]);
        assert!(check.starts_with("ok: 4 nodes"), "{key}: {check}");
        // The key's value now comes from the node file.
        let vars = r.ok(&["vars", "validator-4"]);
        assert!(
            vars.lines().any(|l| l.starts_with(key.as_str())
                && l.contains("# node (nodes/validator-4/vars.yaml:")),
            "{key} is not taken from {file}:\n{}\n{vars}",
            uncomment(&text, idx)
        );
    }
    r.write(file, &uncomment(&text, &every));
    r.ok(&["check"]);
    let vars = r.ok(&["vars", "validator-4"]);
    assert!(vars.contains("europe.pool.ntp.org"), "{vars}");
}

/// Render validator-1..3 into a fresh directory; return it.
fn render_out(r: &Repo) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    r.ok(&[
        "render",
        "--out",
        d.path().to_str().unwrap(),
        "validator-1",
        "validator-2",
        "validator-3",
    ]);
    d
}

/// The runs of added lines between `a` and `b`; panics on a removed line (but for the one
/// line Grafana's node dashboard lists every node on: its `"query"`, which is replaced).
fn added_hunks(a: &str, b: &str, what: &Path) -> Vec<Vec<String>> {
    let diff = similar::TextDiff::from_lines(a, b);
    let mut hunks: Vec<Vec<String>> = Vec::new();
    let mut in_hunk = false;
    for c in diff.iter_all_changes() {
        let replaceable = what.ends_with("var/lib/grafana/dashboards/strata/strata-node.json")
            && c.to_string().trim_start().starts_with("\"query\": ");
        match c.tag() {
            similar::ChangeTag::Delete if replaceable => in_hunk = false,
            similar::ChangeTag::Delete => panic!("{}: line removed: {c}", what.display()),
            similar::ChangeTag::Insert => {
                if !in_hunk {
                    hunks.push(Vec::new());
                }
                hunks
                    .last_mut()
                    .unwrap()
                    .push(c.to_string().trim_end().to_string());
                in_hunk = true;
            }
            similar::ChangeTag::Equal => in_hunk = false,
        }
    }
    hunks
}

fn firewall_rules(repo: &Path) -> BTreeMap<String, Vec<strata::model::FwRule>> {
    let (_, r) = strata::engine::load::load_and_render(repo, None)
        .unwrap_or_else(|d| panic!("render failed: {d}"));
    r.nodes
        .iter()
        .map(|d| {
            let rules = d
                .resources
                .iter()
                .find_map(|res| match res {
                    strata::model::Resource::Firewall(f) => Some(f.rules.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            (d.node.name.clone(), rules)
        })
        .collect()
}

#[test]
fn the_other_nodes_change_only_where_their_configs_list_the_fleet() {
    let r = Repo::example();
    let before = render_out(&r);
    let fw_before = firewall_rules(r.path());
    r.ok(ADD);
    let after = render_out(&r);
    let fw_after = firewall_rules(r.path());

    // Same files on validator-1..3; which differ, and how.
    let names = files(before.path());
    assert_eq!(
        names,
        files(after.path()),
        "the set of rendered files changed"
    );
    let mut changed = Vec::new();
    for p in &names {
        let a = std::fs::read_to_string(before.path().join(p)).unwrap();
        let b = std::fs::read_to_string(after.path().join(p)).unwrap();
        if a == b {
            continue;
        }
        changed.push(p.clone());
        let hunks = added_hunks(&a, &b, p);
        assert!(!hunks.is_empty(), "{}", p.display());
        // Grafana's dashboards name nodes and regions, not addresses.
        let grafana = p.starts_with("validator-1/var/lib/grafana");
        for h in &hunks {
            assert!(
                h.iter().any(|l| if grafana {
                    l.contains("eu-central") || l.contains("validator-4")
                } else {
                    l.contains("10.77.4.2")
                }),
                "{}: a difference without the new node: {h:?}",
                p.display()
            );
        }
        if grafana {
            // The fleet dashboard: a row and panels for the new region; the node
            // dashboard: validator-4 among the nodes.
            if p.ends_with("strata-node.json") {
                let h = hunks.concat().join("\n");
                assert!(
                    h.contains("validator-1,validator-2,validator-3,validator-4")
                        && h.contains("\"value\": \"validator-4\""),
                    "{h}"
                );
            } else {
                assert!(hunks
                    .concat()
                    .iter()
                    .any(|l| l.contains("Region eu-central")));
            }
        } else if p.ends_with("etc/default/prometheus-alertmanager") {
            // One more Alertmanager cluster peer.
            assert_eq!(
                hunks,
                [vec!["--cluster.peer=10.77.4.2:9094 \\".to_string()]],
                "{}",
                p.display()
            );
        } else if p.ends_with("etc/grafana/provisioning/datasources/strata.yaml") {
            // validator-4's Prometheus as one more datasource.
            assert_eq!(hunks.len(), 1, "{hunks:?}");
            assert!(hunks[0].iter().any(|l| l.contains("http://10.77.4.2:9090")));
        } else if p.ends_with("etc/monad/node.toml") {
            // One more peer in bootstrap_peers: validator-4's P2P address.
            assert_eq!(
                hunks,
                [vec![
                    "  \"10.77.4.2:8000\",  # validator-4 (eu-central)".to_string()
                ]],
                "{}",
                p.display()
            );
        } else {
            // prometheus.yml: validator-4 watched and a watcher: one more target in each
            // of the four jobs, labelled as validator-4, and one more Alertmanager.
            assert_eq!(hunks.len(), 5, "{}: {hunks:?}", p.display());
            assert_eq!(
                hunks[0],
                ["            - \"10.77.4.2:9093\"  # validator-4"],
                "{}",
                p.display()
            );
            for (h, port) in hunks[1..].iter().zip(["9100", "8889", "9090", "9093"]) {
                let h = h.join("\n");
                assert!(
                    h.starts_with(&format!("      - targets: [\"10.77.4.2:{port}\"]")),
                    "{h}"
                );
                for label in [
                    "node: \"validator-4\"",
                    "region: \"eu-central\"",
                    "provider: \"ovh\"",
                ] {
                    assert!(h.contains(label), "{h}");
                }
            }
        }
    }
    let mut want: Vec<PathBuf> = ["validator-1", "validator-2", "validator-3"]
        .iter()
        .flat_map(|n| {
            [
                PathBuf::from(format!("{n}/etc/monad/node.toml")),
                PathBuf::from(format!("{n}/etc/prometheus/prometheus.yml")),
                PathBuf::from(format!("{n}/etc/default/prometheus-alertmanager")),
            ]
        })
        .collect();
    // Grafana, on the monitoring host.
    for f in [
        "etc/grafana/provisioning/datasources/strata.yaml",
        "var/lib/grafana/dashboards/strata/strata-fleet.json",
        "var/lib/grafana/dashboards/strata/strata-node.json",
    ] {
        want.push(PathBuf::from(format!("validator-1/{f}")));
    }
    want.sort();
    assert_eq!(changed, want);

    // Firewalls: rules only added, each admitting the new address.
    for n in ["validator-1", "validator-2", "validator-3"] {
        let (b, a) = (&fw_before[n], &fw_after[n]);
        assert!(
            b.iter().all(|rule| a.contains(rule)),
            "{n}: a rule went away"
        );
        let new: Vec<_> = a.iter().filter(|rule| !b.contains(rule)).collect();
        assert!(!new.is_empty(), "{n}: no firewall rule for validator-4");
        for rule in &new {
            assert_eq!(rule.from, "10.77.4.2", "{n}: {rule:?}");
            assert_eq!(rule.action, "allow", "{n}: {rule:?}");
        }
        // validator-4 is a watcher: it scrapes node_exporter, the validator, Prometheus and
        // Alertmanager, sends alerts, and gossips with the cluster (tcp and udp).
        // validator-1 also runs Loki: validator-4's Alloy may push to it.
        let ports: Vec<&str> = new.iter().map(|r| r.port.as_str()).collect();
        let want: &[&str] = if n == "validator-1" {
            &["3100", "8889", "9090", "9093", "9094", "9094", "9100"]
        } else {
            &["8889", "9090", "9093", "9094", "9094", "9100"]
        };
        let mut ports = ports;
        ports.sort();
        assert_eq!(ports, want, "{n}");
    }
}

#[test]
fn port_and_user_become_one_ssh_map() {
    let r = Repo::example();
    let out = r.ok(&[
        "node",
        "add",
        "validator-4",
        "--address",
        "127.0.0.4",
        "--region",
        "lab",
        "--port",
        "2202",
        "--user",
        "deploy",
        "--group",
        "validators,monitoring",
    ]);
    let (a, b) = reported_lines(&out);
    let text = r.read("inventory/hosts.yaml");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[a - 1..b],
        [
            "  validator-4:",
            "    address: 127.0.0.4",
            "    groups: [validators, monitoring]",
            "    region: lab",
            "    ssh: {port: 2202, user: deploy, become: sudo}",
        ]
    );
    r.ok(&["check"]);
}

#[test]
fn a_name_or_address_in_use_is_refused_and_nothing_is_written() {
    let r = Repo::example();
    let snap = r.snapshot();
    let mut args = ADD.to_vec();
    args[2] = "validator-2";
    r.fails(
        &args,
        &[
            "inventory/hosts.yaml:60:",
            "host `validator-2` is already in the inventory",
        ],
    );
    let mut args = ADD.to_vec();
    args[4] = "203.0.113.30";
    r.fails(
        &args,
        &[
            "inventory/hosts.yaml:67:",
            "address 203.0.113.30 is already used by host `validator-3`",
        ],
    );
    assert_eq!(r.snapshot(), snap);
}

#[test]
fn an_unknown_group_is_refused_listing_the_known_ones() {
    let r = Repo::example();
    let snap = r.snapshot();
    let mut args = ADD.to_vec();
    args.extend(["--group", "validators", "--group", "sentries"]);
    r.fails(
        &args,
        &[
            "inventory/hosts.yaml",
            "group `sentries` is not defined",
            "known groups: monitoring, validators",
        ],
    );
    assert_eq!(r.snapshot(), snap);
}

#[test]
fn without_a_validators_group_a_group_must_be_named() {
    let r = Repo::example();
    r.write(
        "inventory/mon.yaml",
        "groups:\n  monitoring:\n    modules: [ufw, loki]\nhosts:\n  validator-1: {address: 127.0.0.1, groups: [monitoring]}\n  validator-2: {address: 127.0.0.2, groups: [monitoring]}\n  validator-3: {address: 127.0.0.3, groups: [monitoring]}\n",
    );
    let snap = r.snapshot();
    let mut args = vec!["--inventory", "inventory/mon.yaml"];
    args.extend(ADD);
    r.fails(
        &args,
        &[
            "inventory/mon.yaml",
            "no `validators` group",
            "known groups: monitoring",
        ],
    );
    assert_eq!(r.snapshot(), snap);
    args.extend(["--group", "monitoring"]);
    let out = r.ok(&args);
    // The next steps name the inventory it was added to.
    assert!(out.contains("strata --repo "), "{out}");
    assert!(
        out.contains("--inventory inventory/mon.yaml check"),
        "{out}"
    );
    // One-line (flow) host entries: the new one is a block entry at the same indentation.
    assert!(
        r.read("inventory/mon.yaml").ends_with(
            "  validator-3: {address: 127.0.0.3, groups: [monitoring]}\n  validator-4:\n    address: 10.77.4.2\n    groups: [monitoring]\n    region: eu-central\n    provider: ovh\n"
        )
    );
    r.ok(&["--inventory", "inventory/mon.yaml", "check"]);
}

#[test]
fn a_flow_style_hosts_mapping_is_refused_with_file_and_line() {
    let r = Repo::example();
    r.write(
        "inventory/flow.yaml",
        "groups:\n  validators:\n    modules: [chrony]\n# all hosts on one line\nhosts: {validator-1: {address: 127.0.0.1, groups: [validators]}, validator-2: {address: 127.0.0.2, groups: [validators]}, validator-3: {address: 127.0.0.3, groups: [validators]}}\n",
    );
    let snap = r.snapshot();
    let mut args = vec!["--inventory", "inventory/flow.yaml"];
    args.extend(ADD);
    r.fails(&args, &["inventory/flow.yaml:5:", "flow mapping"]);
    assert_eq!(r.snapshot(), snap);
}

#[test]
fn an_existing_node_directory_bad_arguments_or_a_broken_repo_write_nothing() {
    let r = Repo::example();
    std::fs::create_dir_all(r.path().join("nodes/validator-4")).unwrap();
    r.write("nodes/validator-4/vars.yaml", "validator: {nice: -5}\n");
    let snap = r.snapshot();
    let err = r.fails(
        ADD,
        &["nodes/validator-4: already exists", "never overwrites"],
    );
    assert!(!err.contains("is not in the inventory"), "{err}");
    assert_eq!(r.snapshot(), snap);
    std::fs::remove_dir_all(r.path().join("nodes/validator-4")).unwrap();

    let snap = r.snapshot();
    r.fails(
        &[
            "node",
            "add",
            "Validator_4",
            "--address",
            "10.77.4",
            "--region",
            "",
            "--user",
            "Root",
        ],
        &["NAME `Validator_4`"],
    );
    let err = r.fails(
        &[
            "node",
            "add",
            "v-4",
            "--address",
            "10.77.4",
            "--region",
            " ",
        ],
        &["--address `10.77.4`"],
    );
    assert!(err.contains("error: --region may not be empty"), "{err}");
    assert_eq!(r.snapshot(), snap);

    // A repo that does not load: its problems are listed, nothing is written.
    std::fs::create_dir_all(r.path().join("nodes/validator-9")).unwrap();
    r.write("nodes/validator-9/vars.yaml", "validator: {nice: 1}\n");
    let snap = r.snapshot();
    r.fails(
        ADD,
        &["nodes/validator-9/vars.yaml", "not in the inventory"],
    );
    assert_eq!(r.snapshot(), snap);
}

/// The host as the normal loader reads it from the repo.
fn loaded_ssh(r: &Repo, name: &str) -> strata::model::SshSettings {
    let repo = strata::config::Repo::load(r.path(), None).unwrap_or_else(|d| panic!("{d:?}"));
    repo.host(name)
        .unwrap_or_else(|| panic!("{name} not in the inventory"))
        .ssh
        .clone()
}

#[test]
fn host_and_proxy_jump_are_written_into_the_ssh_map() {
    let r = Repo::example();
    // The validators are reached through a bastion; the new host is an ssh_config alias
    // behind another one.
    let inv = r.read("inventory/hosts.yaml");
    r.write(
        "inventory/hosts.yaml",
        &inv.replacen(
            "  validators:\n",
            "  validators:\n    ssh: {proxy_jump: bastion-eu}\n",
            1,
        ),
    );
    let mut args = ADD.to_vec();
    args.extend([
        "--host",
        "fra-validator-4",
        "--proxy-jump",
        "ops@bastion-fra:2222",
        "--user",
        "deploy",
    ]);
    let out = r.ok(&args);
    let (a, b) = reported_lines(&out);
    let text = r.read("inventory/hosts.yaml");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[b - 1],
        "    ssh: {host: fra-validator-4, user: deploy, become: sudo, proxy_jump: \"ops@bastion-fra:2222\"}",
        "{:?}",
        &lines[a - 1..b]
    );
    r.ok(&["check"]);
    let ssh = loaded_ssh(&r, "validator-4");
    assert_eq!(ssh.host.as_deref(), Some("fra-validator-4"));
    assert_eq!(ssh.proxy_jump.as_deref(), Some("ops@bastion-fra:2222"));
    // The others keep their group's bastion and their address as the destination.
    let other = loaded_ssh(&r, "validator-1");
    assert_eq!(other.proxy_jump.as_deref(), Some("bastion-eu"));
    assert_eq!(other.host, None);

    // `none`: direct, although the group says otherwise; without --proxy-jump: the group's.
    let mut args = ADD.to_vec();
    args[2] = "validator-5";
    args[4] = "10.77.5.2";
    args.extend(["--proxy-jump", "none"]);
    r.ok(&args);
    assert!(r
        .read("inventory/hosts.yaml")
        .contains("    provider: ovh\n    ssh: {proxy_jump: none}\n"));
    assert_eq!(loaded_ssh(&r, "validator-5").proxy_jump, None);
    let mut args = ADD.to_vec();
    args[2] = "validator-6";
    args[4] = "10.77.6.2";
    r.ok(&args);
    assert_eq!(
        loaded_ssh(&r, "validator-6").proxy_jump.as_deref(),
        Some("bastion-eu")
    );
    r.ok(&["check"]);
}

#[test]
fn a_bad_host_or_jump_list_is_refused_and_nothing_is_written() {
    let r = Repo::example();
    let snap = r.snapshot();
    let mut args = ADD.to_vec();
    // `--opt=value`: clap reads a value starting with `-` as an option otherwise.
    args.extend(["--host=-oProxyCommand=sh", "--proxy-jump", "a b,c"]);
    let err = r.fails(&args, &["--host `-oProxyCommand=sh` is not an ssh host"]);
    assert!(
        err.contains("error: --proxy-jump `a b,c` is not a jump host list"),
        "{err}"
    );
    let mut args = ADD.to_vec();
    args.push("--proxy-jump=-J");
    r.fails(&args, &["--proxy-jump `-J`", "host `-J`"]);
    assert_eq!(r.snapshot(), snap);
}
