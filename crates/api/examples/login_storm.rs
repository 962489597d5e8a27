//! Login storm benchmark: what a flood of wrong-password logins costs a real `docplane serve`.
//!
//! ```text
//! cargo build --release -p docplane
//! cargo run --release -p docplane-api --example login_storm -- [--binary target/release/docplane]
//!     [--concurrency 64] [--storm-secs 15] [--after-secs 30] [--pool-only]
//! ```
//!
//! Starts the binary on a fresh data directory, samples its RSS (`/proc/<pid>/status`, VmRSS) every
//! 100 ms, then runs `concurrency` clients sending wrong-password logins for the admin from
//! 127.0.0.1 without pause for `storm-secs`, while the admin logs in with the right password from
//! 127.0.0.2 every 2.5 s; then keeps sampling for `after-secs`. Prints the baseline, the peak and
//! the final RSS, the answers the storm got, and the latency of each correct login.
//!
//! `--pool-only` lifts the failed-login throttle (free failures set to a million through the
//! `DOCPLANE_LOGIN_*` variables), so that every attempt reaches the password pool: it shows what the
//! pool bound alone does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args {
    binary: PathBuf,
    concurrency: usize,
    storm: Duration,
    after: Duration,
    pool_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        binary: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/docplane")),
        concurrency: 64,
        storm: Duration::from_secs(15),
        after: Duration::from_secs(30),
        pool_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--binary" => a.binary = PathBuf::from(value()),
            "--concurrency" => a.concurrency = value().parse().unwrap(),
            "--storm-secs" => a.storm = Duration::from_secs(value().parse().unwrap()),
            "--after-secs" => a.after = Duration::from_secs(value().parse().unwrap()),
            "--pool-only" => a.pool_only = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::main]
async fn main() {
    let a = args();
    assert!(a.binary.exists(), "{} not found: cargo build --release -p docplane", a.binary.display());
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_server(&a, dir.path());
    let pid = child.id();
    let admin = wait_for_admin(&dir.path().join("data/admin.json")).await;
    let url = format!("{}/v3/auth/tokens", admin["endpoint"].as_str().unwrap());

    let sampler = RssSampler::start(pid);
    // One warm-up login (first use of the pool), then the baseline.
    let home = client_from([127, 0, 0, 2]);
    let right = admin["password"].as_str().unwrap().to_owned();
    let r = home.post(&url).json(&login_body(&admin, &right)).send().await.unwrap();
    assert_eq!(r.status(), 201, "warm-up login");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = rss_mib(pid).unwrap();
    println!(
        "docplane serve (pid {pid}), {} clients x {:?} of wrong logins{}; baseline RSS {baseline:.1} MiB",
        a.concurrency,
        a.storm,
        if a.pool_only { ", throttle lifted (--pool-only)" } else { "" }
    );

    let storm_start = Instant::now();
    let stop = storm_start + a.storm;
    let tasks = start_storm(&admin, &url, a.concurrency, stop);
    // The real user, from another address, during the storm.
    let legit = correct_logins(&home, &url, &login_body(&admin, &right), storm_start, stop).await;
    let mut totals = BTreeMap::<String, u64>::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *totals.entry(k).or_default() += v;
        }
    }
    let storm_took = storm_start.elapsed();
    let storm_end = sampler.start.elapsed().as_secs_f64();
    tokio::time::sleep(a.after).await;
    let (start, samples) = sampler.stop().await;
    let final_rss = rss_mib(pid).unwrap();
    if let Err(e) = child.kill().and_then(|()| child.wait().map(drop)) {
        eprintln!("stopping the server: {e}");
    }

    let storm_start_s = storm_start.duration_since(start).as_secs_f64();
    let during: Vec<f64> =
        samples.iter().filter(|(t, _)| *t >= storm_start_s && *t <= storm_end).map(|x| x.1).collect();
    let peak = samples.iter().filter(|(t, _)| *t >= storm_start_s).map(|x| x.1).fold(0.0, f64::max);
    let total: u64 = totals.values().sum();
    println!(
        "storm: {total} requests in {:.1} s ({:.0}/s): {totals:?}",
        storm_took.as_secs_f64(),
        total as f64 / storm_took.as_secs_f64()
    );
    println!(
        "RSS: baseline {baseline:.1} MiB, peak {peak:.1} MiB (+{:.1}), mean during storm {:.1} MiB, {:?} after the storm {final_rss:.1} MiB ({:+.1})",
        peak - baseline,
        during.iter().sum::<f64>() / during.len().max(1) as f64,
        a.after,
        final_rss - baseline
    );
    print_correct_logins(&legit, peak - baseline, final_rss - baseline, a.after);
}

/// `docplane serve` on a fresh data directory in `dir` (its stdout in `dir`/serve.log), with the
/// failed-login throttle lifted under `--pool-only`.
fn spawn_server(a: &Args, dir: &std::path::Path) -> std::process::Child {
    let mut cmd = std::process::Command::new(&a.binary);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log", "warn", "--health-interval-secs", "0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(std::fs::File::create(dir.join("serve.log")).unwrap())
        .stderr(std::process::Stdio::inherit());
    if a.pool_only {
        for var in [
            "DOCPLANE_LOGIN_FREE_FAILURES",
            "DOCPLANE_LOGIN_ADDRESS_FREE_FAILURES",
            "DOCPLANE_LOGIN_USER_FREE_FAILURES",
        ] {
            cmd.env(var, "1000000");
        }
    }
    cmd.spawn().unwrap()
}

/// The server's admin.json (endpoint, domain, project and admin password), once it has written it.
async fn wait_for_admin(admin_path: &std::path::Path) -> Value {
    let t0 = Instant::now();
    while !admin_path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    serde_json::from_str(&std::fs::read_to_string(admin_path).unwrap()).unwrap()
}

/// A password login for the admin of admin.json, scoped to its project.
fn login_body(admin: &Value, password: &str) -> Value {
    json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
        "name":"admin","password":password,"domain":{"name":admin["domain_name"]}}}},
        "scope":{"project":{"id":admin["project_id"]}}}})
}

/// The server's RSS every 100 ms, as (seconds since `start`, MiB), until stopped.
struct RssSampler {
    start: Instant,
    samples: Arc<std::sync::Mutex<Vec<(f64, f64)>>>,
    sampling: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let samples = Arc::new(std::sync::Mutex::new(Vec::<(f64, f64)>::new()));
        let sampling = Arc::new(AtomicBool::new(true));
        let start = Instant::now();
        let task = {
            let (samples, sampling) = (samples.clone(), sampling.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::SeqCst) {
                    if let Some(m) = rss_mib(pid) {
                        samples.lock().unwrap().push((start.elapsed().as_secs_f64(), m));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        RssSampler { start, samples, sampling, task }
    }

    /// Stops sampling; the start instant and the samples.
    async fn stop(self) -> (Instant, Vec<(f64, f64)>) {
        self.sampling.store(false, Ordering::SeqCst);
        self.task.await.unwrap();
        let samples = self.samples.lock().unwrap().clone();
        (self.start, samples)
    }
}

/// `concurrency` clients from 127.0.0.1 sending wrong-password logins without pause until `stop`;
/// each answers how many answers of each status (or `error`) it got.
fn start_storm(
    admin: &Value,
    url: &str,
    concurrency: usize,
    stop: Instant,
) -> Vec<tokio::task::JoinHandle<BTreeMap<String, u64>>> {
    let attacker = client_from([127, 0, 0, 1]);
    (0..concurrency)
        .map(|i| {
            let (http, url, body) =
                (attacker.clone(), url.to_owned(), login_body(admin, &format!("Wrong-pass-{i}")));
            tokio::spawn(async move {
                let mut counts = BTreeMap::<String, u64>::new();
                while Instant::now() < stop {
                    let key = match http.post(&url).json(&body).send().await {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(_) => "error".to_owned(),
                    };
                    *counts.entry(key).or_default() += 1;
                }
                counts
            })
        })
        .collect()
}

/// One correct login every 2.5 s until `stop`: (seconds into the storm, latency, status).
async fn correct_logins(
    home: &reqwest::Client,
    url: &str,
    body: &Value,
    storm_start: Instant,
    stop: Instant,
) -> Vec<(f64, Duration, Option<u16>)> {
    let mut legit = Vec::new();
    let mut next = storm_start + Duration::from_millis(2500);
    while next < stop {
        tokio::time::sleep_until(next.into()).await;
        let t = Instant::now();
        let status = home.post(url).json(body).send().await.map(|r| r.status().as_u16());
        legit.push((storm_start.elapsed().as_secs_f64(), t.elapsed(), status.ok()));
        next += Duration::from_millis(2500);
    }
    legit
}

/// Each correct login, then the goals: the RSS `rise` and what is left `after` the storm, and
/// every correct login answered 201 within a second.
fn print_correct_logins(legit: &[(f64, Duration, Option<u16>)], rise: f64, left: f64, after: Duration) {
    for (at, took, status) in legit {
        println!(
            "correct login from 127.0.0.2 at +{at:.1} s: {status:?} in {:.0} ms",
            took.as_secs_f64() * 1e3
        );
    }
    let worst = legit.iter().map(|l| l.1).max().unwrap_or_default();
    let all_ok = legit.iter().all(|l| l.2 == Some(201));
    println!(
        "goals: rise < 150 MiB: {}; back within 50 MiB after {:?}: {}; correct logins all 201 within 1 s: {} (worst {:.0} ms)",
        rise < 150.0,
        after,
        left.abs() < 50.0,
        all_ok && worst < Duration::from_secs(1),
        worst.as_secs_f64() * 1e3
    );
}
