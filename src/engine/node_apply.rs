//! One node's apply, start to end: lock, re-read, connectivity guard, changes, handlers,
//! confirm over a new connection, health gate, rollback on failure, record. Used by
//! `strata apply` (the repo's desired state) and `strata rollback` (a stored revision's).

use crate::engine::{self, Gathered};
use crate::model::NodePlan;
use crate::model::Record;
use crate::remote::apply as scripts;
use crate::remote::guard;
use crate::transport::Conn;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How one node's apply ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum NodeResult {
    Applied {
        changes: usize,
        handlers: Vec<String>,
        seconds: f64,
    },
    Unchanged,
    Failed {
        error: String,
    },
    /// Failed its gate, then restored to its previous files and services.
    RolledBack {
        error: String,
        healthy: bool,
        detail: String,
    },
    RollbackFailed {
        error: String,
        why: String,
    },
    /// No new SSH connection could reach the node after its changes: its guard restores it.
    Lost {
        error: String,
        /// The guard restored the node and strata reached it again.
        restored: bool,
        detail: String,
    },
    Untouched,
}

impl NodeResult {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            NodeResult::Failed { .. }
                | NodeResult::RolledBack { .. }
                | NodeResult::RollbackFailed { .. }
                | NodeResult::Lost { .. }
        )
    }
}

/// What the caller decides for every node of a run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub repo: PathBuf,
    pub by: String,
    pub commit: Option<String>,
    /// Roll a node back when its handlers or health gate fail.
    pub rollback: bool,
    /// The confirm window of the connectivity guard, in seconds.
    pub confirm_timeout: u64,
    /// `apply` or `rollback` (recorded on the node).
    pub kind: String,
    /// For `strata rollback`: the revision being replaced, and the one returned to.
    pub rolled_back_from: Option<String>,
    pub revision: Option<String>,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new revision id: milliseconds since the epoch (sortable, unique per node under its lock).
fn new_revision() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// Does this node need an apply at all: changes to make, or no record of this configuration
/// yet (a node converged by hand, or by a strata that did not record)? A node that needs
/// neither is left alone: no lock, no new revision.
pub fn needs_apply(g: &Gathered) -> bool {
    !g.plan.is_empty()
        || Record::parse(g.live.record.as_deref())
            .is_none_or(|r| r.desired_fingerprint != g.desired.fingerprint())
}

/// Lock, change, run handlers, check health, record. Any failure stops this node.
pub async fn apply_node(g: &mut Gathered, o: &Opts) -> NodeResult {
    let t = Instant::now();
    let Some(conn) = g.conn.as_ref() else {
        return NodeResult::Failed {
            error: "no connection".into(),
        };
    };
    let name = g.desired.node.name.clone();
    let owner = format!("{} pid {} at {}", o.by, std::process::id(), now());
    let (lock, first) = match conn.hold(&scripts::lock_script(&owner)).await {
        Ok(v) => v,
        Err(e) => {
            return NodeResult::Failed {
                error: format!("taking the lock: {e}"),
            }
        }
    };
    if first != "locked" {
        lock.release().await;
        let holder = first.strip_prefix("busy").unwrap_or(&first).trim();
        return NodeResult::Failed {
            error: format!("another apply holds the lock on {name}: {holder}"),
        };
    }
    // The plan was computed before the lock was ours: make sure nobody changed the node in
    // between (another apply, a hand edit), or we would apply a plan for another state.
    let result = match engine::probe_node(conn, &g.desired).await {
        Ok(now) if now.fingerprint() == g.live.fingerprint() => apply_locked(conn, g, o, t).await,
        Ok(_) => NodeResult::Failed { error: format!("{name} changed between plan and lock (another apply?); nothing was applied, plan again") },
        Err(e) => NodeResult::Failed { error: format!("re-reading the node under the lock: {e}") },
    };
    lock.release().await;
    result
}

async fn apply_locked(conn: &Conn, g: &Gathered, o: &Opts, t: Instant) -> NodeResult {
    // This run's backups and guard live in backup/<run>/; the record names `rev`, which is the
    // run itself for an apply, and the revision returned to for `strata rollback`.
    let run = new_revision();
    let rev = o.revision.clone().unwrap_or_else(|| run.clone());
    let plan: &NodePlan = &g.plan;
    let handlers = plan.handlers();
    if !plan.is_empty() {
        let guarded = guard::needs_guard(plan);
        let extend = if guarded {
            guard::extend_lines(&run, guard::WORK_SECS)
        } else {
            String::new()
        };
        if guarded {
            let restore = scripts::rollback_script(&g.desired, plan, &run, &handlers);
            if let Err(e) = run_step(
                conn,
                &guard::arm_script(&run, &restore, guard::WORK_SECS),
                "arming the connectivity guard",
            )
            .await
            {
                return NodeResult::Failed {
                    error: format!("{e}; nothing was changed"),
                };
            }
        }
        if let Err(e) = run_step(
            conn,
            &scripts::changes_script(&g.desired, plan, &run, &extend),
            "changes",
        )
        .await
        {
            if guarded {
                return stand_down(conn, &run, e).await;
            }
            return NodeResult::Failed { error: e };
        }
        let mut gate = run_step(
            conn,
            &scripts::handlers_script(&handlers, &g.desired.handlers, &extend),
            "handlers",
        )
        .await;
        if guarded && gate.is_ok() {
            match confirm(conn, g, o, &run).await {
                Confirm::Confirmed => {}
                Confirm::Failed(e) => gate = Err(e),
                Confirm::Lost(e) => return wait_for_restore(g, o, &run, e).await,
            }
        } else if guarded {
            // Strata still has its connection: it rolls back itself, now, not the guard later.
            let _ = conn.run(&guard::disarm_script(&run)).await;
        }
        if gate.is_ok() {
            gate = run_step(
                conn,
                &scripts::health_script(&g.desired.health),
                "health check",
            )
            .await;
        }
        if let Err(e) = gate {
            if !o.rollback {
                return NodeResult::Failed {
                    error: format!("{e} (left as is: --no-rollback)"),
                };
            }
            return roll_back(conn, g, &run, &handlers, e).await;
        }
    }
    let previous = Record::parse(g.live.record.as_deref());
    let record = Record {
        applied_at: now(),
        applied_by: o.by.clone(),
        commit: o.commit.clone(),
        desired_fingerprint: g.desired.fingerprint(),
        resources: crate::plan::drift::desired_keys(&g.desired),
        revision: rev.clone(),
        kind: o.kind.clone(),
        rolled_back_from: o.rolled_back_from.clone(),
        history: vec![],
    }
    .with_history(previous.as_ref(), g.desired.keep_revisions);
    let keep: Vec<String> = record.history.iter().map(|h| h.revision.clone()).collect();
    let json = serde_json::to_string_pretty(&record).expect("record serialises");
    let desired_json = serde_json::to_string(&g.desired).expect("desired state serialises");
    if let Err(e) = run_step(
        conn,
        &scripts::record_script(&json, &rev, &desired_json, &keep),
        "recording the apply",
    )
    .await
    {
        return NodeResult::Failed { error: e };
    }
    if plan.is_empty() {
        return NodeResult::Unchanged;
    }
    NodeResult::Applied {
        changes: plan.changes.len(),
        handlers,
        seconds: t.elapsed().as_secs_f64(),
    }
}

/// A step failed while the guard was armed. With the connection alive, strata stands the
/// guard down and reports the failure (the changes script commits nothing before every file
/// validated); with the connection gone, the guard restores the node by itself.
async fn stand_down(conn: &Conn, run: &str, e: String) -> NodeResult {
    if e.contains("connection lost") {
        return NodeResult::Failed {
            error: format!(
                "{e}; the node's connectivity guard restores its previous state within {}s",
                guard::WORK_SECS
            ),
        };
    }
    let _ = conn.run(&guard::disarm_script(run)).await;
    NodeResult::Failed { error: e }
}

enum Confirm {
    Confirmed,
    /// Reached the node, but the guard had already acted (or the window could not start).
    Failed(String),
    /// No new connection reached the node within the window.
    Lost(String),
}

/// Open a NEW connection (its own master, its own TCP connection and authentication) and
/// confirm through it: the proof that an operator can still get in.
async fn confirm(conn: &Conn, g: &Gathered, o: &Opts, run: &str) -> Confirm {
    let name = &g.desired.node.name;
    let window = o.confirm_timeout.max(2);
    if let Err(e) = run_step(
        conn,
        &guard::window_script(run, window),
        "opening the confirm window",
    )
    .await
    {
        return Confirm::Failed(e);
    }
    eprintln!(
        "{name}: confirming over a new SSH connection (the node restores itself in {window}s otherwise)"
    );
    // Leave the watcher a second of margin: confirm strictly before its deadline.
    let deadline = Instant::now() + Duration::from_secs(window - 1);
    let mut last = String::from("no attempt");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Confirm::Lost(last);
        }
        let mut id = g.desired.node.clone();
        id.ssh.connect_timeout_secs = left.as_secs().clamp(1, id.ssh.connect_timeout_secs);
        match tokio::time::timeout(left, Conn::open(&id, &o.repo)).await {
            Ok(Ok(c)) => {
                let out = tokio::time::timeout(left, c.run(&guard::confirm_script(run))).await;
                c.close().await;
                match out {
                    Ok(Ok(out)) if out.stdout.lines().any(|l| l == "CONFIRMED") => {
                        return Confirm::Confirmed
                    }
                    Ok(Ok(out)) => {
                        return Confirm::Failed(format!(
                            "confirm came too late, the guard restored the node: {}",
                            out.stdout.trim()
                        ))
                    }
                    Ok(Err(e)) => last = e,
                    Err(_) => last = "timed out".into(),
                }
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node is lost to new connections. Its guard restores it when the window ends: wait for
/// that, reconnect, read what the guard did, check health.
async fn wait_for_restore(g: &Gathered, o: &Opts, run: &str, why: String) -> NodeResult {
    let name = &g.desired.node.name;
    let lost_at = Instant::now();
    eprintln!(
        "{name}: LOST: no new SSH connection succeeded ({why}); waiting for the node to restore itself"
    );
    let error =
        format!("lost contact after the changes: no new SSH connection could reach {name} ({why})");
    // The window's end, the restore itself (file copies, ufw reload, handlers), and margin.
    let give_up = lost_at + Duration::from_secs(120);
    loop {
        if Instant::now() >= give_up {
            return NodeResult::Lost {
                error,
                restored: false,
                detail: format!(
                    "still unreachable {}s later; its guard (unit {}) restores the previous state by itself; check the provider console",
                    lost_at.elapsed().as_secs(),
                    guard::unit(run)
                ),
            };
        }
        let mut id = g.desired.node.clone();
        id.ssh.connect_timeout_secs = 3;
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(5), Conn::open(&id, &o.repo)).await
        {
            let reached = lost_at.elapsed().as_secs_f64();
            let out = c.run(&guard::result_script(run)).await;
            let (by, result) = out
                .map(|o| guard::parse_result(&o.stdout))
                .unwrap_or_default();
            if by == "guard" && result.starts_with("restored") {
                let health = run_step(
                    &c,
                    &crate::remote::apply::health_script(&g.desired.health),
                    "health check after the restore",
                )
                .await;
                c.close().await;
                return NodeResult::Lost {
                    error,
                    restored: true,
                    detail: format!(
                        "the node restored its previous state by itself and was reachable again {reached:.1}s after contact was lost{}",
                        match health {
                            Ok(()) => "; healthy".to_string(),
                            Err(e) => format!("; but {e}"),
                        }
                    ),
                };
            }
            c.close().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The node failed its gate after its changes: put the previous files, firewall and service
/// states back, run the handlers again, and check health again. The node still counts as
/// failed (the rollout stops), but the summary says whether it is back and healthy.
async fn roll_back(
    conn: &Conn,
    g: &Gathered,
    run: &str,
    handlers: &[String],
    error: String,
) -> NodeResult {
    let undo = run_step(
        conn,
        &scripts::rollback_script(&g.desired, &g.plan, run, handlers),
        "rollback",
    )
    .await;
    let health = match &undo {
        Ok(()) => {
            run_step(
                conn,
                &scripts::health_script(&g.desired.health),
                "health check after rollback",
            )
            .await
        }
        Err(_) => Err("not checked".into()),
    };
    match (undo, health) {
        (Ok(()), Ok(())) => NodeResult::RolledBack {
            error,
            healthy: true,
            detail: "previous files, firewall and services restored; healthy again".into(),
        },
        (Ok(()), Err(h)) => NodeResult::RolledBack {
            error,
            healthy: false,
            detail: format!("previous files, firewall and services restored, but {h}"),
        },
        (Err(u), _) => NodeResult::RollbackFailed { error, why: u },
    }
}

/// Run a script; its last `FAIL ...` / `UNHEALTHY ...` line (plus context) is the error.
pub async fn run_step(conn: &Conn, script: &str, what: &str) -> Result<(), String> {
    let out = conn
        .run(script)
        .await
        .map_err(|e| format!("{what}: connection lost: {e}"))?;
    let ok = out.success() && out.stdout.lines().any(|l| l == "OK" || l == "HEALTHY");
    if ok {
        return Ok(());
    }
    let mut lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("FAIL")
                || l.starts_with("UNHEALTHY")
                || l.starts_with("VALIDATE")
                || l.starts_with("  | ")
        })
        .collect();
    if lines.is_empty() {
        lines = out
            .stdout
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
    }
    let stderr = out.stderr.trim();
    Err(format!(
        "{what} failed (exit {:?}): {}{}",
        out.code,
        lines.join("\n    "),
        if stderr.is_empty() {
            String::new()
        } else {
            format!("\n    stderr: {}", stderr.lines().last().unwrap_or(""))
        }
    ))
}
