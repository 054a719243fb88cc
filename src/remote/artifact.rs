//! The sh text that installs a released build (pure). Three parts, at three moments of an
//! apply:
//!
//! - `stage`, before any live change: download it on the node (or unpack what strata sent),
//!   check its sha256, unpack the declared members into a private directory beside the
//!   version directory. A mismatch, a failed download or a bad archive fails the node here,
//!   with nothing changed.
//! - `commit`, with the files: the staged tree becomes `/opt/<name>/<version>` and the
//!   symlink `current` is switched atomically (a new link renamed over the old one). Both are
//!   written to the revision's manifest first, so a rollback points `current` back and
//!   removes the version it added.
//! - `prune`, once the apply is recorded: versions beyond `keep` go, never the live one, and
//!   never a directory strata did not unpack (it has no marker).

use crate::model::{fmt_mode, ArtifactFormat, ArtifactRes, ArtifactSig};
use crate::remote::probe::sh_quote;
use base64::Engine as _;

/// The marker each version directory strata unpacked holds: `name version sha256`.
pub const MARKER: &str = ".strata-artifact";

fn var(i: usize) -> String {
    format!("a{i}")
}

/// `bytes` written to `to` (a quoted path) through a base64 heredoc; `or` runs if that fails.
fn heredoc(to: &str, bytes: &[u8], or: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut s = format!("base64 -d > {to} <<'STRATA_ARTIFACT_END'\n");
    for chunk in b64.as_bytes().chunks(76) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        s.push('\n');
    }
    s.push_str(&format!("STRATA_ARTIFACT_END\n[ $? -eq 0 ] || {or}\n"));
    s
}

/// A URL as it may appear inside a double-quoted message.
fn shown(url: &str) -> String {
    url.replace(['"', '$', '`', '\\'], "_")
}

/// Stage artifact number `i` of the changes script. `payload`: the download, verified on the
/// operator's machine, for a pushed artifact; None: the node downloads `url` itself.
/// `signature`: the detached signature, for one that travels from the operator's machine
/// (`ArtifactRes::signature_pushed`); None: the node downloads it.
pub fn stage(
    a: &ArtifactRes,
    i: usize,
    payload: Option<&[u8]>,
    signature: Option<&[u8]>,
) -> String {
    let id = format!("artifact:{}", a.name);
    let r = sh_quote(&a.root());
    let v = var(i);
    // The message first: it may quote a file of the staging directory (curl's error).
    let give_up = |why: &str| {
        format!(
            "{{ m=\"{why}\"; rm -rf \"${v}\"; fail {}\"$m\"; }}",
            sh_quote(&format!("{id}: "))
        )
    };
    let mut s = format!("step fetch {id} {}\n", sh_quote(&a.version));
    // Never through a symlink, never over something else.
    s.push_str(&format!(
        "if [ -L {r} ] || {{ [ -e {r} ] && [ ! -d {r} ]; }}; then fail {}; fi\nmkdir -p {r} && rm -rf {r}/.strata-stage-* && {v}=$(mktemp -d {r}/.strata-stage-XXXXXX) || fail {}\n",
        sh_quote(&format!("{id}: {} is not a directory; strata will not follow or replace it", a.root())),
        sh_quote(&format!("{id}: cannot create a staging directory in {}", a.root())),
    ));
    match payload {
        Some(bytes) => s.push_str(&heredoc(
            &format!("\"${v}/download\""),
            bytes,
            &give_up("cannot write what strata sent"),
        )),
        None => {
            s.push_str(&format!(
                "command -v curl >/dev/null 2>&1 || {}\n",
                give_up("curl is not installed on the node (fetch: push sends the artifact over SSH instead)")
            ));
            s.push_str(&format!(
                "curl -fsSL --retry 2 --connect-timeout 10 --max-time 1800 -o \"${v}/download\" {} 2>\"${v}/err\" || {}\n",
                sh_quote(&a.url),
                give_up(&format!(
                    "downloading {} failed: $(head -c 300 \"${v}/err\")",
                    shown(&a.url)
                ))
            ));
        }
    }
    s.push_str(&format!(
        "h=$(sha256sum < \"${v}/download\"); h=${{h%% *}}\n[ \"$h\" = {} ] || {}\n",
        sh_quote(&a.sha256),
        give_up(&format!(
            "sha256 mismatch for {}: the download is $h, the config pins {}; nothing was changed",
            a.version, a.sha256
        ))
    ));
    if let Some(sig) = &a.signature {
        s.push_str(&verify(a, sig, &v, signature, &give_up));
    }
    s.push_str(&format!("mkdir \"${v}/tree\" \"${v}/x\" || fail mkdir\n"));
    let src = match a.format {
        ArtifactFormat::File => None,
        ArtifactFormat::TarGz => Some("-xzf"),
        ArtifactFormat::TarZst => {
            s.push_str(&format!(
                "command -v zstd >/dev/null 2>&1 || {}\n",
                give_up("zstd is not installed on the node (needed for a .tar.zst)")
            ));
            Some("--zstd -xf")
        }
    };
    if let Some(flags) = src {
        s.push_str(&format!(
            "tar {flags} \"${v}/download\" -C \"${v}/x\" --no-same-owner --no-same-permissions 2>\"${v}/err\" || {}\nbase=$(realpath \"${v}/x\")\n",
            give_up("the archive does not unpack: $(head -c 300 \"${v}/err\")")
        ));
    }
    for m in &a.install {
        let to = sh_quote(&m.to);
        let from = match a.format {
            ArtifactFormat::File => format!("\"${v}/download\""),
            _ => {
                // A member must be a regular file inside the archive's own tree: not a link,
                // and not reached through one.
                let f = sh_quote(&m.from);
                s.push_str(&format!(
                    "p=$(realpath -e \"${v}/x\"/{f} 2>/dev/null) && [ -f \"$p\" ] && [ ! -L \"${v}/x\"/{f} ] && case $p in \"$base\"/*) true;; *) false;; esac || {}\n",
                    give_up(&format!("{} is not a regular file in the archive", m.from))
                ));
                "\"$p\"".to_string()
            }
        };
        s.push_str(&format!(
            "mkdir -p \"$(dirname \"${v}/tree\"/{to})\" && cp {from} \"${v}/tree\"/{to} && chmod {} \"${v}/tree\"/{to} || {}\n",
            fmt_mode(m.mode),
            give_up(&format!("cannot install {}", m.to))
        ));
    }
    s.push_str(&format!(
        "printf '%s %s %s\\n' {} {} {} > \"${v}/tree/{MARKER}\" && chown -R root:root \"${v}/tree\" && chmod 0755 \"${v}/tree\" && rm -rf \"${v}/x\" \"${v}/download\" \"${v}/err\" \"${v}/sig\" \"${v}/keyring.gpg\" \"${v}/gpgv\" && sync || {}\n",
        sh_quote(&a.name),
        sh_quote(&a.version),
        sh_quote(&a.sha256),
        give_up("cannot finish the staged version")
    ));
    s
}

/// The signature check of a staged download (after its sha256 matched, before it is
/// unpacked): `gpgv` (or `sqv`) with a keyring of only the repo's key, which must report a
/// valid signature. One of them is on every Debian host: apt depends on it.
fn verify(
    a: &ArtifactRes,
    sig: &ArtifactSig,
    v: &str,
    sent: Option<&[u8]>,
    give_up: &dyn Fn(&str) -> String,
) -> String {
    use base64::Engine as _;
    let nothing = "; nothing was changed";
    let mut s = format!(
        "command -v gpgv >/dev/null 2>&1 || command -v sqv >/dev/null 2>&1 || {}\n",
        give_up(&format!(
            "neither gpgv nor sqv is installed on the node (one of them checks the release's signature){nothing}"
        ))
    );
    let keyring = base64::engine::general_purpose::STANDARD
        .decode(&sig.keyring)
        .unwrap_or_default();
    s.push_str(&heredoc(
        &format!("\"${v}/keyring.gpg\""),
        &keyring,
        &give_up("cannot write the signing key"),
    ));
    match sent {
        Some(bytes) => s.push_str(&heredoc(
            &format!("\"${v}/sig\""),
            bytes,
            &give_up("cannot write the signature strata sent"),
        )),
        None => s.push_str(&format!(
            "curl -fsSL --retry 2 --connect-timeout 10 --max-time 300 -o \"${v}/sig\" {} 2>\"${v}/err\" || {}\n",
            sh_quote(&sig.url),
            give_up(&format!(
                "downloading the signature {} failed: $(head -c 300 \"${v}/err\"){nothing}",
                shown(&sig.url)
            ))
        )),
    }
    let bad = give_up(&format!(
        "the signature of {} ({}) is not a good signature by {} ({}): $(sed -e '/^Stack backtrace:/,$d' -e '/^gpgv: Signature made/d' -e '/^gpgv: *using /d' \"${v}/err\" | head -c 300 | paste -sd ' ' -){nothing}",
        a.version,
        shown(&sig.url),
        sig.signer(),
        shown(&sig.key_path)
    ));
    // gpgv where it is (Debian 12: apt depends on it), else sqv (Debian 13's apt verifies
    // with Sequoia's sqv, and gpgv is not installed). For gpgv only a VALIDSIG counts; sqv
    // exits 0 only for a valid signature by a key of the keyring, here the repo's key alone.
    s.push_str(&format!(
        "if command -v gpgv >/dev/null 2>&1; then gpgv --homedir \"${v}\" --status-fd 1 --keyring \"${v}/keyring.gpg\" \"${v}/sig\" \"${v}/download\" >\"${v}/gpgv\" 2>\"${v}/err\" && grep -q '^\\[GNUPG:\\] VALIDSIG ' \"${v}/gpgv\" || {bad}\nelse sqv --keyring=\"${v}/keyring.gpg\" --signature-file=\"${v}/sig\" \"${v}/download\" >\"${v}/gpgv\" 2>\"${v}/err\" || {bad}\nfi\n"
    ));
    s
}

/// Make the version live (in the commit phase); `fetched`: it was staged by `stage(a, i, ..)`.
/// `manifest` is the revision's manifest (quoted), written before each act.
pub fn commit(a: &ArtifactRes, i: usize, fetched: bool, manifest: &str) -> String {
    let id = format!("artifact:{}", a.name);
    let r = a.root();
    let dir = sh_quote(&format!("{r}/{}", a.version));
    let cur = sh_quote(&format!("{r}/current"));
    let tmp = sh_quote(&format!("{r}/.current.strata-tmp"));
    let v = var(i);
    let mut s = String::new();
    if fetched {
        s.push_str(&format!(
            "if [ -e {dir} ] || [ -L {dir} ]; then fail {}; fi\necho {} >> {manifest} && mv -T \"${v}/tree\" {dir} && rm -rf \"${v}\" || fail {}\n",
            sh_quote(&format!("{id}: {r}/{} appeared since the plan", a.version)),
            sh_quote(&format!("V {r}/{}", a.version)),
            sh_quote(&format!("{id}: cannot move the version into place")),
        ));
    }
    s.push_str(&format!(
        "prev=$(readlink {cur} 2>/dev/null) || prev=-\nprintf 'L %s %s\\n' {cur} \"${{prev:--}}\" >> {manifest} && rm -f {tmp} && ln -s {} {tmp} && mv -fT {tmp} {cur} || fail {}\necho {}\n",
        sh_quote(&a.version),
        sh_quote(&format!("{id}: switching {r}/current")),
        sh_quote(&format!("DONE {id}")),
    ));
    s
}

/// The rollback's undo of `commit`'s manifest lines (inside its `case $kind`): `L` points the
/// link back (or removes it, `-`), `V` removes a version directory strata added.
pub const ROLLBACK_CASES: &str = r#"    L) if [ "$rest" = - ]; then rm -f "$path"; else rm -f "$path.strata-rb" && ln -s "$rest" "$path.strata-rb" && mv -fT "$path.strata-rb" "$path"; fi || { echo "FAIL restore $path"; rc=1; } ;;
    V) if [ -f "$path/.strata-artifact" ] && [ ! -L "$path" ]; then rm -rf "$path" || rc=1; fi ;;
"#;

/// Keep the newest `keep` versions strata unpacked (the live one always).
pub fn prune(a: &ArtifactRes) -> String {
    let r = sh_quote(&a.root());
    format!(
        "( cur=$(readlink {r}/current 2>/dev/null); n=0\n  for v in $(ls -1t {r} 2>/dev/null); do\n    case $v in .*|current) continue;; esac\n    [ -d {r}/\"$v\" ] && [ ! -L {r}/\"$v\" ] && [ -f {r}/\"$v\"/{MARKER} ] || continue\n    n=$((n+1)); [ \"$v\" = \"$cur\" ] && continue\n    [ $n -le {keep} ] || rm -rf {r}/\"$v\"\n  done ) || true\n",
        keep = a.keep
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ArtifactMember;

    fn art(format: ArtifactFormat) -> ArtifactRes {
        ArtifactRes {
            name: "monad".into(),
            version: "0.9.4".into(),
            url: "http://10.77.1.1:8000/monad-0.9.4.tar.gz".into(),
            sha256: "ab".repeat(32),
            format,
            install: vec![ArtifactMember {
                from: "monad-standin".into(),
                to: "bin/monad-validator".into(),
                mode: 0o755,
            }],
            keep: 3,
            push: false,
            signature: None,
            notify: vec![],
            module: "validator".into(),
        }
    }

    #[test]
    fn stage_verifies_before_unpacking_and_never_follows_links() {
        let s = stage(&art(ArtifactFormat::TarGz), 0, None, None);
        let fetch = s.find("curl -fsSL").unwrap();
        let check = s.find("sha256sum <").unwrap();
        let untar = s.find("tar -xzf").unwrap();
        assert!(fetch < check && check < untar, "{s}");
        assert!(s.contains(&format!("[ \"$h\" = '{}' ]", "ab".repeat(32))));
        assert!(s.contains("if [ -L '/opt/monad' ]"));
        assert!(s.contains("case $p in \"$base\"/*) true;;"), "{s}");
        assert!(s.contains("nothing was changed"));
    }

    #[test]
    fn a_pushed_file_travels_in_a_heredoc() {
        let mut a = art(ArtifactFormat::File);
        a.install[0].from.clear();
        let s = stage(&a, 1, Some(b"#!/bin/sh\necho hi\n"), None);
        assert!(!s.contains("curl"), "{s}");
        assert!(s.contains("base64 -d > \"$a1/download\" <<'STRATA_ARTIFACT_END'\nIyEvYmluL3NoCmVjaG8gaGkK\nSTRATA_ARTIFACT_END\n"), "{s}");
        assert!(
            s.contains("cp \"$a1/download\" \"$a1/tree\"/'bin/monad-validator'"),
            "{s}"
        );
    }

    fn signed(mut a: ArtifactRes) -> ArtifactRes {
        a.signature = Some(ArtifactSig {
            kind: crate::model::SigKind::Gpg,
            url: "http://10.77.1.1:8000/monad-0.9.4.tar.gz.sig".into(),
            key_path: "keys/release.asc".into(),
            keyring: "mDMEaxFOghYJ".into(),
            fingerprints: vec!["ED7232DDC294994D508C8F214525F22B98C6C30E".into()],
        });
        a
    }

    #[test]
    fn a_signature_is_checked_after_the_checksum_and_before_unpacking() {
        let s = stage(&signed(art(ArtifactFormat::TarGz)), 0, None, None);
        let check = s.find("sha256sum <").unwrap();
        let key = s
            .find("base64 -d > \"$a0/keyring.gpg\" <<'STRATA_ARTIFACT_END'\nmDMEaxFOghYJ\n")
            .unwrap();
        let fetch = s
            .find("-o \"$a0/sig\" 'http://10.77.1.1:8000/monad-0.9.4.tar.gz.sig'")
            .unwrap();
        let gpgv = s.find("gpgv --homedir \"$a0\" --status-fd 1 --keyring \"$a0/keyring.gpg\" \"$a0/sig\" \"$a0/download\"").unwrap();
        let untar = s.find("tar -xzf").unwrap();
        assert!(
            check < key && key < fetch && fetch < gpgv && gpgv < untar,
            "{s}"
        );
        // Only a VALIDSIG counts (an exit status alone is not read as the verdict).
        assert!(s.contains("&& grep -q '^\\[GNUPG:\\] VALIDSIG ' \"$a0/gpgv\" || { m=\"the signature of 0.9.4 (http://10.77.1.1:8000/monad-0.9.4.tar.gz.sig) is not a good signature by gpg key 4525F22B98C6C30E (keys/release.asc): "), "{s}");
        assert!(s.contains(
            "command -v gpgv >/dev/null 2>&1 || command -v sqv >/dev/null 2>&1 || { m=\"neither gpgv nor sqv is installed on the node"
        ));
        // Without gpgv (Debian 13): sqv, with the same keyring, signature and refusal.
        let sqv = s.find("else sqv --keyring=\"$a0/keyring.gpg\" --signature-file=\"$a0/sig\" \"$a0/download\" >\"$a0/gpgv\" 2>\"$a0/err\" || { m=\"the signature of 0.9.4 ").unwrap();
        assert!(gpgv < sqv && sqv < untar, "{s}");
        assert_eq!(
            s.matches("; nothing was changed\"; rm -rf").count(),
            5,
            "{s}"
        );
        // Without a signature: no gpgv at all.
        assert!(!stage(&art(ArtifactFormat::TarGz), 0, None, None).contains("gpgv --"));
    }

    #[test]
    fn a_pushed_signature_travels_with_the_release() {
        let mut a = signed(art(ArtifactFormat::TarGz));
        a.push = true;
        let s = stage(&a, 2, Some(b"tgz"), Some(b"sig"));
        assert!(!s.contains("curl"), "{s}");
        assert!(
            s.contains(
                "base64 -d > \"$a2/sig\" <<'STRATA_ARTIFACT_END'\nc2ln\nSTRATA_ARTIFACT_END\n"
            ),
            "{s}"
        );
        assert!(s.find("\"$a2/sig\" <<").unwrap() < s.find("gpgv --homedir").unwrap());
    }

    #[test]
    fn commit_records_before_it_switches() {
        let s = commit(&art(ArtifactFormat::TarGz), 0, true, "'/m'");
        let v = s.find("echo 'V /opt/monad/0.9.4' >> '/m'").unwrap();
        let mv = s.find("mv -T \"$a0/tree\" '/opt/monad/0.9.4'").unwrap();
        let l = s.find("printf 'L %s %s\\n' '/opt/monad/current'").unwrap();
        let sw = s
            .find("mv -fT '/opt/monad/.current.strata-tmp' '/opt/monad/current'")
            .unwrap();
        assert!(v < mv && mv < l && l < sw, "{s}");
        assert!(!commit(&art(ArtifactFormat::TarGz), 0, false, "'/m'").contains("V /opt"));
    }

    #[test]
    fn prune_keeps_the_live_version_and_skips_foreign_directories() {
        let s = prune(&art(ArtifactFormat::TarGz));
        assert!(s.contains("[ \"$v\" = \"$cur\" ] && continue"));
        assert!(s.contains(&format!("[ -f '/opt/monad'/\"$v\"/{MARKER} ] || continue")));
        assert!(s.contains("[ $n -le 3 ] || rm -rf"));
    }
}
