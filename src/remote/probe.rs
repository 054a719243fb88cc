//! The live-state probe: one POSIX sh script per node (sent on stdin, one round trip) and a pure
//! parser of what it prints. Each record is one line, space separated; paths hold no spaces
//! (checked at render), file content travels as base64.
//!
//! Like pyinfra's facts: a command plus a pure parser, tested on output captured from nodes.

use crate::model::{
    DesiredState, FwRule, LiveFile, LiveFirewall, LiveService, LiveState, LiveUser, PathState,
    Resource,
};
use base64::Engine as _;

/// First line of every probe output; a different version is refused, not misread.
pub const HEADER: &str = "@strata-probe 1";
pub const TRAILER: &str = "@end";

/// Where strata records what it applied on a node.
pub const STATE_FILE: &str = "/var/lib/strata/state.json";

/// Quote for sh: single quotes, with embedded ones escaped.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const PRELUDE: &str = r#"set -u
export LC_ALL=C
echo '@strata-probe 1'
echo "client ${STRATA_CLIENT:-${SSH_CONNECTION:-}}"
f() { # path secret
  if [ -L "$1" ]; then echo "F $1 link"
  elif [ -f "$1" ]; then
    m=$(stat -c '%a %U %G' "$1"); h=$(sha256sum < "$1"); h=${h%% *}
    if [ "$2" = 1 ]; then echo "F $1 file $m $h -"; else echo "F $1 file $m $h $(base64 -w0 < "$1")"; fi
  elif [ -e "$1" ]; then echo "F $1 other"
  else echo "F $1 missing"; fi
}
d() { # tag path: metadata only, content never read
  if [ -L "$2" ]; then echo "$1 $2 link"
  elif [ -d "$2" ]; then echo "$1 $2 dir $(stat -c '%a %U %G' "$2")"
  elif [ -f "$2" ]; then echo "$1 $2 file $(stat -c '%a %U %G' "$2")"
  elif [ -e "$2" ]; then echo "$1 $2 other"
  else echo "$1 $2 missing"; fi
}
u() {
  if e=$(getent passwd "$1"); then
    echo "U $1 present $(echo "$e" | cut -d: -f3) $(echo "$e" | cut -d: -f6) $(echo "$e" | cut -d: -f7) $(id -nG "$1" | tr ' ' ',')"
  else echo "U $1 missing"; fi
}
p() { echo "P $1 $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null | tr ' ' '-')"; }
w() {
  if ! command -v ufw >/dev/null 2>&1; then echo "W status missing"; return; fi
  # What `ufw status` reports, without its Python start-up (~60 ms): enabled in ufw.conf and
  # its chains loaded.
  if grep -qs '^ENABLED=yes' /etc/ufw/ufw.conf && iptables -n -L ufw-user-input >/dev/null 2>&1; then
    echo "W status active"; else echo "W status inactive"; fi
  # In a subshell, and only if present: `.` of a missing file ends a POSIX sh (mid-install).
  ( if [ -f /etc/default/ufw ]; then . /etc/default/ufw 2>/dev/null; fi
    echo "W defaults ${DEFAULT_INPUT_POLICY:-?} ${DEFAULT_OUTPUT_POLICY:-?}" )
  cat /etc/ufw/user.rules /etc/ufw/user6.rules 2>/dev/null | sed -n 's/^### tuple ### /W tuple /p'
}
"#;

/// The probe script for a node's desired resources.
pub fn script(desired: &DesiredState) -> String {
    let mut s = String::from(PRELUDE);
    for r in &desired.resources {
        let line = match r {
            Resource::File(f) => {
                format!("f {} {}", sh_quote(&f.dest), if f.secret { 1 } else { 0 })
            }
            Resource::Directory(d) => format!("d D {}", sh_quote(&d.path)),
            Resource::KeyFile(k) => format!("d K {}", sh_quote(&k.path)),
            Resource::User(u) => format!("u {}", sh_quote(&u.name)),
            Resource::Package(p) => format!("p {}", sh_quote(&p.name)),
            // All services in one systemctl call, below.
            Resource::Service(_) => continue,
            Resource::Firewall(_) => "w".to_string(),
        };
        s.push_str(&line);
        s.push('\n');
    }
    let units: Vec<String> = desired
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Service(sv) => Some(sh_quote(&format!("{}.service", sv.name))),
            _ => None,
        })
        .collect();
    if !units.is_empty() {
        // One block of properties per unit, separated by an empty `S ` line.
        s.push_str(&format!(
            "systemctl show -p Id -p LoadState -p UnitFileState -p ActiveState {} 2>/dev/null | sed 's/^/S /'\n",
            units.join(" ")
        ));
    }
    // The record of what strata last applied here (drift vs pending).
    s.push_str(&format!(
        "if [ -f {0} ]; then echo \"R $(base64 -w0 < {0})\"; else echo 'R -'; fi\n",
        STATE_FILE
    ));
    s.push_str("echo '@end'\n");
    s
}

fn octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|_| format!("bad mode `{s}`"))
}

fn path_state(fields: &[&str], want: &str) -> Result<PathState, String> {
    match fields {
        ["missing"] => Ok(PathState::Missing),
        [kind, mode, owner, group, ..] if *kind == want => Ok(PathState::Present {
            mode: octal(mode)?,
            owner: owner.to_string(),
            group: group.to_string(),
        }),
        [kind, ..] => Ok(PathState::Other {
            what: kind.to_string(),
        }),
        [] => Err("empty record".into()),
    }
}

fn ufw_policy(p: &str) -> String {
    match p {
        "DROP" => "deny".into(),
        "ACCEPT" => "allow".into(),
        "REJECT" => "reject".into(),
        other => other.to_lowercase(),
    }
}

/// Parse a ufw `### tuple ###` line (from /etc/ufw/user*.rules) into a rule.
/// Shape: `action proto dport dst sport src direction [comment=<hex>]`.
pub fn parse_tuple(fields: &[&str]) -> Option<FwRule> {
    if fields.len() < 7 || fields[6] != "in" {
        return None;
    }
    let from = match fields[5] {
        "0.0.0.0/0" | "::/0" => "any".to_string(),
        f => f.to_string(),
    };
    let comment = fields
        .get(7)
        .and_then(|c| c.strip_prefix("comment="))
        .and_then(|hex| {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect();
            bytes.and_then(|b| String::from_utf8(b).ok())
        });
    Some(FwRule {
        action: fields[0].trim_end_matches("_log").to_string(),
        port: fields[2].to_string(),
        proto: fields[1].to_string(),
        from,
        comment,
    })
}

/// Parse the probe's output. Truncated or foreign output is an error, never a partial state.
pub fn parse(out: &str) -> Result<LiveState, String> {
    let mut lines = out.lines();
    match lines.next() {
        Some(HEADER) => {}
        Some(other) => {
            return Err(format!(
                "unexpected probe output (first line `{}`)",
                truncate(other)
            ))
        }
        None => return Err("the probe printed nothing".into()),
    }
    let mut live = LiveState::default();
    let mut ended = false;
    // The systemctl block being read: (unit name, properties).
    let mut svc = (String::new(), LiveService::default());
    for line in lines {
        if line == TRAILER {
            ended = true;
            break;
        }
        let mut parts = line.split(' ');
        let tag = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let bad = |why: String| format!("probe record `{}`: {why}", truncate(line));
        match (tag, rest.as_slice()) {
            ("client", f) => {
                // SSH_CONNECTION: client_ip client_port server_ip server_port
                live.client_addr = f.first().filter(|a| !a.is_empty()).map(|a| a.to_string());
            }
            ("F", [path, fields @ ..]) => {
                let state = path_state(fields, "file").map_err(bad)?;
                let (sha256, content) = match (&state, fields) {
                    (PathState::Present { .. }, [_, _, _, _, sha, b64]) => {
                        let content = if *b64 == "-" {
                            None
                        } else {
                            Some(
                                base64::engine::general_purpose::STANDARD
                                    .decode(b64)
                                    .map_err(|e| bad(e.to_string()))?,
                            )
                        };
                        (Some(sha.to_string()), content)
                    }
                    // An empty file: base64 prints nothing, so the field is absent.
                    (PathState::Present { .. }, [_, _, _, _, sha]) => {
                        (Some(sha.to_string()), Some(Vec::new()))
                    }
                    (PathState::Present { .. }, _) => return Err(bad("missing hash".into())),
                    _ => (None, None),
                };
                live.files.insert(
                    path.to_string(),
                    LiveFile {
                        state,
                        sha256,
                        content,
                    },
                );
            }
            ("D", [path, fields @ ..]) => {
                live.dirs
                    .insert(path.to_string(), path_state(fields, "dir").map_err(bad)?);
            }
            ("K", [path, fields @ ..]) => {
                live.key_files
                    .insert(path.to_string(), path_state(fields, "file").map_err(bad)?);
            }
            ("U", [name, "missing"]) => {
                live.users.insert(name.to_string(), None);
            }
            ("U", [name, "present", uid, home, shell, groups @ ..]) => {
                live.users.insert(
                    name.to_string(),
                    Some(LiveUser {
                        uid: uid.parse().map_err(|_| bad("bad uid".into()))?,
                        home: home.to_string(),
                        shell: shell.to_string(),
                        groups: groups
                            .first()
                            .map(|g| {
                                g.split(',')
                                    .filter(|x| !x.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }),
                );
            }
            ("P", [name, status @ ..]) => {
                live.packages.insert(
                    name.to_string(),
                    status.first() == Some(&"install-ok-installed"),
                );
            }
            ("S", [""]) => flush_service(&mut svc, &mut live),
            ("S", [prop]) => match prop.split_once('=') {
                Some(("Id", v)) => svc.0 = v.strip_suffix(".service").unwrap_or(v).to_string(),
                Some(("LoadState", v)) => svc.1.load = v.to_string(),
                Some(("UnitFileState", v)) => svc.1.unit_file = v.to_string(),
                Some(("ActiveState", v)) => svc.1.active = v.to_string(),
                _ => {}
            },
            ("W", ["status", st @ ..]) => {
                let fw = live.firewall.get_or_insert_with(LiveFirewall::default);
                fw.status = st.join(" ");
            }
            ("W", ["defaults", i, o]) => {
                let fw = live.firewall.get_or_insert_with(LiveFirewall::default);
                fw.default_incoming = ufw_policy(i);
                fw.default_outgoing = ufw_policy(o);
            }
            ("W", ["tuple", fields @ ..]) => {
                let fw = live.firewall.get_or_insert_with(LiveFirewall::default);
                if let Some(r) = parse_tuple(fields) {
                    // v4 and v6 files both list an `any` rule: keep one.
                    if !fw.rules.contains(&r) {
                        fw.rules.push(r);
                    }
                }
            }
            ("R", ["-"]) => live.record = None,
            ("R", [b64]) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| bad(e.to_string()))?;
                live.record = Some(String::from_utf8_lossy(&raw).to_string());
            }
            _ => return Err(bad("unknown record".into())),
        }
    }
    flush_service(&mut svc, &mut live);
    if !ended {
        return Err("the probe's output was cut short (no end marker): connection dropped?".into());
    }
    Ok(live)
}

fn flush_service(svc: &mut (String, LiveService), live: &mut LiveState) {
    let (name, props) = std::mem::take(svc);
    if !name.is_empty() {
        live.services.insert(name, props);
    }
}

fn truncate(s: &str) -> String {
    if s.len() > 80 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(80).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record of each kind, in the shape a lab node prints (see tests/e2e for the probe
    /// run against real nodes).
    const CAPTURED: &str = "@strata-probe 1
client 10.77.1.1 52144 10.77.1.2 22
F /etc/chrony/chrony.conf file 644 root root 3c5e0d6d1b1c9f7f6ec1b83d9b15d9f0a1e4b6f6b0f4b1c3f1e2d3c4b5a69788 cG9vbCAyLmRlYmlhbi5wb29sLm50cC5vcmcgaWJ1cnN0Cg==
F /etc/prometheus/alertmanager.yml file 640 root prometheus 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 -
F /etc/monad/node.toml missing
F /etc/logrotate.d/empty file 644 root root e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
D /var/lib/monad dir 750 monad monad
D /etc/monad missing
K /etc/monad/keys/secp.key file 600 monad monad
K /etc/monad/keys/bls.key missing
U monad present 998 /var/lib/monad /usr/sbin/nologin monad
U nobody2 missing
P chrony install-ok-installed
P prometheus-alertmanager
S Id=chrony.service
S LoadState=loaded
S ActiveState=active
S UnitFileState=enabled
S 
S Id=monad-validator.service
S LoadState=not-found
S ActiveState=inactive
S UnitFileState=
W status active
W defaults DROP ACCEPT
W tuple allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=737368
W tuple allow tcp 9100 0.0.0.0/0 any 10.77.0.0/16 in comment=6e6f64655f6578706f72746572
W tuple allow any 8000 0.0.0.0/0 any 0.0.0.0/0 in
W tuple allow tcp 22 ::/0 any ::/0 in comment=737368
R -
@end
";

    #[test]
    fn parses_every_record_kind() {
        let live = parse(CAPTURED).unwrap();
        assert_eq!(live.client_addr.as_deref(), Some("10.77.1.1"));
        let chrony = &live.files["/etc/chrony/chrony.conf"];
        assert_eq!(
            chrony.state,
            PathState::Present {
                mode: 0o644,
                owner: "root".into(),
                group: "root".into()
            }
        );
        assert_eq!(
            chrony.content.as_deref(),
            Some(&b"pool 2.debian.pool.ntp.org iburst\n"[..])
        );
        let am = &live.files["/etc/prometheus/alertmanager.yml"];
        assert!(am.content.is_none(), "secret content must not be gathered");
        assert_eq!(am.sha256.as_deref().map(str::len), Some(64));
        assert_eq!(live.files["/etc/monad/node.toml"].state, PathState::Missing);
        assert_eq!(
            live.files["/etc/logrotate.d/empty"].content.as_deref(),
            Some(&b""[..])
        );
        assert_eq!(live.dirs["/etc/monad"], PathState::Missing);
        assert_eq!(
            live.key_files["/etc/monad/keys/secp.key"],
            PathState::Present {
                mode: 0o600,
                owner: "monad".into(),
                group: "monad".into()
            }
        );
        assert_eq!(live.users["monad"].as_ref().unwrap().groups, vec!["monad"]);
        assert_eq!(live.users["nobody2"], None);
        assert!(live.packages["chrony"]);
        assert!(!live.packages["prometheus-alertmanager"]);
        assert_eq!(live.services["chrony"].active, "active");
        assert_eq!(live.services["monad-validator"].load, "not-found");
        let fw = live.firewall.unwrap();
        assert_eq!(
            (
                fw.status.as_str(),
                fw.default_incoming.as_str(),
                fw.default_outgoing.as_str()
            ),
            ("active", "deny", "allow")
        );
        assert_eq!(
            fw.rules.len(),
            3,
            "the v6 twin of the ssh rule is the same rule"
        );
        assert_eq!(fw.rules[0].comment.as_deref(), Some("ssh"));
        assert_eq!(fw.rules[1].from, "10.77.0.0/16");
        assert_eq!(fw.rules[2].proto, "any");
    }

    /// Captured from lab node validator-3 (Debian bookworm, systemd-nspawn) with
    /// `strata --inventory inventory/lab.yaml probe-script validator-3 | ssh ... sh -s`:
    /// fresh, and after an apply followed by `ufw allow 3306/tcp` and a chmod.
    const FRESH: &str = include_str!("fixtures/probe-fresh-node.txt");
    const APPLIED: &str = include_str!("fixtures/probe-applied-node.txt");

    #[test]
    fn parses_a_fresh_lab_node() {
        let live = parse(FRESH).unwrap();
        assert_eq!(live.client_addr.as_deref(), Some("10.77.3.1"));
        assert_eq!(live.users["monad"], None);
        assert_eq!(live.dirs["/etc/monad"], PathState::Missing);
        assert_eq!(live.files["/etc/monad/node.toml"].state, PathState::Missing);
        // Debian's packaged chrony.conf is there, with its content.
        let chrony = &live.files["/etc/chrony/chrony.conf"];
        assert!(String::from_utf8_lossy(chrony.content.as_ref().unwrap())
            .contains("pool 2.debian.pool.ntp.org"));
        assert_eq!(live.services["monad-validator"].load, "not-found");
        assert_eq!(live.services["chrony"].active, "active");
        let fw = live.firewall.unwrap();
        assert_eq!((fw.status.as_str(), fw.rules.len()), ("inactive", 0));
        assert!(live.record.is_none());
    }

    #[test]
    fn parses_an_applied_lab_node() {
        let live = parse(APPLIED).unwrap();
        let monad = live.users["monad"].as_ref().unwrap();
        assert_eq!(
            (monad.home.as_str(), monad.shell.as_str()),
            ("/var/lib/monad", "/usr/sbin/nologin")
        );
        assert_eq!(
            live.files["/etc/logrotate.d/monad"].state,
            PathState::Present {
                mode: 0o600,
                owner: "root".into(),
                group: "root".into()
            }
        );
        // The secret file's content is never gathered, only its hash.
        let am = &live.files["/etc/prometheus/alertmanager.yml"];
        assert!(am.content.is_none() && am.sha256.is_some());
        assert!(
            live.services.values().all(|s| s.active == "active"),
            "{:?}",
            live.services
        );
        let fw = live.firewall.unwrap();
        assert_eq!(fw.status, "active");
        // 9 declared rules plus the hand-made 3306; v6 twins are folded.
        assert_eq!(fw.rules.len(), 10);
        assert!(fw
            .rules
            .iter()
            .any(|r| r.port == "3306" && r.comment.is_none()));
        let rec =
            crate::model::Record::parse(live.record.as_deref()).expect("the record apply left");
        assert_eq!(rec.applied_by, "root@vm");
    }

    #[test]
    fn truncated_or_foreign_output_is_an_error() {
        let cut = &CAPTURED[..CAPTURED.len() - 5];
        assert!(parse(cut).unwrap_err().contains("cut short"));
        assert!(parse("Welcome to Ubuntu\n").is_err());
        assert!(parse("").is_err());
        assert!(parse("@strata-probe 1\nZ what\n@end\n")
            .unwrap_err()
            .contains("unknown record"));
    }

    #[test]
    fn fingerprint_ignores_the_client_port_but_not_content() {
        let a = parse(CAPTURED).unwrap();
        let b = parse(&CAPTURED.replace("52144", "40000")).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = parse(&CAPTURED.replace(
            "cG9vbCAyLmRlYmlhbi5wb29sLm50cC5vcmcgaWJ1cnN0Cg==",
            "cG9vbCAx",
        ))
        .unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
