//! DDS session APIs end to end, in process: the embedded node, the API over HTTP, a separate
//! MongoDB client running a `sleep` and a long collection scan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dds_support;

use std::time::{Duration, Instant};

use dds_support::*;
use docplane_store::{GroupType, Instance, InstanceGroup, InstanceMode, Node, NodeUpdate};
use serde_json::{Value, json};

fn is_sleep(s: &Value) -> bool {
    s["active"] == true && s["operation"].as_str().unwrap_or("").contains("\"sleep\"")
}

fn is_scan(s: &Value) -> bool {
    s["active"] == true && s["namespace"] == "test.big" && s["type"] == "query"
}

fn ids(body: &Value) -> Vec<String> {
    body["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filter_page_and_kill() {
    let h = Harness::start().await;
    let client = app_client(h.node_addr, 10);
    fill(&client, 20_000).await;
    let sleeper = spawn_sleep(&client, 30_000);
    let scanner = spawn_scan(&client);

    let sleep = h.wait_session(is_sleep).await;
    let scan = h.wait_session(is_scan).await;
    // Vendor fields of the sleep.
    assert!(sleep["id"].as_str().unwrap().parse::<u32>().is_ok(), "{sleep}");
    assert_eq!(sleep["type"], "command");
    assert_eq!(sleep["namespace"], "admin.$cmd");
    assert_eq!(sleep["db"], "admin");
    assert_eq!(sleep["user"], NODE_USER);
    assert!(sleep["description"].as_str().unwrap().starts_with("conn"));
    assert!(sleep["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(sleep["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(
        sleep["cost_time"].as_str().unwrap().parse::<u64>().is_ok(),
        "cost_time is a string of microseconds"
    );
    let op: Value = serde_json::from_str(sleep["operation"].as_str().unwrap()).unwrap();
    assert_eq!(op["millis"], 30_000);
    // Vendor fields of the scan.
    assert!(scan["plan_summary"].as_str().unwrap().contains("COLLSCAN"), "{scan}");
    assert_eq!(scan["db"], "test");

    // docplane's own operations never show.
    let (_, all) = h.get(&h.sessions_path("?limit=100")).await;
    assert!(
        all["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["operation"].as_str().unwrap().contains("currentOp"))
    );
    // Ordered by cost_time, descending.
    let costs: Vec<u64> = all["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cost_time"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");
    // Inactive sessions are listed too, with active: false.
    assert!(all["sessions"].as_array().unwrap().iter().any(|s| s["active"] == false), "{all:#}");

    // Filters.
    let (_, b) = h.get(&h.sessions_path("?type=query&limit=100")).await;
    assert!(ids(&b).contains(&scan["id"].as_str().unwrap().to_owned()));
    assert!(b["sessions"].as_array().unwrap().iter().all(|s| s["type"] == "query"));
    let (_, b) = h.get(&h.sessions_path("?plan_summary=COLLSCAN")).await;
    assert_eq!(ids(&b), vec![scan["id"].as_str().unwrap().to_owned()]);
    assert_eq!(b["total_count"], 1);
    let (_, b) = h.get(&h.sessions_path("?namespace=test.big")).await;
    assert_eq!(b["total_count"], 1);
    let (_, b) = h.get(&h.sessions_path("?namespace=admin.$cmd&type=command")).await;
    assert!(ids(&b).contains(&sleep["id"].as_str().unwrap().to_owned()));
    let (_, b) = h.get(&h.sessions_path("?cost_time=3600000000")).await;
    assert_eq!(b["total_count"], 0);
    assert_eq!(b["sessions"], json!([]));

    // Paging: pages of one cover the whole list exactly once.
    let (_, full) = h.get(&h.sessions_path("?limit=100&type=command")).await;
    let total = full["total_count"].as_u64().unwrap();
    assert!(total >= 1);
    let (_, first) = h.get(&h.sessions_path("?limit=1&offset=0&type=command")).await;
    assert_eq!(first["total_count"].as_u64().unwrap(), total);
    assert_eq!(first["sessions"].as_array().unwrap().len(), 1);
    let (_, beyond) = h.get(&h.sessions_path(&format!("?limit=1&offset={total}&type=command"))).await;
    assert_eq!(beyond["sessions"], json!([]));
    // Default page size is 10.
    let (_, d) = h.get(&h.sessions_path("")).await;
    assert!(d["sessions"].as_array().unwrap().len() <= 10);

    // Kill both (a duplicate collapses); each client sees 11601.
    let body = json!({"sessions": [sleep["id"], scan["id"], sleep["id"]]});
    let (status, resp) = h.post(&h.kill_path(), &body).await;
    assert_eq!((status, &resp), (200, &json!({})));
    let e = tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap().unwrap_err();
    assert_eq!(error_code(&e), Some(11601), "{e:?}");
    let e = tokio::time::timeout(Duration::from_secs(5), scanner).await.unwrap().unwrap().unwrap_err();
    assert_eq!(error_code(&e), Some(11601), "{e:?}");

    // The kill is recorded with a snapshot of each target and its per-id outcome.
    let audit = wait_audit(&h, "killed").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["outcome"], "killed");
    assert_eq!(audit[0]["node_id"], h.node_id.as_str());
    assert_eq!(audit[0]["instance_id"], h.instance_id.as_str());
    assert!(audit[0]["source"].as_str().unwrap().starts_with("127.0.0.1:"), "{}", audit[0]);
    assert_eq!(audit[0]["detail"]["outcomes"].as_array().unwrap().len(), 2);
    let targets = audit[0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    let sleep_target = targets.iter().find(|t| t["id"] == sleep["id"]).unwrap();
    assert_eq!(sleep_target["op_type"], "command");
    assert_eq!(sleep_target["user"], NODE_USER);
    assert!(sleep_target["command"].as_str().unwrap().contains("\"sleep\""), "{sleep_target}");
    assert!(targets.iter().any(|t| t["plan_summary"].as_str().unwrap().contains("COLLSCAN")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_error_and_refusals_kill_nothing() {
    let h = Harness::start().await;
    let client = app_client(h.node_addr, 10);
    let sleeper = spawn_sleep(&client, 30_000);
    let sleep = h.wait_session(is_sleep).await;
    let sleep_id = sleep["id"].as_str().unwrap().to_owned();

    list_parameters_are_refused(&h).await;
    kill_bodies_are_refused(&h, &sleep_id).await;
    unknown_and_inactive_ids_are_refused(&h, &sleep_id).await;
    old_versions_and_frozen_nodes_are_refused(&h, &sleep_id).await;
    another_projects_node_is_not_found(&h).await;

    // Nothing was killed by any refused request.
    assert!(!sleeper.is_finished());
    let again = h.wait_session(is_sleep).await;
    assert_eq!(again["id"], sleep["id"]);
    // Every attempt that reached the handler is audited as refused.
    let audit = wait_audit(&h, "refused").await;
    assert!(audit.len() >= 12, "{}", audit.len());
    assert!(audit.iter().all(|a| a["outcome"] == "refused"), "{audit:?}");
    assert!(audit.iter().all(|a| a["detail"]["error_code"].as_str().unwrap().starts_with("DBS.")));

    let (status, _) = h.post(&h.kill_path(), &json!({"sessions": [sleep_id]})).await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&sleeper.await.unwrap().unwrap_err()), Some(11601));
    h.stop().await;
}

/// List parameters, each with its own vendor code; an unknown node is 404.
async fn list_parameters_are_refused(h: &Harness) {
    for (query, want) in [
        ("?limit=0", "DBS.280439"),
        ("?limit=101", "DBS.280439"),
        ("?limit=x", "DBS.280439"),
        ("?offset=-1", "DBS.280440"),
        ("?offset=abc", "DBS.280440"),
        ("?plan_summary=TABLESCAN", "DBS.301072"),
        ("?type=drop", "DBS.301073"),
        ("?namespace=nodot", "DBS.301074"),
        ("?cost_time=-3", "DBS.301075"),
        ("?cost_time=soon", "DBS.301075"),
    ] {
        let (status, body) = h.get(&h.sessions_path(query)).await;
        assert_eq!((status, code(&body)), (400, want), "{query}: {body}");
    }
    let (status, body) = h.get("/nodes/0123456789abcdef0123456789abcdefno02/sessions").await;
    assert_eq!((status, code(&body)), (404, "DBS.200013"));
}

/// Kill body validation: malformed bodies, too many ids, an id that is no number; an unknown
/// node is 404.
async fn kill_bodies_are_refused(h: &Harness, sleep_id: &str) {
    let kill = h.kill_path();
    for raw in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"sessions":"1"}"#,
        br#"{"sessions":[]}"#,
        br#"{"sessions":[1]}"#,
    ] {
        let (status, body) = h.post_raw(&kill, raw.to_vec()).await;
        assert_eq!((status, code(&body)), (400, "DBS.200001"), "{}", String::from_utf8_lossy(raw));
    }
    let too_many: Vec<String> = (1..=1001).map(|i| i.to_string()).collect();
    let (status, body) = h.post(&kill, &json!({ "sessions": too_many })).await;
    assert_eq!((status, code(&body)), (400, "DBS.200001"));
    let (status, body) = h.post(&kill, &json!({"sessions": [sleep_id, "abc"]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.301071"));
    assert!(body["error_msg"].as_str().unwrap().contains("abc"));
    let (status, body) =
        h.post("/nodes/0123456789abcdef0123456789abcdefno02/session", &json!({"sessions": ["1"]})).await;
    assert_eq!((status, code(&body)), (404, "DBS.200013"));
}

/// An unknown id next to a real one, and inactive sessions (an idle connection, an idle
/// session): refused naming them.
async fn unknown_and_inactive_ids_are_refused(h: &Harness, sleep_id: &str) {
    let kill = h.kill_path();
    let (status, body) = h.post(&kill, &json!({"sessions": [sleep_id, "987654"]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.301071"), "{body}");
    let msg = body["error_msg"].as_str().unwrap();
    assert!(msg.contains("987654") && !msg.contains(sleep_id), "{msg}");
    let idle_client = app_client(h.node_addr, 2);
    idle_client.database("admin").run_command(mongodb::bson::doc! {"ping": 1}).await.unwrap();
    let (_, all) = h.get(&h.sessions_path("?limit=100")).await;
    let inactive: Vec<String> = all["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["active"] == false)
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!inactive.is_empty(), "{all:#}");
    let (status, body) = h.post(&kill, &json!({"sessions": [sleep_id, inactive[0]]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.301071"), "{body}");
    let msg = body["error_msg"].as_str().unwrap();
    assert!(msg.contains("Inactive sessions cannot be terminated") && msg.contains(&inactive[0]), "{msg}");
}

/// Version and state refusals: a node below 3.4, a frozen instance (DBS.200011), a frozen node
/// (DBS.200019); each put back afterwards.
async fn old_versions_and_frozen_nodes_are_refused(h: &Harness, sleep_id: &str) {
    let kill = h.kill_path();
    let store = h.api.state().store.clone();
    store
        .update_node(&h.node_id, &NodeUpdate { version: Some("3.2.22".into()), ..Default::default() })
        .await
        .unwrap();
    let (status, body) = h.get(&h.sessions_path("")).await;
    assert_eq!((status, code(&body)), (400, "DBS.200041"));
    let (status, body) = h.post(&kill, &json!({"sessions": [sleep_id]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.200041"));
    store
        .update_node(&h.node_id, &NodeUpdate { version: Some("7.0.0".into()), ..Default::default() })
        .await
        .unwrap();
    store.update_instance_status(&h.instance_id, "frozen").await.unwrap();
    let (status, body) = h.post(&kill, &json!({"sessions": [sleep_id]})).await;
    assert_eq!((status, code(&body)), (403, "DBS.200011"));
    let (status, body) = h.get(&h.sessions_path("")).await;
    assert_eq!((status, code(&body)), (403, "DBS.200011"));
    store.update_instance_status(&h.instance_id, "normal").await.unwrap();
    // The node's own state: DBS.200019, not the instance's DBS.200011.
    store
        .update_node(&h.node_id, &NodeUpdate { status: Some("frozen".into()), ..Default::default() })
        .await
        .unwrap();
    let (status, body) = h.post(&kill, &json!({"sessions": [sleep_id]})).await;
    assert_eq!((status, code(&body)), (403, "DBS.200019"), "{body}");
    let (status, body) = h.get(&h.sessions_path("")).await;
    assert_eq!((status, code(&body)), (403, "DBS.200019"), "{body}");
    store
        .update_node(&h.node_id, &NodeUpdate { status: Some("normal".into()), ..Default::default() })
        .await
        .unwrap();
}

/// A node of another project (registered in the store directly, at the same address) is a
/// plain 404.
async fn another_projects_node_is_not_found(h: &Harness) {
    let store = h.api.state().store.clone();
    let other = Instance {
        id: "ffffffffffffffffffffffffffffffffin02".into(),
        project_id: "0123456789abcdef0123456789abcdef".into(),
        name: "other".into(),
        mode: InstanceMode::Single,
        status: "normal".into(),
        datastore_version: "7.0.0".into(),
        port: 1,
        created_at: 0,
        updated_at: 0,
    };
    store.create_instance(&other).await.unwrap();
    store
        .create_instance_group(&InstanceGroup {
            id: "ffffffffffffffffffffffffffffffffgr02".into(),
            instance_id: other.id.clone(),
            group_type: GroupType::Single,
            name: "g".into(),
            status: "normal".into(),
        })
        .await
        .unwrap();
    store
        .create_node(&Node {
            id: "ffffffffffffffffffffffffffffffffno02".into(),
            instance_id: other.id.clone(),
            group_id: "ffffffffffffffffffffffffffffffffgr02".into(),
            name: "n".into(),
            role: "Primary".into(),
            status: "normal".into(),
            address: h.node_addr.to_string(),
            credentials_enc: None,
            version: "7.0.0".into(),
            updated_at: 0,
        })
        .await
        .unwrap();
    let (status, body) = h.get("/nodes/ffffffffffffffffffffffffffffffffno02/sessions").await;
    assert_eq!((status, code(&body)), (404, "DBS.200013"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_fails_promptly() {
    let mut h = Harness::start().await;
    h.node.take().unwrap().shutdown().await.unwrap();
    let started = Instant::now();
    let (status, body) = h.get(&h.sessions_path("")).await;
    assert_eq!((status, code(&body)), (400, "DBS.301076"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let started = Instant::now();
    let (status, body) = h.post(&h.kill_path(), &json!({"sessions": ["12"]})).await;
    assert_eq!((status, code(&body)), (400, "DBS.301077"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_list_register_and_unregister() {
    let h = Harness::start().await;
    let (status, b) = h.get("/instances").await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["total_count"], 1);
    let i = &b["instances"][0];
    assert_eq!(i["id"], h.instance_id);
    assert!(h.instance_id.len() == 36 && h.instance_id.ends_with("in02"));
    assert!(h.node_id.len() == 36 && h.node_id.ends_with("no02"));
    assert_eq!(i["mode"], "Single");
    assert_eq!(i["status"], "normal");
    assert_eq!(i["port"], h.node_addr.port().to_string());
    assert_eq!(i["datastore"]["type"], "DDS-Community");
    let g = &i["groups"][0];
    assert!(g["id"].as_str().unwrap().ends_with("gr02"));
    assert_eq!(g["type"], "single");
    assert_eq!(g["nodes"][0]["role"], "Primary");
    assert_eq!(g["nodes"][0]["private_ip"], "127.0.0.1");

    // Filters and paging parameters.
    for (q, n) in [
        ("?name=embedded-1", 1),
        ("?name=other", 0),
        ("?mode=Single", 1),
        ("?mode=Sharding", 0),
        (&format!("?id={}", h.instance_id)[..], 1),
        ("?offset=1", 0),
    ] {
        let (status, b) = h.get(&format!("/instances{q}")).await;
        assert_eq!(status, 200);
        assert_eq!(b["instances"].as_array().unwrap().len(), n, "{q}");
    }
    for (q, want) in
        [("?limit=0", "DBS.280439"), ("?offset=-1", "DBS.280440"), ("?mode=single", "DBS.200001")]
    {
        let (status, b) = h.get(&format!("/instances{q}")).await;
        assert_eq!((status, code(&b)), (400, want), "{q}");
    }

    // Credentials are sealed at rest.
    let node = h.api.state().store.get_node(&h.project_id, &h.node_id).await.unwrap().unwrap();
    let blob = node.credentials_enc.unwrap();
    assert!(!blob.windows(NODE_PASSWORD.len()).any(|w| w == NODE_PASSWORD.as_bytes()));

    // Registration refusals: duplicate name, wrong mode, bad password, unreachable seed.
    let seed = h.node_addr.to_string();
    let hr = &h;
    let reg = |body: Value| async move { hr.post("/instances/register", &body).await };
    let (status, b) =
        reg(json!({"name": "embedded-1", "seeds": [seed], "username": NODE_USER, "password": NODE_PASSWORD}))
            .await;
    assert_eq!(status, 409, "{b}");
    let (status, b) = reg(json!({"name": "rs-1", "mode": "ReplicaSet", "seeds": [seed], "username": NODE_USER, "password": NODE_PASSWORD})).await;
    assert_eq!((status, code(&b)), (400, "DBS.200001"), "{b}");
    let (status, b) =
        reg(json!({"name": "bad-pw", "seeds": [seed], "username": NODE_USER, "password": "wrong"})).await;
    assert_eq!((status, code(&b)), (400, "DBS.200001"), "{b}");
    let started = Instant::now();
    let (status, b) = reg(json!({"name": "gone-1", "seeds": ["127.0.0.1:1"]})).await;
    assert_eq!((status, code(&b)), (400, "DBS.200001"), "{b}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Unregister.
    let (status, b) = h.delete(&format!("/instances/{}", h.instance_id)).await;
    assert_eq!((status, &b), (200, &json!({})));
    let (_, b) = h.get("/instances").await;
    assert_eq!(b["total_count"], 0);
    let (status, b) = h.delete(&format!("/instances/{}", h.instance_id)).await;
    assert_eq!((status, code(&b)), (404, "DBS.200002"));
    let (status, b) = h.get(&h.sessions_path("")).await;
    assert_eq!((status, code(&b)), (404, "DBS.200013"));

    // Without credentials: 401.
    let r = h.http.get(h.url("/instances")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_loop_marks_a_stopped_node_abnormal() {
    let mut h = Harness::start().await;
    let health = docplane_api::dds::health::spawn_health_loop(h.api.state(), Duration::from_millis(100));
    h.node.take().unwrap().shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (_, b) = h.get("/instances").await;
        let node = &b["instances"][0]["groups"][0]["nodes"][0];
        if node["status"] == "abnormal" && b["instances"][0]["status"] == "abnormal" {
            assert_eq!(node["role"], "Primary", "the last known role is kept");
            break;
        }
        assert!(Instant::now() < deadline, "{b:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    health.stop().await;
    h.stop().await;
}
