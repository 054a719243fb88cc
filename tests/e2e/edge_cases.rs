//! Trust at the edges: the strange live states a production host gets into.

use crate::common::*;
use crate::plan_apply_cases::{expect_code, st_in, TempRepo};
use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::Instant;

pub fn cases() -> Vec<Case> {
    vec![case_fresh(
        "edge::hung_probe_fails_that_node_after_its_deadline",
        &["validator-2"],
        hung_probe,
    )]
}

/// validator-2's `dpkg-query` hangs (as it does behind a held dpkg lock or a stuck mount):
/// the plan of validator-1 still finishes, validator-2 fails after its probe deadline, with
/// the step named, and the whole plan takes about the deadline, not forever.
fn hung_probe() -> Result<()> {
    let r = TempRepo::new()?;
    r.edit(
        "inventory/lab.yaml",
        "defaults:\n",
        "defaults:\n  timeouts: {probe: 4}\n",
    )?;
    ssh_ok(
        "validator-2",
        "root",
        "mv /usr/bin/dpkg-query /usr/bin/dpkg-query.real && printf '#!/bin/sh\\nexec sleep 600\\n' > /usr/bin/dpkg-query && chmod 0755 /usr/bin/dpkg-query",
    )?;
    let t = Instant::now();
    let o = st_in(
        r.path(),
        &["plan", "--format", "json", "validator-1", "validator-2"],
    );
    let took = t.elapsed().as_secs_f64();
    println!("    plan with a hung probe on validator-2 took {took:.1}s (deadline 4s)");
    expect_code(&o, 1, "plan with a hung probe")?;
    let v: Value = serde_json::from_slice(&o.stdout)?;
    let node = |n: &str| {
        v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["node"] == n))
            .cloned()
            .unwrap_or(Value::Null)
    };
    ensure!(
        node("validator-1")["status"] == "planned",
        "validator-1: {}",
        node("validator-1")
    );
    let err = node("validator-2")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        node("validator-2")["status"] == "failed"
            && err.contains("reading the live state")
            && err.contains("deadline of 4s"),
        "validator-2: {err}"
    );
    ensure!(took < 30.0, "the plan waited {took:.1}s for a hung node");
    fresh(&["validator-2"])?;
    Ok(())
}
