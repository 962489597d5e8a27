//! Benchmark: listing a node's sessions and killing one, through docplane's API and with the same
//! work done directly through the official `mongodb` driver, side by side in one run, at several
//! numbers of concurrently running operations (the growth curve).
//!
//! At each level (default 0, 100, 1,000 and 5,000 concurrent `sleep` operations on the node):
//! - list via the API (`GET .../sessions?limit=10` and `?limit=100`);
//! - list via the driver: the whole `$currentOp` (every entry sent and decoded), as the API's
//!   driver reads it today;
//! - list via the driver with the one-round-trip pushdown pipeline of
//!   `docplane_sessions::pushdown` (after the driver's `own_exclusion`) (total + one page, filtered, sorted and paged on the node), limit
//!   10 and 100;
//! - node-side `$currentOp` alone: every entry built whole on the node, one document sent
//!   (`$group` needs whole documents);
//! - kill one operation: end to end (request sent -> the killed client sees error 11601) via the
//!   API and via the driver (`$currentOp` for that opid, then `killOp`), and the API call itself;
//! - the kill's candidate read alone (that opid's entry) through docplane's driver and through
//!   the official driver's `aggregate`: what docplane's transport adds.
//!
//! Run: `cargo run --release -p docplane-api --example dds_bench [-- <levels> <list-iters> <kill-iters>]`
//! with levels comma-separated (defaults `0,100,1000,5000 200 100`). Everything is in process on
//! 127.0.0.1: the embedded node (auth on), the API (SQLite store, X-Auth-Token), and the clients.
//! At levels above 1,000 the list iterations are scaled down (at least 40).
//!
//! The API's kills report where their time went (`docplane_sessions::KILL_PHASES`): printed per
//! level as p50 / p99 per phase. `DDS_BENCH_TRACE=<target=level,...>` also prints those
//! `tracing` events to stderr (e.g. `mongodb::command=debug` for every command the driver sends).
//!
//! `DDS_BENCH_LISTS=5` runs only the fifth list measurement (any comma-separated subset of 1-6),
//! so that a profile sees one read's work.
//!
//! `DDS_BENCH_LOAD=process` runs the background operations' clients in a child process (this
//! binary again, in load mode), as applications are in production: the API, the embedded node
//! and the measuring clients stay in this process, the 1,000 waiting clients do not share its
//! runtime. The default (`inprocess`) keeps them here, as the figures before 2026-12-01 20:00 were.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/dds_support/mod.rs"]
mod dds_support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dds_support::*;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
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

/// The measurements, in print order.
const NAMES: &[&str] = &[
    "list  API GET .../sessions?limit=10",
    "list  API GET .../sessions?limit=100",
    "list  driver $currentOp (every entry sent)",
    "list  driver pushdown page (limit 10)",
    "list  driver pushdown page (limit 100)",
    "node  $currentOp alone (all built, 1 sent)",
    "kill  API POST .../session (the call)",
    "e2e   kill via API -> client sees 11601",
    "e2e   kill via driver -> client sees 11601",
    "read  kill candidates via docplane's driver",
    "read  kill candidates via mongodb aggregate",
];

#[derive(Default)]
struct Level {
    ops: usize,
    samples: Vec<Vec<Duration>>,
    notes: Vec<String>,
}

impl Level {
    fn new(ops: usize) -> Self {
        Level { ops, samples: vec![Vec::new(); NAMES.len()], notes: Vec::new() }
    }
    fn push(&mut self, i: usize, d: Duration) {
        self.samples[i].push(d);
    }
    fn p(&mut self, i: usize) -> (Duration, Duration) {
        let s = &mut self.samples[i];
        s.sort();
        (pct(s, 50.0), pct(s, 99.0))
    }
}

async fn aggregate(
    client: &mongodb::Client,
    pipeline: Vec<Document>,
    comment: Option<&str>,
) -> Vec<Document> {
    let db = client.database("admin");
    let mut agg = db.aggregate(pipeline).batch_size(100_000);
    if let Some(c) = comment {
        agg = agg.comment(c);
    }
    agg.await.unwrap().try_collect().await.unwrap()
}

/// The stage docplane's driver sends to a 4.0+ node.
fn stage() -> Document {
    doc! {"$currentOp": {"allUsers": true, "idleConnections": true, "idleSessions": true}}
}

async fn current_ops(client: &mongodb::Client, predicate: Option<Document>) -> Vec<Document> {
    let mut pipeline = vec![stage()];
    if let Some(p) = predicate {
        pipeline.push(doc! {"$match": p});
    }
    aggregate(client, pipeline, None).await
}

/// One page through the pushdown pipeline, tagged as the driver tags its reads.
async fn pushdown_page(client: &mongodb::Client, limit: u64) -> (u64, Vec<Document>) {
    let tag = format!("docplane:{:032x}", rand_u128());
    let req = docplane_sessions::SessionQuery { limit, ..docplane_sessions::SessionQuery::default() };
    let mut pipeline = vec![
        stage(),
        doc! {"$match": docplane_driver::ops::own_exclusion(std::slice::from_ref(&tag), docplane_driver::DEFAULT_APP_NAME)},
    ];
    pipeline.extend(docplane_sessions::pushdown::page_stages(&req).expect("pushable"));
    let out = aggregate(client, pipeline, Some(&tag)).await;
    docplane_sessions::pushdown::parse_page(&out).expect("shaped reply")
}

/// A fresh value per read (the tag only has to be this read's own).
fn rand_u128() -> u128 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    (u128::from(std::process::id()) << 64)
        | u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A victim `sleep` whose end (with its error code) is reported with the instant it was seen.
fn victim(client: &mongodb::Client, millis: i64) -> oneshot::Receiver<(Instant, Option<i32>)> {
    let (tx, rx) = oneshot::channel();
    let db = client.database("admin");
    tokio::spawn(async move {
        let r = db.run_command(doc! {"sleep": 1, "millis": millis}).await;
        let seen = Instant::now();
        if tx.send((seen, r.err().as_ref().and_then(error_code))).is_err() {
            eprintln!("a victim ended after its measurement gave up on it");
        }
    });
    rx
}

async fn opid_of(client: &mongodb::Client, millis: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ops = current_ops(client, Some(doc! {"command.sleep": 1, "command.millis": millis})).await;
        if let Some(op) = ops.first() {
            return match op.get("opid") {
                Some(Bson::Int32(n)) => i64::from(*n),
                Some(Bson::Int64(n)) => *n,
                other => panic!("opid {other:?}"),
            };
        }
        assert!(Instant::now() < deadline, "victim never appeared");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn running_sleeps(client: &mongodb::Client) -> usize {
    let out = aggregate(
        client,
        vec![stage(), doc! {"$match": {"command.millis": 3_600_000_i64}}, doc! {"$count": "n"}],
        None,
    )
    .await;
    out.first().and_then(|d| d.get_i32("n").ok()).map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// Load mode (the child of `DDS_BENCH_LOAD=process`): each line `N` on stdin brings the sleeps
/// it keeps running on the node at `addr` to `N`; it exits at EOF.
async fn load_child(addr: &str) {
    use tokio::io::AsyncBufReadExt;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut load: Option<mongodb::Client> = None;
    let mut sleeps = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let n: usize = line.trim().parse().unwrap();
        let client = load.get_or_insert_with(|| app_client(addr, 20_000));
        while sleeps.len() < n {
            sleeps.push(spawn_sleep(client, 3_600_000));
        }
    }
}

/// The background load's owner: clients here, or a child process.
enum Load {
    Here(mongodb::Client, Vec<tokio::task::JoinHandle<mongodb::error::Result<Document>>>),
    Child(tokio::process::Child),
}

impl Load {
    /// The load's clients: in this process (a pool large enough for `max_ops` sleeps), or in a
    /// child process (this binary in load mode) when `in_child`.
    fn start(h: &Harness, in_child: bool, max_ops: usize) -> Self {
        if in_child {
            Load::Child(
                tokio::process::Command::new(std::env::current_exe().unwrap())
                    .env("DDS_BENCH_LOAD_CHILD", h.node_addr.to_string())
                    .stdin(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap(),
            )
        } else {
            Load::Here(app_client(h.node_addr, u32::try_from(max_ops + 16).unwrap()), Vec::new())
        }
    }

    /// Brings the number of background sleeps to `ops`.
    async fn top_up(&mut self, ops: usize) {
        match self {
            Load::Here(client, tasks) => {
                while tasks.len() < ops {
                    tasks.push(spawn_sleep(client, 3_600_000));
                }
            }
            Load::Child(child) => {
                use tokio::io::AsyncWriteExt;
                let stdin = child.stdin.as_mut().unwrap();
                stdin.write_all(format!("{ops}\n").as_bytes()).await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
    }
}

/// The command line: levels of concurrent operations and iterations per measurement.
struct BenchArgs {
    levels: Vec<usize>,
    list_iters: usize,
    kill_iters: usize,
}

impl BenchArgs {
    /// `[<levels> <list-iters> <kill-iters>]`, each defaulted when absent.
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let levels: Vec<usize> = args
            .first()
            .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_else(|| vec![0, 100, 1000, 5000]);
        let list_iters: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
        let kill_iters: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
        BenchArgs { levels, list_iters, kill_iters }
    }
}

/// The measuring clients: one for the driver's reads and kills, one for the victims.
struct Clients {
    direct: mongodb::Client,
    victims: mongodb::Client,
}

#[tokio::main]
async fn main() {
    if let Ok(addr) = std::env::var("DDS_BENCH_LOAD_CHILD") {
        load_child(&addr).await;
        return;
    }
    let args = BenchArgs::from_args();
    collect_phases();
    let max_ops = args.levels.iter().copied().max().unwrap_or(0);

    let h = Harness::start().await;
    let in_child = std::env::var("DDS_BENCH_LOAD").is_ok_and(|v| v == "process");
    let mut load = Load::start(&h, in_child, max_ops);
    let clients = Clients { direct: app_client(h.node_addr, 8), victims: app_client(h.node_addr, 8) };
    println!(
        "docplane dds_bench: levels {:?} concurrent ops, {} list and {} kill iterations per measurement, load clients {}",
        args.levels,
        args.list_iters,
        args.kill_iters,
        if in_child { "in a child process" } else { "in this process" }
    );
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load_avg.split_whitespace().take(3).collect::<Vec<_>>().join(" "));

    let mut results = Vec::new();
    for &ops in &args.levels {
        load.top_up(ops).await;
        PHASES.lock().unwrap().clear();
        let mut level = measure_level(&h, &clients, ops, &args).await;
        print_level(&mut level);
        print_phases();
        results.push(level);
    }

    print_growth_curve(&mut results);
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load_avg.split_whitespace().take(3).collect::<Vec<_>>().join(" "));

    clean_up(&h, &clients.direct, load).await;
    h.stop().await;
}

/// The kill's phase timings (`docplane_sessions::KILL_PHASES` debug events), by
/// `<phase>.<field>`, in microseconds; taken (and emptied) by [`print_phases`] after each level.
static PHASES: Mutex<BTreeMap<String, Vec<u64>>> = Mutex::new(BTreeMap::new());

/// Collects the phase events' integer fields into [`PHASES`].
struct PhaseLayer;

struct PhaseFields {
    phase: String,
    values: Vec<(&'static str, u64)>,
}

impl tracing::field::Visit for PhaseFields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.values.push((field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "phase" {
            value.clone_into(&mut self.phase);
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PhaseLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = PhaseFields { phase: String::new(), values: Vec::new() };
        event.record(&mut f);
        let mut phases = PHASES.lock().unwrap();
        for (name, v) in f.values {
            phases.entry(format!("{}.{name}", f.phase)).or_default().push(v);
        }
    }
}

/// Installs [`PhaseLayer`] for the phase events only, and, when `DDS_BENCH_TRACE` holds
/// `tracing` target directives (`docplane_node=debug,mongodb::command=debug`), prints those
/// events to stderr: what the node and the driver did during a measurement.
fn collect_phases() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{Layer, filter::Targets};
    let only_phases = Targets::new().with_target(docplane_sessions::KILL_PHASES, tracing::Level::DEBUG);
    let traced: Targets = match std::env::var("DDS_BENCH_TRACE") {
        Ok(directives) => directives.parse().expect("DDS_BENCH_TRACE: target=level,..."),
        Err(_) => Targets::new(),
    };
    let printed =
        tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::io::stderr).with_filter(traced);
    let subscriber = tracing_subscriber::registry().with(PhaseLayer.with_filter(only_phases)).with(printed);
    tracing::subscriber::set_global_default(subscriber).unwrap();
}

/// Where the API's kills of the level spent their time: p50 / p99 of each phase, in microseconds
/// (the `reads` of the kills' candidates run side by side, each timed from the reads' start).
fn print_phases() {
    let mut phases = std::mem::take(&mut *PHASES.lock().unwrap());
    if phases.is_empty() {
        return;
    }
    println!("  kill phases via the API, us (p50 / p99):");
    for (name, v) in &mut phases {
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p / 100.0).round() as usize];
        println!("    {name:<28} n={:<4} {:>7} / {:>7}", v.len(), at(50.0), at(99.0));
    }
}

/// Every measurement at `ops` concurrent operations, once the background load has reached it.
async fn measure_level(h: &Harness, clients: &Clients, ops: usize, args: &BenchArgs) -> Level {
    let started = Instant::now();
    loop {
        let n = running_sleeps(&clients.direct).await;
        if n >= ops {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "only {n} of {ops} ops running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut level = Level::new(ops);
    let (_, page) = h.get(&h.sessions_path("?limit=10")).await;
    let (total, _) = pushdown_page(&clients.direct, 10).await;
    level.notes.push(format!(
        "{ops} ops ready in {:.1} s; API total_count = {}, pushdown total = {total}",
        started.elapsed().as_secs_f64(),
        page["total_count"]
    ));
    let iters = if ops > 1000 { (args.list_iters * 1000 / ops).max(40) } else { args.list_iters };
    measure_lists(h, &clients.direct, iters, &mut level).await;
    measure_kills(h, clients, args.kill_iters, &mut level).await;
    level
}

/// Which of the six list measurements to run: `DDS_BENCH_LISTS=2,5` (numbers as printed, from 1)
/// runs only those, so that a profile sees one read's work; unset, all six.
fn lists_wanted() -> [bool; 6] {
    let Ok(spec) = std::env::var("DDS_BENCH_LISTS") else { return [true; 6] };
    let mut want = [false; 6];
    for n in spec.split(',') {
        let k: usize = n.trim().parse().expect("DDS_BENCH_LISTS: comma-separated numbers 1-6");
        assert!((1..=6).contains(&k), "DDS_BENCH_LISTS: {k} is not a list measurement (1-6)");
        want[k - 1] = true;
    }
    want
}

/// Times `f` when `on`, else `None` (a measurement left out by `DDS_BENCH_LISTS`).
async fn timed<T>(on: bool, f: impl std::future::Future<Output = T>) -> Option<(Duration, T)> {
    if !on {
        return None;
    }
    let t = Instant::now();
    let out = f.await;
    Some((t.elapsed(), out))
}

/// The six list measurements (0..=5 of [`NAMES`]), interleaved; the first 10 rounds are warm-up.
async fn measure_lists(h: &Harness, direct: &mongodb::Client, iters: usize, level: &mut Level) {
    let ops = level.ops;
    let want = lists_wanted();
    let group = || vec![stage(), doc! {"$group": {"_id": Bson::Null, "n": {"$sum": 1}}}];
    for i in 0..iters + 10 {
        let a10 = timed(want[0], h.get(&h.sessions_path("?limit=10"))).await;
        if let Some((_, (status, _))) = &a10 {
            assert_eq!(*status, 200);
        }
        let a100 = timed(want[1], h.get(&h.sessions_path("?limit=100"))).await;
        if let Some((_, (status, body))) = &a100 {
            assert_eq!(*status, 200, "{body}");
        }
        let all = timed(want[2], current_ops(direct, None)).await;
        if let Some((_, entries)) = &all {
            assert!(entries.len() >= ops);
        }
        let d10 = timed(want[3], pushdown_page(direct, 10)).await;
        if let Some((_, (total, p10))) = &d10 {
            assert!(*total >= ops as u64 && p10.len() == 10.min(*total as usize), "{total} {}", p10.len());
        }
        let d100 = timed(want[4], pushdown_page(direct, 100)).await;
        if let Some((_, (total, p100))) = &d100 {
            assert_eq!(p100.len(), 100.min(*total as usize));
        }
        let node = timed(want[5], aggregate(direct, group(), None)).await;
        if let Some((_, built)) = &node {
            assert_eq!(built.len(), 1);
        }
        if i >= 10 {
            let times = [a10.map(|x| x.0), a100.map(|x| x.0), all.map(|x| x.0)];
            let times = times.into_iter().chain([d10.map(|x| x.0), d100.map(|x| x.0), node.map(|x| x.0)]);
            for (k, d) in times.enumerate().filter_map(|(k, d)| Some((k, d?))) {
                level.push(k, d);
            }
        }
    }
}

/// docplane's node driver as the API holds one (default configuration), for the bench's own reads.
static DRIVER: std::sync::OnceLock<docplane_driver::Driver> = std::sync::OnceLock::new();

/// The kill's candidate read (the entry of one opid) through docplane's driver
/// (`ops::current_op_entries`, as the session service sends it) and through the official driver's
/// `aggregate`, one after the other: what the driver layer adds to the read.
async fn measure_candidate_reads(h: &Harness, direct: &mongodb::Client, opid: i64, level: &mut Level) {
    let target = docplane_driver::NodeTarget {
        id: "dds-bench".into(),
        address: h.node_addr.to_string(),
        credentials: Some(docplane_driver::Credentials {
            username: NODE_USER.into(),
            password: dds_support::NODE_PASSWORD.into(),
            source: None,
        }),
        kind: docplane_driver::NodeKind::Mongod,
    };
    let driver =
        DRIVER.get_or_init(|| docplane_driver::Driver::new(docplane_driver::DriverConfig::default()));
    let t = Instant::now();
    let entries =
        docplane_driver::ops::current_op_entries(driver, &target, Some(doc! {"opid": {"$in": [opid]}})).await;
    level.push(9, t.elapsed());
    assert_eq!(entries.unwrap().len(), 1);
    let t = Instant::now();
    let found = current_ops(direct, Some(doc! {"opid": {"$in": [opid]}})).await;
    level.push(10, t.elapsed());
    assert_eq!(found.len(), 1);
}

/// Killing one operation (6..=8 of [`NAMES`], and 9..=10 before each driver kill): via the API
/// and via the driver, interleaved, each timed until the killed client sees 11601.
async fn measure_kills(h: &Harness, clients: &Clients, kill_iters: usize, level: &mut Level) {
    let ops = level.ops;
    let direct = &clients.direct;
    for i in 0..kill_iters {
        for via_api in [true, false] {
            let millis = 7_000_000 + (ops as i64) * 1_000 + (i as i64) * 2 + i64::from(via_api);
            let done = victim(&clients.victims, millis);
            let opid = opid_of(direct, millis).await;
            if !via_api {
                measure_candidate_reads(h, direct, opid, level).await;
            }
            let t = Instant::now();
            if via_api {
                let (status, body) = h.post(&h.kill_path(), &json!({"sessions": [opid.to_string()]})).await;
                assert_eq!(status, 200, "{body}");
                level.push(6, t.elapsed());
            } else {
                let found = current_ops(direct, Some(doc! {"opid": {"$in": [opid]}})).await;
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].get_bool("active").ok(), Some(true));
                direct.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
            }
            let (seen, code) = tokio::time::timeout(Duration::from_secs(10), done).await.unwrap().unwrap();
            assert_eq!(code, Some(11601));
            level.push(if via_api { 7 } else { 8 }, seen.saturating_duration_since(t));
        }
    }
}

/// The growth curve: every measurement's p50 / p99 side by side, one column per level.
fn print_growth_curve(results: &mut [Level]) {
    println!("\n== growth curve: p50 / p99 in ms, by concurrent operations ==");
    let mut header = format!("{:<46}", "measurement");
    for l in results.iter() {
        header.push_str(&format!(" | {:>17}", format!("{} ops", l.ops)));
    }
    println!("{header}");
    for (i, name) in NAMES.iter().enumerate() {
        let mut line = format!("{name:<46}");
        for l in results.iter_mut() {
            let (p50, p99) = l.p(i);
            line.push_str(&format!(" | {:>7.3} / {:>7.3}", ms(p50), ms(p99)));
        }
        println!("{line}");
    }
}

/// Kills the background operations through the API, 1,000 ids per request, and waits for their
/// clients (or the load process) to end.
async fn clean_up(h: &Harness, direct: &mongodb::Client, load: Load) {
    let ids: Vec<String> = current_ops(direct, Some(doc! {"command.millis": 3_600_000_i64}))
        .await
        .iter()
        .filter_map(|d| d.get_i32("opid").ok().map(|n| n.to_string()))
        .collect();
    for chunk in ids.chunks(1000) {
        let (status, _) = h.post(&h.kill_path(), &json!({ "sessions": chunk })).await;
        assert_eq!(status, 200);
    }
    match load {
        Load::Here(_, background) => {
            let stop = background.len();
            let mut lingering = 0;
            for b in background {
                // Each ends with its kill's error; only one still running after 10 s is news.
                if tokio::time::timeout(Duration::from_secs(10), b).await.is_err() {
                    lingering += 1;
                }
            }
            println!("cleaned up {stop} background ops ({lingering} still running after 10 s)");
        }
        Load::Child(mut child) => {
            drop(child.stdin.take());
            match child.wait().await {
                Ok(status) => println!("cleaned up the load process ({status})"),
                Err(e) => eprintln!("the load process could not be waited for: {e}"),
            }
        }
    }
}

fn print_level(level: &mut Level) {
    println!();
    for n in &level.notes {
        println!("{n}");
    }
    for (i, name) in NAMES.iter().enumerate() {
        let count = level.samples[i].len();
        let (p50, p99) = level.p(i);
        println!("{name:<46} n={count:<4} p50={:>8.3} ms  p99={:>8.3} ms", ms(p50), ms(p99));
    }
    let (a50, _) = level.p(1);
    let (d50, _) = level.p(2);
    let (q50, _) = level.p(4);
    println!(
        "  -> limit 100 at p50: API {:.3} ms = {:.2}x the driver's full read; pushdown page {:.3} ms = {:.2}x",
        ms(a50),
        ms(a50) / ms(d50).max(1e-9),
        ms(q50),
        ms(q50) / ms(d50).max(1e-9)
    );
}
