//! HTTP connection limits, enforced below axum: a cap on concurrent connections, a header-read
//! timeout, a keep-alive idle timeout, a body-read timeout and an early 413.
//!
//! hyper 1 (under axum-server 0.7) bounds none of these by default, and its own
//! `header_read_timeout` also ends idle keep-alive connections (its timer starts whenever the
//! connection waits for a request head), so it cannot give the two timeouts separately. So each
//! accepted connection gets a [`ConnGuard`] shared by two wrappers:
//! - [`GuardedIo`] around the socket (below TLS, so a slow handshake counts as a slow head): while
//!   the connection waits for bytes it enforces the deadline of the current phase, and when that
//!   passes it reports end-of-file, so hyper closes the connection without answering;
//! - [`CountingService`] around the connection's service: a request whose head hyper has parsed
//!   is in flight until its response future ends (no deadline: handlers bound their own work, the
//!   body is bounded by [`DeadlineBody`]).
//!
//! The phases: a new connection is *reading a head* (deadline: accept + `header_read_timeout`);
//! with a request in flight there is no deadline; once the last one answered it is *idle*
//! (deadline: `idle_timeout` after the last byte written); the first byte of the next request
//! starts a new head deadline.
//!
//! [`LimitAcceptor`] holds a semaphore with `max_connections` permits: a connection over the cap
//! is closed at once (rather than queued: a queue would hold sockets without bound), and its permit
//! is released when the connection ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Default time a client has to send a complete request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a whole request body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time an idle keep-alive connection stays open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The HTTP limits of [`crate::ApiConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From accepting a connection (or the first byte of a later request) to its complete head.
    pub header_read_timeout: Duration,
    /// From a request's head to the end of its body.
    pub body_read_timeout: Duration,
    /// How long a keep-alive connection with no request in flight stays open.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl HttpLimits {
    /// Refuses limits that would make the server unusable (a zero timeout or cap).
    pub fn validate(&self) -> Result<(), String> {
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head, until the deadline.
    Head(Instant),
    /// This many requests are being served.
    InFlight(usize),
    /// No request in flight; closed at the deadline unless a byte arrives.
    Idle(Instant),
}

/// The state one connection's [`GuardedIo`] and [`CountingService`] share.
#[derive(Debug)]
struct ConnGuard {
    phase: Mutex<Phase>,
    limits: HttpLimits,
}

impl ConnGuard {
    fn with<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the phase itself is always valid.
        let mut phase = self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut phase)
    }

    fn deadline(&self) -> Option<Instant> {
        self.with(|p| match *p {
            Phase::Head(d) | Phase::Idle(d) => Some(d),
            Phase::InFlight(_) => None,
        })
    }

    fn bytes_read(&self) {
        let header = self.limits.header_read_timeout;
        self.with(|p| {
            if let Phase::Idle(_) = p {
                *p = Phase::Head(Instant::now() + header);
            }
        });
    }

    fn bytes_written(&self) {
        let idle = self.limits.idle_timeout;
        self.with(|p| {
            if let Phase::Idle(_) = p {
                *p = Phase::Idle(Instant::now() + idle);
            }
        });
    }

    fn request_started(&self) {
        self.with(|p| {
            *p = match *p {
                Phase::InFlight(n) => Phase::InFlight(n + 1),
                Phase::Head(_) | Phase::Idle(_) => Phase::InFlight(1),
            }
        });
    }

    fn request_ended(&self) {
        let idle = self.limits.idle_timeout;
        self.with(|p| {
            if let Phase::InFlight(n) = *p {
                *p = if n > 1 { Phase::InFlight(n - 1) } else { Phase::Idle(Instant::now() + idle) };
            }
        });
    }
}

/// The socket of one connection, with its phase deadline and its connection permit.
pub struct GuardedIo<I> {
    io: I,
    guard: Arc<ConnGuard>,
    sleep: Pin<Box<Sleep>>,
    expired: bool,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.guard.bytes_read();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let Some(deadline) = this.guard.deadline() else { return Poll::Pending };
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            // End of file: hyper closes the connection (mid-head: without an answer, as for its
            // own header timeout; idle: quietly).
            this.expired = true;
            tracing::debug!("connection closed by the header-read or idle timeout");
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            self.guard.bytes_written();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            self.guard.bytes_written();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connection's service: counts the requests in flight for the connection's phase.
#[derive(Clone)]
pub struct CountingService<S> {
    inner: S,
    guard: Arc<ConnGuard>,
}

/// Ends a request's in-flight count when dropped (answered or cancelled).
struct InFlight(Arc<ConnGuard>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<S, R> tower::Service<R> for CountingService<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.guard.request_started();
        let in_flight = InFlight(self.guard.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(in_flight);
            r
        })
    }
}

/// Sets up hyper for [`GuardedIo`]: hyper polls an idle HTTP/1 connection's socket (and so lets
/// [`GuardedIo`] enforce the idle deadline) only when it has a header-read timeout of its own, so
/// it gets one, as a backstop that never fires first: the header-read plus the idle timeout.
pub fn configure_hyper(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &HttpLimits,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout + limits.idle_timeout);
}

/// The axum-server acceptor that applies [`HttpLimits`] to every connection (see the module docs);
/// TLS, when configured, wraps it.
#[derive(Clone, Debug)]
pub struct LimitAcceptor {
    permits: Arc<Semaphore>,
    limits: HttpLimits,
}

impl LimitAcceptor {
    pub fn new(limits: HttpLimits) -> Self {
        Self { permits: Arc::new(Semaphore::new(limits.max_connections)), limits }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for LimitAcceptor {
    type Stream = GuardedIo<I>;
    type Service = CountingService<S>;
    type Future = std::future::Ready<io::Result<(GuardedIo<I>, CountingService<S>)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::debug!(max = self.limits.max_connections, "connection cap reached; connection closed");
            return std::future::ready(Err(io::Error::other("connection cap reached")));
        };
        let deadline = Instant::now() + self.limits.header_read_timeout;
        let guard = Arc::new(ConnGuard { phase: Mutex::new(Phase::Head(deadline)), limits: self.limits });
        let io = GuardedIo {
            io: stream,
            guard: guard.clone(),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            expired: false,
            _permit: permit,
        };
        std::future::ready(Ok((io, CountingService { inner: service, guard })))
    }
}

/// The error a [`DeadlineBody`] yields when its time is up.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub struct BodyReadTimeout(Duration);

/// A request body that must be complete within a fixed time of the request's head (a total
/// deadline, not a per-chunk one, so a body trickled byte by byte is cut off too).
struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware (outermost, with [`HttpLimits`] and the body limit): answers 413 at once when
/// `Content-Length` exceeds the body limit, before any of the body is read (a client that sent
/// `Expect: 100-continue` never gets the 100), and puts the body-read deadline on every body.
pub async fn request_limits(
    State((body_limit, body_timeout)): State<(usize, Duration)>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let req = if req.body().is_end_stream() {
        req
    } else {
        req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                sleep: Box::pin(tokio::time::sleep(body_timeout)),
                timeout: body_timeout,
            })
        })
    };
    next.run(req).await
}

/// Whether `e` (or any error it wraps) is a [`BodyReadTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    chain_has::<BodyReadTimeout>(e)
}

/// Whether `e` (or any error it wraps) is the body limit of `axum::body::to_bytes`.
pub fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    chain_has::<http_body_util::LengthLimitError>(e)
}

fn chain_has<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}
