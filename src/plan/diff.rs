//! Diff (pure): desired state + live state -> the node's plan, in apply order.

use crate::model::*;
use crate::model::{LiveFirewall, LiveState, PathState};

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

/// A change that writes `f` where there is no file of it yet: its whole content as the diff
/// (never for a secret), and the handlers it notifies.
fn with_content(mut c: Change, f: &FileRes) -> Change {
    c.secret = f.secret;
    if !f.secret {
        c.diff = Some(unified("", &f.content, &f.dest));
    }
    c.handlers = f.notify.clone();
    c
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
                        let c = ch(
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
                        plan.changes.push(with_content(c, f));
                    }
                    PathState::Other { kind } if kind.file_may_replace() => {
                        let whose = if matches!(kind, OtherKind::Symlink { .. }) {
                            " (the link itself; its target is not touched)"
                        } else {
                            ""
                        };
                        let c = ch(
                            Action::Change,
                            vec![format!(
                                "{} is there; it will be replaced by a file{whose}, {} {}:{}, {} lines",
                                kind.describe(),
                                fmt_mode(f.mode),
                                f.owner,
                                f.group,
                                lines(&f.content)
                            )],
                            vec![Op::Write],
                        );
                        plan.changes.push(with_content(c, f));
                    }
                    PathState::Other { kind } => plan.refusals.push(format!(
                        "{id}: {} is there; strata will not replace it with a file (move it away by hand)",
                        kind.describe()
                    )),
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
                Some(PathState::Other { kind }) => plan.refusals.push(format!(
                    "{id}: {} is there, not a directory; strata will not replace it or write through it (fix it by hand)",
                    kind.describe()
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
                Some(PathState::Other { kind }) => plan.warnings.push(format!(
                    "{id}: {} is there, not a key file (strata never follows or replaces it)",
                    kind.describe()
                )),
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
                    if let Some(h) = &u.home {
                        if h != &lu.home {
                            d.push(format!("home {} -> {h}", lu.home));
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
                    // Supplementary groups are exactly the declared ones (the primary group
                    // is not one of them); older probes did not say which is primary.
                    if let Some(primary) = &lu.primary {
                        let extra: Vec<_> = lu
                            .groups
                            .iter()
                            .filter(|g| *g != primary && !u.groups.contains(g))
                            .cloned()
                            .collect();
                        if !extra.is_empty() {
                            d.push(format!("remove from groups {}", extra.join(",")));
                        }
                    }
                    if !d.is_empty() {
                        plan.changes.push(ch(Action::Change, d, vec![Op::Meta]));
                    }
                }
                None => {}
            },
            Resource::AptRepository(repo) => {
                if let Some(c) = apt_repository(repo, live, &mut plan.refusals) {
                    plan.changes.push(c);
                }
            }
            Resource::Artifact(a) => {
                if let Some(c) = artifact(a, live.artifacts.get(&a.name), &mut plan.refusals) {
                    plan.changes.push(c);
                }
            }
            Resource::Package(p) => match live.packages.get(&p.name) {
                Some(st) if st != INSTALLED => plan.changes.push(ch(
                    Action::Add,
                    vec![if st.is_empty() {
                        "install (apt)".to_string()
                    } else {
                        format!("install (apt); dpkg says \"{st}\"")
                    }],
                    vec![Op::Install],
                )),
                _ => {}
            },
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
                let gone = ls.load == "not-found" || ls.unit_file == "bad";
                if gone && !provided(desired, live, &s.name) {
                    plan.refusals.push(format!(
                        "{id}: its unit file is gone (systemd: {}) and nothing this plan writes or installs provides it (reinstall its package)",
                        if ls.load == "not-found" { "not-found" } else { "bad" }
                    ));
                    continue;
                }
                if ls.load == "not-found" {
                    d.push("unit not installed yet".to_string());
                }
                let masked = ls.load == "masked" || ls.unit_file.starts_with("masked");
                let wanted = s.enabled || s.state == ServiceState::Started;
                if masked && wanted {
                    if ls.unit_file == "masked-runtime" {
                        d.push("masked (runtime) -> unmasked".into());
                        ops.push(Op::UnmaskRuntime);
                    } else {
                        d.push("masked -> unmasked".into());
                        ops.push(Op::Unmask);
                    }
                }
                if s.enabled && !is_enabled {
                    let was = match ls.unit_file.as_str() {
                        "bad" => "bad (unit file gone)",
                        other => or_none(other),
                    };
                    d.push(format!("enabled: {was} -> enabled"));
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
                    let real = format!("{}.service", s.name);
                    if !ls.id.is_empty() && ls.id != real {
                        d.push(format!("{real} is an alias of {}", ls.id));
                    }
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

/// Does this plan write a unit file for `name`, or install packages (which may bring it)?
/// An artifact's change: fetch the version (unless strata already unpacked that exact
/// download there) and point `current` at it. What strata did not put there is refused.
fn artifact(
    a: &ArtifactRes,
    live: Option<&LiveArtifact>,
    refusals: &mut Vec<String>,
) -> Option<Change> {
    let live = live?;
    let root = a.root();
    let sha = crate::report::resources::short_sha(&a.sha256);
    if live.current == CurrentLink::Other {
        refusals.push(format!(
            "artifact:{}: {root}/current is not a symlink; strata switches versions with a symlink there (move it away by hand)",
            a.name
        ));
        return None;
    }
    let ops = match &live.wanted {
        VersionDir::Foreign => {
            refusals.push(format!(
                "artifact:{}: {root}/{} is there but strata did not install it; remove or rename it by hand",
                a.name, a.version
            ));
            return None;
        }
        VersionDir::Installed(s) if *s != a.sha256 => {
            refusals.push(format!(
                "artifact:{}: {root}/{} was installed from a download with sha256 {}, the config pins {}; give the new build a new version (or remove that directory by hand)",
                a.name, a.version, crate::report::resources::short_sha(s), sha
            ));
            return None;
        }
        VersionDir::Installed(_) if live.current.version() == Some(a.version.as_str()) => {
            return None
        }
        VersionDir::Installed(_) => vec![Op::Switch],
        VersionDir::Missing => vec![Op::Fetch, Op::Switch],
    };
    // A signature is checked when a version is installed, not when it is switched back to.
    let kept = match &a.signature {
        _ if !ops.contains(&Op::Fetch) => ", already on the node".to_string(),
        Some(sig) => format!(", signed by {}", sig.signer()),
        None => String::new(),
    };
    let (action, detail) = match live.current.version() {
        None => (Action::Add, format!("{} (sha256 {sha}){kept}", a.version)),
        Some(from) => (
            Action::Change,
            format!("{from} -> {} (sha256 {sha}){kept}", a.version),
        ),
    };
    Some(Change {
        id: ChangeId::Artifact(a.name.clone()),
        action,
        details: vec![detail],
        diff: None,
        secret: false,
        handlers: a.notify.clone(),
        ops,
        cause: Default::default(),
        restore_from: None,
    })
}

/// An apt repository's sources entry and key, as files: added, or changed (the entry's
/// diff shown; the key said to have changed). Anything but a regular file there is refused.
fn apt_repository(r: &AptRepoRes, live: &LiveState, refusals: &mut Vec<String>) -> Option<Change> {
    let id = ChangeId::AptRepository(r.name.clone());
    let (src, key) = (
        live.files.get(&r.sources_path)?,
        live.files.get(&r.key_path)?,
    );
    for (path, f) in [(&r.sources_path, src), (&r.key_path, key)] {
        if let PathState::Other { kind } = &f.state {
            refusals.push(format!(
                "{id}: {} is at {path}; strata will not replace it (move it away by hand)",
                kind.describe()
            ));
            return None;
        }
    }
    let same = |f: &LiveFile, want: &str| {
        f.sha256.as_deref() == Some(sha256_hex(want.as_bytes()).as_str())
            && matches!(&f.state, PathState::Present { mode: 0o644, owner, group } if owner == "root" && group == "root")
    };
    let (src_ok, key_ok) = (same(src, &r.sources), same(key, &r.key));
    if src_ok && key_ok {
        return None;
    }
    let line = crate::report::resources::repo_line(&r.sources);
    let fresh = src.state == PathState::Missing && key.state == PathState::Missing;
    let mut details = vec![if fresh {
        format!("{line}, signed by {}", r.key_path)
    } else {
        line
    }];
    if !fresh && !key_ok {
        details.push(format!("signing key {} changed", r.key_path));
    }
    let diff = (!fresh && !src_ok).then(|| {
        let old = src
            .content
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        unified(&old, &r.sources, &r.sources_path)
    });
    Some(Change {
        id,
        action: if fresh { Action::Add } else { Action::Change },
        details,
        diff,
        secret: false,
        handlers: Vec::new(),
        ops: vec![Op::Write],
        cause: Default::default(),
        restore_from: None,
    })
}

fn provided(desired: &DesiredState, live: &LiveState, name: &str) -> bool {
    let unit = format!("/{name}.service");
    desired.resources.iter().any(|r| match r {
        Resource::File(f) => f.dest.ends_with(&unit),
        Resource::Package(p) => !live.installed(&p.name),
        _ => false,
    })
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
            Some(l) if live.half.iter().any(|h| h.same(r)) => plan.changes.push(base(
                ChangeId::rule(r),
                Action::Change,
                vec![format!(
                    "in one address family only (its IPv4 or IPv6 twin was deleted); it will be added again{}",
                    if l.comment != r.comment { ", with its comment" } else { "" }
                )],
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
    for f in &live.foreign {
        plan.changes.push(base(
            ChangeId::ForeignRule(f.spec.clone()),
            Action::Remove,
            vec!["not declared (strata declares only incoming rules to any address)".into()],
            vec![Op::FwDelete],
        ));
    }
    for raw in &live.unreadable {
        plan.refusals.push(format!(
            "firewall:ufw: a rule strata cannot read (tuple `{raw}`); delete it by hand (`ufw status numbered`, `ufw delete N`)"
        ));
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

    #[test]
    fn artifacts_install_upgrade_switch_or_are_refused() {
        let sha = "ab".repeat(32);
        let a = ArtifactRes {
            name: "monad".into(),
            version: "0.9.4".into(),
            url: "https://x/monad.tar.gz".into(),
            sha256: sha.clone(),
            format: ArtifactFormat::TarGz,
            install: vec![],
            keep: 3,
            push: false,
            signature: None,
            notify: vec![Handler::Restart("monad-validator".into())],
            module: "v".into(),
        };
        let d = desired(vec![Resource::Artifact(a)]);
        let plan_for = |current: CurrentLink, wanted: VersionDir| {
            let mut live = LiveState::default();
            live.artifacts.insert(
                "monad".into(),
                LiveArtifact {
                    current,
                    current_sha: None,
                    wanted,
                },
            );
            diff(&d, &live)
        };
        let link = |v: &str| CurrentLink::Link(v.into());
        // Fresh: fetch and switch, an add.
        let p = plan_for(CurrentLink::Missing, VersionDir::Missing);
        assert_eq!(p.changes[0].action, Action::Add);
        assert_eq!(p.changes[0].ops, vec![Op::Fetch, Op::Switch]);
        assert_eq!(
            p.changes[0].details,
            vec!["0.9.4 (sha256 abababab..)".to_string()]
        );
        // An upgrade names both versions and restarts the unit.
        let p = plan_for(link("0.9.3"), VersionDir::Missing);
        assert_eq!(
            p.changes[0].details,
            vec!["0.9.3 -> 0.9.4 (sha256 abababab..)".to_string()]
        );
        assert_eq!(
            p.changes[0].handlers,
            vec![Handler::Restart("monad-validator".into())]
        );
        // Back to a version still on the node: only the switch.
        let p = plan_for(link("0.9.5"), VersionDir::Installed(sha.clone()));
        assert_eq!(p.changes[0].ops, vec![Op::Switch]);
        assert!(p.changes[0].details[0].ends_with(", already on the node"));
        // Converged.
        assert!(plan_for(link("0.9.4"), VersionDir::Installed(sha.clone())).is_empty());
        // What strata did not put there, or another build under the same version: refused.
        for (cur, want, says) in [
            (CurrentLink::Other, VersionDir::Missing, "is not a symlink"),
            (
                link("0.9.3"),
                VersionDir::Foreign,
                "strata did not install it",
            ),
            (
                link("0.9.3"),
                VersionDir::Installed("cd".repeat(32)),
                "give the new build a new version",
            ),
        ] {
            let p = plan_for(cur, want);
            assert!(p.changes.is_empty(), "{p:?}");
            assert!(p.refusals[0].contains(says), "{:?}", p.refusals);
        }
    }

    #[test]
    fn a_signed_upgrade_names_its_key_until_the_version_is_on_the_node() {
        let mut a = ArtifactRes {
            name: "monad".into(),
            version: "0.9.4".into(),
            url: "https://x/monad.tar.gz".into(),
            sha256: "ab".repeat(32),
            format: ArtifactFormat::TarGz,
            install: vec![],
            keep: 3,
            push: false,
            signature: None,
            notify: vec![],
            module: "v".into(),
        };
        a.signature = Some(crate::model::ArtifactSig {
            kind: crate::model::SigKind::Gpg,
            url: "https://x/monad.tar.gz.sig".into(),
            key_path: "keys/k.asc".into(),
            keyring: String::new(),
            fingerprints: vec!["ED7232DDC294994D508C8F214525F22B98C6C30E".into()],
        });
        let d = desired(vec![Resource::Artifact(a)]);
        let plan_for = |wanted: VersionDir| {
            let mut live = LiveState::default();
            live.artifacts.insert(
                "monad".into(),
                LiveArtifact {
                    current: CurrentLink::Link("0.9.3".into()),
                    current_sha: None,
                    wanted,
                },
            );
            diff(&d, &live)
        };
        assert_eq!(
            plan_for(VersionDir::Missing).changes[0].details,
            vec!["0.9.3 -> 0.9.4 (sha256 abababab..), signed by gpg key 4525F22B98C6C30E"]
        );
        // Switching back to a version already installed checks no signature.
        assert_eq!(
            plan_for(VersionDir::Installed("ab".repeat(32))).changes[0].details,
            vec!["0.9.3 -> 0.9.4 (sha256 abababab..), already on the node"]
        );
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
                ..Default::default()
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
            ..Default::default()
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
            ..Default::default()
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
    fn svc(name: &str) -> Resource {
        Resource::Service(ServiceRes {
            name: name.into(),
            enabled: true,
            state: ServiceState::Started,
            module: "m".into(),
        })
    }

    fn other(kind: OtherKind) -> LiveFile {
        LiveFile {
            state: PathState::Other { kind },
            sha256: None,
            content: None,
        }
    }

    /// What is at a file's path: replaced when nothing is lost (the link itself, an empty
    /// directory, a fifo, a socket), refused otherwise (a non-empty directory, a device).
    #[test]
    fn odd_things_at_a_files_path() {
        let d = desired(vec![file("/etc/a", "x\n", false)]);
        let cases = [
            (
                OtherKind::Symlink {
                    target: "/etc/passwd".into(),
                    to: "file".into(),
                },
                Some("a symlink to /etc/passwd (a file) is there; it will be replaced by a file (the link itself; its target is not touched), 0644 root:root, 1 lines"),
            ),
            (
                OtherKind::Symlink {
                    target: "/tmp".into(),
                    to: "dir".into(),
                },
                Some("a symlink to /tmp (a directory) is there; it will be replaced by a file (the link itself; its target is not touched), 0644 root:root, 1 lines"),
            ),
            (
                OtherKind::Symlink {
                    target: "/nowhere".into(),
                    to: "dangling".into(),
                },
                Some("a symlink to /nowhere (dangling) is there; it will be replaced by a file (the link itself; its target is not touched), 0644 root:root, 1 lines"),
            ),
            (
                OtherKind::EmptyDir,
                Some("an empty directory is there; it will be replaced by a file, 0644 root:root, 1 lines"),
            ),
            (
                OtherKind::Fifo,
                Some("a fifo is there; it will be replaced by a file, 0644 root:root, 1 lines"),
            ),
            (
                OtherKind::Socket,
                Some("a socket is there; it will be replaced by a file, 0644 root:root, 1 lines"),
            ),
            (OtherKind::Dir, None),
            (OtherKind::CharDevice, None),
            (OtherKind::BlockDevice, None),
        ];
        for (kind, want) in cases {
            let mut live = LiveState::default();
            live.files.insert("/etc/a".into(), other(kind.clone()));
            let p = diff(&d, &live);
            match want {
                Some(w) => {
                    assert!(p.refusals.is_empty(), "{kind:?}: {:?}", p.refusals);
                    assert_eq!(p.changes[0].details, vec![w.to_string()]);
                    assert_eq!(p.changes[0].ops, vec![Op::Write]);
                    assert_eq!(
                        p.changes[0].diff.as_deref(),
                        Some("--- /etc/a (live)\n+++ /etc/a (desired)\n@@ -0,0 +1 @@\n+x\n")
                    );
                    assert_eq!(p.handlers(), vec![Handler::parse("restart app")]);
                }
                None => {
                    assert!(p.changes.is_empty(), "{kind:?}");
                    assert_eq!(
                        p.refusals,
                        vec![format!(
                            "file:/etc/a: {} is there; strata will not replace it with a file (move it away by hand)",
                            kind.describe()
                        )]
                    );
                }
            }
        }
    }

    #[test]
    fn anything_but_a_directory_at_a_directorys_path_is_refused() {
        let d = desired(vec![Resource::Directory(DirRes {
            path: "/var/lib/x".into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o750,
            module: "m".into(),
        })]);
        for kind in [
            OtherKind::File,
            OtherKind::Symlink {
                target: "/data/x".into(),
                to: "dir".into(),
            },
            OtherKind::Fifo,
        ] {
            let mut live = LiveState::default();
            live.dirs
                .insert("/var/lib/x".into(), PathState::Other { kind: kind.clone() });
            let p = diff(&d, &live);
            assert!(p.changes.is_empty());
            assert_eq!(
                p.refusals,
                vec![format!("directory:/var/lib/x: {} is there, not a directory; strata will not replace it or write through it (fix it by hand)", kind.describe())]
            );
        }
    }

    fn live_svc(load: &str, unit_file: &str, active: &str, id: &str) -> LiveService {
        LiveService {
            id: id.into(),
            load: load.into(),
            unit_file: unit_file.into(),
            active: active.into(),
        }
    }

    #[test]
    fn masked_units_are_unmasked_then_enabled_and_started() {
        let d = desired(vec![svc("ne")]);
        let mut live = LiveState::default();
        live.services.insert(
            "ne".into(),
            live_svc("masked", "masked", "inactive", "ne.service"),
        );
        let p = diff(&d, &live);
        assert_eq!(
            p.changes[0].details,
            vec![
                "masked -> unmasked",
                "enabled: masked -> enabled",
                "state: inactive -> active"
            ]
        );
        assert_eq!(p.changes[0].ops, vec![Op::Unmask, Op::Enable, Op::Start]);
        live.services.insert(
            "ne".into(),
            live_svc("masked", "masked-runtime", "active", "ne.service"),
        );
        let p = diff(&d, &live);
        assert_eq!(p.changes[0].ops, vec![Op::UnmaskRuntime, Op::Enable]);
        // A failed unit is started again.
        live.services.insert(
            "ne".into(),
            live_svc("loaded", "enabled", "failed", "ne.service"),
        );
        let p = diff(&d, &live);
        assert_eq!(p.changes[0].details, vec!["state: failed -> active"]);
    }

    #[test]
    fn an_alias_is_managed_through_its_unit_and_a_gone_unit_file_is_refused() {
        let d = desired(vec![svc("chronyd")]);
        let mut live = LiveState::default();
        live.services.insert(
            "chronyd".into(),
            live_svc("loaded", "disabled", "active", "chrony.service"),
        );
        let p = diff(&d, &live);
        assert_eq!(
            p.changes[0].details,
            vec![
                "enabled: disabled -> enabled",
                "chronyd.service is an alias of chrony.service"
            ]
        );
        live.services.insert(
            "chronyd".into(),
            live_svc("loaded", "enabled", "active", "chrony.service"),
        );
        assert!(diff(&d, &live).is_empty(), "an enabled alias is converged");
        // Its unit file deleted by hand, and nothing in the plan brings it back.
        live.services.insert(
            "chronyd".into(),
            live_svc("loaded", "bad", "active", "chronyd.service"),
        );
        let p = diff(&d, &live);
        assert!(p.changes.is_empty());
        assert!(p.refusals[0].starts_with("service:chronyd: its unit file is gone (systemd: bad)"));
        // ... but a declared unit file, or a package this plan installs, provides it.
        let d2 = desired(vec![
            file("/etc/systemd/system/chronyd.service", "[Unit]\n", false),
            svc("chronyd"),
        ]);
        let p = diff(&d2, &live);
        assert!(p.refusals.is_empty());
        assert_eq!(
            p.changes[0].details,
            vec!["enabled: bad (unit file gone) -> enabled"]
        );
    }

    #[test]
    fn users_home_groups_and_packages() {
        let d = desired(vec![
            Resource::User(UserRes {
                name: "promtail".into(),
                system: true,
                home: Some("/var/lib/promtail".into()),
                shell: Some("/usr/sbin/nologin".into()),
                groups: vec!["adm".into(), "monad".into()],
                module: "m".into(),
            }),
            Resource::Package(PackageRes {
                name: "chrony".into(),
                module: "m".into(),
            }),
        ]);
        let mut live = LiveState::default();
        live.users.insert(
            "promtail".into(),
            Some(LiveUser {
                uid: 998,
                home: "/home/promtail".into(),
                shell: "/bin/bash".into(),
                groups: vec!["promtail".into(), "adm".into(), "sudo".into()],
                primary: Some("promtail".into()),
            }),
        );
        live.packages
            .insert("chrony".into(), "install ok half-configured".into());
        let p = diff(&d, &live);
        assert_eq!(
            p.changes[0].details,
            vec![
                "shell /bin/bash -> /usr/sbin/nologin",
                "home /home/promtail -> /var/lib/promtail",
                "add to groups monad",
                "remove from groups sudo"
            ]
        );
        assert_eq!(
            p.changes[1].details,
            vec!["install (apt); dpkg says \"install ok half-configured\""]
        );
        live.packages
            .insert("chrony".into(), "deinstall ok config-files".into());
        assert_eq!(diff(&d, &live).changes[1].ops, vec![Op::Install]);
        live.packages.insert("chrony".into(), INSTALLED.into());
        assert_eq!(diff(&d, &live).changes.len(), 1);
    }

    #[test]
    fn foreign_half_and_unreadable_rules() {
        let rule = |port: &str| FwRule {
            action: "allow".into(),
            port: port.into(),
            proto: "tcp".into(),
            from: "any".into(),
            comment: None,
        };
        let d = desired(vec![Resource::Firewall(FirewallRes {
            default_incoming: "deny".into(),
            default_outgoing: "allow".into(),
            rules: vec![rule("22")],
            module: "ufw".into(),
        })]);
        let mut live = LiveState::default();
        live.firewall = Some(LiveFirewall {
            status: "active".into(),
            default_incoming: "deny".into(),
            default_outgoing: "allow".into(),
            rules: vec![rule("22")],
            half: vec![rule("22")],
            foreign: vec![ForeignRule {
                spec: "route allow in on host0 out on host0 proto tcp from any to 10.9.9.9 port 80"
                    .into(),
            }],
            unreadable: vec![],
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
                (Action::Change, "ufw:allow 22/tcp from any".to_string(), vec![Op::FwAdd]),
                (
                    Action::Remove,
                    "ufw:route allow in on host0 out on host0 proto tcp from any to 10.9.9.9 port 80".into(),
                    vec![Op::FwDelete]
                ),
            ]
        );
        // The id survives a saved plan.
        let id = ChangeId::parse(&p.changes[1].id.to_string()).unwrap();
        assert_eq!(id, p.changes[1].id);
        live.firewall.as_mut().unwrap().unreadable = vec!["allow tcp 1 x".into()];
        assert!(diff(&d, &live).refusals[0].starts_with("firewall:ufw: a rule strata cannot read"));
    }
}
