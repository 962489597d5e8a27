//! Node configuration and the node's top-level error type.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How to run a node. `Default` binds 127.0.0.1:27017, in-memory, auth on, no root user.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on; port 0 picks a free port (see [`crate::NodeHandle::local_addr`]).
    pub bind: SocketAddr,
    /// Data directory; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Exposes test commands such as `{sleep: 1, millis: N}`.
    pub enable_test_commands: bool,
    /// Enforce authentication and authorization (`--no-auth` sets false).
    pub auth: bool,
    /// `(user, password)` of a root user created in `admin` at start when no user of that name exists.
    pub root_user: Option<(String, String)>,
    /// `maxMessageSizeBytes`: larger frames close the connection.
    pub max_message_size: usize,
    /// fsync every acknowledged write (engine option) instead of every 100 ms.
    pub sync_every_write: bool,
    /// Idle cursors are closed after this long (mongod: 10 minutes).
    pub cursor_timeout: Duration,
    /// Maximum number of simultaneous connections; further ones are closed at accept.
    pub max_connections: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 27017)),
            data_dir: None,
            enable_test_commands: false,
            auth: true,
            root_user: None,
            max_message_size: docplane_wire::DEFAULT_MAX_MESSAGE_SIZE,
            sync_every_write: false,
            cursor_timeout: Duration::from_secs(600),
            max_connections: 1_000_000,
        }
    }
}

/// Failures starting or stopping a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("storage: {0}")]
    Storage(#[from] docplane_query::CommandError),
    #[error("users file {path}: {detail}")]
    Users { path: PathBuf, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("shutdown did not finish: {0}")]
    Shutdown(String),
}
