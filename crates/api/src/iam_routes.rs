//! The IAM v3 surface, in the vendor's JSON shapes so that `huaweicloudsdkiam` drives it.
//!
//! Shapes follow the SDK's models (`huaweicloudsdkiam/v3/model/*.py`, 3.1.219): request bodies are
//! wrapped (`{"user": {...}}`, `{"group": {...}}`, `{"role": {...}}`, `{"credential": {...}}`),
//! responses echo the object with `links.self`. Management routes are account-scoped and need an
//! `iam:*` action (the account-admin level has all of them); the writes that touch a user also obey
//! the identity rules of docs/iam-rules.md, enforced by `Iam::*_as`. `GET /v3/projects`,
//! `GET /v3/projects/{project_id}`, `GET /v3/auth/domains` and `GET /v3/auth/tokens` only need
//! authentication: the SDKs call the first ones to discover the project and account ids of their
//! own credential. Tokens are project-scoped or domain-scoped (account routes only).
//! Additionally `GET /v3/{project_id}/whoami` (docplane extension) echoes the caller; it needs
//! `dds:instance:listSession` so that policies can be tested before any DDS route exists.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use docplane_iam::{DomainSelector, IssuedToken, ProjectSelector, ScopeSelector, UserPatch, UserSelector};
use docplane_store::{Group, Project, Role, User};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::route::{ApiJson, ApiPath, ApiQuery, Principal, Route};
use crate::state::AppState;

/// IAM actions of the management routes.
pub mod actions {
    pub const CREATE_USER: &str = "iam:users:createUser";
    pub const UPDATE_USER: &str = "iam:users:updateUser";
    pub const DELETE_USER: &str = "iam:users:deleteUser";
    pub const CREATE_GROUP: &str = "iam:groups:createGroup";
    pub const ADD_USER_TO_GROUP: &str = "iam:groups:addUserToGroup";
    pub const REMOVE_USER_FROM_GROUP: &str = "iam:groups:removeUserFromGroup";
    pub const CREATE_ROLE: &str = "iam:roles:createRole";
    pub const GRANT_PROJECT: &str = "iam:permissions:grantRoleToGroupOnProject";
    pub const GRANT_DOMAIN: &str = "iam:permissions:grantRoleToGroupOnDomain";
    pub const CREATE_CREDENTIAL: &str = "iam:credentials:createCredential";
    pub const DELETE_CREDENTIAL: &str = "iam:credentials:deleteCredential";
    pub const LIST_USERS: &str = "iam:users:listUsers";
    pub const LIST_GROUPS: &str = "iam:groups:listGroups";
    pub const LIST_ROLES: &str = "iam:roles:listRoles";
    pub const CREATE_PROJECT: &str = "iam:projects:createProject";
    pub const UPDATE_PROJECT: &str = "iam:projects:updateProject";
    /// The docplane `whoami` extension.
    pub const WHOAMI: &str = "dds:instance:listSession";
}

/// The IAM routes.
pub fn routes() -> Vec<Route> {
    use actions::*;
    vec![
        Route::public(Method::POST, "/v3/auth/tokens", create_token),
        Route::account(Method::GET, "/v3/auth/tokens", None, validate_token),
        Route::account(Method::GET, "/v3/auth/domains", None, list_auth_domains),
        Route::account(Method::GET, "/v3/projects", None, list_projects),
        Route::account(Method::POST, "/v3/projects", Some(CREATE_PROJECT), create_project),
        Route::account(Method::GET, "/v3/projects/{project_id}", None, show_project),
        Route::account(Method::PATCH, "/v3/projects/{project_id}", Some(UPDATE_PROJECT), update_project),
        Route::account(Method::GET, "/v3/users", Some(LIST_USERS), list_users),
        Route::account(Method::GET, "/v3/groups", Some(LIST_GROUPS), list_groups),
        Route::account(Method::GET, "/v3.0/OS-ROLE/roles", Some(LIST_ROLES), list_custom_policies),
        Route::account(Method::POST, "/v3.0/OS-USER/users", Some(CREATE_USER), create_user),
        Route::account(Method::POST, "/v3/users", Some(CREATE_USER), keystone_create_user),
        Route::account(Method::PUT, "/v3.0/OS-USER/users/{user_id}", Some(UPDATE_USER), update_user),
        Route::account(Method::PATCH, "/v3/users/{user_id}", Some(UPDATE_USER), keystone_update_user),
        Route::account(Method::DELETE, "/v3/users/{user_id}", Some(DELETE_USER), delete_user),
        Route::account(Method::POST, "/v3/groups", Some(CREATE_GROUP), create_group),
        Route::account(
            Method::PUT,
            "/v3/groups/{group_id}/users/{user_id}",
            Some(ADD_USER_TO_GROUP),
            add_user_to_group,
        ),
        Route::account(
            Method::DELETE,
            "/v3/groups/{group_id}/users/{user_id}",
            Some(REMOVE_USER_FROM_GROUP),
            remove_user_from_group,
        ),
        Route::account(Method::POST, "/v3.0/OS-ROLE/roles", Some(CREATE_ROLE), create_role),
        Route::account(
            Method::PUT,
            "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}",
            Some(GRANT_PROJECT),
            grant_on_project,
        ),
        Route::account(
            Method::PUT,
            "/v3/domains/{domain_id}/groups/{group_id}/roles/{role_id}",
            Some(GRANT_DOMAIN),
            grant_on_domain,
        ),
        Route::account(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(CREATE_CREDENTIAL),
            create_credential,
        ),
        Route::account(
            Method::DELETE,
            "/v3.0/OS-CREDENTIAL/credentials/{access_key}",
            Some(DELETE_CREDENTIAL),
            delete_credential,
        ),
        Route::project(Method::GET, "/v3/{project_id}/whoami", Some(WHOAMI), whoami),
    ]
}

fn iso(ms_or_secs: DateTime<Utc>) -> String {
    ms_or_secs.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ms_to_iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map(iso).unwrap_or_default()
}

fn link(path: String) -> Value {
    json!({ "self": path })
}

fn same_domain(p: &Principal, given: Option<&str>) -> Result<(), ApiError> {
    match given {
        Some(d) if d != p.domain_id => Err(ApiError::ScopeMismatch("account")),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub auth: TokenAuth,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenAuth {
    pub identity: TokenIdentity,
    pub scope: TokenScope,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenIdentity {
    /// Must contain `"password"`.
    pub methods: Vec<String>,
    pub password: Option<PasswordIdentity>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordIdentity {
    pub user: PasswordUser,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordUser {
    pub id: Option<String>,
    pub name: Option<String>,
    pub password: String,
    pub domain: Option<NameOrId>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NameOrId {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// Exactly one of `project` (a project-scoped token) or `domain` (a domain-scoped token, for
/// account-level IAM calls; it must name the user's own account).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenScope {
    pub project: Option<NameOrId>,
    pub domain: Option<NameOrId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: TokenBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    pub expires_at: String,
    pub issued_at: String,
    pub methods: Vec<String>,
    #[schema(value_type = Object)]
    pub user: Value,
    /// Present for a project-scoped token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub project: Option<Value>,
    /// Present for a domain-scoped token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub domain: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    pub roles: Vec<Value>,
    /// Omitted when the request has `nocatalog`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub catalog: Option<Vec<Value>>,
}

/// The query of `POST`/`GET /v3/auth/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Present, with any value: the response has no catalog. The vendor: "Any character string set
    /// for this parameter indicates that no catalog information will be displayed" (IAM API
    /// reference, KeystoneValidateToken / KeystoneCreateUserTokenByPassword).
    pub nocatalog: Option<String>,
}

impl TokenQuery {
    fn omit_catalog(&self) -> bool {
        self.nocatalog.is_some()
    }
}

/// The Keystone token body for `t` (creation and validation answer the same shape).
fn token_response(t: &IssuedToken, omit_catalog: bool) -> TokenResponse {
    let domain = json!({"id": t.domain.id, "name": t.domain.name});
    TokenResponse {
        token: TokenBody {
            expires_at: Utc.timestamp_opt(t.claims.exp, 0).single().map(iso).unwrap_or_default(),
            issued_at: Utc.timestamp_opt(t.claims.iat, 0).single().map(iso).unwrap_or_default(),
            methods: vec!["password".into()],
            user: json!({"id": t.user.id, "name": t.user.name, "domain": domain, "password_expires_at": ""}),
            project: t.project.as_ref().map(|p| json!({"id": p.id, "name": p.name, "domain": domain})),
            domain: t.project.is_none().then(|| domain.clone()),
            roles: if t.user.is_domain_admin { vec![json!({"id": "0", "name": "te_admin"})] } else { vec![] },
            catalog: if omit_catalog { None } else { Some(vec![]) },
        },
    }
}

/// Password authentication scoped to a project or to the account (domain); the token is the
/// `X-Subject-Token` header.
/// The client's address as the listener saw it (`None` when the app runs without a listener, as in
/// in-process tests). `X-Forwarded-For` is not trusted: any client can write it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// Password authentication scoped to a project; the token is the `X-Subject-Token` header.
///
/// Bounded cost (`Iam::login`): the password check waits briefly for one of a fixed set of workers,
/// and failed attempts are throttled per user and source address; both refusals are 429
/// `DBS.280443` with `Retry-After`, answered before any password is checked.
#[utoipa::path(post, path = "/v3/auth/tokens", tag = "iam", request_body = TokenRequest,
    params(("nocatalog" = Option<String>, Query, description = "Present: omit the catalog")),
    responses((status = 201, body = TokenResponse, headers(("X-Subject-Token" = String))),
              (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody, headers(("Retry-After" = u64)))))]
pub async fn create_token(
    State(st): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    PeerAddr(peer): PeerAddr,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let omit_catalog = query.omit_catalog();
    let id = &req.auth.identity;
    if !id.methods.iter().any(|m| m == "password") {
        return Err(ApiError::BadRequest("only the password method is supported".into()));
    }
    let pw = id
        .password
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("auth.identity.password is required".into()))?;
    let who = match (&pw.user.id, &pw.user.name) {
        (Some(uid), _) => UserSelector::Id(uid.clone()),
        (None, Some(name)) => UserSelector::Name {
            domain_name: pw.user.domain.as_ref().and_then(|d| d.name.clone()),
            domain_id: pw.user.domain.as_ref().and_then(|d| d.id.clone()),
            name: name.clone(),
        },
        (None, None) => {
            return Err(ApiError::BadRequest("auth.identity.password.user needs id or name".into()));
        }
    };
    let scope = match (req.auth.scope.project.as_ref(), req.auth.scope.domain.as_ref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("auth.scope takes either project or domain, not both".into()));
        }
        (Some(NameOrId { id: Some(id), .. }), None) => {
            ScopeSelector::Project(ProjectSelector::Id(id.clone()))
        }
        (Some(NameOrId { name: Some(n), .. }), None) => {
            ScopeSelector::Project(ProjectSelector::Name(n.clone()))
        }
        (None, Some(NameOrId { id: Some(id), .. })) => ScopeSelector::Domain(DomainSelector::Id(id.clone())),
        (None, Some(NameOrId { name: Some(n), .. })) => {
            ScopeSelector::Domain(DomainSelector::Name(n.clone()))
        }
        (Some(_), None) => return Err(ApiError::BadRequest("auth.scope.project needs id or name".into())),
        (None, Some(_)) => return Err(ApiError::BadRequest("auth.scope.domain needs id or name".into())),
        (None, None) => return Err(ApiError::BadRequest("auth.scope needs project or domain".into())),
    };
    let t = st.iam.login(&who, &pw.user.password, &scope, Utc::now(), peer).await.map_err(ApiError::from);
    st.metrics.login(t.as_ref().map(|_| ()));
    let t = t?;
    let body = token_response(&t, omit_catalog);
    let mut headers = HeaderMap::new();
    let v = HeaderValue::from_str(&t.token).map_err(|e| ApiError::Internal(e.to_string()))?;
    headers.insert("x-subject-token", v);
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

/// KeystoneValidateToken: `X-Subject-Token` is the token to check, `X-Auth-Token` (or a
/// signature) the caller. 200 with the token's body and `X-Subject-Token`; 404 `DBS.900010` for a
/// token that is invalid, expired, revoked or of another account. Another user's token needs the
/// account-admin level. Source: the vendor's IAM API reference, "Verifying a Token -
/// KeystoneValidateToken" (api-iam/iam_30_0004.html: the administrator verifies tokens of its own
/// account's users only, with Security Administrator permissions; a user its own token without any).
#[utoipa::path(get, path = "/v3/auth/tokens", tag = "iam",
    params(("X-Subject-Token" = String, Header), ("nocatalog" = Option<String>, Query, description = "Present: omit the catalog")),
    responses((status = 200, body = TokenResponse, headers(("X-Subject-Token" = String))),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn validate_token(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Response, ApiError> {
    let omit_catalog = query.omit_catalog();
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the X-Subject-Token header is required".into()))?;
    let t = st.iam.validate_token(&p, subject, Utc::now()).await?;
    let mut out = HeaderMap::new();
    let v = HeaderValue::from_str(&t.token).map_err(|e| ApiError::Internal(e.to_string()))?;
    out.insert("x-subject-token", v);
    Ok((StatusCode::OK, out, Json(token_response(&t, omit_catalog))).into_response())
}

// ---------------------------------------------------------------- discovery and projects

/// The filters KeystoneListProjects sends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectQuery {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    /// docplane's projects are flat: their parent is the account.
    pub parent_id: Option<String>,
    pub enabled: Option<bool>,
    /// No project is a domain; `true` lists nothing.
    pub is_domain: Option<bool>,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

/// Checks a `page`/`per_page` pair (given together, page >= 1, per_page in 1..=`max`) and returns
/// the zero-based offset and the limit; neither means everything.
fn paging(page: Option<i64>, per_page: Option<i64>, max: i64) -> Result<Option<(usize, usize)>, ApiError> {
    match (page, per_page) {
        (None, None) => Ok(None),
        (Some(p), Some(n)) if p >= 1 && (1..=max).contains(&n) => {
            let start = (p - 1).saturating_mul(n);
            Ok(Some((usize::try_from(start).unwrap_or(usize::MAX), usize::try_from(n).unwrap_or(usize::MAX))))
        }
        (Some(_), Some(_)) => {
            Err(ApiError::BadRequest(format!("page must be >= 1 and per_page in 1..={max}")))
        }
        _ => Err(ApiError::BadRequest("page and per_page go together".into())),
    }
}

fn page_of<T>(items: Vec<T>, paging: Option<(usize, usize)>) -> Vec<T> {
    match paging {
        None => items,
        Some((start, n)) => items.into_iter().skip(start).take(n).collect(),
    }
}

fn list_links(path: &str) -> Value {
    json!({"self": path, "previous": null, "next": null})
}

fn project_json(p: &Project) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
        "enabled": p.enabled, "is_domain": false, "parent_id": p.domain_id,
        "links": link(format!("/v3/projects/{}", p.id)),
    })
}

/// Projects of the caller's account (KeystoneListProjects), optionally by name.
#[utoipa::path(get, path = "/v3/projects", tag = "iam", params(("name" = Option<String>, Query), ("domain_id" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn list_projects(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Json<Value>, ApiError> {
    let paging = paging(q.page, q.per_page, 5000)?;
    let foreign = q.domain_id.as_deref().is_some_and(|d| d != p.domain_id)
        || q.parent_id.as_deref().is_some_and(|d| d != p.domain_id)
        || q.is_domain == Some(true);
    if foreign {
        return Ok(Json(json!({"projects": [], "links": list_links("/v3/projects")})));
    }
    let projects = st.store.list_projects(&p.domain_id, q.name.as_deref()).await?;
    let wanted = q.enabled.unwrap_or(true);
    let list: Vec<Value> = projects.iter().filter(|p| p.enabled == wanted).map(project_json).collect();
    Ok(Json(json!({"projects": page_of(list, paging), "links": list_links("/v3/projects")})))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProjectRequest {
    pub project: CreateProjectOption,
}

/// KeystoneCreateProjectOption.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectOption {
    pub name: String,
    /// The vendor's parent is a region project; docplane's projects are flat, so the parent is
    /// the account (its id, or absent).
    pub parent_id: Option<String>,
    pub domain_id: Option<String>,
    pub description: Option<String>,
}

/// KeystoneCreateProject: a new project in the caller's account, so teams can be kept apart.
#[utoipa::path(post, path = "/v3/projects", tag = "iam", request_body = CreateProjectRequest,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_project(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<CreateProjectRequest>,
) -> Result<Response, ApiError> {
    let o = r.project;
    same_domain(&p, o.domain_id.as_deref())?;
    if o.parent_id.as_deref().is_some_and(|id| id != p.domain_id) {
        return Err(ApiError::BadRequest(
            "project.parent_id must be the account id: docplane projects are not nested".into(),
        ));
    }
    let project =
        st.iam.create_project(&p.domain_id, &o.name, o.description.as_deref().unwrap_or("")).await?;
    Ok((StatusCode::CREATED, Json(json!({"project": project_json(&project)}))).into_response())
}

async fn project_in_account(st: &AppState, p: &Principal, project_id: &str) -> Result<Project, ApiError> {
    st.iam
        .project(project_id)
        .await?
        .filter(|pr| pr.domain_id == p.domain_id)
        .ok_or(ApiError::IamNotFound("project"))
}

/// KeystoneShowProject: a project of the caller's account.
#[utoipa::path(get, path = "/v3/projects/{project_id}", tag = "iam", params(("project_id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn show_project(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let project = project_in_account(&st, &p, &project_id).await?;
    Ok(Json(json!({"project": project_json(&project)})))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProjectRequest {
    pub project: UpdateProjectOption,
}

/// KeystoneUpdateProjectOption.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectOption {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// KeystoneUpdateProject: rename a project or change its description.
#[utoipa::path(patch, path = "/v3/projects/{project_id}", tag = "iam", request_body = UpdateProjectRequest,
    params(("project_id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_project(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(project_id): ApiPath<String>,
    ApiJson(r): ApiJson<UpdateProjectRequest>,
) -> Result<Json<Value>, ApiError> {
    let o = r.project;
    if o.name.is_none() && o.description.is_none() {
        return Err(ApiError::BadRequest("project needs name or description".into()));
    }
    let project =
        st.iam.update_project(&p.domain_id, &project_id, o.name.as_deref(), o.description.as_deref()).await?;
    let mut v = project_json(&project);
    v["extra"] = json!({});
    Ok(Json(json!({"project": v})))
}

/// The caller's account (KeystoneListAuthDomains).
#[utoipa::path(get, path = "/v3/auth/domains", tag = "iam", responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn list_auth_domains(State(st): State<AppState>, p: Principal) -> Result<Json<Value>, ApiError> {
    let d = st.store.get_domain(&p.domain_id).await?.ok_or(ApiError::IamNotFound("account"))?;
    Ok(Json(json!({
        "domains": [{"id": d.id, "name": d.name, "enabled": d.enabled, "description": "",
                     "links": link(format!("/v3/domains/{}", d.id))}],
        "links": link("/v3/auth/domains".into()),
    })))
}

// ---------------------------------------------------------------- users

#[derive(Debug, Deserialize, ToSchema)]
pub struct UserRequest {
    pub user: UserOption,
}

/// Fields of CreateUserOption / KeystoneCreateUserOption / UpdateUserOption (unknown fields such as
/// `email` or `phone` are accepted and ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserOption {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub password: Option<String>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

fn user_json(u: &User, vendor_extended: bool) -> Value {
    let mut v = json!({
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
        "description": u.description, "pwd_status": false, "password_expires_at": null,
        "links": link(format!("/v3/users/{}", u.id)),
    });
    if vendor_extended {
        v["access_mode"] = json!("default");
        v["is_domain_owner"] = json!(u.is_domain_admin);
        v["create_time"] = json!(ms_to_iso(u.created_at));
    }
    v
}

/// The filters KeystoneListUsers sends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    pub domain_id: Option<String>,
    pub enabled: Option<bool>,
    pub name: Option<String>,
    /// `<op>:<time>` with op one of lt, lte, gt, gte, eq, neq and time `YYYY-MM-DDTHH:mm:ssZ`.
    /// docplane passwords never expire, so only `neq` matches (every user).
    pub password_expires_at: Option<String>,
}

/// Whether a user whose password never expires passes the `password_expires_at` filter.
fn never_expiring_matches(filter: &str) -> Result<bool, ApiError> {
    let bad = || ApiError::BadRequest(format!("password_expires_at: expected <op>:<time>, got {filter:?}"));
    let (op, time) = filter.split_once(':').ok_or_else(bad)?;
    chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%SZ").map_err(|_| bad())?;
    match op {
        "lt" | "lte" | "gt" | "gte" | "eq" => Ok(false),
        "neq" => Ok(true),
        _ => Err(bad()),
    }
}

/// KeystoneListUsers: the users of the caller's account.
#[utoipa::path(get, path = "/v3/users", tag = "iam",
    params(("domain_id" = Option<String>, Query), ("enabled" = Option<bool>, Query), ("name" = Option<String>, Query),
           ("password_expires_at" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Json<Value>, ApiError> {
    let expiry_ok = match q.password_expires_at.as_deref() {
        Some(f) => never_expiring_matches(f)?,
        None => true,
    };
    let users = if q.domain_id.as_deref().is_some_and(|d| d != p.domain_id) || !expiry_ok {
        vec![]
    } else {
        st.store.list_users(&p.domain_id).await?
    };
    let list: Vec<Value> = users
        .iter()
        .filter(|u| q.enabled.is_none_or(|e| u.enabled == e))
        .filter(|u| q.name.as_deref().is_none_or(|n| u.name == n))
        .map(|u| {
            let mut v = user_json(u, false);
            v["links"] = list_links(&format!("/v3/users/{}", u.id));
            v["access_mode"] = json!("default");
            v
        })
        .collect();
    Ok(Json(json!({"users": list, "links": list_links("/v3/users")})))
}

async fn create_user_common(
    st: &AppState,
    p: &Principal,
    o: UserOption,
    extended: bool,
) -> Result<Response, ApiError> {
    same_domain(p, o.domain_id.as_deref())?;
    let name = o.name.ok_or_else(|| ApiError::BadRequest("user.name is required".into()))?;
    let u = st
        .iam
        .create_user(
            &p.domain_id,
            &name,
            o.password.as_deref(),
            o.enabled.unwrap_or(true),
            o.description.as_deref().unwrap_or(""),
            false,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user_json(&u, extended)}))).into_response())
}

/// CreateUser (vendor extension API).
#[utoipa::path(post, path = "/v3.0/OS-USER/users", tag = "iam", request_body = UserRequest,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<UserRequest>,
) -> Result<Response, ApiError> {
    create_user_common(&st, &p, r.user, true).await
}

/// KeystoneCreateUser.
#[utoipa::path(post, path = "/v3/users", tag = "iam", request_body = UserRequest,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn keystone_create_user(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<UserRequest>,
) -> Result<Response, ApiError> {
    create_user_common(&st, &p, r.user, false).await
}

async fn update_user_common(
    st: &AppState,
    p: &Principal,
    user_id: &str,
    o: UserOption,
    extended: bool,
) -> Result<Json<Value>, ApiError> {
    same_domain(p, o.domain_id.as_deref())?;
    let patch =
        UserPatch { name: o.name, password: o.password, enabled: o.enabled, description: o.description };
    let u = st.iam.update_user_as(p, user_id, &patch).await?;
    Ok(Json(json!({"user": user_json(&u, extended)})))
}

/// UpdateUser: disabling the user or changing its password revokes its tokens.
#[utoipa::path(put, path = "/v3.0/OS-USER/users/{user_id}", tag = "iam", request_body = UserRequest,
    params(("user_id" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_user(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(r): ApiJson<UserRequest>,
) -> Result<Json<Value>, ApiError> {
    update_user_common(&st, &p, &user_id, r.user, true).await
}

/// KeystoneUpdateUserByAdmin.
#[utoipa::path(patch, path = "/v3/users/{user_id}", tag = "iam", request_body = UserRequest,
    params(("user_id" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn keystone_update_user(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(r): ApiJson<UserRequest>,
) -> Result<Json<Value>, ApiError> {
    update_user_common(&st, &p, &user_id, r.user, false).await
}

/// KeystoneDeleteUser.
#[utoipa::path(delete, path = "/v3/users/{user_id}", tag = "iam", params(("user_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(user_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.iam.delete_user_as(&p, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- groups

#[derive(Debug, Deserialize, ToSchema)]
pub struct GroupRequest {
    pub group: GroupOption,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct GroupOption {
    pub name: String,
    pub domain_id: Option<String>,
    pub description: Option<String>,
}

/// KeystoneCreateGroup.
#[utoipa::path(post, path = "/v3/groups", tag = "iam", request_body = GroupRequest,
    responses((status = 201, body = Object), (status = 409, body = ErrorBody)))]
pub async fn create_group(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<GroupRequest>,
) -> Result<Response, ApiError> {
    same_domain(&p, r.group.domain_id.as_deref())?;
    let g = st.iam.create_group_as(&p, &r.group.name, r.group.description.as_deref().unwrap_or("")).await?;
    Ok((StatusCode::CREATED, Json(json!({"group": group_json(&g)}))).into_response())
}

fn group_json(g: &Group) -> Value {
    json!({
        "id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description,
        "create_time": g.created_at, "links": link(format!("/v3/groups/{}", g.id)),
    })
}

/// The filters KeystoneListGroups sends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    pub domain_id: Option<String>,
    pub name: Option<String>,
}

/// KeystoneListGroups: the groups of the caller's account.
#[utoipa::path(get, path = "/v3/groups", tag = "iam",
    params(("domain_id" = Option<String>, Query), ("name" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn list_groups(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<GroupQuery>,
) -> Result<Json<Value>, ApiError> {
    let groups = if q.domain_id.as_deref().is_some_and(|d| d != p.domain_id) {
        vec![]
    } else {
        st.store.list_groups(&p.domain_id).await?
    };
    let list: Vec<Value> = groups
        .iter()
        .filter(|g| q.name.as_deref().is_none_or(|n| g.name == n))
        .map(|g| {
            let mut v = group_json(g);
            v["links"] = list_links(&format!("/v3/groups/{}", g.id));
            v
        })
        .collect();
    Ok(Json(json!({"groups": list, "links": list_links("/v3/groups")})))
}

/// KeystoneAddUserToGroup.
#[utoipa::path(put, path = "/v3/groups/{group_id}/users/{user_id}", tag = "iam",
    params(("group_id" = String, Path), ("user_id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn add_user_to_group(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.iam.add_user_to_group_as(&p, &group_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// KeystoneRemoveUserFromGroup.
#[utoipa::path(delete, path = "/v3/groups/{group_id}/users/{user_id}", tag = "iam",
    params(("group_id" = String, Path), ("user_id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_user_from_group(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.iam.remove_user_from_group_as(&p, &group_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- custom policies and grants

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleRequest {
    pub role: RoleOption,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleOption {
    pub display_name: String,
    /// `AX` (account level) or `XA` (project level); docplane treats both alike.
    #[serde(rename = "type")]
    pub role_type: String,
    pub description: Option<String>,
    /// `{"Version":"1.1"|"5.0","Statement":[{"Effect","Action","Resource"}]}`.
    #[schema(value_type = Object)]
    pub policy: Value,
}

/// CreateCloudServiceCustomPolicy.
#[utoipa::path(post, path = "/v3.0/OS-ROLE/roles", tag = "iam", request_body = RoleRequest,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody)))]
pub async fn create_role(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<RoleRequest>,
) -> Result<Response, ApiError> {
    let o = r.role;
    let role = st
        .iam
        .create_role(
            &p.domain_id,
            &o.display_name,
            &o.role_type,
            o.description.as_deref().unwrap_or(""),
            &o.policy,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"role": role_json(&role, o.policy)}))).into_response())
}

fn role_json(role: &Role, policy: Value) -> Value {
    json!({
        "id": role.id, "name": role.name, "display_name": role.display_name, "type": role.role_type,
        "description": role.description, "domain_id": role.domain_id, "catalog": "CUSTOMED",
        "policy": policy, "links": link(format!("/v3/roles/{}", role.id)),
        "created_time": role.created_at.to_string(), "updated_time": role.updated_at.to_string(),
    })
}

/// The paging ListCustomPolicies sends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleQuery {
    pub page: Option<i64>,
    /// 1..=300, as the vendor's.
    pub per_page: Option<i64>,
}

/// ListCustomPolicies: the custom policies of the caller's account, oldest first (then by name, so
/// the order of one page to the next is stable).
#[utoipa::path(get, path = "/v3.0/OS-ROLE/roles", tag = "iam",
    params(("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query)),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_custom_policies(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<RoleQuery>,
) -> Result<Json<Value>, ApiError> {
    let paging = paging(q.page, q.per_page, 300)?;
    let mut roles = st.store.list_roles(&p.domain_id).await?;
    roles.sort_by(|a, b| (a.created_at, &a.display_name, &a.id).cmp(&(b.created_at, &b.display_name, &b.id)));
    let total = roles.len();
    let list: Vec<Value> = page_of(roles, paging)
        .iter()
        .map(|r| {
            // Stored policies were validated on write; an unreadable one is shown as null.
            let policy = serde_json::from_str(&r.policy).unwrap_or(Value::Null);
            role_json(r, policy)
        })
        .collect();
    Ok(Json(json!({"roles": list, "links": list_links("/v3.0/OS-ROLE/roles"), "total_number": total})))
}

/// KeystoneAssociateGroupWithProjectPermission.
#[utoipa::path(put, path = "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}", tag = "iam",
    params(("project_id" = String, Path), ("group_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn grant_on_project(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((project_id, group_id, role_id)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    if project_id == p.domain_id {
        return Err(ApiError::IamNotFound("project"));
    }
    st.iam.grant(&p.domain_id, &project_id, &group_id, &role_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// KeystoneAssociateGroupWithDomainPermission: the role applies to account-level actions.
#[utoipa::path(put, path = "/v3/domains/{domain_id}/groups/{group_id}/roles/{role_id}", tag = "iam",
    params(("domain_id" = String, Path), ("group_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn grant_on_domain(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((domain_id, group_id, role_id)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    same_domain(&p, Some(&domain_id))?;
    st.iam.grant(&p.domain_id, &domain_id, &group_id, &role_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- access keys

#[derive(Debug, Deserialize, ToSchema)]
pub struct CredentialRequest {
    pub credential: CredentialOption,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CredentialOption {
    pub user_id: String,
    pub description: Option<String>,
}

/// CreatePermanentAccessKey: the secret is returned once and stored sealed.
#[utoipa::path(post, path = "/v3.0/OS-CREDENTIAL/credentials", tag = "iam", request_body = CredentialRequest,
    responses((status = 201, body = Object), (status = 404, body = ErrorBody)))]
pub async fn create_credential(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<CredentialRequest>,
) -> Result<Response, ApiError> {
    let (c, secret) = st
        .iam
        .create_access_key_as(&p, &r.credential.user_id, r.credential.description.as_deref().unwrap_or(""))
        .await?;
    let body = json!({"credential": {
        "access": c.access_key, "secret": secret, "status": c.status, "user_id": c.user_id,
        "description": c.description, "create_time": ms_to_iso(c.created_at),
    }});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// DeletePermanentAccessKey: another user's key needs the account-admin level, the
/// administrator's only the administrator (docs/iam-rules.md, rule 3).
#[utoipa::path(delete, path = "/v3.0/OS-CREDENTIAL/credentials/{access_key}", tag = "iam",
    params(("access_key" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_credential(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(access_key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.iam.delete_access_key_as(&p, &access_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- whoami (docplane extension)

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user_id: String,
    pub user_name: String,
    pub domain_id: String,
    pub project_id: String,
    pub is_admin: bool,
    /// `token` or `access_key`.
    pub auth_method: String,
}

/// docplane extension: the authenticated caller. Needs `dds:instance:listSession` on the project.
#[utoipa::path(get, path = "/v3/{project_id}/whoami", tag = "docplane", params(("project_id" = String, Path)),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI {
        user_id: p.user_id.clone(),
        user_name: p.user_name.clone(),
        domain_id: p.domain_id.clone(),
        project_id: p.project_id().to_owned(),
        is_admin: p.is_admin,
        auth_method: match p.method {
            docplane_iam::AuthMethod::Token => "token".into(),
            docplane_iam::AuthMethod::AccessKey { .. } => "access_key".into(),
        },
    })
}
