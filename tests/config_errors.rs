//! Hostile and broken input: every case must give a clear error naming file, line and key,
//! exit 1, and never panic. Runs the real `strata` binary on small repos built per case.

use std::path::Path;
use std::process::{Command, Output};

const HOSTS: &str = "\
defaults:
  ssh:
    user: root
groups:
  validators:
    modules: [app, fw]
    serial: 1
hosts:
  v-1:
    address: 127.0.0.1
    groups: [validators]
    region: r1
  v-2:
    address: 127.0.0.2
    groups: [validators]
    region: r2
";

const BASE: &str = "\
vars:
  chain:
    id: test-1
  app:
    port: 8000
    peers: [a]
    admin_cidrs: [\"10.0.0.0/8\", \"192.168.0.0/16\"]
locked: [chain.id]
";

const APP: &str = "\
description: a test app
files:
  - dest: /etc/app/app.conf
    template: app.conf.j2
    mode: \"0640\"
    notify: [restart app]
services:
  - {name: app}
";

const APP_TMPL: &str = "\
port={{ app.port }}
chain={{ chain.id }}
peers={% for n in groups.validators if n != node.name %}{{ nodes[n].node.address }}:{{ nodes[n].app.port }} {% endfor %}
";

const FW: &str = "\
firewall:
  defaults: {incoming: deny, outgoing: allow}
  rules:
    - {port: \"22\", proto: tcp, comment: ssh}
    - {port: \"{{ app.port }}\", proto: tcp, from: \"{{ app.admin_cidrs }}\"}
";

struct Repo(tempfile::TempDir);

impl Repo {
    fn new() -> Repo {
        let r = Repo(tempfile::tempdir().unwrap());
        r.write("inventory/hosts.yaml", HOSTS);
        r.write("base-config/vars.yaml", BASE);
        r.write("modules/app/module.yaml", APP);
        r.write("modules/app/templates/app.conf.j2", APP_TMPL);
        r.write("modules/fw/module.yaml", FW);
        r
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn strata(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--repo")
            .arg(self.path())
            .args(args)
            .env_remove("STRATA_TEST_TOKEN")
            .output()
            .unwrap()
    }
    /// `check` must fail with exit 1 and an error line containing every needle.
    fn check_fails_with(&self, needles: &[&str]) -> String {
        let out = self.strata(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "stderr: {err}");
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("error: ") && needles.iter().all(|n| l.contains(n))),
            "no error line with {needles:?} in:\n{err}"
        );
        err
    }
}

#[test]
fn a_good_repo_checks_and_renders_identically_twice() {
    let r = Repo::new();
    let out = r.strata(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = r.strata(&["render"]);
    let b = r.strata(&["render"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout, "render is not deterministic");
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(text.contains("file:/etc/app/app.conf"), "{text}");
    assert!(text.contains("0640 root:root blake3:"), "{text}");

    let out_dir = tempfile::tempdir().unwrap();
    let o = r.strata(&["render", "--out", out_dir.path().to_str().unwrap()]);
    assert!(o.status.success());
    let conf = std::fs::read_to_string(out_dir.path().join("v-1/etc/app/app.conf")).unwrap();
    // The fleet-dependent line names exactly the other node.
    assert_eq!(conf, "port=8000\nchain=test-1\npeers=127.0.0.2:8000 \n");
}

#[test]
fn firewall_rules_expand_lists_and_ssh_must_stay_open() {
    let r = Repo::new();
    let out = r.strata(&["render", "v-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("incoming deny outgoing allow, 3 rules"),
        "{text}"
    );
    r.write("modules/fw/module.yaml", "firewall:\n  defaults: {incoming: deny, outgoing: allow}\n  rules:\n    - {port: \"8000\"}\n");
    r.check_fails_with(&["modules/fw/module.yaml:2", "no rule allows SSH port 22"]);
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let r = Repo::new();
    r.write("nodes/v-1/vars.yaml", "app:\n  port: [8000\n");
    r.check_fails_with(&["nodes/v-1/vars.yaml:", "YAML syntax error"]);
}

#[test]
fn unknown_top_level_key_in_inventory() {
    let r = Repo::new();
    r.write(
        "inventory/hosts.yaml",
        &format!("{HOSTS}hostz:\n  v-3: {{}}\n"),
    );
    r.check_fails_with(&["inventory/hosts.yaml:17", "unknown key `hostz`"]);
}

#[test]
fn unknown_key_in_base_and_module() {
    let r = Repo::new();
    r.write("base-config/vars.yaml", &format!("{BASE}varz: 1\n"));
    r.check_fails_with(&["base-config/vars.yaml:9", "varz", "unknown top-level key"]);
    let r = Repo::new();
    r.write(
        "modules/app/module.yaml",
        &APP.replace("    mode:", "    mdoe:"),
    );
    r.check_fails_with(&["modules/app/module.yaml:5", "unknown key `mdoe`"]);
}

#[test]
fn node_directory_not_in_inventory() {
    let r = Repo::new();
    r.write("nodes/v-9/vars.yaml", "app:\n  port: 1\n");
    r.check_fails_with(&["nodes/v-9/vars.yaml", "not in the inventory"]);
    // An inventory with no hosts names none of them (before, the check was skipped).
    let r = Repo::new();
    r.write(
        "inventory/hosts.yaml",
        &HOSTS
            .replace(HOSTS.split("hosts:\n").nth(1).unwrap(), "")
            .replace("hosts:\n", "hosts: {}\n"),
    );
    r.write("nodes/v-1/vars.yaml", "app:\n  port: 1\n");
    r.check_fails_with(&["nodes/v-1/vars.yaml", "not in the inventory"]);
}

/// A node's overrides that are there but cannot be read, or under another name, are an
/// error: before, the node was silently rendered from the base (its overrides lost).
#[test]
fn a_node_override_that_cannot_be_read_is_an_error_not_the_base() {
    // A dangling symlink, and one to itself.
    for target in ["/nonexistent/vars.yaml", "vars.yaml"] {
        let r = Repo::new();
        std::fs::create_dir_all(r.path().join("nodes/v-1")).unwrap();
        std::os::unix::fs::symlink(target, r.path().join("nodes/v-1/vars.yaml")).unwrap();
        r.check_fails_with(&["nodes/v-1/vars.yaml", "cannot read"]);
    }
    // vars.yml instead of vars.yaml.
    let r = Repo::new();
    r.write("nodes/v-1/vars.yml", "app:\n  port: 1\n");
    r.check_fails_with(&["nodes/v-1/vars.yml", "read from vars.yaml only"]);
    // A file where a node's directory belongs (nodes/v-2 written as a file).
    let r = Repo::new();
    r.write("nodes/v-2", "app:\n  port: 1\n");
    r.check_fails_with(&["nodes/v-2", "not a directory"]);
    // A node directory without overrides, and a hidden file in nodes/, are fine.
    let r = Repo::new();
    std::fs::create_dir_all(r.path().join("nodes/v-1")).unwrap();
    r.write("nodes/.gitkeep", "");
    let out = r.strata(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn override_of_a_locked_key() {
    let r = Repo::new();
    r.write(
        "nodes/v-2/vars.yaml",
        "# v-2 wants its own chain\nchain:\n  id: evil-fork\n",
    );
    r.check_fails_with(&["nodes/v-2/vars.yaml:3", "chain.id", "locked"]);
}

#[test]
fn override_of_a_key_the_base_does_not_have() {
    let r = Repo::new();
    r.write("nodes/v-1/vars.yaml", "app:\n  prot: 9000\n");
    r.check_fails_with(&["nodes/v-1/vars.yaml:2", "app.prot", "no key"]);
}

#[test]
fn template_syntax_error_names_the_template_line() {
    let r = Repo::new();
    r.write(
        "modules/app/templates/app.conf.j2",
        "port={{ app.port }}\nchain={{ chain.id \n",
    );
    r.check_fails_with(&["modules/app/templates/app.conf.j2:2", "syntax error"]);
}

#[test]
fn undefined_variable_is_an_error_not_an_empty_string() {
    let r = Repo::new();
    r.write(
        "modules/app/templates/app.conf.j2",
        "a=1\nport={{ app.prot }}\n",
    );
    r.check_fails_with(&[
        "modules/app/templates/app.conf.j2:2",
        "undefined",
        "app.prot",
    ]);
}

#[test]
fn unset_env_is_an_error() {
    let r = Repo::new();
    r.write(
        "modules/app/templates/app.conf.j2",
        "token={{ env(\"STRATA_TEST_TOKEN\") }}\n",
    );
    r.check_fails_with(&["app.conf.j2:1", "STRATA_TEST_TOKEN is not set"]);
    let r = Repo::new();
    r.write(
        "base-config/vars.yaml",
        &BASE.replace(
            "locked:",
            "    token: '{{ env(\"STRATA_TEST_TOKEN\") }}'\nlocked:",
        ),
    );
    r.check_fails_with(&[
        "base-config/vars.yaml:8",
        "app.token",
        "STRATA_TEST_TOKEN is not set",
    ]);
}

#[test]
fn dest_must_be_absolute_without_dotdot() {
    for bad in [
        "etc/app.conf",
        "/etc/../root/.ssh/authorized_keys",
        "/etc/app/./x",
    ] {
        let r = Repo::new();
        r.write(
            "modules/app/module.yaml",
            &APP.replace("/etc/app/app.conf", bad),
        );
        r.check_fails_with(&["modules/app/module.yaml:3", "files[].dest"]);
    }
}

#[test]
fn two_modules_writing_the_same_dest() {
    let r = Repo::new();
    r.write(
        "modules/fw/module.yaml",
        &format!("{FW}files:\n  - dest: /etc/app/app.conf\n    content: x\n"),
    );
    r.check_fails_with(&[
        "file:/etc/app/app.conf",
        "also declared at modules/app/module.yaml:3",
    ]);
}

#[test]
fn bad_mode_string() {
    let r = Repo::new();
    r.write(
        "modules/app/module.yaml",
        &APP.replace("\"0640\"", "\"rw-r-----\""),
    );
    r.check_fails_with(&["modules/app/module.yaml:3", "files[].mode", "octal"]);
}

#[test]
fn group_naming_a_module_that_does_not_exist() {
    let r = Repo::new();
    r.write(
        "inventory/hosts.yaml",
        &HOSTS.replace("[app, fw]", "[app, fw, grafana]"),
    );
    r.check_fails_with(&[
        "inventory/hosts.yaml:5",
        "groups.validators.modules",
        "grafana",
    ]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let r = Repo::new();
    r.write("nodes/v-1/vars.yaml", "app:\n  prot: 9000\n");
    r.write("nodes/v-2/vars.yaml", "chain:\n  id: x\n");
    let err = r.check_fails_with(&["app.prot"]);
    assert!(err.contains("chain.id"), "{err}");
    assert!(err.contains("check failed: 2 problems"), "{err}");
}

#[test]
fn vars_shows_origins_and_hides_secrets() {
    let r = Repo::new();
    r.write(
        "base-config/vars.yaml",
        &BASE.replace(
            "locked:",
            "    token: '{{ env(\"STRATA_TEST_TOKEN\") }}'\nlocked:",
        ),
    );
    r.write(
        "nodes/v-2/vars.yaml",
        "# v-2 listens elsewhere\napp:\n  port: 8100\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--repo")
        .arg(r.path())
        .args(["vars", "v-2"])
        .env("STRATA_TEST_TOKEN", "canary-9f3a")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("canary-9f3a"), "secret leaked: {text}");
    let line = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("{k} missing in {text}"))
            .to_string()
    };
    assert!(line("app.port = 8100").contains("node (nodes/v-2/vars.yaml:3)"));
    assert!(line("app.token = <secret>").contains("base (base-config/vars.yaml:8)"));
    assert!(line("chain.id = \"test-1\"").contains("[locked]"));
}

#[test]
fn unknown_node_is_an_error() {
    let r = Repo::new();
    let out = r.strata(&["vars", "v-7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node named `v-7`"));
}

#[test]
fn validate_local_needs_validate_and_known_keys() {
    let r = Repo::new();
    r.write(
        "modules/app/module.yaml",
        &APP.replace(
            "    notify: [restart app]\n",
            "    notify: [restart app]\n    validate_local: {replace: [{from: a, to: b}]}\n",
        ),
    );
    r.check_fails_with(&[
        "modules/app/module.yaml:3",
        "files[].validate_local",
        "no `validate`",
    ]);
    r.write(
        "modules/app/module.yaml",
        &APP.replace(
            "    notify: [restart app]\n",
            "    notify: [restart app]\n    validate: \"true %s\"\n    validate_local: {replace: [{from: a, too: b}]}\n",
        ),
    );
    r.check_fails_with(&["modules/app/module.yaml", "too"]);
}

#[test]
fn notify_of_a_handler_the_node_does_not_have() {
    let r = Repo::new();
    // `flush cache` is declared by a module of another group, which v-1 and v-2 are not in.
    r.write(
        "inventory/hosts.yaml",
        &HOSTS.replace("hosts:\n", "  cache:\n    modules: [cache]\nhosts:\n"),
    );
    r.write(
        "modules/cache/module.yaml",
        "handlers:\n  flush cache: \"true\"\n",
    );
    r.write(
        "modules/app/module.yaml",
        &APP.replace("[restart app]", "[restart app, flush cache]"),
    );
    r.check_fails_with(&[
        "modules/app/module.yaml:3",
        "handler `flush cache` is not declared by any module of v-1",
    ]);
}

#[test]
fn a_free_form_map_accepts_every_key_from_groups_and_nodes() {
    let r = Repo::new();
    r.write(
        "base-config/vars.yaml",
        &BASE.replace("locked:", "  labels: {}\n  extra_env: {}\nlocked:"),
    );
    r.write(
        "inventory/hosts.yaml",
        &HOSTS.replace(
            "    serial: 1\n",
            "    serial: 1\n    vars:\n      labels: {team: core, rack: {row: 1}}\n",
        ),
    );
    r.write(
        "nodes/v-1/vars.yaml",
        "labels:\n  tier: gold\n  operator: acme\n  az: us-east-1a\n  rack: {slot: 4}\n\
         extra_env:\n  RUST_LOG: debug\n  A: '1'\n  B: '2'\n",
    );
    let out = r.strata(&["vars", "v-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (k, origin) in [
        ("labels.tier = \"gold\"", "nodes/v-1/vars.yaml:2"),
        ("labels.operator = \"acme\"", "nodes/v-1/vars.yaml:3"),
        ("labels.az = \"us-east-1a\"", "nodes/v-1/vars.yaml:4"),
        ("labels.team = \"core\"", "inventory/hosts.yaml"),
        ("labels.rack.row = 1", "inventory/hosts.yaml"),
        ("labels.rack.slot = 4", "nodes/v-1/vars.yaml:5"),
        ("extra_env.B = \"2\"", "nodes/v-1/vars.yaml:9"),
    ] {
        let line = text.lines().find(|l| l.starts_with(k));
        assert!(
            line.is_some_and(|l| l.contains(origin)),
            "{k} from {origin}: {text}"
        );
    }
    let out = r.strata(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_missing_env_secret_is_reported_at_once() {
    let r = Repo::new();
    r.write(
        "base-config/vars.yaml",
        &BASE.replace(
            "locked:",
            "    token: '{{ env(\"STRATA_T_BASE_A\") }}'\n    token2: '{{ env(\"STRATA_T_BASE_B\") }}'\n    token3: plain\nlocked:",
        ),
    );
    r.write(
        "nodes/v-2/vars.yaml",
        "app:\n  token3: '{{ env(\"STRATA_T_NODE_C\") }}'\n",
    );
    r.write(
        "modules/app/templates/app.conf.j2",
        "a={{ env(\"STRATA_T_TMPL_D\") }}\nb={{ app.port }}\nc={{ env(\"STRATA_T_TMPL_E\") }}\n",
    );
    r.write(
        "modules/fw/module.yaml",
        &format!("{FW}files:\n  - dest: /etc/fw.conf\n    content: \"{{{{ env('STRATA_T_MOD_F') }}}}\"\n"),
    );
    let out = r.strata(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (name, at) in [
        ("STRATA_T_BASE_A", "base-config/vars.yaml:8: app.token:"),
        ("STRATA_T_BASE_B", "base-config/vars.yaml:9: app.token2:"),
        ("STRATA_T_NODE_C", "nodes/v-2/vars.yaml:2: app.token3:"),
        ("STRATA_T_TMPL_D", "modules/app/templates/app.conf.j2:1:"),
        ("STRATA_T_TMPL_E", "modules/app/templates/app.conf.j2:3:"),
        ("STRATA_T_MOD_F", "modules/fw/module.yaml:8:"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with("error: ")
                && l.contains(at)
                && l.contains(&format!("{name} is not set"))),
            "{name} at {at} missing in:\n{err}"
        );
    }
    assert!(err.contains("check failed: 6 problems"), "{err}");
    assert!(!err.contains("strata-placeholder"), "{err}");
    // With them all set, the repo checks.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--repo").arg(r.path()).arg("check");
    for n in [
        "STRATA_T_BASE_A",
        "STRATA_T_BASE_B",
        "STRATA_T_NODE_C",
        "STRATA_T_TMPL_D",
        "STRATA_T_TMPL_E",
        "STRATA_T_MOD_F",
    ] {
        cmd.env(n, format!("value-of-{n}"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_base_var_may_not_take_a_name_templates_reserve() {
    for (name, yaml) in [
        ("node", "node:\n    name: val-use1-a\n"),
        ("nodes", "nodes: [a, b]\n"),
        ("groups", "groups: {}\n"),
        ("env", "env: prod\n"),
        ("file", "file: /x\n"),
        ("secret_file", "secret_file: x\n"),
        ("range", "range: 3\n"),
    ] {
        let r = Repo::new();
        r.write(
            "base-config/vars.yaml",
            &BASE.replace("locked:", &format!("  {yaml}locked:")),
        );
        r.check_fails_with(&[&format!("base-config/vars.yaml:8: {name}: "), "reserve"]);
        // `strata vars` refuses it too (it used to show the var, which templates never saw).
        let out = r.strata(&["vars", "v-1"]);
        assert_eq!(out.status.code(), Some(1));
    }
    // Below the top level the names are free: `app.node` is not shadowed.
    let r = Repo::new();
    r.write(
        "base-config/vars.yaml",
        &BASE.replace("locked:", "    node: x\n    env: y\nlocked:"),
    );
    let out = r.strata(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hostile inventory values: each an error at its own line, naming its dotted key.
#[test]
fn inventory_values_that_reach_a_shell_are_checked_at_load() {
    let health = |h: &str| {
        HOSTS.replace(
            "    serial: 1\n",
            &format!("    serial: 1\n    health:\n{h}"),
        )
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            HOSTS.replace("address: 127.0.0.1\n", "address: \"127.0.0.1; rm -rf /\"\n"),
            vec![
                "inventory/hosts.yaml:10:",
                "hosts.v-1.address",
                "neither an IP address nor a DNS name",
            ],
        ),
        (
            HOSTS.replace("address: 127.0.0.1\n", "address: \"$(id).example.org\"\n"),
            vec!["inventory/hosts.yaml:10:", "hosts.v-1.address"],
        ),
        (
            HOSTS.replace("address: 127.0.0.1\n", "address: 127.0.0\n"),
            vec![
                "inventory/hosts.yaml:10:",
                "hosts.v-1.address",
                "not a valid IP address",
            ],
        ),
        (
            HOSTS.replace("address: 127.0.0.1\n", "address: under_score.example.org\n"),
            vec!["inventory/hosts.yaml:10:", "hosts.v-1.address"],
        ),
        (
            HOSTS.replace("    user: root\n", "    user: \"root; id\"\n"),
            vec!["inventory/hosts.yaml:3:", "defaults.ssh.user", "login name"],
        ),
        (
            HOSTS.replace(
                "    region: r1\n",
                "    region: r1\n    ssh:\n      user: Admin\n",
            ),
            vec!["inventory/hosts.yaml:14:", "hosts.v-1.ssh.user", "`Admin`"],
        ),
        (
            HOSTS.replace("    region: r1\n", "    region: r1\n    ssh: {port: 0}\n"),
            vec![
                "inventory/hosts.yaml:13:",
                "hosts.v-1.ssh.port",
                "1 to 65535",
            ],
        ),
        (
            HOSTS.replace(
                "    region: r1\n",
                "    region: r1\n    ssh: {port: 70000}\n",
            ),
            vec!["inventory/hosts.yaml:13:", "port"],
        ),
        (
            HOSTS.replace(
                "    user: root\n",
                "    user: root\n    identity_file: \"id\\nProxyCommand x\"\n",
            ),
            vec![
                "inventory/hosts.yaml:4:",
                "defaults.ssh.identity_file",
                "newlines",
            ],
        ),
        (
            HOSTS.replace(
                "    user: root\n",
                "    user: root\n    known_hosts: \"kh\\n\"\n",
            ),
            vec![
                "inventory/hosts.yaml:4:",
                "defaults.ssh.known_hosts",
                "newlines",
            ],
        ),
        (
            HOSTS.replace("    user: root\n", "    user: root\n    become: su\n"),
            vec![
                "inventory/hosts.yaml:4:",
                "defaults.ssh.become",
                "only `sudo`",
            ],
        ),
        (
            HOSTS.replace(
                "    user: root\n",
                "    user: root\n    connect_timeout: 0\n",
            ),
            vec![
                "inventory/hosts.yaml:4:",
                "defaults.ssh.connect_timeout",
                "at least 1",
            ],
        ),
        (
            health("      units: [app, \"app; reboot\"]\n"),
            vec![
                "inventory/hosts.yaml:9:",
                "groups.validators.health.units.1",
                "systemd unit name",
            ],
        ),
        (
            health("      units: [\"--now\"]\n"),
            vec![
                "inventory/hosts.yaml:9:",
                "groups.validators.health.units.0",
            ],
        ),
        (
            health("      http: \"http://127.0.0.1:8080/$(id)\"\n"),
            vec![
                "inventory/hosts.yaml:9:",
                "groups.validators.health.http",
                "`$`",
            ],
        ),
        (
            health("      http: \"http://127.0.0.1:8080/a b\"\n"),
            vec!["groups.validators.health.http", "a space"],
        ),
        (
            health("      http: \"http://127.0.0.1:8080/`id`\"\n"),
            vec!["groups.validators.health.http", "backtick"],
        ),
        (
            health("      http: \"file:///etc/shadow\"\n"),
            vec!["groups.validators.health.http", "http:// or https://"],
        ),
        (
            health("      tcp: \"$(reboot):22\"\n"),
            vec![
                "inventory/hosts.yaml:9:",
                "groups.validators.health.tcp",
                "HOST:PORT",
            ],
        ),
        (
            HOSTS.replace("[app, fw]", "[app, fw, \"../../etc\"]"),
            vec![
                "inventory/hosts.yaml:6:",
                "groups.validators.modules.2",
                "module name",
            ],
        ),
        (
            HOSTS
                .replace("  validators:\n", "  Validators:\n")
                .replace("[validators]", "[Validators]"),
            vec!["inventory/hosts.yaml:5:", "groups.Validators", "group name"],
        ),
        (
            HOSTS.replace("  v-1:\n", "  \"v 1\":\n"),
            vec!["inventory/hosts.yaml:9:", "hosts.v 1", "host name"],
        ),
    ];
    for (hosts, needles) in cases {
        let r = Repo::new();
        r.write("inventory/hosts.yaml", &hosts);
        r.check_fails_with(&needles);
    }
    // The good forms pass.
    let r = Repo::new();
    r.write(
        "inventory/hosts.yaml",
        &health("      units: [app, getty@tty1.service]\n      http: \"https://localhost:8443/health?ready=1\"\n      tcp: \"[::1]:8000\"\n")
            .replace("address: 127.0.0.2", "address: v-2.example.org"),
    );
    let out = r.strata(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Module values that reach a root shell (owners, names, paths): each an error at its entry.
#[test]
fn module_values_that_reach_a_shell_are_checked() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "modules/app/module.yaml",
            APP.replace("  - {name: app}", "  - {name: \"app; reboot\"}"),
            vec![
                "modules/app/module.yaml:8:",
                "services[].name",
                "systemd unit name",
            ],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("  - {name: app}", "  - {name: \"-H evil\"}"),
            vec!["modules/app/module.yaml:8:", "services[].name"],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("    mode:", "    owner: \"root;id\"\n    mode:"),
            vec!["modules/app/module.yaml:3:", "files[].owner", "login name"],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("    mode:", "    group: \"$(id)\"\n    mode:"),
            vec!["modules/app/module.yaml:3:", "files[].group", "group name"],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}directories:\n  - {{path: /var/lib/app, owner: \"a b\"}}\n"),
            vec!["modules/app/module.yaml:10:", "directories[].owner"],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}directories:\n  - {{path: var/lib/app}}\n"),
            vec![
                "modules/app/module.yaml:10:",
                "directories[].path",
                "absolute",
            ],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}key_files:\n  - {{path: /etc/app/key, group: \"`id`\"}}\n"),
            vec!["modules/app/module.yaml:10:", "key_files[].group"],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}users:\n  - {{name: \"app$\"}}\n"),
            vec!["modules/app/module.yaml:10:", "users[].name"],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}users:\n  - {{name: app, home: var/lib/app}}\n"),
            vec![
                "modules/app/module.yaml:10:",
                "users[].home: `var/lib/app` is not an absolute path",
            ],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}users:\n  - {{name: app, shell: \"/bin/sh -c id\"}}\n"),
            vec!["modules/app/module.yaml:10:", "users[].shell"],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}users:\n  - {{name: app, groups: [adm, \"x,root\"]}}\n"),
            vec!["modules/app/module.yaml:10:", "users[].groups", "`x,root`"],
        ),
        (
            "modules/app/module.yaml",
            format!("{APP}packages: [\"curl;reboot\"]\n"),
            vec!["modules/app/module.yaml:9:", "packages[]", "package name"],
        ),
        (
            "modules/fw/module.yaml",
            format!("{FW}handlers:\n  \"x$(id)\": \"true\"\n"),
            vec!["modules/fw/module.yaml:7:", "handlers.", "handler name"],
        ),
        (
            "modules/fw/module.yaml",
            format!("{FW}handlers:\n  restart two words: \"true\"\n"),
            vec![
                "modules/fw/module.yaml:7:",
                "handlers.restart two words",
                "built-in",
            ],
        ),
        (
            "modules/fw/module.yaml",
            FW.replace("comment: ssh}", "comment: \"ssh\\nufw disable\"}"),
            vec![
                "modules/fw/module.yaml:4:",
                "firewall.rules[].comment",
                "newline",
            ],
        ),
        // Sources ufw writes another way: the plan would never converge.
        (
            "base-config/vars.yaml",
            BASE.replace("\"10.0.0.0/8\"", "\"10.0.0.1/8\""),
            vec![
                "modules/fw/module.yaml:5:",
                "firewall.rules[].from",
                "ufw writes it as `10.0.0.0/8`",
            ],
        ),
        (
            "base-config/vars.yaml",
            BASE.replace("\"192.168.0.0/16\"", "\"192.168.1.7/32\""),
            vec!["firewall.rules[].from", "write `192.168.1.7`"],
        ),
    ];
    for (file, text, needles) in cases {
        let r = Repo::new();
        r.write(file, &text);
        r.check_fails_with(&needles);
    }
}

/// Hostile or broken YAML anywhere in the config: a clear error at file:line, exit 1, never
/// a panic or a crash.
#[test]
fn hostile_yaml_is_a_clear_error_never_a_panic() {
    let deep_block = {
        let mut s = String::from("app:\n");
        for i in 0..3000 {
            s.push_str(&format!("{}k{i}:\n", "  ".repeat(i + 1)));
        }
        s
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "inventory/hosts.yaml",
            "hosts:\n  v-1: {address: 127.0.0.1\n".into(),
            vec!["inventory/hosts.yaml:", "YAML syntax error"],
        ),
        (
            "base-config/vars.yaml",
            "vars:\n  app: [1, 2\nlocked: []\n".into(),
            vec!["base-config/vars.yaml:", "YAML syntax error"],
        ),
        (
            "modules/app/module.yaml",
            "files:\n  - dest: /x\n   oops: 1\n".into(),
            vec!["modules/app/module.yaml:", "YAML syntax error"],
        ),
        (
            "nodes/v-1/vars.yaml",
            "app:\n\tport: 1\n".into(),
            vec!["nodes/v-1/vars.yaml:2:", "tabs"],
        ),
        (
            "nodes/v-1/vars.yaml",
            "app:\n  port: 1\n  port: 2\n".into(),
            vec!["nodes/v-1/vars.yaml:3:", "port", "duplicate key"],
        ),
        (
            "base-config/vars.yaml",
            BASE.replace("    port: 8000\n", "    port: 8000\n    port: 8001\n"),
            vec!["base-config/vars.yaml:6:", "duplicate key"],
        ),
        (
            "inventory/hosts.yaml",
            format!("{HOSTS}  v-1:\n    address: 127.0.0.9\n"),
            vec!["inventory/hosts.yaml:17:", "v-1", "duplicate key"],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("    mode:", "    dest: /etc/other\n    mode:"),
            vec!["modules/app/module.yaml:5:", "dest", "duplicate key"],
        ),
        (
            "nodes/v-1/vars.yaml",
            "app: &a\n  port: 1\nchain: *a\n".into(),
            vec![
                "nodes/v-1/vars.yaml:2:",
                "anchors and aliases are not supported",
            ],
        ),
        (
            "base-config/vars.yaml",
            "vars:\n  app:\n    <<: {port: 1}\n    peers: []\n".into(),
            vec!["base-config/vars.yaml:3:", "merge keys"],
        ),
        (
            "nodes/v-1/vars.yaml",
            "app:\n  port: !!str 1\n".into(),
            vec!["nodes/v-1/vars.yaml:2:", "tags"],
        ),
        (
            "nodes/v-1/vars.yaml",
            "app:\n  port: 1\n---\napp:\n  port: 2\n".into(),
            vec!["nodes/v-1/vars.yaml:3:", "second YAML document"],
        ),
        (
            "nodes/v-1/vars.yaml",
            format!("app:\n  port: {}x\n", "- ".repeat(100_000)),
            vec!["nodes/v-1/vars.yaml:", "YAML syntax error"],
        ),
        (
            "nodes/v-1/vars.yaml",
            format!("app:\n  {}x\n", "- ".repeat(100_000)),
            vec!["nodes/v-1/vars.yaml:2:", "nested more than 64 levels"],
        ),
        (
            "nodes/v-1/vars.yaml",
            format!("{}x\n", "? ".repeat(100_000)),
            vec!["nodes/v-1/vars.yaml:1:", "nested more than 64 levels"],
        ),
        (
            "nodes/v-1/vars.yaml",
            deep_block,
            vec!["nodes/v-1/vars.yaml:65:", "nested more than 64 levels"],
        ),
        (
            "nodes/v-1/vars.yaml",
            format!("app:\n  {}: 1\n", "k".repeat(100_000)),
            vec!["nodes/v-1/vars.yaml:2:", "YAML syntax error"],
        ),
        (
            "nodes/v-1/vars.yaml",
            "- app\n- port\n".into(),
            vec!["nodes/v-1/vars.yaml:1:", "top level must be a mapping"],
        ),
        (
            "modules/app/module.yaml",
            "files: {dest: /x}\n".into(),
            vec!["modules/app/module.yaml:1:", "files", "must be a list"],
        ),
        (
            "modules/app/module.yaml",
            "files: [1]\n".into(),
            vec!["modules/app/module.yaml:1:", "files[]"],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("/etc/app/app.conf", "\"/etc/app/a\\nb\""),
            vec![
                "modules/app/module.yaml:3:",
                "files[].dest",
                "/etc/app/a\\nb",
            ],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("/etc/app/app.conf", "\"/etc/app/a\\tb\""),
            vec![
                "modules/app/module.yaml:3:",
                "files[].dest",
                "not a usable path",
            ],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("/etc/app/app.conf", "\"{{ chain.id }}/../../root/x\""),
            vec!["modules/app/module.yaml:3:", "files[].dest", "absolute"],
        ),
        (
            "modules/app/module.yaml",
            APP.replace("/etc/app/app.conf", &format!("/etc/{}", "a".repeat(10_000))),
            vec![
                "modules/app/module.yaml:3:",
                "files[].dest",
                "not a usable path",
            ],
        ),
        (
            "modules/app/templates/app.conf.j2",
            "port={{ app.port | no_such_filter }}\n".into(),
            vec!["modules/app/templates/app.conf.j2:1:", "unknown filter"],
        ),
        (
            "modules/app/templates/app.conf.j2",
            "a\n{{ app.port // 0 }}\n".into(),
            vec![
                "modules/app/templates/app.conf.j2:2:",
                "unable to calculate",
            ],
        ),
        (
            "modules/app/templates/app.conf.j2",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}\n".into(),
            vec!["modules/app/templates/app.conf.j2:1:", "recursion limit"],
        ),
    ];
    for (file, text, needles) in cases {
        let r = Repo::new();
        r.write(file, &text);
        let err = r.check_fails_with(&needles);
        // Messages stay readable: a huge value is not echoed whole.
        assert!(
            err.lines().all(|l| l.len() < 1000),
            "{file}: huge line in:\n{}",
            &err[..err.len().min(2000)]
        );
    }
    // Invalid UTF-8.
    let r = Repo::new();
    std::fs::create_dir_all(r.path().join("nodes/v-1")).unwrap();
    std::fs::write(
        r.path().join("nodes/v-1/vars.yaml"),
        b"app:\n  port: \xff\xfe\n",
    )
    .unwrap();
    r.check_fails_with(&["nodes/v-1/vars.yaml", "cannot read", "UTF-8"]);
}

/// What is odd but valid stays valid: a byte order mark, a `---` start, a `...` end, a very
/// long value.
#[test]
fn odd_but_valid_yaml_is_accepted() {
    for text in [
        "\u{feff}app:\n  port: 9000\n".to_string(),
        "%YAML 1.2\n---\napp:\n  port: 9000\n...\n".to_string(),
        format!("app:\n  peers: [\"{}\"]\n", "x".repeat(1_000_000)),
    ] {
        let r = Repo::new();
        r.write("nodes/v-1/vars.yaml", &text);
        let out = r.strata(&["check"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A small fuzz loop: the repo's own example config (inventory, base, nodes, modules and
/// templates), mutated a few characters or lines at a time, loaded and rendered in process.
/// Every round must end in a rendered fleet or in located errors, never in a panic.
/// `STRATA_FUZZ_ROUNDS` (default 150) and `STRATA_FUZZ_SEED` reproduce or extend a run.
#[test]
fn mutated_example_configs_never_panic() {
    let rounds: usize = std::env::var("STRATA_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let seed: u64 = std::env::var("STRATA_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c0ff_ee00_0001);
    eprintln!("fuzz: {rounds} rounds, STRATA_FUZZ_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move |n: usize| -> usize {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    };

    // Copy the example config into a scratch repo.
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    fn copy(from: &Path, to: &Path, rel: &Path, files: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(from.join(rel)) else {
            return;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            if e.path().is_dir() {
                std::fs::create_dir_all(to.join(&r)).unwrap();
                copy(from, to, &r, files);
            } else if std::fs::read_to_string(e.path()).is_ok() {
                std::fs::copy(e.path(), to.join(&r)).unwrap();
                files.push(r);
            }
        }
    }
    for d in ["inventory", "base-config", "nodes", "modules"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
        copy(src, dir.path(), Path::new(d), &mut files);
    }
    files.retain(|f| {
        let s = f.to_string_lossy();
        s.ends_with(".yaml") || s.ends_with(".j2")
    });
    files.sort();
    assert!(files.len() > 10, "{files:?}");

    let load = |root: &Path| {
        strata::render::secrets::with_placeholders(|| {
            strata::config::Repo::load(root, None)
                .and_then(|repo| strata::render::render_all(&repo).map(|r| r.nodes.len()))
        })
    };
    assert!(
        load(dir.path()).is_ok(),
        "the example config renders as it is"
    );

    const TOKENS: &[&str] = &[
        ":",
        ": ",
        " ",
        "\n",
        "\t",
        "-",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!!str ",
        "<<: ",
        "'",
        "\"",
        "#",
        "|",
        ">",
        "{{",
        "}}",
        "{%",
        "%}",
        "..",
        "/",
        "\u{feff}",
        "\0",
        "\n---\n",
        "~",
        "null",
        "0",
        "-1",
        "99999999999999999999",
        "é",
        "? ",
        "\\",
        "$(id)",
        "{{ env(\"STRATA_FUZZ_UNSET\") }}",
        "{{ nope }}",
        "{% if %}",
        "node",
        "\r\n",
    ];
    let mut outcomes = [0usize; 2];
    for round in 0..rounds {
        let f = &files[next(files.len())];
        let path = dir.path().join(f);
        let orig = std::fs::read_to_string(&path).unwrap();
        let mut chars: Vec<char> = orig.chars().collect();
        for _ in 0..1 + next(3) {
            let at = next(chars.len() + 1);
            match next(6) {
                0 => {
                    let end = (at + 1 + next(5)).min(chars.len());
                    chars.drain(at.min(end)..end);
                }
                1 | 2 => {
                    let t = TOKENS[next(TOKENS.len())];
                    chars.splice(at..at, t.chars());
                }
                _ => {
                    // Line-level: duplicate, drop, or re-indent a line.
                    let text: String = chars.iter().collect();
                    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                    if lines.is_empty() {
                        continue;
                    }
                    let i = next(lines.len());
                    match next(3) {
                        0 => lines.insert(i, lines[i].clone()),
                        1 => {
                            lines.remove(i);
                        }
                        _ => lines[i] = format!("{}{}", " ".repeat(1 + next(3)), lines[i]),
                    }
                    chars = (lines.join("\n") + "\n").chars().collect();
                }
            }
        }
        let mutated: String = chars.into_iter().collect();
        std::fs::write(&path, &mutated).unwrap();
        let res = std::panic::catch_unwind(|| load(dir.path()));
        std::fs::write(&path, &orig).unwrap();
        match res {
            Err(_) => panic!(
                "round {round} (STRATA_FUZZ_SEED={seed}): panic on {} mutated to:\n{mutated}",
                f.display()
            ),
            Ok(Ok(_)) => outcomes[0] += 1,
            Ok(Err(diags)) => {
                outcomes[1] += 1;
                assert!(
                    !diags.is_empty(),
                    "round {round}: an error without a problem"
                );
                for d in &diags {
                    assert!(
                        !d.file.as_os_str().is_empty() && !d.message.is_empty(),
                        "round {round}: unlocated error {d:?} for {}",
                        f.display()
                    );
                }
            }
        }
    }
    eprintln!(
        "fuzz: {} rounds rendered, {} rounds gave located errors",
        outcomes[0], outcomes[1]
    );
    assert!(
        outcomes[1] > rounds / 4,
        "mutations hardly ever broke anything: {outcomes:?}"
    );
}

const ART: &str = "\
artifacts:
  - name: app
    version: \"1.2.3\"
    url: https://releases.example.net/app-1.2.3.tar.gz
    sha256: \"3f2a1b2c3d4e5f60718293a4b5c6d7e8f901122334455667788990abcdef0123\"
    install:
      - {from: bin/app, to: bin/app, mode: \"0755\"}
    notify: [restart app]
";

fn art_repo(art: &str) -> Repo {
    let r = Repo::new();
    r.write("modules/app/module.yaml", &format!("{APP}{art}"));
    r
}

#[test]
fn a_good_artifact_renders_with_its_pinned_checksum() {
    let r = art_repo(ART);
    let out = r.strata(&["render", "v-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("artifact:app ")
            && l.ends_with(" 1.2.3 (sha256 3f2a1b2c..) at /opt/app/1.2.3, https://releases.example.net/app-1.2.3.tar.gz")),
        "{text}"
    );
}

#[test]
fn hostile_artifacts_are_refused_at_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        // A checksum is required, and must be one.
        (
            "    sha256: \"3f2a1b2c3d4e5f60718293a4b5c6d7e8f901122334455667788990abcdef0123\"\n",
            "    sha256: \"deadbeef\"\n",
            "artifacts[].sha256",
        ),
        (
            "    url: https://releases.example.net/app-1.2.3.tar.gz\n",
            "    url: \"ftp://x/app.tar.gz\"\n",
            "artifacts[].url",
        ),
        (
            "    url: https://releases.example.net/app-1.2.3.tar.gz\n",
            "    url: \"https://x/a b.tar.gz\"\n",
            "artifacts[].url",
        ),
        // Members never leave the version directory, nor come from outside the archive.
        (
            "to: bin/app,",
            "to: ../../etc/cron.d/x,",
            "artifacts[].install[0].to",
        ),
        (
            "{from: bin/app,",
            "{from: /etc/shadow,",
            "artifacts[].install[0].from",
        ),
        (
            "name: app\n    version",
            "name: ../etc\n    version",
            "artifacts[].name",
        ),
        (
            "version: \"1.2.3\"",
            "version: \"current\"",
            "artifacts[].version",
        ),
        (
            "version: \"1.2.3\"",
            "version: \"1.2 3\"",
            "artifacts[].version",
        ),
        (
            "    notify: [restart app]\n",
            "    keep: 1\n",
            "artifacts[].keep",
        ),
        (
            "    notify: [restart app]\n",
            "    fetch: sideways\n",
            "artifacts[].fetch",
        ),
        (
            "    notify: [restart app]\n",
            "    format: zip\n",
            "artifacts[].format",
        ),
        (
            "    notify: [restart app]\n",
            "    notify: [nope]\n",
            "artifacts[].notify",
        ),
        (
            "    notify: [restart app]\n",
            "    expect_version: {http: \"http://127.0.0.1:1/s\"}\n",
            "artifacts[].expect_version",
        ),
        (
            "    notify: [restart app]\n",
            "    expect_version: {http: \"http://127.0.0.1:1/s\", field: \"a\\\"b\"}\n",
            "artifacts[].expect_version",
        ),
        (
            "    notify: [restart app]\n",
            "    colour: red\n",
            "artifacts[]",
        ),
    ];
    for (from, to, key) in cases {
        assert!(ART.contains(from), "{from}");
        let r = art_repo(&ART.replacen(from, to, 1));
        r.check_fails_with(&["modules/app/module.yaml:", key]);
    }
    // An archive needs its members named.
    let r = art_repo(&ART.replace(
        "    install:\n      - {from: bin/app, to: bin/app, mode: \"0755\"}\n",
        "",
    ));
    r.check_fails_with(&["modules/app/module.yaml:", "artifacts[].install"]);
    // A group's fetch setting is checked too.
    let r = art_repo(ART);
    r.write(
        "inventory/hosts.yaml",
        &HOSTS.replace(
            "    serial: 1\n",
            "    serial: 1\n    artifact_fetch: later\n",
        ),
    );
    r.check_fails_with(&["inventory/hosts.yaml:", "groups.validators.artifact_fetch"]);
}

/// The lab's TEST-ONLY release key (public half), as the example fleet pins it.
const LAB_KEY: &str =
    include_str!("../modules/validator/lab-releases/strata-lab-TEST-ONLY-release-key.asc");

const SIGNED: &str = "    signature: {url: \"https://releases.example.net/app-1.2.3.tar.gz.sig\", key: keys/app.asc, type: gpg}\n";

fn signed_repo(sig: &str) -> Repo {
    let r = art_repo(&format!("{ART}{sig}"));
    r.write("keys/app.asc", LAB_KEY);
    r
}

#[test]
fn a_signed_artifact_names_its_key() {
    let r = signed_repo(SIGNED);
    let out = r.strata(&["render", "v-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The long key ID: the last 16 digits of ED7232DD C294994D 508C8F21 4525F22B 98C6C30E
    // (gpg --with-colons --list-keys, where the key was made).
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("artifact:app ")
            && l.ends_with(", https://releases.example.net/app-1.2.3.tar.gz, signed by gpg key 4525F22B98C6C30E (keys/app.asc)")),
        "{text}"
    );
    // A binary key (gpg --export) reads the same.
    let armored = LAB_KEY
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty() && !l.starts_with('='))
        .collect::<String>();
    let bin = base64_decode(&armored);
    std::fs::write(r.path().join("keys/app.gpg"), bin).unwrap();
    let r2 = signed_repo(&SIGNED.replace("keys/app.asc", "keys/app.gpg"));
    std::fs::copy(
        r.path().join("keys/app.gpg"),
        r2.path().join("keys/app.gpg"),
    )
    .unwrap();
    let out = r2.strata(&["render", "v-1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("signed by gpg key 4525F22B98C6C30E (keys/app.gpg)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tiny base64 decoder for the test (the crate's own is not a dev-dependency here).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | val(c) as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn hostile_signatures_are_refused_at_their_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "key: keys/app.asc",
            "key: keys/missing.asc",
            &["artifacts[].signature.key", "no such file"],
        ),
        (
            "key: keys/app.asc",
            "key: ../../etc/passwd",
            &["artifacts[].signature.key", "leaves the repo"],
        ),
        (
            "key: keys/app.asc",
            "key: /etc/passwd",
            &["artifacts[].signature.key", "absolute"],
        ),
        (
            "key: keys/app.asc",
            "key: modules/app/module.yaml",
            &["artifacts[].signature.key", "not an OpenPGP public key"],
        ),
        (
            "type: gpg",
            "type: pgp",
            &[
                "artifacts[].signature.type",
                "`pgp` is not a signature type",
            ],
        ),
        (
            "type: gpg",
            "type: minisign",
            &["artifacts[].signature.type", "minisign is not supported"],
        ),
        (", type: gpg", "", &["artifacts[]", "type"]),
        (
            "url: \"https://releases.example.net/app-1.2.3.tar.gz.sig\"",
            "url: \"ftp://x/a.sig\"",
            &["artifacts[].signature.url"],
        ),
        (
            "type: gpg}",
            "type: gpg, keyring: x}",
            &["artifacts[]", "keyring"],
        ),
    ];
    for (from, to, needles) in cases {
        assert!(SIGNED.contains(from), "{from}");
        let r = signed_repo(&SIGNED.replacen(from, to, 1));
        let mut n = vec!["modules/app/module.yaml:"];
        n.extend_from_slice(needles);
        r.check_fails_with(&n);
    }
    // Key files that are not a public key: damaged, or the secret half.
    for (key, why) in [
        (
            LAB_KEY.replace("-----END PGP PUBLIC KEY BLOCK-----", ""),
            "no `-----END PGP PUBLIC KEY BLOCK-----`",
        ),
        (
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/lab/keys/strata-lab-TEST-ONLY-release-key.secret.asc"
            ))
            .unwrap(),
            "holds a SECRET key",
        ),
        (
            LAB_KEY.replacen("mDME", "mDMF", 1),
            "fails its armor checksum",
        ),
    ] {
        let r = signed_repo(SIGNED);
        r.write("keys/app.asc", &key);
        r.check_fails_with(&["modules/app/module.yaml:", "artifacts[].signature.key", why]);
    }
}
