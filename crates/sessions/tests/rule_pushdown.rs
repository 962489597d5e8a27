//! The enforcement pass with its rule criteria pushed down to the node
//! (`rules::candidate_predicate` after `$currentOp`) kills and records exactly what the pass that
//! reads every entry does (pushdown off, and the MongoDB 3.4 `currentOp` path), over varied
//! generated entries and rule sets: every entry type and field shape `SessionRecord::summary`,
//! `rules::matches` and the rails read, operations of protected users and applications, the
//! server's own threads, cluster members and connections docplane owns (which must never become
//! victims), `secs_running` and `max_concurrency` alone and together, several rules claiming in
//! order. A scripted node evaluates pushed-down `$match` stages with the query crate's matcher
//! (the embedded node's), answers killOp, and counts the entries each read returns.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use docplane_driver::{
    DEFAULT_APP_NAME, DriverConfig, DriverError, NodeKind, NodeTarget, NodeTransport, ServerInfo,
    ServerVersion,
};
use docplane_sessions::rules::{RuleOp, matches};
use docplane_sessions::{NodeRef, ObserveMemory, RuleAction, SessionRecord, SessionService};
use docplane_store::{Instance, InstanceMode, KillOpRule, MetaStore, SessionSettings};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};

struct ScriptedNode {
    config: DriverConfig,
    version: ServerVersion,
    entries: Mutex<Vec<Document>>,
    /// Entries answered per current-op read, in order.
    returned: Mutex<Vec<usize>>,
}

impl ScriptedNode {
    fn new(version: ServerVersion, entries: Vec<Document>) -> Arc<Self> {
        Arc::new(ScriptedNode {
            config: DriverConfig::default(),
            version,
            entries: Mutex::new(entries),
            returned: Mutex::new(Vec::new()),
        })
    }

    fn select(&self, filters: &[Document]) -> Vec<Document> {
        let mut out = self.entries.lock().unwrap().clone();
        for f in filters {
            let filter = docplane_query::Filter::parse(f).expect("a filter the matcher takes");
            out.retain(|e| filter.matches(e));
        }
        self.returned.lock().unwrap().push(out.len());
        out
    }
}

fn id_text(e: &Document) -> Option<String> {
    SessionRecord::summary(e).map(|r| r.id)
}

fn op_text(op: &Bson) -> String {
    match op {
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl NodeTransport for ScriptedNode {
    fn config(&self) -> &DriverConfig {
        &self.config
    }
    async fn version(&self, _: &NodeTarget) -> docplane_driver::Result<ServerVersion> {
        Ok(self.version)
    }
    async fn server_info(&self, _: &NodeTarget) -> docplane_driver::Result<ServerInfo> {
        Err(DriverError::InvalidRequest("not scripted".into()))
    }
    async fn command(&self, _: &NodeTarget, _: &str, command: Document) -> docplane_driver::Result<Document> {
        if command.contains_key("currentOp") {
            assert!(!self.version.has_current_op_stage(), "the currentOp command is 3.4's");
            let mut filter = command.clone();
            for k in ["currentOp", "$all", "$comment"] {
                filter.remove(k);
            }
            let filters: Vec<Document> = if filter.is_empty() { vec![] } else { vec![filter] };
            let inprog: Vec<Bson> = self.select(&filters).into_iter().map(Bson::Document).collect();
            return Ok(doc! {"inprog": inprog, "ok": 1});
        }
        let op =
            command.get("op").cloned().ok_or_else(|| DriverError::InvalidRequest("only killOp".into()))?;
        let text = op_text(&op);
        self.entries.lock().unwrap().retain(|e| id_text(e).as_deref() != Some(text.as_str()));
        Ok(doc! {"info": "attempting to kill op", "ok": 1})
    }
    async fn cursor_command(
        &self,
        _: &NodeTarget,
        _: &str,
        command: Document,
    ) -> docplane_driver::Result<Vec<Document>> {
        assert!(self.version.has_current_op_stage());
        let pipeline = command.get_array("pipeline").unwrap();
        assert!(pipeline[0].as_document().unwrap().contains_key("$currentOp"));
        let filters: Vec<Document> = pipeline[1..]
            .iter()
            .map(|s| {
                s.as_document().unwrap().get_document("$match").expect("only $match is scripted").clone()
            })
            .collect();
        Ok(self.select(&filters))
    }
}

/// A small deterministic generator (xorshift64*).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const PROTECTED_USER: &str = "backup";
const PROTECTED_APP: &str = "ops-console";

/// One generated `$currentOp` entry; `true` when the rails protect it by construction (the
/// server's own work, a cluster member, a protected user or application, or on a connection
/// docplane owns: `own` holds those connection ids). Each field is drawn by its own function, in
/// a fixed order (the generator's sequence, so a seed always gives the same entries): often the
/// usual value, sometimes an odd type or shape, sometimes absent.
fn entry(g: &mut Gen, n: usize, own: &HashSet<i32>) -> (Document, bool) {
    let mut e = Document::new();
    draw_type(g, &mut e);
    draw_opid(g, &mut e, i64::try_from(100 + n).unwrap());
    draw_active(g, &mut e);
    draw_op(g, &mut e);
    draw_ns(g, &mut e);
    draw_client(g, &mut e);
    draw_connection(g, &mut e, i32::try_from(n % 40).unwrap());
    draw_plan(g, &mut e);
    draw_command(g, &mut e);
    draw_running(g, &mut e);
    draw_user(g, &mut e);
    draw_app(g, &mut e);
    if e.get_str("type").is_ok_and(|t| t == "idleSession") {
        e.insert("lsid", doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![u8::try_from(n % 256).unwrap(); 16] }});
        if g.chance(50) {
            e.insert("transaction", doc! {"parameters": {"txnNumber": 1_i64}});
        }
    }
    let facts = docplane_sessions::rails::facts(&e);
    let settings = settings();
    let own64: HashSet<i64> = own.iter().map(|c| i64::from(*c)).collect();
    let protected = docplane_sessions::rails::protection(&facts, &settings, &own64).is_some();
    (e, protected)
}

/// `type`: mostly `op`, sometimes an idle session or cursor, sometimes absent.
fn draw_type(g: &mut Gen, e: &mut Document) {
    match g.below(20) {
        0 => {
            e.insert("type", "idleSession");
        }
        1 => {
            e.insert("type", "idleCursor");
        }
        2 => {}
        _ => {
            e.insert("type", "op");
        }
    }
}

/// `opid` (`base`): mostly an int32, else a whole or fractional double, an int64, a sharded
/// `shard:id` string, or absent.
fn draw_opid(g: &mut Gen, e: &mut Document, base: i64) {
    match g.below(12) {
        0 => {}
        1 => {
            e.insert("opid", Bson::Double(base as f64));
        }
        2 => {
            e.insert("opid", Bson::Double(base as f64 + 0.5));
        }
        3 => {
            e.insert("opid", Bson::Int64(base));
        }
        4 => {
            e.insert("opid", format!("shard01:{base}"));
        }
        _ => {
            e.insert("opid", Bson::Int32(i32::try_from(base).unwrap()));
        }
    }
}

/// `active`: mostly true, else false, a number, or absent.
fn draw_active(g: &mut Gen, e: &mut Document) {
    match g.below(10) {
        0 => {}
        1 => {
            e.insert("active", false);
        }
        2 => {
            e.insert("active", 1);
        }
        _ => {
            e.insert("active", true);
        }
    }
}

/// `op`: an operation type, a number, or absent.
fn draw_op(g: &mut Gen, e: &mut Document) {
    match g.below(12) {
        0 => {}
        1 => {
            e.insert("op", 3);
        }
        _ => {
            let op =
                g.pick(&["insert", "update", "query", "command", "remove", "getmore", "none", "killcursors"]);
            e.insert("op", op);
        }
    }
}

/// `ns`: namespaces near the rules' (prefixes, sub-collections, empty), an array, or absent.
fn draw_ns(g: &mut Gen, e: &mut Document) {
    match g.below(14) {
        0 => {}
        1 => {
            e.insert("ns", vec![Bson::String("shop.orders".into())]);
        }
        _ => {
            let ns = g.pick(&[
                "shop.orders",
                "shop.items",
                "shop",
                "shopx.orders",
                "shop.orders.sub",
                "admin.$cmd",
                "",
                "sho.p",
                "shop.",
            ]);
            e.insert("ns", ns);
        }
    }
}

/// `client` / `client_s` (mongos' field): well-formed and malformed addresses, a number, or absent.
fn draw_client(g: &mut Gen, e: &mut Document) {
    let clients = ["10.0.0.5:41000", "10.0.0.50:1", "10.0.0.5", "10.0.0.5:", "10.0.0.5:abc", "[::1]:5", ""];
    match g.below(10) {
        0 => {}
        1 => {
            e.insert("client_s", g.pick(&clients));
        }
        2 => {
            e.insert("client", 5);
            e.insert("client_s", g.pick(&clients));
        }
        _ => {
            e.insert("client", g.pick(&clients));
        }
    }
}

/// `connectionId` and `desc` of `connection`; or a server thread's `desc`; or neither.
fn draw_connection(g: &mut Gen, e: &mut Document, connection: i32) {
    if !g.chance(15) {
        e.insert("connectionId", connection);
        e.insert("desc", format!("conn{connection}"));
    } else if g.chance(50) {
        e.insert("desc", "TTLMonitor");
    }
}

/// `planSummary`: plans in several cases and shapes, a number, or absent.
fn draw_plan(g: &mut Gen, e: &mut Document) {
    match g.below(12) {
        0 => {}
        1 => {
            e.insert("planSummary", 7);
        }
        _ => {
            let plan = g.pick(&[
                "COLLSCAN",
                "IXSCAN { a: 1 }",
                "collscan",
                "FETCH + IXSCAN_X { b: 1 }",
                "AGGREGATE",
                "aggregate",
                "SORT_KEY_GENERATOR",
                "",
            ]);
            e.insert("planSummary", plan);
        }
    }
}

/// `command`: an aggregate (its name first or not), a sleep or a find.
fn draw_command(g: &mut Gen, e: &mut Document) {
    let command = match g.below(8) {
        0 => doc! {"aggregate": "orders", "pipeline": []},
        1 => doc! {"x": 1, "aggregate": "orders"},
        2 => doc! {"sleep": 1, "millis": 60_000},
        _ => doc! {"find": "orders", "filter": {"a": 1}},
    };
    e.insert("command", command);
}

/// `microsecs_running` / `secs_running`: consistent, contradictory, of odd types, near the
/// rules' thresholds, or absent.
fn draw_running(g: &mut Gen, e: &mut Document) {
    match g.below(10) {
        0 => {}
        1 => {
            e.insert("microsecs_running", -5_i64);
            e.insert("secs_running", Bson::Int64(g.pick(&[1, 3, 6])));
        }
        2 => {
            e.insert("microsecs_running", 1.5);
        }
        3 => {
            e.insert("microsecs_running", "9000000");
            e.insert("secs_running", Bson::Int32(g.pick(&[2, 4, 7])));
        }
        4 => {
            e.insert("secs_running", Bson::Int64(g.pick(&[0, 2, 3, 5, 9])));
        }
        5 => {
            e.insert("microsecs_running", Bson::Double(g.pick(&[2_000_000.0, 5_000_001.0, 700.0])));
        }
        _ => {
            let us = i64::try_from(g.next() % 10_000_000).unwrap();
            e.insert("microsecs_running", Bson::Int64(g.pick(&[us, 2_000_000, 5_000_000, 5_000_001])));
        }
    }
}

/// `effectiveUsers`: an application user, the cluster's own, the protected one, or none.
fn draw_user(g: &mut Gen, e: &mut Document) {
    let user = match g.below(10) {
        0 => Some(("__system", "local")),
        1 => Some((PROTECTED_USER, "admin")),
        2 | 3 => None,
        _ => Some(("app", "admin")),
    };
    if let Some((user, db)) = user {
        e.insert("effectiveUsers", vec![Bson::Document(doc! {"user": user, "db": db})]);
    }
}

/// The application name, as `appName` or in `clientMetadata`: ordinary, protected, docplane's
/// own, or none.
fn draw_app(g: &mut Gen, e: &mut Document) {
    let app = g.pick(&["shop", "report", PROTECTED_APP, DEFAULT_APP_NAME, "none"]);
    match app {
        "none" => {}
        app if g.chance(20) => {
            e.insert("clientMetadata", doc! {"application": {"name": app}});
        }
        app => {
            e.insert("appName", app);
        }
    }
}

fn settings() -> SessionSettings {
    SessionSettings {
        protected_users: vec![PROTECTED_USER.into()],
        protected_app_names: vec![PROTECTED_APP.into()],
        ..SessionSettings::defaults("i1")
    }
}

/// Entries for one scenario, with the ids the rails protect. Some connections run another
/// replica's tagged current-op read under docplane's name: every operation on them is docplane's.
fn scenario_entries(g: &mut Gen) -> (Vec<Document>, HashSet<String>) {
    let own: HashSet<i32> = [3, 17].into();
    let mut entries = Vec::new();
    let mut protected = HashSet::new();
    for c in &own {
        // Another docplane replica's read on connection `c` (a stale tag: not this process's).
        let tag_field = if *c == 3 { "command" } else { "cursor" };
        let carrier = if tag_field == "command" {
            doc! {"command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "comment": "docplane:00aa"}}
        } else {
            doc! {"command": {"getMore": 5_i64}, "cursor": {"originatingCommand": {"aggregate": 1, "$comment": "docplane:00bb"}}}
        };
        let mut e = doc! {"type": "op", "opid": 10 + c, "active": true, "op": "command", "ns": "admin.$cmd.aggregate",
        "desc": format!("conn{c}"), "connectionId": *c, "client": "10.0.0.5:50000", "appName": DEFAULT_APP_NAME,
        "microsecs_running": 9_000_000_i64};
        e.extend(carrier);
        protected.insert(id_text(&e).unwrap());
        entries.push(e);
    }
    for n in 0..140 {
        let (e, p) = entry(g, n, &own);
        if p && let Some(id) = id_text(&e) {
            protected.insert(id);
        }
        entries.push(e);
    }
    (entries, protected)
}

fn rule(g: &mut Gen, id: usize) -> KillOpRule {
    let mut types: Vec<String> = ["insert", "update", "query", "command", "remove", "getmore"]
        .into_iter()
        .filter(|_| g.chance(50))
        .map(String::from)
        .collect();
    if types.is_empty() {
        types.push("command".into());
    }
    let namespaces = match g.below(5) {
        0 => vec!["shop".to_owned()],
        1 => vec!["shop.orders".to_owned()],
        2 => vec!["sho".to_owned()],
        _ => vec![],
    };
    let client_ips = match g.below(5) {
        0 => vec!["10.0.0.5".to_owned()],
        1 => vec!["10.0.0.50".to_owned(), "10.0.0.5".to_owned()],
        _ => vec![],
    };
    let plan_summary =
        g.pick(&["", "", "", "COLLSCAN", "AGGREGATE", "IXSCAN", "SORT_KEY_GENERATOR"]).to_owned();
    let (max_concurrency, secs_running) = match g.below(5) {
        0 => (0, g.pick(&[2, 5])),
        1 => (g.pick(&[1, 3]), 0),
        2 => (g.pick(&[1, 2]), g.pick(&[2, 5])),
        3 => (0, 2),
        _ => (0, 5),
    };
    KillOpRule {
        id: format!("r{id}"),
        instance_id: "i1".into(),
        operation_types: types,
        namespaces,
        client_ips,
        plan_summary,
        max_concurrency,
        secs_running,
        node_type: "replica".into(),
        status: "ENABLED".into(),
        mode: g.pick(&["kill", "observe"]).to_owned(),
        created_at: 0,
        updated_at: 0,
    }
}

async fn store() -> (Arc<dyn MetaStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().join("meta.db").to_str().unwrap()).await.unwrap();
    store
        .create_instance(&Instance {
            id: "i1".into(),
            project_id: "p1".into(),
            name: "one".into(),
            mode: InstanceMode::Single,
            status: "normal".into(),
            datastore_version: "7.0".into(),
            port: 27017,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    store.put_session_settings("p1", &settings()).await.unwrap();
    (store, dir)
}

fn target() -> NodeTarget {
    NodeTarget { id: "n1".into(), address: "h:27017".into(), credentials: None, kind: NodeKind::Mongod }
}

/// What a pass did, without the record ids (each pass has its own).
fn summary(actions: &[RuleAction]) -> Vec<(String, String, Vec<String>, String)> {
    actions
        .iter()
        .map(|a| (a.rule_id.clone(), a.mode.clone(), a.session_ids.clone(), a.outcome.clone()))
        .collect()
}

async fn pass(
    store: &Arc<dyn MetaStore>,
    version: ServerVersion,
    pushdown: bool,
    entries: &[Document],
    rules: &[KillOpRule],
) -> (Vec<(String, String, Vec<String>, String)>, usize) {
    let node = ScriptedNode::new(version, entries.to_vec());
    let service = SessionService::new(node.clone(), store.clone()).with_rule_pushdown(pushdown);
    let t = target();
    let settings = service.settings("p1", "i1").await.unwrap();
    let at = NodeRef { project_id: "p1", target: &t, settings: &settings };
    let actions = service.enforce(at, rules, "replica-a", &mut ObserveMemory::default()).await.unwrap();
    let first_read = node.returned.lock().unwrap()[0];
    (summary(&actions), first_read)
}

#[tokio::test]
async fn pushdown_kills_what_reading_every_entry_kills() {
    let (store, _dir) = store().await;
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let (mut victims, mut narrower, mut rails_stopped) = (0, 0, 0);
    for _ in 0..80 {
        let (entries, protected) = scenario_entries(&mut g);
        let rules: Vec<KillOpRule> = (0..1 + g.below(3)).map(|i| rule(&mut g, i)).collect();
        let (pushed, pushed_read) = pass(&store, ServerVersion::new(7, 0, 0), true, &entries, &rules).await;
        let (whole, whole_read) = pass(&store, ServerVersion::new(7, 0, 0), false, &entries, &rules).await;
        let (legacy, _) = pass(&store, ServerVersion::new(3, 4, 24), true, &entries, &rules).await;
        assert_eq!(pushed, whole, "{rules:#?}");
        assert_eq!(legacy, whole, "the 3.4 path: {rules:#?}");
        for (_, _, ids, _) in &whole {
            for id in ids {
                assert!(!protected.contains(id), "protected {id} became a victim: {rules:#?}");
            }
            victims += ids.len();
        }
        if pushed_read < whole_read {
            narrower += 1;
        }
        // Guard: protected operations that some rule's criteria match, so only the rails kept
        // them out.
        for e in &entries {
            let Some(r) = SessionRecord::summary(e) else { continue };
            if protected.contains(&r.id) && r.active && r.has_opid {
                rails_stopped += usize::from(rules.iter().any(|k| matches(k, RuleOp::new(&r, e))));
            }
        }
    }
    assert!(victims > 100, "the comparison saw victims: {victims}");
    assert!(narrower > 60, "the pushdown read fewer entries in most scenarios: {narrower}");
    assert!(rails_stopped > 50, "protected operations matched rules: {rails_stopped}");
}

/// The pushed-down read returns only what the pass can need: the operations some rule matches
/// (over the limit, for a rule without cap) and docplane's own connections; pushdown off reads
/// everything. On 3.4 the `currentOp` command carries no rule filter.
#[tokio::test]
async fn the_pushed_down_read_returns_only_candidates() {
    let (store, _dir) = store().await;
    let mut entries: Vec<Document> = (0..200)
        .map(|i| {
            doc! {"type": "op", "opid": i, "active": true, "op": "query", "ns": "shop.items", "desc": format!("conn{i}"),
            "connectionId": i, "client": "10.0.0.9:4000", "microsecs_running": 9_000_000_i64, "command": {"find": "items"}}
        })
        .collect();
    // Three long queries on shop.orders, two short ones; another replica's read.
    for (i, us) in [(300, 9_000_000_i64), (301, 8_000_000), (302, 7_000_000), (303, 1_000), (304, 2_000)] {
        entries.push(doc! {"type": "op", "opid": i, "active": true, "op": "query", "ns": "shop.orders",
        "desc": format!("conn{i}"), "connectionId": i, "client": "10.0.0.9:4000", "microsecs_running": us,
        "command": {"find": "orders"}});
    }
    entries.push(
        doc! {"type": "op", "opid": 400, "active": true, "op": "command", "ns": "admin.$cmd.aggregate",
        "desc": "conn400", "connectionId": 400, "client": "10.0.0.8:1", "appName": DEFAULT_APP_NAME,
        "microsecs_running": 5_i64, "command": {"aggregate": 1, "comment": "docplane:00cc"}},
    );
    let mut over_five = KillOpRule {
        id: "r1".into(),
        instance_id: "i1".into(),
        operation_types: vec!["query".into()],
        namespaces: vec!["shop.orders".into()],
        client_ips: vec![],
        plan_summary: String::new(),
        max_concurrency: 0,
        secs_running: 5,
        node_type: "replica".into(),
        status: "ENABLED".into(),
        mode: "observe".into(),
        created_at: 0,
        updated_at: 0,
    };
    let v7 = ServerVersion::new(7, 0, 0);
    let (actions, read) = pass(&store, v7, true, &entries, std::slice::from_ref(&over_five)).await;
    assert_eq!(actions[0].2, ["300", "301", "302"]);
    assert_eq!(read, 4, "three over the limit and docplane's read");
    let (_, read) = pass(&store, v7, false, &entries, std::slice::from_ref(&over_five)).await;
    assert_eq!(read, entries.len());
    // A cap counts every matching operation: the short ones are read too.
    over_five.max_concurrency = 1;
    let (actions, read) = pass(&store, v7, true, &entries, std::slice::from_ref(&over_five)).await;
    assert_eq!(actions[0].2, ["300", "301", "302", "303"], "over 5 s, then the newest beyond 1");
    assert_eq!(read, 6);
    let (_, read) = pass(&store, ServerVersion::new(3, 4, 24), true, &entries, &[over_five]).await;
    assert_eq!(read, entries.len(), "3.4 reads every entry");
}
