//! The client subcommands: `login`, `instances`, `sessions`. They speak only the public HTTP API, so they
//! work against any docplane endpoint (and, for the DDS routes, against the vendor's own).

pub mod output;
pub mod profiles;
pub mod rules;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use profiles::{Credentials, Profile};

/// An error the API answered with: printed as `DBS.xxxxxx: message`.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// A signed-in connection to one endpoint and project.
pub struct ApiClient {
    http: reqwest::Client,
    profile: Profile,
}

impl ApiClient {
    pub fn new(profile: Profile) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("docplane-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, profile })
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
        let resp = req.send().await.with_context(|| format!("calling {base}"))?;
        decode(resp).await
    }
}

/// Turns an HTTP response into its JSON body, or the API's error into an [`ApiFailure`].
pub async fn decode(resp: reqwest::Response) -> Result<Value> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
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
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(ApiFailure { status, code, message }.into())
}
