//! The transport: one trait for "run this on that node", two implementations, one router.
//!
//! - [`NodeTransport`]: what the rest of docplane may ask of a node (its version and identity,
//!   one command, one cursor command followed to its end), every call bounded by
//!   [`DriverConfig::operation_timeout`];
//! - [`OfficialPool`](crate::pool::OfficialPool): the official `mongodb` driver, for wire
//!   version 9+ (MongoDB 4.4+);
//! - [`LegacyClient`](crate::legacy::LegacyClient): docplane's own small client for MongoDB 3.4
//!   to 4.2 (wire versions below 9);
//! - [`Driver`]: the handle the control plane holds. It implements [`NodeTransport`] by routing
//!   each call to one of the two, decided once per node and connection identity
//!   ([`Driver::route`], the only place that branches on the legacy path).
//!
//! Invariant: nothing above this module knows which of the two a node uses; the legacy path is
//! a routing decision, never a branch in callers.

use std::sync::Arc;

use mongodb::bson::{Document, RawDocumentBuf};

use crate::config::{DriverConfig, NodeTarget};
use crate::error::Result;
use crate::info::{ServerInfo, ServerVersion};
use crate::legacy::LegacyClient;
use crate::pool::OfficialPool;

/// What docplane asks of a node.
#[async_trait::async_trait]
pub trait NodeTransport: Send + Sync {
    /// Timeouts, app name and kill-verification settings in force.
    fn config(&self) -> &DriverConfig;

    /// The node's version (cached per connection identity after the first `buildInfo`).
    async fn version(&self, target: &NodeTarget) -> Result<ServerVersion>;

    /// `buildInfo` and `hello` / `isMaster`.
    async fn server_info(&self, target: &NodeTarget) -> Result<ServerInfo>;

    /// One command on `db`; a reply with `ok: 0` is [`crate::DriverError::CommandFailed`].
    async fn command(&self, target: &NodeTarget, db: &str, command: Document) -> Result<Document>;

    /// A command that returns a cursor (`aggregate`), every batch read to the end.
    async fn cursor_command(&self, target: &NodeTarget, db: &str, command: Document)
    -> Result<Vec<Document>>;

    /// [`NodeTransport::cursor_command`] with each document left as the node encoded it, for a
    /// caller that reads a few of its fields (decoding a large reply whole is most of a read's
    /// client-side cost). The default encodes what `cursor_command` decoded.
    async fn cursor_command_raw(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> Result<Vec<RawDocumentBuf>> {
        self.cursor_command(target, db, command)
            .await?
            .iter()
            .map(|d| {
                RawDocumentBuf::from_document(d)
                    .map_err(|e| crate::DriverError::CommandFailed { code: 0, message: e.to_string() })
            })
            .collect()
    }
}

/// Handle to the node driver; cheap to clone (shared pools inside).
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

struct Inner {
    config: DriverConfig,
    official: OfficialPool,
    legacy: LegacyClient,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver with empty pool caches.
    pub fn new(config: DriverConfig) -> Self {
        let official = OfficialPool::new(config.clone());
        let legacy = LegacyClient::new(config.clone());
        Self { inner: Arc::new(Inner { config, official, legacy }) }
    }

    /// The configuration in force.
    pub fn config(&self) -> &DriverConfig {
        &self.inner.config
    }

    /// The official driver's pools.
    pub fn official(&self) -> &OfficialPool {
        &self.inner.official
    }

    /// The legacy client.
    pub fn legacy(&self) -> &LegacyClient {
        &self.inner.legacy
    }

    /// The transport `target` goes through: the legacy client when forced by configuration or
    /// when the node's `maxWireVersion` (probed once per connection identity) is below what the
    /// official driver accepts, the official pool otherwise.
    pub async fn route(&self, target: &NodeTarget) -> Result<&dyn NodeTransport> {
        if self.inner.legacy.is_legacy(target).await? {
            Ok(&self.inner.legacy)
        } else {
            Ok(&self.inner.official)
        }
    }

    /// Drops the cached pools of a node (after it is unregistered). Returns whether any existed.
    pub fn forget(&self, node_id: &str) -> bool {
        let legacy = self.inner.legacy.forget(node_id);
        self.inner.official.forget(node_id) || legacy
    }

    /// Shuts every pooled official client down (see [`OfficialPool::shutdown`]); legacy
    /// connections are plain sockets and close when dropped.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.official.shutdown(grace).await;
        self.inner.legacy.clear();
    }

    /// Number of cached official pools (for tests and metrics).
    pub fn cached_pools(&self) -> usize {
        self.inner.official.cached_pools()
    }
}

#[async_trait::async_trait]
impl NodeTransport for Driver {
    fn config(&self) -> &DriverConfig {
        &self.inner.config
    }

    async fn version(&self, target: &NodeTarget) -> Result<ServerVersion> {
        self.route(target).await?.version(target).await
    }

    async fn server_info(&self, target: &NodeTarget) -> Result<ServerInfo> {
        self.route(target).await?.server_info(target).await
    }

    async fn command(&self, target: &NodeTarget, db: &str, command: Document) -> Result<Document> {
        self.route(target).await?.command(target, db, command).await
    }

    async fn cursor_command(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> Result<Vec<Document>> {
        self.route(target).await?.cursor_command(target, db, command).await
    }

    async fn cursor_command_raw(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> Result<Vec<RawDocumentBuf>> {
        self.route(target).await?.cursor_command_raw(target, db, command).await
    }
}
