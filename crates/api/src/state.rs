//! [`AppState`]: what every handler can reach.

use std::sync::Arc;

use docplane_driver::Driver;
use docplane_iam::Iam;
use docplane_sessions::SessionService;
use docplane_store::MetaStore;

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The metadata store (instances, nodes, audit, IAM tables).
    pub store: Arc<dyn MetaStore>,
    /// Identity: tokens, signatures, policies, sealing of secrets (`iam.seal` / `iam.open_sealed`).
    pub iam: Arc<Iam>,
    /// The node driver: pooled connections to every registered node (cheap to clone).
    pub driver: Driver,
    /// The session service over `driver` and `store`: every list and kill goes through it.
    pub sessions: SessionService,
    /// Maximum request body in bytes.
    pub body_limit: usize,
    /// The Prometheus registry (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The single-flight of readiness checks (`GET /ready`).
    pub ready: Arc<crate::health::ReadyGate>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
