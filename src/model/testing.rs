//! Builders for unit tests of the pure layers: one place for the shape of a test node,
//! desired state and record, instead of a copy in every test module.

use crate::model::*;

/// A node reached as root on 127.0.0.1:22, no groups.
pub fn identity(name: &str) -> NodeIdentity {
    NodeIdentity {
        name: name.into(),
        address: "127.0.0.1".into(),
        region: String::new(),
        provider: String::new(),
        groups: vec![],
        labels: Default::default(),
        ssh: SshSettings {
            user: "root".into(),
            port: 22,
            user_set: true,
            port_set: true,
            host: None,
            proxy_jump: None,
            config_file: None,
            identity_file: None,
            known_hosts: None,
            host_key_checking: HostKeyChecking::Strict,
            r#become: None,
            connect_timeout_secs: 5,
            persist_secs: None,
            timeouts: Default::default(),
        },
    }
}

/// A desired state of `resources` on node `name`, serial 1, no handlers, no health gate.
pub fn desired(name: &str, resources: Vec<Resource>) -> DesiredState {
    DesiredState {
        node: identity(name),
        resources,
        handlers: Default::default(),
        health: Default::default(),
        serial: 1,
        canary: Default::default(),
        keep_revisions: 5,
        secrets: vec![],
        exclusive: Vec::new(),
    }
}

/// A history entry for revision `r`.
pub fn revision(r: &str) -> Revision {
    Revision {
        revision: r.into(),
        kind: "apply".into(),
        applied_at: 0,
        applied_by: "t".into(),
        commit: None,
        desired_fingerprint: String::new(),
    }
}

/// A record of revision `current` with `history` (newest first).
pub fn record(current: &str, history: &[&str]) -> Record {
    Record {
        applied_at: 0,
        applied_by: "t".into(),
        commit: None,
        desired_fingerprint: String::new(),
        resources: Default::default(),
        revision: current.into(),
        kind: "apply".into(),
        rolled_back_from: None,
        history: history.iter().map(|r| revision(r)).collect(),
    }
}
