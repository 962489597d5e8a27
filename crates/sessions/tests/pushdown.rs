//! The listing pushed down to the node (`pushdown::page_stages`, one aggregation) answers what the
//! client-side listing answers, on a live embedded node holding sleeps of several applications,
//! a collection scan, idle connections and idle logical sessions, for every filter, offset and limit
//! the vendor API takes. The set of operations is held steady while the two are compared.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docplane_driver::{Credentials, Driver, DriverConfig, NodeKind, NodeTarget};
use docplane_node::{Node, NodeConfig};
use docplane_sessions::{NodeRef, SessionFilter, SessionQuery, SessionRecord, SessionService};
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress};

const USER: &str = "root";
const PASSWORD: &str = "pushdown-pw";

fn client(addr: SocketAddr, app: &str) -> mongodb::Client {
    let mut o = ClientOptions::default();
    o.hosts = vec![ServerAddress::Tcp { host: addr.ip().to_string(), port: Some(addr.port()) }];
    o.direct_connection = Some(true);
    o.app_name = Some(app.into());
    let mut c = Credential::default();
    c.username = Some(USER.into());
    c.password = Some(PASSWORD.into());
    c.source = Some("admin".into());
    o.credential = Some(c);
    mongodb::Client::with_options(o).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_answers_what_the_client_side_listing_answers() {
    let node = Node::start(NodeConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        enable_test_commands: true,
        auth: true,
        root_user: Some((USER.into(), PASSWORD.into())),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let addr = node.local_addr();
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().join("meta.db").to_str().unwrap()).await.unwrap();
    let driver =
        Driver::new(DriverConfig { operation_timeout: Duration::from_secs(5), ..DriverConfig::default() });
    let service = SessionService::new(Arc::new(driver), store);
    let target = NodeTarget {
        id: "n".into(),
        address: addr.to_string(),
        credentials: Some(Credentials { username: USER.into(), password: PASSWORD.into(), source: None }),
        kind: NodeKind::Mongod,
    };
    let settings = service.settings("p", "i").await.unwrap();
    let at = NodeRef { project_id: "p", target: &target, settings: &settings };

    let (held, scan) = hold_operations(addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = service
            .list_client_side(&target, &SessionQuery { limit: 1000, ..SessionQuery::default() }, false)
            .await
            .unwrap();
        if all.sessions.iter().filter(|r| r.active).count() >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut compared = 0;
    for filter in &filters() {
        for (offset, limit) in [(0, 10), (0, 100), (3, 4), (9, 1), (50, 10)] {
            let q = SessionQuery { filter: filter.clone(), offset, limit };
            compared += both_listings_agree(&service, at, &q).await;
        }
    }
    assert!(compared > 50, "the comparison saw sessions: {compared}");
    for h in held {
        h.abort();
    }
    scan.abort();
    node.shutdown().await.unwrap();
}

/// The operations both listings see: sleeps of three applications (started apart, so running
/// times order them the same way in both reads), an idle connection and an idle logical session
/// per application, and a long collection scan. Answers the sleeps' and the scan's tasks.
async fn hold_operations(
    addr: SocketAddr,
) -> (
    Vec<tokio::task::JoinHandle<mongodb::error::Result<Document>>>,
    tokio::task::JoinHandle<mongodb::error::Result<Vec<Document>>>,
) {
    let mut held = Vec::new();
    for (app, n) in [("shop", 4), ("report", 3), ("batch", 2)] {
        let c = client(addr, app);
        for i in 0..n {
            let db = c.database("admin");
            held.push(tokio::spawn(
                async move { db.run_command(doc! {"sleep": 1, "millis": 60_000_i64}).await },
            ));
            // Distinct start times, so running times order them the same way in both reads.
            tokio::time::sleep(Duration::from_millis(if i == 0 { 15 } else { 5 })).await;
        }
        // An idle connection and an idle logical session of this client.
        c.database("admin").run_command(doc! {"ping": 1}).await.unwrap();
    }
    let scanner = client(addr, "scanner");
    let coll = scanner.database("test").collection::<Document>("big");
    coll.insert_many((0..5_000).map(|i| doc! {"v": i})).await.unwrap();
    let scan = tokio::spawn(async move {
        use futures::TryStreamExt;
        coll.find(doc! {"$expr": {"$lt": [{"$size": {"$range": [0, 200_000]}}, 0]}})
            .await?
            .try_collect::<Vec<_>>()
            .await
    });
    (held, scan)
}

/// The filters compared: none, each field alone, several together, a plan in another case, and
/// one nothing matches.
fn filters() -> Vec<SessionFilter> {
    let f = |op_type: Option<&str>, namespace: Option<&str>, plan: Option<&str>, min: Option<u64>| {
        SessionFilter {
            op_type: op_type.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            plan_summary: plan.map(str::to_owned),
            min_cost_time_us: min,
            ..SessionFilter::default()
        }
    };
    vec![
        f(None, None, None, None),
        f(Some("command"), None, None, None),
        f(Some("none"), None, None, None),
        f(Some("query"), Some("test.big"), Some("COLLSCAN"), None),
        f(None, None, Some("collscan"), None),
        f(None, Some("admin.$cmd"), None, Some(1)),
        f(None, None, None, Some(3_600_000_000)),
    ]
}

/// The pushed-down page and the client-side one for `q`: the same total, the same ids in the
/// same order, the same fields. Answers how many sessions were compared.
async fn both_listings_agree(service: &SessionService, at: NodeRef<'_>, q: &SessionQuery) -> usize {
    let pushed = service.list(at, q).await.unwrap();
    let local = service.list_client_side(at.target, q, false).await.unwrap();
    let ids =
        |p: &docplane_sessions::SessionPage| p.sessions.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(pushed.total, local.total, "{q:?}");
    assert_eq!(ids(&pushed), ids(&local), "{q:?}");
    // Every field but the running time, which moved between the two reads (the page carries
    // only `pushdown::PAGE_FIELDS`: a field the records read and the page lacks shows here).
    for (a, b) in pushed.sessions.iter().zip(&local.sessions) {
        assert_eq!(
            SessionRecord { cost_time_us: 0, ..a.clone() },
            SessionRecord { cost_time_us: 0, ..b.clone() }
        );
    }
    pushed.sessions.len()
}
