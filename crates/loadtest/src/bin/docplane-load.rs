//! `docplane-load`: a bounded mixed load against one or more docplane endpoints, from a second process.
//!
//! ```text
//! docplane-load --creds DATA_DIR/bootstrap.json --duration-secs 60 --concurrency 8 \
//!     --mix list-token=4,list-aksk=4,kill-token=1,kill-aksk=1 --watch-pid "$(pgrep -n docplane)" --out run.json
//! ```
//! Kills need operations to kill: the load runs `--sleepers` `{sleep: 1, millis: N}` commands on the
//! node itself (through `node_uri` of the credentials file; the node must allow test commands), and each
//! kill lists the node's sessions and kills one of those sleeps. Every target must be on loopback; the
//! run stops at `--duration-secs` or `--max-requests`, whichever comes first. Prints a summary and, with
//! `--out`, writes it as JSON (figures only: no secret is ever printed).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use docplane_iam::sign;
use docplane_loadtest::creds::Creds;
use docplane_loadtest::mix::{Mix, Op};
use docplane_loadtest::rss::{RssSeries, rss_kib};
use docplane_loadtest::stats::{LatencySummary, OpStats, Outcome, Second};
use docplane_loadtest::target::{loopback_endpoint, loopback_mongodb_uri};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(name = "docplane-load", about = "Bounded mixed load against docplane (loopback only)")]
struct Args {
    /// bootstrap.json of `docplane up`, or a file with the same keys (endpoint, project_id,
    /// domain_name, user_name, password, ak, sk, node_id, node_uri).
    #[arg(long)]
    creds: PathBuf,
    /// Endpoint(s), requests spread round-robin; default: the credentials file's `endpoint`.
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// Node whose sessions are listed and killed; default: the file's `node_id`.
    #[arg(long)]
    node_id: Option<String>,
    /// Where the sleeps run (`mongodb://` URI); default: the file's `node_uri`.
    #[arg(long)]
    node_uri: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Stop after this many requests.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    max_requests: u64,
    /// Requests in flight at once (one worker each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Weighted operations: list-token, list-aksk, kill-token, kill-aksk, login.
    #[arg(long, default_value = "list-token=4,list-aksk=4,kill-token=1,kill-aksk=1")]
    mix: Mix,
    /// Concurrent `sleep` operations kept running on the node for the kills.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(0..=200))]
    sleepers: u64,
    /// How long each sleep lasts if nobody kills it.
    #[arg(long, default_value_t = 20_000)]
    sleep_ms: u64,
    /// Client timeout of one HTTP request.
    #[arg(long, default_value_t = 15_000)]
    timeout_ms: u64,
    /// Sample this process's resident memory every second (repeatable).
    #[arg(long = "watch-pid")]
    watch_pids: Vec<u32>,
    /// A name for this run, copied into the summary.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the summary as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Append `request_id session_id` of every kill answered 200 to this file.
    #[arg(long)]
    kill_log: Option<PathBuf>,
    /// Exit non-zero if more than this many 5xx answers were seen.
    #[arg(long)]
    max_5xx: Option<u64>,
    /// Exit non-zero unless every operation of the mix succeeded at least once.
    #[arg(long)]
    require_ok: bool,
    /// Print the per-second timeline.
    #[arg(long)]
    timeline: bool,
}

#[derive(Clone, Copy)]
enum Auth {
    Token,
    Aksk,
}

struct Shared {
    http: reqwest::Client,
    endpoints: Vec<String>,
    creds: Creds,
    node_id: String,
    token: String,
    started: Instant,
    deadline: Instant,
    max_requests: u64,
    issued: AtomicU64,
    next_endpoint: AtomicUsize,
    mix: Mix,
    kill_log: Option<Mutex<std::fs::File>>,
}

/// What one worker measured.
#[derive(Default)]
struct Local {
    ops: BTreeMap<&'static str, OpStats>,
    timeline: Vec<Second>,
    kills_ok: u64,
    no_candidate: u64,
}

impl Local {
    fn record(&mut self, key: &'static str, at: Duration, took: Duration, outcome: &Outcome) {
        self.ops.entry(key).or_default().record(took, outcome);
        let sec = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        if sec < 100_000 {
            if self.timeline.len() <= sec {
                self.timeline.resize(sec + 1, Second::default());
            }
            self.timeline[sec].record(took, outcome);
        }
    }

    /// Adds another worker's measurements to these: per operation, per second, and the kill counts.
    fn merge(&mut self, other: &Local) {
        for (k, v) in &other.ops {
            self.ops.entry(k).or_default().merge(v);
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), Second::default());
        }
        for (i, s) in other.timeline.iter().enumerate() {
            let t = &mut self.timeline[i];
            t.ok += s.ok;
            t.c4xx += s.c4xx;
            t.c5xx += s.c5xx;
            t.failed += s.failed;
            t.max_ms = t.max_ms.max(s.max_ms);
        }
        self.kills_ok += other.kills_ok;
        self.no_candidate += other.no_candidate;
    }
}

struct Answer {
    outcome: Outcome,
    took: Duration,
    /// When the request was sent, since the start of the run.
    at: Duration,
    body: Option<Value>,
    request_id: Option<String>,
}

impl Shared {
    fn endpoint(&self) -> &str {
        let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        &self.endpoints[i % self.endpoints.len()]
    }

    /// Takes one request from the budget; false once the run is over.
    fn admit(&self) -> bool {
        Instant::now() < self.deadline && self.issued.fetch_add(1, Ordering::Relaxed) < self.max_requests
    }

    async fn send(
        &self,
        auth: Auth,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let at = self.started.elapsed();
        let t = Instant::now();
        let result = self.build(auth, method, path, query, body).send().await;
        let (outcome, body, request_id) = match result {
            Err(e) if e.is_timeout() => (Outcome::Timeout, None, None),
            Err(_) => (Outcome::Transport, None, None),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let rid = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
                match resp.bytes().await {
                    Err(e) if e.is_timeout() => (Outcome::Timeout, None, rid),
                    Err(_) => (Outcome::Transport, None, rid),
                    Ok(bytes) => {
                        let v: Option<Value> = serde_json::from_slice(&bytes).ok();
                        let code = (status >= 400).then(|| {
                            v.as_ref()
                                .and_then(|v| v["error_code"].as_str())
                                .unwrap_or("no-error-code")
                                .to_owned()
                        });
                        (Outcome::Status { status, code }, v, rid)
                    }
                }
            }
        };
        Answer { outcome, took: t.elapsed(), at, body, request_id }
    }

    fn build(
        &self,
        auth: Auth,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: Option<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        let endpoint = self.endpoint();
        let url =
            if query.is_empty() { format!("{endpoint}{path}") } else { format!("{endpoint}{path}?{query}") };
        let payload = body.unwrap_or_default();
        let mut req = self.http.request(method.clone(), &url).header("Content-Type", "application/json");
        match auth {
            Auth::Token => req = req.header("X-Auth-Token", &self.token),
            Auth::Aksk => {
                let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h).to_owned();
                let headers = vec![
                    ("Content-Type".to_owned(), "application/json".to_owned()),
                    ("Host".to_owned(), host),
                    ("X-Project-Id".to_owned(), self.creds.project_id.clone()),
                    ("X-Sdk-Date".to_owned(), sign::format_sdk_date(chrono::Utc::now())),
                ];
                // Signing fails only on a malformed header set, which this fixed set is not; an
                // unsigned request would then be answered 401 and counted as such.
                if let Ok(a) = sign::sign(
                    method.as_str(),
                    path,
                    query,
                    &headers,
                    &payload,
                    &self.creds.ak,
                    self.creds.sk.as_bytes(),
                ) {
                    req = req.header("Authorization", a);
                }
                for (k, v) in headers.iter().filter(|(k, _)| k != "Content-Type" && k != "Host") {
                    req = req.header(k, v);
                }
            }
        }
        if !payload.is_empty() {
            req = req.body(payload);
        }
        req
    }

    fn sessions_path(&self) -> String {
        format!("/v3/{}/nodes/{}/sessions", self.creds.project_id, self.node_id)
    }

    fn login_body(&self) -> Vec<u8> {
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.creds.user_name, "password": self.creds.password,
                "domain": {"name": self.creds.domain_name}}}},
            "scope": {"project": {"id": self.creds.project_id}}}})
        .to_string()
        .into_bytes()
    }
}

/// The ids of the load's own sleeps in a list answer.
fn sleep_candidates(body: &Value) -> Vec<String> {
    body["sessions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|s| s["active"].as_bool() == Some(true))
                .filter(|s| s["operation"].as_str().is_some_and(|o| o.contains("\"sleep\"")))
                .filter_map(|s| s["id"].as_str())
                .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

async fn worker(sh: Arc<Shared>, seed: u64) -> Local {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut local = Local::default();
    let list_query = "offset=0&limit=10";
    let kill_list_query = "limit=100&type=command";
    while sh.admit() {
        let op = sh.mix.pick(rng.gen_range(0..sh.mix.total()));
        let auth = if op.signed() { Auth::Aksk } else { Auth::Token };
        match op {
            Op::ListToken | Op::ListAksk => {
                let a = sh.send(auth, reqwest::Method::GET, &sh.sessions_path(), list_query, None).await;
                local.record(op.name(), a.at, a.took, &a.outcome);
            }
            Op::Login => {
                let a = sh
                    .send(Auth::Token, reqwest::Method::POST, "/v3/auth/tokens", "", Some(sh.login_body()))
                    .await;
                local.record(op.name(), a.at, a.took, &a.outcome);
            }
            Op::KillToken | Op::KillAksk => {
                let list_key = if op.signed() { "kill-aksk:list" } else { "kill-token:list" };
                let a = sh.send(auth, reqwest::Method::GET, &sh.sessions_path(), kill_list_query, None).await;
                local.record(list_key, a.at, a.took, &a.outcome);
                let candidates = a.body.as_ref().map(sleep_candidates).unwrap_or_default();
                if candidates.is_empty() {
                    local.no_candidate += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                if !sh.admit() {
                    break;
                }
                let id = &candidates[rng.gen_range(0..candidates.len())];
                let path = format!("/v3/{}/nodes/{}/session", sh.creds.project_id, sh.node_id);
                let body = json!({ "sessions": [id] }).to_string().into_bytes();
                let k = sh.send(auth, reqwest::Method::POST, &path, "", Some(body)).await;
                local.record(op.name(), k.at, k.took, &k.outcome);
                if matches!(k.outcome, Outcome::Status { status: 200, .. }) {
                    local.kills_ok += 1;
                    if let Some(log) = &sh.kill_log {
                        let line = format!("{} {id}\n", k.request_id.as_deref().unwrap_or("-"));
                        // The kill log is the evidence the crash scripts count: a lost line would
                        // make a figure wrong, so a failed write ends the run.
                        if let Err(e) = log.lock().await.write_all(line.as_bytes()) {
                            eprintln!("docplane-load: writing the kill log failed: {e}");
                            std::process::exit(2);
                        }
                    }
                }
            }
        }
    }
    local
}

#[derive(Default)]
struct SleeperStats {
    finished: AtomicU64,
    killed: AtomicU64,
    errors: AtomicU64,
}

async fn sleepers(
    uri: &str,
    n: u64,
    sleep_ms: u64,
    deadline: Instant,
    stats: Arc<SleeperStats>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut opts = mongodb::options::ClientOptions::parse(uri).await.context("parsing the node URI")?;
    opts.app_name = Some("docplane-load-sleeper".into());
    opts.direct_connection = Some(true);
    opts.max_pool_size = Some(u32::try_from(n + 2).unwrap_or(u32::MAX));
    opts.server_selection_timeout = Some(Duration::from_secs(5));
    let client = mongodb::Client::with_options(opts).context("connecting to the node")?;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, stats) = (client.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            let db = client.database("admin");
            let until = tokio::time::Instant::from_std(deadline);
            loop {
                let cmd = bson::doc! { "sleep": 1, "millis": i64::try_from(sleep_ms).unwrap_or(i64::MAX) };
                tokio::select! {
                    () = tokio::time::sleep_until(until) => return,
                    r = db.run_command(cmd) => match r {
                        Ok(_) => { stats.finished.fetch_add(1, Ordering::Relaxed); }
                        Err(e) => {
                            let killed = matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 11601);
                            if killed {
                                stats.killed.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                        }
                    }
                }
            }
        }));
    }
    Ok(tasks)
}

async fn watch_rss(pids: Vec<u32>, started: Instant, deadline: Instant) -> Vec<RssSeries> {
    let mut series: Vec<RssSeries> = pids.iter().map(|&pid| RssSeries { pid, samples: Vec::new() }).collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < deadline {
        tick.tick().await;
        for s in &mut series {
            if let Some(kib) = rss_kib(s.pid) {
                s.samples.push((started.elapsed().as_secs(), kib));
            }
        }
    }
    series
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let creds = Creds::load(&args.creds)?;
    let raw_endpoints = if args.endpoints.is_empty() {
        vec![creds.endpoint.clone().context("no --endpoint and no endpoint in the credentials file")?]
    } else {
        args.endpoints.clone()
    };
    let endpoints = raw_endpoints.iter().map(|e| loopback_endpoint(e)).collect::<Result<Vec<_>, _>>()?;
    let node_id = args
        .node_id
        .clone()
        .or_else(|| creds.node_id.clone())
        .context("no --node-id and no node_id in the credentials file")?;
    let wants_kills = args.mix.ops().any(Op::is_kill);
    let node_uri = args.node_uri.clone().or_else(|| creds.node_uri.clone());
    if wants_kills && args.sleepers > 0 {
        loopback_mongodb_uri(
            node_uri.as_deref().context("kills need --node-uri (or node_uri in the credentials file)")?,
        )?;
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .connect_timeout(Duration::from_secs(5))
        .user_agent("docplane-load")
        .build()?;

    // One login up front for the token operations (the login operation measures more of them).
    let token = login_token(&http, &endpoints[0], &creds).await?;
    let kill_log = match &args.kill_log {
        Some(p) => Some(Mutex::new(open_kill_log(p)?)),
        None => None,
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let sleeper_stats = Arc::new(SleeperStats::default());
    let sleeper_tasks = match (&node_uri, wants_kills && args.sleepers > 0) {
        (Some(uri), true) => {
            sleepers(uri, args.sleepers, args.sleep_ms, deadline, sleeper_stats.clone()).await?
        }
        _ => Vec::new(),
    };
    if !sleeper_tasks.is_empty() {
        // Let the sleeps start before the first kill looks for them.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sh = Arc::new(Shared {
        http,
        endpoints,
        creds,
        node_id,
        token,
        started,
        deadline,
        max_requests: args.max_requests,
        issued: AtomicU64::new(0),
        next_endpoint: AtomicUsize::new(0),
        mix: args.mix.clone(),
        kill_log,
    });
    let rss = tokio::spawn(watch_rss(args.watch_pids.clone(), started, deadline));
    let workers: Vec<_> =
        (0..args.concurrency).map(|i| tokio::spawn(worker(sh.clone(), 0x5eed_0000 + i))).collect();
    let mut total = Local::default();
    for w in workers {
        total.merge(&w.await.context("a worker panicked")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for t in sleeper_tasks {
        t.abort();
    }
    let rss = rss.await.unwrap_or_default();
    report(&args, sh.endpoints.len(), elapsed, &mut total, &sleeper_stats, &rss)
}

/// Signs in with the credentials file's user and password at `endpoint`; the token (X-Subject-Token).
async fn login_token(http: &reqwest::Client, endpoint: &str, creds: &Creds) -> Result<String> {
    let login = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": creds.user_name, "password": creds.password, "domain": {"name": creds.domain_name}}}},
        "scope": {"project": {"id": creds.project_id}}}});
    let resp = http
        .post(format!("{endpoint}/v3/auth/tokens"))
        .json(&login)
        .send()
        .await
        .with_context(|| format!("logging in at {endpoint}"))?;
    if resp.status().as_u16() != 201 {
        bail!("login at {} answered {}", endpoint, resp.status());
    }
    Ok(resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .context("login answered without X-Subject-Token")?
        .to_owned())
}

/// `--kill-log`: opened for appending, created if missing.
fn open_kill_log(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Prints the run's results (a table per operation, outcomes, kills, memory, optionally the
/// timeline), writes them as JSON to `--out`, and fails when a `--max-5xx` / `--require-ok` limit
/// is broken.
fn report(
    args: &Args,
    n_endpoints: usize,
    elapsed: f64,
    total: &mut Local,
    sleepers: &SleeperStats,
    rss: &[RssSeries],
) -> Result<()> {
    println!(
        "docplane-load {}: {:.1} s, concurrency {}, {} endpoint(s), mix {}",
        args.label,
        elapsed,
        args.concurrency,
        n_endpoints,
        mix_text(&args.mix)
    );
    let (mut all, ops) = print_operations(total, elapsed);
    let lat = all.latency.summary();
    let outcomes: Vec<String> = all.outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("outcomes: {}", outcomes.join(", "));
    let (finished, killed, errors) = (
        sleepers.finished.load(Ordering::Relaxed),
        sleepers.killed.load(Ordering::Relaxed),
        sleepers.errors.load(Ordering::Relaxed),
    );
    println!(
        "kills answered 200: {}; sleeps seen interrupted (11601): {killed}; sleeps finished unkilled: {finished}; sleeper errors: {errors}; kill attempts without a candidate: {}",
        total.kills_ok, total.no_candidate
    );
    let rss_json = print_rss(rss);
    if args.timeline {
        for (i, s) in total.timeline.iter().enumerate() {
            println!(
                "t={i:>4}s ok={:<6} 4xx={:<5} 5xx={:<5} failed={:<5} max={} ms",
                s.ok, s.c4xx, s.c5xx, s.failed, s.max_ms
            );
        }
    }
    let summary = json!({
        "label": args.label, "started_at": chrono::Utc::now().to_rfc3339(), "elapsed_s": elapsed,
        "concurrency": args.concurrency, "endpoints": n_endpoints, "mix": mix_text(&args.mix),
        "requests": all.requests(), "rps": all.requests() as f64 / elapsed, "ok": all.ok, "4xx": all.client_errors,
        "5xx": all.server_errors, "timeouts": all.timeouts, "transport": all.transport_errors,
        "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "max_ms": lat.max_ms, "outcomes": all.outcomes, "ops": ops,
        "kills": {"answered_200": total.kills_ok, "sleeps_interrupted": killed, "sleeps_finished": finished,
                  "sleeper_errors": errors, "no_candidate": total.no_candidate},
        "rss": rss_json, "timeline": total.timeline,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    check_limits(args, total, &all)
}

/// The table of operations: one row per operation of the mix and an `all` row. Returns the
/// operations merged (the `all` row) and each operation's figures as JSON.
fn print_operations(total: &mut Local, elapsed: f64) -> (OpStats, serde_json::Map<String, Value>) {
    let mut all = OpStats::default();
    let mut ops = serde_json::Map::new();
    println!(
        "{:<16} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "operation", "requests", "req/s", "ok", "4xx", "5xx", "failed", "p50 ms", "p99 ms", "max ms"
    );
    for (name, s) in total.ops.iter_mut() {
        all.merge(s);
        let lat = s.latency.summary();
        print_operation_row(name, s, &lat, elapsed);
        ops.insert((*name).to_owned(), json!({
            "requests": s.requests(), "rps": s.requests() as f64 / elapsed, "ok": s.ok, "4xx": s.client_errors,
            "5xx": s.server_errors, "timeouts": s.timeouts, "transport": s.transport_errors,
            "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms, "max_ms": lat.max_ms, "outcomes": s.outcomes,
        }));
    }
    let lat = all.latency.summary();
    print_operation_row("all", &all, &lat, elapsed);
    (all, ops)
}

/// One row of the table of operations (failed: timeouts and transport errors).
fn print_operation_row(name: &str, s: &OpStats, lat: &LatencySummary, elapsed: f64) {
    println!(
        "{:<16} {:>8} {:>8.1} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
        name,
        s.requests(),
        s.requests() as f64 / elapsed,
        s.ok,
        s.client_errors,
        s.server_errors,
        s.timeouts + s.transport_errors,
        ms(lat.p50_ms),
        ms(lat.p99_ms),
        ms(lat.max_ms)
    );
}

/// One line per watched process's resident memory; the series as JSON.
fn print_rss(rss: &[RssSeries]) -> Vec<Value> {
    let mut rss_json = Vec::new();
    for s in rss {
        if let Some(sum) = s.summary() {
            println!(
                "rss pid {}: first {} MiB, early median {} MiB, late median {} MiB, max {} MiB, last {} MiB (late/early {:.3})",
                sum.pid,
                sum.first_kib / 1024,
                sum.early_median_kib / 1024,
                sum.late_median_kib / 1024,
                sum.max_kib / 1024,
                sum.last_kib / 1024,
                sum.late_over_early
            );
            rss_json.push(json!({"summary": sum, "samples": s.samples}));
        } else {
            println!("rss pid {}: no samples (process gone?)", s.pid);
            rss_json.push(json!({"summary": null, "pid": s.pid, "samples": []}));
        }
    }
    rss_json
}

/// `--max-5xx` and `--require-ok`: every limit broken, in one error.
fn check_limits(args: &Args, total: &Local, all: &OpStats) -> Result<()> {
    let mut failures = Vec::new();
    if let Some(max) = args.max_5xx
        && all.server_errors > max
    {
        failures.push(format!("{} 5xx answers (allowed: {max})", all.server_errors));
    }
    if args.require_ok {
        for op in args.mix.ops() {
            if total.ops.get(op.name()).is_none_or(|s| s.ok == 0) {
                failures.push(format!("{op}: no successful request"));
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

fn mix_text(mix: &Mix) -> String {
    mix.ops().map(|o| format!("{}={}", o.name(), mix.weight(o))).collect::<Vec<_>>().join(",")
}
