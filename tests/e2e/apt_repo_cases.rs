//! An apt repository resource: a module installs a package from the lab's own signed
//! repository (built here: a .deb, its Packages index, a Release signed by a key made for
//! the test), served over HTTP on the node's host-side address only.

use crate::common::{case_fresh, serve_dir, ssh, ssh_ok, Case};
use crate::plan_apply_cases::{apply_ok, expect_code, out, st_in, TempRepo};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::Command;

pub fn cases() -> Vec<Case> {
    vec![case_fresh(
        "apt_repo::package_from_a_signed_repository_and_a_wrong_key_rolled_back",
        &["validator-1"],
        signed_repository,
    )]
}

fn run(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).to_string())
}

/// A throwaway signing key in its own GnuPG home; its armored public key.
fn key(home: &Path) -> Result<String> {
    std::fs::create_dir_all(home)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))?;
    run(Command::new("gpg").env("GNUPGHOME", home).args([
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        "strata lab test <lab@strata.invalid>",
        "ed25519",
        "sign",
        "never",
    ]))?;
    run(Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--armor", "--export"]))
}

/// A flat repository in `dir` with one package, `strata-lab-hello`, signed with `home`'s key.
fn repository(dir: &Path, home: &Path) -> Result<()> {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN"))?;
    std::fs::create_dir_all(pkg.join("usr/bin"))?;
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: strata-lab-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: strata lab <lab@strata.invalid>\nDescription: a package served by the lab's signed repository\n",
    )?;
    let bin = pkg.join("usr/bin/strata-lab-hello");
    std::fs::write(&bin, "#!/bin/sh\necho hello from the lab repository\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo)?;
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&pkg)
        .arg(repo.join("strata-lab-hello_1.0_all.deb")))?;
    let packages = run(Command::new("dpkg-scanpackages")
        .args(["--multiversion", "."])
        .current_dir(&repo))?;
    std::fs::write(repo.join("Packages"), &packages)?;
    let sha = run(Command::new("sha256sum").arg("Packages").current_dir(&repo))?;
    let date = run(Command::new("date").args(["-u", "-R"]))?;
    std::fs::write(
        repo.join("Release"),
        format!(
            "Origin: strata-lab\nLabel: strata-lab\nSuite: ./\nDate: {}\nSHA256:\n {} {} Packages\n",
            date.trim(),
            sha.split_whitespace().next().unwrap_or(""),
            packages.len()
        ),
    )?;
    run(Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--clearsign", "-o"])
        .arg(repo.join("InRelease"))
        .arg(repo.join("Release")))?;
    Ok(())
}

fn signed_repository() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let signer = key(&dir.path().join("gpg-signer"))?;
    let stranger = key(&dir.path().join("gpg-stranger"))?;
    repository(dir.path(), &dir.path().join("gpg-signer"))?;
    let port = serve_dir(dir.path().join("repo"), &["10.77.1.1".to_string()])?;

    let r = TempRepo::new()?;
    std::fs::create_dir_all(r.path().join("modules/hello/keys"))?;
    std::fs::write(r.path().join("modules/hello/keys/lab.asc"), &stranger)?;
    std::fs::write(
        r.path().join("modules/hello/module.yaml"),
        "description: a tool from a signed third-party repository\napt_repositories:\n  - name: strata-lab\n    uris: \"{{ hello.repo_url }}\"\n    suites: ./\n    key_file: keys/lab.asc\npackages: [strata-lab-hello]\n",
    )?;
    let base = std::fs::read_to_string(r.path().join("base-config/vars.yaml"))?;
    std::fs::write(
        r.path().join("base-config/vars.yaml"),
        base.replacen(
            "vars:\n",
            &format!("vars:\n  hello:\n    repo_url: \"http://10.77.1.1:{port}/\"\n"),
            1,
        ),
    )?;
    r.edit(
        "inventory/lab.yaml",
        "    modules: [",
        "    modules: [hello, ",
    )?;

    // The plan names the repository and its key; a key that did not sign it fails the node
    // at `apt-get update`, and the node is rolled back: no sources entry is left.
    let o = st_in(r.path(), &["plan", "validator-1"]);
    ensure!(
        out(&o).contains(&format!(
            "+ apt_repository:strata-lab  http://10.77.1.1:{port}/ ./, signed by /etc/apt/keyrings/strata-lab.asc"
        )),
        "{}",
        out(&o)
    );
    let o = st_in(r.path(), &["apply", "--yes", "validator-1"]);
    let t = out(&o);
    ensure!(
        o.status.code() == Some(1),
        "a repository with the wrong key was used:\n{t}"
    );
    ensure!(
        t.contains("apt-get update could not use a repository"),
        "{t}"
    );
    ensure!(t.contains("rolled back"), "{t}");
    ensure!(
        !ssh(
            "validator-1",
            "root",
            "test -e /etc/apt/sources.list.d/strata-lab.sources"
        )
        .status
        .success(),
        "the sources entry was left after the rollback"
    );

    // The right key: the package is installed from the repository; the next plan is empty.
    std::fs::write(r.path().join("modules/hello/keys/lab.asc"), &signer)?;
    apply_ok(r.path(), &["validator-1"])?;
    ensure!(
        ssh_ok("validator-1", "root", "strata-lab-hello")? == "hello from the lab repository",
        "the package's program does not run"
    );
    let policy = ssh_ok("validator-1", "root", "apt-cache policy strata-lab-hello")?;
    ensure!(
        policy.contains(&format!("http://10.77.1.1:{port}")),
        "{policy}"
    );
    let o = st_in(r.path(), &["plan", "--detailed-exitcode", "validator-1"]);
    expect_code(&o, 0, "plan after the apply")?;
    Ok(())
}
