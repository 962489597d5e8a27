//! The client as a new user meets it, against endpoints that misbehave: a canned HTTP server (one
//! answer per path), a port that accepts and never answers, a port nobody listens on, a pipe
//! closed by its reader. Each test runs the real binary and checks its exit code and stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// (status, extra headers, body) per path prefix; a request for anything else gets 404.
type Routes = Vec<(&'static str, u16, Vec<(&'static str, String)>, Value)>;

/// Serves `routes` on a loopback port until the process ends, each answer after `delay`.
fn canned(routes: Routes, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                std::thread::sleep(delay);
                let (status, headers, answer) = routes
                    .iter()
                    .find(|(prefix, ..)| path.starts_with(prefix))
                    .map(|(_, s, h, b)| (*s, h.clone(), b.clone()))
                    .unwrap_or((404, vec![], json!({"error_code": "DBS.900404", "error_msg": "no route"})));
                let text = answer.to_string();
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    text.len()
                );
                for (k, v) in headers {
                    out += &format!("{k}: {v}\r\n");
                }
                out += "\r\n";
                out += &text;
                let mut stream = stream;
                if let Err(e) = stream.write_all(out.as_bytes()) {
                    eprintln!("stream.write_all(out.as_bytes()): {e:?}");
                }
            });
        }
    });
    port
}

fn docplane(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_docplane"));
    c.env("DOCPLANE_CONFIG_DIR", config).env_remove("DOCPLANE_PROFILE").stdin(Stdio::null());
    c
}

fn run(config: &Path, args: &[&str]) -> Output {
    docplane(config).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// A token profile pointing at `port`, written as `login` would.
fn profile(config: &Path, port: u16) {
    std::fs::create_dir_all(config).unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    std::fs::write(
        config.join("profiles.toml"),
        format!(
            "[profiles.default]\nendpoint = \"http://127.0.0.1:{port}\"\nproject_id = \"{PROJECT}\"\nauth = \"token\"\ntoken = \"T\"\nexpires_at = \"{expires}\"\n"
        ),
    )
    .unwrap();
}

fn instances_body(n: usize) -> Value {
    let instances: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("inst{i}"), "name": format!("shop{i}"), "mode": "Single", "port": "27017",
                   "datastore": {"version": "7.0"},
                   "groups": [{"type": "single", "nodes": [{"id": format!("node{i}"), "name": "n", "role": "Primary",
                                "status": "normal", "private_ip": "10.0.0.5"}]}]})
        })
        .collect();
    json!({"instances": instances, "total_count": 3})
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let port = canned(
        vec![("/v3/", 200, vec![], instances_body(3))],
        // The answer comes after the reader has gone.
        Duration::from_millis(300),
    );
    profile(dir.path(), port);
    let mut child = docplane(dir.path())
        .args(["instances", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn tables_show_ids_ports_and_a_true_total() {
    let dir = tempfile::tempdir().unwrap();
    let port = canned(vec![("/v3/", 200, vec![], instances_body(1))], Duration::ZERO);
    profile(dir.path(), port);
    let out = run(dir.path(), &["instances", "list", "--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("inst0") && text.contains("node0"), "{text}");
    assert!(text.contains("10.0.0.5:27017"), "{text}");
    assert!(text.contains("1-1 of 3 instance(s); more with --offset 1"), "{text}");
}

#[test]
fn sessions_show_readable_durations() {
    let dir = tempfile::tempdir().unwrap();
    let body = json!({"sessions": [{"id": "7", "active": true, "type": "command", "cost_time": "125000000",
                                     "operation": "{}", "namespace": "a.b", "plan_summary": "", "client": "1.2.3.4:5",
                                     "description": "conn1", "host": "h"}], "total_count": 1});
    let port = canned(vec![("/v3/", 200, vec![], body)], Duration::ZERO);
    profile(dir.path(), port);
    let out = run(dir.path(), &["sessions", "list", "--node", "n"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RUNNING") && text.contains("2m05s"), "{text}");
    assert!(!text.contains("125000000"), "{text}");
}

#[test]
fn api_errors_print_code_message_and_request_id_once_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let rid = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e";
    let port = canned(
        vec![
            (
                "/v3/0123456789abcdef0123456789abcdef/nodes/down/",
                400,
                vec![("x-request-id", rid.to_string())],
                json!({"error_code": "DBS.301076", "error_msg": "Query session failed: the node is unreachable."}),
            ),
            (
                "/v3/0123456789abcdef0123456789abcdef/nodes/gone/",
                404,
                vec![("x-request-id", "r404".to_string())],
                json!({"error_code": "DBS.200013", "error_msg": "The node does not exist."}),
            ),
            (
                "/v3/0123456789abcdef0123456789abcdef/instances",
                401,
                vec![],
                json!({"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information."}),
            ),
        ],
        Duration::ZERO,
    );
    profile(dir.path(), port);
    let out = run(dir.path(), &["sessions", "list", "--node", "down"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("DBS.301076").count(), 1, "{err}");
    assert_eq!(err.matches("the node is unreachable").count(), 1, "{err}");
    assert_eq!(err.matches(rid).count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = run(dir.path(), &["sessions", "list", "--node", "gone"]);
    assert_eq!(out.status.code(), Some(4), "not found: {}", stderr(&out));
    let out = run(dir.path(), &["instances", "list"]);
    assert_eq!(out.status.code(), Some(3), "auth: {}", stderr(&out));
    let out = run(dir.path(), &["instances", "list", "--profile", "nobody"]);
    assert_eq!(out.status.code(), Some(3), "no profile: {}", stderr(&out));
    assert!(stderr(&out).contains("docplane login --profile nobody"), "{}", stderr(&out));
    let out = run(dir.path(), &["instances", "list", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "usage: {}", stderr(&out));
}

#[test]
fn a_port_that_never_answers_times_out_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = run(
        dir.path(),
        &["login", "--endpoint", &endpoint, "--domain", "d", "--user", "u", "--project-name", "p"]
            .into_iter()
            .chain(["--password", "pw", "--timeout", "1s"])
            .collect::<Vec<_>>(),
    );
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(err.contains("no answer within 1.0s") && err.contains("--timeout"), "{err}");
    assert!(!dir.path().join("profiles.toml").exists(), "nothing saved");
    drop(silent);
}

#[test]
fn a_dead_port_is_unreachable_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    profile(dir.path(), port);
    let out = run(dir.path(), &["instances", "list"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(err.matches(&format!("127.0.0.1:{port}")).count(), 1, "{err}");
}

#[test]
fn login_checks_an_access_key_before_saving_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = canned(
        vec![(
            "/v3/",
            401,
            vec![],
            json!({"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information: signature mismatch."}),
        )],
        Duration::ZERO,
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = run(
        dir.path(),
        &["login", "--endpoint", &endpoint, "--ak", "AK1", "--sk", "wrong", "--project-id", PROJECT],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing saved"), "{}", stderr(&out));
    assert!(!dir.path().join("profiles.toml").exists());
}

#[test]
fn without_a_terminal_a_missing_password_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["login", "--endpoint", "http://127.0.0.1:9", "--domain", "d", "--user", "u", "--project-name", "p"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("DOCPLANE_PASSWORD"), "{}", stderr(&out));
}

#[test]
fn completion_man_page_and_version() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(dir.path(), &["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("sessions"), "{shell}");
    }
    let out = run(dir.path(), &["man"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH docplane"), "{page}");
    let pages = dir.path().join("man");
    let out = run(dir.path(), &["man", "--out-dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for p in ["docplane.1", "docplane-sessions-kill.1", "docplane-instances-register.1"] {
        assert!(pages.join(p).is_file(), "{p}");
    }
    let out = run(dir.path(), &["--version"]);
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with(concat!("docplane ", env!("CARGO_PKG_VERSION"), " (commit ")), "{v}");
}

/// On a terminal (a pty from util-linux's `script`), a missing password is asked for without echo,
/// and the answer is what signs in.
#[test]
fn on_a_terminal_the_password_is_prompted_for() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("util-linux `script` not installed: prompt not tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = json!({"token": {"expires_at": "2099-01-01T00:00:00Z", "project": {"id": PROJECT}}});
    let port = canned(
        vec![("/v3/auth/tokens", 201, vec![("X-Subject-Token", "T1".to_string())], token)],
        Duration::ZERO,
    );
    let bin = env!("CARGO_BIN_EXE_docplane");
    let command = format!(
        "{bin} login --endpoint http://127.0.0.1:{port} --domain acme --user alice --project-name prod"
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DOCPLANE_CONFIG_DIR", dir.path())
        .env_remove("DOCPLANE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"s3cret-typed\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Password for alice@acme:"), "{shown}");
    assert!(!shown.contains("s3cret-typed"), "the password was echoed: {shown}");
    assert!(shown.contains("signed in as alice (acme)"), "{shown}");
    let saved = std::fs::read_to_string(dir.path().join("profiles.toml")).unwrap();
    assert!(saved.contains("token = \"T1\""), "{saved}");
}
