//! Process-wide node state shared by all connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use docplane_engine::Engine;
use parking_lot::Mutex;

use crate::auth::UserStore;
use crate::config::NodeConfig;
use crate::conn::ConnInfo;
use crate::cursors::CursorStore;
use crate::ops::OpRegistry;
use crate::sessions::SessionRegistry;

/// serverStatus.opcounters.
#[derive(Debug, Default)]
pub struct OpCounters {
    pub insert: AtomicU64,
    pub query: AtomicU64,
    pub update: AtomicU64,
    pub delete: AtomicU64,
    pub getmore: AtomicU64,
    pub command: AtomicU64,
}

impl OpCounters {
    /// Adds `n` to the counter named like a currentOp `op` field.
    pub fn bump(&self, op: &str, n: u64) {
        let c = match op {
            "insert" => &self.insert,
            "query" => &self.query,
            "update" => &self.update,
            "remove" => &self.delete,
            "getmore" => &self.getmore,
            _ => &self.command,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything a command handler may touch.
#[derive(Debug)]
pub struct NodeState {
    pub config: NodeConfig,
    pub engine: Engine,
    pub ops: Arc<OpRegistry>,
    pub sessions: SessionRegistry,
    pub cursors: CursorStore,
    pub users: UserStore,
    pub conns: Mutex<BTreeMap<i64, Arc<ConnInfo>>>,
    pub next_conn_id: AtomicI64,
    pub total_created: AtomicU64,
    pub opcounters: OpCounters,
    pub started: Instant,
    pub started_wall: bson::DateTime,
    pub local_addr: SocketAddr,
    /// `host:port` as currentOp and serverStatus show it.
    pub host: String,
    pub shutting_down: AtomicBool,
    pub startup_warnings: Vec<String>,
    /// Random id of this process (serverStatus.process / topologyVersion).
    pub process_id: bson::oid::ObjectId,
    /// `configureFailPoint`'s fail points (test commands only).
    pub failpoints: crate::failpoint::FailPoints,
    /// Counts inserts into capped collections (the engine's [`Engine::on_capped_insert`]);
    /// awaitData getMores wait on it for new data.
    pub capped_inserts: tokio::sync::watch::Sender<u64>,
}

impl NodeState {
    /// The state of a node serving `engine` and `users` on `local_addr`.
    pub fn new(
        config: NodeConfig,
        engine: Engine,
        users: UserStore,
        local_addr: SocketAddr,
        startup_warnings: Vec<String>,
    ) -> NodeState {
        let capped_inserts = tokio::sync::watch::Sender::new(0u64);
        let tx = capped_inserts.clone();
        engine.on_capped_insert(Arc::new(move |_, _| tx.send_modify(|n| *n = n.wrapping_add(1))));
        NodeState {
            capped_inserts,
            host: format!("{}:{}", hostname(), local_addr.port()),
            config,
            engine,
            ops: Arc::new(OpRegistry::default()),
            sessions: Default::default(),
            cursors: Default::default(),
            users,
            conns: Default::default(),
            next_conn_id: AtomicI64::new(1),
            total_created: AtomicU64::new(0),
            opcounters: OpCounters::default(),
            started: Instant::now(),
            started_wall: bson::DateTime::now(),
            local_addr,
            shutting_down: AtomicBool::new(false),
            startup_warnings,
            process_id: bson::oid::ObjectId::new(),
            failpoints: Default::default(),
        }
    }

    /// A node state with an in-memory engine and user store and no listener: commands are run
    /// by calling [`crate::cmd::dispatch`] directly (in-process tests and fuzzing). `config`'s
    /// `data_dir` and `root_user` are not used.
    pub fn in_memory(config: NodeConfig) -> Arc<NodeState> {
        let addr = config.bind;
        Arc::new(NodeState::new(config, Engine::in_memory(), UserStore::in_memory(), addr, Vec::new()))
    }

    /// Whether authorization is enforced.
    pub fn auth_enabled(&self) -> bool {
        self.config.auth
    }
}

/// The machine's host name (from the kernel), or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
