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
        what: String,
    },
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveService {
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
}

/// Everything the probe saw on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveState {
    pub files: BTreeMap<String, LiveFile>,
    pub dirs: BTreeMap<String, PathState>,
    pub key_files: BTreeMap<String, PathState>,
    pub users: BTreeMap<String, Option<LiveUser>>,
    pub packages: BTreeMap<String, bool>,
    pub services: BTreeMap<String, LiveService>,
    pub firewall: Option<LiveFirewall>,
    /// The on-node record of the last apply (raw JSON), if any.
    #[serde(skip)]
    pub record: Option<String>,
    /// The operator's address as the node sees it (from SSH_CONNECTION).
    #[serde(skip)]
    pub client_addr: Option<String>,
}

impl LiveState {
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
