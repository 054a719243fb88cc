//! `strata import ansible`, run as the real binary on a realistic Ansible inventory
//! (tests/fixtures/ansible-fleet: the same fleet as INI and as YAML, group_vars/all.yml,
//! group_vars/<group>.yml, host_vars/<host>.yml and a host_vars/<host>/ directory, one
//! vaulted value, one Jinja value), then `strata check` and `strata vars` on the result.
//! Offline: nothing connects anywhere (the addresses are text).
//!
//! The expected vars are written below from Ansible's documented variable precedence, and
//! checked against tests/fixtures/ansible-fleet/expected/<host>.json, which Ansible itself
//! produced: `ansible-inventory -i hosts.ini --host <host> > expected/<host>.json` with
//! ansible-core 2.19.14 (pip install ansible-core), run in that directory; `-i hosts.yml`
//! gives byte-identical output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ansible-fleet")
}

fn strata(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.current_dir(cwd).args(args).env_remove("TELEGRAM_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `strata vars` lines (`key = value  # origin`) as key -> value text.
fn vars(repo: &Path, node: &str) -> BTreeMap<String, String> {
    let o = strata(
        repo,
        &["vars", node],
        &[("TELEGRAM_TOKEN", "123:not-a-real-token")],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let kv = l.split("  #").next().unwrap().trim();
            let (k, v) = kv.split_once(" = ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Ansible's JSON for a host, flattened the way `strata vars` lists leaves (dotted keys,
/// values as JSON), without the connection vars strata maps to ssh settings.
fn ansible_expected(host: &str) -> BTreeMap<String, String> {
    let p = fixture().join("expected").join(format!("{host}.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    fn walk(v: &serde_json::Value, path: &str, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(c, &p, out);
                }
            }
            other => {
                out.insert(path.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&v, "", &mut out);
    out.retain(|k, _| !k.starts_with("ansible_"));
    out
}

/// What Ansible's precedence gives each host, written by hand from the documented order
/// (https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_variables.html, "Understanding
/// variable precedence": inventory file group vars < group_vars/all < group_vars/<group> <
/// inventory file host vars < host_vars/<host>; among groups, a child group beats its parent,
/// groups of the same depth go by name, the later winning):
///
/// - bastion is only in `ungrouped`: everything from group_vars/all.yml.
/// - log_level: all `warn` < prod `info` < validators (child of prod) `debug`; validator-2's
///   host_vars say `trace`.
/// - max_peers: all 16 < prod 32 < validators 64; validator-3's host_vars directory sets 100
///   in main.yml and 128 in zz-tuning.yml (files read in order, the later wins); validator-4
///   has `max_peers=48` on its inventory line, which beats every group_vars file.
/// - alert_channel: `[prod:vars]` says ops-inline, but group_vars/all.yml (ops-all) and
///   group_vars/prod.yml (ops-prod) are both read after the inventory file: ops-prod for
///   prod's hosts.
/// - ntp_pool and region: `[eu:vars]`/`[us:vars]` lose to group_vars/all.yml for the same
///   reason: pool.ntp.org and unknown everywhere.
/// - status_url: only group_vars/validators.yml, kept as its literal Jinja text.
/// - validator (a map): group_vars/all.yml's, except on validator-2 (below).
fn expected(host: &str) -> BTreeMap<String, String> {
    let mut e: BTreeMap<String, String> = [
        ("alert_channel", "\"ops-prod\""),
        ("chain_id", "\"monad-testnet-2\""),
        ("log_level", "\"debug\""),
        ("max_peers", "64"),
        ("ntp_pool", "\"pool.ntp.org\""),
        ("region", "\"unknown\""),
        (
            "status_url",
            "\"http://{{ inventory_hostname }}:8080/status\"",
        ),
        ("validator.memory_max", "\"infinity\""),
        ("validator.p2p_port", "8000"),
        ("validator.version", "\"0.9.3\""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut set = |k: &str, v: &str| {
        e.insert(k.to_string(), v.to_string());
    };
    match host {
        "bastion" => {
            set("alert_channel", "\"ops-all\"");
            set("log_level", "\"warn\"");
            set("max_peers", "16");
            e.remove("status_url");
        }
        "validator-2" => {
            set("log_level", "\"trace\"");
            set("validator.memory_max", "\"112G\"");
        }
        "validator-3" => set("max_peers", "128"),
        "validator-4" => set("max_peers", "48"),
        _ => {}
    }
    e
}

fn import(inventory: &str) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let o = strata(
        &fixture(),
        &[
            "import",
            "ansible",
            inventory,
            "--out",
            out.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    (out, text(&o))
}

#[test]
fn ini_and_yaml_inventories_import_to_what_ansible_gives() {
    for inv in ["hosts.ini", "hosts.yml"] {
        let (repo, report) = import(inv);
        let repo = repo.path();
        // What could not be mapped, each at the file and line it is on.
        for want in [
            "group_vars/all.yml:13: `telegram_token` is vaulted (!vault): not decrypted; \
             written as {{ env(\"TELEGRAM_TOKEN\") }}",
            "group_vars/validators.yml:3: `status_url` is a Jinja expression",
            "host_vars/validator-2.yml:2: `validator` on `validator-2`: Ansible gives \
             {\"memory_max\":\"112G\"} (it replaces a map var as a whole)",
            "`ansible_python_interpreter`: an Ansible connection/behaviour var strata has no \
             setting for",
            "`ntp_pool` of group `eu` is overridden for every host of the group",
        ] {
            assert!(report.contains(want), "{inv}: no `{want}` in:\n{report}");
        }
        let line = if inv == "hosts.ini" { 32 } else { 5 };
        assert!(
            report.contains(&format!("{inv}:{line}: `ansible_python_interpreter`")),
            "{report}"
        );

        // check: the vaulted value is a secret now; without it, a clear error names it.
        let o = strata(repo, &["check"], &[]);
        assert!(!o.status.success());
        assert!(
            text(&o).contains("TELEGRAM_TOKEN is not set"),
            "{}",
            text(&o)
        );
        let o = strata(repo, &["check"], &[("TELEGRAM_TOKEN", "123:x")]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("ok: 5 nodes"), "{}", text(&o));
        let o = strata(repo, &["check", "--placeholder-secrets"], &[]);
        assert!(o.status.success(), "{}", text(&o));

        for host in [
            "bastion",
            "validator-1",
            "validator-2",
            "validator-3",
            "validator-4",
        ] {
            let mut got = vars(repo, host);
            assert_eq!(got.remove("telegram_token").as_deref(), Some("<secret>"));
            let mut ansible = ansible_expected(host);
            // Vaulted: Ansible shows the ciphertext, strata reads the secret from the env.
            ansible.retain(|k, _| !k.starts_with("telegram_token"));
            let want = expected(host);
            if host == "validator-2" {
                // The one reported difference: Ansible replaces the `validator` map, strata
                // keeps the base's other keys of it.
                let mut a = ansible.clone();
                assert_eq!(
                    a.remove("validator.memory_max").as_deref(),
                    Some("\"112G\"")
                );
                assert!(!a.contains_key("validator.version"), "{a:?}");
                let mut w = want.clone();
                w.retain(|k, _| !k.starts_with("validator."));
                a.retain(|k, _| !k.starts_with("validator."));
                assert_eq!(w, a, "hand-written expectation disagrees with Ansible");
            } else {
                assert_eq!(want, ansible, "{host}: hand-written expectation vs Ansible");
            }
            if host == "bastion" {
                // Set only for `validators` in Ansible; strata's base (its schema) holds every
                // key, so bastion has it too: reported, and the one extra key.
                assert_eq!(
                    got.remove("status_url").as_deref(),
                    Some("\"http://{{ inventory_hostname }}:8080/status\"")
                );
                assert!(
                    report.contains("and bastion (where Ansible leaves it undefined) gets it too"),
                    "{report}"
                );
            }
            assert_eq!(got, want, "{inv}: strata vars {host}");
        }

        // SSH settings and addresses from the connection vars.
        let hosts: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo.join("inventory/hosts.yaml")).unwrap(),
        )
        .unwrap();
        let h = |n: &str, k: &str| hosts["hosts"][n][k].clone();
        assert_eq!(
            hosts["defaults"]["ssh"]["identity_file"],
            "~/.ssh/fleet_ed25519"
        );
        assert_eq!(hosts["defaults"]["ssh"]["become"], "sudo");
        assert_eq!(h("validator-4", "address"), "10.20.4.2");
        assert_eq!(h("validator-4", "ssh")["port"], 2222);
        assert_eq!(h("validator-2", "ssh")["user"], "ops");
        assert_eq!(h("bastion", "ssh")["user"], "jump");
        assert_eq!(h("bastion", "address"), "10.20.0.9");
        // validator-[1:3] expanded; groups listed parent before child, as Ansible combines them.
        let groups = h("validator-3", "groups");
        let gs: Vec<&str> = groups
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(gs, vec!["prod", "us", "validators"]);
    }
}

#[test]
fn existing_files_are_kept_without_force() {
    let (repo, _) = import("hosts.ini");
    let node = repo.path().join("nodes/validator-2/vars.yaml");
    std::fs::write(&node, "log_level: \"mine\"\n").unwrap();
    let args = [
        "import",
        "ansible",
        "hosts.ini",
        "--out",
        repo.path().to_str().unwrap(),
    ];
    let o = strata(&fixture(), &args, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("exist already (--force replaces them)"));
    assert_eq!(
        std::fs::read_to_string(&node).unwrap(),
        "log_level: \"mine\"\n"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = strata(&fixture(), &forced, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&node).unwrap().contains("trace"));
}

#[test]
fn dynamic_inventories_are_reported_not_run() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let script = d.path().join("ec2.py");
    // If it ran, it would leave this file behind.
    let marker = d.path().join("ran");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}\necho '{{}}'\n",
            marker.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plugin = d.path().join("aws_ec2.yml");
    std::fs::write(
        &plugin,
        "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
    )
    .unwrap();
    for f in ["ec2.py", "aws_ec2.yml"] {
        let o = strata(d.path(), &["import", "ansible", f, "--out", "repo"], &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains("no hosts found"), "{t}");
        assert!(t.contains(&format!("{f}:1: ")), "{t}");
        assert!(t.contains("dynamic inventory"), "{t}");
    }
    assert!(!marker.exists(), "the script was run");
    assert!(!d.path().join("repo").exists());
}

#[test]
fn what_strata_refuses_is_said_at_import() {
    // Ansible takes any text as ansible_host; strata wants an IP address or a DNS name. And a
    // var that is a list in group_vars/all and a string for one host is a change of kind.
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("host_vars")).unwrap();
    std::fs::create_dir_all(d.path().join("group_vars")).unwrap();
    std::fs::write(
        d.path().join("hosts.ini"),
        "[validators]\nv1 ansible_host=bad_address!\nv2\n",
    )
    .unwrap();
    std::fs::write(d.path().join("group_vars/all.yml"), "peers: [a, b]\n").unwrap();
    std::fs::write(d.path().join("host_vars/v2.yml"), "peers: c\n").unwrap();
    // A vault-encrypted vars file (the usual group_vars/all/vault.yml, here a host's).
    std::fs::create_dir_all(d.path().join("host_vars/v1")).unwrap();
    std::fs::write(
        d.path().join("host_vars/v1/vault.yml"),
        "$ANSIBLE_VAULT;1.1;AES256\n6231336539666\n",
    )
    .unwrap();
    let o = strata(
        d.path(),
        &["import", "ansible", "hosts.ini", "--out", "repo"],
        &[],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("hosts.ini:2: host `v1`: address `bad_address!`"),
        "{t}"
    );
    assert!(
        t.contains("host_vars/v2.yml:1: `peers`: a string here is a list elsewhere"),
        "{t}"
    );
    assert!(
        t.contains("the imported repo does not load as it is"),
        "{t}"
    );
    assert!(t.contains("inventory/hosts.yaml:"), "{t}");
}
