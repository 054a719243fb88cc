//! The names and values that reach a node's root shell or a local program, and their rules:
//! one pure function per kind, used by the loader (errors at file:line), by `node add`, and
//! by the renderer for module resources. Each returns `Err(reason)` phrased to follow the
//! value, e.g. "`Root` must be a login name (...)".
//!
//! The rules are deliberately narrower than what the tools accept: every value that passes is
//! safe as one shell word even before it is quoted (no blanks, quotes, `$`, backticks, `;`,
//! `&`, `|`, `<`, `>`, parentheses, globs, or a leading `-` a command would read as an option).

use std::net::IpAddr;

/// A host name in the inventory: a-z, 0-9, '-' and '.', at most 63 characters, not starting
/// with '-' or '.'.
pub fn node_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err("may use only a-z, 0-9, '-' and '.' (at most 63 characters, not starting with '-' or '.')".into())
    }
}

/// An artifact's name, its directory under /opt: a-z, 0-9, '-' and '_', starting with a
/// letter, at most 64 characters.
pub fn artifact_name(s: &str) -> Result<(), String> {
    let ok = s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err("must be a-z, 0-9, '-' and '_', starting with a letter (at most 64 characters)".into())
    }
}

/// An artifact's version, a directory name: letters, digits, '.', '_', '+' and '-', not
/// starting with '.' or '-', at most 64 characters, and not `current`.
pub fn artifact_version(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s != "current"
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be letters, digits, '.', '_', '+' and '-' (not starting with '.' or '-', not `current`, at most 64 characters)".into())
    }
}

/// A path inside an artifact: relative, components of letters, digits and `._+-@`, none
/// empty, `.`, `..` or starting with '.' or '-'.
pub fn relative_path(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with(['.', '-'])
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._+-@".contains(ch))
        });
    if ok {
        Ok(())
    } else {
        Err("must be a relative path of plain names (no `..`, no leading '.' or '-')".into())
    }
}

/// A top-level JSON field a health check reads: letters, digits and '_'.
pub fn json_field(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err("must be a top-level JSON field name (letters, digits and '_')".into())
    }
}

/// A host name as `node add` creates it: one DNS label, lower case, starting with a letter.
pub fn new_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a letter a-z".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may use only a-z, 0-9 and '-'".into());
    }
    if name.ends_with('-') {
        return Err("may not end with '-'".into());
    }
    Ok(())
}

/// One RFC 1123 label: 1-63 of a-z, A-Z, 0-9, '-', not starting or ending with '-'.
fn dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A DNS name (RFC 1123 labels, at most 253 characters, an optional final dot); its last
/// label is not all digits, so a mistyped IPv4 address is not taken for a name.
pub fn hostname(s: &str) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(dns_label) {
        return Err("is neither an IP address nor a DNS name".into());
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("is not a valid IP address (and a DNS name cannot end in a number)".into());
    }
    Ok(())
}

/// An IP address (v4 or v6) or a DNS name.
pub fn address(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    hostname(s)
}

/// An ssh destination (`ssh.host`): an ssh_config alias or a DNS name, as one ssh argument.
/// Letters, digits and `._-`, not starting with '-' (never read as an option) or '.'.
pub fn ssh_host(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err("is not an ssh host (an ssh_config alias or a DNS name: letters, digits and `._-`, not starting with `-` or `.`)".into())
    }
}

/// `ssh -J` hops (`ssh.proxy_jump`): comma-separated `[user@]host[:port]`, the host an
/// ssh_config alias, a DNS name or an IPv4 address.
pub fn proxy_jump(s: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "is not a jump host list ([user@]host[:port], comma-separated): {why}"
        ))
    };
    if s.is_empty() {
        return bad("empty");
    }
    for hop in s.split(',') {
        let (user, rest) = match hop.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, hop),
        };
        if let Some(u) = user {
            let ok = !u.is_empty()
                && !u.starts_with('-')
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return bad(&format!("user `{}`", shown(u)));
            }
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if ssh_host(host).is_err() {
            return bad(&format!("host `{}`", shown(host)));
        }
        if let Some(p) = port {
            if !p.parse::<u16>().is_ok_and(|p| p > 0) {
                return bad(&format!("port `{}`", shown(p)));
            }
        }
    }
    Ok(())
}

/// A Unix login or group name as useradd/groupadd accept it by default: a-z, 0-9, '_', '-',
/// starting with a letter or '_', at most 32 characters.
pub fn unix_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err("must be a login name (a-z, 0-9, '_', '-', starting with a letter or '_', at most 32 characters)".into())
    }
}

/// A Unix user name (see `unix_name`).
pub fn unix_user(s: &str) -> Result<(), String> {
    unix_name(s)
}

/// A Unix group name (see `unix_name`).
pub fn unix_group(s: &str) -> Result<(), String> {
    unix_name(s).map_err(|_| {
        "must be a group name (a-z, 0-9, '_', '-', starting with a letter or '_', at most 32 characters)".into()
    })
}

/// A systemd unit name, with or without its suffix (`monad-validator`, `foo@1.service`):
/// a-z, A-Z, 0-9 and `:-_.@`, at most 255 characters, not starting with '-' or '.'.
pub fn unit_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.@".contains(c))
        && !s.starts_with(['-', '.', '@'])
        && !s.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err("is not a systemd unit name (a-z, A-Z, 0-9 and `:-_.@`, not starting with `-`, `.` or `@`)".into())
    }
}

/// A Debian package name: at least 2 of a-z, 0-9, `+-.`, starting with a letter or digit.
pub fn package_name(s: &str) -> Result<(), String> {
    let ok = s.len() >= 2
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("is not a valid package name (a-z, 0-9, `+-.`, starting with a letter or digit)".into())
    }
}

/// A managed path on a node: absolute, normalised (no `.`, `..`, `//`), not `/` itself, no
/// blanks or control characters (the probe's records are space separated), at most 4096 bytes.
pub fn abs_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("`{}` is not an absolute path", shown(p)));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("`{}` contains `.` or `..`", shown(p)));
    }
    if p == "/"
        || p.contains("//")
        || p.len() > 4096
        || p.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!("`{}` is not a usable path", shown(p)));
    }
    Ok(())
}

/// A path on the operator's machine (identity file, known_hosts): not empty, one line, no
/// control characters.
pub fn local_path(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("may not be empty".into())
    } else if s.chars().any(char::is_control) {
        Err("may not contain newlines or control characters".into())
    } else {
        Ok(())
    }
}

/// An inventory group name: a-z, 0-9, '-' and '_', starting with a letter, at most 63.
pub fn group_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err("must be a group name (a-z, 0-9, '-', '_', starting with a letter, at most 63 characters)".into())
    }
}

/// A module name (its directory under `modules/`): a-z, 0-9, '-' and '_', starting with a
/// letter or digit, at most 63.
pub fn module_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err("must be a module name (a-z, 0-9, '-', '_', starting with a letter or digit, at most 63 characters)".into())
    }
}

/// A handler a module declares (`flush cache`): letters, digits, single spaces and `-_.:@`,
/// starting with a letter or digit, at most 64 characters.
pub fn handler_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " -_.:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err("is not a handler name (letters, digits, single spaces and `-_.:@`, starting with a letter or digit, at most 64 characters)".into())
    }
}

/// A TCP/UDP port, 1-65535.
pub fn port(n: u64) -> Result<(), String> {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err("must be a port number, 1 to 65535".into())
    }
}

/// `host:port` (host an IP, `[v6]`, or a DNS name) for a TCP health check.
pub fn tcp_addr(s: &str) -> Result<(), String> {
    let bad =
        || "must be HOST:PORT (an IP address, [IPv6] or DNS name, and a port 1-65535)".to_string();
    let (host, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || hostname(host).is_ok(),
    };
    let port_ok = p.parse::<u64>().is_ok_and(|n| port(n).is_ok()) && !p.starts_with('0');
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// An `http://` or `https://` URL to a host (IP, `[v6]` or DNS name, optional port), whose
/// path and query use only `A-Z a-z 0-9 - . _ ~ / ? = % : @ + ,` (no blanks, quotes,
/// backticks, `$`, `;`, `&`, `|`, `<`, `>`, parentheses, `*`, `!`, `#`, `\`).
pub fn http_url(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("is not a usable http(s) URL: {why}");
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not allowed"));
    }
    let host_ok = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((ip, tail)) => {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (tail.is_empty()
                        || tail
                            .strip_prefix(':')
                            .is_some_and(|p| p.parse::<u64>().is_ok_and(|n| port(n).is_ok())))
            }
            None => false,
        }
    } else {
        let (host, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        (host.parse::<std::net::Ipv4Addr>().is_ok() || hostname(host).is_ok())
            && p.is_none_or(|p| p.parse::<u64>().is_ok_and(|n| port(n).is_ok()))
    };
    if !host_ok {
        return Err(bad(
            "no valid host (an IP address, [IPv6] or DNS name, and an optional port 1-65535)",
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~/?=%:@+,".contains(*c)))
    {
        return Err(bad(&format!(
            "{} is not allowed in its path (use %-encoding)",
            char_name(c)
        )));
    }
    Ok(())
}

/// One line of free text (a firewall rule's comment): no control characters, at most 256
/// characters.
pub fn comment(s: &str) -> Result<(), String> {
    if s.len() > 256 {
        return Err("is longer than 256 characters".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("may not contain {}", char_name(c)));
    }
    Ok(())
}

/// `c` as a message shows it: printable characters in backticks, others by name.
fn char_name(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        '`' => "a backtick".into(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// A value as an error message shows it: control characters escaped, at most 80 characters.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for good in ["validator-1", "v.1", "a"] {
            assert!(node_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "A", "a b", "a/b", "a_b", &"a".repeat(64)] {
            assert!(node_name(bad).is_err(), "{bad}");
        }
        assert!(new_node_name("validator-4").is_ok());
        assert!(new_node_name(&"a".repeat(63)).is_ok());
        for bad in ["", "4validator", "-a", "a-", "Val", "a.b", "a_b", "../x"] {
            assert!(new_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_hosts_and_jumps() {
        for good in ["validator-1", "bastion.example.org", "10.77.1.2", "v_1"] {
            assert!(ssh_host(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            ".x",
            "a b",
            "a\nb",
            "root@x",
            "x:22",
            "a;b",
        ] {
            assert!(ssh_host(bad).is_err(), "{bad:?}");
        }
        for good in [
            "bastion",
            "root@10.77.1.2",
            "root@10.77.1.2:2222,ops@b2",
            "b:22",
        ] {
            assert!(proxy_jump(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ",",
            "b,",
            "-oProxyCommand=sh",
            "@b",
            "-l@b",
            "b:0",
            "b:x",
            "b:70000",
            "a b",
            "b\n",
        ] {
            assert!(proxy_jump(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        for good in [
            "10.77.4.2",
            "::1",
            "2001:db8::1",
            "node-4.example.org",
            "Node-4.Example.org.",
            "localhost",
        ] {
            assert!(address(good).is_ok(), "{good}");
        }
        for bad in [
            "10.77.4",
            "10.77.4.256",
            "a b",
            "",
            "-x.org",
            "x..org",
            "x-.org",
            "[::1]",
            "1.2.3.4:22",
            "host;rm -rf /",
            "$(id)",
            "a\nb",
            "a_b.org",
            &format!("{}.org", "a".repeat(64)),
        ] {
            assert!(address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unix_names() {
        for good in ["root", "deploy", "_svc-1", "prometheus", "systemd-network"] {
            assert!(
                unix_user(good).is_ok() && unix_group(good).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "Root",
            "1x",
            "-x",
            "a b",
            "a$",
            "a;b",
            "a.b",
            &"a".repeat(33),
        ] {
            assert!(unix_user(bad).is_err() && unix_group(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unit_names() {
        for good in [
            "monad-validator",
            "prometheus-node-exporter.service",
            "getty@tty1.service",
            "sys-devices.mount",
            "a:b.socket",
        ] {
            assert!(unit_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "-x", "--now", ".x", "a b", "a;reboot", "a\"", "$(x)", "x.", "@x",
        ] {
            assert!(unit_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packages_paths_groups_modules_handlers() {
        assert!(package_name("prometheus-node-exporter").is_ok());
        assert!(package_name("libc6.1+x").is_ok());
        for bad in ["a", "-x", "A", "a b", "x;y", "x=1"] {
            assert!(package_name(bad).is_err(), "{bad}");
        }
        assert!(abs_path("/etc/app/app.conf").is_ok());
        for bad in [
            "etc/x",
            "/etc/../x",
            "/etc/./x",
            "/",
            "//etc",
            "/etc/a b",
            "/etc/a\nb",
            "/etc/a\tb",
        ] {
            assert!(abs_path(bad).is_err(), "{bad:?}");
        }
        assert!(abs_path(&format!("/{}", "a".repeat(5000))).is_err());
        assert!(local_path("~/.ssh/id_ed25519").is_ok());
        assert!(local_path("a\nb").is_err() && local_path("").is_err());
        for good in ["validators", "edge_nodes", "rpc-2"] {
            assert!(group_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Validators", "1x", "a b", "a.b", "a/b"] {
            assert!(group_name(bad).is_err(), "{bad}");
        }
        for good in ["node_exporter", "chrony", "0x"] {
            assert!(module_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".x", "A", "a b"] {
            assert!(module_name(bad).is_err(), "{bad}");
        }
        for good in ["flush cache", "restart-all", "reload:nginx"] {
            assert!(handler_name(good).is_ok(), "{good}");
        }
        for bad in ["", " x", "x ", "a  b", "a;b", "a\nb", "$(x)", "a'b"] {
            assert!(handler_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_and_tcp() {
        assert!(port(1).is_ok() && port(65535).is_ok());
        assert!(port(0).is_err() && port(65536).is_err());
        for good in ["127.0.0.1:8000", "[::1]:22", "localhost:9100"] {
            assert!(tcp_addr(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            ":22",
            "$(id):22",
            "a b:22",
            "::1:22",
            "h:022",
        ] {
            assert!(tcp_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_urls() {
        for good in [
            "http://127.0.0.1:8080/status",
            "https://node.example.org/health?ready=1",
            "http://[::1]:9090/-/healthy",
            "http://localhost",
            "http://127.0.0.1:8080/a%20b",
        ] {
            assert!(http_url(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://x/",
            "127.0.0.1:8080/status",
            "http://",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://user:pw@host/",
            "http://host/a b",
            "http://host/$(id)",
            "http://host/`id`",
            "http://host/x;reboot",
            "http://host/x'y",
            "http://host/x\"y",
            "http://host/?a=1&b=2",
            "http://host/x|y",
            "http://host/x\ny",
            "http://ho$t/",
            "http://[::1/",
        ] {
            assert!(http_url(bad).is_err(), "{bad:?}");
        }
        let e = http_url("http://host/a b").unwrap_err();
        assert!(e.contains("a space"), "{e}");
    }

    #[test]
    fn comments_and_shown() {
        assert!(comment("ssh from the office").is_ok() && comment("it's").is_ok());
        for bad in ["a\nb", "a\tb", "a\rb", &"x".repeat(300)] {
            assert!(comment(bad).is_err(), "{bad:?}");
        }
        assert_eq!(shown("a\nb"), "a\\nb");
        assert!(shown(&"x".repeat(100)).ends_with("..."));
    }
}
