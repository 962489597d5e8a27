//! Write concern durability through the official Rust driver: a `j: true` (or `w: "majority"`,
//! or `fsync: true`) write is acknowledged only after the journal is fsynced; write concerns a
//! standalone cannot honour are refused with mongod's errors.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use bson::{Document, doc};
use docplane_node::{Node, NodeConfig};
use mongodb::Client;
use mongodb::options::{Acknowledgment, WriteConcern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_true_writes_are_acknowledged_after_their_fsync() {
    let n = common::start().await;
    let root = n.root("durability").await;
    let db = root.database("test");
    let engine = n.handle.engine();

    // Control: a default write is acknowledged before its fsync (the background fsync runs every
    // 100 ms), so the check below can fail.
    let plain = db.collection::<Document>("plain");
    let mut seen_unsynced = false;
    for i in 0..20 {
        plain.insert_one(doc! {"_id": i}).await.unwrap();
        let s = engine.journal_stats();
        seen_unsynced |= s.durable_appends < s.appends;
    }
    assert!(seen_unsynced, "default writes never seen ahead of the fsync: the test cannot tell");

    let j = db.collection_with_options::<Document>(
        "j",
        mongodb::options::CollectionOptions::builder()
            .write_concern(WriteConcern::builder().journal(true).build())
            .build(),
    );
    let before = engine.journal_stats();
    for i in 0..1000 {
        j.insert_one(doc! {"_id": i}).await.unwrap();
        let s = engine.journal_stats();
        assert_eq!(s.durable_appends, s.appends, "insert {i} acknowledged before its fsync: {s:?}");
    }
    let after = engine.journal_stats();
    assert!(after.fsyncs - before.fsyncs >= 1000, "{before:?} -> {after:?}");

    // The legacy getLastError with j: the previous (default) write is on disk at its reply.
    plain.insert_one(doc! {"_id": "gle"}).await.unwrap();
    db.run_command(doc! {"getLastError": 1, "j": true}).await.unwrap();
    let s = engine.journal_stats();
    assert_eq!(s.durable_appends, s.appends, "getLastError j answered before the fsync");

    // Every form that asks for the journal: w majority, fsync, j in update/delete/findAndModify.
    let forms = [doc! {"w": "majority"}, doc! {"fsync": true}, doc! {"w": 1, "j": 1}];
    for (k, wc) in forms.into_iter().enumerate() {
        db.run_command(doc! {"insert": "forms", "documents": [{"_id": k as i32}], "writeConcern": wc})
            .await
            .unwrap();
        let s = engine.journal_stats();
        assert_eq!(s.durable_appends, s.appends, "form {k}");
    }
    for cmd in [
        doc! {"update": "forms", "updates": [{"q": {"_id": 0}, "u": {"$set": {"a": 1}}}], "writeConcern": {"j": true}},
        doc! {"delete": "forms", "deletes": [{"q": {"_id": 1}, "limit": 1}], "writeConcern": {"j": true}},
        doc! {"findAndModify": "forms", "query": {"_id": 2}, "update": {"$set": {"b": 1}}, "writeConcern": {"j": true}},
    ] {
        db.run_command(cmd).await.unwrap();
        let s = engine.journal_stats();
        assert_eq!(s.durable_appends, s.appends);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_concerns_a_standalone_cannot_honour_are_refused() {
    let n = common::start().await;
    let root = n.root("durability").await;
    let db = root.database("test");
    let refused = [
        (doc! {"insert": "c", "documents": [{}], "writeConcern": {"w": 2}}, 2),
        (doc! {"insert": "c", "documents": [{}], "writeConcern": {"w": "dc1"}}, 2),
        (doc! {"insert": "c", "documents": [{}], "writeConcern": {"j": true, "fsync": true}}, 9),
        (doc! {"insert": "c", "documents": [{}], "writeConcern": {"x": 1}}, 40415),
        (doc! {"find": "c", "writeConcern": {"j": true}}, 72),
    ];
    for (cmd, code) in refused {
        let e = db.run_command(cmd.clone()).await.unwrap_err();
        assert_eq!(common::code(&e), Some(code), "{cmd}");
    }
    // Nothing was written by the refused inserts.
    assert_eq!(db.collection::<Document>("c").count_documents(doc! {}).await.unwrap(), 0);
    // The same through the driver's typed options.
    let w2 = db.collection_with_options::<Document>(
        "c",
        mongodb::options::CollectionOptions::builder()
            .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(2)).build())
            .build(),
    );
    assert!(w2.insert_one(doc! {}).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_true_on_a_node_without_journal_is_refused_as_mongod_refuses_it() {
    let handle = Node::start(NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: None,
        auth: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client =
        Client::with_uri_str(format!("{}?serverSelectionTimeoutMS=5000", handle.uri(None))).await.unwrap();
    let e = client
        .database("test")
        .run_command(doc! {"insert": "c", "documents": [{}], "writeConcern": {"j": true}})
        .await
        .unwrap_err();
    let mongodb::error::ErrorKind::Command(c) = &*e.kind else { panic!("{e}") };
    assert_eq!(
        (c.code, c.message.as_str()),
        (2, "cannot use 'j' option when a host does not have journaling enabled")
    );
    // w: 1 and w: "majority" are fine (majority has no journal to wait for here).
    client
        .database("test")
        .run_command(doc! {"insert": "c", "documents": [{}], "writeConcern": {"w": "majority"}})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_every_write_makes_every_write_durable_at_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let handle = Node::start(NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_path_buf()),
        auth: false,
        sync_every_write: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let client =
        Client::with_uri_str(format!("{}?serverSelectionTimeoutMS=5000", handle.uri(None))).await.unwrap();
    let coll = client.database("test").collection::<Document>("c");
    for i in 0..50 {
        coll.insert_one(doc! {"_id": i}).await.unwrap();
        let s = handle.engine().journal_stats();
        assert_eq!(s.durable_appends, s.appends);
    }
}
