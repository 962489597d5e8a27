//! Starting and stopping a node: the listener, the accept loop, the reaper, and orderly shutdown.
//!
//! Shutdown order: stop accepting; tell idle connections to close; interrupt every op with 11600
//! InterruptedAtShutdown; wait (bounded) for connection tasks to write their last replies; flush the
//! engine. The whole sequence is bounded to 5 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use docplane_engine::{Engine, EngineOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::scram::Mechanism;
use crate::auth::{RoleRef, User, UserName, UserStore};
use crate::config::{NodeConfig, NodeError};
use crate::conn::ConnInfo;
use crate::ops::KILL_SHUTDOWN;
use crate::state::NodeState;

/// Entry point.
#[derive(Debug)]
pub struct Node;

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    addr: SocketAddr,
    state: Arc<NodeState>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
}

const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);

impl Node {
    /// Opens the engine, creates the root user if configured and missing, binds and starts serving.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let (engine, users) = match &config.data_dir {
            Some(dir) => {
                // Owner-only (0700), whatever its prior mode; the engine makes its files 0600.
                docplane_engine::files::private_dir(dir)?;
                let d = dir.clone();
                let opts = EngineOptions { sync_every_write: config.sync_every_write, ..Default::default() };
                let engine = tokio::task::spawn_blocking(move || Engine::open(&d, opts))
                    .await
                    .map_err(|e| NodeError::Io(std::io::Error::other(e.to_string())))??;
                let users = UserStore::open(dir)
                    .map_err(|detail| NodeError::Users { path: dir.join("users.bson"), detail })?;
                (engine, users)
            }
            None => (Engine::in_memory(), UserStore::in_memory()),
        };
        if let Some((user, password)) = &config.root_user {
            let name = UserName::new(user.clone(), "admin");
            if users.get(&name).is_none() {
                let roles = vec![RoleRef { role: "root".into(), db: "admin".into() }];
                let u = User::new(name, password, roles, &[Mechanism::Sha1, Mechanism::Sha256]);
                users.create(u)?;
                tracing::info!(user = %user, "created root user");
            }
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| NodeError::Bind { addr: config.bind, source })?;
        let addr = listener.local_addr()?;
        let mut startup_warnings = Vec::new();
        if !config.auth {
            startup_warnings.push(
                "Access control is not enabled for the database. Read and write access to data and configuration is unrestricted"
                    .to_owned(),
            );
        }
        if config.auth && users.is_empty() {
            tracing::warn!(
                "access control is enabled but no user exists: nobody can authenticate until a first user \
                 is created in the admin database from a localhost connection (localhost exception) or the \
                 node is restarted with a root user"
            );
            startup_warnings.push(
                "Access control is enabled but no user exists; create the first user in the admin database from localhost, or start with --root-user"
                    .to_owned(),
            );
        }
        let state = Arc::new(NodeState::new(config, engine, users, addr, startup_warnings));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(reaper(state.clone(), shutdown_rx.clone()));
        tokio::spawn(crate::ttl::monitor(state.clone(), shutdown_rx.clone()));
        let accept_task = tokio::spawn(accept_loop(state.clone(), listener, shutdown_rx));
        tracing::info!(%addr, auth = state.config.auth, test_commands = state.config.enable_test_commands, "node listening");
        Ok(NodeHandle { addr, state, shutdown_tx, accept_task })
    }
}

impl NodeHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `mongodb://` URI for this node, with credentials when given.
    pub fn uri(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((u, p)) => format!("mongodb://{u}:{p}@{}/?authSource=admin", self.addr),
            None => format!("mongodb://{}/", self.addr),
        }
    }

    /// The engine (for embedding callers and tests).
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Number of operations in flight.
    pub fn ops_in_flight(&self) -> usize {
        self.state.ops.len()
    }

    /// Stops accepting, interrupts running ops with 11600, closes connections, flushes the engine.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let started = Instant::now();
        self.state.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.shutdown_tx.send(true);
        let killed = self.state.ops.kill_where(KILL_SHUTDOWN, |_| true);
        tracing::info!(ops_interrupted = killed, "node shutting down");
        // Ops registered after the first sweep (a command that raced with the flag) are killed too.
        let state = self.state.clone();
        let sweeper = tokio::spawn(async move {
            loop {
                state.ops.kill_where(KILL_SHUTDOWN, |op| !op.state.killed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let joined = tokio::time::timeout(SHUTDOWN_BUDGET, self.accept_task).await;
        sweeper.abort();
        if joined.is_err() {
            tracing::warn!("connections did not close within the shutdown budget");
        }
        let engine = self.state.engine.clone();
        let remaining = Duration::from_secs(5).saturating_sub(started.elapsed());
        let flush =
            tokio::time::timeout(remaining, tokio::task::spawn_blocking(move || engine.flush())).await;
        match flush {
            Ok(Ok(Ok(()))) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "node stopped");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(NodeError::Storage(e)),
            Ok(Err(e)) => Err(NodeError::Shutdown(format!("flush task failed: {e}"))),
            Err(_) => Err(NodeError::Shutdown("engine flush timed out".into())),
        }
    }
}

async fn accept_loop(state: Arc<NodeState>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if state.conns.lock().len() >= state.config.max_connections {
                        tracing::warn!(%peer, "connection refused: too many open connections");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    state.total_created.fetch_add(1, Ordering::Relaxed);
                    let info = Arc::new(ConnInfo::new(id, peer));
                    state.conns.lock().insert(id, info.clone());
                    tracing::info!(conn = id, %peer, "connection accepted");
                    let st = state.clone();
                    let rx = shutdown.clone();
                    tasks.spawn(async move {
                        let reason = crate::conn::serve(st.clone(), stream, info, rx).await;
                        st.conns.lock().remove(&id);
                        match &reason {
                            crate::conn::CloseReason::Protocol(_) | crate::conn::CloseReason::Io(_) => {
                                tracing::warn!(conn = id, %peer, %reason, "connection closed")
                            }
                            _ => tracing::info!(conn = id, %peer, %reason, "connection closed"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn reaper(state: Arc<NodeState>, mut shutdown: watch::Receiver<bool>) {
    let period = (state.config.cursor_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let n = state.cursors.reap(state.config.cursor_timeout);
        if n > 0 {
            tracing::info!(cursors = n, "closed idle cursors");
        }
        let dead = state.sessions.reap(crate::sessions::SESSION_TIMEOUT);
        if !dead.is_empty() {
            state.cursors.kill_sessions(&dead);
        }
    }
}
