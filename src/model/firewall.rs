//! Firewall (ufw) rules: the one home of how a rule is written, compared, keyed and parsed.

use serde::{Deserialize, Serialize};

/// The node's whole ufw configuration (ufw is global, so all modules' rules merge into one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FirewallRes {
    /// `deny`, `allow` or `reject`.
    pub default_incoming: String,
    pub default_outgoing: String,
    pub rules: Vec<FwRule>,
    pub module: String,
}

/// One ufw rule, normalised so that it compares equal to what `ufw show added` reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FwRule {
    /// `allow`, `deny`, `limit` or `reject`.
    pub action: String,
    /// `22`, or a range `60000:61000`.
    pub port: String,
    /// `tcp`, `udp` or `any`.
    pub proto: String,
    /// `any` or a CIDR / address.
    pub from: String,
    pub comment: Option<String>,
}

impl FwRule {
    /// How a rule reads in a plan: `allow 9100/tcp from 10.77.0.0/16 (node_exporter)`.
    pub fn text(&self) -> String {
        rule_text(self)
    }

    /// The rule's identity (its comment is not part of it): `allow 22/tcp from any`.
    pub fn key(&self) -> String {
        rule_key(self)
    }

    /// The same rule, whatever its comment.
    pub fn same(&self, other: &FwRule) -> bool {
        same_rule(self, other)
    }

    /// Rebuild a rule from its key (`allow 22/tcp from any`); None if it is not one.
    pub fn from_key(key: &str) -> Option<FwRule> {
        let mut it = key.split(' ');
        let action = it.next()?.to_string();
        let (port, proto) = it.next()?.split_once('/')?;
        if it.next()? != "from" {
            return None;
        }
        let from = it.next()?.to_string();
        if it.next().is_some() {
            return None;
        }
        Some(FwRule {
            action,
            port: port.into(),
            proto: proto.into(),
            from,
            comment: None,
        })
    }
}

/// How a rule reads in a plan: `allow 9100/tcp from 10.77.0.0/16 (node_exporter)`.
fn rule_text(r: &FwRule) -> String {
    let proto = if r.proto == "any" {
        String::new()
    } else {
        format!("/{}", r.proto)
    };
    let comment = r
        .comment
        .as_ref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    format!("{} {}{proto} from {}{comment}", r.action, r.port, r.from)
}
fn same_rule(a: &FwRule, b: &FwRule) -> bool {
    a.action == b.action && a.port == b.port && a.proto == b.proto && a.from == b.from
}
/// A rule's identity (its comment is not part of it).
fn rule_key(r: &FwRule) -> String {
    format!("{} {}/{} from {}", r.action, r.port, r.proto, r.from)
}
pub fn port_matches(spec: &str, port: u16) -> bool {
    match spec.split_once(':') {
        Some((a, b)) => {
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= port && port <= b)
        }
        None => spec.parse::<u16>() == Ok(port),
    }
}
pub fn valid_port(s: &str) -> bool {
    let ok = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
    match s.split_once(':') {
        Some((a, b)) => {
            ok(a) && ok(b) && a.parse::<u16>().unwrap_or(0) < b.parse::<u16>().unwrap_or(0)
        }
        None => ok(s),
    }
}
pub fn valid_cidr(s: &str) -> bool {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= max))
        }
        Err(_) => false,
    }
}
/// The form ufw writes a valid source in, when it is not the one given: ufw keeps a network's
/// address with its host bits cleared and a single host (/32, /128) as a bare address, so a
/// rule declared any other way would never read back as declared (drift on every plan).
pub fn ufw_form(cidr: &str) -> Option<String> {
    use std::net::IpAddr;
    let (addr, bits) = cidr.split_once('/')?;
    let (ip, bits) = (addr.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?);
    let net = match ip {
        IpAddr::V4(a) if bits <= 32 => {
            if bits == 32 {
                return Some(a.to_string());
            }
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) if bits <= 128 => {
            if bits == 128 {
                return Some(a.to_string());
            }
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
        _ => return None,
    };
    (net != ip).then(|| format!("{net}/{bits}"))
}

/// Does `cidr` (an address or address/bits) contain `ip`?
pub fn cidr_contains(cidr: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (addr, bits) = match cidr.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    match (addr.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(net)), IpAddr::V4(ip)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (Ok(IpAddr::V6(net)), IpAddr::V6(ip)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse().unwrap();
        assert!(cidr_contains("10.77.0.0/16", ip("10.77.3.1")));
        assert!(!cidr_contains("10.77.0.0/16", ip("10.78.0.1")));
        assert!(cidr_contains("10.1.2.3", ip("10.1.2.3")));
        assert!(cidr_contains("0.0.0.0/0", ip("192.0.2.1")));
        assert!(cidr_contains("2001:db8::/32", ip("2001:db8::1")));
        assert!(!cidr_contains("2001:db8::/32", ip("10.0.0.1")));
    }

    #[test]
    fn sources_ufw_would_write_otherwise() {
        assert_eq!(ufw_form("10.0.0.1/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ufw_form("10.0.0.1/32").as_deref(), Some("10.0.0.1"));
        assert_eq!(ufw_form("10.9.9.9/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(ufw_form("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(ufw_form("2001:db8::1/128").as_deref(), Some("2001:db8::1"));
        for ok in [
            "10.0.0.0/8",
            "10.0.0.1",
            "0.0.0.0/0",
            "2001:db8::/32",
            "10.77.1.0/24",
        ] {
            assert_eq!(ufw_form(ok), None, "{ok}");
        }
    }
}
