//! Stand-in for the Monad validator on lab nodes (installed as /usr/local/bin/monad-validator
//! and /usr/local/lib/monad-standin, which the lab's releases in modules/validator/lab-releases run).
//!
//! It keeps the real binary's command-line contract so the validator's systemd unit can be
//! tested for real: a wrong ExecStart must make the unit fail. It serves
//! - p2p port: TCP, accepts and drops connections;
//! - status port: `GET /status` -> JSON {uptime, block_height, last_seen};
//! - metrics port: `GET /metrics` -> Prometheus text.
//!
//! Builds for upgrade tests (the lab's artifacts): `MONAD_STANDIN_VERSION`, or a `VERSION` file beside the binary or one
//! directory up (`/opt/monad/0.9.4/VERSION` for `/opt/monad/0.9.4/bin/monad-validator`) sets
//! the version it reports (`--version`, `version` in /status; default `0.0.0-lab`). A `FAULT`
//! file there makes a bad release: `exit` (it exits 1 at start) or `stall` (its block height
//! never grows). A running stand-in is told to stall by a `STALL` file in its data dir: from
//! then on its height stays where it was (it grows again when the file goes).
//!
//! std only. SIGTERM keeps its default action (exit).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::exit;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: monad-validator --config FILE --data-dir DIR --p2p-port N \
                     --status-port N --metrics-port N [--node-name NAME]";

#[derive(Debug, PartialEq, Eq)]
struct Args {
    config: String,
    data_dir: String,
    p2p_port: u16,
    status_port: u16,
    metrics_port: u16,
    node_name: Option<String>,
}

/// Strict parsing: unknown flags, missing values, duplicates and missing required flags
/// are errors. Accepts `--flag value` and `--flag=value`.
fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut config = None;
    let mut data_dir = None;
    let mut p2p = None;
    let mut status = None;
    let mut metrics = None;
    let mut node_name = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let slot: &mut Option<String> = match flag {
            "--config" => &mut config,
            "--data-dir" => &mut data_dir,
            "--p2p-port" => &mut p2p,
            "--status-port" => &mut status,
            "--metrics-port" => &mut metrics,
            "--node-name" => &mut node_name,
            _ => return Err(format!("unknown argument: {a}")),
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    let need = |v: Option<String>, f: &str| v.ok_or_else(|| format!("missing required {f}"));
    let port = |v: Option<String>, f: &str| -> Result<u16, String> {
        let v = need(v, f)?;
        match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("{f}: not a port: {v}")),
        }
    };
    Ok(Args {
        config: need(config, "--config")?,
        data_dir: need(data_dir, "--data-dir")?,
        p2p_port: port(p2p, "--p2p-port")?,
        status_port: port(status, "--status-port")?,
        metrics_port: port(metrics, "--metrics-port")?,
        node_name,
    })
}

struct Chain {
    started: Instant,
    version: String,
    stalled: bool,
    /// `<data dir>/STALL`: while it exists the height does not grow.
    stall_file: Option<std::path::PathBuf>,
    /// Blocks not made while told to stall.
    missed: std::sync::Mutex<(u64, Option<u64>)>,
}

impl Chain {
    fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
    /// One block a second since start (none for a stalled build, none while `STALL` exists).
    fn block_height(&self) -> u64 {
        self.height_at(self.uptime())
    }
    fn height_at(&self, now: u64) -> u64 {
        if self.stalled {
            return 0;
        }
        let told = self.stall_file.as_ref().is_some_and(|f| f.exists());
        let mut m = self.missed.lock().unwrap_or_else(|e| e.into_inner());
        let (missed, since) = *m;
        *m = match (told, since) {
            (true, None) => (missed, Some(now)),
            (false, Some(t)) => (missed + now - t, None),
            _ => (missed, since),
        };
        let (missed, since) = *m;
        since.unwrap_or(now) - missed
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first line of `name` beside the executable, or one directory up.
fn build_file(name: &str) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.lines().next().unwrap_or("").trim().to_string())
}

/// `MONAD_STANDIN_VERSION` (set by a release's wrapper script, see modules/validator/lab-releases), else
/// the VERSION file, else `0.0.0-lab`.
fn version() -> String {
    std::env::var("MONAD_STANDIN_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| build_file("VERSION"))
        .unwrap_or_else(|| "0.0.0-lab".into())
}

fn status_json(chain: &Chain) -> String {
    format!(
        "{{\"version\":\"{}\",\"uptime\":{},\"block_height\":{},\"last_seen\":{}}}",
        chain.version,
        chain.uptime(),
        chain.block_height(),
        unix_now()
    )
}

fn metrics_text(chain: &Chain) -> String {
    format!(
        "# HELP monad_block_height Current block height.\n# TYPE monad_block_height gauge\n\
         monad_block_height {}\n\
         # HELP monad_uptime_seconds Seconds since start.\n# TYPE monad_uptime_seconds counter\n\
         monad_uptime_seconds {}\n\
         # HELP monad_peers Connected peers.\n# TYPE monad_peers gauge\nmonad_peers 0\n",
        chain.block_height(),
        chain.uptime()
    )
}

/// Route a request line to (status, content type, body).
fn route(request_line: &str, port_kind: &str, chain: &Chain) -> (u16, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path, port_kind) {
        ("GET", "/status", "status") => (200, "application/json", status_json(chain)),
        ("GET", "/metrics", "metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(chain),
        ),
        _ => (404, "text/plain", "not found\n".to_string()),
    }
}

fn serve_http(listener: TcpListener, kind: &'static str, chain: Arc<Chain>) {
    for stream in listener.incoming().flatten() {
        let chain = chain.clone();
        std::thread::spawn(move || {
            let _ = handle_http(stream, kind, &chain);
        });
    }
}

fn handle_http(stream: TcpStream, kind: &str, chain: &Chain) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain headers up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let (code, ctype, body) = route(&request_line, kind, chain);
    let reason = if code == 200 { "OK" } else { "Not Found" };
    println!("{kind}: {peer} {} -> {code}", request_line.trim());
    let mut s = stream;
    write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

fn bind(port: u16, what: &str) -> TcpListener {
    TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("monad-validator: cannot listen on {what} port {port}: {e}");
        exit(1)
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--version") {
        println!("monad-validator {} (strata stand-in)", version());
        return;
    }
    let fault = build_file("FAULT").unwrap_or_default();
    if fault == "exit" {
        eprintln!(
            "monad-validator {}: this build exits at start (FAULT=exit)",
            version()
        );
        exit(1);
    }
    let args = parse_args(&argv).unwrap_or_else(|e| {
        eprintln!("monad-validator: {e}\n{USAGE}");
        exit(2)
    });
    if let Err(e) = std::fs::File::open(&args.config).and_then(|f| {
        f.metadata().and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        })
    }) {
        eprintln!("monad-validator: cannot read config {}: {e}", args.config);
        exit(1);
    }
    let p2p = bind(args.p2p_port, "p2p");
    let status = bind(args.status_port, "status");
    let metrics = bind(args.metrics_port, "metrics");
    println!(
        "monad-validator (strata stand-in) node={} config={} data-dir={} p2p={} status={} metrics={}",
        args.node_name.as_deref().unwrap_or("-"),
        args.config,
        args.data_dir,
        args.p2p_port,
        args.status_port,
        args.metrics_port
    );
    let chain = Arc::new(Chain {
        started: Instant::now(),
        version: version(),
        stalled: fault == "stall",
        stall_file: Some(std::path::Path::new(&args.data_dir).join("STALL")),
        missed: Default::default(),
    });
    let c = chain.clone();
    std::thread::spawn(move || serve_http(status, "status", c));
    let c = chain.clone();
    std::thread::spawn(move || serve_http(metrics, "metrics", c));
    // p2p: accept and drop.
    for s in p2p.incoming().flatten() {
        if let Ok(peer) = s.peer_addr() {
            println!("p2p: connection from {peer}, dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn full_contract_parses() {
        let a = parse_args(&v(
            "--config /c --data-dir /d --p2p-port 8000 --status-port=8080 --metrics-port 8889 --node-name n1",
        ))
        .unwrap();
        assert_eq!(a.status_port, 8080);
        assert_eq!(a.node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn strictness() {
        let base = "--config /c --data-dir /d --p2p-port 1 --status-port 2 --metrics-port 3";
        assert!(parse_args(&v(&format!("{base} --bogus 1"))).is_err());
        assert!(parse_args(&v("--config /c --data-dir /d --p2p-port 1 --status-port 2")).is_err());
        assert!(parse_args(&v(&format!("{base} --config /x"))).is_err());
        assert!(parse_args(&v(
            "--config /c --data-dir /d --p2p-port x --status-port 2 --metrics-port 3"
        ))
        .is_err());
        assert!(parse_args(&v("--config")).is_err());
        assert!(parse_args(&v(base)).is_ok());
    }

    #[test]
    fn stall_file_freezes_the_height_until_it_goes() {
        let f = std::env::temp_dir().join(format!("standin-stall-{}", std::process::id()));
        let _ = std::fs::remove_file(&f);
        let c = Chain {
            started: Instant::now(),
            version: "0.9.4".into(),
            stalled: false,
            stall_file: Some(f.clone()),
            missed: Default::default(),
        };
        assert_eq!(c.height_at(10), 10);
        std::fs::write(&f, "").unwrap();
        assert_eq!(c.height_at(12), 12);
        assert_eq!(c.height_at(40), 12);
        std::fs::remove_file(&f).unwrap();
        assert_eq!(c.height_at(41), 12);
        assert_eq!(c.height_at(50), 21);
    }

    #[test]
    fn routes() {
        let c = Chain {
            started: Instant::now(),
            version: "0.9.4".into(),
            stalled: false,
            stall_file: None,
            missed: Default::default(),
        };
        assert_eq!(route("GET /status HTTP/1.1", "status", &c).0, 200);
        assert_eq!(route("GET /metrics HTTP/1.1", "status", &c).0, 404);
        assert_eq!(route("GET /x HTTP/1.1", "status", &c).0, 404);
        let (code, ct, body) = route("GET /metrics HTTP/1.1", "metrics", &c);
        assert_eq!(code, 200);
        assert!(ct.starts_with("text/plain"));
        assert!(body.contains("monad_block_height 0\n") && body.contains("monad_peers"));
        let s = status_json(&c);
        assert!(s.starts_with("{\"version\":\"0.9.4\","), "{s}");
        let j: std::collections::BTreeMap<String, u64> =
            parse_flat_json(s.split_once(',').unwrap().1);
        assert_eq!(j["block_height"], 0);
        assert!(j["last_seen"] > 1_600_000_000);
    }

    /// Tiny parser for the flat `{"k":n,...}` object (the bin has no deps).
    fn parse_flat_json(s: &str) -> std::collections::BTreeMap<String, u64> {
        s.trim_matches(|c| c == '{' || c == '}' || c == ',')
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once(':').unwrap();
                (k.trim_matches('"').to_string(), v.parse().unwrap())
            })
            .collect()
    }
}
