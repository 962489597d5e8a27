//! The client subcommands: `login`, `instances`, `sessions`, `audit`. They speak only the public HTTP
//! API, so they work against any docplane endpoint (and, for the DDS routes, against the vendor's own).
//!
//! Every failure ends as one of the typed errors below, so `main` can print it once (vendor code,
//! cause, request id) and pick the documented exit code ([`exit_code`], docs/cli.md).

pub mod format;
pub mod output;
pub mod profiles;
pub mod rules;

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use profiles::{Credentials, Profile};

/// The documented exit codes (docs/cli.md).
pub mod exit {
    /// Anything else: an API refusal that is not one of the below, a broken kill-record chain.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap's own code for its errors).
    pub const USAGE: u8 = 2;
    /// Not signed in, credentials refused, token expired, or the principal lacks the permission.
    pub const AUTH: u8 = 3;
    /// The instance, node, user or route does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// The endpoint could not be reached or did not answer within the timeout.
    pub const UNREACHABLE: u8 = 5;
}

/// An error the API answered with: printed as `DBS.xxxxxx: message (HTTP 400, request id ...)`.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message} (HTTP {}, request id {})", status.as_u16(), request_id.as_deref().unwrap_or("none"))]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// The `X-Request-Id` the endpoint answered with: the key to its log line.
    pub request_id: Option<String>,
}

/// The endpoint could not be reached, or did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {reason}")]
pub struct Unreachable {
    pub endpoint: String,
    pub reason: String,
}

/// A wrong or incomplete command line that clap cannot see (e.g. a flag required only in one mode).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// No usable credentials on this side: no such profile, or its token expired.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotSignedIn(pub String);

/// A bail-like constructor for [`UsageError`].
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Codes that mean "not allowed" rather than "not possible now" among the 403 answers.
const PERMISSION_CODES: [&str; 4] = ["DBS.280063", "DBS.900004", "DBS.900020", "DBS.900021"];

/// The exit code for an error (docs/cli.md): the first typed error in its chain decides.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(api) = cause.downcast_ref::<ApiFailure>() {
            return match api.status {
                StatusCode::UNAUTHORIZED => exit::AUTH,
                StatusCode::FORBIDDEN if PERMISSION_CODES.contains(&api.code.as_str()) => exit::AUTH,
                StatusCode::NOT_FOUND => exit::NOT_FOUND,
                _ => exit::FAILURE,
            };
        }
        if cause.is::<Unreachable>() {
            return exit::UNREACHABLE;
        }
        if cause.is::<UsageError>() {
            return exit::USAGE;
        }
        if cause.is::<NotSignedIn>() {
            return exit::AUTH;
        }
    }
    exit::FAILURE
}

/// The one HTTP client of the CLI: every request is bounded by `timeout` (connect included).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("docplane-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Sends a request; a transport failure becomes [`Unreachable`] with its innermost cause only
/// (reqwest's chain repeats the URL at each level), a timeout names the bound and how to raise it.
pub async fn send(
    req: reqwest::RequestBuilder,
    endpoint: &str,
    timeout: Duration,
) -> Result<reqwest::Response> {
    req.send().await.map_err(|e| transport_error(&e, endpoint, timeout).into())
}

fn transport_error(e: &reqwest::Error, endpoint: &str, timeout: Duration) -> Unreachable {
    let reason = if e.is_timeout() {
        format!(
            "no answer within {} (raise it with --timeout or DOCPLANE_TIMEOUT)",
            format::duration(timeout)
        )
    } else {
        let mut inner: &dyn std::error::Error = e;
        while let Some(next) = inner.source() {
            inner = next;
        }
        let what = if e.is_connect() { "cannot connect" } else { "request failed" };
        format!("{what}: {inner}")
    };
    Unreachable { endpoint: endpoint.trim_end_matches('/').to_string(), reason }
}

/// A signed-in connection to one endpoint and project.
pub struct ApiClient {
    http: reqwest::Client,
    timeout: Duration,
    profile: Profile,
}

impl ApiClient {
    pub fn new(profile: Profile, timeout: Duration) -> Result<Self> {
        Ok(Self { http: http_client(timeout)?, timeout, profile })
    }

    pub fn project_id(&self) -> &str {
        &self.profile.project_id
    }

    /// Sends one request; `path` starts with `/v3/...` and `query` is already in the order given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let base = self.profile.endpoint.trim_end_matches('/');
        let mut url =
            reqwest::Url::parse(&format!("{base}{path}")).with_context(|| format!("bad endpoint {base}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let payload = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let mut req =
            self.http.request(method.clone(), url.clone()).header("Content-Type", "application/json");
        match &self.profile.credentials {
            Credentials::Token { token, .. } => {
                req = req.header("X-Auth-Token", token);
            }
            Credentials::Aksk { ak, sk } => {
                // Sign as the vendor SDK does: host, content type, date and project are signed headers.
                let host = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_string(),
                };
                let headers = vec![
                    ("Content-Type".to_string(), "application/json".to_string()),
                    ("Host".to_string(), host),
                    ("X-Project-Id".to_string(), self.profile.project_id.clone()),
                    ("X-Sdk-Date".to_string(), docplane_iam::sign::format_sdk_date(chrono::Utc::now())),
                ];
                let authorization = docplane_iam::sign::sign(
                    method.as_str(),
                    url.path(),
                    url.query().unwrap_or(""),
                    &headers,
                    &payload,
                    ak,
                    sk.as_bytes(),
                )
                .context("signing the request")?;
                for (name, value) in headers.iter().filter(|(n, _)| n != "Content-Type" && n != "Host") {
                    req = req.header(name, value);
                }
                req = req.header("Authorization", authorization);
            }
        }
        if body.is_some() {
            req = req.body(payload);
        }
        let resp = send(req, base, self.timeout).await?;
        decode(resp).await
    }
}

/// Turns an HTTP response into its JSON body, or the API's error into an [`ApiFailure`].
pub async fn decode(resp: reqwest::Response) -> Result<Value> {
    let status = resp.status();
    let request_id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let url = resp.url().clone();
    let bytes = resp.bytes().await.map_err(|e| Unreachable {
        endpoint: url.origin().ascii_serialization(),
        reason: format!("the answer broke off: {e}"),
    })?;
    let json: Value = if bytes.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    if status.is_success() {
        return Ok(json);
    }
    let code = json.get("error_code").and_then(Value::as_str).unwrap_or("HTTP").to_string();
    let message = json
        .get("error_msg")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    Err(ApiFailure { status, code, message, request_id }.into())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> anyhow::Error {
        ApiFailure {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.into(),
            message: "m".into(),
            request_id: Some("r1".into()),
        }
        .into()
    }

    #[test]
    fn exit_codes_tell_the_failures_apart() {
        assert_eq!(exit_code(&api(401, "APIGW.0301")), exit::AUTH);
        assert_eq!(exit_code(&api(403, "DBS.280063")), exit::AUTH);
        assert_eq!(exit_code(&api(403, "DBS.200011")), exit::FAILURE, "a state refusal is not auth");
        assert_eq!(exit_code(&api(404, "DBS.200013")), exit::NOT_FOUND);
        assert_eq!(exit_code(&api(400, "DBS.301076")), exit::FAILURE);
        let down: anyhow::Error = Unreachable { endpoint: "e".into(), reason: "r".into() }.into();
        assert_eq!(exit_code(&down.context("listing")), exit::UNREACHABLE, "context does not hide it");
        assert_eq!(exit_code(&usage("give --node")), exit::USAGE);
        assert_eq!(exit_code(&NotSignedIn("no profile".into()).into()), exit::AUTH);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), exit::FAILURE);
    }

    #[test]
    fn an_api_failure_names_code_message_status_and_request_id_once() {
        assert_eq!(api(400, "DBS.301076").to_string(), "DBS.301076: m (HTTP 400, request id r1)");
    }
}
