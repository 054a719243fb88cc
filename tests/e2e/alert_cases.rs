//! Monitoring that pages: the example fleet's real Prometheus and Alertmanager (an HA cluster
//! across the three watchers) on lab nodes, delivering to a receiver on the lab's service
//! address. Incidents are made for real: a host stopped, a validator stopped, a validator
//! stalled, a disk filled; every notification is read from what Alertmanager sent.

use crate::common::*;
use crate::plan_apply_cases::{expect_code, out, TempRepo};
use anyhow::{ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: &[&str] = &["validator-1", "validator-2", "validator-3"];
/// The lab's service address (on the host's lo, reachable from every node).
const SINK: &str = "10.77.0.1";
const HTTP_PORT: u16 = 9199;
const SMTP_PORT: u16 = 2525;

pub fn cases() -> Vec<Case> {
    vec![case_fresh(
        "alerts::incidents_page_every_channel_batched_ones_do_not_page_watchdog_stops_with_alertmanager",
        NODES,
        incidents,
    )]
}

/// One notification as the receiver got it.
#[derive(Clone, Debug)]
struct Got {
    at: Instant,
    /// HTTP path, or `smtp`.
    path: String,
    /// The sending Alertmanager's address (which watcher sent it).
    from: String,
    body: String,
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<Got>>>);

impl Sink {
    fn all(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }
    fn push(&self, path: String, from: String, body: String) {
        self.0.lock().unwrap().push(Got {
            at: Instant::now(),
            path,
            from,
            body,
        });
    }
    /// Notifications on a channel (path prefix) whose body has every needle.
    fn matching(&self, channel: &str, needles: &[&str]) -> Vec<Got> {
        self.all()
            .into_iter()
            .filter(|g| g.path.starts_with(channel) && needles.iter().all(|n| g.body.contains(n)))
            .collect()
    }
    fn summary(&self) -> String {
        self.all()
            .iter()
            .map(|g| {
                let b: String = g.body.chars().take(700).collect();
                format!(
                    "{:?} {} from {} {}",
                    g.at,
                    g.path,
                    g.from,
                    b.replace('\n', " ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An HTTP receiver for PagerDuty (Events API v2), Telegram (Bot API), Discord and the
/// heartbeat webhook, answering each as the real service does; and an SMTP sink (no AUTH, no
/// STARTTLS offered). Threads of this process: they hold no lab lock descriptor.
fn start_sink() -> Result<Sink> {
    let sink = Sink::default();
    let http = TcpListener::bind((SINK, HTTP_PORT))
        .with_context(|| format!("binding the receiver on {SINK}:{HTTP_PORT}"))?;
    let smtp = TcpListener::bind((SINK, SMTP_PORT))
        .with_context(|| format!("binding the SMTP sink on {SINK}:{SMTP_PORT}"))?;
    let s = sink.clone();
    std::thread::spawn(move || {
        for c in http.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = serve_http(c, &s);
            });
        }
    });
    let s = sink.clone();
    std::thread::spawn(move || {
        for c in smtp.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = serve_smtp(c, &s);
            });
        }
    });
    Ok(sink)
}

fn serve_http(c: TcpStream, sink: &Sink) -> std::io::Result<()> {
    let from = peer(&c);
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let h = h.to_ascii_lowercase();
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    let body = String::from_utf8_lossy(&body).to_string();
    let (status, reply) = if path.starts_with("/pagerduty") {
        (
            "202 Accepted",
            r#"{"status":"success","message":"Event processed","dedup_key":"lab"}"#,
        )
    } else if path.starts_with("/telegram") {
        (
            "200 OK",
            r#"{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1001234567890,"type":"group"},"text":"ok"}}"#,
        )
    } else {
        ("200 OK", "{}")
    };
    sink.push(path, from, body);
    let mut w = c;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    w.flush()
}

fn peer(c: &TcpStream) -> String {
    c.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

fn serve_smtp(c: TcpStream, sink: &Sink) -> std::io::Result<()> {
    let from = peer(&c);
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut w = c;
    w.write_all(b"220 lab-sink ESMTP\r\n")?;
    let mut msg = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            w.write_all(b"250-lab-sink\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                msg.push_str(&l);
            }
            sink.push("smtp".into(), from.clone(), std::mem::take(&mut msg));
            w.write_all(b"250 OK queued\r\n")?;
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 OK\r\n")?;
        }
    }
}

/// The lab repo with the receivers pointed at the sink and every window in seconds.
fn alert_repo() -> Result<TempRepo> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "    vars:\n",
        &format!(
            "    vars:
      alerts:
        for: {{host_down: 20s, validator_down: 20s, not_progressing: 15s, sync_lag: 1h, disk_warning: 15s, disk_critical: 1h, cpu: 1h, memory: 1h, clock_skew: 1h, clock_unsynchronised: 1h, exporter_down: 1h, monitoring_down: 1h}}
        progress_window: 20s
      prometheus: {{scrape_interval: 5s, evaluation_interval: 5s, scrape_timeout: 4s, peers_scrape_timeout: 4s}}
      alertmanager:
        page: {{group_wait: 5s, group_interval: 15s, repeat_interval: 1h}}
        batched: {{group_wait: 10s, group_interval: 20s, repeat_interval: 1h}}
        heartbeat: {{repeat_interval: 10s}}
        pagerduty: {{url: 'http://{SINK}:{HTTP_PORT}/pagerduty/v2/enqueue'}}
        telegram: {{api_url: 'http://{SINK}:{HTTP_PORT}/telegram'}}
        email: {{smarthost: '{SINK}:{SMTP_PORT}', require_tls: false}}
"
        ),
    )?;
    // validator-3's own override (nodes win over groups) would exceed the 5 s interval.
    r.edit(
        "nodes/validator-3/vars.yaml",
        "peers_scrape_timeout: 14s",
        "peers_scrape_timeout: 4s",
    )?;
    Ok(r)
}

fn st_alerts(repo: &Path, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("--repo")
        .arg(repo)
        .args(["--inventory", "inventory/lab.yaml"])
        .args(args)
        .env("STRATA_TELEGRAM_BOT_TOKEN", "123456:lab-bot-token")
        .env(
            "STRATA_DISCORD_WEBHOOK_URL",
            format!("http://{SINK}:{HTTP_PORT}/discord/webhook"),
        )
        .env("STRATA_SMTP_PASSWORD", "lab-smtp-password")
        .env("STRATA_PAGERDUTY_ROUTING_KEY", "lab-routing-key")
        .env(
            "STRATA_HEARTBEAT_URL",
            format!("http://{SINK}:{HTTP_PORT}/heartbeat"),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run strata")
}

/// Wait until `f` holds (polling each second), or fail with what the sink got.
fn wait_for(sink: &Sink, what: &str, within: Duration, f: impl Fn() -> bool) -> Result<f64> {
    let t = Instant::now();
    while !f() {
        ensure!(
            t.elapsed() < within,
            "{what}: not within {within:?}; the receiver got:\n{}",
            sink.summary()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// On a node: the Alertmanager cluster's peer addresses, the Alertmanagers its Prometheus
/// sends to, and the cluster's status ("ADDR1,ADDR2,ADDR3 3 ready" when settled).
const SETTLED: &str = r#"curl -sf http://127.0.0.1:9093/api/v2/status | python3 -c 'import json,sys; c=json.load(sys.stdin)["cluster"]; print(",".join(sorted(p["address"] for p in c.get("peers") or [])), end=" ")' && curl -sf http://127.0.0.1:9090/api/v1/alertmanagers | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(len(d["activeAlertmanagers"]), end=" ")' && curl -sf http://127.0.0.1:9093/api/v2/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["status"])'"#;

/// The channels a page goes to, and the batched ones.
const PAGED: &[&str] = &["/pagerduty", "/telegram", "smtp"];

fn incidents() -> Result<()> {
    // The cluster here is exactly the three watchers. Any other lab node back to bare:
    // the bootstrap cases leave a validator-4 whose Alertmanager peers with these three,
    // and it joins them in the window before their firewall is on (seen in CI: 4 peers).
    let state = lab_state()?;
    let mut watchers = Vec::new();
    for n in state["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().context("a lab node without a name")?;
        if NODES.contains(&name) {
            watchers.push(format!(
                "{}:9094",
                n["address"].as_str().unwrap_or_default()
            ));
        } else {
            lab_ok(&["reset", name])?;
        }
    }
    watchers.sort();
    let settled_as = format!("{} 3 ready", watchers.join(","));
    let sink = start_sink()?;
    let r = alert_repo()?;
    let t0 = Instant::now();
    let o = st_alerts(r.path(), &["apply", "--yes"]);
    expect_code(&o, 0, "apply of the monitoring with the lab's receivers")?;
    println!("    apply of 3 nodes: {:.1}s", t0.elapsed().as_secs_f64());
    let cfg = ssh_ok(
        "validator-1",
        "root",
        "cat /etc/prometheus/alertmanager.yml",
    )?;
    ensure!(cfg.contains(&format!("{SINK}:{SMTP_PORT}")), "{cfg}");

    // The dead man's switch beats before anything else happens.
    let s = wait_for(
        &sink,
        "a Watchdog heartbeat",
        Duration::from_secs(120),
        || !sink.matching("/heartbeat", &["Watchdog"]).is_empty(),
    )?;
    println!("    first heartbeat after {s:.1}s");
    // The apply restarted every Alertmanager and Prometheus: wait until the cluster has
    // its three peers on every node and every Prometheus sends to all three, so the
    // incidents meet a settled cluster (a peer that has not joined notifies on its own).
    let t = Instant::now();
    loop {
        let settled = NODES
            .iter()
            .all(|n| ssh_ok(n, "root", SETTLED).is_ok_and(|o| o.trim() == settled_as));
        if settled {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(90),
            "the Alertmanager cluster did not settle: {:?}",
            NODES
                .iter()
                .map(|n| ssh_ok(n, "root", SETTLED))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "    cluster of 3 settled after {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Three incidents at once: a host dies, a validator stops, a validator stalls; and a
    // disk fills (P2: batched, never paged).
    let t = Instant::now();
    lab_ok(&["stop", "validator-2"])?;
    ssh_ok("validator-3", "root", "systemctl stop monad-validator")?;
    ssh_ok("validator-1", "root", "touch /var/lib/monad/STALL")?;
    lab_ok(&[
        "disk",
        "validator-1",
        "--mib",
        "32",
        "--at",
        "/srv/lab-disk",
    ])?;
    // To about 88% used: above the warning (80%), below the critical (90%).
    let pcent = ssh_ok(
        "validator-1",
        "root",
        "set -- $(df -k --output=used,avail /srv/lab-disk | tail -n1) && fallocate -l $(( $2 - ($1 + $2) * 12 / 100 ))k /srv/lab-disk/fill && sync && df --output=pcent /srv/lab-disk | tail -n1",
    )?;
    println!("    lab disk on validator-1: {} used", pcent.trim());
    let incidents = [
        ("HostDown", "validator-2"),
        ("ValidatorDown", "validator-3"),
        ("ValidatorNotProgressing", "validator-1"),
    ];
    for (alert, node) in incidents {
        for ch in PAGED {
            wait_for(
                &sink,
                &format!("{alert} for {node} on {ch}"),
                Duration::from_secs(150),
                || !firing(&sink, ch, alert, node).is_empty(),
            )?;
            println!(
                "    {alert} {node} on {ch}: {:.1}s after the incidents began",
                t.elapsed().as_secs_f64()
            );
        }
    }
    wait_for(
        &sink,
        "DiskUsageHigh on Discord",
        Duration::from_secs(120),
        || !sink.matching("/discord", &["DiskUsageHigh"]).is_empty(),
    )?;
    // Let late duplicates arrive (an HA peer that did not hear of the first notification
    // sends after its peer timeout, 15 s), to count them.
    std::thread::sleep(Duration::from_secs(20));
    // Each incident reached each paging channel once: the cluster deduplicates.
    let mut wrong = Vec::new();
    let show = |g: &Got| {
        format!(
            "{:.1}s after the incidents began, from {}: {}",
            g.at.saturating_duration_since(t).as_secs_f64(),
            g.from,
            g.body
                .chars()
                .take(400)
                .collect::<String>()
                .replace('\n', " ")
        )
    };
    for (alert, node) in incidents {
        for ch in PAGED {
            let seq = sequence(&sink, ch, alert, node);
            let fired = seq.iter().filter(|f| **f).count();
            println!(
                "    {alert} {node} on {ch}: {fired} firing, {} resolved notification(s)",
                seq.len() - fired
            );
            if fired != 1 {
                wrong.push(format!(
                    "{alert} {node} on {ch}: {fired} firing notifications"
                ));
                for g in firing(&sink, ch, alert, node) {
                    wrong.push(format!("  {}", show(&g)));
                }
            }
        }
    }
    // And nothing else paged, from the apply on: no alert about another node, none with an
    // empty node (PagerDuty and Telegram carry pages only; email also carries batches).
    for ch in ["/pagerduty", "/telegram"] {
        for g in sink.matching(ch, &[]) {
            let expected = incidents.iter().any(|(a, n)| about(&g, a, n));
            if is_firing(&g) && !expected {
                wrong.push(format!("an unexpected page on {ch}: {}", show(&g)));
            }
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    ensure!(
        sink.matching("/pagerduty", &["DiskUsageHigh"]).is_empty()
            && sink.matching("/telegram", &["DiskUsageHigh"]).is_empty(),
        "a P2 disk alert paged:\n{}",
        sink.summary()
    );
    ensure!(
        pd_events(&sink)
            .iter()
            .all(|e| e["routing_key"] == "lab-routing-key"),
        "a PagerDuty event without the routing key"
    );
    println!(
        "    incidents paged on every channel, disk batched only: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // The host comes back: HostDown resolves, once, on PagerDuty.
    lab_ok(&["start", "validator-2"])?;
    let s = wait_for(
        &sink,
        "HostDown for validator-2 resolved on PagerDuty",
        Duration::from_secs(120),
        || !host_down_resolved(&sink).is_empty(),
    )?;
    println!("    HostDown resolved {s:.1}s after validator-2 started");

    // Every Alertmanager stops: the heartbeats stop (the heartbeat service then pages).
    for n in NODES {
        ssh_ok(n, "root", "systemctl stop prometheus-alertmanager")?;
    }
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(25));
    let late: Vec<_> = sink
        .matching("/heartbeat", &["Watchdog"])
        .into_iter()
        .filter(|g| g.at > stopped + Duration::from_secs(2))
        .collect();
    // (Every Alertmanager is stopped now: what came is all that will come.)
    let resolved = host_down_resolved(&sink);
    ensure!(
        resolved.len() == 1,
        "HostDown for validator-2 resolved {} times on PagerDuty:\n{}",
        resolved.len(),
        sink.summary()
    );
    let beats = sink.matching("/heartbeat", &["Watchdog"]).len();
    ensure!(
        beats >= 3 && late.is_empty(),
        "{beats} heartbeats; {} after every Alertmanager stopped",
        late.len()
    );
    println!("    {beats} heartbeats, none after the Alertmanagers stopped");
    ensure!(
        !out(&o).is_empty(),
        "the apply printed nothing (read its output above)"
    );
    Ok(())
}

/// The notifications of `alert` about `node` on a channel in order: true firing, false resolved.
fn sequence(sink: &Sink, channel: &str, alert: &str, node: &str) -> Vec<bool> {
    sink.matching(channel, &[])
        .iter()
        .filter(|g| about(g, alert, node))
        .map(is_firing)
        .collect()
}

/// PagerDuty events received, parsed.
fn pd_events(sink: &Sink) -> Vec<serde_json::Value> {
    sink.matching("/pagerduty", &[])
        .iter()
        .filter_map(|g| serde_json::from_str(&g.body).ok())
        .collect()
}

/// PagerDuty's resolve events of HostDown for validator-2.
fn host_down_resolved(sink: &Sink) -> Vec<Got> {
    sink.matching("/pagerduty", &[])
        .into_iter()
        .filter(|g| about(g, "HostDown", "validator-2") && !is_firing(g))
        .collect()
}

/// Firing notifications of `alert` about `node` on a channel.
fn firing(sink: &Sink, channel: &str, alert: &str, node: &str) -> Vec<Got> {
    sink.matching(channel, &[])
        .into_iter()
        .filter(|g| about(g, alert, node) && is_firing(g))
        .collect()
}

/// A firing notification, not a resolution. PagerDuty: a `trigger` event; Telegram and
/// email: a message that does not say resolved.
fn is_firing(g: &Got) -> bool {
    if g.path.starts_with("/pagerduty") {
        serde_json::from_str::<serde_json::Value>(&g.body)
            .is_ok_and(|e| e["event_action"] == "trigger")
    } else {
        !g.body.contains("RESOLVED") && !g.body.contains("Resolved")
    }
}

/// Is this notification about `alert` on `node`, by its group's labels? (Not a name that
/// merely appears in it: the sender's hostname is in every email's Message-Id and in the
/// links of every message.)
fn about(g: &Got, alert: &str, node: &str) -> bool {
    let json = || serde_json::from_str::<serde_json::Value>(&g.body).unwrap_or_default();
    if g.path.starts_with("/pagerduty") {
        let e = json();
        let d = &e["payload"]["custom_details"];
        d["alertname"] == alert && d["node"] == node
    } else if g.path.starts_with("/telegram") {
        let m = json();
        let text = m["text"].as_str().unwrap_or_default();
        text.contains(&format!("- alertname = {alert}\n"))
            && text.contains(&format!("- node = {node}\n"))
    } else if g.path == "smtp" {
        g.body
            .lines()
            .any(|l| l.starts_with("Subject:") && l.contains(&format!("] {alert} {node} ")))
    } else {
        g.body.contains(alert) && g.body.contains(node)
    }
}
