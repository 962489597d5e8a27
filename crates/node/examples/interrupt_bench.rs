//! Interrupt-latency benchmark for per-document-expensive work (issue 10 item 1): for each command,
//! the time from the `killOp` reply to the killed client receiving 11601, and how far past its
//! `maxTimeMS` the client receives 50 MaxTimeMSExpired; p50 / p99 / max.
//!
//! Run: `cargo run --release -p docplane-node --example interrupt_bench [-- <kills> <timeouts>]`
//! (defaults 200 50). With `DOCPLANE_BENCH_URI=mongodb://...` it measures that node instead of an
//! in-process one (e.g. an older build started with `docplane node --no-auth`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use docplane_node::{Node, NodeConfig};
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, name: &str, mut lat: Vec<Duration>) {
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let max = lat.last().copied().unwrap_or_default();
    println!(
        "| {what} | {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        lat.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
}

/// Milliseconds of work per document: a `$reduce` over a `$range` that depends on the document.
fn heavy() -> Document {
    doc! {"$reduce": {
        "input": {"$range": [0, {"$add": [{"$mod": ["$n", 7]}, 30_000]}]},
        "initialValue": 0,
        "in": {"$add": ["$$value", "$$this"]},
    }}
}

fn commands() -> Vec<(&'static str, Document)> {
    let e = doc! {"$expr": {"$gt": [heavy(), 0]}};
    vec![
        ("find, $expr filter", doc! {"find": "b", "filter": e.clone()}),
        ("find, computed projection", doc! {"find": "b", "projection": {"h": heavy()}, "batchSize": 100_000}),
        ("find, filter + blocking sort", doc! {"find": "b", "filter": e.clone(), "sort": {"x": 1}}),
        ("count", doc! {"count": "b", "query": e.clone()}),
        ("distinct", doc! {"distinct": "b", "key": "n", "query": e.clone()}),
        (
            "aggregate $project",
            doc! {"aggregate": "b", "pipeline": [{"$project": {"h": heavy()}}], "cursor": {"batchSize": 100_000}},
        ),
        (
            "aggregate $group",
            doc! {"aggregate": "b", "pipeline": [{"$group": {"_id": "$n", "h": {"$max": heavy()}}}], "cursor": {}},
        ),
        (
            "update_many, $expr filter",
            doc! {"update": "b", "updates": [{"q": e.clone(), "u": {"$inc": {"x": 1}}, "multi": true}]},
        ),
        (
            "$range of 900k per document",
            doc! {"aggregate": "b", "pipeline": [{"$project": {"r": {"$size": {"$range": [0, 900_000]}}}}], "cursor": {}},
        ),
    ]
}

async fn opid_of(admin: &Client, comment: &str) -> Bson {
    loop {
        let r = admin
            .database("admin")
            .run_command(doc! {"currentOp": 1, "command.comment": comment})
            .await
            .unwrap();
        if let Some(Bson::Document(op)) = r.get_array("inprog").unwrap().first() {
            return op.get("opid").unwrap().clone();
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let kills: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let timeouts: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let (_node, uri) = match std::env::var("DOCPLANE_BENCH_URI") {
        Ok(u) => (None, u),
        Err(_) => {
            let config =
                NodeConfig { bind: "127.0.0.1:0".parse().unwrap(), auth: false, ..Default::default() };
            let node = Node::start(config).await.unwrap();
            let uri = format!("mongodb://{}/", node.local_addr());
            (Some(node), uri)
        }
    };
    let victim = Client::with_uri_str(format!("{uri}?appName=victim")).await.unwrap();
    let admin = Client::with_uri_str(format!("{uri}?appName=admin")).await.unwrap();
    let db = victim.database("interrupt_bench");
    db.collection::<Document>("b").drop().await.unwrap();
    let docs: Vec<Document> = (0..20_000).map(|i| doc! {"_id": i, "n": i, "x": 20_000 - i}).collect();
    db.collection::<Document>("b").insert_many(docs).await.unwrap();
    // One document's work, for scale: a 128-document chunk costs 128 times this.
    let one = doc! {"find": "b", "filter": {"_id": 0, "$expr": {"$gt": [heavy(), 0]}}};
    let t = Instant::now();
    db.run_command(one).await.unwrap();
    println!("one document's filter: {:.2} ms\n", ms(t.elapsed()));
    println!("| measurement | command | n | p50 | p99 | max |\n|---|---|---|---|---|---|");
    for (name, cmd) in commands() {
        let mut lat = Vec::with_capacity(kills);
        for i in 0..kills {
            let comment = format!("bench-{i}");
            let mut cmd = cmd.clone();
            cmd.insert("comment", comment.as_str());
            let d = db.clone();
            let task = tokio::spawn(async move {
                let r = d.run_command(cmd).await;
                (Instant::now(), r)
            });
            let opid = opid_of(&admin, &comment).await;
            // Let it get into its work.
            tokio::time::sleep(Duration::from_millis(3)).await;
            admin.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
            let replied = Instant::now();
            let (got, r) = task.await.unwrap();
            let e = r.expect_err("the command finished before its kill; make it heavier");
            assert_eq!(code(&e), Some(11601), "{name}: {e}");
            lat.push(got.saturating_duration_since(replied));
        }
        report("kill -> 11601", name, lat);
    }
    for (name, cmd) in commands() {
        let mut over = Vec::with_capacity(timeouts);
        for _ in 0..timeouts {
            let mut cmd = cmd.clone();
            cmd.insert("maxTimeMS", 100);
            let t = Instant::now();
            let e = db.run_command(cmd).await.expect_err("finished within maxTimeMS; make it heavier");
            assert_eq!(code(&e), Some(50), "{name}: {e}");
            over.push(t.elapsed().saturating_sub(Duration::from_millis(100)));
        }
        report("maxTimeMS 100 -> 50, past the deadline", name, over);
    }
}
