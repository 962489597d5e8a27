//! Enforcement of kill-op rules across two `docplane serve` replicas on one PostgreSQL database:
//! each node's rules are enforced by exactly one replica at a time (a lease row in PostgreSQL),
//! and when that replica is killed with SIGKILL the other takes over within a few seconds. A
//! separate `docplane node` process holds the operations, registered like any MongoDB.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use serde_json::{Value, json};

const ROOT_PASSWORD: &str = "failover-node-pw";

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

/// A child process of the test, killed and reaped when dropped (also when an assertion fails).
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            if let Err(e) = self.0.kill() {
                eprintln!("self.0.kill(): {e:?}");
            }
            if let Err(e) = self.0.wait() {
                eprintln!("self.0.wait(): {e:?}");
            }
        }
    }
}

fn spawn(dir: &Path, log: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(log)).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_docplane"))
            .current_dir(dir)
            .args(args)
            .envs(envs.iter().copied())
            .env("DOCPLANE_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

fn start_serve(dir: &Path, port: u16, store: &str, log: &str) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let child = spawn(
        dir,
        log,
        &["serve", "--data-dir", "data", "--listen", &listen, "--store", store],
        &[("DOCPLANE_HEALTH_INTERVAL_SECS", "0"), ("DOCPLANE_ENFORCE_INTERVAL_MS", "1000")],
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

    async fn call(&self, method: reqwest::Method, rest: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/v3/{}{rest}", self.base, self.project))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

struct PgDb(String);

fn psql(sql: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql]).status()
}

impl PgDb {
    fn create() -> PgDb {
        let name = format!("docplane_failover_{}_{:08x}", std::process::id(), rand::random::<u32>());
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

fn stop(child: &mut Child) {
    if let Err(e) = child.kill() {
        eprintln!("kill {}: {e}", child.id());
    }
    if let Err(e) = child.wait() {
        eprintln!("child.wait(): {e:?}");
    }
}

/// Runs a 60 s sleep tagged `tag`; answers whether it ended with 11601 and when.
fn sleeper(client: &mongodb::Client, tag: &str) -> tokio::task::JoinHandle<(bool, Instant)> {
    let db = client.database("admin");
    let tag = tag.to_owned();
    tokio::spawn(async move {
        let r = db.run_command(doc! {"sleep": 1, "millis": 60_000_i64, "comment": tag}).await;
        let killed = matches!(r, Err(ref e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 11601));
        (killed, Instant::now())
    })
}

/// The replica (process id) that recorded the rule's kill of the sleep tagged `tag`, and how
/// many records name that sleep (waits until there is one).
async fn recorder_of(api: &Api, rule: &str, tag: &str) -> (u32, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api
            .call(reqwest::Method::GET, &format!("/kill-records?limit=100&principal=rule:{rule}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        let records: Vec<Value> = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["targets"].to_string().contains(tag))
            .cloned()
            .collect();
        // The client sees 11601 before the kill is verified and its outcome appended.
        if let Some(r) = records.first().filter(|r| r["outcome"] != "pending") {
            assert_eq!(r["outcome"], "killed", "{r:#}");
            // The enforcer's source is `<pid>-<random>`.
            let pid = r["source"].as_str().unwrap().split('-').next().unwrap().parse().unwrap();
            return (pid, records.len());
        }
        assert!(Instant::now() < deadline, "no record of {tag}: {body:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_enforces_and_another_takes_over_after_sigkill() {
    let pg = PgDb::create();
    let store = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let node_port = free_port();
    let mut node = spawn(
        dir.path(),
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
    // Two replicas: one data directory (the master key and admin.json), one database.
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = start_serve(dir.path(), port_a, &store, "serve-a.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("data/admin.json").exists() {
        assert!(Instant::now() < deadline, "no admin.json");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut b = start_serve(dir.path(), port_b, &store, "serve-b.log");
    let api_a = Api::login(dir.path(), port_a).await;
    let api_b = Api::login(dir.path(), port_b).await;
    let (status, body) = api_a
        .call(
            reqwest::Method::POST,
            "/instances/register",
            Some(json!({"name": "failover-node", "seeds": [format!("127.0.0.1:{node_port}")],
                        "username": "root", "password": ROOT_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let instance = body["instance"]["id"].as_str().unwrap().to_owned();
    let rules = format!("/instances/{instance}/kill-op-rule");
    let (status, body) = api_a
        .call(
            reqwest::Method::POST,
            &rules,
            Some(json!({"operation_types": ["command"], "namespaces": ["admin"], "secs_running": 2,
                        "node_type": "replica"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rule = body["id"].as_str().unwrap().to_owned();
    let (status, body) =
        api_b.call(reqwest::Method::PUT, &rules, Some(json!({"ids": [rule], "action": "enable"}))).await;
    assert_eq!(status, 200, "{body}");

    let uri = format!(
        "mongodb://root:{ROOT_PASSWORD}@127.0.0.1:{node_port}/?authSource=admin&directConnection=true"
    );
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();

    // Both replicas run the enforcer; the lease lets exactly one of them kill each sleep.
    for i in 0..3 {
        let tag = format!("before-{i}");
        let started = Instant::now();
        let (killed, at) = sleeper(&client, &tag).await.unwrap();
        assert!(killed, "{tag} was not killed");
        assert!(at - started < Duration::from_secs(6), "{tag} killed after {:?}", at - started);
        let (_, records) = recorder_of(&api_a, &rule, &tag).await;
        assert_eq!(records, 1, "{tag} was killed by both replicas");
    }
    let (owner, _) = recorder_of(&api_a, &rule, "before-0").await;
    assert!(owner == a.id() || owner == b.id(), "owner {owner} is neither replica");

    // SIGKILL the lease holder: it cannot give the lease up; the other waits for it to expire.
    let (holder, survivor, survivor_api) =
        if owner == a.id() { (&mut a, &mut b, &api_b) } else { (&mut b, &mut a, &api_a) };
    let survivor_pid = survivor.id();
    assert!(Command::new("kill").args(["-9", &holder.id().to_string()]).status().unwrap().success());
    holder.wait().unwrap();
    let started = Instant::now();
    let (killed, at) = sleeper(&client, "after").await.unwrap();
    assert!(killed, "nobody took the enforcement over");
    let takeover = at - started;
    // secs_running (2 s) + the lease (3 s) + two intervals, with slack for a loaded machine.
    assert!(takeover < Duration::from_secs(10), "taken over after {takeover:?}");
    let (new_owner, records) = recorder_of(survivor_api, &rule, "after").await;
    assert_eq!((new_owner, records), (survivor_pid, 1));
    println!("failover: the sleep after SIGKILL ended after {takeover:?}");
    let (_, v) = survivor_api.call(reqwest::Method::GET, "/kill-records/verify", None).await;
    assert_eq!(v["ok"], true, "{v}");
    stop(survivor);
    stop(&mut node);
}
