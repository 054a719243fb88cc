//! The central, pure data types: what a node should look like (`DesiredState`).
//! Rendered from config, compared with what the node has, turned into a plan.

use crate::model::{ChangeId, FirewallRes, Handler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who a node is: identity from the inventory plus how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    pub address: String,
    pub region: String,
    pub provider: String,
    pub groups: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub ssh: SshSettings,
}

/// How strata reaches a node (inventory defaults, overridden per host).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SshSettings {
    /// The login user: the inventory's, else the ssh client's own choice (ssh_config `User`,
    /// read with `ssh -G`). Used by the checks that need it (sudo, lockout, bootstrap).
    pub user: String,
    /// The SSH port, likewise the inventory's or ssh_config's `Port`.
    pub port: u16,
    /// Whether the inventory set `user`/`port`: only then strata passes `-l`/`-p`, so an
    /// ssh_config `User`/`Port` is never overridden. Records from before default to set.
    #[serde(default = "set")]
    pub user_set: bool,
    #[serde(default = "set")]
    pub port_set: bool,
    /// The ssh destination (`ssh.host`: an ssh_config alias or a DNS name); None: `address`.
    #[serde(default)]
    pub host: Option<String>,
    /// `ssh -J` hops (`ssh.proxy_jump`): `[user@]host[:port]`, comma-separated.
    #[serde(default)]
    pub proxy_jump: Option<String>,
    /// An ssh_config file passed as `-F` (`ssh.config_file`); None: ssh's own files.
    #[serde(default)]
    pub config_file: Option<String>,
    /// Private key file; relative paths are relative to the repo.
    pub identity_file: Option<String>,
    /// known_hosts file; relative paths are relative to the repo.
    pub known_hosts: Option<String>,
    /// `strict` (default) or `accept-new` (explicit: bootstrap and lab only).
    pub host_key_checking: HostKeyChecking,
    /// `sudo` to run remote commands via `sudo -n` as a non-root user.
    pub r#become: Option<String>,
    pub connect_timeout_secs: u64,
    /// Keep the SSH master this long after a command for the next one (`ssh.persist`).
    #[serde(default)]
    pub persist_secs: Option<u64>,
    /// Deadlines of the remote steps (inventory `defaults.timeouts`).
    #[serde(default)]
    pub timeouts: Timeouts,
}

fn set() -> bool {
    true
}

impl NodeIdentity {
    /// What ssh is told to connect to: `ssh.host`, else the address.
    pub fn ssh_dest(&self) -> &str {
        self.ssh.host.as_deref().unwrap_or(&self.address)
    }
}

/// How long each remote step may take, in seconds, before the node fails at that step (the
/// other nodes go on). Inventory `defaults.timeouts`; every field optional.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// The live-state probe (plan, status, and the re-read under the lock).
    pub probe: u64,
    /// Taking the node's lock (it waits for a script of an interrupted run to finish).
    pub lock: u64,
    /// The changes script: packages, users, files, services, firewall.
    pub changes: u64,
    /// The handlers (restarts, reloads).
    pub handlers: u64,
    /// Every other step: recording the apply, the guard's arm/confirm, reading revisions.
    pub step: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            probe: 60,
            lock: 750,
            changes: 900,
            handlers: 300,
            step: 60,
        }
    }
}

impl Timeouts {
    pub fn secs(s: u64) -> std::time::Duration {
        std::time::Duration::from_secs(s.max(1))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    #[default]
    Strict,
    AcceptNew,
}

/// A node's health gate, from its group: unit active, plus an HTTP or TCP check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct HealthCheck {
    /// systemd units that must be active.
    #[serde(default)]
    pub units: Vec<String>,
    /// `http://127.0.0.1:8080/status`: checked from the node itself, must answer 2xx.
    #[serde(default)]
    pub http: Option<String>,
    /// `127.0.0.1:8000`: a TCP connect from the node itself.
    #[serde(default)]
    pub tcp: Option<String>,
    /// How long to keep retrying before the node counts as failed.
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
    /// The client must report this version (an artifact's `expect_version` adds one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_version: Vec<VersionCheck>,
    /// A counter (block height) that must increase within a time once the rest is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_progress: Option<ProgressCheck>,
}

/// `expect_version`: a command whose output must contain `value`, or a JSON endpoint whose
/// top-level `field` must equal it; checked on the node itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct VersionCheck {
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub http: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub value: String,
}

/// `expect_progress`: the top-level number `field` of the JSON at `http` must grow within
/// `within_secs` (a validator that runs but does not follow the chain is not healthy).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProgressCheck {
    pub http: String,
    pub field: String,
    #[serde(default = "default_progress_secs")]
    pub within_secs: u64,
}

fn default_progress_secs() -> u64 {
    10
}

fn default_health_timeout() -> u64 {
    30
}

/// One desired thing on a node. `id()` is stable across runs and is the key of diffs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    File(FileRes),
    Directory(DirRes),
    User(UserRes),
    Package(PackageRes),
    Service(ServiceRes),
    KeyFile(KeyFileRes),
    Firewall(FirewallRes),
    Artifact(ArtifactRes),
    AptRepository(AptRepoRes),
}

impl Resource {
    /// The resource's stable id, the key of its changes.
    pub fn key(&self) -> ChangeId {
        match self {
            Resource::File(f) => ChangeId::File(f.dest.clone()),
            Resource::Directory(d) => ChangeId::Directory(d.path.clone()),
            Resource::User(u) => ChangeId::User(u.name.clone()),
            Resource::Package(p) => ChangeId::Package(p.name.clone()),
            Resource::Service(s) => ChangeId::Service(s.name.clone()),
            Resource::KeyFile(k) => ChangeId::KeyFile(k.path.clone()),
            Resource::Firewall(_) => ChangeId::Firewall,
            Resource::Artifact(a) => ChangeId::Artifact(a.name.clone()),
            Resource::AptRepository(r) => ChangeId::AptRepository(r.name.clone()),
        }
    }

    /// The key as text (`file:/etc/x`).
    pub fn id(&self) -> String {
        self.key().to_string()
    }

    /// The module that declared this resource (firewall: the modules, joined).
    pub fn module(&self) -> &str {
        match self {
            Resource::File(f) => &f.module,
            Resource::Directory(d) => &d.module,
            Resource::User(u) => &u.module,
            Resource::Package(p) => &p.module,
            Resource::Service(s) => &s.module,
            Resource::KeyFile(k) => &k.module,
            Resource::Firewall(f) => &f.module,
            Resource::Artifact(a) => &a.module,
            Resource::AptRepository(r) => &r.module,
        }
    }
}

/// A managed file. Written atomically: temp file in the same directory, validated, renamed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRes {
    pub dest: String,
    pub content: String,
    pub owner: String,
    pub group: String,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
    /// Command run on the new content before it replaces the live file; `%s` is the path of
    /// the new content under its real file name (in a private temp directory).
    pub validate: Option<String>,
    /// How `strata check --validate` runs `validate` off the node (CI, a laptop), where the
    /// node's own users and binaries are missing. Not part of what the node gets, so it is
    /// not serialised (and not in the desired-state fingerprint).
    #[serde(skip)]
    pub validate_local: Option<LocalValidate>,
    /// Content never shown: diffs say only that it changed and how many lines.
    pub secret: bool,
    /// Handlers to run when this file changes, e.g. `daemon-reload`, `restart monad-validator`.
    pub notify: Vec<Handler>,
    pub module: String,
}

/// `validate_local:` of a file in module.yaml: run off the node instead of `validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalValidate {
    /// Another command (`%s` as in `validate`); default: the `validate` command itself.
    pub command: Option<String>,
    /// Exact replacements made in the content before it is checked, for the parts that only
    /// the node can satisfy (a binary path, a service account). Each `from` must occur.
    pub replace: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirRes {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub module: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRes {
    pub name: String,
    pub system: bool,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub groups: Vec<String>,
    pub module: String,
}

/// A Debian package that must be installed (apt, non-interactive).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackageRes {
    pub name: String,
    pub module: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Started,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceRes {
    /// Unit name without `.service`.
    pub name: String,
    pub enabled: bool,
    pub state: ServiceState,
    pub module: String,
}

/// A key file whose permissions are enforced; its content is never read, written or copied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyFileRes {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub module: String,
}

/// A released build (a validator client): fetched from `url`, checked against `sha256`
/// before anything switches, unpacked to `/opt/<name>/<version>/` and made live by the atomic
/// symlink `/opt/<name>/current`, which units point at. The last `keep` versions stay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactRes {
    pub name: String,
    pub version: String,
    pub url: String,
    /// Lowercase hex of the download's SHA-256.
    pub sha256: String,
    pub format: ArtifactFormat,
    /// What goes into the version directory (for a plain file: the one entry, `from` unused).
    pub install: Vec<ArtifactMember>,
    /// Versions kept on the node (the live one and the one before it at least).
    pub keep: usize,
    /// Fetched on the operator's machine (verified there) and sent over SSH, for nodes that
    /// cannot reach the URL; otherwise the node downloads it.
    pub push: bool,
    /// A detached signature the download must carry, checked on the node after the sha256.
    #[serde(default)]
    pub signature: Option<ArtifactSig>,
    pub notify: Vec<Handler>,
    pub module: String,
}

/// An artifact's detached signature and the key it must be made with (a file of the repo).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactSig {
    pub kind: SigKind,
    /// Where the signature is: http(s)://, file:/// (on the node) or a path in the repo.
    pub url: String,
    /// The key's path in the repo, for messages.
    pub key_path: String,
    /// The key as binary OpenPGP packets (what `gpgv --keyring` reads), base64.
    pub keyring: String,
    /// Upper-case hex fingerprints of its primary keys.
    pub fingerprints: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SigKind {
    Gpg,
}

impl ArtifactSig {
    /// `gpg key 8603239C5B9E584B`: the long key IDs (a fingerprint's last 16 digits).
    pub fn signer(&self) -> String {
        let ids: Vec<&str> = self
            .fingerprints
            .iter()
            .map(|f| &f[f.len().saturating_sub(16)..])
            .collect();
        format!("gpg key {}", ids.join(" or "))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactFormat {
    File,
    TarGz,
    TarZst,
}

/// One installed entry: the archive member `from`, as `to` (relative) with `mode`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactMember {
    pub from: String,
    pub to: String,
    pub mode: u32,
}

/// An apt repository: its deb822 sources entry and the signing key it names (`Signed-By`),
/// written before packages are installed, then `apt-get update`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AptRepoRes {
    pub name: String,
    /// `/etc/apt/sources.list.d/<name>.sources`.
    pub sources_path: String,
    pub sources: String,
    /// `/etc/apt/keyrings/<name>.asc`: an ASCII-armored public key.
    pub key_path: String,
    pub key: String,
    pub module: String,
}

/// Where artifacts live on a node.
pub const ARTIFACT_ROOT: &str = "/opt";

/// A URL without a scheme names a file of the repo (always pushed: nodes cannot read it).
pub fn url_in_repo(url: &str) -> bool {
    !url.contains(':')
}

impl ArtifactRes {
    /// `/opt/<name>`.
    pub fn root(&self) -> String {
        format!("{ARTIFACT_ROOT}/{}", self.name)
    }

    /// The signature travels from the operator's machine: the release is pushed, or the
    /// signature is a file of the repo.
    pub fn signature_pushed(&self) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|s| self.push || url_in_repo(&s.url))
    }
}

/// Everything one node should have, in apply order. Pure data, fully rendered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredState {
    pub node: NodeIdentity,
    pub resources: Vec<Resource>,
    /// Handler name -> shell command (module-declared ones; built-ins resolved at apply).
    pub handlers: BTreeMap<String, String>,
    pub health: HealthCheck,
    /// Max nodes of this node's rollout group changed at once.
    pub serial: usize,
    /// Canary and soak of this node's rollout group (none by default).
    #[serde(default)]
    pub canary: CanaryPolicy,
    /// Revisions kept on the node (inventory `defaults.keep_revisions`).
    #[serde(default = "default_keep")]
    pub keep_revisions: usize,
    /// Secret strings (env() values) that must never be printed; used for redaction.
    #[serde(skip)]
    pub secrets: Vec<String>,
    /// The exclusive sets this node belongs to, from the current config (never stored with
    /// a revision: a rollback re-imposes today's sets on the state it returns to).
    #[serde(skip)]
    pub exclusive: Vec<crate::model::ExclusiveSet>,
}

/// A group's canary setting: its first `canary` nodes with changes go first, then are
/// watched `soak_secs` (health gate every `soak_check_secs`) before the rest of the group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct CanaryPolicy {
    /// The group that set it ("" when none does).
    pub group: String,
    pub canary: usize,
    pub soak_secs: u64,
    pub soak_check_secs: u64,
}

/// Revisions kept on each node when the inventory does not say.
pub const DEFAULT_KEEP_REVISIONS: usize = 5;

fn default_keep() -> usize {
    DEFAULT_KEEP_REVISIONS
}

impl DesiredState {
    /// blake3 over a canonical JSON encoding: identical input, identical fingerprint.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(&(&self.node.name, &self.resources, &self.handlers))
            .expect("desired state serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }
}

/// Parse a mode string like "0644" or "644" (octal, at most 4 digits).
pub fn parse_mode(s: &str) -> Option<u32> {
    let t = s.trim();
    if t.is_empty() || t.len() > 4 || !t.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(t, 8).ok()
}

/// Render a mode the way operators read it: "0644".
pub fn fmt_mode(m: u32) -> String {
    format!("{m:04o}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_octal_and_reject_garbage() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("1777"), Some(0o1777));
        assert_eq!(parse_mode("0888"), None);
        assert_eq!(parse_mode("rw-r--r--"), None);
        assert_eq!(parse_mode("07777"), None);
        assert_eq!(parse_mode(""), None);
        assert_eq!(fmt_mode(0o640), "0640");
    }
}
