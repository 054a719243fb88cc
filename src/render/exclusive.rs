//! Exclusive sets at render: every node that declares the set's service is a member; on
//! every member but the one the config names active, the service is desired stopped and
//! disabled, nothing restarts it, and its health gate leaves it out. Pure.

use crate::config::Exclusive;
use crate::error::Diag;
use crate::model::{DesiredState, ExclusiveSet, Handler, Resource, ServiceState};
use std::collections::BTreeMap;
use std::path::Path;

/// Resolve every set against the rendered fleet and shape each member's desired state.
/// Errors name the inventory line of the set.
pub fn impose(
    sets: &BTreeMap<String, Exclusive>,
    inventory: &Path,
    nodes: &mut [DesiredState],
) -> Vec<Diag> {
    let mut errs = Vec::new();
    for set in sets.values() {
        let members: Vec<usize> = (0..nodes.len())
            .filter(|&i| declares(&nodes[i], &set.service))
            .collect();
        let key = format!("exclusive.{}", set.name);
        if members.is_empty() {
            errs.push(Diag::new(
                inventory,
                set.line,
                format!("{key}.service"),
                format!(
                    "no node declares the service `{}` (it must be in the services of one of their modules)",
                    set.service
                ),
            ));
            continue;
        }
        if !members.iter().any(|&i| nodes[i].node.name == set.active) {
            if nodes.iter().any(|n| n.node.name == set.active) {
                errs.push(Diag::new(
                    inventory,
                    set.line,
                    format!("{key}.active"),
                    format!(
                        "`{}` does not declare the service `{}` (members: {})",
                        set.active,
                        set.service,
                        members
                            .iter()
                            .map(|&i| nodes[i].node.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            continue;
        }
        for n in set.fence.keys() {
            if !members.iter().any(|&i| &nodes[i].node.name == n) {
                errs.push(Diag::new(
                    inventory,
                    set.line,
                    format!("{key}.fence.{n}"),
                    format!(
                        "`{n}` is not a member of the set (it does not declare `{}`)",
                        set.service
                    ),
                ));
            }
        }
        let identities: Vec<_> = members.iter().map(|&i| nodes[i].node.clone()).collect();
        for &i in &members {
            let view = ExclusiveSet {
                name: set.name.clone(),
                service: set.service.clone(),
                active: set.active.clone(),
                members: identities.clone(),
                ports: set.ports.clone(),
                fence: set.fence.clone(),
                takeover_health: nodes[i].health.clone(),
            };
            shape(&mut nodes[i], &view);
            nodes[i].exclusive.push(view);
        }
    }
    errs
}

/// Does this node's desired state declare the service?
pub fn declares(d: &DesiredState, service: &str) -> bool {
    d.resources
        .iter()
        .any(|r| matches!(r, Resource::Service(s) if s.name == service))
}

/// Make `d` what its role in `set` allows: on a standby (any node but `set.active`) the
/// service is stopped and disabled, no file change restarts or reloads it, and its health
/// gate checks neither the unit nor the group's HTTP/TCP check (which probes the service).
/// The active node is left as its modules declare it. Idempotent.
pub fn shape(d: &mut DesiredState, set: &ExclusiveSet) {
    if d.node.name == set.active {
        return;
    }
    let unit = set.service.as_str();
    let is_unit = |u: &str| u == unit || u.strip_suffix(".service") == Some(unit);
    let keep = |h: &Handler| match h {
        Handler::Restart(u) | Handler::Reload(u) => !is_unit(u),
        _ => true,
    };
    for r in &mut d.resources {
        match r {
            Resource::Service(s) if s.name == unit => {
                s.enabled = false;
                s.state = ServiceState::Stopped;
            }
            Resource::File(f) => f.notify.retain(keep),
            // A standby gets the release too (ready to take over), never a restart by it.
            Resource::Artifact(a) => a.notify.retain(keep),
            _ => {}
        }
    }
    let before = d.health.units.len();
    d.health.units.retain(|u| !is_unit(u));
    if d.health.units.len() != before {
        // Every check that probes the stopped service goes with it.
        d.health.http = None;
        d.health.tcp = None;
        d.health.expect_version.clear();
        d.health.expect_progress = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileRes, HealthCheck, ServiceRes};

    fn node(name: &str) -> DesiredState {
        let mut d = crate::model::testing::desired(name, vec![]);
        d.resources = vec![
            Resource::File(FileRes {
                dest: "/etc/monad/node.toml".into(),
                content: "x".into(),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                validate: None,
                validate_local: None,
                secret: false,
                notify: vec![
                    Handler::DaemonReload,
                    Handler::Restart("monad-validator".into()),
                    Handler::Restart("chrony".into()),
                ],
                module: "validator".into(),
            }),
            Resource::Service(ServiceRes {
                name: "monad-validator".into(),
                enabled: true,
                state: ServiceState::Started,
                module: "validator".into(),
            }),
            Resource::Artifact(crate::model::ArtifactRes {
                name: "monad".into(),
                version: "0.9.4".into(),
                url: "https://x/monad".into(),
                sha256: "ab".repeat(32),
                format: crate::model::ArtifactFormat::File,
                install: vec![],
                keep: 3,
                push: false,
                signature: None,
                notify: vec![Handler::Restart("monad-validator".into())],
                module: "validator".into(),
            }),
        ];
        d.health = HealthCheck {
            units: vec!["monad-validator".into(), "chrony".into()],
            http: Some("http://127.0.0.1:8080/status".into()),
            tcp: None,
            timeout_secs: 30,
            expect_version: vec![crate::model::VersionCheck {
                command: Some("monad-validator --version".into()),
                value: "0.9.4".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        d
    }

    fn sets(active: &str) -> BTreeMap<String, Exclusive> {
        let mut m = BTreeMap::new();
        m.insert(
            "validators".into(),
            Exclusive {
                name: "validators".into(),
                service: "monad-validator".into(),
                active: active.into(),
                ports: vec![8080],
                fence: BTreeMap::new(),
                line: 7,
            },
        );
        m
    }

    fn service(d: &DesiredState) -> &ServiceRes {
        d.resources
            .iter()
            .find_map(|r| match r {
                Resource::Service(s) => Some(s),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn standbys_stop_disable_and_never_restart_the_service() {
        let mut nodes = vec![node("validator-1"), node("validator-2")];
        let errs = impose(
            &sets("validator-1"),
            Path::new("inventory/hosts.yaml"),
            &mut nodes,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let (a, s) = (&nodes[0], &nodes[1]);
        assert_eq!(service(a).state, ServiceState::Started);
        assert!(service(a).enabled);
        assert_eq!(service(s).state, ServiceState::Stopped);
        assert!(!service(s).enabled);
        let Resource::File(f) = &s.resources[0] else {
            panic!()
        };
        assert_eq!(
            f.notify,
            vec![Handler::DaemonReload, Handler::Restart("chrony".into())]
        );
        assert_eq!(s.health.units, vec!["chrony".to_string()]);
        assert_eq!(s.health.http, None);
        // The standby gets the release, but its switch restarts nothing and its gate does
        // not ask the stopped service for its version.
        let Resource::Artifact(art) = &s.resources[2] else {
            panic!()
        };
        assert!(art.notify.is_empty());
        assert!(s.health.expect_version.is_empty());
        // The gate it takes over with is the full one.
        assert_eq!(s.exclusive[0].takeover_health, node("x").health);
        assert_eq!(a.health, node("x").health);
        assert_eq!(
            s.exclusive[0]
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            vec!["validator-1", "validator-2"]
        );
        // Shaping twice changes nothing more.
        let mut again = s.clone();
        shape(&mut again, &s.exclusive[0]);
        assert_eq!(&again, s);
    }

    #[test]
    fn an_active_node_without_the_service_is_an_error_at_the_set_line() {
        let mut nodes = vec![
            node("validator-1"),
            crate::model::testing::desired("validator-3", vec![]),
        ];
        let errs = impose(
            &sets("validator-3"),
            Path::new("inventory/hosts.yaml"),
            &mut nodes,
        );
        assert_eq!(errs.len(), 1);
        let e = errs[0].to_string();
        assert!(e.contains("inventory/hosts.yaml:7"), "{e}");
        assert!(e.contains("`validator-3` does not declare the service `monad-validator` (members: validator-1)"), "{e}");
        let mut none = vec![crate::model::testing::desired("validator-3", vec![])];
        let errs = impose(
            &sets("validator-3"),
            Path::new("inventory/hosts.yaml"),
            &mut none,
        );
        assert!(errs[0]
            .to_string()
            .contains("no node declares the service `monad-validator`"));
    }
}
