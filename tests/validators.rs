//! Renders the example infra repo of this crate with the real `strata` binary
//! (`strata --repo <crate> render --out <tmp>`) and runs the real validators
//! that the modules declare on every node's rendered files:
//! promtool, amtool, systemd-analyze, chronyd, logrotate, plus structural
//! checks of the Loki config (no Loki binary in Debian bookworm); the monitoring topology, Grafana,
//! Alloy / Promtail and the status endpoint are checked in tests/monitoring.rs.
//!
//! A missing tool is a FAILURE naming the Debian package to install, never a
//! skip: a green run must mean every config was checked by its real parser.
//!
//! Nothing here touches the network: the inventory's addresses are RFC 5737
//! documentation addresses and are only read.

use serde_yaml::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CANARY_TELEGRAM: &str = "123456:CANARY-telegram-token-4f1d";
const CANARY_DISCORD: &str = "https://discord.invalid/api/webhooks/1/CANARY-discord-9b2e";
const CANARY_SMTP: &str = "CANARY-smtp-password-77c3";
const CANARY_PAGERDUTY: &str = "CANARY-pagerduty-routing-key-5e21";
const CANARY_HEARTBEAT: &str = "https://heartbeat.invalid/ping/CANARY-heartbeat-0c9d";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Finds a tool on PATH or in the sbin directories (chronyd and logrotate
/// live in /usr/sbin, which is not on every test runner's PATH).
fn tool(name: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').map(PathBuf::from).chain(
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(PathBuf::from),
    );
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "validator tool `{name}` not found: install the Debian package `{debian_package}` \
         (apt-get install {debian_package}); this test does not skip missing tools"
    );
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn load_yaml(p: &Path) -> Value {
    let s = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_yaml::from_str(&s).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for k in path.split('.') {
        cur = match k.parse::<usize>() {
            Ok(i) if cur.is_sequence() => &cur[i],
            _ => &cur[k],
        };
        assert!(!cur.is_null(), "missing key `{path}` (at `{k}`)");
    }
    cur
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// The fleet as the inventory describes it.
struct Host {
    name: String,
    address: String,
    region: String,
    groups: Vec<String>,
}

fn inventory() -> (Vec<Host>, Value) {
    let inv = load_yaml(&repo().join("inventory/hosts.yaml"));
    let hosts = inv["hosts"]
        .as_mapping()
        .expect("hosts map")
        .iter()
        .map(|(k, h)| Host {
            name: s(k),
            address: s(&h["address"]),
            region: s(&h["region"]),
            groups: h["groups"].as_sequence().unwrap().iter().map(s).collect(),
        })
        .collect();
    (hosts, inv)
}

/// A node's effective value for a dotted var: node override, else base.
fn var(node: &str, dotted: &str) -> Value {
    let base = load_yaml(&repo().join("base-config/vars.yaml"));
    let node_file = repo().join("nodes").join(node).join("vars.yaml");
    if node_file.exists() {
        let mut cur = &load_yaml(&node_file);
        let mut found = true;
        for k in dotted.split('.') {
            cur = &cur[k];
            if cur.is_null() {
                found = false;
                break;
            }
        }
        if found {
            return cur.clone();
        }
    }
    get(&base["vars"], dotted).clone()
}

fn node_modules(h: &Host, inv: &Value) -> BTreeSet<String> {
    h.groups
        .iter()
        .flat_map(|g| {
            inv["groups"][g.as_str()]["modules"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(s)
        })
        .collect()
}

/// Renders the whole fleet once with the real binary.
fn render(out: &Path) -> Output {
    let o = run(Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--repo")
        .arg(repo())
        .arg("render")
        .arg("--out")
        .arg(out)
        .env("STRATA_TELEGRAM_BOT_TOKEN", CANARY_TELEGRAM)
        .env("STRATA_DISCORD_WEBHOOK_URL", CANARY_DISCORD)
        .env("STRATA_SMTP_PASSWORD", CANARY_SMTP)
        .env("STRATA_PAGERDUTY_ROUTING_KEY", CANARY_PAGERDUTY)
        .env("STRATA_HEARTBEAT_URL", CANARY_HEARTBEAT));
    assert!(o.status.success(), "strata render failed\n{}", text(&o));
    o
}

#[test]
fn every_rendered_config_passes_its_real_validator() {
    // Resolve every tool first: a missing one fails with its package name.
    let promtool = tool("promtool", "prometheus");
    let amtool = tool("amtool", "prometheus-alertmanager");
    let systemd_analyze = tool("systemd-analyze", "systemd");
    let chronyd = tool("chronyd", "chrony");
    let logrotate = tool("logrotate", "logrotate");

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let render_output = render(&out);

    // Secrets never appear in strata's own output.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&render_output.stdout),
        String::from_utf8_lossy(&render_output.stderr)
    );
    for canary in [
        CANARY_TELEGRAM,
        CANARY_DISCORD,
        CANARY_SMTP,
        CANARY_PAGERDUTY,
        CANARY_HEARTBEAT,
    ] {
        assert!(
            !printed.contains(canary),
            "secret value printed by strata render"
        );
    }

    let (hosts, inv) = inventory();
    assert_eq!(hosts.len(), 3, "example fleet has three validators");
    let validators: Vec<&Host> = hosts
        .iter()
        .filter(|h| h.groups.iter().any(|g| g == "validators"))
        .collect();

    for h in &hosts {
        let node = h.name.as_str();
        let root = out.join(node);
        let f = |dest: &str| root.join(dest.trim_start_matches('/'));
        let modules = node_modules(h, &inv);
        let ctx = |what: &str| format!("[{node}] {what}");

        // Every rendered file is non-empty; secrets only in alertmanager.yml.
        let mut files = vec![];
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    files.push(p)
                }
            }
        }
        for p in &files {
            let body = fs::read_to_string(p).unwrap();
            assert!(!body.trim().is_empty(), "{}: empty", p.display());
            if !p.ends_with("etc/prometheus/alertmanager.yml") {
                for canary in [
                    CANARY_TELEGRAM,
                    CANARY_DISCORD,
                    CANARY_SMTP,
                    CANARY_PAGERDUTY,
                    CANARY_HEARTBEAT,
                ] {
                    assert!(
                        !body.contains(canary),
                        "{}: secret leaked into it",
                        p.display()
                    );
                }
            }
        }

        // --- validator: systemd unit + drop-in ------------------------------
        assert!(modules.contains("validator"));
        let unit = f("/etc/systemd/system/monad-validator.service");
        let dropin = f("/etc/systemd/system/monad-validator.service.d/override.conf");
        let unit_text = fs::read_to_string(&unit).unwrap();
        let binary = s(&var(node, "validator.binary"));
        let exec = format!(
            "ExecStart={binary} --config /etc/monad/node.toml --data-dir {} --p2p-port {} \
             --status-port {} --metrics-port {} --node-name {node}",
            s(&var(node, "validator.data_dir")),
            s(&var(node, "validator.p2p_port")),
            s(&var(node, "validator.status_port")),
            s(&var(node, "validator.metrics_port")),
        );
        assert!(
            unit_text.lines().any(|l| l == exec),
            "{}: ExecStart contract broken; want line\n{exec}",
            ctx("unit")
        );
        for needle in [
            "User=monad",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/monad /var/log/monad",
            "ProtectHome=yes",
        ] {
            assert!(
                unit_text.lines().any(|l| l == needle),
                "{}: missing `{needle}`",
                ctx("unit")
            );
        }
        let dropin_text = fs::read_to_string(&dropin).unwrap();
        let mem = s(&var(node, "validator.memory_max"));
        assert!(
            dropin_text.lines().any(|l| l == format!("MemoryMax={mem}")),
            "{}: drop-in lacks MemoryMax={mem}",
            ctx("override.conf")
        );

        // 1) The unit as rendered. systemd-analyze insists the ExecStart binary
        //    exists; on a test machine without the validator release the only
        //    acceptable complaint is exactly that.
        let o = run(Command::new(&systemd_analyze)
            .args(["verify", "--man=no"])
            .arg(&unit));
        if !o.status.success() {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let unexpected: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| !(l.contains(&format!("Command {binary} is not executable"))))
                .collect();
            assert!(
                unexpected.is_empty() && !Path::new(&binary).exists(),
                "{}: systemd-analyze verify failed\n{}",
                ctx("unit"),
                text(&o)
            );
        }
        // 2) The unit together with its drop-in, with the binary replaced by an
        //    executable stand-in: must verify cleanly, with no warning at all
        //    about either file (unknown keys are only warnings to systemd).
        let sd = tempfile::tempdir().unwrap();
        let stand_in = sd.path().join("monad-validator-stand-in");
        fs::write(&stand_in, "#!/bin/sh\nexit 0\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&stand_in, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let unit_copy = sd.path().join("monad-validator.service");
        fs::write(
            &unit_copy,
            unit_text.replace(
                &format!("ExecStart={binary} "),
                &format!("ExecStart={} ", stand_in.display()),
            ),
        )
        .unwrap();
        fs::create_dir(sd.path().join("monad-validator.service.d")).unwrap();
        fs::copy(
            &dropin,
            sd.path().join("monad-validator.service.d/override.conf"),
        )
        .unwrap();
        let o = run(Command::new(&systemd_analyze)
            .args(["verify", "--man=no"])
            .arg(&unit_copy));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && !stderr.contains("monad-validator"),
            "{}: systemd-analyze verify (unit + drop-in) not clean\n{}",
            ctx("unit"),
            text(&o)
        );

        // node.toml: the peers list holds every other validator, not itself.
        let toml = fs::read_to_string(f("/etc/monad/node.toml")).unwrap();
        assert!(
            toml.contains(&format!("node_name = \"{node}\"")),
            "{}",
            ctx("node.toml")
        );
        assert!(toml.contains(&format!("chain_id = \"{}\"", s(&var(node, "chain.id")))));
        for v in &validators {
            let peer = format!(
                "\"{}:{}\",",
                v.address,
                s(&var(&v.name, "validator.p2p_port"))
            );
            let listed = toml.lines().any(|l| l.trim_start().starts_with(&peer));
            assert_eq!(
                listed,
                v.name != node,
                "{}: bootstrap peer {peer}",
                ctx("node.toml")
            );
        }

        // --- chrony -----------------------------------------------------------
        let chrony = f("/etc/chrony/chrony.conf");
        let o = run(Command::new(&chronyd).arg("-p").arg("-f").arg(&chrony));
        assert!(
            o.status.success(),
            "{}: chronyd -p failed\n{}",
            ctx("chrony.conf"),
            text(&o)
        );
        let parsed = String::from_utf8_lossy(&o.stdout);
        for src in var(node, "chrony.sources").as_sequence().unwrap() {
            let host = s(&src["host"]);
            assert!(
                parsed.contains(&host),
                "{}: chronyd did not parse source {host}",
                ctx("chrony")
            );
        }
        for d in [
            "makestep 1.0 3",
            "rtcsync",
            "driftfile /var/lib/chrony/chrony.drift",
            "leapsectz right/UTC",
        ] {
            assert!(parsed.contains(d), "{}: missing `{d}`", ctx("chrony.conf"));
        }

        // --- logrotate --------------------------------------------------------
        // `su monad monad` names the service account, which the validator module
        // creates on the node but which does not exist on a test machine. So:
        // (a) the file as rendered may fail ONLY on that unknown user; (b) the
        // same file with the su line pointed at root must pass and handle 1 log.
        let lr = f("/etc/logrotate.d/monad");
        let lr_text = fs::read_to_string(&lr).unwrap();
        let lt = tempfile::tempdir().unwrap();
        let state = lt.path().join("status");
        let o = run(Command::new(&logrotate)
            .arg("-d")
            .arg("-s")
            .arg(&state)
            .arg(&lr));
        let user = s(&var(node, "validator.user"));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error:")).collect();
        let user_missing = Command::new("id")
            .arg(&user)
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true);
        if user_missing {
            assert!(
                errors
                    .iter()
                    .all(|l| l.contains(&format!("unknown user '{user}'"))
                        || l.contains("found error in")),
                "{}: logrotate -d errors beyond the missing `{user}` account\n{all}",
                ctx("logrotate")
            );
        } else {
            assert!(
                o.status.success() && errors.is_empty(),
                "{}: logrotate -d failed\n{all}",
                ctx("logrotate")
            );
        }
        let su_line = format!("su {user} {}", s(&var(node, "validator.group")));
        assert!(
            lr_text.contains(&su_line),
            "{}: missing `{su_line}`",
            ctx("logrotate")
        );
        let lr_root = lt.path().join("monad");
        fs::write(&lr_root, lr_text.replace(&su_line, "su root root")).unwrap();
        let o = run(Command::new(&logrotate)
            .arg("-d")
            .arg("-s")
            .arg(&state)
            .arg(&lr_root));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success() && !all.contains("error:") && all.contains("Handling 1 logs"),
            "{}: logrotate -d (su root) failed\n{all}",
            ctx("logrotate")
        );
        for d in [
            "compress",
            "delaycompress",
            "missingok",
            "notifempty",
            "copytruncate",
        ] {
            assert!(
                lr_text.lines().any(|l| l.trim() == d),
                "{}: missing `{d}`",
                ctx("logrotate")
            );
        }

        // --- prometheus ---------------------------------------------------------
        let rules = f("/etc/prometheus/rules/strata-alerts.yml");
        let prom = f("/etc/prometheus/prometheus.yml");
        let o = run(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
        assert!(
            o.status.success(),
            "{}: promtool check rules\n{}",
            ctx("rules"),
            text(&o)
        );
        let alerts: BTreeSet<String> = load_yaml(&rules)["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|g| {
                g["rules"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|r| s(&r["alert"]))
            })
            .collect();
        for a in [
            "HostDown",
            "ValidatorDown",
            "ValidatorNotProgressing",
            "DiskUsageHigh",
            "DiskUsageCritical",
            "MemoryPressure",
            "ClockSkew",
            "ValidatorSyncLag",
            "Watchdog",
        ] {
            assert!(alerts.contains(a), "{}: alert {a} missing", ctx("rules"));
        }
        // The rules' unit tests, against the rendered rules (the test file names them
        // as strata-alerts.yml next to it).
        let tests = f("/etc/prometheus/tests/strata-alerts.test.yml");
        let rt = tempfile::tempdir().unwrap();
        fs::copy(&rules, rt.path().join("strata-alerts.yml")).unwrap();
        fs::copy(&tests, rt.path().join("strata-alerts.test.yml")).unwrap();
        let o = run(Command::new(&promtool)
            .args(["test", "rules", "strata-alerts.test.yml"])
            .current_dir(rt.path()));
        assert!(
            o.status.success(),
            "{}: promtool test rules\n{}",
            ctx("rules tests"),
            text(&o)
        );
        // As rendered (the absolute rule_files glob matches nothing here, or
        // whatever the machine has: promtool accepts both).
        let o = run(Command::new(&promtool).args(["check", "config"]).arg(&prom));
        assert!(
            o.status.success(),
            "{}: promtool check config\n{}",
            ctx("prometheus.yml"),
            text(&o)
        );
        // And as on the node, where the rules file is already in place: point
        // the glob at the rendered rules so promtool checks both together.
        let pt = tempfile::tempdir().unwrap();
        let prom_text = fs::read_to_string(&prom).unwrap();
        assert!(
            prom_text.contains("/etc/prometheus/rules/*.yml"),
            "{}: rule_files",
            ctx("prometheus.yml")
        );
        let prom_copy = pt.path().join("prometheus.yml");
        let rules_glob = format!("{}/*.yml", rules.parent().unwrap().display());
        fs::write(
            &prom_copy,
            prom_text.replace("/etc/prometheus/rules/*.yml", &rules_glob),
        )
        .unwrap();
        let o = run(Command::new(&promtool)
            .args(["check", "config"])
            .arg(&prom_copy));
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rules found"),
            "{}: promtool check config with rules in place\n{}",
            ctx("prometheus.yml"),
            text(&o)
        );

        // Fleet-dependent jobs: every validator, itself included, by its address
        // (tests/monitoring.rs checks the topology in detail).
        let pv = load_yaml(&prom);
        assert!(
            pv["global"]["external_labels"]["node"].is_null(),
            "[{node}] no observer label on alerts"
        );
        let jobs = pv["scrape_configs"].as_sequence().unwrap();
        let job = |name: &str| {
            jobs.iter()
                .find(|j| j["job_name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("[{node}] prometheus.yml: job {name} missing"))
        };
        let mut got = BTreeSet::new();
        for sc in job("validator")["static_configs"].as_sequence().unwrap() {
            for t in sc["targets"].as_sequence().unwrap() {
                got.insert((s(t), s(&sc["labels"]["node"]), s(&sc["labels"]["region"])));
            }
        }
        let want: BTreeSet<_> = validators
            .iter()
            .map(|v| {
                (
                    format!(
                        "{}:{}",
                        v.address,
                        s(&var(&v.name, "validator.metrics_port"))
                    ),
                    v.name.clone(),
                    v.region.clone(),
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "[{node}] job validator must list every validator"
        );
        let am_targets: BTreeSet<String> = pv["alerting"]["alertmanagers"][0]["static_configs"][0]
            ["targets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        let want_am: BTreeSet<String> = validators
            .iter()
            .map(|v| format!("{}:{}", v.address, s(&var(&v.name, "alertmanager.port"))))
            .collect();
        assert_eq!(am_targets, want_am, "[{node}] every Alertmanager");

        // --- alertmanager -------------------------------------------------------
        let am = f("/etc/prometheus/alertmanager.yml");
        let o = run(Command::new(&amtool).arg("check-config").arg(&am));
        assert!(
            o.status.success(),
            "{}: amtool check-config\n{}",
            ctx("alertmanager.yml"),
            text(&o)
        );
        let am_text = fs::read_to_string(&am).unwrap();
        for canary in [
            CANARY_TELEGRAM,
            CANARY_DISCORD,
            CANARY_SMTP,
            CANARY_PAGERDUTY,
            CANARY_HEARTBEAT,
        ] {
            assert!(
                am_text.contains(canary),
                "{}: env() secret not rendered into it",
                ctx("alertmanager.yml")
            );
        }
        let amv = load_yaml(&am);
        let receivers = amv["receivers"].as_sequence().unwrap();
        let receiver = |n: &str| {
            receivers
                .iter()
                .find(|r| r["name"].as_str() == Some(n))
                .unwrap()
        };
        let route_for = |sev: &str| {
            amv["route"]["routes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|r| {
                    r["matchers"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .any(|m| s(m).starts_with("severity=~") && s(m).contains(sev))
                })
                .map(|r| s(&r["receiver"]))
                .unwrap_or_else(|| panic!("[{node}] no route for severity {sev}"))
        };
        for sev in ["P0", "P1"] {
            let page = receiver(&route_for(sev));
            for kind in ["pagerduty_configs", "telegram_configs", "email_configs"] {
                assert!(
                    page[kind].is_sequence(),
                    "[{node}] {sev} receiver lacks {kind}"
                );
            }
        }
        for sev in ["P2", "P3"] {
            let batched = receiver(&route_for(sev));
            for kind in ["discord_configs", "email_configs"] {
                assert!(
                    batched[kind].is_sequence(),
                    "[{node}] {sev} receiver lacks {kind}"
                );
            }
            assert!(
                batched["pagerduty_configs"].is_null(),
                "[{node}] {sev} must not page"
            );
        }

        // --- node_exporter ------------------------------------------------------
        let ne = fs::read_to_string(f("/etc/default/prometheus-node-exporter")).unwrap();
        let args = ne
            .lines()
            .find(|l| l.starts_with("ARGS=\""))
            .expect("ARGS line");
        assert!(
            args.ends_with('"') && args.matches('"').count() == 2,
            "[{node}] ARGS quoting: {args}"
        );
        assert!(args.contains(&format!(":{} ", s(&var(node, "node_exporter.port")))));
        for c in var(node, "node_exporter.collectors").as_sequence().unwrap() {
            assert!(
                args.contains(&format!("--collector.{} ", s(c)))
                    || args.contains(&format!("--collector.{}\"", s(c)))
            );
        }

        // --- log shipper: alloy by default, promtail only as an option -----------
        // (tests/monitoring.rs checks both configs' structure.)
        assert!(modules.contains("alloy") && !modules.contains("promtail"));
        assert!(f("/etc/alloy/config.alloy").exists());
        assert!(!f("/etc/promtail/config.yml").exists());

        // --- loki (monitoring group only) ---------------------------------------
        let loki_path = f("/etc/loki/config.yml");
        assert_eq!(
            modules.contains("loki"),
            loki_path.exists(),
            "[{node}] loki config presence"
        );
        if modules.contains("loki") {
            let lk = load_yaml(&loki_path);
            assert_eq!(get(&lk, "auth_enabled"), &Value::Bool(false));
            assert_eq!(s(get(&lk, "common.ring.kvstore.store")), "inmemory");
            assert_eq!(s(get(&lk, "common.replication_factor")), "1");
            assert!(!get(&lk, "common.storage.filesystem.chunks_directory").is_null());
            assert_eq!(s(get(&lk, "schema_config.configs.0.store")), "tsdb");
            assert_eq!(s(get(&lk, "schema_config.configs.0.schema")), "v13");
            assert_eq!(
                s(get(&lk, "schema_config.configs.0.object_store")),
                "filesystem"
            );
            assert_eq!(s(get(&lk, "schema_config.configs.0.index.period")), "24h");
            assert_eq!(
                s(get(&lk, "limits_config.retention_period")),
                s(&var(node, "loki.retention_period"))
            );
            assert_eq!(get(&lk, "compactor.retention_enabled"), &Value::Bool(true));
            assert_eq!(s(get(&lk, "compactor.delete_request_store")), "filesystem");
            assert_eq!(
                s(get(&lk, "server.http_listen_port")),
                s(&var(node, "loki.http_port"))
            );
        }
    }
}
