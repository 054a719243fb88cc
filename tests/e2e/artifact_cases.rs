//! Validator client upgrades through an artifact: the validator binary is a pinned release
//! (a .tar.gz with a sha256), served by this test over HTTP on the lab's own host addresses
//! (10.77.N.1, never anything else), installed to /opt/monad/<version> and switched by
//! /opt/monad/current, which the unit runs.
//!
//! The releases are built here: the stand-in validator (which reports the version its
//! VERSION file says) packed with `tar`, and one bad build whose binary exits at start. Each
//! is signed (gpg, detached) with the lab's TEST-ONLY release key (tests/lab/keys), which the
//! example fleet pins; one is signed with a throwaway key instead, to be refused.

use crate::common::{case_fresh, lab_bin, serve_dir as serve, ssh_ok, Case};
use crate::plan_apply_cases::{apply_ok, expect_code, last_start, out, st_in, TempRepo};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::time::Instant;

const NODES: &[&str] = &["validator-1", "validator-2", "validator-3"];

pub fn cases() -> Vec<Case> {
    vec![case_fresh(
        "artifact::pinned_release_upgraded_one_node_at_a_time_bad_ones_refused_or_rolled_back",
        NODES,
        releases,
    )]
}

/// A GnuPG home holding one secret key: the lab's TEST-ONLY release key, or a new throwaway.
struct Signer(tempfile::TempDir);

impl Signer {
    fn gpg(&self) -> std::process::Command {
        let mut c = std::process::Command::new("gpg");
        c.env("GNUPGHOME", self.0.path())
            .args(["--batch", "--quiet", "--yes"]);
        c
    }

    fn new(lab_key: bool) -> Result<Signer> {
        let home = tempfile::tempdir()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))?;
        let s = Signer(home);
        let st = if lab_key {
            s.gpg()
                .arg("--import")
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/lab/keys/strata-lab-TEST-ONLY-release-key.secret.asc"),
                )
                .status()
        } else {
            s.gpg()
                .args([
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    "throwaway <x@strata.invalid>",
                    "ed25519",
                    "sign",
                    "never",
                ])
                .status()
        }
        .context("gpg is not installed (gnupg: the e2e tests sign their releases)")?;
        ensure!(st.success(), "gpg could not make its key");
        Ok(s)
    }

    /// A detached signature of `file`, at `file.sig`.
    fn sign(&self, file: &Path) -> Result<()> {
        let sig = format!("{}.sig", file.display());
        let st = self
            .gpg()
            .args(["--detach-sign", "-o", &sig])
            .arg(file)
            .status()?;
        ensure!(st.success(), "gpg could not sign {}", file.display());
        Ok(())
    }
}

/// A release tarball in `dir`, signed by `signer`: `bin/monad-validator` and `VERSION`; its
/// sha256.
fn build(dir: &Path, version: &str, bad: bool, signer: &Signer) -> Result<String> {
    let tree = dir.join(format!("tree-{version}"));
    std::fs::create_dir_all(tree.join("bin"))?;
    let bin = tree.join("bin/monad-validator");
    if bad {
        std::fs::write(
            &bin,
            "#!/bin/sh\necho 'monad-validator: bad build, exits at start' >&2\nexit 1\n",
        )?;
    } else {
        std::fs::copy(lab_bin().with_file_name("monad-standin"), &bin)
            .context("the stand-in validator is not built (cargo build --workspace)")?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(tree.join("VERSION"), format!("{version}\n"))?;
    let tgz = dir.join(format!("monad-{version}.tar.gz"));
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&tree)
        .args(["bin", "VERSION"])
        .status()?;
    ensure!(st.success(), "tar failed");
    signer.sign(&tgz)?;
    let o = std::process::Command::new("sha256sum").arg(&tgz).output()?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .context("sha256sum")?
        .to_string())
}

/// The repo copy: the example fleet's validator release (artifact:monad) as a .tar.gz with
/// the stand-in and its VERSION, pinned to `version`/`sha`; each node downloads it from its
/// own host side.
fn release_repo(port: u16, version: &str, sha: &str) -> Result<TempRepo> {
    let r = TempRepo::new()?;
    r.edit(
        "base-config/vars.yaml",
        "    version: \"0.9.3\"\n",
        &format!("    version: \"{version}\"\n"),
    )?;
    r.edit(
        "base-config/vars.yaml",
        "      sha256: \"017a0da7cf7212d84c720123930454d4d30c11dfe20b98c701fc51dfdc36d5af\"",
        &format!("      sha256: \"{sha}\""),
    )?;
    for (i, n) in NODES.iter().enumerate() {
        r.edit(
            &format!("nodes/{n}/vars.yaml"),
            "\nvalidator:\n",
            &format!(
                "\nvalidator:\n  release:\n    base_url: \"http://10.77.{}.1:{port}\"\n",
                i + 1
            ),
        )?;
    }
    r.edit(
        "modules/validator/module.yaml",
        "/monad-validator-{{ validator.version }}\"",
        "/monad-{{ validator.version }}.tar.gz\"",
    )?;
    r.edit(
        "modules/validator/module.yaml",
        "/monad-validator-{{ validator.version }}.sig\"",
        "/monad-{{ validator.version }}.tar.gz.sig\"",
    )?;
    r.edit(
        "modules/validator/module.yaml",
        "      - {to: bin/monad-validator, mode: \"0755\"}\n",
        "      - {from: bin/monad-validator, to: bin/monad-validator, mode: \"0755\"}\n      - {from: VERSION, to: VERSION, mode: \"0644\"}\n",
    )?;
    r.edit(
        "modules/validator/module.yaml",
        "    keep: 3\n",
        "    keep: 2\n",
    )?;
    Ok(r)
}

/// Pin another release in the repo copy.
fn pin(r: &TempRepo, from: (&str, &str), to: (&str, &str)) -> Result<()> {
    r.edit(
        "base-config/vars.yaml",
        &format!("    version: \"{}\"\n", from.0),
        &format!("    version: \"{}\"\n", to.0),
    )?;
    r.edit(
        "base-config/vars.yaml",
        &format!("sha256: \"{}\"", from.1),
        &format!("sha256: \"{}\"", to.1),
    )
}

/// What a node runs: (current's target, the version the validator reports in /status).
fn running(node: &str) -> Result<(String, String)> {
    let link = ssh_ok(node, "root", "readlink /opt/monad/current")?;
    let status = ssh_ok(
        node,
        "root",
        "curl -fsS --max-time 3 http://127.0.0.1:8080/status",
    )?;
    let v: serde_json::Value = serde_json::from_str(&status).with_context(|| status.clone())?;
    Ok((link, v["version"].as_str().unwrap_or("").to_string()))
}

fn versions_on(node: &str) -> Result<String> {
    ssh_ok(node, "root", "ls -A /opt/monad | sort | tr '\\n' ' '")
}

/// The lab key's long ID (the last 16 digits of its fingerprint, ED7232DD..98C6C30E).
const LAB_SIGNER: &str = "signed by gpg key 4525F22B98C6C30E";

/// An apply that fails on validator-1 with `artifact:monad: <says>` before any change:
/// validator-1 still runs 0.9.4, no version or staging directory is left, no validator
/// restarted, the other nodes untouched.
fn refused_on_the_first_node(r: &TempRepo, says: &str) -> Result<()> {
    let before: Vec<f64> = NODES.iter().map(|n| last_start(n)).collect::<Result<_>>()?;
    let o = st_in(r.path(), &["apply", "--yes"]);
    let t = out(&o);
    ensure!(o.status.code() == Some(1), "applied ({says}):\n{t}");
    ensure!(
        t.contains(&format!("artifact:monad: {says}")) && t.contains("nothing was changed"),
        "{t}"
    );
    ensure!(t.contains("validator-2: untouched"), "{t}");
    ensure!(
        running("validator-1")? == ("0.9.4".into(), "0.9.4".into()),
        "changed"
    );
    ensure!(
        versions_on("validator-1")?.trim() == "0.9.3 0.9.4 current",
        "left behind: {}",
        versions_on("validator-1")?
    );
    let after: Vec<f64> = NODES.iter().map(|n| last_start(n)).collect::<Result<_>>()?;
    ensure!(
        before == after,
        "a validator restarted: {before:?} {after:?}"
    );
    if let Some(l) = t.lines().find(|l| l.contains(says)) {
        println!("    refused: {}", l.trim());
    }
    Ok(())
}

fn releases() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lab = Signer::new(true)?;
    let good3 = build(dir.path(), "0.9.3", false, &lab)?;
    let good4 = build(dir.path(), "0.9.4", false, &lab)?;
    let bad5 = build(dir.path(), "0.9.5", true, &lab)?;
    let good6 = build(dir.path(), "0.9.6", false, &lab)?;
    let hosts: Vec<String> = (1..=3).map(|i| format!("10.77.{i}.1")).collect();
    let port = serve(dir.path().to_path_buf(), &hosts)?;

    // 1. A fresh fleet gets the pinned release; the next plan is empty.
    let r = release_repo(port, "0.9.3", &good3)?;
    let o = st_in(r.path(), &["plan", "validator-1"]);
    ensure!(
        out(&o).contains(&format!(
            "+ artifact:monad  0.9.3 (sha256 {}..), {LAB_SIGNER}  -> restart monad-validator",
            &good3[..8]
        )),
        "the plan does not show the release:\n{}",
        out(&o)
    );
    apply_ok(r.path(), &[])?;
    for n in NODES {
        ensure!(
            running(n)? == ("0.9.3".into(), "0.9.3".into()),
            "{n}: {:?}",
            running(n)?
        );
    }
    let o = st_in(r.path(), &["plan", "--detailed-exitcode"]);
    expect_code(&o, 0, "plan after the first apply")?;

    // 2. An upgrade: shown as one, applied one node at a time (serial 1), each proven to run
    //    and report the new version before the next starts.
    pin(&r, ("0.9.3", &good3), ("0.9.4", &good4))?;
    let o = st_in(r.path(), &["plan", "validator-2"]);
    ensure!(
        out(&o).contains(&format!(
            "~ artifact:monad [pending]  0.9.3 -> 0.9.4 (sha256 {}..), {LAB_SIGNER}  -> restart monad-validator",
            &good4[..8]
        )),
        "{}",
        out(&o)
    );
    let t = Instant::now();
    let text = apply_ok(r.path(), &[])?;
    let took = t.elapsed().as_secs_f64();
    let starts: Vec<f64> = NODES.iter().map(|n| last_start(n)).collect::<Result<_>>()?;
    ensure!(
        starts[0] < starts[1] && starts[1] < starts[2],
        "not one at a time: {starts:?}\n{text}"
    );
    for n in NODES {
        ensure!(
            running(n)? == ("0.9.4".into(), "0.9.4".into()),
            "{n}: {:?}",
            running(n)?
        );
    }
    println!("    rolling upgrade of 3 nodes (serial 1): {took:.1}s");

    // 3. A wrong checksum: refused on the first node before any change; nobody else starts.
    r.edit(
        "base-config/vars.yaml",
        "    version: \"0.9.4\"\n",
        "    version: \"0.9.6\"\n",
    )?;
    refused_on_the_first_node(&r, "sha256 mismatch for 0.9.6")?;

    // 3b. The right checksum, but a signature by another key, a damaged one, or none: refused
    //     on the first node after the download, before any change; nobody else starts.
    r.edit(
        "base-config/vars.yaml",
        &format!("sha256: \"{good4}\""),
        &format!("sha256: \"{good6}\""),
    )?;
    let sig6 = dir.path().join("monad-0.9.6.tar.gz.sig");
    let good_sig6 = std::fs::read(&sig6)?;
    Signer::new(false)?.sign(&dir.path().join("monad-0.9.6.tar.gz"))?;
    let other_sig = std::fs::read(&sig6)?;
    ensure!(
        other_sig != good_sig6,
        "the throwaway signature was not written"
    );
    let mut damaged = good_sig6.clone();
    let n = damaged.len();
    damaged[n - 10] ^= 0x55;
    let refused = |sig: Option<&[u8]>, says: &str| -> Result<()> {
        match sig {
            Some(b) => std::fs::write(&sig6, b)?,
            None => std::fs::remove_file(&sig6)?,
        }
        refused_on_the_first_node(&r, says)
    };
    let bad_sig = format!(
        "the signature of 0.9.6 (http://10.77.1.1:{port}/monad-0.9.6.tar.gz.sig) is not a good signature by gpg key 4525F22B98C6C30E"
    );
    let t3 = Instant::now();
    refused(Some(&other_sig), &bad_sig)?;
    refused(Some(&damaged), &bad_sig)?;
    refused(None, "downloading the signature http://10.77.1.1")?;
    println!(
        "    three bad signatures refused: {:.1}s",
        t3.elapsed().as_secs_f64()
    );
    std::fs::write(&sig6, &good_sig6)?;
    r.edit(
        "base-config/vars.yaml",
        &format!("sha256: \"{good6}\""),
        &format!("sha256: \"{good4}\""),
    )?;

    // 4. A bad release (it exits at start): the first node is rolled back to 0.9.4 and healthy,
    //    the others are not touched, the new version's directory is gone.
    r.edit(
        "base-config/vars.yaml",
        "    version: \"0.9.6\"\n",
        "    version: \"0.9.5\"\n",
    )?;
    r.edit(
        "base-config/vars.yaml",
        &format!("sha256: \"{good4}\""),
        &format!("sha256: \"{bad5}\""),
    )?;
    let before: Vec<f64> = NODES.iter().map(|n| last_start(n)).collect::<Result<_>>()?;
    let o = st_in(r.path(), &["apply", "--yes"]);
    let t = out(&o);
    ensure!(o.status.code() == Some(1), "a bad release passed:\n{t}");
    ensure!(t.contains("validator-1: FAILED, rolled back"), "{t}");
    ensure!(t.contains("healthy again"), "{t}");
    ensure!(
        running("validator-1")? == ("0.9.4".into(), "0.9.4".into()),
        "not back"
    );
    ensure!(
        !versions_on("validator-1")?.contains("0.9.5"),
        "0.9.5 left on the node"
    );
    for (i, n) in NODES.iter().enumerate().skip(1) {
        ensure!(t.contains(&format!("{n}: untouched")), "{t}");
        ensure!(last_start(n)? == before[i], "{n} restarted");
    }

    // 5. Pushed (nodes without access to the URL): the operator's machine reads the release
    //    and sends it over SSH; the oldest version is pruned to keep 2.
    r.edit(
        "base-config/vars.yaml",
        "    version: \"0.9.5\"\n",
        "    version: \"0.9.6\"\n",
    )?;
    r.edit(
        "base-config/vars.yaml",
        &format!("sha256: \"{bad5}\""),
        &format!("sha256: \"{good6}\""),
    )?;
    r.edit(
        "nodes/validator-1/vars.yaml",
        &format!("http://10.77.1.1:{port}\""),
        &format!("file://{}\"", dir.path().display()),
    )?;
    r.edit(
        "inventory/lab.yaml",
        "    serial: 1\n",
        "    serial: 1\n    artifact_fetch: push\n",
    )?;
    apply_ok(r.path(), &["validator-1"])?;
    ensure!(
        running("validator-1")? == ("0.9.6".into(), "0.9.6".into()),
        "push"
    );
    ensure!(
        versions_on("validator-1")?.trim() == "0.9.4 0.9.6 current",
        "not pruned to 2: {}",
        versions_on("validator-1")?
    );

    // Strange live states: a directory strata did not unpack where the new version goes.
    ssh_ok("validator-3", "root", "mkdir /opt/monad/0.9.6")?;
    let o = st_in(r.path(), &["plan", "validator-3"]);
    ensure!(
        o.status.code() == Some(1)
            && out(&o).contains("/opt/monad/0.9.6 is there but strata did not install it"),
        "{}",
        out(&o)
    );
    ssh_ok("validator-3", "root", "rmdir /opt/monad/0.9.6")?;

    // 6. `strata rollback` returns the node to its previous release (kept on the node).
    let o = st_in(r.path(), &["rollback", "validator-1", "--yes"]);
    expect_code(&o, 0, "rollback")?;
    ensure!(
        running("validator-1")? == ("0.9.4".into(), "0.9.4".into()),
        "rollback"
    );
    Ok(())
}
