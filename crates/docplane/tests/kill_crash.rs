//! Kill records survive crashes of the real `docplane serve` binary, on both store backends: SIGTERM
//! and SIGKILL right after kills are answered 200, while more kills are in flight. A separate
//! `docplane node` process holds the operations, so it outlives the crash and its clients show
//! which operations were really killed. After a restart every kill answered 200 has its committed
//! record with outcome `killed`, every operation that was killed (its client got 11601) has a
//! record, and no record stays pending (the sweeper resolves what the crash cut off as `unknown`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use serde_json::{Value, json};

const ROOT_PASSWORD: &str = "crash-node-pw";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} not listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(dir: &Path, log: &str, args: &[&str], envs: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .args(args)
        .envs(envs.iter().copied())
        .env("DOCPLANE_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

fn start_serve(dir: &Path, port: u16, store: &str) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let child = spawn(
        dir,
        "serve.log",
        &["serve", "--data-dir", "data", "--listen", &listen, "--store", store],
        &[
            ("DOCPLANE_NODE_OPERATION_TIMEOUT_MS", "1000"),
            ("DOCPLANE_KILL_RECORD_SWEEP_SECS", "1"),
            ("DOCPLANE_HEALTH_INTERVAL_SECS", "0"),
        ],
    );
    wait_port(port, "docplane serve");
    child
}

struct Api {
    http: reqwest::Client,
    base: String,
    project: String,
    token: String,
}

impl Api {
    async fn login(dir: &Path, port: u16) -> Api {
        let admin: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("data/admin.json")).unwrap()).unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let r = http
            .post(format!("{base}/v3/auth/tokens"))
            .json(&json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": admin["user_name"], "password": admin["password"], "domain": {"name": admin["domain_name"]}}}},
                "scope": {"project": {"id": admin["project_id"]}}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        Api { http, base, project: admin["project_id"].as_str().unwrap().to_owned(), token }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}/v3/{}{rest}", self.base, self.project))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

async fn node_client(port: u16) -> mongodb::Client {
    let uri = format!(
        "mongodb://root:{ROOT_PASSWORD}@127.0.0.1:{port}/?authSource=admin&directConnection=true&maxPoolSize=50"
    );
    mongodb::Client::with_uri_str(uri).await.unwrap()
}

/// One crash: a node process with twelve sleeping operations, `docplane serve` on `store` killed
/// with `signal` right after the first of twelve concurrent kills is answered 200, then restarted;
/// every answered kill and every operation really killed must have its record.
async fn crash_case(store: &str, signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, node_port) = start_node(dir.path());
    let api_port = free_port();
    let serve = start_serve(dir.path(), api_port, store);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("data/admin.json").exists() {
        assert!(Instant::now() < deadline, "no admin.json");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = Api::login(dir.path(), api_port).await;
    let node_id = register_node(&api, node_port).await;

    // Twelve sleeping operations, each remembering whether it was killed (11601).
    let client = node_client(node_port).await;
    let sleepers: Vec<_> = (0..12)
        .map(|i| {
            let db = client.database("admin");
            tokio::spawn(async move {
                let r = db.run_command(doc! {"sleep": 1, "millis": 60_000_i64, "comment": format!("crash-{i}")}).await;
                matches!(r, Err(ref e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 11601))
            })
        })
        .collect();
    let ids = listed_sleepers(&api, &node_id).await;
    let answered = kill_and_crash(api, &node_id, &ids, serve, signal).await;

    // Restart; every record gets resolved.
    let mut serve = start_serve(dir.path(), api_port, store);
    let api = Api::login(dir.path(), api_port).await;
    let records = resolved_records(&api).await;
    let record_of =
        |id: &str| records.iter().find(|r| r["session_ids"].as_array().unwrap().iter().any(|s| s == id));
    for id in &answered {
        let r = record_of(id).unwrap_or_else(|| panic!("kill of {id} answered 200 but not recorded"));
        assert_eq!(r["outcome"], "killed", "{r}");
    }
    // Give the node a moment to answer the killed clients, then check none was killed unrecorded.
    // Sleeper i carries the comment `crash-i`; `ids` pairs each session id with its comment.
    let mut killed = Vec::new();
    for s in sleepers {
        let k = matches!(tokio::time::timeout(Duration::from_millis(500), s).await, Ok(Ok(true)));
        killed.push(k);
    }
    let killed_comments: Vec<String> =
        killed.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| format!("crash-{i}")).collect();
    for (id, comment) in &ids {
        if killed_comments.contains(comment) {
            assert!(record_of(id).is_some(), "{id} ({comment}) was killed but has no record");
        }
    }
    let (_, v) = api.call(reqwest::Method::GET, "/kill-records/verify", None).await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    println!(
        "{signal} {}: {} answered 200 before the crash, {} killed, {} records: {:?}",
        if store.starts_with("postgres") { "postgres" } else { "sqlite" },
        answered.len(),
        killed_comments.len(),
        records.len(),
        records.iter().map(|r| r["outcome"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>()
    );
    stop(&mut serve);
    stop(&mut node);
}

/// A `docplane node` process (auth on, test commands enabled) and its port, once it listens.
fn start_node(dir: &Path) -> (Child, u16) {
    let node_port = free_port();
    let node = spawn(
        dir,
        "node.log",
        &[
            "node",
            "--data-dir",
            "node-data",
            "--port",
            &node_port.to_string(),
            "--enable-test-commands",
            "--root-user",
            "root",
        ],
        &[("DOCPLANE_ROOT_PASSWORD", ROOT_PASSWORD)],
    );
    wait_port(node_port, "docplane node");
    (node, node_port)
}

/// Registers the node process as an instance; its node id.
async fn register_node(api: &Api, node_port: u16) -> String {
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/instances/register",
            Some(json!({"name": "crash-node", "seeds": [format!("127.0.0.1:{node_port}")],
                        "username": "root", "password": ROOT_PASSWORD})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["instance"]["groups"][0]["nodes"][0]["id"].as_str().unwrap().to_owned()
}

/// The twelve sleepers as the API lists them, once it lists them all: (session id, comment).
async fn listed_sleepers(api: &Api, node_id: &str) -> Vec<(String, String)> {
    loop {
        let (_, body) = api
            .call(reqwest::Method::GET, &format!("/nodes/{node_id}/sessions?limit=100&type=command"), None)
            .await
            .unwrap();
        let ids: Vec<(String, String)> = body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["operation"].as_str().unwrap_or("").contains("crash-"))
            .map(|s| {
                let op: Value = serde_json::from_str(s["operation"].as_str().unwrap()).unwrap();
                (s["id"].as_str().unwrap().to_owned(), op["comment"].as_str().unwrap().to_owned())
            })
            .collect();
        if ids.len() == 12 {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the sessions `ids`, one request each, concurrently, and sends `signal` to `serve` right
/// after the first 200; the ids whose kill was answered 200.
async fn kill_and_crash(
    api: Api,
    node_id: &str,
    ids: &[(String, String)],
    mut serve: Child,
    signal: &str,
) -> Vec<String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let api = std::sync::Arc::new(api);
    for (id, _) in ids {
        let (api, id, tx, node_id) = (api.clone(), id.clone(), tx.clone(), node_id.to_owned());
        tokio::spawn(async move {
            let r = api
                .call(
                    reqwest::Method::POST,
                    &format!("/nodes/{node_id}/session"),
                    Some(json!({"sessions": [id]})),
                )
                .await;
            if tx.send((id, r.ok().map(|(s, _)| s))).is_err() {
                eprintln!("a kill answered after the test stopped listening");
            }
        });
    }
    drop(tx);
    let mut answered = Vec::new();
    let mut signalled = false;
    while let Some((id, status)) = rx.recv().await {
        if status == Some(200) {
            answered.push(id);
            if !signalled {
                signalled = true;
                assert!(
                    Command::new("kill").args([signal, &serve.id().to_string()]).status().unwrap().success()
                );
            }
        }
    }
    assert!(signalled, "no kill was answered 200");
    serve.wait().expect("reaping the signalled server");
    answered
}

/// The kill records, once none is pending (the restarted server's sweeper resolves those the
/// crash cut off).
async fn resolved_records(api: &Api) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = api.call(reqwest::Method::GET, "/kill-records?limit=100", None).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let records = body["records"].as_array().unwrap().clone();
        if records.iter().all(|r| r["outcome"] != "pending") {
            return records;
        }
        assert!(Instant::now() < deadline, "records still pending: {records:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct PgDb(String);

/// One statement against the machine's PostgreSQL, as its superuser.
fn psql(sql: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql]).status()
}

impl PgDb {
    fn create() -> PgDb {
        let name = format!("docplane_crash_{}_{:08x}", std::process::id(), rand::random::<u32>());
        let ok = psql(&format!("CREATE DATABASE {name}")).unwrap().success();
        assert!(ok, "PostgreSQL at 127.0.0.1:5432 must be reachable");
        PgDb(name)
    }
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        match psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0)) {
            Ok(status) if status.success() => {}
            other => eprintln!("test database {} not dropped: {other:?}", self.0),
        }
    }
}

/// Ends a child process of the test (it may have exited already) and reaps it.
fn stop(child: &mut Child) {
    if let Err(e) = child.kill() {
        eprintln!("kill {}: {e}", child.id());
    }
    if let Err(e) = child.wait() {
        eprintln!("wait {}: {e}", child.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_kills_sqlite() {
    crash_case("data/meta.sqlite", "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_kills_sqlite() {
    crash_case("data/meta.sqlite", "-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_kills_postgres() {
    let db = PgDb::create();
    crash_case(&db.url(), "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_kills_postgres() {
    let db = PgDb::create();
    crash_case(&db.url(), "-KILL").await;
}
