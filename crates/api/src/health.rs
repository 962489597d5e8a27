//! `GET /health` (liveness) and `GET /ready` (readiness), for load balancers and orchestrators.
//!
//! - `/health` answers `200 {"status":"ok"}` whenever the process serves HTTP: it reads nothing,
//!   so a store or node outage never makes a load balancer restart a healthy process.
//! - `/ready` asks the metadata store one cheap query (`MetaStore::ping`, `SELECT 1`) within
//!   [`READY_TIMEOUT`]: `200 {"status":"ready","store":"<backend>"}` when it answers, else `503
//!   {"status":"unavailable","reason":"..."}` (the reason says the store did not answer or did
//!   not answer in time; the database's own error text goes only to the log).
//!
//! Both are public and never throttled (only the connection cap and header timeouts of
//! [`crate::limits`] apply, as to every request). A `/ready` costs one pooled query and is bounded
//! by the timeout; concurrent calls share the answer of a check that is already running (a
//! single-flight), so a burst of probes sends one query to the store.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Mutex;

use crate::metrics::StoreErrorSource;
use crate::state::AppState;

/// How long `/ready` waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The single-flight of `/ready` checks: the last answer and when it was computed.
#[derive(Debug, Default)]
pub struct ReadyGate {
    last: Mutex<Option<(tokio::time::Instant, Result<(), String>)>>,
}

/// How long a computed readiness answer is reused by calls that waited for it.
const SHARE_WINDOW: Duration = Duration::from_millis(100);

impl ReadyGate {
    async fn check(&self, st: &AppState) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let mut last = self.last.lock().await;
        // A check finished while this call waited for the lock: share its answer.
        if let Some((at, answer)) = last.as_ref()
            && *at >= started
            && at.elapsed() < SHARE_WINDOW
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(READY_TIMEOUT, st.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the metadata store failed");
                st.metrics.store_error_of(StoreErrorSource::Ready, &e);
                Err(format!("the metadata store ({}) did not answer", st.store.backend()))
            }
            Err(_) => {
                tracing::warn!(timeout = ?READY_TIMEOUT, "readiness: the metadata store did not answer in time");
                st.metrics.store_error(StoreErrorSource::Ready, "unavailable");
                Err(format!(
                    "the metadata store ({}) did not answer within {} ms",
                    st.store.backend(),
                    READY_TIMEOUT.as_millis()
                ))
            }
        };
        *last = Some((tokio::time::Instant::now(), answer.clone()));
        answer
    }
}

/// `GET /health`: liveness.
pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /ready`: readiness (the store answers).
pub async fn ready(State(st): State<AppState>) -> Response {
    let gate: Arc<ReadyGate> = st.ready.clone();
    match gate.check(&st).await {
        Ok(()) => Json(json!({"status": "ready", "store": st.store.backend()})).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "reason": reason})))
                .into_response()
        }
    }
}
