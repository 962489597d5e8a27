//! `docplane`: the one binary. Server subcommands (`up`, `serve`, `node`), client subcommands
//! (`login`, `logout`, `whoami`, `profiles`, `instances`, `sessions`, `audit`) and `completion` / `man`
//! generated from this clap definition. This file parses arguments, dispatches, and turns an error into
//! one line on stderr and a documented exit code; the work lives in the library crates (see
//! ARCHITECTURE.md).

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
#[command(
    name = "docplane",
    version = build_info::VERSION,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXAMPLES_TOP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The build: the package version and the commit it was built from (build.rs).
mod build_info {
    pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DOCPLANE_BUILD_COMMIT"), ")");
}

const EXAMPLES_TOP: &str = "\
Examples:
  docplane up                                   # control plane + embedded node on loopback
  docplane login --bootstrap docplane-data/bootstrap.json
  docplane instances list
  docplane sessions list --node NODE_ID --min-cost-time 30s
  docplane sessions kill --node NODE_ID --where app=nightly-report --dry-run

Exit codes: 0 ok, 1 failed, 2 usage, 3 not signed in or not allowed, 4 not found, 5 endpoint
unreachable or no answer in time (docs/cli.md).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: the control plane and one embedded node, bootstrapped on first start.
    #[command(after_help = "\
Examples:
  docplane up
  docplane up --data-dir /var/lib/docplane --api-listen 0.0.0.0:8080 --enable-test-commands")]
    Up(UpArgs),
    /// Run the control plane (HTTP API) alone.
    #[command(after_help = "\
Examples:
  docplane serve --data-dir /var/lib/docplane --listen 0.0.0.0:8080
  DOCPLANE_STORE=postgres://docplane@db/docplane docplane serve --config /etc/docplane/config.toml")]
    Serve(ServeArgs),
    /// Run an embedded MongoDB-wire-compatible node alone.
    #[command(after_help = "\
Examples:
  docplane node --no-auth --enable-test-commands     # local play only
  DOCPLANE_ROOT_PASSWORD=... docplane node --port 27018 --root-user root")]
    Node(NodeArgs),
    /// Sign in to an endpoint, check the credentials, and save them as a profile.
    #[command(after_help = "\
Examples:
  docplane login --bootstrap docplane-data/bootstrap.json
  docplane login --endpoint https://dp.example:8443 --domain acme --user alice --project-name prod
  DOCPLANE_SK=... docplane login --profile ci --endpoint http://127.0.0.1:8080 --ak AK --project-id ID

Without --password, DOCPLANE_PASSWORD or --password-stdin, the password is asked on the terminal.")]
    Login(LoginArgs),
    /// Forget a profile's credentials (delete it from the profiles file).
    #[command(after_help = "\
Examples:
  docplane logout
  docplane logout --profile ci")]
    Logout {
        #[command(flatten)]
        common: ClientCommon,
    },
    /// Show who a profile signs in as, asking the endpoint.
    #[command(after_help = "\
Examples:
  docplane whoami
  docplane whoami --profile ci -o json")]
    Whoami {
        #[command(flatten)]
        common: ClientCommon,
    },
    /// Saved profiles (never their secrets).
    #[command(subcommand)]
    Profiles(ProfilesCommand),
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
    /// Client connections of an instance (or one node), per client IP: inner (docplane's own and
    /// cluster members') and outer.
    #[command(after_help = "\
Examples:
  docplane connections 7f3c...in01
  docplane connections 7f3c...in01 --node 9a1b...no01 -o json")]
    Connections {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
        /// Only this node (`docplane instances list` shows node ids).
        #[arg(long, env = "DOCPLANE_CONNECTIONS_NODE", value_name = "NODE_ID")]
        node: Option<String>,
    },
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  docplane completion bash > /etc/bash_completion.d/docplane
  docplane completion zsh > \"${fpath[1]}/_docplane\"
  docplane completion fish > ~/.config/fish/completions/docplane.fish")]
    Completion {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a directory.
    #[command(after_help = "\
Examples:
  docplane man | man -l -
  docplane man --out-dir /usr/local/share/man/man1")]
    Man {
        /// Write docplane.1, docplane-login.1, ... into this directory instead of printing docplane.1.
        #[arg(long, env = "DOCPLANE_MAN_DIR", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// List the saved profiles: endpoint, project, kind of credentials, token expiry.
    #[command(after_help = "\
Examples:
  docplane profiles list
  docplane profiles list -o json")]
    List {
        /// Output format.
        #[arg(long, short, env = "DOCPLANE_OUTPUT", value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List kill records, newest first.
    #[command(after_help = "\
Examples:
  docplane audit list
  docplane audit list --node NODE_ID --outcome killed --limit 20
  docplane audit list --principal rule:RULE_ID -o json")]
    List {
        #[command(flatten)]
        common: ClientCommon,
        /// Records at or after this time (unix milliseconds).
        #[arg(long, env = "DOCPLANE_AUDIT_FROM", value_name = "UNIX_MS")]
        from: Option<i64>,
        /// Records before this time (unix milliseconds).
        #[arg(long, env = "DOCPLANE_AUDIT_TO", value_name = "UNIX_MS")]
        to: Option<i64>,
        /// Only this node.
        #[arg(long, env = "DOCPLANE_NODE", value_name = "NODE_ID")]
        node: Option<String>,
        /// A user name, `rule:<id>` or an access key.
        #[arg(long, env = "DOCPLANE_AUDIT_PRINCIPAL")]
        principal: Option<String>,
        /// killed, still_running, failed, unknown, refused or pending.
        #[arg(long, env = "DOCPLANE_AUDIT_OUTCOME")]
        outcome: Option<String>,
        /// At most this many records (the endpoint's default when absent).
        #[arg(long, env = "DOCPLANE_LIMIT")]
        limit: Option<u32>,
        /// Skip this many records first.
        #[arg(long, env = "DOCPLANE_OFFSET")]
        offset: Option<u32>,
    },
    /// Recompute the project's kill-record hash chain; fails if any record was edited, inserted
    /// or deleted.
    #[command(after_help = "\
Examples:
  docplane audit verify
  docplane audit verify -o json")]
    Verify {
        #[command(flatten)]
        common: ClientCommon,
    },
}

#[derive(Debug, Args)]
struct ServerCommon {
    /// TOML configuration file; flags and DOCPLANE_* variables override it [default: config.toml in
    /// $DOCPLANE_CONFIG_DIR, else $XDG_CONFIG_HOME/docplane, else ~/.config/docplane, if it exists].
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
    /// Profile to use (`docplane profiles list`).
    #[arg(long, global = true, env = "DOCPLANE_PROFILE", default_value = "default")]
    profile: String,
    /// Output format.
    #[arg(long, short, global = true, env = "DOCPLANE_OUTPUT", value_enum, default_value = "table")]
    output: Output,
    /// Give up on a request after this long, e.g. 30s, 2m, 500ms (a bare number is seconds).
    #[arg(long, global = true, env = "DOCPLANE_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    timeout: std::time::Duration,
}

/// `--timeout`: a duration with a unit, or whole seconds; zero is refused (it would never wait).
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let us = match text.trim().parse::<u64>() {
        Ok(secs) => secs.checked_mul(1_000_000).ok_or("too large")?,
        Err(_) => commands::parse_duration_us(text).map_err(|e| e.to_string())?,
    };
    if us == 0 {
        return Err("must be more than zero".into());
    }
    Ok(std::time::Duration::from_micros(us))
}

#[derive(Debug, Args)]
struct LoginArgs {
    #[command(flatten)]
    common: ClientCommon,
    /// Read endpoint, account, user, password and project from a `docplane up` bootstrap.json.
    #[arg(long, env = "DOCPLANE_BOOTSTRAP", value_name = "FILE", conflicts_with_all = ["endpoint", "user", "ak"])]
    bootstrap: Option<PathBuf>,
    /// API endpoint, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "DOCPLANE_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    /// Account (domain) name.
    #[arg(long, env = "DOCPLANE_DOMAIN", value_name = "NAME")]
    domain: Option<String>,
    /// User name.
    #[arg(long, env = "DOCPLANE_USER", value_name = "NAME")]
    user: Option<String>,
    /// Password (prefer DOCPLANE_PASSWORD, --password-stdin or the prompt: flags show up in `ps`).
    #[arg(long, env = "DOCPLANE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password (or with --ak, the secret key) from standard input.
    #[arg(long, env = "DOCPLANE_PASSWORD_STDIN")]
    password_stdin: bool,
    /// Project to scope the token to, by id.
    #[arg(long, env = "DOCPLANE_PROJECT_ID", value_name = "ID")]
    project_id: Option<String>,
    /// Project to scope the token to, by name.
    #[arg(long, env = "DOCPLANE_PROJECT_NAME", value_name = "NAME", conflicts_with = "project_id")]
    project_name: Option<String>,
    /// Save an AK/SK profile instead of a token (requests are signed; nothing expires).
    #[arg(long, env = "DOCPLANE_AK", value_name = "ACCESS_KEY")]
    ak: Option<String>,
    /// Secret key for --ak (prefer DOCPLANE_SK, --password-stdin or the prompt).
    #[arg(long, env = "DOCPLANE_SK", hide_env_values = true, value_name = "SECRET_KEY")]
    sk: Option<String>,
}

#[derive(Debug, Subcommand)]
enum InstancesCommand {
    /// List instances with their groups and nodes (one row per node: the node id is what
    /// `sessions` needs).
    #[command(after_help = "\
Examples:
  docplane instances list
  docplane instances list --mode ReplicaSet --limit 10
  docplane instances list -o json | jq -r '.instances[].groups[].nodes[].id'")]
    List {
        #[command(flatten)]
        common: ClientCommon,
        /// Only the instance with this id.
        #[arg(long, env = "DOCPLANE_INSTANCES_ID", value_name = "INSTANCE_ID")]
        id: Option<String>,
        /// Only instances with this name.
        #[arg(long, env = "DOCPLANE_INSTANCES_NAME")]
        name: Option<String>,
        /// Single, ReplicaSet or Sharding.
        #[arg(long, env = "DOCPLANE_INSTANCES_MODE")]
        mode: Option<String>,
        /// Skip this many instances first.
        #[arg(long, env = "DOCPLANE_OFFSET")]
        offset: Option<u32>,
        /// At most this many instances (the endpoint's default when absent).
        #[arg(long, env = "DOCPLANE_LIMIT")]
        limit: Option<u32>,
    },
    /// Register an existing deployment (a standalone, a replica set or a sharded cluster) by a
    /// seed address; docplane discovers its nodes.
    #[command(after_help = "\
Examples:
  docplane instances register --name orders --seed 10.0.0.5:27017 --username dpadmin
  printf %s \"$PW\" | docplane instances register --name shop --seed a:27017 --seed b:27017 \\
      --username dpadmin --password-stdin

Without --password, DOCPLANE_REGISTER_PASSWORD or --password-stdin, the password is asked on the
terminal when --username is given.")]
    Register(RegisterArgs),
    /// Unregister an instance: docplane forgets it and its nodes (the deployment is not touched).
    #[command(after_help = "\
Examples:
  docplane instances unregister 2d8f...in02")]
    Unregister {
        #[command(flatten)]
        common: ClientCommon,
        /// Instance id (`docplane instances list`).
        #[arg(value_name = "INSTANCE_ID")]
        instance: String,
    },
    /// Show an instance's session settings (privacy, protected users and applications); with a
    /// change flag, read them, change them and put the whole object back.
    #[command(after_help = "\
Examples:
  docplane instances settings --instance INSTANCE_ID
  docplane instances settings --instance INSTANCE_ID --redact-operations on --protect-user backup
  docplane instances settings --instance INSTANCE_ID --clear-protected")]
    Settings(SettingsArgs),
}

// The arguments of `instances register` (its help is the variant's doc comment).
#[derive(Debug, Args)]
struct RegisterArgs {
    #[command(flatten)]
    common: ClientCommon,
    /// Instance name: 4 to 64 characters, a letter first, then letters, digits, - and _.
    #[arg(long, env = "DOCPLANE_REGISTER_NAME")]
    name: String,
    /// host:port of a member, tried in order; repeatable (the variable: comma-separated).
    #[arg(
        long = "seed",
        env = "DOCPLANE_REGISTER_SEEDS",
        value_name = "HOST:PORT",
        required = true,
        value_delimiter = ','
    )]
    seeds: Vec<String>,
    /// Single, ReplicaSet or Sharding [default: what the seed shows].
    #[arg(long, env = "DOCPLANE_REGISTER_MODE")]
    mode: Option<String>,
    /// Further mongos routers of a sharded cluster; repeatable (the variable: comma-separated).
    #[arg(long, env = "DOCPLANE_REGISTER_MONGOS", value_name = "HOST:PORT", value_delimiter = ',')]
    mongos: Vec<String>,
    /// MongoDB user docplane signs in as (needs inprog and killop).
    #[arg(long, env = "DOCPLANE_REGISTER_USERNAME", value_name = "NAME")]
    username: Option<String>,
    /// Its password (prefer the variable, --password-stdin or the prompt).
    #[arg(long, env = "DOCPLANE_REGISTER_PASSWORD", hide_env_values = true, requires = "username")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long, env = "DOCPLANE_REGISTER_PASSWORD_STDIN", requires = "username")]
    password_stdin: bool,
    /// Authentication database [default: admin].
    #[arg(long, env = "DOCPLANE_REGISTER_AUTH_SOURCE", value_name = "DB", requires = "username")]
    auth_source: Option<String>,
}

// The arguments of `instances settings` (its help is the variant's doc comment).
#[derive(Debug, Args)]
struct SettingsArgs {
    #[command(flatten)]
    common: ClientCommon,
    /// Instance ID (`instances list -o json`: `.instances[].id`).
    #[arg(long, env = "DOCPLANE_INSTANCE", value_name = "INSTANCE_ID")]
    instance: String,
    /// List operations with their literals replaced by placeholders (on) or as they are (off).
    #[arg(long, env = "DOCPLANE_REDACT_OPERATIONS", value_enum, value_name = "on|off")]
    redact_operations: Option<OnOff>,
    /// Never kill this MongoDB user's operations: NAME (any database) or NAME@DB; repeatable.
    #[arg(long, env = "DOCPLANE_PROTECT_USER", value_name = "NAME", value_delimiter = ',')]
    protect_user: Vec<String>,
    /// Remove a protected user (it must be in the list); repeatable.
    #[arg(long, env = "DOCPLANE_UNPROTECT_USER", value_name = "NAME", value_delimiter = ',')]
    unprotect_user: Vec<String>,
    /// Never kill operations of this client application (exact appName); repeatable.
    #[arg(long, env = "DOCPLANE_PROTECT_APP", value_name = "APP_NAME", value_delimiter = ',')]
    protect_app: Vec<String>,
    /// Remove a protected application (it must be in the list); repeatable.
    #[arg(long, env = "DOCPLANE_UNPROTECT_APP", value_name = "APP_NAME", value_delimiter = ',')]
    unprotect_app: Vec<String>,
    /// Empty both protected lists first (--protect-user / --protect-app then add to them).
    #[arg(long, env = "DOCPLANE_CLEAR_PROTECTED", conflicts_with_all = ["unprotect_user", "unprotect_app"])]
    clear_protected: bool,
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
    #[command(after_help = "\
Examples:
  docplane sessions list --node NODE_ID
  docplane sessions list --node NODE_ID --type query --plan-summary COLLSCAN --min-cost-time 30s
  docplane sessions list --node NODE_ID -o json | jq -r '.sessions[].id'")]
    List {
        #[command(flatten)]
        common: ClientCommon,
        /// Node ID (see `docplane instances list`).
        #[arg(long, env = "DOCPLANE_NODE", value_name = "NODE_ID")]
        node: String,
        /// none, update, insert, query, command, getmore, remove or killcursors.
        #[arg(long = "type", env = "DOCPLANE_SESSIONS_TYPE")]
        op_type: Option<String>,
        /// Only operations on this namespace: db.collection.
        #[arg(long, env = "DOCPLANE_SESSIONS_NAMESPACE", value_name = "DB.COLLECTION")]
        namespace: Option<String>,
        /// Only operations with this plan, e.g. COLLSCAN, IXSCAN.
        #[arg(long, env = "DOCPLANE_SESSIONS_PLAN_SUMMARY", value_name = "PLAN")]
        plan_summary: Option<String>,
        /// Only sessions running longer than this: 30s, 500ms, 2m (a bare number is microseconds).
        #[arg(long, env = "DOCPLANE_SESSIONS_MIN_COST_TIME", value_name = "DURATION", value_parser = parse_micros)]
        min_cost_time: Option<u64>,
        /// At most this many sessions (the endpoint's default when absent).
        #[arg(long, env = "DOCPLANE_LIMIT")]
        limit: Option<u32>,
        /// Skip this many sessions first.
        #[arg(long, env = "DOCPLANE_OFFSET")]
        offset: Option<u32>,
    },
    /// Kill sessions of a node by ID, or every session a selector matches (`--where`).
    ///
    /// By selector: `--where KEY=VALUE`, repeatable, all must hold. Keys: type (none update insert
    /// query command getmore remove killcursors), ns (db.collection), plan (a plan stage, e.g.
    /// COLLSCAN), running (longer than: 30s, 500ms, 2m, 1h), client (an address, any port, or
    /// host:port), user, app (appName). Protected sessions are skipped and listed.
    #[command(
        verbatim_doc_comment,
        after_help = "\
Examples:
  docplane sessions kill --node NODE_ID 34631 34637
  docplane sessions kill --node NODE_ID --where app=nightly-report --dry-run
  docplane sessions kill --node NODE_ID --where plan=COLLSCAN --where running=30s --max 5"
    )]
    Kill {
        #[command(flatten)]
        common: ClientCommon,
        /// Node ID.
        #[arg(long, env = "DOCPLANE_NODE", value_name = "NODE_ID")]
        node: String,
        /// Session IDs from `docplane sessions list`.
        #[arg(value_name = "SESSION_ID", required_unless_present = "selector", conflicts_with = "selector")]
        sessions: Vec<String>,
        /// A selector criterion KEY=VALUE (repeatable).
        #[arg(long = "where", env = "DOCPLANE_KILL_WHERE", value_name = "KEY=VALUE", id = "selector")]
        selector: Vec<String>,
        /// Only show what the selector would kill.
        #[arg(long, env = "DOCPLANE_KILL_DRY_RUN", requires = "selector")]
        dry_run: bool,
        /// Refuse (kill nothing) if more than this many sessions match (1..=1000).
        #[arg(long, env = "DOCPLANE_KILL_MAX", default_value_t = 100, requires = "selector")]
        max: u32,
    },
}

/// `--min-cost-time`: a duration with a unit, or microseconds (the API's unit).
fn parse_micros(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(us) => Ok(us),
        Err(_) => commands::parse_duration_us(text).map_err(|e| e.to_string()),
    }
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
        // The reader of standard output went away (`| head`): what it wanted, it got.
        Err(e) if client::output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::from(client::exit_code(&e))
        }
    }
}

/// One line per error: an API refusal as `DBS.xxxxxx: message (HTTP s, request id r)` after what
/// was being done; anything else with its causes, each once.
fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // A context that repeats its cause (or the reverse) is said once.
        if parts.last().is_some_and(|last| last.contains(&text) || text.contains(last.as_str())) {
            if parts.last().is_some_and(|last| text.len() > last.len()) {
                parts.pop();
                parts.push(text);
            }
            continue;
        }
        parts.push(text);
    }
    format!("error: {}", parts.join(": "))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        let subs: Vec<_> = cmd.get_subcommands().filter(|s| s.get_name() != "help").collect();
        if subs.is_empty() {
            out.push((path.clone(), cmd.clone()));
        }
        for s in subs {
            leaves(s, format!("{path} {}", s.get_name()), out);
        }
    }

    fn all_leaves() -> Vec<(String, clap::Command)> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = Vec::new();
        leaves(&cmd, "docplane".into(), &mut out);
        out
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command says what it does and shows examples; every argument says what it is.
    #[test]
    fn every_command_has_a_description_examples_and_argument_help() {
        let leaves = all_leaves();
        assert!(leaves.len() >= 17, "{}", leaves.len());
        for (path, cmd) in &leaves {
            assert!(cmd.get_about().is_some(), "{path}: no description");
            let after = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(after.contains("Examples:\n  docplane "), "{path}: no examples");
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id}: no help");
            }
        }
    }

    /// The README promises a DOCPLANE_* variable for every flag (positionals are not flags).
    #[test]
    fn every_flag_has_a_docplane_variable() {
        for (path, cmd) in all_leaves() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_positional() {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert!(
                    env.as_deref().is_some_and(|e| e.starts_with("DOCPLANE_")),
                    "{path} --{id}: no DOCPLANE_* variable"
                );
            }
        }
    }

    #[test]
    fn timeouts_and_durations_parse() {
        assert_eq!(parse_timeout("30s").unwrap(), std::time::Duration::from_secs(30));
        assert_eq!(parse_timeout("7").unwrap(), std::time::Duration::from_secs(7));
        assert_eq!(parse_timeout("500ms").unwrap(), std::time::Duration::from_millis(500));
        assert!(parse_timeout("0").is_err() && parse_timeout("soon").is_err());
        assert_eq!(parse_micros("30s").unwrap(), 30_000_000);
        assert_eq!(parse_micros("250").unwrap(), 250);
    }

    #[test]
    fn an_error_and_its_context_are_said_once() {
        let e = anyhow::anyhow!("connection refused").context("calling http://x: connection refused");
        assert_eq!(error_text(&e), "error: calling http://x: connection refused");
        let e = anyhow::anyhow!("no such file").context("reading a.json");
        assert_eq!(error_text(&e), "error: reading a.json: no such file");
    }
}
