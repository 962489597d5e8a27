//! The core scenario driven by pymongo 4.x and mongosh 2.x (scripts in `tests/clients/`).
//! CI runs `.ci/setup-python` and `.ci/setup-node` first; if a client is missing these tests fail and
//! name the setup script.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

async fn run_client(program: PathBuf, setup: &str, args: impl FnOnce(String) -> Vec<String>) -> String {
    assert!(program.exists(), "{} is missing: run {setup} first", program.display());
    let n = common::start().await;
    let uri = n.root_uri();
    let args = args(uri);
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking(move || Command::new(program).args(args).output().unwrap()),
    )
    .await
    .expect("client script timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "client failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    n.handle.shutdown().await.unwrap();
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pymongo_core_scenario() {
    let root = repo_root();
    let script = root.join("tests/clients/node_pymongo.py").display().to_string();
    let out = run_client(root.join(".venv/bin/python"), ".ci/setup-python", |uri| vec![script, uri]).await;
    assert!(out.contains("OK pymongo"), "{out}");
    assert!(out.trim_end().ends_with("11601"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pymongo_capped_tailable_streaming_and_hints() {
    let root = repo_root();
    let script = root.join("tests/clients/node_pymongo_streams.py").display().to_string();
    let out = run_client(root.join(".venv/bin/python"), ".ci/setup-python", |uri| vec![script, uri]).await;
    assert!(out.contains("OK pymongo streams"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongosh_core_scenario() {
    let root = repo_root();
    let script = root.join("tests/clients/node_mongosh.js").display().to_string();
    let out = run_client(root.join(".ci/node_modules/.bin/mongosh"), ".ci/setup-node", |uri| {
        vec![uri, "--quiet".into(), "--norc".into(), "--file".into(), script]
    })
    .await;
    assert!(out.contains("OK mongosh"), "{out}");
    assert!(out.trim_end().ends_with("11601"), "{out}");
}
