//! Kills in steps, so the caller can record a kill between deciding and doing it:
//! [`prepare_kill`] (parse, read `$currentOp` for just those opids, refuse all-or-nothing,
//! snapshot each target), [`send_kills`] (killOp), [`verify_report`] ([`verify_gone`] polls
//! `$currentOp` for just the killed opids until they are gone or the verify deadline passes).
//!
//! Invariants:
//! - ids are validated as a whole first ([`parse_session_ids`]): 1..=1000 ids, duplicates
//!   collapse; every id is then checked against the node's current operations and if any is
//!   unknown or inactive the whole request is refused naming them and **nothing is killed**;
//! - an id still listed at the verification deadline is `StillRunning`; if the node cannot be
//!   read after killOp every accepted id is `Unknown`, never `StillRunning`.

use std::time::Instant;

use docplane_driver::{DriverError, NodeTarget, NodeTransport, ops};
use futures::StreamExt;

use crate::error::{Result, SessionError};
use crate::ids::{SessionId, opid_predicate, parse_session_ids};
use crate::record::{KillTarget, SessionRecord, kill_target, operation_text};
use crate::select::{SessionPage, SessionQuery, check_killable, select_indices};

fn is_connectivity(e: &SessionError) -> bool {
    matches!(e, SessionError::Node(d) if d.is_connectivity())
}

/// `killOp` for one id, refused for an id of the other node kind or one without an opid.
pub async fn kill_op(t: &dyn NodeTransport, target: &NodeTarget, id: &SessionId) -> Result<()> {
    let op = match id.op_value() {
        Some(op) if id.kind() == Some(target.kind) => op,
        Some(_) => return Err(SessionError::InvalidSessionIds(vec![id.to_string()])),
        None => return Err(SessionError::InactiveSessions(vec![id.to_string()])),
    };
    Ok(ops::kill_op(t, target, op).await?)
}

/// Every current operation, idle connection and idle session of a node, mapped.
pub async fn list_ops(t: &dyn NodeTransport, target: &NodeTarget) -> Result<Vec<SessionRecord>> {
    let entries = ops::current_op_entries(t, target, None).await?;
    Ok(entries.iter().filter_map(SessionRecord::from_current_op).collect())
}

/// The current operations among `ids` (a server-side `opid` filter keeps this cheap on nodes
/// with many operations).
pub async fn ops_matching(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    ids: &[SessionId],
) -> Result<Vec<SessionRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if ids.iter().any(|id| matches!(id, SessionId::Idle(_))) {
        // Idle entries have no opid to filter on: read everything, keep the ids asked for.
        let wanted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let all = list_ops(t, target).await?;
        return Ok(all.into_iter().filter(|r| wanted.contains(&r.id)).collect());
    }
    let entries = ops::current_op_entries(t, target, Some(opid_predicate(ids))).await?;
    Ok(entries.iter().filter_map(SessionRecord::from_current_op).filter(|r| r.has_opid).collect())
}

/// What happened to one id of a kill request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KillStatus {
    /// killOp accepted and the operation is gone from `currentOp`.
    Killed,
    /// killOp accepted but the operation was still listed at the verification deadline (it
    /// stays marked `killPending` on the node).
    StillRunning,
    /// killOp accepted but the node could not be read afterwards: nothing is known.
    Unknown,
    /// killOp itself failed.
    Failed {
        /// Error code (0 for non-server failures).
        code: i32,
        /// Message.
        message: String,
    },
}

/// Per-id outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KillOutcome {
    /// The canonical id.
    pub id: String,
    /// Outcome.
    #[serde(flatten)]
    pub status: KillStatus,
}

/// The outcome of a kill request, in request order (duplicates collapsed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KillReport {
    /// One entry per distinct id.
    pub outcomes: Vec<KillOutcome>,
}

impl KillReport {
    /// True when every killOp was accepted (whether or not the op had ended yet).
    pub fn all_issued(&self) -> bool {
        self.outcomes.iter().all(|o| !matches!(o.status, KillStatus::Failed { .. }))
    }

    /// Ids whose killOp failed.
    pub fn failed_ids(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, KillStatus::Failed { .. }))
            .map(|o| o.id.clone())
            .collect()
    }
}

/// Concurrent killOps per request.
const KILL_CONCURRENCY: usize = 16;

/// Lists a node's sessions per `query`.
pub async fn list(t: &dyn NodeTransport, target: &NodeTarget, query: &SessionQuery) -> Result<SessionPage> {
    let entries = ops::current_op_entries(t, target, None).await?;
    let (records, sources): (Vec<SessionRecord>, Vec<usize>) =
        entries.iter().enumerate().filter_map(|(i, e)| SessionRecord::summary(e).map(|r| (r, i))).unzip();
    let (total, page) = select_indices(&records, query);
    let sessions = page
        .into_iter()
        .map(|k| {
            let mut r = records[k].clone();
            r.operation = operation_text(&entries[sources[k]]);
            r
        })
        .collect();
    Ok(SessionPage { total, sessions })
}

/// A kill that passed validation and the all-or-nothing check: the ids to kill, with the
/// snapshot of each, and nothing sent to the node yet.
#[derive(Debug, Clone)]
pub struct PreparedKill {
    /// Distinct ids, in request order.
    pub ids: Vec<SessionId>,
    /// One snapshot per id, same order.
    pub targets: Vec<KillTarget>,
}

/// Validates and checks a kill without killing anything: parses the ids, reads the node's
/// current operations for them, refuses unknown or inactive ones, and snapshots the rest.
pub async fn prepare_kill(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    raw_ids: &[String],
) -> Result<PreparedKill> {
    let ids = parse_session_ids(raw_ids, target.kind)?;
    let entries = if ids.iter().any(|id| matches!(id, SessionId::Idle(_))) {
        // Idle entries have no opid to filter on; they are refused below anyway.
        ops::current_op_entries(t, target, None).await?
    } else {
        ops::current_op_entries(t, target, Some(opid_predicate(&ids))).await?
    };
    let current: Vec<SessionRecord> = entries.iter().filter_map(SessionRecord::summary).collect();
    check_killable(&ids, &current)?;
    let targets = ids
        .iter()
        .map(|id| {
            let text = id.to_string();
            let entry = entries.iter().zip(&current).find(|(_, r)| r.id == text);
            match entry {
                Some((e, r)) => kill_target(&text, e, r),
                // Unreachable after check_killable; an empty snapshot rather than a panic.
                None => KillTarget {
                    id: text,
                    op_type: String::new(),
                    namespace: String::new(),
                    client: String::new(),
                    user: None,
                    app_name: None,
                    running_us: 0,
                    plan_summary: String::new(),
                    command: "{}".into(),
                },
            }
        })
        .collect();
    Ok(PreparedKill { ids, targets })
}

/// Sends killOp for every prepared id; returns each id with its killOp result. A node that
/// vanished (every killOp failed on connectivity) is reported as unreachable.
pub async fn send_kills(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    ids: &[SessionId],
) -> Result<Vec<(SessionId, Result<()>)>> {
    let results: Vec<(SessionId, Result<()>)> = futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let r = kill_op(t, target, &id).await;
            (id, r)
        })
        .buffered(KILL_CONCURRENCY)
        .collect()
        .await;
    if let Some(err) = results.iter().find_map(|(_, r)| r.as_ref().err().filter(|e| is_connectivity(e)))
        && results.iter().all(|(_, r)| r.is_err())
    {
        return Err(err.clone());
    }
    Ok(results)
}

/// Validates, checks and issues the kill without verifying: returns the parsed ids with the
/// killOp result of each. Refuses (killing nothing) on malformed, unknown or inactive ids.
pub async fn issue_kill(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    raw_ids: &[String],
) -> Result<Vec<(SessionId, Result<()>)>> {
    let prepared = prepare_kill(t, target, raw_ids).await?;
    send_kills(t, target, &prepared.ids).await
}

/// Polls `currentOp` for just `ids` until none is listed or the verify deadline
/// ([`docplane_driver::DriverConfig::kill_verify_timeout`]) passes; returns the ids still listed at the end.
///
/// The first poll is immediate (a prompt operation is often gone already); after that the pause
/// doubles from 1 ms up to [`docplane_driver::DriverConfig::kill_verify_interval`], so an operation that ends
/// is seen at most one round trip plus a short pause later. The last poll is at the deadline.
pub async fn verify_gone(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    ids: &[SessionId],
) -> Result<Vec<String>> {
    let config = t.config();
    let deadline = Instant::now() + config.kill_verify_timeout;
    let mut pending: Vec<SessionId> = ids.to_vec();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let listed = ops_matching(t, target, &pending).await?;
        pending.retain(|id| {
            let text = id.to_string();
            listed.iter().any(|r| r.id == text)
        });
        let now = Instant::now();
        if pending.is_empty() || now >= deadline {
            return Ok(pending.iter().map(ToString::to_string).collect());
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(config.kill_verify_interval.max(std::time::Duration::from_millis(1)));
    }
}

/// Verifies the ids whose killOp was accepted and builds the per-id report (request order).
pub async fn verify_report(
    t: &dyn NodeTransport,
    target: &NodeTarget,
    issued: Vec<(SessionId, Result<()>)>,
) -> KillReport {
    let accepted: Vec<SessionId> =
        issued.iter().filter(|(_, r)| r.is_ok()).map(|(id, _)| id.clone()).collect();
    // `None`: the node could not be read after killOp, so nothing is known about any id.
    let still = match verify_gone(t, target, &accepted).await {
        Ok(still) => Some(still),
        Err(e) => {
            tracing::warn!(node = %target.id, error = %e, "kill verification could not read the node");
            None
        }
    };
    let outcomes = issued
        .into_iter()
        .map(|(id, r)| {
            let id = id.to_string();
            let status = match r {
                Err(e) => {
                    let (code, message) = match e {
                        SessionError::Node(DriverError::CommandFailed { code, message }) => (code, message),
                        other => (0, other.to_string()),
                    };
                    KillStatus::Failed { code, message }
                }
                Ok(()) => match &still {
                    None => KillStatus::Unknown,
                    Some(still) if still.contains(&id) => KillStatus::StillRunning,
                    Some(_) => KillStatus::Killed,
                },
            };
            KillOutcome { id, status }
        })
        .collect();
    KillReport { outcomes }
}

/// Kills sessions: validate, check (all-or-nothing refusal), killOp each, verify each.
pub async fn kill(t: &dyn NodeTransport, target: &NodeTarget, raw_ids: &[String]) -> Result<KillReport> {
    let issued = issue_kill(t, target, raw_ids).await?;
    Ok(verify_report(t, target, issued).await)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn report_helpers() {
        let r = KillReport {
            outcomes: vec![
                KillOutcome { id: "1".into(), status: KillStatus::Killed },
                KillOutcome {
                    id: "2".into(),
                    status: KillStatus::Failed { code: 13, message: "unauthorized".into() },
                },
            ],
        };
        assert!(!r.all_issued());
        assert_eq!(r.failed_ids(), vec!["2".to_owned()]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outcomes"][0]["status"], "killed");
        assert_eq!(json["outcomes"][1]["code"], 13);
    }
}
