//! Selector kills, safety rails and the privacy placeholder end to end: real clients run `sleep`s
//! on the embedded node, docplane's API kills them by selector or by id.
//!
//! - a dry run answers exactly the sessions the real call then kills; `max` refuses;
//! - protected users and application names (per-instance settings) survive the vendor route
//!   (refused all-or-nothing, saying why) and the selector (skipped and reported);
//! - with `redact_operations`, literals never reach a listing or a kill record.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod dds_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use dds_support::*;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

fn client(addr: SocketAddr, app: &str, user: &str, password: &str) -> mongodb::Client {
    let mut o = ClientOptions::default();
    o.hosts = vec![ServerAddress::Tcp { host: addr.ip().to_string(), port: Some(addr.port()) }];
    o.direct_connection = Some(true);
    o.app_name = Some(app.into());
    o.max_pool_size = Some(16);
    let mut c = Credential::default();
    c.username = Some(user.into());
    c.password = Some(password.into());
    c.source = Some("admin".into());
    o.credential = Some(c);
    mongodb::Client::with_options(o).unwrap()
}

fn sleeps(c: &mongodb::Client, n: usize) -> Vec<JoinHandle<mongodb::error::Result<Document>>> {
    (0..n).map(|_| spawn_sleep(c, 30_000)).collect()
}

async fn put_settings(h: &Harness, body: &Value) {
    let r = h
        .http
        .put(h.url(&format!("/instances/{}/session-settings", h.instance_id)))
        .header("X-Auth-Token", &h.token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// The listed sleeps, by application name (waits until `want` of them are listed).
async fn listed_sleeps(h: &Harness, want: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = h.get(&h.sessions_path("?limit=100&type=command")).await;
        assert_eq!(status, 200, "{body}");
        let found: Vec<Value> = body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["active"] == true && s["operation"].as_str().unwrap().contains("\"sleep\""))
            .cloned()
            .collect();
        if found.len() >= want {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "only {} sleeps listed: {body:#}", found.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(sessions: &Value, outcome: &str) -> BTreeSet<String> {
    sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == outcome)
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn finished_with(handle: JoinHandle<mongodb::error::Result<Document>>) -> Option<i32> {
    let r = tokio::time::timeout(Duration::from_secs(5), handle).await.expect("client answered").unwrap();
    r.err().as_ref().and_then(error_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_is_what_the_real_kill_kills_and_max_refuses() {
    let h = Harness::start().await;
    let shop = client(h.node_addr, "shop-app", NODE_USER, NODE_PASSWORD);
    let report = client(h.node_addr, "report", NODE_USER, NODE_PASSWORD);
    let shop_sleeps = sleeps(&shop, 3);
    let report_sleeps = sleeps(&report, 2);
    listed_sleeps(&h, 5).await;
    let path = format!("/nodes/{}/sessions/kill", h.node_id);
    let selector = json!({"app_name": "shop-app", "type": "command", "namespace": "admin.$cmd"});

    let (status, dry) = h.post(&path, &json!({"filter": selector, "max": 10, "dry_run": true})).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert!(dry.get("record_id").is_none(), "a dry run records nothing: {dry}");
    assert_eq!((dry["matched"].as_u64(), dry["killed"].as_u64()), (Some(3), Some(0)), "{dry}");
    let would = ids(&dry, "would_kill");
    assert_eq!(would.len(), 3);
    for s in dry["sessions"].as_array().unwrap() {
        assert_eq!(s["app_name"], "shop-app");
        assert!(s["operation"].as_str().unwrap().contains("sleep"), "{s}");
    }

    // More matches than max: refused, nothing killed (all five still listed).
    let (status, body) = h.post(&path, &json!({"filter": selector, "max": 2})).await;
    assert_eq!((status, code(&body)), (400, "DBS.900032"), "{body}");
    assert!(body["error_msg"].as_str().unwrap().contains("3 sessions match"), "{body}");
    assert_eq!(listed_sleeps(&h, 5).await.len(), 5);
    // An empty filter would match everything: refused.
    let (status, body) = h.post(&path, &json!({"filter": {}, "max": 1000})).await;
    assert_eq!((status, code(&body)), (400, "DBS.200001"), "{body}");

    // The real call kills exactly what the dry run said.
    let (status, real) = h.post(&path, &json!({"filter": selector, "max": 3})).await;
    assert_eq!(status, 200, "{real}");
    assert_eq!(ids(&real, "killed"), would, "{real}");
    assert_eq!(real["killed"], 3);
    for handle in shop_sleeps {
        assert_eq!(finished_with(handle).await, Some(11601));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(report_sleeps.iter().all(|s| !s.is_finished()), "other applications' sessions are untouched");

    // The record carries the selector and the targets.
    let record_id = real["record_id"].as_str().unwrap();
    let records = wait_audit(&h, "killed").await;
    let rec = records.iter().find(|r| r["id"] == record_id).expect("the selector kill is recorded");
    assert_eq!(rec["selector"]["app_name"], "shop-app");
    assert_eq!(rec["selector"]["max"], 3);
    assert_eq!(rec["targets"].as_array().unwrap().len(), 3);
    // The refused call (max) was recorded as refused; the dry runs were not recorded at all.
    let refused: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 2, "{records:#?}");
    assert!(refused.iter().any(|r| r["detail"]["error_code"] == "DBS.900032"));
    for s in report_sleeps {
        s.abort();
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_users_and_apps_survive_every_kill_path() {
    let h = Harness::start().await;
    let root = client(h.node_addr, "admin-tool", NODE_USER, NODE_PASSWORD);
    root.database("admin")
        .run_command(doc! {"createUser": "backup", "pwd": "backup-pw-1", "roles": ["root"]})
        .await
        .unwrap();
    put_settings(
        &h,
        &json!({"redact_operations": false, "protected_users": ["backup"], "protected_app_names": ["ops-agent"]}),
    )
    .await;
    let backup = client(h.node_addr, "mongodump", "backup", "backup-pw-1");
    let agent = client(h.node_addr, "ops-agent", NODE_USER, NODE_PASSWORD);
    let shop = client(h.node_addr, "shop-app", NODE_USER, NODE_PASSWORD);
    let backup_sleep = spawn_sleep(&backup, 30_000);
    let agent_sleep = spawn_sleep(&agent, 30_000);
    let shop_sleep = spawn_sleep(&shop, 30_000);
    let listed = listed_sleeps(&h, 3).await;
    let id_of = |pick: &dyn Fn(&Value) -> bool| -> String {
        listed.iter().find(|s| pick(s)).map(|s| s["id"].as_str().unwrap().to_owned()).expect("listed")
    };
    let backup_id = id_of(&|s| s["user"] == "backup");

    // The vendor route: refused all-or-nothing, naming the protected id and why.
    let (status, body) = h.post(&h.kill_path(), &json!({"sessions": [backup_id.clone()]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.301071"), "{body}");
    let msg = body["error_msg"].as_str().unwrap();
    assert!(
        msg.contains(&backup_id) && msg.contains("user backup@admin") && msg.contains("protect"),
        "{msg}"
    );

    // The selector: everything running `sleep` as command; protected ones are skipped and said.
    let path = format!("/nodes/{}/sessions/kill", h.node_id);
    let filter = json!({"type": "command", "namespace": "admin.$cmd", "cost_time": 0});
    let (status, dry) = h.post(&path, &json!({"filter": filter, "max": 10, "dry_run": true})).await;
    assert_eq!(status, 200, "{dry}");
    let protected = ids(&dry, "protected");
    assert!(protected.contains(&backup_id), "{dry:#}");
    assert_eq!(protected.len(), 2, "the backup user's and the ops agent's sleeps: {dry:#}");
    for s in dry["sessions"].as_array().unwrap().iter().filter(|s| s["outcome"] == "protected") {
        let reason = s["reason"].as_str().unwrap();
        assert!(reason.contains("user backup@admin") || reason.contains("ops-agent"), "{reason}");
    }
    let would = ids(&dry, "would_kill");
    assert_eq!(would.len(), 1, "{dry:#}");
    // All-or-nothing on the vendor route: a protected id next to a killable one kills neither.
    let shop_id = would.iter().next().unwrap().clone();
    let (status, body) =
        h.post(&h.kill_path(), &json!({"sessions": [shop_id.clone(), backup_id.clone()]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.301071"), "{body}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!shop_sleep.is_finished());

    let (status, real) = h.post(&path, &json!({"filter": filter, "max": 10})).await;
    assert_eq!(status, 200, "{real}");
    assert_eq!(ids(&real, "killed"), would);
    assert_eq!(ids(&real, "protected"), protected);
    assert_eq!(finished_with(shop_sleep).await, Some(11601));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!backup_sleep.is_finished() && !agent_sleep.is_finished(), "protected sessions still run");
    let records = wait_audit(&h, "killed").await;
    let rec = records.iter().find(|r| r["id"] == real["record_id"]).unwrap();
    assert_eq!(rec["protected"].as_array().unwrap().len(), 2, "{rec:#}");
    backup_sleep.abort();
    agent_sleep.abort();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_never_reach_lists_or_records_when_redacted() {
    let h = Harness::start().await;
    let shop = client(h.node_addr, "shop-app", NODE_USER, NODE_PASSWORD);
    let email = "alice@example.com";
    let db = shop.database("admin");
    let sleeper = tokio::spawn(async move {
        db.run_command(doc! {"sleep": 1, "millis": 30_000_i64, "comment": email}).await
    });
    // Off (the default): the command is shown as it is.
    let s = h.wait_session(|s| s["operation"].as_str().is_some_and(|o| o.contains("\"sleep\""))).await;
    assert!(s["operation"].as_str().unwrap().contains(email), "{s}");

    put_settings(&h, &json!({"redact_operations": true, "protected_users": [], "protected_app_names": []}))
        .await;
    let (status, body) = h.get(&h.sessions_path("?limit=100")).await;
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(!text.contains(email), "{body:#}");
    let op = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == s["id"])
        .map(|x| x["operation"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(op.contains("\"sleep\"") && op.contains("?string") && op.contains("?number"), "{op}");

    // The selector's answer and the kill record keep the shape only.
    let path = format!("/nodes/{}/sessions/kill", h.node_id);
    let (status, dry) =
        h.post(&path, &json!({"filter": {"app_name": "shop-app"}, "max": 5, "dry_run": true})).await;
    assert_eq!(status, 200, "{dry}");
    assert!(!dry.to_string().contains(email), "{dry}");
    let (status, body) = h.post(&h.kill_path(), &json!({"sessions": [s["id"]]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(finished_with(sleeper).await, Some(11601));
    let records = wait_audit(&h, "killed").await;
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(email), "{text}");
    assert!(text.contains("?string"), "{text}");
    h.stop().await;
}
