//! Driver configuration and the description of a node to talk to.
//!
//! [`DriverConfig`] bounds every wait: connecting, selecting the server, each operation, and the
//! post-kill verification. [`NodeTarget`] is everything the driver needs to reach one node; the
//! connection pool for a node is rebuilt whenever its [`ConnectionKey`] changes.

use std::time::Duration;

/// Application name docplane's connections announce; operations carrying it are docplane's own
/// and never appear in session lists.
pub const DEFAULT_APP_NAME: &str = "docplane-control";

/// Tunables of the node driver. Every field has a bounded default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// `appName` in the client handshake; also the marker that hides docplane's own operations.
    pub app_name: String,
    /// TCP connect (and TLS handshake) timeout.
    pub connect_timeout: Duration,
    /// How long the driver may wait for the node to become selectable.
    pub server_selection_timeout: Duration,
    /// Upper bound on each command round trip (the driver has no socket timeout; docplane wraps
    /// each call in this).
    pub operation_timeout: Duration,
    /// Maximum connections per node pool.
    pub max_pool_size: u32,
    /// How often the driver's monitor checks each node.
    pub heartbeat_frequency: Duration,
    /// How long a kill waits for the killed operations to disappear from `currentOp`.
    pub kill_verify_timeout: Duration,
    /// Longest pause between two verification polls (the pause doubles from 1 ms up to this).
    pub kill_verify_interval: Duration,
    /// Test and diagnostic switch: reach every node through docplane's own legacy client (the
    /// path taken automatically for nodes below wire version 9, MongoDB < 4.4) instead of the
    /// official driver. Off by default.
    pub force_legacy_wire: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            app_name: DEFAULT_APP_NAME.to_owned(),
            connect_timeout: Duration::from_secs(2),
            server_selection_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
            max_pool_size: 16,
            heartbeat_frequency: Duration::from_secs(10),
            kill_verify_timeout: Duration::from_secs(2),
            kill_verify_interval: Duration::from_millis(20),
            force_legacy_wire: false,
        }
    }
}

/// Username/password for SCRAM authentication against a node.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password in clear (decrypted by the caller just before use).
    pub password: String,
    /// Authentication database; `admin` when `None`.
    pub source: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("source", &self.source)
            .finish()
    }
}

/// What kind of process a node is; decides the session-id format and the kill command's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A `mongod` (standalone, replica-set member, shard or config member): decimal opids.
    Mongod,
    /// A `mongos` router: opids are `"<shard>:<opid>"` strings.
    Mongos,
}

/// One node docplane manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// docplane's node id (the pool cache key).
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Credentials, if the node requires authentication.
    pub credentials: Option<Credentials>,
    /// mongod or mongos.
    pub kind: NodeKind,
}

/// The part of a [`NodeTarget`] that, when it changes, requires a new connection pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    /// `host:port`.
    pub address: String,
    /// Credentials in use.
    pub credentials: Option<Credentials>,
}

impl NodeTarget {
    /// The pool-identity of this target.
    pub fn connection_key(&self) -> ConnectionKey {
        ConnectionKey { address: self.address.clone(), credentials: self.credentials.clone() }
    }
}
