//! Bounded login cost over real sockets: concurrent wrong logins never run more password hashes
//! at once than the pool has workers (the excess gets 429 `DBS.280443` with `Retry-After`), and
//! failed logins are throttled per user and source address with growing delays that reset on
//! success, without touching the same user logging in from another address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use docplane_api::{ApiConfig, BootstrapOptions, BootstrapOutput, MasterKey, ServerHandle, bootstrap, serve};
use docplane_iam::{Limit, LoginLimits, PoolConfig, ThrottleConfig};
use serde_json::{Value, json};

struct Env {
    _dir: tempfile::TempDir,
    server: ServerHandle,
    boot: BootstrapOutput,
    base: String,
}

async fn start(login: LoginLimits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let boot = bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
    cfg.health_interval = None;
    cfg.login = login;
    let server = serve(cfg).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    Env { _dir: dir, server, boot, base }
}

/// A client whose connections come from `ip` (any 127.x address is local on Linux).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::from(ip))).build().unwrap()
}

fn body(e: &Env, user: &str, password: &str) -> Value {
    json!({"auth":{"identity":{"methods":["password"],"password":{"user":{
        "name":user,"password":password,"domain":{"name":"docplane"}}}},
        "scope":{"project":{"id":e.boot.project_id}}}})
}

/// (status, Retry-After, body) of one login.
async fn login(http: &reqwest::Client, e: &Env, user: &str, password: &str) -> (u16, Option<u64>, Value) {
    let r =
        http.post(format!("{}/v3/auth/tokens", e.base)).json(&body(e, user, password)).send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let body = if status == 201 { Value::Null } else { r.json().await.unwrap() };
    (status, retry, body)
}

/// No throttling to speak of: only the pool bounds the work.
fn pool_only(workers: usize, queue_len: usize, wait: Duration) -> LoginLimits {
    let lenient = Limit { free_failures: 1_000_000, max_delay: Duration::from_secs(1) };
    LoginLimits {
        pool: PoolConfig { workers, queue_len, queue_wait: wait },
        throttle: ThrottleConfig {
            user_at_address: lenient,
            address: lenient,
            user: lenient,
            ..ThrottleConfig::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_logins_never_exceed_the_pool_and_the_excess_gets_429() {
    let e = start(pool_only(2, 4, Duration::from_millis(300))).await;
    let http = client_from([127, 0, 0, 1]);
    // Half with a wrong password, half for a user that does not exist.
    let storm: Vec<_> = (0..32)
        .map(|i| {
            let (http, user) = (http.clone(), if i % 2 == 0 { "admin" } else { "nobody" });
            let req = http.post(format!("{}/v3/auth/tokens", e.base)).json(&body(&e, user, "Wrong-pass-1"));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (status, retry, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let (mut unauthorized, mut busy) = (Vec::new(), 0);
    for t in storm {
        let (status, retry, body) = t.await.unwrap();
        match status {
            401 => unauthorized.push(body),
            429 => {
                busy += 1;
                assert_eq!(body["error_code"], "DBS.280443", "{body}");
                assert_eq!(retry.as_deref(), Some("1"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let stats = e.server.state().iam.password_pool().stats();
    assert_eq!(stats.workers, 2);
    assert!(stats.peak_running <= 2, "{stats:?}");
    assert!(busy > 0 && !unauthorized.is_empty(), "401: {}, 429: {busy}", unauthorized.len());
    assert_eq!(stats.rejected, busy, "every 429 came from the pool: {stats:?}");
    // Wrong password and unknown user: one answer.
    assert!(unauthorized.windows(2).all(|w| w[0] == w[1]), "{unauthorized:?}");
    assert_eq!(unauthorized[0]["error_code"], "DBS.900002");
    // Once the storm is over the pool serves again.
    let (s, _, _) = login(&http, &e, "admin", e.boot.admin_password.as_deref().unwrap()).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn failed_logins_wait_longer_each_time_reset_on_success_and_spare_other_addresses() {
    let limits = LoginLimits {
        throttle: ThrottleConfig {
            user_at_address: Limit { free_failures: 2, max_delay: Duration::from_secs(60) },
            ..ThrottleConfig::default()
        },
        ..LoginLimits::default()
    };
    let e = start(limits).await;
    let (attacker, home) = (client_from([127, 0, 0, 1]), client_from([127, 0, 0, 2]));
    let right = e.boot.admin_password.clone().unwrap();
    let hashes = || e.server.state().iam.password_pool().stats().completed;

    assert_eq!(login(&attacker, &e, "admin", "Wrong-pass-1").await.0, 401);
    assert_eq!(login(&attacker, &e, "admin", "Wrong-pass-2").await.0, 401);
    // Third attempt: refused at once, without a hash, even with the right password.
    let before = hashes();
    let (s, retry, b) = login(&attacker, &e, "admin", &right).await;
    assert_eq!((s, retry, b["error_code"].as_str()), (429, Some(1), Some("DBS.280443")));
    assert_eq!(hashes(), before, "a throttled attempt computes no hash");
    // The real user from another address is not affected.
    assert_eq!(login(&home, &e, "admin", &right).await.0, 201);

    // After the wait, one more failure doubles it.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(login(&attacker, &e, "admin", "Wrong-pass-3").await.0, 401);
    let (s, retry, _) = login(&attacker, &e, "admin", "Wrong-pass-4").await;
    assert_eq!((s, retry), (429, Some(2)));
    tokio::time::sleep(Duration::from_millis(2050)).await;
    // A success resets: two free failures again, then the first delay again.
    assert_eq!(login(&attacker, &e, "admin", &right).await.0, 201);
    assert_eq!(login(&attacker, &e, "admin", "Wrong-pass-5").await.0, 401);
    assert_eq!(login(&attacker, &e, "admin", "Wrong-pass-6").await.0, 401);
    assert_eq!(login(&attacker, &e, "admin", "Wrong-pass-7").await.1, Some(1));
    // An unknown user is throttled exactly like a real one (nothing tells them apart).
    assert_eq!(login(&attacker, &e, "ghost", "Wrong-pass-1").await.0, 401);
    assert_eq!(login(&attacker, &e, "ghost", "Wrong-pass-2").await.0, 401);
    assert_eq!(login(&attacker, &e, "ghost", "Wrong-pass-3").await.1, Some(1));
}
