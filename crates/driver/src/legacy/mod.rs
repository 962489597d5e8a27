//! The legacy path: a small client of docplane's own for nodes the official driver refuses
//! (`maxWireVersion` < 9, i.e. MongoDB 3.4 to 4.2).
//!
//! Which path a node takes is decided once per node and connection identity
//! ([`LegacyClient::is_legacy`]): an `isMaster` handshake over `OP_QUERY` (answered by every server
//! version, without authentication) reads its `maxWireVersion`; [`DriverConfig::force_legacy_wire`]
//! forces this path for every node (a test and diagnostic switch). Connections speak `OP_MSG` from
//! wire version 6 (3.6) and `OP_QUERY` on `<db>.$cmd` below, authenticate with SCRAM-SHA-256 when
//! the server lists it for the user and SCRAM-SHA-1 otherwise, and announce the driver's
//! `app_name` so docplane's own operations stay hidden.
//!
//! The client does exactly what the driver needs: `isMaster`, `buildInfo`, `currentOp` (the
//! command with `$all` on 3.4, the `$currentOp` aggregation with `getMore` from 3.6), `killOp` and
//! `replSetGetConfig`.
//!
//! Invariants:
//! - every wait is bounded: connect + handshake by `connect_timeout`, each operation (including
//!   taking or opening and authenticating a connection) by `operation_timeout`;
//! - per node, at most [`MAX_IDLE`] authenticated connections are kept, and only after a command
//!   completed on them; the cache entry (wire version, version, connections) is dropped when the
//!   node's address or credentials change or the node is forgotten.
//!
//! [`DriverConfig::force_legacy_wire`]: crate::DriverConfig::force_legacy_wire

pub mod conn;
pub mod scram;

use std::collections::HashMap;
use std::sync::Mutex;

use bson::{Bson, Document, doc};
use futures::future::BoxFuture;

use self::conn::Conn;
use crate::config::{ConnectionKey, DriverConfig, NodeTarget};
use crate::error::{DriverError, Result};
use crate::info::{HelloInfo, ServerInfo, ServerVersion};
use crate::transport::NodeTransport;

/// Wire version of MongoDB 4.4, the oldest the official driver accepts.
pub const OFFICIAL_MIN_WIRE_VERSION: i32 = 9;
/// Idle authenticated connections kept per node.
pub const MAX_IDLE: usize = 4;
/// `batchSize` of the `getMore`s that follow a cursor.
const BATCH_SIZE: i32 = 100_000;
/// Upper bound on `getMore` rounds of one cursor (a runaway cursor cannot loop forever).
const MAX_GET_MORES: usize = 1_000;

struct NodeState {
    key: ConnectionKey,
    max_wire: Option<i32>,
    version: Option<ServerVersion>,
    idle: Vec<Conn>,
}

/// The per-node state of the legacy client.
#[derive(Default)]
pub struct LegacyCache {
    nodes: Mutex<HashMap<String, NodeState>>,
}

impl std::fmt::Debug for LegacyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyCache").finish_non_exhaustive()
    }
}

impl LegacyCache {
    /// Applies `f` to the node's entry, resetting it first when the connection identity changed.
    fn with<R>(&self, target: &NodeTarget, f: impl FnOnce(&mut NodeState) -> R) -> Option<R> {
        let mut nodes = self.nodes.lock().ok()?;
        let key = target.connection_key();
        let state = nodes.entry(target.id.clone()).or_insert_with(|| NodeState {
            key: key.clone(),
            max_wire: None,
            version: None,
            idle: Vec::new(),
        });
        if state.key != key {
            *state = NodeState { key, max_wire: None, version: None, idle: Vec::new() };
        }
        Some(f(state))
    }

    /// Drops a node's entry. Returns whether one existed.
    pub fn forget(&self, node_id: &str) -> bool {
        self.nodes.lock().map(|mut n| n.remove(node_id).is_some()).unwrap_or(false)
    }

    fn take_idle(&self, target: &NodeTarget) -> Option<Conn> {
        self.with(target, |s| s.idle.pop()).flatten()
    }

    fn put_idle(&self, target: &NodeTarget, conn: Conn) {
        self.with(target, |s| {
            if s.idle.len() < MAX_IDLE {
                s.idle.push(conn);
            }
        });
    }
}

/// Whether a failed command leaves its connection usable (the server answered).
fn connection_survives<T>(result: &Result<T>) -> bool {
    matches!(result, Ok(_) | Err(DriverError::CommandFailed { .. }))
}

/// The documents of a `cursor` reply's `firstBatch` / `nextBatch`, and the cursor id.
fn cursor_batch(reply: &Document) -> Result<(Vec<Document>, i64, String)> {
    let cursor = reply
        .get_document("cursor")
        .map_err(|_| DriverError::CommandFailed { code: 0, message: "reply has no cursor".into() })?;
    let batch = cursor
        .get_array("firstBatch")
        .or_else(|_| cursor.get_array("nextBatch"))
        .map_err(|_| DriverError::CommandFailed { code: 0, message: "cursor reply has no batch".into() })?;
    let docs = batch.iter().filter_map(Bson::as_document).cloned().collect();
    let id = match cursor.get("id") {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        _ => 0,
    };
    let ns = cursor.get_str("ns").unwrap_or("admin.$cmd.aggregate").to_owned();
    Ok((docs, id, ns))
}

/// A cursor command on one connection (the first batch's cursor followed with `getMore` to
/// its end, at most [`MAX_GET_MORES`] rounds); a reply without a cursor is refused.
async fn read_cursor(conn: &mut Conn, db: &str, request: Document) -> Result<Vec<Document>> {
    let reply = conn.command(db, request).await?;
    let (mut entries, mut id, ns) = cursor_batch(&reply)?;
    let collection = ns.split_once('.').map_or("$cmd.aggregate", |(_, c)| c).to_owned();
    let mut rounds = 0;
    while id != 0 {
        rounds += 1;
        if rounds > MAX_GET_MORES {
            if let Err(e) = conn.command(db, doc! {"killCursors": &collection, "cursors": [id]}).await {
                tracing::debug!(error = %e, "killCursors after a runaway cursor failed");
            }
            return Err(DriverError::CommandFailed { code: 0, message: "cursor did not end".into() });
        }
        let more = conn
            .command(db, doc! {"getMore": id, "collection": &collection, "batchSize": BATCH_SIZE})
            .await?;
        let (docs, next, _) = cursor_batch(&more)?;
        entries.extend(docs);
        id = next;
    }
    Ok(entries)
}

/// docplane's own client for nodes below wire version 9: the legacy side of the transport.
pub struct LegacyClient {
    config: DriverConfig,
    cache: LegacyCache,
}

impl std::fmt::Debug for LegacyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyClient").finish_non_exhaustive()
    }
}

impl LegacyClient {
    /// A client with an empty cache.
    pub fn new(config: DriverConfig) -> Self {
        Self { config, cache: LegacyCache::default() }
    }

    /// Drops a node's cached state and connections. Returns whether any existed.
    pub fn forget(&self, node_id: &str) -> bool {
        self.cache.forget(node_id)
    }

    /// Idle connections kept for reuse now, over every legacy node (for metrics).
    pub fn idle_connections(&self) -> usize {
        self.cache.nodes.lock().map(|nodes| nodes.values().map(|s| s.idle.len()).sum()).unwrap_or(0)
    }

    /// Drops every cached connection (at shutdown).
    pub fn clear(&self) {
        if let Ok(mut nodes) = self.cache.nodes.lock() {
            nodes.clear();
        }
    }

    /// Opens an authenticated connection to `address` (handshake bounded by `connect_timeout`).
    async fn open(&self, key: &ConnectionKey) -> Result<Conn> {
        let cfg = &self.config;
        let mut conn =
            Conn::connect(&key.address, &cfg.app_name, key.credentials.as_ref(), cfg.connect_timeout).await?;
        if let Some(c) = &key.credentials {
            let mechanism = conn.mechanism();
            conn.authenticate(c, mechanism).await?;
        }
        Ok(conn)
    }

    /// Runs `f` on a connection of `target` (a cached one, or a new authenticated one), all under
    /// the operation timeout; the connection returns to the cache if its last command completed.
    async fn with_conn<T>(
        &self,
        target: &NodeTarget,
        f: impl for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T>> + Send,
    ) -> Result<T> {
        let limit = self.config.operation_timeout;
        let work = async {
            let mut conn = match self.cache.take_idle(target) {
                Some(c) => c,
                None => self.open(&target.connection_key()).await?,
            };
            let result = f(&mut conn).await;
            if connection_survives(&result) {
                self.cache.put_idle(target, conn);
            }
            result
        };
        tokio::time::timeout(limit, work).await.unwrap_or(Err(DriverError::Timeout(limit)))
    }

    /// Whether `target` goes through this client: forced by configuration, or its
    /// `maxWireVersion` (read once per connection identity) is below what the official driver
    /// accepts. A legacy node's probe connection is authenticated and kept.
    pub async fn is_legacy(&self, target: &NodeTarget) -> Result<bool> {
        if self.config.force_legacy_wire {
            return Ok(true);
        }
        if let Some(Some(wire)) = self.cache.with(target, |s| s.max_wire) {
            return Ok(wire < OFFICIAL_MIN_WIRE_VERSION);
        }
        let cfg = &self.config;
        let key = target.connection_key();
        let mut conn =
            Conn::connect(&key.address, &cfg.app_name, key.credentials.as_ref(), cfg.connect_timeout).await?;
        let wire = conn.max_wire_version;
        self.cache.with(target, |s| s.max_wire = Some(wire));
        let legacy = wire < OFFICIAL_MIN_WIRE_VERSION;
        tracing::debug!(node = %target.id, wire, legacy, "node wire version probed");
        if legacy {
            let authenticated = match &key.credentials {
                Some(c) => {
                    let mechanism = conn.mechanism();
                    tokio::time::timeout(cfg.operation_timeout, conn.authenticate(c, mechanism))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
                None => true,
            };
            if authenticated {
                self.cache.put_idle(target, conn);
            }
        }
        Ok(legacy)
    }

    /// Probes an unregistered address (discovery): `Some(info)` when it goes through this client
    /// (forced, or `maxWireVersion` < 9), `None` when the official driver can reach it.
    pub async fn probe_info(&self, key: &ConnectionKey) -> Result<Option<ServerInfo>> {
        let cfg = &self.config;
        let mut conn =
            Conn::connect(&key.address, &cfg.app_name, key.credentials.as_ref(), cfg.connect_timeout).await?;
        if !cfg.force_legacy_wire && conn.max_wire_version >= OFFICIAL_MIN_WIRE_VERSION {
            return Ok(None);
        }
        let limit = cfg.operation_timeout;
        let work = async {
            if let Some(c) = &key.credentials {
                let mechanism = conn.mechanism();
                conn.authenticate(c, mechanism).await?;
            }
            let build = conn.command("admin", doc! {"buildInfo": 1}).await?;
            let version_text = build.get_str("version").unwrap_or_default().to_owned();
            let version = ServerVersion::from_build_info(&build).ok_or_else(|| {
                DriverError::UnsupportedVersion(format!("unparseable version {version_text:?}"))
            })?;
            Ok(Some(ServerInfo { version_text, version, hello: HelloInfo::from_document(&conn.hello) }))
        };
        tokio::time::timeout(limit, work).await.unwrap_or(Err(DriverError::Timeout(limit)))
    }

    /// One command on an unregistered address through this client, or `None` when the address
    /// speaks a wire version the official driver accepts (and the caller should use it).
    pub async fn command_at(
        &self,
        key: &ConnectionKey,
        db: &str,
        command: Document,
    ) -> Result<Option<Document>> {
        let cfg = &self.config;
        let mut conn =
            Conn::connect(&key.address, &cfg.app_name, key.credentials.as_ref(), cfg.connect_timeout).await?;
        if !cfg.force_legacy_wire && conn.max_wire_version >= OFFICIAL_MIN_WIRE_VERSION {
            return Ok(None);
        }
        let limit = cfg.operation_timeout;
        let work = async {
            if let Some(c) = &key.credentials {
                let mechanism = conn.mechanism();
                conn.authenticate(c, mechanism).await?;
            }
            conn.command(db, command).await.map(Some)
        };
        tokio::time::timeout(limit, work).await.unwrap_or(Err(DriverError::Timeout(limit)))
    }
}

#[async_trait::async_trait]
impl NodeTransport for LegacyClient {
    fn config(&self) -> &DriverConfig {
        &self.config
    }

    async fn version(&self, target: &NodeTarget) -> Result<ServerVersion> {
        if let Some(Some(v)) = self.cache.with(target, |s| s.version) {
            return Ok(v);
        }
        let build = self.command(target, "admin", doc! {"buildInfo": 1}).await?;
        let version = ServerVersion::from_build_info(&build)
            .ok_or_else(|| DriverError::UnsupportedVersion("buildInfo has no parseable version".into()))?;
        self.cache.with(target, |s| s.version = Some(version));
        Ok(version)
    }

    async fn server_info(&self, target: &NodeTarget) -> Result<ServerInfo> {
        let build = self.command(target, "admin", doc! {"buildInfo": 1}).await?;
        let version_text = build.get_str("version").unwrap_or_default().to_owned();
        let version = ServerVersion::from_build_info(&build).ok_or_else(|| {
            DriverError::UnsupportedVersion(format!("unparseable version {version_text:?}"))
        })?;
        self.cache.with(target, |s| s.version = Some(version));
        let hello = HelloInfo::from_document(&self.command(target, "admin", doc! {"isMaster": 1}).await?);
        Ok(ServerInfo { version_text, version, hello })
    }

    async fn command(&self, target: &NodeTarget, db: &str, command: Document) -> Result<Document> {
        let db = db.to_owned();
        self.with_conn(target, move |c| Box::pin(async move { c.command(&db, command).await })).await
    }

    async fn cursor_command(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> Result<Vec<Document>> {
        let db = db.to_owned();
        self.with_conn(target, move |c| Box::pin(async move { read_cursor(c, &db, command).await })).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use docplane_node::{Node, NodeConfig, NodeHandle};

    use super::scram::Mechanism;
    use super::*;
    use crate::config::{Credentials, DriverConfig, NodeKind};

    const USER: &str = "root";
    const PASSWORD: &str = "legacy-pw";

    #[test]
    fn cursor_batches() {
        let first =
            doc! {"cursor": {"id": 7_i64, "ns": "admin.$cmd.aggregate", "firstBatch": [{"a": 1}]}, "ok": 1};
        let (docs, id, ns) = cursor_batch(&first).unwrap();
        assert_eq!((docs.len(), id, ns.as_str()), (1, 7, "admin.$cmd.aggregate"));
        let next = doc! {"cursor": {"id": 0_i64, "nextBatch": [{"a": 2}, {"a": 3}]}, "ok": 1};
        assert_eq!(cursor_batch(&next).unwrap().0.len(), 2);
        assert!(cursor_batch(&doc! {"ok": 1}).is_err());
        assert!(connection_survives(&Err::<(), _>(DriverError::CommandFailed {
            code: 1,
            message: String::new()
        })));
        assert!(!connection_survives(&Err::<(), _>(DriverError::Timeout(Duration::ZERO))));
    }

    async fn node() -> NodeHandle {
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

    fn setup(node: &NodeHandle) -> (LegacyClient, NodeTarget) {
        let driver = LegacyClient::new(DriverConfig {
            connect_timeout: Duration::from_millis(500),
            operation_timeout: Duration::from_secs(5),
            force_legacy_wire: true,
            ..DriverConfig::default()
        });
        let target = NodeTarget {
            id: "n".into(),
            address: node.local_addr().to_string(),
            credentials: Some(Credentials { username: USER.into(), password: PASSWORD.into(), source: None }),
            kind: NodeKind::Mongod,
        };
        (driver, target)
    }

    async fn sleeper(addr: SocketAddr) -> tokio::task::JoinHandle<mongodb::error::Result<Document>> {
        let mut o = mongodb::options::ClientOptions::default();
        o.hosts = vec![mongodb::options::ServerAddress::Tcp {
            host: addr.ip().to_string(),
            port: Some(addr.port()),
        }];
        o.direct_connection = Some(true);
        o.app_name = Some("sleeper".into());
        let mut c = mongodb::options::Credential::default();
        c.username = Some(USER.into());
        c.password = Some(PASSWORD.into());
        o.credential = Some(c);
        let client = mongodb::Client::with_options(o).unwrap();
        tokio::spawn(async move {
            client.database("admin").run_command(doc! {"sleep": 1, "millis": 30_000_i64}).await
        })
    }

    /// Both SCRAM mechanisms and the pre-3.6 transport (`OP_QUERY` commands, the `currentOp`
    /// command with `$all`) against the embedded node, through the driver's own code paths.
    #[tokio::test]
    async fn op_query_transport_both_mechanisms_and_3_4_current_op() {
        let node = node().await;
        let (driver, target) = setup(&node);
        let creds = target.credentials.clone().unwrap();
        for mechanism in [Mechanism::Sha1, Mechanism::Sha256] {
            for op_msg in [false, true] {
                let mut conn =
                    Conn::connect(&target.address, "docplane-control", Some(&creds), Duration::from_secs(1))
                        .await
                        .unwrap();
                assert!(conn.max_wire_version >= 6);
                conn.use_op_msg = op_msg;
                conn.authenticate(&creds, mechanism).await.unwrap();
                let status = conn.command("admin", doc! {"connectionStatus": 1}).await.unwrap();
                let users = status.get_document("authInfo").unwrap().get_array("authenticatedUsers").unwrap();
                assert_eq!(users.len(), 1, "{mechanism:?} op_msg={op_msg}");
                let bad = Credentials { password: "wrong".into(), ..creds.clone() };
                let mut conn =
                    Conn::connect(&target.address, "docplane-control", None, Duration::from_secs(1))
                        .await
                        .unwrap();
                conn.use_op_msg = op_msg;
                assert!(matches!(
                    conn.authenticate(&bad, mechanism).await,
                    Err(DriverError::AuthenticationFailed(_))
                ));
            }
        }
        // Unauthenticated commands are refused with a typed command error over OP_QUERY.
        let mut conn = Conn::connect(&target.address, "x", None, Duration::from_secs(1)).await.unwrap();
        conn.use_op_msg = false;
        assert!(matches!(
            conn.command("admin", doc! {"currentOp": 1}).await,
            Err(DriverError::CommandFailed { code: 13, .. })
        ));

        let sleep = sleeper(node.local_addr()).await;
        let v34 = ServerVersion::new(3, 4, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let entry = loop {
            let mut conn = driver.open(&target.connection_key()).await.unwrap();
            conn.use_op_msg = false;
            driver.cache.put_idle(&target, conn);
            let request = crate::ops::current_op_request(v34, &[]).unwrap();
            let reply = driver.command(&target, "admin", request).await.unwrap();
            let entries: Vec<Document> =
                reply.get_array("inprog").unwrap().iter().filter_map(|e| e.as_document().cloned()).collect();
            if let Some(e) =
                entries.into_iter().find(|e| e.get_document("command").is_ok_and(|c| c.contains_key("sleep")))
            {
                break e;
            }
            assert!(Instant::now() < deadline, "sleep never listed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let opid = entry.get("opid").cloned().unwrap();
        // The OP_QUERY connection went back to the cache; killOp runs on it.
        driver.command(&target, "admin", doc! {"killOp": 1, "op": opid}).await.unwrap();
        let err = sleep.await.unwrap().unwrap_err();
        assert!(
            matches!(err.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 11601),
            "{err:?}"
        );
        node.shutdown().await.unwrap();
    }

    /// A `$currentOp` cursor whose first batch is not everything is followed with `getMore`.
    #[tokio::test]
    async fn current_op_cursor_is_followed() {
        let node = node().await;
        let (driver, target) = setup(&node);
        let mut extra = Vec::new();
        for _ in 0..3 {
            extra.push(driver.open(&target.connection_key()).await.unwrap());
        }
        let mut conn = driver.open(&target.connection_key()).await.unwrap();
        let request = doc! {
            "aggregate": 1,
            "pipeline": [{"$currentOp": {"allUsers": true, "idleConnections": true}}],
            "cursor": {"batchSize": 1},
        };
        let first = conn.command("admin", request.clone()).await.unwrap();
        let (batch, id, _) = cursor_batch(&first).unwrap();
        assert_eq!(batch.len(), 1);
        assert_ne!(id, 0, "a first batch of 1 must leave the cursor open");
        let entries = read_cursor(&mut conn, "admin", request).await.unwrap();
        assert!(entries.len() >= 4, "{entries:#?}");
        drop(extra);
        node.shutdown().await.unwrap();
    }
}
