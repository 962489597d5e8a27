//! Benchmark: list sessions on a node with 1,000 concurrent operations, and kill one session,
//! through docplane's API versus the same work done directly with the official driver
//! (`$currentOp`, and `$currentOp` + `killOp`), side by side in one run; plus the end-to-end kill
//! latency (request sent -> the killed client sees error 11601) for both.
//!
//! Run: `cargo run --release -p docplane-api --example dds_bench [-- <ops> <list-iters> <kill-iters>]`
//! (defaults 1000 300 100). Everything is in process on 127.0.0.1: the embedded node (auth on),
//! the API (SQLite store, X-Auth-Token), and the clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/dds_support/mod.rs"]
mod dds_support;

use std::time::{Duration, Instant};

use dds_support::*;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde_json::json;
use tokio::sync::oneshot;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Stats {
    fn new(name: &'static str) -> Self {
        Stats { name, samples: Vec::new() }
    }
    fn summary(&mut self) -> (Duration, Duration, Duration) {
        self.samples.sort();
        let mean = self.samples.iter().sum::<Duration>() / self.samples.len().max(1) as u32;
        (pct(&self.samples, 50.0), pct(&self.samples, 99.0), mean)
    }
    fn print(&mut self) -> (Duration, Duration) {
        let (p50, p99, mean) = self.summary();
        println!(
            "{:<46} n={:<4} p50={:>8.3} ms  p99={:>8.3} ms  mean={:>8.3} ms",
            self.name,
            self.samples.len(),
            ms(p50),
            ms(p99),
            ms(mean)
        );
        (p50, p99)
    }
}

async fn current_ops(client: &mongodb::Client, predicate: Option<Document>) -> Vec<Document> {
    let mut pipeline =
        vec![doc! {"$currentOp": {"allUsers": true, "idleConnections": true, "idleSessions": true}}];
    if let Some(p) = predicate {
        pipeline.push(doc! {"$match": p});
    }
    client
        .database("admin")
        .aggregate(pipeline)
        .batch_size(100_000)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// A victim `sleep` whose end (with its error code) is reported with the instant it was seen.
fn victim(client: &mongodb::Client, millis: i64) -> oneshot::Receiver<(Instant, Option<i32>)> {
    let (tx, rx) = oneshot::channel();
    let db = client.database("admin");
    tokio::spawn(async move {
        let r = db.run_command(doc! {"sleep": 1, "millis": millis}).await;
        let seen = Instant::now();
        let _ = tx.send((seen, r.err().as_ref().and_then(error_code)));
    });
    rx
}

async fn opid_of(client: &mongodb::Client, millis: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ops = current_ops(client, Some(doc! {"command.sleep": 1, "command.millis": millis})).await;
        if let Some(op) = ops.first() {
            return match op.get("opid") {
                Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
                Some(mongodb::bson::Bson::Int64(n)) => *n,
                other => panic!("opid {other:?}"),
            };
        }
        assert!(Instant::now() < deadline, "victim never appeared");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let ops = args.first().copied().unwrap_or(1000);
    let list_iters = args.get(1).copied().unwrap_or(300);
    let kill_iters = args.get(2).copied().unwrap_or(100);

    let h = Harness::start().await;
    let load = app_client(h.node_addr, u32::try_from(ops + 16).unwrap());
    let direct = app_client(h.node_addr, 8);
    let victims = app_client(h.node_addr, 8);
    println!(
        "docplane dds_bench: {ops} concurrent ops, {list_iters} list and {kill_iters} kill iterations per side"
    );

    // 1,000 concurrent operations.
    let background: Vec<_> = (0..ops).map(|_| spawn_sleep(&load, 3_600_000)).collect();
    let started = Instant::now();
    loop {
        let n = current_ops(&direct, Some(doc! {"command.millis": 3_600_000_i64})).await.len();
        if n >= ops {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "only {n} ops running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, page) = h.get(&h.sessions_path("?limit=10")).await;
    println!(
        "node ready in {:.1} s; API total_count = {}",
        started.elapsed().as_secs_f64(),
        page["total_count"]
    );

    // ---- list: API (default page of 10) vs driver $currentOp, interleaved.
    let mut api_list = Stats::new("list  API GET .../sessions (limit=10)");
    let mut api_list100 = Stats::new("list  API GET .../sessions (limit=100)");
    let mut drv_list = Stats::new("list  driver $currentOp (all entries)");
    let mut drv_count = Stats::new("(diag) driver $currentOp + $match none");
    for i in 0..list_iters + 20 {
        let t = Instant::now();
        let (status, _) = h.get(&h.sessions_path("?limit=10")).await;
        let a = t.elapsed();
        assert_eq!(status, 200);
        let t = Instant::now();
        let (status, _) = h.get(&h.sessions_path("?limit=100")).await;
        let a100 = t.elapsed();
        assert_eq!(status, 200);
        let t = Instant::now();
        let n = current_ops(&direct, None).await.len();
        let d = t.elapsed();
        assert!(n >= ops);
        let t = Instant::now();
        let counted = current_ops(&direct, Some(doc! {"opid": -1})).await.len();
        let c = t.elapsed();
        assert_eq!(counted, 0);
        if i >= 20 {
            api_list.samples.push(a);
            api_list100.samples.push(a100);
            drv_list.samples.push(d);
            drv_count.samples.push(c);
        }
    }

    // ---- kill one session: API vs driver ($currentOp check + killOp), interleaved.
    let mut api_kill = Stats::new("kill  API POST .../session (1 id)");
    let mut drv_kill = Stats::new("kill  driver $currentOp(opid) + killOp");
    let mut api_e2e = Stats::new("e2e   API call -> client sees 11601");
    let mut drv_e2e = Stats::new("e2e   driver call -> client sees 11601");
    for i in 0..kill_iters {
        for via_api in [true, false] {
            let millis = 7_000_000 + (i as i64) * 2 + i64::from(via_api);
            let done = victim(&victims, millis);
            let opid = opid_of(&direct, millis).await;
            let t = Instant::now();
            if via_api {
                let (status, body) = h.post(&h.kill_path(), &json!({"sessions": [opid.to_string()]})).await;
                assert_eq!(status, 200, "{body}");
                api_kill.samples.push(t.elapsed());
            } else {
                let found = current_ops(&direct, Some(doc! {"opid": {"$in": [opid]}})).await;
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].get_bool("active").ok(), Some(true));
                direct.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
                drv_kill.samples.push(t.elapsed());
            }
            let (seen, code) = tokio::time::timeout(Duration::from_secs(10), done).await.unwrap().unwrap();
            assert_eq!(code, Some(11601));
            let e2e = seen.saturating_duration_since(t);
            if via_api {
                api_e2e.samples.push(e2e)
            } else {
                drv_e2e.samples.push(e2e)
            }
            // Let the API's background verification (first poll after 20 ms) finish so that
            // it does not load the node during the next measurement.
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
    }

    println!();
    let (a50, _) = api_list.print();
    api_list100.print();
    let (d50, _) = drv_list.print();
    println!("  -> API overhead at p50 (limit=10): {:+.1}%", (ms(a50) / ms(d50) - 1.0) * 100.0);
    drv_count.print();
    let (k50, _) = api_kill.print();
    let (dk50, _) = drv_kill.print();
    println!("  -> API overhead at p50 (kill): {:+.1}%", (ms(k50) / ms(dk50) - 1.0) * 100.0);
    let (_, e99) = api_e2e.print();
    drv_e2e.print();
    println!("  -> end-to-end kill p99 via API: {:.3} ms (goal < 20 ms)", ms(e99));

    let stop = background.len();
    let ids: Vec<String> = current_ops(&direct, Some(doc! {"command.millis": 3_600_000_i64}))
        .await
        .iter()
        .filter_map(|d| d.get_i32("opid").ok().map(|n| n.to_string()))
        .collect();
    for chunk in ids.chunks(1000) {
        let (status, _) = h.post(&h.kill_path(), &json!({ "sessions": chunk })).await;
        assert_eq!(status, 200);
    }
    for b in background {
        let _ = tokio::time::timeout(Duration::from_secs(10), b).await;
    }
    println!("cleaned up {stop} background ops");
    h.stop().await;
}
