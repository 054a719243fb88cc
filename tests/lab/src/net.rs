//! The lab's own network: nodes reach each other and the lab's services, and nothing else.
//!
//! Each node has a /24 of its own (10.77.<i>.0/24, host side .1) and one route, to
//! 10.77.0.0/16 via its host side: no default route. On the host:
//! - forwarding is switched on per lab link only (`net.ipv4.conf.<veth>.forwarding`), never
//!   globally, so the host routes nothing else;
//! - strict reverse-path filtering on each lab link drops packets a node sends from an
//!   address that is not its own;
//! - two policy rules: traffic from the lab to the lab is routed as usual; traffic from the lab
//!   to anywhere else is refused (`prohibit`), even if a node gives itself a default route;
//! - an `unreachable` route for the whole 10.77.0.0/16: a node that is down (its /24 gone
//!   with its link) is refused at once, by the host or to its peers, instead of being looked
//!   for through the host's default route;
//! - 10.77.0.1 on the loopback: the address of the lab's services (the alert webhook
//!   receiver), which every node reaches whichever nodes are up.
//!
//! `teardown` removes the rules and the address; the per-link settings go with the links.

use crate::sys;
use anyhow::{Context, Result};

/// The lab: every node's /24.
pub const LAB_CIDR: &str = "10.77.0.0/16";
/// Where lab services listen (on the host's loopback, reached through each node's route).
pub const SERVICE_ADDR: &str = "10.77.0.1";
/// Policy rule preferences (before `main` at 32766): lab-to-lab, then lab-to-elsewhere.
const PREF_LAB: &str = "17700";
const PREF_REFUSE: &str = "17701";

/// The rules and the service address (idempotent: an old lab's are replaced).
pub fn setup() -> Result<()> {
    teardown();
    sys::run(sys::tool("ip").args([
        "rule", "add", "pref", PREF_LAB, "from", LAB_CIDR, "to", LAB_CIDR, "lookup", "main",
    ]))?;
    sys::run(sys::tool("ip").args([
        "rule",
        "add",
        "pref",
        PREF_REFUSE,
        "from",
        LAB_CIDR,
        "prohibit",
    ]))?;
    sys::run(sys::tool("ip").args(["route", "replace", "unreachable", LAB_CIDR]))?;
    sys::run(sys::tool("ip").args(["addr", "add", &format!("{SERVICE_ADDR}/32"), "dev", "lo"]))?;
    Ok(())
}

/// Forward what arrives on a lab link (to other lab links; the rules refuse the rest) and
/// drop what a node sends from an address it does not own.
pub fn link_up(veth: &str) -> Result<()> {
    for (key, value) in [("forwarding", "1"), ("rp_filter", "1")] {
        let p = format!("/proc/sys/net/ipv4/conf/{veth}/{key}");
        std::fs::write(&p, value).with_context(|| format!("cannot set {p}"))?;
    }
    Ok(())
}

/// Remove the rules and the service address, whatever is left of them.
pub fn teardown() {
    for pref in [PREF_LAB, PREF_REFUSE] {
        // `ip rule del` removes one rule a call: a crashed lab may have left several.
        for _ in 0..8 {
            if sys::run(sys::tool("ip").args(["rule", "del", "pref", pref])).is_err() {
                break;
            }
        }
    }
    let _ = sys::run(sys::tool("ip").args(["route", "del", "unreachable", LAB_CIDR]));
    let _ =
        sys::run(sys::tool("ip").args(["addr", "del", &format!("{SERVICE_ADDR}/32"), "dev", "lo"]));
}

/// What of the lab's network is still on the host (for `lab down`'s check): rule lines of
/// `ip rule show` output with the lab's preferences, the unreachable route (`ip route show
/// type unreachable`), and the service address on `lo`.
pub fn leftovers(ip_rules: &str, routes: &str, lo_addrs: &str) -> Vec<String> {
    let mut v: Vec<String> = ip_rules
        .lines()
        .filter(|l| {
            let pref = l.split(':').next().unwrap_or("").trim();
            pref == PREF_LAB || pref == PREF_REFUSE
        })
        .map(|l| l.trim().to_string())
        .collect();
    v.extend(
        routes
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == LAB_CIDR))
            .map(|l| l.trim().to_string()),
    );
    if lo_addrs
        .split_whitespace()
        .any(|w| w == format!("{SERVICE_ADDR}/32"))
    {
        v.push(format!("{SERVICE_ADDR}/32 on lo"));
    }
    v
}

/// `leftovers` of the live host.
pub fn live_leftovers() -> Vec<String> {
    let rules = sys::run(sys::tool("ip").args(["rule", "show"]))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let routes = sys::run(sys::tool("ip").args(["route", "show", "type", "unreachable"]))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let lo = sys::run(sys::tool("ip").args(["-o", "-4", "addr", "show", "dev", "lo"]))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    leftovers(&rules, &routes, &lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_found_in_ip_output() {
        let rules =
            "0:\tfrom all lookup local\n17700:\tfrom 10.77.0.0/16 to 10.77.0.0/16 lookup main\n\
                     17701:\tfrom 10.77.0.0/16 prohibit\n32766:\tfrom all lookup main\n";
        let lo =
            "1: lo    inet 127.0.0.1/8 scope host lo\n1: lo    inet 10.77.0.1/32 scope global lo\n";
        assert_eq!(
            leftovers(rules, "unreachable 10.77.0.0/16 \n", lo),
            vec![
                "17700:\tfrom 10.77.0.0/16 to 10.77.0.0/16 lookup main",
                "17701:\tfrom 10.77.0.0/16 prohibit",
                "unreachable 10.77.0.0/16",
                "10.77.0.1/32 on lo"
            ]
        );
        assert!(leftovers(
            "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n177000:\tx\n",
            "unreachable 10.78.0.0/16\n",
            "1: lo    inet 127.0.0.1/8 scope host lo\n1: lo inet 10.77.0.10/32\n"
        )
        .is_empty());
    }
}
