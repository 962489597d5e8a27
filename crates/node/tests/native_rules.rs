//! Native kill-op rule enforcement (`docplaneKillOpRules`, `docplane_node::rules`) at the node's
//! boundary, with the official Rust driver: `secs_running` kills within milliseconds of the
//! limit, `max_concurrency` refuses at admission with 365, observe mode only records, the rails
//! hold, every action is an event, and the command refuses what it does not know.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, code, start};
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use tokio::task::JoinHandle;

/// The control plane's application name (its connections are protected).
const CONTROL: &str = "docplane-control";

fn rule(id: &str, ns: &str, secs: i64, cap: i64, mode: &str) -> Document {
    doc! {"id": id, "operationTypes": ["command"], "namespaces": [ns], "clientIps": [], "planSummary": "",
    "maxConcurrency": cap, "secsRunning": secs, "mode": mode}
}

async fn install(control: &Client, rules: Vec<Document>, apps: &[&str]) -> Document {
    control
        .database("admin")
        .run_command(doc! {"docplaneKillOpRules": 1, "set": {
        "generation": 42_i64, "rules": rules, "protectedUsers": [], "protectedAppNames": apps,
        "controlAppName": CONTROL}})
        .await
        .unwrap()
}

async fn events(control: &Client) -> Vec<Document> {
    let r = control.database("admin").run_command(doc! {"docplaneKillOpRules": 1}).await.unwrap();
    r.get_array("events").unwrap().iter().filter_map(Bson::as_document).cloned().collect()
}

fn sleep_on(c: &Client, db: &str, millis: i64) -> JoinHandle<(mongodb::error::Result<Document>, Duration)> {
    let db = c.database(db);
    tokio::spawn(async move {
        let started = Instant::now();
        let r = db.run_command(doc! {"sleep": 1, "millis": millis}).await;
        (r, started.elapsed())
    })
}

async fn clients(n: &TestNode) -> (Client, Client) {
    (n.root(CONTROL).await, n.root("shop-app").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secs_running_kills_at_the_limit_and_spares_the_rest() {
    let n = start().await;
    let (control, app) = clients(&n).await;
    let guarded = n.root("nightly").await;
    let r = install(
        &control,
        vec![rule("limit", "limited", 2, 0, "kill"), rule("watch", "watched", 2, 0, "observe")],
        &["nightly"],
    )
    .await;
    assert_eq!(r.get_i64("generation").unwrap(), 42);
    assert_eq!(r.get_array("ruleIds").unwrap().len(), 2);
    let victim = sleep_on(&app, "limited", 20_000);
    let other = sleep_on(&app, "elsewhere", 2_600);
    let protected = sleep_on(&guarded, "limited", 2_600);
    let own = sleep_on(&control, "limited", 2_600);
    let observed = sleep_on(&app, "watched", 2_600);
    let (r, took) = victim.await.unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    assert!(took >= Duration::from_secs(2) && took < Duration::from_millis(2_300), "killed after {took:?}");
    for (what, s) in
        [("other database", other), ("protected app", protected), ("docplane's", own), ("observed", observed)]
    {
        let (r, took) = s.await.unwrap();
        assert!(r.is_ok(), "{what}: {r:?}");
        assert!(took >= Duration::from_millis(2_500), "{what} ended after {took:?}");
    }
    let ev = events(&control).await;
    // Both rules cross their 2 s limit at the same moment: their events may come in either order.
    let mut summary: Vec<(&str, &str, &str)> = ev
        .iter()
        .map(|e| (e.get_str("ruleId").unwrap(), e.get_str("action").unwrap(), e.get_str("limit").unwrap()))
        .collect();
    summary.sort_unstable();
    assert_eq!(
        summary,
        [("limit", "killed", "secs_running"), ("watch", "observed", "secs_running")],
        "{ev:#?}"
    );
    let kill_event = ev.iter().find(|e| e.get_str("action").unwrap() == "killed").unwrap();
    let killed = kill_event.get_document("op").unwrap();
    assert_eq!(killed.get_str("ns").unwrap(), "limited.$cmd");
    assert_eq!(killed.get_str("appName").unwrap(), "shop-app");
    assert_eq!(kill_event.get_document("rule").unwrap().get_i64("secsRunning").unwrap(), 2);
    // Acknowledged events are gone; an ack naming another boot is refused.
    let admin = control.database("admin");
    let boot = admin
        .run_command(doc! {"docplaneKillOpRules": 1})
        .await
        .unwrap()
        .get_str("bootId")
        .unwrap()
        .to_owned();
    let seq = ev[0].get_i64("seq").unwrap();
    let r = admin
        .run_command(doc! {"docplaneKillOpRules": 1, "ack": {"bootId": &boot, "seq": seq}})
        .await
        .unwrap();
    assert_eq!(r.get_array("events").unwrap().len(), 1);
    let e = admin
        .run_command(doc! {"docplaneKillOpRules": 1, "ack": {"bootId": "other", "seq": seq}})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
    // Cleared: nothing is enforced any more.
    install(&control, vec![], &[]).await;
    let (r, _) = sleep_on(&app, "limited", 2_300).await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_refuses_at_admission() {
    let n = start().await;
    let (control, app) = clients(&n).await;
    install(
        &control,
        vec![rule("cap", "capped", 0, 2, "kill"), rule("capwatch", "capwatch", 0, 1, "observe")],
        &[],
    )
    .await;
    let first = sleep_on(&app, "capped", 1_500);
    let second = sleep_on(&app, "capped", 1_500);
    let watched = [sleep_on(&app, "capwatch", 1_200), sleep_on(&app, "capwatch", 1_200)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (r, took) = sleep_on(&app, "capped", 1_500).await.unwrap();
    let e = r.unwrap_err();
    assert_eq!(code(&e), Some(365), "{e}");
    let mongodb::error::ErrorKind::Command(c) = &*e.kind else { panic!("{e}") };
    assert_eq!(c.code_name, "TemporarilyUnavailable");
    assert!(
        c.message.contains("kill-op rule cap") && c.message.contains("max_concurrency 2"),
        "{}",
        c.message
    );
    assert!(took < Duration::from_millis(300), "refused after {took:?}, not at once");
    for s in [first, second] {
        assert!(s.await.unwrap().0.is_ok());
    }
    for s in watched {
        assert!(s.await.unwrap().0.is_ok(), "observe mode refused");
    }
    // Both ended: a new one is admitted.
    let (r, _) = sleep_on(&app, "capped", 10).await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    let ev = events(&control).await;
    let summary: Vec<(&str, &str)> =
        ev.iter().map(|e| (e.get_str("ruleId").unwrap(), e.get_str("action").unwrap())).collect();
    assert_eq!(summary.len(), 2, "{ev:#?}");
    assert!(
        summary.contains(&("cap", "refused")) && summary.contains(&("capwatch", "observed")),
        "{summary:?}"
    );
    let refused = ev.iter().find(|e| e.get_str("action").unwrap() == "refused").unwrap();
    assert_eq!(refused.get_document("error").unwrap().get_i32("code").unwrap(), 365);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installing_rules_applies_them_to_running_operations() {
    let n = start().await;
    let (control, app) = clients(&n).await;
    let mut sleeps = Vec::new();
    for _ in 0..3 {
        sleeps.push(sleep_on(&app, "capped", 2_500));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Running past its limit already: killed at once.
    let late = sleep_on(&app, "limited", 10_000);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let at = Instant::now();
    install(&control, vec![rule("cap", "capped", 0, 2, "kill"), rule("limit", "limited", 2, 0, "kill")], &[])
        .await;
    let (r, _) = late.await.unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    assert!(at.elapsed() < Duration::from_millis(300), "{:?}", at.elapsed());
    // The newest beyond the cap is killed, the two oldest run on.
    let newest = sleeps.pop().unwrap().await.unwrap();
    assert_eq!(code(&newest.0.unwrap_err()), Some(11601));
    for s in sleeps {
        assert!(s.await.unwrap().0.is_ok());
    }
    let actions: Vec<String> = events(&control)
        .await
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}",
                e.get_str("ruleId").unwrap(),
                e.get_str("action").unwrap(),
                e.get_str("limit").unwrap()
            )
        })
        .collect();
    assert!(actions.contains(&"cap:killed:max_concurrency".to_owned()), "{actions:?}");
    assert!(actions.contains(&"limit:killed:secs_running".to_owned()), "{actions:?}");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_refuses_what_it_does_not_know() {
    let n = start().await;
    let (control, _) = clients(&n).await;
    let admin = control.database("admin");
    let e = admin.run_command(doc! {"docplaneKillOpRules": 1, "dryRun": true}).await.unwrap_err();
    assert_eq!(code(&e), Some(40415), "{e}");
    let e = admin
        .run_command(
            doc! {"docplaneKillOpRules": 1, "set": {"generation": 1_i64, "rules": [], "protectedUsers": [],
            "protectedAppNames": [], "controlAppName": CONTROL, "ttl": 5}},
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(40415), "{e}");
    let e = admin
        .run_command(doc! {"docplaneKillOpRules": 1, "ack": {"bootId": "x", "seq": 1_i64, "all": true}})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(40415), "{e}");
    let e = control.database("test").run_command(doc! {"docplaneKillOpRules": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // A user without inprog and killop may not run it.
    control
        .database("admin")
        .run_command(doc! {"createUser": "monitor", "pwd": "pw-123", "roles": ["clusterMonitor"]})
        .await
        .unwrap();
    let monitor = n.client("monitor", "pw-123", "mon").await;
    let e = monitor.database("admin").run_command(doc! {"docplaneKillOpRules": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // Nothing installed yet: no generation.
    let r = admin.run_command(doc! {"docplaneKillOpRules": 1}).await.unwrap();
    assert_eq!(r.get("generation"), Some(&Bson::Null));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_native_rules_answers_command_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let handle = docplane_node::Node::start(docplane_node::NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_path_buf()),
        enable_test_commands: true,
        root_user: Some((common::ROOT.0.into(), common::ROOT.1.into())),
        native_kill_op_rules: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let n = TestNode { handle, dir };
    let root = n.root(CONTROL).await;
    let e = root.database("admin").run_command(doc! {"docplaneKillOpRules": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(59), "{e}");
    let listed = root.database("admin").run_command(doc! {"listCommands": 1}).await.unwrap();
    assert!(!listed.get_document("commands").unwrap().contains_key("docplaneKillOpRules"));
    n.handle.shutdown().await.unwrap();
}

/// A rule with a plan-summary criterion decides once the plan is known, before it runs: an
/// operation refused then fails whole with 365, whatever its handler made of the failed checks
/// (an empty result, write errors), and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_summary_rule_refuses_when_the_plan_is_known() {
    use std::sync::Arc;

    use docplane_node::cmd::dispatch;
    use docplane_node::conn::{ConnCtx, ConnInfo};
    use docplane_node::ops::NewOp;
    use docplane_node::state::NodeState;

    let state = NodeState::in_memory(docplane_node::NodeConfig { auth: false, ..Default::default() });
    let addr: std::net::SocketAddr = "10.0.0.5:40000".parse().unwrap();
    let conn = |id| ConnCtx::new(Arc::new(ConnInfo::new(id, addr)));
    let mut control = conn(1);
    let scan = doc! {"id": "scan", "operationTypes": ["query", "update"], "namespaces": ["shop.orders"],
    "clientIps": ["10.0.0.5"], "planSummary": "COLLSCAN", "maxConcurrency": 1_i64, "secsRunning": 0_i64,
    "mode": "kill"};
    let r = dispatch(&state, &mut control, doc! {"docplaneKillOpRules": 1, "set": {"generation": 1_i64,
        "rules": [scan], "protectedUsers": [], "protectedAppNames": [], "controlAppName": CONTROL}, "$db": "admin"}, None)
    .await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    let mut app = conn(3);
    let r = dispatch(
        &state,
        &mut app,
        doc! {"insert": "orders", "documents": [{"_id": 1, "a": 1}], "$db": "shop"},
        None,
    )
    .await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    // A collection scan of another client holds the one slot.
    let holder = state
        .ops
        .register(NewOp {
            conn: Arc::new(ConnInfo::new(2, addr)),
            users: Vec::new(),
            lsid: None,
            session: None,
            op: "query",
            ns: "shop.orders".into(),
            command: Arc::new(doc! {"find": "orders"}),
            command_name: "find".into(),
            deadline: None,
        })
        .unwrap();
    holder.entry.set_plan_summary("COLLSCAN".into());
    for cmd in [
        doc! {"find": "orders", "filter": {"a": 1}, "$db": "shop"},
        doc! {"find": "orders", "filter": {"a": 1}, "batchSize": 0, "$db": "shop"},
        doc! {"update": "orders", "updates": [{"q": {"a": 1}, "u": {"$set": {"b": 1}}}], "ordered": false, "$db": "shop"},
    ] {
        let r = dispatch(&state, &mut app, cmd.clone(), None).await;
        assert_eq!(r.get_i32("code"), Ok(365), "{cmd}: {r}");
    }
    // Another plan does not match; the refused update wrote nothing.
    let r =
        dispatch(&state, &mut app, doc! {"find": "orders", "filter": {"_id": 1}, "$db": "shop"}, None).await;
    let first = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    assert_eq!(first, &vec![Bson::Document(doc! {"_id": 1, "a": 1})], "{r}");
    drop(holder);
    let r =
        dispatch(&state, &mut app, doc! {"find": "orders", "filter": {"a": 1}, "$db": "shop"}, None).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    let r = dispatch(&state, &mut control, doc! {"docplaneKillOpRules": 1, "$db": "admin"}, None).await;
    let actions: Vec<&str> = r
        .get_array("events")
        .unwrap()
        .iter()
        .filter_map(Bson::as_document)
        .map(|e| e.get_str("action").unwrap())
        .collect();
    assert_eq!(actions, ["refused"; 3]);
}

/// The benchmark behind BENCHMARKS.md ("operation crosses secs_running -> client sees 11601",
/// natively): 60 matching sleeps started 37 ms apart, each measured from its send to the 11601
/// its client sees, minus the 2 s limit. Run with
/// `cargo nextest run -p docplane-node --test native_rules --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: prints figures"]
async fn bench_native_rule_kill_latency() {
    let n = start().await;
    let control = n.root(CONTROL).await;
    // One connection per sleep: none waits for the pool before it reaches the node.
    let uri = format!("{}&appName=bench&maxPoolSize=100&serverSelectionTimeoutMS=5000", n.root_uri());
    let app = Client::with_uri_str(uri).await.unwrap();
    install(&control, vec![rule("limit", "bench", 2, 0, "kill")], &[]).await;
    let mut sleeps = Vec::new();
    for _ in 0..60 {
        sleeps.push(sleep_on(&app, "bench", 30_000));
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    let mut past_ms = Vec::new();
    for s in sleeps {
        let (r, took) = s.await.unwrap();
        assert_eq!(code(&r.unwrap_err()), Some(11601));
        past_ms.push(took.saturating_sub(Duration::from_secs(2)).as_secs_f64() * 1000.0);
    }
    past_ms.sort_by(f64::total_cmp);
    let at = |q: f64| past_ms[((past_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "native: crossing secs_running -> 11601 (ms past the limit, n={}): min {:.2} p50 {:.2} p99 {:.2} max {:.2}",
        past_ms.len(),
        past_ms[0],
        at(0.5),
        at(0.99),
        past_ms[past_ms.len() - 1]
    );
    n.handle.shutdown().await.unwrap();
}
