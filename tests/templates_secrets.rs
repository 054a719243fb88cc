//! Templates and secrets through the real binary: the include escape of issue 14, age files,
//! `strata secrets` and `--placeholder-secrets`. Offline only (check, render, vars, secrets).

use age::secrecy::ExposeSecret;
use std::path::Path;
use std::process::{Command, Output};

const HOSTS: &str = "\
defaults:
  ssh:
    user: root
groups:
  validators:
    modules: [app]
hosts:
  v-1:
    address: 127.0.0.1
    groups: [validators]
    region: r1
";

const BASE: &str = "\
vars:
  app:
    port: 8000
    token: '{{ env(\"STRATA_TEST_APP_TOKEN\") }}'
";

const MODULE: &str = "\
files:
  - dest: /etc/app/app.conf
    template: app.conf.j2
  - dest: /etc/app/telegram.conf
    template: telegram.conf.j2
";

const TOKEN: &str = "123456:AAH-telegram-CANARY-token";

fn repo(dir: &Path, app_tmpl: &str) {
    for (p, c) in [
        ("inventory/hosts.yaml", HOSTS),
        ("base-config/vars.yaml", BASE),
        ("modules/app/module.yaml", MODULE),
        ("modules/app/templates/app.conf.j2", app_tmpl),
        (
            "modules/app/templates/telegram.conf.j2",
            "# telegram\nbot_token = {{ secret_file('secrets/telegram.age') | trim }}\n",
        ),
    ] {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
}

fn encrypt(dir: &Path) -> String {
    let id = age::x25519::Identity::generate();
    let ct = age::encrypt_and_armor(&id.to_public(), format!("{TOKEN}\n").as_bytes()).unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/telegram.age"), ct).unwrap();
    id.to_string().expose_secret().to_string()
}

fn strata(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.arg("--repo").arg(dir).args(args);
    c.env_remove("STRATA_AGE_IDENTITY")
        .env_remove("STRATA_TEST_APP_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_include_outside_the_module_is_an_error_at_its_line() {
    let d = tempfile::tempdir().unwrap();
    repo(
        d.path(),
        "port={{ app.port }}\n{% include \"../../../../proc/self/environ\" %}\n",
    );
    let key = encrypt(d.path());
    let o = strata(
        d.path(),
        &["check"],
        &[
            ("STRATA_AGE_IDENTITY", &key),
            ("STRATA_TEST_APP_TOKEN", "tok-abcdef"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("modules/app/templates/app.conf.j2:2: template: invalid operation: `../../../../proc/self/environ` leaves the module"),
        "{t}"
    );
    assert!(!t.contains("PATH="), "{t}");
}

#[test]
fn age_secret_files_decrypt_in_process_and_are_redacted() {
    let d = tempfile::tempdir().unwrap();
    repo(d.path(), "port={{ app.port }}\ntoken={{ app.token }}\n");
    let key = encrypt(d.path());
    let env = [
        ("STRATA_AGE_IDENTITY", key.as_str()),
        ("STRATA_TEST_APP_TOKEN", "tok-abcdef"),
    ];
    let o = strata(d.path(), &["check"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Listing: the file is secret, its content nowhere.
    let o = strata(d.path(), &["render"], &env);
    let t = text(&o);
    assert!(
        t.contains("file:/etc/app/telegram.conf") && t.contains("(secret)"),
        "{t}"
    );
    assert!(!t.contains("CANARY"), "{t}");
    // --out writes the decrypted content, owner-only.
    let out = d.path().join("out");
    let o = strata(d.path(), &["render", "--out", out.to_str().unwrap()], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let f = out.join("v-1/etc/app/telegram.conf");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        format!("# telegram\nbot_token = {TOKEN}\n")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Rendered again over a world-readable copy and over a symlink: owner-only again, and
    // the symlink replaced, its target untouched (before, an existing file kept its 0644).
    let decoy = d.path().join("decoy");
    std::fs::write(&decoy, "decoy\n").unwrap();
    for step in ["world-readable", "symlink"] {
        if step == "symlink" {
            std::fs::remove_file(&f).unwrap();
            std::os::unix::fs::symlink(&decoy, &f).unwrap();
        } else {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let o = strata(d.path(), &["render", "--out", out.to_str().unwrap()], &env);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let m = std::fs::symlink_metadata(&f).unwrap();
        assert!(m.is_file(), "{step}");
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{step}");
    }
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "decoy\n");
    assert!(
        std::fs::read_dir(out.join("v-1/etc/app"))
            .unwrap()
            .all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".strata-")),
        "a temp file was left"
    );

    // No identity, or the wrong one: an error naming the template line and the secret file.
    let o = strata(
        d.path(),
        &["check"],
        &[("STRATA_TEST_APP_TOKEN", "tok-abcdef")],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("modules/app/templates/telegram.conf.j2:2: template: invalid operation: secret_file(\"secrets/telegram.age\"): cannot decrypt `secrets/telegram.age`: no age identity: set STRATA_AGE_IDENTITY"),
        "{t}"
    );
    let other = age::x25519::Identity::generate();
    let o = strata(
        d.path(),
        &["check"],
        &[
            ("STRATA_AGE_IDENTITY", other.to_string().expose_secret()),
            ("STRATA_TEST_APP_TOKEN", "tok-abcdef"),
        ],
    );
    assert!(
        text(&o).contains("is not one this file was encrypted to"),
        "{}",
        text(&o)
    );
}

#[test]
fn secrets_are_listed_and_placeholders_lint_without_them() {
    let d = tempfile::tempdir().unwrap();
    repo(d.path(), "port={{ app.port }}\ntoken={{ app.token }}\n");
    encrypt(d.path());
    // Without any secret: check fails, check --placeholder-secrets passes.
    assert_eq!(strata(d.path(), &["check"], &[]).status.code(), Some(1));
    let o = strata(d.path(), &["check", "--placeholder-secrets"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("fake placeholder"));
    let o = strata(d.path(), &["vars", "v-1", "--placeholder-secrets"], &[]);
    assert!(text(&o).contains("app.token = <secret>"), "{}", text(&o));
    // The placeholders are obviously fake.
    let out = d.path().join("out");
    strata(
        d.path(),
        &[
            "render",
            "--placeholder-secrets",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let c = std::fs::read_to_string(out.join("v-1/etc/app/telegram.conf")).unwrap();
    assert_eq!(
        c,
        "# telegram\nbot_token = strata-placeholder-not-a-secret:secrets/telegram.age\n"
    );
    // plan and apply do not take the flag.
    for cmd in ["plan", "apply"] {
        let o = strata(d.path(), &[cmd, "--placeholder-secrets"], &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o)); // a usage error
        assert!(text(&o).contains("unexpected argument '--placeholder-secrets'"));
    }
    // `strata secrets` lists both, where they are used, and whether they are here.
    let o = strata(d.path(), &["secrets"], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("env STRATA_TEST_APP_TOKEN"), "{t}");
    assert!(t.contains("MISSING  base-config/vars.yaml:4"), "{t}");
    assert!(t.contains("(the variable is not set)"), "{t}");
    assert!(
        t.contains("(cannot decrypt `secrets/telegram.age`: no age identity"),
        "{t}"
    );
    assert!(t.contains("file secrets/telegram.age"), "{t}");
    assert!(
        t.contains("modules/app/templates/telegram.conf.j2:2"),
        "{t}"
    );
    assert!(t.contains("2 secrets needed, 2 missing here"), "{t}");
    assert_eq!(
        strata(d.path(), &["secrets", "--check"], &[]).status.code(),
        Some(1)
    );
}
