//! The remote scripts apply runs on a node (pure: plan in, sh text out). Every mutation of a
//! node is written here, so what apply does can be read in one place.
//!
//! Files: every changed file is first written to a temp file in its own directory, owned and
//! moded, validated, fsynced; only when all are valid is anything renamed into place (the
//! previous version copied to the backup directory first). A dropped connection therefore
//! leaves each file old or new, never partial.

use crate::model::*;
use crate::model::{Change, NodePlan, Op};
use crate::remote::artifact;
use crate::remote::probe::{sh_quote, STATE_FILE};

/// What the operator's machine sends for each artifact (by name) the plan fetches.
pub type Payloads = std::collections::BTreeMap<String, Payload>;

/// A pushed artifact's verified download, and its detached signature when that travels too
/// (`ArtifactRes::signature_pushed`).
#[derive(Debug, Default, Clone)]
pub struct Payload {
    pub download: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
}
use base64::Engine as _;

pub const LOCK_FILE: &str = "/var/lib/strata/lock";
pub const LOCK_OWNER: &str = "/var/lib/strata/lock.owner";
pub const BACKUP_DIR: &str = "/var/lib/strata/backup";
/// Held by every changes/handlers script while it runs. A script whose strata died keeps
/// running until it finishes or next writes to its closed stdout; the next apply waits on
/// this lock so it never plans or changes a node that is still moving.
pub const RUN_LOCK: &str = "/var/lib/strata/run.lock";

/// Wait (up to 10 minutes) until no script of an earlier apply still runs on the node.
pub fn quiesce_script() -> String {
    format!(
        "mkdir -p /var/lib/strata && exec 8>>{RUN_LOCK} && flock -w 600 8 && echo OK || echo 'FAIL a script of an earlier apply is still running on the node'\n"
    )
}

/// Holds the node's apply lock for as long as its stdin stays open (the connection lives):
/// prints `locked` once held, or `busy <owner>` at once if another apply holds it. Once held
/// it runs `then`: the probe, `probe::bounded` (the re-read under the lock, in the same round
/// trip; it cannot read the keep-alive, does not hold the lock's descriptor, and ends by its
/// deadline: a hung read never keeps the lock).
///
/// With the lock held over a working connection, a connectivity guard left armed by an
/// apply that died (strata killed mid-change) has nothing left to rescue, and firing later it
/// would undo this apply: stand it down, and let one already restoring finish first.
pub fn lock_script(owner: &str, then: &str) -> String {
    format!(
        r#"mkdir -p /var/lib/strata && chmod 0700 /var/lib/strata
exec 9>>{LOCK_FILE}
if ! flock -n 9; then echo "busy $(cat {LOCK_OWNER} 2>/dev/null)"; exit 3; fi
echo {owner} > {LOCK_OWNER}
for g in {BACKUP_DIR}/*/guard; do
  [ -d "$g" ] && mkdir "$g/decided" 2>/dev/null && echo superseded > "$g/decided/by"
done
i=0
while [ $i -lt 120 ] && systemctl list-units --state=active --no-legend --plain 'strata-guard-*' 2>/dev/null | grep -q .; do sleep 1; i=$((i+1)); done
exec 8>>{RUN_LOCK}
flock -w 600 8 || {{ echo "busy: a script of an earlier apply is still running"; exit 3; }}
flock -u 8; exec 8>&-
echo locked
{then}
cat >/dev/null
rm -f {LOCK_OWNER}
"#,
        owner = sh_quote(owner)
    )
}

const PRELUDE: &str = r#"set -u
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
# Whatever umask the session got (pam_umask, a hardened 027 or 077): a parent directory that
# mkdir -p creates is 0755 as a package would make it; everything strata manages gets its
# declared mode explicitly anyway.
umask 022
# A failure waits for the validators still running and removes their directories, and every
# file still staged ($TS; a name once renamed into place is gone).
VDS= TS=
fail() { echo "FAIL $*"; if [ -n "$VDS" ]; then wait; rm -rf $VDS; fi; set -f; rm -f $TS; exit 1; }
# Fails with "$1 $2", naming an attribute of $2 that forbids the change (chattr +i or +a:
# even root gets "Operation not permitted"); strata never changes attributes.
refuse() {
  a=$(lsattr -d -- "$2" 2>/dev/null) && a=${a%% *} && case $a in *[ia]*) fail "$1 $2: it has the attributes $a (chattr +i / +a): strata does not change them; lift them with chattr -i / -a, or stop managing the file" ;; esac
  fail "$1" "$2"
}
# systemctl start or restart (verb unit). A unit stopped by its start limit (Result
# start-limit-hit: started too often, by hand or by a crash loop) is reset-failed and tried
# once more, as systemd's own hint says; any other failure stays a failure.
sysd() {
  systemctl "$1" "$2" && return 0
  [ "$(systemctl show -p Result --value "$2" 2>/dev/null)" = start-limit-hit ] || return 1
  systemctl reset-failed "$2" && systemctl "$1" "$2"
}
# A staged file (temp) renamed into place (dest); on failure the temp goes too.
put() { mv -fT "$1" "$2" && return 0; rm -f "$1"; refuse rename "$2"; }
mkdir -p /var/lib/strata && exec 8>>/var/lib/strata/run.lock && flock -w 600 8 || fail "a script of an earlier apply is still running"

# The unit a service name resolves to (an alias resolves to its unit; enable refuses aliases).
unit() { i=$(systemctl show -p Id --value "$1" 2>/dev/null); echo "${i:-$1}"; }
# Under the connectivity guard, every step pushes its deadline ahead (see guard.rs).
step() {
  if [ -n "${STRATA_TIMES:-}" ]; then echo "AT $(date +%s%3N)"; fi
  echo "STEP $*"
  if [ -n "${STRATA_GUARD:-}" ]; then echo $(( $(date +%s) + STRATA_GUARD_SECS )) > "$STRATA_GUARD"; fi
}
"#;

/// The script prelude; `guard` is `guard::extend_lines` when the connectivity guard is armed.
fn prelude(guard: &str) -> String {
    format!("{PRELUDE}{guard}")
}

/// ufw's own state files, saved before a firewall change and put back by a rollback.
const UFW_FILES: &[(&str, &str)] = &[
    ("/etc/ufw/user.rules", "user.rules"),
    ("/etc/ufw/user6.rules", "user6.rules"),
    ("/etc/ufw/ufw.conf", "ufw.conf"),
    ("/etc/default/ufw", "default-ufw"),
];

fn find<'a>(d: &'a DesiredState, id: &ChangeId) -> Option<&'a Resource> {
    d.resources.iter().find(|r| r.key() == *id)
}

fn has(c: &Change, op: Op) -> bool {
    c.ops.contains(&op)
}

/// The script that makes every change of the plan except handlers; `rev` names the backup dir,
/// `guard` is empty or `guard::extend_lines` (then `guard::arm_lines`: the script arms the
/// connectivity guard before its first change).
/// `payloads`: the verified download of each pushed artifact (by name) the plan fetches.
pub fn changes_script(
    d: &DesiredState,
    plan: &NodePlan,
    rev: &str,
    guard: &str,
    payloads: &Payloads,
) -> String {
    let mut s = prelude(guard);
    let backup = format!("{BACKUP_DIR}/{rev}");
    s.push_str(&format!(
        "mkdir -p {} && chmod 0700 {BACKUP_DIR}\n",
        sh_quote(&backup)
    ));
    let manifest = sh_quote(&format!("{backup}/manifest"));

    // 0. artifacts: downloaded, checked and unpacked before anything else, so a bad checksum
    //    or a failed download leaves the node as it was.
    let artifacts: Vec<(&Change, &ArtifactRes)> = plan
        .changes
        .iter()
        .filter_map(|c| match find(d, &c.id) {
            Some(Resource::Artifact(a)) => Some((c, a)),
            _ => None,
        })
        .collect();
    for (i, (c, a)) in artifacts.iter().enumerate() {
        if has(c, Op::Fetch) {
            let p = payloads.get(&a.name);
            let download = p.and_then(|p| p.download.as_deref()).filter(|_| a.push);
            let sig = p
                .and_then(|p| p.signature.as_deref())
                .filter(|_| a.signature_pushed());
            s.push_str(&artifact::stage(a, i, download, sig));
        }
    }

    // 0b. apt repositories, before the packages they serve: each file backed up like any
    //     replaced file (a rollback restores them), then one `apt-get update`.
    let repos: Vec<&AptRepoRes> = plan
        .changes
        .iter()
        .filter_map(|c| match find(d, &c.id) {
            Some(Resource::AptRepository(r)) => Some(r),
            _ => None,
        })
        .collect();
    for r in &repos {
        s.push_str(&format!(
            "step apt repository {}\nmkdir -p /etc/apt/keyrings /etc/apt/sources.list.d || fail mkdir\n",
            sh_quote(&r.name)
        ));
        for (path, content) in [(&r.key_path, &r.key), (&r.sources_path, &r.sources)] {
            let p = sh_quote(path);
            let b64 = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
            s.push_str(&format!(
                "t=$(mktemp {dir}/.strata-apt-XXXXXX) && echo {b64} | base64 -d > \"$t\" && chmod 0644 \"$t\" && chown root:root \"$t\" || fail write {p}\nif [ -f {p} ] && [ ! -L {p} ]; then mkdir -p {bdir} && cp -p {p} {bdir}/ && echo B {p} >> {manifest} || fail backup {p}; elif [ -e {p} ] || [ -L {p} ]; then rm -f \"$t\"; fail {p} is not a regular file; else echo N {p} >> {manifest}; fi\nput \"$t\" {p}\n",
                dir = sh_quote(parent(path)),
                bdir = sh_quote(&format!("{backup}{}", parent(path))),
            ));
        }
        s.push_str(&format!(
            "echo {}\n",
            sh_quote(&format!("DONE apt_repository:{}", r.name))
        ));
    }
    if !repos.is_empty() {
        // apt-get update may succeed while a source fails to verify or download (a warning):
        // that counts as a failure too, in apt's own words.
        s.push_str(concat!(
            "step apt-get update\n",
            "apt-get update -q -o DPkg::Lock::Timeout=120 >/tmp/strata-apt.log 2>&1; rc=$?\n",
            "why=$(grep -E '^(W|E): .*(NO_PUBKEY|not signed|Signed-By|GPG error|Failed to fetch|is not valid)' /tmp/strata-apt.log | head -n 2 | tr '\\n' ' ')\n",
            "if [ $rc -ne 0 ] || [ -n \"$why\" ]; then fail \"apt-get update could not use a repository: ${why:-$(tail -n 2 /tmp/strata-apt.log | tr '\\n' ' ')}\"; fi\n",
        ));
    }

    // 1. packages (they bring users and directories other resources rely on).
    let pkgs: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| has(c, Op::Install))
        .filter_map(|c| match &c.id {
            ChangeId::Package(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    if !pkgs.is_empty() {
        let list = pkgs
            .iter()
            .map(|p| sh_quote(p))
            .collect::<Vec<_>>()
            .join(" ");
        // A fresh host may have no package lists yet: on failure, update once and retry. An
        // install cut off by a dropped connection is finished first (dpkg --configure -a), and
        // a dpkg lock still held by it is waited for.
        let install = format!("apt-get install -y -q -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {list}");
        s.push_str(&format!(
            "step install {list}\ndpkg --configure -a >/dev/null 2>&1\n{install} >/tmp/strata-apt.log 2>&1 || {{ apt-get update -q >>/tmp/strata-apt.log 2>&1 && {install} >>/tmp/strata-apt.log 2>&1; }} || {{ tail -n 5 /tmp/strata-apt.log; fail apt-get install {list}; }}\n"
        ));
    }
    // 2. users, 3. directories.
    for c in &plan.changes {
        match find(d, &c.id) {
            Some(Resource::User(u)) => {
                let q = sh_quote(&u.name);
                if c.action == crate::model::Action::Add {
                    let mut cmd = String::from("useradd");
                    if u.system {
                        cmd.push_str(" --system");
                    }
                    if let Some(h) = &u.home {
                        cmd.push_str(&format!(" --home-dir {} --no-create-home", sh_quote(h)));
                    }
                    if let Some(sh) = &u.shell {
                        cmd.push_str(&format!(" --shell {}", sh_quote(sh)));
                    }
                    cmd.push_str(" --user-group");
                    s.push_str(&format!("step user {q}\n{cmd} {q} || fail useradd {q}\n"));
                } else {
                    s.push_str(&format!("step user {q}\n"));
                    if let Some(sh) = &u.shell {
                        s.push_str(&format!(
                            "usermod --shell {} {q} || fail usermod {q}\n",
                            sh_quote(sh)
                        ));
                    }
                    if let Some(h) = &u.home {
                        // The home is set, never moved (its content is not strata's).
                        s.push_str(&format!(
                            "usermod --home {} {q} || fail usermod {q}\n",
                            sh_quote(h)
                        ));
                    }
                }
                // Supplementary groups: exactly the declared ones (a missing group fails).
                if c.action != crate::model::Action::Add || !u.groups.is_empty() {
                    s.push_str(&format!(
                        "usermod -G {} {q} || fail usermod -G {q}\n",
                        sh_quote(&u.groups.join(","))
                    ));
                }
            }
            Some(Resource::Directory(dr)) => {
                let p = sh_quote(&dr.path);
                s.push_str(&format!(
                    "step directory {p}\nmkdir -p {p} && chown {}:{} {p} && chmod {} {p} || fail directory {p}\n",
                    sh_quote(&dr.owner),
                    sh_quote(&dr.group),
                    fmt_mode(dr.mode)
                ));
            }
            _ => {}
        }
    }
    // 4. files: stage all, validate all, then commit all.
    let files: Vec<(&Change, &FileRes)> = plan
        .changes
        .iter()
        .filter_map(|c| match find(d, &c.id) {
            Some(Resource::File(f)) => Some((c, f)),
            _ => None,
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    // Artifacts switch before the files are staged: a unit changed with them points at the
    // new version, and its validator (`systemd-analyze verify`) must find that binary. From
    // here on a failure rolls the node back (the switch printed DONE).
    for (i, (c, a)) in artifacts.iter().enumerate() {
        if has(c, Op::Switch) {
            s.push_str(&format!("step switch {}\n", sh_quote(&c.id.to_string())));
            s.push_str(&artifact::commit(a, i, has(c, Op::Fetch), &manifest));
        }
    }
    let mut commits = String::new();
    // (file index, quoted dest) of each staged file with a validator, in order.
    let mut validated: Vec<(usize, String)> = Vec::new();
    for (i, (c, f)) in files.iter().enumerate() {
        let dest = sh_quote(&f.dest);
        let dir = sh_quote(parent(&f.dest));
        let own = format!("{}:{}", sh_quote(&f.owner), sh_quote(&f.group));
        if has(c, Op::Write) {
            let name = basename(&f.dest);
            s.push_str(&format!(
                "step stage {dest}\nmkdir -p {dir} || fail mkdir {dir}\n"
            ));
            // Left-over temp files of an interrupted apply are ours to remove.
            s.push_str(&format!(
                "rm -f {dir}/.{name}.strata-*\n",
                name = shell_glob_safe(name)
            ));
            s.push_str(&format!(
                "t{i}=$(mktemp {dir}/.{name}.strata-XXXXXX) || fail mktemp {dest}\nTS=\"$TS $t{i}\"\n",
                name = shell_glob_safe(name)
            ));
            s.push_str(&format!(
                "echo {} | base64 -d > \"$t{i}\" || fail write {dest}\n",
                b64.encode(f.content.as_bytes())
            ));
            s.push_str(&format!(
                "chown {own} \"$t{i}\" && chmod {} \"$t{i}\" || fail chown {dest}\n",
                fmt_mode(f.mode)
            ));
            if let Some(v) = &f.validate {
                // The validator sees the new content under its real file name, in a
                // directory of its own. Validators run in the background, as many at once
                // as the node has CPUs (the k-th waits for the (k-NP)-th); checked below.
                s.push_str(&start_validator(
                    validated.len(),
                    i,
                    name,
                    &dest,
                    &v.replace("%s", &format!("\"$vd{i}\"/{}", sh_quote(name))),
                ));
                validated.push((i, dest.clone()));
            }
            s.push_str(&format!("sync \"$t{i}\" 2>/dev/null || sync\n"));
            commits.push_str(&format!(
                // The manifest says how to undo: B = restore the backup, N = remove (new file).
                // What is there is kept as it is, never followed: a symlink stays a link in
                // the backup (A: put back with cp -a), an empty directory is removed only
                // now (the plan refuses a non-empty one); mv -T never renames into a directory.
                "if [ -L {dest} ] || {{ [ -e {dest} ] && [ ! -f {dest} ]; }}; then mkdir -p {bdir} && cp -a {dest} {bdir}/ && echo A {dest} >> {manifest} || fail backup {dest}; elif [ -f {dest} ]; then mkdir -p {bdir} && cp -p {dest} {bdir}/ && echo B {dest} >> {manifest} || fail backup {dest}; else echo N {dest} >> {manifest}; fi\nif [ -d {dest} ] && [ ! -L {dest} ]; then rmdir {dest} || fail {dest} is a directory that is not empty; fi\nput \"$t{i}\" {dest}\necho {}\n",
                sh_quote(&format!("DONE {}", c.id)),
                bdir = sh_quote(&format!("{backup}{}", parent(&f.dest))),
                manifest = sh_quote(&format!("{backup}/manifest")),
            ));
        } else {
            // M: the mode and owner it had, put back by a rollback.
            commits.push_str(&format!(
                "echo M {dest} \"$(stat -c '%a %u %g' {dest})\" >> {manifest} || fail backup {dest}\nchown {own} {dest} && chmod {} {dest} || refuse chmod {dest}\necho {}\n",
                fmt_mode(f.mode),
                sh_quote(&format!("DONE {}", c.id)),
                manifest = sh_quote(&format!("{backup}/manifest")),
            ));
        }
    }
    // Files only a newer revision declared (rollback): the live one is backed up like any
    // replaced file, then removed or replaced by its copy from before strata wrote it.
    for c in plan.changes.iter().filter(|c| has(c, Op::Delete)) {
        let Some(path) = c.id.file() else {
            continue;
        };
        let p = sh_quote(path);
        commits.push_str(&format!(
            "if [ -f {p} ] && [ ! -L {p} ]; then mkdir -p {bdir} && cp -p {p} {bdir}/ && echo B {p} >> {manifest}; fi\n",
            bdir = sh_quote(&format!("{backup}{}", parent(path))),
            manifest = sh_quote(&format!("{backup}/manifest")),
        ));
        match &c.restore_from {
            Some(src) => commits.push_str(&format!(
                "t=$(mktemp {dir}/.strata-restore-XXXXXX) || fail restore {p}\ncp -p {src} \"$t\" || {{ rm -f \"$t\"; fail restore {p}; }}\nput \"$t\" {p}\n",
                dir = sh_quote(parent(path)),
                src = sh_quote(src),
            )),
            None => commits.push_str(&format!("rm -f {p} || refuse remove {p}\n")),
        }
        commits.push_str(&format!("echo {}\n", sh_quote(&format!("DONE {}", c.id))));
    }
    s.push_str(&validate_all(&validated));
    s.push_str("step commit files\n");
    s.push_str(&commits);
    if !files.is_empty() {
        s.push_str(&format!(
            "sync; echo {} > {}/files\n",
            sh_quote(
                &files
                    .iter()
                    .map(|(_, f)| f.dest.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            sh_quote(&backup)
        ));
    }
    // A new or changed unit must be known to systemd before it is enabled or started.
    if plan.handlers().contains(&Handler::DaemonReload) {
        s.push_str("step daemon-reload\nsystemctl daemon-reload || fail daemon-reload\n");
    }
    // 5. key files: permissions only; content is never read or written.
    for c in &plan.changes {
        if let Some(Resource::KeyFile(k)) = find(d, &c.id) {
            let p = sh_quote(&k.path);
            s.push_str(&format!(
                "chown {}:{} {p} && chmod {} {p} || fail key_file {p}\n",
                sh_quote(&k.owner),
                sh_quote(&k.group),
                fmt_mode(k.mode)
            ));
        }
    }
    // 6. services.
    for c in &plan.changes {
        if let Some(Resource::Service(sv)) = find(d, &c.id) {
            let u = sh_quote(&format!("{}.service", sv.name));
            for op in &c.ops {
                let verb = match op {
                    Op::Unmask => "unmask",
                    Op::UnmaskRuntime => "unmask --runtime",
                    Op::Enable => "enable",
                    Op::Disable => "disable",
                    Op::Start => "start",
                    Op::Stop => "stop",
                    _ => continue,
                };
                // enable/disable act on the unit the name resolves to (an alias's unit).
                let target = if matches!(op, Op::Enable | Op::Disable) {
                    format!("\"$(unit {u})\"")
                } else {
                    u.clone()
                };
                // Recorded once done: a rollback undoes exactly the steps that happened.
                let undo = match op {
                    Op::Unmask => "mask",
                    Op::UnmaskRuntime => "mask-runtime",
                    Op::Enable => "disable",
                    Op::Disable => "enable",
                    Op::Start => "stop",
                    _ => "start",
                };
                let run = if matches!(op, Op::Start) {
                    "sysd"
                } else {
                    "systemctl"
                };
                s.push_str(&format!(
                    "step {verb} {u}\n{run} {verb} {target} || fail systemctl {verb} {u}\necho {} >> {}\n",
                    sh_quote(&format!("S {undo} {}.service", sv.name)),
                    sh_quote(&format!("{backup}/manifest")),
                ));
            }
        }
    }
    // 7. ufw: allow rules first (the SSH rule is always declared), then defaults, deletions,
    //    and only then enable.
    if let Some(Resource::Firewall(fw)) = d
        .resources
        .iter()
        .find(|r| matches!(r, Resource::Firewall(_)))
    {
        let fw_changes: Vec<&Change> = plan.changes.iter().filter(|c| c.id.is_firewall()).collect();
        if !fw_changes.is_empty() {
            s.push_str("step firewall\n");
            // Save ufw's state first: a rollback (or the guard) puts it back as it was.
            let ub = format!("{backup}/ufw");
            let mut save = format!("mkdir -p {}", sh_quote(&ub));
            for (src, name) in UFW_FILES {
                save.push_str(&format!(
                    " && {{ [ ! -f {src} ] || cp -p {src} {}; }}",
                    sh_quote(&format!("{ub}/{name}"))
                ));
            }
            s.push_str(&format!(
                "{save} && echo 'U ufw' >> {} || fail saving the ufw state\n",
                sh_quote(&format!("{backup}/manifest"))
            ));
            // Adds, then defaults, then deletions, then the enable, as ufw's own words.
            let mut cmds: Vec<Vec<String>> = Vec::new();
            for c in &fw_changes {
                if has(c, Op::FwAdd) {
                    if let Some(r) = fw.rules.iter().find(|r| c.id == ChangeId::rule(r)) {
                        cmds.push(ufw_rule_words(r, true));
                    }
                }
            }
            for c in &fw_changes {
                if has(c, Op::FwDefaults) {
                    for (policy, dir) in [
                        (&fw.default_incoming, "incoming"),
                        (&fw.default_outgoing, "outgoing"),
                    ] {
                        cmds.push(vec!["default".into(), policy.clone(), dir.into()]);
                    }
                }
            }
            for c in &fw_changes {
                if has(c, Op::FwDelete) {
                    match &c.id {
                        ChangeId::Rule(r) => {
                            let mut words = vec!["delete".to_string()];
                            words.extend(ufw_rule_words(r, false));
                            cmds.push(words);
                        }
                        // ufw's own syntax, word by word (checked when probed).
                        ChangeId::ForeignRule(spec) => {
                            let mut words: Vec<String> =
                                spec.split(' ').map(str::to_string).collect();
                            let at =
                                usize::from(words.first().map(String::as_str) == Some("route"));
                            words.insert(at, "delete".into());
                            cmds.push(words);
                        }
                        _ => {}
                    }
                }
            }
            for c in &fw_changes {
                if has(c, Op::FwEnable) {
                    cmds.push(vec!["--force".into(), "enable".into()]);
                }
            }
            s.push_str(&ufw_batch(&cmds));
        }
    }
    s.push_str(TIMES_END);
    s.push_str("echo OK\n");
    s
}

/// `-vv`: each step of the changes and handlers scripts is timed on the node (an `AT <ms>`
/// line before each `STEP`, and one at the end).
pub const TIMES_ON: &str = "STRATA_TIMES=1\n";
const TIMES_END: &str = "if [ -n \"${STRATA_TIMES:-}\" ]; then echo \"AT $(date +%s%3N)\"; fi\n";

/// Each step's time from a timed script's output (`AT`/`STEP` lines), in order; a step
/// with no `AT` after it (the script failed in it) has none.
pub fn step_times(stdout: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut last_at: Option<u64> = None;
    let mut current: Option<(String, u64)> = None;
    for l in stdout.lines() {
        if let Some(at) = l
            .strip_prefix("AT ")
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            if let Some((name, start)) = current.take() {
                out.push((name, at.saturating_sub(start)));
            }
            last_at = Some(at);
        } else if let Some(name) = l.strip_prefix("STEP ") {
            current = last_at.take().map(|at| (name.to_string(), at));
        }
    }
    out
}

/// Step times summed by kind (the first word: stage, commit, enable, firewall, handler, ...),
/// in order of first appearance.
pub fn times_by_kind(times: &[(String, u64)]) -> Vec<(String, u64, usize)> {
    let mut out: Vec<(String, u64, usize)> = Vec::new();
    for (name, ms) in times {
        let kind = name.split_whitespace().next().unwrap_or("").to_string();
        match out.iter_mut().find(|(k, _, _)| *k == kind) {
            Some(e) => {
                e.1 += ms;
                e.2 += 1;
            }
            None => out.push((kind, *ms, 1)),
        }
    }
    out
}

/// Undo an apply whose health gate failed: put back the files it replaced (from the backup
/// of revision `rev`) and the mode and owner of those it only chmodded, remove the files it
/// created, reverse the service starts and enables it
/// made, reload systemd, run the handlers again. Best effort: every step is attempted. A
/// file the same as its backup (content, mode, owner) is left as it is: it was never replaced
/// (its rename failed: an immutable file), and copying over it would fail the same way.
pub fn rollback_script(rev: &str, handlers: &[Handler]) -> String {
    let backup = format!("{BACKUP_DIR}/{rev}");
    let mut s = String::from("set -u\nexport LC_ALL=C\nrc=0\n");
    s.push_str(&format!(
        "m={}/manifest\nif [ -f \"$m\" ]; then while read -r kind path rest; do\n  case $kind in\n{arts}    B) if cmp -s {b}\"$path\" \"$path\" && [ \"$(stat -c '%a %u %g' {b}\"$path\")\" = \"$(stat -c '%a %u %g' \"$path\")\" ]; then :
      else t=; t=$(mktemp \"$(dirname \"$path\")/.strata-rollback-XXXXXX\") && cp -p {b}\"$path\" \"$t\" && mv -fT \"$t\" \"$path\" || {{ [ -z \"$t\" ] || rm -f \"$t\"; echo \"FAIL restore $path\"; rc=1; }}; fi ;;
    M) set -- $rest; if [ $# -eq 3 ]; then chown \"$2:$3\" \"$path\" && chmod \"$1\" \"$path\" || {{ echo \"FAIL restore $path\"; rc=1; }}; fi ;;
    A) t=\"$(dirname \"$path\")/.strata-rollback-$$\"; rm -rf \"$t\"; cp -a {b}\"$path\" \"$t\" && {{ [ ! -d \"$t\" ] || [ -L \"$t\" ] || rm -f \"$path\"; }} && mv -fT \"$t\" \"$path\" || {{ rm -rf \"$t\"; echo \"FAIL restore $path\"; rc=1; }} ;;\n    N) rm -f \"$path\" || rc=1 ;;\n  esac\ndone < \"$m\"; fi\n",
        sh_quote(&backup),
        b = sh_quote(&backup),
        arts = artifact::ROLLBACK_CASES,
    ));
    // ufw: its saved files back, then make the running firewall match them.
    let ub = format!("{backup}/ufw");
    let mut restore = String::new();
    for (dst, name) in UFW_FILES {
        restore.push_str(&format!(
            "  [ ! -f {0} ] || cp -p {0} {dst} || rc=1\n",
            sh_quote(&format!("{ub}/{name}"))
        ));
    }
    s.push_str(&format!(
        "if grep -q '^U ' \"$m\" 2>/dev/null; then\n{restore}  if grep -q '^ENABLED=yes' /etc/ufw/ufw.conf; then\n    if ufw status | grep -q '^Status: active'; then ufw reload >/dev/null; else ufw --force enable >/dev/null; fi || {{ echo 'FAIL restore ufw'; rc=1; }}\n  else\n    ufw --force disable >/dev/null || {{ echo 'FAIL restore ufw'; rc=1; }}\n  fi\nfi\n"
    ));
    s.push_str("systemctl daemon-reload || rc=1\n");
    // Services: every start, stop, enable, disable and unmask the apply made (the manifest's
    // S lines, written as each one succeeded), undone newest first.
    s.push_str(
        "unit() { i=$(systemctl show -p Id --value \"$1\" 2>/dev/null); echo \"${i:-$1}\"; }\n",
    );
    s.push_str(concat!(
        "if [ -f \"$m\" ]; then grep '^S ' \"$m\" | tac > \"$m.undo\"; while read -r kind undo u; do\n",
        "  case $undo in\n",
        "    stop|start) systemctl \"$undo\" \"$u\" ;;\n",
        "    disable|enable) systemctl \"$undo\" --quiet \"$(unit \"$u\")\" ;;\n",
        "    mask) systemctl mask --quiet \"$u\" ;;\n",
        "    mask-runtime) systemctl mask --runtime --quiet \"$u\" ;;\n",
        "  esac || { echo \"FAIL undo $undo $u\"; rc=1; }\n",
        "done < \"$m.undo\"; rm -f \"$m.undo\"; fi\n",
    ));
    // Units whose file was removed above cannot be restarted; that is expected.
    for h in handlers {
        if let Some(u) = h.unit() {
            s.push_str(&format!(
                "if [ \"$(systemctl show -p LoadState --value {0})\" = loaded ] && systemctl is-enabled --quiet {0} 2>/dev/null; then systemctl restart {0} || {{ echo \"FAIL restart {0}\"; rc=1; }}; fi\n",
                sh_quote(u)
            ));
        }
    }
    s.push_str("[ $rc -eq 0 ] && echo OK || echo \"FAIL rollback incomplete\"\n");
    s
}

/// The handlers script: each handler once, in order (daemon-reload already ran with files).
pub fn handlers_script(
    handlers: &[Handler],
    declared: &std::collections::BTreeMap<String, String>,
    guard: &str,
) -> String {
    let mut s = prelude(guard);
    for h in handlers {
        let cmd = match h {
            Handler::DaemonReload => continue,
            Handler::Restart(u) => format!("sysd restart {}", sh_quote(u)),
            Handler::Reload(u) => format!("systemctl reload {}", sh_quote(u)),
            // The module author's own command (checked at load to be declared).
            Handler::Named(n) => match declared.get(n) {
                Some(c) => c.clone(),
                None => continue,
            },
        };
        let name = h.to_string();
        s.push_str(&format!(
            "step handler {}\n( {cmd} ) || fail handler {}\necho {}\n",
            sh_quote(&name),
            sh_quote(&name),
            sh_quote(&format!("HANDLER {h}"))
        ));
    }
    s.push_str(TIMES_END);
    s.push_str("echo OK\n");
    s
}

/// The health gate, run on the node: units active, then the HTTP or TCP check, retried
/// until the timeout.
pub fn health_script(h: &HealthCheck) -> String {
    let mut checks = Vec::new();
    for u in &h.units {
        // Values go into the script quoted; `why` is built from a quoted label and a command.
        checks.push(format!(
            "systemctl is-active --quiet {0} || {{ why={1}\"$(systemctl is-active {0})\"; false; }}",
            sh_quote(u),
            sh_quote(&format!("unit {u} is "))
        ));
    }
    if let Some(url) = &h.http {
        checks.push(format!(
            "curl -fsS --max-time 3 -o /dev/null {} 2>/tmp/strata-health.err || {{ why={}\"$(cat /tmp/strata-health.err)\"; false; }}",
            sh_quote(url),
            sh_quote(&format!("GET {url}: "))
        ));
    }
    if let Some(addr) = &h.tcp {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
        checks.push(format!(
            "timeout 3 bash -c {} 2>/dev/null || {{ why={}; false; }}",
            sh_quote(&format!("</dev/tcp/{host}/{port}")),
            sh_quote(&format!("TCP {addr} refused"))
        ));
    }
    for v in &h.expect_version {
        checks.push(version_check(v));
    }
    let mut defs = String::new();
    if let Some(p) = &h.expect_progress {
        // The counter read twice, `within_secs` apart: it must have grown.
        defs = format!(
            "num() {{ curl -fsS --max-time 3 {} 2>/dev/null | tr -d '\\n' | sed -n {} | head -n 1; }}\nprogress() {{\n  p1=$(num); case $p1 in ''|*[!0-9]*) why={}; return 1;; esac\n  sleep {}\n  p2=$(num); case $p2 in ''|*[!0-9]*) why={}; return 1;; esac\n  [ \"$p2\" -gt \"$p1\" ] || {{ why={}\"$p1\"{}; return 1; }}\n}}\n",
            sh_quote(&p.http),
            sh_quote(&json_field_sed(&p.field)),
            sh_quote(&format!("no number `{}` in {}", p.field, p.http)),
            p.within_secs,
            sh_quote(&format!("no number `{}` in {}", p.field, p.http)),
            sh_quote(&format!("{} stayed at ", p.field)),
            sh_quote(&format!(" for {}s (not progressing)", p.within_secs)),
        );
        checks.push("progress".into());
    }
    if checks.is_empty() {
        return "echo HEALTHY\n".into();
    }
    format!(
        "{defs}end=$(( $(date +%s) + {} ))\nwhile :; do\n  why=''\n  if {}; then echo HEALTHY; exit 0; fi\n  if [ $(date +%s) -ge $end ]; then echo \"UNHEALTHY $why\"; exit 1; fi\n  sleep 1\ndone\n",
        h.timeout_secs,
        checks.join(" && ")
    )
}

/// The sed program that prints a top-level JSON field's value (string quotes dropped) from
/// a body on one line. Field names are plain words (checked at load).
fn json_field_sed(field: &str) -> String {
    format!("s/.*\"{field}\"[[:space:]]*:[[:space:]]*\"\\{{0,1\\}}\\([^\",}}]*\\).*/\\1/p")
}

/// `expect_version`: the command's output contains the version, or the JSON field equals it.
fn version_check(v: &VersionCheck) -> String {
    let want = sh_quote(&v.value);
    match (&v.command, &v.http, &v.field) {
        (Some(cmd), _, _) => format!(
            "{{ o=$( ( {cmd} ) 2>&1 | head -c 400 ); case $o in *{want}*) true;; *) why={}\"$o\"; false;; esac; }}",
            sh_quote(&format!("expected version {} from `{cmd}`, it printed: ", v.value))
        ),
        (None, Some(url), Some(field)) => format!(
            "{{ o=$(curl -fsS --max-time 3 {} 2>/dev/null | tr -d '\\n' | sed -n {} | head -n 1); [ \"$o\" = {want} ] || {{ why={}\"${{o:-nothing}}\"; false; }}; }}",
            sh_quote(url),
            sh_quote(&json_field_sed(field)),
            sh_quote(&format!("expected version {} in `{field}` of {url}, it says ", v.value))
        ),
        _ => "true".into(),
    }
}

/// Write the on-node record of this apply atomically, keep the revision's desired state next
/// to its backup (what `strata rollback` returns to), and prune revisions no longer in the
/// record's history (`keep`; None when the previous record was unreadable: it is kept aside
/// as `state.json.unreadable-<rev>` and no revision is pruned, its history being unknown).
/// The desired state holds rendered secrets: root-only, like the files.
/// `d`'s artifacts are pruned to their `keep` versions (now that the apply is proven).
pub fn record_script(
    json: &str,
    rev: &str,
    desired_json: &str,
    keep: Option<&[String]>,
    d: &DesiredState,
) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = format!(
        "set -e\nmkdir -p {BACKUP_DIR}/{rev} && chmod 0700 {BACKUP_DIR}\n",
        rev = sh_quote(rev)
    );
    s.push_str(&format!(
        "t=$(mktemp {BACKUP_DIR}/.desired.XXXXXX)\necho {} | base64 -d > \"$t\"\nchmod 0600 \"$t\"\nmv -f \"$t\" {BACKUP_DIR}/{}/desired.json\n",
        b64.encode(desired_json.as_bytes()),
        sh_quote(rev)
    ));
    if keep.is_none() {
        s.push_str(&format!(
            "[ ! -f {STATE_FILE} ] || cp -p {STATE_FILE} {STATE_FILE}.unreadable-{}\n",
            sh_quote(rev)
        ));
    }
    s.push_str(&format!(
        "t=$(mktemp /var/lib/strata/.state.XXXXXX)\necho {} | base64 -d > \"$t\"\nchmod 0600 \"$t\"\nsync \"$t\" 2>/dev/null || sync\nmv -f \"$t\" {STATE_FILE}\n",
        b64.encode(json.as_bytes())
    ));
    for r in &d.resources {
        if let Resource::Artifact(a) = r {
            s.push_str(&artifact::prune(a));
        }
    }
    // Prune: revision directories (numeric names) not in the kept history go; with the
    // previous record unreadable (keep None) nothing does.
    let Some(keep) = keep else {
        s.push_str("echo OK\n");
        return s;
    };
    s.push_str(&format!(
        "keep=' {} '\nfor d in {BACKUP_DIR}/*; do n=${{d##*/}}; case $n in *[!0-9]*) continue;; esac; case \"$keep\" in *\" $n \"*) ;; *) rm -rf \"$d\";; esac; done\necho OK\n",
        // Revision ids are digits (strata makes them); anything else read back is left out.
        keep.iter()
            .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    ));
    s
}

/// Starts the k-th validator (of staged file `$t<i>`, named `name` on the node, `dest`
/// quoted) in the background, after waiting for the (k-NP)-th: at most as many run at once
/// as the node has CPUs.
fn start_validator(k: usize, i: usize, name: &str, dest: &str, cmd: &str) -> String {
    let mut s = String::new();
    if k == 0 {
        s.push_str("NP=$(nproc 2>/dev/null || echo 1)\n");
    }
    s.push_str(&format!(
        "if [ {k} -ge \"$NP\" ]; then j=$(({k} - NP)); eval \"wait \\\"\\$v$j\\\"; r$j=\\$?\"; fi\n"
    ));
    s.push_str(&format!(
        "vd{i}=$(mktemp -d) && VDS=\"$VDS $vd{i} $vd{i}.out\" && cp -p \"$t{i}\" \"$vd{i}\"/{name} || fail validation of {dest}: no temp directory\n( cd \"$vd{i}\" && {cmd} ) >\"$vd{i}.out\" 2>&1 &\nv{k}=$!\n",
        name = sh_quote(name),
    ));
    s
}

/// Waits for every validator not yet waited for (started in the background as each file was
/// staged, `$v<k>` for the k-th, `$r<k>` once waited for) and checks them in file order: the first that failed is reported with its output, every staged temp
/// file is removed and nothing is renamed into place. `staged`: how many files were staged
/// (`$t0`..).
fn validate_all(validated: &[(usize, String)]) -> String {
    if validated.is_empty() {
        return String::new();
    }
    let mut s = String::from("step validate\n");
    for k in 0..validated.len() {
        s.push_str(&format!(
            "[ -n \"${{r{k}+x}}\" ] || {{ wait \"$v{k}\"; r{k}=$?; }}\n"
        ));
    }
    for (k, (i, dest)) in validated.iter().enumerate() {
        s.push_str(&format!(
            "if [ $r{k} -ne 0 ]; then echo \"VALIDATE {dest}\"; sed 's/^/  | /' \"$vd{i}.out\" | tail -n 20; fail validation of {dest}; fi\n"
        ));
    }
    s.push_str("rm -rf $VDS; VDS=\n");
    s
}

/// ufw's words for a rule (unquoted): `allow proto tcp from X to any port P comment c`, the
/// syntax both add and delete (without the comment) accept.
pub fn ufw_rule_words(r: &FwRule, with_comment: bool) -> Vec<String> {
    let mut w = vec![r.action.clone()];
    if r.proto != "any" {
        w.extend(["proto".to_string(), r.proto.clone()]);
    }
    w.extend([
        "from".to_string(),
        r.from.clone(),
        "to".into(),
        "any".into(),
        "port".into(),
        r.port.clone(),
    ]);
    if with_comment {
        if let Some(c) = &r.comment {
            w.extend(["comment".to_string(), c.clone()]);
        }
    }
    w
}

/// Runs a list of ufw commands (words, as the `ufw` command takes them) through ufw's own
/// parser and frontend in one process: what `ufw` does for each, without starting Python
/// and importing ufw and probing the kernel's netfilter capabilities (11 `iptables` runs)
/// once per rule: ~0.1 s a rule, and a watcher of a 30-node fleet has ~180 rules. One
/// frontend serves all the commands, as one `ufw` command serves a rule's IPv4 and IPv6
/// halves: its backend keeps the rules and defaults it writes in memory. ufw's lock is held
/// once for all.
///
/// Exits 3 before doing anything when the node's `ufw` is not the Python program it
/// expects (another interpreter line, a wrapper, an API it does not know); the script then
/// runs the `ufw` command once per rule, as before.
const UFW_BATCH_PY: &str = r#"import sys
try:
    import base64, gettext, json, os
    import ufw.common, ufw.frontend, ufw.util
    f = ufw.frontend
    f.parse_command, f.UFWFrontend.do_action, ufw.util.create_lock, ufw.util.release_lock
except Exception:
    sys.exit(3)
gettext.install(ufw.common.programName)
# ufw checks that its own program (argv[0]) is not writable by others, as the command does.
cmds, sys.argv = sys.argv[1], [sys.argv[2]]
out, sys.stdout = sys.stdout, open(os.devnull, "w")
lockfile = "/run/ufw.lock"
if os.getuid() != 0 or "TESTSTATE" in os.environ:
    lockfile = os.path.join(ufw.common.state_dir, "ufw.lock")
lock = ufw.util.create_lock(lockfile=lockfile, dryrun=False)
ui = None
try:
    for words in json.loads(base64.b64decode(cmds)):
        try:
            pr = f.parse_command(["ufw"] + words)
            ui = ui or f.UFWFrontend(False)
            if "rule" in pr.data:
                ui.do_action(pr.action, pr.data["rule"], pr.data["iptype"], pr.force)
            else:
                ui.do_action(pr.action, "", "", pr.force)
        except BaseException as e:
            # ufw's error() has printed its message to stderr already and exits.
            why = "" if isinstance(e, SystemExit) else ": " + str(getattr(e, "value", e))
            print("FAIL ufw " + " ".join(words) + why, file=out, flush=True)
            sys.exit(1)
finally:
    ufw.util.release_lock(lock)
"#;

/// The script lines that run `cmds` (ufw's words) in one ufw process, or with one `ufw`
/// command each when the node's ufw is not the one `UFW_BATCH_PY` knows.
fn ufw_batch(cmds: &[Vec<String>]) -> String {
    if cmds.is_empty() {
        return String::new();
    }
    let json = serde_json::to_string(cmds).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(json);
    let fallback: String = cmds
        .iter()
        .map(|w| {
            let args = w.iter().map(|x| sh_quote(x)).collect::<Vec<_>>().join(" ");
            format!(
                "ufw {args} >/dev/null || fail ufw {}\n",
                sh_quote(&w.join(" "))
            )
        })
        .collect();
    format!(
        "uf=$(command -v ufw); upy=$(sed -n '1s/^#![[:space:]]*\\(.*python.*\\)$/\\1/p' \"$uf\" 2>/dev/null)\nurc=3; if [ -n \"$upy\" ]; then $upy -c {prog} {b64} \"$uf\"; urc=$?; fi\nif [ $urc -eq 3 ]; then\n{fallback}elif [ $urc -ne 0 ]; then fail \"ufw (exit $urc)\"; fi\n",
        prog = sh_quote(UFW_BATCH_PY),
    )
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => ".",
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// File names are checked at render (no whitespace, no control characters); keep glob and
/// quote characters out of the unquoted temp-file pattern too.
fn shell_glob_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_times_pair_each_step_with_the_next_mark() {
        let out = "AT 1000\nSTEP user monad\nAT 1012\nSTEP stage /etc/a\nVALIDATE ok\nAT 1500\nSTEP stage /etc/b\nAT 1600\nSTEP enable x\nAT 1601\nOK\n";
        let t = super::step_times(out);
        assert_eq!(
            t,
            vec![
                ("user monad".to_string(), 12),
                ("stage /etc/a".to_string(), 488),
                ("stage /etc/b".to_string(), 100),
                ("enable x".to_string(), 1),
            ]
        );
        assert_eq!(
            super::times_by_kind(&t),
            vec![
                ("user".to_string(), 12, 1),
                ("stage".to_string(), 588, 2),
                ("enable".to_string(), 1, 1)
            ]
        );
        // Untimed output (no -vv) and a step cut short (no mark after it) give nothing.
        assert!(super::step_times("STEP a\nSTEP b\nOK\n").is_empty());
        assert_eq!(
            super::step_times("AT 5\nSTEP a\nAT 9\nSTEP b\nFAIL b\n"),
            vec![("a".to_string(), 4)]
        );
    }

    #[test]
    fn the_record_prunes_revisions_outside_its_history_unless_the_previous_was_unreadable() {
        let d = crate::model::testing::desired("n", vec![]);
        let keep = ["3".to_string(), "2".to_string()];
        let s = super::record_script("{}", "3", "{}", Some(&keep[..]), &d);
        assert!(
            s.contains("keep=' 3 2 '") && s.contains("rm -rf \"$d\""),
            "{s}"
        );
        assert!(!s.contains("unreadable"), "{s}");
        let s = super::record_script("{}", "3", "{}", None, &d);
        assert!(!s.contains("rm -rf"), "{s}");
        let aside = s
            .find("cp -p /var/lib/strata/state.json /var/lib/strata/state.json.unreadable-'3'")
            .expect("kept aside");
        assert!(
            aside < s.find("mv -f \"$t\" /var/lib/strata/state.json").unwrap(),
            "{s}"
        );
    }

    #[test]
    fn scripts_are_timed_only_when_asked() {
        // The marks are behind STRATA_TIMES, which only -vv sets (TIMES_ON).
        let s = super::handlers_script(&[], &Default::default(), "");
        assert!(s.contains(
            "if [ -n \"${STRATA_TIMES:-}\" ]; then echo \"AT $(date +%s%3N)\"; fi\necho OK\n"
        ));
        assert!(!s.contains("STRATA_TIMES=1"));
    }

    use super::*;

    /// `script` in sh, with `dir` (its fake commands) first on PATH.
    fn sh_with_path_first(script: &str, dir: &std::path::Path) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .output()
            .unwrap()
    }

    /// allow PORT/tcp from 10.0.0.0/8, with a comment that needs quoting.
    fn test_rule(port: &str) -> FwRule {
        FwRule {
            action: "allow".into(),
            port: port.into(),
            proto: "tcp".into(),
            from: "10.0.0.0/8".into(),
            comment: Some("it's".into()),
        }
    }

    /// Runs `ufw_batch` of two rules in `sh` with a fake `ufw` first on PATH whose first line
    /// is `shebang`; returns (exit code, stdout, what the fakes logged).
    fn run_batch(shebang: &str, stub_exit: i32) -> (i32, String, String) {
        let dir = std::env::temp_dir().join(format!(
            "strata-ufw-batch-{}-{stub_exit}-{}",
            std::process::id(),
            shebang.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let stub = dir.join("python-stub");
        std::fs::write(
            &stub,
            // The batch (`-c`) is logged and exits as told; the fallback's `ufw` (a script
            // with this interpreter line) runs in sh.
            format!("#!/bin/sh\ncase \" $* \" in *\" -c \"*) printf 'python\\0' >> {log:?}; printf '%s\\0' \"$@\" >> {log:?}; exit {stub_exit};; esac\nexec /bin/sh \"$@\"\n"),
        )
        .unwrap();
        let body = shebang.replace("STUB", &stub.to_string_lossy());
        std::fs::write(
            dir.join("ufw"),
            format!("{body}\necho \"ufw $*\" >> {log:?}\n"),
        )
        .unwrap();
        for f in ["ufw", "python-stub"] {
            std::process::Command::new("chmod")
                .args(["0755", &dir.join(f).to_string_lossy()])
                .status()
                .unwrap();
        }
        let cmds: Vec<Vec<String>> = [test_rule("22"), test_rule("9100")]
            .iter()
            .map(|r| ufw_rule_words(r, true))
            .collect();
        let script = format!(
            "fail() {{ echo \"FAIL $*\"; exit 1; }}\n{}echo OK\n",
            ufw_batch(&cmds)
        );
        let o = sh_with_path_first(&script, &dir);
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_dir_all(&dir).unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            logged,
        )
    }

    /// Stages three files in a temp dir and runs their validators through `start_validator`
    /// and `validate_all` in `sh`, with `nproc` saying `cpus`. Returns (exit code, stdout,
    /// the order the validators started and ended in, what is left in the temp dir).
    fn run_validators(cpus: u32, cmds: [&str; 3]) -> (i32, String, String, Vec<String>) {
        let dir = std::env::temp_dir().join(format!(
            "strata-validators-{}-{cpus}-{}",
            std::process::id(),
            cmds.concat().len()
        ));
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("nproc"), format!("#!/bin/sh\necho {cpus}\n")).unwrap();
        std::process::Command::new("chmod")
            .args(["0755", &bin.join("nproc").to_string_lossy()])
            .status()
            .unwrap();
        let log = dir.join("log");
        // The prelude's own `fail` (without its node-wide lock).
        let fail = PRELUDE.lines().find(|l| l.starts_with("fail()")).unwrap();
        let mut script = format!("VDS= TS=\n{fail}\nstep() {{ :; }}\nexport TMPDIR={work:?}\n");
        let mut validated = vec![];
        for (i, c) in cmds.iter().enumerate() {
            script.push_str(&format!(
                "t{i}=$(mktemp {work:?}/.f{i}.strata-XXXXXX); TS=\"$TS $t{i}\"; echo content{i} > \"$t{i}\"\n"
            ));
            // Each validator logs its start and end, and checks it sees its file.
            let cmd = format!(
                "echo start{i} >> {log:?}; grep -q content{i} \"$vd{i}\"/f{i}.conf && {c}; rc=$?; echo end{i} >> {log:?}; exit $rc"
            );
            let dest = format!("'/etc/f{i}.conf'");
            script.push_str(&start_validator(
                validated.len(),
                i,
                &format!("f{i}.conf"),
                &dest,
                &cmd,
            ));
            validated.push((i, dest));
        }
        script.push_str(&validate_all(&validated));
        script.push_str("echo OK\n");
        let o = sh_with_path_first(&script, &bin);
        let order = std::fs::read_to_string(&log).unwrap_or_default();
        let mut left: Vec<String> = std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            order.split_whitespace().collect::<Vec<_>>().join(" "),
            left,
        )
    }

    #[test]
    fn validators_run_at_once_up_to_the_cpus_and_are_checked_in_file_order() {
        // One CPU: one at a time, in file order.
        let (code, out, order, left) = run_validators(1, ["sleep 0.2", "true", "true"]);
        assert_eq!((code, out.as_str()), (0, "OK\n"));
        assert_eq!(order, "start0 end0 start1 end1 start2 end2");
        // The staged files stay (the commit renames them); the validators' dirs are gone.
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.iter().all(|f| f.contains(".strata-")), "{left:?}");
        // Enough CPUs: all start before the slow first one ends.
        let (code, _, order, _) = run_validators(8, ["sleep 0.3", "true", "true"]);
        assert_eq!(code, 0);
        assert!(order.ends_with("end0"), "{order}");
        // Two fail: once all have ended, the first in file order is reported, with its
        // output; every staged file and every validator directory is removed.
        let (code, out, _, left) = run_validators(
            8,
            [
                "sleep 0.3; echo slow-ok",
                "echo bad-one; false",
                "echo bad-two; false",
            ],
        );
        assert_eq!(code, 1);
        assert_eq!(
            out,
            "VALIDATE '/etc/f1.conf'\n  | bad-one\nFAIL validation of /etc/f1.conf\n"
        );
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn ufw_rules_go_through_one_process_or_the_ufw_command_one_by_one() {
        let one_by_one = "ufw allow proto tcp from 10.0.0.0/8 to any port 22 comment it's\nufw allow proto tcp from 10.0.0.0/8 to any port 9100 comment it's\n";
        // A ufw that is not a Python program (an operator's wrapper): each rule through it.
        let (code, out, log) = run_batch("#!/bin/sh", 0);
        assert_eq!((code, out.as_str(), log.as_str()), (0, "OK\n", one_by_one));
        // ufw's interpreter runs the batch: the rules as JSON words, never the ufw command.
        let (code, out, log) = run_batch("#!STUB -E", 0);
        assert_eq!((code, out.as_str()), (0, "OK\n"));
        let words = [
            ufw_rule_words(&test_rule("22"), true),
            ufw_rule_words(&test_rule("9100"), true),
        ];
        assert_eq!(
            words[0],
            [
                "allow",
                "proto",
                "tcp",
                "from",
                "10.0.0.0/8",
                "to",
                "any",
                "port",
                "22",
                "comment",
                "it's"
            ]
        );
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_string(&words).unwrap());
        let args: Vec<&str> = log.split('\0').collect();
        let tmp = std::env::temp_dir().display().to_string();
        assert_eq!(
            args[..5],
            ["python", "-E", "-c", UFW_BATCH_PY, b64.as_str()]
        );
        assert!(
            args[5].starts_with(&tmp) && args[5].ends_with("/ufw") && args[6].is_empty(),
            "{args:?}"
        );
        // Exit 3 (ufw's Python API not there): nothing was done, the ufw command one by one.
        let (code, out, log) = run_batch("#!STUB", 3);
        assert_eq!((code, out.as_str()), (0, "OK\n"));
        assert!(log.ends_with(one_by_one), "{log}");
        // Any other failure fails the step; the rules are not tried again one by one.
        let (code, out, log) = run_batch("#!STUB", 1);
        assert_eq!((code, out.as_str()), (1, "FAIL ufw (exit 1)\n"));
        assert!(!log.contains("ufw allow"), "{log}");
    }

    #[test]
    fn rule_ids_round_trip_to_ufw_syntax() {
        let r = FwRule {
            action: "allow".into(),
            port: "9100".into(),
            proto: "tcp".into(),
            from: "10.0.0.0/8".into(),
            comment: Some("it's".into()),
        };
        let back = FwRule::from_key(&r.key()).unwrap();
        assert_eq!(
            back,
            FwRule {
                comment: None,
                ..r.clone()
            }
        );
        assert_eq!(
            ufw_rule_words(&r, true).join(" "),
            "allow proto tcp from 10.0.0.0/8 to any port 9100 comment it's"
        );
        let any = FwRule {
            proto: "any".into(),
            ..r
        };
        assert_eq!(
            ufw_rule_words(&any, false).join(" "),
            "allow from 10.0.0.0/8 to any port 9100"
        );
    }

    #[test]
    fn json_fields_are_read_by_sed_as_they_are_written() {
        // Run the real sed on bodies a validator's status endpoint returns.
        for (body, field, want) in [
            (
                r#"{"version": "0.9.4", "height": 1201}"#,
                "version",
                "0.9.4",
            ),
            (r#"{"version":"0.9.4","height":1201}"#, "height", "1201"),
            ("{\n  \"height\": 77,\n  \"x\": 1\n}", "height", "77"),
            (r#"{"height": 5}"#, "version", ""),
        ] {
            let script = format!(
                "printf '%s' {} | tr -d '\\n' | sed -n {} | head -n 1",
                sh_quote(body),
                sh_quote(&json_field_sed(field))
            );
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                want,
                "{body} {field}"
            );
        }
    }

    #[test]
    fn paths_split() {
        assert_eq!(parent("/etc/a.conf"), "/etc");
        assert_eq!(parent("/a"), "/");
        assert_eq!(basename("/etc/systemd/system/x.service"), "x.service");
    }

    #[test]
    fn health_script_checks_units_then_http() {
        let s = health_script(&HealthCheck {
            units: vec!["monad-validator".into()],
            http: Some("http://127.0.0.1:8080/status".into()),
            tcp: None,
            timeout_secs: 30,
            ..Default::default()
        });
        assert!(s.contains("systemctl is-active --quiet 'monad-validator'"));
        assert!(s.contains("curl -fsS --max-time 3 -o /dev/null 'http://127.0.0.1:8080/status'"));
        assert!(s.contains("+ 30 ))"));
    }
    #[test]
    fn odd_paths_masks_aliases_and_foreign_rules_in_the_changes_script() {
        use crate::model::testing::desired;
        let d = desired(
            "v-1",
            vec![
                Resource::File(FileRes {
                    dest: "/etc/a".into(),
                    content: "x\n".into(),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o644,
                    validate: None,
                    validate_local: None,
                    secret: false,
                    notify: vec![],
                    module: "m".into(),
                }),
                Resource::Service(ServiceRes {
                    name: "ne".into(),
                    enabled: true,
                    state: ServiceState::Started,
                    module: "m".into(),
                }),
                Resource::Firewall(FirewallRes {
                    default_incoming: "deny".into(),
                    default_outgoing: "allow".into(),
                    rules: vec![],
                    module: "ufw".into(),
                }),
            ],
        );
        let change = |id: ChangeId, ops: Vec<Op>| Change {
            id,
            action: Action::Change,
            details: vec![],
            diff: None,
            secret: false,
            handlers: vec![],
            ops,
            cause: Default::default(),
            restore_from: None,
        };
        let plan = NodePlan {
            changes: vec![
                change(ChangeId::File("/etc/a".into()), vec![Op::Write]),
                change(
                    ChangeId::Service("ne".into()),
                    vec![Op::Unmask, Op::Enable, Op::Start],
                ),
                change(
                    ChangeId::ForeignRule(
                        "route allow in on host0 proto tcp from any to 10.9.9.9 port 80".into(),
                    ),
                    vec![Op::FwDelete],
                ),
            ],
            ..Default::default()
        };
        let s = changes_script(&d, &plan, "1", "", &Payloads::new());
        // Never renamed into a directory, never following a link for the backup.
        assert!(s.contains("put \"$t0\" '/etc/a'"), "{s}");
        assert!(
            s.contains("put() { mv -fT \"$1\" \"$2\" && return 0;"),
            "{s}"
        );
        assert!(s.contains("if [ -L '/etc/a' ] || { [ -e '/etc/a' ] && [ ! -f '/etc/a' ]; }; then mkdir -p '/var/lib/strata/backup/1/etc' && cp -a '/etc/a'"));
        assert!(s.contains("rmdir '/etc/a'"));
        let unmask = s.find("systemctl unmask 'ne.service'").unwrap();
        let enable = s.find("systemctl enable \"$(unit 'ne.service')\"").unwrap();
        let start = s.find("sysd start 'ne.service' || fail").unwrap();
        assert!(unmask < enable && enable < start);
        assert!(s.contains("ufw 'route' 'delete' 'allow' 'in' 'on' 'host0' 'proto' 'tcp' 'from' 'any' 'to' '10.9.9.9' 'port' '80' >/dev/null"));
        // Each service step, once done, is recorded for the rollback, which undoes the
        // recorded ones newest first (a step never reached is never undone).
        assert!(s.contains("systemctl unmask 'ne.service' || fail systemctl unmask 'ne.service'\necho 'S mask ne.service' >> '/var/lib/strata/backup/1/manifest'"), "{s}");
        assert!(s.contains("echo 'S disable ne.service' >>"));
        assert!(s.contains("echo 'S stop ne.service' >>"));
        let r = rollback_script("1", &[]);
        assert!(
            r.contains("grep '^S ' \"$m\" | tac > \"$m.undo\"; while read -r kind undo u; do"),
            "{r}"
        );
        assert!(r.contains("A) t="), "{r}");
    }
}
