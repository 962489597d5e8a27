//! The listing pushed down to the node (the driver's `own_exclusion` and `pushdown::page_stages`)
//! gives what the client-side listing gives: the same total and the same page, in the same order, for
//! crafted `$currentOp` entries (fed through `$documents` on the embedded node) covering every rule
//! of `SessionRecord::summary`, `SessionFilter::matches`, `select_indices` and
//! `is_own_operation_with`; and it runs against a live `$currentOp`, hiding its own read.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use docplane_driver::DEFAULT_APP_NAME;
use docplane_driver::ops::{is_own_operation_with, own_exclusion};
use docplane_node::{Node, NodeConfig};
use docplane_sessions::pushdown::{page_stages, parse_page};
use docplane_sessions::select::select_indices;
use docplane_sessions::{SessionFilter, SessionQuery, SessionRecord};
use futures::TryStreamExt;
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};

/// What the service sends: the source, the driver's own-entry exclusion for `tags`, the page.
fn session_page_pipeline(source: Document, q: &SessionQuery, tags: &[&str]) -> Vec<Document> {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    let mut p = vec![source, doc! {"$match": own_exclusion(&tags, DEFAULT_APP_NAME)}];
    p.extend(page_stages(q).expect("pushable"));
    p
}

const LIVE: &str = "docplane:0123456789abcdef0123456789abcdef";
const STALE: &str = "docplane:ffffffffffffffffffffffffffffffff";

fn uuid(n: u8) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes: vec![n; 16] })
}

/// `$currentOp`-shaped entries exercising each rule.
fn entries() -> Vec<Document> {
    let meta = |app: &str| doc! {"application": {"name": app}, "driver": {"name": "x", "version": "1"}};
    vec![
        // plain operations, various running times, types and plans
        doc! {"type": "op", "opid": 11, "active": true, "op": "query", "ns": "shop.orders", "desc": "conn1",
        "microsecs_running": 5_000_i64, "secs_running": 0_i64, "planSummary": "IXSCAN { a: 1 }",
        "command": {"find": "orders"}, "appName": "shop"},
        doc! {"type": "op", "opid": 12, "active": true, "op": "command", "ns": "admin.$cmd", "desc": "conn2",
        "microsecs_running": 9_000_000_i64, "secs_running": 9_i64, "command": {"sleep": 1, "millis": 10}},
        doc! {"type": "op", "opid": 13, "active": true, "op": "query", "ns": "shop.orders", "desc": "conn3",
        "microsecs_running": 5_000_i64, "planSummary": "COLLSCAN", "command": {"find": "orders"}},
        doc! {"type": "op", "opid": 14, "active": true, "op": "update", "ns": "shop.items", "desc": "conn4",
        "microsecs_running": 70_i32, "planSummary": "FETCH + ixscan_x { b: 1 }", "command": {"update": "items"}},
        doc! {"type": "op", "opid": 15, "active": true, "op": "getmore", "ns": "shop.items", "desc": "conn5",
        "microsecs_running": 5_000_i64, "planSummary": "SORT_KEY_GENERATOR", "command": {"getMore": 1_i64}},
        doc! {"type": "op", "opid": 16, "active": true, "op": "query", "ns": "shop.orders", "desc": "conn6",
        "planSummary": "PROJECTION_IXSCAN", "command": {"find": "orders"}},
        // running time fallbacks: only secs_running; negative, fractional or string microsecs
        doc! {"type": "op", "opid": 17, "active": true, "op": "remove", "ns": "shop.x", "desc": "conn7",
        "secs_running": 3_i64, "command": {"delete": "x"}},
        doc! {"type": "op", "opid": 18, "active": true, "op": "insert", "ns": "shop.x", "desc": "conn8",
        "microsecs_running": -5_i64, "secs_running": 2_i32, "command": {"insert": "x"}},
        doc! {"type": "op", "opid": 19, "active": true, "op": "insert", "ns": "shop.x", "desc": "conn9",
        "microsecs_running": 1.5, "secs_running": "1", "command": {"insert": "x"}},
        doc! {"type": "op", "opid": 20, "active": true, "op": "insert", "ns": "shop.x", "desc": "conn10",
        "microsecs_running": 2_500_000.0, "command": {"insert": "x"}},
        // opids of other types: integral double, fractional double (not an id), a mongos string
        doc! {"type": "op", "opid": 21.0, "active": true, "op": "query", "ns": "shop.orders", "desc": "conn11",
        "microsecs_running": 5_000_i64, "command": {"find": "orders"}},
        doc! {"type": "op", "opid": 22.5, "active": true, "op": "query", "ns": "shop.orders", "desc": "conn12",
        "microsecs_running": 5_000_i64, "command": {"find": "orders"}},
        doc! {"type": "op", "opid": 23.5, "active": true, "op": "query", "ns": "shop.orders", "desc": "thread",
        "microsecs_running": 5_000_i64, "command": {"find": "orders"}},
        // idle connections (no op) and idle sessions; entries naming nothing
        doc! {"type": "op", "active": false, "desc": "conn30", "appName": "shop", "client": "1.2.3.4:5"},
        doc! {"type": "op", "active": false, "desc": "conn4"},
        // Idle sessions: listed only while they hold transaction state (as mongod reports them).
        doc! {"type": "idleSession", "active": false, "desc": "inactive session", "lsid": {"id": uuid(2)},
        "transaction": {"parameters": {"txnNumber": 1_i64, "autocommit": false}}},
        doc! {"type": "idleSession", "active": false, "desc": "inactive session", "lsid": {"id": uuid(1)},
        "transaction": {"parameters": {"txnNumber": 4_i64, "autocommit": false}}},
        doc! {"type": "idleSession", "active": false, "desc": "inactive session", "lsid": {"id": uuid(3)}},
        doc! {"type": "idleSession", "active": false, "desc": "inactive session", "lsid": {"id": "x"}},
        doc! {"type": "op", "active": false, "desc": "conn"},
        doc! {"type": "op", "active": false, "desc": "conn1234567890123"},
        doc! {"type": "op", "active": false, "desc": "conn12\n"},
        doc! {"type": "op", "active": false},
        // docplane's own: this read (live tag, in each place it can be), a stale tag (listed),
        // the app name's idle connection and heartbeat (hidden) and an active find (listed)
        doc! {"type": "op", "opid": 40, "active": true, "op": "command", "ns": "admin.$cmd.aggregate", "desc": "conn40",
        "microsecs_running": 1_i64, "appName": DEFAULT_APP_NAME, "command": {"aggregate": 1, "comment": LIVE}},
        doc! {"type": "op", "opid": 41, "active": true, "op": "command", "ns": "admin.$cmd", "desc": "conn41",
        "microsecs_running": 1_i64, "clientMetadata": meta(DEFAULT_APP_NAME),
        "command": {"currentOp": 1, "$comment": LIVE}},
        doc! {"type": "op", "opid": 42, "active": true, "op": "getmore", "ns": "admin.$cmd.aggregate", "desc": "conn42",
        "microsecs_running": 1_i64, "appName": DEFAULT_APP_NAME, "command": {"getMore": 5_i64},
        "cursor": {"cursorId": 5_i64, "originatingCommand": {"aggregate": 1, "comment": LIVE}}},
        doc! {"type": "op", "opid": 43, "active": true, "op": "query", "ns": "local.oplog", "desc": "conn43",
        "microsecs_running": 1_i64, "appName": DEFAULT_APP_NAME, "query": {"find": "oplog", "comment": LIVE}},
        doc! {"type": "op", "opid": 44, "active": true, "op": "command", "ns": "admin.$cmd.aggregate", "desc": "conn44",
        "microsecs_running": 1_i64, "appName": DEFAULT_APP_NAME, "command": {"aggregate": 1, "comment": STALE}},
        // The live tag copied by another application (listed) or by one without a name (listed).
        doc! {"type": "op", "opid": 51, "active": true, "op": "command", "ns": "admin.$cmd.aggregate", "desc": "conn51",
        "microsecs_running": 2_i64, "appName": "shop", "command": {"aggregate": 1, "comment": LIVE}},
        doc! {"type": "op", "opid": 52, "active": true, "op": "command", "ns": "admin.$cmd.aggregate", "desc": "conn52",
        "microsecs_running": 2_i64, "command": {"aggregate": 1, "comment": LIVE}},
        doc! {"type": "op", "active": false, "desc": "conn45", "appName": DEFAULT_APP_NAME},
        doc! {"type": "op", "opid": 46, "active": true, "op": "command", "ns": "admin.$cmd", "desc": "conn46",
        "microsecs_running": 10_000_000_000_i64, "clientMetadata": meta(DEFAULT_APP_NAME),
        "command": {"hello": 1, "topologyVersion": {}}},
        doc! {"type": "op", "opid": 47, "active": true, "op": "query", "ns": "shop.orders", "desc": "conn47",
        "microsecs_running": 5_000_i64, "appName": DEFAULT_APP_NAME, "command": {"find": "orders", "hello": 1}},
        doc! {"type": "op", "opid": 48, "active": 1, "op": "query", "ns": "shop.orders", "desc": "conn48",
        "microsecs_running": 5_000_i64, "appName": 7, "clientMetadata": meta(DEFAULT_APP_NAME),
        "command": {"find": "orders"}},
        doc! {"type": "op", "opid": 49, "active": true, "op": "command", "ns": "admin.$cmd", "desc": "conn49",
        "microsecs_running": 6_i64, "appName": "not-docplane", "command": {"isMaster": 1}},
        // op missing or not a string: "none" to the driver
        doc! {"type": "op", "opid": 50, "active": true, "ns": "shop.orders", "desc": "conn50",
        "microsecs_running": 5_000_i64, "op": 3, "command": {"find": "orders"}},
    ]
}

/// The driver's answer for `query`: (total, page ids).
fn driver_page(entries: &[Document], query: &SessionQuery) -> (u64, Vec<String>) {
    let live: HashSet<String> = [LIVE.to_owned()].into();
    let records: Vec<SessionRecord> = entries
        .iter()
        .filter(|e| !is_own_operation_with(e, DEFAULT_APP_NAME, &live))
        .filter_map(SessionRecord::summary)
        .collect();
    let (total, page) = select_indices(&records, query);
    (total, page.into_iter().map(|i| records[i].id.clone()).collect())
}

fn requests() -> Vec<SessionQuery> {
    let f = |plan: Option<&str>, op: Option<&str>, ns: Option<&str>, min: Option<u64>| SessionFilter {
        plan_summary: plan.map(str::to_owned),
        op_type: op.map(str::to_owned),
        namespace: ns.map(str::to_owned),
        min_cost_time_us: min,
        ..SessionFilter::default()
    };
    let mut out = Vec::new();
    let filters = [
        f(None, None, None, None),
        f(Some("IXSCAN"), None, None, None),
        f(Some("ixscan"), None, None, None),
        f(Some(" COLLSCAN "), None, None, None),
        f(Some("SORT"), None, None, None),
        f(Some("FETCH"), None, None, None),
        f(Some("PROJECTION"), None, None, None),
        f(None, Some("query"), None, None),
        f(None, Some("none"), None, None),
        f(None, Some("insert"), Some("shop.x"), None),
        f(None, None, Some("shop.orders"), Some(4_999)),
        f(None, None, None, Some(5_000)),
        f(None, None, None, Some(0)),
        f(None, None, None, Some(u64::MAX)),
        f(Some("IXSCAN"), Some("query"), Some("shop.orders"), Some(1)),
    ];
    for filter in filters {
        for (offset, limit) in [(0, 10), (0, 100), (3, 4), (0, 1), (20, 10), (0, 0), (u64::MAX, 5)] {
            out.push(SessionQuery { filter: filter.clone(), offset, limit });
        }
    }
    out
}

fn node_config() -> NodeConfig {
    NodeConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        enable_test_commands: true,
        auth: false,
        ..NodeConfig::default()
    }
}

async fn run(client: &mongodb::Client, pipeline: Vec<Document>, comment: &str) -> (u64, Vec<Document>) {
    let out: Vec<Document> = client
        .database("admin")
        .aggregate(pipeline)
        .comment(comment)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    parse_page(&out).expect("shaped reply")
}

/// The id the driver gives a raw entry.
fn id_of(e: &Document) -> String {
    SessionRecord::summary(e).expect("an identifiable entry").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_total_and_page_as_the_driver() {
    let node = Node::start(node_config()).await.unwrap();
    let client =
        mongodb::Client::with_uri_str(format!("mongodb://{}/?appName=pushdown-test", node.local_addr()))
            .await
            .unwrap();
    let input = entries();
    // $literal: the entries hold `$`-prefixed fields (`$comment`), which an expression would read
    // as operators.
    let source =
        doc! {"$documents": {"$literal": input.iter().cloned().map(Bson::Document).collect::<Vec<_>>()}};
    let mut compared = 0;
    for q in requests() {
        let want = driver_page(&input, &q);
        let pipeline = session_page_pipeline(source.clone(), &q, &[LIVE]);
        let (total, page) = run(&client, pipeline, "not-a-tag").await;
        let got: Vec<String> = page.iter().map(id_of).collect();
        assert_eq!((total, got), want, "{q:?}");
        // The page's entries come back as they went in (no helper field left).
        for e in &page {
            assert!(input.contains(e), "{e}");
        }
        compared += 1;
    }
    assert!(compared > 100);
    // The whole listing of the crafted entries, as the driver orders it (a guard against both
    // sides agreeing on an empty answer).
    let (total, all) = driver_page(&input, &SessionQuery { limit: 1000, ..SessionQuery::default() });
    assert_eq!(total, 22, "{all:?}");
    assert_eq!(all[..4], ["12".to_owned(), "17".into(), "20".into(), "18".into()]);
    node.shutdown().await.unwrap();
}

#[test]
fn plan_summary_must_be_a_word() {
    for bad in ["", "IX SCAN", "IXSCAN.*", "é"] {
        let q = SessionQuery {
            filter: SessionFilter { plan_summary: Some(bad.into()), ..SessionFilter::default() },
            offset: 0,
            limit: 10,
        };
        assert!(page_stages(&q).is_none(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_current_op_hides_its_own_read() {
    let node = Node::start(node_config()).await.unwrap();
    let uri = format!("mongodb://{}/?appName=shop&maxPoolSize=40", node.local_addr());
    let load = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let reader =
        mongodb::Client::with_uri_str(format!("mongodb://{}/?appName={DEFAULT_APP_NAME}", node.local_addr()))
            .await
            .unwrap();
    let sleeps: Vec<_> = (0..20)
        .map(|_| {
            let db = load.database("admin");
            tokio::spawn(async move { db.run_command(doc! {"sleep": 1, "millis": 30_000}).await })
        })
        .collect();
    let stage = doc! {"$currentOp": {"allUsers": true, "idleConnections": true, "idleSessions": true}};
    let req = SessionQuery {
        filter: SessionFilter { op_type: Some("command".into()), ..SessionFilter::default() },
        offset: 0,
        limit: 5,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (total, page) = loop {
        let pipeline = session_page_pipeline(stage.clone(), &req, &[LIVE]);
        let (total, page) = run(&reader, pipeline, LIVE).await;
        if total >= 20 || std::time::Instant::now() > deadline {
            break (total, page);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The 20 sleeps and nothing of the reader's (its aggregate carries the live tag, its idle
    // connections and heartbeats are under docplane's app name).
    assert_eq!(total, 20);
    assert_eq!(page.len(), 5);
    let us: Vec<i64> = page.iter().map(|e| e.get_i64("microsecs_running").unwrap()).collect();
    assert!(us.windows(2).all(|w| w[0] >= w[1]), "{us:?}");
    assert!(page.iter().all(|e| e.get_document("command").unwrap().contains_key("sleep")));
    // With a tag that is not the read's own, the read lists itself.
    let pipeline = session_page_pipeline(stage, &req, &[STALE]);
    let (total, _) = run(&reader, pipeline, LIVE).await;
    assert_eq!(total, 21);
    load.database("admin").run_command(doc! {"killAllSessions": []}).await.unwrap();
    for s in sleeps {
        // Each sleep ends, interrupted by killAllSessions; the task itself must not have panicked.
        s.await.expect("the sleep task ran").expect_err("killAllSessions interrupts the sleep");
    }
    node.shutdown().await.unwrap();
}
