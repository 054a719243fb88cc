//! Fleet invariant: an exclusive service is active on at most one node of its set. Pure:
//! given what every member's probe said and which members a plan changes, say whether the
//! plan may go ahead, and what drifted ("validator-2 signs, config says validator-1").

use crate::model::{fmt_mode, DesiredState, LiveState, PathState, Resource, ServiceState, Signing};
use serde::Serialize;

/// One member of a set, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub node: String,
    pub signing: Signing,
    /// The plan being checked would start the service on this node.
    pub starts: bool,
}

/// What the check found for one set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub set: String,
    pub service: String,
    /// The node the config names active.
    pub active: String,
    /// Members whose service is (or may be) active, as observed.
    pub live_active: Vec<String>,
    /// Members that could not be read.
    pub unknown: Vec<String>,
    /// The plan may not run: each line names the nodes.
    pub errors: Vec<String>,
    /// Live state that differs from the config.
    pub drift: Vec<String>,
    /// Readiness of standbys to take over (key files), and other facts.
    pub notes: Vec<String>,
}

impl Verdict {
    /// One line: `validators (monad-validator): config says validator-1; signing: validator-1`.
    pub fn headline(&self) -> String {
        let mut signing = if self.live_active.is_empty() {
            "nobody".to_string()
        } else {
            self.live_active.join(", ")
        };
        if !self.unknown.is_empty() {
            signing.push_str(&format!("; unknown: {}", self.unknown.join(", ")));
        }
        format!(
            "exclusive set {} ({}): config says {}; signing: {}",
            self.set, self.service, self.active, signing
        )
    }
}

/// Does a node whose desired state is `d` and live state `live` get the service started by
/// its plan (desired started, not active now)?
pub fn starts(d: &DesiredState, live: &LiveState, service: &str) -> bool {
    let wants = d.resources.iter().any(|r| {
        matches!(r, Resource::Service(s) if s.name == service && s.state == ServiceState::Started)
    });
    wants && Signing::of(live.services.get(service)) != Signing::Active
}

/// Check one set. `unknown_is_inactive`: the operator said, explicitly, that members that
/// cannot be read do not run the service (default: they count as active).
pub fn check(
    set: &str,
    service: &str,
    active: &str,
    members: &[Observed],
    unknown_is_inactive: bool,
) -> Verdict {
    let live_active: Vec<String> = members
        .iter()
        .filter(|m| m.signing == Signing::Active)
        .map(|m| m.node.clone())
        .collect();
    let unknown: Vec<String> = members
        .iter()
        .filter(|m| m.signing == Signing::Unknown)
        .map(|m| m.node.clone())
        .collect();
    let mut v = Verdict {
        set: set.into(),
        service: service.into(),
        active: active.into(),
        live_active: live_active.clone(),
        unknown: unknown.clone(),
        ..Default::default()
    };
    let starting: Vec<&Observed> = members.iter().filter(|m| m.starts).collect();
    if starting.len() > 1 {
        v.errors.push(format!(
            "exclusive set {set}: the plan would start {service} on {} (at most one node of the set may run it)",
            and_list(&starting.iter().map(|m| m.node.clone()).collect::<Vec<_>>())
        ));
    }
    for s in &starting {
        let mut blockers: Vec<String> = live_active
            .iter()
            .filter(|n| **n != s.node)
            .map(|n| format!("{n} has it active"))
            .collect();
        if !unknown_is_inactive {
            blockers.extend(
                unknown
                    .iter()
                    .filter(|n| **n != s.node)
                    .map(|n| format!("{n} cannot be read (counted as active)")),
            );
        }
        if blockers.is_empty() {
            continue;
        }
        let mut e = format!(
            "exclusive set {set}: the plan would start {service} on {} while {}",
            s.node,
            and_list(&blockers)
        );
        if s.node == active && !live_active.is_empty() {
            e.push_str(&format!(
                "; the config names {active} active: a switch of the active node is a failover, run `strata failover {set} --to {active}`"
            ));
        }
        v.errors.push(e);
    }
    if live_active.len() > 1 {
        v.drift.push(format!(
            "{service} is active on {}: more than one node of {set} signs",
            and_list(&live_active)
        ));
    }
    for n in live_active.iter().filter(|n| **n != active) {
        v.drift.push(format!("{n} signs, config says {active}"));
    }
    let active_inactive = members
        .iter()
        .any(|m| m.node == active && m.signing == Signing::Inactive);
    if live_active.is_empty() && active_inactive && unknown.is_empty() {
        v.drift.push(format!("nobody signs, config says {active}"));
    }
    v
}

/// What keeps a node from taking over: each key file of its desired state that is missing,
/// not a regular file, or has the wrong owner, group or mode. Strata never copies keys.
pub fn key_problems(d: &DesiredState, live: &LiveState) -> Vec<String> {
    let mut out = Vec::new();
    for r in &d.resources {
        let Resource::KeyFile(k) = r else { continue };
        let want = format!("{}:{} mode {}", k.owner, k.group, fmt_mode(k.mode));
        match live.key_files.get(&k.path) {
            None | Some(PathState::Missing) => {
                out.push(format!("{} is missing (place it by hand, {want})", k.path))
            }
            Some(PathState::Other { kind }) => {
                out.push(format!("{} is {}, not a key file", k.path, kind.describe()))
            }
            Some(PathState::Present { mode, owner, group }) => {
                if *mode != k.mode || owner != &k.owner || group != &k.group {
                    out.push(format!(
                        "{} is {owner}:{group} mode {} (must be {want})",
                        k.path,
                        fmt_mode(*mode)
                    ));
                }
            }
        }
    }
    out
}

fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [a] => a.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyFileRes, LiveService, ServiceRes};

    fn m(node: &str, signing: Signing, starts: bool) -> Observed {
        Observed {
            node: node.into(),
            signing,
            starts,
        }
    }
    use Signing::*;

    #[test]
    fn one_signer_as_configured_is_clean() {
        let v = check(
            "validators",
            "monad-validator",
            "validator-1",
            &[
                m("validator-1", Active, false),
                m("validator-2", Inactive, false),
            ],
            false,
        );
        assert!(v.errors.is_empty() && v.drift.is_empty(), "{v:?}");
        assert_eq!(
            v.headline(),
            "exclusive set validators (monad-validator): config says validator-1; signing: validator-1"
        );
    }

    #[test]
    fn starting_on_two_nodes_names_both() {
        let v = check(
            "validators",
            "monad-validator",
            "validator-1",
            &[
                m("validator-1", Inactive, true),
                m("validator-2", Inactive, true),
            ],
            false,
        );
        assert_eq!(
            v.errors,
            vec!["exclusive set validators: the plan would start monad-validator on validator-1 and validator-2 (at most one node of the set may run it)"]
        );
    }

    #[test]
    fn a_config_switch_is_refused_and_points_to_failover() {
        // The operator moved `active:` to validator-2; validator-1 still signs.
        let v = check(
            "validators",
            "monad-validator",
            "validator-2",
            &[
                m("validator-1", Active, false),
                m("validator-2", Inactive, true),
            ],
            false,
        );
        assert_eq!(v.errors.len(), 1);
        assert!(v.errors[0].starts_with(
            "exclusive set validators: the plan would start monad-validator on validator-2 while validator-1 has it active; the config names validator-2 active: a switch of the active node is a failover, run `strata failover validators --to validator-2`"
        ), "{}", v.errors[0]);
        assert_eq!(v.drift, vec!["validator-1 signs, config says validator-2"]);
    }

    #[test]
    fn unknown_counts_as_active_unless_said_otherwise() {
        let obs = [
            m("validator-1", Unknown, false),
            m("validator-2", Inactive, true),
        ];
        let v = check("validators", "monad-validator", "validator-2", &obs, false);
        assert_eq!(
            v.errors,
            vec!["exclusive set validators: the plan would start monad-validator on validator-2 while validator-1 cannot be read (counted as active)"]
        );
        assert!(v.drift.is_empty(), "unknown is not drift: {v:?}");
        let v = check("validators", "monad-validator", "validator-2", &obs, true);
        assert!(v.errors.is_empty());
        assert!(v
            .headline()
            .ends_with("signing: nobody; unknown: validator-1"));
    }

    #[test]
    fn drift_says_who_signs_and_who_should() {
        let v = check(
            "validators",
            "monad-validator",
            "validator-1",
            &[
                m("validator-1", Inactive, true),
                m("validator-2", Active, false),
                m("validator-3", Inactive, false),
            ],
            false,
        );
        assert_eq!(v.drift, vec!["validator-2 signs, config says validator-1"]);
        assert_eq!(v.errors.len(), 1, "starting validator-1 is held: {v:?}");
        let both = check(
            "validators",
            "monad-validator",
            "validator-1",
            &[
                m("validator-1", Active, false),
                m("validator-2", Active, false),
            ],
            false,
        );
        assert_eq!(
            both.drift,
            vec![
                "monad-validator is active on validator-1 and validator-2: more than one node of validators signs",
                "validator-2 signs, config says validator-1"
            ]
        );
        // Stopping the second signer is always allowed.
        assert!(both.errors.is_empty());
        let nobody = check(
            "validators",
            "monad-validator",
            "validator-1",
            &[
                m("validator-1", Inactive, false),
                m("validator-2", Inactive, false),
            ],
            false,
        );
        assert_eq!(nobody.drift, vec!["nobody signs, config says validator-1"]);
    }

    #[test]
    fn starts_only_when_desired_started_and_not_active() {
        let svc = |state| {
            vec![Resource::Service(ServiceRes {
                name: "monad-validator".into(),
                enabled: true,
                state,
                module: "validator".into(),
            })]
        };
        let d = crate::model::testing::desired("validator-1", svc(ServiceState::Started));
        let mut live = LiveState::default();
        assert!(starts(&d, &live, "monad-validator"));
        live.services.insert(
            "monad-validator".into(),
            LiveService {
                id: "monad-validator.service".into(),
                load: "loaded".into(),
                unit_file: "enabled".into(),
                active: "active".into(),
            },
        );
        assert!(!starts(&d, &live, "monad-validator"));
        let stopped = crate::model::testing::desired("validator-2", svc(ServiceState::Stopped));
        assert!(!starts(&stopped, &LiveState::default(), "monad-validator"));
    }

    #[test]
    fn key_problems_name_path_and_wanted_permissions() {
        let k = |p: &str| {
            Resource::KeyFile(KeyFileRes {
                path: p.into(),
                owner: "monad".into(),
                group: "monad".into(),
                mode: 0o600,
                module: "validator".into(),
            })
        };
        let d = crate::model::testing::desired(
            "validator-2",
            vec![k("/k/secp.key"), k("/k/bls.key"), k("/k/ok.key")],
        );
        let mut live = LiveState::default();
        live.key_files.insert(
            "/k/bls.key".into(),
            PathState::Present {
                mode: 0o644,
                owner: "monad".into(),
                group: "monad".into(),
            },
        );
        live.key_files.insert(
            "/k/ok.key".into(),
            PathState::Present {
                mode: 0o600,
                owner: "monad".into(),
                group: "monad".into(),
            },
        );
        assert_eq!(
            key_problems(&d, &live),
            vec![
                "/k/secp.key is missing (place it by hand, monad:monad mode 0600)",
                "/k/bls.key is monad:monad mode 0644 (must be monad:monad mode 0600)"
            ]
        );
    }
}
