//! A node that cannot be reached fails promptly, within the configured timeouts.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use docplane_driver::{DiscoverRequest, Driver, DriverConfig, DriverError, NodeKind, NodeStatus, NodeTarget};
use docplane_sessions::kill as sessions;
use docplane_sessions::{SessionError, SessionQuery};

fn fast_config() -> DriverConfig {
    DriverConfig {
        connect_timeout: Duration::from_millis(300),
        server_selection_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(2),
        ..DriverConfig::default()
    }
}

fn dead_target() -> NodeTarget {
    NodeTarget { id: "dead".into(), address: "127.0.0.1:1".into(), credentials: None, kind: NodeKind::Mongod }
}

#[tokio::test]
async fn unreachable_node_errors_promptly() {
    let driver = Driver::new(fast_config());
    let t = dead_target();

    let started = Instant::now();
    let err = sessions::list(&driver, &t, &SessionQuery::default()).await.unwrap_err();
    assert!(matches!(err, SessionError::Node(DriverError::Unreachable(_))), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());

    let started = Instant::now();
    let err = sessions::kill(&driver, &t, &["1".to_owned()]).await.unwrap_err();
    assert!(matches!(err, SessionError::Node(DriverError::Unreachable(_))), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    let health = driver.probe(&t).await;
    assert_eq!(health.status, NodeStatus::Abnormal);
    assert!(health.error.is_some());

    let err = driver
        .discover(&DiscoverRequest {
            seed: "127.0.0.1:1".into(),
            credentials: None,
            mode: None,
            mongos: vec![],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Unreachable(_)), "{err:?}");
}

/// A peer that accepts TCP but never answers: the operation timeout bounds the wait.
#[tokio::test]
async fn silent_node_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let driver = Driver::new(fast_config());
    let t = NodeTarget { address, ..dead_target() };
    let started = Instant::now();
    let err = sessions::list(&driver, &t, &SessionQuery::default()).await.unwrap_err();
    assert!(
        matches!(err, SessionError::Node(DriverError::Unreachable(_) | DriverError::Timeout(_))),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    holder.abort();
}

/// A node that cannot be read after its killOp was accepted gives `Unknown` for every accepted
/// id (nothing is known), never `StillRunning`; a failed killOp stays `Failed`.
#[tokio::test]
async fn verification_without_the_node_is_unknown() {
    use docplane_sessions::{KillStatus, SessionId};
    let driver = Driver::new(fast_config());
    let t = dead_target();
    let issued = vec![
        (SessionId::Local(5), Ok(())),
        (
            SessionId::Local(6),
            Err(SessionError::Node(DriverError::CommandFailed { code: 13, message: "unauthorized".into() })),
        ),
    ];
    let report = sessions::verify_report(&driver, &t, issued).await;
    assert_eq!(report.outcomes[0].status, KillStatus::Unknown, "{report:?}");
    assert!(matches!(report.outcomes[1].status, KillStatus::Failed { code: 13, .. }), "{report:?}");
}
