//! Drift vs pending (pure). apply records, per resource, a key of the state it left behind;
//! a plan compares that key with what the node has now (drift: someone changed the node) and
//! with what the repo wants now (pending: the repo moved since the last apply).

use crate::model::*;
use crate::model::{Action, NodePlan};
use crate::model::{LiveState, PathState};
use std::collections::BTreeMap;

fn h(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex()[..24].to_string()
}

fn meta(mode: u32, owner: &str, group: &str) -> String {
    format!("{} {owner}:{group}", fmt_mode(mode))
}

fn path_key(kind: &str, st: Option<&PathState>) -> String {
    match st {
        Some(PathState::Present { mode, owner, group }) => {
            format!("{kind} {}", meta(*mode, owner, group))
        }
        Some(PathState::Missing) | None => "missing".into(),
        Some(PathState::Other { kind }) => format!("other {}", kind.describe()),
    }
}

fn enabled_word(unit_file: &str) -> &'static str {
    match unit_file {
        "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated" => "enabled",
        _ => "disabled",
    }
}

fn running_word(active: &str) -> &'static str {
    match active {
        "active" | "reloading" | "activating" => "started",
        _ => "stopped",
    }
}

/// The state key of each desired resource, as it is once applied.
pub fn desired_keys(d: &DesiredState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in &d.resources {
        let key = match r {
            Resource::File(f) => format!(
                "file {} {}",
                crate::model::sha256_hex(f.content.as_bytes()),
                meta(f.mode, &f.owner, &f.group)
            ),
            Resource::Directory(x) => format!("dir {}", meta(x.mode, &x.owner, &x.group)),
            Resource::KeyFile(k) => format!("key {}", meta(k.mode, &k.owner, &k.group)),
            Resource::User(u) => format!("user {}", u.shell.as_deref().unwrap_or("-")),
            Resource::Package(_) => "installed".into(),
            Resource::Service(s) => format!(
                "svc {} {}",
                if s.enabled { "enabled" } else { "disabled" },
                if s.state == ServiceState::Started {
                    "started"
                } else {
                    "stopped"
                }
            ),
            Resource::Firewall(fw) => {
                for rule in &fw.rules {
                    out.insert(
                        format!("ufw:{}", rule.key()),
                        h(rule.comment.as_deref().unwrap_or("")),
                    );
                }
                format!("fw active {} {}", fw.default_incoming, fw.default_outgoing)
            }
            Resource::Artifact(a) => format!("artifact {} {}", a.version, a.sha256),
            Resource::AptRepository(r) => format!(
                "apt {} {}",
                crate::model::sha256_hex(r.sources.as_bytes()),
                crate::model::sha256_hex(r.key.as_bytes())
            ),
        };
        out.insert(r.id(), h(&key));
    }
    out
}

/// The same keys, computed from what the node has now (only for resources we probed).
pub fn live_keys(d: &DesiredState, live: &LiveState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in &d.resources {
        let key = match r {
            Resource::File(f) => match live.files.get(&f.dest) {
                Some(lf) => match (&lf.state, &lf.sha256) {
                    (PathState::Present { mode, owner, group }, Some(sha)) => {
                        format!("file {sha} {}", meta(*mode, owner, group))
                    }
                    (st, _) => path_key("file", Some(st)),
                },
                None => continue,
            },
            Resource::Directory(x) => path_key("dir", live.dirs.get(&x.path)),
            Resource::KeyFile(k) => path_key("key", live.key_files.get(&k.path)),
            Resource::User(u) => match live.users.get(&u.name) {
                Some(Some(lu)) => format!(
                    "user {}",
                    if u.shell.is_some() {
                        lu.shell.as_str()
                    } else {
                        "-"
                    }
                ),
                _ => "missing".into(),
            },
            Resource::Package(p) => if live.installed(&p.name) {
                "installed"
            } else {
                "absent"
            }
            .into(),
            Resource::Service(s) => match live.services.get(&s.name) {
                Some(ls) => format!(
                    "svc {} {}",
                    enabled_word(&ls.unit_file),
                    running_word(&ls.active)
                ),
                None => continue,
            },
            Resource::AptRepository(r) => {
                let sha = |p: &str| live.files.get(p).and_then(|f| f.sha256.clone());
                match (sha(&r.sources_path), sha(&r.key_path)) {
                    (Some(s), Some(k)) => format!("apt {s} {k}"),
                    _ => "missing".into(),
                }
            }
            Resource::Artifact(a) => match live.artifacts.get(&a.name) {
                Some(la) => match la.current.version() {
                    Some(v) => format!("artifact {v} {}", la.current_sha.as_deref().unwrap_or("-")),
                    None => "missing".into(),
                },
                None => continue,
            },
            Resource::Firewall(_) => match &live.firewall {
                Some(fw) => {
                    for rule in &fw.rules {
                        out.insert(
                            format!("ufw:{}", rule.key()),
                            h(rule.comment.as_deref().unwrap_or("")),
                        );
                    }
                    format!(
                        "fw {} {} {}",
                        fw.status, fw.default_incoming, fw.default_outgoing
                    )
                }
                None => continue,
            },
        };
        out.insert(r.id(), h(&key));
    }
    out
}

/// Class every change of a plan, given the node's record of its last apply.
pub fn classify(plan: &mut NodePlan, d: &DesiredState, live: &LiveState, record: Option<&Record>) {
    let Some(rec) = record else {
        for c in &mut plan.changes {
            c.cause = Cause::Unrecorded;
        }
        return;
    };
    let want = desired_keys(d);
    let have = live_keys(d, live);
    for c in &mut plan.changes {
        let key = c.id.to_string();
        let applied = rec.resources.get(&key);
        let (pending, drift) = if matches!(c.id, ChangeId::Rule(_) | ChangeId::ForeignRule(_)) {
            // Rules are present or not; a recorded rule was applied by strata.
            match c.action {
                // Declared, not on the node: drift if strata had put it there.
                Action::Add => (applied.is_none(), applied.is_some()),
                // On the node, not declared: pending if strata had put it there (repo dropped it).
                Action::Remove => (applied.is_some(), applied.is_none()),
                // Comment differs.
                Action::Change => (applied != want.get(&key), applied != have.get(&key)),
            }
        } else if applied.is_none() {
            // strata never managed it at the recorded revision: the repo started to (or a
            // rollback drops it); whatever is on the node is not a departure from an apply.
            (true, false)
        } else {
            (applied != want.get(&key), applied != have.get(&key))
        };
        c.cause = match (drift, pending) {
            (true, true) => Cause::Both,
            (true, false) => Cause::Drift,
            (false, true) => Cause::Pending,
            // Live matches the record and the record matches the repo, yet a change: the
            // record predates a strata upgrade or was edited; call it drift, the safer word.
            (false, false) => Cause::Drift,
        };
    }
}

/// (drifted, pending) counts; `Both` counts in each.
pub fn counts(plan: &NodePlan) -> (usize, usize) {
    let d = plan
        .changes
        .iter()
        .filter(|c| matches!(c.cause, Cause::Drift | Cause::Both))
        .count();
    let p = plan
        .changes
        .iter()
        .filter(|c| matches!(c.cause, Cause::Pending | Cause::Both))
        .count();
    (d, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LiveFile, LiveFirewall};
    use crate::plan::diff::diff;

    fn state(content: &str, rules: &[&str]) -> DesiredState {
        let rule = |p: &str| FwRule {
            action: "allow".into(),
            port: p.into(),
            proto: "tcp".into(),
            from: "any".into(),
            comment: None,
        };
        let file = |dest: &str, content: &str| {
            Resource::File(FileRes {
                dest: dest.into(),
                content: content.into(),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                validate: None,
                validate_local: None,
                secret: false,
                notify: vec![],
                module: "m".into(),
            })
        };
        crate::model::testing::desired(
            "n",
            vec![
                file("/etc/a", content),
                file("/etc/b", "b\n"),
                Resource::Firewall(FirewallRes {
                    default_incoming: "deny".into(),
                    default_outgoing: "allow".into(),
                    rules: rules.iter().map(|p| rule(p)).collect(),
                    module: "ufw".into(),
                }),
            ],
        )
    }

    /// The live state exactly as `d` would leave it.
    fn applied(d: &DesiredState) -> LiveState {
        let mut live = LiveState::default();
        for r in &d.resources {
            match r {
                Resource::File(f) => {
                    live.files.insert(
                        f.dest.clone(),
                        LiveFile {
                            state: PathState::Present {
                                mode: f.mode,
                                owner: f.owner.clone(),
                                group: f.group.clone(),
                            },
                            sha256: Some(crate::model::sha256_hex(f.content.as_bytes())),
                            content: Some(f.content.as_bytes().to_vec()),
                        },
                    );
                }
                Resource::Firewall(fw) => {
                    live.firewall = Some(LiveFirewall {
                        status: "active".into(),
                        default_incoming: fw.default_incoming.clone(),
                        default_outgoing: fw.default_outgoing.clone(),
                        rules: fw.rules.clone(),
                        ..Default::default()
                    })
                }
                _ => {}
            }
        }
        live
    }

    fn record(d: &DesiredState) -> Record {
        Record {
            applied_at: 0,
            applied_by: "t".into(),
            commit: None,
            desired_fingerprint: d.fingerprint(),
            resources: desired_keys(d),
            revision: "1".into(),
            kind: "apply".into(),
            rolled_back_from: None,
            history: vec![],
        }
    }

    #[test]
    fn history_is_newest_first_bounded_and_unique() {
        let d = state("a\n", &[]);
        let mut prev = record(&d);
        for rev in ["2", "3", "4"] {
            let r = Record {
                revision: rev.into(),
                ..record(&d)
            };
            prev = r.with_history(Some(&prev), 3);
        }
        let revs: Vec<&str> = prev.history.iter().map(|h| h.revision.as_str()).collect();
        assert_eq!(revs, ["4", "3", "2"]);
        // A rollback to 3 puts 3 first and drops its older entry.
        let back = Record {
            revision: "3".into(),
            kind: "rollback".into(),
            rolled_back_from: Some("4".into()),
            ..record(&d)
        }
        .with_history(Some(&prev), 3);
        let revs: Vec<(&str, &str)> = back
            .history
            .iter()
            .map(|h| (h.revision.as_str(), h.kind.as_str()))
            .collect();
        assert_eq!(revs, [("3", "rollback"), ("4", "apply"), ("2", "apply")]);
        // A record from a strata without history still counts as the previous revision.
        let old = record(&d);
        let next = Record {
            revision: "9".into(),
            ..record(&d)
        }
        .with_history(Some(&old), 5);
        assert_eq!(next.history.len(), 2);
    }

    fn causes(d: &DesiredState, live: &LiveState, rec: Option<&Record>) -> Vec<(String, Cause)> {
        let mut p = diff(d, live);
        classify(&mut p, d, live, rec);
        p.changes
            .iter()
            .map(|c| (c.id.to_string(), c.cause))
            .collect()
    }

    #[test]
    fn keys_of_an_applied_node_match_the_record() {
        let d = state("a\n", &["22"]);
        assert_eq!(live_keys(&d, &applied(&d)), desired_keys(&d));
    }

    #[test]
    fn hand_edit_is_drift_repo_change_is_pending_both_is_both() {
        let old = state("a\n", &["22"]);
        let rec = record(&old);
        // Hand edit of /etc/b on an unchanged repo: drift.
        let mut live = applied(&old);
        live.files.get_mut("/etc/b").unwrap().sha256 = Some("0".repeat(64));
        assert_eq!(
            causes(&old, &live, Some(&rec)),
            vec![("file:/etc/b".into(), Cause::Drift)]
        );
        // Repo changed /etc/a and the node is as applied: pending.
        let new = state("a2\n", &["22"]);
        assert_eq!(
            causes(&new, &applied(&old), Some(&rec)),
            vec![("file:/etc/a".into(), Cause::Pending)]
        );
        // Both on the same file.
        let mut live = applied(&old);
        live.files.get_mut("/etc/a").unwrap().sha256 = Some("1".repeat(64));
        assert_eq!(
            causes(&new, &live, Some(&rec)),
            vec![("file:/etc/a".into(), Cause::Both)]
        );
    }

    #[test]
    fn firewall_rules_added_by_hand_are_drift_dropped_from_repo_are_pending() {
        let old = state("a\n", &["22", "9100"]);
        let rec = record(&old);
        let mut live = applied(&old);
        live.firewall.as_mut().unwrap().rules.push(FwRule {
            action: "allow".into(),
            port: "3306".into(),
            proto: "tcp".into(),
            from: "any".into(),
            comment: None,
        });
        let new = state("a\n", &["22"]);
        let got = causes(&new, &live, Some(&rec));
        assert_eq!(
            got,
            vec![
                ("ufw:allow 9100/tcp from any".into(), Cause::Pending),
                ("ufw:allow 3306/tcp from any".into(), Cause::Drift)
            ]
        );
    }

    #[test]
    fn no_record_means_never_applied() {
        let d = state("a\n", &["22"]);
        let got = causes(
            &d,
            &LiveState {
                files: [(
                    "/etc/a".to_string(),
                    LiveFile {
                        state: PathState::Missing,
                        sha256: None,
                        content: None,
                    },
                )]
                .into(),
                ..applied(&d)
            },
            None,
        );
        assert_eq!(got, vec![("file:/etc/a".into(), Cause::Unrecorded)]);
    }
}
