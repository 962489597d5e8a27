//! `docplane`: the one binary. Server subcommands (`up`, `serve`, `node`) and client subcommands
//! (`login`, `instances`, `sessions`, `audit`). This file only parses arguments and dispatches; the work lives in
//! the library crates (see ARCHITECTURE.md).

mod client;
mod commands;
mod config;
mod servers;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use client::output::Output;

/// A self-hosted control plane that lists and kills the sessions of MongoDB instance nodes through the
/// DDS v3 API, with IAM tokens, AK/SK signatures, policies and an embedded MongoDB-compatible node.
#[derive(Debug, Parser)]
#[command(name = "docplane", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: the control plane and one embedded node, bootstrapped on first start.
    Up(UpArgs),
    /// Run the control plane (HTTP API) alone.
    Serve(ServeArgs),
    /// Run an embedded MongoDB-wire-compatible node alone.
    Node(NodeArgs),
    /// Sign in to an endpoint and save the credentials as a profile.
    Login(LoginArgs),
    /// Instances of the profile's project.
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// Sessions (operations) of an instance node.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Kill records of the profile's project (who killed what, when, with what outcome).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Kill-op rules of an instance: automatic kills of matching operations.
    #[command(subcommand)]
    Rules(client::rules::RulesCommand),
    /// Client connections of an instance (or one node), per client IP.
    Connections {
        #[command(flatten)]
        common: ClientCommon,
        /// The instance.
        instance: String,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List kill records, newest first.
    List {
        #[command(flatten)]
        common: ClientCommon,
        /// Records at or after this time (unix milliseconds).
        #[arg(long, value_name = "UNIX_MS")]
        from: Option<i64>,
        /// Records before this time (unix milliseconds).
        #[arg(long, value_name = "UNIX_MS")]
        to: Option<i64>,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
        /// A user name, `rule:<id>` or an access key.
        #[arg(long)]
        principal: Option<String>,
        /// killed, still_running, failed, unknown, refused or pending.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// Recompute the project's kill-record hash chain; fails if any record was edited, inserted
    /// or deleted.
    Verify {
        #[command(flatten)]
        common: ClientCommon,
    },
}

#[derive(Debug, Args)]
struct ServerCommon {
    /// TOML configuration file; flags and DOCPLANE_* variables override it.
    #[arg(long, env = "DOCPLANE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where metadata, node data and keys live [default: ./docplane-data].
    #[arg(long, env = "DOCPLANE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `docplane_api=debug` (RUST_LOG syntax).
    #[arg(long, env = "DOCPLANE_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, env = "DOCPLANE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How the control plane talks to nodes (`up` and `serve`).
#[derive(Debug, Args)]
struct DriverArgs {
    /// TCP connect timeout to a node, in milliseconds [default: 2000].
    #[arg(long, env = "DOCPLANE_NODE_CONNECT_TIMEOUT_MS", value_name = "MS")]
    node_connect_timeout_ms: Option<u64>,
    /// Upper bound of one command on a node (e.g. `$currentOp`, `killOp`), in milliseconds [default: 10000].
    #[arg(long, env = "DOCPLANE_NODE_OPERATION_TIMEOUT_MS", value_name = "MS")]
    node_operation_timeout_ms: Option<u64>,
    /// Seconds between health probes of registered nodes; 0 disables them [default: 10].
    #[arg(long, env = "DOCPLANE_HEALTH_INTERVAL_SECS", value_name = "SECS")]
    health_interval_secs: Option<u64>,
    /// How long a kill waits for the killed operations to leave the node before answering
    /// DBS.301077, in milliseconds [default: 2000].
    #[arg(long, env = "DOCPLANE_KILL_VERIFY_DEADLINE_MS", value_name = "MS")]
    kill_verify_deadline_ms: Option<u64>,
    /// Days kill records are kept [default: 90].
    #[arg(long, env = "DOCPLANE_KILL_RECORD_RETENTION_DAYS", value_name = "DAYS")]
    kill_record_retention_days: Option<u64>,
    /// Seconds between sweeps that resolve kill records a crash left without outcome and prune
    /// old ones [default: 10].
    #[arg(long, env = "DOCPLANE_KILL_RECORD_SWEEP_SECS", value_name = "SECS")]
    kill_record_sweep_secs: Option<u64>,
    /// Milliseconds between passes of the kill-op rule enforcer over every node with enabled
    /// rules; 0 disables it [default: 1000].
    #[arg(long, env = "DOCPLANE_ENFORCE_INTERVAL_MS", value_name = "MS")]
    enforce_interval_ms: Option<u64>,
}

/// HTTP connection limits of the API (`up` and `serve`).
#[derive(Debug, Args)]
struct HttpArgs {
    /// Time a client has to send a complete request head, in milliseconds [default: 10000].
    #[arg(long, env = "DOCPLANE_HEADER_READ_TIMEOUT_MS", value_name = "MS")]
    header_read_timeout_ms: Option<u64>,
    /// Time a client has to send a whole request body, in milliseconds [default: 30000].
    #[arg(long, env = "DOCPLANE_BODY_READ_TIMEOUT_MS", value_name = "MS")]
    body_read_timeout_ms: Option<u64>,
    /// Time an idle keep-alive connection stays open, in milliseconds [default: 60000].
    #[arg(long, env = "DOCPLANE_IDLE_TIMEOUT_MS", value_name = "MS")]
    idle_timeout_ms: Option<u64>,
    /// Connections served at once; more are closed when accepted [default: 1024].
    #[arg(long, env = "DOCPLANE_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
}

/// Bounds on password work, against login storms (`up` and `serve`).
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Login limits")]
struct LoginLimitArgs {
    /// Threads that hash and verify passwords; 0 = one per CPU [default: 0].
    #[arg(long, env = "DOCPLANE_PASSWORD_WORKERS", value_name = "N")]
    password_workers: Option<usize>,
    /// Logins that may wait for a password thread at once; more get 429 [default: 16].
    #[arg(long, env = "DOCPLANE_PASSWORD_QUEUE", value_name = "N")]
    password_queue: Option<usize>,
    /// How long a login waits for a password thread before 429 [default: 1000].
    #[arg(long, env = "DOCPLANE_PASSWORD_QUEUE_WAIT_MS", value_name = "MS")]
    password_queue_wait_ms: Option<u64>,
    /// Failed logins per user and source address before delays start [default: 5].
    #[arg(long, env = "DOCPLANE_LOGIN_FREE_FAILURES", value_name = "N")]
    login_free_failures: Option<u32>,
    /// Failed logins per source address (any user) before delays start [default: 20].
    #[arg(long, env = "DOCPLANE_LOGIN_ADDRESS_FREE_FAILURES", value_name = "N")]
    login_address_free_failures: Option<u32>,
    /// Failed logins per user (any address) before delays start [default: 20].
    #[arg(long, env = "DOCPLANE_LOGIN_USER_FREE_FAILURES", value_name = "N")]
    login_user_free_failures: Option<u32>,
    /// First delay after the free failures; each further failure doubles it [default: 1000].
    #[arg(long, env = "DOCPLANE_LOGIN_BASE_DELAY_MS", value_name = "MS")]
    login_base_delay_ms: Option<u64>,
    /// Longest delay per user and address, and per address [default: 60000].
    #[arg(long, env = "DOCPLANE_LOGIN_MAX_DELAY_MS", value_name = "MS")]
    login_max_delay_ms: Option<u64>,
    /// Longest delay per user across addresses (keep it small: anyone can trigger it) [default: 5000].
    #[arg(long, env = "DOCPLANE_LOGIN_USER_MAX_DELAY_MS", value_name = "MS")]
    login_user_max_delay_ms: Option<u64>,
    /// One failure is forgotten per this many seconds without failures [default: 60].
    #[arg(long, env = "DOCPLANE_LOGIN_FORGET_SECS", value_name = "SECS")]
    login_forget_secs: Option<u64>,
    /// Throttle entries kept in memory at most (about 100 bytes each) [default: 100000].
    #[arg(long, env = "DOCPLANE_LOGIN_THROTTLE_ENTRIES", value_name = "N")]
    login_throttle_entries: Option<usize>,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    common: ServerCommon,
    #[command(flatten)]
    driver: DriverArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    login_limits: LoginLimitArgs,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "DOCPLANE_API_LISTEN", value_name = "ADDR:PORT")]
    api_listen: Option<SocketAddr>,
    /// Address of the embedded node [default: 127.0.0.1:27017].
    #[arg(long, env = "DOCPLANE_NODE_LISTEN", value_name = "ADDR:PORT")]
    node_listen: Option<SocketAddr>,
    /// Let the node run test commands such as `{sleep: 1, millis: N}`.
    #[arg(long, env = "DOCPLANE_ENABLE_TEST_COMMANDS")]
    enable_test_commands: bool,
    /// fsync the node's journal before acknowledging each write (`j: true` writes wait for an
    /// fsync in any case; without this flag others are fsynced within 100 ms).
    #[arg(long, env = "DOCPLANE_NODE_SYNC_EVERY_WRITE")]
    sync_every_write: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: ServerCommon,
    #[command(flatten)]
    driver: DriverArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    login_limits: LoginLimitArgs,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "DOCPLANE_API_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Metadata store: a `postgres://` URL, or an SQLite file path [default: DATA_DIR/meta.sqlite].
    #[arg(long, env = "DOCPLANE_STORE", value_name = "URL")]
    store: Option<String>,
    /// PEM certificate chain; with --tls-key the API speaks HTTPS.
    #[arg(long, env = "DOCPLANE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "DOCPLANE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct NodeArgs {
    #[command(flatten)]
    common: ServerCommon,
    /// Interface to listen on [default: 127.0.0.1].
    #[arg(long, env = "DOCPLANE_NODE_BIND", value_name = "IP")]
    bind: Option<IpAddr>,
    /// Port to listen on [default: 27017].
    #[arg(long, env = "DOCPLANE_NODE_PORT")]
    port: Option<u16>,
    /// Let clients run test commands such as `{sleep: 1, millis: N}`.
    #[arg(long, env = "DOCPLANE_ENABLE_TEST_COMMANDS")]
    enable_test_commands: bool,
    /// fsync the journal before acknowledging each write (`j: true` writes wait for an fsync in
    /// any case; without this flag others are fsynced within 100 ms).
    #[arg(long, env = "DOCPLANE_NODE_SYNC_EVERY_WRITE")]
    sync_every_write: bool,
    /// Accept every client without authentication (local play only).
    #[arg(long, env = "DOCPLANE_NO_AUTH")]
    no_auth: bool,
    /// Root user created at first start.
    #[arg(long, env = "DOCPLANE_ROOT_USER", value_name = "NAME", requires = "root_password")]
    root_user: Option<String>,
    /// Password of --root-user (prefer the environment variable: flags show up in `ps`).
    #[arg(long, env = "DOCPLANE_ROOT_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    root_password: Option<String>,
}

#[derive(Debug, Args)]
struct ClientCommon {
    /// Profile to use [default: default].
    #[arg(long, global = true, env = "DOCPLANE_PROFILE", default_value = "default")]
    profile: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, Args)]
struct LoginArgs {
    #[command(flatten)]
    common: ClientCommon,
    /// Read endpoint, account, user, password and project from a `docplane up` bootstrap.json.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["endpoint", "user"])]
    bootstrap: Option<PathBuf>,
    /// API endpoint, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "DOCPLANE_ENDPOINT")]
    endpoint: Option<String>,
    /// Account (domain) name.
    #[arg(long)]
    domain: Option<String>,
    /// User name.
    #[arg(long)]
    user: Option<String>,
    /// Password (prefer DOCPLANE_PASSWORD or --password-stdin).
    #[arg(long, env = "DOCPLANE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Project to scope the token to, by id.
    #[arg(long)]
    project_id: Option<String>,
    /// Project to scope the token to, by name.
    #[arg(long, conflicts_with = "project_id")]
    project_name: Option<String>,
    /// Save an AK/SK profile instead of a token (requests are signed; nothing expires).
    #[arg(long, requires = "sk")]
    ak: Option<String>,
    /// Secret key for --ak (prefer DOCPLANE_SK).
    #[arg(long, env = "DOCPLANE_SK", hide_env_values = true)]
    sk: Option<String>,
}

#[derive(Debug, Subcommand)]
enum InstancesCommand {
    /// List instances with their groups and nodes.
    List {
        #[command(flatten)]
        common: ClientCommon,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Single, ReplicaSet or Sharding.
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        offset: Option<u32>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show an instance's session settings (privacy, protected users and applications); with a
    /// change flag, read them, change them and put the whole object back.
    Settings {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance ID (`instances list -o json`: `.instances[].id`).
        #[arg(long)]
        instance: String,
        /// List operations with their literals replaced by placeholders (on) or as they are (off).
        #[arg(long, value_enum, value_name = "on|off")]
        redact_operations: Option<OnOff>,
        /// Never kill this MongoDB user's operations: NAME (any database) or NAME@DB; repeatable.
        #[arg(long, value_name = "NAME")]
        protect_user: Vec<String>,
        /// Remove a protected user (it must be in the list); repeatable.
        #[arg(long, value_name = "NAME")]
        unprotect_user: Vec<String>,
        /// Never kill operations of this client application (exact appName); repeatable.
        #[arg(long, value_name = "APP_NAME")]
        protect_app: Vec<String>,
        /// Remove a protected application (it must be in the list); repeatable.
        #[arg(long, value_name = "APP_NAME")]
        unprotect_app: Vec<String>,
        /// Empty both protected lists first (--protect-user / --protect-app then add to them).
        #[arg(long, conflicts_with_all = ["unprotect_user", "unprotect_app"])]
        clear_protected: bool,
    },
}

/// A switch given as `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List the sessions of a node, longest-running first.
    List {
        #[command(flatten)]
        common: ClientCommon,
        /// Node ID (see `docplane instances list`).
        #[arg(long)]
        node: String,
        /// none, update, insert, query, command, getmore, remove or killcursors.
        #[arg(long = "type")]
        op_type: Option<String>,
        /// db.collection
        #[arg(long)]
        namespace: Option<String>,
        /// e.g. COLLSCAN, IXSCAN.
        #[arg(long)]
        plan_summary: Option<String>,
        /// Only sessions running longer than this many microseconds.
        #[arg(long, value_name = "MICROS")]
        min_cost_time: Option<u64>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// Kill sessions of a node by ID, or every session a selector matches (`--where`).
    ///
    /// By selector: `--where KEY=VALUE`, repeatable, all must hold. Keys: type (none update insert
    /// query command getmore remove killcursors), ns (db.collection), plan (a plan stage, e.g.
    /// COLLSCAN), running (longer than: 30s, 500ms, 2m, 1h), client (an address, any port, or
    /// host:port), user, app (appName). Protected sessions are skipped and listed.
    #[command(verbatim_doc_comment)]
    Kill {
        #[command(flatten)]
        common: ClientCommon,
        /// Node ID.
        #[arg(long)]
        node: String,
        /// Session IDs from `docplane sessions list`.
        #[arg(value_name = "SESSION_ID", required_unless_present = "selector", conflicts_with = "selector")]
        sessions: Vec<String>,
        /// A selector criterion KEY=VALUE (repeatable).
        #[arg(long = "where", value_name = "KEY=VALUE", id = "selector")]
        selector: Vec<String>,
        /// Only show what the selector would kill.
        #[arg(long, requires = "selector")]
        dry_run: bool,
        /// Refuse (kill nothing) if more than this many sessions match (1..=1000).
        #[arg(long, default_value_t = 100, requires = "selector")]
        max: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // API errors print as `DBS.xxxxxx: message`; everything else with its causes.
            if let Some(api) = e.downcast_ref::<client::ApiFailure>() {
                eprintln!("{api}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
