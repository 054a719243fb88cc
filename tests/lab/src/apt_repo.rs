//! The lab's local apt repository: lab nodes reach no network, so packages come from a
//! flat repository built from the .debs the base already downloaded, bound read-only into
//! every node at `/srv/strata-apt` and named as the node's only apt source.
//!
//! Cached as `/var/cache/strata-lab/apt-<hash>`, with the hash of the base it was built
//! from: a new base (new recipe) gets a new repository, the same base reuses it.

use crate::sys;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where the repository appears inside a node.
pub const NODE_PATH: &str = "/srv/strata-apt";

/// A node's whole apt configuration: this one source and nothing else.
pub const SOURCES_LIST: &str = "\
# strata lab: the lab's local repository only (no network in lab nodes).
deb [trusted=yes] file:/srv/strata-apt ./
";

/// Where the base keeps the .debs debootstrap (or mmdebstrap) downloaded.
const ARCHIVES: &str = "var/cache/apt/archives";

/// The repository directory for a base `.../base-<hash>`: `.../apt-<hash>`.
pub fn repo_dir_for(base: &Path) -> PathBuf {
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned());
    let hash = name
        .as_deref()
        .and_then(|n| n.strip_prefix("base-"))
        .unwrap_or("unknown");
    base.with_file_name(format!("apt-{hash}"))
}

/// Ensure the repository for this base exists; return its path. Prints what it builds.
pub fn ensure_repo(base: &Path) -> Result<PathBuf> {
    let dir = repo_dir_for(base);
    if dir.join("Release").exists() {
        return Ok(dir);
    }
    let t = Instant::now();
    let tmp = crate::base::temp_sibling(&dir);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let n = link_debs(&base.join(ARCHIVES), &tmp)?;
    if n == 0 {
        bail!(
            "the lab base {} has no .debs in /{ARCHIVES} to build the local apt repository from; \
             remove {} and run `strata-lab up` to rebuild the base",
            base.display(),
            base.display()
        );
    }
    // No override file: priorities and sections come from the packages themselves.
    let out = sys::run(sys::tool("dpkg-scanpackages").arg(".").current_dir(&tmp))
        .context("indexing the lab's apt repository failed")?;
    std::fs::write(tmp.join("Packages"), &out.stdout)?;
    std::fs::write(tmp.join("Release"), release_text(&out.stdout, unix_now()))?;
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))?;
    eprintln!(
        "lab: local apt repository {} ({n} packages) built in {:.1}s",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// Hard-link (same filesystem, no copy) or else copy every .deb; returns how many.
fn link_debs(from: &Path, to: &Path) -> Result<usize> {
    let rd = std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut n = 0;
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "deb") {
            continue;
        }
        let dest = to.join(e.file_name());
        if std::fs::hard_link(&p, &dest).is_err() {
            std::fs::copy(&p, &dest)
                .with_context(|| format!("cannot copy {} to {}", p.display(), dest.display()))?;
        }
        n += 1;
    }
    Ok(n)
}

/// A flat repository's `Release`: apt wants one (else it warns and tries every compressed
/// `Packages` name), with a valid Date and the index's hash; `[trusted=yes]` in the source
/// means it need not be signed.
pub fn release_text(packages: &[u8], unix_secs: u64) -> String {
    format!(
        "Origin: strata-lab\nLabel: strata-lab\nDate: {}\nSHA256:\n {:x} {} Packages\n",
        rfc2822_utc(unix_secs),
        Sha256::digest(packages),
        packages.len()
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `Tue, 24 Nov 2026 18:30:33 +0000` (the Date format apt parses), without a date crate.
pub fn rfc2822_utc(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_is_keyed_like_its_base() {
        assert_eq!(
            repo_dir_for(Path::new("/var/cache/strata-lab/base-0123abcd")),
            PathBuf::from("/var/cache/strata-lab/apt-0123abcd")
        );
    }

    #[test]
    fn dates_in_rfc2822() {
        assert_eq!(rfc2822_utc(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // Checked with `date -Ru -d @1795545033`.
        assert_eq!(
            rfc2822_utc(1_795_545_033),
            "Tue, 24 Nov 2026 18:30:33 +0000"
        );
        // A leap day.
        assert_eq!(rfc2822_utc(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn release_names_the_index_hash_and_size() {
        let r = release_text(b"abc", 0);
        assert!(r.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\n"));
        assert!(r.ends_with(
            "SHA256:\n ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3 Packages\n"
        ));
    }

    #[test]
    fn sources_name_only_the_local_repository() {
        let debs: Vec<&str> = SOURCES_LIST
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(debs, ["deb [trusted=yes] file:/srv/strata-apt ./"]);
        assert!(SOURCES_LIST.contains(NODE_PATH));
    }
}
