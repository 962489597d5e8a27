//! `GET /v3/{project_id}/nodes/{node_id}/sessions` and `POST /v3/{project_id}/nodes/{node_id}/session`.
//!
//! Validation order (each failure has its own vendor code):
//! - list: `offset` (`DBS.280440`), `limit` (`DBS.280439`), `plan_summary` (`DBS.301072`),
//!   `type` (`DBS.301073`), `namespace` (`DBS.301074`), `cost_time` (`DBS.301075`); then the node
//!   in the caller's project (`DBS.200013`), its instance's state (`DBS.200011`), its own state
//!   (`DBS.200019`) and version (`DBS.200041`);
//!   a node that cannot be read gives `DBS.301076`.
//! - kill: the body (`DBS.200001`: a JSON object whose `sessions` is a non-empty array of at most
//!   1,000 strings); the node (`DBS.200013`); each id's format for the node kind (`DBS.301071`);
//!   state and version; then the driver checks every id against the node's current operations and
//!   refuses unknown or inactive ones (`DBS.301071`, naming them) before killing anything; a node
//!   that cannot be reached or a failed killOp gives `DBS.301077`.
//!
//! Invariant: no killOp is sent before the kill's record (its intent, with a snapshot of every
//! target) is committed, and every kill request that reaches the handler (authenticated and
//! authorized) leaves a record, refusals included (see [`super::kill_records`]). The answer
//! comes after the outcome is known and recorded: `200` only once every killed operation has
//! left the node's `$currentOp`.

use axum::Json;
use axum::extract::State;
use docplane_sessions::{
    self as sessions, KillRecorder, KillScope, KillStatus, MAX_KILL_IDS, NodeRef, SessionFilter,
    SessionQuery, SessionRecord, select as session_select,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::common::{check_state_and_version, kill_error, list_error, present, resolve_node};
use super::kill_records::{SourceAddr, actor_of, record_refusal, refusal_outcome};
use crate::error::{ApiError, ErrorBody};
use crate::observe::RequestId;
use crate::route::{ApiBytes, ApiPath, ApiQuery, Principal};
use crate::state::AppState;

/// Path parameters of the node routes.
#[derive(Debug, Deserialize)]
pub struct NodePath {
    /// The caller's project (checked by the auth layer).
    pub project_id: String,
    /// The node.
    pub node_id: String,
}

/// Default page size of the list API.
pub const DEFAULT_LIMIT: u64 = 10;
/// Largest page size of the list API.
pub const MAX_LIMIT: u64 = 100;

/// Query parameters of the list API, taken as text so that each invalid one gets its own code.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSessionsQuery {
    /// Records to skip, >= 0 (default 0).
    pub offset: Option<String>,
    /// Page size, 1..=100 (default 10).
    pub limit: Option<String>,
    /// A plan stage: COLLSCAN IXSCAN FETCH SORT LIMIT SKIP COUNT COUNT_SCAN TEXT PROJECTION ...
    pub plan_summary: Option<String>,
    /// none update insert query command getmore remove killcursors.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub op_type: Option<String>,
    /// `db.collection`.
    pub namespace: Option<String>,
    /// Only sessions running longer than this many microseconds.
    pub cost_time: Option<String>,
}

/// Validates the list parameters (pure).
pub fn parse_list_query(q: &ListSessionsQuery) -> Result<SessionQuery, ApiError> {
    let offset = match present(&q.offset) {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::InvalidOffset(format!("offset must be an integer >= 0, got {s:?}")))?,
    };
    let limit = match present(&q.limit) {
        None => DEFAULT_LIMIT,
        Some(s) => s.parse::<u64>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::InvalidLimit(format!("limit must be an integer in [1, {MAX_LIMIT}], got {s:?}"))
        })?,
    };
    let plan_summary = match present(&q.plan_summary) {
        None => None,
        Some(s) if session_select::is_valid_plan_summary(s) => Some(s.to_ascii_uppercase()),
        Some(s) => return Err(ApiError::InvalidPlanSummary(s.to_owned())),
    };
    let op_type = match present(&q.op_type) {
        None => None,
        Some(s) if session_select::is_valid_op_type(s) => Some(s.to_owned()),
        Some(s) => return Err(ApiError::InvalidOperationType(s.to_owned())),
    };
    let namespace = match present(&q.namespace) {
        None => None,
        Some(s) if session_select::is_valid_namespace(s) => Some(s.to_owned()),
        Some(s) => return Err(ApiError::InvalidNamespace(s.to_owned())),
    };
    let min_cost_time_us = match present(&q.cost_time) {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::InvalidCostTime(format!("cost_time must be an integer >= 0, got {s:?}"))
        })?),
    };
    Ok(SessionQuery {
        filter: SessionFilter {
            plan_summary,
            op_type,
            namespace,
            min_cost_time_us,
            ..SessionFilter::default()
        },
        offset,
        limit,
    })
}

/// One session, in the vendor's shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SessionItem {
    /// Decimal opid (mongod) or `shard:opid` (mongos); `connN` / `lsid:<uuid>` for idle entries.
    pub id: String,
    pub active: bool,
    /// The command as JSON text.
    pub operation: String,
    #[serde(rename = "type")]
    pub op_type: String,
    /// Microseconds running, as a string.
    pub cost_time: String,
    pub plan_summary: String,
    pub host: String,
    pub client: String,
    /// e.g. `conn20`.
    pub description: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl From<SessionRecord> for SessionItem {
    fn from(r: SessionRecord) -> Self {
        SessionItem {
            id: r.id,
            active: r.active,
            operation: r.operation,
            op_type: r.op_type,
            cost_time: r.cost_time_us.to_string(),
            plan_summary: r.plan_summary,
            host: r.host,
            client: r.client,
            description: r.description,
            namespace: r.namespace,
            db: r.db,
            user: r.user,
        }
    }
}

/// The list response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListSessionsResponse {
    pub total_count: u64,
    pub sessions: Vec<SessionItem>,
}

/// The kill request body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KillSessionsBody {
    /// 1..=1000 session ids as returned by the list API.
    pub sessions: Vec<String>,
}

/// The kill body's fields, for refusing duplicate and unknown ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBodyFields {
    sessions: Option<Value>,
}

/// Validates the kill body's structure (pure): an object whose `sessions` is a non-empty array
/// of at most [`MAX_KILL_IDS`] strings.
pub fn parse_kill_body(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    }
    // The vendor's body has one field. A second `sessions` (serde_json's `Value` keeps the last)
    // or any other field is refused rather than ignored.
    let body: KillBodyFields =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid kill body: {e}")))?;
    let list = body
        .sessions
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("sessions is required".into()))?
        .as_array()
        .ok_or_else(|| ApiError::BadRequest("sessions must be an array of strings".into()))?;
    if list.is_empty() {
        return Err(ApiError::BadRequest("sessions must not be empty".into()));
    }
    if list.len() > MAX_KILL_IDS {
        return Err(ApiError::BadRequest(format!("sessions may hold at most {MAX_KILL_IDS} ids")));
    }
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::BadRequest("sessions must be an array of strings".into()))
        })
        .collect()
}

/// List the sessions of a node.
#[utoipa::path(get, path = "/v3/{project_id}/nodes/{node_id}/sessions", tag = "dds",
    params(("project_id" = String, Path), ("node_id" = String, Path), ListSessionsQuery),
    responses((status = 200, body = ListSessionsResponse),
              (status = 400, body = ErrorBody, description = "DBS.280439 DBS.280440 DBS.301072..DBS.301076 DBS.200041"),
              (status = 403, body = ErrorBody, description = "DBS.200011 DBS.200019"),
              (status = 404, body = ErrorBody, description = "DBS.200013")))]
pub async fn list_sessions(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<NodePath>,
    ApiQuery(q): ApiQuery<ListSessionsQuery>,
) -> Result<Json<ListSessionsResponse>, ApiError> {
    let query = parse_list_query(&q)?;
    let (resolved, settings) = resolve_node(&st, p.project_id(), &path.node_id).await?;
    check_state_and_version(&resolved)?;
    let node = NodeRef { project_id: p.project_id(), target: &resolved.target, settings: &settings };
    let page = st.sessions.list(node, &query).await.map_err(list_error)?;
    Ok(Json(ListSessionsResponse {
        total_count: page.total,
        sessions: page.sessions.into_iter().map(SessionItem::from).collect(),
    }))
}

/// Kill sessions of a node.
///
/// In order: validate and check every id against the node (refusing all-or-nothing); commit the
/// kill record's intent (a store failure refuses the kill, `DBS.900503`, nothing killed); send
/// killOp; poll the node until every killed operation has left `$currentOp` or the verify
/// deadline passes; append the outcome; answer. `200 {}` means every operation is gone;
/// `DBS.301077` names the ids still running at the deadline, or says the node could not be read
/// to verify, or that a killOp failed. Refusals are recorded too.
#[utoipa::path(post, path = "/v3/{project_id}/nodes/{node_id}/session", tag = "dds",
    params(("project_id" = String, Path), ("node_id" = String, Path)),
    request_body = KillSessionsBody,
    responses((status = 200, body = Object, description = "`{}`: every session was killed and has left the node's currentOp"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.301071 DBS.301077 DBS.200041"),
              (status = 403, body = ErrorBody, description = "DBS.200011 DBS.200019"),
              (status = 404, body = ErrorBody, description = "DBS.200013"),
              (status = 503, body = ErrorBody, description = "DBS.900503: the kill could not be recorded; nothing was killed")))]
pub async fn kill_sessions(
    State(st): State<AppState>,
    p: Principal,
    RequestId(request_id): RequestId,
    SourceAddr(source): SourceAddr,
    ApiPath(path): ApiPath<NodePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let actor = actor_of(&p, request_id, source);
    let mut raw_ids = Vec::new();
    let mut scope = KillScope {
        project_id: p.project_id().to_owned(),
        instance_id: String::new(),
        node_id: path.node_id.clone(),
    };
    let started = std::time::Instant::now();
    let result = async {
        raw_ids = parse_kill_body(&body)?;
        let (resolved, settings) = resolve_node(&st, p.project_id(), &path.node_id).await?;
        let resolved_at = started.elapsed();
        scope.instance_id.clone_from(&resolved.instance.id);
        // Format first (no node access), so malformed ids never wait on the network.
        sessions::parse_session_ids(&raw_ids, resolved.target.kind).map_err(kill_error)?;
        check_state_and_version(&resolved)?;
        let recorder = KillRecorder::new(scope.clone(), actor.clone());
        let node = NodeRef { project_id: p.project_id(), target: &resolved.target, settings: &settings };
        let done = st.sessions.kill_ids(node, &recorder, &raw_ids).await.map_err(kill_error);
        tracing::debug!(
            target: sessions::KILL_PHASES,
            phase = "api",
            resolve_us = sessions::micros(resolved_at),
            handler_us = sessions::micros(started.elapsed()),
        );
        done
    }
    .await;
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            st.metrics.kill("ids", refusal_outcome(&e));
            record_refusal(&st, scope, actor, &raw_ids, &e).await;
            return Err(e);
        }
    };
    st.metrics.kill("ids", crate::metrics::kill_outcome(done.outcome));
    let ids_with = |f: fn(&KillStatus) -> bool| -> Vec<String> {
        done.report.outcomes.iter().filter(|o| f(&o.status)).map(|o| o.id.clone()).collect()
    };
    match done.outcome {
        "killed" => Ok(Json(json!({}))),
        "still_running" => Err(ApiError::KillStillRunning(ids_with(|s| *s == KillStatus::StillRunning))),
        "unknown" => Err(ApiError::KillUnverified(ids_with(|s| *s == KillStatus::Unknown))),
        _ => {
            let first = done.report.outcomes.iter().find_map(|o| match &o.status {
                KillStatus::Failed { message, .. } => Some(message.clone()),
                _ => None,
            });
            Err(ApiError::KillSessionFailed(
                crate::error::NodeCause::Other,
                format!(
                    "killOp failed for {}: {}",
                    done.report.failed_ids().join(", "),
                    first.unwrap_or_default()
                ),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> ListSessionsQuery {
        let mut out = ListSessionsQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "offset" => out.offset = v,
                "limit" => out.limit = v,
                "plan_summary" => out.plan_summary = v,
                "type" => out.op_type = v,
                "namespace" => out.namespace = v,
                "cost_time" => out.cost_time = v,
                _ => unreachable!(),
            }
        }
        out
    }

    fn code(r: Result<SessionQuery, ApiError>) -> &'static str {
        r.unwrap_err().code_and_status().0
    }

    #[test]
    fn list_parameters() {
        let d = parse_list_query(&q(&[])).unwrap();
        assert_eq!((d.offset, d.limit), (0, DEFAULT_LIMIT));
        assert_eq!(d.filter, SessionFilter::default());
        let full = parse_list_query(&q(&[
            ("offset", "20"),
            ("limit", "100"),
            ("plan_summary", "collscan"),
            ("type", "query"),
            ("namespace", "shop.orders"),
            ("cost_time", "1000"),
        ]))
        .unwrap();
        assert_eq!((full.offset, full.limit), (20, 100));
        assert_eq!(full.filter.plan_summary.as_deref(), Some("COLLSCAN"));
        assert_eq!(full.filter.op_type.as_deref(), Some("query"));
        assert_eq!(full.filter.namespace.as_deref(), Some("shop.orders"));
        assert_eq!(full.filter.min_cost_time_us, Some(1000));
        // An empty value means "absent".
        assert_eq!(parse_list_query(&q(&[("type", "")])).unwrap().filter.op_type, None);

        for bad in ["0", "101", "-1", "x", "1.5"] {
            assert_eq!(code(parse_list_query(&q(&[("limit", bad)]))), "DBS.280439", "{bad}");
        }
        for bad in ["-1", "x", "1e3"] {
            assert_eq!(code(parse_list_query(&q(&[("offset", bad)]))), "DBS.280440", "{bad}");
        }
        assert_eq!(code(parse_list_query(&q(&[("plan_summary", "TABLESCAN")]))), "DBS.301072");
        assert_eq!(code(parse_list_query(&q(&[("type", "drop")]))), "DBS.301073");
        assert_eq!(code(parse_list_query(&q(&[("namespace", "nodot")]))), "DBS.301074");
        assert_eq!(code(parse_list_query(&q(&[("cost_time", "-5")]))), "DBS.301075");
        assert_eq!(code(parse_list_query(&q(&[("cost_time", "soon")]))), "DBS.301075");
    }

    #[test]
    fn kill_body() {
        assert_eq!(parse_kill_body(br#"{"sessions":["1","2"]}"#).unwrap(), vec!["1", "2"]);
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"sessions":"1"}"#,
            br#"{"sessions":[]}"#,
            br#"{"sessions":[1]}"#,
            br#"{"sessions":["1",null]}"#,
            // Never accept and ignore: a repeated `sessions` or another field is refused.
            br#"{"sessions":["1"],"sessions":["2"]}"#,
            br#"{"sessions":["1"],"dry_run":true}"#,
        ] {
            let e = parse_kill_body(bad).unwrap_err();
            assert_eq!(e.code_and_status().0, "DBS.200001", "{}", String::from_utf8_lossy(bad));
        }
        let many: Vec<String> = (0..=MAX_KILL_IDS).map(|i| i.to_string()).collect();
        let body = serde_json::to_vec(&json!({ "sessions": many })).unwrap();
        assert_eq!(parse_kill_body(&body).unwrap_err().code_and_status().0, "DBS.200001");
        let body = serde_json::to_vec(&json!({ "sessions": &many[..MAX_KILL_IDS] })).unwrap();
        assert_eq!(parse_kill_body(&body).unwrap().len(), MAX_KILL_IDS);
    }

    #[test]
    fn session_item_shape() {
        let item = SessionItem::from(SessionRecord {
            id: "42".into(),
            active: true,
            operation: "{\"sleep\":1}".into(),
            op_type: "command".into(),
            cost_time_us: 1234,
            plan_summary: String::new(),
            host: "h:1".into(),
            client: "c:2".into(),
            description: "conn3".into(),
            namespace: "admin.$cmd".into(),
            db: Some("admin".into()),
            user: None,
            app_name: None,
            has_opid: true,
        });
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["cost_time"], "1234");
        assert_eq!(v["type"], "command");
        assert_eq!(v["db"], "admin");
        assert!(v.get("user").is_none());
    }
}
