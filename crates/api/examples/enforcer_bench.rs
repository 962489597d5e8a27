//! Benchmark: what the kill-op rule enforcer costs the control plane, with the pass's rule
//! pushdown off (every pass reads each node's whole `$currentOp`) and on (the node answers only
//! the candidates, `docplane_sessions::rules::candidate_predicate`), side by side in one run.
//!
//! The real enforcer (`docplane_api::dds::enforcer::spawn_enforcer`, interval 1 s) runs over a
//! SQLite store holding the instances, nodes and rules; what it reaches differs by mode:
//! - `scripted` (default 100 nodes x 1,000 operations): one scripted transport answers for every
//!   node from its own OS thread (the "nodes"): it keeps each node's entries as realistic mongod 7.0
//!   `$currentOp` documents, encoded once, evaluates the pushed-down `$match` stages with the query
//!   crate's matcher (the embedded node's) and answers the matching entries' BSON bytes, which the
//!   transport decodes on the caller's side per call, as a driver does. A killOp replaces the
//!   killed operation by a fresh one, so a killing rule has work at every pass. The nodes' thread
//!   CPU is measured apart and subtracted: the figures are the control plane's.
//! - `embedded` (default 6 nodes x 1,000 operations): a child process (this program, `__nodes`)
//!   runs that many embedded nodes, each with that many `sleep`s held by official-driver
//!   clients; the enforcer reaches them through docplane's real driver. The child's CPU is the
//!   nodes'; this process's is the control plane's.
//!
//! Each instance (three nodes each, a replica set) has two enabled rules: `sleeps on victims` (type
//! command, namespace `victims`, `max_concurrency`) and `long collscans` (type query, namespace
//! `shop.orders`, plan `COLLSCAN`, `secs_running` 60). Per node two operations run on `victims`.
//! Scenarios: *quiet*, `max_concurrency` 2 (the rules match a few operations per node, none is
//! killed); *killing*, `max_concurrency` 1 (one kill per node per pass: intent, killOp, verify,
//! outcome). Each measurement is one window of the enforcer running (`window` seconds), alternating
//! pushdown off and on, `rounds` times per scenario. Per window: control-plane CPU seconds per
//! second (`utime + stime` of this process from `/proc/self/stat`, what `getrusage(RUSAGE_SELF)`
//! reports, minus the scripted nodes' thread), node CPU, passes per node per second, and node calls
//! per pass by kind (counted by a wrapper around the transport).
//!
//! Run: `cargo run --release -p docplane-api --example enforcer_bench -- [scripted|embedded]
//! [nodes] [ops] [window-secs] [rounds]` (defaults `scripted 100 1000 10 3`, `embedded 6 1000 10 3`).
#![expect(clippy::unwrap_used, reason = "a benchmark: any failure ends it")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use docplane_api::dds::enforcer::{EnforcerConfig, spawn_enforcer};
use docplane_api::{AppState, MasterKey};
use docplane_driver::{DriverConfig, DriverError, NodeTarget, NodeTransport, ServerInfo, ServerVersion};
use docplane_store::{GroupType, Instance, InstanceGroup, InstanceMode, KillOpRule, MetaStore, Node};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};

const PROJECT: &str = "bench-project";
const NODES_PER_INSTANCE: usize = 3;

// ---------------------------------------------------------------- CPU clocks

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `utime + stime` (seconds) of `/proc/<path>/stat`.
fn cpu_of(path: &str, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).unwrap();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap().split(' ').take(3).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------- counting calls

#[derive(Default)]
struct Counts {
    version: AtomicU64,
    server_info: AtomicU64,
    whole: AtomicU64,
    rules: AtomicU64,
    verify: AtomicU64,
    kill: AtomicU64,
    other: AtomicU64,
    entries: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 8] {
        [
            &self.version,
            &self.server_info,
            &self.whole,
            &self.rules,
            &self.verify,
            &self.kill,
            &self.other,
            &self.entries,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Which read a `$currentOp` request is: the first stage after `$currentOp` says.
fn classify<'a>(counts: &'a Counts, command: &Document) -> &'a AtomicU64 {
    let Ok(pipeline) = command.get_array("pipeline") else {
        return if command.contains_key("currentOp") { &counts.whole } else { &counts.other };
    };
    match pipeline.get(1).and_then(Bson::as_document).and_then(|s| s.get_document("$match").ok()) {
        None => &counts.whole,
        Some(m) if m.contains_key("opid") => &counts.verify,
        Some(m) if m.contains_key("$nor") => &counts.whole,
        Some(_) => &counts.rules,
    }
}

/// Counts every call of the transport it wraps.
struct Counting<T> {
    inner: T,
    counts: Arc<Counts>,
}

#[async_trait::async_trait]
impl<T: NodeTransport> NodeTransport for Counting<T> {
    fn config(&self) -> &DriverConfig {
        self.inner.config()
    }
    async fn version(&self, target: &NodeTarget) -> docplane_driver::Result<ServerVersion> {
        self.counts.version.fetch_add(1, Ordering::Relaxed);
        self.inner.version(target).await
    }
    async fn server_info(&self, target: &NodeTarget) -> docplane_driver::Result<ServerInfo> {
        self.counts.server_info.fetch_add(1, Ordering::Relaxed);
        self.inner.server_info(target).await
    }
    async fn command(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> docplane_driver::Result<Document> {
        let counter =
            if command.contains_key("killOp") { &self.counts.kill } else { classify(&self.counts, &command) };
        counter.fetch_add(1, Ordering::Relaxed);
        self.inner.command(target, db, command).await
    }
    async fn cursor_command(
        &self,
        target: &NodeTarget,
        db: &str,
        command: Document,
    ) -> docplane_driver::Result<Vec<Document>> {
        classify(&self.counts, &command).fetch_add(1, Ordering::Relaxed);
        let out = self.inner.cursor_command(target, db, command).await?;
        self.counts.entries.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

// ---------------------------------------------------------------- scripted nodes

#[derive(Clone, Copy)]
enum Kind {
    Victim,
    Collscan,
    Ordinary(usize),
    Internal,
    Idle,
}

fn uuid(n: u64) -> Bson {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.extend_from_slice(&n.rotate_left(17).to_le_bytes());
    Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes })
}

/// A mongod 7.0 `$currentOp` entry of `kind` (about 1.3 KB for an operation).
fn op_entry(node: usize, opid: i64, kind: Kind, micros: i64) -> Document {
    let conn = opid % 100_000;
    let host = format!("db{node}.example:27017");
    let client_for = |app: &str, subnet: i64| -> Document {
        doc! {"client": format!("10.1.{}.{}:{}", subnet, conn % 250, 40_000 + conn % 20_000),
        "appName": app,
        "clientMetadata": {"application": {"name": app}, "driver": {"name": "nodejs", "version": "6.3.0"},
            "os": {"type": "Linux", "name": "linux", "architecture": "x64", "version": "6.1.0-17-cloud-amd64"},
            "platform": "Node.js v20.11.0, LE (unified)"}}
    };
    let lsid = doc! {"id": uuid(u64::try_from(opid).unwrap()), "uid": Binary { subtype: BinarySubtype::Generic, bytes: vec![7; 32] }};
    let (op, ns, db, command, plan, app) = match kind {
        Kind::Victim => {
            ("command", "victims.$cmd", "victims", doc! {"sleep": 1, "millis": 600_000_i64}, None, "batch")
        }
        Kind::Collscan => (
            "query",
            "shop.orders",
            "shop",
            doc! {"find": "orders", "filter": {"note": {"$regex": "refund", "$options": "i"}}, "sort": {"created": -1}},
            Some("COLLSCAN"),
            "report",
        ),
        Kind::Ordinary(i) => match i % 6 {
            0 => (
                "query",
                "shop.orders",
                "shop",
                doc! {"find": "orders", "filter": {"customer": i as i64, "status": {"$in": ["open", "paid"]}}, "limit": 50},
                Some("IXSCAN { customer: 1, status: 1 }"),
                "shop-web",
            ),
            1 => (
                "query",
                "shop.items",
                "shop",
                doc! {"find": "items", "filter": {"sku": format!("SKU-{i:06}")}, "projection": {"name": 1, "price": 1}},
                Some("IXSCAN { sku: 1 }"),
                "shop-web",
            ),
            2 => (
                "update",
                "shop.items",
                "shop",
                doc! {"q": {"sku": format!("SKU-{i:06}")}, "u": {"$inc": {"stock": -1}}, "multi": false, "upsert": false},
                Some("IXSCAN { sku: 1 }"),
                "shop-api",
            ),
            3 => (
                "insert",
                "analytics.events",
                "analytics",
                doc! {"insert": "events", "ordered": false},
                None,
                "collector",
            ),
            4 => (
                "getmore",
                "shop.orders",
                "shop",
                doc! {"getMore": 8_000_000_i64 + i as i64, "collection": "orders", "batchSize": 101},
                Some("IXSCAN { created: -1 }"),
                "report",
            ),
            _ => (
                "command",
                "analytics.events",
                "analytics",
                doc! {"aggregate": "events", "pipeline": [{"$match": {"day": "2026-12-01"}}, {"$group": {"_id": "$kind", "n": {"$sum": 1}}}], "cursor": {}},
                Some("IXSCAN { day: 1 }"),
                "report",
            ),
        },
        Kind::Internal | Kind::Idle => unreachable!("not an operation entry"),
    };
    let mut command = command;
    command.insert("lsid", lsid.clone());
    command.insert("$clusterTime", doc! {"clusterTime": mongodb::bson::Timestamp { time: 1_764_615_600, increment: 1 }, "signature": {"hash": Binary { subtype: BinarySubtype::Generic, bytes: vec![0; 20] }, "keyId": 0_i64}});
    command.insert("$db", db);
    let mut e = doc! {"type": "op", "host": host, "desc": format!("conn{conn}"), "connectionId": conn};
    e.extend(client_for(app, i64::try_from(node % 200).unwrap()));
    e.extend(doc! {
        "active": true, "currentOpTime": "2026-12-01T19:00:00.000+00:00",
        "effectiveUsers": [{"user": "app", "db": "admin"}], "threaded": true, "opid": opid, "lsid": lsid,
        "secs_running": micros / 1_000_000, "microsecs_running": micros, "op": op, "ns": ns, "redacted": false,
        "command": command,
    });
    if let Some(plan) = plan {
        e.insert("planSummary", plan);
        e.insert("queryFramework", "classic");
    }
    e.extend(doc! {
        "numYields": micros / 10_000, "locks": {"FeatureCompatibilityVersion": "r", "Global": "r"},
        "waitingForLock": false,
        "lockStats": {"FeatureCompatibilityVersion": {"acquireCount": {"r": 3_i64}}, "Global": {"acquireCount": {"r": 3_i64}}},
        "waitingForFlowControl": false, "flowControlStats": {},
    });
    e
}

fn entry(node: usize, opid: i64, kind: Kind, micros: i64) -> Document {
    match kind {
        Kind::Internal => {
            doc! {"type": "op", "host": format!("db{node}.example:27017"), "desc": "TTLMonitor",
            "active": true, "currentOpTime": "2026-12-01T19:00:00.000+00:00", "opid": opid, "op": "none", "ns": "",
            "redacted": false, "command": {}, "numYields": 0, "locks": {}, "waitingForLock": false, "lockStats": {},
            "waitingForFlowControl": false, "flowControlStats": {}, "microsecs_running": micros}
        }
        Kind::Idle => {
            doc! {"type": "op", "host": format!("db{node}.example:27017"), "desc": format!("conn{}", opid % 100_000),
            "connectionId": opid % 100_000, "client": format!("10.1.9.{}:5{:04}", opid % 250, opid % 10_000),
            "appName": "shop-web", "active": false, "currentOpTime": "2026-12-01T19:00:00.000+00:00"}
        }
        _ => op_entry(node, opid, kind, micros),
    }
}

struct Op {
    opid: i64,
    kind: Kind,
    doc: Document,
    bytes: Vec<u8>,
}

struct NodeState {
    index: usize,
    ops: Vec<Op>,
    next_opid: i64,
}

impl NodeState {
    fn new(index: usize, n: usize) -> Self {
        let mut s = NodeState { index, ops: Vec::with_capacity(n), next_opid: 1 };
        // Two sleeps on `victims` (the older 50 s), five collection scans under 30 s, the
        // server's own threads, idle connections, and the application's ordinary work.
        s.push(Kind::Victim, 50_000_000);
        s.push(Kind::Victim, 20_000_000);
        for i in 0..5 {
            s.push(Kind::Collscan, 3_000_000 + i * 5_000_000);
        }
        for _ in 0..3 {
            s.push(Kind::Internal, 1_000_000);
        }
        for _ in 0..20 {
            s.push(Kind::Idle, 0);
        }
        let mut i = 0;
        while s.ops.len() < n {
            s.push(Kind::Ordinary(i), i64::try_from(i % 997).unwrap() * 1_500);
            i += 1;
        }
        s
    }

    fn make(&mut self, kind: Kind, micros: i64) -> Op {
        let opid = self.next_opid;
        self.next_opid += 1;
        let doc = entry(self.index, opid, kind, micros);
        let mut bytes = Vec::new();
        doc.to_writer(&mut bytes).unwrap();
        Op { opid, kind, doc, bytes }
    }

    fn push(&mut self, kind: Kind, micros: i64) {
        let op = self.make(kind, micros);
        self.ops.push(op);
    }

    /// Kills `opid`: a fresh operation of the same kind takes its place (just started).
    fn kill(&mut self, opid: i64) -> bool {
        let Some(i) = self.ops.iter().position(|o| o.opid == opid) else { return false };
        let kind = self.ops[i].kind;
        self.ops[i] = self.make(kind, 1_000_000);
        true
    }
}

enum Ask {
    Read { node: usize, filters: Vec<Document>, reply: tokio::sync::oneshot::Sender<Vec<Vec<u8>>> },
    Kill { node: usize, opid: i64, reply: tokio::sync::oneshot::Sender<bool> },
}

/// Every scripted node, served by one OS thread; answers its thread id for the CPU figure.
fn spawn_nodes(nodes: usize, ops: usize) -> (std::sync::mpsc::Sender<Ask>, String, usize) {
    let (tx, rx) = std::sync::mpsc::channel::<Ask>();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let mut states: Vec<NodeState> = (0..nodes).map(|i| NodeState::new(i, ops)).collect();
        let bytes = states[0].ops.iter().map(|o| o.bytes.len()).sum::<usize>() / ops;
        tid_tx.send((me.to_string_lossy().into_owned(), bytes)).unwrap();
        while let Ok(ask) = rx.recv() {
            match ask {
                Ask::Read { node, filters, reply } => {
                    let filters: Vec<docplane_query::Filter> =
                        filters.iter().map(|f| docplane_query::Filter::parse(f).unwrap()).collect();
                    let out = states[node]
                        .ops
                        .iter()
                        .filter(|o| filters.iter().all(|f| f.matches(&o.doc)))
                        .map(|o| o.bytes.clone())
                        .collect();
                    if reply.send(out).is_err() {
                        eprintln!("a read's caller went away");
                    }
                }
                Ask::Kill { node, opid, reply } => {
                    if reply.send(states[node].kill(opid)).is_err() {
                        eprintln!("a kill's caller went away");
                    }
                }
            }
        }
    });
    let (tid, bytes) = tid_rx.recv().unwrap();
    (tx, tid, bytes)
}

struct Scripted {
    config: DriverConfig,
    asks: std::sync::mpsc::Sender<Ask>,
    index: HashMap<String, usize>,
}

impl Scripted {
    fn node(&self, target: &NodeTarget) -> docplane_driver::Result<usize> {
        self.index.get(&target.id).copied().ok_or_else(|| DriverError::InvalidRequest("unknown node".into()))
    }
    fn send(&self, ask: Ask) {
        self.asks.send(ask).unwrap();
    }
}

#[async_trait::async_trait]
impl NodeTransport for Scripted {
    fn config(&self) -> &DriverConfig {
        &self.config
    }
    async fn version(&self, _: &NodeTarget) -> docplane_driver::Result<ServerVersion> {
        Ok(ServerVersion::new(7, 0, 5))
    }
    async fn server_info(&self, _: &NodeTarget) -> docplane_driver::Result<ServerInfo> {
        Err(DriverError::InvalidRequest("not scripted".into()))
    }
    async fn command(
        &self,
        target: &NodeTarget,
        _: &str,
        command: Document,
    ) -> docplane_driver::Result<Document> {
        let node = self.node(target)?;
        let opid = match command.get("op") {
            Some(Bson::Int32(n)) if command.contains_key("killOp") => i64::from(*n),
            Some(Bson::Int64(n)) if command.contains_key("killOp") => *n,
            _ => return Err(DriverError::InvalidRequest("only killOp is scripted".into())),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Ask::Kill { node, opid, reply });
        answer.await.map_err(|_| DriverError::InvalidRequest("the nodes' thread ended".into()))?;
        Ok(doc! {"info": "attempting to kill op", "ok": 1})
    }
    async fn cursor_command(
        &self,
        target: &NodeTarget,
        _: &str,
        command: Document,
    ) -> docplane_driver::Result<Vec<Document>> {
        let node = self.node(target)?;
        let pipeline =
            command.get_array("pipeline").map_err(|e| DriverError::InvalidRequest(e.to_string()))?;
        let mut filters = Vec::new();
        for stage in pipeline.iter().skip(1) {
            let m = stage.as_document().and_then(|s| s.get_document("$match").ok());
            filters.push(
                m.cloned().ok_or_else(|| DriverError::InvalidRequest("only $match is scripted".into()))?,
            );
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Ask::Read { node, filters, reply });
        let bytes =
            answer.await.map_err(|_| DriverError::InvalidRequest("the nodes' thread ended".into()))?;
        // The driver's side of the reply: every entry decoded.
        Ok(bytes.iter().map(|b| Document::from_reader(&mut b.as_slice()).unwrap()).collect())
    }
}

// ---------------------------------------------------------------- embedded nodes (child)

/// The child: `nodes` embedded nodes with `ops` operations each (two of them endless sleep
/// loops on `victims`, the rest sleeps on `shop`); prints `READY <addr>...`, ends when its
/// stdin closes.
async fn serve_nodes(nodes: usize, ops: usize) {
    use tokio::io::AsyncReadExt;
    let mut addrs = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..nodes {
        let node = docplane_node::Node::start(docplane_node::NodeConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            enable_test_commands: true,
            auth: false,
            ..docplane_node::NodeConfig::default()
        })
        .await
        .unwrap();
        let addr = node.local_addr();
        addrs.push(addr.to_string());
        let uri = format!("mongodb://{addr}/?appName=load&maxPoolSize={}&directConnection=true", ops + 10);
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        for i in 0..ops {
            let db = client.database(if i < 2 { "victims" } else { "shop" });
            tokio::spawn(async move {
                loop {
                    // Killed sleeps on `victims` start again; the others run for the whole run.
                    if db.run_command(doc! {"sleep": 1, "millis": 3_600_000_i64}).await.is_ok()
                        || db.name() != "victims"
                    {
                        break;
                    }
                }
            });
        }
        let probe = client.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = probe
                .database("admin")
                .run_command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"allUsers": true}}, {"$match": {"command.sleep": 1}}, {"$count": "n"}], "cursor": {}})
                .await
                .unwrap();
            let got = n
                .get_document("cursor")
                .unwrap()
                .get_array("firstBatch")
                .unwrap()
                .first()
                .and_then(Bson::as_document)
                .and_then(|d| d.get_i32("n").ok())
                .unwrap_or(0);
            if usize::try_from(got).unwrap() >= ops {
                break;
            }
            assert!(Instant::now() < deadline, "the sleeps never all ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        handles.push((node, client));
    }
    println!("READY {}", addrs.join(" "));
    let mut sink = Vec::new();
    if let Err(e) = tokio::io::stdin().read_to_end(&mut sink).await {
        eprintln!("child: stdin: {e}");
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------- the store and the enforcer

fn rule(instance: &str, id: &str, cap: i64) -> [KillOpRule; 1] {
    [KillOpRule {
        id: id.into(),
        instance_id: instance.into(),
        operation_types: vec!["command".into()],
        namespaces: vec!["victims".into()],
        client_ips: vec![],
        plan_summary: String::new(),
        max_concurrency: cap,
        secs_running: 0,
        node_type: "replica".into(),
        status: "DISABLED".into(),
        mode: "kill".into(),
        created_at: 0,
        updated_at: 0,
    }]
}

/// Instances of three nodes at `addresses`, each with three rules (two caps, one time limit);
/// answers the instance ids.
async fn seed(store: &Arc<dyn MetaStore>, addresses: &[String]) -> Vec<String> {
    let mut instances = Vec::new();
    for (i, chunk) in addresses.chunks(NODES_PER_INSTANCE).enumerate() {
        let id = format!("inst{i:03}");
        store
            .create_instance(&Instance {
                id: id.clone(),
                project_id: PROJECT.into(),
                name: id.clone(),
                mode: InstanceMode::ReplicaSet,
                status: "normal".into(),
                datastore_version: "7.0".into(),
                port: 27017,
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
        let group = format!("{id}-rs");
        store
            .create_instance_group(&InstanceGroup {
                id: group.clone(),
                instance_id: id.clone(),
                group_type: GroupType::Replica,
                name: group.clone(),
                status: "normal".into(),
            })
            .await
            .unwrap();
        for (k, address) in chunk.iter().enumerate() {
            let node_id = format!("{id}-no{k:02}");
            store
                .create_node(&Node {
                    id: node_id.clone(),
                    instance_id: id.clone(),
                    group_id: group.clone(),
                    name: node_id,
                    role: if k == 0 { "Primary" } else { "Secondary" }.into(),
                    status: "normal".into(),
                    address: address.clone(),
                    credentials_enc: None,
                    version: "7.0.5".into(),
                    updated_at: 0,
                })
                .await
                .unwrap();
        }
        let [cap2] = rule(&id, &format!("{id}-cap2"), 2);
        let [cap1] = rule(&id, &format!("{id}-cap1"), 1);
        let collscans = KillOpRule {
            id: format!("{id}-collscan"),
            operation_types: vec!["query".into()],
            namespaces: vec!["shop.orders".into()],
            plan_summary: "COLLSCAN".into(),
            max_concurrency: 0,
            secs_running: 60,
            ..cap1.clone()
        };
        for r in [cap2, cap1, collscans] {
            store.create_kill_op_rule(PROJECT, &r).await.unwrap();
        }
        store.set_kill_op_rule_status(PROJECT, &id, &[format!("{id}-collscan")], "ENABLED").await.unwrap();
        instances.push(id);
    }
    instances
}

/// Enables the cap of `scenario` on every instance (and disables the other).
async fn scenario_rules(store: &Arc<dyn MetaStore>, instances: &[String], killing: bool) {
    for id in instances {
        let (on, off) = if killing { ("cap1", "cap2") } else { ("cap2", "cap1") };
        store.set_kill_op_rule_status(PROJECT, id, &[format!("{id}-{on}")], "ENABLED").await.unwrap();
        store.set_kill_op_rule_status(PROJECT, id, &[format!("{id}-{off}")], "DISABLED").await.unwrap();
    }
}

struct Window {
    cpu_per_s: f64,
    node_cpu_per_s: f64,
    passes_per_node_s: f64,
    /// Calls per pass: version, server_info, whole read, rule read, verify read, killOp, other.
    per_pass: [f64; 7],
    entries_per_pass: f64,
}

#[expect(clippy::too_many_arguments, reason = "one window's whole setup")]
async fn window(
    store: &Arc<dyn MetaStore>,
    iam: &Arc<docplane_iam::Iam>,
    transport: Arc<dyn NodeTransport>,
    counts: &Counts,
    nodes: usize,
    secs: u64,
    pushdown: bool,
    node_cpu: &dyn Fn() -> f64,
) -> Window {
    let ticks = clock_ticks();
    let driver = docplane_driver::Driver::new(DriverConfig::default());
    let state = AppState {
        store: store.clone(),
        iam: iam.clone(),
        driver: driver.clone(),
        sessions: docplane_sessions::SessionService::new(transport, store.clone())
            .with_rule_pushdown(pushdown),
        body_limit: 1 << 20,
        metrics: Arc::new(docplane_api::metrics::Metrics::new(iam.clone(), driver)),
        ready: Arc::default(),
    };
    let before = counts.snapshot();
    let (cpu0, node0, t0) = (cpu_of("self", ticks), node_cpu(), Instant::now());
    let enforcer = spawn_enforcer(&state, EnforcerConfig::every(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    enforcer.stop().await;
    let (cpu1, node1, wall) = (cpu_of("self", ticks), node_cpu(), t0.elapsed().as_secs_f64());
    let after = counts.snapshot();
    let d: Vec<f64> = (0..8).map(|i| (after[i] - before[i]) as f64).collect();
    let passes = d[2] + d[3];
    let node_cpu_s = node1 - node0;
    Window {
        cpu_per_s: (cpu1 - cpu0 - if node_cpu_is_ours() { node_cpu_s } else { 0.0 }) / wall,
        node_cpu_per_s: node_cpu_s / wall,
        passes_per_node_s: passes / nodes as f64 / wall,
        per_pass: [d[0], d[1], d[2], d[3], d[4], d[5], d[6]].map(|x| x / passes.max(1.0)),
        entries_per_pass: d[7] / passes.max(1.0),
    }
}

/// Whether the node CPU counted is a thread of this process (scripted) and must be subtracted.
fn node_cpu_is_ours() -> bool {
    NODE_CPU_IS_OURS.load(Ordering::Relaxed) == 1
}
static NODE_CPU_IS_OURS: AtomicU64 = AtomicU64::new(0);

/// The transport, the nodes' addresses and their CPU clock.
type Setup = (Arc<dyn NodeTransport>, Vec<String>, Box<dyn Fn() -> f64>);
/// A result row: its label and what it reads of a window.
type Row = (String, Box<dyn Fn(&Window) -> f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.first().map(String::as_str) == Some("__nodes") {
        let nodes = args[1].parse().unwrap();
        let ops = args[2].parse().unwrap();
        rt.block_on(serve_nodes(nodes, ops));
        return;
    }
    rt.block_on(run(args));
}

async fn run(args: Vec<String>) {
    let mode = args.first().cloned().unwrap_or_else(|| "scripted".into());
    let embedded = match mode.as_str() {
        "scripted" => false,
        "embedded" => true,
        other => panic!("mode {other:?}: scripted or embedded"),
    };
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().unwrap());
    let nodes = arg(1, if embedded { 6 } else { 100 });
    let ops = arg(2, 1000);
    let secs = u64::try_from(arg(3, 10)).unwrap();
    let rounds = arg(4, 3);
    let ticks = clock_ticks();
    println!("enforcer_bench {mode}: {nodes} nodes x {ops} operations, windows of {secs} s, {rounds} rounds");
    println!("load average at start: {}", load_average());

    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().join("meta.db").to_str().unwrap()).await.unwrap();
    let iam = docplane_iam::Iam::new(store.clone(), &MasterKey::generate()).await.unwrap();
    let counts = Arc::new(Counts::default());

    let (child, (transport, addresses, node_cpu)) = if embedded {
        let (child, setup) = embedded_setup(nodes, ops, &counts, ticks);
        (Some(child), setup)
    } else {
        (None, scripted_setup(nodes, ops, &counts, ticks))
    };
    let instances = seed(&store, &addresses).await;

    // Warm-up: one short window per setting, not reported.
    scenario_rules(&store, &instances, false).await;
    for pushdown in [false, true] {
        window(&store, &iam, transport.clone(), &counts, nodes, 2, pushdown, &*node_cpu).await;
    }
    for killing in [false, true] {
        scenario_rules(&store, &instances, killing).await;
        let name = if killing { "killing" } else { "quiet" };
        let mut results: HashMap<bool, Vec<Window>> = HashMap::new();
        for round in 0..rounds {
            // Alternate which goes first.
            let order = if round.is_multiple_of(2) { [false, true] } else { [true, false] };
            for pushdown in order {
                let w =
                    window(&store, &iam, transport.clone(), &counts, nodes, secs, pushdown, &*node_cpu).await;
                println!(
                    "{name:8} pushdown {:3} round {round}: control plane {:.3} CPU s/s ({:.2} ms per node pass), nodes {:.3} CPU s/s, {:.2} passes/node/s, {:.0} entries/pass",
                    if pushdown { "on" } else { "off" },
                    w.cpu_per_s,
                    1000.0 * w.cpu_per_s / (w.passes_per_node_s * nodes as f64).max(f64::MIN_POSITIVE),
                    w.node_cpu_per_s,
                    w.passes_per_node_s,
                    w.entries_per_pass
                );
                results.entry(pushdown).or_default().push(w);
            }
        }
        print_medians(name, rounds, nodes, &results);
    }
    println!("load average at end: {}", load_average());
    if let Some(mut c) = child {
        drop(c.stdin.take());
        if let Err(e) = c.wait() {
            eprintln!("child: {e}");
        }
    }
}

/// `embedded`: real nodes in a child process (this binary with `__nodes`), reached through the
/// official driver; their CPU is the child's.
fn embedded_setup(
    nodes: usize,
    ops: usize,
    counts: &Arc<Counts>,
    ticks: f64,
) -> (std::process::Child, Setup) {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["__nodes", &nodes.to_string(), &ops.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addresses: Vec<String> = line
        .trim()
        .strip_prefix("READY ")
        .expect("the child's READY line")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let pid = c.id();
    let driver = docplane_driver::Driver::new(DriverConfig::default());
    let t: Arc<dyn NodeTransport> = Arc::new(Counting { inner: driver, counts: counts.clone() });
    (c, (t, addresses, Box::new(move || cpu_of(&pid.to_string(), ticks))))
}

/// `scripted`: nodes answered by a thread of this process from scripted `$currentOp` entries;
/// their CPU is that thread's (subtracted from the control plane's).
fn scripted_setup(nodes: usize, ops: usize, counts: &Arc<Counts>, ticks: f64) -> Setup {
    let (asks, tid, bytes) = spawn_nodes(nodes, ops);
    println!("scripted entries: {bytes} bytes each on average (BSON)");
    NODE_CPU_IS_OURS.store(1, Ordering::Relaxed);
    let addresses: Vec<String> = (0..nodes).map(|i| format!("db{i}.example:27017")).collect();
    let mut index = HashMap::new();
    for i in 0..nodes {
        index.insert(format!("inst{:03}-no{:02}", i / NODES_PER_INSTANCE, i % NODES_PER_INSTANCE), i);
    }
    let scripted = Scripted { config: DriverConfig::default(), asks, index };
    let t: Arc<dyn NodeTransport> = Arc::new(Counting { inner: scripted, counts: counts.clone() });
    (t, addresses, Box::new(move || cpu_of(&tid, ticks)))
}

/// A scenario's table: every measurement's median over the rounds, pushdown off and on.
fn print_medians(name: &str, rounds: usize, nodes: usize, results: &HashMap<bool, Vec<Window>>) {
    let kinds = ["version", "server_info", "whole read", "rule read", "verify read", "killOp", "other"];
    println!("\n{name}: medians over {rounds} windows");
    println!("| measurement | pushdown off | pushdown on | on / off |");
    println!("|---|---|---|---|");
    let m = |on: bool, f: &dyn Fn(&Window) -> f64| median(results[&on].iter().map(f).collect());
    let rows: Vec<Row> = {
        let mut rows: Vec<Row> = vec![
            ("control-plane CPU s per s".into(), Box::new(|w: &Window| w.cpu_per_s)),
            // Independent of how many passes the machine let run in the window.
            (
                "control-plane CPU ms per node pass".into(),
                Box::new(move |w: &Window| {
                    1000.0 * w.cpu_per_s / (w.passes_per_node_s * nodes as f64).max(f64::MIN_POSITIVE)
                }),
            ),
            ("node CPU s per s".into(), Box::new(|w: &Window| w.node_cpu_per_s)),
            ("passes per node per s".into(), Box::new(|w: &Window| w.passes_per_node_s)),
            ("entries decoded per pass".into(), Box::new(|w: &Window| w.entries_per_pass)),
        ];
        for (k, kind) in kinds.iter().enumerate() {
            rows.push((format!("calls per pass: {kind}"), Box::new(move |w: &Window| w.per_pass[k])));
        }
        rows
    };
    for (label, f) in &rows {
        let (off, on) = (m(false, f.as_ref()), m(true, f.as_ref()));
        let ratio = if off > 0.0 { format!("{:.3}", on / off) } else { "-".into() };
        println!("| {label} | {off:.3} | {on:.3} | {ratio} |");
    }
    println!();
}
