//! [`AppState`]: what every handler can reach.

use std::sync::Arc;

use axum::http::Extensions;
use docplane_iam::Iam;
use docplane_store::MetaStore;

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The metadata store (instances, nodes, audit, IAM tables).
    pub store: Arc<dyn MetaStore>,
    /// Identity: tokens, signatures, policies, sealing of secrets (`iam.seal` / `iam.open_sealed`).
    pub iam: Arc<Iam>,
    /// Typed extension slot for services other crates plug in (e.g. the node driver):
    /// `ApiConfig::extensions.insert(my_service)`, then `state.ext::<MyService>()` in a handler.
    pub extensions: Arc<Extensions>,
    /// Maximum request body in bytes.
    pub body_limit: usize,
}

impl AppState {
    /// The extension of type `T`, if the binary inserted one.
    pub fn ext<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.get::<T>()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
