//! Nothing is accepted and ignored: what the node implements of `let`, `$setField`, `$out`,
//! `$merge`, `batchSize: 0`, DuplicateKey details and read concern, and mongod's refusal of what
//! it does not implement, through the official Rust driver.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{all, code, db, fail, start};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

async fn seed(d: &Database, coll: &str, docs: Vec<Document>) {
    d.collection::<Document>(coll).insert_many(docs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn let_variables_and_undefined_ones() {
    let n = start().await;
    let c = n.root("let").await;
    let d = db(&c, "lets").await;
    seed(&d, "c", vec![doc! {"_id": 1, "x": 1}, doc! {"_id": 2, "x": 2}, doc! {"_id": 3, "x": 3}]).await;
    let ids = |r: &Document| -> Vec<i32> {
        r.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .map(|d| d.as_document().unwrap().get_i32("_id").unwrap())
            .collect()
    };
    // find: `$$v` in `$expr` is the command's `let`, computed once.
    let r = d
        .run_command(
            doc! {"find": "c", "filter": {"$expr": {"$gte": ["$x", "$$v"]}}, "let": {"v": {"$add": [1, 1]}}},
        )
        .await
        .unwrap();
    assert_eq!(ids(&r), vec![2, 3]);
    // ... and in the projection's computed fields.
    let r = d
        .run_command(doc! {"find": "c", "filter": {"_id": 1}, "projection": {"y": {"$add": ["$x", "$$v"]}}, "let": {"v": 5}})
        .await
        .unwrap();
    let first = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0].clone();
    assert_eq!(first, Bson::Document(doc! {"_id": 1, "y": 6}));
    assert_eq!(fail(&d, doc! {"find": "c", "projection": {"y": "$$nope"}}).await, 17276);
    // An undefined variable fails the command (it matched nothing before), on a collection with
    // documents and on one without.
    for coll in ["c", "empty"] {
        let e = fail(&d, doc! {"find": coll, "filter": {"$expr": {"$eq": ["$x", "$$nope"]}}}).await;
        assert_eq!(e, 17276, "{coll}");
    }
    assert_eq!(fail(&d, doc! {"count": "c", "query": {"$expr": "$$nope"}}).await, 17276);
    assert_eq!(fail(&d, doc! {"find": "c", "let": {"V": 1}}).await, 16867);
    assert_eq!(fail(&d, doc! {"find": "c", "let": {"v": "$x"}}).await, 4890500);
    // aggregate: in `$match` (the leading one the engine answers) and in later stages.
    let r = d
        .run_command(doc! {
            "aggregate": "c",
            "pipeline": [{"$match": {"$expr": {"$lt": ["$x", "$$lim"]}}}, {"$project": {"y": {"$multiply": ["$x", "$$k"]}}}],
            "cursor": {},
            "let": {"lim": 3, "k": 10},
        })
        .await
        .unwrap();
    let batch = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap().clone();
    assert_eq!(
        batch,
        vec![Bson::Document(doc! {"_id": 1, "y": 10}), Bson::Document(doc! {"_id": 2, "y": 20})]
    );
    // update: the filter and a pipeline update see `let`; a statement's `c` adds constants.
    let r = d
        .run_command(doc! {
            "update": "c",
            "updates": [
                {"q": {"$expr": {"$eq": ["$_id", "$$target"]}}, "u": [{"$set": {"x": "$$val"}}]},
                {"q": {"_id": 2}, "u": [{"$set": {"x": "$$z"}}], "c": {"z": 99}},
            ],
            "let": {"target": 1, "val": 42},
        })
        .await
        .unwrap();
    assert_eq!(r.get_i32("nModified").unwrap(), 2);
    // delete and findAndModify.
    let r = d
        .run_command(doc! {"delete": "c", "deletes": [{"q": {"$expr": {"$eq": ["$x", "$$v"]}}, "limit": 0}], "let": {"v": 99}})
        .await
        .unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 1);
    let r = d
        .run_command(doc! {
            "findAndModify": "c",
            "query": {"$expr": {"$eq": ["$x", "$$v"]}},
            "update": [{"$set": {"seen": "$$v"}}],
            "new": true,
            "let": {"v": 42},
        })
        .await
        .unwrap();
    assert_eq!(r.get_document("value").unwrap(), &doc! {"_id": 1, "x": 42, "seen": 42});
    assert_eq!(all(&d, "c").await, vec![doc! {"_id": 1, "x": 42, "seen": 42}, doc! {"_id": 3, "x": 3}]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_field_updates_dotted_and_dollar_names() {
    let n = start().await;
    let c = n.root("setfield").await;
    let d = db(&c, "setfield").await;
    seed(&d, "c", vec![doc! {"_id": 1}]).await;
    // The unified CRUD spec's "dots and dollars" updates.
    d.collection::<Document>("c")
        .update_one(
            doc! {"_id": 1},
            vec![doc! {"$replaceWith": {"$setField": {"field": {"$literal": "$a.b"}, "value": 1, "input": "$$ROOT"}}}],
        )
        .await
        .unwrap();
    d.collection::<Document>("c")
        .update_one(
            doc! {"_id": 1},
            vec![doc! {"$replaceWith": {"$setField": {"field": "c.d", "value": 2, "input": "$$ROOT"}}}],
        )
        .await
        .unwrap();
    let r = d
        .run_command(doc! {"aggregate": "c", "pipeline": [{"$replaceWith": {"$unsetField": {"field": "c.d", "input": "$$ROOT"}}}], "cursor": {}})
        .await
        .unwrap();
    let first = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0].clone();
    assert_eq!(first, Bson::Document(doc! {"_id": 1, "$a.b": 1}));
    let r = d.run_command(doc! {"find": "c"}).await.unwrap();
    let stored = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0].clone();
    assert_eq!(stored, Bson::Document(doc! {"_id": 1, "$a.b": 1, "c.d": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_replaces_the_target_with_its_indexes() {
    let n = start().await;
    let c = n.root("out").await;
    let d = db(&c, "outs").await;
    seed(&d, "src", (1..=4).map(|i| doc! {"_id": i, "k": i % 2}).collect()).await;
    seed(&d, "dst", vec![doc! {"_id": 100, "old": true}]).await;
    d.collection::<Document>("dst")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"k": 1})
                .options(IndexOptions::builder().name("k_1".to_owned()).build())
                .build(),
        )
        .await
        .unwrap();
    let r = d
        .run_command(
            doc! {"aggregate": "src", "pipeline": [{"$match": {"k": 1}}, {"$out": "dst"}], "cursor": {}},
        )
        .await
        .unwrap();
    let cursor = r.get_document("cursor").unwrap();
    assert!(cursor.get_array("firstBatch").unwrap().is_empty());
    assert_eq!(cursor.get_i64("id").unwrap(), 0);
    assert_eq!(all(&d, "dst").await, vec![doc! {"_id": 1, "k": 1}, doc! {"_id": 3, "k": 1}]);
    let names: Vec<String> = d.collection::<Document>("dst").list_index_names().await.unwrap();
    assert!(names.contains(&"k_1".to_owned()), "{names:?}");
    // Through the driver's helper, into another database.
    d.collection::<Document>("src")
        .aggregate(vec![doc! {"$out": {"db": "outs2", "coll": "copy"}}])
        .await
        .unwrap();
    assert_eq!(all(&c.database("outs2"), "copy").await.len(), 4);
    // A failing $out (duplicate _id) leaves the target as it was, and no temporary collection.
    let e = fail(
        &d,
        doc! {"aggregate": "src", "pipeline": [{"$project": {"_id": "$k"}}, {"$out": "dst"}], "cursor": {}},
    )
    .await;
    assert_eq!(e, 11000);
    assert_eq!(all(&d, "dst").await.len(), 2);
    let names = d.list_collection_names().await.unwrap();
    assert!(!names.iter().any(|n| n.starts_with("tmp.agg_out")), "{names:?}");
    assert_eq!(
        fail(&d, doc! {"aggregate": "src", "pipeline": [{"$out": "x"}, {"$match": {}}], "cursor": {}}).await,
        40601
    );
    c.database("outs2").drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_modes() {
    let n = start().await;
    let c = n.root("merge").await;
    let d = db(&c, "merges").await;
    seed(&d, "src", vec![doc! {"_id": 1, "a": 10}, doc! {"_id": 2, "a": 20}]).await;
    seed(&d, "dst", vec![doc! {"_id": 1, "b": 1}, doc! {"_id": 3, "b": 3}]).await;
    let merge = |spec: Document| doc! {"aggregate": "src", "pipeline": [{"$merge": spec}], "cursor": {}};
    // Defaults: whenMatched merge, whenNotMatched insert.
    d.run_command(merge(doc! {"into": "dst"})).await.unwrap();
    assert_eq!(
        all(&d, "dst").await,
        vec![doc! {"_id": 1, "b": 1, "a": 10}, doc! {"_id": 2, "a": 20}, doc! {"_id": 3, "b": 3}]
    );
    d.run_command(doc! {"update": "src", "updates": [{"q": {}, "u": {"$inc": {"a": 1}}, "multi": true}]})
        .await
        .unwrap();
    d.run_command(merge(doc! {"into": "dst", "whenMatched": "replace", "whenNotMatched": "discard"}))
        .await
        .unwrap();
    assert_eq!(
        all(&d, "dst").await,
        vec![doc! {"_id": 1, "a": 11}, doc! {"_id": 2, "a": 21}, doc! {"_id": 3, "b": 3}]
    );
    d.run_command(merge(doc! {
        "into": "dst",
        "let": {"inc": 100},
        "whenMatched": [{"$set": {"a": {"$add": ["$$new.a", "$$inc"]}}}],
    }))
    .await
    .unwrap();
    assert_eq!(all(&d, "dst").await[0], doc! {"_id": 1, "a": 111});
    d.run_command(merge(doc! {"into": "fresh", "whenMatched": "keepExisting"})).await.unwrap();
    assert_eq!(all(&d, "fresh").await.len(), 2);
    // whenNotMatched fail: 13113; whenMatched fail: the DuplicateKey with its details.
    seed(&d, "one", vec![doc! {"_id": 1}]).await;
    assert_eq!(
        fail(&d, merge(doc! {"into": "one", "whenMatched": "merge", "whenNotMatched": "fail"})).await,
        13113
    );
    let e = d.run_command(merge(doc! {"into": "one", "whenMatched": "fail"})).await.unwrap_err();
    assert_eq!(code(&e), Some(11000));
    let mongodb::error::ErrorKind::Command(ce) = &*e.kind else { panic!("{e}") };
    assert_eq!(ce.code, 11000);
    // `on` other than _id needs a unique index on exactly those fields.
    seed(&d, "keyed", vec![doc! {"_id": 7, "a": 11, "tag": "old"}]).await;
    let on_a = merge(doc! {"into": "keyed", "on": "a", "whenMatched": "merge"});
    assert_eq!(fail(&d, on_a.clone()).await, 51183);
    d.collection::<Document>("keyed")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"a": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    let project = doc! {"aggregate": "src", "pipeline": [{"$project": {"_id": 0, "a": 1, "tag": "new"}}, {"$merge": {"into": "keyed", "on": "a"}}], "cursor": {}};
    d.run_command(project).await.unwrap();
    let keyed = all(&d, "keyed").await;
    assert_eq!(keyed.len(), 2);
    assert_eq!(keyed[0], doc! {"_id": 7, "a": 11, "tag": "new"});
    assert_eq!(
        fail(&d, merge(doc! {"into": "dst", "whenMatched": "fail", "whenNotMatched": "discard"})).await,
        51181
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_zero_and_duplicate_key_details() {
    let n = start().await;
    let c = n.root("batch").await;
    let d = db(&c, "batches").await;
    seed(&d, "c", (0..3).map(|i| doc! {"_id": i, "x": i}).collect()).await;
    for cmd in [
        doc! {"find": "c", "batchSize": 0},
        doc! {"aggregate": "c", "pipeline": [], "cursor": {"batchSize": 0}},
        doc! {"find": "empty", "batchSize": 0},
    ] {
        let r = d.run_command(cmd.clone()).await.unwrap();
        let cur = r.get_document("cursor").unwrap();
        assert!(cur.get_array("firstBatch").unwrap().is_empty(), "{cmd}");
        let id = cur.get_i64("id").unwrap();
        assert_ne!(id, 0, "{cmd}");
        let coll = cmd.get_str("find").or_else(|_| cmd.get_str("aggregate")).unwrap();
        let more = d.run_command(doc! {"getMore": id, "collection": coll}).await.unwrap();
        let want = if coll == "c" { 3 } else { 0 };
        assert_eq!(more.get_document("cursor").unwrap().get_array("nextBatch").unwrap().len(), want, "{cmd}");
    }
    // DuplicateKey: keyPattern and keyValue beside the code, in a write error and in a command
    // error alike (mongod 4.2+).
    d.collection::<Document>("c")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"x": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    let r = d.run_command(doc! {"insert": "c", "documents": [{"_id": 9, "x": 1}]}).await.unwrap();
    let we = r.get_array("writeErrors").unwrap()[0].as_document().unwrap().clone();
    assert_eq!(we.get_i32("code").unwrap(), 11000);
    assert_eq!(we.get_document("keyPattern").unwrap(), &doc! {"x": 1});
    assert_eq!(we.get_document("keyValue").unwrap(), &doc! {"x": 1});
    let r = d.run_command(doc! {"insert": "c", "documents": [{"_id": 0}]}).await.unwrap();
    let we = r.get_array("writeErrors").unwrap()[0].as_document().unwrap().clone();
    assert_eq!(we.get_document("keyPattern").unwrap(), &doc! {"_id": 1});
    assert_eq!(we.get_document("keyValue").unwrap(), &doc! {"_id": 0});
    let e = d
        .run_command(doc! {"findAndModify": "c", "query": {"_id": 2}, "update": {"$set": {"x": 1}}})
        .await
        .unwrap_err();
    let mongodb::error::ErrorKind::Command(ce) = &*e.kind else { panic!("{e}") };
    assert_eq!(ce.code, 11000);
}

/// A command error's DuplicateKey details, read from the reply itself (the driver's error type
/// does not carry them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_error_carries_key_pattern_and_value() {
    use docplane_node::conn::{ConnCtx, ConnInfo};
    use docplane_node::state::NodeState;
    let state = NodeState::in_memory(docplane_node::NodeConfig { auth: false, ..Default::default() });
    let mut conn = ConnCtx::new(std::sync::Arc::new(ConnInfo::new(1, "127.0.0.1:9".parse().unwrap())));
    use docplane_node::cmd::dispatch;
    let ins = doc! {"insert": "c", "documents": [{"_id": 1, "x": "a"}, {"_id": 2, "x": "b"}], "$db": "t"};
    dispatch(&state, &mut conn, ins, None).await;
    let ix = doc! {"createIndexes": "c", "indexes": [{"key": {"x": 1}, "name": "x_1", "unique": true}], "$db": "t"};
    dispatch(&state, &mut conn, ix, None).await;
    let fam = doc! {"findAndModify": "c", "query": {"_id": 2}, "update": {"$set": {"x": "a"}}, "$db": "t"};
    let r = dispatch(&state, &mut conn, fam, None).await;
    assert_eq!(r.get_i32("code").unwrap(), 11000, "{r}");
    assert_eq!(r.get_document("keyPattern").unwrap(), &doc! {"x": 1});
    assert_eq!(r.get_document("keyValue").unwrap(), &doc! {"x": "a"});
    let agg = doc! {
        "aggregate": "c",
        "pipeline": [{"$project": {"_id": 0, "x": 1}}, {"$merge": {"into": "c", "on": "x", "whenMatched": "fail"}}],
        "cursor": {},
        "$db": "t",
    };
    let r = dispatch(&state, &mut conn, agg, None).await;
    assert_eq!(r.get_i32("code").unwrap(), 11000, "{r}");
    assert_eq!(r.get_document("keyPattern").unwrap(), &doc! {"x": 1});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_node_does_not_implement_is_refused() {
    let n = start().await;
    let c = n.root("refuse").await;
    let d = db(&c, "refusals").await;
    seed(&d, "c", vec![doc! {"_id": 1, "a": "A"}, doc! {"_id": 2, "a": "a"}]).await;
    // A collation option the node cannot honour exactly would change what matches: refused,
    // never ignored (collations themselves: tests/collation.rs).
    let de = doc! {"locale": "en", "strength": 2, "backwards": true};
    assert_eq!(fail(&d, doc! {"find": "c", "filter": {"a": "a"}, "collation": de.clone()}).await, 115);
    assert_eq!(
        fail(&d, doc! {"aggregate": "c", "pipeline": [], "cursor": {}, "collation": de.clone()}).await,
        115
    );
    assert_eq!(
        fail(&d, doc! {"delete": "c", "deletes": [{"q": {"a": "a"}, "limit": 0, "collation": de.clone()}]})
            .await,
        115
    );
    assert_eq!(fail(&d, doc! {"count": "c", "collation": de.clone()}).await, 115);
    assert_eq!(all(&d, "c").await.len(), 2);
    let r = d
        .run_command(doc! {"find": "c", "filter": {"a": "a"}, "collation": {"locale": "simple"}})
        .await
        .unwrap();
    assert_eq!(r.get_document("cursor").unwrap().get_array("firstBatch").unwrap().len(), 1);
    // min/max need a hint (returnKey and showRecordId: server_behaviours.rs).
    assert_eq!(fail(&d, doc! {"find": "c", "min": {"_id": 2}}).await, 51173);
    // min/max bound the hinted index's keys (the command-monitoring spec's case).
    seed(&d, "m", (1..=5).map(|i| doc! {"_id": i, "x": i * 11}).collect()).await;
    let r = d
        .run_command(doc! {
            "find": "m", "filter": {"_id": {"$gt": 1}}, "sort": {"x": -1}, "projection": {"_id": 0, "x": 1},
            "skip": 2, "hint": {"_id": 1}, "max": {"_id": 6}, "min": {"_id": 0},
        })
        .await
        .unwrap();
    let batch = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap().clone();
    assert_eq!(batch, vec![Bson::Document(doc! {"x": 33}), Bson::Document(doc! {"x": 22})]);
    let r = d
        .run_command(doc! {"find": "m", "hint": {"_id": 1}, "min": {"_id": 2}, "max": {"_id": 4}})
        .await
        .unwrap();
    assert_eq!(r.get_document("cursor").unwrap().get_array("firstBatch").unwrap().len(), 2);
    d.collection::<Document>("m").drop().await.unwrap();
    // Clustered by `_id` is how the engine stores every collection: accepted, listed as mongod.
    d.run_command(doc! {"create": "cl", "clusteredIndex": {"key": {"_id": 1}, "unique": true, "name": "ci"}})
        .await
        .unwrap();
    let ix = d.run_command(doc! {"listIndexes": "cl"}).await.unwrap();
    let first = ix.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0].clone();
    assert!(first.as_document().unwrap().get_bool("clustered").unwrap());
    d.collection::<Document>("cl").drop().await.unwrap();
    // Views; `$jsonSchema` validators (query-operator validators are implemented: validators.rs).
    assert_eq!(fail(&d, doc! {"create": "v", "viewOn": "c", "pipeline": []}).await, 115);
    assert_eq!(
        fail(&d, doc! {"create": "valid", "validator": {"$jsonSchema": {"required": ["a"]}}}).await,
        115
    );
    let names = d.list_collection_names().await.unwrap();
    assert_eq!(names, vec!["c".to_owned()]);
    // Update statements have no `sort` in the 7.0 the node reports; unknown fields fail.
    assert_eq!(
        fail(&d, doc! {"update": "c", "updates": [{"q": {}, "u": {"$set": {"b": 1}}, "sort": {"_id": -1}}]})
            .await,
        40415
    );
    assert_eq!(fail(&d, doc! {"find": "c", "filtre": {"a": 1}}).await, 40415);
    // Read concern a standalone cannot give; w > 1.
    assert_eq!(fail(&d, doc! {"find": "c", "readConcern": {"level": "snapshot"}}).await, 123);
    assert_eq!(fail(&d, doc! {"find": "c", "readConcern": {"level": "linearizable"}}).await, 123);
    d.run_command(doc! {"find": "c", "readConcern": {"level": "majority"}}).await.unwrap();
    assert_eq!(fail(&d, doc! {"insert": "c", "documents": [{"_id": 5}], "writeConcern": {"w": 2}}).await, 2);
    assert_eq!(all(&d, "c").await.len(), 2);
}
