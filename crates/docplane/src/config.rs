//! Settings for `up`, `serve` and `node`: command-line flags, `DOCPLANE_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, then built-in defaults.
//!
//! Every flag is an `Option` in clap so that "not given" can fall through to the file; clap itself reads
//! the environment variable of each flag, so a variable counts as given on the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "docplane-data";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_NODE_LISTEN: &str = "127.0.0.1:27017";

/// The TOML file. Sections mirror the subcommands; `up` reads both.
///
/// ```toml
/// data_dir = "/var/lib/docplane"
/// [api]
/// listen = "0.0.0.0:8443"
/// store = "postgres://docplane@db/docplane"
/// tls_cert = "/etc/docplane/cert.pem"
/// tls_key = "/etc/docplane/key.pem"
/// node_connect_timeout_ms = 2000
/// node_operation_timeout_ms = 10000
/// health_interval_secs = 10
/// header_read_timeout_ms = 10000
/// body_read_timeout_ms = 30000
/// idle_timeout_ms = 60000
/// max_connections = 1024
/// password_workers = 0          # 0 = one per CPU
/// password_queue = 16
/// password_queue_wait_ms = 1000
/// login_free_failures = 5
/// kill_verify_deadline_ms = 2000
/// kill_record_retention_days = 90
/// kill_record_sweep_secs = 10
/// enforce_interval_ms = 1000    # kill-op rule enforcer; 0 = off
/// [node]
/// listen = "127.0.0.1:27017"
/// enable_test_commands = false
/// sync_every_write = false                # fsync each write before its ack (j: true always waits)
/// unauthenticated_idle_timeout_ms = 60000 # 0 = none
/// idle_timeout_ms = 0                     # authenticated connections; 0 = none
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub node: NodeSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub listen: Option<SocketAddr>,
    pub store: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub node_connect_timeout_ms: Option<u64>,
    pub node_operation_timeout_ms: Option<u64>,
    pub health_interval_secs: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub password_workers: Option<usize>,
    pub password_queue: Option<usize>,
    pub password_queue_wait_ms: Option<u64>,
    pub login_free_failures: Option<u32>,
    pub login_address_free_failures: Option<u32>,
    pub login_user_free_failures: Option<u32>,
    pub login_base_delay_ms: Option<u64>,
    pub login_max_delay_ms: Option<u64>,
    pub login_user_max_delay_ms: Option<u64>,
    pub login_forget_secs: Option<u64>,
    pub login_throttle_entries: Option<usize>,
    pub kill_verify_deadline_ms: Option<u64>,
    pub kill_record_retention_days: Option<u64>,
    pub kill_record_sweep_secs: Option<u64>,
    pub enforce_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub listen: Option<SocketAddr>,
    pub enable_test_commands: Option<bool>,
    pub no_auth: Option<bool>,
    pub sync_every_write: Option<bool>,
    pub unauthenticated_idle_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

/// The node's durability and connection settings, from `--sync-every-write` and the file's
/// `[node]` section (a flag can only turn per-write sync on); a timeout of 0 means none.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTuning {
    pub sync_every_write: bool,
    pub unauthenticated_idle_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

pub fn node_tuning(sync_every_write_flag: bool, node: &NodeSection) -> NodeTuning {
    let ms = |v: Option<u64>, default: Option<Duration>| match v {
        None => default,
        Some(0) => None,
        Some(n) => Some(Duration::from_millis(n)),
    };
    NodeTuning {
        sync_every_write: sync_every_write_flag || node.sync_every_write.unwrap_or(false),
        unauthenticated_idle_timeout: ms(
            node.unauthenticated_idle_timeout_ms,
            Some(docplane_node::config::DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT),
        ),
        idle_timeout: ms(node.idle_timeout_ms, None),
    }
}

impl FileConfig {
    /// The file `--config` names, else the default location's `config.toml` if it exists, else
    /// nothing (all defaults).
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let default = crate::client::profiles::config_dir().ok().map(|d| d.join(DEFAULT_CONFIG_FILE));
        let Some(path) = chosen_file(path, default.as_deref()) else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        tracing::info!(file = %path.display(), "configuration file");
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The servers' configuration file name in the config directory (`$DOCPLANE_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/docplane`, else `~/.config/docplane`), beside the client's profiles.toml.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// Which file to read: the one named (which must exist), else the default one if it exists.
fn chosen_file(named: Option<&Path>, default: Option<&Path>) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_path_buf()),
        None => default.filter(|d| d.is_file()).map(Path::to_path_buf),
    }
}

/// The password pool and login throttle parameters: each flag (or its `DOCPLANE_*` variable), else
/// the file's `[api]` key, else the default; refused if they cannot work together.
pub fn login_limits(flags: &crate::LoginLimitArgs, file: &ApiSection) -> Result<docplane_iam::LoginLimits> {
    let mut l = docplane_iam::LoginLimits::default();
    let ms = Duration::from_millis;
    if let Some(n) = flags.password_workers.or(file.password_workers) {
        l.pool.workers = n;
    }
    if let Some(n) = flags.password_queue.or(file.password_queue) {
        l.pool.queue_len = n;
    }
    if let Some(v) = flags.password_queue_wait_ms.or(file.password_queue_wait_ms) {
        l.pool.queue_wait = ms(v);
    }
    let t = &mut l.throttle;
    if let Some(n) = flags.login_free_failures.or(file.login_free_failures) {
        t.user_at_address.free_failures = n;
    }
    if let Some(n) = flags.login_address_free_failures.or(file.login_address_free_failures) {
        t.address.free_failures = n;
    }
    if let Some(n) = flags.login_user_free_failures.or(file.login_user_free_failures) {
        t.user.free_failures = n;
    }
    if let Some(v) = flags.login_base_delay_ms.or(file.login_base_delay_ms) {
        t.base_delay = ms(v);
    }
    if let Some(v) = flags.login_max_delay_ms.or(file.login_max_delay_ms) {
        t.user_at_address.max_delay = ms(v);
        t.address.max_delay = ms(v);
    }
    if let Some(v) = flags.login_user_max_delay_ms.or(file.login_user_max_delay_ms) {
        t.user.max_delay = ms(v);
    }
    if let Some(v) = flags.login_forget_secs.or(file.login_forget_secs) {
        t.forget_after = Duration::from_secs(v);
    }
    if let Some(n) = flags.login_throttle_entries.or(file.login_throttle_entries) {
        t.max_entries = n;
    }
    l.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(l)
}

pub fn addr(flag: Option<SocketAddr>, file: Option<SocketAddr>, default: &str) -> Result<SocketAddr> {
    match flag.or(file) {
        Some(a) => Ok(a),
        None => default.parse().with_context(|| format!("bad default address {default}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_parses_and_rejects_unknown_keys() {
        let cfg: FileConfig = toml::from_str(
            "data_dir = \"/d\"\n[api]\nlisten = \"0.0.0.0:9\"\n[node]\nenable_test_commands = true\n",
        )
        .unwrap();
        assert_eq!(cfg.data_dir.as_deref(), Some(Path::new("/d")));
        assert_eq!(cfg.api.listen, Some("0.0.0.0:9".parse().unwrap()));
        assert_eq!(cfg.node.enable_test_commands, Some(true));
        assert!(toml::from_str::<FileConfig>("[api]\nlisen = \"x\"\n").is_err());
    }

    /// The configuration example in README.md must stay a valid file.
    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("README has a ```toml example") + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let cfg: FileConfig = toml::from_str(&readme[start..end]).unwrap();
        // The documented login limits are the defaults, and they work.
        let documented = login_limits(&crate::LoginLimitArgs::default(), &cfg.api).unwrap();
        assert_eq!(documented, docplane_iam::LoginLimits::default());
        assert!(cfg.api.login_throttle_entries.is_some());
        assert!(cfg.api.store.is_some_and(|s| s.starts_with("postgres://")));
        assert!(cfg.node.listen.is_some());
        assert!(cfg.api.header_read_timeout_ms.is_some() && cfg.api.max_connections.is_some());
    }

    #[test]
    fn node_tuning_from_flag_and_file() {
        let d = node_tuning(false, &NodeSection::default());
        assert!(!d.sync_every_write);
        assert_eq!(d.unauthenticated_idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(d.idle_timeout, None);
        let file: FileConfig = toml::from_str(
            "[node]\nsync_every_write = true\nunauthenticated_idle_timeout_ms = 0\nidle_timeout_ms = 5000\n",
        )
        .unwrap();
        let t = node_tuning(false, &file.node);
        assert!(t.sync_every_write);
        assert_eq!(t.unauthenticated_idle_timeout, None);
        assert_eq!(t.idle_timeout, Some(Duration::from_secs(5)));
        assert!(node_tuning(true, &NodeSection::default()).sync_every_write);
    }

    #[test]
    fn login_limits_flag_beats_file_beats_default_and_bad_ones_are_refused() {
        let file: FileConfig = toml::from_str(
            "[api]\npassword_workers = 3\npassword_queue_wait_ms = 250\nlogin_max_delay_ms = 30000\n",
        )
        .unwrap();
        let flags = crate::LoginLimitArgs { password_workers: Some(1), ..Default::default() };
        let l = login_limits(&flags, &file.api).unwrap();
        assert_eq!(l.pool.workers, 1, "flag");
        assert_eq!(l.pool.queue_wait, Duration::from_millis(250), "file");
        assert_eq!(l.throttle.address.max_delay, Duration::from_secs(30));
        let d = docplane_iam::LoginLimits::default();
        assert_eq!((l.pool.queue_len, l.throttle.user), (d.pool.queue_len, d.throttle.user), "defaults");
        // A cap below the first delay cannot work: refused at start, not ignored.
        let bad = crate::LoginLimitArgs { login_user_max_delay_ms: Some(10), ..Default::default() };
        let e = login_limits(&bad, &file.api).unwrap_err().to_string();
        assert!(e.contains("per user"), "{e}");
    }

    #[test]
    fn the_default_config_file_is_read_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join(DEFAULT_CONFIG_FILE);
        assert_eq!(chosen_file(None, Some(&default)), None, "absent: defaults");
        std::fs::write(&default, "data_dir = \"/d\"\n").unwrap();
        assert_eq!(chosen_file(None, Some(&default)), Some(default.clone()));
        let named = dir.path().join("other.toml");
        assert_eq!(chosen_file(Some(&named), Some(&default)), Some(named), "--config wins");
        assert_eq!(chosen_file(None, None), None);
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let f: SocketAddr = "1.1.1.1:1".parse().unwrap();
        let c: SocketAddr = "2.2.2.2:2".parse().unwrap();
        assert_eq!(addr(Some(f), Some(c), "3.3.3.3:3").unwrap(), f);
        assert_eq!(addr(None, Some(c), "3.3.3.3:3").unwrap(), c);
        assert_eq!(addr(None, None, "3.3.3.3:3").unwrap(), "3.3.3.3:3".parse().unwrap());
    }
}
