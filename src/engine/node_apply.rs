//! One node's apply, start to end: lock, re-read, connectivity guard, changes, handlers,
//! confirm over a new connection, health gate, rollback on failure, record. Used by
//! `strata apply` (the repo's desired state) and `strata rollback` (a stored revision's).

use crate::engine::events::{Event, Ui};
use crate::engine::local::now;
use crate::engine::{self, Gathered};
use crate::model::{Handler, NodePlan, NodeResult, Record, Timeouts};
use crate::remote::apply as scripts;
use crate::remote::{guard, probe, rollback};
use crate::report::rfc3339;
use crate::transport::{Conn, TransportError};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A node's steps, one after another: each `enter` tells the operator (an `Event::Step`)
/// and, for the `-v` log, ends the step before with the time it took. Where strata's apply
/// time goes is read from these lines.
pub struct Steps<'a> {
    node: &'a str,
    ui: &'a dyn Ui,
    current: Mutex<Option<(String, Instant)>>,
}

impl<'a> Steps<'a> {
    pub fn new(node: &'a str, ui: &'a dyn Ui) -> Steps<'a> {
        Steps {
            node,
            ui,
            current: Mutex::new(None),
        }
    }

    /// A step the operator sees (the progress line) and the log times.
    pub fn enter(&self, step: &str) {
        self.ui.event(Event::Step {
            node: self.node.to_string(),
            step: step.to_string(),
        });
        self.log_only(step);
    }

    /// A step only the log shows (its own sub-steps, e.g. the confirm over a new connection).
    pub fn log_only(&self, step: &str) {
        self.end();
        tracing::info!(node = %self.node, step = %step, "start");
        *self.current.lock().expect("not poisoned") = Some((step.to_string(), Instant::now()));
    }

    /// End the current step (if any) in the log, with its elapsed time.
    pub fn end(&self) {
        if let Some((step, t)) = self.current.lock().expect("not poisoned").take() {
            tracing::info!(node = %self.node, step = %step, elapsed_ms = t.elapsed().as_millis() as u64, "done");
        }
    }
}

impl Drop for Steps<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// What the caller decides for every node of a run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub repo: PathBuf,
    pub by: String,
    pub commit: Option<String>,
    /// Roll a node back when a step after its first change fails.
    pub rollback: bool,
    /// The confirm window of the connectivity guard, in seconds.
    pub confirm_timeout: u64,
    /// `apply` or `rollback` (recorded on the node).
    pub kind: String,
    /// For `strata rollback`: the revision being replaced, and the one returned to.
    pub rolled_back_from: Option<String>,
    pub revision: Option<String>,
}

/// A new revision id: milliseconds since the epoch (sortable, unique per node under its lock).
fn new_revision() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// Why a remote step failed: the script said so (its exit code and FAIL lines), or the
/// transport did (connection lost, deadline).
#[derive(Debug, Clone)]
pub struct StepError {
    pub step: String,
    pub failure: Failure,
}

#[derive(Debug, Clone)]
pub enum Failure {
    /// The script ran and failed: its exit code (None: killed by a signal) and what it said.
    Script {
        code: Option<i32>,
        said: String,
        /// The last `STEP` the script reached.
        reached: Option<String>,
        /// It printed a `DONE` line: something became live (an artifact switched before
        /// the files were staged, say) whatever step it failed at.
        committed: bool,
    },
    Transport(TransportError),
}

impl StepError {
    /// Did the changes script get as far as a live change that must be undone (a file renamed
    /// into place, a unit enabled or started, the firewall)? Packages, users and directories
    /// come first and are never removed by a rollback; staged files are not live yet.
    pub fn after_commit(&self) -> bool {
        match &self.failure {
            Failure::Script {
                reached, committed, ..
            } => {
                *committed
                    || reached.as_deref().is_some_and(|s| {
                        !["fetch", "install", "user", "directory", "stage"]
                            .iter()
                            .any(|p| s.starts_with(p))
                    })
            }
            Failure::Transport(_) => true,
        }
    }

    /// The connection is gone: strata can no longer act on the node (its guard will).
    pub fn connection_lost(&self) -> bool {
        matches!(
            self.failure,
            Failure::Transport(TransportError::ConnectionLost(_))
        )
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            Failure::Script { code, said, .. } => {
                let how = match code {
                    Some(c) => format!("exit code {c}"),
                    None => "killed by a signal".to_string(),
                };
                write!(f, "{} failed ({how}): {said}", self.step)
            }
            Failure::Transport(t) => write!(f, "{}: {t}", self.step),
        }
    }
}

/// Lock, change, run handlers, check health, record. Any failure stops this node; a failure
/// after its first change rolls it back (unless `--no-rollback`).
pub async fn apply_node(g: &mut Gathered, o: &Opts, ui: &dyn Ui) -> NodeResult {
    apply_node_soaked(g, o, None, ui).await
}

/// A canary's soak: watch it this long, re-running its health gate at this interval.
#[derive(Debug, Clone, Copy)]
pub struct Soak {
    pub secs: u64,
    pub every_secs: u64,
}

/// `apply_node`, and for a canary a soak after its health gate, still holding its lock and
/// its run's backup: a failed check in the soak is rolled back exactly as a failed gate.
pub async fn apply_node_soaked(
    g: &mut Gathered,
    o: &Opts,
    soak: Option<Soak>,
    ui: &dyn Ui,
) -> NodeResult {
    let t = Instant::now();
    let name = g.desired.node.name.clone();
    let steps = Steps::new(&name, ui);
    let step = |s: &str| steps.enter(s);
    step("taking the lock");
    // A node that waited its turn (serial batches, a canary's soak) may have had its master
    // end while idle (it ends on its own after a minute idle, so that a dead strata leaves
    // none behind): then a new one, under the same settings. What changed on the node in
    // between is caught by the re-read under the lock, as always.
    if let Some(c) = g.conn.as_ref() {
        if !c.alive().await {
            tracing::debug!(node = %name, step = "ssh", "the master ended while the node waited: reconnecting");
            if let Some(old) = g.conn.take() {
                old.close().await;
            }
            match Conn::open(&g.desired.node, &o.repo).await {
                Ok(c) => g.conn = Some(c),
                Err(e) => {
                    return NodeResult::Failed {
                        error: format!("reconnecting before the apply: {e}"),
                    }
                }
            }
        }
    }
    let Some(conn) = g.conn.as_ref() else {
        return NodeResult::Failed {
            error: "no connection".into(),
        };
    };
    let deadlines = g.desired.node.ssh.timeouts;
    let owner = format!("{} pid {} at {}", o.by, std::process::id(), rfc3339(now()));
    let under_lock = probe::bounded(&probe::script(&g.desired), deadlines.probe);
    let (mut lock, first) = match conn
        .hold(
            &scripts::lock_script(&owner, &under_lock),
            Timeouts::secs(deadlines.lock),
        )
        .await
    {
        Ok(v) => v,
        Err(e) => {
            return NodeResult::Failed {
                error: format!("taking the lock: {e}"),
            }
        }
    };
    if first != "locked" {
        lock.release().await;
        let error = match first.strip_prefix("busy") {
            Some(holder) => format!("another apply holds the lock on {name}: {}", holder.trim()),
            None => format!(
                "taking the lock: the node's lock script ended without an answer ({:?}); nothing was applied",
                first.trim()
            ),
        };
        return NodeResult::Failed { error };
    }
    // The plan was computed before the lock was ours: make sure nobody changed the node in
    // between (another apply, a hand edit), or we would apply a plan for another state.
    // (The lock script reads it right after `locked`: no round trip of its own.)
    step("re-reading the node under the lock");
    let reread = match lock
        .read_through(probe::TRAILER, Timeouts::secs(deadlines.probe))
        .await
    {
        // Its exit is the lock script's, still running: read as a probe that exited 0.
        Ok(text) => engine::parse_probe(&text, Some(0), ""),
        Err(e) => Err(format!("reading the live state: {e}")),
    };
    let result = match reread {
        // Ctrl-C arrived before this node changed: it is left as it is, not started.
        Ok(_) if crate::interrupt::requested() => NodeResult::Untouched,
        Ok(now) if now.fingerprint() == g.live.fingerprint() => {
            apply_locked(conn, g, o, soak, t, &steps, ui).await
        }
        Ok(_) => NodeResult::Failed {
            error: format!(
                "{name} changed between plan and lock (another apply?); nothing was applied, plan again"
            ),
        },
        Err(e) => NodeResult::Failed {
            error: format!("re-reading the node under the lock: {e}"),
        },
    };
    steps.log_only("releasing the lock");
    lock.release().await;
    steps.end();
    tracing::info!(node = %name, elapsed_ms = t.elapsed().as_millis() as u64, "apply of the node ended: {}", result_word(&result));
    result
}

/// One word for how a node's apply ended (the log's last line for it).
fn result_word(r: &NodeResult) -> &'static str {
    match r {
        NodeResult::Applied { .. } => "applied",
        NodeResult::Unchanged => "unchanged",
        NodeResult::Untouched => "untouched",
        NodeResult::Failed { .. } => "failed",
        NodeResult::RolledBack { .. } => "rolled back",
        NodeResult::RollbackFailed { .. } => "rollback failed",
        NodeResult::Lost { .. } => "lost",
    }
}

async fn apply_locked(
    conn: &Conn,
    g: &Gathered,
    o: &Opts,
    soak: Option<Soak>,
    t: Instant,
    steps: &Steps<'_>,
    ui: &dyn Ui,
) -> NodeResult {
    let deadlines = g.desired.node.ssh.timeouts;
    let step = |s: &str| steps.enter(s);
    // This run's backups and guard live in backup/<run>/; the record names `rev`, which is the
    // run itself for an apply, and the revision returned to for `strata rollback`.
    let run = new_revision();
    let rev = o.revision.clone().unwrap_or_else(|| run.clone());
    let plan: &NodePlan = &g.plan;
    let handlers = plan.handlers();
    if !plan.is_empty() {
        let payloads = match engine::artifacts::pushed(&g.desired, plan, &o.repo).await {
            Ok(p) => p,
            Err(e) => {
                return NodeResult::Failed {
                    error: format!("{e}; nothing was changed"),
                }
            }
        };
        let guarded = guard::needs_guard(plan);
        let mut extend = if guarded {
            guard::extend_lines(&run, guard::WORK_SECS)
        } else {
            String::new()
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            // -vv: the node times each step of the changes and handlers (see `log_times`).
            extend.push_str(scripts::TIMES_ON);
        }
        // The changes script arms the guard first (its own lines, before any change).
        let arm = if guarded {
            let restore = scripts::rollback_script(&run, &handlers);
            format!(
                "{extend}{}",
                guard::arm_lines(&run, &restore, guard::WORK_SECS)
            )
        } else {
            extend.clone()
        };
        step("changes");
        let mut gate = run_step(
            conn,
            &scripts::changes_script(&g.desired, plan, &run, &arm, &payloads),
            "changes",
            Timeouts::secs(deadlines.changes),
        )
        .await;
        if let Err(e) = &gate {
            if !e.after_commit() {
                // Failed before anything live changed (e.g. a file failed its validation).
                if guarded {
                    let _ = conn
                        .run(&guard::disarm_script(&run), Timeouts::secs(deadlines.step))
                        .await;
                }
                return NodeResult::Failed {
                    error: format!("{e}; no file, service or firewall rule was changed"),
                };
            }
            if e.connection_lost() {
                // strata cannot act on the node any more; the guard (if armed) restores it.
                return NodeResult::Failed {
                    error: if guarded {
                        format!(
                            "{e}; the node's connectivity guard restores its previous state within {}s",
                            guard::WORK_SECS
                        )
                    } else {
                        e.to_string()
                    },
                };
            }
        }
        if gate.is_ok() {
            step("handlers");
            gate = run_step(
                conn,
                &scripts::handlers_script(&handlers, &g.desired.handlers, &extend),
                "handlers",
                Timeouts::secs(deadlines.handlers),
            )
            .await;
        }
        let health_script = scripts::health_script(&g.desired.health);
        let health = || run_step(conn, &health_script, "health check", health_deadline(g));
        if guarded && gate.is_ok() {
            // The confirm (a new connection: a whole handshake) and the health gate (read-only,
            // over the master) at once. The node is healthy or not whether or not strata can
            // still get in; each outcome is decided below exactly as when they ran in turn.
            let confirming = async {
                let t = Instant::now();
                let step = "confirming over a new connection";
                tracing::info!(node = %g.desired.node.name, step, "start");
                let c = confirm(conn, g, o, &run, ui).await;
                tracing::info!(node = %g.desired.node.name, step, elapsed_ms = t.elapsed().as_millis() as u64, "done");
                c
            };
            let checking = async {
                step("health check");
                let h = health().await;
                steps.end();
                h
            };
            steps.end(); // the handlers: their time, before two steps run at once
            let (confirmed, healthy) = tokio::join!(confirming, checking);
            match confirmed {
                Confirm::Confirmed => gate = healthy,
                Confirm::Failed(e) => gate = Err(e),
                Confirm::Lost(why) => {
                    let name = &g.desired.node.name;
                    ui.event(Event::Lost {
                        node: name.clone(),
                        why: why.clone(),
                    });
                    let error = format!(
                        "lost contact after the changes: no new SSH connection could reach {name} ({why})"
                    );
                    return wait_for_restore(g, o, &run, error).await;
                }
                // The guard decided first: it restores the node; strata must not roll back
                // over it, only wait for its result like a lost node's.
                Confirm::Late(said) => {
                    let error = format!(
                        "the confirm reached {} after its guard had begun to restore it (the window ran out before a new connection could confirm): {said}",
                        g.desired.node.name
                    );
                    return wait_for_restore(g, o, &run, error).await;
                }
            }
        } else if guarded {
            // Strata still has its connection: it rolls back itself, now, not the guard later.
            let _ = conn
                .run(&guard::disarm_script(&run), Timeouts::secs(deadlines.step))
                .await;
        } else if gate.is_ok() {
            step("health check");
            gate = health().await;
        }
        if let (Ok(()), Some(s)) = (&gate, soak) {
            gate = soak_node(conn, g, s, &step).await;
        }
        if let Err(e) = gate {
            if !o.rollback {
                return NodeResult::Failed {
                    error: format!("{e} (left as is: --no-rollback)"),
                };
            }
            step("rolling back");
            return roll_back(conn, g, &run, &handlers, e.to_string()).await;
        }
    }
    step("recording the apply");
    // An unreadable record is kept aside, and then nothing is pruned: its history is unknown.
    // Its lost history is rebuilt from the revisions still stored (one more round trip, only
    // then), so `strata rollback` can return to them.
    let (previous, unreadable) = match Record::read(g.live.record.as_deref()) {
        Ok(r) => (r, false),
        Err(_) => (stored_history(conn, &rev, deadlines.step).await, true),
    };
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
        &scripts::record_script(
            &json,
            &rev,
            &desired_json,
            (!unreadable).then_some(&keep[..]),
            &g.desired,
        ),
        "recording the apply",
        Timeouts::secs(deadlines.step),
    )
    .await
    {
        return NodeResult::Failed {
            error: e.to_string(),
        };
    }
    if plan.is_empty() {
        return NodeResult::Unchanged;
    }
    NodeResult::Applied {
        changes: plan.changes.len(),
        handlers: handlers.iter().map(Handler::to_string).collect(),
        seconds: t.elapsed().as_secs_f64(),
    }
}

/// Re-run the health gate every `every_secs` until `secs` have passed since the soak began;
/// the first failed check ends it.
async fn soak_node(
    conn: &Conn,
    g: &Gathered,
    s: Soak,
    step: &dyn Fn(&str),
) -> Result<(), StepError> {
    let every = s.every_secs.max(1);
    let checks = s.secs.div_ceil(every).max(1);
    step(&format!("soaking ({} s, check every {} s)", s.secs, every));
    let start = Instant::now();
    for k in 1..=checks {
        let due = start + Duration::from_secs(every * k);
        tokio::time::sleep_until(due.into()).await;
        run_step(
            conn,
            &scripts::health_script(&g.desired.health),
            &format!("soak check {k}/{checks} at {} s", every * k),
            health_deadline(g),
        )
        .await?;
        step(&format!("soak check {k}/{checks}: healthy"));
    }
    Ok(())
}

/// The health gate retries for its own timeout; the step's deadline leaves it a margin.
/// The health gate for a node put back as it was: the same, except the versions the new
/// release had to report (the previous release runs again).
fn previous_health(g: &Gathered) -> crate::model::HealthCheck {
    crate::model::HealthCheck {
        expect_version: Vec::new(),
        ..g.desired.health.clone()
    }
}

fn health_deadline(g: &Gathered) -> Duration {
    let h = &g.desired.health;
    // A progress check can start just before the timeout and then wait its own window.
    let progress = h
        .expect_progress
        .as_ref()
        .map_or(0, |p| p.within_secs * 2 + 10);
    Duration::from_secs(h.timeout_secs + 60 + progress)
}

enum Confirm {
    Confirmed,
    /// The confirm window could not start (strata rolls back over its connection).
    Failed(StepError),
    /// A new connection reached the node, but its guard had decided first: what it said.
    Late(String),
    /// No new connection reached the node within the window.
    Lost(String),
}

/// Open a NEW connection (its own master, its own TCP connection and authentication) and
/// confirm through it: the proof that an operator can still get in.
async fn confirm(conn: &Conn, g: &Gathered, o: &Opts, run: &str, ui: &dyn Ui) -> Confirm {
    let name = &g.desired.node.name;
    let step_deadline = Timeouts::secs(g.desired.node.ssh.timeouts.step);
    let window = o.confirm_timeout.max(2);
    if let Err(e) = run_step(
        conn,
        &guard::window_script(run, window),
        "opening the confirm window",
        step_deadline,
    )
    .await
    {
        return Confirm::Failed(e);
    }
    ui.event(Event::Confirming {
        node: name.clone(),
        window_secs: window,
    });
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
        match tokio::time::timeout(left, Conn::open_new(&id, &o.repo)).await {
            Ok(Ok(c)) => {
                let out = c.run(&guard::confirm_script(run), left).await;
                c.close().await;
                match out {
                    Ok(out) if out.stdout.lines().any(|l| l == "CONFIRMED") => {
                        return Confirm::Confirmed
                    }
                    Ok(out) => return Confirm::Late(out.stdout.trim().to_string()),
                    Err(e) => last = e.to_string(),
                }
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node's guard restores it (the node is lost to new connections, or the guard decided
/// before the confirm): wait for that, reconnect, read what the guard did, check health.
async fn wait_for_restore(g: &Gathered, o: &Opts, run: &str, error: String) -> NodeResult {
    let lost_at = Instant::now();
    let step_deadline = Timeouts::secs(g.desired.node.ssh.timeouts.step);
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
            tokio::time::timeout(Duration::from_secs(5), Conn::open_new(&id, &o.repo)).await
        {
            let reached = lost_at.elapsed().as_secs_f64();
            let out = c.run(&guard::result_script(run), step_deadline).await;
            let (by, result) = out
                .map(|o| guard::parse_result(&o.stdout))
                .unwrap_or_default();
            if by == "guard" && result.starts_with("restored") {
                let health = run_step(
                    &c,
                    &scripts::health_script(&previous_health(g)),
                    "health check after the restore",
                    health_deadline(g),
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

/// The node failed a step after its first change: put the previous files, firewall and
/// service states back, run the handlers again, and check health again. The node still
/// counts as failed (the rollout stops), but the summary says whether it is back and healthy.
async fn roll_back(
    conn: &Conn,
    g: &Gathered,
    run: &str,
    handlers: &[Handler],
    error: String,
) -> NodeResult {
    let undo = run_step(
        conn,
        &scripts::rollback_script(run, handlers),
        "rollback",
        Timeouts::secs(g.desired.node.ssh.timeouts.changes),
    )
    .await;
    let health = match &undo {
        Ok(()) => run_step(
            conn,
            &scripts::health_script(&previous_health(g)),
            "health check after rollback",
            health_deadline(g),
        )
        .await
        .map_err(|e| e.to_string()),
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
        (Err(u), _) => NodeResult::RollbackFailed {
            error,
            why: u.to_string(),
        },
    }
}

/// -vv: the times the node measured for each step of a timed script, and their sums by kind
/// (where a `changes` step's time goes: staging and validation, commit, units, firewall).
fn log_times(node: &str, what: &str, stdout: &str) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let times = scripts::step_times(stdout);
    for (name, ms) in &times {
        tracing::debug!(node = %node, step = %what, elapsed_ms = *ms, "on the node: {name}");
    }
    for (kind, ms, n) in scripts::times_by_kind(&times) {
        tracing::debug!(node = %node, step = %what, elapsed_ms = ms, "on the node, {n} x {kind}");
    }
}

/// A stand-in previous record whose history is the revisions stored on the node (see
/// `Record::rebuilt_history`); None when none are, or they cannot be read.
async fn stored_history(conn: &Conn, rev: &str, step_secs: u64) -> Option<Record> {
    let out = conn
        .run(&rollback::revisions_script(), Timeouts::secs(step_secs))
        .await
        .ok()?;
    let (_, stored) = rollback::parse_revisions(&out.stdout).ok()?;
    let history = Record::rebuilt_history(&stored, rev);
    let first = history.first()?.clone();
    Some(Record {
        applied_at: first.applied_at,
        applied_by: first.applied_by.clone(),
        commit: None,
        desired_fingerprint: String::new(),
        resources: Default::default(),
        revision: first.revision.clone(),
        kind: first.kind.clone(),
        rolled_back_from: None,
        history,
    })
}

/// How many of a failed script's last standard-error lines the summary shows.
const STDERR_LINES: usize = 4;

/// How much longer than a step's deadline strata waits for the node to end that step's
/// script (`timeout -k 2`: TERM at the deadline, KILL 2 s later).
const KILL_MARGIN_SECS: u64 = 5;

/// Run a script; its last `FAIL ...` / `UNHEALTHY ...` line (plus context) is the error.
pub async fn run_step(
    conn: &Conn,
    script: &str,
    what: &str,
    deadline: Duration,
) -> Result<(), StepError> {
    // The node ends the script at the deadline itself (TERM, KILL 2 s later, its whole
    // process group): a script strata stopped waiting for never goes on beside what strata
    // does next (a rollback). strata waits a margin longer, to hear that end.
    let secs = deadline.as_secs().max(1);
    let out = conn
        .run(
            &probe::bounded(script, secs),
            deadline + Duration::from_secs(KILL_MARGIN_SECS),
        )
        .await
        .map_err(|e| StepError {
            step: what.to_string(),
            failure: Failure::Transport(e),
        })?;
    log_times(&conn.node, what, &out.stdout);
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
    let reached = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("STEP "))
        .last()
        .map(str::to_string);
    // `timeout`'s exits: 124 (ended by TERM), 137 (KILL).
    let stopped = matches!(out.code, Some(124) | Some(137))
        && !out.stdout.lines().any(|l| l.starts_with("FAIL"));
    let said = if stopped {
        let at = reached
            .as_deref()
            .map(|r| format!(" (at {r})"))
            .unwrap_or_default();
        format!("stopped on the node at its deadline of {secs}s{at}")
    } else if stderr.is_empty() {
        lines.join("\n    ")
    } else {
        // The last few lines: a tool's reason often spans two (systemd's does).
        let err: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &err[err.len().saturating_sub(STDERR_LINES)..];
        format!(
            "{}\n    stderr: {}",
            lines.join("\n    "),
            tail.join("\n    stderr: ")
        )
    };
    Err(StepError {
        step: what.to_string(),
        failure: Failure::Script {
            reached,
            committed: out.stdout.lines().any(|l| l.starts_with("DONE ")),
            code: out.code,
            said,
        },
    })
}
