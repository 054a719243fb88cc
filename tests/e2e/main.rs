//! End-to-end tests against the lab's real Debian nodes (systemd-nspawn, see `strata-lab`).
//!
//! Our own harness (harness = false): it brings the lab up once, runs the registered cases
//! in order (resetting the nodes a case asks for), and, when it brought the lab up itself,
//! takes it down at the end and checks nothing is left behind.
//!
//! Arguments follow cargo's conventions loosely: the first free argument is a substring
//! filter, `--exact` makes it exact, `--list` lists cases; other flags (--nocapture,
//! --test-threads=N, ...) are accepted and ignored.
//!
//! Environment: STRATA_SKIP_LAB=1 reports every case as ignored (for machines that cannot
//! run the lab); STRATA_KEEP_LAB=1 leaves a lab this run started running afterwards.
//!
//! To add cases: write a `cases()` in a new file and add it to `cases()` below.

mod alert_cases;
mod apt_repo_cases;
mod artifact_cases;
mod bare_cases;
mod bootstrap_cases;
mod canary_cases;
mod common;
mod drift_cases;
mod edge_cases;
mod edge_states;
mod failover_cases;
mod fuzz_cases;
mod guard_cases;
mod interrupt_cases;
mod lab_cases;
mod log_cases;
mod plan_apply_cases;
mod progress_cases;
mod rollback_cases;
mod ssh_config_cases;
mod trixie_cases;

use common::{lab, text, Case};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// Every registered case, in the order they run.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(lab_cases::cases());
    v.extend(plan_apply_cases::cases());
    v.extend(drift_cases::cases());
    v.extend(edge_cases::cases());
    v.extend(guard_cases::cases());
    v.extend(rollback_cases::cases());
    v.extend(bare_cases::cases());
    v.extend(bootstrap_cases::cases());
    v.extend(failover_cases::cases());
    v.extend(interrupt_cases::cases());
    v.extend(canary_cases::cases());
    v.extend(artifact_cases::cases());
    v.extend(apt_repo_cases::cases());
    v.extend(ssh_config_cases::cases());
    v.extend(log_cases::cases());
    v.extend(progress_cases::cases());
    v.extend(alert_cases::cases());
    // Last: they bring the lab to Debian 13 (or a mixed lab); the ones above run on 12.
    v.extend(trixie_cases::cases());
    v
}

/// The teardown check's name (it runs last, after every other case).
const DOWN_CASE: &str = "lab::down_leaves_nothing_behind";

struct Args {
    filter: Option<String>,
    exact: bool,
    list: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        filter: None,
        exact: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => a.list = true,
            "--exact" => a.exact = true,
            // Flags that take a separate value: skip the value too.
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile" | "-Z" => {
                it.next();
            }
            f if f.starts_with('-') => {}
            f if a.filter.is_none() => a.filter = Some(f.to_string()),
            _ => {}
        }
    }
    a
}

impl Args {
    fn selects(&self, name: &str) -> bool {
        match &self.filter {
            None => true,
            Some(f) if self.exact => name == f,
            Some(f) => name.contains(f.as_str()),
        }
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<(String, String)>,
    ignored: usize,
    filtered: usize,
}

impl Tally {
    fn summary(&self, started: Instant) -> i32 {
        if !self.failed.is_empty() {
            println!("\nfailures:\n");
            for (name, msg) in &self.failed {
                println!("---- {name} ----\n{msg}\n");
            }
            println!("failures:");
            for (name, _) in &self.failed {
                println!("    {name}");
            }
        }
        let ok = self.failed.is_empty();
        println!(
            "\ntest result: {}. {} passed; {} failed; {} ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
            if ok { "ok" } else { "FAILED" },
            self.passed,
            self.failed.len(),
            self.ignored,
            self.filtered,
            started.elapsed().as_secs_f64()
        );
        if ok {
            0
        } else {
            1
        }
    }

    fn record(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                println!("test {name} ... ok");
                self.passed += 1;
            }
            Err(msg) => {
                println!("test {name} ... FAILED");
                self.failed.push((name.to_string(), msg));
            }
        }
    }
}

/// Run a case body, turning errors and panics into a message.
fn attempt(f: impl FnOnce() -> anyhow::Result<()>) -> Result<(), String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())),
    }
}

fn main() {
    let started = Instant::now();
    let args = parse_args();
    let all = cases();
    let mut names: Vec<&str> = all.iter().map(|c| c.name).collect();
    names.push(DOWN_CASE);
    if args.list {
        for n in names.iter().filter(|n| args.selects(n)) {
            println!("{n}: test");
        }
        return;
    }
    let selected: Vec<&Case> = all.iter().filter(|c| args.selects(c.name)).collect();
    let run_down_case = args.selects(DOWN_CASE);
    let mut tally = Tally {
        filtered: names.len() - selected.len() - usize::from(run_down_case),
        ..Tally::default()
    };
    println!(
        "\nrunning {} tests",
        selected.len() + usize::from(run_down_case)
    );

    if std::env::var("STRATA_SKIP_LAB").as_deref() == Ok("1") {
        for n in selected
            .iter()
            .map(|c| c.name)
            .chain(run_down_case.then_some(DOWN_CASE))
        {
            println!("test {n} ... ignored (STRATA_SKIP_LAB=1)");
            tally.ignored += 1;
        }
        std::process::exit(tally.summary(started));
    }

    // Was the lab already up? Then it is someone's working lab: leave it running.
    let was_up = lab(&["status"]).status.success();
    let t = Instant::now();
    // The cases run on the suite's release unless they ask for another (Case::release).
    let release = common::suite_release();
    if let Ok(r) = std::env::var("STRATA_E2E_RELEASE") {
        if r != release {
            println!("error: STRATA_E2E_RELEASE={r:?} is not bookworm, trixie or mixed");
            std::process::exit(1);
        }
    }
    let up = lab(&["up", "--nodes", "3", "--release", release]);
    if !up.status.success() {
        println!(
            "error: the lab could not start; e2e tests cannot run.\n{}",
            text(&up)
        );
        println!("(on a machine that cannot run the lab, set STRATA_SKIP_LAB=1 to report the e2e tests as ignored)");
        tally
            .failed
            .push(("lab up".into(), "the lab could not start".into()));
        std::process::exit(tally.summary(started));
    }
    if let Err(e) = attempt(|| common::switch_lab_release(release)) {
        println!("error: the lab is not on {release}: {e}");
        tally
            .failed
            .push(("lab up".into(), format!("the lab is not on {release}")));
        std::process::exit(tally.summary(started));
    }
    println!("lab up ({release}, {:.1}s)", t.elapsed().as_secs_f64());

    for c in &selected {
        let result = attempt(|| {
            let want = c.release.unwrap_or(release);
            if want != common::lab_release() {
                let t = Instant::now();
                common::switch_lab_release(want)?;
                println!("lab release {want} ({:.1}s)", t.elapsed().as_secs_f64());
            }
            common::fresh(c.fresh)?;
            (c.run)()
        });
        tally.record(c.name, result);
    }

    let keep = was_up || std::env::var("STRATA_KEEP_LAB").as_deref() == Ok("1");
    // A lab left running is left on bookworm, as `strata-lab up` makes it.
    if keep && common::lab_release() != "bookworm" {
        if let Err(e) = attempt(|| common::switch_lab_release("bookworm")) {
            tally.failed.push(("lab back to bookworm".into(), e));
        }
    }
    if run_down_case {
        if keep {
            println!("test {DOWN_CASE} ... ignored (the lab is left running)");
            tally.ignored += 1;
        } else {
            tally.record(DOWN_CASE, attempt(lab_cases::down_leaves_nothing_behind));
        }
    } else if !keep {
        let down = lab(&["down"]);
        if !down.status.success() {
            tally.failed.push(("lab down".into(), text(&down)));
        }
    }
    std::process::exit(tally.summary(started));
}
