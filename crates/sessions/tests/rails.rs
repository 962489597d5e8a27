//! The safety rails on the kill paths, against a scripted node: a transport that serves a fixed
//! set of `$currentOp` entries (with mongod's internal threads and another docplane replica's read,
//! which the embedded node cannot produce), evaluates pushed-down `$match` stages with the query
//! crate's matcher, and records every killOp it is sent.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::{Arc, Mutex};

use docplane_driver::{
    DriverConfig, DriverError, NodeKind, NodeTarget, NodeTransport, ServerInfo, ServerVersion,
};
use docplane_sessions::{
    Actor, KillRecorder, KillScope, NodeRef, Selection, SessionError, SessionFilter, SessionService,
};
use mongodb::bson::{Bson, Document, doc};

struct ScriptedNode {
    config: DriverConfig,
    entries: Mutex<Vec<Document>>,
    killed: Mutex<Vec<Bson>>,
}

#[async_trait::async_trait]
impl NodeTransport for ScriptedNode {
    fn config(&self) -> &DriverConfig {
        &self.config
    }
    async fn version(&self, _: &NodeTarget) -> docplane_driver::Result<ServerVersion> {
        Ok(ServerVersion::new(7, 0, 0))
    }
    async fn server_info(&self, _: &NodeTarget) -> docplane_driver::Result<ServerInfo> {
        Err(DriverError::InvalidRequest("not scripted".into()))
    }
    async fn command(&self, _: &NodeTarget, _: &str, command: Document) -> docplane_driver::Result<Document> {
        let op =
            command.get("op").cloned().ok_or_else(|| DriverError::InvalidRequest("only killOp".into()))?;
        self.entries.lock().unwrap().retain(|e| e.get("opid") != Some(&op));
        self.killed.lock().unwrap().push(op);
        Ok(doc! {"info": "attempting to kill op", "ok": 1})
    }
    async fn cursor_command(
        &self,
        _: &NodeTarget,
        _: &str,
        command: Document,
    ) -> docplane_driver::Result<Vec<Document>> {
        let mut out = self.entries.lock().unwrap().clone();
        for stage in command.get_array("pipeline").unwrap().iter().skip(1) {
            let filter =
                stage.as_document().unwrap().get_document("$match").expect("only $match is scripted");
            let filter = docplane_query::Filter::parse(filter).unwrap();
            out.retain(|e| filter.matches(e));
        }
        Ok(out)
    }
}

fn entries() -> Vec<Document> {
    vec![
        // mongod's own thread: no client, no connectionId.
        doc! {"type": "op", "host": "h:27017", "desc": "TTLMonitor", "active": true, "opid": 11,
        "op": "none", "ns": "", "command": {}, "microsecs_running": 9_000_000_i64},
        // Another docplane replica's current-op read: tagged, under docplane's app name.
        doc! {"type": "op", "desc": "conn5", "connectionId": 5, "client": "10.0.0.9:51000",
        "appName": "docplane-control", "active": true, "opid": 12, "op": "command", "ns": "admin.$cmd.aggregate",
        "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "comment": "docplane:0123"},
        "microsecs_running": 800_i64},
        // A user's operation.
        doc! {"type": "op", "desc": "conn7", "connectionId": 7, "client": "10.0.0.5:40000", "appName": "shop",
        "active": true, "opid": 13, "op": "command", "ns": "admin.$cmd",
        "command": {"sleep": 1, "millis": 30_000_i64}, "microsecs_running": 5_000_000_i64,
        "effectiveUsers": [{"user": "app", "db": "admin"}]},
    ]
}

async fn setup() -> (Arc<ScriptedNode>, SessionService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().join("meta.db").to_str().unwrap()).await.unwrap();
    let node = Arc::new(ScriptedNode {
        config: DriverConfig::default(),
        entries: Mutex::new(entries()),
        killed: Mutex::new(Vec::new()),
    });
    let service = SessionService::new(node.clone(), store);
    (node, service, dir)
}

fn target() -> NodeTarget {
    NodeTarget { id: "n1".into(), address: "h:27017".into(), credentials: None, kind: NodeKind::Mongod }
}

fn recorder() -> KillRecorder {
    KillRecorder::new(
        KillScope { project_id: "p1".into(), instance_id: "i1".into(), node_id: "n1".into() },
        Actor { user_name: "tester".into(), ..Actor::default() },
    )
}

#[tokio::test]
async fn internal_and_docplane_operations_are_refused_by_id_and_skipped_by_selector() {
    let (node, service, _dir) = setup().await;
    let t = target();
    let settings = service.settings("p1", "i1").await.unwrap();
    let at = NodeRef { project_id: "p1", target: &t, settings: &settings };

    let err = service.kill_ids(at, &recorder(), &["11".into()]).await.unwrap_err();
    let SessionError::Protected(list) = err else { panic!("{err:?}") };
    assert_eq!(list.len(), 1);
    assert!(list[0].1.contains("server's own work") && list[0].1.contains("TTLMonitor"), "{list:?}");

    let err = service.kill_ids(at, &recorder(), &["12".into(), "13".into()]).await.unwrap_err();
    let SessionError::Protected(list) = err else { panic!("{err:?}") };
    assert_eq!(list.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["12"], "{list:?}");
    assert!(node.killed.lock().unwrap().is_empty(), "a refused kill sends nothing");

    // The selector matching all three skips the two and kills the user's.
    let selection = Selection {
        filter: SessionFilter { min_cost_time_us: Some(0), ..SessionFilter::default() },
        max: 1,
        dry_run: false,
    };
    let r = service.kill_matching(at, &recorder(), &selection).await.unwrap();
    let outcomes: Vec<(String, String)> = r
        .sessions
        .iter()
        .map(|m| {
            (m.target.id.clone(), serde_json::to_value(&m.outcome).unwrap().as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("13".into(), "killed".into()),
            ("11".into(), "protected".into()),
            ("12".into(), "protected".into())
        ]
    );
    assert_eq!(*node.killed.lock().unwrap(), [Bson::Int32(13)]);
}

/// A rule matching every command (and every other type) running over 2 s.
fn rule_over_two_seconds(mode: &str) -> docplane_store::KillOpRule {
    docplane_store::KillOpRule {
        id: "r1".into(),
        instance_id: "i1".into(),
        operation_types: ["insert", "update", "query", "command", "remove", "getmore"]
            .map(String::from)
            .to_vec(),
        namespaces: vec![],
        client_ips: vec![],
        plan_summary: String::new(),
        max_concurrency: 0,
        secs_running: 2,
        node_type: "replica".into(),
        status: "ENABLED".into(),
        mode: mode.into(),
        created_at: 0,
        updated_at: 0,
    }
}

#[tokio::test]
async fn rules_never_kill_internal_or_docplane_operations() {
    let (node, service, _dir) = setup().await;
    // The server's own thread runs as `op: none`: make it a command too, and long, so only the
    // rails stand between it and the rule.
    {
        let mut entries = node.entries.lock().unwrap();
        entries[0].insert("op", "command");
        entries[1].insert("microsecs_running", 9_000_000_i64);
    }
    let t = target();
    let settings = service.settings("p1", "i1").await.unwrap();
    let at = NodeRef { project_id: "p1", target: &t, settings: &settings };
    let mut memory = docplane_sessions::ObserveMemory::default();
    let actions =
        service.enforce(at, &[rule_over_two_seconds("kill")], "replica-a", &mut memory).await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].session_ids, ["13"]);
    assert_eq!(actions[0].outcome, "killed");
    assert_eq!(*node.killed.lock().unwrap(), [Bson::Int32(13)], "only the user's operation");
    // Nothing left to kill: a second pass does nothing and records nothing.
    let actions =
        service.enforce(at, &[rule_over_two_seconds("kill")], "replica-a", &mut memory).await.unwrap();
    assert!(actions.is_empty(), "{actions:?}");
}

#[tokio::test]
async fn observing_rules_record_once_and_kill_nothing() {
    let (node, service, _dir) = setup().await;
    let t = target();
    let settings = service.settings("p1", "i1").await.unwrap();
    let at = NodeRef { project_id: "p1", target: &t, settings: &settings };
    let mut memory = docplane_sessions::ObserveMemory::default();
    let rules = [rule_over_two_seconds("observe")];
    let first = service.enforce(at, &rules, "replica-a", &mut memory).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].outcome.as_str(), first[0].session_ids.clone()),
        ("observed", vec!["13".to_owned()])
    );
    for _ in 0..3 {
        assert!(service.enforce(at, &rules, "replica-a", &mut memory).await.unwrap().is_empty());
    }
    assert!(node.killed.lock().unwrap().is_empty());
    // Once the operation has ended and another runs under the same opid, it is recorded again.
    let op = node.entries.lock().unwrap().remove(2);
    assert!(service.enforce(at, &rules, "replica-a", &mut memory).await.unwrap().is_empty());
    node.entries.lock().unwrap().push(op);
    assert_eq!(service.enforce(at, &rules, "replica-a", &mut memory).await.unwrap().len(), 1);
}
