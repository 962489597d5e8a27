//! The official `mongodb` driver's side of the transport ([`OfficialPool`]): connection pools
//! per node, for nodes of wire version 9+ (MongoDB 4.4+).
//!
//! Invariants:
//! - one [`mongodb::Client`] (one pool, direct connection) per node id, reused across requests;
//! - a cached client is replaced as soon as the node's address or credentials change, so a
//!   re-registered node never runs commands with stale credentials;
//! - every command goes through [`OfficialPool::run`], which bounds it by the configured operation
//!   timeout: no call into this crate waits unboundedly on the network;
//! - no official client is left to its `Drop` at shutdown: [`OfficialPool::shutdown`] calls
//!   `Client::shutdown()` on every pooled client (the driver's drop spawns cleanup work onto the
//!   runtime, which can panic when that runtime is itself going away), and the short-lived
//!   clients of discovery are shut down by [`OfficialPool::with_ephemeral`] right after use.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Document, RawDocumentBuf, doc};
use mongodb::event::EventHandler;
use mongodb::event::cmap::CmapEvent;
use mongodb::options::{ClientOptions, Credential, ServerAddress};

use crate::config::{ConnectionKey, Credentials, DriverConfig, NodeTarget};
use crate::error::{DriverError, Result};
use crate::info::{ServerInfo, ServerVersion};
use crate::transport::NodeTransport;

struct CachedClient {
    key: ConnectionKey,
    client: Client,
    /// Last version read from this node through this pool.
    version: Option<ServerVersion>,
}

/// The official driver's side of the transport: one pooled [`Client`] per node id.
pub struct OfficialPool {
    config: DriverConfig,
    clients: Mutex<HashMap<String, CachedClient>>,
    counters: Arc<PoolCounters>,
}

/// What every official client's connection pools did, from the driver's CMAP events (summed over
/// nodes: the metrics name no node).
#[derive(Debug, Default)]
struct PoolCounters {
    created: AtomicU64,
    closed: AtomicU64,
    checked_out: AtomicU64,
    checked_in: AtomicU64,
    checkout_failed: AtomicU64,
}

/// A snapshot of [`OfficialPool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Cached clients (one pool per node).
    pub pools: usize,
    /// Connections open now (created and not yet closed).
    pub connections: u64,
    /// Connections checked out now (in use by an operation).
    pub in_use: u64,
    /// Checkouts since start.
    pub checkouts: u64,
    /// Checkouts that failed since start (connect error, timeout, pool cleared).
    pub checkout_failures: u64,
}

impl PoolCounters {
    fn observe(&self, event: &CmapEvent) {
        let counter = match event {
            CmapEvent::ConnectionCreated(_) => &self.created,
            CmapEvent::ConnectionClosed(_) => &self.closed,
            CmapEvent::ConnectionCheckedOut(_) => &self.checked_out,
            CmapEvent::ConnectionCheckedIn(_) => &self.checked_in,
            CmapEvent::ConnectionCheckoutFailed(_) => &self.checkout_failed,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for OfficialPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfficialPool").field("pools", &self.cached_pools()).finish_non_exhaustive()
    }
}

impl OfficialPool {
    /// An empty pool cache.
    pub fn new(config: DriverConfig) -> Self {
        Self { config, clients: Mutex::new(HashMap::new()), counters: Arc::default() }
    }

    /// Builds the driver options for one node: direct connection, our app name, bounded timeouts.
    pub fn client_options(&self, key: &ConnectionKey) -> Result<ClientOptions> {
        let cfg = &self.config;
        let address = ServerAddress::parse(&key.address).map_err(|e| {
            DriverError::InvalidRequest(format!("invalid node address {:?}: {e}", key.address))
        })?;
        let mut options = ClientOptions::default();
        options.hosts = vec![address];
        options.direct_connection = Some(true);
        options.app_name = Some(cfg.app_name.clone());
        options.connect_timeout = Some(cfg.connect_timeout);
        options.server_selection_timeout = Some(cfg.server_selection_timeout);
        options.max_pool_size = Some(cfg.max_pool_size);
        options.min_pool_size = Some(0);
        options.heartbeat_freq = Some(cfg.heartbeat_frequency);
        options.retry_reads = Some(false);
        options.retry_writes = Some(false);
        options.credential = key.credentials.as_ref().map(to_credential);
        let counters = self.counters.clone();
        options.cmap_event_handler = Some(EventHandler::callback(move |e: CmapEvent| counters.observe(&e)));
        Ok(options)
    }

    /// A client for `key` that is not cached (used while discovering unregistered deployments).
    /// Prefer [`OfficialPool::with_ephemeral`], which also shuts it down.
    pub fn ephemeral_client(&self, key: &ConnectionKey) -> Result<Client> {
        let options = self.client_options(key)?;
        Client::with_options(options).map_err(DriverError::from)
    }

    /// Runs `work` with a client for `key` that is not cached, then shuts that client down.
    pub async fn with_ephemeral<T, F, Fut>(&self, key: &ConnectionKey, work: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let client = self.ephemeral_client(key)?;
        let result = work(client.clone()).await;
        shutdown_client(client, self.config.operation_timeout).await;
        result
    }

    /// Shuts every pooled client down (waiting up to `grace` for operations still running on
    /// them, then closing at once) and empties the cache. Later calls build new pools as usual.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let clients: Vec<Client> = match self.clients.lock() {
            Ok(mut clients) => clients.drain().map(|(_, c)| c.client).collect(),
            Err(_) => Vec::new(),
        };
        let n = clients.len();
        futures::future::join_all(clients.into_iter().map(|c| shutdown_client(c, grace))).await;
        tracing::debug!(pools = n, "node driver pools shut down");
    }

    /// The pooled client of `target`, created on first use and rebuilt when the address or
    /// credentials changed since it was cached.
    pub fn client(&self, target: &NodeTarget) -> Result<Client> {
        let key = target.connection_key();
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| DriverError::InvalidRequest("driver pool cache poisoned".into()))?;
        if let Some(cached) = clients.get(&target.id)
            && cached.key == key
        {
            return Ok(cached.client.clone());
        }
        let client = self.ephemeral_client(&key)?;
        if clients
            .insert(target.id.clone(), CachedClient { key, client: client.clone(), version: None })
            .is_some()
        {
            tracing::debug!(node = %target.id, "node address or credentials changed; pool rebuilt");
        }
        Ok(client)
    }

    /// Drops the cached pool of a node (after it is unregistered). Returns whether one existed.
    pub fn forget(&self, node_id: &str) -> bool {
        self.clients.lock().map(|mut c| c.remove(node_id).is_some()).unwrap_or(false)
    }

    /// The version last read from `target` through its current pool.
    pub fn cached_version(&self, target: &NodeTarget) -> Option<ServerVersion> {
        let clients = self.clients.lock().ok()?;
        clients.get(&target.id).filter(|c| c.key == target.connection_key()).and_then(|c| c.version)
    }

    /// Records the version read from `target` (ignored if its pool changed meanwhile).
    pub fn remember_version(&self, target: &NodeTarget, version: ServerVersion) {
        if let Ok(mut clients) = self.clients.lock()
            && let Some(c) = clients.get_mut(&target.id)
            && c.key == target.connection_key()
        {
            c.version = Some(version);
        }
    }

    /// Pool use since start, summed over every node's client (including discovery's short-lived
    /// ones), from the official driver's connection-pool events.
    pub fn stats(&self) -> PoolStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            pools: self.cached_pools(),
            connections: load(&c.created).saturating_sub(load(&c.closed)),
            in_use: load(&c.checked_out).saturating_sub(load(&c.checked_in)),
            checkouts: load(&c.checked_out),
            checkout_failures: load(&c.checkout_failed),
        }
    }

    /// Number of cached pools (for tests and metrics).
    pub fn cached_pools(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Runs `fut` under the operation timeout, classifying driver errors.
    pub async fn run<T>(&self, fut: impl Future<Output = mongodb::error::Result<T>>) -> Result<T> {
        let limit = self.config.operation_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DriverError::from(e)),
            Err(_) => Err(DriverError::Timeout(limit)),
        }
    }

    /// Runs one command on `db` of `client` under the operation timeout.
    pub async fn command_on(&self, client: &Client, db: &str, command: Document) -> Result<Document> {
        let database = client.database(db);
        self.run(async move { database.run_command(command).await }).await
    }
}

#[async_trait::async_trait]
impl NodeTransport for OfficialPool {
    fn config(&self) -> &DriverConfig {
        &self.config
    }

    async fn version(&self, target: &NodeTarget) -> Result<ServerVersion> {
        if let Some(v) = self.cached_version(target) {
            return Ok(v);
        }
        let client = self.client(target)?;
        let build = self.command_on(&client, "admin", doc! {"buildInfo": 1}).await?;
        let version = ServerVersion::from_build_info(&build)
            .ok_or_else(|| DriverError::UnsupportedVersion("buildInfo has no parseable version".into()))?;
        self.remember_version(target, version);
        Ok(version)
    }

    async fn server_info(&self, target: &NodeTarget) -> Result<ServerInfo> {
        let client = self.client(target)?;
        let info = crate::info::server_info_with(self, &client).await?;
        self.remember_version(target, info.version);
        Ok(info)
    }

    async fn command(&self, target: &NodeTarget, db: &str, command: Document) -> Result<Document> {
        let client = self.client(target)?;
        self.command_on(&client, db, command).await
    }

    async fn cursor_command(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> Result<Vec<Document>> {
        let client = self.client(target)?;
        let database = client.database(db);
        self.run(
            async move { database.run_cursor_command(command).await?.try_collect::<Vec<Document>>().await },
        )
        .await
    }

    async fn cursor_command_raw(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> Result<Vec<RawDocumentBuf>> {
        let client = self.client(target)?;
        let database = client.database(db);
        self.run(async move {
            database
                .run_cursor_command(command)
                .await?
                .with_type::<RawDocumentBuf>()
                .try_collect::<Vec<RawDocumentBuf>>()
                .await
        })
        .await
    }
}

/// `Client::shutdown()`, bounded: after `grace` (an operation or cursor still holding the client)
/// the client is shut down immediately instead.
async fn shutdown_client(client: Client, grace: std::time::Duration) {
    if tokio::time::timeout(grace, client.clone().shutdown()).await.is_err() {
        client.shutdown().immediate(true).await;
    }
}

fn to_credential(c: &Credentials) -> Credential {
    let mut credential = Credential::default();
    credential.username = Some(c.username.clone());
    credential.password = Some(c.password.clone());
    credential.source = Some(c.source.clone().unwrap_or_else(|| "admin".to_owned()));
    credential
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::NodeKind;

    fn target(address: &str, password: Option<&str>) -> NodeTarget {
        NodeTarget {
            id: "n1".into(),
            address: address.into(),
            credentials: password.map(|p| Credentials {
                username: "u".into(),
                password: p.into(),
                source: None,
            }),
            kind: NodeKind::Mongod,
        }
    }

    #[tokio::test]
    async fn pools_are_cached_and_rebuilt_on_change() {
        let driver = OfficialPool::new(DriverConfig::default());
        let t = target("127.0.0.1:27017", Some("a"));
        driver.client(&t).unwrap();
        driver.remember_version(&t, ServerVersion::new(4, 4, 0));
        driver.client(&t).unwrap();
        assert_eq!(driver.cached_pools(), 1);
        assert_eq!(driver.cached_version(&t), Some(ServerVersion::new(4, 4, 0)));
        // New password: new pool, the cached version is forgotten with the old pool.
        let t2 = target("127.0.0.1:27017", Some("b"));
        driver.client(&t2).unwrap();
        assert_eq!(driver.cached_pools(), 1);
        assert_eq!(driver.cached_version(&t2), None);
        assert_eq!(driver.cached_version(&t), None);
        // New address: same.
        let t3 = target("127.0.0.1:27018", Some("b"));
        driver.remember_version(&t2, ServerVersion::new(5, 0, 0));
        driver.client(&t3).unwrap();
        assert_eq!(driver.cached_version(&t3), None);
        assert!(driver.forget("n1"));
        assert!(!driver.forget("n1"));
        assert_eq!(driver.cached_pools(), 0);
    }

    #[tokio::test]
    async fn shutdown_closes_every_pool() {
        let driver = OfficialPool::new(DriverConfig::default());
        let a = target("127.0.0.1:1", None);
        let b = NodeTarget { id: "n2".into(), ..target("127.0.0.1:2", None) };
        let ca = driver.client(&a).unwrap();
        driver.client(&b).unwrap();
        assert_eq!(driver.cached_pools(), 2);
        driver.shutdown(std::time::Duration::from_secs(1)).await;
        assert_eq!(driver.cached_pools(), 0);
        // A clone kept elsewhere is shut down too: it refuses work instead of reconnecting.
        let e = ca.database("admin").run_command(mongodb::bson::doc! {"ping": 1}).await.unwrap_err();
        assert!(e.to_string().to_lowercase().contains("shut"), "{e}");
        // The driver itself stays usable: a new pool is built on demand.
        driver.client(&a).unwrap();
        assert_eq!(driver.cached_pools(), 1);
        driver.shutdown(std::time::Duration::from_secs(1)).await;
    }

    #[test]
    fn options_are_direct_and_bounded() {
        let config = DriverConfig { app_name: "x-app".into(), ..DriverConfig::default() };
        let driver = OfficialPool::new(config.clone());
        let t = target("db.example:27019", Some("pw"));
        let o = driver.client_options(&t.connection_key()).unwrap();
        assert_eq!(o.direct_connection, Some(true));
        assert_eq!(o.app_name.as_deref(), Some("x-app"));
        assert_eq!(o.connect_timeout, Some(config.connect_timeout));
        assert_eq!(o.server_selection_timeout, Some(config.server_selection_timeout));
        let c = o.credential.unwrap();
        assert_eq!(c.source.as_deref(), Some("admin"));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert!(format!("{:?}", t.credentials).contains("***"));
        assert!(!format!("{:?}", t.credentials).contains("pw"));
        let bad = target("", None);
        assert!(matches!(driver.client_options(&bad.connection_key()), Err(DriverError::InvalidRequest(_))));
    }
}
