//! Node configuration and the node's top-level error type.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default [`NodeConfig::preauth_max_message_size`] (mongod's `preAuthMaximumMessageSizeBytes`).
pub const DEFAULT_PREAUTH_MAX_MESSAGE_SIZE: usize = 16 * 1024;
/// Default [`NodeConfig::unauthenticated_idle_timeout`].
pub const DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Largest frame accepted before the connection authenticates (auth on). Default 16 KiB, as
    /// mongod's `preAuthMaximumMessageSizeBytes`: the handshake (`hello` with client metadata,
    /// which drivers keep under 512 bytes) and SCRAM's `saslStart`/`saslContinue` (well under
    /// 1 KB) fit many times over; anything bigger has no business before authentication.
    pub preauth_max_message_size: usize,
    /// An unauthenticated connection (auth on) is closed when no complete message arrives for
    /// this long (`None`: never). Default 60 s: longer than drivers' default heartbeat (10 s),
    /// since their monitoring connections never authenticate. mongod has no such timeout.
    pub unauthenticated_idle_timeout: Option<Duration>,
    /// Same for authenticated connections (and all connections with auth off). Default none.
    pub idle_timeout: Option<Duration>,
    /// fsync every acknowledged write (engine option) instead of every 100 ms; `j: true` writes
    /// wait for an fsync either way.
    pub sync_every_write: bool,
    /// Idle cursors are closed after this long (mongod: 10 minutes).
    pub cursor_timeout: Duration,
    /// Maximum number of simultaneous connections; further ones are closed at accept.
    pub max_connections: usize,
    /// Runs `docplaneKillOpRules` (the control plane's native kill-op rule enforcement,
    /// [`crate::rules`]). Off, the node answers it 59 CommandNotFound, as any MongoDB does, and
    /// the control plane polls it instead. Default on.
    pub native_kill_op_rules: bool,
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
            preauth_max_message_size: DEFAULT_PREAUTH_MAX_MESSAGE_SIZE,
            unauthenticated_idle_timeout: Some(DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT),
            idle_timeout: None,
            sync_every_write: false,
            cursor_timeout: Duration::from_secs(600),
            max_connections: 1_000_000,
            native_kill_op_rules: true,
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
