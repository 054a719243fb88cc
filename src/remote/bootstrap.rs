//! The scripts `strata bootstrap` runs on a fresh host, and pure parsers of what they print.
//! Every script is idempotent: on a bootstrapped host it prints no `CHANGED` line.

use crate::remote::probe::sh_quote;
use base64::Engine as _;

/// The sshd drop-in bootstrap owns. `00-` sorts before the drop-ins cloud images ship (e.g.
/// `50-cloud-init.conf` turning password login on): sshd keeps the first value it reads.
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/00-strata.conf";

/// What preflight requires of a host.
#[derive(Debug, Clone)]
pub struct Requirements {
    pub ssh_port: u16,
    pub min_free_mb: u64,
    pub max_clock_offset_secs: i64,
}

/// Facts about the host, one per line, read-only.
pub fn preflight_script() -> String {
    r#"export LC_ALL=C
if [ -d /run/systemd/system ]; then echo "SYSTEMD $(systemctl is-system-running 2>/dev/null || true)"; else echo "SYSTEMD absent"; fi
. /etc/os-release 2>/dev/null; echo "OS ${ID:-unknown} ${VERSION_ID:-unknown}"
echo "DISK $(df -Pm / | awk 'NR==2 {print $4}')"
echo "TIME $(date +%s)"
echo "PORTS $( (sshd -T 2>/dev/null || /usr/sbin/sshd -T 2>/dev/null) | awk '$1=="port" {print $2}' | tr '\n' ' ')"
missing=''
for t in sh base64 flock mktemp systemctl systemd-run useradd apt-get sha256sum stat; do command -v $t >/dev/null 2>&1 || missing="$missing $t"; done
echo "MISSING$missing"
echo "END"
"#
    .to_string()
}

/// Every preflight problem, at once (empty: the host passes). `local_now` is this machine's
/// clock at the middle of the round trip.
pub fn preflight_problems(out: &str, req: &Requirements, local_now: i64) -> Vec<String> {
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    if !out.lines().any(|l| l == "END") {
        return vec![format!(
            "the preflight script did not finish: {}",
            out.trim()
        )];
    }
    let mut p = Vec::new();
    match get("SYSTEMD ").as_deref() {
        Some("running") | Some("degraded") => {}
        Some("absent") | None => {
            p.push("systemd is not running as init (PID 1): strata manages systemd hosts".into())
        }
        Some(s) => p.push(format!("systemd is {s}, not running")),
    }
    let os = get("OS ").unwrap_or_default();
    let (id, ver) = os.split_once(' ').unwrap_or((&os, ""));
    let major: u32 = ver
        .split('.')
        .next()
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or(0);
    let os_ok = match id {
        "debian" => major >= 11,
        "ubuntu" => major >= 20,
        _ => false,
    };
    if !os_ok {
        p.push(format!(
            "unsupported OS `{os}`: strata bootstraps Debian 11+ or Ubuntu 20.04+"
        ));
    }
    match get("DISK ").and_then(|d| d.parse::<u64>().ok()) {
        Some(mb) if mb >= req.min_free_mb => {}
        Some(mb) => p.push(format!(
            "only {mb} MiB free on / (at least {} MiB needed)",
            req.min_free_mb
        )),
        None => p.push("could not read the free disk space of /".into()),
    }
    match get("TIME ").and_then(|t| t.parse::<i64>().ok()) {
        Some(t) if (t - local_now).abs() <= req.max_clock_offset_secs => {}
        Some(t) => p.push(format!(
            "clock offset {}s against this machine (at most {}s): fix the host's time before it signs anything",
            t - local_now,
            req.max_clock_offset_secs
        )),
        None => p.push("could not read the host's clock".into()),
    }
    let ports = get("PORTS ").unwrap_or_default();
    if !ports
        .split_whitespace()
        .any(|x| x == req.ssh_port.to_string())
    {
        p.push(format!(
            "sshd does not listen on port {} (the inventory's port for this host); it reports: {}",
            req.ssh_port,
            if ports.is_empty() {
                "nothing (sshd -T failed)"
            } else {
                ports.as_str()
            }
        ));
    }
    let missing = get("MISSING").unwrap_or_default();
    if !missing.is_empty() {
        p.push(format!("missing tools: {missing}"));
    }
    p
}

/// The host's base: hostname, the deploy user with the operator's keys and passwordless sudo,
/// and the SSH hardening drop-in (`root_login`: `prohibit-password` until a login as the
/// deploy user was proven, then `no`). Prints `CHANGED <what>` per change, `OK` at the end.
pub fn base_script(hostname: &str, user: &str, pubkeys: &str, root_login: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let u = sh_quote(user);
    let dropin = format!(
        "# Managed by strata bootstrap: key-only logins.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin {root_login}\n"
    );
    let sudoers = format!("{user} ALL=(ALL) NOPASSWD:ALL\n");
    format!(
        r#"set -u
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
fail() {{ echo "FAIL $*"; exit 1; }}
# Hostname.
if [ "$(cat /etc/hostname 2>/dev/null)" != {host} ]; then
  echo {host} > /etc/hostname && (hostname {host} 2>/dev/null || true) && echo "CHANGED hostname" || fail hostname
fi
grep -q "[[:space:]]{host_re}\$" /etc/hosts || {{ echo "127.0.1.1 {host_plain}" >> /etc/hosts && echo "CHANGED /etc/hosts"; }}
# sudo, for the deploy user.
if ! command -v sudo >/dev/null; then
  {{ apt-get install -y -q sudo >/tmp/strata-apt.log 2>&1 || {{ apt-get update -q >>/tmp/strata-apt.log 2>&1 && apt-get install -y -q sudo >>/tmp/strata-apt.log 2>&1; }}; }} || {{ tail -n 5 /tmp/strata-apt.log; fail apt-get install sudo; }}
  echo "CHANGED package sudo"
fi
# The deploy user: key login only (no password is ever set).
if ! id {u} >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash {u} && usermod -p '*' {u} && echo "CHANGED user {user}" || fail useradd
fi
home=$(getent passwd {u} | cut -d: -f6)
[ -n "$home" ] || fail "no home for {user}"
mkdir -p "$home/.ssh" && chmod 0700 "$home/.ssh" && chown {u}: "$home/.ssh" || fail "$home/.ssh"
touch "$home/.ssh/authorized_keys" || fail authorized_keys
echo {keys} | base64 -d | while IFS= read -r k; do
  [ -z "$k" ] && continue
  grep -qxF "$k" "$home/.ssh/authorized_keys" || {{ echo "$k" >> "$home/.ssh/authorized_keys" && echo "CHANGED authorized key for {user}"; }}
done
chmod 0600 "$home/.ssh/authorized_keys" && chown {u}: "$home/.ssh/authorized_keys" || fail authorized_keys
# Passwordless sudo, checked by visudo before it is put in place.
s=/etc/sudoers.d/strata-{user_plain}
want=$(echo {sudoers} | base64 -d)
if [ "$(cat "$s" 2>/dev/null)" != "$want" ]; then
  t=$(mktemp /etc/sudoers.d/.strata-XXXXXX) && printf '%s\n' "$want" > "$t" && chmod 0440 "$t" && visudo -cqf "$t" && mv -f "$t" "$s" && echo "CHANGED sudoers" || {{ rm -f "$t"; fail sudoers; }}
fi
# SSH hardening: checked with sshd -t before sshd reloads; the old drop-in comes back if not.
d={dropin_path}
want=$(echo {dropin} | base64 -d)
if [ "$(cat "$d" 2>/dev/null)" != "$want" ]; then
  mkdir -p /etc/ssh/sshd_config.d
  [ -f "$d" ] && cp -p "$d" "$d.strata-old"
  printf '%s\n' "$want" > "$d.strata-new" && chmod 0644 "$d.strata-new" && mv -f "$d.strata-new" "$d"
  if ! /usr/sbin/sshd -t 2>/tmp/strata-sshd.err; then
    if [ -f "$d.strata-old" ]; then mv -f "$d.strata-old" "$d"; else rm -f "$d"; fi
    fail "sshd -t refused the hardening: $(cat /tmp/strata-sshd.err)"
  fi
  rm -f "$d.strata-old"
  systemctl reload ssh 2>/dev/null || systemctl reload sshd || fail "reloading sshd"
  echo "CHANGED sshd hardening (PermitRootLogin {root_login})"
fi
# Verify what sshd really uses (a drop-in sorting earlier could override ours).
eff=$(/usr/sbin/sshd -T 2>/dev/null)
echo "$eff" | grep -qx 'passwordauthentication no' || fail "sshd still allows password login (another drop-in wins?)"
echo "$eff" | grep -qx 'permitrootlogin {root_login_t}' || fail "sshd PermitRootLogin is not {root_login}"
echo OK
"#,
        host = sh_quote(hostname),
        host_plain = hostname,
        host_re = hostname.replace('.', "\\."),
        keys = b64.encode(pubkeys.as_bytes()),
        user_plain = user,
        sudoers = b64.encode(sudoers.trim_end().as_bytes()),
        dropin_path = sh_quote(SSHD_DROPIN),
        dropin = b64.encode(dropin.trim_end().as_bytes()),
        root_login_t = if root_login == "no" {
            "no"
        } else {
            "without-password"
        },
    )
}

/// `CHANGED ...` lines of a script's output.
pub fn changed(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("CHANGED "))
        .map(str::to_string)
        .collect()
}

/// `ssh-keygen -lf` (`256 SHA256:.. host (ED25519)`) or `ssh-keygen -l -F host`
/// (`host ED25519 SHA256:..`) output -> fingerprints, one per key line.
pub fn fingerprints(keygen_out: &str) -> Vec<String> {
    keygen_out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().find(|t| t.starts_with("SHA256:")))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Requirements {
        Requirements {
            ssh_port: 22,
            min_free_mb: 2048,
            max_clock_offset_secs: 10,
        }
    }

    const GOOD: &str =
        "SYSTEMD running\nOS debian 12\nDISK 50000\nTIME 1000\nPORTS 22 \nMISSING\nEND\n";

    #[test]
    fn a_good_host_passes() {
        assert!(preflight_problems(GOOD, &req(), 1003).is_empty());
        let ubuntu = GOOD.replace("debian 12", "ubuntu 22.04");
        assert!(preflight_problems(&ubuntu, &req(), 1000).is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = "SYSTEMD absent\nOS centos 9\nDISK 100\nTIME 1200\nPORTS 2222 \nMISSING flock systemd-run\nEND\n";
        let p = preflight_problems(bad, &req(), 1000);
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p[0].contains("systemd is not running"));
        assert!(p[1].contains("unsupported OS `centos 9`"));
        assert!(p[2].contains("only 100 MiB free"));
        assert!(p[3].contains("clock offset 200s"));
        assert!(p[4].contains("does not listen on port 22"));
        assert!(p[5].contains("flock systemd-run"));
        assert!(preflight_problems("SYSTEMD running\n", &req(), 0)[0].contains("did not finish"));
        let old = GOOD.replace("debian 12", "debian 10");
        assert_eq!(preflight_problems(&old, &req(), 1000).len(), 1);
    }

    #[test]
    fn parses_keygen_fingerprints_and_changes() {
        let k = "256 SHA256:abc/def 10.77.4.2 (ED25519)\n3072 SHA256:xyz 10.77.4.2 (RSA)\n";
        assert_eq!(fingerprints(k), ["SHA256:abc/def", "SHA256:xyz"]);
        // `ssh-keygen -l -F HOST -f known_hosts`, as captured from OpenSSH 9.2:
        let f = "# Host 10.9.9.9 found: line 1 \n10.9.9.9 ED25519 SHA256:EUtjSmk6h8HPI+fxNhCiaiFJB6pT/p8hztfYx3cY84E root@vm\n";
        assert_eq!(
            fingerprints(f),
            ["SHA256:EUtjSmk6h8HPI+fxNhCiaiFJB6pT/p8hztfYx3cY84E"]
        );
        assert_eq!(changed("CHANGED user x\nOK\n"), ["user x"]);
        let s = base_script("validator-4", "deploy", "ssh-ed25519 AAA op\n", "no");
        assert!(s.contains("CHANGED sshd hardening (PermitRootLogin no)"));
        assert!(s.contains("'permitrootlogin no'"));
        let s = base_script("validator-4", "deploy", "k\n", "prohibit-password");
        assert!(s.contains("'permitrootlogin without-password'"));
    }
}
