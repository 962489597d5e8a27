//! Shared harness of the IAM HTTP tests: an in-process API over a fresh SQLite store with a
//! bootstrapped account, the administrator's token, and helpers to create users with exactly the
//! policies a test needs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use docplane_api::{ApiConfig, BootstrapOptions, BootstrapOutput, MasterKey, ServerHandle, bootstrap, serve};
use docplane_iam::sign;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "Admin-password-1";

pub struct Env {
    _dir: tempfile::TempDir,
    pub server: ServerHandle,
    pub boot: BootstrapOutput,
    pub base: String,
    pub http: reqwest::Client,
    /// The account administrator's token, scoped to the bootstrap project.
    pub admin: String,
}

/// One response: status, `error_code` (empty on success), body, headers.
pub struct Resp {
    pub status: u16,
    pub code: String,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
        let key = MasterKey::generate();
        let opts =
            BootstrapOptions { admin_password: Some(ADMIN_PASSWORD.into()), ..BootstrapOptions::default() };
        let boot = bootstrap(store.clone(), &key, &opts).await.unwrap();
        let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
        cfg.sync_interval = Duration::from_millis(200);
        let server = serve(cfg).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let http = reqwest::Client::new();
        let mut e = Env { _dir: dir, server, boot, base, http, admin: String::new() };
        let project = e.boot.project_id.clone();
        e.admin = e.token("admin", ADMIN_PASSWORD, json!({"project": {"id": project}})).await;
        e
    }

    pub async fn stop(self) {
        self.server.shutdown(Duration::from_secs(2)).await.unwrap();
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            rb = rb.header("x-auth-token", t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Self::resp(rb.send().await.unwrap()).await
    }

    pub async fn resp(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        assert!(headers.contains_key("x-request-id"));
        let text = r.text().await.unwrap();
        let body: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        let code = body["error_code"].as_str().unwrap_or("").to_owned();
        Resp { status, code, body, headers }
    }

    /// `POST /v3/auth/tokens` for `name` in the bootstrap account with `scope`; the raw response.
    pub async fn token_resp(&self, name: &str, password: &str, scope: Value, query: &str) -> Resp {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": name, "password": password, "domain": {"name": self.boot.domain_name}}}},
            "scope": scope}});
        let r =
            self.http.post(format!("{}/v3/auth/tokens{query}", self.base)).json(&body).send().await.unwrap();
        Self::resp(r).await
    }

    pub async fn token(&self, name: &str, password: &str, scope: Value) -> String {
        let r = self.token_resp(name, password, scope, "").await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.headers["x-subject-token"].to_str().unwrap().to_owned()
    }

    /// A project-scoped token of `name` on the bootstrap project.
    pub async fn user_token(&self, name: &str, password: &str) -> String {
        self.token(name, password, json!({"project": {"id": self.boot.project_id}})).await
    }

    /// Creates a user (by the administrator); returns its id.
    pub async fn user(&self, name: &str, password: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/v3/users",
                Some(&self.admin),
                Some(json!({"user": {"name": name, "password": password}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["user"]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a group (by the administrator); returns its id.
    pub async fn group(&self, name: &str) -> String {
        let r = self
            .call(Method::POST, "/v3/groups", Some(&self.admin), Some(json!({"group": {"name": name}})))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["group"]["id"].as_str().unwrap().to_owned()
    }

    /// The id of the group `name` (through KeystoneListGroups, by the administrator).
    pub async fn group_id(&self, name: &str) -> String {
        let r = self.call(Method::GET, &format!("/v3/groups?name={name}"), Some(&self.admin), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["groups"][0]["id"].as_str().unwrap().to_owned()
    }

    pub async fn add_member(&self, group_id: &str, user_id: &str) {
        let r = self
            .call(Method::PUT, &format!("/v3/groups/{group_id}/users/{user_id}"), Some(&self.admin), None)
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
    }

    /// Creates a custom policy (by the administrator); returns its id.
    pub async fn policy(&self, name: &str, effect: &str, actions: &[&str]) -> String {
        let r = self
            .call(
                Method::POST,
                "/v3.0/OS-ROLE/roles",
                Some(&self.admin),
                Some(json!({"role": {"display_name": name, "type": "AX", "policy": {"Version": "1.1",
                    "Statement": [{"Effect": effect, "Action": actions, "Resource": ["*"]}]}}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["role"]["id"].as_str().unwrap().to_owned()
    }

    /// Gives `user_id` an Allow of `actions` on `scope` (the account id or a project id) through a
    /// fresh group.
    pub async fn allow(&self, user_id: &str, scope: &str, actions: &[&str]) {
        let tag = docplane_iam::new_id();
        let g = self.group(&format!("g-{}", &tag[..12])).await;
        let role = self.policy(&format!("p-{}", &tag[..12]), "Allow", actions).await;
        let path = if scope == self.boot.domain_id {
            format!("/v3/domains/{scope}/groups/{g}/roles/{role}")
        } else {
            format!("/v3/projects/{scope}/groups/{g}/roles/{role}")
        };
        let r = self.call(Method::PUT, &path, Some(&self.admin), None).await;
        assert_eq!(r.status, 204, "{}", r.body);
        self.add_member(&g, user_id).await;
    }

    /// A user holding exactly `actions` account-wide; returns (id, project-scoped token).
    pub async fn user_with(&self, name: &str, password: &str, actions: &[&str]) -> (String, String) {
        let id = self.user(name, password).await;
        if !actions.is_empty() {
            let d = self.boot.domain_id.clone();
            self.allow(&id, &d, actions).await;
        }
        let t = self.user_token(name, password).await;
        (id, t)
    }

    /// A request signed with `ak`/`sk` the way the SDKs sign (`X-Sdk-Date` = now + `skew`).
    pub async fn signed(
        &self,
        method: &str,
        path: &str,
        ak: &str,
        sk: &str,
        skew: chrono::Duration,
        extra: &[(&str, &str)],
    ) -> Resp {
        let host = self.server.local_addr().to_string();
        let mut h = vec![
            ("host".to_owned(), host),
            ("x-sdk-date".to_owned(), sign::format_sdk_date(Utc::now() + skew)),
        ];
        for (k, v) in extra {
            h.push(((*k).to_owned(), (*v).to_owned()));
        }
        let auth = sign::sign(method, path, "", &h, b"", ak, sk.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", self.base))
            .header("authorization", auth);
        for (k, v) in h.iter().filter(|(k, _)| k != "host") {
            rb = rb.header(k, v);
        }
        Self::resp(rb.send().await.unwrap()).await
    }
}
