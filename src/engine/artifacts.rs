//! Pushed artifacts (`fetch: push`): nodes that cannot reach a release's URL get it from the
//! operator's machine over their SSH connection. Each download is fetched once per run (every
//! node shares it) and checked against its pinned sha256 here, before any node is touched.
//! A detached signature goes with it (and one kept in the repo goes for any artifact): it is
//! checked on the node, by `gpgv`, like a signature the node downloads.

use crate::model::{Change, DesiredState, NodePlan, Op, Resource};
use crate::remote::apply::{Payload, Payloads};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::Mutex;

/// Verified downloads of this run, by sha256 (and signatures, by `sig:` and their URL).
static FETCHED: OnceLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = OnceLock::new();

/// The downloads the plan's pushed artifacts need, verified. An error names the artifact.
/// A URL without a scheme is a path in `repo`.
pub async fn pushed(
    d: &DesiredState,
    plan: &NodePlan,
    repo: &std::path::Path,
) -> Result<Payloads, String> {
    let mut out = Payloads::new();
    for c in plan
        .changes
        .iter()
        .filter(|c: &&Change| c.ops.contains(&Op::Fetch))
    {
        let Some(Resource::Artifact(a)) = d.resources.iter().find(|r| r.key() == c.id) else {
            continue;
        };
        let cache = FETCHED.get_or_init(|| Mutex::new(HashMap::new()));
        // Held while fetching: a second node waits for the first one's download.
        let mut map = cache.lock().await;
        let mut payload = Payload::default();
        if let Some(sig) = a.signature.as_ref().filter(|_| a.signature_pushed()) {
            let key = format!("sig:{}", sig.url);
            let bytes = match map.get(&key) {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(fetch(&sig.url, repo).await.map_err(|e| {
                        format!(
                            "artifact:{}: fetching the signature {} here: {e}",
                            a.name, sig.url
                        )
                    })?);
                    map.insert(key, b.clone());
                    b
                }
            };
            payload.signature = Some(bytes.to_vec());
        }
        if !a.push {
            if payload.signature.is_some() {
                out.insert(a.name.clone(), payload);
            }
            continue;
        }
        let bytes = match map.get(&a.sha256) {
            Some(b) => b.clone(),
            None => {
                let b = fetch(&a.url, repo)
                    .await
                    .map_err(|e| format!("artifact:{}: fetching {} here: {e}", a.name, a.url))?;
                let got = hex(&Sha256::digest(&b));
                if got != a.sha256 {
                    return Err(format!(
                        "artifact:{}: sha256 mismatch for {}: the download is {got}, the config pins {}",
                        a.name, a.version, a.sha256
                    ));
                }
                let b = Arc::new(b);
                map.insert(a.sha256.clone(), b.clone());
                b
            }
        };
        payload.download = Some(bytes.to_vec());
        out.insert(a.name.clone(), payload);
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `file:///path` and a path in the repo are read; http(s) is downloaded with curl.
async fn fetch(url: &str, repo: &std::path::Path) -> Result<Vec<u8>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        return tokio::fs::read(path).await.map_err(|e| e.to_string());
    }
    if crate::model::url_in_repo(url) {
        let p = repo.join(url);
        return tokio::fs::read(&p)
            .await
            .map_err(|e| format!("{}: {e}", p.display()));
    }
    let out = tokio::process::Command::new("curl")
        .args([
            "-fsSL",
            "--retry",
            "2",
            "--connect-timeout",
            "10",
            "--max-time",
            "1800",
            "--",
        ])
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .process_group(0)
        .output()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(out.stdout)
}
