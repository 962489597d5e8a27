//! Settings for `up`, `serve` and `node`: command-line flags, `DOCPLANE_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, then built-in defaults.
//!
//! Every flag is an `Option` in clap so that "not given" can fall through to the file; clap itself reads
//! the environment variable of each flag, so a variable counts as given on the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
/// kill_verify_deadline_ms = 2000
/// kill_record_retention_days = 90
/// kill_record_sweep_secs = 10
/// [node]
/// listen = "127.0.0.1:27017"
/// enable_test_commands = false
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
    pub kill_verify_deadline_ms: Option<u64>,
    pub kill_record_retention_days: Option<u64>,
    pub kill_record_sweep_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub listen: Option<SocketAddr>,
    pub enable_test_commands: Option<bool>,
    pub no_auth: Option<bool>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
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
        assert!(cfg.api.store.is_some_and(|s| s.starts_with("postgres://")));
        assert!(cfg.node.listen.is_some());
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
