//! The operator's own ssh configuration, as the ssh client reads it: `ssh -G` prints the
//! settings it would use for a destination (ssh_config `Host`/`Match` blocks applied) without
//! connecting anywhere. strata asks it for what the inventory leaves to ssh: the login user and
//! port (for the sudo, lockout and firewall checks), the real host name and host key alias
//! (the name bootstrap pins the host key under).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// One destination, with what the inventory says about it.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pub dest: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<u16>,
    pub proxy_jump: Option<&'a str>,
    pub config_file: Option<PathBuf>,
}

/// What ssh would use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub hostname: Option<String>,
    pub host_key_alias: Option<String>,
    /// The agent socket ssh_config names (`IdentityAgent`), if any.
    pub identity_agent: Option<String>,
}

impl Resolved {
    /// The name ssh looks the host key up under in known_hosts: the alias, else the host
    /// name, with `[..]:port` off port 22 (as ssh writes it).
    pub fn known_hosts_name(&self, fallback: &str) -> String {
        if let Some(a) = &self.host_key_alias {
            return a.clone();
        }
        let h = self.hostname.as_deref().unwrap_or(fallback);
        match self.port {
            Some(p) if p != 22 => format!("[{h}]:{p}"),
            _ => h.to_string(),
        }
    }
}

/// The arguments of `ssh -G` for `q` (the options strata itself would pass, then the
/// destination after `--`).
pub fn args(q: &Query) -> Vec<String> {
    let mut a = vec!["-G".to_string()];
    if let Some(f) = &q.config_file {
        a.extend(["-F".into(), f.display().to_string()]);
    }
    if let Some(u) = q.user {
        a.extend(["-l".into(), u.to_string()]);
    }
    if let Some(p) = q.port {
        a.extend(["-p".into(), p.to_string()]);
    }
    if let Some(j) = q.proxy_jump {
        a.extend(["-J".into(), j.to_string()]);
    }
    a.extend(["--".into(), q.dest.to_string()]);
    a
}

/// Parse `ssh -G` output: one `keyword value` per line, keywords in lower case.
pub fn parse(out: &str) -> Resolved {
    let mut r = Resolved::default();
    for line in out.lines() {
        let Some((k, v)) = line.trim().split_once(' ') else {
            continue;
        };
        let v = v.trim();
        match k {
            "user" => r.user = Some(v.to_string()),
            "port" => r.port = v.parse().ok(),
            "hostname" => r.hostname = Some(v.to_string()),
            "hostkeyalias" if v != "none" => r.host_key_alias = Some(v.to_string()),
            "identityagent" if v != "none" && v != "SSH_AUTH_SOCK" => {
                r.identity_agent = Some(v.to_string())
            }
            _ => {}
        }
    }
    r
}

/// Run `ssh -G` for `q`; why not, in ssh's own words.
pub fn resolve(q: &Query) -> Result<Resolved, String> {
    let out = Command::new("ssh")
        .args(args(q))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `ssh -G` (openssh-client) to read the ssh config: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        return Err(format!(
            "`ssh -G {}` failed reading the ssh config: {}",
            q.dest,
            said.join("; ")
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ssh_g_output() {
        let out = "host v2\nuser ops\nhostname 10.77.2.2\nport 2222\naddressfamily any\nproxyjump root@10.77.1.2\nhostkeyalias v2-key\nidentityagent /run/a.sock\n";
        assert_eq!(
            parse(out),
            Resolved {
                user: Some("ops".into()),
                port: Some(2222),
                hostname: Some("10.77.2.2".into()),
                host_key_alias: Some("v2-key".into()),
                identity_agent: Some("/run/a.sock".into()),
            }
        );
        // A garbled port is unknown, not 0; lines without a value are skipped.
        let r = parse("port x\nuser\nhostname h\nidentityagent SSH_AUTH_SOCK\n");
        assert_eq!(r.identity_agent, None);
        assert_eq!(r.port, None);
        assert_eq!(r.user, None);
        assert_eq!(r.hostname.as_deref(), Some("h"));
    }

    #[test]
    fn known_hosts_name_is_as_ssh_writes_it() {
        let mut r = parse("hostname 10.77.2.2\nport 22\n");
        assert_eq!(r.known_hosts_name("x"), "10.77.2.2");
        r.port = Some(2222);
        assert_eq!(r.known_hosts_name("x"), "[10.77.2.2]:2222");
        r.host_key_alias = Some("v2".into());
        assert_eq!(r.known_hosts_name("x"), "v2");
        assert_eq!(Resolved::default().known_hosts_name("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn args_pass_only_what_is_set() {
        let q = Query {
            dest: "v2",
            ..Default::default()
        };
        assert_eq!(args(&q), ["-G", "--", "v2"]);
        let q = Query {
            dest: "10.77.2.2",
            user: Some("ops"),
            port: Some(2222),
            proxy_jump: Some("root@b"),
            config_file: Some("/r/ssh_config".into()),
        };
        assert_eq!(
            args(&q),
            [
                "-G",
                "-F",
                "/r/ssh_config",
                "-l",
                "ops",
                "-p",
                "2222",
                "-J",
                "root@b",
                "--",
                "10.77.2.2"
            ]
        );
    }

    #[test]
    fn reads_a_real_config_file() {
        // The real client on a real file: Host alias with User/Port, and -l/-p win over it.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config");
        std::fs::write(
            &f,
            "Host v2\n  HostName 10.77.2.2\n  User ops\n  Port 2222\n",
        )
        .unwrap();
        let mut q = Query {
            dest: "v2",
            config_file: Some(f.clone()),
            ..Default::default()
        };
        let r = resolve(&q).unwrap();
        assert_eq!(r.user.as_deref(), Some("ops"));
        assert_eq!(r.port, Some(2222));
        assert_eq!(r.hostname.as_deref(), Some("10.77.2.2"));
        q.user = Some("root");
        q.port = Some(22);
        let r = resolve(&q).unwrap();
        assert_eq!((r.user.as_deref(), r.port), (Some("root"), Some(22)));
        std::fs::write(&f, "Host v2\n  Bogus yes\n").unwrap();
        let e = resolve(&q).unwrap_err();
        assert!(
            e.contains("Bogus") || e.contains("bad configuration"),
            "{e}"
        );
    }
}
