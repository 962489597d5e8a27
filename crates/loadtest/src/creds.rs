//! The credentials file: `docplane up`'s `bootstrap.json`, or a file of the same keys that a
//! scenario script writes for `docplane serve` (its `admin.json` plus `node_id` and `node_uri`).

use std::path::Path;

use serde::Deserialize;

/// What the load generator signs in with. `Debug` hides the secrets.
#[derive(Clone, Deserialize)]
pub struct Creds {
    #[serde(default)]
    pub endpoint: Option<String>,
    pub project_id: String,
    pub domain_name: String,
    pub user_name: String,
    pub password: String,
    pub ak: String,
    pub sk: String,
    #[serde(default)]
    pub node_id: Option<String>,
    /// `mongodb://root:...@host:port/?authSource=admin`: where the load's `sleep` operations run.
    #[serde(default)]
    pub node_uri: Option<String>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("endpoint", &self.endpoint)
            .field("project_id", &self.project_id)
            .field("domain_name", &self.domain_name)
            .field("user_name", &self.user_name)
            .field("password", &"<hidden>")
            .field("ak", &self.ak)
            .field("sk", &"<hidden>")
            .field("node_id", &self.node_id)
            .field("node_uri", &self.node_uri.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Why the credentials file could not be used. Never carries the file's content.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("parsing {0}: {1}")]
    Parse(String, serde_json::Error),
}

impl Creds {
    pub fn load(path: &Path) -> Result<Self, CredsError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CredsError::Read(name.clone(), e))?;
        serde_json::from_str(&text).map_err(|e| CredsError::Parse(name, e))
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c: Creds = serde_json::from_str(
            r#"{"project_id":"p","domain_name":"d","user_name":"u","password":"pw-secret",
                "ak":"AK","sk":"sk-secret","node_uri":"mongodb://root:uri-secret@127.0.0.1:1"}"#,
        )
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["pw-secret", "sk-secret", "uri-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("AK"));
    }
}
