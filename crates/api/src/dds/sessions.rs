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
//! Invariant: every kill request that reaches the handler (i.e. authenticated and authorized) is
//! written to the audit table, whatever its outcome: refusals and failures before the answer, an
//! accepted kill once its verification ends (at most the driver's `kill_verify_timeout` later),
//! so that the answer does not wait for the killed operations to unwind.

use axum::Json;
use axum::extract::State;
use docplane_driver::sessions::{self as driver_sessions, MAX_KILL_IDS, SessionFilter, SessionQuery};
use docplane_driver::{KillReport, KillStatus, SessionId, SessionRecord};
use docplane_store::{KillAudit, now_millis};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};

use super::common::{ResolvedNode, check_state_and_version, kill_error, list_error, resolve_node};
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

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
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
        Some(s) if driver_sessions::is_valid_plan_summary(s) => Some(s.to_ascii_uppercase()),
        Some(s) => return Err(ApiError::InvalidPlanSummary(s.to_owned())),
    };
    let op_type = match present(&q.op_type) {
        None => None,
        Some(s) if driver_sessions::is_valid_op_type(s) => Some(s.to_owned()),
        Some(s) => return Err(ApiError::InvalidOperationType(s.to_owned())),
    };
    let namespace = match present(&q.namespace) {
        None => None,
        Some(s) if driver_sessions::is_valid_namespace(s) => Some(s.to_owned()),
        Some(s) => return Err(ApiError::InvalidNamespace(s.to_owned())),
    };
    let min_cost_time_us = match present(&q.cost_time) {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::InvalidCostTime(format!("cost_time must be an integer >= 0, got {s:?}"))
        })?),
    };
    Ok(SessionQuery {
        filter: SessionFilter { plan_summary, op_type, namespace, min_cost_time_us },
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

/// Validates the kill body's structure (pure): an object whose `sessions` is a non-empty array
/// of at most [`MAX_KILL_IDS`] strings.
pub fn parse_kill_body(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| ApiError::BadRequest("body must be a JSON object".into()))?;
    let list = obj
        .get("sessions")
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
    let resolved = resolve_node(&st, p.project_id(), &path.node_id).await?;
    check_state_and_version(&resolved)?;
    let page = driver_sessions::list(&st.driver, &resolved.target, &query).await.map_err(list_error)?;
    Ok(Json(ListSessionsResponse {
        total_count: page.total,
        sessions: page.sessions.into_iter().map(SessionItem::from).collect(),
    }))
}

fn outcome_of(report: &KillReport) -> &'static str {
    if !report.all_issued() {
        "failed"
    } else if report.outcomes.iter().all(|o| o.status == KillStatus::Killed) {
        "killed"
    } else {
        "still_running"
    }
}

/// What the kill produced: refused before killing anything, or killOps issued (some may have
/// failed).
enum Attempt {
    Refused(ApiError),
    Issued { resolved: Box<ResolvedNode>, issued: Vec<(SessionId, docplane_driver::Result<()>)> },
}

async fn attempt(st: &AppState, p: &Principal, node_id: &str, body: &[u8], audit: &mut KillAudit) -> Attempt {
    let inner = async {
        let ids = parse_kill_body(body)?;
        audit.session_ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        let resolved = resolve_node(st, p.project_id(), node_id).await?;
        audit.instance_id = resolved.instance.id.clone();
        // Format first (no node access), so malformed ids never wait on the network.
        driver_sessions::parse_session_ids(&ids, resolved.target.kind).map_err(kill_error)?;
        check_state_and_version(&resolved)?;
        let issued =
            driver_sessions::issue_kill(&st.driver, &resolved.target, &ids).await.map_err(kill_error)?;
        Ok::<_, ApiError>((resolved, issued))
    };
    match inner.await {
        Ok((resolved, issued)) => Attempt::Issued { resolved: Box::new(resolved), issued },
        Err(e) => Attempt::Refused(e),
    }
}

async fn write_audit(st: &AppState, audit: &KillAudit) {
    if let Err(e) = st.store.insert_kill_audit(audit).await {
        tracing::error!(error = %e, audit_id = %audit.id, "kill audit not written");
    }
}

/// Kill sessions of a node.
///
/// Answers as soon as every killOp was accepted; the verification (each op gone from
/// `currentOp`, bounded by the driver's `kill_verify_timeout`) and the audit row with the per-id
/// outcome (`killed` / `still_running`) follow in a background task. Refusals and failures are
/// audited before the answer.
#[utoipa::path(post, path = "/v3/{project_id}/nodes/{node_id}/session", tag = "dds",
    params(("project_id" = String, Path), ("node_id" = String, Path)),
    request_body = KillSessionsBody,
    responses((status = 200, body = Object, description = "`{}`: every session was sent killOp"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.301071 DBS.301077 DBS.200041"),
              (status = 403, body = ErrorBody, description = "DBS.200011 DBS.200019"),
              (status = 404, body = ErrorBody, description = "DBS.200013")))]
pub async fn kill_sessions(
    State(st): State<AppState>,
    p: Principal,
    RequestId(request_id): RequestId,
    ApiPath(path): ApiPath<NodePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let node_id = path.node_id;
    let mut audit = KillAudit {
        id: uuid::Uuid::new_v4().simple().to_string(),
        at: now_millis(),
        project_id: p.project_id().to_owned(),
        instance_id: String::new(),
        node_id: node_id.clone(),
        principal_id: p.user_id.clone(),
        principal_name: p.user_name.clone(),
        request_id,
        session_ids: "[]".into(),
        outcome: String::new(),
        detail: String::new(),
    };
    match attempt(&st, &p, &node_id, &body, &mut audit).await {
        Attempt::Refused(e) => {
            audit.outcome = "refused".into();
            audit.detail = json!({"error_code": e.code_and_status().0, "error": e.to_string()}).to_string();
            write_audit(&st, &audit).await;
            Err(e)
        }
        Attempt::Issued { resolved, issued } if issued.iter().any(|(_, r)| r.is_err()) => {
            let report = driver_sessions::verify_report(&st.driver, &resolved.target, issued).await;
            audit.outcome = outcome_of(&report).into();
            audit.detail = serde_json::to_string(&report.outcomes).unwrap_or_default();
            write_audit(&st, &audit).await;
            Err(ApiError::KillSessionFailed(format!("killOp failed for {}", report.failed_ids().join(", "))))
        }
        Attempt::Issued { resolved, issued } => {
            let driver = st.driver.clone();
            // The verification's log lines keep the request's span (and so its request id).
            tokio::spawn(
                async move {
                    let report = driver_sessions::verify_report(&driver, &resolved.target, issued).await;
                    audit.outcome = outcome_of(&report).into();
                    audit.detail = serde_json::to_string(&report.outcomes).unwrap_or_default();
                    write_audit(&st, &audit).await;
                }
                .in_current_span(),
            );
            Ok(Json(json!({})))
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
            has_opid: true,
        });
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["cost_time"], "1234");
        assert_eq!(v["type"], "command");
        assert_eq!(v["db"], "admin");
        assert!(v.get("user").is_none());
    }
}
