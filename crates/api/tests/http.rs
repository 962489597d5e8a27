//! The HTTP shell over real sockets: request ids, error shapes, body limit, tenant isolation,
//! signature tampering, TLS, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use docplane_api::{
    ApiConfig, BootstrapOptions, BootstrapOutput, MasterKey, ServerHandle, TlsConfig, bootstrap, serve,
};
use docplane_iam::sign;
use docplane_store::{Domain, Project, now_millis};
use serde_json::{Value, json};

struct Env {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    boot: BootstrapOutput,
    base: String,
    http: reqwest::Client,
}

async fn start(tls: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let boot = bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
    cfg.body_limit = 64 * 1024;
    if tls {
        let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(&k)
            .arg("-out")
            .arg(&c)
            .output()
            .expect("openssl is needed for the TLS test")
            .status
            .success();
        assert!(ok);
        cfg.tls = Some(TlsConfig { cert_pem: c, key_pem: k });
    }
    let server = serve(cfg).await.unwrap();
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://{}", server.local_addr());
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    Env { _dir: dir, server, boot, base, http }
}

async fn admin_token(e: &Env, project: &str) -> String {
    let r = e
        .http
        .post(format!("{}/v3/auth/tokens", e.base))
        .json(&json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
            "name":"admin","password":e.boot.admin_password.clone().unwrap(),"domain":{"name":"docplane"}}}},
            "scope":{"project":{"id":project}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["x-subject-token"].to_str().unwrap().to_owned()
}

async fn err(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    (status, body["error_code"].as_str().unwrap_or("").to_owned(), body)
}

#[tokio::test]
async fn request_ids_errors_and_limits() {
    let e = start(false).await;
    request_ids_are_echoed_or_made(&e).await;
    unknown_routes_and_credentials_are_json_errors(&e).await;
    bad_bodies_are_json_errors(&e).await;
    let token = admin_token(&e, &e.boot.project_id).await;
    an_oversized_kill_body_is_413(&e, &token).await;
    undecodable_path_segments_are_400(&e, &token).await;
    // Wrong password: 401 without saying which part was wrong.
    let r = e
        .http
        .post(format!("{}/v3/auth/tokens", e.base))
        .json(&json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
            "name":"admin","password":"Wrong-pass-1","domain":{"name":"docplane"}}}},"scope":{"project":{"name":"local"}}}}))
        .send()
        .await
        .unwrap();
    let (s, c, body) = err(r).await;
    assert_eq!((s, c.as_str()), (401, "DBS.900002"));
    assert!(!body.to_string().contains("admin"));
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// The caller's request id is echoed; otherwise one is made.
async fn request_ids_are_echoed_or_made(e: &Env) {
    let r = e
        .http
        .get(format!("{}/openapi.json", e.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let doc: Value = r.json().await.unwrap();
    assert!(doc["paths"]["/v3/auth/tokens"].is_object());
    let r = e.http.get(format!("{}/openapi.json", e.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 32);
}

/// JSON 404 / 405 / 401 (no token, a junk token).
async fn unknown_routes_and_credentials_are_json_errors(e: &Env) {
    let (s, c, _) = err(e.http.get(format!("{}/nope", e.base)).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (404, "DBS.900404"));
    let (s, c, _) = err(e.http.delete(format!("{}/v3/auth/tokens", e.base)).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (405, "DBS.900405"));
    let (s, c, _) =
        err(e.http.get(format!("{}/v3/{}/whoami", e.base, e.boot.project_id)).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (401, "APIGW.0301"));
    let (s, c, _) = err(e
        .http
        .get(format!("{}/v3/{}/whoami", e.base, e.boot.project_id))
        .header("x-auth-token", "DPT1.junk.junk")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((s, c.as_str()), (401, "APIGW.0301"));
}

/// Bad JSON, wrong content type, body too large.
async fn bad_bodies_are_json_errors(e: &Env) {
    let (s, c, _) = err(e
        .http
        .post(format!("{}/v3/auth/tokens", e.base))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((s, c.as_str()), (400, "DBS.200001"));
    let (s, c, _) =
        err(e.http.post(format!("{}/v3/auth/tokens", e.base)).body("{}").send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (415, "DBS.900415"));
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(70 * 1024));
    let (s, c, _) = err(e
        .http
        .post(format!("{}/v3/auth/tokens", e.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((s, c.as_str()), (413, "DBS.900413"));
}

/// The kill route reads its body raw: over the limit it is the same JSON 413.
async fn an_oversized_kill_body_is_413(e: &Env, token: &str) {
    let r = e
        .http
        .post(format!(
            "{}/v3/{}/nodes/0123456789abcdef0123456789abcdefno02/session",
            e.base, e.boot.project_id
        ))
        .header("x-auth-token", token)
        .header("x-request-id", "rid-big-kill")
        .header("content-type", "application/json")
        .body(format!("{{\"sessions\":[\"{}\"]}}", "1".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "rid-big-kill");
    assert_eq!(r.headers()["content-type"], "application/json");
    let (s, c, body) = err(r).await;
    assert_eq!((s, c.as_str()), (413, "DBS.900413"), "{body}");
}

/// A path segment that is not UTF-8 once decoded: JSON 400, with or without a credential.
async fn undecodable_path_segments_are_400(e: &Env, token: &str) {
    for token in [None, Some(token)] {
        let mut req = e.http.get(format!("{}/v3/%FF/nodes/x/sessions", e.base));
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        let (s, c, body) = err(req.send().await.unwrap()).await;
        assert_eq!((s, c.as_str()), (400, "DBS.200001"), "{body}");
        assert!(body["error_msg"].as_str().unwrap().contains("UTF-8"), "{body}");
    }
    let (s, c, body) = err(e
        .http
        .get(format!("{}/v3/{}/nodes/%C3%28/sessions", e.base, e.boot.project_id))
        .header("x-auth-token", token)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((s, c.as_str()), (400, "DBS.200001"), "{body}");
}

#[tokio::test]
async fn tenant_isolation() {
    let e = start(false).await;
    let (pb, pc) = other_projects(&e).await;
    let ta = admin_token(&e, &e.boot.project_id).await;
    let ok = e
        .http
        .get(format!("{}/v3/{}/whoami", e.base, e.boot.project_id))
        .header("x-auth-token", &ta)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Token of A on B's path, on another account's project, on a project that does not exist.
    for p in [&pb, &pc, &"e".repeat(32)] {
        let (s, c, _) = err(e
            .http
            .get(format!("{}/v3/{p}/whoami", e.base))
            .header("x-auth-token", &ta)
            .send()
            .await
            .unwrap())
        .await;
        assert_eq!((s, c.as_str()), (403, "DBS.900004"), "{p}");
    }
    signatures_are_scoped_to_the_path_project(&e, &pb, &pc).await;
    tampered_and_replayed_signatures_are_401(&e, &pb).await;
    iam_writes_to_another_domain_are_refused(&e).await;
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Project B in the same account as the bootstrap's, project C in another account; their ids.
async fn other_projects(e: &Env) -> (String, String) {
    let store = e.server.state().store.clone();
    let pb = "b".repeat(32);
    let pc = "c".repeat(32);
    store
        .create_project(&Project {
            id: pb.clone(),
            domain_id: e.boot.domain_id.clone(),
            name: "b".into(),
            description: String::new(),
            enabled: true,
            created_at: now_millis(),
        })
        .await
        .unwrap();
    store
        .create_domain(&Domain { id: "d".repeat(32), name: "other".into(), enabled: true, created_at: 0 })
        .await
        .unwrap();
    store
        .create_project(&Project {
            id: pc.clone(),
            domain_id: "d".repeat(32),
            name: "c".into(),
            description: String::new(),
            enabled: true,
            created_at: now_millis(),
        })
        .await
        .unwrap();
    (pb, pc)
}

/// A GET of `path` signed with the admin's AK/SK, with `X-Project-Id` when given.
fn signed_get(e: &Env, path: &str, project_header: Option<String>) -> reqwest::RequestBuilder {
    let host = e.server.local_addr().to_string();
    let mut h = vec![("host".to_owned(), host), ("x-sdk-date".to_owned(), sign::format_sdk_date(Utc::now()))];
    if let Some(p) = project_header {
        h.push(("x-project-id".to_owned(), p));
    }
    let auth =
        sign::sign("GET", path, "", &h, b"", &e.boot.access_key, e.boot.secret_key.as_bytes()).unwrap();
    let mut rb = e.http.get(format!("{}{path}", e.base)).header("authorization", auth);
    for (k, v) in h.iter().filter(|(k, _)| k != "host") {
        rb = rb.header(k, v);
    }
    rb
}

/// AK/SK: the path's project decides; X-Project-Id must agree; other account's project refused.
async fn signatures_are_scoped_to_the_path_project(e: &Env, pb: &str, pc: &str) {
    let r = signed_get(e, &format!("/v3/{pb}/whoami"), None).send().await.unwrap();
    assert_eq!(r.status(), 200, "admin key works on any project of its account");
    let (s, c, _) = err(signed_get(e, &format!("/v3/{pb}/whoami"), Some(e.boot.project_id.clone()))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((s, c.as_str()), (403, "DBS.900004"));
    let (s, c, _) = err(signed_get(e, &format!("/v3/{pc}/whoami"), None).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (403, "DBS.900004"));
}

/// Tampering after signing (the path changed to project B's) and a replayed (old) signature.
async fn tampered_and_replayed_signatures_are_401(e: &Env, pb: &str) {
    let rb = signed_get(e, &format!("/v3/{}/whoami", e.boot.project_id), None);
    let mut req = rb.build().unwrap();
    *req.url_mut() = format!("{}/v3/{pb}/whoami", e.base).parse().unwrap();
    let (s, c, _) = err(e.http.execute(req).await.unwrap()).await;
    assert_eq!((s, c.as_str()), (401, "APIGW.0301"));
    let host = e.server.local_addr().to_string();
    let old = sign::format_sdk_date(Utc::now() - chrono::Duration::minutes(16));
    let path = format!("/v3/{}/whoami", e.boot.project_id);
    let h = vec![("host".to_owned(), host), ("x-sdk-date".to_owned(), old.clone())];
    let auth =
        sign::sign("GET", &path, "", &h, b"", &e.boot.access_key, e.boot.secret_key.as_bytes()).unwrap();
    let (s, c, _) = err(e
        .http
        .get(format!("{}{path}", e.base))
        .header("authorization", auth)
        .header("x-sdk-date", old)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((s, c.as_str()), (401, "APIGW.0301"));
}

/// IAM writes from another account's domain header are refused.
async fn iam_writes_to_another_domain_are_refused(e: &Env) {
    let path = "/v3/groups";
    let body = br#"{"group":{"name":"g1"}}"#;
    let host = e.server.local_addr().to_string();
    let h = vec![
        ("host".to_owned(), host),
        ("x-sdk-date".to_owned(), sign::format_sdk_date(Utc::now())),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-domain-id".to_owned(), "d".repeat(32)),
    ];
    let auth =
        sign::sign("POST", path, "", &h, body, &e.boot.access_key, e.boot.secret_key.as_bytes()).unwrap();
    let mut rb = e.http.post(format!("{}{path}", e.base)).header("authorization", auth).body(body.to_vec());
    for (k, v) in h.iter().filter(|(k, _)| k != "host") {
        rb = rb.header(k, v);
    }
    let (s, c, _) = err(rb.send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (403, "DBS.900004"));
}

#[tokio::test]
async fn tls_serves_the_same_api() {
    let e = start(true).await;
    assert!(e.base.starts_with("https://"));
    let t = admin_token(&e, &e.boot.project_id).await;
    let r = e
        .http
        .get(format!("{}/v3/{}/whoami", e.base, e.boot.project_id))
        .header("x-auth-token", t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let who: Value = r.json().await.unwrap();
    assert_eq!(who["is_admin"], true);
    // Plain HTTP to the TLS port does not get an answer.
    let plain = e.base.replace("https://", "http://");
    assert!(
        !reqwest::get(format!("{plain}/openapi.json"))
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    );
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn two_replicas_on_postgres_share_revocation() {
    use sqlx::Connection;
    let base =
        std::env::var("DOCPLANE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("docplane_test_{}_{:08x}", std::process::id(), rand::random::<u32>());
    let mut admin =
        sqlx::PgConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL must be reachable");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let url = format!("{base}/{name}");
    let run = async move {
        let key = MasterKey::generate();
        let sa = docplane_store::open(&url).await.unwrap();
        let sb = docplane_store::open(&url).await.unwrap();
        let boot = bootstrap(sa.clone(), &key, &BootstrapOptions::default()).await.unwrap();
        let mut ca = ApiConfig::new("127.0.0.1:0".parse().unwrap(), sa, key.clone());
        ca.sync_interval = Duration::from_millis(200);
        let mut cb = ApiConfig::new("127.0.0.1:0".parse().unwrap(), sb, key);
        cb.sync_interval = Duration::from_millis(200);
        let (a, b) = (serve(ca).await.unwrap(), serve(cb).await.unwrap());
        let http = reqwest::Client::new();
        let (ua, ub) = (format!("http://{}", a.local_addr()), format!("http://{}", b.local_addr()));
        // Token from replica A works on replica B.
        let r = http
            .post(format!("{ua}/v3/auth/tokens"))
            .json(&json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
                "name":"admin","password":boot.admin_password.clone().unwrap(),"domain":{"name":"docplane"}}}},
                "scope":{"project":{"name":"local"}}}}))
            .send()
            .await
            .unwrap();
        let tok = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        let who = format!("{ub}/v3/{}/whoami", boot.project_id);
        assert_eq!(http.get(&who).header("x-auth-token", &tok).send().await.unwrap().status(), 200);
        // Change the admin's password through replica A (IAM API); replica B refuses the old token.
        let r = http
            .put(format!("{ua}/v3.0/OS-USER/users/{}", boot.admin_user_id))
            .header("x-auth-token", &tok)
            .json(&json!({"user":{"password":"Brand-new-pass-1"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let s = http.get(&who).header("x-auth-token", &tok).send().await.unwrap().status();
            if s == 401 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "replica B still accepts a revoked token");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.shutdown(Duration::from_secs(1)).await.unwrap();
        b.shutdown(Duration::from_secs(1)).await.unwrap();
    };
    let res = tokio::spawn(run).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    res.unwrap();
}
