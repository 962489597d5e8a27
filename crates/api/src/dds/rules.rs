//! Kill-op rules, the vendor's automatic kills: `POST` (CreateKillOpRule), `GET`
//! (ShowKillOpRuleRuleList), `PUT` (UpdateKillOpRule: enable / disable) and `DELETE`
//! (DeleteKillOpRuleList) on `/v3/{project_id}/instances/{instance_id}/kill-op-rule`, with the
//! vendor's IAM actions `dds:instance:createKillOpRule`, `getKillOpRule`, `updateKillOpRule`,
//! `deleteKillOpRule`. What a rule matches and kills is `docplane_sessions::rules`'s
//! documentation; the enforcer that applies enabled rules is [`super::enforcer`].
//!
//! Create: the body is checked field by field, each invalid input with its own code
//! (`docs/errors.md`): `operation_types` (required, 1..=6 distinct of `insert update query
//! command remove getmore`: `DBS.301073`), `namespaces` (at most one `db` or `db.coll`:
//! `DBS.301074`), `client_ips` (at most 5 distinct IPv4: `DBS.900110`), `plan_summary` (one of
//! the vendor's eight, or empty: `DBS.301072`), `max_concurrency` (0 or 1..=100000:
//! `DBS.900111`), `secs_running` (0 or 2..=86400: `DBS.900112`; not both 0: `DBS.900113`),
//! `node_type` (required, and fitting the instance's mode: `DBS.900114`), docplane's `mode`
//! (`kill`, the default, or `observe`: `DBS.900115`); an unknown or repeated field, or a value of
//! the wrong JSON type, is `DBS.200001`. Then the instance (`DBS.200002`) and its limit of 10
//! rules (`DBS.900116`). A rule starts `DISABLED`. Nothing is written on any refusal. The answer
//! is `{"id": ...}` (the vendor's is empty; the SDK ignores the field).
//!
//! List: `operation_types`, `namespaces`, `plan_summary` (each one value, or several joined by
//! commas, matching a rule holding any of them), `status`, `offset`, `limit` (1..=100, default
//! 100). In the answer `operation_types`, `namespaces` and `client_ips` are strings, as the
//! vendor's `KillOpRule` model types them: the values joined by commas (empty for "any").
//!
//! Enable / disable / delete take `ids` (1..=10 strings; repeats collapse) and act on all of them
//! or on none: an id that names no rule of the instance is `DBS.900117`; deleting an enabled rule
//! is `DBS.900120` (the vendor deletes only disabled rules).

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use docplane_sessions::rules::{
    self as vocab, MAX_CONCURRENCY_RANGE, MAX_RULE_CLIENT_IPS, MAX_RULE_NAMESPACES, MAX_RULE_OP_TYPES,
    RULE_MODES, RULE_NODE_TYPES, RULE_OP_TYPES, RULE_PLAN_SUMMARIES, SECS_RUNNING_RANGE,
};
use docplane_store::{
    CreateRuleOutcome, InstanceMode, KillOpRule, MAX_KILL_OP_RULES, StoreError, now_millis, rule_status,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::common::{limit_param, offset_param, present};
use super::instances::InstancePath;
use crate::error::{ApiError, ErrorBody};
use crate::route::{ApiBytes, ApiPath, ApiQuery, Principal};
use crate::state::AppState;

/// Most ids one enable / disable / delete takes (an instance has at most 10 rules).
pub const MAX_RULE_IDS: usize = 10;

/// The body of `POST .../kill-op-rule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateKillOpRuleBody {
    /// 1..=6 of `insert update query command remove getmore`; a match on any.
    pub operation_types: Vec<String>,
    /// At most one `db` or `db.coll`; empty or absent: any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// At most 5 IPv4 client addresses; empty or absent: any.
    #[serde(default)]
    pub client_ips: Vec<String>,
    /// One of `COLLSCAN SORT_KEY_GENERATOR SKIP LIMIT GEO_NEAR_2DSPHERE GEO_NEAR_2D AGGREGATE OR`;
    /// empty or absent: any.
    #[serde(default)]
    pub plan_summary: String,
    /// 0 (no limit) or 1..=100000 matching operations at once.
    #[serde(default)]
    pub max_concurrency: i64,
    /// 0 (no limit) or 2..=86400 seconds; not both 0.
    #[serde(default)]
    pub secs_running: i64,
    /// `mongos_shard`, `mongos`, `shard` or `replica`.
    pub node_type: String,
    /// docplane extension: `kill` (default) or `observe` (record what would be killed).
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "kill".into()
}

/// The answer to a create (the vendor's is empty).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateKillOpRuleResponse {
    /// The new rule's id.
    pub id: String,
}

/// One rule as the vendor's list shows it (the lists joined by commas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KillOpRuleItem {
    pub id: String,
    /// The operation types joined by commas, e.g. `query,insert`.
    pub operation_types: String,
    /// `ENABLED` or `DISABLED`.
    pub status: String,
    /// The namespaces joined by commas (empty: any).
    pub namespaces: String,
    /// The client IPs joined by commas (empty: any).
    pub client_ips: String,
    pub plan_summary: String,
    pub max_concurrency: i64,
    pub secs_running: i64,
    pub node_type: String,
    /// docplane extension: `kill` or `observe`.
    pub mode: String,
}

impl From<KillOpRule> for KillOpRuleItem {
    fn from(r: KillOpRule) -> Self {
        KillOpRuleItem {
            id: r.id,
            operation_types: r.operation_types.join(","),
            status: r.status,
            namespaces: r.namespaces.join(","),
            client_ips: r.client_ips.join(","),
            plan_summary: r.plan_summary,
            max_concurrency: r.max_concurrency,
            secs_running: r.secs_running,
            node_type: r.node_type,
            mode: r.mode,
        }
    }
}

/// The list answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListKillOpRulesResponse {
    pub rules: Vec<KillOpRuleItem>,
    /// Rules matching the filters (before paging).
    pub total_count: usize,
}

/// The list's query parameters (text, so that malformed values get their own codes).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKillOpRulesQuery {
    pub operation_types: Option<String>,
    pub namespaces: Option<String>,
    /// `ENABLED` or `DISABLED`.
    pub status: Option<String>,
    pub plan_summary: Option<String>,
    pub offset: Option<String>,
    /// 1..=100, default 100.
    pub limit: Option<String>,
}

/// The body of `PUT .../kill-op-rule`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateKillOpRuleBody {
    pub ids: Vec<String>,
    /// `enable` or `disable`.
    pub action: String,
}

/// The body of `DELETE .../kill-op-rule`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeleteKillOpRuleBody {
    pub ids: Vec<String>,
}

/// A create body's fields, only to refuse repeated and unknown ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "deserialized only to refuse repeated and unknown fields")]
struct CreateFields {
    operation_types: Option<serde::de::IgnoredAny>,
    namespaces: Option<serde::de::IgnoredAny>,
    client_ips: Option<serde::de::IgnoredAny>,
    plan_summary: Option<serde::de::IgnoredAny>,
    max_concurrency: Option<serde::de::IgnoredAny>,
    secs_running: Option<serde::de::IgnoredAny>,
    node_type: Option<serde::de::IgnoredAny>,
    mode: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "deserialized only to refuse repeated and unknown fields")]
struct IdsFields {
    ids: Option<serde::de::IgnoredAny>,
    action: Option<serde::de::IgnoredAny>,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::BadRequest("body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("body is not valid JSON: {e}"))),
    }
}

/// A list field: absent or `null` is empty; otherwise an array of strings (`DBS.200001` if not).
fn string_list(o: &Map<String, Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::BadRequest(format!("{field}[{i}] must be a string"))),
            })
            .collect(),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be an array of strings"))),
    }
}

fn string_field(o: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be a string"))),
    }
}

/// An integer field: absent or `null` is 0; a non-integer is `bad`'s error.
fn int_field(o: &Map<String, Value>, field: &str, bad: fn(String) -> ApiError) -> Result<i64, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad(format!("{n} is not an integer"))),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be an integer"))),
    }
}

fn distinct(values: &[String]) -> bool {
    let mut seen = HashSet::new();
    values.iter().all(|v| seen.insert(v.as_str()))
}

/// Validates a create body (pure) against an instance of `mode`: see the module doc for the
/// order and the codes. Answers the rule (id, status and times set; `DISABLED`).
pub fn parse_create_body(body: &[u8], instance_id: &str, mode: InstanceMode) -> Result<KillOpRule, ApiError> {
    let o = object(body)?;
    let _: CreateFields = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid killOp rule: {e}")))?;
    let operation_types = string_list(&o, "operation_types")?;
    if operation_types.is_empty() {
        return Err(ApiError::InvalidOperationType("operation_types is required (1 to 6 types)".into()));
    }
    if operation_types.len() > MAX_RULE_OP_TYPES || !distinct(&operation_types) {
        return Err(ApiError::InvalidOperationType(format!(
            "operation_types takes at most {MAX_RULE_OP_TYPES} distinct types"
        )));
    }
    if let Some(t) = operation_types.iter().find(|t| !RULE_OP_TYPES.contains(&t.as_str())) {
        return Err(ApiError::InvalidOperationType(format!(
            "{t:?} is not one of {}",
            RULE_OP_TYPES.join(" ")
        )));
    }
    let namespaces = string_list(&o, "namespaces")?;
    if namespaces.len() > MAX_RULE_NAMESPACES {
        return Err(ApiError::InvalidNamespace(format!(
            "namespaces takes at most {MAX_RULE_NAMESPACES} value"
        )));
    }
    if let Some(n) = namespaces.iter().find(|n| !vocab::is_valid_rule_namespace(n)) {
        return Err(ApiError::InvalidNamespace(format!("{n:?} is not a database name or db.collection")));
    }
    let client_ips = string_list(&o, "client_ips")?;
    if client_ips.len() > MAX_RULE_CLIENT_IPS || !distinct(&client_ips) {
        return Err(ApiError::InvalidRuleClientIps(format!(
            "at most {MAX_RULE_CLIENT_IPS} distinct addresses"
        )));
    }
    if let Some(ip) = client_ips.iter().find(|ip| !vocab::is_valid_ipv4(ip)) {
        return Err(ApiError::InvalidRuleClientIps(format!("{ip:?} is not an IPv4 address")));
    }
    let plan_summary = string_field(&o, "plan_summary")?.unwrap_or_default();
    if !plan_summary.is_empty() && !RULE_PLAN_SUMMARIES.contains(&plan_summary.as_str()) {
        return Err(ApiError::InvalidPlanSummary(format!(
            "{plan_summary:?} is not one of {}",
            RULE_PLAN_SUMMARIES.join(" ")
        )));
    }
    let max_concurrency = int_field(&o, "max_concurrency", ApiError::InvalidRuleMaxConcurrency)?;
    let (lo, hi) = MAX_CONCURRENCY_RANGE;
    if max_concurrency != 0 && !(lo..=hi).contains(&max_concurrency) {
        return Err(ApiError::InvalidRuleMaxConcurrency(format!(
            "{max_concurrency} is not 0 or {lo}..={hi}"
        )));
    }
    let secs_running = int_field(&o, "secs_running", ApiError::InvalidRuleSecsRunning)?;
    let (lo, hi) = SECS_RUNNING_RANGE;
    if secs_running != 0 && !(lo..=hi).contains(&secs_running) {
        return Err(ApiError::InvalidRuleSecsRunning(format!("{secs_running} is not 0 or {lo}..={hi}")));
    }
    if secs_running == 0 && max_concurrency == 0 {
        return Err(ApiError::RuleWithoutLimit);
    }
    let node_type = string_field(&o, "node_type")?.ok_or_else(|| {
        ApiError::InvalidRuleNodeType(format!("node_type is required ({})", RULE_NODE_TYPES.join(" ")))
    })?;
    if !RULE_NODE_TYPES.contains(&node_type.as_str()) {
        return Err(ApiError::InvalidRuleNodeType(format!(
            "{node_type:?} is not one of {}",
            RULE_NODE_TYPES.join(" ")
        )));
    }
    if !vocab::fits_mode(&node_type, mode) {
        return Err(ApiError::InvalidRuleNodeType(format!("{node_type} names no node of a {mode} instance")));
    }
    let rule_mode = string_field(&o, "mode")?.unwrap_or_else(default_mode);
    if !RULE_MODES.contains(&rule_mode.as_str()) {
        return Err(ApiError::InvalidRuleMode(format!("{rule_mode:?} is not kill or observe")));
    }
    let now = now_millis();
    Ok(KillOpRule {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        instance_id: instance_id.to_owned(),
        operation_types,
        namespaces,
        client_ips,
        plan_summary,
        max_concurrency,
        secs_running,
        node_type,
        status: rule_status::DISABLED.into(),
        mode: rule_mode,
        created_at: now,
        updated_at: now,
    })
}

/// Validates an enable / disable (`with_action`) or delete body (pure): the ids, repeats
/// collapsed, and the action's new status.
pub fn parse_ids_body(
    body: &[u8],
    with_action: bool,
) -> Result<(Vec<String>, Option<&'static str>), ApiError> {
    let o = object(body)?;
    let _: IdsFields =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    if !with_action && o.contains_key("action") {
        return Err(ApiError::BadRequest("unknown field `action`, expected `ids`".into()));
    }
    let ids = match o.get("ids") {
        None | Some(Value::Null) => return Err(ApiError::InvalidRuleIds("ids is required".into())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::InvalidRuleIds("ids must be strings".into()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::InvalidRuleIds("ids must be an array of strings".into())),
    };
    let mut seen = HashSet::new();
    let ids: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
    if ids.is_empty() || ids.len() > MAX_RULE_IDS {
        return Err(ApiError::InvalidRuleIds(format!("1 to {MAX_RULE_IDS} ids, got {}", ids.len())));
    }
    if let Some(id) = ids.iter().find(|id| id.is_empty() || id.len() > 64) {
        return Err(ApiError::RuleNotFound(format!("{id:?}")));
    }
    let status = if with_action {
        match o.get("action") {
            Some(Value::String(a)) if a == "enable" => Some(rule_status::ENABLED),
            Some(Value::String(a)) if a == "disable" => Some(rule_status::DISABLED),
            Some(Value::String(a)) => {
                return Err(ApiError::InvalidRuleAction(format!("{a:?} is not enable or disable")));
            }
            None | Some(Value::Null) => return Err(ApiError::InvalidRuleAction("action is required".into())),
            Some(_) => return Err(ApiError::BadRequest("action must be a string".into())),
        }
    } else {
        None
    };
    Ok((ids, status))
}

/// A list filter: one value or several joined by commas, each checked by `valid`.
fn filter_values(
    v: &Option<String>,
    valid: impl Fn(&str) -> bool,
    bad: impl Fn(String) -> ApiError,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(text) = present(v) else { return Ok(None) };
    let values: Vec<String> = text.split(',').map(|s| s.trim().to_owned()).collect();
    if let Some(x) = values.iter().find(|x| !valid(x)) {
        return Err(bad(format!("{x:?}")));
    }
    Ok(Some(values))
}

/// The listing (pure): filters, then the page.
pub fn select_rules(
    rules: Vec<KillOpRule>,
    q: &ListKillOpRulesQuery,
) -> Result<ListKillOpRulesResponse, ApiError> {
    let types =
        filter_values(&q.operation_types, |t| RULE_OP_TYPES.contains(&t), ApiError::InvalidOperationType)?;
    let nss = filter_values(&q.namespaces, vocab::is_valid_rule_namespace, ApiError::InvalidNamespace)?;
    let plans =
        filter_values(&q.plan_summary, |p| RULE_PLAN_SUMMARIES.contains(&p), ApiError::InvalidPlanSummary)?;
    let status = match present(&q.status) {
        None => None,
        Some(s) if s == rule_status::ENABLED || s == rule_status::DISABLED => Some(s.to_owned()),
        Some(s) => return Err(ApiError::InvalidRuleStatus(format!("{s:?} is not ENABLED or DISABLED"))),
    };
    let offset = usize::try_from(offset_param(&q.offset)?).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit_param(&q.limit, 100, 100)?).unwrap_or(100);
    let any = |wanted: &Option<Vec<String>>, have: &[String]| {
        wanted.as_ref().is_none_or(|w| w.iter().any(|x| have.contains(x)))
    };
    let matching: Vec<KillOpRule> = rules
        .into_iter()
        .filter(|r| {
            any(&types, &r.operation_types)
                && any(&nss, &r.namespaces)
                && plans.as_ref().is_none_or(|p| p.contains(&r.plan_summary))
                && status.as_ref().is_none_or(|s| *s == r.status)
        })
        .collect();
    let total_count = matching.len();
    let rules = matching.into_iter().skip(offset).take(limit).map(KillOpRuleItem::from).collect();
    Ok(ListKillOpRulesResponse { rules, total_count })
}

/// Create a killOp rule (disabled).
#[utoipa::path(post, path = "/v3/{project_id}/instances/{instance_id}/kill-op-rule", tag = "dds",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = CreateKillOpRuleBody,
    responses((status = 200, body = CreateKillOpRuleResponse, description = "Created, disabled"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.301072 DBS.301073 DBS.301074 DBS.900110-DBS.900116"),
              (status = 404, body = ErrorBody, description = "DBS.200002")))]
pub async fn create_kill_op_rule(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<CreateKillOpRuleResponse>, ApiError> {
    let instance =
        st.store.get_instance(p.project_id(), &path.instance_id).await?.ok_or(ApiError::InstanceNotFound)?;
    let rule = parse_create_body(&body, &instance.id, instance.mode)?;
    match st.store.create_kill_op_rule(p.project_id(), &rule).await? {
        CreateRuleOutcome::Created => Ok(Json(CreateKillOpRuleResponse { id: rule.id })),
        CreateRuleOutcome::NoInstance => Err(ApiError::InstanceNotFound),
        CreateRuleOutcome::LimitReached => Err(ApiError::TooManyRules(MAX_KILL_OP_RULES)),
    }
}

/// List an instance's killOp rules.
#[utoipa::path(get, path = "/v3/{project_id}/instances/{instance_id}/kill-op-rule", tag = "dds",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ListKillOpRulesQuery),
    responses((status = 200, body = ListKillOpRulesResponse),
              (status = 400, body = ErrorBody, description = "DBS.301072 DBS.301073 DBS.301074 DBS.900121 DBS.280439 DBS.280440"),
              (status = 404, body = ErrorBody, description = "DBS.200002")))]
pub async fn list_kill_op_rules(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
    ApiQuery(q): ApiQuery<ListKillOpRulesQuery>,
) -> Result<Json<ListKillOpRulesResponse>, ApiError> {
    let rules = st
        .store
        .list_kill_op_rules(p.project_id(), &path.instance_id)
        .await?
        .ok_or(ApiError::InstanceNotFound)?;
    Ok(Json(select_rules(rules, &q)?))
}

fn ids_error(e: StoreError, ids: &[String]) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::RuleNotFound(format!("one of {}", ids.join(", "))),
        StoreError::Conflict(_) => ApiError::RuleEnabled(ids.join(", ")),
        other => other.into(),
    }
}

/// Enable or disable killOp rules (all or none).
#[utoipa::path(put, path = "/v3/{project_id}/instances/{instance_id}/kill-op-rule", tag = "dds",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = UpdateKillOpRuleBody,
    responses((status = 200, description = "Done: `{}`"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.900118 DBS.900119"),
              (status = 404, body = ErrorBody, description = "DBS.200002 DBS.900117")))]
pub async fn update_kill_op_rule(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let (ids, status) = parse_ids_body(&body, true)?;
    let status = status.ok_or_else(|| ApiError::InvalidRuleAction("action is required".into()))?;
    st.store.get_instance(p.project_id(), &path.instance_id).await?.ok_or(ApiError::InstanceNotFound)?;
    st.store
        .set_kill_op_rule_status(p.project_id(), &path.instance_id, &ids, status)
        .await
        .map_err(|e| ids_error(e, &ids))?;
    Ok(Json(Value::Object(Map::new())))
}

/// Delete disabled killOp rules (all or none).
#[utoipa::path(delete, path = "/v3/{project_id}/instances/{instance_id}/kill-op-rule", tag = "dds",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = DeleteKillOpRuleBody,
    responses((status = 200, description = "Deleted: `{}`"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.900118 DBS.900120"),
              (status = 404, body = ErrorBody, description = "DBS.200002 DBS.900117")))]
pub async fn delete_kill_op_rules(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let (ids, _) = parse_ids_body(&body, false)?;
    st.store.get_instance(p.project_id(), &path.instance_id).await?.ok_or(ApiError::InstanceNotFound)?;
    st.store
        .delete_kill_op_rules(p.project_id(), &path.instance_id, &ids)
        .await
        .map_err(|e| ids_error(e, &ids))?;
    Ok(Json(Value::Object(Map::new())))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        parse_create_body(body.as_bytes(), "i", InstanceMode::ReplicaSet).unwrap_err().code_and_status().0
    }

    #[test]
    fn create_bodies() {
        let r = parse_create_body(
            br#"{"operation_types":["query","insert"],"namespaces":["shop.orders"],"client_ips":["10.0.0.5"],
                "plan_summary":"COLLSCAN","max_concurrency":3,"secs_running":30,"node_type":"replica"}"#,
            "i",
            InstanceMode::ReplicaSet,
        )
        .unwrap();
        assert_eq!(
            (r.status.as_str(), r.mode.as_str(), r.secs_running, r.max_concurrency),
            ("DISABLED", "kill", 30, 3)
        );
        let r = parse_create_body(
            br#"{"operation_types":["command"],"secs_running":2,"node_type":"replica","mode":"observe","namespaces":null}"#,
            "i",
            InstanceMode::Single,
        )
        .unwrap();
        assert!(r.namespaces.is_empty() && r.client_ips.is_empty() && r.plan_summary.is_empty());
        assert_eq!(r.mode, "observe");

        let ok = r#""secs_running":5,"node_type":"replica""#;
        for (body, want) in [
            ("[]".to_owned(), "DBS.200001"),
            (format!(r#"{{"operation_types":["query"],{ok},"extra":1}}"#), "DBS.200001"),
            (format!(r#"{{"operation_types":["query"],"operation_types":["query"],{ok}}}"#), "DBS.200001"),
            (format!(r#"{{"operation_types":"query",{ok}}}"#), "DBS.200001"),
            (format!(r#"{{{ok}}}"#), "DBS.301073"),
            (format!(r#"{{"operation_types":[],{ok}}}"#), "DBS.301073"),
            (format!(r#"{{"operation_types":["drop"],{ok}}}"#), "DBS.301073"),
            (format!(r#"{{"operation_types":["query","query"],{ok}}}"#), "DBS.301073"),
            (
                format!(
                    r#"{{"operation_types":["query","insert","update","remove","command","getmore","query"],{ok}}}"#
                ),
                "DBS.301073",
            ),
            (format!(r#"{{"operation_types":["query"],"namespaces":["a.b","c"],{ok}}}"#), "DBS.301074"),
            (format!(r#"{{"operation_types":["query"],"namespaces":["a b"],{ok}}}"#), "DBS.301074"),
            (format!(r#"{{"operation_types":["query"],"client_ips":["::1"],{ok}}}"#), "DBS.900110"),
            (
                format!(
                    r#"{{"operation_types":["query"],"client_ips":["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4","1.1.1.5","1.1.1.6"],{ok}}}"#
                ),
                "DBS.900110",
            ),
            (format!(r#"{{"operation_types":["query"],"plan_summary":"IXSCAN",{ok}}}"#), "DBS.301072"),
            (
                r#"{"operation_types":["query"],"max_concurrency":100001,"node_type":"replica"}"#.to_owned(),
                "DBS.900111",
            ),
            (
                r#"{"operation_types":["query"],"max_concurrency":-1,"node_type":"replica"}"#.to_owned(),
                "DBS.900111",
            ),
            (
                r#"{"operation_types":["query"],"max_concurrency":1.5,"node_type":"replica"}"#.to_owned(),
                "DBS.900111",
            ),
            (
                r#"{"operation_types":["query"],"secs_running":1,"node_type":"replica"}"#.to_owned(),
                "DBS.900112",
            ),
            (
                r#"{"operation_types":["query"],"secs_running":86401,"node_type":"replica"}"#.to_owned(),
                "DBS.900112",
            ),
            (r#"{"operation_types":["query"],"node_type":"replica"}"#.to_owned(), "DBS.900113"),
            (
                r#"{"operation_types":["query"],"secs_running":0,"max_concurrency":0,"node_type":"replica"}"#
                    .to_owned(),
                "DBS.900113",
            ),
            (r#"{"operation_types":["query"],"secs_running":5}"#.to_owned(), "DBS.900114"),
            (
                r#"{"operation_types":["query"],"secs_running":5,"node_type":"config"}"#.to_owned(),
                "DBS.900114",
            ),
            (
                r#"{"operation_types":["query"],"secs_running":5,"node_type":"mongos"}"#.to_owned(),
                "DBS.900114",
            ),
            (format!(r#"{{"operation_types":["query"],{ok},"mode":"print"}}"#), "DBS.900115"),
        ] {
            assert_eq!(code(&body), want, "{body}");
        }
        // A cluster takes mongos / shard rules, not replica ones.
        assert!(
            parse_create_body(
                br#"{"operation_types":["query"],"secs_running":5,"node_type":"mongos"}"#,
                "i",
                InstanceMode::Sharding
            )
            .is_ok()
        );
        assert!(
            parse_create_body(
                br#"{"operation_types":["query"],"secs_running":5,"node_type":"replica"}"#,
                "i",
                InstanceMode::Sharding
            )
            .is_err()
        );
    }

    #[test]
    fn ids_bodies() {
        let (ids, status) = parse_ids_body(br#"{"ids":["a","b","a"],"action":"enable"}"#, true).unwrap();
        assert_eq!((ids, status), (vec!["a".to_owned(), "b".to_owned()], Some("ENABLED")));
        assert_eq!(parse_ids_body(br#"{"ids":["a"]}"#, false).unwrap().1, None);
        let code = |b: &str, a: bool| parse_ids_body(b.as_bytes(), a).unwrap_err().code_and_status().0;
        assert_eq!(code(r#"{"ids":[],"action":"enable"}"#, true), "DBS.900118");
        assert_eq!(code(r#"{"action":"enable"}"#, true), "DBS.900118");
        assert_eq!(code(r#"{"ids":[1],"action":"enable"}"#, true), "DBS.900118");
        assert_eq!(code(r#"{"ids":"a","action":"enable"}"#, true), "DBS.900118");
        let eleven: Vec<String> = (0..11).map(|i| format!("\"{i}\"")).collect();
        assert_eq!(code(&format!(r#"{{"ids":[{}]}}"#, eleven.join(",")), false), "DBS.900118");
        assert_eq!(code(r#"{"ids":["a"],"action":"start"}"#, true), "DBS.900119");
        assert_eq!(code(r#"{"ids":["a"]}"#, true), "DBS.900119");
        assert_eq!(code(r#"{"ids":["a"],"action":"enable"}"#, false), "DBS.200001");
        assert_eq!(code(r#"{"ids":["a"],"force":true}"#, false), "DBS.200001");
    }

    #[test]
    fn listing_filters_and_joins() {
        let rule = |id: &str, types: &[&str], ns: &[&str], status: &str| KillOpRule {
            id: id.into(),
            instance_id: "i".into(),
            operation_types: types.iter().map(|s| s.to_string()).collect(),
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            client_ips: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            plan_summary: "COLLSCAN".into(),
            max_concurrency: 0,
            secs_running: 5,
            node_type: "replica".into(),
            status: status.into(),
            mode: "kill".into(),
            created_at: 0,
            updated_at: 0,
        };
        let rules = vec![
            rule("a", &["query", "insert"], &["shop.orders"], "ENABLED"),
            rule("b", &["command"], &[], "DISABLED"),
            rule("c", &["insert"], &["shop"], "DISABLED"),
        ];
        let q = |f: fn(&mut ListKillOpRulesQuery)| {
            let mut q = ListKillOpRulesQuery::default();
            f(&mut q);
            q
        };
        let all = select_rules(rules.clone(), &q(|_| {})).unwrap();
        assert_eq!(all.total_count, 3);
        assert_eq!(all.rules[0].operation_types, "query,insert");
        assert_eq!(all.rules[0].client_ips, "10.0.0.1,10.0.0.2");
        assert_eq!(all.rules[1].namespaces, "");
        let ids = |r: ListKillOpRulesResponse| r.rules.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(select_rules(rules.clone(), &q(|q| q.operation_types = Some("insert".into()))).unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            ids(select_rules(rules.clone(), &q(|q| q.namespaces = Some("shop".into()))).unwrap()),
            ["c"]
        );
        assert_eq!(
            ids(select_rules(rules.clone(), &q(|q| q.status = Some("DISABLED".into()))).unwrap()),
            ["b", "c"]
        );
        let page = select_rules(
            rules.clone(),
            &q(|q| {
                q.offset = Some("1".into());
                q.limit = Some("1".into());
            }),
        )
        .unwrap();
        assert_eq!((page.total_count, ids(page)), (3, vec!["b".to_owned()]));
        let code = |f: fn(&mut ListKillOpRulesQuery)| {
            select_rules(rules.clone(), &q(f)).unwrap_err().code_and_status().0
        };
        assert_eq!(code(|q| q.status = Some("ON".into())), "DBS.900121");
        assert_eq!(code(|q| q.operation_types = Some("drop".into())), "DBS.301073");
        assert_eq!(code(|q| q.plan_summary = Some("IXSCAN".into())), "DBS.301072");
        assert_eq!(code(|q| q.namespaces = Some("a b".into())), "DBS.301074");
        assert_eq!(code(|q| q.limit = Some("101".into())), "DBS.280439");
        assert_eq!(code(|q| q.offset = Some("-1".into())), "DBS.280440");
    }
}
