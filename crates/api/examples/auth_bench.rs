//! Auth benchmark.
//!
//! `cargo run --release -p docplane-api --example auth_bench [-- <wrk seconds>]`
//!
//! 1. One core (current-thread runtime): token verifications/s and AK/SK signature verifications/s
//!    through `Iam` with warm caches (the steady state of a server), plus the pure functions alone.
//! 2. A server on loopback with two trivial routes, `GET /bench/open` (no auth) and
//!    `GET /v3/{project_id}/bench` (token + policy check for `dds:instance:listSession`), loaded by
//!    `wrk` (a second process; `apt-get install wrk`) one route after the other, first with one
//!    connection (latency without queueing), then with 16 (saturated); prints both side by side. The p99 difference is what the auth layer adds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::http::Method;
use chrono::Utc;
use docplane_api::{ApiConfig, BootstrapOptions, MasterKey, Route, bootstrap, serve};
use docplane_iam::sign::{self, SignedRequest};
use docplane_iam::{Iam, ProjectSelector, UserSelector};

fn micro(dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = docplane_store::open(dir.join("micro.db").to_str().unwrap()).await.unwrap();
        let key = MasterKey::generate();
        let iam = Iam::new(store, &key).await.unwrap();
        let boot = iam.bootstrap(&BootstrapOptions::default()).await.unwrap();
        let now = Utc::now();
        let tok = iam
            .issue_token(
                &UserSelector::Name { domain_name: Some("docplane".into()), domain_id: None, name: "admin".into() },
                boot.admin_password.as_deref().unwrap(),
                &ProjectSelector::Id(boot.project_id.clone()),
                now,
            )
            .await
            .unwrap()
            .token;
        let n = 200_000u32;
        iam.verify_token(&tok, now).await.unwrap();
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(iam.verify_token(&tok, now).await.unwrap());
        }
        let dt = t.elapsed();
        println!("token verify (Iam, warm cache): {:>9.0} /s  ({:.2} us each)", f64::from(n) / dt.as_secs_f64(), dt.as_secs_f64() * 1e6 / f64::from(n));

        let path = format!("/v3/{}/nodes/{}no02/sessions", boot.project_id, "a".repeat(32));
        let query = "limit=20&offset=0";
        let mut headers = vec![
            ("Host".to_owned(), "127.0.0.1:8443".to_owned()),
            ("X-Sdk-Date".to_owned(), sign::format_sdk_date(now)),
            ("X-Project-Id".to_owned(), boot.project_id.clone()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("User-Agent".to_owned(), "huaweicloud-usdk-python/3.0".to_owned()),
        ];
        let auth = sign::sign("GET", &path, query, &headers, b"", &boot.access_key, boot.secret_key.as_bytes()).unwrap();
        headers.push(("Authorization".to_owned(), auth));
        let req = SignedRequest { method: "GET", raw_path: &path, raw_query: query, headers: &headers, body: b"" };
        iam.verify_signed(&req, now).await.unwrap();
        let n = 100_000u32;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(iam.verify_signed(&req, now).await.unwrap());
        }
        let dt = t.elapsed();
        println!("AK/SK verify (Iam, warm cache): {:>9.0} /s  ({:.2} us each)", f64::from(n) / dt.as_secs_f64(), dt.as_secs_f64() * 1e6 / f64::from(n));

        // A non-admin user whose policies come from a group grant (cached after the first call).
        let d = &boot.domain_id;
        let u = iam.create_user(d, "bench", Some("Bench-pass-1"), true, "", false).await.unwrap();
        let g = iam.create_group(d, "bench", "").await.unwrap();
        iam.add_user_to_group(d, &g.id, &u.id).await.unwrap();
        let doc = serde_json::json!({"Version":"1.1","Statement":[{"Effect":"Allow","Action":["dds:instance:session"]},{"Effect":"Deny","Action":["dds:instance:kill?p"]}]});
        let r = iam.create_role(d, "bench", "XA", "", &doc).await.unwrap();
        iam.grant(d, &boot.project_id, &g.id, &r.id).await.unwrap();
        let mut p = iam.verify_token(&tok, now).await.unwrap();
        p.user_id = u.id.clone();
        p.is_admin = false;
        let t = Instant::now();
        for _ in 0..n {
            iam.authorize(std::hint::black_box(&p), &boot.project_id, "dds:instance:listSession").await.unwrap();
        }
        let dt = t.elapsed();
        println!("authorize (non-admin, cached):  {:>9.0} /s  ({:.2} us each)", f64::from(n) / dt.as_secs_f64(), dt.as_secs_f64() * 1e6 / f64::from(n));
    });
}

fn wrk(url: &str, token: Option<&str>, secs: u64, conns: u32) -> Option<String> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "--latency"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("X-Auth-Token: {t}")]);
    }
    let out = cmd.arg(url).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn summary(report: &str) -> String {
    report
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("50%")
                || t.starts_with("90%")
                || t.starts_with("99%")
                || t.starts_with("Requests/sec")
                || t.starts_with("Non-2xx")
        })
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    println!("== one core");
    micro(dir.path());

    println!("== HTTP, wrk -t1 -c1 and -c16, {secs}s each, on loopback (server: 2 worker threads)");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (server, token, project) = rt.block_on(async {
        let store = docplane_store::open(dir.path().join("http.db").to_str().unwrap()).await.unwrap();
        let key = MasterKey::generate();
        let boot = bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
        let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
        cfg.extra_routes = vec![
            Route::public(Method::GET, "/bench/open", || async { "ok" }),
            Route::project(Method::GET, "/v3/{project_id}/bench", Some("dds:instance:listSession"), || async { "ok" }),
        ];
        let server = serve(cfg).await.unwrap();
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{}/v3/auth/tokens", server.local_addr()))
            .json(&serde_json::json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
                "name":"admin","password":boot.admin_password.clone().unwrap(),"domain":{"name":"docplane"}}}},
                "scope":{"project":{"id":boot.project_id}}}}))
            .send()
            .await
            .unwrap();
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        (server, token, boot.project_id)
    });
    let base = format!("http://{}", server.local_addr());
    for conns in [1u32, 16] {
        let open = wrk(&format!("{base}/bench/open"), None, secs, conns);
        let authed = wrk(&format!("{base}/v3/{project}/bench"), Some(&token), secs, conns);
        match (open, authed) {
            (Some(o), Some(a)) => {
                println!("-c{conns:<2} open : {}", summary(&o));
                println!("-c{conns:<2} token: {}", summary(&a));
            }
            _ => println!("wrk not found: install it (apt-get install wrk) for the HTTP part"),
        }
    }
    rt.block_on(async { server.shutdown(Duration::from_secs(1)).await.unwrap() });
}
