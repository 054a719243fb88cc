//! Typed names of what a plan is about: the change id (`file:/etc/x`, `ufw:allow 22/tcp from
//! any`, ...) and the handlers a change notifies (`daemon-reload`, `restart chrony`, a
//! module's own). Parsed once; serialised as the same strings as always (plan JSON, record).

use crate::model::FwRule;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What one change is about: a resource, or one ufw rule of the node's firewall.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeId {
    File(String),
    Directory(String),
    User(String),
    Package(String),
    Service(String),
    KeyFile(String),
    /// A released build (`artifact:monad`), by name.
    Artifact(String),
    /// An apt repository (`apt_repository:grafana`), by name.
    AptRepository(String),
    /// The firewall's defaults and enablement (`firewall:ufw`).
    Firewall,
    /// One rule (its comment is not part of its identity).
    Rule(FwRule),
    /// A live rule of another shape than strata declares (route, outgoing, per interface,
    /// ...), named by ufw's own syntax: only ever removed.
    ForeignRule(String),
}

impl ChangeId {
    /// The id of a rule: its identity without the comment.
    pub fn rule(r: &FwRule) -> ChangeId {
        ChangeId::Rule(FwRule {
            comment: None,
            ..r.clone()
        })
    }

    pub fn parse(s: &str) -> Result<ChangeId, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not a change id"))?;
        let owned = rest.to_string();
        Ok(match kind {
            "file" => ChangeId::File(owned),
            "directory" => ChangeId::Directory(owned),
            "user" => ChangeId::User(owned),
            "package" => ChangeId::Package(owned),
            "service" => ChangeId::Service(owned),
            "key_file" => ChangeId::KeyFile(owned),
            "artifact" => ChangeId::Artifact(owned),
            "apt_repository" => ChangeId::AptRepository(owned),
            "firewall" if rest == "ufw" => ChangeId::Firewall,
            "ufw" => match FwRule::from_key(rest) {
                Some(r) => ChangeId::Rule(r),
                // ufw's own syntax, as the probe writes it: `... from SRC ... to DST ...`.
                None if rest.contains(" from ") && rest.contains(" to ") => {
                    ChangeId::ForeignRule(owned)
                }
                None => return Err(format!("`{s}` is not a ufw rule id")),
            },
            _ => return Err(format!("`{s}` is not a change id")),
        })
    }

    /// Is this about the firewall (a rule, or its defaults)?
    pub fn is_firewall(&self) -> bool {
        matches!(
            self,
            ChangeId::Firewall | ChangeId::Rule(_) | ChangeId::ForeignRule(_)
        )
    }

    /// The file's path, for a file change.
    pub fn file(&self) -> Option<&str> {
        match self {
            ChangeId::File(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeId::File(p) => write!(f, "file:{p}"),
            ChangeId::Directory(p) => write!(f, "directory:{p}"),
            ChangeId::User(n) => write!(f, "user:{n}"),
            ChangeId::Package(n) => write!(f, "package:{n}"),
            ChangeId::Service(n) => write!(f, "service:{n}"),
            ChangeId::KeyFile(p) => write!(f, "key_file:{p}"),
            ChangeId::Artifact(n) => write!(f, "artifact:{n}"),
            ChangeId::AptRepository(n) => write!(f, "apt_repository:{n}"),
            ChangeId::Firewall => write!(f, "firewall:ufw"),
            ChangeId::Rule(r) => write!(f, "ufw:{}", r.key()),
            ChangeId::ForeignRule(spec) => write!(f, "ufw:{spec}"),
        }
    }
}

/// What a change notifies, run once per apply after every change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Handler {
    /// `systemctl daemon-reload` (runs with the files, before units are enabled or started).
    DaemonReload,
    /// `restart <unit>`.
    Restart(String),
    /// `reload <unit>`.
    Reload(String),
    /// A handler the module declares (its command is the module author's text).
    Named(String),
}

impl Handler {
    pub fn parse(s: &str) -> Handler {
        if s == "daemon-reload" {
            Handler::DaemonReload
        } else if let Some(u) = s.strip_prefix("restart ") {
            Handler::Restart(u.to_string())
        } else if let Some(u) = s.strip_prefix("reload ") {
            Handler::Reload(u.to_string())
        } else {
            Handler::Named(s.to_string())
        }
    }

    /// The unit a built-in restart or reload acts on.
    pub fn unit(&self) -> Option<&str> {
        match self {
            Handler::Restart(u) | Handler::Reload(u) => Some(u),
            _ => None,
        }
    }

    /// Does it restart or reload sshd (which can cut strata off)?
    pub fn touches_ssh(&self) -> bool {
        self.unit().is_some_and(is_ssh_unit)
    }
}

/// sshd's units (Debian's ssh, its sshd alias, the socket): stopping, disabling, restarting
/// or reloading them can cut strata off.
pub fn is_ssh_unit(u: &str) -> bool {
    matches!(
        u.trim_end_matches(".service"),
        "ssh" | "sshd" | "ssh.socket"
    )
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handler::DaemonReload => write!(f, "daemon-reload"),
            Handler::Restart(u) => write!(f, "restart {u}"),
            Handler::Reload(u) => write!(f, "reload {u}"),
            Handler::Named(n) => write!(f, "{n}"),
        }
    }
}

impl From<&str> for Handler {
    fn from(s: &str) -> Handler {
        Handler::parse(s)
    }
}

macro_rules! string_serde {
    ($t:ty, $parse:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let parse: fn(&str) -> Result<$t, String> = $parse;
                parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(ChangeId, ChangeId::parse);
string_serde!(Handler, |s| Ok(Handler::parse(s)));

macro_rules! string_schema {
    ($t:ty, $name:literal, $desc:literal) => {
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string", "description": $desc})
            }
        }
    };
}

string_schema!(
    ChangeId,
    "ChangeId",
    "file:PATH, directory:PATH, user:NAME, package:NAME, service:NAME, key_file:PATH, firewall:ufw, or ufw:ACTION PORT/PROTO from SOURCE"
);
string_schema!(
    Handler,
    "Handler",
    "daemon-reload, restart UNIT, reload UNIT, or a module's own handler name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_written() {
        for s in [
            "file:/etc/chrony/chrony.conf",
            "directory:/var/lib/monad",
            "user:monad",
            "package:chrony",
            "service:monad-validator",
            "key_file:/etc/monad/keys/node.key",
            "firewall:ufw",
            "ufw:allow 22/tcp from any",
            "ufw:limit 60000:61000/udp from 10.0.0.0/8",
        ] {
            assert_eq!(ChangeId::parse(s).unwrap().to_string(), s);
        }
        assert!(ChangeId::parse("ufw:allow 22").is_err());
        assert!(ChangeId::parse("nonsense").is_err());
        assert!(ChangeId::parse("ufw:allow 22/tcp from any extra").is_err());
        let json = serde_json::to_string(&ChangeId::Firewall).unwrap();
        assert_eq!(json, "\"firewall:ufw\"");
    }

    #[test]
    fn handlers_parse_once() {
        assert_eq!(Handler::parse("daemon-reload"), Handler::DaemonReload);
        assert_eq!(Handler::parse("restart chrony").unit(), Some("chrony"));
        assert!(Handler::parse("reload ssh").touches_ssh());
        assert!(Handler::parse("restart sshd.service").touches_ssh());
        assert!(!Handler::parse("restart chrony").touches_ssh());
        assert_eq!(
            Handler::parse("flush-caches"),
            Handler::Named("flush-caches".into())
        );
        for s in ["daemon-reload", "restart a", "reload b", "custom"] {
            assert_eq!(Handler::parse(s).to_string(), s);
        }
    }
}
