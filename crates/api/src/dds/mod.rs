//! The DDS v3 routes (sessions, instances) and docplane's extensions beside them.
//!
//! - [`sessions`]: `GET /v3/{project_id}/nodes/{node_id}/sessions` (`dds:instance:listSession`) and
//!   `POST /v3/{project_id}/nodes/{node_id}/session` (`dds:instance:deleteSession`; the legacy
//!   alias `dds:instance:session` is resolved by the iam crate), every kill audited;
//! - [`selector`]: `POST /v3/{project_id}/nodes/{node_id}/sessions/kill` (extension,
//!   `dds:instance:deleteSession`): kill by selector, with `max` and `dry_run`;
//! - [`instances`]: `GET /v3/{project_id}/instances` (`dds:instance:list`) and the docplane
//!   registration extension `POST /v3/{project_id}/instances/register` (`dds:instance:create`) /
//!   `DELETE /v3/{project_id}/instances/{instance_id}` (`dds:instance:delete`);
//! - [`settings`]: the docplane extension `GET` / `PUT
//!   /v3/{project_id}/instances/{instance_id}/session-settings` (`dds:instance:getSessionSettings` /
//!   `dds:instance:modifySessionSettings`): the instance's privacy setting and protected users and
//!   applications, which the list and kill paths apply;
//! - [`rules`]: the vendor's kill-op rules (`POST`/`GET`/`PUT`/`DELETE
//!   /v3/{project_id}/instances/{instance_id}/kill-op-rule`, `dds:instance:createKillOpRule` /
//!   `getKillOpRule` / `updateKillOpRule` / `deleteKillOpRule`), applied by [`enforcer`] (the
//!   loop `serve` runs, one replica per node under a lease);
//! - [`conns`]: the vendor's `GET /v3/{project_id}/instances/{instance_id}/conn-statistics`
//!   (`dds:instance:getConnectionStatistics`);
//! - [`health`]: the store-backed health loop ([`health::spawn_health_loop`]);
//! - [`common`]: vendor ids, node resolution inside the caller's project, sealed node
//!   credentials, driver-error mapping.
//!
//! Handlers reach the node driver as `state.driver` ([`crate::AppState`]); `serve` builds it from
//! `ApiConfig::driver` (timeouts, pool size) and runs the health loop every `ApiConfig::health_interval`.
//!
//! To add a route: a handler taking `State<AppState>`, a [`crate::Principal`] and the
//! [`crate::ApiJson`]/[`crate::ApiQuery`]/[`crate::ApiPath`] extractors; a `#[utoipa::path]`
//! listed in [`DdsDoc`]; an entry in [`routes`] with its IAM action.
//!
//! Architecture invariant: this module knows HTTP and the vendor's JSON; listing and killing go
//! through `state.sessions` (`docplane-sessions`), talking to nodes through `docplane-driver`;
//! neither knows HTTP.

pub mod common;
pub mod conns;
pub mod enforcer;
pub mod health;
pub mod instances;
pub mod kill_records;
pub mod rules;
pub mod selector;
pub mod sessions;
pub mod settings;

use axum::http::Method;
use utoipa::OpenApi;

use crate::route::Route;

/// IAM actions of the DDS routes.
pub mod actions {
    /// `GET /v3/{project_id}/instances`.
    pub const LIST_INSTANCES: &str = "dds:instance:list";
    /// `GET /v3/{project_id}/nodes/{node_id}/sessions`.
    pub const LIST_SESSIONS: &str = "dds:instance:listSession";
    /// `POST /v3/{project_id}/nodes/{node_id}/session`.
    pub const DELETE_SESSION: &str = "dds:instance:deleteSession";
    /// Registration extension.
    pub const CREATE_INSTANCE: &str = "dds:instance:create";
    /// Unregistration extension.
    pub const DELETE_INSTANCE: &str = "dds:instance:delete";
    /// `GET /v3/{project_id}/kill-records` (extension).
    pub const LIST_KILL_RECORDS: &str = "dds:audit:list";
    /// `GET /v3/{project_id}/kill-records/verify` (extension).
    pub const VERIFY_KILL_RECORDS: &str = "dds:audit:verify";
    /// `GET /v3/{project_id}/instances/{instance_id}/session-settings` (extension). Named like the
    /// vendor's instance actions, so `dds:instance:*` and `dds:*:get*` cover it; the legacy
    /// alias `dds:instance:session` does not (it stands for list and kill only).
    pub const GET_SESSION_SETTINGS: &str = "dds:instance:getSessionSettings";
    /// `PUT /v3/{project_id}/instances/{instance_id}/session-settings` (extension): it changes
    /// what kills may touch, so neither `deleteSession` nor the legacy alias grants it.
    pub const MODIFY_SESSION_SETTINGS: &str = "dds:instance:modifySessionSettings";
    /// `POST /v3/{project_id}/instances/{instance_id}/kill-op-rule` (vendor).
    pub const CREATE_KILL_OP_RULE: &str = "dds:instance:createKillOpRule";
    /// `GET .../kill-op-rule` (vendor).
    pub const GET_KILL_OP_RULE: &str = "dds:instance:getKillOpRule";
    /// `PUT .../kill-op-rule` (vendor).
    pub const UPDATE_KILL_OP_RULE: &str = "dds:instance:updateKillOpRule";
    /// `DELETE .../kill-op-rule` (vendor).
    pub const DELETE_KILL_OP_RULE: &str = "dds:instance:deleteKillOpRule";
    /// `GET /v3/{project_id}/instances/{instance_id}/conn-statistics`. The vendor's reference
    /// names no action for this call; docplane names it like the vendor's instance reads, so
    /// `dds:instance:*` and `dds:*:get*` cover it.
    pub const GET_CONNECTION_STATISTICS: &str = "dds:instance:getConnectionStatistics";
}

/// OpenAPI operations of the DDS routes.
#[derive(OpenApi)]
#[openapi(
    paths(
        instances::list_instances, instances::register_instance, instances::unregister_instance,
        sessions::list_sessions, sessions::kill_sessions, selector::kill_matching,
        kill_records::list_kill_records, kill_records::verify_kill_records,
        settings::get_session_settings, settings::put_session_settings,
        rules::create_kill_op_rule, rules::list_kill_op_rules, rules::update_kill_op_rule,
        rules::delete_kill_op_rules, conns::show_connection_statistics
    ),
    components(schemas(
        sessions::SessionItem, sessions::ListSessionsResponse, sessions::KillSessionsBody,
        selector::SelectorFilter, selector::KillMatchingBody, selector::MatchedItem, selector::KillMatchingResponse,
        instances::InstanceItem, instances::GroupItem, instances::NodeItem, instances::DatastoreItem,
        instances::BackupStrategyItem, instances::ListInstancesResponse, instances::RegisterInstanceBody,
        instances::RegisterInstanceResponse,
        kill_records::KillRecordItem, kill_records::ListKillRecordsResponse,
        kill_records::VerifyKillRecordsResponse,
        settings::SessionSettingsBody, settings::SessionSettingsResponse,
        rules::CreateKillOpRuleBody, rules::CreateKillOpRuleResponse, rules::KillOpRuleItem,
        rules::ListKillOpRulesResponse, rules::UpdateKillOpRuleBody, rules::DeleteKillOpRuleBody,
        conns::ClientConnections, conns::ConnStatsResponse
    )),
    tags((name = "dds", description = "DDS v3 sessions and instances (vendor shapes)"),
         (name = "audit", description = "docplane extension: kill records, tamper-evident"))
)]
pub struct DdsDoc;

/// The DDS routes.
pub fn routes() -> Vec<Route> {
    use actions::*;
    vec![
        Route::project(
            Method::GET,
            "/v3/{project_id}/instances",
            Some(LIST_INSTANCES),
            instances::list_instances,
        ),
        Route::project(
            Method::POST,
            "/v3/{project_id}/instances/register",
            Some(CREATE_INSTANCE),
            instances::register_instance,
        ),
        Route::project(
            Method::DELETE,
            "/v3/{project_id}/instances/{instance_id}",
            Some(DELETE_INSTANCE),
            instances::unregister_instance,
        ),
        Route::project(
            Method::GET,
            "/v3/{project_id}/instances/{instance_id}/session-settings",
            Some(GET_SESSION_SETTINGS),
            settings::get_session_settings,
        ),
        Route::project(
            Method::PUT,
            "/v3/{project_id}/instances/{instance_id}/session-settings",
            Some(MODIFY_SESSION_SETTINGS),
            settings::put_session_settings,
        ),
        Route::project(
            Method::POST,
            "/v3/{project_id}/instances/{instance_id}/kill-op-rule",
            Some(CREATE_KILL_OP_RULE),
            rules::create_kill_op_rule,
        ),
        Route::project(
            Method::GET,
            "/v3/{project_id}/instances/{instance_id}/kill-op-rule",
            Some(GET_KILL_OP_RULE),
            rules::list_kill_op_rules,
        ),
        Route::project(
            Method::PUT,
            "/v3/{project_id}/instances/{instance_id}/kill-op-rule",
            Some(UPDATE_KILL_OP_RULE),
            rules::update_kill_op_rule,
        ),
        Route::project(
            Method::DELETE,
            "/v3/{project_id}/instances/{instance_id}/kill-op-rule",
            Some(DELETE_KILL_OP_RULE),
            rules::delete_kill_op_rules,
        ),
        Route::project(
            Method::GET,
            "/v3/{project_id}/instances/{instance_id}/conn-statistics",
            Some(GET_CONNECTION_STATISTICS),
            conns::show_connection_statistics,
        ),
        Route::project(
            Method::GET,
            "/v3/{project_id}/nodes/{node_id}/sessions",
            Some(LIST_SESSIONS),
            sessions::list_sessions,
        ),
        Route::project(
            Method::POST,
            "/v3/{project_id}/nodes/{node_id}/session",
            Some(DELETE_SESSION),
            sessions::kill_sessions,
        ),
        Route::project(
            Method::POST,
            "/v3/{project_id}/nodes/{node_id}/sessions/kill",
            Some(DELETE_SESSION),
            selector::kill_matching,
        ),
        Route::project(
            Method::GET,
            "/v3/{project_id}/kill-records",
            Some(LIST_KILL_RECORDS),
            kill_records::list_kill_records,
        ),
        Route::project(
            Method::GET,
            "/v3/{project_id}/kill-records/verify",
            Some(VERIFY_KILL_RECORDS),
            kill_records::verify_kill_records,
        ),
    ]
}
