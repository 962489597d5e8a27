//! Streaming aggregates, capped collections, tailable and awaitData cursors, and hints honoured
//! by every command that takes one (issue 10 items 2 and 6), with the official Rust driver.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{PROMPT, code, heavy, start};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::CursorType;

async fn cursor_cmd(db: &mongodb::Database, cmd: Document, first: bool) -> (i64, Vec<Document>) {
    let r = db.run_command(cmd).await.unwrap();
    let c = r.get_document("cursor").unwrap();
    let batch = c.get_array(if first { "firstBatch" } else { "nextBatch" }).unwrap();
    (c.get_i64("id").unwrap(), batch.iter().map(|b| b.as_document().unwrap().clone()).collect())
}

fn ids(docs: &[Document]) -> Vec<i32> {
    docs.iter().map(|d| d.get_i32("_id").unwrap()).collect()
}

async fn seeded(db: &mongodb::Database, name: &str, n: i32) {
    let coll = db.collection::<Document>(name);
    coll.insert_many((0..n).map(|i| doc! {"_id": i, "n": i, "arr": [i, -i]})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aggregate_streams_its_batches() {
    let n = start().await;
    let c = n.root("agg-stream").await;
    let db = c.database("st");
    seeded(&db, "a", 3000).await;

    let id = first_batch_computes_only_its_documents(&db).await;
    get_more_is_listed_and_killable(&c, &db, id).await;
    max_time_bounds_a_get_more(&db).await;
    a_failing_document_fails_only_its_batch(&db).await;
    batches_carry_skip_limit_and_unwind(&db).await;
    the_driver_follows_the_cursor(&db).await;
}

/// The whole result would take seconds; the first batch computes only its own documents. Answers
/// the open cursor.
async fn first_batch_computes_only_its_documents(db: &mongodb::Database) -> i64 {
    let t = Instant::now();
    let (id, batch) = cursor_cmd(
        db,
        doc! {"aggregate": "a", "pipeline": [{"$set": {"h": heavy()}}], "cursor": {"batchSize": 3}},
        true,
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(2), "first batch took {:?}", t.elapsed());
    assert_eq!(ids(&batch), vec![0, 1, 2]);
    assert_ne!(id, 0);
    id
}

/// getMore on cursor `id` does the work: listed as op "getmore", and killable (which also ends
/// the cursor: 43).
async fn get_more_is_listed_and_killable(c: &mongodb::Client, db: &mongodb::Database, id: i64) {
    let runner = db.clone();
    let task = tokio::spawn(async move {
        let r = runner.run_command(doc! {"getMore": id, "collection": "a", "batchSize": 100_000}).await;
        (Instant::now(), r)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let op = loop {
        let r = c
            .database("admin")
            .run_command(doc! {"currentOp": 1, "$all": true, "op": "getmore", "ns": "st.a"})
            .await
            .unwrap();
        if let Some(Bson::Document(d)) = r.get_array("inprog").unwrap().first() {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "the getMore never showed up as op: getmore");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(op.get_document("command").unwrap().get_i64("getMore").unwrap(), id);
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.database("admin").run_command(doc! {"killOp": 1, "op": op.get("opid").unwrap().clone()}).await.unwrap();
    let killed = Instant::now();
    let (done, r) = task.await.unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    assert!(done.saturating_duration_since(killed) <= PROMPT);
    let e = db.run_command(doc! {"getMore": id, "collection": "a"}).await.unwrap_err();
    assert_eq!(code(&e), Some(43), "{e}");
}

/// maxTimeMS bounds a getMore's work.
async fn max_time_bounds_a_get_more(db: &mongodb::Database) {
    let (id, _) = cursor_cmd(
        db,
        doc! {"aggregate": "a", "pipeline": [{"$set": {"h": heavy()}}], "cursor": {"batchSize": 1}},
        true,
    )
    .await;
    let t = Instant::now();
    let e = db
        .run_command(doc! {"getMore": id, "collection": "a", "batchSize": 100_000, "maxTimeMS": 100})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(50), "{e}");
    assert!(t.elapsed() < Duration::from_millis(100) + PROMPT, "{:?}", t.elapsed());
}

/// A document that fails the pipeline is reached only by the batch that needs it.
async fn a_failing_document_fails_only_its_batch(db: &mongodb::Database) {
    let failing = doc! {"aggregate": "a", "pipeline": [
        {"$project": {"q": {"$divide": [1, {"$subtract": ["$n", 500]}]}}},
    ], "cursor": {}};
    let (id, batch) = cursor_cmd(db, failing, true).await;
    assert_eq!(batch.len(), 101);
    let e = db.run_command(doc! {"getMore": id, "collection": "a"}).await.unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
}

/// Batches carry $skip, $limit and $unwind across getMores; the result is the whole run's,
/// and matches what a blocking pipeline computes.
async fn batches_carry_skip_limit_and_unwind(db: &mongodb::Database) {
    let stages = vec![
        doc! {"$match": {"n": {"$gte": 100}}},
        doc! {"$unwind": {"path": "$arr", "includeArrayIndex": "i"}},
        doc! {"$skip": 7},
        doc! {"$project": {"arr": 1, "i": 1}},
        doc! {"$limit": 45},
    ];
    let (mut id, batch) =
        cursor_cmd(db, doc! {"aggregate": "a", "pipeline": stages.clone(), "cursor": {"batchSize": 4}}, true)
            .await;
    let mut streamed = batch;
    while id != 0 {
        let (next, b) = cursor_cmd(db, doc! {"getMore": id, "collection": "a", "batchSize": 4}, false).await;
        streamed.extend(b);
        id = next;
    }
    let mut blocking_stages = stages.clone();
    blocking_stages.push(doc! {"$sort": {"_id": 1, "i": 1}});
    let (id, whole) = cursor_cmd(
        db,
        doc! {"aggregate": "a", "pipeline": blocking_stages, "cursor": {"batchSize": 1000}},
        true,
    )
    .await;
    assert_eq!(id, 0);
    assert_eq!(streamed.len(), 45);
    assert_eq!(streamed, whole);
    let first = &streamed[0];
    assert_eq!((first.get_i32("_id").unwrap(), first.get_i64("i").unwrap()), (103, 1));
}

/// The driver follows the cursor; batchSize 0 opens it without computing anything.
async fn the_driver_follows_the_cursor(db: &mongodb::Database) {
    let all: Vec<Document> = db
        .collection::<Document>("a")
        .aggregate(vec![doc! {"$match": {"n": {"$lt": 250}}}, doc! {"$project": {"n": 1}}])
        .batch_size(7)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    let (id, batch) = cursor_cmd(
        db,
        doc! {"aggregate": "a", "pipeline": [{"$set": {"h": heavy()}}], "cursor": {"batchSize": 0}},
        true,
    )
    .await;
    assert!(batch.is_empty() && id != 0);
    db.run_command(doc! {"killCursors": "a", "cursors": [id]}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capped_collections_keep_their_limits_and_insertion_order() {
    let n = start().await;
    let c = n.root("capped").await;
    let db = c.database("cap");
    let e = db.run_command(doc! {"create": "nosize", "capped": true}).await.unwrap_err();
    assert_eq!(code(&e), Some(72), "{e}");
    db.run_command(doc! {"create": "m", "capped": true, "size": 1000, "max": 5}).await.unwrap();
    let info = db.run_command(doc! {"listCollections": 1, "filter": {"name": "m"}}).await.unwrap();
    let first = info.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0].clone();
    let opts = first.as_document().unwrap().get_document("options").unwrap().clone();
    assert_eq!(opts, doc! {"capped": true, "size": 1024, "max": 5});

    // max: the oldest documents go first; natural order is insertion order, not _id order.
    let m = db.collection::<Document>("m");
    for i in (0..8).rev() {
        m.insert_one(doc! {"_id": i}).await.unwrap();
    }
    let got: Vec<Document> = m.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(ids(&got), vec![4, 3, 2, 1, 0]);
    let back: Vec<Document> =
        m.find(doc! {}).sort(doc! {"$natural": -1}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(ids(&back), vec![0, 1, 2, 3, 4]);
    let by_id: Vec<Document> =
        m.find(doc! {}).sort(doc! {"_id": 1}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(ids(&by_id), vec![0, 1, 2, 3, 4]);
    let stats = db.run_command(doc! {"collStats": "m"}).await.unwrap();
    assert!(stats.get_bool("capped").unwrap());
    assert_eq!(stats.get_i64("maxSize").unwrap(), 1024);
    assert_eq!(stats.get_i64("max").unwrap(), 5);

    // size: documents of 300 bytes in 1024 bytes keep three; a larger document is refused.
    db.run_command(doc! {"create": "s", "capped": true, "size": 1024}).await.unwrap();
    let s = db.collection::<Document>("s");
    for i in 0..6 {
        s.insert_one(doc! {"_id": i, "pad": "x".repeat(280)}).await.unwrap();
    }
    let got: Vec<Document> = s.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(ids(&got), vec![3, 4, 5]);
    let e = s.insert_one(doc! {"_id": 99, "pad": "x".repeat(2000)}).await.unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
    assert_eq!(s.count_documents(doc! {}).await.unwrap(), 3);

    // mongod 7.0: updates may change a document's size, deletes are allowed; an update keeps
    // the document's place.
    s.update_one(doc! {"_id": 3}, doc! {"$set": {"pad": "y"}}).await.unwrap();
    s.delete_one(doc! {"_id": 4}).await.unwrap();
    s.insert_one(doc! {"_id": 6}).await.unwrap();
    let got: Vec<Document> = s.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(ids(&got), vec![3, 5, 6]);

    // A cursor whose position rolled off the collection dies (jstests/core/capped_max1.js).
    db.run_command(doc! {"create": "roll", "capped": true, "size": 65536, "max": 10}).await.unwrap();
    let r = db.collection::<Document>("roll");
    r.insert_many((0..20).map(|i| doc! {"x": i})).await.unwrap();
    let (id, batch) = cursor_cmd(&db, doc! {"find": "roll", "batchSize": 4}, true).await;
    assert_eq!(batch.len(), 4);
    r.insert_many((0..20).map(|i| doc! {"x": 100 + i})).await.unwrap();
    let e = db.run_command(doc! {"getMore": id, "collection": "roll"}).await.unwrap_err();
    assert_eq!(code(&e), Some(136), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tailable_cursors_follow_a_capped_collection() {
    let n = start().await;
    let c = n.root("tail").await;
    let db = c.database("tail");
    db.collection::<Document>("plain").insert_one(doc! {"_id": 1}).await.unwrap();
    let e = db.run_command(doc! {"find": "plain", "tailable": true}).await.unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
    // jstests/core/tailable_cursor_invalidation.js: no cursor on a missing collection.
    let (id, _) = cursor_cmd(&db, doc! {"find": "missing", "tailable": true, "awaitData": true}, true).await;
    assert_eq!(id, 0);
    db.run_command(doc! {"create": "t", "capped": true, "size": 1 << 20}).await.unwrap();
    let (id, _) = cursor_cmd(&db, doc! {"find": "t", "tailable": true}, true).await;
    assert_eq!(id, 0, "mongod opens no tailable cursor on an empty collection");
    for (bad, want) in [
        (doc! {"find": "t", "tailable": true, "sort": {"_id": 1}}, 2),
        (doc! {"find": "t", "tailable": true, "singleBatch": true}, 2),
        (doc! {"find": "t", "tailable": true, "hint": {"_id": 1}}, 2),
    ] {
        let e = db.run_command(bad.clone()).await.unwrap_err();
        assert_eq!(code(&e), Some(want), "{bad}: {e}");
    }

    let t = db.collection::<Document>("t");
    t.insert_many((0..3).map(|i| doc! {"_id": i, "k": i % 2})).await.unwrap();
    // A tailable cursor stays open at the end of the data; getMore returns what came since.
    let (id, batch) = cursor_cmd(&db, doc! {"find": "t", "tailable": true, "filter": {"k": 0}}, true).await;
    assert_eq!(ids(&batch), vec![0, 2]);
    assert_ne!(id, 0);
    let (next, b) = cursor_cmd(&db, doc! {"getMore": id, "collection": "t"}, false).await;
    assert_eq!((next, b.len()), (id, 0));
    t.insert_many([doc! {"_id": 10, "k": 0}, doc! {"_id": 11, "k": 1}, doc! {"_id": 12, "k": 0}])
        .await
        .unwrap();
    let (next, b) = cursor_cmd(&db, doc! {"getMore": id, "collection": "t"}, false).await;
    assert_eq!((next, ids(&b)), (id, vec![10, 12]));
    // Listed as a tailable idle cursor.
    let r = c
        .database("admin")
        .run_command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"idleCursors": true}}, {"$match": {"type": "idleCursor", "cursor.cursorId": id}}], "cursor": {}})
        .await
        .unwrap();
    let listed = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    let cur = listed[0].as_document().unwrap().get_document("cursor").unwrap();
    assert!(cur.get_bool("tailable").unwrap() && !cur.get_bool("awaitData").unwrap());
    // Dropping the collection kills it.
    t.drop().await.unwrap();
    let e = db.run_command(doc! {"getMore": id, "collection": "t"}).await.unwrap_err();
    assert_eq!(code(&e), Some(175), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn await_data_get_more_waits_for_inserts_and_can_be_killed() {
    let n = start().await;
    let c = n.root("await").await;
    let db = c.database("aw");
    db.run_command(doc! {"create": "t", "capped": true, "size": 1 << 20}).await.unwrap();
    let t = db.collection::<Document>("t");
    t.insert_one(doc! {"_id": 0}).await.unwrap();
    let open = doc! {"find": "t", "tailable": true, "awaitData": true};
    let (id, batch) = cursor_cmd(&db, open.clone(), true).await;
    assert_eq!((ids(&batch), id != 0), (vec![0], true));

    // No data: the getMore waits its maxTimeMS, then answers an empty batch (not an error).
    let start_wait = Instant::now();
    let (next, b) = cursor_cmd(&db, doc! {"getMore": id, "collection": "t", "maxTimeMS": 300}, false).await;
    let waited = start_wait.elapsed();
    assert_eq!((next, b.len()), (id, 0));
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(300) + PROMPT,
        "{waited:?}"
    );
    // Without maxTimeMS it waits mongod's default second.
    let start_wait = Instant::now();
    let (_, b) = cursor_cmd(&db, doc! {"getMore": id, "collection": "t"}, false).await;
    assert!(b.is_empty() && start_wait.elapsed() >= Duration::from_millis(990), "{:?}", start_wait.elapsed());

    // An insert wakes a waiting getMore at once.
    let runner = db.clone();
    let waiter = tokio::spawn(async move {
        let r = runner.run_command(doc! {"getMore": id, "collection": "t", "maxTimeMS": 20_000}).await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.insert_one(doc! {"_id": 1}).await.unwrap();
    let inserted = Instant::now();
    let (done, r) = waiter.await.unwrap();
    let r = r.unwrap();
    let b = r.get_document("cursor").unwrap().get_array("nextBatch").unwrap();
    assert_eq!(b.len(), 1);
    assert!(done.saturating_duration_since(inserted) <= PROMPT);

    // killCursors ends a waiting getMore (which destroys the cursor)...
    let runner = db.clone();
    let waiter = tokio::spawn(async move {
        let r = runner.run_command(doc! {"getMore": id, "collection": "t", "maxTimeMS": 20_000}).await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let k = db.run_command(doc! {"killCursors": "t", "cursors": [id]}).await.unwrap();
    assert_eq!(k.get_array("cursorsKilled").unwrap(), &vec![Bson::Int64(id)]);
    let killed = Instant::now();
    let (done, r) = waiter.await.unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    assert!(done.saturating_duration_since(killed) <= PROMPT);
    let e = db.run_command(doc! {"getMore": id, "collection": "t"}).await.unwrap_err();
    assert_eq!(code(&e), Some(43), "{e}");

    // ...and so does killOp.
    let (id, _) = cursor_cmd(&db, open, true).await;
    let runner = db.clone();
    let waiter = tokio::spawn(async move {
        let r = runner.run_command(doc! {"getMore": id, "collection": "t", "maxTimeMS": 20_000}).await;
        (Instant::now(), r)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let opid = loop {
        let r = c
            .database("admin")
            .run_command(doc! {"currentOp": 1, "$all": true, "op": "getmore", "ns": "aw.t"})
            .await
            .unwrap();
        if let Some(Bson::Document(d)) = r.get_array("inprog").unwrap().first() {
            break d.get("opid").unwrap().clone();
        }
        assert!(Instant::now() < deadline, "the getMore never showed up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    c.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
    let killed = Instant::now();
    let (done, r) = waiter.await.unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    assert!(done.saturating_duration_since(killed) <= PROMPT);

    // The driver's TailableAwait cursor sees documents inserted while it waits.
    let mut cursor = t
        .find(doc! {})
        .cursor_type(CursorType::TailableAwait)
        .max_await_time(Duration::from_millis(200))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(cursor.try_next().await.unwrap().unwrap().get_i32("_id").unwrap());
    }
    let writer = t.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.insert_one(doc! {"_id": 2}).await.unwrap();
    });
    seen.push(cursor.try_next().await.unwrap().unwrap().get_i32("_id").unwrap());
    assert_eq!(seen, vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hints_choose_the_plan_and_must_name_an_index() {
    let n = start().await;
    let c = n.root("hints").await;
    let db = c.database("h");
    seeded(&db, "c", 50).await;
    db.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"n": 1}, "name": "n_1"}]}).await.unwrap();
    let bad = Bson::String("nope".into());
    let cmds = [
        doc! {"count": "c", "query": {}, "hint": bad.clone()},
        doc! {"distinct": "c", "key": "n", "hint": bad.clone()},
        doc! {"aggregate": "c", "pipeline": [], "hint": bad.clone(), "cursor": {}},
        doc! {"aggregate": "c", "pipeline": [{"$group": {"_id": null}}], "hint": bad.clone(), "cursor": {}},
        doc! {"findAndModify": "c", "query": {}, "update": {"$set": {"x": 1}}, "hint": bad.clone()},
    ];
    for cmd in cmds {
        let e = db.run_command(cmd.clone()).await.unwrap_err();
        assert_eq!(code(&e), Some(2), "{cmd}: {e}");
    }
    for cmd in [
        doc! {"delete": "c", "deletes": [{"q": {"n": 1}, "limit": 0, "hint": bad.clone()}]},
        doc! {"update": "c", "updates": [{"q": {"n": 1}, "u": {"$set": {"x": 1}}, "hint": bad.clone()}]},
    ] {
        let r = db.run_command(cmd.clone()).await.unwrap();
        let we = r.get_array("writeErrors").unwrap()[0].as_document().unwrap().clone();
        assert_eq!(we.get_i32("code").unwrap(), 2, "{cmd}: {r}");
        assert_eq!(r.get_i32("n").unwrap(), 0);
    }
    // explain plans as the command would, so it fails as the command would.
    let e =
        db.run_command(doc! {"explain": {"find": "c", "filter": {}, "hint": {"zz": 1}}}).await.unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
    let e = db.run_command(doc! {"count": "c", "hint": 5}).await.unwrap_err();
    assert_eq!(code(&e), Some(14), "{e}");
    // A hint naming an index is honoured: explain shows the plan, the result is the same.
    let x = db
        .run_command(doc! {"explain": {"count": "c", "query": {"n": {"$gte": 0}}, "hint": {"_id": 1}}})
        .await
        .unwrap();
    let plan = x.get_document("queryPlanner").unwrap().get_document("winningPlan").unwrap();
    assert_eq!(plan.get_document("inputStage").unwrap().get_str("planSummary").unwrap(), "IXSCAN { _id: 1 }");
    let r = db.run_command(doc! {"count": "c", "query": {"n": {"$gte": 10}}, "hint": "n_1"}).await.unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 40);
    let r = db
        .run_command(doc! {"distinct": "c", "key": "n", "query": {"n": {"$lt": 3}}, "hint": "n_1"})
        .await
        .unwrap();
    assert_eq!(r.get_array("values").unwrap().len(), 3);
    let r = db
        .run_command(
            doc! {"delete": "c", "deletes": [{"q": {"n": {"$lt": 5}}, "limit": 0, "hint": {"n": 1}}]},
        )
        .await
        .unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 5);
    let (_, b) = cursor_cmd(
        &db,
        doc! {"aggregate": "c", "pipeline": [{"$match": {"n": {"$lt": 8}}}], "hint": "n_1", "cursor": {}},
        true,
    )
    .await;
    assert_eq!(ids(&b), vec![5, 6, 7]);
}
