//! The server subcommands: `node`, `serve` and `up`. Each resolves its settings (flags > DOCPLANE_* >
//! TOML file > defaults), starts the library servers, and waits for Ctrl-C or SIGTERM to shut them down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::info;

use crate::config::{self, FileConfig};
use crate::{DriverArgs, HttpArgs, LogFormat, LoginLimitArgs, NodeArgs, ServerCommon};

fn init_tracing(common: &ServerCommon) {
    let filter = tracing_subscriber::EnvFilter::try_new(&common.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    // A second init (tests calling twice) is harmless: keep the first subscriber.
    let _ = match common.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves the data directory and creates it private to the owner (it holds keys and credentials).
fn data_dir(common: &ServerCommon, file: &FileConfig) -> Result<PathBuf> {
    let dir = common
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    create_private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` mode 0700, or makes an existing one 0700 (whatever its prior mode); refuses to
/// start when that is impossible (e.g. the directory belongs to another user) or it is not a
/// directory.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    anyhow::ensure!(dir.is_dir(), "the data directory {} is not a directory", dir.display());
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| {
        format!(
            "cannot make the data directory {} private (mode 0700); it holds keys and credentials",
            dir.display()
        )
    })?;
    Ok(())
}

/// Makes an existing file owner-only (0600); a missing file is fine.
fn tighten_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot make {} private (mode 0600)", path.display())),
    }
}

/// The SQLite database file a store location names, if it names one on disk (the rules of
/// `docplane_store::open`).
fn sqlite_file(location: &str) -> Option<PathBuf> {
    if location.is_empty() || location.contains("://") || location.starts_with("sqlite:") {
        return None;
    }
    let p = Path::new(location);
    Some(if p.is_dir() { p.join("docplane.db") } else { p.to_path_buf() })
}

/// Creates the SQLite file 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files
/// the database file's mode) and makes existing ones 0600.
fn prepare_sqlite_file(db: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)
        .with_context(|| format!("creating {}", db.display()))?;
    let name = db.as_os_str().to_string_lossy();
    for p in [db.to_path_buf(), PathBuf::from(format!("{name}-wal")), PathBuf::from(format!("{name}-shm"))] {
        tighten_file(&p)?;
    }
    Ok(())
}

/// Resolves when the process receives Ctrl-C or SIGTERM.
pub async fn shutdown_signal() -> Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; Ok("SIGINT") }
        _ = term.recv() => Ok("SIGTERM"),
    }
}

pub async fn node(args: NodeArgs) -> Result<()> {
    init_tracing(&args.common);
    let file = FileConfig::load(args.common.config.as_deref())?;
    let dir = data_dir(&args.common, &file)?;
    let default = config::addr(None, file.node.listen, config::DEFAULT_NODE_LISTEN)?;
    let bind =
        std::net::SocketAddr::new(args.bind.unwrap_or(default.ip()), args.port.unwrap_or(default.port()));
    let tuning = config::node_tuning(args.sync_every_write, &file.node);
    let node_config = docplane_node::NodeConfig {
        bind,
        data_dir: Some(dir.join("node")),
        enable_test_commands: args.enable_test_commands || file.node.enable_test_commands.unwrap_or(false),
        auth: !(args.no_auth || file.node.no_auth.unwrap_or(false)),
        root_user: args.root_user.zip(args.root_password),
        sync_every_write: tuning.sync_every_write,
        unauthenticated_idle_timeout: tuning.unauthenticated_idle_timeout,
        idle_timeout: tuning.idle_timeout,
        ..Default::default()
    };
    let handle = docplane_node::Node::start(node_config).await.context("starting the node")?;
    info!(addr = %handle.local_addr(), data_dir = %dir.display(), "node ready");
    let signal = shutdown_signal().await?;
    info!(signal, "shutting down");
    handle.shutdown().await.context("stopping the node")?;
    Ok(())
}

/// The metadata store location: `--store`, the file's `[api] store`, else `DATA_DIR/meta.sqlite`.
fn store_location(flag: Option<String>, file: &FileConfig, dir: &Path) -> String {
    flag.or_else(|| file.api.store.clone())
        .unwrap_or_else(|| dir.join("meta.sqlite").to_string_lossy().into_owned())
}

/// Opens the store and the master key and builds the API configuration (without starting it).
async fn api_config(
    dir: &Path,
    listen: std::net::SocketAddr,
    store: &str,
    tls: Option<(PathBuf, PathBuf)>,
    (driver, http): (&DriverArgs, &HttpArgs),
    login_limits: &LoginLimitArgs,
    file: &FileConfig,
) -> Result<docplane_api::ApiConfig> {
    let login = config::login_limits(login_limits, &file.api)?;
    let master_key = docplane_api::MasterKey::load_or_create(dir).context("loading the master key")?;
    // Created 0600 by the loader; one left by an older version is made 0600 too.
    tighten_file(&dir.join(docplane_iam::keys::MASTER_KEY_FILE))?;
    if let Some(db) = sqlite_file(store) {
        prepare_sqlite_file(&db)?;
    }
    let store = docplane_store::open(store).await.context("opening the metadata store")?;
    let mut cfg = docplane_api::ApiConfig::new(listen, store, master_key);
    cfg.tls = tls.map(|(cert_pem, key_pem)| docplane_api::TlsConfig { cert_pem, key_pem });
    if let Some(ms) = driver.node_connect_timeout_ms.or(file.api.node_connect_timeout_ms) {
        cfg.driver.connect_timeout = Duration::from_millis(ms);
        cfg.driver.server_selection_timeout =
            cfg.driver.server_selection_timeout.max(Duration::from_millis(ms));
    }
    if let Some(ms) = driver.node_operation_timeout_ms.or(file.api.node_operation_timeout_ms) {
        cfg.driver.operation_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = driver.kill_verify_deadline_ms.or(file.api.kill_verify_deadline_ms) {
        anyhow::ensure!(ms > 0, "kill_verify_deadline_ms must be > 0");
        cfg.driver.kill_verify_timeout = Duration::from_millis(ms);
    }
    if let Some(days) = driver.kill_record_retention_days.or(file.api.kill_record_retention_days) {
        anyhow::ensure!(days > 0, "kill_record_retention_days must be > 0");
        cfg.kill_records.retention = Duration::from_secs(days.saturating_mul(24 * 3600));
    }
    if let Some(secs) = driver.kill_record_sweep_secs.or(file.api.kill_record_sweep_secs) {
        anyhow::ensure!(secs > 0, "kill_record_sweep_secs must be > 0");
        cfg.kill_records.every = Duration::from_secs(secs);
    }
    if let Some(ms) = driver.enforce_interval_ms.or(file.api.enforce_interval_ms) {
        cfg.enforcer =
            (ms > 0).then(|| docplane_api::dds::enforcer::EnforcerConfig::every(Duration::from_millis(ms)));
    }
    if let Some(secs) = driver.health_interval_secs.or(file.api.health_interval_secs) {
        cfg.health_interval = (secs > 0).then(|| Duration::from_secs(secs));
    }
    cfg.limits = http_limits(http, file)?;
    cfg.login = login;
    Ok(cfg)
}

/// The HTTP limits: flags (and their DOCPLANE_* variables) over the file's `[api]` keys over the
/// defaults. Zero is refused rather than read as "no limit".
fn http_limits(http: &HttpArgs, file: &FileConfig) -> Result<docplane_api::HttpLimits> {
    let mut limits = docplane_api::HttpLimits::default();
    let ms = |flag: Option<u64>, key: Option<u64>, into: &mut Duration| {
        if let Some(v) = flag.or(key) {
            *into = Duration::from_millis(v);
        }
    };
    ms(http.header_read_timeout_ms, file.api.header_read_timeout_ms, &mut limits.header_read_timeout);
    ms(http.body_read_timeout_ms, file.api.body_read_timeout_ms, &mut limits.body_read_timeout);
    ms(http.idle_timeout_ms, file.api.idle_timeout_ms, &mut limits.idle_timeout);
    if let Some(n) = http.max_connections.or(file.api.max_connections) {
        limits.max_connections = n;
    }
    limits.validate().map_err(|e| anyhow::anyhow!("HTTP limits: {e}"))?;
    Ok(limits)
}

pub async fn serve(args: crate::ServeArgs) -> Result<()> {
    init_tracing(&args.common);
    let file = FileConfig::load(args.common.config.as_deref())?;
    let dir = data_dir(&args.common, &file)?;
    let listen = config::addr(args.listen, file.api.listen, config::DEFAULT_API_LISTEN)?;
    let store = store_location(args.store, &file, &dir);
    let tls = match (args.tls_cert.or(file.api.tls_cert.clone()), args.tls_key.or(file.api.tls_key.clone())) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate and a key"),
    };
    let cfg =
        api_config(&dir, listen, &store, tls, (&args.driver, &args.http), &args.login_limits, &file).await?;
    let (meta, master_key) = (cfg.store.clone(), cfg.master_key.clone());
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let handle = docplane_api::serve(cfg).await.context("starting the API")?;
    let endpoint = format!("{scheme}://{}", connectable(handle.local_addr()));
    // Every replica runs the idempotent bootstrap; only the one that creates the account learns the
    // admin password, and writes it to DATA_DIR/admin.json (mode 0600).
    let boot = docplane_api::bootstrap(meta, &master_key, &docplane_api::BootstrapOptions::default())
        .await
        .context("bootstrapping the account")?;
    if let Some(password) = boot.admin_password {
        let path = dir.join("admin.json");
        write_private_json(
            &path,
            &serde_json::json!({
                "endpoint": endpoint, "project_id": boot.project_id, "project_name": boot.project_name,
                "domain_id": boot.domain_id, "domain_name": boot.domain_name, "user_name": boot.admin_name,
                "password": password, "ak": boot.access_key, "sk": boot.secret_key,
            }),
        )?;
        info!(file = %path.display(), "first start: account, project, admin user and access key created");
    }
    info!(addr = %handle.local_addr(), "control plane ready");
    let signal = shutdown_signal().await?;
    info!(signal, "shutting down");
    handle.shutdown(Duration::from_secs(5)).await.context("stopping the API")?;
    Ok(())
}

/// `DATA_DIR/bootstrap.json`: what `docplane up` created on first start, for people and scripts.
/// Exactly these keys; written once, mode 0600.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapFile {
    endpoint: String,
    project_id: String,
    project_name: String,
    domain_id: String,
    domain_name: String,
    user_name: String,
    password: String,
    ak: String,
    sk: String,
    instance_id: String,
    node_id: String,
    node_uri: String,
}

const EMBEDDED_ROOT_USER: &str = "root";
const EMBEDDED_INSTANCE_NAME: &str = "embedded";

fn random_password() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
}

/// A loopback address stands in for a wildcard bind when the address is used to connect.
fn connectable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

fn write_private_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // A stale temporary file keeps its old mode through `open`: set it.
    f.set_permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))?;
    f.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The root credentials inside a `mongodb://user:password@host/...` URI written by `up`.
fn uri_credentials(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("mongodb://")?;
    let (userinfo, _) = rest.split_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `up`: the embedded node and the control plane in one process. On the first start it bootstraps
/// the account, registers the node and writes bootstrap.json; later starts reuse that file. Then it
/// waits for Ctrl-C or SIGTERM and stops both.
pub async fn up(args: crate::UpArgs) -> Result<()> {
    init_tracing(&args.common);
    let file = FileConfig::load(args.common.config.as_deref())?;
    let dir = data_dir(&args.common, &file)?;
    let api_listen = config::addr(args.api_listen, file.api.listen, config::DEFAULT_API_LISTEN)?;
    let node_listen = config::addr(args.node_listen, file.node.listen, config::DEFAULT_NODE_LISTEN)?;
    let files = UpFiles { boot: dir.join("bootstrap.json"), pending: dir.join(PENDING_FILE) };
    let existing = read_bootstrap(&files.boot)?;

    // The node's root user: generated on first start; later starts pass the same one again, which the
    // node creates only if it is missing (e.g. a wiped node directory). Until the first start has
    // completed, its secrets live in bootstrap.pending.json, written before anything else, so a
    // first start that fails anywhere (a busy port, a crash) is resumed by the next one with the
    // same secrets instead of leaving a node and a store whose passwords nobody knows.
    let pending = match &existing {
        Some(_) => None,
        None => Some(PendingBootstrap::load_or_create(&files.pending)?),
    };
    let root = match (&existing, &pending) {
        (Some(b), _) => {
            uri_credentials(&b.node_uri).context("bootstrap.json has no credentials in node_uri")?
        }
        (None, Some(p)) => (EMBEDDED_ROOT_USER.to_string(), p.root_password.clone()),
        (None, None) => unreachable!("a pending bootstrap is loaded whenever bootstrap.json is absent"),
    };
    let node = start_embedded_node(&args, &file, &dir, node_listen, &root, existing.is_none()).await?;
    let node_addr = connectable(node.local_addr());

    let store = store_location(None, &file, &dir);
    let cfg =
        api_config(&dir, api_listen, &store, None, (&args.driver, &args.http), &args.login_limits, &file)
            .await?;
    let (meta, master_key) = (cfg.store.clone(), cfg.master_key.clone());
    let api = match docplane_api::serve(cfg).await {
        Ok(api) => api,
        Err(e) => {
            let _ = node.shutdown().await;
            return Err(e).with_context(|| {
                format!(
                    "starting the API on {api_listen} (choose another with --api-listen){}",
                    resume_hint(existing.is_none())
                )
            });
        }
    };
    let endpoint = format!("http://{}", connectable(api.local_addr()));

    let started = match existing {
        None => first_start(&meta, &master_key, pending.as_ref(), &endpoint, node_addr, &root, &files).await,
        Some(boot) => follow_moved_addresses(&meta, &files.boot, boot, &endpoint, node_addr, &root).await,
    };
    if let Err(e) = started {
        let _ = api.shutdown(Duration::from_secs(1)).await;
        let _ = node.shutdown().await;
        return Err(e);
    }

    info!(api = %endpoint, node = %node_addr, "docplane is up");
    print_up_banner(&endpoint, node_addr, &files.boot);

    let signal = shutdown_signal().await?;
    info!(signal, "shutting down");
    let api_result = api.shutdown(Duration::from_secs(3)).await;
    let node_result = node.shutdown().await;
    api_result.context("stopping the API")?;
    node_result.context("stopping the node")?;
    Ok(())
}

/// The two files `up` keeps in the data directory.
struct UpFiles {
    /// bootstrap.json: ids, endpoint and secrets, written when the first start has completed.
    boot: PathBuf,
    /// bootstrap.pending.json: the secrets a first start chose, until bootstrap.json holds them.
    pending: PathBuf,
}

/// bootstrap.json as an earlier, completed first start wrote it; `None` before that.
fn read_bootstrap(path: &Path) -> Result<Option<BootstrapFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Starts `up`'s embedded node (authentication on, `root` as its root user) in `dir`/node.
async fn start_embedded_node(
    args: &crate::UpArgs,
    file: &FileConfig,
    dir: &Path,
    node_listen: std::net::SocketAddr,
    root: &(String, String),
    first_start: bool,
) -> Result<docplane_node::NodeHandle> {
    let tuning = config::node_tuning(args.sync_every_write, &file.node);
    docplane_node::Node::start(docplane_node::NodeConfig {
        bind: node_listen,
        data_dir: Some(dir.join("node")),
        enable_test_commands: args.enable_test_commands || file.node.enable_test_commands.unwrap_or(false),
        auth: true,
        root_user: Some(root.clone()),
        sync_every_write: tuning.sync_every_write,
        unauthenticated_idle_timeout: tuning.unauthenticated_idle_timeout,
        idle_timeout: tuning.idle_timeout,
        ..Default::default()
    })
    .await
    .with_context(|| {
        format!(
            "starting the embedded node on {node_listen} (choose another with --node-listen){}",
            resume_hint(first_start)
        )
    })
}

/// The first start, once node and API run: bootstraps the account with the pending admin password,
/// signs in as that admin, registers the embedded node and writes bootstrap.json; then removes the
/// pending file. Every step can be redone by the next `up` if this one fails half-way.
async fn first_start(
    meta: &std::sync::Arc<dyn docplane_store::MetaStore>,
    master_key: &docplane_api::MasterKey,
    pending: Option<&PendingBootstrap>,
    endpoint: &str,
    node_addr: std::net::SocketAddr,
    root: &(String, String),
    files: &UpFiles,
) -> Result<()> {
    let pending = pending.context("first start without a pending bootstrap")?;
    let opts = docplane_api::BootstrapOptions {
        admin_password: Some(pending.admin_password.clone()),
        ..Default::default()
    };
    let boot = docplane_api::bootstrap(meta.clone(), master_key, &opts)
        .await
        .context("bootstrapping the account")?;
    // Created now, or by an earlier attempt of this same first start: either way with the
    // pending password (a store bootstrapped without one is refused at the login below).
    let password = boot.admin_password.clone().unwrap_or_else(|| pending.admin_password.clone());
    let (token, _, _) = crate::commands::password_token(
        endpoint,
        &boot.domain_name,
        &boot.admin_name,
        &password,
        serde_json::json!({ "id": boot.project_id }),
        Duration::from_secs(30),
    )
    .await
    .context(
        "signing in as the bootstrap admin failed: the metadata store was bootstrapped by something \
         other than this first start, and its admin password is unknown; move the data directory \
         away to start afresh",
    )?;
    let registered = register_embedded(endpoint, &token, &boot.project_id, node_addr, root).await?;
    // A registration reused from an earlier attempt may name the address that attempt used.
    let update = docplane_store::NodeUpdate { address: Some(node_addr.to_string()), ..Default::default() };
    meta.update_node(&registered.1, &update).await.context("updating the embedded node's address")?;
    let file = BootstrapFile {
        endpoint: endpoint.to_string(),
        project_id: boot.project_id,
        project_name: boot.project_name,
        domain_id: boot.domain_id,
        domain_name: boot.domain_name,
        user_name: boot.admin_name,
        password,
        ak: boot.access_key,
        sk: boot.secret_key,
        instance_id: registered.0,
        node_id: registered.1,
        node_uri: format!("mongodb://{}:{}@{node_addr}/?authSource=admin", root.0, root.1),
    };
    write_private_json(&files.boot, &file)?;
    // bootstrap.json now holds every secret of the pending file.
    std::fs::remove_file(&files.pending).with_context(|| format!("removing {}", files.pending.display()))?;
    Ok(())
}

/// What `up` prints once both servers run: where they are and how to start using them.
fn print_up_banner(endpoint: &str, node_addr: std::net::SocketAddr, boot_path: &Path) {
    println!("docplane is up: API {endpoint}, embedded node {node_addr}");
    println!("credentials and ids: {} (mode 0600)", boot_path.display());
    println!(
        "web console: {}/console/ (sign in with the admin user of that file)",
        endpoint.trim_end_matches('/')
    );
    println!("try:");
    println!("  docplane login --bootstrap {}", boot_path.display());
    println!("  docplane sessions list --node \"$(jq -r .node_id {})\"", boot_path.display());
}

/// A later start may listen elsewhere (other `--api-listen` / `--node-listen`): point the registered
/// embedded node at its new address and rewrite bootstrap.json, so the ids and secrets stay valid and
/// the endpoint and URI in the file stay true.
async fn follow_moved_addresses(
    meta: &std::sync::Arc<dyn docplane_store::MetaStore>,
    boot_path: &Path,
    mut boot: BootstrapFile,
    endpoint: &str,
    node_addr: std::net::SocketAddr,
    root: &(String, String),
) -> Result<()> {
    let node_uri = format!("mongodb://{}:{}@{node_addr}/?authSource=admin", root.0, root.1);
    if boot.endpoint == endpoint && boot.node_uri == node_uri {
        return Ok(());
    }
    let update = docplane_store::NodeUpdate { address: Some(node_addr.to_string()), ..Default::default() };
    meta.update_node(&boot.node_id, &update).await.context("updating the embedded node's address")?;
    info!(api = %endpoint, node = %node_addr, "addresses changed since the last start; bootstrap.json updated");
    boot.endpoint = endpoint.to_string();
    boot.node_uri = node_uri;
    write_private_json(boot_path, &boot)
}

/// What a first start needs to be resumable: the secrets it chose, kept (mode 0600) until
/// bootstrap.json holds them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingBootstrap {
    root_password: String,
    admin_password: String,
}

const PENDING_FILE: &str = "bootstrap.pending.json";

impl PendingBootstrap {
    /// The pending secrets of an earlier, unfinished first start, or new ones written first.
    fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                tighten_file(path)?;
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let p = Self { root_password: random_password(), admin_password: random_password() };
                write_private_json(path, &p)?;
                Ok(p)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// After a failed first start: nothing needs cleaning up.
fn resume_hint(first_start: bool) -> &'static str {
    if first_start { "; the next `docplane up` resumes this first start" } else { "" }
}

/// Registers the embedded node through the public registration route, as any client would; returns
/// (instance id, node id). An earlier attempt of the same first start that registered it already
/// (and failed after) is found by name and reused, pointed at the current address.
async fn register_embedded(
    endpoint: &str,
    token: &str,
    project_id: &str,
    node_addr: std::net::SocketAddr,
    root: &(String, String),
) -> Result<(String, String)> {
    let http = crate::client::http_client(Duration::from_secs(30))?;
    let resp = http
        .get(format!("{endpoint}/v3/{project_id}/instances"))
        .query(&[("name", EMBEDDED_INSTANCE_NAME)])
        .header("X-Auth-Token", token)
        .send()
        .await
        .context("looking for an embedded node registered by an earlier attempt")?;
    let found = crate::client::decode(resp).await.context("listing instances")?;
    if let Some(inst) = found["instances"].as_array().and_then(|a| a.first()) {
        let ids = inst["id"].as_str().zip(inst["groups"][0]["nodes"][0]["id"].as_str());
        if let Some((instance_id, node_id)) = ids {
            info!(instance_id, "the embedded node was registered by an earlier attempt; reusing it");
            return Ok((instance_id.to_string(), node_id.to_string()));
        }
    }
    let resp = http
        .post(format!("{endpoint}/v3/{project_id}/instances/register"))
        .header("X-Auth-Token", token)
        .json(&serde_json::json!({
            "name": EMBEDDED_INSTANCE_NAME,
            "mode": "Single",
            "seeds": [node_addr.to_string()],
            "username": root.0,
            "password": root.1,
        }))
        .send()
        .await
        .context("registering the embedded node")?;
    let body = crate::client::decode(resp).await.context("registering the embedded node")?;
    let instance = &body["instance"];
    let instance_id = instance["id"].as_str().context("registration answered without an instance id")?;
    let node_id = instance["groups"][0]["nodes"][0]["id"]
        .as_str()
        .context("registration answered without a node id")?;
    Ok((instance_id.to_string(), node_id.to_string()))
}
