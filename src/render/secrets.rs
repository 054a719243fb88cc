//! Secret sources for rendering: `env("NAME")`, `secret_file("path")` (plain or age-encrypted),
//! and the placeholder mode of the offline commands (`--placeholder-secrets`).
//!
//! Every secret value read here goes into the renderer's sink (`Sink`), from which
//! `Rendered.secrets` is built: the same list every output is redacted with.
//!
//! Placeholders are scoped to one thread and one call (`with_placeholders`): only the CLI of
//! check, render, vars and secrets sets them; plan/apply never do, so a placeholder can never be
//! applied to a node.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The secret values seen while rendering (for redaction), shared by the template functions.
pub type Sink = Arc<Mutex<BTreeSet<String>>>;

/// Identity for age files: a path to an identity file, or the identity itself.
pub const AGE_IDENTITY_VAR: &str = "STRATA_AGE_IDENTITY";

/// Every placeholder starts with this, so a placeholder is recognisable wherever it shows up.
pub const PLACEHOLDER_PREFIX: &str = "strata-placeholder-not-a-secret";

thread_local! {
    static PLACEHOLDERS: Cell<bool> = const { Cell::new(false) };
    /// While `collect_used` runs: every env var name and secret file asked for.
    static USED: std::cell::RefCell<Option<BTreeSet<Used>>> = const { std::cell::RefCell::new(None) };
    /// While `find_missing_env` runs: (names to stand in for, names found unset).
    static MISSING: std::cell::RefCell<Option<(BTreeSet<String>, BTreeSet<String>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f`, returning what it returned and every env var asked for meanwhile that is unset
/// (on this thread). An unset name in `stand_in` reads as its placeholder, so that rendering
/// goes on past it and finds the next one: how `check` reports every missing secret at once.
/// Whatever `f` rendered with a stand-in is an error report, never output.
pub fn find_missing_env<T>(
    stand_in: &BTreeSet<String>,
    f: impl FnOnce() -> T,
) -> (T, BTreeSet<String>) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MISSING.with(|m| *m.borrow_mut() = None);
        }
    }
    MISSING.with(|m| *m.borrow_mut() = Some((stand_in.clone(), BTreeSet::new())));
    let reset = Reset;
    let out = f();
    let missed = MISSING
        .with(|m| m.borrow_mut().take())
        .map(|(_, missed)| missed)
        .unwrap_or_default();
    drop(reset);
    (out, missed)
}

/// A secret the config asked for while rendering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Used {
    Env(String),
    File(String),
}

/// Run `f`, returning what it returned and every secret asked for meanwhile (on this thread).
pub fn collect_used<T>(f: impl FnOnce() -> T) -> (T, BTreeSet<Used>) {
    USED.with(|u| *u.borrow_mut() = Some(BTreeSet::new()));
    let out = f();
    let used = USED.with(|u| u.borrow_mut().take()).unwrap_or_default();
    (out, used)
}

fn note_use(u: Used) {
    USED.with(|s| {
        if let Some(set) = s.borrow_mut().as_mut() {
            set.insert(u);
        }
    });
}

/// Run `f` with every secret replaced by an obviously fake placeholder (on this thread).
pub fn with_placeholders<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            PLACEHOLDERS.with(|p| p.set(self.0));
        }
    }
    let _reset = Reset(PLACEHOLDERS.with(|p| p.replace(true)));
    f()
}

/// Whether this thread renders with placeholders.
pub fn placeholders() -> bool {
    PLACEHOLDERS.with(|p| p.get())
}

/// The placeholder for env var `name`. A name that says it holds a URL gets a URL (in the
/// reserved `.invalid` domain) so that config validators that want a URL still pass.
pub fn env_placeholder(name: &str) -> String {
    if name.to_ascii_uppercase().contains("URL") {
        format!("https://{PLACEHOLDER_PREFIX}.invalid/{name}")
    } else {
        format!("{PLACEHOLDER_PREFIX}:{name}")
    }
}

/// The value of env var `name` for rendering: the placeholder in placeholder mode, else the
/// variable's value, `None` when unset or empty (an error for the caller to word).
pub fn env_var(name: &str) -> Option<String> {
    note_use(Used::Env(name.to_string()));
    if placeholders() {
        return Some(env_placeholder(name));
    }
    let v = std::env::var(name).ok().filter(|v| !v.is_empty());
    if v.is_none() {
        let stood_in = MISSING.with(|m| {
            m.borrow_mut().as_mut().is_some_and(|(stand_in, missed)| {
                missed.insert(name.to_string());
                stand_in.contains(name)
            })
        });
        if stood_in {
            return Some(env_placeholder(name));
        }
    }
    v
}

/// Record a secret value (and, for a multi-line one, each substantial line of it, so a line
/// quoted alone is redacted too).
pub fn record(sink: &Sink, value: &str) {
    let mut s = sink.lock().expect("secrets lock");
    s.insert(value.to_string());
    let trimmed = value.trim();
    if trimmed != value && !trimmed.is_empty() {
        s.insert(trimmed.to_string());
    }
    if value.trim_end().contains('\n') {
        for l in value.lines().map(str::trim).filter(|l| l.len() >= 8) {
            s.insert(l.to_string());
        }
    }
}

/// `path` (relative to `root`, `..` not leaving it) resolved inside `root`, symlinks followed
/// and checked: the real file must be inside the real `root` too.
pub fn inside(root: &Path, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!(
            "`{path}` is absolute: give a path relative to the repo"
        ));
    }
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => return Err(format!("`{path}` leaves the repo")),
        }
    }
    let full = root.join(p);
    let real = full
        .canonicalize()
        .map_err(|e| format!("cannot read `{path}`: {}", io_words(&e)))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("cannot read the repo {}: {}", root.display(), io_words(&e)))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "`{path}` leads outside the repo (to {})",
            real.display()
        ));
    }
    Ok(real)
}

pub fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `file("path")`: a file of the repo, read deliberately (not a secret).
pub fn read_repo_file(root: &Path, path: &str) -> Result<String, String> {
    let real = inside(root, path)?;
    let bytes =
        std::fs::read(&real).map_err(|e| format!("cannot read `{path}`: {}", io_words(&e)))?;
    String::from_utf8(bytes).map_err(|_| format!("`{path}` is not UTF-8 text"))
}

/// Where `secret_file("path")` reads: a repo-relative path inside the repo, or an absolute path
/// (a secret kept outside the repo, e.g. on a tmpfs a password manager fills).
pub fn secret_path(root: &Path, path: &str) -> Result<PathBuf, String> {
    if Path::new(path).is_absolute() {
        Ok(PathBuf::from(path))
    } else {
        inside(root, path)
    }
}

/// `secret_file("path")`: the content of a secret file; `.age` files are decrypted with the
/// identity from `STRATA_AGE_IDENTITY`. In placeholder mode, the placeholder (nothing is read).
pub fn read_secret_file(root: &Path, path: &str) -> Result<String, String> {
    note_use(Used::File(path.to_string()));
    if placeholders() {
        return Ok(format!("{PLACEHOLDER_PREFIX}:{path}"));
    }
    let identity = std::env::var(AGE_IDENTITY_VAR).ok();
    read_secret_file_with(root, path, identity.as_deref())
}

/// As `read_secret_file`, with the identity given (tests; `None`: no identity set).
pub fn read_secret_file_with(
    root: &Path,
    path: &str,
    identity: Option<&str>,
) -> Result<String, String> {
    let real = secret_path(root, path)?;
    let bytes =
        std::fs::read(&real).map_err(|e| format!("cannot read `{path}`: {}", io_words(&e)))?;
    let plain = if path.ends_with(".age") {
        decrypt_age(&bytes, identity).map_err(|e| format!("cannot decrypt `{path}`: {e}"))?
    } else {
        bytes
    };
    String::from_utf8(plain).map_err(|_| format!("`{path}` is not UTF-8 text"))
}

/// Decrypt an age file (binary or armored) with `identity`: the identity itself when it starts
/// with `AGE-SECRET-KEY-`, else the path of an identity file (one or more keys, `#` comments).
pub fn decrypt_age(ciphertext: &[u8], identity: Option<&str>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let Some(spec) = identity.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(format!(
            "no age identity: set {AGE_IDENTITY_VAR} to an identity file's path or to the \
             identity itself (AGE-SECRET-KEY-...)"
        ));
    };
    let file = if spec.starts_with("AGE-SECRET-KEY-") {
        age::IdentityFile::from_buffer(spec.as_bytes())
            .map_err(|e| format!("{AGE_IDENTITY_VAR} is not a valid age identity: {e}"))?
    } else {
        let bytes = std::fs::read(spec).map_err(|e| {
            format!(
                "cannot read the identity file {spec} ({AGE_IDENTITY_VAR}): {}",
                io_words(&e)
            )
        })?;
        age::IdentityFile::from_buffer(&bytes[..]).map_err(|e| {
            format!(
                "the identity file {spec} ({AGE_IDENTITY_VAR}) is not an age identity file: {e}"
            )
        })?
    };
    let ids = file
        .into_identities()
        .map_err(|e| format!("cannot use the identity in {AGE_IDENTITY_VAR}: {e}"))?;
    if ids.is_empty() {
        return Err(format!("{AGE_IDENTITY_VAR} holds no age identity"));
    }
    let reader = age::armor::ArmoredReader::new(ciphertext);
    let dec = age::Decryptor::new(reader).map_err(|e| format!("not an age file ({e})"))?;
    let mut r = dec
        .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                format!("the identity in {AGE_IDENTITY_VAR} is not one this file was encrypted to")
            }
            other => other.to_string(),
        })?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| format!("the age file is damaged ({e})"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn encrypt(to: &age::x25519::Identity, plain: &[u8], armor: bool) -> Vec<u8> {
        let r = to.to_public();
        if armor {
            age::encrypt_and_armor(&r, plain).unwrap().into_bytes()
        } else {
            age::encrypt(&r, plain).unwrap()
        }
    }

    #[test]
    fn age_files_decrypt_with_the_identity_itself_or_a_file() {
        let id = age::x25519::Identity::generate();
        let key = id.to_string().expose_secret().to_string();
        for armor in [false, true] {
            let ct = encrypt(&id, b"123456:telegram-token\n", armor);
            assert_eq!(
                decrypt_age(&ct, Some(&key)).unwrap(),
                b"123456:telegram-token\n"
            );
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("key.txt");
            std::fs::write(&f, format!("# created: today\n# public key: x\n{key}\n")).unwrap();
            assert_eq!(
                decrypt_age(&ct, Some(f.to_str().unwrap())).unwrap(),
                b"123456:telegram-token\n"
            );
        }
    }

    #[test]
    fn age_errors_say_what_is_wrong() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let ct = encrypt(&id, b"s3cret", false);
        let e = decrypt_age(&ct, None).unwrap_err();
        assert!(
            e.contains("no age identity: set STRATA_AGE_IDENTITY"),
            "{e}"
        );
        let e = decrypt_age(&ct, Some(other.to_string().expose_secret())).unwrap_err();
        assert!(e.contains("not one this file was encrypted to"), "{e}");
        let e = decrypt_age(&ct, Some("/nonexistent/key.txt")).unwrap_err();
        assert!(
            e.contains("cannot read the identity file /nonexistent/key.txt"),
            "{e}"
        );
        let e = decrypt_age(b"plain text", Some(id.to_string().expose_secret())).unwrap_err();
        assert!(e.contains("not an age file"), "{e}");
    }

    #[test]
    fn repo_paths_stay_in_the_repo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("files")).unwrap();
        std::fs::write(root.join("files/motd"), "hello\n").unwrap();
        std::fs::write(dir.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("files/link")).unwrap();
        assert_eq!(read_repo_file(&root, "files/motd").unwrap(), "hello\n");
        assert_eq!(
            read_repo_file(&root, "files/../files/motd").unwrap(),
            "hello\n"
        );
        for (p, want) in [
            ("/etc/passwd", "is absolute"),
            ("../outside", "leaves the repo"),
            ("files/../../outside", "leaves the repo"),
            ("files/link", "leads outside the repo"),
            ("files/none", "no such file"),
        ] {
            let e = read_repo_file(&root, p).unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
        // A plain secret file may live outside the repo (absolute path); relative ones may not.
        let abs = dir.path().join("outside");
        assert_eq!(
            read_secret_file_with(&root, abs.to_str().unwrap(), None).unwrap(),
            "x"
        );
        assert!(read_secret_file_with(&root, "../outside", None).is_err());
    }

    #[test]
    fn placeholders_are_scoped_and_obviously_fake() {
        assert!(!placeholders());
        let v = with_placeholders(|| env_var("STRATA_TEST_SURELY_UNSET_VAR"));
        assert_eq!(
            v.as_deref(),
            Some("strata-placeholder-not-a-secret:STRATA_TEST_SURELY_UNSET_VAR")
        );
        assert!(env_placeholder("STRATA_DISCORD_WEBHOOK_URL")
            .starts_with("https://strata-placeholder-not-a-secret.invalid/"));
        assert!(!placeholders());
        assert_eq!(env_var("STRATA_TEST_SURELY_UNSET_VAR"), None);
    }

    #[test]
    fn multi_line_secrets_are_recorded_line_by_line() {
        let sink: Sink = Default::default();
        record(&sink, "user: admin\npassword: hunter2hunter2\n");
        let s = sink.lock().unwrap();
        assert!(s.contains("password: hunter2hunter2"));
        assert!(s.contains("user: admin\npassword: hunter2hunter2"));
    }
}
