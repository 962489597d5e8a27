//! The driver against the embedded node: server info, discovery, listing a `sleep` and a long
//! collection scan run by a separate client, killing them (the client sees 11601), and refusals
//! that kill nothing.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use docplane_driver::{
    Credentials, DeploymentMode, DiscoverRequest, Driver, DriverConfig, DriverError, NodeKind, NodeRole,
    NodeStatus, NodeTarget, NodeTransport,
};
use docplane_node::{Node, NodeConfig, NodeHandle};
use docplane_sessions::kill::{self as sessions, list_ops};
use docplane_sessions::{KillStatus, SessionError, SessionFilter, SessionQuery, SessionRecord};
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use tokio::task::JoinHandle;

const USER: &str = "root";
const PASSWORD: &str = "secret-pw";

struct Fixture {
    node: NodeHandle,
    driver: Driver,
    target: NodeTarget,
}

async fn fixture() -> Fixture {
    let node = Node::start(NodeConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        enable_test_commands: true,
        auth: true,
        root_user: Some((USER.into(), PASSWORD.into())),
        ..NodeConfig::default()
    })
    .await
    .expect("node starts");
    let driver = Driver::new(DriverConfig {
        connect_timeout: Duration::from_millis(500),
        server_selection_timeout: Duration::from_secs(1),
        operation_timeout: Duration::from_secs(5),
        ..DriverConfig::default()
    });
    let target = NodeTarget {
        id: "node-1".into(),
        address: node.local_addr().to_string(),
        credentials: Some(credentials()),
        kind: NodeKind::Mongod,
    };
    Fixture { node, driver, target }
}

fn credentials() -> Credentials {
    Credentials { username: USER.into(), password: PASSWORD.into(), source: None }
}

/// A separate application's client (not docplane's app name).
async fn app_client(addr: SocketAddr) -> mongodb::Client {
    named_client(addr, "test-app")
}

/// A client of another application that announces `app_name`.
fn named_client(addr: SocketAddr, app_name: &str) -> mongodb::Client {
    let mut o = ClientOptions::default();
    o.hosts = vec![ServerAddress::Tcp { host: addr.ip().to_string(), port: Some(addr.port()) }];
    o.direct_connection = Some(true);
    o.app_name = Some(app_name.into());
    let mut c = Credential::default();
    c.username = Some(USER.into());
    c.password = Some(PASSWORD.into());
    c.source = Some("admin".into());
    o.credential = Some(c);
    mongodb::Client::with_options(o).unwrap()
}

fn spawn_sleep(client: &mongodb::Client, millis: i64) -> JoinHandle<mongodb::error::Result<Document>> {
    let db = client.database("admin");
    tokio::spawn(async move { db.run_command(doc! {"sleep": 1, "millis": millis}).await })
}

/// Inserts `n` documents into `test.big` (no index on `v`).
async fn fill(client: &mongodb::Client, n: usize) {
    let coll = client.database("test").collection::<Document>("big");
    let docs: Vec<Document> = (0..n).map(|i| doc! {"v": i as i64, "pad": "x".repeat(32)}).collect();
    for chunk in docs.chunks(10_000) {
        coll.insert_many(chunk.to_vec()).await.unwrap();
    }
}

/// A collection scan that takes seconds: every document evaluates an expensive `$expr`.
fn spawn_scan(client: &mongodb::Client) -> JoinHandle<mongodb::error::Result<Vec<Document>>> {
    let coll = client.database("test").collection::<Document>("big");
    tokio::spawn(async move {
        use futures::TryStreamExt;
        let filter = doc! {"$expr": {"$lt": [{"$size": {"$range": [0, 20_000]}}, 0]}};
        coll.find(filter).await?.try_collect().await
    })
}

fn error_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Polls the node until `pick` finds a record, or panics after 5 s.
async fn wait_for(f: &Fixture, pick: impl Fn(&SessionRecord) -> bool) -> SessionRecord {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ops = list_ops(&f.driver, &f.target).await.unwrap();
        if let Some(r) = ops.into_iter().find(|r| pick(r)) {
            return r;
        }
        assert!(Instant::now() < deadline, "operation never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_sleep(r: &SessionRecord) -> bool {
    r.active && r.operation.contains("\"sleep\"")
}

/// The scan once planned: a find is listed from its start, and shows its plan summary (as on
/// mongod) only once its plan is chosen.
fn is_scan(r: &SessionRecord) -> bool {
    r.active && r.namespace == "test.big" && r.op_type == "query" && !r.plan_summary.is_empty()
}

#[tokio::test]
async fn server_info_discovery_and_health() {
    let f = fixture().await;
    let info = f.driver.server_info(&f.target).await.unwrap();
    assert!(info.version.at_least(3, 4), "{:?}", info.version);
    assert_eq!(info.role(), NodeRole::Primary);
    assert!(!info.hello.is_mongos);

    let request = DiscoverRequest {
        seed: f.target.address.clone(),
        credentials: Some(credentials()),
        mode: None,
        mongos: vec![],
    };
    let topology = f.driver.discover(&request).await.unwrap();
    assert_eq!(topology.mode, DeploymentMode::Single);
    assert_eq!(topology.nodes.len(), 1);
    assert_eq!(topology.nodes[0].role, NodeRole::Primary);
    assert_eq!(topology.nodes[0].kind, NodeKind::Mongod);
    assert!(topology.nodes[0].reachable);
    let wrong_mode = DiscoverRequest { mode: Some(DeploymentMode::Sharding), ..request.clone() };
    assert!(matches!(f.driver.discover(&wrong_mode).await, Err(DriverError::InvalidRequest(_))));
    let bad_password = DiscoverRequest {
        credentials: Some(Credentials { password: "nope".into(), ..credentials() }),
        ..request
    };
    assert!(matches!(f.driver.discover(&bad_password).await, Err(DriverError::AuthenticationFailed(_))));

    // Only docplane is connected: its own connections, sessions and currentOp never show.
    for _ in 0..3 {
        let ops = list_ops(&f.driver, &f.target).await.unwrap();
        assert!(ops.is_empty(), "{ops:#?}");
    }

    let health = f.driver.probe(&f.target).await;
    assert_eq!(health.status, NodeStatus::Normal);
    assert_eq!(health.role, NodeRole::Primary);
    assert_eq!(health.version.as_deref(), Some(info.version_text.as_str()));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn lists_sleep_and_scan_then_kills_them() {
    let f = fixture().await;
    let client = app_client(f.node.local_addr()).await;
    fill(&client, 20_000).await;
    let sleeper = spawn_sleep(&client, 30_000);
    let scanner = spawn_scan(&client);

    let sleep = wait_for(&f, is_sleep).await;
    let scan = wait_for(&f, is_scan).await;
    // Fields of the sleep.
    assert!(sleep.has_opid && sleep.id.parse::<i64>().unwrap() > 0);
    assert_eq!(sleep.op_type, "command");
    assert_eq!(sleep.namespace, "admin.$cmd");
    assert_eq!(sleep.db.as_deref(), Some("admin"));
    assert_eq!(sleep.user.as_deref(), Some(USER));
    assert!(sleep.description.starts_with("conn"), "{}", sleep.description);
    assert!(sleep.client.starts_with("127.0.0.1:"), "{}", sleep.client);
    assert!(!sleep.host.is_empty());
    let op: serde_json::Value = serde_json::from_str(&sleep.operation).unwrap();
    assert_eq!(op["millis"], 30_000);
    // Fields of the scan.
    assert!(scan.plan_summary.contains("COLLSCAN"), "{}", scan.plan_summary);
    assert_eq!(scan.db.as_deref(), Some("test"));
    assert!(scan.operation.contains("\"find\":\"big\""), "{}", scan.operation);

    // docplane's own operations and connections never show.
    let all = list_ops(&f.driver, &f.target).await.unwrap();
    assert!(all.iter().all(|r| !r.operation.contains("currentOp")), "{all:#?}");

    // Filters.
    let q = |filter: SessionFilter| SessionQuery { filter, offset: 0, limit: 100 };
    let page = sessions::list(
        &f.driver,
        &f.target,
        &q(SessionFilter { op_type: Some("query".into()), ..Default::default() }),
    )
    .await
    .unwrap();
    assert!(page.sessions.iter().any(|r| r.id == scan.id));
    assert!(page.sessions.iter().all(|r| r.op_type == "query"));
    let page = sessions::list(
        &f.driver,
        &f.target,
        &q(SessionFilter { plan_summary: Some("COLLSCAN".into()), ..Default::default() }),
    )
    .await
    .unwrap();
    assert_eq!(page.sessions.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![scan.id.clone()]);
    let page = sessions::list(
        &f.driver,
        &f.target,
        &q(SessionFilter { namespace: Some("test.big".into()), ..Default::default() }),
    )
    .await
    .unwrap();
    assert_eq!(page.total, 1);
    let page = sessions::list(
        &f.driver,
        &f.target,
        &q(SessionFilter { min_cost_time_us: Some(3_600_000_000), ..Default::default() }),
    )
    .await
    .unwrap();
    assert_eq!(page.total, 0);
    // Ordered by cost time, descending.
    let page = sessions::list(&f.driver, &f.target, &q(SessionFilter::default())).await.unwrap();
    assert!(page.sessions.windows(2).all(|w| w[0].cost_time_us >= w[1].cost_time_us));

    // Kill both; each client sees 11601.
    let report = sessions::kill(&f.driver, &f.target, &[sleep.id.clone(), scan.id.clone(), sleep.id.clone()])
        .await
        .unwrap();
    assert_eq!(report.outcomes.len(), 2);
    assert!(report.outcomes.iter().all(|o| o.status == KillStatus::Killed), "{report:?}");
    let e = sleeper.await.unwrap().unwrap_err();
    assert_eq!(error_code(&e), Some(11601), "{e:?}");
    let e = scanner.await.unwrap().unwrap_err();
    assert_eq!(error_code(&e), Some(11601), "{e:?}");
    f.node.shutdown().await.unwrap();
}

/// The application name alone hides no active operation: a client calling itself
/// `docplane-control` is listed and killable, while docplane's own (tagged) reads stay hidden.
#[tokio::test]
async fn a_client_using_docplanes_app_name_is_listed_and_killable() {
    let f = fixture().await;
    let app = f.driver.config().app_name.clone();
    assert_eq!(app, "docplane-control");
    let impostor = named_client(f.node.local_addr(), &app);

    // The node keeps an aggregate's `comment` in the op's `command` (what the tag relies on).
    let mut cursor = impostor
        .database("admin")
        .aggregate(vec![
            doc! {"$currentOp": {"allUsers": true}},
            doc! {"$match": {"command.comment": "docplane:feed"}},
        ])
        .comment("docplane:feed")
        .await
        .unwrap();
    use futures::StreamExt;
    let mine = cursor.next().await.expect("the aggregate sees itself").unwrap();
    assert_eq!(mine.get_document("command").unwrap().get_str("comment").unwrap(), "docplane:feed", "{mine}");

    let sleeper = spawn_sleep(&impostor, 30_000);
    let sleep = wait_for(&f, is_sleep).await;
    assert!(sleep.active && sleep.has_opid, "{sleep:?}");
    let page = sessions::list(
        &f.driver,
        &f.target,
        &SessionQuery { offset: 0, limit: 100, ..SessionQuery::default() },
    )
    .await
    .unwrap();
    assert!(page.sessions.iter().any(|r| r.id == sleep.id), "{page:#?}");
    // docplane's own reads (same app name, active while they run) are still hidden.
    let all = list_ops(&f.driver, &f.target).await.unwrap();
    assert!(all.iter().all(|r| !r.operation.contains("currentOp")), "{all:#?}");

    let report = sessions::kill(&f.driver, &f.target, std::slice::from_ref(&sleep.id)).await.unwrap();
    assert_eq!(report.outcomes.len(), 1);
    assert_eq!(report.outcomes[0].status, KillStatus::Killed, "{report:?}");
    let e = sleeper.await.unwrap().unwrap_err();
    assert_eq!(error_code(&e), Some(11601), "{e:?}");
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_kill_nothing() {
    let f = fixture().await;
    let client = app_client(f.node.local_addr()).await;
    let sleeper = spawn_sleep(&client, 30_000);
    let sleep = wait_for(&f, is_sleep).await;

    // Unknown id next to a real one: refused, naming only the unknown one.
    let err = sessions::kill(&f.driver, &f.target, &[sleep.id.clone(), "987654".into()]).await.unwrap_err();
    assert_eq!(err, SessionError::InvalidSessionIds(vec!["987654".into()]));
    // Malformed ids.
    let err = sessions::kill(&f.driver, &f.target, &[sleep.id.clone(), "abc".into(), "s:1".into()])
        .await
        .unwrap_err();
    assert_eq!(err, SessionError::InvalidSessionIds(vec!["abc".into(), "s:1".into()]));
    assert!(matches!(sessions::kill(&f.driver, &f.target, &[]).await, Err(SessionError::InvalidRequest(_))));

    // Inactive sessions: an idle connection of another client. Its logical session (the driver
    // sends an implicit lsid) holds no transaction state, so, as on mongod, it is not listed and
    // its id names nothing.
    let idle_client = app_client(f.node.local_addr()).await;
    idle_client.database("admin").run_command(doc! {"ping": 1}).await.unwrap();
    let listed = list_ops(&f.driver, &f.target).await.unwrap();
    let idle_conn =
        listed.iter().find(|r| !r.active && r.id.starts_with("conn")).expect("an idle connection is listed");
    assert!(!listed.iter().any(|r| r.id.starts_with("lsid:")), "{listed:#?}");
    assert_eq!(idle_conn.cost_time_us, 0);
    assert!(!idle_conn.has_opid);
    let err =
        sessions::kill(&f.driver, &f.target, &[sleep.id.clone(), idle_conn.id.clone()]).await.unwrap_err();
    assert_eq!(err, SessionError::InactiveSessions(vec![idle_conn.id.clone()]));
    let lsid = "lsid:00010203-0405-0607-0809-0a0b0c0d0e0f".to_owned();
    let err = sessions::kill(&f.driver, &f.target, &[sleep.id.clone(), lsid.clone()]).await.unwrap_err();
    assert_eq!(err, SessionError::InvalidSessionIds(vec![lsid]));
    // Unknown beats inactive when both occur.
    let err =
        sessions::kill(&f.driver, &f.target, &[idle_conn.id.clone(), "conn999999".into()]).await.unwrap_err();
    assert_eq!(err, SessionError::InvalidSessionIds(vec!["conn999999".into()]));

    // Nothing was killed: the sleep is still running.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!sleeper.is_finished());
    let again = wait_for(&f, is_sleep).await;
    assert_eq!(again.id, sleep.id);

    sessions::kill(&f.driver, &f.target, std::slice::from_ref(&sleep.id)).await.unwrap();
    assert_eq!(error_code(&sleeper.await.unwrap().unwrap_err()), Some(11601));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn paging_over_many_sleeps() {
    let f = fixture().await;
    let client = app_client(f.node.local_addr()).await;
    let sleepers: Vec<_> = (0..5).map(|_| spawn_sleep(&client, 30_000)).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let only_sleeps = SessionFilter { op_type: Some("command".into()), ..Default::default() };
    let total = loop {
        let p = sessions::list(
            &f.driver,
            &f.target,
            &SessionQuery { filter: only_sleeps.clone(), offset: 0, limit: 100 },
        )
        .await
        .unwrap();
        let n = p.sessions.iter().filter(|r| is_sleep(r)).count();
        if n == 5 {
            break p.total;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut seen = Vec::new();
    for offset in (0..total).step_by(2) {
        let p = sessions::list(
            &f.driver,
            &f.target,
            &SessionQuery { filter: only_sleeps.clone(), offset, limit: 2 },
        )
        .await
        .unwrap();
        assert_eq!(p.total, total);
        assert!(p.sessions.len() <= 2);
        seen.extend(p.sessions.into_iter().map(|r| r.id));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as u64, total);
    let ids: Vec<String> =
        sessions::list(&f.driver, &f.target, &SessionQuery { filter: only_sleeps, offset: 0, limit: 100 })
            .await
            .unwrap()
            .sessions
            .into_iter()
            .filter(is_sleep)
            .map(|r| r.id)
            .collect();
    let report = sessions::kill(&f.driver, &f.target, &ids).await.unwrap();
    assert_eq!(report.outcomes.len(), 5);
    for s in sleepers {
        assert_eq!(error_code(&s.await.unwrap().unwrap_err()), Some(11601));
    }
    f.node.shutdown().await.unwrap();
}

struct MemoryHealth {
    nodes: Vec<NodeTarget>,
    seen: std::sync::Mutex<std::collections::HashMap<String, docplane_driver::NodeHealth>>,
}

impl docplane_driver::HealthStore for MemoryHealth {
    async fn nodes(&self) -> Vec<NodeTarget> {
        self.nodes.clone()
    }
    async fn record(&self, node_id: &str, health: &docplane_driver::NodeHealth) {
        self.seen.lock().unwrap().insert(node_id.to_owned(), health.clone());
    }
}

#[tokio::test]
async fn health_loop_refreshes_status_role_and_version() {
    let f = fixture().await;
    let dead = NodeTarget {
        id: "dead".into(),
        address: "127.0.0.1:1".into(),
        credentials: None,
        kind: NodeKind::Mongod,
    };
    let store =
        std::sync::Arc::new(MemoryHealth { nodes: vec![f.target.clone(), dead], seen: Default::default() });
    let health =
        docplane_driver::spawn_health_loop(f.driver.clone(), store.clone(), Duration::from_millis(50));
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "health loop did not record both nodes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    health.stop().await;
    let seen = store.seen.lock().unwrap().clone();
    assert_eq!(seen["node-1"].status, NodeStatus::Normal);
    assert_eq!(seen["node-1"].role, NodeRole::Primary);
    assert!(seen["node-1"].version.is_some());
    assert_eq!(seen["dead"].status, NodeStatus::Abnormal);
    assert_eq!(seen["dead"].role, NodeRole::Unknown);
    f.node.shutdown().await.unwrap();
}
