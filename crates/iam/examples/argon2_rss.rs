//! What argon2 verifications leave resident, by threading and allocation strategy.
//!
//! `cargo run --release -p docplane-iam --example argon2_rss -- <mode> [hashes] [threads]`
//!
//! Runs `hashes` (default 64) wrong-password verifications and prints VmRSS before, at the peak and
//! 2 s after. Modes:
//! - `fresh-threads`: `threads` (default 32) new threads at a time, each verifying with the argon2
//!   crate's own allocation (what `spawn_blocking` under a storm amounts to: the old code);
//! - `pool-crate-alloc`: 2 long-lived threads, the argon2 crate's own allocation;
//! - `pool-ours`: 2 long-lived threads, `docplane_iam::password::verify_password` (working memory
//!   sized so that glibc maps and unmaps it per hash).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use docplane_iam::password;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

fn crate_verify(phc: &str) -> bool {
    Argon2::default().verify_password(b"Wrong-pass-1", &PasswordHash::new(phc).unwrap()).is_ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "pool-ours".into());
    let hashes: usize = args.next().map_or(64, |s| s.parse().unwrap());
    let threads: usize = args.next().map_or(32, |s| s.parse().unwrap());
    let phc = Arc::new(password::hash_password("Right-pass-1").unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_mib();
    let peak = Arc::new(std::sync::Mutex::new(before));
    let done = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while done.load(Ordering::SeqCst) == 0 {
                let m = rss_mib();
                let mut p = peak.lock().unwrap();
                *p = p.max(m);
                drop(p);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t = std::time::Instant::now();
    match mode.as_str() {
        "fresh-threads" => {
            for _ in 0..hashes.div_ceil(threads) {
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        let phc = phc.clone();
                        std::thread::spawn(move || crate_verify(&phc))
                    })
                    .collect();
                hs.into_iter().for_each(|h| assert!(!h.join().unwrap()));
            }
        }
        "pool-crate-alloc" | "pool-ours" => {
            let next = Arc::new(AtomicUsize::new(0));
            let ours = mode == "pool-ours";
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (phc, next) = (phc.clone(), next.clone());
                    std::thread::spawn(move || {
                        while next.fetch_add(1, Ordering::SeqCst) < hashes {
                            let ok = if ours {
                                password::verify_password("Wrong-pass-1", &phc)
                            } else {
                                crate_verify(&phc)
                            };
                            assert!(!ok);
                        }
                        // Long-lived workers: keep the thread (and its arena) alive while measuring.
                        std::thread::sleep(Duration::from_secs(3));
                    })
                })
                .collect();
            while next.load(Ordering::SeqCst) < hashes + 2 {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(300));
            let mid = rss_mib();
            done.store(1, Ordering::SeqCst);
            sampler.join().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            let after = rss_mib();
            let peak = *peak.lock().unwrap();
            println!(
                "{mode}: {hashes} verifications in {:.2} s; RSS before {before:.1} MiB, peak {peak:.1} (+{:.1}), \
                 right after {mid:.1} ({:+.1}), 2 s later with the workers alive {after:.1} ({:+.1})",
                t.elapsed().as_secs_f64() - 0.3,
                peak - before,
                mid - before,
                after - before
            );
            hs.into_iter().for_each(|h| h.join().unwrap());
            return;
        }
        other => panic!("unknown mode {other}"),
    }
    let took = t.elapsed();
    done.store(1, Ordering::SeqCst);
    sampler.join().unwrap();
    let mid = rss_mib();
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_mib();
    let peak = *peak.lock().unwrap();
    println!(
        "{mode}: {hashes} verifications in {:.2} s; RSS before {before:.1} MiB, peak {peak:.1} (+{:.1}), right after {mid:.1} ({:+.1}), 2 s later {after:.1} ({:+.1})",
        took.as_secs_f64(),
        peak - before,
        mid - before,
        after - before
    );
}
