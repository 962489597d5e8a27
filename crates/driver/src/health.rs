//! Node health: one probe per node (`buildInfo` + `hello` through its pool) and a periodic loop
//! that refreshes status, role and version in whatever store the caller provides.
//!
//! Invariant: a probe never fails; an unreachable or misbehaving node yields
//! [`NodeStatus::Abnormal`] with role `Unknown` and the reason, within the driver's timeouts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::NodeTarget;
use crate::info::NodeRole;
use crate::transport::{Driver, NodeTransport};

/// Health status as the vendor names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Reachable and answering.
    Normal,
    /// Unreachable, failing, or running an unsupported version.
    Abnormal,
}

impl NodeStatus {
    /// Vendor spelling: "normal" / "abnormal".
    pub fn vendor_name(&self) -> &'static str {
        match self {
            NodeStatus::Normal => "normal",
            NodeStatus::Abnormal => "abnormal",
        }
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// normal / abnormal.
    pub status: NodeStatus,
    /// Role reported by the node (`Unknown` when abnormal).
    pub role: NodeRole,
    /// Version string, when reachable.
    pub version: Option<String>,
    /// Why the node is abnormal.
    pub error: Option<String>,
    /// How long the probe took (the metrics' probe latency).
    pub elapsed: Duration,
}

/// Where the health loop reads the nodes to probe and writes what it found.
pub trait HealthStore: Send + Sync + 'static {
    /// The nodes to probe now.
    fn nodes(&self) -> impl std::future::Future<Output = Vec<NodeTarget>> + Send;
    /// Records one node's health.
    fn record(&self, node_id: &str, health: &NodeHealth) -> impl std::future::Future<Output = ()> + Send;
}

/// Nodes probed at once.
const PROBE_CONCURRENCY: usize = 8;

impl Driver {
    /// Probes one node.
    pub async fn probe(&self, target: &NodeTarget) -> NodeHealth {
        let started = std::time::Instant::now();
        let info = self.server_info(target).await;
        let elapsed = started.elapsed();
        match info {
            Ok(info) => match info.version.check_supported() {
                Ok(()) => NodeHealth {
                    status: NodeStatus::Normal,
                    role: info.role(),
                    version: Some(info.version_text),
                    error: None,
                    elapsed,
                },
                Err(e) => NodeHealth {
                    status: NodeStatus::Abnormal,
                    role: info.role(),
                    version: Some(info.version_text),
                    error: Some(e.to_string()),
                    elapsed,
                },
            },
            Err(e) => NodeHealth {
                status: NodeStatus::Abnormal,
                role: NodeRole::Unknown,
                version: None,
                error: Some(e.to_string()),
                elapsed,
            },
        }
    }
}

/// Probes every node of `store` once and records the results; returns how many were probed.
pub async fn refresh_once<S: HealthStore>(driver: &Driver, store: &S) -> usize {
    let nodes = store.nodes().await;
    let count = nodes.len();
    let results: Vec<(String, NodeHealth)> = futures::stream::iter(nodes)
        .map(|target| async move {
            let health = driver.probe(&target).await;
            (target.id, health)
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .collect()
        .await;
    for (id, health) in &results {
        store.record(id, health).await;
    }
    count
}

/// A running health loop; dropping it leaves the loop running, [`HealthLoop::stop`] ends it.
#[derive(Debug)]
pub struct HealthLoop {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl HealthLoop {
    /// Stops the loop and waits for the current round to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// Spawns a loop that refreshes every node's health now and then every `interval`.
pub fn spawn_health_loop<S: HealthStore>(driver: Driver, store: Arc<S>, interval: Duration) -> HealthLoop {
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let probed = refresh_once(&driver, store.as_ref()).await;
                    tracing::trace!(probed, "health round done");
                }
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        return;
                    }
                }
            }
        }
    });
    HealthLoop { stop, handle }
}
