//! The typed route table and the authentication/authorization layer in front of every route.
//!
//! A [`Route`] is `(method, path, scope, action, handler)`. [`build_router`] wraps every route's
//! handler in [`require_json_body`] (a request that carries a body must say `Content-Type:
//! application/json`, else 415 `DBS.900415`, whatever the credential; every route takes JSON or
//! nothing), and each guarded one in [`authenticate`], which, before the handler runs:
//! 1. authenticates the caller by `X-Auth-Token` or by an `SDK-HMAC-SHA256` signature (buffering the
//!    body, within the body limit, to check its hash; a signed request whose body is marked
//!    `UNSIGNED-PAYLOAD` is refused, since no route takes a raw stream);
//! 2. binds the caller to the request's scope:
//!    - [`Scope::Project`]: the path's `{project_id}` must be the token's project (a domain-scoped
//!      token is refused); for an access key it must equal `X-Project-Id` (when sent) and belong to
//!      the key's account;
//!    - [`Scope::Account`]: `X-Domain-Id` (when sent) must be the caller's account (project- and
//!      domain-scoped tokens both work there);
//! 3. authorizes the route's IAM action (if any) against the caller's policies on that scope;
//! 4. stores the result as a [`Principal`] in the request extensions, where the [`Principal`]
//!    extractor finds it.
//!
//! So a handler that takes a `Principal` argument only ever runs for a caller already allowed to
//! perform the route's action in the path's project; it must still look resources up *inside*
//! `principal.project_id()` (tenant isolation: another project's resource is a plain 404).

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::body::HttpBody;
use axum::extract::rejection::{BytesRejection, RawPathParamsRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use chrono::Utc;
use docplane_iam::sign::{self, SignedRequest};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::observe::LoggedPrincipal;
use crate::state::AppState;

/// What a route is scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No authentication (only `POST /v3/auth/tokens` and `GET /openapi.json`).
    Public,
    /// Account-level (IAM management, project listing); policies granted on the account apply.
    Account,
    /// Under `/v3/{project_id}/...`; policies granted on that project apply.
    Project,
}

/// One entry of the route table.
pub struct Route {
    pub method: Method,
    /// axum path syntax, e.g. `/v3/{project_id}/nodes/{node_id}/sessions`.
    pub path: &'static str,
    pub scope: Scope,
    /// The IAM action the caller needs (e.g. `dds:instance:listSession`); `None` = any
    /// authenticated caller of the scope.
    pub action: Option<&'static str>,
    handler: MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("scope", &self.scope)
            .field("action", &self.action)
            .finish()
    }
}

fn method_router<H, T>(method: &Method, handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    on(filter, handler)
}

impl Route {
    /// A route under `/v3/{project_id}/...`. The path must contain `{project_id}`.
    pub fn project<H, T>(method: Method, path: &'static str, action: Option<&'static str>, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let handler = method_router(&method, handler);
        Route { method, path, scope: Scope::Project, action, handler }
    }

    /// An account-level route.
    pub fn account<H, T>(method: Method, path: &'static str, action: Option<&'static str>, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let handler = method_router(&method, handler);
        Route { method, path, scope: Scope::Account, action, handler }
    }

    /// A route without authentication.
    pub fn public<H, T>(method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let handler = method_router(&method, handler);
        Route { method, path, scope: Scope::Public, action: None, handler }
    }
}

#[derive(Clone)]
struct Guard {
    state: AppState,
    scope: Scope,
    action: Option<&'static str>,
}

/// Assembles the router: every route behind its guard, JSON 404/405 fallbacks.
pub fn build_router(routes: Vec<Route>, state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for r in routes {
        let handler = if r.scope == Scope::Public {
            r.handler
        } else {
            let guard = Guard { state: state.clone(), scope: r.scope, action: r.action };
            r.handler.layer(from_fn_with_state(guard, authenticate))
        };
        // Outside the guard: the media type is checked before any credential work or body read.
        let handler = handler.layer(axum::middleware::from_fn(require_json_body));
        router = router.route(r.path, handler);
    }
    router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries (or may carry) a body: anything but a body known to be empty.
pub fn has_body(req: &Request) -> bool {
    let body = req.body();
    !body.is_end_stream() && body.size_hint().exact() != Some(0)
}

/// Whether a `Content-Type` value names JSON the way axum's `Json` extractor accepts it:
/// `application/json` or `application/<anything>+json`, parameters (`; charset=...`) allowed.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// Middleware on every route: a request with a body must declare it JSON (415 `DBS.900415`
/// otherwise), whether it comes with a token, a signature or no credential. Bodies the routes
/// would not read are not silently accepted in another media type either.
pub async fn require_json_body(req: Request, next: Next) -> Response {
    if has_body(&req) && !header(req.headers(), "content-type").is_some_and(is_json_content_type) {
        return ApiError::UnsupportedMediaType.into_response();
    }
    next.run(req).await
}

/// The authentication / authorization layer (see the module docs).
async fn authenticate(
    State(g): State<Guard>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    // A path segment that is not UTF-8 once percent-decoded (e.g. `/v3/%FF/...`).
    let params = match params {
        Ok(p) => p,
        Err(e) => return ApiError::BadRequest(e.body_text()).into_response(),
    };
    let path_project = params.iter().find(|(k, _)| *k == "project_id").map(|(_, v)| v.to_owned());
    match check(&g, path_project, req).await {
        Ok((principal, req)) => {
            let logged = LoggedPrincipal(principal.0.user_id.clone());
            let mut req = req;
            req.extensions_mut().insert(principal);
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(logged);
            resp
        }
        Err((e, who)) => {
            let mut resp = e.into_response();
            if let Some(w) = who {
                resp.extensions_mut().insert(LoggedPrincipal(w));
            }
            resp
        }
    }
}

type CheckErr = (ApiError, Option<String>);

async fn check(
    g: &Guard,
    path_project: Option<String>,
    req: Request,
) -> Result<(Principal, Request), CheckErr> {
    let now = Utc::now();
    let iam = &g.state.iam;
    let (mut p, req) = if let Some(token) = header(req.headers(), "x-auth-token") {
        let p = iam.verify_token(token.trim(), now).await.map_err(|e| (e.into(), None))?;
        (p, req)
    } else if header(req.headers(), "authorization").is_some_and(sign::is_sdk_signature) {
        // The signature must cover every body a handler reads; no route takes a raw stream.
        if has_body(&req)
            && header(req.headers(), "x-sdk-content-sha256")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(sign::UNSIGNED_PAYLOAD))
        {
            return Err((ApiError::UnsignedPayload, None));
        }
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::to_bytes(body, g.state.body_limit).await.map_err(|e| (body_error(&e), None))?;
        let mut headers: Vec<(String, String)> = Vec::with_capacity(parts.headers.len() + 1);
        for (k, v) in &parts.headers {
            // Non-UTF-8 header values cannot have been signed by the SDK; keep them lossily so a
            // signed one fails the comparison rather than vanishing.
            headers.push((k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()));
        }
        if !parts.headers.contains_key("host")
            && let Some(a) = parts.uri.authority()
        {
            headers.push(("host".to_owned(), a.as_str().to_owned()));
        }
        let signed = SignedRequest {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &headers,
            body: &bytes,
        };
        let p = iam.verify_signed(&signed, now).await.map_err(|e| {
            tracing::debug!(error = %e, "signature refused");
            (e.into(), None)
        })?;
        (p, Request::from_parts(parts, Body::from(bytes)))
    } else {
        return Err((ApiError::AuthRequired, None));
    };
    let who = Some(p.user_id.clone());
    let scope_id = match g.scope {
        Scope::Public => return Err((ApiError::Internal("public route behind guard".into()), who)),
        Scope::Account => {
            if let Some(d) = header(req.headers(), "x-domain-id")
                && d.trim() != p.domain_id
            {
                return Err((ApiError::ScopeMismatch("account"), who));
            }
            p.domain_id.clone()
        }
        Scope::Project => {
            let path_project = path_project.ok_or_else(|| {
                (ApiError::Internal("project route without {project_id}".into()), who.clone())
            })?;
            match &p.project_id {
                Some(bound) if bound != &path_project => {
                    return Err((ApiError::ScopeMismatch("project"), who));
                }
                Some(_) => {}
                // A domain-scoped token is for account-level routes only.
                None if p.method == docplane_iam::AuthMethod::Token => {
                    return Err((ApiError::ScopeMismatch("project"), who));
                }
                None => {
                    if let Some(h) = header(req.headers(), "x-project-id")
                        && h.trim() != path_project
                    {
                        return Err((ApiError::ScopeMismatch("project"), who));
                    }
                }
            }
            let project = iam.project(&path_project).await.map_err(|e| (e.into(), who.clone()))?;
            if !project.is_some_and(|pr| pr.domain_id == p.domain_id && pr.enabled) {
                return Err((ApiError::ScopeMismatch("project"), who));
            }
            p.project_id = Some(path_project.clone());
            path_project
        }
    };
    if let Some(action) = g.action {
        iam.authorize(&p, &scope_id, action).await.map_err(|e| (e.into(), who.clone()))?;
    }
    Ok((Principal(p), req))
}

/// The authenticated, authorized caller of a guarded route.
///
/// For [`Scope::Project`] routes `project_id()` is the path's project, already checked against the
/// credential and the route's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub docplane_iam::Principal);

impl Principal {
    /// The project of the request (empty for account routes).
    pub fn project_id(&self) -> &str {
        self.0.project_id.as_deref().unwrap_or("")
    }
}

impl std::ops::Deref for Principal {
    type Target = docplane_iam::Principal;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("Principal extractor on an unguarded route".into()))
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (400 `DBS.200001`, 413, 415).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(JsonRejection::BytesRejection(e)) => Err(bytes_rejection(&e)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// What a failure to buffer the request body becomes: 413 `DBS.900413` over the body limit,
/// 408 `DBS.900408` when the body-read timeout ran out, 400 `DBS.200001` otherwise (e.g. the
/// client broke the upload off).
pub fn bytes_rejection(e: &BytesRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else if crate::limits::is_body_timeout(e) {
        ApiError::BodyTimeout
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// [`bytes_rejection`] for an error of `axum::body::to_bytes`.
fn body_error(e: &axum::Error) -> ApiError {
    if crate::limits::is_body_timeout(e) {
        ApiError::BodyTimeout
    } else if crate::limits::is_length_limit(e) {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!("failed to read the request body: {e}"))
    }
}

/// The raw request body (within the body limit) whose rejections are [`ApiError`]s (see
/// [`bytes_rejection`]).
#[derive(Debug, Clone)]
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(ApiBytes).map_err(|e| bytes_rejection(&e))
    }
}

/// `Query<T>` whose rejection is 400 `DBS.200001`.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `Path<T>` whose rejection is 400 `DBS.200001`.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiPath(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}
