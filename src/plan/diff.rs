//! Diff (pure): desired state + live state -> the node's plan, in apply order.

use crate::model::*;
use crate::model::{LiveFirewall, LiveState, PathState};
use sha2::{Digest, Sha256};

pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn lines(s: &str) -> usize {
    s.lines().count()
}

fn meta_details(mode: u32, owner: &str, group: &str, live: &PathState) -> Vec<String> {
    let mut out = Vec::new();
    if let PathState::Present {
        mode: lm,
        owner: lo,
        group: lg,
    } = live
    {
        if *lm != mode {
            out.push(format!("mode {} -> {}", fmt_mode(*lm), fmt_mode(mode)));
        }
        if lo != owner || lg != group {
            out.push(format!("owner {lo}:{lg} -> {owner}:{group}"));
        }
    }
    out
}

/// Unified diff, live -> desired, 3 lines of context.
pub fn unified(live: &str, desired: &str, path: &str) -> String {
    similar::TextDiff::from_lines(live, desired)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (live)"), &format!("{path} (desired)"))
        .to_string()
}

pub fn diff(desired: &DesiredState, live: &LiveState) -> NodePlan {
    let mut plan = NodePlan::default();
    for r in &desired.resources {
        let id = r.key();
        let ch = |action, details, ops| Change {
            id: id.clone(),
            action,
            details,
            diff: None,
            secret: false,
            handlers: Vec::new(),
            ops,
            cause: Default::default(),
            restore_from: None,
        };
        match r {
            Resource::File(f) => {
                let Some(lf) = live.files.get(&f.dest) else {
                    continue;
                };
                let want_sha = sha256_hex(f.content.as_bytes());
                match &lf.state {
                    PathState::Missing => {
                        let mut c = ch(
                            Action::Add,
                            vec![format!(
                                "{} {}:{}, {} lines",
                                fmt_mode(f.mode),
                                f.owner,
                                f.group,
                                lines(&f.content)
                            )],
                            vec![Op::Write],
                        );
                        c.secret = f.secret;
                        if !f.secret {
                            c.diff = Some(unified("", &f.content, &f.dest));
                        }
                        c.handlers = f.notify.clone();
                        plan.changes.push(c);
                    }
                    PathState::Other { what } => {
                        let mut c = ch(
                            Action::Change,
                            vec![format!("a {what} is there; it will be replaced by a file")],
                            vec![Op::Write],
                        );
                        c.secret = f.secret;
                        c.handlers = f.notify.clone();
                        plan.changes.push(c);
                    }
                    PathState::Present { .. } => {
                        let mut details = Vec::new();
                        let mut ops = Vec::new();
                        let content_changed = lf.sha256.as_deref() != Some(want_sha.as_str());
                        let mut c = ch(Action::Change, vec![], vec![]);
                        c.secret = f.secret;
                        if content_changed {
                            ops.push(Op::Write);
                            c.handlers = f.notify.clone();
                            match (&lf.content, f.secret) {
                                (Some(old), false) => {
                                    let old = String::from_utf8_lossy(old);
                                    c.diff = Some(unified(&old, &f.content, &f.dest));
                                    details.push("content changed".into());
                                }
                                _ => {
                                    // Secret: say that it changed and how many lines, nothing more.
                                    details.push(format!(
                                        "secret content changed ({} lines)",
                                        lines(&f.content)
                                    ));
                                }
                            }
                        }
                        let meta = meta_details(f.mode, &f.owner, &f.group, &lf.state);
                        if !meta.is_empty() && !content_changed {
                            ops.push(Op::Meta);
                        }
                        details.extend(meta);
                        if !details.is_empty() {
                            c.details = details;
                            c.ops = ops;
                            plan.changes.push(c);
                        }
                    }
                }
            }
            Resource::Directory(d) => match live.dirs.get(&d.path) {
                Some(PathState::Missing) => plan.changes.push(ch(
                    Action::Add,
                    vec![format!("{} {}:{}", fmt_mode(d.mode), d.owner, d.group)],
                    vec![Op::Create],
                )),
                Some(PathState::Other { what }) => plan.changes.push(ch(
                    Action::Change,
                    vec![format!(
                        "a {what} is there, not a directory (will not be replaced)"
                    )],
                    vec![Op::Create],
                )),
                Some(st @ PathState::Present { .. }) => {
                    let m = meta_details(d.mode, &d.owner, &d.group, st);
                    if !m.is_empty() {
                        plan.changes.push(ch(Action::Change, m, vec![Op::Meta]));
                    }
                }
                None => {}
            },
            Resource::KeyFile(k) => match live.key_files.get(&k.path) {
                Some(PathState::Missing) => plan.warnings.push(format!(
                    "{id} is missing: place it by hand, {}:{} mode {} (strata never copies keys)",
                    k.owner,
                    k.group,
                    fmt_mode(k.mode)
                )),
                Some(PathState::Other { what }) => plan
                    .warnings
                    .push(format!("{id}: a {what} is there, not a key file")),
                Some(st @ PathState::Present { .. }) => {
                    let m = meta_details(k.mode, &k.owner, &k.group, st);
                    if !m.is_empty() {
                        plan.changes.push(ch(Action::Change, m, vec![Op::Meta]));
                    }
                }
                None => {}
            },
            Resource::User(u) => match live.users.get(&u.name) {
                Some(None) => plan.changes.push(ch(
                    Action::Add,
                    vec![format!(
                        "{}{}",
                        if u.system { "system user" } else { "user" },
                        u.home
                            .as_ref()
                            .map(|h| format!(", home {h}"))
                            .unwrap_or_default()
                    )],
                    vec![Op::Create],
                )),
                Some(Some(lu)) => {
                    let mut d = Vec::new();
                    if let Some(sh) = &u.shell {
                        if sh != &lu.shell {
                            d.push(format!("shell {} -> {sh}", lu.shell));
                        }
                    }
                    let missing: Vec<_> = u
                        .groups
                        .iter()
                        .filter(|g| !lu.groups.contains(g))
                        .cloned()
                        .collect();
                    if !missing.is_empty() {
                        d.push(format!("add to groups {}", missing.join(",")));
                    }
                    if !d.is_empty() {
                        plan.changes.push(ch(Action::Change, d, vec![Op::Meta]));
                    }
                }
                None => {}
            },
            Resource::Package(p) => {
                if live.packages.get(&p.name) == Some(&false) {
                    plan.changes.push(ch(
                        Action::Add,
                        vec!["install (apt)".into()],
                        vec![Op::Install],
                    ));
                }
            }
            Resource::Service(s) => {
                let Some(ls) = live.services.get(&s.name) else {
                    continue;
                };
                let mut d = Vec::new();
                let mut ops = Vec::new();
                let is_enabled = matches!(
                    ls.unit_file.as_str(),
                    "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated"
                );
                if ls.load == "not-found" {
                    d.push("unit not installed yet".to_string());
                }
                if s.enabled && !is_enabled {
                    d.push(format!("enabled: {} -> enabled", or_none(&ls.unit_file)));
                    ops.push(Op::Enable);
                } else if !s.enabled && ls.unit_file == "enabled" {
                    d.push("enabled: enabled -> disabled".into());
                    ops.push(Op::Disable);
                }
                let running =
                    ls.active == "active" || ls.active == "reloading" || ls.active == "activating";
                match s.state {
                    ServiceState::Started if !running => {
                        d.push(format!("state: {} -> active", or_none(&ls.active)));
                        ops.push(Op::Start);
                    }
                    ServiceState::Stopped if running => {
                        d.push(format!("state: {} -> inactive", ls.active));
                        ops.push(Op::Stop);
                    }
                    _ => {}
                }
                if !ops.is_empty() {
                    plan.changes.push(ch(Action::Change, d, ops));
                }
            }
            Resource::Firewall(fw) => {
                if let Some(lfw) = &live.firewall {
                    firewall(fw, lfw, &mut plan);
                }
            }
        }
    }
    plan
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "none"
    } else {
        s
    }
}

fn firewall(fw: &FirewallRes, live: &LiveFirewall, plan: &mut NodePlan) {
    let base = |id: ChangeId, action, details, ops| Change {
        id,
        action,
        details,
        diff: None,
        secret: false,
        handlers: vec![],
        ops,
        cause: Default::default(),
        restore_from: None,
    };
    // Not installed yet (its package comes with this apply): every rule is added, then the
    // defaults, then enable - never an enabled firewall without the SSH rule.
    let missing = live.status == "missing";
    if missing {
        plan.changes.push(base(
            ChangeId::Firewall,
            Action::Add,
            vec![format!(
                "ufw is not installed yet: default incoming {}, outgoing {}, then enable",
                fw.default_incoming, fw.default_outgoing
            )],
            vec![Op::FwDefaults, Op::FwEnable],
        ));
    }
    let mut d = Vec::new();
    let mut ops = Vec::new();
    if !missing
        && (live.default_incoming != fw.default_incoming
            || live.default_outgoing != fw.default_outgoing)
    {
        if live.default_incoming != fw.default_incoming {
            d.push(format!(
                "default incoming {} -> {}",
                live.default_incoming, fw.default_incoming
            ));
        }
        if live.default_outgoing != fw.default_outgoing {
            d.push(format!(
                "default outgoing {} -> {}",
                live.default_outgoing, fw.default_outgoing
            ));
        }
        ops.push(Op::FwDefaults);
    }
    if !missing && live.status != "active" {
        d.push(format!("status: {} -> active", live.status));
        ops.push(Op::FwEnable);
    }
    if !ops.is_empty() {
        plan.changes
            .push(base(ChangeId::Firewall, Action::Change, d, ops));
    }
    for r in &fw.rules {
        match live.rules.iter().find(|l| l.same(r)) {
            // The id says the rule; the details add only its comment.
            None => plan.changes.push(base(
                ChangeId::rule(r),
                Action::Add,
                r.comment.iter().map(|c| format!("({c})")).collect(),
                vec![Op::FwAdd],
            )),
            Some(l) if l.comment != r.comment => plan.changes.push(base(
                ChangeId::rule(r),
                Action::Change,
                vec![format!(
                    "comment {:?} -> {:?}",
                    l.comment.as_deref().unwrap_or(""),
                    r.comment.as_deref().unwrap_or("")
                )],
                vec![Op::FwAdd],
            )),
            Some(_) => {}
        }
    }
    for l in &live.rules {
        if !fw.rules.iter().any(|r| l.same(r)) {
            plan.changes.push(base(
                ChangeId::rule(l),
                Action::Remove,
                vec![format!(
                    "not declared{}",
                    l.comment
                        .as_ref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                )],
                vec![Op::FwDelete],
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LiveFile, LiveService};

    fn file(dest: &str, content: &str, secret: bool) -> Resource {
        Resource::File(FileRes {
            dest: dest.into(),
            content: content.into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            validate: None,
            validate_local: None,
            secret,
            notify: vec!["restart app".into()],
            module: "m".into(),
        })
    }

    fn desired(resources: Vec<Resource>) -> DesiredState {
        crate::model::testing::desired("v-1", resources)
    }

    fn present(content: &str, mode: u32) -> LiveFile {
        LiveFile {
            state: PathState::Present {
                mode,
                owner: "root".into(),
                group: "root".into(),
            },
            sha256: Some(sha256_hex(content.as_bytes())),
            content: Some(content.as_bytes().to_vec()),
        }
    }

    #[test]
    fn converged_file_has_no_change() {
        let d = desired(vec![file("/etc/a", "x\n", false)]);
        let mut live = LiveState::default();
        live.files.insert("/etc/a".into(), present("x\n", 0o644));
        assert!(diff(&d, &live).is_empty());
    }

    #[test]
    fn content_change_has_unified_diff_and_handlers() {
        let d = desired(vec![file("/etc/a", "a\nb\nc\n", false)]);
        let mut live = LiveState::default();
        live.files
            .insert("/etc/a".into(), present("a\nB\nc\n", 0o600));
        let p = diff(&d, &live);
        assert_eq!(p.changes.len(), 1);
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Change);
        assert_eq!(c.details, vec!["content changed", "mode 0600 -> 0644"]);
        assert_eq!(
            c.diff.as_deref().unwrap(),
            "--- /etc/a (live)\n+++ /etc/a (desired)\n@@ -1,3 +1,3 @@\n a\n-B\n+b\n c\n"
        );
        assert_eq!(p.handlers(), vec![Handler::parse("restart app")]);
    }

    #[test]
    fn mode_only_change_runs_no_handler() {
        let d = desired(vec![file("/etc/a", "x\n", false)]);
        let mut live = LiveState::default();
        live.files.insert("/etc/a".into(), present("x\n", 0o666));
        let p = diff(&d, &live);
        assert_eq!(p.changes[0].details, vec!["mode 0666 -> 0644"]);
        assert_eq!(p.changes[0].ops, vec![Op::Meta]);
        assert!(p.handlers().is_empty());
    }

    #[test]
    fn secret_diff_says_only_that_it_changed() {
        let d = desired(vec![file("/etc/s", "token: hunter2\nx\n", true)]);
        let mut live = LiveState::default();
        live.files.insert(
            "/etc/s".into(),
            LiveFile {
                content: None,
                ..present("token: old\n", 0o644)
            },
        );
        let p = diff(&d, &live);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("old"), "{json}");
        assert_eq!(
            p.changes[0].details,
            vec!["secret content changed (2 lines)"]
        );
        assert!(p.changes[0].diff.is_none());
    }

    #[test]
    fn services_and_missing_key_files() {
        let d = desired(vec![
            Resource::Service(ServiceRes {
                name: "app".into(),
                enabled: true,
                state: ServiceState::Started,
                module: "m".into(),
            }),
            Resource::KeyFile(KeyFileRes {
                path: "/k".into(),
                owner: "monad".into(),
                group: "monad".into(),
                mode: 0o600,
                module: "m".into(),
            }),
        ]);
        let mut live = LiveState::default();
        live.services.insert(
            "app".into(),
            LiveService {
                load: "loaded".into(),
                unit_file: "disabled".into(),
                active: "failed".into(),
            },
        );
        live.key_files.insert("/k".into(), PathState::Missing);
        let p = diff(&d, &live);
        assert_eq!(
            p.changes[0].details,
            vec!["enabled: disabled -> enabled", "state: failed -> active"]
        );
        assert_eq!(
            p.changes.len(),
            1,
            "a missing key is a warning, not a change strata can make"
        );
        assert!(
            p.warnings[0].contains("monad:monad mode 0600"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn firewall_extra_rule_is_removed_missing_added_inactive_enabled() {
        let rule = |port: &str, from: &str| FwRule {
            action: "allow".into(),
            port: port.into(),
            proto: "tcp".into(),
            from: from.into(),
            comment: None,
        };
        let d = desired(vec![Resource::Firewall(FirewallRes {
            default_incoming: "deny".into(),
            default_outgoing: "allow".into(),
            rules: vec![rule("22", "any"), rule("9100", "10.0.0.0/8")],
            module: "ufw".into(),
        })]);
        let mut live = LiveState::default();
        live.firewall = Some(LiveFirewall {
            status: "inactive".into(),
            default_incoming: "deny".into(),
            default_outgoing: "allow".into(),
            rules: vec![rule("22", "any"), rule("3306", "any")],
        });
        let p = diff(&d, &live);
        let got: Vec<_> = p
            .changes
            .iter()
            .map(|c| (c.action, c.id.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Action::Change, "firewall:ufw".to_string()),
                (Action::Add, "ufw:allow 9100/tcp from 10.0.0.0/8".into()),
                (Action::Remove, "ufw:allow 3306/tcp from any".into()),
            ]
        );
        // ufw not installed yet (a fresh host): every rule is added before it is enabled.
        live.firewall = Some(LiveFirewall {
            status: "missing".into(),
            default_incoming: String::new(),
            default_outgoing: String::new(),
            rules: vec![],
        });
        let p = diff(&d, &live);
        let got: Vec<_> = p
            .changes
            .iter()
            .map(|c| (c.action, c.id.to_string(), c.ops.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Action::Add,
                    "firewall:ufw".to_string(),
                    vec![Op::FwDefaults, Op::FwEnable]
                ),
                (
                    Action::Add,
                    "ufw:allow 22/tcp from any".into(),
                    vec![Op::FwAdd]
                ),
                (
                    Action::Add,
                    "ufw:allow 9100/tcp from 10.0.0.0/8".into(),
                    vec![Op::FwAdd]
                ),
            ]
        );
    }
}
