//! `POST /v3/{project_id}/nodes/{node_id}/sessions/kill`: the selector kill (a docplane extension,
//! action `dds:instance:deleteSession`, the vendor kill's action).
//!
//! Body: `{"filter": {...}, "max": N, "dry_run": bool}`. The filter takes the vendor list's
//! criteria under the vendor's names (`type`, `namespace`, `plan_summary`, `cost_time`: running
//! longer than this many microseconds) and three more: `client` (an address matching any port, or
//! `host:port`), `user` (an effective user's name), `app_name`. At least one is required. `max`
//! (1..=1000, required) refuses the call when more killable sessions match (`DBS.900032`, nothing
//! killed). `dry_run` answers what a real call would kill on the node as it is now, and records
//! nothing.
//!
//! The answer lists every matched active session, most expensive first, with its outcome:
//! `would_kill` (dry run), `killed`, `still_running`, `unknown`, `failed`, or `protected` (a
//! safety rail skipped it, with the reason). Only active operations match: idle connections
//! have nothing to kill. A real call is recorded like any kill (intent with the filter, the
//! targets and the skipped sessions, then the outcome); refusals are recorded too.

use axum::Json;
use axum::extract::State;
use docplane_sessions::{
    KillRecorder, KillScope, MAX_KILL_IDS, MatchOutcome, MatchedSession, NodeRef, Selection, SessionFilter,
    select as vocabulary,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{check_state_and_version, kill_error, resolve_node};
use super::kill_records::{SourceAddr, actor_of, record_refusal, refusal_outcome};
use super::sessions::NodePath;
use crate::error::{ApiError, ErrorBody};
use crate::observe::RequestId;
use crate::route::{ApiBytes, ApiPath, Principal};
use crate::state::AppState;

/// Longest `client`, `user` or `app_name` criterion.
const MAX_NAME: usize = 255;

/// The selector's criteria; absent means "any".
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SelectorFilter {
    /// Operation type: none update insert query command getmore remove killcursors.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schema(rename = "type")]
    pub op_type: Option<String>,
    /// `db.collection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A plan stage (COLLSCAN, IXSCAN, ...) that must appear in the plan summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_summary: Option<String>,
    /// Only operations running longer than this many microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_time: Option<u64>,
    /// The client address (`10.0.0.5` matches any port; `10.0.0.5:41000` one connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// An effective user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The client's application name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
}

/// The request body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillMatchingBody {
    /// What to match (at least one criterion).
    pub filter: SelectorFilter,
    /// The most killable sessions the call may kill, 1..=1000; more matches refuse it.
    pub max: u64,
    /// Only report what would be killed (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// One matched session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MatchedItem {
    pub id: String,
    #[serde(rename = "type")]
    pub op_type: String,
    pub namespace: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// Microseconds running when matched, as a string (as the vendor's list).
    pub cost_time: String,
    pub plan_summary: String,
    /// The command (secrets redacted; placeholders for literals when the instance's privacy
    /// setting is on).
    pub operation: String,
    /// would_kill, killed, still_running, unknown, failed, protected.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KillMatchingResponse {
    pub dry_run: bool,
    /// The kill record (absent for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// Matched active sessions, protected ones included.
    pub matched: usize,
    /// Sessions killed and gone (0 for a dry run).
    pub killed: usize,
    /// Sessions a safety rail skipped.
    pub protected: usize,
    pub sessions: Vec<MatchedItem>,
}

fn name_criterion(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > MAX_NAME || v.chars().any(char::is_control) => {
            Err(ApiError::BadRequest(format!(
                "filter.{field} must be 1..={MAX_NAME} bytes without control characters"
            )))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// Validates the body (pure): each criterion with the vendor list's code for it, the rest
/// `DBS.200001`.
pub fn parse_body(body: &[u8]) -> Result<Selection, ApiError> {
    let b: KillMatchingBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid selector body: {e}")))?;
    let f = b.filter;
    let op_type = match f.op_type {
        Some(t) if !vocabulary::is_valid_op_type(&t) => return Err(ApiError::InvalidOperationType(t)),
        other => other,
    };
    let namespace = match f.namespace {
        Some(n) if !vocabulary::is_valid_namespace(&n) => return Err(ApiError::InvalidNamespace(n)),
        other => other,
    };
    let plan_summary = match f.plan_summary {
        Some(p) if !vocabulary::is_valid_plan_summary(&p) => return Err(ApiError::InvalidPlanSummary(p)),
        other => other.map(|p| p.trim().to_ascii_uppercase()),
    };
    let filter = SessionFilter {
        plan_summary,
        op_type,
        namespace,
        min_cost_time_us: f.cost_time,
        client: name_criterion("client", f.client)?,
        user: name_criterion("user", f.user)?,
        app_name: name_criterion("app_name", f.app_name)?,
    };
    if filter.is_empty() {
        return Err(ApiError::BadRequest("filter needs at least one criterion".into()));
    }
    let max = usize::try_from(b.max)
        .ok()
        .filter(|m| (1..=MAX_KILL_IDS).contains(m))
        .ok_or_else(|| ApiError::BadRequest(format!("max must be an integer in [1, {MAX_KILL_IDS}]")))?;
    Ok(Selection { filter, max, dry_run: b.dry_run })
}

fn item(m: MatchedSession) -> MatchedItem {
    let outcome = match m.outcome {
        MatchOutcome::WouldKill => "would_kill",
        MatchOutcome::Protected => "protected",
        MatchOutcome::Killed => "killed",
        MatchOutcome::StillRunning => "still_running",
        MatchOutcome::Unknown => "unknown",
        MatchOutcome::Failed => "failed",
    };
    let t = m.target;
    MatchedItem {
        id: t.id,
        op_type: t.op_type,
        namespace: t.namespace,
        client: t.client,
        user: t.user,
        app_name: t.app_name,
        cost_time: t.running_us.to_string(),
        plan_summary: t.plan_summary,
        operation: t.command,
        outcome: outcome.into(),
        reason: m.reason,
    }
}

/// A selector kill's outcome as its record has it: the worst status of the killed sessions
/// (`failed` > `unknown` > `still_running` > `killed`; `killed` when nothing was to kill).
fn selection_outcome(sessions: &[MatchedItem]) -> &'static str {
    let any = |o: &str| sessions.iter().any(|s| s.outcome == o);
    if any("failed") {
        "failed"
    } else if any("unknown") {
        "unknown"
    } else if any("still_running") {
        "still_running"
    } else {
        "killed"
    }
}

/// Kill the sessions a selector matches (or, with `dry_run`, say which).
#[utoipa::path(post, path = "/v3/{project_id}/nodes/{node_id}/sessions/kill", tag = "dds",
    params(("project_id" = String, Path), ("node_id" = String, Path)),
    request_body = KillMatchingBody,
    responses((status = 200, body = KillMatchingResponse, description = "Every matched session with its outcome"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.301072 DBS.301073 DBS.301074 DBS.900032 DBS.200041"),
              (status = 403, body = ErrorBody, description = "DBS.200011 DBS.200019"),
              (status = 404, body = ErrorBody, description = "DBS.200013"),
              (status = 503, body = ErrorBody, description = "DBS.900503: the kill could not be recorded; nothing was killed")))]
pub async fn kill_matching(
    State(st): State<AppState>,
    p: Principal,
    RequestId(request_id): RequestId,
    SourceAddr(source): SourceAddr,
    ApiPath(path): ApiPath<NodePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<KillMatchingResponse>, ApiError> {
    let actor = actor_of(&p, request_id, source);
    let mut scope = KillScope {
        project_id: p.project_id().to_owned(),
        instance_id: String::new(),
        node_id: path.node_id.clone(),
    };
    let mut dry_run = false;
    let result = async {
        let selection = parse_body(&body)?;
        dry_run = selection.dry_run;
        let (resolved, settings) = resolve_node(&st, p.project_id(), &path.node_id).await?;
        scope.instance_id.clone_from(&resolved.instance.id);
        check_state_and_version(&resolved)?;
        let node = NodeRef { project_id: p.project_id(), target: &resolved.target, settings: &settings };
        let recorder = KillRecorder::new(scope.clone(), actor.clone());
        st.sessions.kill_matching(node, &recorder, &selection).await.map_err(kill_error)
    }
    .await;
    match result {
        Ok(r) => {
            let sessions: Vec<MatchedItem> = r.sessions.into_iter().map(item).collect();
            st.metrics.kill("selector", if dry_run { "dry_run" } else { selection_outcome(&sessions) });
            Ok(Json(KillMatchingResponse {
                dry_run,
                record_id: r.record_id,
                matched: sessions.len(),
                killed: sessions.iter().filter(|s| s.outcome == "killed").count(),
                protected: sessions.iter().filter(|s| s.outcome == "protected").count(),
                sessions,
            }))
        }
        Err(e) => {
            st.metrics.kill("selector", if dry_run { "dry_run" } else { refusal_outcome(&e) });
            // A dry run kills nothing, so its refusals are not kill records.
            if !dry_run {
                record_refusal(&st, scope, actor, &[], &e).await;
            }
            Err(e)
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        parse_body(body.as_bytes()).unwrap_err().code_and_status().0
    }

    #[test]
    fn bodies() {
        let s = parse_body(
            br#"{"filter":{"type":"query","namespace":"shop.orders","plan_summary":"collscan","cost_time":30000000,
                "client":"10.0.0.5","user":"alice","app_name":"report"},"max":10,"dry_run":true}"#,
        )
        .unwrap();
        assert!(s.dry_run);
        assert_eq!(s.max, 10);
        assert_eq!(s.filter.plan_summary.as_deref(), Some("COLLSCAN"));
        assert_eq!(s.filter.min_cost_time_us, Some(30_000_000));
        assert_eq!(s.filter.client.as_deref(), Some("10.0.0.5"));
        assert!(!parse_body(br#"{"filter":{"user":"a"},"max":1}"#).unwrap().dry_run);

        assert_eq!(code(r#"{"filter":{},"max":5}"#), "DBS.200001");
        assert_eq!(code(r#"{"filter":{"user":"a"}}"#), "DBS.200001");
        for max in ["0", "1001", "-1", "1.5", "\"3\""] {
            assert_eq!(code(&format!(r#"{{"filter":{{"user":"a"}},"max":{max}}}"#)), "DBS.200001", "{max}");
        }
        // Never accept and ignore: unknown and repeated fields are refused.
        assert_eq!(code(r#"{"filter":{"user":"a","users":"b"},"max":5}"#), "DBS.200001");
        assert_eq!(code(r#"{"filter":{"user":"a"},"max":5,"force":true}"#), "DBS.200001");
        assert_eq!(code(r#"{"filter":{"user":"a","user":"b"},"max":5}"#), "DBS.200001");
        assert_eq!(code(r#"{"filter":{"user":""},"max":5}"#), "DBS.200001");
        assert_eq!(code(r#"{"filter":{"type":"drop"},"max":5}"#), "DBS.301073");
        assert_eq!(code(r#"{"filter":{"namespace":"nodot"},"max":5}"#), "DBS.301074");
        assert_eq!(code(r#"{"filter":{"plan_summary":"TABLESCAN"},"max":5}"#), "DBS.301072");
        assert_eq!(code(r#"{"filter":{"cost_time":-1},"max":5}"#), "DBS.200001");
        assert_eq!(code("[]"), "DBS.200001");
    }
}
