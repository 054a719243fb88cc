//! The command line as a person meets it: completions that bash really loads, a man page,
//! and colour that follows --color and no-color.org (NO_COLOR set and non-empty: no colour).
//! Runs the real binary; the colour cases run it under a pseudo-terminal (`script`).

use std::path::Path;
use std::process::{Command, Output};

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bash_loads_the_completions_and_completes_a_command() {
    let script = stdout(&strata().args(["completions", "bash"]).output().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("strata.bash");
    std::fs::write(&f, script).unwrap();
    // What bash offers after `strata pl<TAB>`, and for `strata plan --det<TAB>`.
    let probe = format!(
        "source {0}\ncomplete -p strata\nCOMP_WORDS=(strata pl); COMP_CWORD=1; _strata strata pl strata; echo \"offers: ${{COMPREPLY[*]}}\"\nCOMP_WORDS=(strata plan --det); COMP_CWORD=2; _strata strata --det plan; echo \"offers: ${{COMPREPLY[*]}}\"\n",
        f.display()
    );
    let o = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("-F _strata strata"), "{out}");
    let offers: Vec<&str> = out.lines().filter(|l| l.starts_with("offers:")).collect();
    assert_eq!(offers.len(), 2, "{out}");
    assert!(offers[0].split_whitespace().any(|w| w == "plan"), "{out}");
    assert!(
        offers[1]
            .split_whitespace()
            .any(|w| w == "--detailed-exitcode"),
        "{out}"
    );
}

#[test]
fn zsh_and_fish_completions_and_the_man_page_name_the_commands() {
    for shell in ["zsh", "fish"] {
        let s = stdout(&strata().args(["completions", shell]).output().unwrap());
        assert!(
            s.contains("bootstrap") && s.contains("rollback"),
            "{shell}: {s}"
        );
    }
    let man = stdout(&strata().arg("man").output().unwrap());
    assert!(man.contains(".TH strata 1"), "{man}");
    assert!(
        man.contains("apply") && man.contains("\\-\\-inventory"),
        "{man}"
    );
}

/// A repo with one node on a closed loopback port: `plan` prints its (bold) node header and
/// fails to connect, without touching any network but loopback.
fn unreachable_repo(dir: &Path) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "inventory/hosts.yaml",
        "defaults:\n  ssh: {user: root, port: 1, connect_timeout: 2}\ngroups:\n  g:\n    modules: []\nhosts:\n  n-1:\n    address: 127.0.0.1\n    groups: [g]\n    region: r\n",
    );
    w("base-config/vars.yaml", "vars: {}\n");
}

/// Run `strata ARGS` under a pseudo-terminal; what it printed there.
fn on_terminal(repo: &Path, args: &str, no_color: Option<&str>) -> String {
    let cmd = format!(
        "{} --repo {} {args}",
        env!("CARGO_BIN_EXE_strata"),
        repo.display()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]);
    match no_color {
        Some(v) => c.env("NO_COLOR", v),
        None => c.env_remove("NO_COLOR"),
    };
    stdout(&c.output().unwrap())
}

#[test]
fn colour_follows_color_flag_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_repo(dir.path());
    let esc = |s: &str| s.contains('\u{1b}');
    let plain_tty = on_terminal(dir.path(), "plan", None);
    assert!(plain_tty.contains("n-1"), "{plain_tty}");
    assert!(esc(&plain_tty), "no colour on a terminal:\n{plain_tty}");
    // no-color.org: an empty NO_COLOR does not disable colour; a non-empty one does.
    assert!(esc(&on_terminal(dir.path(), "plan", Some(""))));
    assert!(!esc(&on_terminal(dir.path(), "plan", Some("1"))));
    assert!(!esc(&on_terminal(dir.path(), "--color never plan", None)));
    // Without a terminal: no colour, unless asked for.
    let piped = |args: &[&str]| {
        stdout(
            &strata()
                .arg("--repo")
                .arg(dir.path())
                .args(args)
                .env_remove("NO_COLOR")
                .output()
                .unwrap(),
        )
    };
    assert!(!esc(&piped(&["plan"])));
    assert!(esc(&piped(&["--color", "always", "plan"])));
}

/// The checked-in JSON Schemas are the ones the binary generates (rerun
/// `strata schema plan > schema/plan.schema.json` after changing the types), and a real plan
/// (here of an unreachable node) validates against them (python3 jsonschema, installed by .ci/run).
#[test]
fn json_schemas_are_current_and_outputs_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (what, file) in [
        ("plan", "schema/plan.schema.json"),
        ("status", "schema/status.schema.json"),
        ("events", "schema/events.schema.json"),
    ] {
        let now = stdout(&strata().args(["schema", what]).output().unwrap());
        let saved = std::fs::read_to_string(root.join(file)).unwrap();
        assert_eq!(
            now, saved,
            "{file} is stale: regenerate it with `strata schema {what}`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    unreachable_repo(dir.path());
    for (args, schema) in [
        (vec!["plan", "--format", "json"], "schema/plan.schema.json"),
        (
            vec!["status", "--format", "json"],
            "schema/status.schema.json",
        ),
    ] {
        let o = strata()
            .arg("--repo")
            .arg(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let doc = dir.path().join("out.json");
        std::fs::write(&doc, &o.stdout).unwrap();
        let check = Command::new("python3")
            .args([
                "-c",
                "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))); print('valid')",
            ])
            .arg(&doc)
            .arg(root.join(schema))
            .output()
            .unwrap();
        assert!(
            stdout(&check).contains("valid"),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&check.stderr),
            stdout(&o)
        );
    }
    // `apply --format json` of a node that cannot be reached: every line of standard output
    // is one event that validates (gathered, the plan with its failed node), and the last is
    // the error, since there is no rollout summary. The lab's e2e case covers a real rollout.
    let o = strata()
        .arg("--repo")
        .arg(dir.path())
        .args(["apply", "--yes", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let lines = validate_lines(&stdout(&o), &root.join("schema/events.schema.json"));
    let kinds: Vec<&str> = lines.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["gathered", "plan", "error"], "{}", stdout(&o));
    assert_eq!(lines[1]["plan"]["nodes"][0]["status"], "failed");
    assert!(lines[2]["message"]
        .as_str()
        .unwrap()
        .contains("could not be planned"));
    assert!(lines.iter().all(|v| v["format_version"] == 1));
}

/// Every line of `text` is a JSON object valid against `schema` (python3 jsonschema); parsed.
fn validate_lines(text: &str, schema: &Path) -> Vec<serde_json::Value> {
    let check = Command::new("python3")
        .args([
            "-c",
            "import json,sys,jsonschema\n\
             s=json.load(open(sys.argv[1]))\n\
             for i,l in enumerate(sys.stdin):\n    jsonschema.validate(json.loads(l), s)\n\
             print('valid', i+1)",
        ])
        .arg(schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let mut check = check;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let r = check.wait_with_output().unwrap();
    let n = text.lines().count();
    assert!(
        stdout(&r).contains(&format!("valid {n}")),
        "{}\n{text}",
        String::from_utf8_lossy(&r.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
