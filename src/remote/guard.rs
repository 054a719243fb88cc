//! The connectivity guard (deploy-rs's "magic rollback", for plain systemd hosts).
//!
//! Before a change that can cut strata off (ufw rules or defaults, anything under /etc/ssh/,
//! an ssh restart), apply starts a watcher on the node with `systemd-run`: a transient
//! service, outside strata's SSH session, that restores the previous state (the revision's
//! rollback script) once a deadline passes, unless strata confirmed first over a NEW SSH
//! connection. While apply works, every step pushes the deadline `work` seconds ahead; after
//! the handlers, the confirm window is the `--confirm-timeout`. Whoever decides first
//! (confirm or restore) creates `decided/` with `mkdir`, which is atomic: never both.
//!
//! Pure: plan in, sh text out. The orchestration is in `node_apply`.

use crate::model::ids::is_ssh_unit;
use crate::model::{ChangeId, Handler, NodePlan};
use crate::remote::apply::BACKUP_DIR;
use crate::remote::probe::sh_quote;
use base64::Engine as _;

/// How far each apply step pushes the deadline: long enough for an apt install or a slow
/// validator restart, short enough that a node whose operator vanished comes back.
pub const WORK_SECS: u64 = 300;

/// Can this plan cut strata's SSH access? Firewall changes, sshd configuration, a change
/// of sshd's own units (a stop, a disable, a mask), ssh restarts.
pub fn needs_guard(plan: &NodePlan) -> bool {
    plan.changes.iter().any(|c| {
        c.id.is_firewall()
            || c.id.file().is_some_and(|p| p.starts_with("/etc/ssh/"))
            || matches!(&c.id, ChangeId::Service(u) if is_ssh_unit(u))
            || c.handlers.iter().any(Handler::touches_ssh)
    })
}

/// The guard's directory on the node (inside the revision's backup directory).
pub fn dir(rev: &str) -> String {
    format!("{BACKUP_DIR}/{rev}/guard")
}

pub fn unit(rev: &str) -> String {
    format!("strata-guard-{rev}")
}

/// Lines that make a script's `step` push the guard's deadline (see apply_script::prelude).
pub fn extend_lines(rev: &str, secs: u64) -> String {
    format!(
        "STRATA_GUARD={}\nSTRATA_GUARD_SECS={secs}\n",
        sh_quote(&format!("{}/deadline", dir(rev)))
    )
}

/// Arm the guard: store the restore script, set the first deadline, start the watcher. Lines
/// at the head of the changes script (after its prelude, before any change: arming costs no
/// round trip of its own); a failure prints `FAIL ...` and ends the script before anything
/// changed.
pub fn arm_lines(rev: &str, restore: &str, work_secs: u64) -> String {
    let g = sh_quote(&dir(rev));
    let b64 = base64::engine::general_purpose::STANDARD;
    let watcher = format!(
        r#"G={g}
while :; do
  [ -d "$G/decided" ] && exit 0
  if [ "$(date +%s)" -ge "$(cat "$G/deadline" 2>/dev/null || echo 0)" ]; then
    mkdir "$G/decided" 2>/dev/null || exit 0
    echo guard > "$G/decided/by"
    echo "restoring $(date +%s)" > "$G/result"
    /bin/sh "$G/restore.sh" > "$G/restore.log" 2>&1
    echo "restored $(date +%s) $(tail -n 1 "$G/restore.log")" > "$G/result"
    exit 0
  fi
  sleep 1
done
"#
    );
    format!(
        r#"mkdir -p {g} && chmod 0700 {g} || {{ echo "FAIL mkdir {g}"; exit 1; }}
step guard
command -v systemd-run >/dev/null || {{ echo "FAIL systemd-run not found: the connectivity guard needs systemd"; exit 1; }}
echo {restore} | base64 -d > {g}/restore.sh && echo {watcher} | base64 -d > {g}/watch.sh || {{ echo "FAIL writing the guard"; exit 1; }}
echo $(( $(date +%s) + {work_secs} )) > {g}/deadline
systemd-run --quiet --collect --unit={unit} --description='strata connectivity guard {rev}' /bin/sh {g}/watch.sh || {{ echo "FAIL systemd-run"; exit 1; }}
"#,
        restore = b64.encode(restore.as_bytes()),
        watcher = b64.encode(watcher.as_bytes()),
        unit = unit(rev),
    )
}

/// Set the deadline `secs` from now (the confirm window starts).
pub fn window_script(rev: &str, secs: u64) -> String {
    let g = sh_quote(&dir(rev));
    format!(
        "[ -d {g}/decided ] && {{ echo \"FAIL the guard already acted: $(cat {g}/result 2>/dev/null)\"; exit 1; }}\necho $(( $(date +%s) + {secs} )) > {g}/deadline && echo OK\n"
    )
}

/// Confirm (run over a new connection): wins the race against the watcher, or says it lost.
pub fn confirm_script(rev: &str) -> String {
    let g = sh_quote(&dir(rev));
    format!(
        "if mkdir {g}/decided 2>/dev/null; then echo strata > {g}/decided/by; echo CONFIRMED; else echo \"LATE $(cat {g}/result 2>/dev/null)\"; fi\n"
    )
}

/// Stand the guard down when strata itself handles the outcome (a failed step: strata rolls
/// back over its own connection, which still works).
pub fn disarm_script(rev: &str) -> String {
    let g = sh_quote(&dir(rev));
    format!(
        "if mkdir {g}/decided 2>/dev/null; then echo strata-abort > {g}/decided/by; echo OK; else echo \"LATE $(cat {g}/result 2>/dev/null)\"; fi\n"
    )
}

/// What the guard did (run after reconnecting to a node that was lost).
pub fn result_script(rev: &str) -> String {
    let g = sh_quote(&dir(rev));
    format!(
        "echo \"BY $(cat {g}/decided/by 2>/dev/null)\"; echo \"RESULT $(cat {g}/result 2>/dev/null)\"\n"
    )
}

/// Parsed `result_script` output: who decided, and the watcher's result line.
pub fn parse_result(out: &str) -> (String, String) {
    let get = |p: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    (get("BY "), get("RESULT "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Change};

    fn change(id: &str, handlers: &[&str]) -> Change {
        Change {
            id: ChangeId::parse(id).unwrap(),
            action: Action::Change,
            details: vec![],
            diff: None,
            secret: false,
            handlers: handlers.iter().map(|s| Handler::parse(s)).collect(),
            ops: vec![],
            cause: Default::default(),
            restore_from: None,
        }
    }

    #[test]
    fn guards_firewall_and_sshd_and_its_units_only() {
        let plan = |cs: Vec<Change>| NodePlan {
            changes: cs,
            ..Default::default()
        };
        assert!(needs_guard(&plan(vec![change(
            "ufw:allow 22/tcp from any",
            &[]
        )])));
        assert!(needs_guard(&plan(vec![change("firewall:ufw", &[])])));
        assert!(needs_guard(&plan(vec![change(
            "file:/etc/ssh/sshd_config.d/10-strata.conf",
            &[]
        )])));
        assert!(needs_guard(&plan(vec![change(
            "file:/etc/x",
            &["reload ssh"]
        )])));
        for unit in ["ssh", "sshd", "ssh.socket", "ssh.service"] {
            let id = format!("service:{unit}");
            assert!(needs_guard(&plan(vec![change(&id, &[])])), "{id}");
        }
        assert!(!needs_guard(&plan(vec![change("service:chrony", &[])])));
        assert!(!needs_guard(&plan(vec![change(
            "file:/etc/chrony/chrony.conf",
            &["restart chrony"]
        )])));
        assert!(!needs_guard(&plan(vec![])));
    }

    #[test]
    fn confirm_and_watcher_race_through_one_mkdir() {
        let c = confirm_script("17");
        assert!(c.starts_with("if mkdir '/var/lib/strata/backup/17/guard'/decided"));
        let a = arm_lines("17", "echo OK\n", 300);
        assert!(a.contains("--unit=strata-guard-17"));
        assert!(a.contains("+ 300 ))"));
        assert_eq!(
            parse_result("BY guard\nRESULT restored 123 OK\n"),
            ("guard".into(), "restored 123 OK".into())
        );
    }
}
