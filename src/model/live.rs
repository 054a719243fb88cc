//! What a node has: the live state a probe gathered (parsed in remote::probe).

use crate::model::FwRule;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a path is on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PathState {
    Missing,
    /// A regular file (or directory, for `D` records) with its metadata.
    Present {
        mode: u32,
        owner: String,
        group: String,
    },
    /// Something else is there (a symlink, a directory where a file belongs, ...).
    Other {
        kind: OtherKind,
    },
}

/// What is at a managed path when it is not what the resource declares. The probe never
/// follows a symlink: it reports the link itself (and what its target is, for the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "is", rename_all = "snake_case")]
pub enum OtherKind {
    /// A symlink; `to` is what its target is (`file`, `dir`, `other`, `dangling`).
    Symlink {
        target: String,
        to: String,
    },
    /// A directory with nothing in it (at a file's path).
    EmptyDir,
    /// A directory with entries (at a file's path).
    Dir,
    /// A regular file (at a directory's path).
    File,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// Anything the probe could not name.
    Unknown(String),
}

impl OtherKind {
    /// How the plan names it: `a symlink to /etc/passwd (a file)`, `a fifo`.
    pub fn describe(&self) -> String {
        match self {
            OtherKind::Symlink { target, to } => {
                let what = match to.as_str() {
                    "file" => "a file",
                    "dir" => "a directory",
                    "dangling" => "dangling",
                    _ => "neither a file nor a directory",
                };
                format!("a symlink to {target} ({what})")
            }
            OtherKind::EmptyDir => "an empty directory".into(),
            OtherKind::Dir => "a non-empty directory".into(),
            OtherKind::File => "a regular file".into(),
            OtherKind::Fifo => "a fifo".into(),
            OtherKind::Socket => "a socket".into(),
            OtherKind::CharDevice => "a character device".into(),
            OtherKind::BlockDevice => "a block device".into(),
            OtherKind::Unknown(w) => format!("a {w}"),
        }
    }

    /// Can a file replace it without losing anything strata cannot put back? A symlink (the
    /// link, never its target), an empty directory, a fifo or a socket: yes (each is kept in
    /// the revision's backup as it was). A directory with entries or a device node: no.
    pub fn file_may_replace(&self) -> bool {
        matches!(
            self,
            OtherKind::Symlink { .. } | OtherKind::EmptyDir | OtherKind::Fifo | OtherKind::Socket
        )
    }
}

/// The sha256 (lowercase hex) by which live files are compared with what strata would
/// write: by the probe on the node (`sha256sum`) and by the diff here.
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveFile {
    pub state: PathState,
    pub sha256: Option<String>,
    /// None for secret files: their content is never gathered.
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveUser {
    pub uid: u32,
    pub home: String,
    pub shell: String,
    pub groups: Vec<String>,
    /// The primary group (`id -gn`); None in output of older probes.
    pub primary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveService {
    /// The unit systemd resolves the name to (`Id`): differs from the name for an alias.
    #[serde(default)]
    pub id: String,
    /// `loaded`, `not-found`, ...
    pub load: String,
    /// `enabled`, `disabled`, `static`, `masked`, or empty.
    pub unit_file: String,
    /// `active`, `inactive`, `failed`, `activating`, ...
    pub active: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveFirewall {
    /// `active`, `inactive`, or `missing` (ufw not installed).
    pub status: String,
    pub default_incoming: String,
    pub default_outgoing: String,
    pub rules: Vec<FwRule>,
    /// Rules from `any` that exist in one address family only (one of the v4/v6 twins was
    /// deleted by hand), while ufw's IPv6 is on.
    pub half: Vec<FwRule>,
    /// Rules strata does not declare in this shape (route, outgoing, per interface, to a
    /// specific address, from a port, an app profile): ufw's own words, to delete them.
    pub foreign: Vec<ForeignRule>,
    /// Rules the probe could not turn into ufw syntax (their raw tuple).
    pub unreadable: Vec<String>,
}

/// A live ufw rule that is not of the shape `ACTION PORT/PROTO from SRC` (incoming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignRule {
    /// ufw's syntax, as `ufw` takes it after `delete` (`route allow in on eth0 ...`).
    pub spec: String,
}

/// An artifact on the node: where `/opt/<name>/current` points, and what the desired
/// version's directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveArtifact {
    pub current: CurrentLink,
    /// The sha256 recorded in the live version's marker (none: not installed by strata).
    pub current_sha: Option<String>,
    pub wanted: VersionDir,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "is", content = "to", rename_all = "snake_case")]
pub enum CurrentLink {
    #[default]
    Missing,
    /// A symlink, and its text (`0.9.3`).
    Link(String),
    /// Something that is not a symlink (strata will not replace it).
    Other,
}

impl CurrentLink {
    /// The version `current` points at (the link's last component).
    pub fn version(&self) -> Option<&str> {
        match self {
            CurrentLink::Link(t) => Some(t.trim_end_matches('/').rsplit('/').next().unwrap_or(t)),
            _ => None,
        }
    }
}

/// The desired version's directory `/opt/<name>/<version>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "is", content = "sha256", rename_all = "snake_case")]
pub enum VersionDir {
    #[default]
    Missing,
    /// Installed by strata from the download with this sha256 (its marker says so).
    Installed(String),
    /// Something strata did not put there (no marker, or not a directory).
    Foreign,
}

/// Everything the probe saw on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveState {
    pub files: BTreeMap<String, LiveFile>,
    pub dirs: BTreeMap<String, PathState>,
    pub key_files: BTreeMap<String, PathState>,
    pub users: BTreeMap<String, Option<LiveUser>>,
    /// dpkg's status of each package (`install ok installed`, `deinstall ok config-files`,
    /// `install ok half-configured`, or empty when dpkg never heard of it).
    pub packages: BTreeMap<String, String>,
    pub services: BTreeMap<String, LiveService>,
    pub firewall: Option<LiveFirewall>,
    pub artifacts: BTreeMap<String, LiveArtifact>,
    /// The on-node record of the last apply (raw JSON), if any.
    #[serde(skip)]
    pub record: Option<String>,
    /// The operator's address as the node sees it (from SSH_CONNECTION).
    #[serde(skip)]
    pub client_addr: Option<String>,
}

/// dpkg's status of an installed package.
pub const INSTALLED: &str = "install ok installed";

impl LiveState {
    pub fn installed(&self, package: &str) -> bool {
        self.packages.get(package).map(String::as_str) == Some(INSTALLED)
    }

    /// blake3 of what was gathered, excluding per-connection noise (the client's port).
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&serde_json::to_vec(self).expect("live state serialises"));
        for (path, f) in &self.files {
            if let Some(c) = &f.content {
                h.update(path.as_bytes());
                h.update(c);
            }
        }
        h.update(self.record.as_deref().unwrap_or("").as_bytes());
        h.finalize().to_hex().to_string()
    }
}
