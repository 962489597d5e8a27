//! The client commands against a real `docplane up`: login checks access keys, whoami, profile
//! listing without secrets, logout, instances register / unregister, readable tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .env("DOCPLANE_CONFIG_DIR", dir.join("config"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Kills the server if the test panics before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("self.0.kill(): {e:?}");
        }
        if let Err(e) = self.0.wait() {
            eprintln!("self.0.wait(): {e:?}");
        }
    }
}

fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(dir, args, stdin);
    assert!(out.status.success(), "docplane {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn client_commands_against_a_real_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = free_port();
    let mut up = start_up(dir, node);
    let boot: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("docplane-data/bootstrap.json")).unwrap())
            .unwrap();

    login_checks_the_secret_key(dir, &boot);
    whoami_and_profiles_show_no_secrets(dir, &boot);
    instances_register_list_and_unregister(dir, &boot, node);

    // Durations in the sessions table, and the pipe closed by `head` is no panic.
    let sessions = ok(dir, &["sessions", "list", "--node", &field(&boot, "node_id")], None);
    assert!(sessions.starts_with("ID") && sessions.contains("RUNNING"), "{sessions}");

    ok(dir, &["logout", "--profile", "keys"], None);
    let after = ok(dir, &["profiles", "list"], None);
    assert!(!after.contains("keys"), "{after}");
    let out = cli(dir, &["whoami", "--profile", "keys"], None);
    assert_eq!(out.status.code(), Some(3), "logged out");

    let pid = up.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    if let Err(e) = up.0.wait() {
        eprintln!("up.0.wait(): {e:?}");
    }
}

/// `docplane up` in `dir` (the embedded node on port `node`), once its log says it is up.
fn start_up(dir: &Path, node: u16) -> KillOnDrop {
    let api = free_port();
    let log = std::fs::File::create(dir.join("up.log")).unwrap();
    let up = Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .args([
            "up",
            "--api-listen",
            &format!("127.0.0.1:{api}"),
            "--node-listen",
            &format!("127.0.0.1:{node}"),
        ])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut up = KillOnDrop(up);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(dir.join("up.log")).unwrap_or_default().contains("docplane is up") {
        assert!(
            Instant::now() < deadline && up.0.try_wait().unwrap().is_none(),
            "docplane up did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    up
}

/// A string field of bootstrap.json.
fn field(boot: &Value, k: &str) -> String {
    boot[k].as_str().unwrap().to_string()
}

/// A wrong secret key is refused at login and nothing is saved; the right one (from stdin, not
/// the command line) is saved as profile `keys`. Then the bootstrap admin signs in as `default`.
fn login_checks_the_secret_key(dir: &Path, boot: &Value) {
    let (endpoint, project, ak, sk) =
        (field(boot, "endpoint"), field(boot, "project_id"), field(boot, "ak"), field(boot, "sk"));
    let wrong = cli(
        dir,
        &["login", "--profile", "keys", "--endpoint", &endpoint, "--ak", &ak, "--project-id", &project]
            .into_iter()
            .chain(["--password-stdin"])
            .collect::<Vec<_>>(),
        Some("not-the-secret\n"),
    );
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(3), "{err}");
    assert!(err.contains("APIGW.0301") && err.contains("request id"), "{err}");
    assert!(!dir.join("config/profiles.toml").exists(), "a refused key was saved");
    let saved = ok(
        dir,
        &["login", "--profile", "keys", "--endpoint", &endpoint, "--ak", &ak, "--project-id", &project]
            .into_iter()
            .chain(["--password-stdin"])
            .collect::<Vec<_>>(),
        Some(&format!("{sk}\n")),
    );
    assert!(saved.contains("signed in as admin"), "{saved}");
    ok(dir, &["login", "--bootstrap", "docplane-data/bootstrap.json"], None);
}

/// whoami names the user and the kind of credentials (the access key, never the secret); the
/// profile listing holds no secret, in either format.
fn whoami_and_profiles_show_no_secrets(dir: &Path, boot: &Value) {
    let (ak, sk) = (field(boot, "ak"), field(boot, "sk"));
    let me = ok(dir, &["whoami", "-o", "json"], None);
    let me: Value = serde_json::from_str(&me).unwrap();
    assert_eq!((me["user_name"].as_str(), me["auth"].as_str()), (Some("admin"), Some("token")), "{me}");
    let keys = ok(dir, &["whoami", "--profile", "keys"], None);
    assert!(keys.contains(&ak) && !keys.contains(&sk), "{keys}");

    let profiles = ok(dir, &["profiles", "list"], None);
    assert!(
        profiles.contains("default") && profiles.contains("keys") && profiles.contains("aksk"),
        "{profiles}"
    );
    let profiles_json = ok(dir, &["profiles", "list", "-o", "json"], None);
    for secret in [&sk, &field(boot, "password")] {
        assert!(
            !profiles.contains(secret.as_str()) && !profiles_json.contains(secret.as_str()),
            "a secret listed"
        );
    }
}

/// Registers the embedded node (port `node`) a second time under another name, sees it listed
/// with its instance id and host:port, and unregisters it (a second time: exit code 4).
fn instances_register_list_and_unregister(dir: &Path, boot: &Value, node: u16) {
    let root_password =
        field(boot, "node_uri").split(':').nth(2).unwrap().split('@').next().unwrap().to_string();
    let reg = ok(
        dir,
        &[
            "instances",
            "register",
            "--name",
            "again",
            "--seed",
            &format!("127.0.0.1:{node}"),
            "--username",
            "root",
        ]
        .into_iter()
        .chain(["--password-stdin", "-o", "json"])
        .collect::<Vec<_>>(),
        Some(&format!("{root_password}\n")),
    );
    let reg: Value = serde_json::from_str(&reg).unwrap();
    let id = reg["instance"]["id"].as_str().unwrap().to_string();
    let list = ok(dir, &["instances", "list"], None);
    assert!(list.contains(&id) && list.contains(&field(boot, "instance_id")), "{list}");
    assert!(list.contains(&format!("127.0.0.1:{node}")), "{list}");
    assert!(list.lines().last().unwrap().contains("2 instance(s)"), "{list}");
    let page = ok(dir, &["instances", "list", "--limit", "1"], None);
    assert!(page.contains("1-1 of 2 instance(s)"), "{page}");
    ok(dir, &["instances", "unregister", &id], None);
    let gone = cli(dir, &["instances", "unregister", &id], None);
    assert_eq!(gone.status.code(), Some(4), "{}", String::from_utf8_lossy(&gone.stderr));
}
