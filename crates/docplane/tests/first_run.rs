//! A first `docplane up` that fails (a busy API port, a busy node port) leaves nothing that stops the
//! next one: the next start, with the ports free, resumes the bootstrap and comes up, and its
//! credentials work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn up(dir: &Path, api: u16, node: u16, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .env("DOCPLANE_CONFIG_DIR", dir.join("config"))
        .args(["up", "--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--node-listen", &format!("127.0.0.1:{node}")])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// Waits for the child to exit; its status and log.
fn exits(mut child: Child, dir: &Path, log: &str) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(dir.join(log)).unwrap());
        }
        if Instant::now() > deadline {
            if let Err(e) = child.kill() {
                eprintln!("child.kill(): {e:?}");
            }
            panic!("no exit in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the child printed "docplane is up".
fn comes_up(child: &mut Child, dir: &Path, log: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        if text.contains("docplane is up") {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited ({status}) instead of coming up:\n{text}");
        }
        assert!(Instant::now() < deadline, "not up in 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_docplane"))
        .current_dir(dir)
        .env("DOCPLANE_CONFIG_DIR", dir.join("config"))
        .args(args)
        .output()
        .unwrap()
}

/// Kills the server if the test panics before stopping it.
struct KillOnDrop(Child);

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

fn stop(mut child: KillOnDrop) {
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    if let Err(e) = child.0.wait() {
        eprintln!("child.0.wait(): {e:?}");
    }
}

/// Fails a first start with `busy` taken, then starts again with it free and checks that the
/// result is a working docplane.
fn resumes_after(busy_api: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (api, node) = (free_port(), free_port());
    let blocker = TcpListener::bind(("127.0.0.1", if busy_api { api } else { node })).unwrap();
    let (status, log) = exits(up(dir, api, node, "first.log"), dir, "first.log");
    assert!(!status.success(), "started on a busy port:\n{log}");
    assert!(log.contains("resumes this first start"), "{log}");
    assert!(log.contains(if busy_api { "--api-listen" } else { "--node-listen" }), "{log}");
    assert!(dir.join("docplane-data/bootstrap.pending.json").exists());
    drop(blocker);

    // A second failure in between (the same port busy again) changes nothing either.
    let blocker = TcpListener::bind(("127.0.0.1", if busy_api { api } else { node })).unwrap();
    let (status, _) = exits(up(dir, api, node, "second.log"), dir, "second.log");
    assert!(!status.success());
    drop(blocker);

    let mut child = KillOnDrop(up(dir, api, node, "third.log"));
    comes_up(&mut child.0, dir, "third.log");
    assert!(!dir.join("docplane-data/bootstrap.pending.json").exists(), "pending file left behind");
    let login = cli(dir, &["login", "--bootstrap", "docplane-data/bootstrap.json"]);
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    let boot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("docplane-data/bootstrap.json")).unwrap())
            .unwrap();
    // The node's registered credentials work: its sessions can be listed.
    let list = cli(dir, &["sessions", "list", "--node", boot["node_id"].as_str().unwrap()]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    stop(child);
}

#[test]
fn a_first_start_on_a_busy_api_port_is_resumed() {
    resumes_after(true);
}

#[test]
fn a_first_start_on_a_busy_node_port_is_resumed() {
    resumes_after(false);
}
