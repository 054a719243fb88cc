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

    /// The history an unreadable record lost, rebuilt from the revisions still stored on
    /// the node (their directories, named by their start in epoch milliseconds): newest
    /// first, `current` left out. Who applied them and from which commit is unknown.
    pub fn rebuilt_history(stored: &[String], current: &str) -> Vec<Revision> {
        let mut revs: Vec<(u128, &String)> = stored
            .iter()
            .filter(|r| r.as_str() != current)
            .filter_map(|r| r.parse::<u128>().ok().map(|ms| (ms, r)))
            .collect();
        revs.sort_by(|a, b| b.cmp(a));
        revs.into_iter()
            .map(|(ms, r)| Revision {
                revision: r.clone(),
                kind: "apply".into(),
                applied_at: (ms / 1000) as u64,
                applied_by: "unknown (rebuilt from its stored state: the record was unreadable)"
                    .into(),
                commit: None,
                desired_fingerprint: String::new(),
            })
            .collect()
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

    #[test]
    fn a_lost_history_is_rebuilt_from_the_stored_revisions_newest_first() {
        let stored: Vec<String> = ["1700000000123", "1700000500000", "x", "1690000000999", "9"]
            .map(String::from)
            .into();
        let h = Record::rebuilt_history(&stored, "1700000500000");
        let names: Vec<&str> = h.iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(names, ["1700000000123", "1690000000999", "9"]);
        assert_eq!(h[0].applied_at, 1_700_000_000);
        assert_eq!(h[2].applied_at, 0);
        assert!(h.iter().all(|r| r.kind == "apply" && r.commit.is_none()));
        assert!(h[0].applied_by.starts_with("unknown"));
        // A new record keeps them after its own entry, up to keep_revisions.
        let mut lost = crate::model::testing::record("1700000500000", &[]);
        lost.history = h;
        let r = crate::model::testing::record("1700000600000", &[]).with_history(Some(&lost), 3);
        let names: Vec<&str> = r.history.iter().map(|r| r.revision.as_str()).collect();
        assert_eq!(names, ["1700000600000", "1700000000123", "1690000000999"]);
    }
}
