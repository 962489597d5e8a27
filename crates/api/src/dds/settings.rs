//! The docplane extension `GET` / `PUT /v3/{project_id}/instances/{instance_id}/session-settings`
//! (`dds:instance:getSessionSettings` / `dds:instance:modifySessionSettings`): an instance's
//! session settings, the privacy placeholder and the safety rails of issue 9.
//!
//! `PUT` takes the whole object (`redact_operations`, `protected_users`, `protected_app_names`,
//! each required) and answers what is then stored, like `GET`. Refusals, in this order:
//! - the body's structure (`DBS.200001`): not JSON, not an object, an unknown or repeated field
//!   (the read-only `instance_id`, `updated_at` and `updated_by` included), a missing field, a
//!   field of the wrong type, a name that is not a string;
//! - a name (`DBS.900030`): empty, longer than [`MAX_NAME_CHARS`] characters, a control
//!   character, or leading / trailing white space (which would protect nothing silently);
//! - a list (`DBS.900031`): more than [`MAX_NAMES`] distinct names.
//!
//! Repeated names collapse to their first occurrence, order kept. Then the instance in the
//! caller's project (`DBS.200002` otherwise, also for another project's instance). How the names
//! match operations is `docplane_sessions::rails`'s documentation; what `redact_operations`
//! shows is `docplane_sessions::privacy`'s.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use docplane_store::{SessionSettings, StoreError, now_millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::instances::InstancePath;
use crate::error::{ApiError, ErrorBody};
use crate::route::{ApiBytes, ApiPath, Principal};
use crate::state::AppState;

/// Most distinct names in `protected_users` and in `protected_app_names`.
pub const MAX_NAMES: usize = 100;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// The body of `PUT .../session-settings`: the whole settings object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionSettingsBody {
    /// Show listed operations with their literals replaced by typed placeholders (`"?string"`).
    pub redact_operations: bool,
    /// MongoDB users whose operations are never killed: `name` (any database) or `name@db`;
    /// exact, case-sensitive. At most 100 distinct names of 1..=128 characters.
    pub protected_users: Vec<String>,
    /// Client application names (`appName`) whose operations are never killed; exact,
    /// case-sensitive. At most 100 distinct names of 1..=128 characters.
    pub protected_app_names: Vec<String>,
}

/// An instance's session settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionSettingsResponse {
    pub instance_id: String,
    pub redact_operations: bool,
    pub protected_users: Vec<String>,
    pub protected_app_names: Vec<String>,
    /// When they were last changed (unix ms); `null` while the defaults apply.
    pub updated_at: Option<i64>,
    /// Who changed them last (user name); `null` while the defaults apply.
    pub updated_by: Option<String>,
}

impl From<SessionSettings> for SessionSettingsResponse {
    fn from(s: SessionSettings) -> Self {
        let stored = s.updated_at != 0;
        SessionSettingsResponse {
            instance_id: s.instance_id,
            redact_operations: s.redact_operations,
            protected_users: s.protected_users,
            protected_app_names: s.protected_app_names,
            updated_at: stored.then_some(s.updated_at),
            updated_by: stored.then_some(s.updated_by),
        }
    }
}

/// The body's fields, only to refuse repeated and unknown ones (the values are read from the
/// parsed object, where a `null` is present, not missing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "deserialized only to refuse repeated and unknown fields")]
struct BodyFields {
    redact_operations: Option<serde::de::IgnoredAny>,
    protected_users: Option<serde::de::IgnoredAny>,
    protected_app_names: Option<serde::de::IgnoredAny>,
}

const READ_ONLY: [&str; 3] = ["instance_id", "updated_at", "updated_by"];

/// Validates a `PUT` body (pure): see the module doc for the rules and their codes.
pub fn parse_settings_body(body: &[u8]) -> Result<SessionSettingsBody, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    };
    if let Some(field) = READ_ONLY.iter().find(|f| object.contains_key(**f)) {
        return Err(ApiError::BadRequest(format!(
            "{field} is set by the server; send only redact_operations, protected_users and protected_app_names"
        )));
    }
    // A repeated field (serde_json's `Value` keeps the last) or an unknown one is refused.
    let _: BodyFields = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid session settings: {e}")))?;
    let required = |name: &str| {
        object.get(name).ok_or_else(|| {
            ApiError::BadRequest(format!("{name} is required (PUT replaces the whole settings object)"))
        })
    };
    let redact_operations = required("redact_operations")?
        .as_bool()
        .ok_or_else(|| ApiError::BadRequest("redact_operations must be true or false".into()))?;
    let protected_users = names(required("protected_users")?, "protected_users")?;
    let protected_app_names = names(required("protected_app_names")?, "protected_app_names")?;
    Ok(SessionSettingsBody { redact_operations, protected_users, protected_app_names })
}

/// One list of names: strings, each valid, repeats collapsed, at most [`MAX_NAMES`].
fn names(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::BadRequest(format!("{field} must be an array of strings")));
    };
    // Linear in the body (bounded by the body limit): a set for the repeats, and a stop at the
    // first name over the bound.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::String(name) = item else {
            return Err(ApiError::BadRequest(format!("{field}[{i}] must be a string")));
        };
        check_name(name).map_err(|why| ApiError::InvalidProtectedName(format!("{field}[{i}] {why}")))?;
        if seen.insert(name) {
            if out.len() == MAX_NAMES {
                return Err(ApiError::TooManyProtectedNames(format!(
                    "{field} holds more than {MAX_NAMES} distinct names"
                )));
            }
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// Why `name` cannot be a protected name, as the end of a sentence.
fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err("is empty".into());
    }
    if chars > MAX_NAME_CHARS {
        return Err(format!("has {chars} characters; at most {MAX_NAME_CHARS} are allowed"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character U+{:04X}", u32::from(c)));
    }
    if name.trim() != name {
        return Err("has leading or trailing white space".into());
    }
    Ok(())
}

/// An instance's session settings (docplane extension): the stored ones, or the defaults.
#[utoipa::path(get, path = "/v3/{project_id}/instances/{instance_id}/session-settings", tag = "docplane",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = SessionSettingsResponse),
              (status = 404, body = ErrorBody, description = "DBS.200002")))]
pub async fn get_session_settings(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
) -> Result<Json<SessionSettingsResponse>, ApiError> {
    let settings = st
        .store
        .get_session_settings(p.project_id(), &path.instance_id)
        .await?
        .ok_or(ApiError::InstanceNotFound)?;
    Ok(Json(settings.into()))
}

/// Replace an instance's session settings (docplane extension; the whole object).
#[utoipa::path(put, path = "/v3/{project_id}/instances/{instance_id}/session-settings", tag = "docplane",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = SessionSettingsBody,
    responses((status = 200, body = SessionSettingsResponse, description = "The settings as stored"),
              (status = 400, body = ErrorBody, description = "DBS.200001 DBS.900030 DBS.900031"),
              (status = 404, body = ErrorBody, description = "DBS.200002")))]
pub async fn put_session_settings(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<InstancePath>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<SessionSettingsResponse>, ApiError> {
    let body = parse_settings_body(&body)?;
    let settings = SessionSettings {
        instance_id: path.instance_id.clone(),
        redact_operations: body.redact_operations,
        protected_users: body.protected_users,
        protected_app_names: body.protected_app_names,
        updated_at: now_millis(),
        updated_by: p.user_name.clone(),
    };
    match st.store.put_session_settings(p.project_id(), &settings).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::InstanceNotFound),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        instance = %settings.instance_id,
        by = %settings.updated_by,
        redact_operations = settings.redact_operations,
        protected_users = settings.protected_users.len(),
        protected_app_names = settings.protected_app_names.len(),
        "session settings changed"
    );
    Ok(Json(settings.into()))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: &Value) -> Result<SessionSettingsBody, ApiError> {
        parse_settings_body(&serde_json::to_vec(v).unwrap())
    }

    fn refused(body: &[u8]) -> (&'static str, String) {
        let e = parse_settings_body(body).unwrap_err();
        (e.code_and_status().0, e.public_message())
    }

    #[test]
    fn a_whole_object_is_taken_with_repeats_collapsed() {
        let b = parse(&json!({"redact_operations": true, "protected_users": ["app", "backup@admin", "app"],
                              "protected_app_names": ["nightly report", "ünï"]}))
        .unwrap();
        assert_eq!(
            b,
            SessionSettingsBody {
                redact_operations: true,
                protected_users: vec!["app".into(), "backup@admin".into()],
                protected_app_names: vec!["nightly report".into(), "ünï".into()],
            }
        );
        let empty =
            parse(&json!({"redact_operations": false, "protected_users": [], "protected_app_names": []}));
        assert_eq!(empty.unwrap().protected_users, Vec::<String>::new());
        // Limits are inclusive; repeats do not count against them.
        let long = "é".repeat(MAX_NAME_CHARS);
        let mut many: Vec<String> = (0..MAX_NAMES).map(|i| format!("u{i}")).collect();
        many.push("u0".into());
        let b = parse(
            &json!({"redact_operations": false, "protected_users": many, "protected_app_names": [long]}),
        );
        assert_eq!(b.unwrap().protected_users.len(), MAX_NAMES);
    }

    #[test]
    fn structure_refusals_are_parameter_errors() {
        let ok = r#""redact_operations": true, "protected_users": [], "protected_app_names": []"#;
        for (body, says) in [
            ("not json".to_owned(), "not valid JSON"),
            ("[]".to_owned(), "JSON object"),
            ("{}".to_owned(), "redact_operations is required"),
            (
                r#"{"redact_operations": true, "protected_users": []}"#.to_owned(),
                "protected_app_names is required",
            ),
            (format!("{{{ok}, \"protected_users\": [\"x\"]}}"), "duplicate field"),
            (format!("{{{ok}, \"dry_run\": true}}"), "unknown field"),
            (format!("{{{ok}, \"updated_at\": 5}}"), "updated_at is set by the server"),
            (format!("{{{ok}, \"instance_id\": \"x\"}}"), "instance_id is set by the server"),
            (
                r#"{"redact_operations": "yes", "protected_users": [], "protected_app_names": []}"#
                    .to_owned(),
                "true or false",
            ),
            (
                r#"{"redact_operations": true, "protected_users": "app", "protected_app_names": []}"#
                    .to_owned(),
                "protected_users must be an array",
            ),
            (
                r#"{"redact_operations": true, "protected_users": [], "protected_app_names": [1]}"#
                    .to_owned(),
                "protected_app_names[0] must be a string",
            ),
            (
                r#"{"redact_operations": true, "protected_users": null, "protected_app_names": []}"#
                    .to_owned(),
                "protected_users must be an array",
            ),
        ] {
            let (code, msg) = refused(body.as_bytes());
            assert_eq!(code, "DBS.200001", "{body}");
            assert!(msg.contains(says), "{body}: {msg}");
        }
    }

    #[test]
    fn name_refusals_have_their_own_codes() {
        let body = |users: Value| {
            serde_json::to_vec(
                &json!({"redact_operations": false, "protected_users": users, "protected_app_names": []}),
            )
            .unwrap()
        };
        for (users, says) in [
            (json!(["ok", ""]), "protected_users[1] is empty"),
            (json!(["x".repeat(MAX_NAME_CHARS + 1)]), "has 129 characters; at most 128"),
            (json!(["bad\u{7}name"]), "contains the control character U+0007"),
            (json!(["tab\tname"]), "U+0009"),
            (json!([" app"]), "leading or trailing white space"),
            (json!(["app\u{a0}"]), "leading or trailing white space"),
        ] {
            let (code, msg) = refused(&body(users.clone()));
            assert_eq!(code, "DBS.900030", "{users}");
            assert!(msg.contains(says), "{users}: {msg}");
        }
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("u{i}")).collect();
        let (code, msg) = refused(&body(json!(many)));
        assert_eq!(code, "DBS.900031");
        assert!(msg.contains("protected_users holds more than 100 distinct names"), "{msg}");
    }

    #[test]
    fn defaults_answer_nulls() {
        let r = SessionSettingsResponse::from(SessionSettings::defaults("i1"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"instance_id": "i1", "redact_operations": false, "protected_users": [],
                   "protected_app_names": [], "updated_at": null, "updated_by": null})
        );
    }
}
