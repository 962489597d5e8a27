//! Native rule enforcement: for a node that runs docplane's `docplaneKillOpRules` command (the
//! embedded node), the enforcer installs the node's applicable rules there instead of polling
//! `$currentOp`, and each interval drains the node's rule events into kill records.
//!
//! One pass ([`SessionService::enforce_native`]): read the node's state while acknowledging the
//! events recorded by the previous pass (`ack`); when the installed `generation` is not the
//! fingerprint of the rules and rails wanted now (rules changed, settings changed, node
//! restarted), install them; then record every event: intent (principal `rule:<id>`, the rule
//! as the node applied it, the operation's snapshot, `enforced_by: "node"`) and outcome
//! (`killed` / `still_running` / `unknown` after verifying the killed operation left
//! `$currentOp`, `refused` for an admission refusal, `observed`). A node that answers 59
//! CommandNotFound is polled instead ([`crate::SessionService::enforce`]), and probed again after
//! [`REPROBE_AFTER`].
//!
//! Record ids are derived from (node, boot, event seq), so an event recorded but not yet
//! acknowledged (the control plane stopped in between) is refused by the store the second time
//! (one intent per record id) and acknowledged then: every event has exactly one record.

use std::time::{Duration, Instant};

use docplane_driver::DriverError;
use docplane_store::{KillOpRule, SessionSettings, StoreError};
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::{Actor, KillRecorder, KillScope};
use crate::error::Result;
use crate::ids::SessionId;
use crate::kill;
use crate::record::{SessionRecord, kill_target_with};
use crate::service::{NodeRef, RuleAction, SessionService};

/// How long a node that lacks the command is polled before it is asked again.
pub const REPROBE_AFTER: Duration = Duration::from_secs(300);
/// Most reads of the node's queue in one pass (each up to 1000 events).
const MAX_DRAINS: usize = 10;

/// How the enforcer reaches one node's rules.
#[derive(Debug, Clone, Default)]
pub enum NativeMode {
    /// Not asked yet.
    #[default]
    Unknown,
    /// The node enforces the rules itself.
    Native,
    /// The node lacks the command (since then): polled.
    Polling(Instant),
}

/// The enforcer's memory of one node's native enforcement.
#[derive(Debug, Clone, Default)]
pub struct NativeMemory {
    pub mode: NativeMode,
    /// The node's boot id and the last event seq recorded (acknowledged at the next read).
    ack: Option<(String, i64)>,
}

impl NativeMemory {
    /// Whether the next pass should try the node's command (not known to lack it, or it is time
    /// to ask again).
    pub fn try_native(&self) -> bool {
        match self.mode {
            NativeMode::Unknown | NativeMode::Native => true,
            NativeMode::Polling(since) => since.elapsed() >= REPROBE_AFTER,
        }
    }
}

/// The node's wire form of a rule set (without its generation).
pub fn rule_set_doc(rules: &[KillOpRule], settings: &SessionSettings, control_app_name: &str) -> Document {
    let rules: Vec<Bson> = rules
        .iter()
        .map(|r| {
            Bson::Document(doc! {
                "id": &r.id, "operationTypes": &r.operation_types, "namespaces": &r.namespaces,
                "clientIps": &r.client_ips, "planSummary": &r.plan_summary,
                "maxConcurrency": r.max_concurrency, "secsRunning": r.secs_running,
                "mode": if r.mode == "observe" { "observe" } else { "kill" },
            })
        })
        .collect();
    let mut users = settings.protected_users.clone();
    users.sort();
    let mut apps = settings.protected_app_names.clone();
    apps.sort();
    doc! {
        "rules": rules, "protectedUsers": users, "protectedAppNames": apps,
        "controlAppName": control_app_name,
    }
}

/// The generation of a rule set: the first 63 bits of the SHA-256 of its BSON, so every replica
/// names the same content alike and a node already holding it is not pushed again.
pub fn fingerprint(set: &Document) -> i64 {
    let bytes = mongodb::bson::to_vec(set).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first) & i64::MAX
}

/// The kill record id of one node event.
pub fn event_record_id(node_id: &str, boot_id: &str, seq: i64) -> String {
    let digest = Sha256::digest(format!("{node_id}\u{0}{boot_id}\u{0}{seq}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One reply of `docplaneKillOpRules`.
struct Reply {
    boot_id: String,
    generation: Option<i64>,
    events: Vec<Document>,
    remaining: i64,
    dropped: i64,
}

fn parse_reply(d: &Document) -> std::result::Result<Reply, DriverError> {
    let bad = |what: &str| DriverError::CommandFailed {
        code: 0,
        message: format!("docplaneKillOpRules reply without {what}"),
    };
    Ok(Reply {
        boot_id: d.get_str("bootId").map_err(|_| bad("bootId"))?.to_owned(),
        generation: match d.get("generation") {
            Some(Bson::Int64(n)) => Some(*n),
            Some(Bson::Null) => None,
            _ => return Err(bad("generation")),
        },
        events: d
            .get_array("events")
            .map_err(|_| bad("events"))?
            .iter()
            .filter_map(Bson::as_document)
            .cloned()
            .collect(),
        remaining: d.get_i64("remaining").map_err(|_| bad("remaining"))?,
        dropped: d.get_i64("dropped").map_err(|_| bad("dropped"))?,
    })
}

/// An event as the record needs it.
struct Event<'a> {
    seq: i64,
    rule_id: &'a str,
    mode: &'a str,
    action: &'a str,
    limit: &'a str,
    rule: &'a Document,
    op: &'a Document,
    error: Option<&'a Document>,
}

fn event(d: &Document) -> Option<Event<'_>> {
    Some(Event {
        seq: d.get_i64("seq").ok()?,
        rule_id: d.get_str("ruleId").ok()?,
        mode: d.get_str("mode").ok()?,
        action: d.get_str("action").ok()?,
        limit: d.get_str("limit").ok()?,
        rule: d.get_document("rule").ok()?,
        op: d.get_document("op").ok()?,
        error: d.get_document("error").ok(),
    })
}

fn strings_of(d: &Document, key: &str) -> Vec<String> {
    d.get_array(key)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl SessionService {
    /// One native pass on a node (module doc). `Ok(None)`: the node lacks the command (the
    /// caller polls instead). `rules` are the enabled rules that apply to the node.
    pub async fn enforce_native(
        &self,
        node: NodeRef<'_>,
        rules: &[KillOpRule],
        source: &str,
        memory: &mut NativeMemory,
    ) -> Result<Option<Vec<RuleAction>>> {
        let settings = node.settings;
        let mut set = rule_set_doc(rules, settings, &self.transport().config().app_name);
        let generation = fingerprint(&set);
        let mut reply = match self.rules_command(node, memory, None).await {
            Ok(r) => r,
            Err(DriverError::CommandFailed { code: 59, .. }) => {
                if !matches!(memory.mode, NativeMode::Polling(_)) {
                    tracing::info!(node_id = %node.target.id, "the node has no docplaneKillOpRules: rules are polled");
                }
                memory.mode = NativeMode::Polling(Instant::now());
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if !matches!(memory.mode, NativeMode::Native) {
            tracing::info!(node_id = %node.target.id, "the node enforces kill-op rules natively");
        }
        memory.mode = NativeMode::Native;
        if reply.generation != Some(generation) {
            set.insert("generation", generation);
            reply = self.rules_command(node, memory, Some(set)).await?;
            tracing::info!(node_id = %node.target.id, generation, rules = rules.len(), "kill-op rules installed on the node");
        }
        let mut actions = Vec::new();
        for round in 0..MAX_DRAINS {
            if reply.dropped > 0 && round == 0 {
                tracing::warn!(node_id = %node.target.id, dropped = reply.dropped,
                    "the node dropped kill-op rule events (its queue was full); they have no record");
            }
            let recorded = self.record_events(node, rules, source, &reply, settings, &mut actions).await;
            if let Some(seq) = recorded {
                memory.ack = Some((reply.boot_id.clone(), seq));
            }
            if reply.remaining == 0 || recorded.is_none() || round + 1 == MAX_DRAINS {
                break;
            }
            reply = self.rules_command(node, memory, None).await?;
        }
        Ok(Some(actions))
    }

    /// Sends `docplaneKillOpRules` with the memory's ack (and `set`); a node that restarted
    /// refuses the old boot's ack, and is asked again without it.
    async fn rules_command(
        &self,
        node: NodeRef<'_>,
        memory: &mut NativeMemory,
        set: Option<Document>,
    ) -> std::result::Result<Reply, DriverError> {
        let request = |memory: &NativeMemory| {
            let mut cmd = doc! {"docplaneKillOpRules": 1};
            if let Some((boot, seq)) = &memory.ack {
                cmd.insert("ack", doc! {"bootId": boot, "seq": *seq});
            }
            if let Some(set) = &set {
                cmd.insert("set", set.clone());
            }
            cmd
        };
        let transport = self.transport();
        let reply = match transport.command(node.target, "admin", request(memory)).await {
            Err(DriverError::CommandFailed { code: 2, .. }) if memory.ack.is_some() => {
                tracing::warn!(node_id = %node.target.id,
                    "the node restarted: the kill-op rule events of its previous run are lost");
                memory.ack = None;
                transport.command(node.target, "admin", request(memory)).await?
            }
            other => other?,
        };
        parse_reply(&reply)
    }

    /// Records the events of `reply` in order; answers the last seq recorded (or already
    /// recorded), stopping at the first the store cannot take (the rest stay on the node).
    async fn record_events(
        &self,
        node: NodeRef<'_>,
        rules: &[KillOpRule],
        source: &str,
        reply: &Reply,
        settings: &SessionSettings,
        actions: &mut Vec<RuleAction>,
    ) -> Option<i64> {
        let mut last = None;
        // Intents first, then one verification of every kill, then the outcomes.
        let mut committed: Vec<(KillRecorder, Event<'_>, String)> = Vec::new();
        for raw in &reply.events {
            let Some(e) = event(raw) else {
                tracing::error!(node_id = %node.target.id, "malformed kill-op rule event skipped");
                continue;
            };
            let Some(record) = SessionRecord::summary(e.op) else { continue };
            let id = record.id.clone();
            let target = kill_target_with(&id, e.op, &record, settings.redact_operations);
            let recorder = KillRecorder::with_id(
                event_record_id(&node.target.id, &reply.boot_id, e.seq),
                KillScope {
                    project_id: node.project_id.to_owned(),
                    instance_id: node.instance_id().to_owned(),
                    node_id: node.target.id.clone(),
                },
                Actor {
                    user_name: format!("rule:{}", e.rule_id),
                    source: source.to_owned(),
                    ..Actor::default()
                },
            );
            let extra = event_extra(&e, rules, &reply.boot_id);
            match recorder.commit_intent(self.store_ref(), std::slice::from_ref(&id), &[target], extra).await
            {
                Ok(_) => {
                    last = Some(e.seq);
                    committed.push((recorder, e, id));
                }
                Err(StoreError::Conflict(_)) => {
                    tracing::debug!(record_id = %recorder.record_id, "rule event already recorded");
                    last = Some(e.seq);
                }
                Err(err) => {
                    tracing::error!(error = %err, node_id = %node.target.id,
                        "kill-op rule event not recorded; it stays on the node");
                    break;
                }
            }
        }
        let report = self.verify_node_kills(node, &committed).await;
        for (recorder, e, id) in committed {
            let (outcome, detail) = event_outcome(&e, &id, report.as_ref());
            recorder.commit_outcome(self.store_ref(), &outcome, detail).await;
            actions.push(RuleAction {
                rule_id: e.rule_id.to_owned(),
                mode: e.mode.to_owned(),
                record_id: recorder.record_id.clone(),
                session_ids: vec![id],
                outcome,
            });
        }
        last
    }

    /// One verification (a `$currentOp` read) of every operation the node says it killed;
    /// `None` when it killed none.
    async fn verify_node_kills(
        &self,
        node: NodeRef<'_>,
        committed: &[(KillRecorder, Event<'_>, String)],
    ) -> Option<kill::KillReport> {
        let killed: Vec<SessionId> = committed
            .iter()
            .filter(|(_, e, _)| e.action == "killed")
            .filter_map(|(_, _, id)| SessionId::parse(id, node.target.kind))
            .collect();
        if killed.is_empty() {
            None
        } else {
            let issued = killed.into_iter().map(|id| (id, Ok(()))).collect();
            Some(kill::verify_report(self.transport(), node.target, issued).await)
        }
    }
}

/// The kill record's `extra` for a rule event: the rule as the node applied it (with the node
/// type the store holds for it), what it did and which event this is.
fn event_extra(e: &Event<'_>, rules: &[KillOpRule], boot_id: &str) -> Value {
    let node_type = rules.iter().find(|r| r.id == e.rule_id).map(|r| r.node_type.clone());
    json!({
        "rule_id": e.rule_id,
        "mode": e.mode,
        "rule": {
            "operation_types": strings_of(e.rule, "operationTypes"),
            "namespaces": strings_of(e.rule, "namespaces"),
            "client_ips": strings_of(e.rule, "clientIps"),
            "plan_summary": e.rule.get_str("planSummary").unwrap_or_default(),
            "max_concurrency": e.rule.get_i64("maxConcurrency").unwrap_or(0),
            "secs_running": e.rule.get_i64("secsRunning").unwrap_or(0),
            "node_type": node_type,
        },
        "enforced_by": "node",
        "limit": e.limit,
        "action": e.action,
        "event": {"boot_id": boot_id, "seq": e.seq},
    })
}

/// A rule event's recorded outcome and detail: a kill as the verification `report` saw session
/// `id`, a refusal with the node's error, anything else (a rule in observe mode) as `observed`.
fn event_outcome(e: &Event<'_>, id: &str, report: Option<&kill::KillReport>) -> (String, Value) {
    match e.action {
        "killed" => {
            let outcomes: Vec<&kill::KillOutcome> =
                report.iter().flat_map(|r| r.outcomes.iter()).filter(|o| o.id == id).collect();
            let one = kill::KillReport { outcomes: outcomes.into_iter().cloned().collect() };
            (
                crate::audit::outcome_of(&one).to_owned(),
                json!({"outcomes": one.outcomes, "enforced_by": "node"}),
            )
        }
        "refused" => (
            "refused".to_owned(),
            json!({
                "error_code": e.error.and_then(|x| x.get_i32("code").ok()),
                "error": e.error.and_then(|x| x.get_str("errmsg").ok()),
                "enforced_by": "node",
            }),
        ),
        _ => {
            let key = if e.limit == "max_concurrency" { "would_refuse" } else { "would_kill" };
            ("observed".to_owned(), json!({key: [id], "enforced_by": "node"}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_content_not_order_of_protected_names() {
        let mut s = SessionSettings::defaults("i1");
        s.protected_users = vec!["b".into(), "a".into()];
        let one = fingerprint(&rule_set_doc(&[], &s, "docplane-control"));
        s.protected_users = vec!["a".into(), "b".into()];
        assert_eq!(one, fingerprint(&rule_set_doc(&[], &s, "docplane-control")));
        assert!(one >= 0);
        s.protected_app_names = vec!["x".into()];
        assert_ne!(one, fingerprint(&rule_set_doc(&[], &s, "docplane-control")));
        assert_ne!(one, fingerprint(&rule_set_doc(&[], &SessionSettings::defaults("i1"), "other")));
    }

    #[test]
    fn event_record_ids_are_stable_and_distinct() {
        let a = event_record_id("n1", "boot", 1);
        assert_eq!(a, event_record_id("n1", "boot", 1));
        assert_eq!(a.len(), 32);
        assert_ne!(a, event_record_id("n1", "boot", 2));
        assert_ne!(a, event_record_id("n1", "boot2", 1));
        assert_ne!(a, event_record_id("n2", "boot", 1));
    }
}
