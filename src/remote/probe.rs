//! The live-state probe: one POSIX sh script per node (sent on stdin, one round trip) and a pure
//! parser of what it prints. Each record is one line, space separated; paths hold no spaces
//! (checked at render), file content travels as base64.
//!
//! Like pyinfra's facts: a command plus a pure parser, tested on output captured from nodes.

use crate::model::{
    sha256_hex, CurrentLink, DesiredState, ForeignRule, FwRule, LiveArtifact, LiveFile,
    LiveFirewall, LiveService, LiveState, LiveUser, OtherKind, PathState, Resource, VersionDir,
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
# What is at a path that is not what we look for, never following a symlink.
o() {
  if [ -L "$1" ]; then
    if [ -d "$1" ]; then k=dir; elif [ -f "$1" ]; then k=file; elif [ -e "$1" ]; then k=other; else k=dangling; fi
    echo "link $k $(printf %s "$(readlink "$1")" | base64 -w0)"
  elif [ -d "$1" ]; then
    if [ -n "$(ls -A "$1" 2>/dev/null | head -n 1)" ]; then echo dir-full; else echo dir-empty; fi
  elif [ -f "$1" ]; then echo file
  elif [ -p "$1" ]; then echo fifo
  elif [ -S "$1" ]; then echo socket
  elif [ -c "$1" ]; then echo chardev
  elif [ -b "$1" ]; then echo blockdev
  elif [ -e "$1" ]; then echo other
  else echo missing; fi
}
f() { # path secret
  if [ -f "$1" ] && [ ! -L "$1" ]; then
    m=$(stat -c '%a %U %G' "$1"); h=$(sha256sum < "$1"); h=${h%% *}
    if [ "$2" = 1 ]; then echo "F $1 file $m $h -"; else echo "F $1 file $m $h $(base64 -w0 < "$1")"; fi
  else echo "F $1 $(o "$1")"; fi
}
st() { # paths: "mode owner group" of each, looked up by `sm` (one stat for all)
  M=; if [ -n "$*" ]; then M="
$(stat -c '%n %a %U %G' -- "$@" 2>/dev/null)
"; fi
}
sm() { # path: m = its "mode owner group" from the last `st`, or empty
  m=; case "$M" in *"
$1 "*) m=${M#*"
$1 "}; m=${m%%"
"*} ;; esac
}
fs() { # path secret wanted-sha256, ...: every file, in a constant number of processes
  # One stat and one sha256sum for all regular files; content (base64) only of a
  # non-secret file whose hash is not the wanted one (a file strata will not change needs
  # no diff). Anything else, or a name the lookup cannot find, goes through f.
  set -f; a="$*"; L=
  while [ $# -ge 3 ]; do
    if [ -f "$1" ] && [ ! -L "$1" ]; then L="$L $1"; fi; shift 3
  done
  st $L; H=
  if [ -n "$L" ]; then H="
$(sha256sum -- $L 2>/dev/null)
"; fi
  set -- $a; set +f
  while [ $# -ge 3 ]; do
    sm "$1"; h=
    case "$H" in *"  $1
"*) h=${H%%"  $1
"*}; h=${h##*"
"} ;; esac
    if [ -z "$m" ] || [ ${#h} -ne 64 ]; then f "$1" "$2"
    elif [ "$2" = 1 ] || [ "$h" = "$3" ]; then echo "F $1 file $m $h -"
    else echo "F $1 file $m $h $(base64 -w0 < "$1")"; fi
    shift 3
  done
}
ds() { # tag path want(dir|file), ...: like d, one stat for all
  set -f; a="$*"; L=
  while [ $# -ge 3 ]; do
    if [ ! -L "$2" ] && { { [ "$3" = dir ] && [ -d "$2" ]; } || { [ "$3" = file ] && [ -f "$2" ]; }; }; then L="$L $2"; fi
    shift 3
  done
  st $L
  set -- $a; set +f
  while [ $# -ge 3 ]; do
    sm "$2"
    if [ -n "$m" ]; then echo "$1 $2 $3 $m"; else d "$1" "$2" "$3"; fi
    shift 3
  done
}
d() { # tag path want(dir|file): metadata only, content never read
  if [ ! -L "$2" ] && { { [ "$3" = dir ] && [ -d "$2" ]; } || { [ "$3" = file ] && [ -f "$2" ]; }; }; then
    echo "$1 $2 $3 $(stat -c '%a %U %G' "$2")"
  else echo "$1 $2 $(o "$2")"; fi
}
u() { # passwd fields 3, 6 and 7 cut out by the shell itself (no process per field)
  if e=$(getent passwd "$1"); then
    r=${e#*:}; r=${r#*:}; i=${r%%:*}; r=${r#*:}; r=${r#*:}; r=${r#*:}
    # id -nG lists the primary group first; commas put in by the shell too.
    g=$(id -nG "$1"); c=; for x in $g; do c="$c${c:+,}$x"; done
    echo "U $1 present $i ${r%%:*} ${r#*:} $c ${g%% *}"
  else echo "U $1 missing"; fi
}
a() { # name version: where current points, the marker of the live and of the wanted version
  r="/opt/$1"
  if [ -L "$r/current" ]; then c="L$(readlink "$r/current" | base64 -w0)"
    cs=; { read -r _ _ cs _ || :; } 2>/dev/null < "$r/current/.strata-artifact"; cs=${cs:--}
  elif [ -e "$r/current" ]; then c='?'; cs=-
  else c=-; cs=-; fi
  if [ -d "$r/$2" ] && [ ! -L "$r/$2" ] && [ -f "$r/$2/.strata-artifact" ]; then
    ws=; { read -r _ _ ws _ || :; } 2>/dev/null < "$r/$2/.strata-artifact"; ws=${ws:-?}
  elif [ -e "$r/$2" ] || [ -L "$r/$2" ]; then ws='?'
  else ws=-; fi
  echo "A $1 $c $cs $ws"
}
p() { # names: one dpkg-query for all (each call reads dpkg's whole status file); a name
  # dpkg does not know is printed with no status
  q=$(dpkg-query -W -f='P ${Package} ${db:Status-Want}_${db:Status-Eflag}_${db:Status-Status}\n' "$@" 2>/dev/null)
  if [ -n "$q" ]; then echo "$q"; fi
  for n in "$@"; do
    case "
$q" in *"
P $n "*) ;; *) echo "P $n ";; esac
  done
}
w() {
  if ! command -v ufw >/dev/null 2>&1; then echo "W status missing"; return; fi
  # What `ufw status` reports, without its Python start-up (~60 ms): enabled in ufw.conf and
  # its chains loaded.
  # (ufw.conf read by the shell's own read: one process fewer.)
  e=no
  if [ -f /etc/ufw/ufw.conf ]; then
    while IFS= read -r l || [ -n "$l" ]; do case $l in ENABLED=yes*) e=yes ;; esac; done 2>/dev/null < /etc/ufw/ufw.conf
  fi
  if [ $e = yes ] && iptables -n -L ufw-user-input >/dev/null 2>&1; then
    echo "W status active"; else echo "W status inactive"; fi
  # In a subshell, and only if present: `.` of a missing file ends a POSIX sh (mid-install).
  ( if [ -f /etc/default/ufw ]; then . /etc/default/ufw 2>/dev/null; fi
    echo "W defaults ${DEFAULT_INPUT_POLICY:-?} ${DEFAULT_OUTPUT_POLICY:-?} ipv6=${IPV6:-yes}" )
  sed -n 's/^### tuple ### /W tuple /p' /etc/ufw/user.rules 2>/dev/null
  sed -n 's/^### tuple ### /W tuple6 /p' /etc/ufw/user6.rules 2>/dev/null
}
"#;

/// `script` run so that it ends after `secs` whatever it waits on (coreutils `timeout`: its
/// process group, then KILL 2 s later), in a shell of its own read from a heredoc (nothing in
/// it can read the caller's stdin) and without descriptor 9 (the apply lock's). A read-only
/// probe that hangs (a stuck mount, a held dpkg lock) leaves nothing behind on the node.
pub fn bounded(script: &str, secs: u64) -> String {
    // A delimiter that cannot be a line of the script (it names a hash of it).
    let eof = format!(
        "STRATA_PROBE_{}",
        &blake3::hash(script.as_bytes()).to_hex()[..16]
    );
    format!("timeout -k 2 {secs} /bin/sh -s 9>&- <<'{eof}'\n{script}\n{eof}\n")
}

/// The probe script for a node's desired resources.
pub fn script(desired: &DesiredState) -> String {
    let mut s = String::from(PRELUDE);
    // Files and paths go to one `fs` and one `ds` call each (a constant number of processes
    // however many there are): (path, secret, the sha256 strata would write).
    let mut files: Vec<(&str, bool, String)> = Vec::new();
    let mut paths: Vec<(&str, &str, &str)> = Vec::new();
    for r in &desired.resources {
        let line = match r {
            Resource::File(f) => {
                files.push((&f.dest, f.secret, sha256_hex(f.content.as_bytes())));
                continue;
            }
            Resource::Directory(d) => {
                paths.push(("D", &d.path, "dir"));
                continue;
            }
            Resource::KeyFile(k) => {
                paths.push(("K", &k.path, "file"));
                continue;
            }
            Resource::User(u) => format!("u {}", sh_quote(&u.name)),
            // All packages in one dpkg-query call, below.
            Resource::Package(_) => continue,
            // All services in one systemctl call, below.
            Resource::Service(_) => continue,
            Resource::Firewall(_) => "w".to_string(),
            Resource::Artifact(a) => format!("a {} {}", sh_quote(&a.name), sh_quote(&a.version)),
            Resource::AptRepository(r) => {
                files.push((&r.sources_path, false, sha256_hex(r.sources.as_bytes())));
                files.push((&r.key_path, false, sha256_hex(r.key.as_bytes())));
                continue;
            }
        };
        s.push_str(&line);
        s.push('\n');
    }
    if !paths.is_empty() {
        s.push_str("ds");
        for (tag, path, want) in &paths {
            s.push_str(&format!(" {tag} {} {want}", sh_quote(path)));
        }
        s.push('\n');
    }
    if !files.is_empty() {
        s.push_str("fs");
        for (path, secret, sha) in &files {
            s.push_str(&format!(" {} {} {sha}", sh_quote(path), u8::from(*secret)));
        }
        s.push('\n');
    }
    let packages: Vec<String> = desired
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Package(p) => Some(sh_quote(&p.name)),
            _ => None,
        })
        .collect();
    if !packages.is_empty() {
        s.push_str(&format!("p {}\n", packages.join(" ")));
    }
    let names: Vec<&str> = desired
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Service(sv) => Some(sv.name.as_str()),
            _ => None,
        })
        .collect();
    if !names.is_empty() {
        // One block of properties per unit, separated by an empty `S ` line, in the order of
        // the names (`SU`): a block is the named unit's even when its Id is another (alias).
        let units: Vec<String> = names
            .iter()
            .map(|n| sh_quote(&format!("{n}.service")))
            .collect();
        s.push_str(&format!(
            "echo {}\nsystemctl show -p Id -p LoadState -p UnitFileState -p ActiveState {} 2>/dev/null | sed 's/^/S /'\n",
            sh_quote(&format!("SU {}", names.join(" "))),
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
    let kind = |k: OtherKind| Ok(PathState::Other { kind: k });
    match fields {
        ["missing"] => Ok(PathState::Missing),
        [k, mode, owner, group, ..] if *k == want => Ok(PathState::Present {
            mode: octal(mode)?,
            owner: owner.to_string(),
            group: group.to_string(),
        }),
        ["link", to, b64 @ ..] => {
            let raw = match b64.first() {
                Some(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("link target: {e}"))?,
                None => Vec::new(),
            };
            kind(OtherKind::Symlink {
                target: String::from_utf8_lossy(&raw).to_string(),
                to: to.to_string(),
            })
        }
        // Probes before version 2 said `link` with nothing more.
        ["link"] => kind(OtherKind::Symlink {
            target: "?".into(),
            to: "other".into(),
        }),
        ["dir-empty"] => kind(OtherKind::EmptyDir),
        ["dir-full"] | ["dir"] => kind(OtherKind::Dir),
        ["file", ..] => kind(OtherKind::File),
        ["fifo"] => kind(OtherKind::Fifo),
        ["socket"] => kind(OtherKind::Socket),
        ["chardev"] => kind(OtherKind::CharDevice),
        ["blockdev"] => kind(OtherKind::BlockDevice),
        [k, ..] => kind(OtherKind::Unknown(k.to_string())),
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

/// What one ufw `### tuple ###` line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tuple {
    /// `ACTION PORT/PROTO from SRC`, incoming, to any address: the shape strata declares.
    Plain(FwRule),
    /// Any other rule, in ufw's syntax (what follows `ufw [route] delete`).
    Foreign(String),
    /// A rule whose fields strata will not put into a command (odd characters).
    Unreadable(String),
}

fn is_any(addr: &str) -> bool {
    addr == "0.0.0.0/0" || addr == "::/0"
}

/// A word that may go into a ufw command line: addresses, ports, interface names.
fn safe_word(w: &str) -> bool {
    !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

/// Parse a ufw `### tuple ###` line (from /etc/ufw/user*.rules).
/// Shape: `action proto dport dst sport src [dapp sapp] direction [comment=<hex>]`, where
/// action may be `route:ACTION` and `ACTION_log`/`ACTION_log-all`, and direction is `in`,
/// `out`, `in_IFACE`, `out_IFACE` or `in_IFACE!out_IFACE` (route).
pub fn parse_tuple(fields: &[&str]) -> Option<Tuple> {
    if fields.len() < 7 {
        return None;
    }
    let is_dir = |d: &str| d == "in" || d == "out" || d.starts_with("in_") || d.starts_with("out_");
    let (dapp, sapp, dir, rest) =
        if is_dir(fields[6]) && fields.get(7).is_none_or(|c| c.starts_with("comment=")) {
            (None, None, fields[6], &fields[7..])
        } else if fields.len() >= 9 {
            let app = |a: &str| (a != "-").then(|| a.to_string());
            (app(fields[6]), app(fields[7]), fields[8], &fields[9..])
        } else {
            return Some(Tuple::Unreadable(fields.join(" ")));
        };
    let comment = rest
        .first()
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
    let (route, action) = match fields[0].strip_prefix("route:") {
        Some(a) => (true, a),
        None => (false, fields[0]),
    };
    let (action, log) = match action.split_once('_') {
        Some((a, l)) => (a, Some(l)),
        None => (action, None),
    };
    let [_, proto, dport, dst, sport, src, ..] = fields else {
        return None;
    };
    if !route
        && dir == "in"
        && is_any(dst)
        && *sport == "any"
        && *dport != "any"
        && dapp.is_none()
        && sapp.is_none()
    {
        return Some(Tuple::Plain(FwRule {
            action: action.to_string(),
            port: dport.to_string(),
            proto: proto.to_string(),
            from: if is_any(src) {
                "any".into()
            } else {
                src.to_string()
            },
            comment,
        }));
    }
    // ufw's full syntax: [route] ACTION [log] [in|out [on IF]] [out on IF] [proto P]
    //   from SRC [port P | app A] to DST [port P | app A]
    let mut w: Vec<String> = Vec::new();
    if route {
        w.push("route".into());
    }
    w.push(action.into());
    if let Some(l) = log {
        w.push(l.into());
    }
    for part in dir.split('!') {
        match part.split_once('_') {
            Some((d, iface)) => w.extend([d.to_string(), "on".into(), iface.to_string()]),
            None => w.push(part.to_string()),
        }
    }
    let apps = dapp.is_some() || sapp.is_some();
    if *proto != "any" && !apps {
        w.extend(["proto".into(), proto.to_string()]);
    }
    let addr = |a: &str| {
        if is_any(a) {
            "any".to_string()
        } else {
            a.to_string()
        }
    };
    w.extend(["from".into(), addr(src)]);
    match &sapp {
        Some(a) => w.extend(["app".into(), a.clone()]),
        None if *sport != "any" => w.extend(["port".into(), sport.to_string()]),
        None => {}
    }
    w.extend(["to".into(), addr(dst)]);
    match &dapp {
        Some(a) => w.extend(["app".into(), a.clone()]),
        None if *dport != "any" => w.extend(["port".into(), dport.to_string()]),
        None => {}
    }
    if w.iter().all(|x| safe_word(x)) {
        Some(Tuple::Foreign(w.join(" ")))
    } else {
        Some(Tuple::Unreadable(fields.join(" ")))
    }
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
    // The names the blocks belong to, in order (reversed: popped as blocks end).
    let mut unit_names: Vec<String> = Vec::new();
    // ufw: the address family each plain rule was seen in, and whether ufw's IPv6 is on.
    let mut fams: Vec<(FwRule, bool)> = Vec::new();
    let mut ipv6: Option<bool> = None;
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
                        primary: groups.get(1).map(|g| g.to_string()),
                    }),
                );
            }
            ("P", [name, status @ ..]) => {
                live.packages.insert(
                    name.to_string(),
                    // `install_ok_installed`; probes before: `install-ok-installed`.
                    status
                        .first()
                        .map(|s| {
                            if s.contains('_') {
                                s.replace('_', " ")
                            } else {
                                s.replacen('-', " ", 2)
                            }
                        })
                        .unwrap_or_default(),
                );
            }
            ("SU", names) => {
                unit_names = names.iter().rev().map(|n| n.to_string()).collect();
            }
            ("S", [""]) => flush_service(&mut svc, &mut live, &mut unit_names),
            ("S", [prop]) => match prop.split_once('=') {
                Some(("Id", v)) => {
                    svc.1.id = v.to_string();
                    svc.0 = v.strip_suffix(".service").unwrap_or(v).to_string();
                }
                Some(("LoadState", v)) => svc.1.load = v.to_string(),
                Some(("UnitFileState", v)) => svc.1.unit_file = v.to_string(),
                Some(("ActiveState", v)) => svc.1.active = v.to_string(),
                _ => {}
            },
            ("W", ["status", st @ ..]) => {
                let fw = live.firewall.get_or_insert_with(LiveFirewall::default);
                fw.status = st.join(" ");
            }
            ("W", ["defaults", i, o, v6 @ ..]) => {
                let fw = live.firewall.get_or_insert_with(LiveFirewall::default);
                fw.default_incoming = ufw_policy(i);
                fw.default_outgoing = ufw_policy(o);
                ipv6 = v6
                    .first()
                    .and_then(|x| x.strip_prefix("ipv6="))
                    .map(|x| x == "yes");
            }
            ("W", [t @ ("tuple" | "tuple6"), fields @ ..]) => {
                let fw = live.firewall.get_or_insert_with(LiveFirewall::default);
                match parse_tuple(fields) {
                    Some(Tuple::Plain(r)) => {
                        fams.push((r.clone(), *t == "tuple6"));
                        // v4 and v6 files both list an `any` rule: keep one.
                        if !fw.rules.contains(&r) {
                            fw.rules.push(r);
                        }
                    }
                    Some(Tuple::Foreign(spec)) => {
                        if !fw.foreign.iter().any(|f| f.spec == spec) {
                            fw.foreign.push(ForeignRule { spec });
                        }
                    }
                    Some(Tuple::Unreadable(raw)) => fw.unreadable.push(raw),
                    None => return Err(bad("short ufw tuple".into())),
                }
            }
            ("A", [name, cur, cur_sha, wanted]) => {
                let current = match *cur {
                    "-" => CurrentLink::Missing,
                    "?" => CurrentLink::Other,
                    l => {
                        let b = l.strip_prefix('L').ok_or_else(|| bad("bad link".into()))?;
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|e| bad(e.to_string()))?;
                        CurrentLink::Link(String::from_utf8_lossy(&raw).trim().to_string())
                    }
                };
                let wanted = match *wanted {
                    "-" => VersionDir::Missing,
                    "?" => VersionDir::Foreign,
                    sha => VersionDir::Installed(sha.to_string()),
                };
                live.artifacts.insert(
                    name.to_string(),
                    LiveArtifact {
                        current,
                        current_sha: (*cur_sha != "-").then(|| cur_sha.to_string()),
                        wanted,
                    },
                );
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
    flush_service(&mut svc, &mut live, &mut unit_names);
    // An `any` rule lives in both user.rules and user6.rules while ufw's IPv6 is on: one
    // that is in only one of them lost its twin.
    if let (Some(true), Some(fw)) = (ipv6, live.firewall.as_mut()) {
        for r in &fw.rules {
            if r.from == "any" {
                let v4 = fams.iter().any(|(x, six)| x == r && !six);
                let v6 = fams.iter().any(|(x, six)| x == r && *six);
                if v4 != v6 {
                    fw.half.push(r.clone());
                }
            }
        }
    }
    if !ended {
        return Err("the probe's output was cut short (no end marker): connection dropped?".into());
    }
    Ok(live)
}

fn flush_service(svc: &mut (String, LiveService), live: &mut LiveState, names: &mut Vec<String>) {
    let (id_name, props) = std::mem::take(svc);
    if id_name.is_empty() && props == LiveService::default() {
        return;
    }
    // The block belongs to the next name asked for (older probes: to its Id).
    let name = names.pop().unwrap_or(id_name);
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
        assert!(live.installed("chrony"));
        assert!(!live.installed("prometheus-alertmanager"));
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

    /// Tuples as ufw wrote them on lab node validator-1 (bookworm, ufw 0.36.2) after
    /// `ufw route allow in on host0 out on host0 to 10.9.9.9 port 80 proto tcp`,
    /// `ufw allow from 2001:db8::/32 to any port 5000 proto tcp`, `ufw allow out 25/tcp`,
    /// `ufw allow in on host0 to any port 7000`, `ufw allow 6000:6010/udp`,
    /// `ufw allow from 10.1.1.1 port 53 to 10.77.1.2 port 53 proto udp`, `ufw allow OpenSSH`,
    /// `ufw limit 2222/tcp`.
    const TUPLES: &str = "route:allow tcp 80 10.9.9.9 any 0.0.0.0/0 in_host0!out_host0
allow tcp 25 0.0.0.0/0 any 0.0.0.0/0 out
allow any 7000 0.0.0.0/0 any 0.0.0.0/0 in_host0
allow udp 6000:6010 0.0.0.0/0 any 0.0.0.0/0 in
allow udp 53 10.77.1.2 53 10.1.1.1 in
allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in
limit tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in
allow tcp 5000 ::/0 any 2001:db8::/32 in";

    #[test]
    fn every_shape_of_ufw_rule() {
        let got: Vec<Tuple> = TUPLES
            .lines()
            .map(|l| parse_tuple(&l.split(' ').collect::<Vec<_>>()).unwrap())
            .collect();
        let plain = |action: &str, port: &str, proto: &str, from: &str| {
            Tuple::Plain(FwRule {
                action: action.into(),
                port: port.into(),
                proto: proto.into(),
                from: from.into(),
                comment: None,
            })
        };
        let foreign = |s: &str| Tuple::Foreign(s.into());
        assert_eq!(
            got,
            vec![
                foreign(
                    "route allow in on host0 out on host0 proto tcp from any to 10.9.9.9 port 80"
                ),
                foreign("allow out proto tcp from any to any port 25"),
                foreign("allow in on host0 from any to any port 7000"),
                plain("allow", "6000:6010", "udp", "any"),
                foreign("allow in proto udp from 10.1.1.1 port 53 to 10.77.1.2 port 53"),
                foreign("allow in from any to any app OpenSSH"),
                plain("limit", "2222", "tcp", "any"),
                plain("allow", "5000", "tcp", "2001:db8::/32"),
            ]
        );
        // Odd characters never reach a command line.
        assert!(matches!(
            parse_tuple(
                &"allow tcp 1 0.0.0.0/0 any 0.0.0.0/0 in_a;rm -"
                    .split(' ')
                    .collect::<Vec<_>>()
            ),
            Some(Tuple::Unreadable(_))
        ));
    }

    #[test]
    fn a_lost_ipv6_twin_foreign_rules_and_odd_paths() {
        let out = "@strata-probe 1
F /etc/a link file L2V0Yy9wYXNzd2Q=
F /etc/b link dangling L25vd2hlcmU=
F /etc/c dir-empty
F /etc/d dir-full
F /etc/e fifo
F /etc/f socket
F /etc/g chardev
D /var/lib/x file
D /var/lib/y link dir L2RhdGEveQ==
U promtail present 997 /var/lib/promtail /usr/sbin/nologin promtail,adm,monad promtail
SU chronyd ne
S Id=chrony.service
S LoadState=loaded
S ActiveState=active
S UnitFileState=enabled
S 
S Id=ne.service
S LoadState=masked
S ActiveState=inactive
S UnitFileState=masked
W status active
W defaults DROP ACCEPT ipv6=yes
W tuple allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=737368
W tuple allow tcp 9100 0.0.0.0/0 any 10.77.0.0/16 in
W tuple allow tcp 25 0.0.0.0/0 any 0.0.0.0/0 out
W tuple6 allow tcp 25 ::/0 any ::/0 out
@end
";
        let live = parse(out).unwrap();
        let kind = |p: &str| match &live.files[p].state {
            PathState::Other { kind } => kind.clone(),
            s => panic!("{p}: {s:?}"),
        };
        assert_eq!(
            kind("/etc/a"),
            OtherKind::Symlink {
                target: "/etc/passwd".into(),
                to: "file".into()
            }
        );
        assert_eq!(
            kind("/etc/b").describe(),
            "a symlink to /nowhere (dangling)"
        );
        assert_eq!(kind("/etc/c"), OtherKind::EmptyDir);
        assert_eq!(kind("/etc/d"), OtherKind::Dir);
        assert_eq!(kind("/etc/e"), OtherKind::Fifo);
        assert_eq!(kind("/etc/f"), OtherKind::Socket);
        assert_eq!(kind("/etc/g"), OtherKind::CharDevice);
        assert_eq!(
            live.dirs["/var/lib/x"],
            PathState::Other {
                kind: OtherKind::File
            }
        );
        assert_eq!(
            live.dirs["/var/lib/y"],
            PathState::Other {
                kind: OtherKind::Symlink {
                    target: "/data/y".into(),
                    to: "dir".into()
                }
            }
        );
        let u = live.users["promtail"].as_ref().unwrap();
        assert_eq!(u.primary.as_deref(), Some("promtail"));
        // Blocks belong to the names asked for, an alias's too.
        assert_eq!(live.services["chronyd"].id, "chrony.service");
        assert_eq!(live.services["ne"].unit_file, "masked");
        let fw = live.firewall.unwrap();
        assert_eq!(fw.rules.len(), 2);
        assert_eq!(fw.half.len(), 1, "the SSH rule lost its IPv6 twin");
        assert_eq!(fw.half[0].port, "22");
        assert_eq!(fw.foreign.len(), 1, "v4 and v6 twins are one rule");
        assert_eq!(
            fw.foreign[0].spec,
            "allow out proto tcp from any to any port 25"
        );
    }

    /// Captured from lab node validator-1, converged, then made odd by hand: symlinks (to
    /// /etc/passwd, to /etc/ssh, dangling), an empty directory, a fifo and a device at file
    /// paths, a symlink at a directory's path, masked, runtime-masked and failed units, a user
    /// with another shell, home and groups, a removed and a half-configured package, IPv6,
    /// route, outgoing and app ufw rules, the SSH rule's IPv6 twin deleted, a changed default.
    const ODD: &str = include_str!("fixtures/probe-odd-node.txt");

    #[test]
    fn parses_an_odd_lab_node() {
        let live = parse(ODD).unwrap();
        let kind = |p: &str| match &live.files[p].state {
            PathState::Other { kind } => kind.describe(),
            s => panic!("{p}: {s:?}"),
        };
        assert_eq!(
            kind("/etc/logrotate.d/monad"),
            "a symlink to /etc/passwd (a file)"
        );
        assert_eq!(
            kind("/etc/chrony/chrony.conf"),
            "a symlink to /etc/ssh (a directory)"
        );
        assert_eq!(
            kind("/etc/default/prometheus-node-exporter"),
            "a symlink to /nonexistent/x (dangling)"
        );
        assert_eq!(
            kind("/etc/prometheus/rules/strata-alerts.yml"),
            "an empty directory"
        );
        assert_eq!(kind("/etc/promtail/config.yml"), "a fifo");
        assert_eq!(kind("/etc/monad/node.toml"), "a character device");
        assert!(matches!(
            &live.dirs["/var/log/monad"],
            PathState::Other { kind: OtherKind::Symlink { target, .. } } if target == "/srv/monad-logs"
        ));
        let s = |n: &str| &live.services[n];
        assert_eq!(
            (
                s("prometheus").load.as_str(),
                s("prometheus").unit_file.as_str()
            ),
            ("masked", "masked-runtime")
        );
        assert_eq!(s("prometheus-alertmanager").unit_file, "masked");
        assert_eq!(s("chrony").active, "failed");
        assert_eq!(s("prometheus-node-exporter").load, "not-found");
        let pt = live.users["promtail"].as_ref().unwrap();
        assert_eq!(
            (pt.home.as_str(), pt.shell.as_str()),
            ("/home/pt", "/bin/sh")
        );
        assert!(pt.groups.contains(&"sudo".to_string()));
        assert_eq!(live.packages["logrotate"], "install ok half-configured");
        assert_eq!(
            live.packages["prometheus-node-exporter"],
            "deinstall ok config-files"
        );
        let fw = live.firewall.unwrap();
        assert_eq!(fw.default_incoming, "allow");
        let half: Vec<String> = fw.half.iter().map(|r| r.key()).collect();
        assert_eq!(half, vec!["allow 22/tcp from any"]);
        let foreign: Vec<&str> = fw.foreign.iter().map(|f| f.spec.as_str()).collect();
        assert_eq!(
            foreign,
            vec![
                "route allow in on host0 out on host0 proto tcp from any to 10.9.9.9 port 80",
                "allow out proto tcp from any to any port 25",
                "allow in from any to any app OpenSSH",
            ]
        );
        assert!(fw.rules.iter().any(|r| r.from == "2001:db8::/32"));
        assert!(fw.unreadable.is_empty());
    }

    #[test]
    fn artifact_records() {
        // As the probe prints them: a link to 0.9.3 (its marker's sha), the wanted version
        // missing; nothing there; a directory at `current`, something foreign at the version.
        let out = format!(
            "{HEADER}\nA monad L{} {} -\nA geth - - -\nA reth ? - ?\nR -\n{TRAILER}\n",
            base64::engine::general_purpose::STANDARD.encode("0.9.3\n"),
            "ab".repeat(32)
        );
        let live = parse(&out).unwrap();
        let m = &live.artifacts["monad"];
        assert_eq!(m.current, CurrentLink::Link("0.9.3".into()));
        assert_eq!(m.current.version(), Some("0.9.3"));
        assert_eq!(m.current_sha.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(m.wanted, VersionDir::Missing);
        assert_eq!(live.artifacts["geth"], LiveArtifact::default());
        assert_eq!(live.artifacts["reth"].current, CurrentLink::Other);
        assert_eq!(live.artifacts["reth"].wanted, VersionDir::Foreign);
        assert_eq!(
            CurrentLink::Link("/opt/x/1.0/".into()).version(),
            Some("1.0")
        );
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

    /// One dpkg-query for every package, and no process per passwd field: the prelude run by
    /// sh against stand-ins for dpkg-query, getent and id (what they print on a node).
    #[test]
    fn packages_and_users_from_the_prelude() {
        use crate::model::testing::desired;
        use crate::model::PackageRes;
        let pkg = |n: &str| {
            Resource::Package(PackageRes {
                name: n.into(),
                module: "m".into(),
            })
        };
        let d = desired("n", vec![pkg("chrony"), pkg("no-such"), pkg("ufw")]);
        let text = script(&d);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("p "))
                .collect::<Vec<_>>(),
            ["p 'chrony' 'no-such' 'ufw'"]
        );
        let bin = tempfile::tempdir().unwrap();
        for (tool, body) in [
            // Known packages only, in dpkg's own order; the unknown one is on stderr.
            ("dpkg-query", "echo 'P ufw install_ok_installed'; echo 'P chrony deinstall_ok_config-files'; echo 'dpkg-query: no packages found matching no-such' >&2; exit 1"),
            ("getent", "[ \"$2\" = monad ] && echo 'monad:x:999:998:Monad,,,:/var/lib/monad:/usr/sbin/nologin'"),
            ("id", "if [ \"$1\" = -nG ]; then echo 'monad adm'; else echo monad; fi"),
        ] {
            let p = bin.path().join(tool);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let sh = format!(
            "{PRELUDE}p 'chrony' 'no-such' 'ufw'\nu monad\nu nobody-here\necho '{TRAILER}'\n"
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(sh)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
            .output()
            .unwrap();
        let live = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(live.packages["ufw"], "install ok installed");
        assert_eq!(live.packages["chrony"], "deinstall ok config-files");
        assert_eq!(live.packages["no-such"], "");
        let monad = live.users["monad"].as_ref().unwrap();
        assert_eq!(
            (monad.uid, monad.home.as_str(), monad.shell.as_str()),
            (999, "/var/lib/monad", "/usr/sbin/nologin")
        );
        assert_eq!(monad.groups, ["monad", "adm"]);
        assert_eq!(monad.primary.as_deref(), Some("monad"));
        assert_eq!(live.users["nobody-here"], None);
    }

    /// `fs` and `ds` (one stat, one sha256sum for every path) say what `f` and `d` say of each
    /// path one by one, on real files; `fs` sends no content for a file already as wanted.
    #[test]
    fn artifact_markers_read_by_the_shell() {
        // The real `a` over real trees (rooted in a temp dir instead of /opt): a marker as
        // strata writes it, one without a newline, one with extra lines, none, unreadable.
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_str().unwrap().to_string();
        let sha = "ab".repeat(32);
        let mk = |app: &str, v: &str, marker: Option<&str>| {
            let d = format!("{root}/{app}/{v}");
            std::fs::create_dir_all(&d).unwrap();
            if let Some(m) = marker {
                std::fs::write(format!("{d}/.strata-artifact"), m).unwrap();
            }
        };
        let link = |app: &str, v: &str| {
            std::os::unix::fs::symlink(v, format!("{root}/{app}/current")).unwrap();
        };
        mk("monad", "0.9.3", Some(&format!("monad 0.9.3 {sha}\n")));
        mk(
            "monad",
            "0.9.4",
            Some(&format!("monad 0.9.4 {}", "cd".repeat(32))),
        );
        link("monad", "0.9.3");
        mk(
            "geth",
            "1.0",
            Some(&format!("geth 1.0 {sha}\nsecond line x y\n")),
        );
        mk("geth", "1.1", None);
        link("geth", "1.0");
        mk("reth", "2.0", Some(""));
        link("reth", "2.0");
        let prelude = PRELUDE.replace("r=\"/opt/$1\"", &format!("r={}/$1", sh_quote(&root)));
        assert_ne!(
            prelude, PRELUDE,
            "the artifact root is set where the test expects"
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "{prelude}a monad 0.9.4\na geth 1.1\na reth 3.0\na none 1\necho 'R -'\necho '{TRAILER}'\n"
            ))
            .output()
            .unwrap();
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let live = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let m = &live.artifacts["monad"];
        assert_eq!(m.current, CurrentLink::Link("0.9.3".into()));
        assert_eq!(m.current_sha.as_deref(), Some(sha.as_str()));
        assert_eq!(m.wanted, VersionDir::Installed("cd".repeat(32)));
        let g = &live.artifacts["geth"];
        assert_eq!(
            g.current_sha.as_deref(),
            Some(sha.as_str()),
            "first line only"
        );
        assert_eq!(
            g.wanted,
            VersionDir::Foreign,
            "a version dir without a marker"
        );
        let r = &live.artifacts["reth"];
        assert_eq!(r.current_sha, None, "an empty marker");
        assert_eq!(r.wanted, VersionDir::Missing);
        assert_eq!(live.artifacts["none"], LiveArtifact::default());
    }

    #[test]
    fn batched_files_and_paths_match_one_by_one() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_str().unwrap().to_string();
        let p = |n: &str| format!("{root}/{n}");
        std::fs::create_dir(p("sub")).unwrap();
        for (n, c) in [
            ("a.conf", "x\n"),
            ("a.conf.bak", "old\n"),
            ("sub/a.conf", "y\n"),
            ("g[1]*.conf", "glob\n"),
            ("empty", ""),
            ("s.key", "secret\n"),
        ] {
            std::fs::write(p(n), c).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", p("link")).unwrap();
        let want_x = sha256_hex(b"x\n");
        let other = "0".repeat(64);
        // (path, secret, wanted sha)
        let files = [
            ("a.conf", "0", want_x.as_str()),
            ("a.conf.bak", "0", other.as_str()),
            ("sub/a.conf", "0", other.as_str()),
            ("g[1]*.conf", "0", other.as_str()),
            ("empty", "0", other.as_str()),
            ("s.key", "1", other.as_str()),
            ("missing", "0", other.as_str()),
            ("link", "0", other.as_str()),
            ("sub", "0", other.as_str()),
        ];
        let paths = [
            ("D", "sub", "dir"),
            ("D", "nodir", "dir"),
            ("D", "a.conf", "dir"),
            ("K", "s.key", "file"),
            ("K", "link", "file"),
        ];
        let q = |n: &str| sh_quote(&p(n));
        let batched = format!(
            "fs {}\nds {}\n",
            files
                .iter()
                .map(|(n, s, h)| format!("{} {s} {h}", q(n)))
                .collect::<Vec<_>>()
                .join(" "),
            paths
                .iter()
                .map(|(t, n, w)| format!("{t} {} {w}", q(n)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let single: String = files
            .iter()
            .map(|(n, s, _)| format!("f {} {s}\n", q(n)))
            .chain(
                paths
                    .iter()
                    .map(|(t, n, w)| format!("d {t} {} {w}\n", q(n))),
            )
            .collect();
        let run = |body: &str| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{PRELUDE}{body}echo '{TRAILER}'\n"))
                .output()
                .unwrap();
            parse(&String::from_utf8_lossy(&out.stdout)).unwrap()
        };
        let (b, s) = (run(&batched), run(&single));
        assert_eq!(b.dirs, s.dirs);
        assert_eq!(b.key_files, s.key_files);
        assert_eq!(b.files.len(), files.len());
        for (n, _, _) in files {
            let (bf, sf) = (&b.files[&p(n)], &s.files[&p(n)]);
            assert_eq!((&bf.state, &bf.sha256), (&sf.state, &sf.sha256), "{n}");
            if n == "a.conf" {
                assert_eq!(bf.content, None, "already as wanted: no content sent");
                assert_eq!(bf.sha256.as_deref(), Some(want_x.as_str()));
            } else {
                assert_eq!(bf.content, sf.content, "{n}");
            }
        }
        assert_eq!(
            b.files[&p("sub/a.conf")].content.as_deref(),
            Some(&b"y\n"[..])
        );
        assert_eq!(b.files[&p("empty")].content.as_deref(), Some(&b""[..]));
        assert_eq!(b.files[&p("s.key")].content, None);
        assert_eq!(b.files[&p("missing")].state, PathState::Missing);
        assert!(matches!(
            b.dirs[&p("a.conf")],
            PathState::Other {
                kind: OtherKind::File
            }
        ));
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
