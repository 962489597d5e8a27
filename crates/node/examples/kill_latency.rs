//! Kill-latency benchmark: from the killOp reply to the killed client receiving 11601, p50/p99 over
//! 1,000 kills of a running `sleep` and of a running collection scan; plus the cost of `$currentOp`
//! with 1,000 concurrent operations.
//!
//! Run: `cargo run --release -p docplane-node --example kill_latency [-- <kills> <currentOp-iters>]`
//! (defaults 1000 100).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: any failure aborts the run")]

use std::time::{Duration, Instant};

use docplane_node::{Node, NodeConfig};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use tokio::sync::oneshot;

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

async fn find_opid(admin: &Client, filter: Document) -> i32 {
    loop {
        let mut cmd = doc! {"currentOp": 1};
        cmd.extend(filter.clone());
        let r = admin.database("admin").run_command(cmd).await.unwrap();
        if let Some(op) = r.get_array("inprog").unwrap().first() {
            return op.as_document().unwrap().get_i32("opid").unwrap();
        }
        tokio::task::yield_now().await;
    }
}

/// Kills `victim` (started by `start`) `n` times; returns the latencies.
async fn measure<F, Fut>(n: usize, admin: &Client, filter: Document, start: F) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = mongodb::error::Error> + Send + 'static,
{
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = oneshot::channel();
        let fut = start();
        tokio::spawn(async move {
            let e = fut.await;
            let _ = tx.send((Instant::now(), code(&e)));
        });
        let opid = find_opid(admin, filter.clone()).await;
        admin.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
        let replied = Instant::now();
        let (got, c) = rx.await.unwrap();
        assert_eq!(c, Some(11601));
        lat.push(got.saturating_duration_since(replied));
    }
    lat
}

fn report(name: &str, mut lat: Vec<Duration>) {
    let p50 = pct(&mut lat, 0.5);
    let p99 = pct(&mut lat, 0.99);
    let max = lat.last().copied().unwrap_or_default();
    println!(
        "{name}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let kills: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iters: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let config = NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        enable_test_commands: true,
        auth: false,
        ..Default::default()
    };
    let node = Node::start(config).await.unwrap();
    let uri = format!("mongodb://{}/?maxPoolSize=1200", node.local_addr());
    let victim = Client::with_uri_str(format!("{uri}&appName=victim")).await.unwrap();
    let admin = Client::with_uri_str(format!("{uri}&appName=admin")).await.unwrap();
    admin.database("admin").run_command(doc! {"ping": 1}).await.unwrap();

    kill_sleeps(kills, &admin, &victim).await;
    kill_scans(kills, &admin, &victim).await;
    let tasks = start_sleeps(&admin, &victim, 1000).await;
    current_op_costs(iters, &admin).await;
    admin.database("admin").run_command(doc! {"killAllSessions": []}).await.unwrap();
    // killAllSessions ends every background sleep: each must have ended with an error (killed),
    // not completed, and no task may have panicked.
    let mut survived = 0;
    for t in tasks {
        if t.await.expect("background sleep task panicked").is_ok() {
            survived += 1;
        }
    }
    if survived > 0 {
        eprintln!("warning: {survived} background sleeps completed instead of being killed");
    }
    node.shutdown().await.unwrap();
}

/// The first measurement: killing a running `sleep`.
async fn kill_sleeps(kills: usize, admin: &Client, victim: &Client) {
    let v = victim.clone();
    let lat = measure(kills, admin, doc! {"command.sleep": {"$exists": true}}, move || {
        let v = v.clone();
        async move { v.database("admin").run_command(doc! {"sleep": 1, "millis": 60_000}).await.unwrap_err() }
    })
    .await;
    report("kill sleep", lat);
}

/// The second: killing a collection scan over 200k documents with a non-matching `$regex`
/// (after timing the inserts and one whole scan).
async fn kill_scans(kills: usize, admin: &Client, victim: &Client) {
    let coll = victim.database("bench").collection::<Document>("scan");
    let t = Instant::now();
    for b in 0..200 {
        let docs: Vec<Document> =
            (0..1000).map(|i| doc! {"i": b * 1000 + i, "s": format!("value-{i}")}).collect();
        coll.insert_many(docs).await.unwrap();
    }
    let ins = t.elapsed();
    println!("insert 200k docs in batches of 1000: {:.0} docs/s", 200_000.0 / ins.as_secs_f64());
    let filter = doc! {"s": {"$regex": "^nomatch"}};
    let t = Instant::now();
    let _ = coll.count_documents(filter.clone()).await.unwrap();
    let scan = t.elapsed();
    println!(
        "filtered collection scan of 200k docs: {:.1} ms ({:.0} docs/s)",
        scan.as_secs_f64() * 1e3,
        200_000.0 / scan.as_secs_f64()
    );
    let c2 = coll.clone();
    let lat = measure(kills, admin, doc! {"command.comment": "scan"}, move || {
        let c = c2.clone();
        let f = filter.clone();
        async move {
            loop {
                if let Err(e) = c.find(f.clone()).comment("scan").await {
                    return e;
                }
            }
        }
    })
    .await;
    report("kill collection scan", lat);
}

/// `n` concurrent two-minute sleeps, once the node lists them all.
async fn start_sleeps(
    admin: &Client,
    victim: &Client,
    n: usize,
) -> Vec<tokio::task::JoinHandle<mongodb::error::Result<Document>>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let v = victim.clone();
        tasks.push(tokio::spawn(async move {
            v.database("admin").run_command(doc! {"sleep": 1, "millis": 120_000}).await
        }));
    }
    loop {
        let r = admin
            .database("admin")
            .run_command(doc! {"currentOp": 1, "command.sleep": {"$exists": true}})
            .await
            .unwrap();
        if r.get_array("inprog").unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

/// One aggregation on `admin`, timed, with every document it returned.
async fn timed_aggregate(admin: &Client, pipeline: Vec<Document>) -> (Duration, Vec<Document>) {
    let t = Instant::now();
    let docs: Vec<Document> = admin
        .database("admin")
        .aggregate(pipeline)
        .batch_size(100_000)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    (t.elapsed(), docs)
}

/// The third: what `$currentOp` costs with the concurrent sleeps running (whole listings,
/// node-side counts and filters, and the `currentOp` command for one opid).
async fn current_op_costs(iters: usize, admin: &Client) {
    // The control plane's stage (crates/driver/src/ops.rs): all users, idle connections and sessions.
    let driver_stage = doc! {"$currentOp": {"allUsers": true, "idleConnections": true, "idleSessions": true}};
    let some_opid = timed_aggregate(admin, vec![driver_stage.clone(), doc! {"$match": {"command.sleep": 1}}])
        .await
        .1[500]
        .get_i32("opid")
        .unwrap();
    let (mut all, mut none, mut one, mut cmd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut n_all, mut n_none, mut n_one, mut n_cmd) = (0, 0, 0, 0);
    let (mut count, mut field, mut n_count, mut n_field) = (Vec::new(), Vec::new(), 0, 0);
    let run = |pipeline| timed_aggregate(admin, pipeline);
    for _ in 0..iters {
        let (t, d) = run(vec![doc! {"$currentOp": {"allUsers": true, "idleSessions": false}}]).await;
        all.push(t);
        n_all = d.len();
        // Every document built on the node, none sent: the node-side cost of a full listing.
        let (t, d) = run(vec![driver_stage.clone(), doc! {"$count": "n"}]).await;
        count.push(t);
        n_count = d.first().and_then(|d| d.get_i32("n").ok()).unwrap_or(0);
        let (t, d) =
            run(vec![driver_stage.clone(), doc! {"$match": {"command.millis": 1, "op": "command"}}]).await;
        field.push(t);
        n_field = d.len();
        let (t, d) = run(vec![driver_stage.clone(), doc! {"$match": {"opid": -1}}]).await;
        none.push(t);
        n_none = d.len();
        let (t, d) =
            run(vec![driver_stage.clone(), doc! {"$match": {"opid": {"$in": [i64::from(some_opid)]}}}]).await;
        one.push(t);
        n_one = d.len();
        let t = Instant::now();
        let r = admin
            .database("admin")
            .run_command(doc! {"currentOp": 1, "$all": true, "opid": some_opid})
            .await
            .unwrap();
        cmd.push(t.elapsed());
        n_cmd = r.get_array("inprog").unwrap().len();
    }
    report(&format!("$currentOp with {n_all} ops (all documents to the client)"), all);
    report(&format!("$currentOp + $count (node builds {n_count}, sends 1)"), count);
    report(&format!("$currentOp + $match {{command.millis: 1, op}} ({n_field} returned)"), field);
    report(&format!("$currentOp + $match {{opid: -1}} ({n_none} returned)"), none);
    report(&format!("$currentOp + $match {{opid: {{$in: [id]}}}} ({n_one} returned)"), one);
    report(&format!("currentOp command {{$all, opid: id}} ({n_cmd} returned)"), cmd);
}
