//! `$currentOp` / `currentOp` fields as mongod reports them: `truncateOps` (the stage shows whole
//! commands unless asked, the command always truncates, in mongod's `{$truncated, comment}` form)
//! and `planSummary` on a running aggregation.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{code, start};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};

async fn stage(c: &Client, options: Document, filter: Document) -> mongodb::error::Result<Vec<Document>> {
    let cursor =
        c.database("admin").aggregate(vec![doc! {"$currentOp": options}, doc! {"$match": filter}]).await?;
    cursor.try_collect().await
}

/// Waits until the `$currentOp` stage shows an op matching `filter`.
async fn wait_for(c: &Client, filter: Document) -> Document {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(d) = stage(c, doc! {"allUsers": true}, filter.clone()).await.unwrap().into_iter().next() {
            return d;
        }
        assert!(Instant::now() < deadline, "no op matched {filter}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncate_ops_shows_large_commands_as_mongod_does() {
    let n = start().await;
    let sleeper = n.root("sleeper").await;
    let watcher = n.root("watcher").await;
    let pad = "p".repeat(3000);
    let sleeping = tokio::spawn(async move {
        sleeper
            .database("admin")
            .run_command(doc! {"sleep": 1, "millis": 30_000_i64, "pad": pad, "comment": "big-one"})
            .await
    });
    let whole = wait_for(&watcher, doc! {"command.comment": "big-one"}).await;
    // The stage's default is truncateOps: false: the whole command.
    assert_eq!(whole.get_document("command").unwrap().get_str("pad").unwrap().len(), 3000);

    // truncateOps: true: mongod's form, the comment kept beside the text.
    let short =
        stage(&watcher, doc! {"allUsers": true, "truncateOps": true}, doc! {"command.comment": "big-one"})
            .await
            .unwrap();
    assert_eq!(short.len(), 1, "the comment still matches: {short:?}");
    let cmd = short[0].get_document("command").unwrap();
    let text = cmd.get_str("$truncated").unwrap();
    assert_eq!(text.len(), 1000, "{text}");
    assert!(text.starts_with("{ sleep: 1, millis: 30000, pad: \"ppp"), "{text}");
    assert!(text.ends_with("..."), "{text}");
    assert_eq!(cmd.keys().collect::<Vec<_>>(), ["$truncated", "comment"]);
    // The filter sees what the reader sees: the whole field is gone in truncated form.
    let none = stage(
        &watcher,
        doc! {"allUsers": true, "truncateOps": true},
        doc! {"command.comment": "big-one", "command.pad": {"$exists": true}},
    )
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // The currentOp command always truncates (mongod runs the stage with truncateOps: true).
    let r = watcher
        .database("admin")
        .run_command(doc! {"currentOp": 1, "command.comment": "big-one"})
        .await
        .unwrap();
    let inprog = r.get_array("inprog").unwrap();
    let Some(Bson::Document(op)) = inprog.first() else { panic!("{r}") };
    assert!(op.get_document("command").unwrap().contains_key("$truncated"), "{op}");

    // A small command is never truncated.
    let small = stage(&watcher, doc! {"allUsers": true, "truncateOps": true}, doc! {"command.currentOp": 1})
        .await
        .unwrap();
    assert!(small.is_empty());
    let own = stage(&watcher, doc! {"truncateOps": true}, doc! {"command.aggregate": 1}).await.unwrap();
    assert_eq!(own[0].get_document("command").unwrap().get_i32("aggregate").unwrap(), 1);

    // A non-boolean truncateOps is refused, as every other option.
    let e = stage(&watcher, doc! {"truncateOps": 1}, doc! {}).await.unwrap_err();
    assert_eq!(code(&e), Some(9), "{e}");

    let opid = whole.get("opid").unwrap().clone();
    watcher.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
    let e = sleeping.await.unwrap().unwrap_err();
    assert_eq!(code(&e), Some(11601));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_aggregation_shows_its_plan() {
    let n = start().await;
    let c = n.root("agg").await;
    let watcher = n.root("watcher").await;
    let coll = c.database("big").collection::<Document>("c");
    let batch: Vec<Document> = (0..20_000).map(|i| doc! {"i": i, "s": format!("value-{i}")}).collect();
    for _ in 0..5 {
        coll.insert_many(batch.clone()).await.unwrap();
    }
    let runner = tokio::spawn(async move {
        let pipeline = vec![
            doc! {"$match": {"s": {"$regex": "^nomatch.*zz$"}}},
            doc! {"$group": {"_id": "$i", "n": {"$sum": 1}}},
        ];
        loop {
            let r = coll.aggregate(pipeline.clone()).comment("agg-scan").await;
            if let Err(e) = r {
                return e;
            }
        }
    });
    // Caught well into its run: past planning, so the plan must be known (mongod plans first).
    let op =
        wait_for(&watcher, doc! {"command.comment": "agg-scan", "microsecs_running": {"$gte": 20_000}}).await;
    assert_eq!(op.get_str("op").unwrap(), "command");
    assert_eq!(op.get_str("planSummary").unwrap_or("<none>"), "COLLSCAN", "{op}");
    // Stop the loop: kill whichever of its aggregations is running until one dies of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !runner.is_finished() {
        assert!(Instant::now() < deadline, "the aggregation loop was never killed");
        let op = wait_for(&watcher, doc! {"command.comment": "agg-scan"}).await;
        let opid = op.get("opid").unwrap().clone();
        watcher.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code(&runner.await.unwrap()), Some(11601));
    n.handle.shutdown().await.unwrap();
}
