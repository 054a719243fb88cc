//! `strata rollback`: return a node to a revision it ran before. Each apply stores the desired
//! state it applied next to that revision's backups; a rollback reads it back, plans it
//! against the live node like any apply (so the operator sees exactly what will change), and
//! applies it through the one rollout (lock, guard, handlers, health gate, record).

use crate::engine::events::{Event, Ui};
use crate::engine::node_apply::Opts;
use crate::engine::rollout::{self, Rollout};
use crate::engine::{self, Gathered, Outcome};
use crate::error::{Error, Result};
use crate::model::NodeResult;
use crate::model::{
    Action, Cause, Change, DesiredState, NodePlan, Op, Record, Resource, Revision, Timeouts,
};
use crate::model::{ChangeId, Handler};
use crate::remote::rollback::{self as scripts, Orphan};
use crate::transport::Conn;
use std::path::Path;
use std::time::Instant;

/// A node's record and the revisions whose desired state it stores.
pub struct Revisions {
    pub record: Record,
    pub stored: Vec<String>,
}

/// The node's revisions (`rollback --list`): connect, read, close.
pub async fn list(current: &DesiredState, repo: &Path) -> Result<Revisions> {
    let conn = Conn::open(&current.node, repo)
        .await
        .map_err(|e| Error::node(&current.node.name, e))?;
    let revs = read_revisions(&conn, current).await;
    conn.close().await;
    revs
}

/// Roll `current`'s node back to revision `to` (default: the previous one): connect, read,
/// plan, then the rollout.
#[allow(clippy::too_many_arguments)]
pub async fn rollback(
    repo: &Path,
    current: DesiredState,
    to: Option<&str>,
    by: String,
    yes: bool,
    confirm_timeout: u64,
    secrets: &[String],
    started: Instant,
    ui: &dyn Ui,
) -> Result<NodeResult> {
    let name = current.node.name.clone();
    let conn = Conn::open(&current.node, repo)
        .await
        .map_err(|e| Error::node(&name, e))?;
    let prepared = match read_revisions(&conn, &current).await {
        Ok(revs) => prepare(&conn, current, revs, to).await,
        Err(e) => Err(e),
    };
    match prepared {
        Ok(p) => {
            execute(
                repo,
                conn,
                p,
                by,
                yes,
                confirm_timeout,
                secrets,
                started,
                ui,
            )
            .await
        }
        Err(e) => {
            conn.close().await;
            Err(e)
        }
    }
}

/// Read the node's record and stored revisions: one round trip.
pub async fn read_revisions(conn: &Conn, d: &DesiredState) -> Result<Revisions> {
    let name = &d.node.name;
    let out = conn
        .run(
            &scripts::revisions_script(),
            Timeouts::secs(d.node.ssh.timeouts.step),
        )
        .await
        .map_err(|e| Error::node(name, e))?;
    let (record, stored) =
        scripts::parse_revisions(&out.stdout).map_err(|e| Error::node(name, e))?;
    let record = record.ok_or_else(|| {
        Error::node(
            name,
            "strata never applied this node: nothing to roll back to",
        )
    })?;
    Ok(Revisions { record, stored })
}

/// The revision to return to: `--to`, or the newest one older than the current.
pub fn pick_target<'a>(
    record: &'a Record,
    to: Option<&str>,
    stored: &[String],
) -> Result<&'a Revision, String> {
    let target = match to {
        Some(t) => record
            .history
            .iter()
            .find(|h| h.revision == t)
            .ok_or_else(|| {
                format!(
                    "revision {t} is not in the node's history (see `strata rollback NODE --list`)"
                )
            })?,
        None => record
            .history
            .iter()
            .find(|h| h.revision != record.revision)
            .ok_or("the node has no earlier revision to return to")?,
    };
    if target.revision == record.revision {
        return Err(format!(
            "the node already runs revision {}",
            target.revision
        ));
    }
    if !stored.contains(&target.revision) {
        return Err(format!(
            "revision {} has no stored state on the node (pruned, or applied by an older strata)",
            target.revision
        ));
    }
    Ok(target)
}

/// Files (dest, notify) declared by `current` but not by `target`.
pub fn orphan_files(current: &DesiredState, target: &DesiredState) -> Vec<(String, Vec<Handler>)> {
    let dests = |d: &DesiredState| -> Vec<(String, Vec<Handler>)> {
        d.resources
            .iter()
            .filter_map(|r| match r {
                Resource::File(f) => Some((f.dest.clone(), f.notify.clone())),
                _ => None,
            })
            .collect()
    };
    let keep: Vec<String> = dests(target).into_iter().map(|(p, _)| p).collect();
    dests(current)
        .into_iter()
        .filter(|(p, _)| !keep.contains(p))
        .collect()
}

/// What a rollback will do, read from the node.
pub struct Prepared {
    pub desired: DesiredState,
    pub live: crate::model::LiveState,
    pub plan: NodePlan,
    pub record: Record,
    pub target: Revision,
}

/// Pick the target, read its stored state, probe the node against it and plan.
pub async fn prepare(
    conn: &Conn,
    current: DesiredState,
    revs: Revisions,
    to: Option<&str>,
) -> Result<Prepared> {
    let name = current.node.name.clone();
    let step = Timeouts::secs(current.node.ssh.timeouts.step);
    let Revisions { record, stored } = revs;
    let target = pick_target(&record, to, &stored)
        .map_err(|e| Error::node(&name, e))?
        .clone();
    let raw = conn
        .run(&scripts::stored_state_script(&target.revision), step)
        .await
        .map_err(|e| Error::node(&name, e))?;
    let mut desired: DesiredState = serde_json::from_str(&raw.stdout).map_err(|e| {
        Error::node(
            &name,
            format!(
                "the stored state of revision {} does not parse: {e}",
                target.revision
            ),
        )
    })?;
    // How to reach the node and how many revisions to keep come from today's inventory.
    desired.node = current.node.clone();
    desired.keep_revisions = current.keep_revisions;
    desired.secrets = current.secrets.clone();
    // Exclusive sets are today's config, not the revision's: a standby returns to its old
    // files with the service still stopped and disabled, whatever the revision ran.
    desired.exclusive = current.exclusive.clone();
    for set in &current.exclusive {
        crate::render::exclusive::shape(&mut desired, set);
    }
    let live = engine::probe_node(conn, &desired)
        .await
        .map_err(|e| Error::node(&name, e))?;
    if let Some(why) = crate::plan::lockout::lockout(&desired, live.client_addr.as_deref()) {
        return Err(Error::node(
            &name,
            format!("revision {}: {why}", target.revision),
        ));
    }
    let mut plan = crate::plan::diff::diff(&desired, &live);
    if !plan.refusals.is_empty() {
        return Err(Error::node(
            &name,
            format!(
                "strata will not change this node as it is: {}",
                plan.refusals.join("; ")
            ),
        ));
    }
    crate::plan::drift::classify(&mut plan, &desired, &live, Some(&record));
    // Files only the current revision declares: removed, or their pre-strata copy put back.
    let raw = conn
        .run(&scripts::stored_state_script(&record.revision), step)
        .await
        .map_err(|e| Error::node(&name, e))?;
    match serde_json::from_str::<DesiredState>(&raw.stdout) {
        Err(_) => plan.warnings.push(format!(
            "the current revision {} has no stored state: files only it declared are left in place",
            record.revision
        )),
        Ok(mut cur) => {
            // A standby's dropped files must not restart the exclusive service either.
            for set in &desired.exclusive {
                crate::render::exclusive::shape(&mut cur, set);
            }
            let files = orphan_files(&cur, &desired);
            if !files.is_empty() {
                let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
                let out = conn
                    .run(&scripts::orphan_script(&paths, &target.revision), step)
                    .await
                    .map_err(|e| Error::node(&name, e))?;
                plan_orphans(
                    &mut plan,
                    &files,
                    scripts::parse_orphans(&out.stdout),
                    &record.revision,
                    &target.revision,
                );
            }
        }
    }
    Ok(Prepared {
        desired,
        live,
        plan,
        record,
        target,
    })
}

/// Pure: the changes (or warnings) for files only the current revision declares, with the
/// handlers the current revision notifies for them (a dropped unit drop-in reloads).
pub fn plan_orphans(
    plan: &mut NodePlan,
    files: &[(String, Vec<Handler>)],
    found: Vec<(String, Orphan)>,
    current: &str,
    target: &str,
) {
    for (path, what) in found {
        let notify = files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let (detail, restore_from) = match what {
            Orphan::Remove => ("strata created it: remove".to_string(), None),
            Orphan::Restore(src) => (
                "put back the version from before strata managed it".to_string(),
                Some(src),
            ),
            Orphan::Unknown => {
                plan.warnings.push(format!(
                    "file:{path} is declared by revision {current} only, but no revision since {target} recorded what was there before: left in place"
                ));
                continue;
            }
        };
        plan.changes.push(Change {
            id: ChangeId::File(path.clone()),
            action: Action::Remove,
            details: vec![format!("not declared by revision {target}: {detail}")],
            diff: None,
            secret: false,
            handlers: notify,
            ops: vec![Op::Delete],
            cause: Cause::Pending,
            restore_from,
        });
    }
}

/// Show the plan, ask, apply it through the rollout (the same connection), report.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    repo: &Path,
    conn: Conn,
    p: Prepared,
    by: String,
    yes: bool,
    confirm_timeout: u64,
    secrets: &[String],
    started: Instant,
    ui: &dyn Ui,
) -> Result<NodeResult> {
    ui.event(Event::Say(format!(
        "Rolling {} back from {} to {}.\n",
        p.desired.node.name,
        crate::report::revision_line(&p.record.entry()),
        crate::report::revision_line(&p.target)
    )));
    let (record, target) = (p.record, p.target);
    let mut outcomes = vec![Outcome::Planned(Box::new(Gathered {
        desired: p.desired,
        live: p.live,
        plan: p.plan,
        conn: Some(conn),
    }))];
    let r = Rollout {
        opts: Opts {
            repo: repo.to_path_buf(),
            by,
            commit: target.commit.clone(),
            rollback: true,
            confirm_timeout,
            kind: "rollback".into(),
            rolled_back_from: Some(record.revision.clone()),
            revision: Some(target.revision.clone()),
        },
        yes,
        question: "Roll back? Only 'yes' will be accepted",
        saved: None,
        secrets,
        started,
        unknown_is_inactive: false,
    };
    let res = rollout::run(repo, &mut outcomes, &r, ui).await;
    engine::close_all(&mut outcomes).await;
    let mut results = res?;
    Ok(results
        .pop()
        .map(|(_, r)| r)
        .unwrap_or(NodeResult::Unchanged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::record;

    #[test]
    fn target_is_the_previous_stored_revision_unless_named() {
        let r = record("3", &["3", "2", "1"]);
        let stored: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        assert_eq!(pick_target(&r, None, &stored).unwrap().revision, "2");
        assert_eq!(pick_target(&r, Some("1"), &stored).unwrap().revision, "1");
        assert!(pick_target(&r, Some("3"), &stored)
            .unwrap_err()
            .contains("already runs"));
        assert!(pick_target(&r, Some("9"), &stored)
            .unwrap_err()
            .contains("not in the node's history"));
        let pruned: Vec<String> = vec!["3".into()];
        assert!(pick_target(&r, None, &pruned)
            .unwrap_err()
            .contains("no stored state"));
        assert!(pick_target(&record("3", &["3"]), None, &stored)
            .unwrap_err()
            .contains("no earlier revision"));
    }
}
