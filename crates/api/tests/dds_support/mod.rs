//! Shared harness of the DDS end-to-end tests: an in-process embedded node (test commands on,
//! auth on) and an in-process API with a bootstrapped account, a token, and the node registered
//! through the registration extension.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use docplane_api::{ApiConfig, BootstrapOptions, MasterKey, ServerHandle, bootstrap, serve};
use docplane_driver::DriverConfig;
use docplane_node::{Node, NodeConfig, NodeHandle};
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub const NODE_USER: &str = "root";
pub const NODE_PASSWORD: &str = "node-secret-pw";
pub const ADMIN_PASSWORD: &str = "Admin-password-1";

pub struct Harness {
    pub node: Option<NodeHandle>,
    pub node_addr: SocketAddr,
    pub api: ServerHandle,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    pub project_id: String,
    pub access_key: String,
    pub secret_key: String,
    pub instance_id: String,
    pub node_id: String,
    pub dir: tempfile::TempDir,
}

pub async fn start_node() -> NodeHandle {
    start_node_at(SocketAddr::from(([127, 0, 0, 1], 0)), true).await
}

/// An embedded node on `bind`; without `native_rules` it lacks `docplaneKillOpRules`, as any
/// MongoDB does, so the enforcer polls it.
pub async fn start_node_at(bind: SocketAddr, native_rules: bool) -> NodeHandle {
    Node::start(NodeConfig {
        bind,
        enable_test_commands: true,
        auth: true,
        root_user: Some((NODE_USER.into(), NODE_PASSWORD.into())),
        native_kill_op_rules: native_rules,
        ..NodeConfig::default()
    })
    .await
    .expect("node starts")
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(Self::test_driver_config()).await
    }

    pub async fn start_with(driver_config: DriverConfig) -> Harness {
        Self::start_with_store(driver_config, None).await
    }

    /// Like [`Harness::start_with`], on the store at `location` (default: an SQLite file
    /// `meta.db` in the harness's directory).
    pub async fn start_with_store(driver_config: DriverConfig, location: Option<&str>) -> Harness {
        Self::start_full(driver_config, location, true).await
    }

    /// [`Harness::start`] on a node without native rule enforcement (the enforcer polls it).
    pub async fn start_polled() -> Harness {
        Self::start_full(Self::test_driver_config(), None, false).await
    }

    fn test_driver_config() -> DriverConfig {
        DriverConfig {
            connect_timeout: Duration::from_millis(500),
            server_selection_timeout: Duration::from_millis(1000),
            operation_timeout: Duration::from_secs(5),
            ..DriverConfig::default()
        }
    }

    async fn start_full(driver_config: DriverConfig, location: Option<&str>, native_rules: bool) -> Harness {
        let node = start_node_at(SocketAddr::from(([127, 0, 0, 1], 0)), native_rules).await;
        let node_addr = node.local_addr();
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("meta.db");
        let store = docplane_store::open(location.unwrap_or(default.to_str().unwrap())).await.unwrap();
        let key = MasterKey::generate();
        let boot = bootstrap(
            store.clone(),
            &key,
            &BootstrapOptions { admin_password: Some(ADMIN_PASSWORD.into()), ..BootstrapOptions::default() },
        )
        .await
        .unwrap();
        let mut config = ApiConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), store, key);
        config.driver = driver_config;
        let api = serve(config).await.unwrap();
        let base = format!("http://{}", api.local_addr());
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/v3/auth/tokens"))
            .json(&json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": boot.admin_name, "password": ADMIN_PASSWORD, "domain": {"name": boot.domain_name}}}},
                "scope": {"project": {"id": boot.project_id}}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "token: {}", resp.text().await.unwrap_or_default());
        let token = resp.headers()["x-subject-token"].to_str().unwrap().to_owned();
        let mut h = Harness {
            node: Some(node),
            node_addr,
            api,
            base,
            http,
            token,
            project_id: boot.project_id,
            access_key: boot.access_key,
            secret_key: boot.secret_key,
            instance_id: String::new(),
            node_id: String::new(),
            dir,
        };
        let (status, body) = h
            .post(
                "/instances/register",
                &json!({"name": "embedded-1", "seeds": [node_addr.to_string()],
                        "username": NODE_USER, "password": NODE_PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        h.instance_id = body["instance"]["id"].as_str().unwrap().to_owned();
        h.node_id = body["instance"]["groups"][0]["nodes"][0]["id"].as_str().unwrap().to_owned();
        h
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}/v3/{}{rest}", self.base, self.project_id)
    }

    pub async fn get(&self, rest: &str) -> (u16, Value) {
        let r = self.http.get(self.url(rest)).header("X-Auth-Token", &self.token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, rest: &str, body: &Value) -> (u16, Value) {
        self.post_raw(rest, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(&self, rest: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(rest))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, rest: &str) -> (u16, Value) {
        let r = self.http.delete(self.url(rest)).header("X-Auth-Token", &self.token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub fn sessions_path(&self, query: &str) -> String {
        format!("/nodes/{}/sessions{query}", self.node_id)
    }

    pub fn kill_path(&self) -> String {
        format!("/nodes/{}/session", self.node_id)
    }

    /// Lists sessions (limit 100) until `pick` matches one, or panics after 5 s.
    pub async fn wait_session(&self, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = self.get(&self.sessions_path("?limit=100")).await;
            assert_eq!(status, 200, "{body}");
            if let Some(s) = body["sessions"].as_array().unwrap().iter().find(|s| pick(s)) {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "session never listed: {body:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            let _ = node.shutdown().await;
        }
        let _ = self.api.shutdown(Duration::from_secs(1)).await;
    }
}

/// A client of another application, authenticated as the node's root user.
pub fn app_client(addr: SocketAddr, max_pool: u32) -> mongodb::Client {
    root_client(addr, "shop-app", max_pool)
}

/// A direct client of the node under application name `app`, authenticated as its root user.
fn root_client(addr: SocketAddr, app: &str, max_pool: u32) -> mongodb::Client {
    let mut o = ClientOptions::default();
    o.hosts = vec![ServerAddress::Tcp { host: addr.ip().to_string(), port: Some(addr.port()) }];
    o.direct_connection = Some(true);
    o.app_name = Some(app.into());
    o.max_pool_size = Some(max_pool);
    let mut c = Credential::default();
    c.username = Some(NODE_USER.into());
    c.password = Some(NODE_PASSWORD.into());
    c.source = Some("admin".into());
    o.credential = Some(c);
    mongodb::Client::with_options(o).unwrap()
}

pub fn spawn_sleep(client: &mongodb::Client, millis: i64) -> JoinHandle<mongodb::error::Result<Document>> {
    let db = client.database("admin");
    tokio::spawn(async move { db.run_command(doc! {"sleep": 1, "millis": millis}).await })
}

pub async fn fill(client: &mongodb::Client, n: usize) {
    let coll = client.database("test").collection::<Document>("big");
    let docs: Vec<Document> = (0..n).map(|i| doc! {"v": i as i64, "pad": "x".repeat(32)}).collect();
    for chunk in docs.chunks(10_000) {
        coll.insert_many(chunk.to_vec()).await.unwrap();
    }
}

/// A collection scan that runs for seconds (an expensive `$expr` on every document).
pub fn spawn_scan(client: &mongodb::Client) -> JoinHandle<mongodb::error::Result<Vec<Document>>> {
    let coll = client.database("test").collection::<Document>("big");
    tokio::spawn(async move {
        use futures::TryStreamExt;
        let filter = doc! {"$expr": {"$lt": [{"$size": {"$range": [0, 20_000]}}, 0]}};
        coll.find(filter).await?.try_collect().await
    })
}

pub fn error_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The project's kill records through the listing API (newest first), after waiting (up to 5 s)
/// until one has `outcome`.
pub async fn wait_audit(h: &Harness, outcome: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = h.get("/kill-records?limit=100").await;
        assert_eq!(status, 200, "{body}");
        let rows = body["records"].as_array().cloned().unwrap_or_default();
        if rows.iter().any(|a| a["outcome"] == outcome) {
            return rows;
        }
        assert!(Instant::now() < deadline, "no {outcome} kill record: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn code(body: &Value) -> &str {
    body["error_code"].as_str().unwrap_or("")
}

/// A TCP proxy to PostgreSQL that the test can cut: every connection is closed and new ones are
/// refused while `cut` is set.
pub async fn pg_proxy(cut: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            if cut.load(Ordering::SeqCst) {
                continue;
            }
            let cut = cut.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else { return };
                let pump = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                let watch = async {
                    while !cut.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                tokio::select! { _ = pump => {}, () = watch => {} }
            });
        }
    });
    port
}

// ---- kill-op rule tests (rules.rs, rules_native.rs)

/// A client of the node under `app`, authenticated as its root user.
pub fn client_as(addr: SocketAddr, app: &str) -> mongodb::Client {
    root_client(addr, app, 20)
}

/// A `sleep` of `millis` on database `db`; answers how it ended and after how long.
pub fn sleep_on(
    client: &mongodb::Client,
    db: &str,
    millis: i64,
) -> JoinHandle<(mongodb::error::Result<Document>, Duration)> {
    let db = client.database(db);
    tokio::spawn(async move {
        let started = Instant::now();
        let r = db.run_command(doc! {"sleep": 1, "millis": millis}).await;
        (r, started.elapsed())
    })
}

/// A request with a JSON body and the harness's token; answers the status and the JSON body.
pub async fn send(h: &Harness, method: reqwest::Method, rest: &str, body: Value) -> (u16, Value) {
    let r = h
        .http
        .request(method, h.url(rest))
        .header("X-Auth-Token", &h.token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates and enables a rule; answers its id.
pub async fn enabled_rule(h: &Harness, body: Value) -> String {
    let path = format!("/instances/{}/kill-op-rule", h.instance_id);
    let (status, created) = h.post(&path, &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, b) = send(h, reqwest::Method::PUT, &path, json!({"ids": [id], "action": "enable"})).await;
    assert_eq!(status, 200, "{b}");
    id
}
