//! The example fleet's monitoring, read from what strata really renders (the library's
//! `load_and_render`, and `strata render --out` / `check --validate` with the real binary):
//! who scrapes whom, the Alertmanager cluster and its routes (amtool), the promtool rule tests
//! with the lab's short windows, Grafana's provisioned JSON, the Alloy / Promtail configs and
//! Loki's firewall, the public status endpoint. Nothing here connects anywhere: the
//! inventory's addresses are documentation addresses, only read.

use serde_json::Value as Json;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use strata::model::{DesiredState, FileRes, Resource};

const SECRETS: [(&str, &str); 5] = [
    ("STRATA_TELEGRAM_BOT_TOKEN", "123456:CANARY-mon-telegram"),
    (
        "STRATA_DISCORD_WEBHOOK_URL",
        "https://discord.invalid/CANARY-mon-discord",
    ),
    ("STRATA_SMTP_PASSWORD", "CANARY-mon-smtp"),
    ("STRATA_PAGERDUTY_ROUTING_KEY", "CANARY-mon-pagerduty"),
    (
        "STRATA_HEARTBEAT_URL",
        "https://heartbeat.invalid/CANARY-mon-heartbeat",
    ),
];

fn secrets() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in SECRETS {
            std::env::set_var(k, v);
        }
    });
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fleet as rendered: per node, its resources; plus the inventory's groups.
struct Fleet {
    nodes: Vec<DesiredState>,
    groups: BTreeMap<String, Vec<String>>,
}

impl Fleet {
    fn load(repo: &Path, inventory: Option<&str>) -> Fleet {
        secrets();
        let inv = inventory.map(PathBuf::from);
        let (repo, r) = strata::engine::load::load_and_render(repo, inv.as_deref())
            .unwrap_or_else(|e| panic!("render failed: {}", e));
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &repo.hosts {
            for g in &h.groups {
                groups.entry(g.clone()).or_default().push(h.name.clone());
            }
        }
        Fleet {
            nodes: r.nodes,
            groups,
        }
    }
    fn node(&self, name: &str) -> &DesiredState {
        self.nodes.iter().find(|d| d.node.name == name).unwrap()
    }
    fn address(&self, name: &str) -> String {
        self.node(name).node.address.clone()
    }
    fn region(&self, name: &str) -> String {
        self.node(name).node.region.clone()
    }
    fn group(&self, g: &str) -> Vec<String> {
        self.groups.get(g).cloned().unwrap_or_default()
    }
    fn file(&self, node: &str, dest: &str) -> Option<&FileRes> {
        self.node(node).resources.iter().find_map(|r| match r {
            Resource::File(f) if f.dest == dest => Some(f),
            _ => None,
        })
    }
    fn text(&self, node: &str, dest: &str) -> &str {
        &self
            .file(node, dest)
            .unwrap_or_else(|| panic!("{node}: no file {dest}"))
            .content
    }
    fn yaml(&self, node: &str, dest: &str) -> Value {
        serde_yaml::from_str(self.text(node, dest))
            .unwrap_or_else(|e| panic!("{node}: {dest}: {e}"))
    }
    /// (port/proto, sources) of the node's ufw rules.
    fn fw(&self, node: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in &self.node(node).resources {
            if let Resource::Firewall(f) = r {
                for rule in &f.rules {
                    m.entry(format!("{}/{}", rule.port, rule.proto))
                        .or_default()
                        .insert(rule.from.clone());
                }
            }
        }
        m
    }
}

fn example() -> Fleet {
    Fleet::load(&crate_dir(), None)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn set<I: IntoIterator<Item = String>>(i: I) -> BTreeSet<String> {
    i.into_iter().collect()
}

/// (target, node label, region label) of a scrape job.
fn job_targets(prom: &Value, job: &str) -> BTreeSet<(String, String, String)> {
    let j = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some(job))
        .unwrap_or_else(|| panic!("no job {job}"));
    let mut out = BTreeSet::new();
    for sc in j["static_configs"].as_sequence().unwrap() {
        for t in sc["targets"].as_sequence().unwrap() {
            out.insert((s(t), s(&sc["labels"]["node"]), s(&sc["labels"]["region"])));
        }
    }
    out
}

#[test]
fn every_watcher_scrapes_every_node_and_sends_to_every_alertmanager() {
    let f = example();
    let watchers = f.group("validators");
    let watched = f.group("validators");
    assert_eq!(watchers.len(), 3);
    let first = f.yaml(&watchers[0], "/etc/prometheus/prometheus.yml");
    for w in &watchers {
        let p = f.yaml(w, "/etc/prometheus/prometheus.yml");
        // The same scrape configs on every watcher: the same series, hence alerts with the
        // same labels, which the Alertmanager cluster merges into one.
        assert_eq!(p["scrape_configs"], first["scrape_configs"], "{w}");
        // No observer-specific external label (it would make N alerts of one incident).
        let ext: BTreeSet<String> = p["global"]["external_labels"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(s)
            .collect();
        assert_eq!(ext, set(["chain".to_string()]), "{w}");
        for (job, port, names) in [
            ("node", 9100, &watched),
            ("validator", 8889, &watched),
            ("prometheus", 9090, &watchers),
            ("alertmanager", 9093, &watchers),
        ] {
            let want: BTreeSet<_> = names
                .iter()
                .map(|n| (format!("{}:{port}", f.address(n)), n.clone(), f.region(n)))
                .collect();
            // Including the watcher itself, by its address (not 127.0.0.1): the peers'
            // view and its own are the same series.
            assert_eq!(job_targets(&p, job), want, "{w}: job {job}");
        }
        let am: BTreeSet<String> = p["alerting"]["alertmanagers"][0]["static_configs"][0]
            ["targets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        assert_eq!(
            am,
            set(watchers.iter().map(|n| format!("{}:9093", f.address(n)))),
            "{w}: alerts go to every Alertmanager"
        );
        // Scrapes of the other watchers reach it: their addresses are allowed in.
        let fw = f.fw(w);
        for other in &watchers {
            for port in ["9090/tcp", "9093/tcp"] {
                assert!(
                    fw[port].contains(&f.address(other)),
                    "{w}: {port} from {other}"
                );
            }
        }
        for n in &watched {
            let fw = f.fw(n);
            for port in ["9100/tcp", "8889/tcp"] {
                assert!(
                    fw[port].contains(&f.address(w)),
                    "{n}: {port} from watcher {w}: {fw:?}"
                );
            }
        }
    }
}

#[test]
fn the_alertmanagers_form_one_cluster_open_to_the_watchers_only() {
    let f = example();
    let watchers = f.group("validators");
    for w in &watchers {
        let d = f.text(w, "/etc/default/prometheus-alertmanager");
        // ARGS="...", one flag a line: as sh (and systemd) read it, backslash-newline
        // removed.
        let start = d.find("\nARGS=\"").expect("ARGS=") + 7;
        let len = d[start..].find('"').expect("closing quote");
        let args = d[start..start + len].replace("\\\n", "");
        assert!(!args.contains('\n') && !args.contains('\\'), "{args}");
        let peers: BTreeSet<String> = args
            .split_whitespace()
            .filter_map(|a| a.trim_matches('"').strip_prefix("--cluster.peer="))
            .map(str::to_string)
            .collect();
        let others: Vec<&String> = watchers.iter().filter(|o| *o != w).collect();
        assert_eq!(
            peers,
            set(others.iter().map(|o| format!("{}:9094", f.address(o)))),
            "{w}: a peer flag for every other watcher, not itself"
        );
        assert!(
            args.contains(&format!(
                "--cluster.advertise-address={}:9094",
                f.address(w)
            )),
            "{args}"
        );
        let fw = f.fw(w);
        for proto in ["tcp", "udp"] {
            assert_eq!(
                fw[&format!("9094/{proto}")],
                set(others.iter().map(|o| f.address(o))),
                "{w}: gossip {proto} from the other watchers only"
            );
        }
    }
}

fn amtool_route(file: &Path, labels: &[&str]) -> String {
    let o = Command::new("amtool")
        .args(["config", "routes", "test", "--config.file"])
        .arg(file)
        .args(labels)
        .output()
        .expect("amtool (Debian package prometheus-alertmanager)");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn p0_p1_page_p2_p3_are_batched_the_watchdog_goes_to_the_heartbeat() {
    let f = example();
    let tmp = tempfile::tempdir().unwrap();
    let am_file = tmp.path().join("alertmanager.yml");
    let text = f.text("validator-2", "/etc/prometheus/alertmanager.yml");
    assert!(
        f.file("validator-2", "/etc/prometheus/alertmanager.yml")
            .unwrap()
            .secret
    );
    fs::write(&am_file, text).unwrap();
    for (labels, want) in [
        (
            &["alertname=HostDown", "severity=P0", "node=validator-2"][..],
            "page",
        ),
        (
            &[
                "alertname=DiskUsageCritical",
                "severity=P1",
                "node=validator-2",
            ],
            "page",
        ),
        (
            &["alertname=DiskUsageHigh", "severity=P2", "node=validator-2"],
            "batched",
        ),
        (
            &[
                "alertname=NodeExporterDown",
                "severity=P3",
                "node=validator-2",
            ],
            "batched",
        ),
        (&["alertname=Watchdog", "severity=P3"], "heartbeat"),
        (&["alertname=Unknown"], "batched"),
    ] {
        assert_eq!(amtool_route(&am_file, labels), want, "{labels:?}");
    }
    let am: Value = serde_yaml::from_str(text).unwrap();
    let receiver = |n: &str| {
        am["receivers"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| r["name"].as_str() == Some(n))
            .unwrap_or_else(|| panic!("no receiver {n}"))
            .clone()
    };
    for kind in ["pagerduty_configs", "telegram_configs", "email_configs"] {
        assert!(receiver("page")[kind].is_sequence(), "page lacks {kind}");
    }
    assert!(receiver("page")["discord_configs"].is_null());
    for kind in ["discord_configs", "email_configs"] {
        assert!(
            receiver("batched")[kind].is_sequence(),
            "batched lacks {kind}"
        );
    }
    assert!(receiver("batched")["pagerduty_configs"].is_null());
    assert_eq!(
        s(&receiver("heartbeat")["webhook_configs"][0]["url"]),
        SECRETS[4].1
    );
    assert_eq!(
        s(&receiver("page")["pagerduty_configs"][0]["routing_key"]),
        SECRETS[3].1
    );
    // Paging is immediate, batching waits; the heartbeat repeats often.
    let route = |r: &str| {
        am["route"]["routes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|x| x["receiver"].as_str() == Some(r))
            .unwrap()
            .clone()
    };
    let secs = |v: &Value| -> u64 {
        let t = s(v);
        let (n, u) = t.split_at(t.len() - 1);
        n.parse::<u64>().unwrap()
            * match u {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => panic!("{t}"),
            }
    };
    assert!(secs(&route("page")["group_wait"]) <= 30);
    assert!(secs(&route("batched")["group_wait"]) > secs(&route("page")["group_wait"]));
    assert!(secs(&route("heartbeat")["repeat_interval"]) <= 300);
    assert!(route("page")["group_by"]
        .as_sequence()
        .unwrap()
        .contains(&Value::from("node")));
    // A dead host is one page: HostDown inhibits the rest of that node's alerts.
    let inhibits = am["inhibit_rules"].as_sequence().unwrap();
    assert!(inhibits.iter().any(|i| {
        s(&i["source_matchers"][0]) == "alertname=\"HostDown\""
            && i["equal"].as_sequence().unwrap() == &vec![Value::from("node")]
    }));
}

/// Every alert rule of the rendered rules file: (name, severity).
fn rules(f: &Fleet, node: &str) -> Vec<(String, String, Value)> {
    let r = f.yaml(node, "/etc/prometheus/rules/strata-alerts.yml");
    r["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .filter(|r| !r["alert"].is_null())
        .map(|r| (s(&r["alert"]), s(&r["labels"]["severity"]), r))
        .collect()
}

#[test]
fn every_alert_rule_has_a_severity_and_a_unit_test_that_makes_it_fire() {
    let f = example();
    let rs = rules(&f, "validator-1");
    let names: BTreeSet<String> = rs.iter().map(|(n, _, _)| n.clone()).collect();
    for want in [
        "HostDown",
        "ValidatorDown",
        "ValidatorNotProgressing",
        "ValidatorSyncLag",
        "DiskUsageCritical",
        "DiskUsageHigh",
        "CPUBusy",
        "MemoryPressure",
        "ClockSkew",
        "Watchdog",
    ] {
        assert!(names.contains(want), "rule {want} missing");
    }
    for (n, sev, r) in &rs {
        assert!(
            ["P0", "P1", "P2", "P3"].contains(&sev.as_str()),
            "{n}: {sev}"
        );
        if n != "Watchdog" {
            assert!(!r["for"].is_null(), "{n}: no for:");
        }
    }
    for (n, sev) in [
        ("HostDown", "P0"),
        ("ValidatorDown", "P0"),
        ("ValidatorNotProgressing", "P0"),
        ("DiskUsageCritical", "P1"),
        ("DiskUsageHigh", "P2"),
    ] {
        assert!(
            rs.iter().any(|(a, s, _)| a == n && s == sev),
            "{n} not {sev}"
        );
    }
    // The tests: for every rule, at least one case where it fires, and one where it
    // does not; every expected alert but the Watchdog names its node and region.
    let t = f.yaml(
        "validator-1",
        "/etc/prometheus/tests/strata-alerts.test.yml",
    );
    let mut fires: BTreeSet<String> = BTreeSet::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    for case in t["tests"].as_sequence().unwrap() {
        for a in case["alert_rule_test"].as_sequence().unwrap() {
            let name = s(&a["alertname"]);
            let exp = a["exp_alerts"].as_sequence().unwrap();
            if exp.is_empty() {
                silent.insert(name.clone());
            } else {
                fires.insert(name.clone());
            }
            for e in exp {
                let l = &e["exp_labels"];
                let sev = s(&l["severity"]);
                let rule_sev = &rs.iter().find(|(n, _, _)| *n == name).unwrap().1;
                assert_eq!(&sev, rule_sev, "{name}: the test's severity");
                if name != "Watchdog" {
                    assert!(
                        !l["node"].is_null() && !l["region"].is_null(),
                        "{name}: {l:?}"
                    );
                }
            }
        }
    }
    assert_eq!(fires, names, "rules without a firing test");
    let mut need_silent = names.clone();
    need_silent.remove("Watchdog");
    assert!(
        need_silent.is_subset(&silent),
        "rules without a not-yet-firing test: {:?}",
        need_silent.difference(&silent).collect::<Vec<_>>()
    );
}

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

fn example_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["inventory", "base-config", "nodes", "modules"] {
        copy_dir(&crate_dir().join(d), &tmp.path().join(d));
    }
    tmp
}

fn check_validate(repo: &Path) -> (i32, String) {
    secrets();
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--repo")
        .arg(repo)
        .args(["check", "--validate"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap(), text)
}

const TESTS: &str = "/etc/prometheus/tests/strata-alerts.test.yml";

#[test]
fn the_rule_tests_pass_with_a_labs_short_windows_and_with_long_ones() {
    // As a lab inventory would set them (group vars): every window 30 s, and the other way,
    // windows of an hour. The tests are rendered from the same values and must still hold.
    for (window, progress) in [("30s", "1m"), ("1h", "15m")] {
        let repo = example_copy();
        let p = repo.path().join("base-config/vars.yaml");
        let mut v = fs::read_to_string(&p).unwrap();
        let start = v.find("    for:\n").unwrap();
        let end = start + v[start..].find("    # Window in which").unwrap();
        let mut block = String::from("    for:\n");
        for line in v[start..end].lines().skip(1) {
            if let Some((k, _)) = line.trim().split_once(':') {
                if !line.trim().starts_with('#') {
                    block.push_str(&format!("      {k}: {window}\n"));
                }
            }
        }
        v.replace_range(start..end, &block);
        let v = v.replace(
            "progress_window: 5m",
            &format!("progress_window: {progress}"),
        );
        fs::write(&p, v).unwrap();
        let (code, text) = check_validate(repo.path());
        assert_eq!(code, 0, "windows {window}:\n{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("validated") && l.contains(TESTS)),
            "{text}"
        );
        let r = Fleet::load(repo.path(), None);
        assert!(r
            .text("validator-1", "/etc/prometheus/rules/strata-alerts.yml")
            .contains(&format!("for: {window}")));
    }
}

#[test]
fn a_rule_that_no_longer_does_what_its_test_says_fails_the_check_naming_the_test_file() {
    let repo = example_copy();
    let p = repo
        .path()
        .join("modules/prometheus/templates/strata-alerts.yml.j2");
    let t = fs::read_to_string(&p).unwrap();
    // Valid PromQL, wrong meaning: the disk warning now needs a full disk.
    let from = "fstype!~\"tmpfs|overlay|squashfs|ramfs\"}) > {{ alerts.disk_warning_percent }}";
    assert!(t.contains(from));
    fs::write(
        &p,
        t.replace(from, "fstype!~\"tmpfs|overlay|squashfs|ramfs\"}) >= 100"),
    )
    .unwrap();
    let (code, text) = check_validate(repo.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(TESTS)),
        "{text}"
    );
    let err = text
        .lines()
        .find(|l| l.starts_with("error: ") && l.contains(TESTS))
        .unwrap();
    assert!(err.contains("modules/prometheus/module.yaml"), "{err}");
    assert!(
        text.contains("DiskUsageHigh"),
        "promtool names the rule:\n{text}"
    );
    // The rules themselves are still valid PromQL: only the tests fail.
    assert!(text.lines().any(
        |l| l.starts_with("validated") && l.contains("/etc/prometheus/rules/strata-alerts.yml")
    ));
}

/// Metric names an expression uses (identifiers before `{` or `(`, minus PromQL words).
fn metrics(expr: &str) -> BTreeSet<String> {
    const WORDS: [&str; 14] = [
        "min", "max", "avg", "sum", "by", "rate", "scalar", "changes", "abs", "without", "on",
        "unless", "and", "or",
    ];
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    let mut in_braces = 0;
    let mut in_quotes = false;
    while i < b.len() {
        let c = b[i] as char;
        if c == '"' {
            in_quotes = !in_quotes;
        } else if !in_quotes && c == '{' {
            in_braces += 1;
        } else if !in_quotes && c == '}' {
            in_braces -= 1;
        }
        if !in_quotes && in_braces == 0 && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < b.len()
                && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
            {
                i += 1;
            }
            let w = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            if !WORDS.contains(&w) && next == Some('{') {
                out.insert(w.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn grafana_dashboards_cover_every_region_and_node_with_real_metrics() {
    let f = example();
    let central = f.group("monitoring");
    assert_eq!(central, vec!["validator-1".to_string()]);
    let g = &central[0];
    let dir = "/var/lib/grafana/dashboards/strata";
    // "Real" metrics: those the alert rules use, which their promtool tests feed; plus up.
    let mut real: BTreeSet<String> = set(["up".to_string()]);
    for (_, _, r) in rules(&f, g) {
        real.extend(metrics(&s(&r["expr"])));
    }
    assert!(real.contains("monad_block_height") && real.contains("node_filesystem_avail_bytes"));
    let watched = f.group("validators");
    let regions: BTreeSet<String> = watched.iter().map(|n| f.region(n)).collect();
    assert_eq!(regions.len(), 3);

    // Datasources: every watcher's Prometheus, exactly one default, and Loki.
    let ds = f.yaml(g, "/etc/grafana/provisioning/datasources/strata.yaml");
    let ds = ds["datasources"].as_sequence().unwrap();
    let prom: BTreeSet<String> = ds
        .iter()
        .filter(|d| d["type"].as_str() == Some("prometheus"))
        .map(|d| s(&d["url"]))
        .collect();
    assert_eq!(
        prom,
        set(f
            .group("validators")
            .iter()
            .map(|n| format!("http://{}:9090", f.address(n))))
    );
    assert_eq!(
        ds.iter()
            .filter(|d| d["isDefault"] == Value::Bool(true))
            .count(),
        1
    );
    assert!(ds.iter().any(|d| d["type"].as_str() == Some("loki")
        && s(&d["url"]) == format!("https://{}:3100", f.address(g))));
    let prov = f.yaml(g, "/etc/grafana/provisioning/dashboards/strata.yaml");
    assert_eq!(s(&prov["providers"][0]["options"]["path"]), dir);

    let mut seen_titles = BTreeSet::new();
    for (file, per_region) in [("strata-fleet.json", true), ("strata-node.json", false)] {
        let j: Json = serde_json::from_str(f.text(g, &format!("{dir}/{file}")))
            .unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
        assert!(j["uid"].as_str().is_some_and(|u| u.starts_with("strata-")));
        let vars = j["templating"]["list"].as_array().unwrap();
        assert!(vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"));
        let panels = j["panels"].as_array().unwrap();
        let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{file}: panel ids unique");
        let mut region_of_panels: BTreeMap<String, usize> = BTreeMap::new();
        for p in panels.iter().filter(|p| p["type"] != "row") {
            let title = p["title"].as_str().unwrap().to_string();
            seen_titles.insert(title.clone());
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no target");
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                let used = metrics(expr);
                assert!(!used.is_empty(), "{title}: {expr}");
                assert!(
                    used.is_subset(&real),
                    "{title}: {expr} uses {:?}",
                    used.difference(&real).collect::<Vec<_>>()
                );
                if per_region {
                    let r = regions
                        .iter()
                        .find(|r| expr.contains(&format!("region=\"{r}\"")))
                        .unwrap_or_else(|| panic!("{title}: no region in {expr}"));
                    *region_of_panels.entry(r.clone()).or_default() += 1;
                } else {
                    assert!(expr.contains("node=\"$node\""), "{title}: {expr}");
                }
            }
        }
        if per_region {
            // A row and the same panels for every region.
            for r in &regions {
                assert!(panels
                    .iter()
                    .any(|p| p["type"] == "row" && p["title"] == format!("Region {r}")));
            }
            let counts: BTreeSet<usize> = region_of_panels.values().copied().collect();
            assert_eq!(region_of_panels.len(), regions.len());
            assert_eq!(counts.len(), 1, "{region_of_panels:?}");
        } else {
            let node_var = vars.iter().find(|v| v["name"] == "node").unwrap();
            let opts: BTreeSet<String> = node_var["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["value"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(opts, set(watched.iter().cloned()));
        }
    }
    for what in [
        "up",
        "Block height",
        "Sync lag",
        "Disk used",
        "Memory available",
    ] {
        assert!(
            seen_titles.iter().any(|t| t.contains(what)),
            "no {what} panel: {seen_titles:?}"
        );
    }
}

fn cidr_contains(cidr: &str, addr: &str) -> bool {
    let a: Ipv4Addr = addr.parse().unwrap();
    let (net, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let (net, len): (Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(net) & mask
}

/// Alloy components: `kind "label" {` block headers.
fn alloy_components(cfg: &str) -> BTreeSet<String> {
    cfg.lines()
        .filter_map(|l| {
            let l = l.trim_end();
            let (kind, rest) = l.split_once(' ')?;
            let label = rest
                .strip_suffix(" {")?
                .strip_prefix('"')?
                .strip_suffix('"')?;
            (!l.starts_with(' ') && kind.contains('.')).then(|| format!("{kind}.{label}"))
        })
        .collect()
}

#[test]
fn alloy_ships_every_validators_logs_to_the_derived_loki_that_admits_it() {
    let f = example();
    let loki_node = &f.group("monitoring")[0];
    let loki = f.yaml(loki_node, "/etc/loki/config.yml");
    assert!(!loki["server"]["http_tls_config"]["cert_file"].is_null());
    let allowed = f.fw(loki_node)["3100/tcp"].clone();
    for n in f.group("validators") {
        let cfg = f.text(&n, "/etc/alloy/config.alloy");
        assert!(
            f.file(&n, "/etc/promtail/config.yml").is_none(),
            "{n}: promtail is not the default"
        );
        let comps = alloy_components(cfg);
        for c in [
            "loki.write.fleet",
            "loki.source.journal.journal",
            "loki.relabel.journal",
            "local.file_match.monad",
            "loki.source.file.monad",
        ] {
            assert!(comps.contains(c), "{n}: no {c} in {comps:?}");
        }
        // Every reference names a component that exists.
        for l in cfg.lines() {
            for word in l.split(|c: char| c.is_whitespace() || "[],=".contains(c)) {
                for suffix in [".receiver", ".rules", ".targets"] {
                    if let Some(c) = word.strip_suffix(suffix) {
                        if c.contains('.') {
                            assert!(comps.contains(c), "{n}: `{word}` refers to no component");
                        }
                    }
                }
            }
        }
        assert_eq!(
            cfg.matches('{').count(),
            cfg.matches('}').count(),
            "{n}: braces"
        );
        let url = format!(
            "url = \"https://{}:3100/loki/api/v1/push\"",
            f.address(loki_node)
        );
        assert!(
            cfg.contains(&url),
            "{n}: Loki's address derived from the monitoring group"
        );
        assert!(
            cfg.contains(&format!("node   = \"{n}\""))
                && cfg.contains(&format!("region = \"{}\"", f.region(&n)))
        );
        assert!(cfg.contains("\"__path__\" = \"/var/log/monad/*.log\""));
        // Loki's firewall (loki.allowed_cidrs) admits this shipper.
        assert!(
            allowed.iter().any(|c| cidr_contains(c, &f.address(&n))),
            "{n} ({}) is outside loki.allowed_cidrs {allowed:?}",
            f.address(&n)
        );
    }
}

#[test]
fn promtail_stays_an_option_and_an_inventory_without_loki_ships_nowhere() {
    // The lab's inventory has no monitoring group and lists promtail.
    let f = Fleet::load(&crate_dir(), Some("inventory/lab.yaml"));
    for n in f.group("validators") {
        let p = f.yaml(&n, "/etc/promtail/config.yml");
        assert_eq!(
            s(&p["clients"][0]["url"]),
            "http://127.0.0.1:3100/loki/api/v1/push"
        );
        assert!(f
            .text(&n, "/etc/promtail/config.yml")
            .contains("no node in group\n# monitoring"));
    }
    // The example fleet with promtail instead of alloy: the same derived Loki address.
    let repo = example_copy();
    let inv = repo.path().join("inventory/hosts.yaml");
    let t = fs::read_to_string(&inv).unwrap();
    fs::write(&inv, t.replacen("      - alloy\n", "      - promtail\n", 1)).unwrap();
    let f = Fleet::load(repo.path(), None);
    for n in f.group("validators") {
        let p = f.yaml(&n, "/etc/promtail/config.yml");
        assert_eq!(
            s(&p["clients"][0]["url"]),
            "https://192.0.2.10:3100/loki/api/v1/push"
        );
        assert_eq!(
            s(&p["clients"][0]["tls_config"]["ca_file"]),
            "/etc/ssl/certs/strata-fleet-ca.pem"
        );
        assert!(f.file(&n, "/etc/alloy/config.alloy").is_none());
    }
}

#[test]
fn the_status_endpoint_is_read_only_rate_limited_tls_and_open() {
    let f = example();
    for n in f.group("validators") {
        let c = f.text(&n, "/etc/nginx/conf.d/strata-status.conf");
        let lines: Vec<&str> = c.lines().map(str::trim).collect();
        let has = |l: &str| lines.contains(&l);
        assert!(has("listen 443 ssl;"), "{n}");
        assert!(has("ssl_certificate /etc/ssl/certs/strata-status.pem;"));
        assert!(has(
            "ssl_certificate_key /etc/ssl/private/strata-status.key;"
        ));
        assert!(has("ssl_protocols TLSv1.2 TLSv1.3;"));
        assert!(has("location = /status {"));
        assert!(has("limit_except GET {") && has("deny all;"));
        assert!(has("proxy_pass http://127.0.0.1:8080/status;"));
        assert!(has("limit_req zone=strata_status burst=10 nodelay;"));
        assert!(c.contains("limit_req_zone $binary_remote_addr zone=strata_status:1m rate=5r/s;"));
        // Only /status is proxied; everything else is 404.
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("proxy_pass "))
                .count(),
            1
        );
        assert!(has("location / {") && has("return 404;"));
        assert_eq!(f.fw(&n)["443/tcp"], set(["any".to_string()]));
        assert!(f.node(&n).resources.iter().any(|r| matches!(r,
            Resource::KeyFile(k) if k.path == "/etc/ssl/private/strata-status.key")));
    }
}
