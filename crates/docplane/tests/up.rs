//! `docplane up` as a user runs it: the real binary in a temporary directory, the real CLI against it,
//! the official Rust driver as the application whose operation gets killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use serde_json::{Value, json};

const BOOTSTRAP_KEYS: [&str; 12] = [
    "endpoint",
    "project_id",
    "project_name",
    "domain_id",
    "domain_name",
    "user_name",
    "password",
    "ak",
    "sk",
    "instance_id",
    "node_id",
    "node_uri",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Up {
    child: Child,
    dir: PathBuf,
}

impl Up {
    fn start(dir: &Path, api: u16, node: u16) -> Up {
        let log = std::fs::File::create(dir.join(format!("up-{api}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_docplane"))
            .current_dir(dir)
            .args(["up", "--enable-test-commands"])
            .args(["--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--node-listen", &format!("127.0.0.1:{node}")])
            .env("DOCPLANE_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let up = Up { child, dir: dir.to_path_buf() };
        up.wait_ready(api);
        up
    }

    fn wait_ready(&self, api: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let boot = self.dir.join("docplane-data/bootstrap.json");
        while Instant::now() < deadline {
            if boot.exists() && std::net::TcpStream::connect(("127.0.0.1", api)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docplane up not ready in 60 s; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("up-") {
                all += &std::fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        all
    }

    /// SIGTERM, then the exit status within 10 s.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .env("DOCPLANE_CONFIG_DIR", dir.join("config"))
        .args(args)
        .output()
        .unwrap()
}

fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "docplane {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_bootstraps_lists_kills_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (api, node) = (free_port(), free_port());
    let up = Up::start(dir, api, node);

    let boot_path = dir.join("docplane-data/bootstrap.json");
    let boot = bootstrap_file_is_private(&boot_path, &up);

    // The CLI signs in with the bootstrap file and finds the embedded node.
    cli_ok(dir, &["login", "--bootstrap", boot_path.to_str().unwrap()]);
    let node_id = boot["node_id"].as_str().unwrap();
    let instances = cli_ok(dir, &["instances", "list", "-o", "json"]);
    assert!(instances.contains(node_id), "{instances}");

    session_settings_flag_by_flag(dir, boot["instance_id"].as_str().unwrap());
    the_cli_lists_and_kills_a_session(dir, &boot).await;

    // SIGTERM stops both parts cleanly.
    let status = up.terminate();
    assert!(status.success(), "exit status {status}");

    // A second start reuses the data: same project, same node, the old password still works.
    let up = Up::start(dir, api, node);
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&boot_path).unwrap()).unwrap();
    assert_eq!(again, boot);
    cli_ok(dir, &["login", "--bootstrap", boot_path.to_str().unwrap()]);
    let instances: Value = serde_json::from_str(&cli_ok(dir, &["instances", "list", "-o", "json"])).unwrap();
    assert_eq!(instances["total_count"], 1, "no duplicate instance after restart: {instances}");
    assert!(up.terminate().success());

    a_start_on_other_ports_follows_the_move(dir, &boot_path, &boot);
}

/// bootstrap.json: exactly the documented keys, private to the owner; its secrets are never in
/// the log. Answers its contents.
fn bootstrap_file_is_private(boot_path: &Path, up: &Up) -> Value {
    let mode = std::fs::metadata(boot_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "bootstrap.json mode");
    let boot: Value = serde_json::from_str(&std::fs::read_to_string(boot_path).unwrap()).unwrap();
    let mut keys: Vec<&str> = boot.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = BOOTSTRAP_KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
    let log = up.log();
    for secret in ["password", "sk"] {
        let value = boot[secret].as_str().unwrap();
        assert!(!log.contains(value), "{secret} leaked into the log");
    }
    boot
}

/// Session settings: shown, changed flag by flag (each a whole-object put), refused with the
/// API's code or locally before any put.
fn session_settings_flag_by_flag(dir: &Path, instance_id: &str) {
    let settings = |extra: &[&str]| -> Value {
        let mut args = vec!["instances", "settings", "--instance", instance_id, "-o", "json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&cli_ok(dir, &args)).unwrap()
    };
    let shown = cli_ok(dir, &["instances", "settings", "--instance", instance_id]);
    assert!(shown.starts_with("SETTING") && shown.contains("never (the defaults apply)"), "{shown}");
    let s = settings(&["--redact-operations", "on", "--protect-user", "backup", "--protect-app", "nightly"]);
    assert_eq!(
        (&s["redact_operations"], &s["protected_users"], &s["protected_app_names"]),
        (&json!(true), &json!(["backup"]), &json!(["nightly"]))
    );
    let s = settings(&["--protect-user", "app@admin", "--unprotect-user", "backup"]);
    assert_eq!((&s["redact_operations"], &s["protected_users"]), (&json!(true), &json!(["app@admin"])));
    let s = settings(&["--clear-protected"]);
    assert_eq!((&s["protected_users"], &s["protected_app_names"]), (&json!([]), &json!([])));
    assert_eq!(settings(&[])["redact_operations"], true, "a show changes nothing");
    let bad = cli(dir, &["instances", "settings", "--instance", instance_id, "--protect-app", "etl "]);
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: DBS.900030"), "{bad:?}");
    let bad = cli(dir, &["instances", "settings", "--instance", instance_id, "--unprotect-user", "nobody"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not a protected user"));
    let bad = cli(dir, &["instances", "settings", "--instance", "ffffffffffffffffffffffffffffffffin02"]);
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: DBS.200002"), "{bad:?}");
}

/// An application runs a long operation on the node; the CLI lists it (JSON, so the test can
/// find its id, and as a table) and kills it, and the client sees 11601. A bad id is an API error
/// printed as `DBS.xxxxxx: message` with a non-zero exit.
async fn the_cli_lists_and_kills_a_session(dir: &Path, boot: &Value) {
    let node_id = boot["node_id"].as_str().unwrap();
    let client = mongodb::Client::with_uri_str(boot["node_uri"].as_str().unwrap()).await.unwrap();
    let app = client.clone();
    let sleeper = tokio::spawn(async move {
        app.database("admin").run_command(doc! { "sleep": 1, "millis": 60_000 }).await
    });

    let mut opid = None;
    for _ in 0..100 {
        let listed: Value =
            serde_json::from_str(&cli_ok(dir, &["sessions", "list", "--node", node_id, "-o", "json"]))
                .unwrap();
        opid = listed["sessions"].as_array().unwrap().iter().find_map(|s| {
            let op = s["operation"].as_str().unwrap_or_default();
            (s["active"] == true && op.contains("sleep")).then(|| s["id"].as_str().unwrap().to_string())
        });
        if opid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opid = opid.expect("the sleep never appeared in `sessions list`");
    let table = cli_ok(dir, &["sessions", "list", "--node", node_id]);
    assert!(table.starts_with("ID"), "human table expected:\n{table}");
    cli_ok(dir, &["sessions", "kill", "--node", node_id, &opid]);
    let err = tokio::time::timeout(Duration::from_secs(10), sleeper).await.unwrap().unwrap().unwrap_err();
    let code = match *err.kind {
        mongodb::error::ErrorKind::Command(ref c) => c.code,
        ref other => panic!("unexpected error {other:?}"),
    };
    assert_eq!(code, 11601, "the killed client sees Interrupted");

    let bad = cli(dir, &["sessions", "kill", "--node", node_id, "not-a-number"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: DBS.301071"), "{bad:?}");
}

/// A start on other ports keeps the ids and secrets and follows the move: bootstrap.json (still
/// 0600) and the registered node address are updated, so login and the session API keep working.
fn a_start_on_other_ports_follows_the_move(dir: &Path, boot_path: &Path, boot: &Value) {
    let (api2, node2) = (free_port(), free_port());
    let up = Up::start(dir, api2, node2);
    let moved: Value = serde_json::from_str(&std::fs::read_to_string(boot_path).unwrap()).unwrap();
    assert_eq!(moved["endpoint"], format!("http://127.0.0.1:{api2}"));
    assert!(moved["node_uri"].as_str().unwrap().contains(&format!("@127.0.0.1:{node2}/")), "{moved}");
    for key in ["project_id", "node_id", "ak", "sk", "password"] {
        assert_eq!(moved[key], boot[key], "{key} must survive a move");
    }
    let mode = std::fs::metadata(boot_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "rewritten bootstrap.json mode");
    cli_ok(dir, &["login", "--bootstrap", boot_path.to_str().unwrap()]);
    let node_id = boot["node_id"].as_str().unwrap();
    let listed: Value =
        serde_json::from_str(&cli_ok(dir, &["sessions", "list", "--node", node_id, "-o", "json"])).unwrap();
    assert!(listed["total_count"].is_number(), "{listed}");
    assert!(up.terminate().success());
}
