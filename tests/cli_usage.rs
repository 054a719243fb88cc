//! Usage errors exit 1 with clap's message; only "success with changes pending" may exit 2
//! (`--detailed-exitcode`), so CI never reads a typo as drift. Help and version exit 0.

use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--repo")
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_1_with_clap_s_message() {
    for (args, needle) in [
        (
            &["plan", "--detailed-exitcod"][..],
            "unexpected argument '--detailed-exitcod'",
        ),
        (&["plna"][..], "unrecognized subcommand 'plna'"),
        (&["plan", "--format", "yaml"][..], "invalid value 'yaml'"),
        (&["node", "add", "v-9"][..], "--address"),
        (&[][..], "Usage:"),
        (&["node"][..], "Usage:"),
        (&["apply", "--parallel", "many"][..], "invalid value 'many'"),
    ] {
        let out = strata(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "strata {args:?}: {err}");
        assert!(err.contains(needle), "strata {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    for args in [
        &["--help"][..],
        &["plan", "--help"][..],
        &["help"][..],
        &["--version"][..],
    ] {
        let out = strata(args);
        assert_eq!(out.status.code(), Some(0), "strata {args:?}");
        assert!(!out.stdout.is_empty(), "strata {args:?}");
    }
    let out = strata(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("strata "));
}
