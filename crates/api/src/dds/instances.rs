//! `GET /v3/{project_id}/instances` (vendor shape, parsed by the SDK's `ListInstances`), and the
//! docplane registration extension:
//! - `POST /v3/{project_id}/instances/register` `{name, mode?, seeds, mongos?, username?,
//!   password?, auth_source?}` connects to the first reachable seed with the official driver,
//!   reads buildInfo and hello, discovers replica-set members (or takes the given mongos list),
//!   and stores the instance with vendor-format ids; node credentials are sealed at rest;
//! - `DELETE /v3/{project_id}/instances/{instance_id}` unregisters it (and drops its pools).
//!
//! Shapes follow `huaweicloudsdkdds/v3/model/{query_instance_response,group_response_item,
//! node_item,datastore_item}.py` (3.1.219): note `port` is a string there.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use chrono::{SecondsFormat, TimeZone, Utc};
use docplane_driver::{Credentials, DeploymentMode, DiscoverRequest, DriverError, Topology};
use docplane_store::{GroupType, Instance, InstanceFilter, InstanceGroup, InstanceMode, Node, now_millis};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::common::{
    GROUP_SUFFIX, INSTANCE_SUFFIX, NODE_SUFFIX, limit_param, new_id, offset_param, present, seal_credentials,
};
use crate::error::{ApiError, ErrorBody};
use crate::route::{ApiJson, ApiPath, ApiQuery, Principal};
use crate::state::AppState;

/// Path parameters of instance routes.
#[derive(Debug, Deserialize)]
pub struct InstancePath {
    /// The caller's project (checked by the auth layer).
    pub project_id: String,
    /// The instance.
    pub instance_id: String,
}

/// Default and largest page size of the instance list.
pub const MAX_INSTANCE_LIMIT: i64 = 100;

/// Query parameters of `GET /v3/{project_id}/instances`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListInstancesQuery {
    /// Exact instance id.
    pub id: Option<String>,
    /// Instance name.
    pub name: Option<String>,
    /// Single, ReplicaSet or Sharding.
    pub mode: Option<String>,
    /// Records to skip (default 0).
    pub offset: Option<String>,
    /// Page size, 1..=100 (default 100).
    pub limit: Option<String>,
    /// Accepted and ignored (always DDS-Community).
    pub datastore_type: Option<String>,
}

/// Validates the list parameters into a store filter (pure).
pub fn parse_instances_query(project_id: &str, q: &ListInstancesQuery) -> Result<InstanceFilter, ApiError> {
    let offset = offset_param(&q.offset)?;
    let limit = limit_param(&q.limit, MAX_INSTANCE_LIMIT, MAX_INSTANCE_LIMIT)?;
    let mode = match present(&q.mode) {
        None => None,
        Some(s) => Some(InstanceMode::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!("mode must be Single, ReplicaSet or Sharding, got {s:?}"))
        })?),
    };
    Ok(InstanceFilter {
        project_id: project_id.to_owned(),
        id: present(&q.id).map(str::to_owned),
        name: present(&q.name).map(str::to_owned),
        mode,
        offset,
        limit,
    })
}

/// `datastore`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatastoreItem {
    #[serde(rename = "type")]
    pub datastore_type: String,
    /// Major.minor, e.g. `7.0`.
    pub version: String,
    /// The full version string.
    pub whole_version: String,
    pub patch_available: bool,
}

/// `groups[].nodes[]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeItem {
    pub id: String,
    pub name: String,
    /// normal / abnormal.
    pub status: String,
    /// Primary, Secondary, Hidden, master (mongos) or unknown.
    pub role: String,
    pub private_ip: String,
    pub public_ip: String,
    pub spec_code: String,
    pub availability_zone: String,
    /// The node's own port (a docplane extension: the vendor's nodes all listen on the
    /// instance's `port`; a registered deployment's nodes may not, e.g. a local replica set on
    /// 27017-27019). A string, like the instance's `port`.
    pub port: String,
}

/// `groups[]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupItem {
    /// single, replica, mongos, shard or config.
    #[serde(rename = "type")]
    pub group_type: String,
    pub id: String,
    pub name: String,
    pub status: String,
    pub nodes: Vec<NodeItem>,
}

/// `backup_strategy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupStrategyItem {
    pub start_time: String,
    pub keep_days: i32,
}

/// One instance in the vendor's shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceItem {
    pub id: String,
    pub name: String,
    pub remark: String,
    /// normal / abnormal.
    pub status: String,
    /// A string in the vendor's model.
    pub port: String,
    /// Single, ReplicaSet or Sharding.
    pub mode: String,
    pub region: String,
    pub datastore: DatastoreItem,
    pub engine: String,
    pub created: String,
    pub updated: String,
    pub db_user_name: String,
    pub ssl: i32,
    pub vpc_id: String,
    pub subnet_id: String,
    pub security_group_id: String,
    pub backup_strategy: BackupStrategyItem,
    pub pay_mode: String,
    pub maintenance_window: String,
    pub groups: Vec<GroupItem>,
    pub enterprise_project_id: String,
    pub time_zone: String,
    pub actions: Vec<String>,
    pub tags: Vec<Value>,
}

/// The list response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListInstancesResponse {
    pub instances: Vec<InstanceItem>,
    pub total_count: i64,
}

fn vendor_time(millis: i64) -> String {
    Utc.timestamp_millis_opt(millis)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn host_of(address: &str) -> String {
    split_address(address).0
}

/// `host:port` (or `[v6]:port`) as (host, port); an address without a numeric port keeps its
/// whole text as the host and has an empty port.
fn split_address(address: &str) -> (String, String) {
    match address.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.to_owned())
        }
        _ => (address.to_owned(), String::new()),
    }
}

fn major_minor(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => version.to_owned(),
    }
}

/// Assembles the vendor shape of one instance (pure).
pub fn instance_item(i: &Instance, groups: &[InstanceGroup], nodes: &[Node]) -> InstanceItem {
    let groups = groups
        .iter()
        .map(|g| GroupItem {
            group_type: g.group_type.as_str().to_owned(),
            id: g.id.clone(),
            name: g.name.clone(),
            status: g.status.clone(),
            nodes: nodes
                .iter()
                .filter(|n| n.group_id == g.id)
                .map(|n| NodeItem {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    status: n.status.clone(),
                    role: n.role.clone(),
                    private_ip: host_of(&n.address),
                    public_ip: String::new(),
                    spec_code: String::new(),
                    availability_zone: String::new(),
                    port: split_address(&n.address).1,
                })
                .collect(),
        })
        .collect();
    InstanceItem {
        id: i.id.clone(),
        name: i.name.clone(),
        remark: String::new(),
        status: i.status.clone(),
        port: i.port.to_string(),
        mode: i.mode.as_str().to_owned(),
        region: "local".into(),
        datastore: DatastoreItem {
            datastore_type: "DDS-Community".into(),
            version: major_minor(&i.datastore_version),
            whole_version: i.datastore_version.clone(),
            patch_available: false,
        },
        engine: "wiredTiger".into(),
        created: vendor_time(i.created_at),
        updated: vendor_time(i.updated_at),
        db_user_name: String::new(),
        ssl: 0,
        vpc_id: String::new(),
        subnet_id: String::new(),
        security_group_id: String::new(),
        backup_strategy: BackupStrategyItem { start_time: String::new(), keep_days: 0 },
        pay_mode: "0".into(),
        maintenance_window: String::new(),
        groups,
        enterprise_project_id: "0".into(),
        time_zone: String::new(),
        actions: Vec::new(),
        tags: Vec::new(),
    }
}

async fn load_item(st: &AppState, i: &Instance) -> Result<InstanceItem, ApiError> {
    let groups = st.store.list_instance_groups(&i.id).await?;
    let nodes = st.store.list_nodes(&i.id).await?;
    Ok(instance_item(i, &groups, &nodes))
}

/// List instances.
#[utoipa::path(get, path = "/v3/{project_id}/instances", tag = "dds",
    params(("project_id" = String, Path), ListInstancesQuery),
    responses((status = 200, body = ListInstancesResponse),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.280439 DBS.280440")))]
pub async fn list_instances(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListInstancesQuery>,
) -> Result<Json<ListInstancesResponse>, ApiError> {
    let filter = parse_instances_query(p.project_id(), &q)?;
    let (instances, total) = st.store.list_instances(&filter).await?;
    let mut items = Vec::with_capacity(instances.len());
    for i in &instances {
        items.push(load_item(&st, i).await?);
    }
    Ok(Json(ListInstancesResponse { instances: items, total_count: total }))
}

/// Body of the registration extension.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterInstanceBody {
    /// 4..=64 characters: a letter, then letters, digits, `-` or `_`.
    pub name: String,
    /// Single, ReplicaSet or Sharding; omitted = whatever the seed shows.
    #[serde(default)]
    pub mode: Option<String>,
    /// `host:port` addresses tried in order; the first reachable one is the seed.
    pub seeds: Vec<String>,
    /// Further mongos routers of a cluster.
    #[serde(default)]
    pub mongos: Option<Vec<String>>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Authentication database (default `admin`).
    #[serde(default)]
    pub auth_source: Option<String>,
}

/// The registration response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterInstanceResponse {
    pub instance: InstanceItem,
}

fn valid_name(name: &str) -> bool {
    (4..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_address(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@')
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// Validated registration input (pure).
pub fn parse_register(
    body: &RegisterInstanceBody,
) -> Result<(Option<DeploymentMode>, Option<Credentials>), ApiError> {
    if !valid_name(&body.name) {
        return Err(ApiError::BadRequest(
            "name: 4 to 64 characters, starting with a letter; letters, digits, '-' and '_'".into(),
        ));
    }
    if body.seeds.is_empty() || body.seeds.len() > 16 {
        return Err(ApiError::BadRequest("seeds: 1 to 16 host:port addresses".into()));
    }
    let mongos = body.mongos.as_deref().unwrap_or_default();
    if let Some(bad) = body.seeds.iter().chain(mongos).find(|a| !valid_address(a)) {
        return Err(ApiError::BadRequest(format!("invalid address {bad:?}: expected host:port")));
    }
    if mongos.len() > 32 {
        return Err(ApiError::BadRequest("mongos: at most 32 addresses".into()));
    }
    let mode = match body.mode.as_deref() {
        None => None,
        Some(m) => Some(DeploymentMode::from_vendor_name(m).ok_or_else(|| {
            ApiError::BadRequest(format!("mode must be Single, ReplicaSet or Sharding, got {m:?}"))
        })?),
    };
    let credentials = match (&body.username, &body.password) {
        (None, None) => None,
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
            source: body.auth_source.clone().filter(|s| !s.is_empty()),
        }),
        _ => return Err(ApiError::BadRequest("username and password go together".into())),
    };
    Ok((mode, credentials))
}

fn registration_error(e: DriverError) -> ApiError {
    match e {
        DriverError::UnsupportedVersion(m) => ApiError::InvalidDatastoreVersion(m),
        DriverError::InvalidRequest(m) => ApiError::BadRequest(m),
        DriverError::AuthenticationFailed(_) => {
            ApiError::BadRequest("authentication with the given credentials failed".into())
        }
        DriverError::Unreachable(_) | DriverError::Timeout(_) => {
            ApiError::BadRequest("no seed address could be reached".into())
        }
        other => ApiError::BadRequest(format!("registration failed: {other}")),
    }
}

async fn discover_any(
    st: &AppState,
    body: &RegisterInstanceBody,
    mode: Option<DeploymentMode>,
    credentials: &Option<Credentials>,
) -> Result<Topology, ApiError> {
    let driver = st.driver.clone();
    let mut last = DriverError::Unreachable("no seed".into());
    for seed in &body.seeds {
        let request = DiscoverRequest {
            seed: seed.clone(),
            credentials: credentials.clone(),
            mode,
            mongos: body.mongos.clone().unwrap_or_default(),
        };
        match driver.discover(&request).await {
            Ok(t) => return Ok(t),
            Err(e) if e.is_connectivity() && !matches!(e, DriverError::AuthenticationFailed(_)) => last = e,
            Err(e) => return Err(registration_error(e)),
        }
    }
    Err(registration_error(last))
}

/// Register an existing deployment (docplane extension).
#[utoipa::path(post, path = "/v3/{project_id}/instances/register", tag = "docplane",
    params(("project_id" = String, Path)),
    request_body = RegisterInstanceBody,
    responses((status = 200, body = RegisterInstanceResponse),
              (status = 400, body = ErrorBody, description = "DBS.200001 (unreachable, bad credentials, mode mismatch), DBS.200041 (below 3.4)"),
              (status = 409, body = ErrorBody)))]
pub async fn register_instance(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<RegisterInstanceBody>,
) -> Result<Json<RegisterInstanceResponse>, ApiError> {
    let (mode, credentials) = parse_register(&body)?;
    let existing = st
        .store
        .list_instances(&InstanceFilter {
            project_id: p.project_id().to_owned(),
            name: Some(body.name.clone()),
            limit: 1,
            ..Default::default()
        })
        .await?;
    if existing.1 > 0 {
        return Err(ApiError::Conflict(format!("an instance named {:?} exists", body.name)));
    }
    let topology = discover_any(&st, &body, mode, &credentials).await?;
    let now = now_millis();
    let all_up = topology.nodes.iter().all(|n| n.reachable);
    let status = if all_up { "normal" } else { "abnormal" };
    let port = topology
        .nodes
        .first()
        .and_then(|n| n.address.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<i64>().ok())
        .unwrap_or(27017);
    let instance = Instance {
        id: new_id(INSTANCE_SUFFIX),
        project_id: p.project_id().to_owned(),
        name: body.name.clone(),
        mode: match topology.mode {
            DeploymentMode::Single => InstanceMode::Single,
            DeploymentMode::ReplicaSet => InstanceMode::ReplicaSet,
            DeploymentMode::Sharding => InstanceMode::Sharding,
        },
        status: status.into(),
        datastore_version: topology.version_text.clone(),
        port,
        created_at: now,
        updated_at: now,
    };
    let (group_type, group_name) = match topology.mode {
        DeploymentMode::Single => (GroupType::Single, format!("{}_single", body.name)),
        DeploymentMode::ReplicaSet => (
            GroupType::Replica,
            topology.set_name.clone().unwrap_or_else(|| format!("{}_replica", body.name)),
        ),
        DeploymentMode::Sharding => (GroupType::Mongos, format!("{}_mongos", body.name)),
    };
    let group = InstanceGroup {
        id: new_id(GROUP_SUFFIX),
        instance_id: instance.id.clone(),
        group_type,
        name: group_name,
        status: status.into(),
    };
    let mut nodes = Vec::with_capacity(topology.nodes.len());
    for (i, n) in topology.nodes.iter().enumerate() {
        let id = new_id(NODE_SUFFIX);
        let credentials_enc = match &credentials {
            Some(c) => Some(seal_credentials(&st, &id, c)?),
            None => None,
        };
        nodes.push(Node {
            name: format!("{}_{}_node_{}", body.name, group_type.as_str(), i + 1),
            instance_id: instance.id.clone(),
            group_id: group.id.clone(),
            role: n.role.vendor_name().into(),
            status: if n.reachable { "normal" } else { "abnormal" }.into(),
            address: n.address.clone(),
            credentials_enc,
            version: n.version.clone().unwrap_or_default(),
            updated_at: now,
            id,
        });
    }
    st.store.create_instance(&instance).await?;
    let created = async {
        st.store.create_instance_group(&group).await?;
        for n in &nodes {
            st.store.create_node(n).await?;
        }
        Ok::<(), docplane_store::StoreError>(())
    }
    .await;
    if let Err(e) = created {
        let _ = st.store.delete_instance(&instance.id).await;
        return Err(e.into());
    }
    tracing::info!(instance = %instance.id, mode = %instance.mode, nodes = nodes.len(), "instance registered");
    Ok(Json(RegisterInstanceResponse { instance: instance_item(&instance, &[group], &nodes) }))
}

/// Unregister an instance (docplane extension; the deployment itself is untouched).
#[utoipa::path(delete, path = "/v3/{project_id}/instances/{instance_id}", tag = "docplane",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = Object, description = "`{}`"), (status = 404, body = ErrorBody, description = "DBS.200002")))]
pub async fn unregister_instance(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
) -> Result<Json<Value>, ApiError> {
    let instance =
        st.store.get_instance(p.project_id(), &path.instance_id).await?.ok_or(ApiError::InstanceNotFound)?;
    let nodes = st.store.list_nodes(&instance.id).await?;
    st.store.delete_instance(&instance.id).await?;
    let driver = st.driver.clone();
    for n in &nodes {
        driver.forget(&n.id);
    }
    tracing::info!(instance = %instance.id, "instance unregistered");
    Ok(Json(json!({})))
}

/// Groups nodes by instance (used by the health adapter).
pub fn index_by_instance(nodes: Vec<Node>) -> HashMap<String, Vec<Node>> {
    let mut out: HashMap<String, Vec<Node>> = HashMap::new();
    for n in nodes {
        out.entry(n.instance_id.clone()).or_default().push(n);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn instance_query() {
        let f = parse_instances_query("p", &ListInstancesQuery::default()).unwrap();
        assert_eq!((f.offset, f.limit, f.mode), (0, MAX_INSTANCE_LIMIT, None));
        let q = ListInstancesQuery {
            mode: Some("ReplicaSet".into()),
            offset: Some("3".into()),
            limit: Some("5".into()),
            ..Default::default()
        };
        let f = parse_instances_query("p", &q).unwrap();
        assert_eq!((f.offset, f.limit, f.mode), (3, 5, Some(InstanceMode::ReplicaSet)));
        let bad = |q: ListInstancesQuery| parse_instances_query("p", &q).unwrap_err().code_and_status().0;
        assert_eq!(
            bad(ListInstancesQuery { mode: Some("replica".into()), ..Default::default() }),
            "DBS.200001"
        );
        assert_eq!(bad(ListInstancesQuery { limit: Some("0".into()), ..Default::default() }), "DBS.280439");
        assert_eq!(bad(ListInstancesQuery { offset: Some("-2".into()), ..Default::default() }), "DBS.280440");
    }

    fn body() -> RegisterInstanceBody {
        RegisterInstanceBody {
            name: "orders-db".into(),
            mode: None,
            seeds: vec!["127.0.0.1:27017".into()],
            mongos: None,
            username: Some("root".into()),
            password: Some("pw".into()),
            auth_source: None,
        }
    }

    #[test]
    fn registration_input() {
        let (mode, creds) = parse_register(&body()).unwrap();
        assert_eq!(mode, None);
        assert_eq!(creds.unwrap().username, "root");
        for b in [
            RegisterInstanceBody { name: "x".into(), ..body() },
            RegisterInstanceBody { name: "1abc".into(), ..body() },
            RegisterInstanceBody { seeds: vec![], ..body() },
            RegisterInstanceBody { seeds: vec!["nohost".into()], ..body() },
            RegisterInstanceBody { seeds: vec!["h:0".into()], ..body() },
            RegisterInstanceBody { mode: Some("single".into()), ..body() },
            RegisterInstanceBody { password: None, ..body() },
        ] {
            assert_eq!(parse_register(&b).unwrap_err().code_and_status().0, "DBS.200001", "{b:?}");
        }
        let none = RegisterInstanceBody { username: None, password: None, ..body() };
        assert!(parse_register(&none).unwrap().1.is_none());
    }

    #[test]
    fn vendor_shape() {
        let i = Instance {
            id: "i".into(),
            project_id: "p".into(),
            name: "n".into(),
            mode: InstanceMode::ReplicaSet,
            status: "normal".into(),
            datastore_version: "7.0.0".into(),
            port: 27017,
            created_at: 0,
            updated_at: 1000,
        };
        let g = InstanceGroup {
            id: "g".into(),
            instance_id: "i".into(),
            group_type: GroupType::Replica,
            name: "rs0".into(),
            status: "normal".into(),
        };
        let n = Node {
            id: "no".into(),
            instance_id: "i".into(),
            group_id: "g".into(),
            name: "n_replica_node_1".into(),
            role: "Primary".into(),
            status: "normal".into(),
            address: "10.0.0.5:27017".into(),
            credentials_enc: None,
            version: "7.0.0".into(),
            updated_at: 0,
        };
        let v = serde_json::to_value(instance_item(&i, &[g], &[n])).unwrap();
        assert_eq!(v["port"], "27017");
        assert_eq!(v["mode"], "ReplicaSet");
        assert_eq!(v["datastore"]["type"], "DDS-Community");
        assert_eq!(v["datastore"]["version"], "7.0");
        assert_eq!(v["updated"], "1970-01-01T00:00:01Z");
        assert_eq!(v["groups"][0]["type"], "replica");
        assert_eq!(v["groups"][0]["nodes"][0]["private_ip"], "10.0.0.5");
        assert_eq!(v["groups"][0]["nodes"][0]["role"], "Primary");
        assert_eq!(v["groups"][0]["nodes"][0]["port"], "27017");
        assert_eq!(host_of("[::1]:27017"), "::1");
        assert_eq!(split_address("[::1]:27018"), ("::1".to_owned(), "27018".to_owned()));
        assert_eq!(split_address("db.example:27019"), ("db.example".to_owned(), "27019".to_owned()));
        assert_eq!(split_address("db.example"), ("db.example".to_owned(), String::new()));
    }
}
