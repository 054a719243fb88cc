//! The on-node record of what strata applied, and the node's revision history.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The on-node record of the last apply (`/var/lib/strata/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub applied_at: u64,
    pub applied_by: String,
    pub commit: Option<String>,
    pub desired_fingerprint: String,
    /// Resource id (and `ufw:<rule>` per rule) -> key of the state apply left.
    pub resources: BTreeMap<String, String>,
    pub revision: String,
    /// `apply`, or `rollback` when `strata rollback` put this revision back.
    #[serde(default = "kind_apply")]
    pub kind: String,
    /// For a rollback: the revision the node ran before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<String>,
    /// The last revisions recorded on this node, newest first (this one included), at most
    /// `keep_revisions`: what `strata rollback` can return to.
    #[serde(default)]
    pub history: Vec<Revision>,
}

fn kind_apply() -> String {
    "apply".into()
}

/// One entry of a node's revision history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revision {
    pub revision: String,
    pub kind: String,
    pub applied_at: u64,
    pub applied_by: String,
    pub commit: Option<String>,
    pub desired_fingerprint: String,
}

impl Record {
    /// This record's own history entry.
    pub fn entry(&self) -> Revision {
        Revision {
            revision: self.revision.clone(),
            kind: self.kind.clone(),
            applied_at: self.applied_at,
            applied_by: self.applied_by.clone(),
            commit: self.commit.clone(),
            desired_fingerprint: self.desired_fingerprint.clone(),
        }
    }

    /// Fill `history`: this revision first, then the previous record's history (or the
    /// previous record itself, written by a strata without history), at most `keep`.
    pub fn with_history(mut self, previous: Option<&Record>, keep: usize) -> Record {
        let mut h = vec![self.entry()];
        if let Some(p) = previous {
            if p.history.is_empty() {
                h.push(p.entry());
            } else {
                h.extend(p.history.iter().cloned());
            }
        }
        h.retain(|r| !r.revision.is_empty());
        let mut seen = std::collections::BTreeSet::new();
        h.retain(|r| seen.insert(r.revision.clone()));
        h.truncate(keep.max(1));
        self.history = h;
        self
    }
}

impl Record {
    /// The record as read from the node; None when there is none or it is unreadable (see
    /// `read` for telling the two apart).
    pub fn parse(raw: Option<&str>) -> Option<Record> {
        Record::read(raw).ok().flatten()
    }

    /// Ok(None): no record on the node; Err: a record that is there but unreadable (a hand
    /// edit, a truncated file), with serde's words for where.
    pub fn read(raw: Option<&str>) -> Result<Option<Record>, String> {
        raw.map(serde_json::from_str)
            .transpose()
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_absent_readable_or_unreadable_with_where() {
        assert_eq!(Record::read(None), Ok(None));
        let r = Record {
            applied_at: 1,
            applied_by: "root@laptop".into(),
            commit: None,
            desired_fingerprint: "f".into(),
            resources: BTreeMap::new(),
            revision: "7".into(),
            kind: "apply".into(),
            rolled_back_from: None,
            history: vec![],
        };
        let json = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(Record::read(Some(&json)), Ok(Some(r)));
        let cut = &json[..40];
        let e = Record::read(Some(cut)).unwrap_err();
        assert!(e.contains("EOF while parsing") && e.contains("line"), "{e}");
        assert_eq!(Record::parse(Some(cut)), None);
        assert!(Record::read(Some("[]")).is_err());
    }
}
