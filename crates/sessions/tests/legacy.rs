//! The legacy client (the path old servers take) end to end against the embedded node, forced
//! with `DriverConfig::force_legacy_wire`: server info, discovery, listing a `sleep` with its
//! fields, killing it (the sleeping client sees 11601), SCRAM-SHA-1 and SHA-256 users, a wrong
//! password, unreachable and silent addresses.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use docplane_driver::{
    Credentials, DeploymentMode, DiscoverRequest, Driver, DriverConfig, DriverError, NodeKind, NodeRole,
    NodeStatus, NodeTarget, NodeTransport,
};
use docplane_node::{Node, NodeConfig, NodeHandle};
use docplane_sessions::kill::{self as sessions, list_ops, ops_matching};
use docplane_sessions::{KillStatus, SessionError, SessionQuery, SessionRecord};
use mongodb::bson::doc;
use mongodb::options::{ClientOptions, Credential, ServerAddress};

const USER: &str = "root";
const PASSWORD: &str = "secret-pw";

async fn start_node() -> NodeHandle {
    Node::start(NodeConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        enable_test_commands: true,
        auth: true,
        root_user: Some((USER.into(), PASSWORD.into())),
        ..NodeConfig::default()
    })
    .await
    .expect("node starts")
}

fn legacy_driver() -> Driver {
    Driver::new(DriverConfig {
        connect_timeout: Duration::from_millis(300),
        server_selection_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(2),
        force_legacy_wire: true,
        ..DriverConfig::default()
    })
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials { username: user.into(), password: password.into(), source: None }
}

fn target(node: &NodeHandle, credentials: Credentials) -> NodeTarget {
    NodeTarget {
        id: "legacy-node".into(),
        address: node.local_addr().to_string(),
        credentials: Some(credentials),
        kind: NodeKind::Mongod,
    }
}

fn app_client(addr: SocketAddr) -> mongodb::Client {
    let mut o = ClientOptions::default();
    o.hosts = vec![ServerAddress::Tcp { host: addr.ip().to_string(), port: Some(addr.port()) }];
    o.direct_connection = Some(true);
    o.app_name = Some("test-app".into());
    let mut c = Credential::default();
    c.username = Some(USER.into());
    c.password = Some(PASSWORD.into());
    c.source = Some("admin".into());
    o.credential = Some(c);
    mongodb::Client::with_options(o).unwrap()
}

async fn wait_for_sleep(driver: &Driver, t: &NodeTarget) -> SessionRecord {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ops = list_ops(driver, t).await.unwrap();
        if let Some(r) = ops.into_iter().find(|r| r.active && r.operation.contains("\"sleep\"")) {
            return r;
        }
        assert!(Instant::now() < deadline, "sleep never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn legacy_path_lists_and_kills_a_sleep() {
    let node = start_node().await;
    let driver = legacy_driver();
    let t = target(&node, creds(USER, PASSWORD));

    let info = driver.server_info(&t).await.unwrap();
    assert!(info.version.at_least(3, 4));
    assert_eq!(info.role(), NodeRole::Primary);
    assert!(info.hello.max_wire_version.unwrap() >= 6);
    assert_eq!(driver.version(&t).await.unwrap(), info.version);
    let health = driver.probe(&t).await;
    assert_eq!(health.status, NodeStatus::Normal);

    // Only docplane is connected: its own connections and currentOp never show.
    assert!(list_ops(&driver, &t).await.unwrap().is_empty());

    let client = app_client(node.local_addr());
    let db = client.database("admin");
    let sleeper = tokio::spawn(async move { db.run_command(doc! {"sleep": 1, "millis": 30_000_i64}).await });
    let sleep = wait_for_sleep(&driver, &t).await;
    assert!(sleep.has_opid && sleep.id.parse::<i64>().unwrap() > 0);
    assert_eq!(sleep.op_type, "command");
    assert_eq!(sleep.namespace, "admin.$cmd");
    assert_eq!(sleep.db.as_deref(), Some("admin"));
    assert_eq!(sleep.user.as_deref(), Some(USER));
    assert!(sleep.description.starts_with("conn"), "{}", sleep.description);
    assert!(sleep.client.starts_with("127.0.0.1:"), "{}", sleep.client);
    let op: serde_json::Value = serde_json::from_str(&sleep.operation).unwrap();
    assert_eq!(op["millis"], 30_000);
    let all = list_ops(&driver, &t).await.unwrap();
    assert!(all.iter().all(|r| !r.operation.contains("currentOp")), "{all:#?}");
    let page =
        sessions::list(&driver, &t, &SessionQuery { offset: 0, limit: 100, ..SessionQuery::default() })
            .await
            .unwrap();
    assert!(page.sessions.iter().any(|r| r.id == sleep.id));

    let report = sessions::kill(&driver, &t, std::slice::from_ref(&sleep.id)).await.unwrap();
    assert_eq!(report.outcomes.len(), 1);
    assert_eq!(report.outcomes[0].status, KillStatus::Killed, "{report:?}");
    let err = sleeper.await.unwrap().unwrap_err();
    assert!(matches!(err.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 11601), "{err:?}");
    assert!(
        ops_matching(
            &driver,
            &t,
            &docplane_sessions::parse_session_ids(&[sleep.id], NodeKind::Mongod).unwrap()
        )
        .await
        .unwrap()
        .is_empty()
    );

    // Discovery through the legacy client.
    let request = DiscoverRequest {
        seed: t.address.clone(),
        credentials: Some(creds(USER, PASSWORD)),
        mode: Some(DeploymentMode::Single),
        mongos: vec![],
    };
    let topology = driver.discover(&request).await.unwrap();
    assert_eq!(topology.mode, DeploymentMode::Single);
    assert_eq!(topology.nodes.len(), 1);
    assert_eq!(topology.nodes[0].role, NodeRole::Primary);
    let bad = DiscoverRequest { credentials: Some(creds(USER, "nope")), ..request };
    assert!(matches!(driver.discover(&bad).await, Err(DriverError::AuthenticationFailed(_))));
    assert!(driver.forget(&t.id));
    node.shutdown().await.unwrap();
}

/// A user with only SCRAM-SHA-1 credentials (what 3.x servers have) and one with only
/// SCRAM-SHA-256: the handshake's `saslSupportedMechs` picks the mechanism each can use.
#[tokio::test]
async fn legacy_path_authenticates_sha1_and_sha256_users() {
    let node = start_node().await;
    let client = app_client(node.local_addr());
    let admin = client.database("admin");
    for (user, mech) in [("old1", "SCRAM-SHA-1"), ("new256", "SCRAM-SHA-256")] {
        admin
            .run_command(doc! {"createUser": user, "pwd": "pw-1", "roles": [{"role": "root", "db": "admin"}], "mechanisms": [mech]})
            .await
            .unwrap();
        let driver = legacy_driver();
        let t = target(&node, creds(user, "pw-1"));
        let info = driver.server_info(&t).await.unwrap();
        assert_eq!(info.role(), NodeRole::Primary, "{user}");
        assert!(list_ops(&driver, &t).await.is_ok(), "{user}");
        let wrong = target(&node, creds(user, "pw-2"));
        let err = list_ops(&legacy_driver(), &wrong).await.unwrap_err();
        assert!(matches!(err, SessionError::Node(DriverError::AuthenticationFailed(_))), "{user}: {err:?}");
    }
    let err = legacy_driver().server_info(&target(&node, creds(USER, "wrong"))).await.unwrap_err();
    assert!(matches!(err, DriverError::AuthenticationFailed(_)), "{err:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn legacy_path_bounds_unreachable_and_silent_nodes() {
    let driver = legacy_driver();
    let dead = NodeTarget {
        id: "dead".into(),
        address: "127.0.0.1:1".into(),
        credentials: None,
        kind: NodeKind::Mongod,
    };
    let started = Instant::now();
    let err = list_ops(&driver, &dead).await.unwrap_err();
    assert!(matches!(err, SessionError::Node(DriverError::Unreachable(_))), "{err:?}");
    let err = sessions::kill(&driver, &dead, &["1".to_owned()]).await.unwrap_err();
    assert!(matches!(err, SessionError::Node(DriverError::Unreachable(_))), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let silent = NodeTarget { address: address.clone(), ..dead };
    let started = Instant::now();
    let err = driver.server_info(&silent).await.unwrap_err();
    assert!(matches!(err, DriverError::Unreachable(_) | DriverError::Timeout(_)), "{err:?}");
    let err = driver
        .discover(&DiscoverRequest { seed: address, credentials: None, mode: None, mongos: vec![] })
        .await
        .unwrap_err();
    assert!(err.is_connectivity(), "{err:?}");
    // Each attempt is bounded by the 300 ms connect timeout (handshake included).
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    holder.abort();
}

/// Without the switch a modern node (wire version >= 9) keeps the official driver; the legacy
/// probe only reads its wire version.
#[tokio::test]
async fn modern_nodes_keep_the_official_driver() {
    let node = start_node().await;
    let driver =
        Driver::new(DriverConfig { operation_timeout: Duration::from_secs(5), ..DriverConfig::default() });
    let t = target(&node, creds(USER, PASSWORD));
    let info = driver.server_info(&t).await.unwrap();
    assert!(info.hello.max_wire_version.unwrap() >= 9);
    assert!(list_ops(&driver, &t).await.unwrap().is_empty());
    // The official pool was built (the legacy path never builds one).
    assert_eq!(driver.cached_pools(), 1);
    assert_eq!(driver.official().cached_version(&t), Some(info.version));
    node.shutdown().await.unwrap();
}
