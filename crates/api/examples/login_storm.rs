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
    let mut cmd = std::process::Command::new(&a.binary);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log", "warn", "--health-interval-secs", "0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(std::fs::File::create(dir.path().join("serve.log")).unwrap())
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
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let admin_path = dir.path().join("data/admin.json");
    let t0 = Instant::now();
    while !admin_path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin: Value = serde_json::from_str(&std::fs::read_to_string(&admin_path).unwrap()).unwrap();
    let url = format!("{}/v3/auth/tokens", admin["endpoint"].as_str().unwrap());
    let body = |password: &str| {
        json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
            "name":"admin","password":password,"domain":{"name":admin["domain_name"]}}}},
            "scope":{"project":{"id":admin["project_id"]}}}})
    };

    // RSS sampler.
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(f64, f64)>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let sampler = {
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
    // One warm-up login (first use of the pool), then the baseline.
    let home = client_from([127, 0, 0, 2]);
    let right = admin["password"].as_str().unwrap().to_owned();
    let r = home.post(&url).json(&body(&right)).send().await.unwrap();
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
    let attacker = client_from([127, 0, 0, 1]);
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|i| {
            let (http, url, body) = (attacker.clone(), url.clone(), body(&format!("Wrong-pass-{i}")));
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
        .collect();
    // The real user, from another address, during the storm.
    let mut legit = Vec::new();
    let mut next = storm_start + Duration::from_millis(2500);
    while next < stop {
        tokio::time::sleep_until(next.into()).await;
        let t = Instant::now();
        let status = home.post(&url).json(&body(&right)).send().await.map(|r| r.status().as_u16());
        legit.push((storm_start.elapsed().as_secs_f64(), t.elapsed(), status.ok()));
        next += Duration::from_millis(2500);
    }
    let mut totals = BTreeMap::<String, u64>::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *totals.entry(k).or_default() += v;
        }
    }
    let storm_took = storm_start.elapsed();
    let storm_end = start.elapsed().as_secs_f64();
    tokio::time::sleep(a.after).await;
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();
    let final_rss = rss_mib(pid).unwrap();
    if let Err(e) = child.kill().and_then(|()| child.wait().map(drop)) {
        eprintln!("stopping the server: {e}");
    }

    let s = samples.lock().unwrap();
    let storm_start_s = storm_start.duration_since(start).as_secs_f64();
    let during: Vec<f64> =
        s.iter().filter(|(t, _)| *t >= storm_start_s && *t <= storm_end).map(|x| x.1).collect();
    let peak = s.iter().filter(|(t, _)| *t >= storm_start_s).map(|x| x.1).fold(0.0, f64::max);
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
    for (at, took, status) in &legit {
        println!(
            "correct login from 127.0.0.2 at +{at:.1} s: {status:?} in {:.0} ms",
            took.as_secs_f64() * 1e3
        );
    }
    let worst = legit.iter().map(|l| l.1).max().unwrap_or_default();
    let all_ok = legit.iter().all(|l| l.2 == Some(201));
    println!(
        "goals: rise < 150 MiB: {}; back within 50 MiB after {:?}: {}; correct logins all 201 within 1 s: {} (worst {:.0} ms)",
        peak - baseline < 150.0,
        a.after,
        (final_rss - baseline).abs() < 50.0,
        all_ok && worst < Duration::from_secs(1),
        worst.as_secs_f64() * 1e3
    );
}
