//! Kill records: what every kill leaves behind, committed before anything is killed.
//!
//! A kill record is two entries of the project's kill chain (`docplane-store`'s `kill_log`): the
//! immutable **intent** (time, request id, who asked, source address, project, instance, node,
//! and a snapshot of each target), committed before the first killOp, and the **outcome**
//! (`killed`, `still_running`, `failed`, `unknown`, `refused`, with a per-id detail), appended
//! when it is known. Both are chained (SHA-256 over the entry and the previous entry's hash), so
//! an outcome written later never edits a chained entry.
//!
//! Invariant: nothing in a record holds a secret. Target snapshots carry redacted commands
//! (and placeholders for every literal when the instance's privacy setting is on); the actor is
//! named by user and access key id, never by a credential.

use docplane_store::{KillLogEntry, MetaStore, NewKillEntry, StoreError, kill_entry_kind, now_millis};
use serde_json::{Value, json};

use crate::kill::{KillReport, KillStatus};
use crate::record::KillTarget;

/// Most ids of a refused request kept in its record.
pub const MAX_RECORDED_IDS: usize = 1000;

/// Who asked for a kill, as a record names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The request's id (`X-Request-Id`).
    pub request_id: String,
    /// The IAM user's id.
    pub user_id: String,
    /// The IAM user's name (the record's `principal`).
    pub user_name: String,
    /// The access key id when the request was signed with AK/SK, else empty.
    pub access_key: String,
    /// The caller's address, `ip:port`, or empty when unknown.
    pub source: String,
}

/// Where a kill happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillScope {
    /// The project whose chain the record joins.
    pub project_id: String,
    /// The node's instance (empty when the node could not be resolved, for refusals).
    pub instance_id: String,
    /// The node.
    pub node_id: String,
}

/// One kill record in the making: its id and what its entries share.
#[derive(Debug, Clone)]
pub struct KillRecorder {
    /// The record's id.
    pub record_id: String,
    scope: KillScope,
    actor: Actor,
}

impl KillRecorder {
    /// A fresh record id for a kill by `actor` in `scope`.
    pub fn new(scope: KillScope, actor: Actor) -> Self {
        KillRecorder { record_id: uuid::Uuid::new_v4().simple().to_string(), scope, actor }
    }

    /// A record with a chosen id (a node's rule event: derived from the event, so recording it
    /// twice is refused by the store's one intent per record id).
    pub fn with_id(record_id: String, scope: KillScope, actor: Actor) -> Self {
        KillRecorder { record_id, scope, actor }
    }

    /// The scope.
    pub fn scope(&self) -> &KillScope {
        &self.scope
    }

    fn entry(&self, kind: &str, outcome: &str, body: Value) -> NewKillEntry {
        NewKillEntry {
            project_id: self.scope.project_id.clone(),
            record_id: self.record_id.clone(),
            kind: kind.into(),
            at: now_millis(),
            node_id: self.scope.node_id.clone(),
            principal: self.actor.user_name.clone(),
            access_key: self.actor.access_key.clone(),
            outcome: outcome.into(),
            body: body.to_string(),
        }
    }

    /// Commits the intent: the ids, each target's snapshot, and `extra` fields (e.g. a selector
    /// kill's filter and the sessions it skipped). Nothing may be killed unless this succeeded.
    pub async fn commit_intent(
        &self,
        store: &dyn MetaStore,
        session_ids: &[String],
        targets: &[KillTarget],
        extra: Value,
    ) -> Result<KillLogEntry, StoreError> {
        let mut body = json!({
            "request_id": self.actor.request_id,
            "user_id": self.actor.user_id,
            "source": self.actor.source,
            "instance_id": self.scope.instance_id,
            "session_ids": session_ids,
            "targets": targets,
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        store.append_kill_entry(&self.entry(kill_entry_kind::INTENT, "", body)).await
    }

    /// Appends the outcome. A failure is logged, not returned: the intent is committed, and the
    /// sweeper resolves it as `unknown`.
    pub async fn commit_outcome(&self, store: &dyn MetaStore, outcome: &str, detail: Value) {
        let e = self.entry(kill_entry_kind::OUTCOME, outcome, detail);
        if let Err(err) = store.append_kill_entry(&e).await {
            tracing::error!(error = %err, record_id = %self.record_id, outcome, "kill outcome not recorded");
        }
    }

    /// Records a refused request (intent with the ids as asked, each cut at 128 characters, and
    /// outcome `refused` with the error's code and public message). A store failure is logged:
    /// the refusal stands either way, since nothing was killed.
    pub async fn record_refusal(&self, store: &dyn MetaStore, raw_ids: &[String], code: &str, message: &str) {
        let ids: Vec<String> =
            raw_ids.iter().take(MAX_RECORDED_IDS).map(|s| s.chars().take(128).collect()).collect();
        match self.commit_intent(store, &ids, &[], Value::Null).await {
            Ok(_) => {
                self.commit_outcome(store, "refused", json!({"error_code": code, "error": message})).await;
            }
            Err(err) => {
                tracing::error!(error = %err, record_id = %self.record_id, "refused kill not recorded")
            }
        }
    }
}

/// An outcome entry for a record whose recorder is gone (the sweeper's crash resolution).
pub fn orphan_outcome_entry(intent: &KillLogEntry, outcome: &str, detail: &Value) -> NewKillEntry {
    NewKillEntry {
        project_id: intent.project_id.clone(),
        record_id: intent.record_id.clone(),
        kind: kill_entry_kind::OUTCOME.into(),
        at: now_millis(),
        node_id: intent.node_id.clone(),
        principal: intent.principal.clone(),
        access_key: intent.access_key.clone(),
        outcome: outcome.to_owned(),
        body: detail.to_string(),
    }
}

/// The record-level outcome of a report: `failed` if any killOp failed, else `unknown` if any
/// could not be verified, else `still_running` if any was still listed at the deadline, else
/// `killed` (also for an empty report: nothing was left running).
pub fn outcome_of(report: &KillReport) -> &'static str {
    let any = |f: fn(&KillStatus) -> bool| report.outcomes.iter().any(|o| f(&o.status));
    if any(|s| matches!(s, KillStatus::Failed { .. })) {
        "failed"
    } else if any(|s| *s == KillStatus::Unknown) {
        "unknown"
    } else if any(|s| *s == KillStatus::StillRunning) {
        "still_running"
    } else {
        "killed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kill::KillOutcome;

    #[test]
    fn record_outcome_is_the_worst_per_id_status() {
        let report = |s: Vec<KillStatus>| KillReport {
            outcomes: s
                .into_iter()
                .enumerate()
                .map(|(i, status)| KillOutcome { id: i.to_string(), status })
                .collect(),
        };
        assert_eq!(outcome_of(&report(vec![])), "killed");
        assert_eq!(outcome_of(&report(vec![KillStatus::Killed, KillStatus::Killed])), "killed");
        assert_eq!(outcome_of(&report(vec![KillStatus::Killed, KillStatus::StillRunning])), "still_running");
        assert_eq!(outcome_of(&report(vec![KillStatus::StillRunning, KillStatus::Unknown])), "unknown");
        let failed = KillStatus::Failed { code: 13, message: "unauthorized".into() };
        assert_eq!(outcome_of(&report(vec![KillStatus::Unknown, failed])), "failed");
    }
}
