//! Throughput micro-benchmark: `cargo run --release -p docplane-engine --example bench`.
//!
//! Inserts 200 batches of 1,000 documents into a persistent engine (temp dir, default
//! durability: write() per batch, background fsync) and an in-memory one, then runs filtered
//! collection scans. Prints documents per second.

use std::time::Instant;

use bson::{Document, doc};
use docplane_engine::{Engine, EngineOptions, FindQuery};
use docplane_query::{Filter, NeverInterrupt};

const BATCHES: i64 = 200;
const BATCH: i64 = 1_000;

fn insert_all(e: &Engine) -> f64 {
    let start = Instant::now();
    for b in 0..BATCHES {
        let docs: Vec<Document> = (0..BATCH)
            .map(|i| {
                let n = b * BATCH + i;
                doc! {"_id": n, "user": format!("user{}", n % 1000), "score": (n * 7919) % 10_000, "tags": ["a", "b"], "active": n % 2 == 0}
            })
            .collect();
        let out = e.insert("bench", "docs", docs, true, &NeverInterrupt);
        assert!(out.write_errors.is_empty(), "{:?}", out.write_errors.first());
    }
    (BATCHES * BATCH) as f64 / start.elapsed().as_secs_f64()
}

fn scan(e: &Engine) -> (f64, usize) {
    let filter =
        Filter::parse(&doc! {"score": {"$gte": 5000}, "active": true}).unwrap_or_else(|e| panic!("{e}"));
    let q = FindQuery::new(filter);
    let rounds = 5;
    let start = Instant::now();
    let mut hits = 0;
    for _ in 0..rounds {
        let out = e.find("bench", "docs", &q, &NeverInterrupt).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.plan_summary, "COLLSCAN");
        hits = out.docs.len();
    }
    ((rounds * BATCHES * BATCH) as f64 / start.elapsed().as_secs_f64(), hits)
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let persistent = Engine::open(dir.path(), EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let ins = insert_all(&persistent);
    let (scan_rate, hits) = scan(&persistent);
    println!("persistent: insert {ins:>12.0} docs/s (batches of {BATCH})");
    println!(
        "persistent: scan   {scan_rate:>12.0} docs/s (filtered COLLSCAN, {hits} matches of {})",
        BATCHES * BATCH
    );
    let mem = Engine::in_memory();
    let ins = insert_all(&mem);
    let (scan_rate, _) = scan(&mem);
    println!("in-memory:  insert {ins:>12.0} docs/s");
    println!("in-memory:  scan   {scan_rate:>12.0} docs/s");
    let dir2 = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let synced = Engine::open(dir2.path(), EngineOptions { sync_every_write: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    let ins = insert_all(&synced);
    println!("sync_every_write: insert {ins:>8.0} docs/s");
    let start = Instant::now();
    drop(persistent);
    let reopened = Engine::open(dir.path(), EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    println!("reopen (replay {} docs): {:?}", BATCHES * BATCH, start.elapsed());
    drop(reopened);
}
