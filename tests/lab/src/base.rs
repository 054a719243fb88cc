//! The base root filesystem every lab node is an overlay over, one per Debian release.
//!
//! Built in two cached stages under /var/cache/strata-lab/:
//! - `debootstrap-<hash>` (bookworm) or `mmdebstrap-<hash>` (trixie): plain output of the
//!   bootstrap tool (the slow, network-bound part: ~70 s for bookworm, ~55 s for trixie);
//! - `base-<hash>`: a copy of it with the lab's customisation steps applied.
//!
//! Each hash is blake3 over the recipe text that produced the directory (suite, package list,
//! every step's text), so changing the recipe rebuilds, and editing only a customisation step
//! does not download Debian again; each release has its own. Each stage is built in a temp
//! dir and renamed into place: an interrupted build never counts as cached.

use crate::inventory::Release;
use crate::sys;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const CACHE_DIR: &str = "/var/cache/strata-lab";
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// Packages in the base, the same names in both releases (checked against the bookworm and
/// trixie archives: the bootstrap of each installs every one).
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "ufw",
    "chrony",
    "logrotate",
    "iproute2",
    "iptables",
    "procps",
    "prometheus",
    "prometheus-node-exporter",
    "prometheus-alertmanager",
    "sudo",
    "curl",
    "ca-certificates",
];

/// One customisation of the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write a file (path inside the rootfs) with a mode.
    Write {
        path: &'static str,
        mode: u32,
        content: &'static str,
    },
    /// Run a shell script inside the rootfs with chroot.
    Chroot(&'static str),
}

/// Lab-only: chrony refuses to start in a container (ConditionCapability=CAP_SYS_TIME);
/// clear the condition and run it with -x (never touch the host's clock).
const CHRONY_DROPIN: &str = "\
# strata-lab only: containers may not set the clock.
[Unit]
ConditionCapability=

[Service]
ExecStart=
ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x
";

const SSHD_LAB: &str = "\
# strata lab: key-only logins, root allowed by key.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
";

/// Alertmanager's gossip needs a private address at start; in a container host0 gets its
/// address a moment after boot starts, so wait for the network to be online.
const ALERTMANAGER_DROPIN: &str = "\
# strata lab: start once host0 has its address.
[Unit]
Wants=network-online.target
After=network-online.target
";

const SUDOERS_DEPLOY: &str = "deploy ALL=(ALL) NOPASSWD:ALL\n";

/// The customisation steps, in order. Part of the recipe: editing one rebuilds the base.
pub fn steps() -> Vec<Step> {
    vec![
        Step::Chroot("systemctl enable systemd-networkd"),
        Step::Write {
            path: "etc/systemd/system/chrony.service.d/lab.conf",
            mode: 0o644,
            content: CHRONY_DROPIN,
        },
        Step::Write {
            path: "etc/systemd/system/prometheus-alertmanager.service.d/lab.conf",
            mode: 0o644,
            content: ALERTMANAGER_DROPIN,
        },
        Step::Write {
            path: "etc/ssh/sshd_config.d/lab.conf",
            mode: 0o644,
            content: SSHD_LAB,
        },
        // Lab nodes reach no network: their only apt source is the lab's local repository
        // (apt_repo.rs), bound into each node; the mirror's source and lists go.
        Step::Write {
            path: "etc/apt/sources.list",
            mode: 0o644,
            content: crate::apt_repo::SOURCES_LIST,
        },
        Step::Chroot(
            "rm -f /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
             && rm -rf /var/lib/apt/lists && mkdir -p /var/lib/apt/lists/partial /srv/strata-apt",
        ),
        // Each node gets its own host keys at creation; the base must not share any.
        Step::Chroot("rm -f /etc/ssh/ssh_host_*"),
        // '*' = no password but not locked, so sshd accepts key logins.
        Step::Chroot("useradd --create-home --shell /bin/bash deploy && usermod -p '*' deploy"),
        Step::Write {
            path: "etc/sudoers.d/deploy",
            mode: 0o440,
            content: SUDOERS_DEPLOY,
        },
        Step::Chroot(
            "install -d -m 700 /root/.ssh && install -d -m 700 -o deploy -g deploy /home/deploy/.ssh",
        ),
        // Units that cannot work in a container without a real console or kernel access.
        Step::Chroot(
            "systemctl mask getty@tty1.service serial-getty@ttyS0.service \
             systemd-timesyncd.service 2>/dev/null || true",
        ),
        // Each node gets its own machine-id at creation; an empty one here would mean
        // "first boot" semantics.
        Step::Chroot("rm -f /etc/machine-id /var/lib/dbus/machine-id"),
    ]
}

/// The tool that makes a release's plain root filesystem. bookworm's base is made with
/// debootstrap, as it always was (its cached base keeps its hash); trixie's with mmdebstrap,
/// which installs the same packages with one apt run: 55 s instead of debootstrap's 108 s
/// for trixie here (2 cores), which is what a CI run that builds both bases pays.
pub fn bootstrap_tool(release: Release) -> &'static str {
    match release {
        Release::Bookworm => "debootstrap",
        Release::Trixie => "mmdebstrap",
    }
}

/// The tool's options besides `--include`: mmdebstrap must keep the downloaded .debs
/// (`cleanup/apt`, `essential/unlink`), which the lab's local apt repository is made of.
fn bootstrap_options(release: Release) -> &'static [&'static str] {
    match release {
        Release::Bookworm => &["--variant=minbase"],
        Release::Trixie => &["--variant=minbase", "--skip=cleanup/apt,essential/unlink"],
    }
}

/// The first stage's recipe text (for bookworm the same text as before releases existed).
pub fn stage1_recipe(release: Release) -> String {
    format!(
        "{} {} --include={} {}\n",
        bootstrap_tool(release),
        bootstrap_options(release).join(" "),
        PACKAGES.join(","),
        release.suite()
    )
}

/// The full recipe: the first stage + every customisation step's text.
pub fn full_recipe(release: Release, steps: &[Step]) -> String {
    let mut r = stage1_recipe(release);
    for s in steps {
        match s {
            Step::Write {
                path,
                mode,
                content,
            } => r.push_str(&format!("write {path} {mode:o}\n{content}\n")),
            Step::Chroot(script) => r.push_str(&format!("chroot {script}\n")),
        }
    }
    r
}

/// Short hex blake3 of a recipe (16 hex chars is plenty to tell recipes apart).
pub fn recipe_hash(recipe: &str) -> String {
    blake3::hash(recipe.as_bytes()).to_hex()[..16].to_string()
}

/// The Debian mirror from the host's apt sources (deb822 `.sources` first, then
/// one-line `sources.list`), skipping security and updates suites. A Debian mirror carries
/// every release, so a bookworm host's mirror serves trixie too.
pub fn host_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "sources") {
                texts.push((true, std::fs::read_to_string(&p).unwrap_or_default()));
            }
        }
    }
    texts.push((
        false,
        std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
    ));
    texts
        .iter()
        .find_map(|(deb822, t)| {
            if *deb822 {
                mirror_from_deb822(t)
            } else {
                mirror_from_list(t)
            }
        })
        .unwrap_or_else(|| FALLBACK_MIRROR.to_string())
}

/// A release's own suite (`bookworm`, `trixie`), not `-security`, `-updates`, `-backports`.
fn plain_suite(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase())
}

/// First `URIs:` of a `Types: deb` stanza whose suites include a plain suite.
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let types = field("Types:").unwrap_or_default();
        let suites = field("Suites:").unwrap_or_default();
        if types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(plain_suite)
        {
            if let Some(uri) =
                field("URIs:").and_then(|u| u.split_whitespace().next().map(str::to_string))
            {
                return Some(uri);
            }
        }
    }
    None
}

/// `deb [opts] URI SUITE COMPONENTS...` with SUITE a plain suite.
pub fn mirror_from_list(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace().filter(|w| !w.starts_with('['));
        if f.next()? != "deb" {
            return None;
        }
        let uri = f.next()?;
        plain_suite(f.next()?).then(|| uri.to_string())
    })
}

/// Ensure the release's customised base exists; return its path. Prints what it builds and
/// how long.
pub fn ensure_base(release: Release) -> Result<PathBuf> {
    let cache = Path::new(CACHE_DIR);
    let steps = steps();
    let base = cache.join(format!(
        "base-{}",
        recipe_hash(&full_recipe(release, &steps))
    ));
    if base.join("usr/bin/systemctl").exists() {
        return Ok(base);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {CACHE_DIR}"))?;
    let stage1 = ensure_stage1(cache, release)?;

    let t = Instant::now();
    eprintln!(
        "lab: customising the {} base {}",
        release.suite(),
        base.display()
    );
    let tmp = temp_sibling(&base);
    sys::run(
        sys::tool("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(&stage1)
            .arg(&tmp),
    )?;
    for step in &steps {
        apply_step(&tmp, step)?;
    }
    std::fs::rename(&tmp, &base)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), base.display()))?;
    eprintln!("lab: base customised in {:.1}s", t.elapsed().as_secs_f64());
    Ok(base)
}

/// The plain debootstrap/mmdebstrap output, cached by its own recipe hash
/// (`debootstrap-<hash>`, `mmdebstrap-<hash>`).
fn ensure_stage1(cache: &Path, release: Release) -> Result<PathBuf> {
    let tool = bootstrap_tool(release);
    let dir = cache.join(format!("{tool}-{}", recipe_hash(&stage1_recipe(release))));
    if dir.join("usr/bin/systemctl").exists() {
        return Ok(dir);
    }
    let suite = release.suite();
    if sys::find_tool(tool).is_none() {
        bail!("building the {suite} base needs `{tool}` (Debian package: {tool})");
    }
    // An old debootstrap has no script for a newer release: say so, not "No such script".
    let script = Path::new("/usr/share/debootstrap/scripts").join(suite);
    if tool == "debootstrap" && !script.exists() {
        bail!(
            "this host's debootstrap does not know {suite} (no {}): upgrade debootstrap",
            script.display()
        );
    }
    let mirror = host_mirror();
    let tmp = temp_sibling(&dir);
    let took = match release {
        Release::Bookworm => "about 70 s",
        Release::Trixie => "about 60 s",
    };
    eprintln!(
        "lab: building the {suite} base with {tool} ({mirror}) into {} ({took})",
        dir.display()
    );
    let t = Instant::now();
    sys::run_visible(
        sys::tool(tool)
            .args(bootstrap_options(release))
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(suite)
            .arg(&tmp)
            .arg(&mirror),
    )
    .with_context(|| {
        format!("{tool} failed (the partial build was left in a temp dir and is not cached)")
    })?;
    std::fs::rename(&tmp, &dir)?;
    eprintln!("lab: {tool} done in {:.1}s", t.elapsed().as_secs_f64());
    Ok(dir)
}

/// A fresh temp dir name next to `dir` (same filesystem, so rename is atomic). Leftovers
/// from interrupted builds are removed first.
pub(super) fn temp_sibling(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap().to_string_lossy();
    let tmp = dir.with_file_name(format!(".tmp-{name}-{}", std::process::id()));
    if let Some(parent) = dir.parent() {
        if let Ok(rd) = std::fs::read_dir(parent) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".tmp-{name}-"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    tmp
}

fn apply_step(root: &Path, step: &Step) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match step {
        Step::Write {
            path,
            mode,
            content,
        } => {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(&p, content).with_context(|| format!("cannot write {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
        }
        Step::Chroot(script) => {
            sys::run(
                sys::tool("chroot")
                    .arg(root)
                    .args(["/bin/sh", "-ec", script]),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_hash_changes_with_any_step() {
        let a = full_recipe(Release::Bookworm, &steps());
        let mut s = steps();
        s.push(Step::Chroot("true"));
        let b = full_recipe(Release::Bookworm, &s);
        assert_ne!(recipe_hash(&a), recipe_hash(&b));
        assert_eq!(
            recipe_hash(&a),
            recipe_hash(&full_recipe(Release::Bookworm, &steps()))
        );
        assert_eq!(recipe_hash(&a).len(), 16);
        assert!(a.starts_with(&stage1_recipe(Release::Bookworm)));
        assert!(a.contains("ConditionCapability="));
        assert!(a.contains("deb [trusted=yes] file:/srv/strata-apt ./"));
    }

    #[test]
    fn each_release_has_its_own_base() {
        let b = stage1_recipe(Release::Bookworm);
        let t = stage1_recipe(Release::Trixie);
        // The text bookworm's cached base was built from before releases existed.
        assert!(b.starts_with("debootstrap --variant=minbase --include=systemd,systemd-sysv,"));
        assert!(b.ends_with(",ca-certificates bookworm\n"), "{b}");
        assert!(
            t.starts_with(
                "mmdebstrap --variant=minbase --skip=cleanup/apt,essential/unlink --include=systemd,"
            ),
            "{t}"
        );
        assert!(t.ends_with(",ca-certificates trixie\n"), "{t}");
        assert_ne!(
            recipe_hash(&full_recipe(Release::Bookworm, &steps())),
            recipe_hash(&full_recipe(Release::Trixie, &steps()))
        );
    }

    #[test]
    fn mirror_from_deb822_skips_security() {
        let t = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                 Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_from_deb822(t).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_from_deb822("Types: deb-src\nURIs: x\nSuites: bookworm\n"),
            None
        );
    }

    #[test]
    fn mirror_from_one_line_list() {
        let t = "# x\ndeb-src http://a/debian bookworm main\n\
                 deb [arch=amd64] http://b/debian bookworm main contrib\n";
        assert_eq!(mirror_from_list(t).as_deref(), Some("http://b/debian"));
        // Any release's mirror will do (it carries every release); security never.
        assert_eq!(
            mirror_from_list("deb http://c/debian trixie main\n").as_deref(),
            Some("http://c/debian")
        );
        assert_eq!(
            mirror_from_list("deb http://s/debian-security trixie-security main\n"),
            None
        );
    }
}
