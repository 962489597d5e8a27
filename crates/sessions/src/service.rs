//! The session service: the one place every caller (the vendor routes, the selector route, the
//! CLI through them, the rule enforcer) lists and kills through.
//!
//! Every kill path runs the same sequence ([`SessionService::kill_ids`],
//! [`SessionService::kill_matching`]):
//! 1. read the node's current operations for the targets (one `$currentOp`);
//! 2. refuse or skip what may not be killed: unknown or inactive ids (all-or-nothing), and the
//!    safety rails ([`crate::rails`]): the server's own work, docplane's own operations, cluster
//!    members, the instance's protected users and application names;
//! 3. commit the kill record's intent with a snapshot of each target (commands shaped by
//!    [`crate::privacy`] when the instance's `redact_operations` is on); if that fails nothing
//!    is killed ([`SessionError::NotRecorded`]);
//! 4. killOp each target, verify each has left `$currentOp` (bounded by the verify deadline),
//!    append the outcome.
//!
//! Listing applies the privacy setting to every `operation` it returns.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docplane_driver::ops::{self, entry_tag};
use docplane_driver::{DriverError, NodeTarget, NodeTransport};
use docplane_store::{MetaStore, SessionSettings};
use mongodb::bson::{Bson, Document};
use serde_json::{Value, json};

use crate::audit::{KillRecorder, outcome_of};
use crate::error::{Result, SessionError};
use crate::ids::{MAX_KILL_IDS, SessionId, opid_predicate, parse_session_ids};
use crate::kill::{self, KillOutcome, KillReport, KillStatus};
use crate::privacy;
use crate::pushdown;
use crate::rails::{self, Protection};
use crate::record::{KillTarget, SessionRecord, kill_target_with, operation_text};
use crate::select::{SessionFilter, SessionPage, SessionQuery, check_killable, select_indices};

/// The `tracing` target of the kill's phase timings: one debug event per kill by id
/// (`phase = "kill_ids"`: candidates, intent, killOp + verification, outcome, in microseconds)
/// and one per candidates read (`phase = "reads"`: the `$currentOp` read's time). Off unless a
/// subscriber enables debug
/// for it; `crates/api/examples/dds_bench.rs` collects them to say where a kill's time goes.
pub const KILL_PHASES: &str = "docplane::kill_phases";

/// `d` in whole microseconds, saturating: the unit of the [`KILL_PHASES`] events.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The node a call is about, with the instance whose settings apply.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    /// The caller's project.
    pub project_id: &'a str,
    /// How to reach the node.
    pub target: &'a NodeTarget,
    /// The session settings of the node's instance (which they name), as the caller read them
    /// with the node (the API in one store read, [`docplane_store::MetaStore::get_node_context`];
    /// others with [`SessionService::settings`]): the protection and privacy the call applies.
    pub settings: &'a SessionSettings,
}

impl NodeRef<'_> {
    /// The node's instance.
    pub fn instance_id(&self) -> &str {
        &self.settings.instance_id
    }
}

/// A selector kill request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// What to match (at least one criterion).
    pub filter: SessionFilter,
    /// Refuse the whole call when more killable sessions than this match (1..=1000).
    pub max: usize,
    /// Only say what would be killed.
    pub dry_run: bool,
}

/// What happened to one session a selector matched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOutcome {
    /// Dry run: a real call would kill it.
    WouldKill,
    /// Skipped by a safety rail (never killed, on any path).
    Protected,
    /// Killed and gone from `$currentOp`.
    Killed,
    /// Killed but still listed at the verification deadline.
    StillRunning,
    /// killOp accepted; the node could not be read to verify.
    Unknown,
    /// killOp failed.
    Failed,
}

/// One matched session with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MatchedSession {
    /// What the session was when matched.
    pub target: KillTarget,
    /// What happened.
    pub outcome: MatchOutcome,
    /// Why (the rail for `protected`, the error for `failed`).
    pub reason: Option<String>,
}

/// The answer to a selector kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionResult {
    /// The kill record (`None` for a dry run, which records nothing).
    pub record_id: Option<String>,
    /// Every matched session, most expensive first: the killable ones and the protected ones.
    pub sessions: Vec<MatchedSession>,
}

/// The answer to a kill by ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillResult {
    /// The kill record.
    pub record_id: String,
    /// Per id, in request order.
    pub report: KillReport,
    /// `outcome_of(report)`: `killed`, `still_running`, `unknown` or `failed`.
    pub outcome: &'static str,
}

/// The session service (cheap to clone).
#[derive(Clone)]
pub struct SessionService {
    transport: Arc<dyn NodeTransport>,
    store: Arc<dyn MetaStore>,
    /// Whether an enforcement pass asks a 3.6+ node only for its candidates
    /// ([`crate::rules::candidate_predicate`]); off, it reads every entry, as on 3.4.
    rule_pushdown: bool,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

/// A current-op entry, its record, and its rail verdict.
struct Candidate {
    entry: Document,
    record: SessionRecord,
    protection: Option<Protection>,
}

impl SessionService {
    /// A service over `transport` (the node driver) recording in `store`.
    pub fn new(transport: Arc<dyn NodeTransport>, store: Arc<dyn MetaStore>) -> Self {
        Self { transport, store, rule_pushdown: true }
    }

    /// The same service with the enforcement pass's pushdown on (the default) or off (every
    /// pass reads the node's whole `$currentOp`, as it does on MongoDB 3.4). The victims are the
    /// same either way; off only costs more (the enforcer benchmark compares the two).
    #[must_use]
    pub fn with_rule_pushdown(mut self, enabled: bool) -> Self {
        self.rule_pushdown = enabled;
        self
    }

    /// The transport.
    pub fn transport(&self) -> &dyn NodeTransport {
        self.transport.as_ref()
    }

    /// The store kill records go to.
    pub(crate) fn store_ref(&self) -> &dyn MetaStore {
        self.store.as_ref()
    }

    /// The session settings of an instance (defaults when none are stored or the instance is
    /// gone), for a [`NodeRef`]. A store failure is [`SessionError::NotRecorded`]: a kill cannot
    /// be recorded then either.
    pub async fn settings(&self, project_id: &str, instance_id: &str) -> Result<SessionSettings> {
        match self.store.get_session_settings(project_id, instance_id).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Ok(SessionSettings::defaults(instance_id)),
            Err(e) => Err(SessionError::NotRecorded(e.to_string())),
        }
    }

    /// Lists a node's sessions per `query` (vendor filters, order, paging); every returned
    /// `operation` goes through the privacy setting.
    ///
    /// On MongoDB 3.6+ the filters, order and paging run on the node ([`crate::pushdown`]): one
    /// round trip that returns the total and just the page. MongoDB 3.4 (whose `currentOp` command
    /// takes only a filter), and the selector-only criteria, are evaluated here.
    pub async fn list(&self, node: NodeRef<'_>, query: &SessionQuery) -> Result<SessionPage> {
        let version = self.transport.version(node.target).await?;
        let stages = if version.has_current_op_stage() { pushdown::page_stages(query) } else { None };
        let redact = node.settings.redact_operations;
        let Some(stages) = stages else {
            let entries = ops::current_op_entries(self.transport(), node.target, None).await?;
            return Ok(page_client_side(&entries, query, redact));
        };
        let reply = ops::current_op_pipeline_raw(self.transport(), node.target, &stages).await?;
        let (total, page) = pushdown::parse_raw_page(&reply).ok_or_else(|| {
            SessionError::Node(DriverError::CommandFailed {
                code: 0,
                message: "the node's $facet reply is not {total, page}".into(),
            })
        })?;
        let app_name = &self.transport.config().app_name;
        let sessions = page
            .iter()
            // A read of this process that began after the node took the exclusion's tags.
            .filter(|e| !ops::is_own_operation(e, app_name))
            .filter_map(|e| {
                let mut r = SessionRecord::summary(e)?;
                r.operation = shown_operation(e, redact);
                Some(r)
            })
            .collect();
        Ok(SessionPage { total, sessions })
    }

    /// [`SessionService::list`] computed here over every entry (MongoDB 3.4, selector criteria).
    pub async fn list_client_side(
        &self,
        target: &NodeTarget,
        query: &SessionQuery,
        redact: bool,
    ) -> Result<SessionPage> {
        let entries = ops::current_op_entries(self.transport(), target, None).await?;
        Ok(page_client_side(&entries, query, redact))
    }

    /// Reads the node's entries (only `ids` when given), mapped, each with its rail verdict under
    /// the node's settings (read by the caller with the node).
    async fn candidates(&self, node: NodeRef<'_>, ids: Option<&[SessionId]>) -> Result<Vec<Candidate>> {
        let predicate = match ids {
            Some(ids) if !ids.iter().any(|id| matches!(id, SessionId::Idle(_))) => Some(opid_predicate(ids)),
            _ => None,
        };
        self.candidates_where(node, predicate).await
    }

    /// [`SessionService::candidates`] of the entries `predicate` selects on the node (all when
    /// `None`).
    async fn candidates_where(
        &self,
        node: NodeRef<'_>,
        predicate: Option<Document>,
    ) -> Result<Vec<Candidate>> {
        let started = Instant::now();
        let entries = ops::current_op_entries(self.transport(), node.target, predicate).await;
        tracing::debug!(target: KILL_PHASES, phase = "reads", current_op_us = micros(started.elapsed()));
        let entries = entries?;
        let own = own_connections(&entries, &self.transport.config().app_name);
        let candidates = entries
            .into_iter()
            .filter_map(|entry| {
                let record = SessionRecord::summary(&entry)?;
                let protection = rails::protection(&rails::facts(&entry), node.settings, &own);
                Some(Candidate { entry, record, protection })
            })
            .collect();
        Ok(candidates)
    }

    /// Kills sessions by id: validate, check all-or-nothing (unknown, inactive, protected),
    /// record, kill, verify, record the outcome. An `Err` means nothing was killed and no record
    /// was committed (the caller records the refusal with [`crate::audit::KillRecorder::record_refusal`]).
    pub async fn kill_ids(
        &self,
        node: NodeRef<'_>,
        recorder: &KillRecorder,
        raw_ids: &[String],
    ) -> Result<KillResult> {
        let started = Instant::now();
        let ids = parse_session_ids(raw_ids, node.target.kind)?;
        let candidates = self.candidates(node, Some(&ids)).await?;
        let candidates_at = started.elapsed();
        let records: Vec<SessionRecord> = candidates.iter().map(|c| c.record.clone()).collect();
        check_killable(&ids, &records)?;
        let mut protected = Vec::new();
        let mut targets = Vec::with_capacity(ids.len());
        for id in &ids {
            let text = id.to_string();
            let Some(c) = candidates.iter().find(|c| c.record.id == text) else {
                return Err(SessionError::InvalidSessionIds(vec![text]));
            };
            if let Some(p) = &c.protection {
                protected.push((text.clone(), p.reason()));
            }
            targets.push(kill_target_with(&text, &c.entry, &c.record, node.settings.redact_operations));
        }
        if !protected.is_empty() {
            return Err(SessionError::Protected(protected));
        }
        let session_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        recorder
            .commit_intent(self.store.as_ref(), &session_ids, &targets, Value::Null)
            .await
            .map_err(|e| SessionError::NotRecorded(e.to_string()))?;
        let intent_at = started.elapsed();
        let report = self.kill_and_verify(node.target, &ids).await;
        let verified_at = started.elapsed();
        let outcome = outcome_of(&report);
        recorder.commit_outcome(self.store.as_ref(), outcome, json!({"outcomes": report.outcomes})).await;
        tracing::debug!(
            target: KILL_PHASES,
            phase = "kill_ids",
            candidates_us = micros(candidates_at),
            intent_us = micros(intent_at - candidates_at),
            kill_verify_us = micros(verified_at - intent_at),
            outcome_us = micros(started.elapsed() - verified_at),
        );
        Ok(KillResult { record_id: recorder.record_id.clone(), report, outcome })
    }

    /// killOp every id, then verify; a node that refused every killOp on connectivity gives
    /// every id `Failed` with that error.
    async fn kill_and_verify(&self, target: &NodeTarget, ids: &[SessionId]) -> KillReport {
        match kill::send_kills(self.transport(), target, ids).await {
            Ok(issued) => kill::verify_report(self.transport(), target, issued).await,
            Err(e) => KillReport {
                outcomes: ids
                    .iter()
                    .map(|id| KillOutcome {
                        id: id.to_string(),
                        status: KillStatus::Failed { code: 0, message: e.to_string() },
                    })
                    .collect(),
            },
        }
    }

    /// Kills the sessions a selector matches: active operations passing every criterion; the
    /// protected ones are skipped and reported; more killable matches than `max` refuse the call
    /// ([`SessionError::TooManyMatches`], nothing killed). A dry run answers exactly what a real
    /// call on the same node state would kill and records nothing.
    pub async fn kill_matching(
        &self,
        node: NodeRef<'_>,
        recorder: &KillRecorder,
        selection: &Selection,
    ) -> Result<SelectionResult> {
        if selection.filter.is_empty() {
            return Err(SessionError::InvalidRequest(
                "a selector needs at least one criterion (it would match every session)".into(),
            ));
        }
        if !(1..=MAX_KILL_IDS).contains(&selection.max) {
            return Err(SessionError::InvalidRequest(format!("max must be in [1, {MAX_KILL_IDS}]")));
        }
        let candidates = self.candidates(node, None).await?;
        let records: Vec<SessionRecord> = candidates.iter().map(|c| c.record.clone()).collect();
        let all = SessionQuery { filter: selection.filter.clone(), offset: 0, limit: u64::MAX };
        let (_, order) = select_indices(&records, &all);
        let matched: Vec<&Candidate> = order
            .into_iter()
            .map(|i| &candidates[i])
            .filter(|c| c.record.active && c.record.has_opid)
            .collect();
        let killable: Vec<&Candidate> = matched.iter().copied().filter(|c| c.protection.is_none()).collect();
        if killable.len() > selection.max {
            return Err(SessionError::TooManyMatches { matched: killable.len(), max: selection.max });
        }
        let snapshot = |c: &Candidate| {
            kill_target_with(&c.record.id, &c.entry, &c.record, node.settings.redact_operations)
        };
        let protected: Vec<MatchedSession> = matched
            .iter()
            .filter_map(|c| {
                c.protection.as_ref().map(|p| MatchedSession {
                    target: snapshot(c),
                    outcome: MatchOutcome::Protected,
                    reason: Some(p.reason()),
                })
            })
            .collect();
        let targets: Vec<KillTarget> = killable.iter().map(|c| snapshot(c)).collect();
        if selection.dry_run {
            let mut sessions: Vec<MatchedSession> = targets
                .into_iter()
                .map(|target| MatchedSession { target, outcome: MatchOutcome::WouldKill, reason: None })
                .collect();
            sessions.extend(protected);
            return Ok(SelectionResult { record_id: None, sessions });
        }
        let ids: Vec<SessionId> =
            killable.iter().filter_map(|c| SessionId::parse(&c.record.id, node.target.kind)).collect();
        let session_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let extra = json!({
            "selector": filter_json(&selection.filter),
            "max": selection.max,
            "protected": protected.iter().map(|m| json!({"id": m.target.id, "reason": m.reason})).collect::<Vec<_>>(),
        });
        recorder
            .commit_intent(self.store.as_ref(), &session_ids, &targets, extra)
            .await
            .map_err(|e| SessionError::NotRecorded(e.to_string()))?;
        let report = if ids.is_empty() {
            KillReport { outcomes: Vec::new() }
        } else {
            self.kill_and_verify(node.target, &ids).await
        };
        let outcome = outcome_of(&report);
        recorder.commit_outcome(self.store.as_ref(), outcome, json!({"outcomes": report.outcomes})).await;
        let mut sessions: Vec<MatchedSession> = targets
            .into_iter()
            .map(|target| {
                let status = report.outcomes.iter().find(|o| o.id == target.id).map(|o| o.status.clone());
                let (outcome, reason) = match status {
                    Some(KillStatus::Killed) => (MatchOutcome::Killed, None),
                    Some(KillStatus::StillRunning) => (MatchOutcome::StillRunning, None),
                    Some(KillStatus::Unknown) => (MatchOutcome::Unknown, None),
                    Some(KillStatus::Failed { code, message }) => {
                        (MatchOutcome::Failed, Some(format!("killOp failed ({code}): {message}")))
                    }
                    None => (MatchOutcome::Failed, Some("no killOp was sent".into())),
                };
                MatchedSession { target, outcome, reason }
            })
            .collect();
        sessions.extend(protected);
        Ok(SelectionResult { record_id: Some(recorder.record_id.clone()), sessions })
    }
}

/// What one rule did on one node in one enforcement pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAction {
    /// The rule.
    pub rule_id: String,
    /// `kill` or `observe`.
    pub mode: String,
    /// The kill record.
    pub record_id: String,
    /// The operations it killed (or, observing, would have killed).
    pub session_ids: Vec<String>,
    /// The record's outcome: `observed`, or `killed`, `still_running`, `unknown`, `failed`.
    pub outcome: String,
}

/// The enforcer's memory of one node between passes: which (rule, operation) pairs an observing
/// rule already recorded, so an operation is recorded once per rule while it runs, not every
/// interval.
#[derive(Debug, Clone, Default)]
pub struct ObserveMemory {
    seen: HashSet<(String, String)>,
}

impl SessionService {
    /// One enforcement pass of `rules` (the enabled rules that apply to this node) on one node:
    /// one `$currentOp` read with the instance's settings (on MongoDB 3.6+ only the entries
    /// [`crate::rules::candidate_predicate`] selects: the operations some rule matches and
    /// docplane's own connections), the rails applied to every entry read, then
    /// per rule (in order; an operation claimed by an earlier rule is not matched again) the
    /// [`crate::rules::victims`]. A killing rule commits a kill record naming it (principal
    /// `rule:<id>`, `rule_id`, the rule, `mode`) before its killOps, then kills, verifies and
    /// appends the outcome, exactly as every kill; an observing rule commits the same intent and
    /// the outcome `observed`, and kills nothing. `source` names the enforcing replica.
    ///
    /// A failure to read the node is returned; a record that cannot be committed skips that
    /// rule's kill (logged), as a kill by id would be refused.
    pub async fn enforce(
        &self,
        node: NodeRef<'_>,
        rules: &[docplane_store::KillOpRule],
        source: &str,
        memory: &mut ObserveMemory,
    ) -> Result<Vec<RuleAction>> {
        let predicate =
            if self.rule_pushdown && self.transport.version(node.target).await?.has_current_op_stage() {
                Some(crate::rules::candidate_predicate(rules, &self.transport.config().app_name))
            } else {
                None
            };
        let candidates = self.candidates_where(node, predicate).await?;
        let eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.record.active && c.record.has_opid && c.protection.is_none())
            .collect();
        let ops: Vec<crate::rules::RuleOp<'_>> =
            eligible.iter().map(|c| crate::rules::RuleOp::new(&c.record, &c.entry)).collect();
        let mut claimed: HashSet<usize> = HashSet::new();
        let mut actions = Vec::new();
        let mut still_seen: HashSet<(String, String)> = HashSet::new();
        for rule in rules {
            let picked = crate::rules::victims(rule, &ops, &claimed);
            if picked.is_empty() {
                continue;
            }
            claimed.extend(picked.iter().copied());
            let observe = rule.mode == "observe";
            let mut chosen: Vec<&Candidate> = picked.iter().map(|i| eligible[*i]).collect();
            if observe {
                for c in &chosen {
                    still_seen.insert((rule.id.clone(), c.record.id.clone()));
                }
                chosen.retain(|c| !memory.seen.contains(&(rule.id.clone(), c.record.id.clone())));
                if chosen.is_empty() {
                    continue;
                }
            }
            let targets: Vec<KillTarget> = chosen
                .iter()
                .map(|c| kill_target_with(&c.record.id, &c.entry, &c.record, node.settings.redact_operations))
                .collect();
            let ids: Vec<SessionId> =
                chosen.iter().filter_map(|c| SessionId::parse(&c.record.id, node.target.kind)).collect();
            let session_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            let recorder = KillRecorder::new(
                crate::audit::KillScope {
                    project_id: node.project_id.to_owned(),
                    instance_id: node.instance_id().to_owned(),
                    node_id: node.target.id.clone(),
                },
                crate::audit::Actor {
                    user_name: format!("rule:{}", rule.id),
                    source: source.to_owned(),
                    ..crate::audit::Actor::default()
                },
            );
            let extra = json!({
                "rule_id": rule.id,
                "mode": rule.mode,
                "rule": {
                    "operation_types": rule.operation_types, "namespaces": rule.namespaces,
                    "client_ips": rule.client_ips, "plan_summary": rule.plan_summary,
                    "max_concurrency": rule.max_concurrency, "secs_running": rule.secs_running,
                    "node_type": rule.node_type,
                },
            });
            if let Err(e) = recorder.commit_intent(self.store.as_ref(), &session_ids, &targets, extra).await {
                tracing::error!(error = %e, rule_id = %rule.id, node_id = %node.target.id,
                    "rule kill not recorded; nothing killed");
                continue;
            }
            let outcome = if observe {
                recorder
                    .commit_outcome(self.store.as_ref(), "observed", json!({"would_kill": session_ids}))
                    .await;
                for id in &session_ids {
                    memory.seen.insert((rule.id.clone(), id.clone()));
                }
                "observed"
            } else {
                let report = self.kill_and_verify(node.target, &ids).await;
                let outcome = outcome_of(&report);
                recorder
                    .commit_outcome(self.store.as_ref(), outcome, json!({"outcomes": report.outcomes}))
                    .await;
                outcome
            };
            actions.push(RuleAction {
                rule_id: rule.id.clone(),
                mode: rule.mode.clone(),
                record_id: recorder.record_id.clone(),
                session_ids,
                outcome: outcome.to_owned(),
            });
        }
        // Forget the operations that ended (or stopped matching).
        memory.seen.retain(|k| still_seen.contains(k));
        Ok(actions)
    }

    /// The connections of a node, counted per client IP: `inner` are docplane's own (under the
    /// driver's application name, or carrying a docplane read's tag) and the cluster's members
    /// (running as `__system`); `outer` every other client. One `$currentOp` with idle
    /// connections (3.6+; `currentOp` with `$all` on 3.4); each connection counts once (by
    /// `connectionId`), entries without a client connection (the server's own threads, idle
    /// sessions and cursors) not at all.
    pub async fn connection_stats(&self, target: &NodeTarget) -> Result<crate::conns::ConnectionStats> {
        let version = self.transport.version(target).await?;
        version.check_supported()?;
        let request = ops::current_op_request(version, &[])?;
        let entries = if request.contains_key("aggregate") {
            self.transport.cursor_command(target, "admin", request).await?
        } else {
            let reply = self.transport.command(target, "admin", request).await?;
            reply
                .get_array("inprog")
                .map(|a| a.iter().filter_map(Bson::as_document).cloned().collect())
                .unwrap_or_default()
        };
        Ok(crate::conns::count(&entries, &self.transport.config().app_name))
    }
}

/// Filters, orders and pages `entries` here; only the page's commands are rendered.
fn page_client_side(entries: &[Document], query: &SessionQuery, redact: bool) -> SessionPage {
    let (records, sources): (Vec<SessionRecord>, Vec<usize>) =
        entries.iter().enumerate().filter_map(|(i, e)| SessionRecord::summary(e).map(|r| (r, i))).unzip();
    let (total, page) = select_indices(&records, query);
    let sessions = page
        .into_iter()
        .map(|k| {
            let mut r = records[k].clone();
            r.operation = shown_operation(&entries[sources[k]], redact);
            r
        })
        .collect();
    SessionPage { total, sessions }
}

/// The `operation` text a list shows: the command, shaped when `redact`.
fn shown_operation(entry: &Document, redact: bool) -> String {
    if !redact {
        return operation_text(entry);
    }
    match entry.get("command").or_else(|| entry.get("query")) {
        Some(Bson::Document(cmd)) => Bson::Document(privacy::shape(cmd)).into_relaxed_extjson().to_string(),
        _ => "{}".to_owned(),
    }
}

/// docplane's connections among the entries: those on which a docplane read runs (its command
/// carries a `docplane:` tag, under docplane's application name). The reads of this process are
/// already gone from the entries; what remains are other replicas' reads, whose connections no
/// kill may touch.
fn own_connections(entries: &[Document], app_name: &str) -> HashSet<i64> {
    entries
        .iter()
        .filter(|e| entry_tag(e).is_some() && ops::entry_app_name(e) == Some(app_name))
        .filter_map(|e| match e.get("connectionId") {
            Some(Bson::Int32(n)) => Some(i64::from(*n)),
            Some(Bson::Int64(n)) => Some(*n),
            _ => None,
        })
        .collect()
}

/// A selector as the record keeps it.
fn filter_json(f: &SessionFilter) -> Value {
    json!({
        "type": f.op_type, "namespace": f.namespace, "plan_summary": f.plan_summary,
        "min_cost_time_us": f.min_cost_time_us, "client": f.client, "user": f.user, "app_name": f.app_name,
    })
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn own_connections_are_tagged_reads_under_docplanes_name() {
        let app = "docplane-control";
        let entries = vec![
            doc! {"opid": 1, "connectionId": 7_i64, "appName": app, "command": {"aggregate": 1, "comment": "docplane:0abc"}},
            // Tagged but not under docplane's name: a user's, not ours.
            doc! {"opid": 2, "connectionId": 8, "appName": "x", "command": {"aggregate": 1, "comment": "docplane:0abc"}},
            // Under docplane's name but untagged: could be anyone calling itself so.
            doc! {"opid": 3, "connectionId": 9, "appName": app, "command": {"sleep": 1}},
        ];
        assert_eq!(own_connections(&entries, app), [7_i64].into());
    }

    #[test]
    fn shown_operation_follows_the_setting() {
        let e = doc! {"opid": 1, "command": {"find": "users", "filter": {"email": "a@b.c"}, "$db": "shop"}};
        assert!(shown_operation(&e, false).contains("a@b.c"));
        let shaped = shown_operation(&e, true);
        assert!(
            !shaped.contains("a@b.c") && shaped.contains("?string") && shaped.contains("users"),
            "{shaped}"
        );
        assert_eq!(shown_operation(&doc! {"opid": 2}, true), "{}");
    }
}
