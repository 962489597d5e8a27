//! mongod 7.0 behaviours pymongo's test suite relies on, through the official Rust driver: the
//! `maxTimeAlwaysTimeOut` fail point (and a cursor's leftover `maxTimeMS`), the Stable API's
//! strict mode, `_id` values holding `$`-prefixed fields, the options `listIndexes` lists, and
//! find's `min`/`max` with a hint by index name, `returnKey` and `showRecordId`.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{code, db, fail, start};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, ServerApi, ServerApiVersion};

async fn always_time_out(c: &Client, mode: &str) {
    c.database("admin")
        .run_command(doc! {"configureFailPoint": "maxTimeAlwaysTimeOut", "mode": mode})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_always_time_out_expires_every_deadline() {
    let n = start().await;
    let c = n.root("mtato").await;
    let d = db(&c, "mtato").await;
    let coll = d.collection::<Document>("c");
    coll.insert_many((0..5).map(|i| doc! {"_id": i})).await.unwrap();
    // A find with a deadline opens a cursor before the fail point is on.
    let first = d.run_command(doc! {"find": "c", "batchSize": 1, "maxTimeMS": 60_000}).await.unwrap();
    let id = first.get_document("cursor").unwrap().get_i64("id").unwrap();
    always_time_out(&c, "alwaysOn").await;
    // Every command with maxTimeMS fails at once, even one that reads nothing (mongod's jstest
    // max_time_ms.js: ping); without maxTimeMS they run.
    assert_eq!(fail(&d, doc! {"ping": 1, "maxTimeMS": 10_000}).await, 50);
    assert_eq!(fail(&d, doc! {"count": "missing", "maxTimeMS": 1}).await, 50);
    assert_eq!(fail(&d, doc! {"find": "c", "maxTimeMS": 1000}).await, 50);
    d.run_command(doc! {"count": "missing"}).await.unwrap();
    d.run_command(doc! {"find": "c"}).await.unwrap();
    // The getMore runs under the find's leftover maxTimeMS: it times out too, and the cursor
    // is gone, as mongod destroys a cursor whose getMore was interrupted.
    assert_eq!(fail(&d, doc! {"getMore": id, "collection": "c"}).await, 50);
    always_time_out(&c, "off").await;
    assert_eq!(fail(&d, doc! {"getMore": id, "collection": "c"}).await, 43);
    d.run_command(doc! {"ping": 1, "maxTimeMS": 10_000}).await.unwrap();
    // Modes the node does not count and data it would not read are refused.
    let admin = c.database("admin");
    let other = doc! {"configureFailPoint": "maxTimeAlwaysTimeOut", "mode": {"times": 1}};
    assert_eq!(fail(&admin, other).await, 2);
    let data = doc! {"configureFailPoint": "maxTimeAlwaysTimeOut", "mode": "alwaysOn", "data": {"x": 1}};
    assert_eq!(fail(&admin, data).await, 2);
    d.run_command(doc! {"ping": 1, "maxTimeMS": 10_000}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_keeps_what_its_max_time_ms_left() {
    let n = start().await;
    let c = n.root("leftover").await;
    let d = db(&c, "leftover").await;
    d.collection::<Document>("c").insert_many((0..5).map(|i| doc! {"_id": i})).await.unwrap();
    // A cursor opened without maxTimeMS has no deadline on its getMores; one opened with a
    // generous one still serves them.
    for max in [None, Some(60_000)] {
        let mut find = doc! {"find": "c", "batchSize": 1};
        if let Some(ms) = max {
            find.insert("maxTimeMS", ms);
        }
        let r = d.run_command(find).await.unwrap();
        let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
        let more = d.run_command(doc! {"getMore": id, "collection": "c", "batchSize": 1}).await.unwrap();
        assert_eq!(more.get_document("cursor").unwrap().get_array("nextBatch").unwrap().len(), 1);
    }
}

async fn strict_client(n: &common::TestNode) -> Client {
    let mut o =
        ClientOptions::parse(format!("{}&serverSelectionTimeoutMS=5000", n.root_uri())).await.unwrap();
    o.server_api = Some(ServerApi::builder().version(ServerApiVersion::V1).strict(true).build());
    Client::with_options(o).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_strict_refuses_what_version_1_lacks() {
    let n = start().await;
    let c = strict_client(&n).await;
    let d = c.database("strict");
    let coll = d.collection::<Document>("c");
    // The handshake, authentication and the version 1 commands work.
    coll.insert_one(doc! {"x": 1}).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    let found: Vec<Document> = coll.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(found.len(), 1);
    // distinct is not in version 1.
    let e = coll.distinct("x", doc! {}).await.unwrap_err();
    assert_eq!(code(&e), Some(323));
    assert!(e.to_string().contains("the command distinct is not in API Version 1"), "{e}");
    // Nor are $listLocalSessions or $currentOp, wherever they are in the pipeline.
    let e = c.database("admin").aggregate(vec![doc! {"$listLocalSessions": {}}, doc! {"$limit": 1}]).await;
    assert_eq!(code(&e.unwrap_err()), Some(323));
    let nested = vec![doc! {"$facet": {"a": [{"$indexStats": {}}]}}];
    assert_eq!(code(&coll.aggregate(nested).await.unwrap_err()), Some(323));
    // mongod's test commands: testVersion2 is in version 2 only.
    let e = d.run_command(doc! {"testVersion2": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(323));
    d.run_command(doc! {"testVersions1And2": 1}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_parameters_are_checked_as_mongod_checks_them() {
    let n = start().await;
    let c = n.root("api").await;
    let d = c.database("api");
    assert_eq!(fail(&d, doc! {"ping": 1, "apiStrict": true}).await, 4886600);
    assert_eq!(fail(&d, doc! {"ping": 1, "apiVersion": "2"}).await, 322);
    assert_eq!(fail(&d, doc! {"ping": 1, "apiVersion": 1}).await, 14);
    assert_eq!(fail(&d, doc! {"isMaster": 1, "apiVersion": "1", "apiStrict": true}).await, 323);
    assert_eq!(
        fail(&d, doc! {"testDeprecation": 1, "apiVersion": "1", "apiDeprecationErrors": true}).await,
        324
    );
    d.run_command(doc! {"testDeprecation": 1, "apiVersion": "1", "apiStrict": true}).await.unwrap();
    d.run_command(doc! {"distinct": "c", "key": "x", "apiVersion": "1"}).await.unwrap();
    // listCommands says which commands are in which version.
    let cmds = d.run_command(doc! {"listCommands": 1}).await.unwrap();
    let cmds = cmds.get_document("commands").unwrap();
    let versions = |name: &str| cmds.get_document(name).unwrap().get_array("apiVersions").unwrap().clone();
    assert_eq!(versions("find"), vec!["1".into()]);
    assert!(versions("distinct").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_holding_a_dollar_field_is_not_stored() {
    let n = start().await;
    let c = n.root("dollar-id").await;
    let d = db(&c, "dollarid").await;
    let coll = d.collection::<Document>("c");
    let e = coll.insert_one(doc! {"_id": {"$a": 1}}).await.unwrap_err();
    assert_eq!(code(&e), Some(52));
    assert!(
        e.to_string()
            .contains("_id fields may not contain '$'-prefixed fields: $a is not valid for storage."),
        "{e}"
    );
    // At any depth, through replacements and upserts too; a DBRef is an _id like any other.
    assert_eq!(code(&coll.insert_one(doc! {"_id": {"a": {"$b": 1}}}).await.unwrap_err()), Some(52));
    let upsert = coll.replace_one(doc! {"x": 1}, doc! {"_id": {"$c": 1}}).upsert(true).await.unwrap_err();
    assert_eq!(code(&upsert), Some(52));
    coll.insert_one(doc! {"_id": {"$ref": "c", "$id": 1}}).await.unwrap();
    coll.insert_one(doc! {"_id": {"a": 1}}).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_indexes_lists_background_as_given() {
    let n = start().await;
    let c = n.root("bg").await;
    let d = db(&c, "bg").await;
    let indexes = doc! {"createIndexes": "c", "indexes": [
        {"key": {"a": 1}, "name": "a_1"},
        {"key": {"b": 1}, "name": "b_1", "background": false},
        {"key": {"c": 1}, "name": "c_1", "background": true},
    ]};
    d.run_command(indexes).await.unwrap();
    let r = d.run_command(doc! {"listIndexes": "c"}).await.unwrap();
    let listed = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap().clone();
    let spec = |name: &str| -> Document {
        let i = listed.iter().find(|i| i.as_document().unwrap().get_str("name") == Ok(name)).unwrap();
        i.as_document().unwrap().clone()
    };
    assert!(!spec("a_1").contains_key("background"));
    assert_eq!(spec("b_1").get_bool("background"), Ok(false));
    assert_eq!(spec("c_1").get_bool("background"), Ok(true));
    let bad = doc! {"createIndexes": "c", "indexes": [{"key": {"d": 1}, "name": "d_1", "background": "yes"}]};
    assert_eq!(fail(&d, bad).await, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_take_a_hint_by_index_name() {
    let n = start().await;
    let c = n.root("minmax").await;
    let d = db(&c, "minmax").await;
    let coll = d.collection::<Document>("c");
    coll.insert_many(vec![doc! {"x": 1}, doc! {"x": 2}, doc! {"x": 3}]).await.unwrap();
    d.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "x_1"}]}).await.unwrap();
    let r = d.run_command(doc! {"find": "c", "min": {"x": 2}, "max": {"x": 3}, "hint": "x_1"}).await.unwrap();
    let batch = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].as_document().unwrap().get_i32("x"), Ok(2));
    assert_eq!(fail(&d, doc! {"find": "c", "min": {"x": 2}, "hint": "nope"}).await, 2);
}

fn first_batch(r: &Document) -> Vec<Document> {
    let batch = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    batch.iter().map(|d| d.as_document().unwrap().clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_key_and_show_record_id() {
    let n = start().await;
    let c = n.root("rk").await;
    let d = db(&c, "rk").await;
    let coll = d.collection::<Document>("c");
    coll.insert_many((1..=3).map(|i| doc! {"_id": i, "x": i * 10, "y": "long text"})).await.unwrap();
    d.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "x_1"}]}).await.unwrap();
    // The keys of the plan's index, the projection not applied; {} for a collection scan.
    let r = d
        .run_command(doc! {"find": "c", "filter": {"x": {"$gte": 20}}, "hint": {"x": 1}, "returnKey": true, "projection": {"y": 1}})
        .await
        .unwrap();
    assert_eq!(first_batch(&r), vec![doc! {"x": 20}, doc! {"x": 30}]);
    let r = d.run_command(doc! {"find": "c", "filter": {"y": "long text"}, "returnKey": true}).await.unwrap();
    assert_eq!(first_batch(&r), vec![doc! {}, doc! {}, doc! {}]);
    // A sort on _id reads the _id index (mongod's IXSCAN { _id: 1 }).
    let r = d.run_command(doc! {"find": "c", "sort": {"_id": 1}, "returnKey": true}).await.unwrap();
    assert_eq!(first_batch(&r), vec![doc! {"_id": 1}, doc! {"_id": 2}, doc! {"_id": 3}]);
    // $recordId: the insertion order, beside the projected document.
    let r = d
        .run_command(
            doc! {"find": "c", "showRecordId": true, "projection": {"_id": 0, "x": 1}, "sort": {"_id": -1}},
        )
        .await
        .unwrap();
    let ids: Vec<i64> = first_batch(&r).iter().map(|d| d.get_i64("$recordId").unwrap()).collect();
    assert_eq!(ids, vec![3, 2, 1]);
    assert_eq!(first_batch(&r)[0].get_i32("x"), Ok(30));
    // Both (returnKey wins: no $recordId, as in mongod), with min/max, a skip and a small batch.
    let r = d
        .run_command(doc! {
            "find": "c", "hint": {"x": 1}, "min": {"x": -10}, "max": {"x": 100}, "returnKey": true,
            "showRecordId": true, "skip": 1, "batchSize": 1, "sort": {"_id": 1},
        })
        .await
        .unwrap();
    assert_eq!(first_batch(&r), vec![doc! {"x": 20}]);
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    let more = d.run_command(doc! {"getMore": id, "collection": "c"}).await.unwrap();
    let next = more.get_document("cursor").unwrap().get_array("nextBatch").unwrap();
    assert_eq!(next, &vec![mongodb::bson::Bson::Document(doc! {"x": 30})]);
}

/// A hidden index (`hidden: true`) is maintained and keeps its unique constraint, but the planner
/// never chooses it and a hint cannot name it (mongod 4.4+); the same index unhidden is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_indexes_are_kept_but_never_planned() {
    let n = start().await;
    let c = n.root("hidden").await;
    let d = db(&c, "hidden").await;
    let docs: Vec<Document> = (0..50).map(|i| doc! {"_id": i, "a": i}).collect();
    d.run_command(doc! {"insert": "c", "documents": docs}).await.unwrap();
    let stage = |hidden: bool| {
        let d = d.clone();
        async move {
            d.run_command(doc! {"dropIndexes": "c", "index": "*"}).await.unwrap();
            d.run_command(doc! {"createIndexes": "c", "indexes": [
            {"key": {"a": 1}, "name": "a_1", "unique": true, "hidden": hidden}]})
                .await
                .unwrap();
            let r = d.run_command(doc! {"explain": {"find": "c", "filter": {"a": 7}}}).await.unwrap();
            format!("{}", r.get_document("queryPlanner").unwrap().get_document("winningPlan").unwrap())
        }
    };
    assert!(stage(false).await.contains("IXSCAN"));
    let hidden_plan = stage(true).await;
    assert!(hidden_plan.contains("COLLSCAN") && !hidden_plan.contains("IXSCAN"), "{hidden_plan}");
    // Not by name, not by key pattern.
    for hint in [mongodb::bson::Bson::from("a_1"), mongodb::bson::Bson::from(doc! {"a": 1})] {
        assert_eq!(fail(&d, doc! {"find": "c", "filter": {"a": 7}, "hint": hint}).await, 2);
    }
    // Still maintained: its unique constraint holds, and the query answers correctly without it.
    let r = d.run_command(doc! {"insert": "c", "documents": [{"_id": 100, "a": 7}]}).await.unwrap();
    let errors = r.get_array("writeErrors").unwrap();
    assert_eq!(errors[0].as_document().unwrap().get_i32("code").unwrap(), 11000, "{r}");
    let r = d.run_command(doc! {"count": "c", "query": {"a": 7}}).await.unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 1);
}
