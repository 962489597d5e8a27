//! `configureFailPoint` / `failCommand` through the official Rust driver, as drivers' test suites
//! use it: refused without test commands, modes, error codes and labels, appName filters, closed
//! connections, blocked (and killable) commands, injected write concern errors.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use bson::{Document, doc};
use docplane_node::{Node, NodeConfig};
use mongodb::Client;
use mongodb::error::{ErrorKind, WriteFailure};

async fn fail_point(client: &Client, cmd: Document) -> Document {
    let mut c = doc! {"configureFailPoint": "failCommand"};
    c.extend(cmd);
    client.database("admin").run_command(c).await.unwrap()
}

async fn ping(client: &Client) -> mongodb::error::Result<Document> {
    client.database("test").run_command(doc! {"ping": 1}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_without_test_commands_as_mongod_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let handle = Node::start(NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_path_buf()),
        enable_test_commands: false,
        root_user: Some((common::ROOT.0.into(), common::ROOT.1.into())),
        ..Default::default()
    })
    .await
    .unwrap();
    let uri = format!("{}&serverSelectionTimeoutMS=5000", handle.uri(Some(common::ROOT)));
    let client = Client::with_uri_str(uri).await.unwrap();
    let e = client
        .database("admin")
        .run_command(doc! {"configureFailPoint": "failCommand", "mode": "alwaysOn"})
        .await
        .unwrap_err();
    let ErrorKind::Command(c) = &*e.kind else { panic!("{e}") };
    assert_eq!((c.code, c.code_name.as_str()), (59, "CommandNotFound"));
    assert_eq!(c.message, "no such command: 'configureFailPoint'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_code_labels_modes_and_counts() {
    let n = common::start().await;
    let root = n.root("fp-errors").await;
    let coll = root.database("test").collection::<Document>("c");
    coll.insert_one(doc! {"_id": 1}).await.unwrap();

    // Unknown names, non-admin databases, bad modes: mongod's errors.
    let e = root
        .database("admin")
        .run_command(doc! {"configureFailPoint": "hangBeforeAnything", "mode": "alwaysOn"})
        .await
        .unwrap_err();
    let ErrorKind::Command(c) = &*e.kind else { panic!("{e}") };
    assert_eq!(
        (c.code, c.code_name.as_str(), c.message.as_str()),
        (266, "FailPointSetFailed", "hangBeforeAnything not found")
    );
    let e = root
        .database("test")
        .run_command(doc! {"configureFailPoint": "failCommand", "mode": "alwaysOn"})
        .await
        .unwrap_err();
    assert_eq!(common::code(&e), Some(13));
    let e = root
        .database("admin")
        .run_command(doc! {"configureFailPoint": "failCommand", "mode": "sometimes"})
        .await
        .unwrap_err();
    assert_eq!(common::code(&e), Some(2));

    // alwaysOn: only the listed commands fail, with the code and the labels.
    let r = fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failCommands": ["find"], "errorCode": 2, "errorLabels": ["TestLabel"]}},
    )
    .await;
    assert_eq!(r.get_i32("count").unwrap(), 0);
    let e = coll.find_one(doc! {}).await.unwrap_err();
    let ErrorKind::Command(c) = &*e.kind else { panic!("{e}") };
    assert_eq!((c.code, c.code_name.as_str()), (2, "BadValue"));
    assert_eq!(c.message, "Failing command via 'failCommand' failpoint");
    assert!(e.contains_label("TestLabel"), "{e:?}");
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    // `count` reports the activations so far.
    let r = fail_point(&root, doc! {"mode": "off"}).await;
    assert_eq!(r.get_i32("count").unwrap(), 1);
    assert!(coll.find_one(doc! {}).await.unwrap().is_some());

    // {times: 2}: two failures, then the fail point is off by itself.
    fail_point(&root, doc! {"mode": {"times": 2}, "data": {"failCommands": ["ping"], "errorCode": 91}}).await;
    let e = ping(&root).await.unwrap_err();
    let ErrorKind::Command(c) = &*e.kind else { panic!("{e}") };
    assert_eq!((c.code, c.code_name.as_str()), (91, "ShutdownInProgress"));
    assert!(ping(&root).await.is_err());
    ping(&root).await.unwrap();

    // {skip: 1}: the first matching command passes, the following ones fail.
    fail_point(&root, doc! {"mode": {"skip": 1}, "data": {"failCommands": ["ping"], "errorCode": 2}}).await;
    ping(&root).await.unwrap();
    assert!(ping(&root).await.is_err());
    assert!(ping(&root).await.is_err());
    let r = fail_point(&root, doc! {"mode": "off"}).await;
    assert_eq!(r.get_i32("count").unwrap(), 1 + 2 + 2);
    ping(&root).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_name_limits_the_fail_point_to_its_connections() {
    let n = common::start().await;
    let root = n.root("fp-admin").await;
    let victim = n.root("victim").await;
    fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failCommands": ["ping"], "errorCode": 2, "appName": "victim"}},
    )
    .await;
    assert_eq!(common::code(&ping(&victim).await.unwrap_err()), Some(2));
    ping(&root).await.unwrap();
    fail_point(&root, doc! {"mode": "off"}).await;
    ping(&victim).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_connection_closes_without_a_reply() {
    let n = common::start().await;
    let root = n.root("fp-admin").await;
    let victim = n.root("closer").await;
    fail_point(
        &root,
        doc! {"mode": {"times": 1}, "data": {"failCommands": ["ping"], "closeConnection": true, "appName": "closer"}},
    )
    .await;
    let e = ping(&victim).await.unwrap_err();
    assert!(matches!(&*e.kind, ErrorKind::Io(_)), "expected a network error, got {e:?}");
    // The fail point fired once; the driver reconnects and the next ping works.
    ping(&victim).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_commands_are_listed_killable_and_bounded_by_max_time() {
    let n = common::start().await;
    let root = n.root("fp-admin").await;
    let blocked = n.root("blocker").await;
    fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failCommands": ["ping"], "blockConnection": true, "blockTimeMS": 30_000, "appName": "blocker"}},
    )
    .await;
    // A plain block ends after blockTimeMS and the command then runs normally.
    fail_point(
        &root,
        doc! {"mode": {"times": 1}, "data": {"failCommands": ["ping"], "blockConnection": true, "blockTimeMS": 300, "appName": "blocker"}},
    )
    .await;
    let t = Instant::now();
    ping(&blocked).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());

    // 30 s block: visible in currentOp, killed by killOp with 11601 at once.
    fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failCommands": ["ping"], "blockConnection": true, "blockTimeMS": 30_000, "appName": "blocker"}},
    )
    .await;
    let b = blocked.clone();
    let t = Instant::now();
    let task = tokio::spawn(async move { ping(&b).await });
    let opid = loop {
        let r = root
            .database("admin")
            .run_command(doc! {"currentOp": 1, "appName": "blocker", "command.ping": {"$exists": true}})
            .await
            .unwrap();
        if let Some(op) = r.get_array("inprog").unwrap().first() {
            break op.as_document().unwrap().get("opid").unwrap().clone();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "blocked ping never showed up in currentOp");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    root.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(common::code(&e), Some(11601));
    assert!(t.elapsed() < Duration::from_secs(10), "kill took {:?}", t.elapsed());

    // maxTimeMS bounds the block too.
    let t = Instant::now();
    let e = blocked.database("test").run_command(doc! {"ping": 1, "maxTimeMS": 200}).await.unwrap_err();
    assert_eq!(common::code(&e), Some(50));
    assert!(t.elapsed() < Duration::from_secs(10));

    // blockConnection without blockTimeMS: InvalidOptions, as mongod.
    fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failCommands": ["ping"], "blockConnection": true, "appName": "blocker"}},
    )
    .await;
    assert_eq!(common::code(&ping(&blocked).await.unwrap_err()), Some(72));
    fail_point(&root, doc! {"mode": "off"}).await;
    ping(&blocked).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_concern_error_is_added_after_the_write() {
    let n = common::start().await;
    let root = n.root("fp-admin").await;
    let uri = format!("{}&appName=wce&retryWrites=false&serverSelectionTimeoutMS=5000", n.root_uri());
    let writer = Client::with_uri_str(uri).await.unwrap();
    fail_point(
        &root,
        doc! {"mode": {"times": 1}, "data": {"failCommands": ["insert"], "appName": "wce",
            "writeConcernError": {"code": 91, "codeName": "ShutdownInProgress", "errmsg": "Replication is being shut down"}}},
    )
    .await;
    let coll = writer.database("test").collection::<Document>("wce");
    let e = coll.insert_one(doc! {"_id": 1}).await.unwrap_err();
    let ErrorKind::Write(WriteFailure::WriteConcernError(w)) = &*e.kind else { panic!("{e:?}") };
    assert_eq!(w.code, 91);
    assert_eq!(w.message, "Replication is being shut down");
    // The write itself happened (only its write concern "failed").
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    coll.insert_one(doc! {"_id": 2}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_fail_all_commands_and_extra_error_info() {
    let n = common::start().await;
    let root = n.root("fp-admin").await;
    let victim = n.root("ns-victim").await;
    let db = victim.database("test");
    db.collection::<Document>("c").insert_one(doc! {"_id": 1}).await.unwrap();
    db.collection::<Document>("d").insert_one(doc! {"_id": 1}).await.unwrap();
    // namespace: only commands on test.c.
    fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failCommands": ["find"], "errorCode": 2, "namespace": "test.c", "appName": "ns-victim"}},
    )
    .await;
    assert_eq!(common::code(&db.collection::<Document>("c").find_one(doc! {}).await.unwrap_err()), Some(2));
    assert!(db.collection::<Document>("d").find_one(doc! {}).await.unwrap().is_some());
    // failAllCommands (configureFailPoint itself is never failed), with errorExtraInfo in the reply.
    fail_point(
        &root,
        doc! {"mode": "alwaysOn", "data": {"failAllCommands": true, "errorCode": 2, "appName": "ns-victim",
        "errorExtraInfo": {"extra": "info"}}},
    )
    .await;
    let e = ping(&victim).await.unwrap_err();
    assert_eq!(common::code(&e), Some(2));
    let ErrorKind::Command(_) = &*e.kind else { panic!("{e:?}") };
    let reply = e.server_response().unwrap();
    assert_eq!(reply.get_str("extra").unwrap(), "info");
    assert!(db.collection::<Document>("d").find_one(doc! {}).await.is_err());
    victim
        .database("admin")
        .run_command(doc! {"configureFailPoint": "failCommand", "mode": "off"})
        .await
        .unwrap();
    ping(&victim).await.unwrap();
}
