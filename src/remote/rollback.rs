//! Pure: the sh text of `strata rollback`'s reads (the record, the stored revisions, what
//! was at a path before strata first wrote it) beside the parsers of their replies.

use crate::model::Record;
use crate::remote::apply::BACKUP_DIR;
use crate::remote::probe::sh_quote;
use base64::Engine as _;

/// What to do with a file the current revision declares and the target does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// strata created it (an `N` manifest entry): remove it.
    Remove,
    /// strata replaced a file that was there before (`B`): put that copy back.
    Restore(String),
    /// No revision since the target wrote it: leave it, and say so.
    Unknown,
}

/// Print the record and the revisions whose desired state is stored: one round trip.
pub fn revisions_script() -> String {
    format!(
        "echo \"RECORD $(base64 -w0 {} 2>/dev/null)\"\nfor f in {BACKUP_DIR}/*/desired.json; do [ -f \"$f\" ] && d=${{f%/desired.json}} && echo \"STORED ${{d##*/}}\"; done\necho END\n",
        crate::remote::probe::STATE_FILE
    )
}

/// (record, stored revisions) from `revisions_script` output.
pub fn parse_revisions(out: &str) -> Result<(Option<Record>, Vec<String>), String> {
    if !out.lines().any(|l| l == "END") {
        return Err(format!("unexpected output: {}", out.trim()));
    }
    let mut record = None;
    let mut stored = Vec::new();
    for l in out.lines() {
        if let Some(b) = l.strip_prefix("RECORD ") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| format!("the record is not base64: {e}"))?;
            record = Record::parse(Some(&String::from_utf8_lossy(&raw)));
        } else if let Some(r) = l.strip_prefix("STORED ") {
            stored.push(r.trim().to_string());
        }
    }
    Ok((record, stored))
}

/// Read a revision's stored desired state (`desired.json`).
pub fn stored_state_script(revision: &str) -> String {
    format!(
        "cat {BACKUP_DIR}/{}/desired.json 2>/dev/null\n",
        sh_quote(revision)
    )
}

/// For each path, the first manifest entry of a revision newer than `target` (oldest first):
/// what was there before strata first wrote it. One round trip.
pub fn orphan_script(paths: &[String], target: &str) -> String {
    let mut s = format!(
        "revs=$(ls {BACKUP_DIR} 2>/dev/null | grep -E '^[0-9]+$' | sort -n)\nfor p in {}; do\n  r=unknown\n  for d in $revs; do\n    [ \"$d\" -gt {} ] || continue\n    l=$(grep -m1 -Fx -e \"B $p\" -e \"N $p\" {BACKUP_DIR}/$d/manifest 2>/dev/null) || continue\n    case $l in N*) r=remove;; B*) r=\"restore {BACKUP_DIR}/$d$p\";; esac\n    break\n  done\n  echo \"ORPHAN $p $r\"\ndone\necho END\n",
        paths
            .iter()
            .map(|p| sh_quote(p))
            .collect::<Vec<_>>()
            .join(" "),
        sh_quote(target),
    );
    if paths.is_empty() {
        s = "echo END\n".into();
    }
    s
}

pub fn parse_orphans(out: &str) -> Vec<(String, Orphan)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("ORPHAN "))
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let path = it.next()?.to_string();
            let what = match (it.next()?, it.next()) {
                ("remove", _) => Orphan::Remove,
                ("restore", Some(src)) => Orphan::Restore(src.to_string()),
                _ => Orphan::Unknown,
            };
            Some((path, what))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::record;

    #[test]
    fn orphans_are_found_and_parsed() {
        let s = orphan_script(&["/etc/a b".into()], "17");
        assert!(s.contains("for p in '/etc/a b'; do"));
        assert!(s.contains("-gt '17' ]"));
        assert_eq!(orphan_script(&[], "1"), "echo END\n");
        assert_eq!(
            parse_orphans("ORPHAN /etc/x remove\nORPHAN /etc/motd restore /var/lib/strata/backup/5/etc/motd\nORPHAN /etc/y unknown\nEND\n"),
            vec![
                ("/etc/x".into(), Orphan::Remove),
                ("/etc/motd".into(), Orphan::Restore("/var/lib/strata/backup/5/etc/motd".into())),
                ("/etc/y".into(), Orphan::Unknown),
            ]
        );
    }

    #[test]
    fn parses_the_record_and_stored_revisions() {
        let rec = serde_json::to_string(&record("5", &["5", "4"])).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(rec);
        let (r, s) = parse_revisions(&format!("RECORD {b64}\nSTORED 4\nSTORED 5\nEND\n")).unwrap();
        assert_eq!(r.unwrap().revision, "5");
        assert_eq!(s, ["4", "5"]);
        let (r, s) = parse_revisions("RECORD \nEND\n").unwrap();
        assert!(r.is_none() && s.is_empty());
        assert!(parse_revisions("sudo: a password is required\n").is_err());
    }
}
