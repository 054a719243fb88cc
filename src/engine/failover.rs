//! `strata failover SET --to NODE`: move an exclusive service from the node that runs it to
//! NODE without an instant where both run it. Stop and disable it on the old node and verify
//! it stopped (unit inactive, no process left, its ports closed); then start it on NODE
//! behind its health gate. On any failure, NODE is verified stopped and the old node is
//! started again. Both nodes get a record (`kind: failover`), the audit log a line each.

use crate::engine::events::{Event, Ui};
use crate::engine::local::now;
use crate::engine::node_apply::{apply_node, Opts};
use crate::engine::{gather_one, Gathered, Outcome, Reach};
use crate::error::{Error, Result};
use crate::model::{ChangeId, DesiredState, ExclusiveSet, NodePlan, NodeResult, Signing, Timeouts};
use crate::plan::exclusive::key_problems;
use crate::remote::apply::health_script;
use crate::remote::probe::sh_quote;
use crate::report::{redact, PlanReport};
use crate::transport::Conn;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the operator asked for.
pub struct Request {
    pub set: String,
    pub to: String,
    /// The operator confirms that every unreachable member is fenced (powered off or cut
    /// off) and does not run the service.
    pub old_node_is_down: bool,
    pub yes: bool,
    pub opts: Opts,
    pub inventory_file: PathBuf,
    pub secrets: Vec<String>,
    pub started: Instant,
}

/// Run a failover over the rendered fleet `nodes`.
pub async fn run(nodes: Vec<DesiredState>, req: &Request, ui: &dyn Ui) -> Result<()> {
    let repo = req.opts.repo.clone();
    let sets = crate::engine::exclusive::sets_of(nodes.iter());
    let Some(set) = sets.iter().find(|s| s.name == req.set).cloned() else {
        return Err(Error::Usage(format!(
            "`{}` is not an exclusive set of {} (sets: {})",
            req.set,
            req.inventory_file.display(),
            if sets.is_empty() {
                "none".into()
            } else {
                sets.iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    if set.member(&req.to).is_none() {
        return Err(Error::Usage(format!(
            "`{}` is not a member of {} (members: {})",
            req.to,
            set.name,
            set.members
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if set.active != req.to {
        return Err(Error::Usage(config_first(
            &set,
            &req.to,
            &req.inventory_file,
        )));
    }
    let svc = set.service.clone();

    // Gather every member (their full probe: the plans say what the switch changes).
    let mut outcomes = Vec::new();
    for d in nodes
        .into_iter()
        .filter(|d| set.member(&d.node.name).is_some())
    {
        outcomes.push(gather_one(d, &repo, true, Reach::Master).await);
    }
    let result = switch(&set, &mut outcomes, req, ui).await;
    crate::engine::close_all(&mut outcomes).await;
    let _ = svc;
    result
}

/// The message when the config does not name NODE active yet: the reviewed change first.
pub fn config_first(set: &ExclusiveSet, to: &str, inventory: &Path) -> String {
    format!(
        "the config names {} active in exclusive set {}; a failover carries out the reviewed change, it does not make it. Change this one line in {}:\n    exclusive:\n      {}:\n        active: {}   # was: {}\nthen commit it and run `strata failover {} --to {}` again",
        set.active,
        set.name,
        inventory.display(),
        set.name,
        to,
        set.active,
        set.name,
        to
    )
}

/// The changes of a plan other than the exclusive service's own: a failover makes only
/// the switch, anything else must be applied first.
pub fn other_changes(plan: &NodePlan, service: &str) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| c.id != ChangeId::Service(service.to_string()))
        .map(|c| c.id.to_string())
        .collect()
}

/// The words printed when the operator confirmed that unreachable members are down.
pub fn assumed(node: &str, service: &str, error: &str, fence: Option<&str>) -> String {
    let mut s = format!(
        "ASSUMED (you confirmed it with --old-node-is-down): {node} is fenced, powered off or cut off from the network, and does not run {service}. strata could not check it: {error}."
    );
    if let Some(cmd) = fence {
        s.push_str(&format!(
            " Its fence hook `{cmd}` ran and succeeded, and {node} still does not answer SSH."
        ));
    }
    s.push_str(&format!(
        " Its record on the node is not updated; when it comes back, its config keeps {service} stopped and disabled."
    ));
    s
}

/// The script that proves the service stopped: the unit not active, no process in its
/// cgroup (nor a main PID), none of its ports listening. Retried for `secs` seconds.
pub fn verify_script(service: &str, ports: &[u16], secs: u64) -> String {
    let u = sh_quote(&format!("{service}.service"));
    let mut s = format!("u={u}\nend=$(( $(date +%s) + {secs} ))\nwhile :; do\n  bad=''\n");
    s.push_str("  st=$(systemctl is-active \"$u\" 2>/dev/null)\n  case $st in active|activating|deactivating|reloading|refreshing) bad=\"$bad\nUNIT $st\";; esac\n");
    s.push_str("  pid=$(systemctl show -p MainPID --value \"$u\" 2>/dev/null)\n  [ -z \"$pid\" ] || [ \"$pid\" = 0 ] || bad=\"$bad\nPID $pid\"\n");
    s.push_str("  cg=$(systemctl show -p ControlGroup --value \"$u\" 2>/dev/null)\n  if [ -n \"$cg\" ] && [ -r \"/sys/fs/cgroup$cg/cgroup.procs\" ]; then p=$(tr '\\n' ' ' < \"/sys/fs/cgroup$cg/cgroup.procs\"); [ -z \"${p% }\" ] || bad=\"$bad\nPROCS ${p% }\"; fi\n");
    for p in ports {
        s.push_str(&format!(
            "  [ -z \"$(ss -Hltnu 'sport = :{p}' 2>/dev/null)\" ] || bad=\"$bad\nPORT {p}\"\n"
        ));
    }
    s.push_str("  if [ -z \"$bad\" ]; then echo STOPPED; exit 0; fi\n  if [ $(date +%s) -ge $end ]; then printf '%s\\n' \"$bad\" | sed '/^$/d'; echo RUNNING; exit 0; fi\n  sleep 0.5\ndone\n");
    s
}

/// Parse the verify script's reply: Ok when stopped, Err with what is still there.
pub fn parse_verify(out: &str) -> std::result::Result<(), Vec<String>> {
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.last() == Some(&"STOPPED") {
        return Ok(());
    }
    let mut why = Vec::new();
    for l in &lines {
        let (k, v) = l.split_once(' ').unwrap_or((l, ""));
        match k {
            "UNIT" => why.push(format!("the unit is {v}")),
            "PID" => why.push(format!("its main process {v} runs")),
            "PROCS" => why.push(format!("processes {v} are left in its cgroup")),
            "PORT" => why.push(format!("port {v} still listens")),
            _ => {}
        }
    }
    if why.is_empty() {
        why.push(format!("no answer from the check ({})", out.trim()));
    }
    Err(why)
}

async fn verify_stopped(conn: &Conn, set: &ExclusiveSet) -> std::result::Result<(), Vec<String>> {
    match conn
        .run(
            &verify_script(&set.service, &set.ports, 10),
            Timeouts::secs(40),
        )
        .await
    {
        Ok(out) => parse_verify(&out.stdout),
        Err(e) => Err(vec![format!("the check did not run: {e}")]),
    }
}

/// Start the service again on a node that stood down, and check its health gate.
async fn start_again(g: &Gathered, set: &ExclusiveSet) -> String {
    let Some(conn) = g.conn.as_ref() else {
        return "no connection".into();
    };
    let u = sh_quote(&format!("{}.service", set.service));
    let script = format!(
        "systemctl enable --quiet {u} && systemctl start {u} || {{ echo FAILED; exit 1; }}\n{}",
        health_script(&set.takeover_health)
    );
    match conn
        .run(
            &script,
            Timeouts::secs(set.takeover_health.timeout_secs + 60),
        )
        .await
    {
        Ok(out) if out.stdout.contains("HEALTHY") && !out.stdout.contains("UNHEALTHY") => {
            "started again, healthy".into()
        }
        Ok(out) => format!(
            "started again, NOT healthy: {}",
            out.stdout.lines().last().unwrap_or("").trim()
        ),
        Err(e) => format!("could not be started again: {e}"),
    }
}

fn planned<'a>(outcomes: &'a mut [Outcome], name: &str) -> Option<&'a mut Gathered> {
    outcomes.iter_mut().find_map(|o| match o {
        Outcome::Planned(g) if g.desired.node.name == name => Some(g.as_mut()),
        _ => None,
    })
}

async fn switch(
    set: &ExclusiveSet,
    outcomes: &mut [Outcome],
    req: &Request,
    ui: &dyn Ui,
) -> Result<()> {
    let svc = &set.service;
    let say = |s: String| ui.event(Event::Say(s));
    let mut old: Vec<String> = Vec::new();
    let mut down: Vec<(String, String)> = Vec::new();
    for o in outcomes.iter() {
        match o {
            Outcome::Planned(g) if g.desired.node.name != req.to => {
                if Signing::of(g.live.services.get(svc)) == Signing::Active {
                    old.push(g.desired.node.name.clone());
                }
            }
            Outcome::Failed { desired, error } => {
                if desired.node.name == req.to {
                    return Err(Error::Failed(format!(
                        "{} cannot be reached ({error}); nothing was changed",
                        req.to
                    )));
                }
                down.push((desired.node.name.clone(), error.clone()));
            }
            _ => {}
        }
    }
    let new_active = planned(outcomes, &req.to)
        .map(|g| Signing::of(g.live.services.get(svc)) == Signing::Active)
        .unwrap_or(false);
    if new_active && old.is_empty() && down.is_empty() {
        say(format!(
            "{} already runs {svc} and no other member of {} does: nothing to do",
            req.to, set.name
        ));
        return Ok(());
    }
    if !down.is_empty() && !req.old_node_is_down {
        return Err(Error::Failed(format!(
            "{} cannot be reached, so {svc} may still run there: strata will not start it on {}. Nothing was changed.\nIf that host is fenced (powered off, or cut off from the network so it cannot sign), run again with --old-node-is-down.",
            down.iter().map(|(n, e)| format!("{n} ({e})")).collect::<Vec<_>>().join(", "),
            req.to
        )));
    }
    // Preconditions on the node taking over: its own keys, nothing but the switch to make.
    let g = planned(outcomes, &req.to).expect("to was planned");
    let keys = key_problems(&g.desired, &g.live);
    if !keys.is_empty() {
        return Err(Error::Failed(format!(
            "{} cannot take over {}: {}; strata never copies keys. Nothing was changed.",
            req.to,
            set.name,
            keys.join("; ")
        )));
    }
    let mut problems = Vec::new();
    for n in old.iter().chain(std::iter::once(&req.to)) {
        let g = planned(outcomes, n).expect("planned");
        let other = other_changes(&g.plan, svc);
        if !other.is_empty() {
            problems.push(format!("{n}: {}", other.join(", ")));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Failed(format!(
            "a failover makes only the switch, and these nodes have other changes pending:\n  {}\napply them first (`strata apply`), then fail over. Nothing was changed.",
            problems.join("\n  ")
        )));
    }

    // The plan, then ask.
    let reports: Vec<_> = outcomes
        .iter()
        .filter(|o| old.iter().any(|n| n == o.name()) || o.name() == req.to)
        .map(Outcome::report)
        .collect();
    ui.event(Event::Plan(Box::new(PlanReport::new(reports))));
    let mut steps = format!(
        "Failover of exclusive set {} ({svc}) to {}:\n",
        set.name, req.to
    );
    let ports = if set.ports.is_empty() {
        String::new()
    } else {
        format!(
            ", ports {} closed",
            set.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    for n in &old {
        steps.push_str(&format!(
            "  1. stop and disable {svc} on {n}; verify: unit inactive, no process left{ports}\n"
        ));
    }
    let mut fenced = Vec::new();
    for (n, e) in &down {
        let hook = match set.fence.get(n) {
            Some(cmd) => format!(" Its fence hook `{cmd}` runs first and must succeed."),
            None => String::new(),
        };
        steps.push_str(&format!(
            "  1. {n} is unreachable: {}{hook}\n",
            assumed(n, svc, e, None)
        ));
        fenced.push(n.clone());
    }
    steps.push_str(&format!(
        "  2. start {svc} on {} behind its health gate; on failure, stop it there and start {} again",
        req.to,
        if old.is_empty() { "nothing".to_string() } else { old.join(", ") }
    ));
    say(steps);
    if !req.yes && !ui.confirm("Fail over? Only 'yes' will be accepted")? {
        return Err(Error::Declined("cancelled: nothing was changed".into()));
    }

    // Fence hooks of unreachable members: run on this machine, must succeed, and the node
    // must still not answer afterwards.
    for (n, _) in &down {
        if let Some(cmd) = set.fence.get(n) {
            say(format!("{n}: running its fence hook: {cmd}"));
            let st = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&req.opts.repo)
                .status()
                .await
                .map_err(|e| Error::local(format!("running the fence hook of {n}"), e))?;
            if !st.success() {
                return Err(Error::Failed(format!(
                    "the fence hook of {n} failed ({st}); nothing was changed"
                )));
            }
            let id = set.member(n).expect("member");
            if let Ok(c) = Conn::open(id, &req.opts.repo).await {
                c.close().await;
                return Err(Error::Failed(format!(
                    "{n} answers SSH after its fence hook ran: it is not fenced; nothing was changed (plan again: it is reachable)"
                )));
            }
        }
        say(assumed(
            n,
            svc,
            &down
                .iter()
                .find(|(d, _)| d == n)
                .map(|(_, e)| e.clone())
                .unwrap_or_default(),
            set.fence.get(n).map(String::as_str),
        ));
    }

    let mut results: Vec<(String, NodeResult)> = Vec::new();
    // 1. Stand the old node(s) down, and verify.
    let mut stood_down: Vec<String> = Vec::new();
    let mut failure: Option<String> = None;
    for n in &old {
        let g = planned(outcomes, n).expect("planned");
        let res = apply_node(g, &req.opts, ui).await;
        let failed = res.is_failure();
        results.push((n.clone(), res.clone()));
        stood_down.push(n.clone());
        if failed {
            failure = Some(format!("{n}: stopping {svc} failed: {}", short(&res)));
            break;
        }
        let conn = g.conn.as_ref().expect("conn");
        match verify_stopped(conn, set).await {
            Ok(()) => say(format!(
                "{n}: {svc} stopped and disabled; verified: unit inactive, no process left{ports}"
            )),
            Err(why) => {
                failure = Some(format!("{n}: {svc} did not stop: {}", why.join("; ")));
                break;
            }
        }
    }
    // 2. Start on the new node.
    if failure.is_none() {
        let g = planned(outcomes, &req.to).expect("planned");
        let res = apply_node(g, &req.opts, ui).await;
        results.push((req.to.clone(), res.clone()));
        if res.is_failure() {
            failure = Some(format!("{}: {}", req.to, short(&res)));
            // apply_node put it back (stopped, disabled); prove it before anything else starts.
            let conn = g.conn.as_ref().expect("conn");
            if let Err(why) = verify_stopped(conn, set).await {
                let msg = format!(
                    "{} failed and {svc} is NOT verified stopped there ({}); {} was NOT started again, to never run it twice. Check {} by hand.",
                    req.to,
                    why.join("; "),
                    if stood_down.is_empty() { "no node".into() } else { stood_down.join(", ") },
                    req.to
                );
                audit(req, set, &old, &fenced, &results, false)?;
                return Err(Error::Failed(msg));
            }
        }
    }
    if let Some(f) = failure {
        let mut restored = Vec::new();
        for n in &stood_down {
            let g = planned(outcomes, n).expect("planned");
            let how = start_again(g, set).await;
            restored.push(format!("{n}: {svc} {how}"));
        }
        audit(req, set, &old, &fenced, &results, false)?;
        return Err(Error::Failed(format!(
            "failover of {} to {} failed: {f}\n{}\nThe config still names {} active: set `active:` back to {} in {} (the records of the nodes show the failed switch).",
            set.name,
            req.to,
            if restored.is_empty() { "no node was stood down, so none was started again".to_string() } else { restored.join("\n") },
            req.to,
            if stood_down.is_empty() { "the old node".to_string() } else { stood_down.join(", ") },
            req.inventory_file.display()
        )));
    }
    let secs = req.started.elapsed().as_secs_f64();
    say(format!(
        "{} runs {svc} now, healthy; {} stood down{}. Failover took {secs:.1}s from the command to {} healthy.",
        req.to,
        if old.is_empty() { "no node".into() } else { old.join(", ") },
        if fenced.is_empty() { String::new() } else { format!("; assumed fenced: {}", fenced.join(", ")) },
        req.to
    ));
    audit(req, set, &old, &fenced, &results, true)
}

fn short(r: &NodeResult) -> String {
    match r {
        NodeResult::Failed { error } => error.clone(),
        NodeResult::RolledBack { error, detail, .. } => format!("{error} (rolled back: {detail})"),
        NodeResult::RollbackFailed { error, why } => format!("{error} (rollback failed: {why})"),
        NodeResult::Lost { error, .. } => error.clone(),
        other => format!("{other:?}"),
    }
}

/// One line per node in `.strata/audit.jsonl`, with the switch it was part of.
fn audit(
    req: &Request,
    set: &ExclusiveSet,
    from: &[String],
    fenced: &[String],
    results: &[(String, NodeResult)],
    ok: bool,
) -> Result<()> {
    let dir = req.opts.repo.join(".strata");
    let path = dir.join("audit.jsonl");
    let fail =
        |e: std::io::Error| Error::local(format!("writing the audit log {}", path.display()), e);
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let mut text = String::new();
    let mut nodes: Vec<(String, serde_json::Value)> = results
        .iter()
        .map(|(n, r)| (n.clone(), serde_json::to_value(r).unwrap_or_default()))
        .collect();
    for n in fenced {
        nodes.push((n.clone(), serde_json::json!({"result": "assumed_fenced"})));
    }
    for (node, outcome) in nodes {
        let line = serde_json::json!({
            "at": now(),
            "at_utc": crate::report::rfc3339(now()),
            "by": req.opts.by,
            "commit": req.opts.commit,
            "node": node,
            "outcome": outcome,
            "failover": {
                "set": set.name,
                "service": set.service,
                "from": from,
                "to": req.to,
                "assumed_fenced": fenced,
                "succeeded": ok,
                "seconds": req.started.elapsed().as_secs_f64(),
            },
        });
        text.push_str(&redact(&line.to_string(), &req.secrets));
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_reply_parses() {
        assert_eq!(parse_verify("STOPPED\n"), Ok(()));
        assert_eq!(
            parse_verify("UNIT active\nPID 42\nPROCS 42 43\nPORT 8080\nRUNNING\n"),
            Err(vec![
                "the unit is active".to_string(),
                "its main process 42 runs".into(),
                "processes 42 43 are left in its cgroup".into(),
                "port 8080 still listens".into()
            ])
        );
        assert!(parse_verify("").is_err());
    }

    #[test]
    fn verify_script_quotes_the_unit_and_checks_each_port() {
        let s = verify_script("monad-validator", &[8000, 8080], 10);
        assert!(s.contains("u='monad-validator.service'"));
        assert!(s.contains("sport = :8000") && s.contains("sport = :8080"));
        assert!(s.contains("+ 10 ))"));
    }

    #[test]
    fn the_assumption_is_spelled_out() {
        let a = assumed(
            "validator-1",
            "monad-validator",
            "connection refused",
            Some("true"),
        );
        assert!(a.starts_with("ASSUMED (you confirmed it with --old-node-is-down): validator-1 is fenced, powered off or cut off from the network, and does not run monad-validator."), "{a}");
        assert!(a.contains("fence hook `true` ran and succeeded"));
    }

    #[test]
    fn the_config_comes_first() {
        let set = ExclusiveSet {
            name: "validators".into(),
            service: "monad-validator".into(),
            active: "validator-1".into(),
            members: vec![],
            ports: vec![],
            fence: Default::default(),
            takeover_health: Default::default(),
        };
        let m = config_first(&set, "validator-2", Path::new("inventory/hosts.yaml"));
        assert!(
            m.contains("active: validator-2   # was: validator-1"),
            "{m}"
        );
        assert!(m.contains("run `strata failover validators --to validator-2` again"));
    }

    #[test]
    fn only_the_switch_itself_may_be_pending() {
        use crate::model::{Action, Cause, Change};
        let ch = |id: ChangeId| Change {
            id,
            action: Action::Change,
            details: vec![],
            diff: None,
            secret: false,
            handlers: vec![],
            ops: vec![],
            cause: Cause::default(),
            restore_from: None,
        };
        let plan = NodePlan {
            changes: vec![
                ch(ChangeId::Service("monad-validator".into())),
                ch(ChangeId::File("/etc/monad/node.toml".into())),
            ],
            ..Default::default()
        };
        assert_eq!(
            other_changes(&plan, "monad-validator"),
            vec!["file:/etc/monad/node.toml"]
        );
    }
}
