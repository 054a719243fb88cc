//! The base root filesystem every lab node is an overlay over.
//!
//! Built in two cached stages under /var/cache/strata-lab/:
//! - `debootstrap-<hash>`: plain `debootstrap` output (the slow, network-bound part, ~70 s);
//! - `base-<hash>`: a copy of it with the lab's customisation steps applied.
//!
//! Each hash is blake3 over the recipe text that produced the directory (suite, package list,
//! every step's text), so changing the recipe rebuilds, and editing only a customisation step
//! does not download Debian again. Each stage is built in a temp dir and renamed into place:
//! an interrupted build never counts as cached.

use crate::sys;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const CACHE_DIR: &str = "/var/cache/strata-lab";
pub const SUITE: &str = "bookworm";
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// Packages in the base (names checked with apt-cache against bookworm).
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

/// The debootstrap stage's recipe text.
pub fn debootstrap_recipe() -> String {
    format!(
        "debootstrap --variant=minbase --include={} {SUITE}\n",
        PACKAGES.join(",")
    )
}

/// The full recipe: debootstrap + every customisation step's text.
pub fn full_recipe(steps: &[Step]) -> String {
    let mut r = debootstrap_recipe();
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
/// one-line `sources.list`), skipping security and updates suites.
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

/// First `URIs:` of a `Types: deb` stanza whose suites include the plain suite.
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
            && suites.split_whitespace().any(|s| s == SUITE)
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

/// `deb [opts] URI SUITE COMPONENTS...` with SUITE exactly the plain suite.
pub fn mirror_from_list(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace().filter(|w| !w.starts_with('['));
        if f.next()? != "deb" {
            return None;
        }
        let uri = f.next()?;
        (f.next()? == SUITE).then(|| uri.to_string())
    })
}

/// Ensure the customised base exists; return its path. Prints what it builds and how long.
pub fn ensure_base() -> Result<PathBuf> {
    let cache = Path::new(CACHE_DIR);
    let steps = steps();
    let base = cache.join(format!("base-{}", recipe_hash(&full_recipe(&steps))));
    if base.join("usr/bin/systemctl").exists() {
        return Ok(base);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {CACHE_DIR}"))?;
    let stage1 = ensure_debootstrap(cache)?;

    let t = Instant::now();
    eprintln!("lab: customising base {}", base.display());
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

/// The plain debootstrap output, cached by its own recipe hash.
fn ensure_debootstrap(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(format!(
        "debootstrap-{}",
        recipe_hash(&debootstrap_recipe())
    ));
    if dir.join("usr/bin/systemctl").exists() {
        return Ok(dir);
    }
    let mirror = host_mirror();
    let tmp = temp_sibling(&dir);
    eprintln!(
        "lab: building base with debootstrap ({SUITE}, {mirror}) into {} (about 70 s)",
        dir.display()
    );
    let t = Instant::now();
    sys::run_visible(
        sys::tool("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&tmp)
            .arg(&mirror),
    )
    .context("debootstrap failed (the partial build was left in a temp dir and is not cached)")?;
    std::fs::rename(&tmp, &dir)?;
    eprintln!("lab: debootstrap done in {:.1}s", t.elapsed().as_secs_f64());
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
        let a = full_recipe(&steps());
        let mut s = steps();
        s.push(Step::Chroot("true"));
        let b = full_recipe(&s);
        assert_ne!(recipe_hash(&a), recipe_hash(&b));
        assert_eq!(recipe_hash(&a), recipe_hash(&full_recipe(&steps())));
        assert_eq!(recipe_hash(&a).len(), 16);
        assert!(a.starts_with(&debootstrap_recipe()));
        assert!(a.contains("ConditionCapability="));
        assert!(a.contains("deb [trusted=yes] file:/srv/strata-apt ./"));
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
        assert_eq!(mirror_from_list("deb http://c/debian trixie main\n"), None);
    }
}
