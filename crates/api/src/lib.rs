//! docplane-api: the HTTP shell (axum 0.8) in front of docplane.
//!
//! Map of the crate:
//! - [`server`]: [`ApiConfig`], [`serve`] -> [`ServerHandle`] (`local_addr`, graceful `shutdown`),
//!   [`app`] (the router alone, for in-process tests), [`bootstrap`] (first-start account, project,
//!   admin and AK/SK).
//! - [`route`]: the typed route table ([`Route`], [`Scope`]), the authentication/authorization
//!   layer, the [`Principal`] extractor and the [`ApiJson`]/[`ApiQuery`]/[`ApiPath`] extractors
//!   whose rejections are [`ApiError`]s.
//! - [`error`]: [`ApiError`], the single mapping to vendor codes and statuses (docs/errors.md).
//! - [`observe`]: `X-Request-Id` and the access log; [`RequestId`] extractor.
//! - [`state`]: [`AppState`] (store, iam, typed extension slot, body limit).
//! - [`iam_routes`]: the IAM v3 surface (tokens, projects, users, groups, policies, grants, keys)
//!   plus the `GET /v3/{project_id}/whoami` extension.
//! - [`dds`]: the DDS v3 routes (sessions, instances), plugged in by the DRIVER helper; read its
//!   module docs for the three steps to add a route.
//! - [`console`]: the web console's embedded files at `/console/` (a public-API client).
//! - [`openapi`]: `/openapi.json` from the code, checked against docs/openapi.json.
//! - [`metrics`]: `GET /metrics` (Prometheus text; bounded label sets) and the request counter
//!   layer; [`health`]: `GET /health` (liveness) and `GET /ready` (readiness: the store answers).
//!
//! Architecture invariants:
//! - Only this crate knows HTTP and the vendor's JSON shapes; identity logic lives in docplane-iam.
//! - Every error leaves through [`ApiError`], so every error body is `{"error_code","error_msg"}`.
//! - A handler taking [`Principal`] runs only after authentication, project binding and the
//!   route's action check; handlers still scope every lookup by `principal.project_id()`.

pub mod console;
pub mod dds;
pub mod error;
pub mod health;
pub mod iam_routes;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod route;
pub mod server;
pub mod state;

pub use docplane_iam::{BootstrapOptions, BootstrapOutput, MasterKey};
pub use error::{ApiError, ErrorBody};
pub use limits::HttpLimits;
pub use observe::RequestId;
pub use route::{ApiJson, ApiPath, ApiQuery, Principal, Route, Scope};
pub use server::{ApiConfig, ServeError, ServerHandle, ShutdownTrigger, TlsConfig, app, bootstrap, serve};
pub use state::AppState;

/// Every documented route: IAM, the whoami extension and the DDS routes.
pub fn all_routes() -> Vec<Route> {
    let mut r = iam_routes::routes();
    r.extend(dds::routes());
    r
}
