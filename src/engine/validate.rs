//! `strata check --validate`: run every rendered file's `validate` command here, on this
//! machine (a laptop, a CI runner), before anything reaches a node.
//!
//! Each check writes the rendered content into a private temp directory under the file's real
//! basename (0600 for secret files), substitutes `%s` with that path (shell-quoted) and runs
//! the command with `sh -c` in that directory, with a timeout, a clean environment (PATH,
//! HOME, LC_ALL=C: the validators never see the operator's env() secrets) and its output
//! redacted. Identical (command, file name, content) triples run once: 100 validators with the
//! same rules file cost one promtool run.
//!
//! A file whose tool is not installed here is "not checked", never "passed". A file whose
//! `validate` needs the node itself (its service account, its binary) declares
//! `validate_local:` in module.yaml: another command and/or exact replacements of the
//! node-only parts; strata refuses a replacement whose text no longer occurs in the file.

use crate::config::Repo;
use crate::model::{DesiredState, FileRes, Resource};
use crate::remote::probe::sh_quote;
use crate::report::redact;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one validator may run.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a failing validator's output shown.
pub const MAX_LINES: usize = 20;
/// Directories searched after PATH: chronyd and logrotate live in /usr/sbin, which a
/// non-root user's PATH often lacks. The validator runs with the same search path.
const SBIN: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The Debian package that provides a validator tool.
pub fn tool_package(tool: &str) -> Option<&'static str> {
    Some(match tool {
        "promtool" => "prometheus",
        "amtool" => "prometheus-alertmanager",
        "systemd-analyze" => "systemd",
        "chronyd" => "chrony",
        "logrotate" => "logrotate",
        "sshd" => "openssh-server",
        "ufw" => "ufw",
        "visudo" => "sudo",
        "nginx" => "nginx",
        _ => return None,
    })
}

/// The tool a command runs: its first word.
pub fn tool_of(command: &str) -> Option<&str> {
    command.split_whitespace().next()
}

/// `command` with every `%s` replaced by the shell-quoted path.
pub fn substitute(command: &str, path: &Path) -> String {
    command.replace("%s", &sh_quote(&path.to_string_lossy()))
}

/// Two checks with the same key are the same run: same command, same file name (systemd and
/// others look at the suffix), same secrecy (file mode), same content.
pub fn dedup_key(command: &str, basename: &str, secret: bool, content: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [command, basename, if secret { "s" } else { "-" }, content] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The command and content checked off the node: `validate_local` applied to the file.
/// Err: a replacement whose text does not occur (the override went stale).
pub fn local_check(f: &FileRes) -> Option<Result<(String, String), String>> {
    let validate = f.validate.as_ref()?;
    let Some(l) = &f.validate_local else {
        return Some(Ok((validate.clone(), f.content.clone())));
    };
    let command = l.command.clone().unwrap_or_else(|| validate.clone());
    let mut content = f.content.clone();
    for (from, to) in &l.replace {
        if !content.contains(from.as_str()) {
            return Some(Err(format!(
                "validate_local.replace: `{from}` does not occur in the rendered file; \
                 update module.yaml"
            )));
        }
        content = content.replace(from.as_str(), to);
    }
    Some(Ok((command, content)))
}

/// Redaction for a secret file's validator output: besides whole secret values, any run of
/// `min` or more characters that is part of a secret (tools truncate and quote values:
/// yaml says "cannot unmarshal !!str `123456:...`").
pub fn redact_fragments(s: &str, secrets: &[String], min: usize) -> String {
    let secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() >= min)
        .collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        // Longest prefix of s[i..] that occurs inside some secret.
        let mut best = 0;
        for sec in &secrets {
            let mut len = best + 1;
            while i + len <= s.len() {
                if !s.is_char_boundary(i + len) {
                    len += 1;
                    continue;
                }
                if sec.contains(&s[i..i + len]) {
                    best = len;
                    len += 1;
                } else {
                    break;
                }
            }
        }
        if best >= min {
            out.push_str("<redacted>");
            i += best;
        } else {
            let c = s[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The search path validators run with: PATH, then the sbin directories it lacks.
pub fn search_path(path: &str) -> String {
    let mut dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
    for d in SBIN {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.join(":")
}

fn find_tool(tool: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        return exec(Path::new(tool)).then(|| PathBuf::from(tool));
    }
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| exec(p))
}

/// What one (node, file) check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    NotChecked(String),
}

/// One distinct run: the command and content, and every (node, file) that shares it.
struct Run<'a> {
    command: String,
    content: String,
    basename: String,
    /// The dest of the first file that uses this run, to name it in the tool's output.
    dest: String,
    secret: bool,
    users: Vec<(&'a str, &'a FileRes)>,
}

/// What `check --validate` prints and its exit code.
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub not_checked: usize,
    pub runs: usize,
    /// Lines for stdout (per file: validated / not checked).
    pub out: String,
    /// Errors for stderr.
    pub err: String,
}

/// Run every file's validator (locally, deduplicated, `parallel` at once).
pub fn validate_all(repo: &Repo, nodes: &[DesiredState], secrets: &[String]) -> Report {
    let path = search_path(&std::env::var("PATH").unwrap_or_default());
    // (dest, module) -> per-node outcomes, in a stable order.
    let mut results: BTreeMap<(String, String), Vec<(String, Outcome)>> = BTreeMap::new();
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let mut notes: BTreeMap<(String, String), String> = BTreeMap::new();
    for d in nodes {
        for r in &d.resources {
            let Resource::File(f) = r else { continue };
            let Some(check) = local_check(f) else {
                continue;
            };
            let key = (f.dest.clone(), f.module.clone());
            if let Some(l) = &f.validate_local {
                notes
                    .entry(key.clone())
                    .or_insert_with(|| local_note(l, secrets));
            }
            match check {
                Err(e) => results
                    .entry(key)
                    .or_default()
                    .push((d.node.name.clone(), Outcome::Failed(e))),
                Ok((command, content)) => {
                    let basename = f.dest.rsplit('/').next().unwrap_or("file").to_string();
                    let k = dedup_key(&command, &basename, f.secret, &content);
                    runs.entry(k)
                        .or_insert_with(|| Run {
                            command,
                            content,
                            basename,
                            dest: f.dest.clone(),
                            secret: f.secret,
                            users: vec![],
                        })
                        .users
                        .push((&d.node.name, f));
                }
            }
        }
    }
    let runs: Vec<Run> = runs.into_values().collect();
    let outcomes: Vec<Mutex<Option<(Outcome, bool)>>> =
        runs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(runs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(run) = runs.get(i) else { break };
                *outcomes[i].lock().expect("not poisoned") = Some(run_one(run, &path, secrets));
            });
        }
    });
    let mut executed = 0;
    for (run, o) in runs.iter().zip(outcomes) {
        let (outcome, ran) = o
            .into_inner()
            .expect("not poisoned")
            .expect("every run ran");
        executed += usize::from(ran);
        for (node, f) in &run.users {
            results
                .entry((f.dest.clone(), f.module.clone()))
                .or_default()
                .push((node.to_string(), outcome.clone()));
        }
    }

    let mut rep = Report {
        passed: 0,
        failed: 0,
        not_checked: 0,
        runs: executed,
        out: String::new(),
        err: String::new(),
    };
    let order = |n: &str| nodes.iter().position(|d| d.node.name == n);
    for ((dest, module), per_node) in results.iter_mut() {
        per_node.sort_by_key(|(n, _)| order(n));
        let note = notes
            .get(&(dest.clone(), module.clone()))
            .cloned()
            .unwrap_or_default();
        let module_file = repo
            .modules
            .get(module)
            .map(|m| m.file.display().to_string())
            .unwrap_or_else(|| format!("modules/{module}/module.yaml"));
        // Group the nodes by identical outcome: one message for all nodes that share it.
        let mut groups: Vec<(&Outcome, Vec<&str>)> = vec![];
        for (node, o) in per_node {
            match groups.iter_mut().find(|(g, _)| *g == o) {
                Some((_, ns)) => ns.push(node),
                None => groups.push((o, vec![node])),
            }
        }
        for (o, ns) in groups {
            let who = node_list(&ns);
            match o {
                Outcome::Passed => {
                    rep.passed += ns.len();
                    let _ = writeln!(rep.out, "validated    {dest} on {who}{note}");
                }
                Outcome::NotChecked(why) => {
                    rep.not_checked += ns.len();
                    let _ = writeln!(rep.out, "NOT CHECKED  {dest} on {who}: {why}");
                }
                Outcome::Failed(msg) => {
                    rep.failed += ns.len();
                    let _ = writeln!(rep.out, "FAILED       {dest} on {who}");
                    let _ = writeln!(
                        rep.err,
                        "error: {dest} on {who} ({module_file}): {}",
                        redact(msg, secrets)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        rep.out,
        "check --validate: {} files validated ({} distinct runs), {} failed, {} not checked (tool not installed)",
        rep.passed, rep.runs, rep.failed, rep.not_checked
    );
    rep
}

/// How an off-node check differed from `validate`, said next to its result.
fn local_note(l: &crate::model::LocalValidate, secrets: &[String]) -> String {
    let mut parts = vec![];
    if let Some(c) = &l.command {
        parts.push(format!("ran `{c}`"));
    }
    for (from, to) in &l.replace {
        parts.push(format!("`{}` checked as `{}`", from.trim(), to.trim()));
    }
    redact(&format!(" (validate_local: {})", parts.join(", ")), secrets)
}

fn node_list(ns: &[&str]) -> String {
    const SHOW: usize = 10;
    if ns.len() <= SHOW {
        ns.join(", ")
    } else {
        format!(
            "{} and {} more nodes",
            ns[..SHOW].join(", "),
            ns.len() - SHOW
        )
    }
}

/// Run one distinct check. The bool: whether a process was started.
fn run_one(run: &Run, path: &str, secrets: &[String]) -> (Outcome, bool) {
    let Some(tool) = tool_of(&run.command) else {
        return (
            Outcome::Failed("the validate command is empty".into()),
            false,
        );
    };
    if find_tool(tool, path).is_none() {
        let why = match tool_package(tool) {
            Some(p) => format!("{tool} not installed; Debian package {p}"),
            None => format!("{tool} not installed"),
        };
        return (Outcome::NotChecked(why), false);
    }
    match execute(run, path, TIMEOUT) {
        Ok(None) => (Outcome::Passed, true),
        Ok(Some((status, output, file))) => {
            // The tool names its input by the temp path: show the file it stands for.
            let output = output.replace(&file, &run.dest);
            let mut output = redact(&output, secrets);
            if run.secret {
                output = redact_fragments(&output, secrets, 6);
            }
            let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
            let mut msg = format!("`{}` failed on the rendered file ({status}):", run.command);
            for l in lines.iter().take(MAX_LINES) {
                let _ = write!(msg, "\n  | {}", l.trim_end());
            }
            if lines.len() > MAX_LINES {
                let _ = write!(msg, "\n  | ... ({} more lines)", lines.len() - MAX_LINES);
            }
            if lines.is_empty() {
                msg.push_str(" (no output)");
            }
            (Outcome::Failed(msg), true)
        }
        Err(e) => (
            Outcome::Failed(format!("cannot run `{}`: {e}", run.command)),
            true,
        ),
    }
}

/// Ok(None): passed; Ok(Some((status, output, temp file path))): failed.
fn execute(
    run: &Run,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Option<(String, String, String)>> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::Builder::new()
        .prefix("strata-validate-")
        .tempdir()?;
    let dir = tmp.path().join("files");
    std::fs::create_dir(&dir)?;
    let file = dir.join(&run.basename);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if run.secret { 0o600 } else { 0o644 })
        .open(&file)?;
    f.write_all(run.content.as_bytes())?;
    f.sync_all()?;
    drop(f);
    let mut out = tempfile::tempfile_in(tmp.path())?;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(substitute(&run.command, &file))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", tmp.path())
        .env("LC_ALL", "C")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .process_group(0)
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > timeout {
            // The whole process group: sh and the tool it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    out.rewind()?;
    let mut bytes = vec![];
    out.read_to_end(&mut bytes)?;
    text.push_str(&String::from_utf8_lossy(&bytes));
    let file_s = file.to_string_lossy().to_string();
    Ok(match status {
        Some(st) if st.success() => None,
        Some(st) => Some((st.to_string(), text, file_s)),
        None => Some((
            format!("timed out after {} s", timeout.as_secs_f32()),
            text,
            file_s,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LocalValidate;

    fn file(content: &str, validate: Option<&str>, local: Option<LocalValidate>) -> FileRes {
        FileRes {
            dest: "/etc/x/app.conf".into(),
            content: content.into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            validate: validate.map(str::to_string),
            validate_local: local,
            secret: false,
            notify: vec![],
            module: "m".into(),
        }
    }

    #[test]
    fn percent_s_becomes_the_quoted_path_everywhere() {
        assert_eq!(
            substitute("promtool check rules %s", Path::new("/tmp/a b/r.yml")),
            "promtool check rules '/tmp/a b/r.yml'"
        );
        assert_eq!(
            substitute("cmp %s %s", Path::new("/t/it's")),
            r"cmp '/t/it'\''s' '/t/it'\''s'"
        );
        assert_eq!(substitute("true", Path::new("/x")), "true");
    }

    #[test]
    fn tools_map_to_their_debian_packages() {
        assert_eq!(tool_package("promtool"), Some("prometheus"));
        assert_eq!(tool_package("amtool"), Some("prometheus-alertmanager"));
        assert_eq!(tool_package("systemd-analyze"), Some("systemd"));
        assert_eq!(tool_package("chronyd"), Some("chrony"));
        assert_eq!(tool_package("logrotate"), Some("logrotate"));
        assert_eq!(tool_package("sshd"), Some("openssh-server"));
        assert_eq!(tool_package("ufw"), Some("ufw"));
        assert_eq!(tool_package("frobnicate"), None);
        assert_eq!(tool_of("  chronyd -p -f %s"), Some("chronyd"));
        assert_eq!(tool_of("   "), None);
    }

    #[test]
    fn dedup_key_separates_command_name_secrecy_and_content() {
        let k = dedup_key("promtool check rules %s", "r.yml", false, "groups: []");
        assert_eq!(
            k,
            dedup_key("promtool check rules %s", "r.yml", false, "groups: []")
        );
        for other in [
            dedup_key("promtool check config %s", "r.yml", false, "groups: []"),
            dedup_key("promtool check rules %s", "s.yml", false, "groups: []"),
            dedup_key("promtool check rules %s", "r.yml", true, "groups: []"),
            dedup_key("promtool check rules %s", "r.yml", false, "groups: [] "),
            // No ambiguity at the boundaries between the parts.
            dedup_key("promtool check rules %sr", ".yml", false, "groups: []"),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn validate_local_replaces_exactly_and_refuses_stale_text() {
        assert!(local_check(&file("a", None, None)).is_none());
        assert_eq!(
            local_check(&file("a", Some("v %s"), None)),
            Some(Ok(("v %s".into(), "a".into())))
        );
        let local = LocalValidate {
            command: None,
            replace: vec![("su monad monad".into(), "su root root".into())],
        };
        assert_eq!(
            local_check(&file(
                "x\n  su monad monad\n",
                Some("v %s"),
                Some(local.clone())
            )),
            Some(Ok(("v %s".into(), "x\n  su root root\n".into())))
        );
        let err = local_check(&file("x\n  su other other\n", Some("v %s"), Some(local)))
            .unwrap()
            .unwrap_err();
        assert!(err.contains("`su monad monad` does not occur"), "{err}");
        let cmd = LocalValidate {
            command: Some("w %s".into()),
            replace: vec![],
        };
        assert_eq!(
            local_check(&file("a", Some("v %s"), Some(cmd))),
            Some(Ok(("w %s".into(), "a".into())))
        );
    }

    #[test]
    fn fragments_of_secrets_are_redacted_too() {
        let secrets = vec!["123456:CANARY-token".to_string()];
        assert_eq!(
            redact_fragments(
                "cannot unmarshal !!str `123456:...` into int64",
                &secrets,
                6
            ),
            "cannot unmarshal !!str `<redacted>...` into int64"
        );
        assert_eq!(
            redact_fragments("x CANARY-token y", &secrets, 6),
            "x <redacted> y"
        );
        // Short common runs stay readable.
        assert_eq!(
            redact_fragments("line 12: bad", &secrets, 6),
            "line 12: bad"
        );
        assert_eq!(redact_fragments("héllo wörld", &secrets, 6), "héllo wörld");
    }

    #[test]
    fn a_hanging_validator_is_killed_at_the_timeout() {
        let run = Run {
            command: "sleep 30 & sleep 30; true %s".into(),
            content: "x".into(),
            basename: "f.conf".into(),
            dest: "/etc/f.conf".into(),
            secret: false,
            users: vec![],
        };
        let t0 = Instant::now();
        let r = execute(&run, "/usr/bin:/bin", Duration::from_millis(300)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let (status, _, _) = r.expect("a timeout is a failure");
        assert!(status.starts_with("timed out"), "{status}");
    }

    #[test]
    fn the_validator_sees_the_content_under_its_name_with_a_clean_env() {
        std::env::set_var("STRATA_VALIDATE_TEST_SECRET", "s3cr3t-value");
        let run = Run {
            command: "test \"$(cat %s)\" = hello && test \"$(basename %s)\" = app.conf \
                      && test -z \"${STRATA_VALIDATE_TEST_SECRET:-}\" \
                      && test \"$(stat -c %a %s)\" = 600"
                .into(),
            content: "hello".into(),
            basename: "app.conf".into(),
            dest: "/etc/app.conf".into(),
            secret: true,
            users: vec![],
        };
        let r = execute(&run, "/usr/bin:/bin", TIMEOUT).unwrap();
        assert_eq!(r, None, "validator saw something else");
        let bad = Run {
            command: "echo broken in %s; exit 3".into(),
            ..run
        };
        let (status, out, file) = execute(&bad, "/usr/bin:/bin", TIMEOUT).unwrap().unwrap();
        assert!(status.contains('3'), "{status}");
        assert_eq!(out.trim(), format!("broken in {file}"));
    }

    #[test]
    fn sbin_directories_are_searched_after_path() {
        assert_eq!(
            search_path("/usr/bin:/bin"),
            "/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
        );
        assert_eq!(
            search_path("/usr/sbin:/usr/bin"),
            "/usr/sbin:/usr/bin:/usr/local/sbin:/sbin"
        );
    }
}
