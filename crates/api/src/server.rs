//! [`serve`]: start the HTTP(S) server in-process; [`bootstrap`]: first-start provisioning.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use docplane_iam::{BootstrapOptions, BootstrapOutput, Iam, IamError, LoginLimits, MasterKey};
use docplane_store::MetaStore;

use crate::limits::{HttpLimits, LimitAcceptor};
use crate::route::{Route, build_router};
use crate::state::AppState;

/// Default request body limit (1 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default period of the node health loop.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// Everything [`serve`] needs.
pub struct ApiConfig {
    /// Address to listen on; port 0 picks a free port (see [`ServerHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Serve HTTPS (rustls) when set.
    pub tls: Option<TlsConfig>,
    pub store: Arc<dyn MetaStore>,
    pub master_key: MasterKey,
    /// Maximum request body in bytes.
    pub body_limit: usize,
    /// How often the IAM caches poll the store's change log (revocation latency across replicas).
    pub sync_interval: Duration,
    /// Timeouts and pool sizes of the node driver (connect, server selection, each operation).
    pub driver: docplane_driver::DriverConfig,
    /// How often registered nodes are probed for status, role and version; `None` disables the loop.
    pub health_interval: Option<Duration>,
    /// Routes added by the binary on top of [`crate::all_routes`] (not in the OpenAPI document).
    pub extra_routes: Vec<Route>,
    /// Header-read, body-read and idle timeouts and the connection cap (see [`crate::limits`]).
    pub limits: HttpLimits,
    /// The password worker pool and the failed-login throttle (`POST /v3/auth/tokens`).
    pub login: LoginLimits,
    /// Kill records: retention and the period of the sweeper that resolves records a crash
    /// left without outcome.
    pub kill_records: crate::dds::kill_records::SweepConfig,
    /// The kill-op rule enforcer (interval, lease); `None` disables it.
    pub enforcer: Option<crate::dds::enforcer::EnforcerConfig>,
}

impl ApiConfig {
    /// Plain HTTP on `listen`, default limits.
    pub fn new(listen: SocketAddr, store: Arc<dyn MetaStore>, master_key: MasterKey) -> Self {
        Self {
            listen,
            tls: None,
            store,
            master_key,
            body_limit: DEFAULT_BODY_LIMIT,
            sync_interval: Duration::from_secs(1),
            driver: docplane_driver::DriverConfig::default(),
            health_interval: Some(DEFAULT_HEALTH_INTERVAL),
            extra_routes: Vec::new(),
            limits: HttpLimits::default(),
            login: LoginLimits::default(),
            kill_records: crate::dds::kill_records::SweepConfig {
                every: crate::dds::kill_records::DEFAULT_KILL_RECORD_SWEEP,
                retention: crate::dds::kill_records::DEFAULT_KILL_RECORD_RETENTION,
            },
            enforcer: Some(crate::dds::enforcer::EnforcerConfig::default()),
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("body_limit", &self.body_limit)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(std::io::Error),
    #[error("identity service: {0}")]
    Iam(#[from] IamError),
    #[error("server: {0}")]
    Server(std::io::Error),
    #[error("openapi: {0}")]
    OpenApi(String),
    #[error("invalid HTTP limits: {0}")]
    Limits(String),
}

/// Stops a running server (cloneable; e.g. for a signal handler).
#[derive(Clone, Debug)]
pub struct ShutdownTrigger(axum_server::Handle);

impl ShutdownTrigger {
    /// Stops accepting connections and lets in-flight requests finish within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.0.graceful_shutdown(Some(grace));
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    sync: tokio::task::JoinHandle<()>,
    health: Option<docplane_driver::HealthLoop>,
    state: AppState,
    /// Resolves kill records left pending by a crash; prunes past retention.
    sweeper: tokio::task::JoinHandle<()>,
    /// Applies the enabled kill-op rules.
    enforcer: Option<crate::dds::enforcer::Enforcer>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state handlers see (store, iam, extensions).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.handle.clone())
    }

    /// Graceful shutdown: stop accepting, wait up to `grace` for in-flight requests.
    pub async fn shutdown(self, grace: Duration) -> Result<(), ServeError> {
        self.handle.graceful_shutdown(Some(grace));
        self.wait().await
    }

    /// Waits until the server stops (after a [`ShutdownTrigger::shutdown`]), then stops the
    /// background tasks and shuts every node driver pool down (the official driver's clients are
    /// shut down explicitly rather than left to their `Drop`, which spawns onto a runtime that may
    /// be going away).
    pub async fn wait(self) -> Result<(), ServeError> {
        let res = self.task.await;
        self.sync.abort();
        self.sweeper.abort();
        if let Some(enforcer) = self.enforcer {
            enforcer.stop().await;
        }
        if let Some(health) = self.health {
            health.stop().await;
        }
        self.state.driver.shutdown(DRIVER_SHUTDOWN_GRACE).await;
        match res {
            Ok(r) => r.map_err(ServeError::Server),
            Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
        }
    }
}

/// How long [`ServerHandle::wait`] lets the driver pools finish in-flight node operations.
const DRIVER_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Builds the full axum app (routes, auth, fallbacks, body limit, request id + access log) for
/// `state`, with the default body-read timeout. Tests may drive it with
/// `tower::ServiceExt::oneshot`.
pub fn app(state: AppState, extra_routes: Vec<Route>) -> Result<Router, ServeError> {
    app_with_limits(state, extra_routes, &HttpLimits::default())
}

/// [`app`] with the request-level parts of `limits` (body-read timeout; the early 413 uses the
/// state's body limit). The connection-level parts are applied by [`serve`]'s acceptor.
pub fn app_with_limits(
    state: AppState,
    extra_routes: Vec<Route>,
    limits: &HttpLimits,
) -> Result<Router, ServeError> {
    let mut routes = crate::all_routes();
    let doc = Arc::new(crate::openapi::document_json(&routes).map_err(ServeError::OpenApi)?);
    routes.push(Route::public(Method::GET, "/openapi.json", move || {
        let doc = doc.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response() }
    }));
    routes.push(Route::public(Method::GET, "/metrics", crate::metrics::metrics_handler));
    routes.push(Route::public(Method::GET, "/health", crate::health::health));
    routes.push(Route::public(Method::GET, "/ready", crate::health::ready));
    routes.extend(extra_routes);
    routes.extend(crate::console::routes());
    let limit = state.body_limit;
    let metrics = state.metrics.clone();
    Ok(build_router(routes, state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state((limit, limits.body_read_timeout), crate::limits::request_limits))
        .layer(from_fn(crate::error::vendor_shape))
        .layer(from_fn_with_state(metrics, crate::metrics::track))
        .layer(from_fn(crate::observe::observe)))
}

/// Starts the server and returns once it is listening.
pub async fn serve(config: ApiConfig) -> Result<ServerHandle, ServeError> {
    config.limits.validate().map_err(ServeError::Limits)?;
    let iam = Iam::with_login_limits(config.store.clone(), &config.master_key, config.login).await?;
    let sync = iam.spawn_sync(config.sync_interval);
    let driver = docplane_driver::Driver::new(config.driver);
    let sessions = docplane_sessions::SessionService::new(Arc::new(driver.clone()), config.store.clone());
    let metrics = Arc::new(crate::metrics::Metrics::new(iam.clone(), driver.clone()));
    let state = AppState {
        store: config.store,
        iam,
        driver,
        sessions,
        body_limit: config.body_limit,
        metrics,
        ready: Arc::default(),
    };
    let router = app_with_limits(state.clone(), config.extra_routes, &config.limits)?;
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let handle = axum_server::Handle::new();
    // With the peer address, which the login throttle keys on.
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let acceptor = LimitAcceptor::new(config.limits);
    let task = match config.tls {
        None => {
            let mut server = axum_server::from_tcp(listener).acceptor(acceptor).handle(handle.clone());
            crate::limits::configure_hyper(server.http_builder(), &config.limits);
            tokio::spawn(async move { server.serve(service).await })
        }
        Some(tls) => {
            // Both rustls providers are compiled in (reqwest brings ring, axum-server aws-lc-rs):
            // pick one explicitly; an error only means a provider is already installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rc = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_pem, &tls.key_pem)
                .await
                .map_err(ServeError::Tls)?;
            // TLS runs over the limited socket, so a slow handshake counts against the header timeout.
            let mut server = axum_server::from_tcp_rustls(listener, rc)
                .map(|tls| tls.acceptor(acceptor))
                .handle(handle.clone());
            crate::limits::configure_hyper(server.http_builder(), &config.limits);
            tokio::spawn(async move { server.serve(service).await })
        }
    };
    tracing::info!(%addr, "docplane API listening");
    let health = config.health_interval.map(|every| crate::dds::health::spawn_health_loop(&state, every));
    let sweeper = crate::dds::kill_records::spawn_kill_record_sweeper(&state, config.kill_records);
    let enforcer = config.enforcer.map(|c| crate::dds::enforcer::spawn_enforcer(&state, c));
    Ok(ServerHandle { addr, handle, task, sync, health, state, sweeper, enforcer })
}

/// First-start provisioning: account, project, admin user with a generated password, admin AK/SK.
/// Idempotent: later calls return the same ids and keys (without the password).
pub async fn bootstrap(
    store: Arc<dyn MetaStore>,
    master_key: &MasterKey,
    opts: &BootstrapOptions,
) -> Result<BootstrapOutput, IamError> {
    let iam = Iam::new(store, master_key).await?;
    iam.bootstrap(opts).await
}
