//! Kill records: what every kill request leaves behind, committed before anything is killed.
//!
//! Kill records are written by `docplane_sessions::audit` (intent before killOp, outcome after,
//! refusals too); this module reads them over HTTP and runs the sweeper.
//!
//! Routes (docplane extensions, in the typed route table and the OpenAPI document):
//! - `GET /v3/{project_id}/kill-records` (`dds:audit:list`): records with filters and paging;
//! - `GET /v3/{project_id}/kill-records/verify` (`dds:audit:verify`): recomputes the chain.
//!
//! [`spawn_kill_record_sweeper`] resolves intents left without an outcome by a crash (outcome
//! `unknown`, after reading the node for the targets) and prunes records past retention.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use docplane_iam::AuthMethod;
use docplane_sessions::SessionId;
use docplane_sessions::audit::{Actor, KillRecorder, KillScope, orphan_outcome_entry};
use docplane_store::{
    ChainProblem, KILL_OUTCOME_PENDING, KillRecord, KillRecordFilter, StoreError, now_millis,
    verify_kill_chain,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::common::{limit_param, offset_param, present, resolve_node};
use crate::error::{ApiError, ErrorBody};
use crate::route::{ApiPath, ApiQuery, Principal};
use crate::state::AppState;

/// Default retention of kill records.
pub const DEFAULT_KILL_RECORD_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default period of the sweeper (pending resolution and retention).
pub const DEFAULT_KILL_RECORD_SWEEP: Duration = Duration::from_secs(10);

/// The caller's address (an extractor; `None` when the server was not started with connect info,
/// e.g. in `oneshot` tests).
#[derive(Debug, Clone, Copy)]
pub struct SourceAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(SourceAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// Records a refused kill (nothing was killed, nothing committed) in the project's chain, with the
/// error's code and public message. A store that could not commit the intent
/// (`KillNotRecorded`) cannot take the refusal either, so none is attempted then.
pub async fn record_refusal(st: &AppState, scope: KillScope, actor: Actor, raw_ids: &[String], e: &ApiError) {
    if matches!(e, ApiError::KillNotRecorded(_)) {
        return;
    }
    let (code, _) = e.code_and_status();
    KillRecorder::new(scope, actor)
        .record_refusal(st.store.as_ref(), raw_ids, code, &e.public_message())
        .await;
}

/// The metrics' outcome of a kill request refused with `e`: `not_recorded` when its record could
/// not be committed (nothing killed, nothing recorded), else `refused`.
pub fn refusal_outcome(e: &ApiError) -> &'static str {
    if matches!(e, ApiError::KillNotRecorded(_)) { "not_recorded" } else { "refused" }
}

/// Who asked, as a kill record names them: the principal's user and access key, the request id,
/// the caller's address.
pub fn actor_of(p: &Principal, request_id: String, source: Option<SocketAddr>) -> Actor {
    Actor {
        request_id,
        user_id: p.user_id.clone(),
        user_name: p.user_name.clone(),
        access_key: match &p.method {
            AuthMethod::AccessKey { access_key } => access_key.clone(),
            AuthMethod::Token => String::new(),
        },
        source: source.map(|a| a.to_string()).unwrap_or_default(),
    }
}

// ---- listing

/// Query parameters of the listing, taken as text so that each invalid one gets a clear error.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKillRecordsQuery {
    /// Records whose intent is at or after this time (unix milliseconds).
    pub from: Option<String>,
    /// Records whose intent is before this time (unix milliseconds).
    pub to: Option<String>,
    /// Only this node.
    pub node_id: Option<String>,
    /// A user name, `rule:<id>`, or an access key.
    pub principal: Option<String>,
    /// killed still_running failed unknown refused observed pending.
    pub outcome: Option<String>,
    /// Records to skip, >= 0 (default 0).
    pub offset: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<String>,
}

/// The outcomes a record can have, plus `pending` (no outcome yet).
pub const OUTCOMES: &[&str] =
    &["killed", "still_running", "failed", "unknown", "refused", "observed", KILL_OUTCOME_PENDING];

fn millis(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    present(v)
        .map(|s| {
            s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::BadRequest(format!("{name} must be unix milliseconds >= 0, got {s:?}"))
            })
        })
        .transpose()
}

/// Validates the listing parameters (pure).
pub fn parse_list_query(project_id: &str, q: &ListKillRecordsQuery) -> Result<KillRecordFilter, ApiError> {
    let offset = offset_param(&q.offset)?;
    let limit = limit_param(&q.limit, 20, 100)?;
    let outcome = match present(&q.outcome) {
        None => None,
        Some(s) if OUTCOMES.contains(&s) => Some(s.to_owned()),
        Some(s) => {
            return Err(ApiError::BadRequest(format!(
                "outcome must be one of {}, got {s:?}",
                OUTCOMES.join(" ")
            )));
        }
    };
    let text = |name: &str, v: &Option<String>| -> Result<Option<String>, ApiError> {
        match present(v) {
            Some(s) if s.len() > 256 => Err(ApiError::BadRequest(format!("{name} is longer than 256 bytes"))),
            other => Ok(other.map(str::to_owned)),
        }
    };
    Ok(KillRecordFilter {
        project_id: project_id.to_owned(),
        from: millis("from", &q.from)?,
        to: millis("to", &q.to)?,
        node_id: text("node_id", &q.node_id)?,
        principal: text("principal", &q.principal)?,
        outcome,
        offset,
        limit,
    })
}

/// One kill record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KillRecordItem {
    /// The record id.
    pub id: String,
    /// When the intent was committed (unix ms).
    pub at: i64,
    pub request_id: String,
    /// The user's name (or `rule:<id>`).
    pub principal: String,
    pub user_id: String,
    /// The access key of a signed request (empty for tokens).
    pub access_key: String,
    /// The caller's address.
    pub source: String,
    pub instance_id: String,
    pub node_id: String,
    pub session_ids: Vec<String>,
    /// A snapshot of each target when the kill was asked for.
    #[schema(value_type = Vec<Object>)]
    pub targets: Value,
    /// A selector kill's filter and `max` (absent for kills by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub selector: Option<Value>,
    /// The sessions a selector kill matched but a safety rail skipped (`id`, `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub protected: Option<Value>,
    /// A rule kill's rule: its `id`, `mode` (`kill` or `observe`) and criteria (absent for
    /// kills asked through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
    /// killed still_running failed unknown refused observed, or pending.
    pub outcome: String,
    /// When the outcome was recorded (unix ms).
    pub outcome_at: Option<i64>,
    /// Per-id outcome or the refusal's error.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The intent's chain position and hash.
    pub seq: i64,
    pub hash: String,
    /// The outcome's chain position and hash.
    pub outcome_seq: Option<i64>,
    pub outcome_hash: Option<String>,
}

impl From<KillRecord> for KillRecordItem {
    fn from(r: KillRecord) -> Self {
        let body: Value = serde_json::from_str(&r.intent.body).unwrap_or(Value::Null);
        let s = |k: &str| body[k].as_str().unwrap_or("").to_owned();
        let session_ids = body["session_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        KillRecordItem {
            id: r.intent.record_id.clone(),
            at: r.intent.at,
            request_id: s("request_id"),
            principal: r.intent.principal.clone(),
            user_id: s("user_id"),
            access_key: r.intent.access_key.clone(),
            source: s("source"),
            instance_id: s("instance_id"),
            node_id: r.intent.node_id.clone(),
            session_ids,
            targets: body.get("targets").cloned().unwrap_or(Value::Array(Vec::new())),
            selector: body.get("selector").map(|sel| {
                let mut sel = sel.clone();
                if let (Some(o), Some(max)) = (sel.as_object_mut(), body.get("max")) {
                    o.insert("max".into(), max.clone());
                }
                sel
            }),
            protected: body.get("protected").cloned(),
            rule: body.get("rule_id").map(|id| {
                let mut rule = body.get("rule").cloned().unwrap_or_else(|| Value::Object(Default::default()));
                if let Some(o) = rule.as_object_mut() {
                    o.insert("id".into(), id.clone());
                    o.insert("mode".into(), body.get("mode").cloned().unwrap_or(Value::Null));
                }
                rule
            }),
            outcome: r
                .outcome
                .as_ref()
                .map_or_else(|| KILL_OUTCOME_PENDING.to_owned(), |o| o.outcome.clone()),
            outcome_at: r.outcome.as_ref().map(|o| o.at),
            detail: r
                .outcome
                .as_ref()
                .and_then(|o| serde_json::from_str(&o.body).ok())
                .unwrap_or(Value::Null),
            seq: r.intent.seq,
            hash: r.intent.hash,
            outcome_seq: r.outcome.as_ref().map(|o| o.seq),
            outcome_hash: r.outcome.map(|o| o.hash),
        }
    }
}

/// The listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListKillRecordsResponse {
    pub total_count: i64,
    pub records: Vec<KillRecordItem>,
}

/// Path of the project routes.
#[derive(Debug, Deserialize)]
pub struct ProjectPath {
    /// The caller's project (checked by the auth layer).
    pub project_id: String,
}

/// List the kill records of the project (docplane extension).
#[utoipa::path(get, path = "/v3/{project_id}/kill-records", tag = "audit",
    params(("project_id" = String, Path), ListKillRecordsQuery),
    responses((status = 200, body = ListKillRecordsResponse),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.280439 DBS.280440")))]
pub async fn list_kill_records(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(_path): ApiPath<ProjectPath>,
    ApiQuery(q): ApiQuery<ListKillRecordsQuery>,
) -> Result<Json<ListKillRecordsResponse>, ApiError> {
    let filter = parse_list_query(p.project_id(), &q)?;
    let (records, total) = st.store.list_kill_records(&filter).await?;
    Ok(Json(ListKillRecordsResponse {
        total_count: total,
        records: records.into_iter().map(KillRecordItem::from).collect(),
    }))
}

/// The chain verification's result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyKillRecordsResponse {
    /// True when no problem was found.
    pub ok: bool,
    /// Entries read (intents and outcomes).
    pub entries: i64,
    /// The head's last seq (0 before the first entry).
    pub head_seq: i64,
    /// Entries up to this seq were pruned by retention.
    pub base_seq: i64,
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<ChainProblem>,
}

/// Entries read per store round trip by the verifier.
const VERIFY_PAGE: i64 = 1000;

/// Recompute the project's kill chain and report edited, inserted or deleted entries (docplane
/// extension).
#[utoipa::path(get, path = "/v3/{project_id}/kill-records/verify", tag = "audit",
    params(("project_id" = String, Path)),
    responses((status = 200, body = VerifyKillRecordsResponse)))]
pub async fn verify_kill_records(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(_path): ApiPath<ProjectPath>,
) -> Result<Json<VerifyKillRecordsResponse>, ApiError> {
    let project = p.project_id();
    let head = st.store.kill_chain_head(project).await?;
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = st.store.kill_log_entries(project, after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= VERIFY_PAGE;
        entries.extend(page);
        if !full {
            break;
        }
    }
    let problems = verify_kill_chain(head.as_ref(), &entries);
    Ok(Json(VerifyKillRecordsResponse {
        ok: problems.is_empty(),
        entries: i64::try_from(entries.len()).unwrap_or(i64::MAX),
        head_seq: head.as_ref().map_or(0, |h| h.seq),
        base_seq: head.as_ref().map_or(0, |h| h.base_seq),
        problems,
    }))
}

// ---- the sweeper: crash resolution and retention

/// Resolves intents older than `grace` that have no outcome: reads the node for their targets
/// and records outcome `unknown` (with the ids the node still lists, or why it could not be
/// read). Returns how many were resolved. Safe with several replicas: a record gets at most one
/// outcome (the store refuses a second).
pub async fn resolve_pending(st: &AppState, grace: Duration) -> Result<usize, StoreError> {
    let before = now_millis() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let pending = st.store.pending_kill_intents(before, 100).await?;
    let mut resolved = 0;
    for intent in pending {
        let body: Value = serde_json::from_str(&intent.body).unwrap_or(Value::Null);
        let ids: Vec<String> = body["targets"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let check = match resolve_node(st, &intent.project_id, &intent.node_id).await {
            Err(e) => json!({"node_error": e.to_string()}),
            Ok((node, _)) => {
                let parsed: Vec<SessionId> =
                    ids.iter().filter_map(|id| SessionId::parse(id, node.target.kind)).collect();
                match docplane_sessions::kill::ops_matching(&st.driver, &node.target, &parsed).await {
                    Ok(listed) => {
                        json!({"still_listed": listed.iter().map(|r| r.id.clone()).collect::<Vec<_>>()})
                    }
                    Err(e) => json!({"node_error": e.to_string()}),
                }
            }
        };
        let detail = json!({"resolved_by": "sweeper", "reason": "no outcome was recorded (the process stopped)", "check": check});
        let e = orphan_outcome_entry(&intent, "unknown", &detail);
        match st.store.append_kill_entry(&e).await {
            Ok(_) => resolved += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(resolved)
}

/// Settings of the sweeper.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Pause between sweeps (the first runs at once).
    pub every: Duration,
    /// Records older than this are pruned.
    pub retention: Duration,
}

/// Spawns the sweeper: at start and then every `every`, resolves pending intents older than the
/// longest a kill can take (the driver's operation timeout twice plus the verify deadline) and
/// prunes records past retention. Aborted with the server.
pub fn spawn_kill_record_sweeper(st: &AppState, cfg: SweepConfig) -> tokio::task::JoinHandle<()> {
    let grace = {
        let dc = st.driver.config();
        dc.operation_timeout * 2 + dc.kill_verify_timeout + Duration::from_secs(1)
    };
    let st = st.clone();
    tokio::spawn(async move {
        loop {
            match resolve_pending(&st, grace).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(resolved = n, "kill records without outcome resolved as unknown"),
                Err(e) => tracing::error!(error = %e, "resolving pending kill records failed"),
            }
            let cutoff = now_millis() - i64::try_from(cfg.retention.as_millis()).unwrap_or(i64::MAX);
            match st.store.prune_kill_log(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "kill log entries past retention pruned"),
                Err(e) => tracing::error!(error = %e, "pruning kill records failed"),
            }
            tokio::time::sleep(cfg.every).await;
        }
    })
}
