//! [`ApiError`]: every error the HTTP surface can return, and the one `match` that turns it into a
//! vendor error code and HTTP status.
//!
//! Body shape is always `{"error_code": "DBS.xxxxxx", "error_msg": "..."}`. Codes the vendor
//! documents are reused with the vendor's status; docplane's own conditions use the reserved range
//! `DBS.9xxxxx`, which the vendor does not use (its DDS codes are `DBS.2xxxxx`/`DBS.3xxxxx`).
//! Authentication failures (no credential, bad or expired token, unknown access key, bad
//! signature) are answered, as on the vendor's cloud, with its API gateway's codes (`APIGW.xxxx`),
//! since there the gateway refuses them before DDS sees the request; the gateway uses one code for
//! several conditions, told apart by the message.
//! docs/errors.md lists every code; `tests` in this module keep the two in step.
//! Internal details (store errors, driver errors) are logged, never sent to the client.
//!
//! [`vendor_shape`] is the last-resort layer: any 4xx/5xx that is not JSON (a rejection axum or a
//! tower layer produced without going through [`ApiError`]) is rewritten into the same shape, so
//! no client ever sees a plain-text error.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use docplane_iam::IamError;
use serde::Serialize;
use utoipa::ToSchema;

/// The error body.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    /// `DBS.xxxxxx`.
    pub error_code: String,
    pub error_msg: String,
}

/// Every error the API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // ---- vendor codes (dds-api.md)
    #[error("Invalid parameter: {0}")]
    BadRequest(String),
    #[error("The DB instance does not exist.")]
    InstanceNotFound,
    #[error("The node does not exist.")]
    NodeNotFound,
    #[error("The instance status does not allow this operation: {0}")]
    InstanceStateForbids(String),
    #[error("The node status does not allow this operation: {0}")]
    NodeStateForbids(String),
    #[error("Invalid datastore version: {0}")]
    InvalidDatastoreVersion(String),
    #[error("Invalid node role: {0}")]
    InvalidNodeRole(String),
    #[error("Server error.")]
    Internal(String),
    /// An internal error that came from the metadata store (answered as [`ApiError::Internal`];
    /// kept apart so the metrics count it as a store error).
    #[error("Server error.")]
    StoreFailed(String),
    #[error("You do not have permission to perform action {action}.")]
    Forbidden { action: String },
    #[error("Unsupported operation: {0}")]
    UnsupportedOperation(String),
    #[error("Invalid node ID.")]
    InvalidNodeId,
    #[error("Invalid project ID.")]
    InvalidProjectId,
    /// Answered with `Retry-After` (whole seconds, at least 1).
    #[error("Too many requests.")]
    TooManyRequests { retry_after: Duration },
    #[error("Invalid limit: {0}")]
    InvalidLimit(String),
    #[error("Invalid offset: {0}")]
    InvalidOffset(String),
    /// `DBS.301071`; the message names the refused ids (unknown, malformed or inactive).
    #[error("{0}")]
    InvalidSessionId(String),
    #[error("Invalid plan summary: {0}")]
    InvalidPlanSummary(String),
    #[error("Invalid operation type: {0}")]
    InvalidOperationType(String),
    #[error("Invalid namespace: {0}")]
    InvalidNamespace(String),
    #[error("Invalid cost time: {0}")]
    InvalidCostTime(String),
    /// The cause is public (a category, see [`NodeCause`]); the detail is logged only.
    #[error("Query session failed: {0}.")]
    QuerySessionFailed(NodeCause, String),
    #[error("Kill session failed: {0}.")]
    KillSessionFailed(NodeCause, String),

    // ---- the vendor's API gateway codes (APIGW.xxxx). Evidence: the vendor's "API Request Signing
    // Guide", section "Error Codes" (support.huaweicloud.com/devg-apisign/api-sign-errorcode.html):
    // `APIGW.0301` "Incorrect IAM authentication information." 401; `APIGW.0307` "The token must be
    // updated." 401. The detail after the colon follows the gateway's own texts in "Common Errors
    // Related to IAM Authentication Information" (devg-apisign/api-sign-0001.html: "verify aksk
    // signature fail", "Get secretKey failed ... ak not exist", "decrypt token fail"; the 15-minute
    // `X-Sdk-Date` window is a cause of the signature failure there) and the OCR FAQ on APIG.0301
    // (ocr_faq/ocr_01_0063.html: "x-auth-token not found").
    #[error("Incorrect IAM authentication information: x-auth-token not found")]
    AuthRequired,
    #[error("Incorrect IAM authentication information: decrypt token fail")]
    InvalidToken,
    /// Expired, or revoked (user disabled or deleted, password changed): a new token is needed.
    #[error("The token must be updated.")]
    TokenExpired,
    #[error("Incorrect IAM authentication information: Get secretKey failed, err: ak not exist")]
    UnknownAccessKey,
    #[error("Incorrect IAM authentication information: verify aksk signature fail")]
    InvalidSignature,
    #[error(
        "Incorrect IAM authentication information: verify aksk signature fail, X-Sdk-Date is more than 15 minutes away from the server time"
    )]
    SignatureExpired,

    // ---- docplane's own codes (DBS.9xxxxx)
    #[error("The username or password is wrong.")]
    InvalidCredentials,
    #[error("The credential is not valid for the {0} in the request.")]
    ScopeMismatch(&'static str),
    #[error("The {0} does not exist.")]
    IamNotFound(&'static str),
    #[error("Already exists: {0}")]
    Conflict(String),
    #[error("No route for this path.")]
    RouteNotFound,
    #[error("Method not allowed for this path.")]
    MethodNotAllowed,
    #[error("Request body too large.")]
    PayloadTooLarge,
    #[error("Content-Type must be application/json.")]
    UnsupportedMediaType,
    // Identity rules (docs/iam-rules.md).
    #[error("This operation needs the account administrator level: {0}.")]
    AdminLevelRequired(String),
    #[error("The account administrator is protected: {0}.")]
    ProtectedAdministrator(String),

    // ---- HTTP limits, signed bodies and store outages (DBS.9xxxxx, kept together)
    /// A signed request with a body marked `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`.
    #[error(
        "The request body is not covered by the signature: X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD is not accepted; sign the body's SHA-256."
    )]
    UnsignedPayload,
    /// The body did not arrive within the body-read timeout.
    #[error("The request body was not received in time.")]
    BodyTimeout,
    /// The metadata store cannot be reached (e.g. PostgreSQL is down); the detail is logged.
    #[error("The service is temporarily unavailable; try again later.")]
    StoreUnavailable(String),

    // ---- kill records (issue 9): keep this block together
    /// `DBS.301077`: killOp was accepted but these operations were still running at the verify
    /// deadline (they stay marked `killPending` on the node).
    #[error("Kill session failed: still running at the verification deadline: {}", .0.join(", "))]
    KillStillRunning(Vec<String>),
    /// `DBS.301077`: killOp was accepted but the node could not be read afterwards.
    #[error("Kill session failed: the node could not be read to verify: {}", .0.join(", "))]
    KillUnverified(Vec<String>),
    /// `DBS.900503`: the kill's record could not be committed, so nothing was killed.
    #[error("The kill could not be recorded; nothing was killed. Retry later.")]
    KillNotRecorded(String),

    // ---- session settings (issue 9): keep this block together
    /// `DBS.900030`: a name of `protected_users` / `protected_app_names` is not acceptable.
    #[error("Invalid protected name: {0}.")]
    InvalidProtectedName(String),
    /// `DBS.900031`: a list of protected names is over its bound.
    #[error("Too many protected names: {0}.")]
    TooManyProtectedNames(String),
    /// `DBS.900032`: a selector kill matched more killable sessions than its `max`; nothing was
    /// killed.
    #[error("Too many sessions match: {0}.")]
    TooManyMatches(String),

    // ---- kill-op rules and connection statistics (issue 11): keep this block together.
    // The vendor publishes no per-field codes for these calls; operation types, namespaces and
    // plan summaries reuse its session-list codes (DBS.301073, DBS.301074, DBS.301072).
    /// `DBS.900110`: `client_ips` is not a list of at most 5 distinct IPv4 addresses.
    #[error("Invalid client_ips: {0}.")]
    InvalidRuleClientIps(String),
    /// `DBS.900111`: `max_concurrency` is not 0 or 1..=100000.
    #[error("Invalid max_concurrency: {0}.")]
    InvalidRuleMaxConcurrency(String),
    /// `DBS.900112`: `secs_running` is not 0 or 2..=86400.
    #[error("Invalid secs_running: {0}.")]
    InvalidRuleSecsRunning(String),
    /// `DBS.900113`: `secs_running` and `max_concurrency` are both 0 (the rule would limit nothing).
    #[error("secs_running and max_concurrency cannot both be 0.")]
    RuleWithoutLimit,
    /// `DBS.900114`: `node_type` is missing, unknown, or names no node of the instance's mode.
    #[error("Invalid node_type: {0}.")]
    InvalidRuleNodeType(String),
    /// `DBS.900115`: `mode` (docplane's extension) is not `kill` or `observe`.
    #[error("Invalid mode: {0}.")]
    InvalidRuleMode(String),
    /// `DBS.900116`: the instance already has the most rules it may have; nothing was created.
    #[error("The instance already has {0} killOp rules, the most allowed.")]
    TooManyRules(i64),
    /// `DBS.900117`: a rule id names no rule of the instance; nothing was changed.
    #[error("The killOp rule does not exist: {0}.")]
    RuleNotFound(String),
    /// `DBS.900118`: `ids` is missing, empty, not a list of strings, or longer than 10.
    #[error("Invalid ids: {0}.")]
    InvalidRuleIds(String),
    /// `DBS.900119`: `action` is not `enable` or `disable`.
    #[error("Invalid action: {0}.")]
    InvalidRuleAction(String),
    /// `DBS.900120`: deleting an enabled rule; disable it first. Nothing was deleted.
    #[error("An enabled killOp rule cannot be deleted; disable it first: {0}.")]
    RuleEnabled(String),
    /// `DBS.900121`: the listing's `status` is not `ENABLED` or `DISABLED`.
    #[error("Invalid status: {0}.")]
    InvalidRuleStatus(String),
}

/// Why a node could not be read or killed on: a category safe to send (the detail, which may name
/// addresses or server text, goes to the log under the request id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCause {
    Unreachable,
    Timeout,
    /// The node refused the credentials docplane holds for it.
    AuthenticationFailed,
    /// The node answered the command with this MongoDB error code.
    Refused(i32),
    Other,
}

impl std::fmt::Display for NodeCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeCause::Unreachable => f.write_str("the node is unreachable"),
            NodeCause::Timeout => f.write_str("the node did not answer in time"),
            NodeCause::AuthenticationFailed => f.write_str("the node refused the registered credentials"),
            NodeCause::Refused(code) => write!(f, "the node refused the command (error {code})"),
            NodeCause::Other => f.write_str("see the server log for this request id"),
        }
    }
}

impl ApiError {
    /// The one mapping from error to (code, HTTP status).
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use ApiError::*;
        match self {
            BadRequest(_) => ("DBS.200001", StatusCode::BAD_REQUEST),
            InstanceNotFound => ("DBS.200002", StatusCode::NOT_FOUND),
            NodeNotFound => ("DBS.200013", StatusCode::NOT_FOUND),
            InstanceStateForbids(_) => ("DBS.200011", StatusCode::FORBIDDEN),
            NodeStateForbids(_) => ("DBS.200019", StatusCode::FORBIDDEN),
            InvalidDatastoreVersion(_) => ("DBS.200041", StatusCode::BAD_REQUEST),
            InvalidNodeRole(_) => ("DBS.200075", StatusCode::BAD_REQUEST),
            Internal(_) | StoreFailed(_) => ("DBS.280005", StatusCode::INTERNAL_SERVER_ERROR),
            Forbidden { .. } => ("DBS.280063", StatusCode::FORBIDDEN),
            UnsupportedOperation(_) => ("DBS.280343", StatusCode::BAD_REQUEST),
            InvalidNodeId => ("DBS.280407", StatusCode::BAD_REQUEST),
            InvalidProjectId => ("DBS.280408", StatusCode::BAD_REQUEST),
            TooManyRequests { .. } => ("DBS.280443", StatusCode::TOO_MANY_REQUESTS),
            InvalidLimit(_) => ("DBS.280439", StatusCode::BAD_REQUEST),
            InvalidOffset(_) => ("DBS.280440", StatusCode::BAD_REQUEST),
            InvalidSessionId(_) => ("DBS.301071", StatusCode::BAD_REQUEST),
            InvalidPlanSummary(_) => ("DBS.301072", StatusCode::BAD_REQUEST),
            InvalidOperationType(_) => ("DBS.301073", StatusCode::BAD_REQUEST),
            InvalidNamespace(_) => ("DBS.301074", StatusCode::BAD_REQUEST),
            InvalidCostTime(_) => ("DBS.301075", StatusCode::BAD_REQUEST),
            QuerySessionFailed(..) => ("DBS.301076", StatusCode::BAD_REQUEST),
            KillSessionFailed(..) => ("DBS.301077", StatusCode::BAD_REQUEST),
            AuthRequired | InvalidToken | UnknownAccessKey | InvalidSignature | SignatureExpired => {
                ("APIGW.0301", StatusCode::UNAUTHORIZED)
            }
            TokenExpired => ("APIGW.0307", StatusCode::UNAUTHORIZED),
            InvalidCredentials => ("DBS.900002", StatusCode::UNAUTHORIZED),
            ScopeMismatch(_) => ("DBS.900004", StatusCode::FORBIDDEN),
            IamNotFound(_) => ("DBS.900010", StatusCode::NOT_FOUND),
            Conflict(_) => ("DBS.900009", StatusCode::CONFLICT),
            RouteNotFound => ("DBS.900404", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("DBS.900405", StatusCode::METHOD_NOT_ALLOWED),
            PayloadTooLarge => ("DBS.900413", StatusCode::PAYLOAD_TOO_LARGE),
            UnsupportedMediaType => ("DBS.900415", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            AdminLevelRequired(_) => ("DBS.900020", StatusCode::FORBIDDEN),
            ProtectedAdministrator(_) => ("DBS.900021", StatusCode::FORBIDDEN),
            UnsignedPayload => ("DBS.900022", StatusCode::UNAUTHORIZED),
            BodyTimeout => ("DBS.900408", StatusCode::REQUEST_TIMEOUT),
            StoreUnavailable(_) => ("DBS.900503", StatusCode::SERVICE_UNAVAILABLE),
            // ---- kill records (issue 9)
            KillStillRunning(_) | KillUnverified(_) => ("DBS.301077", StatusCode::BAD_REQUEST),
            KillNotRecorded(_) => ("DBS.900503", StatusCode::SERVICE_UNAVAILABLE),
            // ---- session settings (issue 9)
            InvalidProtectedName(_) => ("DBS.900030", StatusCode::BAD_REQUEST),
            TooManyProtectedNames(_) => ("DBS.900031", StatusCode::BAD_REQUEST),
            TooManyMatches(_) => ("DBS.900032", StatusCode::BAD_REQUEST),
            // ---- kill-op rules (issue 11)
            InvalidRuleClientIps(_) => ("DBS.900110", StatusCode::BAD_REQUEST),
            InvalidRuleMaxConcurrency(_) => ("DBS.900111", StatusCode::BAD_REQUEST),
            InvalidRuleSecsRunning(_) => ("DBS.900112", StatusCode::BAD_REQUEST),
            RuleWithoutLimit => ("DBS.900113", StatusCode::BAD_REQUEST),
            InvalidRuleNodeType(_) => ("DBS.900114", StatusCode::BAD_REQUEST),
            InvalidRuleMode(_) => ("DBS.900115", StatusCode::BAD_REQUEST),
            TooManyRules(_) => ("DBS.900116", StatusCode::BAD_REQUEST),
            RuleNotFound(_) => ("DBS.900117", StatusCode::NOT_FOUND),
            InvalidRuleIds(_) => ("DBS.900118", StatusCode::BAD_REQUEST),
            InvalidRuleAction(_) => ("DBS.900119", StatusCode::BAD_REQUEST),
            RuleEnabled(_) => ("DBS.900120", StatusCode::BAD_REQUEST),
            InvalidRuleStatus(_) => ("DBS.900121", StatusCode::BAD_REQUEST),
        }
    }

    /// The message sent to the client (internal details are not included).
    pub fn public_message(&self) -> String {
        match self {
            // The Display of these variants already omits the detail.
            ApiError::Internal(_)
            | ApiError::StoreFailed(_)
            | ApiError::QuerySessionFailed(..)
            | ApiError::KillSessionFailed(..)
            | ApiError::StoreUnavailable(_)
            | ApiError::KillNotRecorded(_) => self.to_string(),
            other => other.to_string(),
        }
    }

    /// The body for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error_code: self.code_and_status().0.to_owned(), error_msg: self.public_message() }
    }
}

/// A unique-constraint violation from the store. Its text is the database's own ("UNIQUE constraint
/// failed: users.domain_id, users.name"), which names tables and columns: it goes to the log, and the
/// client gets a plain sentence.
fn store_conflict(detail: &str) -> ApiError {
    tracing::debug!(detail, "store conflict");
    ApiError::Conflict("an object with that name already exists".into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (_, status) = self.code_and_status();
        match &self {
            ApiError::Internal(d) => tracing::error!(detail = %d, "internal error"),
            ApiError::StoreFailed(d) => tracing::error!(detail = %d, "internal error (metadata store)"),
            ApiError::StoreUnavailable(d) => tracing::warn!(detail = %d, "metadata store unavailable"),
            ApiError::KillNotRecorded(d) => {
                tracing::error!(detail = %d, "kill refused: record not committed")
            }
            ApiError::QuerySessionFailed(_, d) | ApiError::KillSessionFailed(_, d) => {
                tracing::warn!(detail = %d, error = %self, "session operation failed")
            }
            _ => {}
        }
        let mut resp = (status, Json(self.body())).into_response();
        match &self {
            ApiError::StoreUnavailable(_) => {
                resp.extensions_mut().insert(crate::metrics::StoreFailure("unavailable"));
            }
            ApiError::StoreFailed(_) => {
                resp.extensions_mut().insert(crate::metrics::StoreFailure("other"));
            }
            _ => {}
        }
        if let ApiError::TooManyRequests { retry_after } = &self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(*retry_after)));
        }
        resp
    }
}

/// `Retry-After` in whole seconds: rounded up, at least 1 (0 would invite an immediate retry).
fn retry_after_secs(d: Duration) -> u64 {
    let rounded_up = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    rounded_up.max(1)
}

/// The [`ApiError`] standing for an error response of `status` that did not come from an
/// [`ApiError`]; `text` is its (plain) body, kept only for client errors, where it describes the
/// request (axum's rejection texts), never server state.
pub fn error_for_status(status: StatusCode, text: &str) -> ApiError {
    let detail = || {
        let t = text.trim();
        if t.is_empty() {
            status.canonical_reason().unwrap_or("bad request").to_owned()
        } else {
            t.to_owned()
        }
    };
    match status {
        StatusCode::UNAUTHORIZED => ApiError::AuthRequired,
        StatusCode::NOT_FOUND => ApiError::RouteNotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::REQUEST_TIMEOUT => ApiError::BodyTimeout,
        StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests { retry_after: Duration::from_secs(1) },
        s if s.is_server_error() => ApiError::Internal(detail()),
        _ => ApiError::BadRequest(detail()),
    }
}

/// Largest plain error body [`vendor_shape`] reads to carry over as the message.
const MAX_PLAIN_ERROR_BODY: usize = 4096;

fn is_json(resp: &Response) -> bool {
    resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Middleware: rewrites every non-JSON 4xx/5xx into the vendor error shape: the [`ApiError`] that
/// [`error_for_status`] picks, with its documented status (so a 422 becomes 400 `DBS.200001`,
/// like the JSON extractor's). Other headers and the response extensions (the access log's
/// principal) are kept; `X-Request-Id` is added by the observe layer outside.
pub async fn vendor_shape(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let error = error_for_status(status, &text);
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), detail = %text, "plain error response rewritten");
    }
    let json = serde_json::to_vec(&error.body()).unwrap_or_default();
    parts.status = error.code_and_status().1;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

impl From<IamError> for ApiError {
    fn from(e: IamError) -> Self {
        match e {
            IamError::InvalidCredentials => ApiError::InvalidCredentials,
            IamError::InvalidToken("expired" | "revoked") => ApiError::TokenExpired,
            IamError::InvalidToken(_) => ApiError::InvalidToken,
            IamError::InvalidSignature(docplane_iam::SignError::Skew) => ApiError::SignatureExpired,
            IamError::InvalidSignature(_) => ApiError::InvalidSignature,
            IamError::UnknownAccessKey => ApiError::UnknownAccessKey,
            IamError::AdminLevelRequired(m) => ApiError::AdminLevelRequired(m),
            IamError::ProtectedAdministrator(m) => ApiError::ProtectedAdministrator(m),
            IamError::Forbidden { action } => ApiError::Forbidden { action },
            IamError::NotFound(what) => ApiError::IamNotFound(what),
            IamError::Conflict(m) => store_conflict(&m),
            IamError::BadRequest(m) => ApiError::BadRequest(m),
            IamError::Store(e) => e.into(),
            IamError::Internal(m) => ApiError::Internal(m),
            e @ IamError::MasterKeyMismatch => ApiError::Internal(e.to_string()),
            IamError::TooManyAttempts { retry_after } => ApiError::TooManyRequests { retry_after },
        }
    }
}

impl From<docplane_store::StoreError> for ApiError {
    fn from(e: docplane_store::StoreError) -> Self {
        match e {
            docplane_store::StoreError::Conflict(m) => store_conflict(&m),
            e @ docplane_store::StoreError::Unavailable(_) => ApiError::StoreUnavailable(e.to_string()),
            other => ApiError::StoreFailed(other.to_string()),
        }
    }
}

/// One sample of every variant (used by the docs test; keep in step with the enum).
pub fn all_samples() -> Vec<ApiError> {
    use ApiError::*;
    let s = || String::from("x");
    vec![
        BadRequest(s()),
        InstanceNotFound,
        NodeNotFound,
        InstanceStateForbids(s()),
        NodeStateForbids(s()),
        InvalidDatastoreVersion(s()),
        InvalidNodeRole(s()),
        Internal(s()),
        StoreFailed(s()),
        Forbidden { action: s() },
        UnsupportedOperation(s()),
        InvalidNodeId,
        InvalidProjectId,
        TooManyRequests { retry_after: Duration::from_secs(1) },
        InvalidLimit(s()),
        InvalidOffset(s()),
        InvalidSessionId(s()),
        InvalidPlanSummary(s()),
        InvalidOperationType(s()),
        InvalidNamespace(s()),
        InvalidCostTime(s()),
        QuerySessionFailed(NodeCause::Unreachable, s()),
        KillSessionFailed(NodeCause::Other, s()),
        AuthRequired,
        InvalidToken,
        TokenExpired,
        UnknownAccessKey,
        InvalidSignature,
        SignatureExpired,
        InvalidCredentials,
        ScopeMismatch("project"),
        IamNotFound("user"),
        Conflict(s()),
        RouteNotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        AdminLevelRequired(s()),
        ProtectedAdministrator(s()),
        UnsignedPayload,
        BodyTimeout,
        StoreUnavailable(s()),
        InvalidProtectedName(s()),
        TooManyMatches(s()),
        TooManyProtectedNames(s()),
        InvalidRuleClientIps(s()),
        InvalidRuleMaxConcurrency(s()),
        InvalidRuleSecsRunning(s()),
        RuleWithoutLimit,
        InvalidRuleNodeType(s()),
        InvalidRuleMode(s()),
        TooManyRules(10),
        RuleNotFound(s()),
        InvalidRuleIds(s()),
        InvalidRuleAction(s()),
        RuleEnabled(s()),
        InvalidRuleStatus(s()),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_vendor_shaped_and_documented() {
        let doc = include_str!("../../../docs/errors.md");
        let mut seen = std::collections::HashSet::new();
        let mut gateway_statuses = std::collections::HashMap::new();
        for e in all_samples() {
            let (code, status) = e.code_and_status();
            let digits = code.strip_prefix("DBS.").or_else(|| code.strip_prefix("APIGW.")).unwrap_or("");
            assert!(code.len() == 10 && !digits.is_empty(), "{code}");
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{code}");
            if let ApiError::StoreFailed(_) = e {
                // Answered exactly as `Internal`; a variant of its own only for the metrics.
                assert_eq!((code, status), ApiError::Internal(String::new()).code_and_status());
                continue;
            }
            if code.starts_with("APIGW.") {
                // The gateway answers several conditions with one code (told apart by the message),
                // always with the same status.
                assert_eq!(*gateway_statuses.entry(code).or_insert(status), status, "{code}");
            } else {
                assert!(seen.insert(code), "duplicate code {code}");
            }
            let row = doc
                .lines()
                .find(|l| l.contains(&format!("`{code}`")))
                .unwrap_or_else(|| panic!("{code} missing from docs/errors.md"));
            assert!(row.contains(&status.as_u16().to_string()), "{code}: status {status} not in docs row");
        }
    }

    #[test]
    fn plain_statuses_map_to_vendor_codes() {
        let code = |s: u16, t: &str| error_for_status(StatusCode::from_u16(s).unwrap(), t).body();
        assert_eq!(code(413, "Failed to buffer the request body").error_code, "DBS.900413");
        let b = code(400, "Invalid UTF-8 in `project_id`");
        assert_eq!(
            (b.error_code.as_str(), b.error_msg.as_str()),
            ("DBS.200001", "Invalid parameter: Invalid UTF-8 in `project_id`")
        );
        assert_eq!(code(422, "").error_msg, "Invalid parameter: Unprocessable Entity");
        assert_eq!(code(404, "").error_code, "DBS.900404");
        assert_eq!(code(405, "").error_code, "DBS.900405");
        assert_eq!(code(415, "").error_code, "DBS.900415");
        let b = code(503, "db password=x");
        assert_eq!(b.error_code, "DBS.280005");
        assert!(!b.error_msg.contains("password"));
    }

    #[test]
    fn authentication_failures_use_the_gateway_codes() {
        let c = |e: ApiError| {
            let (code, status) = e.code_and_status();
            (code, status.as_u16())
        };
        assert_eq!(c(ApiError::AuthRequired), ("APIGW.0301", 401));
        assert_eq!(c(IamError::InvalidToken("malformed").into()), ("APIGW.0301", 401));
        assert_eq!(c(IamError::InvalidToken("expired").into()), ("APIGW.0307", 401));
        assert_eq!(c(IamError::InvalidToken("revoked").into()), ("APIGW.0307", 401));
        assert_eq!(c(IamError::UnknownAccessKey.into()), ("APIGW.0301", 401));
        assert_eq!(
            c(IamError::InvalidSignature(docplane_iam::SignError::Mismatch).into()),
            ("APIGW.0301", 401)
        );
        let skew: ApiError = IamError::InvalidSignature(docplane_iam::SignError::Skew).into();
        assert!(skew.public_message().contains("15 minutes"));
        assert_eq!(c(skew), ("APIGW.0301", 401));
        assert_eq!(error_for_status(StatusCode::UNAUTHORIZED, "").body().error_code, "APIGW.0301");
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        for (wait, header) in [(0, "1"), (1, "1"), (999, "1"), (1000, "1"), (1001, "2"), (60_000, "60")] {
            let resp = ApiError::TooManyRequests { retry_after: Duration::from_millis(wait) }.into_response();
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(resp.headers()[header::RETRY_AFTER], header, "{wait} ms");
        }
    }

    #[test]
    fn internal_details_stay_inside() {
        let b = ApiError::Internal("password=hunter2 at db".into()).body();
        assert_eq!(b.error_code, "DBS.280005");
        assert!(!b.error_msg.contains("hunter2"));
        let b = ApiError::StoreUnavailable("connect to postgres://u:pw@db failed".into()).body();
        assert_eq!(b.error_code, "DBS.900503");
        assert!(!b.error_msg.contains("pw@"), "{}", b.error_msg);
        let b = ApiError::KillSessionFailed(NodeCause::Refused(13), "secret detail".into()).body();
        assert!(!b.error_msg.contains("secret"));
        assert_eq!(b.error_msg, "Kill session failed: the node refused the command (error 13).");
        let b = ApiError::QuerySessionFailed(NodeCause::Unreachable, "10.0.0.5:27017 refused".into()).body();
        assert_eq!(b.error_msg, "Query session failed: the node is unreachable.");
        let b = ApiError::Forbidden { action: "dds:instance:listSession".into() }.body();
        assert!(b.error_msg.contains("dds:instance:listSession"));
    }

    #[test]
    fn store_conflicts_do_not_reach_the_client_as_sql() {
        let sql = "UNIQUE constraint failed: users.domain_id, users.name";
        for e in [
            ApiError::from(docplane_store::StoreError::Conflict(sql.into())),
            IamError::Conflict(sql.into()).into(),
        ] {
            let body = e.body();
            assert_eq!(body.error_code, "DBS.900009");
            assert!(
                !body.error_msg.contains("UNIQUE") && !body.error_msg.contains("users."),
                "{}",
                body.error_msg
            );
        }
    }
}
