//! Kill-op rules end to end: the vendor's SDK drives the rule calls and the connection statistics
//! (`tests/clients/rules_sdk.py`), and the enforcer that `serve` runs applies enabled rules to a
//! node registered like any MongoDB (the embedded node, started apart and reached over TCP):
//! `secs_running` ends matching operations with 11601 within `secs_running` plus two intervals,
//! non-matching and protected ones survive, `max_concurrency` keeps the oldest N, observe mode
//! kills nothing and records once, and every rule kill has its record naming the rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dds_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dds_support::*;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_sdk_drives_rules_and_connection_statistics() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run .ci/setup-python", python.display());
    let h = Harness::start().await;
    let uri = format!(
        "mongodb://{NODE_USER}:{NODE_PASSWORD}@{}/?authSource=admin&directConnection=true",
        h.node_addr
    );
    let child = tokio::process::Command::new(&python)
        .arg(root.join("tests/clients/rules_sdk.py"))
        .args([
            h.base.as_str(),
            &h.access_key,
            &h.secret_key,
            &h.project_id,
            &h.instance_id,
            &h.node_id,
            &uri,
        ])
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(120), child).await.expect("SDK script timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("OK"), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The rule's kill is recorded under the rule, not the SDK's user.
    let records = wait_audit(&h, "killed").await;
    let rule_kill = records.iter().find(|r| r["outcome"] == "killed").unwrap();
    assert!(rule_kill["principal"].as_str().unwrap().starts_with("rule:"), "{rule_kill}");
    assert_eq!(rule_kill["access_key"], "", "{rule_kill}");
    h.stop().await;
}

async fn rule_records(h: &Harness, rule_id: &str) -> Vec<Value> {
    let (status, body) = h.get(&format!("/kill-records?limit=100&principal=rule:{rule_id}")).await;
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().cloned().unwrap_or_default()
}

fn killed_by_interrupt(r: &(mongodb::error::Result<Document>, Duration)) -> bool {
    matches!(&r.0, Err(e) if error_code(e) == Some(11601))
}

/// The polling enforcer (a node without `docplaneKillOpRules`, as any MongoDB); the embedded
/// node's native enforcement is `tests/rules_native.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcer_applies_rules_to_a_registered_node() {
    let h = Harness::start_polled().await;
    let app = client_as(h.node_addr, "shop-app");
    let guarded = client_as(h.node_addr, "nightly-backup");
    // The instance protects one application: no rule may touch it.
    let (status, b) = send(
        &h,
        reqwest::Method::PUT,
        &format!("/instances/{}/session-settings", h.instance_id),
        json!({"redact_operations": false, "protected_users": [], "protected_app_names": ["nightly-backup"]}),
    )
    .await;
    assert_eq!(status, 200, "{b}");

    // secs_running 2 on commands of database `limited`; observe mode on database `watched`;
    // at most 2 concurrent commands on database `capped`.
    let limit = enabled_rule(
        &h,
        json!({"operation_types": ["command"], "namespaces": ["limited"], "secs_running": 2, "node_type": "replica"}),
    )
    .await;
    let observe = enabled_rule(
        &h,
        json!({"operation_types": ["command"], "namespaces": ["watched"], "secs_running": 2,
               "node_type": "replica", "mode": "observe"}),
    )
    .await;
    let cap = enabled_rule(
        &h,
        json!({"operation_types": ["command"], "namespaces": ["capped"], "max_concurrency": 2, "node_type": "replica"}),
    )
    .await;

    let started = Instant::now();
    let victim = sleep_on(&app, "limited", 20_000);
    let other_db = sleep_on(&app, "elsewhere", 4_500);
    let protected = sleep_on(&guarded, "limited", 4_500);
    let observed = sleep_on(&app, "watched", 4_500);
    let mut capped = Vec::new();
    for _ in 0..4 {
        capped.push(sleep_on(&app, "capped", 15_000));
        // Distinct start times: the two oldest are the first two.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // The matching sleep ends with 11601 within secs_running plus two intervals (and slack).
    let v = victim.await.unwrap();
    assert!(killed_by_interrupt(&v), "{:?}", v.0);
    assert!(v.1 >= Duration::from_secs(2) && v.1 < Duration::from_millis(5_500), "ended after {:?}", v.1);
    // The cap: the two newest end with 11601, the two oldest keep running.
    let newest = capped.split_off(2);
    for s in newest {
        let r = s.await.unwrap();
        assert!(killed_by_interrupt(&r), "{:?}", r.0);
        assert!(r.1 < Duration::from_secs(5), "cap enforced after {:?}", r.1);
    }
    // Non-matching, protected and observed sleeps run to their end.
    for (what, s) in [("other database", other_db), ("protected app", protected), ("observed", observed)] {
        let r = s.await.unwrap();
        assert!(r.0.is_ok(), "{what}: {:?}", r.0);
        assert!(r.1 >= Duration::from_millis(4_400), "{what} ended early: {:?}", r.1);
    }
    for s in &capped {
        assert!(!s.is_finished(), "one of the two oldest capped sleeps ended");
    }
    assert!(started.elapsed() < Duration::from_secs(14), "the survivors were checked in time");

    // Every rule kill has its record, naming the rule; observe mode recorded once, killed nothing.
    let records = rule_records(&h, &limit).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "killed", "{:#}", records[0]);
    assert_eq!(records[0]["rule"]["id"], limit.as_str());
    assert_eq!(records[0]["rule"]["mode"], "kill");
    assert_eq!(records[0]["rule"]["secs_running"], 2);
    assert_eq!(records[0]["targets"][0]["namespace"], "limited.$cmd");
    let records = rule_records(&h, &cap).await;
    let killed: usize = records.iter().map(|r| r["session_ids"].as_array().unwrap().len()).sum();
    assert_eq!(killed, 2, "{records:#?}");
    assert!(records.iter().all(|r| r["outcome"] == "killed"), "{records:#?}");
    let records = rule_records(&h, &observe).await;
    assert_eq!(records.len(), 1, "observed once, not every interval: {records:#?}");
    assert_eq!(records[0]["outcome"], "observed");
    assert_eq!(records[0]["rule"]["mode"], "observe");
    assert_eq!(records[0]["detail"]["would_kill"], records[0]["session_ids"]);
    // Nothing was recorded against the protected application or the other database.
    let (_, all) = h.get("/kill-records?limit=100").await;
    for r in all["records"].as_array().unwrap() {
        for t in r["targets"].as_array().unwrap() {
            assert_ne!(t["app_name"], "nightly-backup", "{r:#}");
            assert_ne!(t["namespace"], "elsewhere.$cmd", "{r:#}");
        }
    }
    let (_, verify) = h.get("/kill-records/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");

    // A disabled rule is not enforced: the survivors of the cap keep running after disabling it,
    // under a time rule that now matches them.
    let path = format!("/instances/{}/kill-op-rule", h.instance_id);
    let (status, b) = send(&h, reqwest::Method::PUT, &path, json!({"ids": [cap], "action": "disable"})).await;
    assert_eq!(status, 200, "{b}");
    let (status, b) =
        send(&h, reqwest::Method::PUT, &path, json!({"ids": [limit], "action": "disable"})).await;
    assert_eq!(status, 200, "{b}");
    let late = sleep_on(&app, "limited", 3_500).await.unwrap();
    assert!(late.0.is_ok(), "a disabled rule killed: {:?}", late.0);
    h.stop().await;
}

/// The benchmark behind BENCHMARKS.md ("operation crosses secs_running -> client sees 11601"):
/// 20 matching sleeps started 50 ms apart (so they cross the limit at every phase of the
/// enforcer's 1 s interval); prints each one's time past the limit. Run with
/// `cargo nextest run -p docplane-api --test rules --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_rule_kill_latency() {
    let h = Harness::start_polled().await;
    let app = client_as(h.node_addr, "bench-app");
    enabled_rule(
        &h,
        json!({"operation_types": ["command"], "namespaces": ["bench"], "secs_running": 2, "node_type": "replica"}),
    )
    .await;
    let mut sleeps = Vec::new();
    for _ in 0..20 {
        sleeps.push(sleep_on(&app, "bench", 30_000));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut past_ms = Vec::new();
    for s in sleeps {
        let r = s.await.unwrap();
        assert!(killed_by_interrupt(&r), "{:?}", r.0);
        past_ms.push(r.1.saturating_sub(Duration::from_secs(2)).as_secs_f64() * 1000.0);
    }
    past_ms.sort_by(f64::total_cmp);
    let at = |q: f64| past_ms[((past_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "crossing secs_running -> 11601 (ms past the limit, n=20, interval 1 s): min {:.0} p50 {:.0} p90 {:.0} max {:.0}",
        past_ms[0],
        at(0.5),
        at(0.9),
        past_ms[past_ms.len() - 1]
    );
    h.stop().await;
}
