//! The rule enforcer: every `interval` (default 1 s) it reads the nodes whose instances have
//! enabled kill-op rules (`MetaStore::enforced_nodes`), and for each node this replica holds the
//! lease of, runs one pass of the rules that apply to it (`docplane_sessions::rules::applies_to`
//! by `node_type`) through [`docplane_sessions::SessionService::enforce`]: one `$currentOp`, the
//! rails, a committed kill record naming the rule, killOp, verification, outcome; observing rules
//! record only.
//!
//! Leases (`enforcer_leases`, one row per node: owner, expiry): before each pass the replica
//! takes or renews the node's lease until `now + lease_ttl` (default 3 intervals, at least 3 s);
//! a lease held by another replica that has not expired skips the node, so with several `serve`
//! replicas on one PostgreSQL database each node's rules are enforced by exactly one replica at
//! a time, and when that replica dies another takes over once the lease expires. Expiry compares
//! the replicas' clocks (unix ms), which must agree to well within the lease. On a clean stop the
//! replica gives its leases up, so another takes over at the next interval. With SQLite there is
//! one replica and the lease is always its own.
//!
//! A node's pass runs as its own task: a slow node (a kill waiting for its verification) delays
//! only itself; a node whose previous pass is still running is skipped for that interval.
//!
//! Native enforcement: a node that runs docplane's `docplaneKillOpRules` (the embedded node)
//! gets its applicable rules installed and enforces them itself (admission and deadlines, no
//! polling); each pass then checks the installed generation (re-installing after a change or a
//! node restart) and drains the node's events into kill records
//! ([`docplane_sessions::SessionService::enforce_native`]). A node answering 59 CommandNotFound
//! (any MongoDB) is polled as above. When a natively enforced node has no enabled rule any more,
//! its passes go on with an empty rule set until the node holds it, so it stops enforcing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use docplane_sessions::rules::applies_to;
use docplane_sessions::{NativeMemory, NativeMode, NodeRef, ObserveMemory, RuleAction};
use docplane_store::{EnforcedNode, GroupType, InstanceMode, KillOpRule, now_millis};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::common::{ResolvedNode, check_state_and_version, target_of};
use crate::state::AppState;

/// The default period of the enforcer.
pub const DEFAULT_ENFORCE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest lease.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

/// How the enforcer runs.
#[derive(Debug, Clone)]
pub struct EnforcerConfig {
    /// How often every node with enabled rules is checked.
    pub interval: Duration,
    /// How long a lease lasts without renewal (another replica takes over after it).
    pub lease_ttl: Duration,
    /// This replica's name in the lease table (unique per process).
    pub owner: String,
}

impl EnforcerConfig {
    /// Every `interval`, leases of 3 intervals (at least [`MIN_LEASE_TTL`]), a fresh owner name
    /// (`<pid>-<random>`).
    pub fn every(interval: Duration) -> Self {
        EnforcerConfig {
            interval,
            lease_ttl: (interval * 3).max(MIN_LEASE_TTL),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        Self::every(DEFAULT_ENFORCE_INTERVAL)
    }
}

/// The running enforcer.
#[derive(Debug)]
pub struct Enforcer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Enforcer {
    /// Stops the loop: waits for the passes in flight, then gives the leases up.
    pub async fn stop(self) {
        if self.stop.send(true).is_err() {
            tracing::debug!("enforcer: the loop had already ended");
        }
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "enforcer: the loop panicked");
        }
    }
}

/// Starts the enforcer on `state`.
pub fn spawn_enforcer(state: &AppState, config: EnforcerConfig) -> Enforcer {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(state.clone(), config, rx));
    Enforcer { stop, task }
}

/// What the enforcer remembers of one node between passes.
#[derive(Debug, Clone, Default)]
struct NodeMemory {
    /// Observed (rule, operation) pairs, when polled.
    observe: ObserveMemory,
    /// Native enforcement's state.
    native: NativeMemory,
    /// A natively enforced node that holds the empty rule set (nothing left to clear).
    cleared: bool,
}

/// One node's slot between passes: its memory, or the pass holding it.
enum Slot {
    Idle(NodeMemory),
    Busy(JoinHandle<NodeMemory>),
}

async fn run(state: AppState, config: EnforcerConfig, mut stop: watch::Receiver<bool>) {
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut held: HashSet<String> = HashSet::new();
    // Natively enforced nodes as last seen, to clear their rules once none is enabled.
    let mut native: HashMap<String, EnforcedNode> = HashMap::new();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = i64::try_from(config.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let mut work = match state.store.enforced_nodes().await {
            Ok(w) => w,
            Err(e) => {
                state.metrics.store_error_of(crate::metrics::StoreErrorSource::Enforcer, &e);
                tracing::warn!(error = %e, "enforcer: cannot read the rules");
                continue;
            }
        };
        let listed: HashSet<String> = work.iter().map(|w| w.node.id.clone()).collect();
        // A natively enforced node without enabled rules: passes with none, until it holds none.
        native.retain(|id, _| {
            listed.contains(id) || !slots.get(id).is_some_and(|s| matches!(s, Slot::Idle(m) if m.cleared))
        });
        for (id, last) in &native {
            if !listed.contains(id) {
                work.push(EnforcedNode { rules: Vec::new(), ..last.clone() });
            }
        }
        let ids: HashSet<String> = work.iter().map(|w| w.node.id.clone()).collect();
        // Nodes without enabled rules any more: forget them, give their leases up.
        for gone in held.iter().filter(|id| !ids.contains(*id)).cloned().collect::<Vec<_>>() {
            release_lease(&state, &gone, &config.owner).await;
            held.remove(&gone);
        }
        slots.retain(|id, _| ids.contains(id));
        for w in work {
            let id = w.node.id.clone();
            let memory = match slots.remove(&id) {
                Some(Slot::Busy(h)) if !h.is_finished() => {
                    slots.insert(id, Slot::Busy(h));
                    continue;
                }
                Some(Slot::Busy(h)) => h.await.unwrap_or_default(),
                Some(Slot::Idle(m)) => m,
                None => NodeMemory::default(),
            };
            if matches!(memory.native.mode, NativeMode::Native) {
                native.insert(id.clone(), EnforcedNode { rules: Vec::new(), ..w.clone() });
            }
            if memory.cleared && w.rules.is_empty() {
                slots.insert(id, Slot::Idle(memory));
                continue;
            }
            match state.store.acquire_enforcer_lease(&id, &config.owner, now_millis(), ttl).await {
                Ok(true) => {
                    held.insert(id.clone());
                    let st = state.clone();
                    let owner = config.owner.clone();
                    slots.insert(id, Slot::Busy(tokio::spawn(pass(st, w, owner, memory))));
                }
                Ok(false) => {
                    held.remove(&id);
                    slots.insert(id, Slot::Idle(NodeMemory::default()));
                }
                Err(e) => {
                    state.metrics.store_error_of(crate::metrics::StoreErrorSource::Enforcer, &e);
                    tracing::warn!(node_id = %id, error = %e, "enforcer: lease not renewed; node skipped");
                    slots.insert(id, Slot::Idle(memory));
                }
            }
        }
    }
    for (_, slot) in slots {
        if let Slot::Busy(h) = slot
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "enforcer: a pass panicked");
        }
    }
    for id in held {
        release_lease(&state, &id, &config.owner).await;
    }
}

/// Gives a node's lease up; a failure is logged, and the lease then lapses at its expiry.
async fn release_lease(state: &AppState, node_id: &str, owner: &str) {
    if let Err(e) = state.store.release_enforcer_lease(node_id, owner).await {
        state.metrics.store_error_of(crate::metrics::StoreErrorSource::Enforcer, &e);
        tracing::warn!(node_id, error = %e, "enforcer: lease not released; it lapses at its expiry");
    }
}

/// The rules of `rules` that apply to a node of `group` in an instance of `mode`.
pub fn applicable(rules: &[KillOpRule], mode: InstanceMode, group: GroupType) -> Vec<KillOpRule> {
    rules.iter().filter(|r| applies_to(&r.node_type, mode, group)).cloned().collect()
}

/// One pass on one node; answers the node's memory for the next.
async fn pass(state: AppState, w: EnforcedNode, owner: String, mut memory: NodeMemory) -> NodeMemory {
    match pass_inner(&state, &w, &owner, &mut memory).await {
        Ok(actions) => {
            for a in actions {
                state.metrics.rule_action(&a.mode, &a.outcome);
                tracing::info!(rule_id = %a.rule_id, node_id = %w.node.id, mode = %a.mode, record_id = %a.record_id,
                    outcome = %a.outcome, sessions = ?a.session_ids, "kill-op rule applied");
            }
        }
        Err(e) => {
            state.metrics.enforcer_failure();
            tracing::warn!(node_id = %w.node.id, error = %e, "enforcer: pass failed");
        }
    }
    memory
}

async fn pass_inner(
    state: &AppState,
    w: &EnforcedNode,
    owner: &str,
    memory: &mut NodeMemory,
) -> Result<Vec<RuleAction>, String> {
    let group = match w.instance.mode {
        InstanceMode::Single => GroupType::Single,
        InstanceMode::ReplicaSet => GroupType::Replica,
        InstanceMode::Sharding => {
            let groups = state.store.list_instance_groups(&w.instance.id).await.map_err(|e| e.to_string())?;
            match groups.iter().find(|g| g.id == w.node.group_id) {
                Some(g) => g.group_type,
                None => return Ok(Vec::new()),
            }
        }
    };
    let rules = applicable(&w.rules, w.instance.mode, group);
    // A natively enforced node is told when no rule applies any more.
    memory.cleared = false;
    if rules.is_empty() && !matches!(memory.native.mode, NativeMode::Native) {
        memory.cleared = true;
        return Ok(Vec::new());
    }
    let target = target_of(state, &w.node).await.map_err(|e| e.to_string())?;
    let resolved = ResolvedNode { node: w.node.clone(), instance: w.instance.clone(), target };
    if let Err(e) = check_state_and_version(&resolved) {
        tracing::debug!(node_id = %w.node.id, error = %e, "enforcer: node skipped");
        return Ok(Vec::new());
    }
    let settings = state
        .sessions
        .settings(&resolved.instance.project_id, &resolved.instance.id)
        .await
        .map_err(|e| e.to_string())?;
    let node =
        NodeRef { project_id: &resolved.instance.project_id, target: &resolved.target, settings: &settings };
    if memory.native.try_native() {
        match state.sessions.enforce_native(node, &rules, owner, &mut memory.native).await {
            Ok(Some(actions)) => {
                memory.cleared = rules.is_empty();
                return Ok(actions);
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if rules.is_empty() {
        memory.cleared = true;
        return Ok(Vec::new());
    }
    state.sessions.enforce(node, &rules, owner, &mut memory.observe).await.map_err(|e| e.to_string())
}
