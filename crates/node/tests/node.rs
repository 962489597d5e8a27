//! End-to-end tests of the node with the official Rust driver.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ROOT, code, start, start_with};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};

async fn admin_cmd(c: &Client, cmd: Document) -> mongodb::error::Result<Document> {
    c.database("admin").run_command(cmd).await
}

/// Waits until `pred` matches an op in currentOp and returns it.
async fn wait_for_op(c: &Client, filter: Document) -> Document {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut cmd = doc! {"currentOp": 1, "$all": true};
        cmd.extend(filter.clone());
        let r = admin_cmd(c, cmd).await.unwrap();
        if let Some(Bson::Document(d)) = r.get_array("inprog").unwrap().first() {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "op {filter} never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crud_roundtrip() {
    let n = start().await;
    let c = n.root("crud").await;
    let coll = c.database("shop").collection::<Document>("items");
    coll.insert_many(vec![
        doc! {"_id": 1, "name": "a", "qty": 5, "tags": ["x", "y"]},
        doc! {"_id": 2, "name": "b", "qty": 10},
    ])
    .await
    .unwrap();
    coll.insert_one(doc! {"name": "c", "qty": 1}).await.unwrap();
    // duplicate key is a write error 11000
    let e = coll.insert_one(doc! {"_id": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(11000));
    let docs: Vec<Document> = coll
        .find(doc! {"qty": {"$gte": 5}})
        .sort(doc! {"qty": -1})
        .projection(doc! {"name": 1, "_id": 0})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(docs, vec![doc! {"name": "b"}, doc! {"name": "a"}]);
    let r =
        coll.update_one(doc! {"_id": 1}, doc! {"$inc": {"qty": 1}, "$push": {"tags": "z"}}).await.unwrap();
    assert_eq!((r.matched_count, r.modified_count), (1, 1));
    let r = coll.update_many(doc! {}, doc! {"$set": {"seen": true}}).await.unwrap();
    assert_eq!(r.matched_count, 3);
    let r = coll.update_one(doc! {"_id": 9}, doc! {"$set": {"qty": 0}}).upsert(true).await.unwrap();
    assert_eq!(r.upserted_id, Some(Bson::Int32(9)));
    let one = coll.find_one(doc! {"_id": 1}).await.unwrap().unwrap();
    assert_eq!(one.get_i32("qty").unwrap(), 6);
    assert_eq!(one.get_array("tags").unwrap().len(), 3);
    let before =
        coll.find_one_and_update(doc! {"_id": 2}, doc! {"$set": {"qty": 20}}).await.unwrap().unwrap();
    assert_eq!(before.get_i32("qty").unwrap(), 10);
    assert_eq!(coll.count_documents(doc! {"seen": true}).await.unwrap(), 3);
    let d = coll.distinct("name", doc! {}).await.unwrap();
    assert_eq!(d.len(), 3);
    let agg: Vec<Document> = coll
        .aggregate(vec![
            doc! {"$match": {"qty": {"$gt": 0}}},
            doc! {"$group": {"_id": Bson::Null, "total": {"$sum": "$qty"}}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(agg.len(), 1);
    assert_eq!(agg[0].get("total").and_then(Bson::as_i32), Some(27));
    let r = coll.delete_many(doc! {"qty": {"$lt": 6}}).await.unwrap();
    assert_eq!(r.deleted_count, 2);
    let names = c.database("shop").list_collection_names().await.unwrap();
    assert_eq!(names, vec!["items".to_string()]);
    assert!(c.list_database_names().await.unwrap().contains(&"shop".to_string()));
    admin_cmd(&c, doc! {"renameCollection": "shop.items", "to": "shop.items2"}).await.unwrap();
    assert_eq!(c.database("shop").list_collection_names().await.unwrap(), vec!["items2".to_string()]);
    c.database("shop").drop().await.unwrap();
    assert!(!c.list_database_names().await.unwrap().contains(&"shop".to_string()));
    // unknown command
    let e = c.database("x").run_command(doc! {"frobnicate": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(59));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursors_batches_and_kill() {
    let n = start().await;
    let c = n.root("cursors").await;
    let db = c.database("t");
    let coll = db.collection::<Document>("c");
    coll.insert_many((0..250).map(|i| doc! {"i": i}).collect::<Vec<_>>()).await.unwrap();
    let all: Vec<Document> = coll.find(doc! {}).batch_size(7).await.unwrap().try_collect().await.unwrap();
    assert_eq!(all.len(), 250);
    let r = db.run_command(doc! {"find": "c", "batchSize": 10}).await.unwrap();
    let cur = r.get_document("cursor").unwrap();
    assert_eq!(cur.get_array("firstBatch").unwrap().len(), 10);
    assert_eq!(cur.get_str("ns").unwrap(), "t.c");
    let id = cur.get_i64("id").unwrap();
    assert!(id > 0);
    let r = db.run_command(doc! {"getMore": id, "collection": "c", "batchSize": 100}).await.unwrap();
    assert_eq!(r.get_document("cursor").unwrap().get_array("nextBatch").unwrap().len(), 100);
    let r = db.run_command(doc! {"killCursors": "c", "cursors": [id]}).await.unwrap();
    assert_eq!(r.get_array("cursorsKilled").unwrap(), &vec![Bson::Int64(id)]);
    let e = db.run_command(doc! {"getMore": id, "collection": "c"}).await.unwrap_err();
    assert_eq!(code(&e), Some(43));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexes_and_plan_summary() {
    let n = start().await;
    let c = n.root("idx").await;
    let db = c.database("t");
    let coll = db.collection::<Document>("c");
    coll.insert_many((0..100).map(|i| doc! {"a": i, "b": i % 3}).collect::<Vec<_>>()).await.unwrap();
    let explain = |filter: Document| {
        let db = db.clone();
        async move {
            let r = db.run_command(doc! {"explain": {"find": "c", "filter": filter}}).await.unwrap();
            r.get_document("queryPlanner").unwrap().get_document("winningPlan").unwrap().clone()
        }
    };
    assert_eq!(explain(doc! {"a": 5}).await.get_str("stage").unwrap(), "COLLSCAN");
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"a": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .unwrap();
    let names = coll.list_index_names().await.unwrap();
    assert!(names.contains(&"a_1".to_string()) && names.contains(&"_id_".to_string()));
    let plan = explain(doc! {"a": 5}).await;
    assert_eq!(plan.get_document("inputStage").unwrap().get_str("planSummary").unwrap(), "IXSCAN { a: 1 }");
    let e = coll.insert_one(doc! {"a": 5}).await.unwrap_err();
    assert_eq!(code(&e), Some(11000));
    coll.drop_index("a_1").await.unwrap();
    assert_eq!(explain(doc! {"a": 5}).await.get_str("stage").unwrap(), "COLLSCAN");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_success_failure_and_roles() {
    let n = start().await;
    let root = n.root("auth").await;
    // wrong password
    let bad = n.client(ROOT.0, "wrong", "bad").await;
    let e = bad.database("t").run_command(doc! {"ping": 1}).await.unwrap_err();
    assert!(e.to_string().contains("Authentication failed"), "{e}");
    // unauthenticated: ping ok, find refused with 13
    let anon = n.anon().await;
    anon.database("t").run_command(doc! {"ping": 1}).await.unwrap();
    let e = anon.database("t").run_command(doc! {"find": "c"}).await.unwrap_err();
    assert_eq!(code(&e), Some(13));
    // a read-only user with SCRAM-SHA-1
    root.database("t")
        .run_command(
            doc! {"createUser": "reader", "pwd": "pw1", "roles": ["read"], "mechanisms": ["SCRAM-SHA-1"]},
        )
        .await
        .unwrap();
    let uri =
        format!("mongodb://reader:pw1@{}/?authSource=t&authMechanism=SCRAM-SHA-1", n.handle.local_addr());
    let reader = Client::with_uri_str(uri).await.unwrap();
    reader.database("t").collection::<Document>("c").find_one(doc! {}).await.unwrap();
    let e = reader.database("t").collection::<Document>("c").insert_one(doc! {"a": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13));
    assert!(e.to_string().contains("not authorized on t to execute command"), "{e}");
    let e = reader.database("other").collection::<Document>("c").find_one(doc! {}).await.unwrap_err();
    assert_eq!(code(&e), Some(13));
    // grant readWrite, then insert works on a new connection
    root.database("t")
        .run_command(doc! {"grantRolesToUser": "reader", "roles": ["readWrite"]})
        .await
        .unwrap();
    reader.database("t").collection::<Document>("c").insert_one(doc! {"a": 1}).await.unwrap();
    let info = root.database("t").run_command(doc! {"usersInfo": "reader"}).await.unwrap();
    let u = info.get_array("users").unwrap()[0].as_document().unwrap().clone();
    assert_eq!(u.get_array("roles").unwrap().len(), 2);
    assert!(!u.contains_key("credentials"));
    // connectionStatus
    let st = reader.database("t").run_command(doc! {"connectionStatus": 1}).await.unwrap();
    let users = st.get_document("authInfo").unwrap().get_array("authenticatedUsers").unwrap();
    assert_eq!(users[0].as_document().unwrap().get_str("user").unwrap(), "reader");
    root.database("t").run_command(doc! {"dropUser": "reader"}).await.unwrap();
    let e = root.database("t").run_command(doc! {"dropUser": "reader"}).await.unwrap_err();
    assert_eq!(code(&e), Some(11));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn current_op_fields_and_kill_op_sleep() {
    let n = start().await;
    let victim = n.root("victimApp").await;
    let admin = n.root("adminApp").await;
    let v2 = victim.clone();
    let task =
        tokio::spawn(
            async move { v2.database("admin").run_command(doc! {"sleep": 1, "millis": 30_000}).await },
        );
    let op = wait_for_op(&admin, doc! {"command.sleep": {"$exists": true}}).await;
    for f in [
        "host",
        "desc",
        "connectionId",
        "client",
        "clientMetadata",
        "currentOpTime",
        "effectiveUsers",
        "opid",
        "secs_running",
        "microsecs_running",
        "ns",
        "command",
        "numYields",
        "waitingForLock",
    ] {
        assert!(op.contains_key(f), "missing {f} in {op}");
    }
    assert_eq!(op.get_str("type").unwrap(), "op");
    assert_eq!(op.get_str("appName").unwrap(), "victimApp");
    assert_eq!(op.get_str("op").unwrap(), "command");
    assert_eq!(op.get_str("ns").unwrap(), "admin.$cmd");
    assert!(op.get_bool("active").unwrap());
    assert!(op.get_str("desc").unwrap().starts_with("conn"));
    assert!(op.contains_key("lsid"), "driver sends lsid: {op}");
    let users = op.get_array("effectiveUsers").unwrap();
    assert_eq!(users[0].as_document().unwrap(), &doc! {"user": "root", "db": "admin"});
    let opid = op.get_i32("opid").unwrap();
    // $currentOp with idle connections
    let docs: Vec<Document> = admin
        .database("admin")
        .aggregate(vec![
            doc! {"$currentOp": {"allUsers": true, "idleConnections": true}},
            doc! {"$match": {"active": false}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(!docs.is_empty());
    assert!(docs.iter().all(|d| !d.contains_key("secs_running")));
    // killOp
    let r = admin_cmd(&admin, doc! {"killOp": 1, "op": opid}).await.unwrap();
    assert_eq!(r.get_str("info").unwrap(), "attempting to kill op");
    let e = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap_err();
    assert_eq!(code(&e), Some(11601));
    let e = admin_cmd(&admin, doc! {"killOp": 1, "op": 1i64 << 40}).await.unwrap_err();
    assert_eq!(code(&e), Some(26823));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_op_long_collection_scan_and_max_time() {
    let n = start().await;
    let c = n.root("scan").await;
    let coll = c.database("big").collection::<Document>("c");
    let batch: Vec<Document> = (0..20_000).map(|i| doc! {"i": i, "s": format!("value-{i}")}).collect();
    for _ in 0..10 {
        coll.insert_many(batch.clone()).await.unwrap();
    }
    let filter = doc! {"s": {"$regex": "^nomatch.*zz$"}, "t": {"$exists": false}};
    // maxTimeMS on a scan and on sleep
    let scan_slow = async {
        let mut total = Duration::ZERO;
        for _ in 0..3 {
            let t = Instant::now();
            let _ = coll.count_documents(filter.clone()).await.unwrap();
            total += t.elapsed();
        }
        total / 3
    }
    .await;
    let e = c
        .database("admin")
        .run_command(doc! {"sleep": 1, "millis": 10_000, "maxTimeMS": 50})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(50));
    let e = coll.find(filter.clone()).max_time(Duration::from_millis(1)).await.map(|_| ()).unwrap_err();
    assert_eq!(code(&e), Some(50), "scan took {scan_slow:?}");
    // killOp of a running scan: repeat the scan in a loop until it is caught running
    let admin = n.root("killer").await;
    let c2 = c.clone();
    let f2 = filter.clone();
    let task = tokio::spawn(async move {
        loop {
            let r = c2.database("big").collection::<Document>("c").find(f2.clone()).comment("longscan").await;
            if let Err(e) = r {
                return e;
            }
        }
    });
    let op =
        wait_for_op(&admin, doc! {"command.comment": "longscan", "planSummary": {"$exists": true}}).await;
    assert_eq!(op.get_str("op").unwrap(), "query");
    assert_eq!(op.get_str("ns").unwrap(), "big.c");
    assert_eq!(op.get_str("planSummary").unwrap(), "COLLSCAN");
    admin_cmd(&admin, doc! {"killOp": 1, "op": op.get_i32("opid").unwrap()}).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert_eq!(code(&e), Some(11601), "{e}");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_kill_and_privileges() {
    let n = start().await;
    let root = n.root("sess").await;
    root.database("admin")
        .run_command(doc! {"createUser": "plain", "pwd": "pw", "roles": [{"role": "readWrite", "db": "t"}]})
        .await
        .unwrap();
    let plain = n.client("plain", "pw", "plainApp").await;
    let session = plain.start_session().await.unwrap();
    let lsid = session.id().clone();
    drop(session);
    let mut s2 = plain.start_session().await.unwrap();
    let lsid2 = s2.id().clone();
    plain.database("t").collection::<Document>("c").insert_one(doc! {"a": 1}).session(&mut s2).await.unwrap();
    // Both sessions are idle and hold no transaction state: mongod lists neither as an
    // `idleSession`, with `idleSessions: true` (the default) or the command's `$all`.
    let docs: Vec<Document> = root
        .database("admin")
        .aggregate(vec![
            doc! {"$currentOp": {"allUsers": true, "idleSessions": true}},
            doc! {"$match": {"type": "idleSession"}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(docs.is_empty(), "{docs:?}");
    let r = admin_cmd(&root, doc! {"currentOp": 1, "$all": true}).await.unwrap();
    let listed = r.get_array("inprog").unwrap();
    assert!(
        listed.iter().all(|d| {
            let d = d.as_document().unwrap();
            d.get_str("type") != Ok("idleSession")
                && [&lsid, &lsid2].iter().all(|l| {
                    d.get_document("lsid").ok().and_then(|x| x.get("id")) != l.get("id")
                        || d.get_bool("active") == Ok(true)
                })
        }),
        "{listed:?}"
    );
    // a plain user cannot see others' ops nor kill them
    let p2 = plain.clone();
    let task = tokio::spawn(async move {
        let mut s = p2.start_session().await.unwrap();
        let id = s.id().clone();
        let r = p2.database("admin").run_command(doc! {"sleep": 1, "millis": 20_000}).session(&mut s).await;
        (id, r)
    });
    let op = wait_for_op(&root, doc! {"command.sleep": {"$exists": true}, "appName": "plainApp"}).await;
    // without inprog, currentOp needs $ownOps (mongod answers 13 otherwise)
    let e = plain.database("admin").run_command(doc! {"currentOp": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    let r = plain.database("admin").run_command(doc! {"currentOp": 1, "$ownOps": true}).await.unwrap();
    let mine = r.get_array("inprog").unwrap();
    assert!(mine.iter().all(|d| {
        d.as_document().unwrap().get_array("effectiveUsers").unwrap()[0]
            .as_document()
            .unwrap()
            .get_str("user")
            .unwrap()
            == "plain"
    }));
    let e = plain
        .database("admin")
        .aggregate(vec![doc! {"$currentOp": {"allUsers": true}}])
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(code(&e), Some(13));
    let root_op = root.database("admin").run_command(doc! {"sleep": 1, "millis": 1}).await;
    root_op.unwrap();
    // killSessions by root on the plain user's session
    // (a session is its id and its owner's uid: another user's needs the uid)
    let lsid_id = op.get_document("lsid").unwrap().get("id").unwrap().clone();
    let lsid_uid = op.get_document("lsid").unwrap().get("uid").unwrap().clone();
    root.database("admin")
        .run_command(doc! {"killSessions": [{"id": lsid_id, "uid": lsid_uid}]})
        .await
        .unwrap();
    let (_, r) = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    // killAllSessions needs killAnySession
    let e = plain.database("admin").run_command(doc! {"killAllSessions": []}).await.unwrap_err();
    assert_eq!(code(&e), Some(13));
    // killAllSessionsByPattern does not kill the caller itself
    root.database("admin").run_command(doc! {"killAllSessionsByPattern": []}).await.unwrap();
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_persists_data_and_users_and_shutdown_interrupts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let n = start_with(dir, true).await;
    let c = n.root("p").await;
    c.database("keep")
        .collection::<Document>("c")
        .insert_many((0..50).map(|i| doc! {"i": i}).collect::<Vec<_>>())
        .await
        .unwrap();
    c.database("admin")
        .run_command(doc! {"createUser": "u2", "pwd": "pw2", "roles": ["readAnyDatabase"]})
        .await
        .unwrap();
    let c2 = c.clone();
    let task =
        tokio::spawn(
            async move { c2.database("admin").run_command(doc! {"sleep": 1, "millis": 60_000}).await },
        );
    wait_for_op(&c, doc! {"command.sleep": {"$exists": true}}).await;
    let t = Instant::now();
    let common::TestNode { handle, dir } = n;
    handle.shutdown().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let e = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap_err();
    assert!(code(&e) == Some(11600) || e.to_string().contains("11600"), "{e}");
    assert_eq!(dir.path(), path);
    let n = start_with(dir, true).await;
    let u2 = n.client("u2", "pw2", "p2").await;
    let count = u2.database("keep").collection::<Document>("c").count_documents(doc! {}).await.unwrap();
    assert_eq!(count, 50);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshake_admin_commands() {
    let n = start().await;
    let c = n.root("hs").await;
    let admin = c.database("admin");
    let bi = admin.run_command(doc! {"buildInfo": 1}).await.unwrap();
    assert_eq!(bi.get_str("version").unwrap(), "7.0.0");
    assert!(bi.get_document("docplane").unwrap().contains_key("version"));
    let h = admin.run_command(doc! {"hello": 1, "saslSupportedMechs": "admin.root"}).await.unwrap();
    assert!(h.get_bool("isWritablePrimary").unwrap());
    assert_eq!(h.get_array("saslSupportedMechs").unwrap().len(), 2);
    let ss = admin.run_command(doc! {"serverStatus": 1}).await.unwrap();
    for f in [
        "host",
        "version",
        "process",
        "pid",
        "uptime",
        "uptimeMillis",
        "localTime",
        "connections",
        "opcounters",
        "mem",
    ] {
        assert!(ss.contains_key(f), "serverStatus lacks {f}");
    }
    assert!(ss.get_document("connections").unwrap().get_i32("current").unwrap() >= 1);
    let p = admin.run_command(doc! {"getParameter": 1, "featureCompatibilityVersion": 1}).await.unwrap();
    assert_eq!(p.get_document("featureCompatibilityVersion").unwrap().get_str("version").unwrap(), "7.0");
    admin.run_command(doc! {"getCmdLineOpts": 1}).await.unwrap();
    admin.run_command(doc! {"hostInfo": 1}).await.unwrap();
    admin.run_command(doc! {"listCommands": 1}).await.unwrap();
    admin.run_command(doc! {"getLog": "startupWarnings"}).await.unwrap();
    admin.run_command(doc! {"whatsmyuri": 1}).await.unwrap();
    let e = c.database("t").run_command(doc! {"getParameter": 1, "x": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13)); // admin-only
    n.handle.shutdown().await.unwrap();
}

/// A standalone mongod has no transactions or retryable writes: `txnNumber` is refused with 20
/// IllegalOperation (never run as if absent), and the transaction fields are type- and
/// combination-checked as mongod's `initializeOperationSessionInfo` does, before authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_fields_refused_as_on_a_standalone() {
    let n = start().await;
    let root = n.root("txn").await;
    let db = root.database("t");
    let coll = db.collection::<Document>("c");
    let lsid = {
        let s = root.start_session().await.unwrap();
        s.id().clone()
    };
    let run = |cmd: Document| {
        let db = db.clone();
        async move { db.run_command(cmd).await }
    };
    let insert = |extra: Document| {
        let mut cmd = doc! {"insert": "c", "documents": [{"x": 1}]};
        cmd.extend(extra);
        cmd
    };
    let err = |r: mongodb::error::Result<Document>| -> (i32, String) {
        match &*r.unwrap_err().kind {
            mongodb::error::ErrorKind::Command(c) => (c.code, c.message.clone()),
            other => panic!("{other:?}"),
        }
    };
    // A retryable write (txnNumber) and a transaction's first statement. The driver replaces
    // mongod's message for exactly this error (code 20, message starting "Transaction numbers")
    // with its own advice, as the retryable-writes spec requires: seeing that text proves the
    // node sent mongod's.
    let (c, m) = err(run(insert(doc! {"lsid": lsid.clone(), "txnNumber": 1_i64})).await);
    assert_eq!(
        (c, m.as_str()),
        (
            20,
            "This MongoDB deployment does not support retryable writes. Please add retryWrites=false to your connection string."
        )
    );
    let start_txn =
        doc! {"lsid": lsid.clone(), "txnNumber": 2_i64, "autocommit": false, "startTransaction": true};
    assert_eq!(err(run(insert(start_txn.clone())).await).0, 20);
    let mut find = doc! {"find": "c"};
    find.extend(start_txn);
    assert_eq!(err(run(find).await).0, 20);
    // Nothing was written by the refused inserts.
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 0);
    // With the wrong types, or incomplete. (`txnNumber` without `lsid` cannot be sent through
    // the driver, which adds an implicit session: the unit tests of `check_session_info` cover it.)
    let (c, m) = err(run(insert(doc! {"lsid": lsid.clone(), "txnNumber": 1_i32})).await);
    assert_eq!(
        (c, m.as_str()),
        (14, "BSON field 'OperationSessionInfo.txnNumber' is the wrong type 'int', expected type 'long'")
    );
    let (c, m) = err(run(insert(doc! {"lsid": lsid.clone(), "autocommit": false})).await);
    assert_eq!(
        (c, m.as_str()),
        (72, "'autocommit' field requires a transaction number to also be specified")
    );
    let (c, m) = err(run(insert(doc! {"lsid": lsid.clone(), "startTransaction": true})).await);
    assert_eq!(
        (c, m.as_str()),
        (72, "'startTransaction' field requires 'autocommit' field to also be specified")
    );
    assert_eq!(err(run(insert(doc! {"lsid": lsid.clone(), "autocommit": 0})).await).0, 14);
    // Commands anyone may run refuse the fields with their own codes.
    let ping = |extra: Document| {
        let mut cmd = doc! {"ping": 1};
        cmd.extend(extra);
        cmd
    };
    assert_eq!(err(run(ping(doc! {"lsid": lsid.clone(), "autocommit": false})).await).0, 263);
    assert_eq!(err(run(ping(doc! {"lsid": lsid.clone(), "txnNumber": 1_i64})).await).0, 50889);
    // Before authorization, as on mongod: an unauthenticated client gets the same refusal.
    let anon = n.anon().await;
    let e = anon.database("t").run_command(insert(doc! {"lsid": lsid.clone(), "txnNumber": 1_i64})).await;
    assert_eq!(err(e).0, 20);
    // The official driver's own transaction API: it starts the transaction client-side and sends
    // the first statement with `txnNumber`/`autocommit`/`startTransaction`, which the node refuses
    // (it used to run the insert outside any transaction and answer ok).
    let mut s = root.start_session().await.unwrap();
    s.start_transaction().await.unwrap();
    let e = coll.insert_one(doc! {"x": 2}).session(&mut s).await.unwrap_err();
    assert_eq!(code(&e), Some(20), "{e}");
    drop(s);
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 0);
    // Plain session use still works (no transaction fields).
    let mut s = root.start_session().await.unwrap();
    coll.insert_one(doc! {"x": 3}).session(&mut s).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    n.handle.shutdown().await.unwrap();
}

/// No logical session is ever listed as an `idleSession`: none holds transaction state (the node
/// refuses `txnNumber`), and mongod lists idle sessions only when they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sessions_without_transaction_state_are_not_listed() {
    let n = start().await;
    let root = n.root("idle").await;
    let app = n.root("app").await;
    let coll = app.database("t").collection::<Document>("c");
    let mut sessions = Vec::new();
    for i in 0..5 {
        let mut s = app.start_session().await.unwrap();
        coll.insert_one(doc! {"i": i}).session(&mut s).await.unwrap();
        sessions.push(s);
    }
    // A refused transaction leaves no state behind either.
    let lsid = sessions[0].id().clone();
    let _ = app
        .database("t")
        .run_command(doc! {"find": "c", "lsid": lsid, "txnNumber": 1_i64, "autocommit": false, "startTransaction": true})
        .await
        .unwrap_err();
    for stage in [
        doc! {"$currentOp": {"allUsers": true, "idleSessions": true, "idleConnections": true}},
        doc! {"$currentOp": {}},
    ] {
        let docs: Vec<Document> =
            root.database("admin").aggregate(vec![stage.clone()]).await.unwrap().try_collect().await.unwrap();
        assert!(docs.iter().all(|d| d.get_str("type") != Ok("idleSession")), "{stage}: {docs:?}");
        // Still listed: this very aggregate, and (with idleConnections) idle connections.
        assert!(docs.iter().any(|d| d.get_str("type") == Ok("op")), "{docs:?}");
    }
    let r = admin_cmd(&root, doc! {"currentOp": 1, "$all": true, "type": "idleSession"}).await.unwrap();
    assert!(r.get_array("inprog").unwrap().is_empty(), "{r}");
    drop(sessions);
    n.handle.shutdown().await.unwrap();
}
