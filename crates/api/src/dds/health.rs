//! The health loop over the metadata store: every registered node is probed through the driver
//! and its status (normal/abnormal), role and version written back; an instance is `normal` when
//! all its nodes are.
//!
//! Invariant: an abnormal probe never overwrites a node's last known role (an unreachable mongos
//! stays `master`), so the session routes keep choosing the right id format for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docplane_driver::{HealthLoop, HealthStore, NodeHealth, NodeStatus, NodeTarget};
use docplane_store::NodeUpdate;

use super::common::target_of;
use crate::state::AppState;

/// [`HealthStore`] over the API's metadata store.
pub struct StoreHealth {
    state: AppState,
    /// node id -> instance id, from the last `nodes()` round.
    instances: Mutex<HashMap<String, String>>,
}

impl StoreHealth {
    /// An adapter over `state`'s store.
    pub fn new(state: AppState) -> Self {
        Self { state, instances: Mutex::new(HashMap::new()) }
    }

    async fn all_nodes(&self) -> Result<Vec<docplane_store::Node>, crate::ApiError> {
        let store = &self.state.store;
        let mut out = Vec::new();
        for domain in store.list_domains().await? {
            for project in store.list_projects(&domain.id, None).await? {
                let mut offset = 0;
                loop {
                    let filter = docplane_store::InstanceFilter {
                        project_id: project.id.clone(),
                        offset,
                        limit: 100,
                        ..Default::default()
                    };
                    let (page, total) = store.list_instances(&filter).await?;
                    for i in &page {
                        out.extend(store.list_nodes(&i.id).await?);
                    }
                    offset += page.len() as i64;
                    if page.is_empty() || offset >= total {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl HealthStore for StoreHealth {
    async fn nodes(&self) -> Vec<NodeTarget> {
        let nodes = match self.all_nodes().await {
            Ok(n) => n,
            Err(e) => {
                let kind =
                    if matches!(e, crate::ApiError::StoreUnavailable(_)) { "unavailable" } else { "other" };
                self.state.metrics.store_error(crate::metrics::StoreErrorSource::Health, kind);
                tracing::warn!(error = %e, "health loop cannot list nodes");
                return Vec::new();
            }
        };
        let mut targets = Vec::with_capacity(nodes.len());
        let mut index = HashMap::new();
        for n in &nodes {
            match target_of(&self.state, n).await {
                Ok(t) => {
                    index.insert(n.id.clone(), n.instance_id.clone());
                    targets.push(t);
                }
                Err(e) => tracing::warn!(node = %n.id, error = %e, "health loop skips node"),
            }
        }
        self.state.metrics.retain_nodes(&|id| index.contains_key(id));
        if let Ok(mut i) = self.instances.lock() {
            *i = index;
        }
        targets
    }

    async fn record(&self, node_id: &str, health: &NodeHealth) {
        self.state.metrics.probe(node_id, health.status, health.elapsed);
        let store = &self.state.store;
        let normal = health.status == NodeStatus::Normal;
        let update = NodeUpdate {
            status: Some(health.status.vendor_name().to_owned()),
            role: normal.then(|| health.role.vendor_name().to_owned()),
            version: health.version.clone(),
            address: None,
        };
        if let Err(e) = store.update_node(node_id, &update).await {
            self.state.metrics.store_error_of(crate::metrics::StoreErrorSource::Health, &e);
            tracing::warn!(node = %node_id, error = %e, "health update failed");
            return;
        }
        let instance_id = self.instances.lock().ok().and_then(|i| i.get(node_id).cloned());
        let Some(instance_id) = instance_id else { return };
        if let Ok(nodes) = store.list_nodes(&instance_id).await {
            let status = if nodes.iter().all(|n| n.status == "normal") { "normal" } else { "abnormal" };
            let _ = store.update_instance_status(&instance_id, status).await;
            if let Some(v) = health.version.as_deref().filter(|_| normal) {
                let _ = store.update_instance_version(&instance_id, v).await;
            }
        }
    }
}

/// Starts the health loop for every registered node (the binary calls this once).
pub fn spawn_health_loop(state: &AppState, interval: Duration) -> HealthLoop {
    docplane_driver::spawn_health_loop(
        state.driver.clone(),
        Arc::new(StoreHealth::new(state.clone())),
        interval,
    )
}
