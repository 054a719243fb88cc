//! Exclusive sets against the live fleet: observe every member of every set the selected
//! nodes belong to (members outside the selection get a one-command probe of their own),
//! run the pure check, and hold a node's start while another member signs or is unknown.

use crate::engine::{Gathered, Outcome};
use crate::model::{DesiredState, ExclusiveSet, NodeIdentity, Signing, Timeouts};
use crate::plan::exclusive::{self, Observed, Verdict};
use crate::remote::probe::sh_quote;
use crate::transport::Conn;
use std::path::Path;

/// The sets the given desired states belong to, each once (first view wins).
pub fn sets_of<'a>(nodes: impl Iterator<Item = &'a DesiredState>) -> Vec<ExclusiveSet> {
    let mut out: Vec<ExclusiveSet> = Vec::new();
    for d in nodes {
        for s in &d.exclusive {
            if !out.iter().any(|o| o.name == s.name) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// `systemctl is-active` of the service on a node, over a connection of its own. A node
/// that cannot be reached, or does not answer, is `Unknown`.
pub async fn signing_of(node: &NodeIdentity, service: &str, repo: &Path) -> Signing {
    let Ok(conn) = Conn::open(node, repo).await else {
        return Signing::Unknown;
    };
    let s = signing_on(&conn, service).await;
    conn.close().await;
    s
}

/// The same over an open connection.
pub async fn signing_on(conn: &Conn, service: &str) -> Signing {
    let script = format!(
        "systemctl is-active {} 2>/dev/null; true\n",
        sh_quote(&format!("{service}.service"))
    );
    match conn.run(&script, Timeouts::secs(20)).await {
        Ok(out) if out.success() => Signing::of_is_active(&out.stdout),
        _ => Signing::Unknown,
    }
}

/// Check every set the outcomes' nodes belong to against the live fleet.
/// Read every node once (plan, status): gather each over its probe's own ssh, close, then
/// the exclusive sets' verdicts.
pub async fn read_fleet(
    nodes: Vec<crate::model::DesiredState>,
    repo: &Path,
    parallel: usize,
    ui: std::sync::Arc<dyn crate::engine::events::Ui>,
) -> (Vec<Outcome>, Vec<Verdict>) {
    let mut o = crate::engine::gather_all(
        nodes,
        repo,
        parallel,
        true,
        crate::engine::Reach::OneRead,
        ui,
    )
    .await;
    crate::engine::close_all(&mut o).await;
    let v = check_fleet(&o, repo, false).await;
    (o, v)
}

pub async fn check_fleet(
    outcomes: &[Outcome],
    repo: &Path,
    unknown_is_inactive: bool,
) -> Vec<Verdict> {
    let desired = outcomes.iter().map(|o| match o {
        Outcome::Planned(g) => &g.desired,
        Outcome::Failed { desired, .. } => desired,
    });
    let mut verdicts = Vec::new();
    for set in sets_of(desired) {
        let mut observed = Vec::new();
        let mut notes = Vec::new();
        for m in &set.members {
            let o = outcomes.iter().find(|o| o.name() == m.name);
            let (signing, starts) = match o {
                Some(Outcome::Planned(g)) => {
                    if m.name != set.active {
                        let problems = exclusive::key_problems(&g.desired, &g.live);
                        notes.push(if problems.is_empty() {
                            format!(
                                "{} can take over {}: its key files are in place",
                                m.name, set.name
                            )
                        } else {
                            format!(
                                "{} cannot take over {}: {}",
                                m.name,
                                set.name,
                                problems.join("; ")
                            )
                        });
                    }
                    (
                        Signing::of(g.live.services.get(&set.service)),
                        exclusive::starts(&g.desired, &g.live, &set.service),
                    )
                }
                Some(Outcome::Failed { .. }) => (Signing::Unknown, false),
                None => (signing_of(m, &set.service, repo).await, false),
            };
            observed.push(Observed {
                node: m.name.clone(),
                signing,
                starts,
            });
        }
        let mut v = exclusive::check(
            &set.name,
            &set.service,
            &set.active,
            &observed,
            unknown_is_inactive,
        );
        v.notes = notes;
        verdicts.push(v);
    }
    verdicts
}

/// Just before a node's rollout changes it: if its plan starts an exclusive service, every
/// other member of the set must be read now and found inactive. Err: why it is held.
pub async fn hold(g: &Gathered, repo: &Path, unknown_is_inactive: bool) -> Result<(), String> {
    for set in &g.desired.exclusive {
        if !exclusive::starts(&g.desired, &g.live, &set.service) {
            continue;
        }
        for m in set.members.iter().filter(|m| m.name != g.desired.node.name) {
            match signing_of(m, &set.service, repo).await {
                Signing::Inactive => {}
                Signing::Unknown if unknown_is_inactive => {}
                Signing::Active => {
                    return Err(format!(
                        "held: {} has {} active (exclusive set {}); not started, nothing was changed",
                        m.name, set.service, set.name
                    ))
                }
                Signing::Unknown => {
                    return Err(format!(
                        "held: {} cannot be reached, so {} may be active there (exclusive set {}); not started, nothing was changed",
                        m.name, set.service, set.name
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Verdict lines for the operator: the headline, drift, notes, then errors.
pub fn lines(v: &Verdict) -> Vec<String> {
    let mut out = vec![v.headline()];
    out.extend(v.drift.iter().map(|d| format!("  drift: {d}")));
    out.extend(v.notes.iter().map(|n| format!("  {n}")));
    out
}
