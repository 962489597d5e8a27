//! Cost of `j: true`: single-document inserts per second through the wire (Rust driver), with the
//! default write concern, with `j: true`, and on a node started with `sync_every_write`; each
//! sequentially (one client task) and with 16 concurrent tasks (where `j: true` waiters share
//! fsyncs: group commit). Also prints the fsyncs the engine made per acknowledged insert.
//!
//! Run: `cargo run --release -p docplane-node --example j_bench [-- <inserts per case> <dir>]`
//! (defaults 2000, a temporary directory under the current one: put it on the disk to measure,
//! not on a tmpfs).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: failing loudly is the point")]

use std::time::Instant;

use docplane_node::{Node, NodeConfig};
use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::options::{CollectionOptions, WriteConcern};

async fn run_case(client: &Client, name: &str, journal: bool, tasks: usize, n: usize) -> f64 {
    let wc = if journal { WriteConcern::builder().journal(true).build() } else { WriteConcern::default() };
    let coll = client
        .database("bench")
        .collection_with_options::<Document>(name, CollectionOptions::builder().write_concern(wc).build());
    coll.insert_one(doc! {"warmup": true}).await.unwrap();
    let per = n / tasks;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..tasks {
        let c = coll.clone();
        set.spawn(async move {
            for i in 0..per {
                c.insert_one(doc! {"k": k as i64, "i": i as i64, "v": "x".repeat(100)}).await.unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    (per * tasks) as f64 / t.elapsed().as_secs_f64()
}

async fn bench_node(label: &str, sync_every_write: bool, dir: &std::path::Path, n: usize) {
    let data = tempfile::tempdir_in(dir).unwrap();
    let handle = Node::start(NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(data.path().to_path_buf()),
        auth: false,
        sync_every_write,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = Client::with_uri_str(format!("{}?maxPoolSize=32", handle.uri(None))).await.unwrap();
    for (journal, tasks) in [(false, 1), (true, 1), (false, 16), (true, 16)] {
        let before = handle.engine().journal_stats();
        let name = format!("c_{journal}_{tasks}");
        let rate = run_case(&client, &name, journal, tasks, n).await;
        let after = handle.engine().journal_stats();
        let fsyncs = (after.fsyncs - before.fsyncs) as f64 / (n + 1) as f64;
        let wc = if journal { "j: true" } else { "default" };
        println!("{label:<22} {wc:<8} {tasks:>2} task(s): {rate:>9.0} inserts/s, {fsyncs:.3} fsyncs/insert");
    }
    drop(client);
    handle.shutdown().await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse().expect("inserts per case")).unwrap_or(2000);
    let dir = args.next().map(std::path::PathBuf::from).unwrap_or_else(|| std::env::current_dir().unwrap());
    bench_node("node", false, &dir, n).await;
    bench_node("node sync_every_write", true, &dir, n).await;
}
