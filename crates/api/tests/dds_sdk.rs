//! The vendor's Python SDK (huaweicloudsdkdds, AK/SK) against docplane: ListInstances,
//! ListSessions and DeleteSession, with pymongo running the operation that gets killed
//! (`tests/clients/dds_sdk.py`). CI runs `.ci/setup-python` first; without the venv this test fails
//! and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dds_support;

use std::path::PathBuf;
use std::time::Duration;

use dds_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_sdk_lists_and_kills_sessions() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run .ci/setup-python", python.display());
    let h = Harness::start().await;
    let uri = format!(
        "mongodb://{NODE_USER}:{NODE_PASSWORD}@{}/?authSource=admin&directConnection=true",
        h.node_addr
    );
    let child = tokio::process::Command::new(&python)
        .arg(root.join("tests/clients/dds_sdk.py"))
        .args([h.base.as_str(), &h.access_key, &h.secret_key, &h.project_id, &uri])
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(90), child).await.expect("SDK script timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("OK"), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The SDK's kill (and its refused attempt) are audited under the access key's user.
    let audit = wait_audit(&h, "killed").await;
    assert!(audit.iter().any(|a| a["outcome"] == "refused"), "{audit:?}");
    assert!(audit.iter().all(|a| a["access_key"] == h.access_key.as_str()), "{audit:?}");
    h.stop().await;
}
