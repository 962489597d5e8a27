//! End-to-end: the vendor's official Python SDKs against an in-process docplane.
//! Runs tests/clients/iam_sdk.py with the venv made by .ci/setup-python.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use docplane_api::{ApiConfig, BootstrapOptions, MasterKey, bootstrap, serve};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_drives_iam() {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run .ci/setup-python first (it creates .venv with huaweicloudsdkiam/core/dds)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let boot = bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
    cfg.sync_interval = Duration::from_millis(200);
    let server = serve(cfg).await.unwrap();
    let endpoint = format!("http://{}", server.local_addr());
    let script = repo().join("tests/clients/iam_sdk.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("DOCPLANE_ENDPOINT", &endpoint)
        .env("DOCPLANE_AK", &boot.access_key)
        .env("DOCPLANE_SK", &boot.secret_key)
        .env("DOCPLANE_PROJECT_ID", &boot.project_id)
        .env("DOCPLANE_PROJECT_NAME", &boot.project_name)
        .env("DOCPLANE_DOMAIN_NAME", &boot.domain_name)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "iam_sdk.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    server.shutdown(Duration::from_secs(2)).await.unwrap();
}
