//! Request ids and the access log.
//!
//! Every response carries `X-Request-Id`: the caller's (if it is 1..=128 visible ASCII characters)
//! or a fresh 32-hex id. One structured log line per request (target `docplane::access`): method,
//! path (never the query string), status, latency in microseconds, request id, principal user id.
//! Everything the request logs runs inside a `request` span carrying `request_id` (and method and
//! path), so every log line of a request (e.g. an error's internal detail) names its request id.
//! Invariant: tokens, signatures, passwords and secret keys never reach the log (headers and bodies
//! are not logged at all).

use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id (an extractor; always present behind [`observe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Put into response extensions by the auth layer so the access log can name the caller.
#[derive(Debug, Clone)]
pub struct LoggedPrincipal(pub String);

fn acceptable(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

/// A fresh request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The outermost middleware: request id in, request id out, one access-log line.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let rid = req.headers().get(&X_REQUEST_ID).and_then(acceptable).unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(rid.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %rid, method = %method, path = %path);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let principal = resp.extensions().get::<LoggedPrincipal>().map(|p| p.0.as_str()).unwrap_or("-");
    tracing::info!(
        target: "docplane::access",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
        request_id = %rid,
        principal = %principal,
    );
    resp
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<RequestId>().cloned().unwrap_or_else(|| RequestId(new_request_id())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::middleware::from_fn;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::error::ApiError;

    /// Collects everything the fmt subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn error_log_lines_carry_the_request_id() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = Router::new()
            .route(
                "/k",
                get(|| async {
                    ApiError::KillSessionFailed(crate::error::NodeCause::Other, "killOp failed for 7".into())
                }),
            )
            .layer(from_fn(observe));
        let req =
            Request::builder().uri("/k").header("x-request-id", "rid-audit-42").body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "rid-audit-42");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().find(|l| l.contains("session operation failed")).expect("warning logged");
        assert!(line.contains("rid-audit-42"), "no request id in {line:?}");
        assert!(line.contains("killOp failed for 7"), "{line:?}");
    }
}
