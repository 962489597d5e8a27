//! `/metrics`, `/health` and `/ready` against a real server and the embedded node: after a
//! login, a listing and a kill the counters moved with route templates (never ids) as labels,
//! the exposition parses as Prometheus text, the series stay bounded whatever paths are asked,
//! and readiness follows the store (a PostgreSQL proxy that the test cuts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dds_support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use dds_support::*;
use docplane_driver::DriverConfig;
use serde_json::{Value, json};
use sqlx::Connection;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the Prometheus text format 0.0.4: `# HELP`/`# TYPE` lines, then samples
/// `name{k="v",...} value`, every sample's family declared by a `# TYPE` before it. Panics on
/// anything else.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("a comment names its metric");
            assert!(valid_name(name), "bad metric name in {line:?}");
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap();
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&t), "{line:?}");
                    typed.insert(name.to_owned());
                }
                "HELP" => {}
                other => panic!("unknown comment {other:?} in {line:?}"),
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value in {line:?}"),
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        let mut labels = BTreeMap::new();
        let value_text = if let Some(body) = rest.strip_prefix('{') {
            let end = body.find("} ").unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
            let mut s = &body[..end];
            while !s.is_empty() {
                let eq = s.find("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                let key = &s[..eq];
                assert!(valid_name(key), "bad label name {key:?} in {line:?}");
                let mut value = String::new();
                let mut chars = s[eq + 2..].char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        '"' => {
                            close = Some(eq + 2 + i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let close = close.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                labels.insert(key.to_owned(), value);
                s = &s[close + 1..];
                s = s.strip_prefix(',').unwrap_or(s);
            }
            &body[end + 2..]
        } else {
            &rest[1..]
        };
        let value: f64 = match value_text.trim() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family) || typed.contains(name), "sample without # TYPE: {line:?}");
        out.push(Sample { name: name.to_owned(), labels, value });
    }
    out
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The value of the sample `name` whose labels include `want` (0 when absent).
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(h: &Harness) -> (String, Vec<Sample>) {
    let r = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

fn is_sleep(s: &Value) -> bool {
    s["active"] == true && s["operation"].as_str().unwrap_or("").contains("\"sleep\"")
}

const SESSIONS_ROUTE: &str = "/v3/{project_id}/nodes/{node_id}/sessions";
const KILL_ROUTE: &str = "/v3/{project_id}/nodes/{node_id}/session";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_route_templates_and_no_ids() {
    let h = Harness::start().await;
    let id = login_list_and_kill(&h).await;
    let s = the_counters_moved_without_ids(&h, &id).await;
    arbitrary_paths_fold_into_one_route(&h, &s).await;

    // The health loop probed the node (its first round at start may precede the registration).
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let (text, s) = scrape(&h).await;
        if value(&s, "docplane_node_probes_total", &[("status", "normal")]) >= 1.0 {
            assert_eq!(value(&s, "docplane_nodes", &[("status", "normal")]), 1.0, "{text}");
            assert_eq!(value(&s, "docplane_nodes", &[("status", "abnormal")]), 0.0, "{text}");
            assert!(value(&s, "docplane_node_probe_duration_seconds_count", &[("status", "normal")]) >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "no probe counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // OpenMetrics when asked for.
    let r = h
        .http
        .get(format!("{}/metrics", h.base))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));

    let r = h.http.get(format!("{}/health", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = h.http.get(format!("{}/ready", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready", "store": "sqlite"}));
    h.stop().await;
}

/// The traffic the counters must show: a failed login (the harness logged in once already), a
/// listing, a kill of a sleep and a refused kill (unknown id). Answers the killed session's id.
async fn login_list_and_kill(h: &Harness) -> String {
    let r = h
        .http
        .post(format!("{}/v3/auth/tokens", h.base))
        .json(&json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "id": "no-such-user", "password": "wrong"}}}, "scope": {"project": {"id": h.project_id}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (status, body) = h.get(&h.sessions_path("")).await;
    assert_eq!(status, 200, "{body}");
    let client = app_client(h.node_addr, 4);
    let sleeper = spawn_sleep(&client, 30_000);
    let sleep = h.wait_session(is_sleep).await;
    let id = sleep["id"].as_str().unwrap().to_owned();
    let (status, body) = h.post(&h.kill_path(), &json!({"sessions": [id]})).await;
    assert_eq!((status, &body), (200, &json!({})));
    if let Err(e) = sleeper.await {
        eprintln!("sleeper.await: {e:?}");
    }
    let (status, _) = h.post(&h.kill_path(), &json!({"sessions": ["999999999"]})).await;
    assert_eq!(status, 400);
    id
}

/// One scrape after that traffic: each request counted under its route template and status,
/// kills and logins by outcome, the driver's and store's counters; no id, token or address
/// (`id`: the killed session) anywhere. Answers the scrape's samples.
async fn the_counters_moved_without_ids(h: &Harness, id: &str) -> Vec<Sample> {
    let (text, s) = scrape(h).await;
    let req = "docplane_http_requests_total";
    assert!(
        value(&s, req, &[("method", "GET"), ("route", SESSIONS_ROUTE), ("status", "200")]) >= 1.0,
        "{text}"
    );
    assert!(value(&s, req, &[("method", "POST"), ("route", KILL_ROUTE), ("status", "200")]) == 1.0, "{text}");
    assert!(value(&s, req, &[("method", "POST"), ("route", KILL_ROUTE), ("status", "400")]) == 1.0, "{text}");
    assert_eq!(value(&s, req, &[("route", "/v3/auth/tokens"), ("status", "201")]), 1.0, "{text}");
    assert_eq!(value(&s, req, &[("route", "/v3/auth/tokens"), ("status", "401")]), 1.0, "{text}");
    let count = "docplane_http_request_duration_seconds_count";
    assert!(value(&s, count, &[("method", "GET"), ("route", SESSIONS_ROUTE)]) >= 1.0, "{text}");
    assert!(
        value(&s, "docplane_http_request_duration_seconds_bucket", &[("route", KILL_ROUTE), ("le", "+Inf")])
            >= 2.0
    );
    assert_eq!(value(&s, "docplane_kill_requests_total", &[("source", "ids"), ("outcome", "killed")]), 1.0);
    assert_eq!(value(&s, "docplane_kill_requests_total", &[("source", "ids"), ("outcome", "refused")]), 1.0);
    assert_eq!(value(&s, "docplane_login_attempts_total", &[("result", "success")]), 1.0, "{text}");
    assert_eq!(value(&s, "docplane_login_attempts_total", &[("result", "invalid_credentials")]), 1.0);
    assert!(value(&s, "docplane_driver_checkouts_total", &[]) >= 1.0, "{text}");
    assert!(value(&s, "docplane_driver_pools", &[]) >= 1.0, "{text}");
    assert_eq!(value(&s, "docplane_store_errors_total", &[]), 0.0, "{text}");
    for secret in [&h.project_id, &h.node_id, &h.instance_id, &h.token, &h.access_key] {
        assert!(!text.contains(secret.as_str()), "{secret} in the metrics:\n{text}");
    }
    // The opid is a small number that sample values can contain: no label value may be it.
    assert!(!text.contains(&format!("\"{id}\"")), "opid {id} as a label value:\n{text}");
    assert!(!text.contains(&h.node_addr.to_string()));
    s
}

/// Arbitrary paths fold into one `unmatched` route: the series do not grow with them (`s`: the
/// samples of a scrape before any).
async fn arbitrary_paths_fold_into_one_route(h: &Harness, s: &[Sample]) {
    let req = "docplane_http_requests_total";
    let series = |s: &[Sample]| s.iter().filter(|x| x.name == req).count();
    let before = series(s);
    for i in 0..3 {
        let r = h
            .http
            .get(format!("{}/v3/{}/nodes/n-{i}/nothing-here", h.base, h.project_id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let (_, s1) = scrape(h).await;
    let unmatched_404 = value(&s1, req, &[("route", "unmatched"), ("status", "404")]);
    assert_eq!(unmatched_404, 3.0);
    for i in 3..50 {
        let r = h
            .http
            .get(format!("{}/v3/{}/nodes/n-{i}/nothing-here", h.base, h.project_id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let (text2, s2) = scrape(h).await;
    assert_eq!(value(&s2, req, &[("route", "unmatched"), ("status", "404")]), 50.0);
    // The scrape itself added its own series once; 47 more odd paths added none.
    assert_eq!(series(&s2), series(&s1), "{text2}");
    assert!(series(&s1) <= before + 2);
    assert!(!text2.contains("nothing-here"));
}

async fn get_json(h: &Harness, path: &str) -> (u16, Value) {
    let r = h.http.get(format!("{}{path}", h.base)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_store_and_health_does_not() {
    use std::sync::atomic::Ordering;
    let name = format!("docplane_ready_{}_{:08x}", std::process::id(), rand_suffix());
    let mut admin = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = pg_proxy(cut.clone()).await;
    let url = format!("postgres://postgres@127.0.0.1:{port}/{name}");
    let driver = DriverConfig {
        connect_timeout: Duration::from_millis(500),
        server_selection_timeout: Duration::from_millis(1000),
        operation_timeout: Duration::from_secs(5),
        ..DriverConfig::default()
    };
    let h = Harness::start_with_store(driver, Some(&url)).await;
    assert_eq!(get_json(&h, "/ready").await, (200, json!({"status": "ready", "store": "postgres"})));

    cut.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let (status, body) = get_json(&h, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert!(body["reason"].as_str().unwrap().contains("metadata store (postgres)"), "{body}");
    assert!(!body.to_string().contains(&port.to_string()), "no address in the reason: {body}");
    // Bounded by the readiness timeout (2 s), with slack for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(get_json(&h, "/health").await, (200, json!({"status": "ok"})));
    // A request that needs the store fails, and is counted as a store error.
    let (status, _) = h.get(&h.sessions_path("")).await;
    assert!(status >= 500);
    let (text, s) = scrape(&h).await;
    assert!(value(&s, "docplane_store_errors_total", &[("source", "ready")]) >= 1.0, "{text}");
    assert!(value(&s, "docplane_store_errors_total", &[("source", "request")]) >= 1.0, "{text}");
    let (status, _) = get_json(&h, "/ready").await;
    assert_eq!(status, 503);

    cut.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get_json(&h, "/ready").await;
        if status == 200 {
            assert_eq!(body, json!({"status": "ready", "store": "postgres"}));
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.stop().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.subsec_nanos() ^ std::process::id()
}
