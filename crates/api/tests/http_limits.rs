//! The HTTP shell's limits and its media-type and signature rules over real sockets: slow and idle
//! connections, body-read timeout, connection cap, early 413, JSON-only bodies, signed bodies,
//! the canonical query, and a PostgreSQL outage behind a TCP proxy the test controls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use docplane_api::{
    ApiConfig, BootstrapOptions, BootstrapOutput, HttpLimits, MasterKey, ServerHandle, bootstrap, serve,
};
use docplane_iam::sign;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Env {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    boot: BootstrapOutput,
    base: String,
    http: reqwest::Client,
}

async fn start(limits: HttpLimits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let boot = bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
    cfg.body_limit = 64 * 1024;
    cfg.health_interval = None;
    cfg.limits = limits;
    let server = serve(cfg).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    Env { _dir: dir, server, boot, base, http: reqwest::Client::new() }
}

fn token_body(boot: &BootstrapOutput) -> Value {
    json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
        "name":"admin","password":boot.admin_password.clone().unwrap(),"domain":{"name":"docplane"}}}},
        "scope":{"project":{"id":boot.project_id}}}})
}

async fn token(http: &reqwest::Client, base: &str, boot: &BootstrapOutput) -> String {
    let r = http.post(format!("{base}/v3/auth/tokens")).json(&token_body(boot)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["x-subject-token"].to_str().unwrap().to_owned()
}

async fn err(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    (status, body["error_code"].as_str().unwrap_or("").to_owned())
}

/// A request signed with the bootstrap AK/SK; `query` is the raw query as signed.
fn signed(
    e: &Env,
    method: reqwest::Method,
    path: &str,
    query: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> reqwest::RequestBuilder {
    let mut h = vec![
        ("host".to_owned(), e.server.local_addr().to_string()),
        ("x-sdk-date".to_owned(), sign::format_sdk_date(Utc::now())),
    ];
    h.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let auth =
        sign::sign(method.as_str(), path, query, &h, body, &e.boot.access_key, e.boot.secret_key.as_bytes())
            .unwrap();
    let url =
        if query.is_empty() { format!("{}{path}", e.base) } else { format!("{}{path}?{query}", e.base) };
    let mut rb = e.http.request(method, url).header("authorization", auth).body(body.to_vec());
    for (k, v) in h.iter().filter(|(k, _)| k != "host") {
        rb = rb.header(k, v);
    }
    rb
}

#[tokio::test]
async fn bodies_must_be_json_and_signed_and_the_query_is_read_as_signed() {
    let e = start(HttpLimits::default()).await;
    let tok = token(&e.http, &e.base, &e.boot).await;
    let kill = format!("/v3/{}/nodes/{}no02/session", e.boot.project_id, "0".repeat(32));
    let body = br#"{"sessions":["1"]}"#;
    // Defect: the kill route parsed any content type. With a token, text/plain and none are 415.
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut rb =
            e.http.post(format!("{}{kill}", e.base)).header("x-auth-token", &tok).body(body.to_vec());
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        assert_eq!(err(rb.send().await.unwrap()).await, (415, "DBS.900415".into()), "{ct:?}");
    }
    // JSON goes through to the handler (the node does not exist).
    let r = e
        .http
        .post(format!("{}{kill}", e.base))
        .header("x-auth-token", &tok)
        .header("content-type", "application/json; charset=UTF-8")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(err(r).await, (404, "DBS.200013".into()));
    // Defect: a signed request with a non-JSON type and UNSIGNED-PAYLOAD had an unprotected body.
    let unsigned =
        [("content-type", "application/octet-stream"), ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD")];
    let r = signed(&e, reqwest::Method::POST, &kill, "", &unsigned, body).send().await.unwrap();
    assert_eq!(err(r).await, (415, "DBS.900415".into()));
    // With a JSON type, UNSIGNED-PAYLOAD is refused with its own clear code.
    let unsigned = [("content-type", "application/json"), ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD")];
    let r = signed(&e, reqwest::Method::POST, &kill, "", &unsigned, body).send().await.unwrap();
    assert_eq!(err(r).await, (401, "DBS.900022".into()));
    // A properly signed body passes authentication.
    let r = signed(&e, reqwest::Method::POST, &kill, "", &[("content-type", "application/json")], body)
        .send()
        .await
        .unwrap();
    assert_eq!(err(r).await, (404, "DBS.200013".into()));
    // Defect: a signature over `a%2Bb` validated `a+b`, which the handler reads as `a b`.
    let list = format!("/v3/{}/nodes/{}no02/sessions", e.boot.project_id, "0".repeat(32));
    let rb = signed(&e, reqwest::Method::GET, &list, "namespace=db.a%2Bb", &[], b"");
    let r = rb.try_clone().unwrap().send().await.unwrap();
    assert_eq!(err(r).await, (404, "DBS.200013".into()), "as signed: authenticated");
    let mut req = rb.build().unwrap();
    req.url_mut().set_query(Some("namespace=db.a+b"));
    assert_eq!(req.url().query(), Some("namespace=db.a+b"));
    assert_eq!(err(e.http.execute(req).await.unwrap()).await, (401, "APIGW.0301".into()));
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Sends `head` on a new connection and returns the connection.
async fn raw(addr: SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads until the peer closes (or `limit` passes); returns what was read and whether it closed.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_neither_stall_requests_nor_outlive_the_header_timeout() {
    const SLOW: usize = 500;
    let header = Duration::from_millis(1000);
    let limits = HttpLimits {
        header_read_timeout: header,
        idle_timeout: Duration::from_secs(30),
        ..HttpLimits::default()
    };
    let e = start(limits).await;
    let addr = e.server.local_addr();
    // 500 connections that send half a request head and then nothing.
    let opened = Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        slow.push(raw(addr, "GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ").await);
    }
    let opening = opened.elapsed();
    // Meanwhile normal requests are answered at once.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = e.http.get(format!("{}/openapi.json", e.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        worst = worst.max(t.elapsed());
    }
    assert!(worst < Duration::from_millis(500), "a normal request took {worst:?} beside {SLOW} slow ones");
    // Every slow connection is closed by the server, without an answer, soon after the timeout.
    let closes = futures::future::join_all(slow.iter_mut().map(|s| async {
        let (text, closed) = read_to_close(s, header * 5).await;
        (text, closed, opened.elapsed())
    }))
    .await;
    let mut last = Duration::ZERO;
    for (text, closed, at) in &closes {
        assert!(closed, "a slow-header connection is still open after {:?}", header * 5);
        assert!(text.is_empty(), "unexpected answer: {text}");
        last = last.max(*at);
    }
    // Opening took `opening`; the last one opened must be gone within the timeout plus slack.
    assert!(last < opening + header + Duration::from_millis(1500), "last closed at {last:?}");
    eprintln!(
        "slow-header test: {SLOW} connections opened in {opening:?}; worst normal request {worst:?}; \
         all closed {last:?} after the first was opened (header timeout {header:?})"
    );
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_body_timeouts_connection_cap_and_early_413() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(800),
        max_connections: 4,
    };
    let e = start(limits).await;
    let addr = e.server.local_addr();
    // Idle keep-alive: answered, then closed after the idle timeout (not the 5 s header timeout).
    let mut s = raw(addr, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let t = Instant::now();
    let (text, closed) = read_to_close(&mut s, Duration::from_secs(4)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "idle connection still open after 4 s");
    let idle_close = t.elapsed();
    assert!(
        idle_close >= Duration::from_millis(700) && idle_close < Duration::from_millis(2500),
        "{idle_close:?}"
    );
    // A body that does not arrive in time: 408.
    let mut s = raw(
        addr,
        "POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"auth\"",
    )
    .await;
    let t = Instant::now();
    let (text, _) = read_to_close(&mut s, Duration::from_secs(4)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("DBS.900408") && text.to_ascii_lowercase().contains("x-request-id"), "{text}");
    let body_timeout = t.elapsed();
    assert!(body_timeout < Duration::from_millis(2500), "{body_timeout:?}");
    // The same when the body is buffered for a signature check (before the signature is verified).
    let head = format!(
        "POST /v3/{}/nodes/{}no02/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature={}\r\n\
         X-Sdk-Date: {}\r\nContent-Length: 100\r\n\r\n{{\"sessions\"",
        e.boot.project_id,
        "0".repeat(32),
        "a".repeat(64),
        sign::format_sdk_date(Utc::now())
    );
    let mut s = raw(addr, &head).await;
    let (text, _) = read_to_close(&mut s, Duration::from_secs(4)).await;
    assert!(text.starts_with("HTTP/1.1 408") && text.contains("DBS.900408"), "{text}");
    // A Content-Length over the limit is refused before any of the body is sent.
    let mut s = raw(
        addr,
        "POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
    )
    .await;
    let t = Instant::now();
    let (text, _) = read_to_close(&mut s, Duration::from_millis(700)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "no early 413: {text:?}");
    assert!(text.contains("DBS.900413"), "{text}");
    let early_413 = t.elapsed();
    drop(s);
    // The cap: four connections are served; a fifth is closed at once; a freed slot is reusable.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(raw(addr, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = raw(addr, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (text, closed) = read_to_close(&mut fifth, Duration::from_secs(2)).await;
    assert!(closed && text.is_empty(), "over the cap: {closed} {text:?}");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = raw(addr, "GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let (text, _) = read_to_close(&mut again, Duration::from_secs(2)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "freed slot: {text:?}");
    eprintln!("idle close after {idle_close:?}; 408 after {body_timeout:?}; early 413 after {early_413:?}");
    drop(held);
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// A TCP proxy to PostgreSQL that the test can take down (connections cut, port refusing) and
/// bring back on the same port.
struct Proxy {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    target: SocketAddr,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut p = Proxy { addr, task: None, target };
        p.task = Some(Self::run(listener, target));
        p
    }

    fn run(listener: tokio::net::TcpListener, target: SocketAddr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        // A cut (`down`) ends connections with an error: that is the point.
                        if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
                            eprintln!("test proxy: connection ended: {e}");
                        }
                    }
                });
            }
        })
    }

    /// Down: every proxied connection is cut and the port refuses connections.
    async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            if let Err(e) = t.await
                && !e.is_cancelled()
            {
                panic!("test proxy task failed: {e}");
            }
        }
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(Self::run(listener, self.target));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_keeps_tokens_and_recovers() {
    use sqlx::Connection;
    let base =
        std::env::var("DOCPLANE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let target: SocketAddr = {
        let u = reqwest::Url::parse(&base).unwrap();
        let host = u.host_str().unwrap().to_owned();
        tokio::net::lookup_host((host, u.port().unwrap_or(5432))).await.unwrap().next().unwrap()
    };
    let name = format!("docplane_outage_{}_{:08x}", std::process::id(), rand::random::<u32>());
    let mut admin =
        sqlx::PgConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL must be reachable");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let db = name.clone();
    let run = async move {
        let name = db;
        let mut proxy = Proxy::start(target).await;
        let user = reqwest::Url::parse(&base).unwrap().username().to_owned();
        let url = format!("postgres://{user}@{}/{name}", proxy.addr);
        let store = docplane_store::open(&url).await.unwrap();
        let key = MasterKey::generate();
        let boot = bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
        let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
        cfg.sync_interval = Duration::from_millis(200);
        cfg.health_interval = None;
        let server = serve(cfg).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let http = reqwest::Client::new();
        let tok = token(&http, &base, &boot).await;
        let who = format!("{base}/v3/{}/whoami", boot.project_id);
        let instances = format!("{base}/v3/{}/instances", boot.project_id);
        let get = |url: String| {
            let (http, tok) = (http.clone(), tok.clone());
            async move { http.get(url).header("x-auth-token", tok).send().await.unwrap() }
        };
        assert_eq!(get(who.clone()).await.status(), 200);
        assert_eq!(get(instances.clone()).await.status(), 200);

        proxy.down().await;
        let mut slowest = Duration::ZERO;
        for _ in 0..3 {
            let t = Instant::now();
            let r = get(instances.clone()).await;
            let took = t.elapsed();
            assert_eq!(err(r).await, (503, "DBS.900503".into()));
            assert!(took < Duration::from_secs(2), "store call failed only after {took:?}");
            slowest = slowest.max(took);
        }
        let t = Instant::now();
        let r = http.post(format!("{base}/v3/auth/tokens")).json(&token_body(&boot)).send().await.unwrap();
        let took = t.elapsed();
        assert_eq!(err(r).await, (503, "DBS.900503".into()), "password sign-in needs the store");
        slowest = slowest.max(took);
        assert!(took < Duration::from_secs(2), "{took:?}");
        // Tokens issued before the outage keep verifying (no store round trip).
        assert_eq!(get(who.clone()).await.status(), 200);

        proxy.up().await;
        let back = Instant::now();
        loop {
            if get(instances.clone()).await.status() == 200 {
                break;
            }
            assert!(back.elapsed() < Duration::from_secs(10), "no recovery 10 s after the store came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recovered = back.elapsed();
        assert_eq!(get(who).await.status(), 200);
        eprintln!(
            "store outage: calls failed with 503 after at most {slowest:?}; recovered {recovered:?} after the store came back"
        );
        server.shutdown(Duration::from_secs(1)).await.unwrap();
        proxy.down().await;
    };
    let res = tokio::spawn(run).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    res.unwrap();
}

#[tokio::test]
async fn shutdown_shuts_every_driver_pool_down() {
    let e = start(HttpLimits::default()).await;
    let state = e.server.state().clone();
    let target = docplane_driver::NodeTarget {
        id: "n1".into(),
        address: "127.0.0.1:1".into(),
        credentials: None,
        kind: docplane_driver::NodeKind::Mongod,
    };
    let client = state.driver.official().client(&target).unwrap();
    assert_eq!(state.driver.cached_pools(), 1);
    e.server.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(state.driver.cached_pools(), 0, "pools left to the driver's Drop at shutdown");
    // The client was shut down, not merely forgotten: a clone refuses work at once.
    let t = Instant::now();
    let r = client.database("admin").run_command(mongodb::bson::doc! {"ping": 1}).await;
    assert!(r.is_err() && t.elapsed() < Duration::from_secs(1), "{r:?} after {:?}", t.elapsed());
}
