//! The real `docplane up` binary, started and stopped many times: file modes of everything it
//! creates in a data directory that already existed with mode 0755, and a clean exit (status 0, no
//! panic in the log) on every SIGTERM, with the node driver's pools shut down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every directory under (and including) `dir` and every file in them, with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    out.push((dir.display().to_string(), true, mode(dir)));
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            modes(&p, out);
        } else {
            out.push((p.display().to_string(), false, mode(&p)));
        }
    }
}

/// One start of `docplane up` until it printed "docplane is up", then SIGTERM; returns the log and
/// the time from start to exit.
fn cycle(dir: &Path, api: u16, node: u16, n: usize) -> (String, Duration) {
    let log_path = dir.join(format!("cycle-{n}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .args(["up", "--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--node-listen", &format!("127.0.0.1:{node}")])
        // Health probes every second, so the driver holds a pool to the node when SIGTERM comes.
        .args(["--health-interval-secs", "1"])
        .env("DOCPLANE_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("docplane is up") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cycle {n}: exited early ({status}):\n{text}");
        }
        assert!(Instant::now() < deadline, "cycle {n}: not up in 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the health loop's first probe open the node's pool.
    std::thread::sleep(Duration::from_millis(150));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "cycle {n}: no exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "cycle {n}: exit status {status}:\n{text}");
    (text, started.elapsed())
}

#[test]
fn up_keeps_files_private_and_stops_cleanly_every_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A data directory (and node directory) that already exist, world-readable.
    let data = dir.join("docplane-data");
    std::fs::create_dir_all(data.join("node")).unwrap();
    for d in [&data, &data.join("node")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (api, node) = (free_port(), free_port());
    // About 0.25 s a cycle, so all 50 run every time.
    let cycles: usize = 50;
    let mut slowest = Duration::ZERO;
    let all = Instant::now();
    for n in 0..cycles {
        let (log, took) = cycle(dir, api, node, n);
        slowest = slowest.max(took);
        for bad in ["panicked", "stack backtrace"] {
            assert!(!log.contains(bad), "cycle {n}: {bad:?} in the log:\n{log}");
        }
        if n == 0 {
            let mut found = Vec::new();
            modes(&data, &mut found);
            let names: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
            for want in ["meta.sqlite", "master.key", "bootstrap.json", "users.bson", "journal"] {
                assert!(names.iter().any(|p| p.contains(want)), "{want} not created: {names:?}");
            }
            for (path, is_dir, m) in &found {
                let want = if *is_dir { 0o700 } else { 0o600 };
                assert_eq!(*m, want, "{path}: mode {m:o}, want {want:o}");
            }
        }
    }
    eprintln!(
        "{cycles} start/SIGTERM cycles in {:.1} s (slowest {:.2} s)",
        all.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
}
