//! Gather: connect to nodes in parallel (bounded), read each node's live state in one round
//! trip, plan. An unreachable node is reported and the others go on.

use crate::engine::events::{Event, Ui};
use crate::model::{DesiredState, LiveState, NodePlan, Record, Timeouts};
use crate::plan::{diff, drift, lockout};
use crate::remote::probe;
use crate::report::{Counts, LastApplied, NodeReport};
use crate::transport::{Conn, TransportError};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A node whose live state was gathered, with its plan and its open connection.
pub struct Gathered {
    pub desired: DesiredState,
    pub live: LiveState,
    pub plan: NodePlan,
    /// The node's connection, kept open for apply (None once closed).
    pub conn: Option<Conn>,
}

pub enum Outcome {
    Planned(Box<Gathered>),
    Failed {
        desired: DesiredState,
        error: String,
    },
}

impl Outcome {
    pub fn name(&self) -> &str {
        match self {
            Outcome::Planned(g) => &g.desired.node.name,
            Outcome::Failed { desired, .. } => &desired.node.name,
        }
    }

    /// The node's part of the machine-readable plan.
    pub fn report(&self) -> NodeReport {
        match self {
            Outcome::Planned(g) => {
                let (drifted, pending) = drift::counts(&g.plan);
                NodeReport {
                    node: g.desired.node.name.clone(),
                    address: g.desired.node.address.clone(),
                    status: "planned".into(),
                    error: None,
                    summary: Counts::of(&g.plan),
                    drifted,
                    pending,
                    last_applied: Record::parse(g.live.record.as_deref())
                        .map(|r| LastApplied::from_record(&r, &g.desired.fingerprint())),
                    changes: g.plan.changes.clone(),
                    warnings: g.plan.warnings.clone(),
                    handlers: g.plan.handlers(),
                    live_fingerprint: Some(g.live.fingerprint()),
                    desired_fingerprint: g.desired.fingerprint(),
                }
            }
            Outcome::Failed { desired, error } => NodeReport {
                node: desired.node.name.clone(),
                address: desired.node.address.clone(),
                status: "failed".into(),
                error: Some(error.clone()),
                summary: Counts::default(),
                drifted: 0,
                pending: 0,
                last_applied: None,
                changes: vec![],
                warnings: vec![],
                handlers: vec![],
                live_fingerprint: None,
                desired_fingerprint: desired.fingerprint(),
            },
        }
    }
}

/// Every outcome's report, in order.
pub fn node_reports(outcomes: &[Outcome]) -> Vec<NodeReport> {
    outcomes.iter().map(Outcome::report).collect()
}

/// How gather reaches a node: with a master for the commands after the probe (apply,
/// failover), or, when nothing follows the probe (plan, status), by the probe's own `ssh`.
/// Either way the probe's ssh makes the connection (unless `ssh.persist` kept a master).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Master,
    OneRead,
}

/// Connect and probe one node. `lockout_check`: refuse a firewall that would not admit
/// strata's own address (only `apply --skip-lockout-check` turns it off).
pub async fn gather_one(
    desired: DesiredState,
    repo: &Path,
    lockout_check: bool,
    reach: Reach,
) -> Outcome {
    let node = desired.node.name.clone();
    let t = std::time::Instant::now();
    if !Conn::persists(&desired.node) {
        // The probe's own ssh makes the connection (and for an apply starts the master the
        // later steps use): gather's time includes it.
        let conn = match reach {
            Reach::OneRead => Ok(Conn::once(&desired.node, repo)),
            Reach::Master => Conn::lazy(&desired.node, repo),
        };
        return match conn {
            Ok(conn) => gather_on(conn, desired, lockout_check).await,
            Err(e) => Outcome::Failed {
                desired,
                error: e.to_string(),
            },
        };
    }
    tracing::info!(node = %node, step = "connect", "start");
    let conn = match Conn::open(&desired.node, repo).await {
        Ok(c) => {
            tracing::info!(node = %node, step = "connect", elapsed_ms = ms(t), "done");
            c
        }
        Err(e) => {
            tracing::info!(node = %node, step = "connect", elapsed_ms = ms(t), "failed: {e}");
            return Outcome::Failed {
                desired,
                error: e.to_string(),
            };
        }
    };
    gather_on(conn, desired, lockout_check).await
}

/// Probe and plan one node over a connection already open (bootstrap opens its own).
pub async fn gather_on(conn: Conn, desired: DesiredState, lockout_check: bool) -> Outcome {
    let t = std::time::Instant::now();
    let node = desired.node.name.clone();
    tracing::info!(node = %node, step = "gather", "start");
    let probed = probe_node(&conn, &desired).await;
    tracing::info!(node = %node, step = "gather", elapsed_ms = ms(t), "{}", if probed.is_ok() { "done" } else { "failed" });
    match probed {
        Ok(live) => {
            let refusal = lockout::lockout(&desired, live.client_addr.as_deref());
            if let Some(why) = refusal.filter(|_| lockout_check) {
                conn.close().await;
                return Outcome::Failed {
                    desired,
                    error: why,
                };
            }
            let mut plan = diff::diff(&desired, &live);
            // What strata will not do to the node as it is: the node is an error, never
            // started on (apply skips a failed node), until it is fixed by hand.
            if !plan.refusals.is_empty() {
                conn.close().await;
                return Outcome::Failed {
                    desired,
                    error: format!(
                        "strata will not change this node as it is: {}",
                        plan.refusals.join("; ")
                    ),
                };
            }
            let record = match Record::read(live.record.as_deref()) {
                Ok(r) => r,
                Err(why) => {
                    plan.warnings.push(unreadable_record(&why));
                    None
                }
            };
            drift::classify(&mut plan, &desired, &live, record.as_ref());
            Outcome::Planned(Box::new(Gathered {
                desired,
                live,
                plan,
                conn: Some(conn),
            }))
        }
        Err(e) => {
            conn.close().await;
            Outcome::Failed { desired, error: e }
        }
    }
}

/// The warning of a node whose record is there but unreadable: what strata does about it.
pub fn unreadable_record(why: &str) -> String {
    format!(
        "{0} is unreadable ({why}): strata reads the node as never applied (drift and pending are not told apart); the next apply keeps it as {0}.unreadable-<revision> and removes none of the revisions stored for rollback",
        probe::STATE_FILE
    )
}

/// Milliseconds since `t` (log fields).
pub fn ms(t: std::time::Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// One round trip: the probe script on stdin, its records on stdout.
pub async fn probe_node(conn: &Conn, desired: &DesiredState) -> Result<LiveState, String> {
    let secs = desired.node.ssh.timeouts.probe;
    let out = conn
        .run(
            &probe::bounded(&probe::script(desired), secs),
            Timeouts::secs(secs),
        )
        .await
        .map_err(|e| match e {
            // The probe was the connection (`Conn::once`): said as a failed connect is.
            TransportError::Unreachable(_) | TransportError::HostKey(_) => e.to_string(),
            _ => format!("reading the live state: {e}"),
        })?;
    parse_probe(&out.stdout, out.code, &out.stderr)
}

/// The probe's records, or why there are none (`code`: the script's exit; `stderr`: what
/// it said).
pub fn parse_probe(stdout: &str, code: Option<i32>, stderr: &str) -> Result<LiveState, String> {
    let why = stderr.trim();
    if code != Some(0) && !stdout.starts_with(probe::HEADER) {
        return Err(format!(
            "the probe failed ({}){}",
            match code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            },
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    probe::parse(stdout).map_err(|e| {
        if why.is_empty() {
            e.to_string()
        } else {
            format!("{e} (stderr: {why})")
        }
    })
}

/// Gather every node, at most `parallel` at once; results in the input order.
pub async fn gather_all(
    nodes: Vec<DesiredState>,
    repo: &Path,
    parallel: usize,
    lockout_check: bool,
    reach: Reach,
    ui: Arc<dyn Ui>,
) -> Vec<Outcome> {
    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let total = nodes.len();
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for d in nodes {
        let sem = sem.clone();
        let repo = repo.to_path_buf();
        let done = done.clone();
        let ui = ui.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            let out = gather_one(d, &repo, lockout_check, reach).await;
            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
            ui.event(Event::Gathered {
                done: n,
                total,
                node: out.name().to_string(),
            });
            out
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("gather task"));
    }
    out
}

/// Select nodes by name or group (`--limit`, positional names). Unknown selectors are errors.
pub fn select(all: Vec<DesiredState>, selectors: &[String]) -> Result<Vec<DesiredState>, String> {
    if selectors.is_empty() {
        return Ok(all);
    }
    for s in selectors {
        if !all
            .iter()
            .any(|d| &d.node.name == s || d.node.groups.contains(s))
        {
            return Err(format!(
                "`{s}` is neither a node nor a group in the inventory"
            ));
        }
    }
    Ok(all
        .into_iter()
        .filter(|d| {
            selectors
                .iter()
                .any(|s| &d.node.name == s || d.node.groups.contains(s))
        })
        .collect())
}

/// Close every connection still open (plan and status are done with the nodes).
pub async fn close_all(outcomes: &mut [Outcome]) {
    for o in outcomes {
        if let Outcome::Planned(g) = o {
            if let Some(c) = g.conn.take() {
                c.close().await;
            }
        }
    }
}
