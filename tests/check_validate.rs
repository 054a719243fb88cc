//! `strata check --validate` with the real binary and the real validator tools, on a copy of
//! this crate's example repo (broken on purpose where a test says so). No network: nothing
//! here connects anywhere.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CANARY_TELEGRAM: &str = "123456:CANARY-telegram-token-4f1d";
const CANARY_DISCORD: &str = "https://discord.invalid/api/webhooks/1/CANARY-discord-9b2e";
const CANARY_SMTP: &str = "CANARY-smtp-password-77c3";
const CANARY_PAGERDUTY: &str = "CANARY-pagerduty-routing-key-5e21";
const CANARY_HEARTBEAT: &str = "https://heartbeat.invalid/ping/CANARY-heartbeat-0c9d";

const RULES: &str = "/etc/prometheus/rules/strata-alerts.yml";
const PROM: &str = "/etc/prometheus/prometheus.yml";
const ALERTMANAGER: &str = "/etc/prometheus/alertmanager.yml";
const TESTS: &str = "/etc/prometheus/tests/strata-alerts.test.yml";

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the example repo (inventory, base-config, nodes, modules).
fn example() -> tempfile::TempDir {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for d in ["inventory", "base-config", "nodes", "modules"] {
        copy_dir(&src.join(d), &tmp.path().join(d));
    }
    tmp
}

fn edit(repo: &Path, file: &str, from: &str, to: &str) {
    let p = repo.join(file);
    let s = fs::read_to_string(&p).unwrap();
    assert!(s.contains(from), "{file} lacks `{from}`");
    fs::write(&p, s.replacen(from, to, 1)).unwrap();
}

fn check_validate(repo: &Path, path: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--repo")
        .arg(repo)
        .args(["check", "--validate"])
        .env("STRATA_TELEGRAM_BOT_TOKEN", CANARY_TELEGRAM)
        .env("STRATA_DISCORD_WEBHOOK_URL", CANARY_DISCORD)
        .env("STRATA_SMTP_PASSWORD", CANARY_SMTP)
        .env("STRATA_PAGERDUTY_ROUTING_KEY", CANARY_PAGERDUTY)
        .env("STRATA_HEARTBEAT_URL", CANARY_HEARTBEAT);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let o: Output = cmd.output().expect("run strata");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for canary in [
        CANARY_TELEGRAM,
        CANARY_DISCORD,
        CANARY_SMTP,
        CANARY_PAGERDUTY,
        CANARY_HEARTBEAT,
    ] {
        assert!(
            !text.contains(canary),
            "a secret value was printed:\n{text}"
        );
    }
    (o.status.code().expect("exited"), text)
}

/// The validator tools, all of which the suite requires (like tests/validators.rs).
fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("`{tool}` not found: apt-get install {package}"))
}

fn all_tools() {
    require("promtool", "prometheus");
    require("amtool", "prometheus-alertmanager");
    require("systemd-analyze", "systemd");
    require("chronyd", "chrony");
    require("logrotate", "logrotate");
    require("nginx", "nginx");
    require("openssl", "openssl");
}

/// The summary line's counts: (validated, runs, failed, not checked).
fn summary(text: &str) -> (usize, usize, usize, usize) {
    let line = text
        .lines()
        .find(|l| l.starts_with("check --validate: "))
        .unwrap_or_else(|| panic!("no summary line in\n{text}"));
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 4, "{line}");
    (n[0], n[1], n[2], n[3])
}

#[test]
fn the_example_repo_validates_cleanly_and_runs_each_distinct_check_once() {
    all_tools();
    let repo = example();
    let (code, text) = check_validate(repo.path(), None);
    assert_eq!(code, 0, "{text}");
    // 3 nodes x 9 files with a `validate` command.
    let (validated, runs, failed, unchecked) = summary(&text);
    assert_eq!((validated, failed, unchecked), (27, 0, 0), "{text}");
    // The rules file and alertmanager.yml are identical on every node: fewer runs than files.
    assert!(runs < validated, "{text}");
    for dest in [
        RULES,
        TESTS,
        PROM,
        ALERTMANAGER,
        "/etc/default/prometheus-alertmanager",
        "/etc/logrotate.d/monad",
        "/etc/nginx/conf.d/strata-status.conf",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("validated") && l.contains(dest)),
            "{dest} not validated:\n{text}"
        );
    }
    // Off-node replacements are said, not hidden.
    assert!(
        text.contains(
            "`ExecStart=/opt/monad/current/bin/monad-validator` checked as `ExecStart=/bin/true`"
        ),
        "{text}"
    );
}

#[test]
fn invalid_promql_fails_naming_node_file_module_and_promtools_message() {
    require("promtool", "prometheus");
    let repo = example();
    edit(
        repo.path(),
        "modules/prometheus/templates/strata-alerts.yml.j2",
        "expr: vector(1)",
        "expr: up{job=~\"prometheus\" == 0 ((",
    );
    let (code, text) = check_validate(repo.path(), None);
    assert_eq!(code, 1, "{text}");
    let err = text
        .lines()
        .find(|l| l.starts_with("error: ") && l.contains(RULES))
        .unwrap_or_else(|| panic!("no error naming {RULES}:\n{text}"));
    assert!(err.contains("validator-1"), "{err}");
    assert!(err.contains("modules/prometheus/module.yaml"), "{err}");
    assert!(err.contains("promtool check rules"), "{err}");
    // promtool's own words, e.g. `parse error: unexpected ...`.
    assert!(
        text.contains("  | ") && text.contains("parse error"),
        "{text}"
    );
    // The rules file and its tests (which carry a copy of the rules) on each node.
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(TESTS)),
        "{text}"
    );
    let (_, _, failed, _) = summary(&text);
    assert_eq!(failed, 6, "two failures per node:\n{text}");
}

#[test]
fn without_promtool_its_files_are_not_checked_and_never_passed() {
    all_tools();
    // A PATH with every validator but promtool (chronyd and logrotate come from /usr/sbin,
    // which strata searches after PATH).
    let bin = tempfile::tempdir().unwrap();
    for (t, p) in [
        ("amtool", "prometheus-alertmanager"),
        ("systemd-analyze", "systemd"),
        // `sh -n` (alertmanager's default file), openssl (nginx's throwaway certificate).
        ("sh", "dash"),
        ("openssl", "openssl"),
    ] {
        std::os::unix::fs::symlink(require(t, p), bin.path().join(t)).unwrap();
    }
    let repo = example();
    let (code, text) = check_validate(repo.path(), Some(bin.path().to_str().unwrap()));
    assert_eq!(code, 0, "a missing tool does not fail the run:\n{text}");
    let (validated, _, failed, unchecked) = summary(&text);
    assert_eq!(failed, 0, "{text}");
    assert_eq!(
        unchecked, 9,
        "rules, their tests, prometheus.yml on 3 nodes:\n{text}"
    );
    assert_eq!(validated, 18, "{text}");
    for dest in [RULES, TESTS, PROM] {
        for l in text.lines().filter(|l| l.contains(dest)) {
            assert!(
                l.starts_with("NOT CHECKED")
                    && l.contains("promtool not installed; Debian package prometheus"),
                "{l}"
            );
            assert!(!l.starts_with("validated"), "{l}");
        }
    }
}

#[test]
fn secrets_stay_out_of_the_output_when_amtool_fails_on_the_secret_file() {
    require("amtool", "prometheus-alertmanager");
    let repo = example();
    // amtool quotes the URL it cannot parse, the secret with it.
    edit(
        repo.path(),
        "modules/alertmanager/templates/alertmanager.yml.j2",
        "- webhook_url: {{ q(env(\"STRATA_DISCORD_WEBHOOK_URL\")) }}",
        "- webhook_url: 'ht tp://{{ env(\"STRATA_DISCORD_WEBHOOK_URL\") }}'",
    );
    let (code, text) = check_validate(repo.path(), None);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("error: ") && l.contains(ALERTMANAGER)),
        "{text}"
    );
    assert!(text.contains("amtool check-config"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains("CANARY"), "{text}");

    // yaml errors quote a truncated value (`123456:...`): a fragment is redacted too.
    let repo = example();
    edit(
        repo.path(),
        "modules/alertmanager/templates/alertmanager.yml.j2",
        "chat_id: {{ am.telegram.chat_id }}",
        "chat_id: '{{ env(\"STRATA_TELEGRAM_BOT_TOKEN\") }}'",
    );
    let (code, text) = check_validate(repo.path(), None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot unmarshal"), "{text}");
    assert!(!text.contains("123456:"), "{text}");
}

#[test]
fn a_stale_validate_local_replacement_is_an_error_not_a_silent_pass() {
    require("logrotate", "logrotate");
    let repo = example();
    edit(
        repo.path(),
        "modules/logrotate/templates/monad.logrotate.j2",
        "su {{ validator.user }} {{ validator.group }}",
        "su {{ validator.user }} adm",
    );
    let (code, text) = check_validate(repo.path(), None);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("/etc/logrotate.d/monad")
            && text.contains("modules/logrotate/module.yaml")
            && text.contains("`su monad monad` does not occur"),
        "{text}"
    );
}
