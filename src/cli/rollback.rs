//! `strata rollback NODE [--to REVISION]`: put a node back to a revision it ran before.
//!
//! Each apply stores the desired state it applied next to that revision's backups
//! (`/var/lib/strata/backup/<rev>/desired.json`). A rollback reads it back, plans it against
//! the live node like any apply (so the operator sees exactly what will change), asks, and
//! applies it with the same engine: lock, guard, handlers, health gate, record.

use crate::cli::apply::{audit, confirm, print_summary, who};
use crate::cli::plan::{load_selected, node_reports, runtime, style};
use crate::engine::node_apply::{apply_node, Opts};
use crate::engine::{self, Gathered, Outcome};
use crate::error::{EXIT_ERROR, EXIT_OK};
use crate::model::DesiredState;
use crate::model::{Record, Revision};
use crate::remote::apply::BACKUP_DIR;
use crate::report::{self, short_commit, utc, PlanReport};
use crate::transport::Conn;
use base64::Engine as _;
use clap::Args;
use std::path::Path;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// The node to roll back.
    pub node: String,
    /// The revision to return to (default: the one before the node's current revision).
    #[arg(long)]
    pub to: Option<String>,
    /// List the node's revisions (and which can be returned to), change nothing.
    #[arg(long)]
    pub list: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// As for apply: the connectivity guard's confirm window, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub confirm_timeout: u64,
}

/// Print the record and the revisions whose desired state is stored: one round trip.
fn revisions_script() -> String {
    format!(
        "echo \"RECORD $(base64 -w0 {} 2>/dev/null)\"\nfor f in {BACKUP_DIR}/*/desired.json; do [ -f \"$f\" ] && d=${{f%/desired.json}} && echo \"STORED ${{d##*/}}\"; done\necho END\n",
        crate::remote::probe::STATE_FILE
    )
}

/// (record, stored revisions) from `revisions_script` output.
fn parse_revisions(out: &str) -> Result<(Option<Record>, Vec<String>), String> {
    if !out.lines().any(|l| l == "END") {
        return Err(format!("unexpected output: {}", out.trim()));
    }
    let mut record = None;
    let mut stored = Vec::new();
    for l in out.lines() {
        if let Some(b) = l.strip_prefix("RECORD ") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| format!("the record is not base64: {e}"))?;
            record = Record::parse(Some(&String::from_utf8_lossy(&raw)));
        } else if let Some(r) = l.strip_prefix("STORED ") {
            stored.push(r.trim().to_string());
        }
    }
    Ok((record, stored))
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

/// What to do with a file the current revision declares and the target does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// strata created it (an `N` manifest entry): remove it.
    Remove,
    /// strata replaced a file that was there before (`B`): put that copy back.
    Restore(String),
    /// No revision since the target wrote it: leave it, and say so.
    Unknown,
}

/// Files (dest, notify) declared by `current` but not by `target`.
pub fn orphan_files(current: &DesiredState, target: &DesiredState) -> Vec<(String, Vec<String>)> {
    use crate::model::Resource;
    let dests = |d: &DesiredState| -> Vec<(String, Vec<String>)> {
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

/// For each path, the first manifest entry of a revision newer than `target` (oldest first):
/// what was there before strata first wrote it. One round trip.
fn orphan_script(paths: &[String], target: &str) -> String {
    let mut s = format!(
        "revs=$(ls {BACKUP_DIR} 2>/dev/null | grep -E '^[0-9]+$' | sort -n)\nfor p in {}; do\n  r=unknown\n  for d in $revs; do\n    [ \"$d\" -gt {target} ] || continue\n    l=$(grep -m1 -Fx -e \"B $p\" -e \"N $p\" {BACKUP_DIR}/$d/manifest 2>/dev/null) || continue\n    case $l in N*) r=remove;; B*) r=\"restore {BACKUP_DIR}/$d$p\";; esac\n    break\n  done\n  echo \"ORPHAN $p $r\"\ndone\necho END\n",
        paths
            .iter()
            .map(|p| crate::remote::probe::sh_quote(p))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if paths.is_empty() {
        s = "echo END\n".into();
    }
    s
}

fn parse_orphans(out: &str) -> Vec<(String, Orphan)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("ORPHAN "))
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let path = it.next()?.to_string();
            let what = match (it.next()?, it.next()) {
                ("remove", _) => Orphan::Remove,
                ("restore", Some(src)) => Orphan::Restore(src.to_string()),
                _ => Orphan::Unknown,
            };
            Some((path, what))
        })
        .collect()
}

fn describe(h: &Revision) -> String {
    format!(
        "revision {} ({}{} {} by {})",
        h.revision,
        h.kind,
        h.commit
            .as_deref()
            .map(|c| format!(" of commit {}", short_commit(c)))
            .unwrap_or_default(),
        utc(h.applied_at),
        h.applied_by
    )
}

pub fn rollback(repo: &Path, inventory: Option<&Path>, args: RollbackArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let Some((mut nodes, secrets)) =
        load_selected(repo, inventory, std::slice::from_ref(&args.node))?
    else {
        return Ok(EXIT_ERROR);
    };
    nodes.retain(|d| d.node.name == args.node);
    let Some(current) = nodes.pop() else {
        anyhow::bail!(
            "`{}` is not a node in the inventory (rollback takes one node)",
            args.node
        );
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let name = current.node.name.clone();
        let conn = Conn::open(&current.node, repo)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: unreachable: {e}"))?;
        let prepared = match prepare(&conn, current, &args).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                conn.close().await;
                return Ok(EXIT_OK);
            }
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        execute(repo, conn, prepared, &args, &secrets, started).await
    })
}

/// What a rollback will do, read from the node.
struct Prepared {
    desired: DesiredState,
    live: crate::model::LiveState,
    plan: crate::model::NodePlan,
    record: Record,
    target: Revision,
}

/// Read the node's revisions (print them for `--list`: None), pick the target, read its
/// stored state, probe the node against it and plan.
async fn prepare(
    conn: &Conn,
    current: DesiredState,
    args: &RollbackArgs,
) -> anyhow::Result<Option<Prepared>> {
    let name = current.node.name.clone();
    let out = conn
        .run(&revisions_script())
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let (record, stored) =
        parse_revisions(&out.stdout).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let Some(record) = record else {
        anyhow::bail!("{name}: strata never applied this node: nothing to roll back to");
    };
    if args.list {
        println!("Revisions of {name} (newest first):");
        for h in &record.history {
            let mark = if h.revision == record.revision {
                "current"
            } else if stored.contains(&h.revision) {
                "can return to"
            } else {
                "not stored"
            };
            println!("  {}  [{mark}]", describe(h));
        }
        return Ok(None);
    }
    let target = pick_target(&record, args.to.as_deref(), &stored)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
        .clone();
    let raw = conn
        .run(&format!(
            "cat {BACKUP_DIR}/{}/desired.json",
            crate::remote::probe::sh_quote(&target.revision)
        ))
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut desired: DesiredState = serde_json::from_str(&raw.stdout).map_err(|e| {
        anyhow::anyhow!(
            "{name}: the stored state of revision {} does not parse: {e}",
            target.revision
        )
    })?;
    // How to reach the node and how many revisions to keep come from today's inventory.
    desired.node = current.node.clone();
    desired.keep_revisions = current.keep_revisions;
    desired.secrets = current.secrets.clone();
    println!(
        "Rolling {name} back from {} to {}.\n",
        describe(&record.entry()),
        describe(&target)
    );
    let live = engine::probe_node(conn, &desired)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if let Some(why) = crate::plan::lockout::lockout(&desired, live.client_addr.as_deref()) {
        anyhow::bail!("{name}: revision {}: {why}", target.revision);
    }
    let mut plan = crate::plan::diff::diff(&desired, &live);
    crate::plan::drift::classify(&mut plan, &desired, &live, Some(&record));
    orphans(conn, &record, &target, &desired, &mut plan).await?;
    Ok(Some(Prepared {
        desired,
        live,
        plan,
        record,
        target,
    }))
}

/// Files only the current revision declares: removed, or their pre-strata copy put back, with
/// the handlers the current revision notifies for them (a dropped unit drop-in reloads).
async fn orphans(
    conn: &Conn,
    record: &Record,
    target: &Revision,
    desired: &DesiredState,
    plan: &mut crate::model::NodePlan,
) -> anyhow::Result<()> {
    use crate::model::{Action, Change, Op};
    let name = &desired.node.name;
    let raw = conn
        .run(&format!(
            "cat {BACKUP_DIR}/{}/desired.json 2>/dev/null",
            crate::remote::probe::sh_quote(&record.revision)
        ))
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let Ok(current) = serde_json::from_str::<DesiredState>(&raw.stdout) else {
        plan.warnings.push(format!(
            "the current revision {} has no stored state: files only it declared are left in place",
            record.revision
        ));
        return Ok(());
    };
    let files = orphan_files(&current, desired);
    if files.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    let out = conn
        .run(&orphan_script(&paths, &target.revision))
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    for (path, what) in parse_orphans(&out.stdout) {
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
                    "file:{path} is declared by revision {} only, but no revision since {} recorded what was there before: left in place",
                    record.revision, target.revision
                ));
                continue;
            }
        };
        plan.changes.push(Change {
            id: format!("file:{path}"),
            action: Action::Remove,
            details: vec![format!(
                "not declared by revision {}: {detail}",
                target.revision
            )],
            diff: None,
            secret: false,
            handlers: notify,
            ops: vec![Op::Delete],
            cause: crate::model::Cause::Pending,
            restore_from,
        });
    }
    Ok(())
}

/// Show the plan, ask, apply it with the engine (the same connection), report.
async fn execute(
    repo: &Path,
    conn: Conn,
    p: Prepared,
    args: &RollbackArgs,
    secrets: &[String],
    started: Instant,
) -> anyhow::Result<i32> {
    let name = p.desired.node.name.clone();
    let (record, target) = (p.record, p.target);
    let mut outcomes = vec![Outcome::Planned(Box::new(Gathered {
        desired: p.desired,
        live: p.live,
        plan: p.plan,
        conn: Some(conn),
    }))];
    let report = PlanReport::new(node_reports(&outcomes));
    print!("{}", report::text(&report, style(), secrets));
    if report.has_changes() && !args.yes && !confirm()? {
        eprintln!("Rollback cancelled.");
        engine::close_all(&mut outcomes).await;
        return Ok(EXIT_ERROR);
    }
    let opts = Opts {
        repo: repo.to_path_buf(),
        by: who(),
        commit: target.commit.clone(),
        rollback: true,
        confirm_timeout: args.confirm_timeout,
        kind: "rollback".into(),
        rolled_back_from: Some(record.revision.clone()),
        revision: Some(target.revision.clone()),
    };
    let Outcome::Planned(g) = &mut outcomes[0] else {
        unreachable!("built as Planned above")
    };
    let result = apply_node(g, &opts).await;
    let failed = result.is_failure();
    let results = vec![(name, result)];
    print_summary(&results, secrets, started);
    audit(repo, &results, opts.commit.as_deref(), &opts.by, secrets);
    engine::close_all(&mut outcomes).await;
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(r: &str) -> Revision {
        Revision {
            revision: r.into(),
            kind: "apply".into(),
            applied_at: 0,
            applied_by: "t".into(),
            commit: None,
            desired_fingerprint: String::new(),
        }
    }

    fn record(current: &str, history: &[&str]) -> Record {
        Record {
            applied_at: 0,
            applied_by: "t".into(),
            commit: None,
            desired_fingerprint: String::new(),
            resources: Default::default(),
            revision: current.into(),
            kind: "apply".into(),
            rolled_back_from: None,
            history: history.iter().map(|r| rev(r)).collect(),
        }
    }

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

    #[test]
    fn orphans_are_found_and_parsed() {
        let s = orphan_script(&["/etc/a b".into()], "17");
        assert!(s.contains("for p in '/etc/a b'; do"));
        assert!(s.contains("-gt 17 ]"));
        assert_eq!(orphan_script(&[], "1"), "echo END\n");
        assert_eq!(
            parse_orphans("ORPHAN /etc/x remove\nORPHAN /etc/motd restore /var/lib/strata/backup/5/etc/motd\nORPHAN /etc/y unknown\nEND\n"),
            vec![
                ("/etc/x".into(), Orphan::Remove),
                ("/etc/motd".into(), Orphan::Restore("/var/lib/strata/backup/5/etc/motd".into())),
                ("/etc/y".into(), Orphan::Unknown),
            ]
        );
    }

    #[test]
    fn parses_the_record_and_stored_revisions() {
        let rec = serde_json::to_string(&record("5", &["5", "4"])).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(rec);
        let (r, s) = parse_revisions(&format!("RECORD {b64}\nSTORED 4\nSTORED 5\nEND\n")).unwrap();
        assert_eq!(r.unwrap().revision, "5");
        assert_eq!(s, ["4", "5"]);
        let (r, s) = parse_revisions("RECORD \nEND\n").unwrap();
        assert!(r.is_none() && s.is_empty());
        assert!(parse_revisions("sudo: a password is required\n").is_err());
    }
}
