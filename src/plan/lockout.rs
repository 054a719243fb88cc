//! Pure: would a node's desired firewall still admit strata's own SSH connection?

use crate::model::{cidr_contains, port_matches, DesiredState, Resource};

/// Would this firewall still admit strata's SSH connection? `client` is the operator's address
/// as the node sees it (SSH_CONNECTION). Returns why not, if not.
pub fn lockout(desired: &DesiredState, client: Option<&str>) -> Option<String> {
    let fw = desired.resources.iter().find_map(|r| match r {
        Resource::Firewall(f) => Some(f),
        _ => None,
    })?;
    let port = desired.node.ssh.port;
    if fw.default_incoming == "allow" {
        return None;
    }
    let client_ip = client.and_then(|c| c.parse::<std::net::IpAddr>().ok());
    let admits = fw.rules.iter().any(|r| {
        matches!(r.action.as_str(), "allow" | "limit")
            && r.proto != "udp"
            && port_matches(&r.port, port)
            && (r.from == "any" || client_ip.is_none_or(|ip| cidr_contains(&r.from, ip)))
    });
    if admits {
        None
    } else {
        Some(format!(
            "the firewall would not admit SSH port {port} from {} (strata's own address as the node sees it): applying it would lock strata out",
            client.unwrap_or("?")
        ))
    }
}
