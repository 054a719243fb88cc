//! `strata-lab add NAME --bare`: a node that looks like a fresh host from a cloud provider,
//! for `strata bootstrap` to take over. Made in the node's own overlay before it boots
//! (a reset does it again), so the shared base stays untouched:
//! - no `deploy` user (nor its home and sudoers entry): only root, by the lab key;
//! - sshd with password login on, as cloud images ship it (`50-cloud-init.conf`);
//! - none of the packages the modules install: bootstrap must fetch them from the lab's
//!   local apt repository (their dependencies stay, as on a provider's image);
//! - no downloaded .debs in apt's cache.
//!
//! Kept on purpose: the lab's container drop-ins for chrony and alertmanager (a container
//! cannot set the clock; they apply once the packages are installed again) and the stand-in
//! validator binary, which no package provides.

use crate::sys;
use anyhow::{Context, Result};
use std::path::Path;

/// Packages of the example modules (modules/*/module.yaml `packages:`) that the base
/// carries; purged from a bare node. A unit test keeps this list and the modules in step.
pub const PURGED: &[&str] = &[
    "prometheus",
    "prometheus-node-exporter",
    "prometheus-alertmanager",
    "chrony",
    "ufw",
    "logrotate",
];

/// The provider's sshd drop-in, path inside the node and content.
pub const SSHD_DROPIN: &str = "etc/ssh/sshd_config.d/50-cloud-init.conf";
pub const SSHD_PROVIDER: &str = "\
# From the provider's image (strata lab: a bare host). Bootstrap must turn this off.
PasswordAuthentication yes
";

/// The script run in the node's root (chroot) that removes what a fresh host lacks.
pub fn script() -> String {
    format!(
        "set -e
export DEBIAN_FRONTEND=noninteractive
userdel --remove deploy 2>/dev/null
rm -rf /home/deploy
rm -f /etc/sudoers.d/deploy /etc/ssh/sshd_config.d/lab.conf
dpkg --purge {}
rm -f /var/cache/apt/archives/*.deb
",
        PURGED.join(" ")
    )
}

/// Make a freshly mounted node root bare (before its identity is written and it boots).
pub fn make_bare(root: &Path) -> Result<()> {
    sys::run(
        sys::tool("chroot")
            .arg(root)
            .args(["/bin/sh", "-c", &script()]),
    )
    .context("making the node bare (removing the deploy user, purging packages) failed")?;
    let p = root.join(SSHD_DROPIN);
    std::fs::write(&p, SSHD_PROVIDER).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Package names declared by the example modules (strings or `{name: ...}` entries).
    fn module_packages() -> BTreeSet<String> {
        // The example repo is two levels up from this package (tests/lab).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules");
        let mut out = BTreeSet::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("module.yaml")) else {
                continue;
            };
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            for p in v["packages"].as_sequence().into_iter().flatten() {
                let name = p.as_str().or_else(|| p["name"].as_str()).unwrap();
                out.insert(name.to_string());
            }
        }
        out
    }

    #[test]
    fn purged_are_exactly_the_module_packages_the_base_has() {
        let base: BTreeSet<&str> = crate::base::PACKAGES.iter().copied().collect();
        let wanted: BTreeSet<String> = module_packages()
            .into_iter()
            .filter(|p| base.contains(p.as_str()))
            .collect();
        let purged: BTreeSet<String> = PURGED.iter().map(|s| s.to_string()).collect();
        assert_eq!(purged, wanted);
    }

    #[test]
    fn script_removes_deploy_and_packages() {
        let s = script();
        assert!(s.starts_with("set -e\n"));
        assert!(s.contains("userdel --remove deploy"));
        assert!(s.contains("/etc/sudoers.d/deploy"));
        assert!(s.contains(
            "dpkg --purge prometheus prometheus-node-exporter prometheus-alertmanager chrony ufw logrotate\n"
        ));
        assert!(SSHD_PROVIDER.contains("\nPasswordAuthentication yes\n"));
    }
}
