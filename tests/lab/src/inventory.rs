//! Pure description of the lab's nodes: names, addresses, interfaces, and the
//! `inventory/lab.yaml` the rest of strata reads.

use serde::{Deserialize, Serialize};

/// Node i (1-based) of the lab. The index decides its addresses; the name its hostname,
/// machine name and host-side interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub index: u32,
    pub name: String,
    #[serde(default)]
    pub kind: NodeKind,
    /// The Debian release the node runs (records from before releases: bookworm).
    #[serde(default)]
    pub release: Release,
}

/// A Debian release a lab node can run: each has its own cached base and apt repository.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// Debian 12.
    #[default]
    Bookworm,
    /// Debian 13.
    Trixie,
}

impl Release {
    pub const ALL: [Release; 2] = [Release::Bookworm, Release::Trixie];

    /// The suite name debootstrap and apt use.
    pub fn suite(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    pub fn parse(s: &str) -> Option<Release> {
        Release::ALL.into_iter().find(|r| r.suite() == s)
    }
}

/// What `lab up --release` asks for: one release for every node, or both side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseChoice {
    All(Release),
    /// Odd nodes bookworm, even nodes trixie (validator-1 bookworm, validator-2 trixie, ...).
    Mixed,
}

impl ReleaseChoice {
    /// `bookworm`, `trixie` or `mixed`.
    pub fn parse(s: &str) -> Result<ReleaseChoice, String> {
        match s {
            "mixed" => Ok(ReleaseChoice::Mixed),
            _ => Release::parse(s).map(ReleaseChoice::All).ok_or_else(|| {
                format!("unknown release `{s}`: bookworm (Debian 12), trixie (Debian 13) or mixed (odd nodes bookworm, even nodes trixie)")
            }),
        }
    }

    /// The release of node `index` (1-based).
    pub fn for_index(self, index: u32) -> Release {
        match self {
            ReleaseChoice::All(r) => r,
            ReleaseChoice::Mixed if index.is_multiple_of(2) => Release::Trixie,
            ReleaseChoice::Mixed => Release::Bookworm,
        }
    }
}

/// How a node came to be, which decides what it looks like and where it is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// One of `lab up`'s validator-1..N.
    #[default]
    Lab,
    /// `lab add NAME`: a normal lab node next to them.
    Added,
    /// `lab add NAME --bare`: a fresh provider host (no deploy user, no module packages,
    /// password login on, host key not in the lab's known_hosts, not in the inventory).
    Bare,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Lab => "lab",
            NodeKind::Added => "added",
            NodeKind::Bare => "bare",
        }
    }
}

/// Longest node name: the host side of its veth is `ve-NAME`, and Linux interface names
/// have at most 15 characters.
pub const MAX_NAME_LEN: usize = 15 - "ve-".len();

/// The most nodes the lab supports (each has its own 10.77.<i>.0/24). From validator-100 on
/// `ve-NAME` no longer fits in 15 characters: those nodes' interface is `ve-v<i>`.
pub const MAX_NODES: u32 = 100;

const REGIONS: &[&str] = &["lab-a", "lab-b", "lab-c"];

impl NodeSpec {
    pub fn new(index: u32) -> NodeSpec {
        assert!((1..=MAX_NODES).contains(&index), "node index {index}");
        NodeSpec {
            index,
            name: format!("validator-{index}"),
            kind: NodeKind::Lab,
            release: Release::Bookworm,
        }
    }

    /// Parse a node name back into its spec (`validator-7`).
    pub fn parse(name: &str) -> Option<NodeSpec> {
        let i: u32 = name.strip_prefix("validator-")?.parse().ok()?;
        ((1..=MAX_NODES).contains(&i) && name == format!("validator-{i}")).then(|| NodeSpec::new(i))
    }

    /// The node's address (inside its network namespace).
    pub fn address(&self) -> String {
        format!("10.77.{}.2", self.index)
    }

    /// The host side of the node's veth pair: the node's gateway to the rest of the lab.
    pub fn host_address(&self) -> String {
        format!("10.77.{}.1", self.index)
    }

    /// The host side of the node's veth pair, with prefix length.
    pub fn host_cidr(&self) -> String {
        format!("{}/24", self.host_address())
    }

    /// The host-side interface of the node's veth: `ve-` + machine name, as systemd-nspawn's
    /// --network-veth names it; `ve-v<i>` where that would not fit (see `node::boot`).
    pub fn veth(&self) -> String {
        if self.name.len() <= MAX_NAME_LEN {
            format!("ve-{}", self.name)
        } else {
            format!("ve-v{}", self.index)
        }
    }

    pub fn region(&self) -> &'static str {
        REGIONS[(self.index as usize - 1) % REGIONS.len()]
    }

    /// The node's systemd-networkd file: must sort before nspawn's shipped
    /// 80-container-host0.network, which would otherwise run DHCP on host0.
    pub fn network_file(&self) -> String {
        format!(
            "[Match]\nName=host0\n\n[Network]\nAddress={}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n\
             # The other nodes and the lab's services (see net.rs): no default route.\n\
             [Route]\nDestination={}\nGateway={}\n",
            self.address(),
            crate::net::LAB_CIDR,
            self.host_address()
        )
    }
}

/// The nodes of an N-node lab, node i running `release(i)`.
pub fn specs(n: u32, release: impl Fn(u32) -> Release) -> Vec<NodeSpec> {
    (1..=n)
        .map(|i| NodeSpec {
            release: release(i),
            ..NodeSpec::new(i)
        })
        .collect()
}

/// Why a name cannot be a lab node's (it is a hostname, a machine name and part of an
/// interface name), or None when it can.
pub fn name_problem(name: &str) -> Option<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        Some(format!(
            "node name {name:?} must have 1 to {MAX_NAME_LEN} characters (its interface is ve-{name}, at most 15)"
        ))
    } else if !ok_chars
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || name.ends_with('-')
    {
        Some(format!(
            "node name {name:?} must be lowercase letters, digits and '-', start with a letter and not end with '-'"
        ))
    } else {
        None
    }
}

/// The index for a new node: `validator-N` gets N when free (name and address agree, as
/// for `lab up`'s nodes); otherwise the lowest free index. None when all are taken.
pub fn allocate_index(name: &str, used: &[u32]) -> Option<u32> {
    let free = |i: &u32| !used.contains(i);
    NodeSpec::parse(name)
        .map(|s| s.index)
        .filter(free)
        .or_else(|| (1..=MAX_NODES).find(free))
}

const INVENTORY_HEAD: &str = r#"# Generated by `strata-lab up`: the local lab's nodes (systemd-nspawn, see README).
defaults:
  ssh:
    user: root
    port: 22
    identity_file: .lab/ssh/id_ed25519
    known_hosts: .lab/known_hosts
    host_key_checking: strict
    connect_timeout: 10
groups:
  validators:
    modules: [validator, chrony, logrotate, ufw, node_exporter, prometheus, alertmanager, promtail]
    serial: 1
    health:
      units: [monad-validator]
      http: "http://127.0.0.1:8080/status"
      timeout_secs: 30
    vars:
      # Loki and Promtail are not packaged in Debian: the lab renders and installs their configs
      # but does not run them.
      promtail:
        manage_service: false
      monitoring:
        cidrs: ["10.77.0.0/16"]
      # The validator release comes from the repo (modules/validator/lab-releases), pushed over SSH:
      # lab nodes reach nothing outside.
      validator:
        release:
          base_url: modules/validator/lab-releases
hosts:
"#;

/// `inventory/lab.yaml` for these nodes; deterministic (same nodes, same bytes).
/// `kept` is host entries carried over verbatim (see `host_blocks`).
pub fn lab_inventory(nodes: &[NodeSpec], kept: &str) -> String {
    let mut s = INVENTORY_HEAD.to_string();
    for n in nodes {
        s.push_str(&format!(
            "  {}:\n    address: {}\n    groups: [validators]\n    region: {}\n    provider: nspawn\n",
            n.name,
            n.address(),
            n.region()
        ));
    }
    s.push_str(kept);
    s
}

/// The `hosts:` entries of `names` in an inventory text, verbatim: a bare node's entry was
/// written by the operator (`strata node add`), so regenerating the lab's inventory keeps it.
/// An entry is its `  NAME:` line and every following line indented deeper (or blank).
pub fn host_blocks(inventory: &str, names: &[&str]) -> String {
    let mut out = String::new();
    let mut in_hosts = false;
    let mut keeping = false;
    for line in inventory.lines() {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent == 0 {
            in_hosts = line.trim_end() == "hosts:";
            keeping = false;
            continue;
        }
        if !in_hosts {
            continue;
        }
        if indent == 2 && !line.trim_start().starts_with('#') {
            let key = line.trim().trim_end_matches(':');
            keeping = line.trim_end().ends_with(':') && names.contains(&key);
        } else if indent <= 2 && !line.trim().is_empty() {
            keeping = false;
        }
        if keeping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// known_hosts lines that name one of `addresses` (`ADDR` or `[ADDR]:PORT`, possibly in a
/// comma list): for a bare node they were recorded by bootstrap, not by the lab.
pub fn known_hosts_for(known_hosts: &str, addresses: &[String]) -> Vec<String> {
    known_hosts
        .lines()
        .filter(|l| {
            let hosts = l.split_whitespace().next().unwrap_or("");
            hosts.split(',').any(|h| {
                let h = h
                    .strip_prefix('[')
                    .and_then(|h| h.split_once("]:").map(|(a, _)| a))
                    .unwrap_or(h);
                addresses.iter().any(|a| a == h)
            })
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_interfaces() {
        let n = NodeSpec::new(12);
        assert_eq!(n.name, "validator-12");
        assert_eq!(n.address(), "10.77.12.2");
        assert_eq!(n.host_cidr(), "10.77.12.1/24");
        assert_eq!(n.veth(), "ve-validator-12");
        assert_eq!(NodeSpec::new(100).veth(), "ve-v100");
        assert_eq!(NodeSpec::parse("validator-100"), Some(NodeSpec::new(100)));
        assert_eq!(NodeSpec::parse("validator-101"), None);
        assert!(NodeSpec::new(MAX_NODES).veth().len() <= 15);
        assert_eq!(NodeSpec::parse("validator-3"), Some(NodeSpec::new(3)));
        assert_eq!(NodeSpec::parse("validator-03"), None);
        assert_eq!(NodeSpec::parse("validator-0"), None);
        assert_eq!(NodeSpec::parse("validator-1000"), None);
        assert_eq!(NodeSpec::parse("x-1"), None);
    }

    #[test]
    fn regions_cycle() {
        let r: Vec<_> = specs(4, |_| Release::Bookworm)
            .iter()
            .map(|n| n.region())
            .collect();
        assert_eq!(r, ["lab-a", "lab-b", "lab-c", "lab-a"]);
    }

    #[test]
    fn inventory_is_deterministic_and_parses() {
        let a = lab_inventory(&specs(3, |_| Release::Bookworm), "");
        assert_eq!(a, lab_inventory(&specs(3, |_| Release::Bookworm), ""));
        let v: serde_yaml::Value = serde_yaml::from_str(&a).unwrap();
        assert_eq!(
            v["hosts"]["validator-2"]["address"].as_str(),
            Some("10.77.2.2")
        );
        assert_eq!(v["hosts"]["validator-3"]["region"].as_str(), Some("lab-c"));
        assert_eq!(
            v["defaults"]["ssh"]["host_key_checking"].as_str(),
            Some("strict")
        );
        assert_eq!(v["groups"]["validators"]["serial"].as_u64(), Some(1));
        assert_eq!(v["hosts"].as_mapping().unwrap().len(), 3);
    }

    #[test]
    fn releases_by_choice() {
        let mixed = ReleaseChoice::parse("mixed").unwrap();
        let r: Vec<_> = specs(4, |i| mixed.for_index(i))
            .iter()
            .map(|n| n.release.suite())
            .collect();
        assert_eq!(r, ["bookworm", "trixie", "bookworm", "trixie"]);
        let t = ReleaseChoice::parse("trixie").unwrap();
        assert_eq!(t, ReleaseChoice::All(Release::Trixie));
        assert!((1..=5).all(|i| t.for_index(i) == Release::Trixie));
        assert_eq!(
            ReleaseChoice::parse("bookworm").unwrap().for_index(2),
            Release::Bookworm
        );
        for bad in ["", "Trixie", "sid", "jammy", "13"] {
            let e = ReleaseChoice::parse(bad).unwrap_err();
            assert!(
                e.contains("bookworm (Debian 12), trixie (Debian 13) or mixed"),
                "{e}"
            );
        }
        // The inventory is the same whatever the releases (it stays as committed).
        let one = lab_inventory(&specs(3, |i| mixed.for_index(i)), "");
        assert_eq!(one, lab_inventory(&specs(3, |_| Release::Bookworm), ""));
    }

    #[test]
    fn node_names() {
        assert_eq!(name_problem("validator-4"), None);
        assert_eq!(name_problem("fra-1"), None);
        assert_eq!(name_problem("abcdefghijkl"), None); // 12: ve-abcdefghijkl is 15
        assert!(name_problem("abcdefghijklm").unwrap().contains("1 to 12"));
        assert!(name_problem("").is_some());
        for bad in ["Validator", "1node", "a_b", "a b", "node-", "a/b", "-x"] {
            assert!(name_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn index_allocation() {
        // validator-N gets N when free.
        assert_eq!(allocate_index("validator-4", &[1, 2, 3]), Some(4));
        assert_eq!(allocate_index("validator-9", &[1, 2, 3]), Some(9));
        // Otherwise the lowest free index.
        assert_eq!(allocate_index("fra-1", &[1, 2, 3]), Some(4));
        assert_eq!(allocate_index("fra-1", &[1, 3]), Some(2));
        assert_eq!(allocate_index("validator-2", &[1, 2, 3]), Some(4));
        assert_eq!(allocate_index("x", &[]), Some(1));
        let all: Vec<u32> = (1..=MAX_NODES).collect();
        assert_eq!(allocate_index("x", &all), None);
        assert_eq!(allocate_index("validator-5", &all), None);
    }

    #[test]
    fn node_spec_serialises_with_kind() {
        let s = NodeSpec {
            index: 4,
            name: "validator-4".into(),
            kind: NodeKind::Bare,
            release: Release::Trixie,
        };
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.contains(r#""kind":"bare""#), "{j}");
        assert!(j.contains(r#""release":"trixie""#), "{j}");
        assert_eq!(serde_json::from_str::<NodeSpec>(&j).unwrap(), s);
        // A record without a kind (older labs) is a `lab up` node.
        let old: NodeSpec = serde_json::from_str(r#"{"index":2,"name":"validator-2"}"#).unwrap();
        assert_eq!(old, NodeSpec::new(2));
    }

    #[test]
    fn host_blocks_keep_entries_verbatim() {
        let inv = lab_inventory(&specs(2, |_| Release::Bookworm), "");
        let with_bare = format!(
            "{inv}  validator-4:\n    # added by node add\n    address: 10.77.4.2\n\n    groups: [validators]\n    labels: {{tier: new}}\n"
        );
        let kept = host_blocks(&with_bare, &["validator-4"]);
        assert_eq!(
            kept,
            "  validator-4:\n    # added by node add\n    address: 10.77.4.2\n\n    groups: [validators]\n    labels: {tier: new}\n"
        );
        // Regenerating keeps it and the result still parses.
        let regen = lab_inventory(&specs(3, |_| Release::Bookworm), &kept);
        let v: serde_yaml::Value = serde_yaml::from_str(&regen).unwrap();
        assert_eq!(v["hosts"].as_mapping().unwrap().len(), 4);
        assert_eq!(
            v["hosts"]["validator-4"]["labels"]["tier"].as_str(),
            Some("new")
        );
        // Names not asked for, and keys outside `hosts:`, are not kept.
        assert_eq!(host_blocks(&with_bare, &["validator-9"]), "");
        assert_eq!(host_blocks(&with_bare, &["validators"]), "");
        // A following top-level key ends the entry.
        let after = format!("{with_bare}extra:\n  x: 1\n");
        assert_eq!(host_blocks(&after, &["validator-4"]), kept);
    }

    #[test]
    fn known_hosts_lines_by_address() {
        let kh = "10.77.1.2 ssh-ed25519 AAA1\n10.77.4.2 ssh-ed25519 AAA4\n\
                  [10.77.4.2]:2222 ssh-rsa BBB4\nfoo,10.77.4.2 ecdsa CCC4\n10.77.4.20 ssh-ed25519 X\n";
        assert_eq!(
            known_hosts_for(kh, &["10.77.4.2".to_string()]),
            vec![
                "10.77.4.2 ssh-ed25519 AAA4",
                "[10.77.4.2]:2222 ssh-rsa BBB4",
                "foo,10.77.4.2 ecdsa CCC4"
            ]
        );
        assert!(known_hosts_for(kh, &[]).is_empty());
    }
}
