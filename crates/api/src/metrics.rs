//! `GET /metrics`: the process's Prometheus metrics, kept by `prometheus-client` (the official
//! Rust client) in one [`Registry`] per server and encoded in the Prometheus text format 0.0.4
//! (or OpenMetrics text when the scraper's `Accept` asks for `application/openmetrics-text`).
//!
//! What is counted, and where:
//! - HTTP: [`track`] (a layer inside the request id layer) counts every request by method,
//!   route *template* (axum's `MatchedPath`, `unmatched` for the 404 fallback) and status, and
//!   observes its latency by method and route;
//! - kills: the DDS kill handlers (`dds::sessions`, `dds::selector`) count each request by
//!   source (`ids`, `selector`) and outcome once it is known (`killed`, `still_running`,
//!   `unknown`, `failed`, `refused`, `not_recorded`, `dry_run`); the enforcer counts each rule
//!   action by mode and outcome, and its failed passes;
//! - login: the token handler counts attempts by result; the throttle's refusals and the
//!   password pool's rejections are read from docplane-iam at scrape time;
//! - nodes: the health loop counts probes and observes their latency by status, and keeps the
//!   number of nodes per status (aggregate gauges, no node id);
//! - driver: official pool use (pools, open and checked-out connections, checkouts and their
//!   failures, from the driver's CMAP events) and the legacy client's idle connections, read at
//!   scrape time;
//! - store: every store error that reaches an API response (`DBS.900503` and internal errors
//!   from the store) and the background tasks' store failures, by kind and source.
//!
//! Access: `/metrics` is public on the API port, as Prometheus expects (docs/operations.md).
//!
//! **Invariant (bounded label sets):** no label carries an id, a name, an address or any other
//! value a caller chooses: routes are templates from the route table (or `unmatched`), methods
//! are the standard ones (or `other`), statuses are the few the API answers, and every other
//! label takes one of a fixed list of words. So the number of series, and the cost of a scrape,
//! are bounded by the code, whatever the traffic; `tests/metrics.rs` checks it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use docplane_driver::{Driver, NodeStatus};
use docplane_iam::Iam;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;
use crate::state::AppState;

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KillLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    mode: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    kind: &'static str,
    source: &'static str,
}

/// Where a store error was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorSource {
    /// It reached an API response.
    Request,
    /// The node health loop.
    Health,
    /// The rule enforcer.
    Enforcer,
    /// The readiness check.
    Ready,
}

impl StoreErrorSource {
    fn label(self) -> &'static str {
        match self {
            StoreErrorSource::Request => "request",
            StoreErrorSource::Health => "health",
            StoreErrorSource::Enforcer => "enforcer",
            StoreErrorSource::Ready => "ready",
        }
    }
}

/// Marks a response whose error came from the metadata store (`unavailable` or `other`); put in
/// the response extensions by [`ApiError`]'s `IntoResponse`, read by [`track`].
#[derive(Debug, Clone, Copy)]
pub struct StoreFailure(pub &'static str);

/// Latency buckets (seconds), 1-2.5-5 steps: a listing is milliseconds, a kill waits for its
/// verification, a probe is bounded by the driver's timeouts.
const LATENCY_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn probe_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS[1..].iter().copied())
}

/// The server's metrics (one per [`crate::serve`]; cheap to share behind an `Arc`).
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    kills: Family<KillLabels, Counter>,
    rule_actions: Family<RuleLabels, Counter>,
    enforcer_failures: Counter,
    logins: Family<ResultLabels, Counter>,
    probes: Family<StatusLabels, Counter>,
    probe_duration: Family<StatusLabels, Histogram, fn() -> Histogram>,
    nodes: Family<StatusLabels, Gauge>,
    node_status: Mutex<HashMap<String, NodeStatus>>,
    store_errors: Family<StoreLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Values read from docplane-iam and the driver at each scrape.
struct ScrapeTime {
    iam: Arc<Iam>,
    driver: Driver,
}

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeTime").finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ScrapeTime {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let throttle = self.iam.login_throttle();
        counter(
            &mut e,
            "docplane_login_throttle_refusals",
            "Login attempts refused by the failed-login throttle",
            throttle.refusals(),
        )?;
        gauge(
            &mut e,
            "docplane_login_throttle_keys",
            "Keys the failed-login throttle holds",
            throttle.len() as u64,
        )?;
        let pool = self.iam.password_pool().stats();
        gauge(&mut e, "docplane_password_workers", "Password hashing workers", pool.workers as u64)?;
        gauge(&mut e, "docplane_password_jobs_running", "Password hashes running", pool.running as u64)?;
        gauge(
            &mut e,
            "docplane_password_jobs_waiting",
            "Callers waiting for a password worker",
            pool.waiting as u64,
        )?;
        counter(
            &mut e,
            "docplane_password_jobs_rejected",
            "Logins refused because every password worker was busy",
            pool.rejected,
        )?;
        let official = self.driver.official().stats();
        gauge(
            &mut e,
            "docplane_driver_pools",
            "Official driver clients (one pool per node)",
            official.pools as u64,
        )?;
        gauge(
            &mut e,
            "docplane_driver_connections",
            "Official driver connections open, all nodes",
            official.connections,
        )?;
        gauge(
            &mut e,
            "docplane_driver_connections_in_use",
            "Official driver connections checked out, all nodes",
            official.in_use,
        )?;
        counter(
            &mut e,
            "docplane_driver_checkouts",
            "Official driver connection checkouts",
            official.checkouts,
        )?;
        counter(
            &mut e,
            "docplane_driver_checkout_failures",
            "Official driver connection checkouts that failed",
            official.checkout_failures,
        )?;
        gauge(
            &mut e,
            "docplane_driver_legacy_idle_connections",
            "Idle connections the legacy client keeps, all nodes",
            self.driver.legacy().idle_connections() as u64,
        )?;
        Ok(())
    }
}

impl Metrics {
    /// A registry with every docplane metric; scrape-time values come from `iam` and `driver`.
    pub fn new(iam: Arc<Iam>, driver: Driver) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "docplane_http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "docplane_http_request_duration",
            "HTTP request latency by method and route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let kills = Family::<KillLabels, Counter>::default();
        registry.register(
            "docplane_kill_requests",
            "Kill requests (by ids or by selector) by outcome",
            kills.clone(),
        );
        let rule_actions = Family::<RuleLabels, Counter>::default();
        registry.register(
            "docplane_rule_actions",
            "Kill-op rule actions of the enforcer by mode and outcome",
            rule_actions.clone(),
        );
        let enforcer_failures = Counter::default();
        registry.register(
            "docplane_enforcer_pass_failures",
            "Enforcer passes on a node that failed before acting",
            enforcer_failures.clone(),
        );
        let logins = Family::<ResultLabels, Counter>::default();
        registry.register("docplane_login_attempts", "Password logins by result", logins.clone());
        let probes = Family::<StatusLabels, Counter>::default();
        registry.register("docplane_node_probes", "Node health probes by resulting status", probes.clone());
        let probe_duration = Family::<StatusLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            probe_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "docplane_node_probe_duration",
            "Node health probe latency by resulting status",
            Unit::Seconds,
            probe_duration.clone(),
        );
        let nodes = Family::<StatusLabels, Gauge>::default();
        registry.register("docplane_nodes", "Registered nodes by last probed status", nodes.clone());
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "docplane_store_errors",
            "Metadata store errors by kind (unavailable, other) and where they were met",
            store_errors.clone(),
        );
        registry.register_collector(Box::new(ScrapeTime { iam, driver }));
        Self {
            registry,
            http_requests,
            http_duration,
            kills,
            rule_actions,
            enforcer_failures,
            logins,
            probes,
            probe_duration,
            nodes,
            node_status: Mutex::new(HashMap::new()),
            store_errors,
        }
    }

    /// Counts one HTTP request.
    fn http(&self, method: &'static str, route: String, status: u16, elapsed: Duration) {
        self.http_duration
            .get_or_create(&RouteLabels { method, route: route.clone() })
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&HttpLabels { method, route, status }).inc();
    }

    /// Counts a kill request (`source`: `ids` or `selector`) with its outcome.
    pub fn kill(&self, source: &'static str, outcome: &'static str) {
        self.kills.get_or_create(&KillLabels { source, outcome }).inc();
    }

    /// Counts one rule action of the enforcer.
    pub fn rule_action(&self, mode: &str, outcome: &str) {
        let mode = if mode == "observe" { "observe" } else { "kill" };
        self.rule_actions.get_or_create(&RuleLabels { mode, outcome: kill_outcome(outcome) }).inc();
    }

    /// Counts an enforcer pass that failed before acting.
    pub fn enforcer_failure(&self) {
        self.enforcer_failures.inc();
    }

    /// Counts one login attempt by its result.
    pub fn login(&self, result: Result<(), &ApiError>) {
        let result = match result {
            Ok(()) => "success",
            Err(ApiError::InvalidCredentials) => "invalid_credentials",
            Err(ApiError::TooManyRequests { .. }) => "throttled",
            Err(ApiError::BadRequest(_)) => "bad_request",
            Err(_) => "error",
        };
        self.logins.get_or_create(&ResultLabels { result }).inc();
    }

    /// Records one probe of `node_id`: its latency and status, and the per-status node counts.
    pub fn probe(&self, node_id: &str, status: NodeStatus, elapsed: Duration) {
        let label = StatusLabels { status: status.vendor_name() };
        self.probes.get_or_create(&label).inc();
        self.probe_duration.get_or_create(&label).observe(elapsed.as_secs_f64());
        if let Ok(mut m) = self.node_status.lock() {
            m.insert(node_id.to_owned(), status);
            self.set_node_gauges(&m);
        }
    }

    /// Keeps only the nodes of the health loop's current round (unregistered nodes leave the
    /// counts).
    pub fn retain_nodes(&self, current: &dyn Fn(&str) -> bool) {
        if let Ok(mut m) = self.node_status.lock() {
            m.retain(|id, _| current(id));
            self.set_node_gauges(&m);
        }
    }

    fn set_node_gauges(&self, m: &HashMap<String, NodeStatus>) {
        for status in [NodeStatus::Normal, NodeStatus::Abnormal] {
            let n = m.values().filter(|s| **s == status).count();
            self.nodes.get_or_create(&StatusLabels { status: status.vendor_name() }).set(n as i64);
        }
    }

    /// Counts a store error met at `source` (`kind`: `unavailable` or `other`).
    pub fn store_error(&self, source: StoreErrorSource, kind: &'static str) {
        self.store_errors.get_or_create(&StoreLabels { kind, source: source.label() }).inc();
    }

    /// Counts a [`docplane_store::StoreError`] met at `source`.
    pub fn store_error_of(&self, source: StoreErrorSource, e: &docplane_store::StoreError) {
        self.store_error(source, store_kind(e));
    }

    /// The registry in the Prometheus text format 0.0.4.
    pub fn encode_text(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The registry in the OpenMetrics text format (with its `# EOF`).
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The label of a store error's kind.
pub fn store_kind(e: &docplane_store::StoreError) -> &'static str {
    match e {
        docplane_store::StoreError::Unavailable(_) => "unavailable",
        _ => "other",
    }
}

/// A kill outcome as a label: one of the record outcomes, anything else `other`.
pub fn kill_outcome(outcome: &str) -> &'static str {
    match outcome {
        "killed" => "killed",
        "still_running" => "still_running",
        "unknown" => "unknown",
        "failed" => "failed",
        "refused" => "refused",
        "observed" => "observed",
        _ => "other",
    }
}

/// The method as a label (the standard ones; anything else `other`).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The layer that counts every request (see the module docs). The route is axum's matched route
/// template, never the request's path.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    if let Some(StoreFailure(kind)) = resp.extensions().get::<StoreFailure>() {
        metrics.store_error(StoreErrorSource::Request, kind);
    }
    metrics.http(method, route, resp.status().as_u16(), started.elapsed());
    resp
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|m| m.trim().starts_with("application/openmetrics-text")))
}

/// `GET /metrics` (public; see the module docs).
pub async fn metrics_handler(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let (text, content_type) = if wants_openmetrics(&headers) {
        (st.metrics.encode_openmetrics(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        (st.metrics.encode_text(), prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
    };
    match text {
        Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response(),
        Err(e) => ApiError::Internal(format!("encoding the metrics: {e}")).into_response(),
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn outcome_and_method_labels_are_closed_sets() {
        assert_eq!(kill_outcome("killed"), "killed");
        assert_eq!(kill_outcome("node-7 exploded"), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::GET), "GET");
    }

    #[test]
    fn openmetrics_is_chosen_only_when_asked() {
        let mut h = HeaderMap::new();
        assert!(!wants_openmetrics(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(!wants_openmetrics(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5"),
        );
        assert!(wants_openmetrics(&h));
    }
}
