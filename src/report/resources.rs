//! `strata render`'s listing: one line per resource, with a digest of what it would put there.

use crate::model::{fmt_mode, DesiredState, Resource};
use std::fmt::Write as _;

/// One line per resource, with a digest of what it would put on the node.
pub fn describe(r: &Resource) -> String {
    match r {
        Resource::File(f) => format!(
            "{} {}:{} blake3:{}{}",
            fmt_mode(f.mode),
            f.owner,
            f.group,
            &blake3::hash(f.content.as_bytes()).to_hex()[..16],
            if f.secret { " (secret)" } else { "" }
        ),
        Resource::Directory(d) => format!("{} {}:{}", fmt_mode(d.mode), d.owner, d.group),
        Resource::KeyFile(k) => format!(
            "{} {}:{} (content never read)",
            fmt_mode(k.mode),
            k.owner,
            k.group
        ),
        Resource::User(u) => format!(
            "{}{}",
            if u.system { "system user" } else { "user" },
            u.home
                .as_ref()
                .map(|h| format!(" home {h}"))
                .unwrap_or_default()
        ),
        Resource::Package(_) => "installed".into(),
        Resource::Service(s) => format!(
            "{} {:?}",
            if s.enabled { "enabled" } else { "disabled" },
            s.state
        )
        .to_lowercase(),
        Resource::Firewall(f) => format!(
            "incoming {} outgoing {}, {} rules",
            f.default_incoming,
            f.default_outgoing,
            f.rules.len()
        ),
        Resource::Artifact(a) => format!(
            "{} (sha256 {}) at {}/{}, {}{}{}",
            a.version,
            short_sha(&a.sha256),
            a.root(),
            a.version,
            a.url,
            if a.push { ", pushed over SSH" } else { "" },
            a.signature
                .as_ref()
                .map(|s| format!(", signed by {} ({})", s.signer(), s.key_path))
                .unwrap_or_default()
        ),
        Resource::AptRepository(r) => format!(
            "{}, key {} blake3:{}",
            repo_line(&r.sources),
            r.key_path,
            &blake3::hash(r.key.as_bytes()).to_hex()[..16]
        ),
    }
}

/// `http://x ./` from a deb822 entry: its URIs and suites.
pub fn repo_line(sources: &str) -> String {
    let field = |k: &str| {
        sources
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    format!("{} {}", field("URIs:"), field("Suites:"))
}

/// `3f2a1b2c..`: enough of a checksum to tell releases apart in a line.
pub fn short_sha(s: &str) -> String {
    format!("{}..", &s[..s.len().min(8)])
}

/// Every selected node's resources, one line each, with the node's fingerprint.
pub fn listing(nodes: &[&DesiredState]) -> String {
    let mut text = String::new();
    for d in nodes {
        let _ = writeln!(
            text,
            "{} ({}, {}):",
            d.node.name, d.node.address, d.node.region
        );
        let width = d.resources.iter().map(|r| r.id().len()).max().unwrap_or(0);
        for res in &d.resources {
            let _ = writeln!(text, "  {:width$}  {}", res.id(), describe(res));
        }
        let _ = writeln!(text, "  fingerprint {}", &d.fingerprint()[..16]);
    }
    text
}
