//! Native kill-op rule enforcement end to end: `serve`'s enforcer installs a registered embedded
//! node's rules there (`docplaneKillOpRules`), the node applies them without polling, and their
//! events reach the kill records: a matching `sleep` ends with 11601 right at `secs_running`, a
//! non-matching one survives, `max_concurrency` holds N (the next one is refused at admission
//! with 365), protected applications and docplane's own operations survive, every rule kill and
//! refusal has its record naming the rule, observe mode kills nothing and records, disabling the
//! rules clears them on the node, and a restarted node gets them again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dds_support;

use std::time::{Duration, Instant};

use dds_support::*;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};

/// Waits (up to 5 s) until the node holds exactly the rules `ids`.
async fn wait_installed(control: &mongodb::Client, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = control.database("admin").run_command(doc! {"docplaneKillOpRules": 1}).await.unwrap();
        let mut got: Vec<&str> = r.get_array("ruleIds").unwrap().iter().filter_map(Bson::as_str).collect();
        got.sort_unstable();
        let mut want = ids.to_vec();
        want.sort_unstable();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "the node holds {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rule's records, once there are `n` (up to 5 s).
async fn rule_records(h: &Harness, rule_id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = h.get(&format!("/kill-records?limit=100&principal=rule:{rule_id}")).await;
        assert_eq!(status, 200, "{body}");
        let rows = body["records"].as_array().cloned().unwrap_or_default();
        if rows.len() >= n && rows.iter().all(|r| r["outcome"] != "pending") {
            return rows;
        }
        assert!(Instant::now() < deadline, "rule {rule_id} has {} records, not {n}: {rows:#?}", rows.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn code_of(r: &(mongodb::error::Result<Document>, Duration)) -> Option<i32> {
    r.0.as_ref().err().and_then(error_code)
}

/// The test's four rules, by id.
struct Rules {
    /// Kills a command on `limited` at 2 s.
    limit: String,
    /// The same on `watched`, in observe mode.
    observe: String,
    /// At most two commands on `capped`.
    cap: String,
    /// At most one command on `admin`.
    admin_cap: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_node_enforces_rules_natively() {
    let h = Harness::start().await;
    let app = client_as(h.node_addr, "shop-app");
    let guarded = client_as(h.node_addr, "nightly-backup");
    // docplane's own application name and user: what the control plane's connections are.
    let control = client_as(h.node_addr, docplane_driver::DEFAULT_APP_NAME);
    let rules = create_rules(&h).await;
    wait_installed(&control, &[&rules.limit, &rules.observe, &rules.cap, &rules.admin_cap]).await;

    the_rules_are_enforced(&h, &app, &guarded).await;
    every_rule_action_is_recorded(&h, &rules).await;

    // Disabled, the rules leave the node: nothing is enforced any more.
    let path = format!("/instances/{}/kill-op-rule", h.instance_id);
    let (status, b) = send(
        &h,
        reqwest::Method::PUT,
        &path,
        json!({"ids": [rules.limit, rules.observe, rules.cap, rules.admin_cap], "action": "disable"}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    wait_installed(&control, &[]).await;
    let late = sleep_on(&app, "limited", 2_500).await.unwrap();
    assert!(late.0.is_ok(), "a disabled rule killed: {:?}", late.0);
    h.stop().await;
}

/// Protects the application `nightly-backup`, then creates the four rules, enabled.
async fn create_rules(h: &Harness) -> Rules {
    let (status, b) = send(
        h,
        reqwest::Method::PUT,
        &format!("/instances/{}/session-settings", h.instance_id),
        json!({"redact_operations": false, "protected_users": [], "protected_app_names": ["nightly-backup"]}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let limit = enabled_rule(
        h,
        json!({"operation_types": ["command"], "namespaces": ["limited"], "secs_running": 2, "node_type": "replica"}),
    )
    .await;
    let observe = enabled_rule(
        h,
        json!({"operation_types": ["command"], "namespaces": ["watched"], "secs_running": 2,
               "node_type": "replica", "mode": "observe"}),
    )
    .await;
    let cap = enabled_rule(
        h,
        json!({"operation_types": ["command"], "namespaces": ["capped"], "max_concurrency": 2, "node_type": "replica"}),
    )
    .await;
    // At most one command on `admin`: docplane's own reads there (listing, verification, the
    // rules command) must not count.
    let admin_cap = enabled_rule(
        h,
        json!({"operation_types": ["command"], "namespaces": ["admin"], "max_concurrency": 1, "node_type": "replica"}),
    )
    .await;
    Rules { limit, observe, cap, admin_cap }
}

/// The node applies the rules: the matching sleep ends with 11601 right at 2 s; sleeps on
/// another database, of the protected application or under observe mode run their course; the
/// third on `capped` and the second user command on `admin` are refused at admission (365),
/// while docplane's own work on `admin` runs.
async fn the_rules_are_enforced(h: &Harness, app: &mongodb::Client, guarded: &mongodb::Client) {
    let victim = sleep_on(app, "limited", 20_000);
    let other_db = sleep_on(app, "elsewhere", 3_000);
    let protected = sleep_on(guarded, "limited", 3_000);
    let observed = sleep_on(app, "watched", 3_000);
    let capped = [sleep_on(app, "capped", 3_000), sleep_on(app, "capped", 3_000)];
    let admin_hold = sleep_on(app, "admin", 3_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // N are running: the next is refused at once.
    let refused = sleep_on(app, "capped", 3_000).await.unwrap();
    assert_eq!(code_of(&refused), Some(365), "{:?}", refused.0);
    assert!(refused.1 < Duration::from_millis(300), "refused after {:?}", refused.1);
    // docplane's own work on admin runs while the user's sleep holds the one slot.
    let (status, body) = h.get(&h.sessions_path("?limit=100")).await;
    assert_eq!(status, 200, "{body}");
    let second = sleep_on(app, "admin", 10).await.unwrap();
    assert_eq!(code_of(&second), Some(365), "a second admin command was admitted: {:?}", second.0);

    let v = victim.await.unwrap();
    assert_eq!(code_of(&v), Some(11601), "{:?}", v.0);
    assert!(v.1 >= Duration::from_secs(2) && v.1 < Duration::from_secs(4), "ended after {:?}", v.1);
    for (what, s) in [
        ("other database", other_db),
        ("protected app", protected),
        ("observed", observed),
        ("admin", admin_hold),
    ] {
        let r = s.await.unwrap();
        assert!(r.0.is_ok(), "{what}: {:?}", r.0);
        assert!(r.1 >= Duration::from_millis(2_900), "{what} ended early: {:?}", r.1);
    }
    for s in capped {
        assert!(s.await.unwrap().0.is_ok());
    }
}

/// Every rule kill and refusal has its record, naming the rule; observe mode recorded; nothing
/// protected, docplane's own or on another database has one; the chain verifies.
async fn every_rule_action_is_recorded(h: &Harness, rules: &Rules) {
    let records = rule_records(h, &rules.limit, 1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "killed", "{:#}", records[0]);
    assert_eq!(records[0]["rule"]["id"], rules.limit.as_str());
    assert_eq!(records[0]["rule"]["mode"], "kill");
    assert_eq!(records[0]["rule"]["secs_running"], 2);
    assert_eq!(records[0]["targets"][0]["namespace"], "limited.$cmd");
    assert_eq!(records[0]["targets"][0]["app_name"], "shop-app");
    let records = rule_records(h, &rules.cap, 1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "refused", "{:#}", records[0]);
    assert_eq!(records[0]["detail"]["error_code"], 365, "{:#}", records[0]);
    let records = rule_records(h, &rules.admin_cap, 1).await;
    assert_eq!(records.len(), 1, "only the user's second admin command: {records:#?}");
    let records = rule_records(h, &rules.observe, 1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "observed");
    assert_eq!(records[0]["rule"]["mode"], "observe");
    assert_eq!(records[0]["detail"]["would_kill"], records[0]["session_ids"]);
    let (_, all) = h.get("/kill-records?limit=100").await;
    for r in all["records"].as_array().unwrap() {
        for t in r["targets"].as_array().unwrap() {
            assert_ne!(t["app_name"], "nightly-backup", "{r:#}");
            assert_ne!(t["app_name"], docplane_driver::DEFAULT_APP_NAME, "{r:#}");
            assert_ne!(t["namespace"], "elsewhere.$cmd", "{r:#}");
        }
    }
    let (_, verify) = h.get("/kill-records/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_gets_its_rules_again() {
    let mut h = Harness::start().await;
    let limit = enabled_rule(
        &h,
        json!({"operation_types": ["command"], "namespaces": ["limited"], "secs_running": 2, "node_type": "replica"}),
    )
    .await;
    let control = client_as(h.node_addr, docplane_driver::DEFAULT_APP_NAME);
    wait_installed(&control, &[&limit]).await;
    control.shutdown().await;
    // The same address, a fresh process: no rules, a new boot.
    h.node.take().unwrap().shutdown().await.unwrap();
    h.node = Some(start_node_at(h.node_addr, true).await);
    let control = client_as(h.node_addr, docplane_driver::DEFAULT_APP_NAME);
    wait_installed(&control, &[&limit]).await;
    let app = client_as(h.node_addr, "shop-app");
    let v = sleep_on(&app, "limited", 20_000).await.unwrap();
    assert_eq!(code_of(&v), Some(11601), "{:?}", v.0);
    assert!(v.1 < Duration::from_secs(4), "ended after {:?}", v.1);
    assert_eq!(rule_records(&h, &limit, 1).await[0]["outcome"], "killed");
    h.stop().await;
}
