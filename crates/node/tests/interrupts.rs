//! Kills and time limits land promptly, and per-operation resources are bounded (issue 10 items 1
//! and 3), with the official Rust driver. The per-document work here (a `$reduce` over a
//! `$range` of 30,000) takes milliseconds per document, so an interrupt check every 128
//! documents would leave a killed or expired operation running for seconds.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{PROMPT, code, heavy, start};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Client, Collection};

async fn seeded(c: &Client, name: &str, n: i32) -> Collection<Document> {
    let coll = c.database("intr").collection::<Document>(name);
    coll.insert_many((0..n).map(|i| doc! {"_id": i, "n": i})).await.unwrap();
    coll
}

/// The opid of the running op whose command carries `comment`.
async fn opid_of(c: &Client, comment: &str) -> Bson {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .database("admin")
            .run_command(doc! {"currentOp": 1, "$all": true, "command.comment": comment})
            .await
            .unwrap();
        if let Some(Bson::Document(d)) = r.get_array("inprog").unwrap().first() {
            return d.get("opid").unwrap().clone();
        }
        assert!(Instant::now() < deadline, "op {comment} never appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `cmd` on `db` in a task, kills it by its comment once it runs, and returns the error code
/// and the time from the killOp reply to the client seeing the error.
async fn kill_latency(c: &Client, db: &str, cmd: Document, comment: &str) -> (Option<i32>, Duration) {
    let runner = c.clone();
    let db_name = db.to_owned();
    let task = tokio::spawn(async move {
        let r = runner.database(&db_name).run_command(cmd).await;
        (Instant::now(), r)
    });
    let opid = opid_of(c, comment).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
    let killed_at = Instant::now();
    let (done_at, r) = task.await.unwrap();
    let e = r.expect_err("the killed command must fail");
    (code(&e), done_at.saturating_duration_since(killed_at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_land_promptly_inside_expensive_per_document_work() {
    let n = start().await;
    let c = n.root("kills").await;
    seeded(&c, "k", 3000).await;
    let cases = [
        (
            "find-filter",
            doc! {"find": "k", "filter": {"$expr": {"$gt": [heavy(), 0]}}, "comment": "find-filter"},
        ),
        (
            "find-projection",
            doc! {"find": "k", "projection": {"h": heavy()}, "batchSize": 100_000, "comment": "find-projection"},
        ),
        (
            "agg-group",
            doc! {"aggregate": "k", "pipeline": [{"$group": {"_id": null, "s": {"$sum": heavy()}}}], "cursor": {}, "comment": "agg-group"},
        ),
        (
            "agg-sort",
            doc! {"aggregate": "k", "pipeline": [{"$addFields": {"h": heavy()}}, {"$sort": {"h": -1}}], "cursor": {}, "comment": "agg-sort"},
        ),
        ("count", doc! {"count": "k", "query": {"$expr": {"$gt": [heavy(), 0]}}, "comment": "count"}),
    ];
    for (name, cmd) in cases {
        let (code, after) = kill_latency(&c, "intr", cmd, name).await;
        assert_eq!(code, Some(11601), "{name}");
        assert!(after <= PROMPT, "{name}: the client saw 11601 {after:?} after the killOp");
    }
    // A single huge array operator is interrupted too: $range is polled while it is built.
    let (code, after) = kill_latency(
        &c,
        "intr",
        doc! {"aggregate": "k", "pipeline": [{"$project": {"r": {"$size": {"$range": [0, 500_000]}}}}], "cursor": {}, "comment": "range"},
        "range",
    )
    .await;
    assert_eq!(code, Some(11601));
    assert!(after <= PROMPT, "$range: 11601 after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_time_ms_expires_near_its_deadline() {
    let n = start().await;
    let c = n.root("maxtime").await;
    seeded(&c, "t", 3000).await;
    let db = c.database("intr");
    let cases = [
        doc! {"find": "t", "filter": {"$expr": {"$gt": [heavy(), 0]}}, "maxTimeMS": 200},
        doc! {"aggregate": "t", "pipeline": [{"$project": {"h": heavy()}}], "cursor": {}, "maxTimeMS": 200},
        doc! {"aggregate": "t", "pipeline": [{"$group": {"_id": "$n", "h": {"$max": heavy()}}}], "cursor": {}, "maxTimeMS": 200},
        doc! {"distinct": "t", "key": "n", "query": {"$expr": {"$gt": [heavy(), 0]}}, "maxTimeMS": 200},
    ];
    for cmd in cases {
        let t = Instant::now();
        let e = db.run_command(cmd.clone()).await.unwrap_err();
        let took = t.elapsed();
        assert_eq!(code(&e), Some(50), "{cmd}");
        assert!(took <= Duration::from_millis(200) + PROMPT, "{cmd}: expired after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_array_operators_fail_with_mongods_memory_error() {
    let n = start().await;
    let c = n.root("range").await;
    let coll = seeded(&c, "r", 1).await;
    // mongod: 1e7 elements need 160 MB > internalQueryMaxRangeBytes (100 MiB): 146.
    let e = coll.aggregate(vec![doc! {"$project": {"r": {"$range": [0, 10_000_000]}}}]).await.unwrap_err();
    assert_eq!(code(&e), Some(146), "{e}");
    assert!(e.to_string().contains("$range would use too much memory"), "{e}");
    let e = coll
        .aggregate(vec![
            doc! {"$project": {"r": {"$range": [0, 600_000]}}},
            doc! {"$project": {"c": {"$concatArrays": ["$r", "$r"]}}},
        ])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(146), "{e}");
    // Within the limits, a result document over 16 MiB is refused with mongod's 10334.
    let e = coll
        .aggregate(vec![
            doc! {"$addFields": {"s": "x".repeat(9 * 1024 * 1024)}},
            doc! {"$project": {"t": {"$concat": ["$s", "$s"]}}},
        ])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(10334), "{e}");
    // Reduced in the pipeline, a large array is fine.
    let docs: Vec<Document> = coll
        .aggregate(vec![doc! {"$project": {"_id": 0, "n": {"$size": {"$range": [0, 900_000]}}}}])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(docs, vec![doc! {"n": 900_000}]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_sort_and_group_are_held_to_100_mb() {
    let n = start().await;
    let c = n.root("mem").await;
    let coll = seeded(&c, "m", 110).await;
    let mb = "x".repeat(1024 * 1024);
    let grow = doc! {"$addFields": {"s": &mb}};
    for (pipeline, allow) in [
        (vec![grow.clone(), doc! {"$sort": {"n": -1}}], false),
        (vec![grow.clone(), doc! {"$group": {"_id": "$n", "s": {"$push": "$s"}}}], false),
        (vec![grow.clone(), doc! {"$sort": {"n": -1}}], true),
    ] {
        let e = coll.aggregate(pipeline.clone()).allow_disk_use(allow).await.unwrap_err();
        assert_eq!(code(&e), Some(292), "{pipeline:?}: {e}");
        assert_eq!(e.to_string().contains("does not spill to disk"), allow, "{e}");
    }
    // A top-k sort keeps only k documents: within the limit.
    let docs: Vec<Document> = coll
        .aggregate(vec![grow, doc! {"$sort": {"n": -1}}, doc! {"$limit": 3}, doc! {"$project": {"s": 0}}])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(docs.iter().map(|d| d.get_i32("n").unwrap()).collect::<Vec<_>>(), vec![109, 108, 107]);
}

/// Runs `cmd` and returns its cursor id and batch.
async fn cursor_cmd(db: &mongodb::Database, cmd: Document, first: bool) -> (i64, Vec<Document>) {
    let r = db.run_command(cmd).await.unwrap();
    let c = r.get_document("cursor").unwrap();
    let batch = c.get_array(if first { "firstBatch" } else { "nextBatch" }).unwrap();
    (c.get_i64("id").unwrap(), batch.iter().map(|b| b.as_document().unwrap().clone()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn find_streams_its_batches_from_the_last_position() {
    let n = start().await;
    let c = n.root("stream").await;
    seeded(&c, "s", 3000).await;
    let db = c.database("intr");
    // The whole result would take seconds; the first batch needs only its own documents.
    let t = Instant::now();
    let (id, batch) =
        cursor_cmd(&db, doc! {"find": "s", "filter": {"$expr": {"$gt": [heavy(), 0]}}, "batchSize": 3}, true)
            .await;
    assert!(t.elapsed() < Duration::from_secs(2), "first batch took {:?}", t.elapsed());
    assert_eq!(batch.iter().map(|d| d.get_i32("_id").unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_ne!(id, 0);
    db.run_command(doc! {"killCursors": "s", "cursors": [id]}).await.unwrap();

    // No snapshot: a getMore sees the collection as it is (mongod: no isolation across batches).
    let (id, batch) =
        cursor_cmd(&db, doc! {"find": "s", "filter": {"_id": {"$gte": 2800}}, "batchSize": 2}, true).await;
    assert_eq!(batch.len(), 2);
    let coll = db.collection::<Document>("s");
    // One just past the first batch (read ahead with it), one far ahead.
    coll.delete_many(doc! {"_id": {"$in": [2803, 2995]}}).await.unwrap();
    coll.update_one(doc! {"_id": 2804}, doc! {"$set": {"new": true}}).await.unwrap();
    coll.insert_one(doc! {"_id": 5000, "n": 5000}).await.unwrap();
    let mut seen: Vec<i32> = batch.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    let mut id = id;
    while id != 0 {
        let (next, b) =
            cursor_cmd(&db, doc! {"getMore": id, "collection": "s", "batchSize": 50}, false).await;
        if let Some(d) = b.iter().find(|d| d.get_i32("_id").unwrap() == 2804) {
            assert!(d.get_bool("new").unwrap(), "the current version");
        }
        seen.extend(b.iter().map(|d| d.get_i32("_id").unwrap()));
        id = next;
    }
    let want: Vec<i32> = (2800..3000).filter(|i| ![2803, 2995].contains(i)).chain([5000]).collect();
    assert_eq!(seen, want);

    // limit and skip carry over batches.
    let (mut id, batch) =
        cursor_cmd(&db, doc! {"find": "s", "skip": 10, "limit": 7, "batchSize": 3}, true).await;
    let mut seen: Vec<i32> = batch.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    while id != 0 {
        let (next, b) = cursor_cmd(&db, doc! {"getMore": id, "collection": "s", "batchSize": 3}, false).await;
        seen.extend(b.iter().map(|d| d.get_i32("_id").unwrap()));
        id = next;
    }
    assert_eq!(seen, (10..17).collect::<Vec<_>>());

    // The driver follows the cursor to its end.
    let all: Vec<Document> = coll.find(doc! {}).batch_size(7).await.unwrap().try_collect().await.unwrap();
    assert_eq!(all.len(), 2999);
    // Tailable cursors follow capped collections only (mongod's BadValue otherwise).
    let e = db.run_command(doc! {"find": "s", "tailable": true}).await.unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
    let e = db.run_command(doc! {"find": "s", "awaitData": true}).await.unwrap_err();
    assert_eq!(code(&e), Some(9), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_get_more_is_listed_as_getmore_and_killable() {
    let n = start().await;
    let c = n.root("getmore").await;
    seeded(&c, "g", 3000).await;
    let db = c.database("intr");
    let (id, batch) =
        cursor_cmd(&db, doc! {"find": "g", "filter": {"$expr": {"$gt": [heavy(), 0]}}, "batchSize": 1}, true)
            .await;
    assert_eq!(batch.len(), 1);
    let runner = db.clone();
    let task = tokio::spawn(async move {
        let r = runner.run_command(doc! {"getMore": id, "collection": "g", "batchSize": 100_000}).await;
        (Instant::now(), r)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let op = loop {
        let r = c
            .database("admin")
            .run_command(doc! {"currentOp": 1, "$all": true, "op": "getmore", "ns": "intr.g"})
            .await
            .unwrap();
        if let Some(Bson::Document(d)) = r.get_array("inprog").unwrap().first() {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "the getMore never showed up as op: getmore");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(op.get_document("command").unwrap().get_i64("getMore").unwrap(), id);
    assert_eq!(op.get_str("planSummary").unwrap(), "COLLSCAN");
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.database("admin").run_command(doc! {"killOp": 1, "op": op.get("opid").unwrap().clone()}).await.unwrap();
    let killed = Instant::now();
    let (done, r) = task.await.unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    assert!(done.saturating_duration_since(killed) <= PROMPT);
    // mongod destroys a cursor whose getMore was interrupted.
    let e = db.run_command(doc! {"getMore": id, "collection": "g"}).await.unwrap_err();
    assert_eq!(code(&e), Some(43), "{e}");
}
