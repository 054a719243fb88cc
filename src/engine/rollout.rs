//! The rollout every command that changes nodes goes through (apply, rollback, bootstrap):
//! show the plan, refuse a stale saved plan, ask, change nodes in batches no larger than
//! their group's `serial`, stop at the first failed batch, summarise, write the audit log.

use crate::engine::events::{Event, Ui};
use crate::engine::local::now;
use crate::engine::node_apply::{apply_node_soaked, Opts, Soak};
use crate::engine::{Gathered, Outcome};
use crate::error::{Error, Result};
use crate::model::NodeResult;
use crate::model::Record;
use crate::report::{redact, PlanReport};
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// What the caller of a rollout decides.
pub struct Rollout<'a> {
    pub opts: Opts,
    /// Do not ask.
    pub yes: bool,
    /// The question to ask before any change.
    pub question: &'a str,
    /// A plan saved by `plan -o`: refused if any node changed since.
    pub saved: Option<&'a PlanReport>,
    /// Secret values, kept out of the audit log.
    pub secrets: &'a [String],
    pub started: Instant,
    /// Exclusive sets: a member that cannot be read counts as not running the service
    /// (only when the operator says so explicitly).
    pub unknown_is_inactive: bool,
}

/// Does this node need an apply at all: changes to make, or no record of this configuration
/// yet (a node converged by hand, or by a strata that did not record)? A node that needs
/// neither is left alone: no lock, no new revision.
pub fn needs_apply(g: &Gathered) -> bool {
    !g.plan.is_empty()
        || Record::parse(g.live.record.as_deref())
            .is_none_or(|r| r.desired_fingerprint != g.desired.fingerprint())
}

/// Run the rollout over gathered nodes. Ok: every node that needed it was applied (the
/// results, in input order; empty when nothing needed doing). Err: nothing was applied
/// (a node could not be planned, a stale plan, the operator said no), or some node failed
/// (`Error::Failed`, after the summary and the audit).
pub async fn run(
    repo: &Path,
    outcomes: &mut [Outcome],
    r: &Rollout<'_>,
    ui: &dyn Ui,
) -> Result<Vec<(String, NodeResult)>> {
    let report = PlanReport::new(crate::engine::node_reports(outcomes));
    ui.event(Event::Plan(Box::new(report.clone())));
    if report.summary.failed > 0 {
        return Err(Error::Failed(format!(
            "{} node(s) could not be planned; nothing was applied",
            report.summary.failed
        )));
    }
    // Exclusive services: the plan may not leave two members of a set running it, nor start
    // it while another member runs it or cannot be read.
    let verdicts =
        crate::engine::exclusive::check_fleet(outcomes, repo, r.unknown_is_inactive).await;
    let mut refused = Vec::new();
    for v in &verdicts {
        for l in crate::engine::exclusive::lines(v) {
            ui.event(Event::Say(l));
        }
        refused.extend(v.errors.iter().cloned());
    }
    if !refused.is_empty() {
        return Err(Error::Failed(format!(
            "{}
nothing was applied",
            refused.join("\n")
        )));
    }
    if let Some(saved) = r.saved {
        let stale = stale_nodes(saved, &report);
        if !stale.is_empty() {
            return Err(Error::Usage(format!(
                "the saved plan is stale, nothing was applied:\n  {}\nrun `strata plan -o FILE` again and review it",
                stale.join("\n  ")
            )));
        }
    }
    let todo: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Planned(g) if needs_apply(g) => Some(i),
            _ => None,
        })
        .collect();
    if !report.has_changes() {
        ui.event(Event::NoChanges);
        // Still record nodes that were never recorded at this configuration.
        if todo.is_empty() {
            return Ok(Vec::new());
        }
    } else if !r.yes && !ui.confirm(r.question)? {
        return Err(Error::Declined("cancelled: nothing was changed".into()));
    }

    // Canaries first (their own serial batches, each soaked), then the rest as before.
    let policies: Vec<crate::model::CanaryPolicy> = todo
        .iter()
        .map(|&i| match &outcomes[i] {
            Outcome::Planned(g) => g.desired.canary.clone(),
            Outcome::Failed { .. } => Default::default(),
        })
        .collect();
    let first = canaries(&policies);
    let mut soaks: Vec<Option<Soak>> = vec![None; todo.len()];
    for &c in &first {
        let p = &policies[c];
        if p.soak_secs > 0 {
            soaks[c] = Some(Soak {
                secs: p.soak_secs,
                every_secs: p.soak_check_secs,
            });
        }
    }
    let soaks: Vec<Option<Soak>> = first
        .iter()
        .copied()
        .chain((0..todo.len()).filter(|k| !first.contains(k)))
        .map(|k| soaks[k])
        .collect();
    let n_first = first.len();
    let todo: Vec<usize> = first
        .iter()
        .copied()
        .chain((0..todo.len()).filter(|k| !first.contains(k)))
        .map(|k| todo[k])
        .collect();
    let serials: Vec<usize> = todo
        .iter()
        .map(|&i| match &outcomes[i] {
            Outcome::Planned(g) => g.desired.serial,
            Outcome::Failed { .. } => 1,
        })
        .collect();
    let mut results: Vec<(String, NodeResult)> = outcomes
        .iter()
        .map(|o| (o.name().to_string(), NodeResult::Unchanged))
        .collect();
    for &i in &todo {
        results[i].1 = NodeResult::Untouched;
    }
    let mut failed = 0;
    // From here on the first Ctrl-C lets running nodes finish and stops before the next batch.
    let graceful = crate::interrupt::graceful();
    // A batch never mixes canaries and the rest: the rest wait for every canary's soak.
    let mut all_batches = batches(&serials[..n_first]);
    all_batches.extend(
        batches(&serials[n_first..])
            .into_iter()
            .map(|b| b.into_iter().map(|k| k + n_first).collect()),
    );
    for batch in all_batches {
        if crate::interrupt::requested() {
            break;
        }
        let idx: Vec<usize> = batch.iter().map(|&b| todo[b]).collect();
        let soak_of = |i: usize| todo.iter().position(|&t| t == i).and_then(|k| soaks[k]);
        // Borrow each gathered node of the batch mutably, in parallel.
        let mut futs = Vec::new();
        for (i, o) in outcomes.iter_mut().enumerate() {
            if idx.contains(&i) {
                if let Outcome::Planned(g) = o {
                    let opts = &r.opts;
                    let unknown_is_inactive = r.unknown_is_inactive;
                    let soak = soak_of(i);
                    futs.push(async move {
                        // Read the other members again right before this node changes.
                        match crate::engine::exclusive::hold(g, repo, unknown_is_inactive).await {
                            Err(error) => (i, NodeResult::Failed { error }),
                            Ok(()) => (i, apply_node_soaked(g, opts, soak, ui).await),
                        }
                    });
                }
            }
        }
        for (i, res) in join_all(futs).await {
            if res.is_failure() {
                failed += 1;
            }
            ui.event(Event::NodeDone {
                node: results[i].0.clone(),
                result: res.clone(),
            });
            results[i].1 = res;
        }
        if failed > 0 {
            break;
        }
    }
    let interrupted = crate::interrupt::requested();
    let not_started = results
        .iter()
        .filter(|(_, res)| matches!(res, NodeResult::Untouched))
        .count();
    if interrupted {
        ui.event(Event::Warn(format!(
            "Interrupted (Ctrl-C): the running nodes finished; {not_started} node(s) were not started."
        )));
    }
    ui.event(Event::Summary {
        results: results.clone(),
        seconds: r.started.elapsed().as_secs_f64(),
    });
    audit(
        repo,
        &results,
        r.opts.commit.as_deref(),
        &r.opts.by,
        r.secrets,
    )?;
    drop(graceful);
    if failed > 0 {
        return Err(Error::Failed(format!(
            "{failed} node(s) failed; the summary above says which, and how each was left"
        )));
    }
    if interrupted && not_started > 0 {
        return Err(Error::Interrupted(format!(
            "{not_started} node(s) not started; run apply again to finish the rollout"
        )));
    }
    Ok(results)
}

/// Group nodes with changes into rolling batches: a batch never holds more nodes than the
/// smallest `serial` of the nodes in it.
pub fn batches(serials: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cap = usize::MAX;
    for (i, &s) in serials.iter().enumerate() {
        let s = s.max(1);
        if !cur.is_empty() && (cur.len() + 1 > cap.min(s)) {
            out.push(std::mem::take(&mut cur));
            cap = usize::MAX;
        }
        cap = cap.min(s);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Which of the nodes with changes (indexes into `policies`, in rollout order) are canaries:
/// per group with `canary: N`, its first N nodes, but only when the group has changes on
/// more nodes than that (a canary with nobody behind it protects nothing, so it is not
/// soaked). `canary` larger than the group is allowed and then means no canary.
pub fn canaries(policies: &[crate::model::CanaryPolicy]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut groups: Vec<&str> = Vec::new();
    for p in policies {
        if p.canary > 0 && !groups.contains(&p.group.as_str()) {
            groups.push(&p.group);
        }
    }
    for g in groups {
        let members: Vec<usize> = policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.canary > 0 && p.group == g)
            .map(|(i, _)| i)
            .collect();
        let n = policies[members[0]].canary;
        if members.len() > n {
            out.extend(&members[..n]);
        }
    }
    out.sort_unstable();
    out
}

/// Run futures concurrently (a batch is small: at most `serial` nodes).
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}

/// Why a saved plan no longer applies, one line per node.
pub fn stale_nodes(saved: &PlanReport, now: &PlanReport) -> Vec<String> {
    let mut out = Vec::new();
    for n in &now.nodes {
        match saved.nodes.iter().find(|s| s.node == n.node) {
            None => out.push(format!("{}: not in the saved plan", n.node)),
            Some(s) => {
                if s.desired_fingerprint != n.desired_fingerprint {
                    out.push(format!(
                        "{}: the configuration changed since the plan was saved",
                        n.node
                    ));
                }
                if s.live_fingerprint != n.live_fingerprint {
                    out.push(format!(
                        "{}: the node changed since the plan was saved",
                        n.node
                    ));
                }
            }
        }
    }
    out
}

/// Append one JSON line per node to `.strata/audit.jsonl` in the repo. A run whose audit
/// cannot be written is an error: the operator must know the trail has a gap.
pub fn audit(
    repo: &Path,
    results: &[(String, NodeResult)],
    commit: Option<&str>,
    by: &str,
    secrets: &[String],
) -> Result<()> {
    let dir = repo.join(".strata");
    let path = dir.join("audit.jsonl");
    let fail =
        |e: std::io::Error| Error::local(format!("writing the audit log {}", path.display()), e);
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(fail)?;
    let mut text = String::new();
    for (node, r) in results {
        let line = serde_json::json!({
            "at": now(),
            "at_utc": crate::report::rfc3339(now()),
            "by": by,
            "commit": commit,
            "node": node,
            "outcome": r,
        });
        text.push_str(&redact(&line.to_string(), secrets));
        text.push('\n');
    }
    f.write_all(text.as_bytes()).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_serial() {
        assert_eq!(batches(&[1, 1, 1]), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(batches(&[2, 2, 2]), vec![vec![0, 1], vec![2]]);
        assert_eq!(batches(&[3, 1, 3]), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(batches(&[]), Vec::<Vec<usize>>::new());
    }

    fn pol(group: &str, canary: usize) -> crate::model::CanaryPolicy {
        crate::model::CanaryPolicy {
            group: group.into(),
            canary,
            soak_secs: 6,
            soak_check_secs: 2,
        }
    }

    #[test]
    fn canaries_are_the_first_nodes_of_each_group_with_others_behind() {
        // No canary set: nobody goes first.
        assert!(canaries(&[pol("", 0), pol("", 0)]).is_empty());
        // canary 1 of three validators: the first one.
        let v = [
            pol("validators", 1),
            pol("validators", 1),
            pol("validators", 1),
        ];
        assert_eq!(canaries(&v), vec![0]);
        // Two groups interleaved: the first node of each.
        let m = [
            pol("a", 1),
            pol("b", 1),
            pol("a", 1),
            pol("b", 1),
            pol("", 0),
        ];
        assert_eq!(canaries(&m), vec![0, 1]);
        // Only the canaries themselves change (or canary >= group size): no soak.
        assert!(canaries(&[pol("v", 1)]).is_empty());
        assert!(canaries(&[pol("v", 5), pol("v", 5)]).is_empty());
        assert_eq!(
            canaries(&[pol("v", 2), pol("v", 2), pol("v", 2)]),
            vec![0, 1]
        );
    }
}
