//! Client profiles: where `docplane login` keeps credentials for later commands.
//!
//! One TOML file, `$DOCPLANE_CONFIG_DIR/profiles.toml`, else `$XDG_CONFIG_HOME/docplane/profiles.toml`,
//! else `~/.config/docplane/profiles.toml` (the same directory holds the servers' default `config.toml`),
//! written with mode 0600 because it holds tokens or secret keys. A profile authenticates either with a
//! token obtained by password (`auth = "token"`) or by signing every request with an AK/SK pair
//! (`auth = "aksk"`).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "auth", rename_all = "lowercase")]
pub enum Credentials {
    /// An IAM token from `POST /v3/auth/tokens`; expires after 24 h.
    Token { token: String, expires_at: String },
    /// A permanent access key; every request is signed with SDK-HMAC-SHA256.
    Aksk { ak: String, sk: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub endpoint: String,
    pub project_id: String,
    #[serde(flatten)]
    pub credentials: Credentials,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProfileFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The directory holding `profiles.toml`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCPLANE_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = dirs::config_dir().context("no config directory: set DOCPLANE_CONFIG_DIR")?;
    Ok(base.join("docplane"))
}

pub fn profiles_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("profiles.toml"))
}

impl ProfileFile {
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file atomically with mode 0600 (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().context("profiles path has no parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = toml::to_string_pretty(self)?;
        let tmp = path.with_extension("toml.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&Profile> {
        match self.profiles.get(name) {
            Some(p) => Ok(p),
            None => Err(super::NotSignedIn(format!(
                "no profile '{name}' in {}: run `docplane login --profile {name} ...` first",
                profiles_path().map(|p| p.display().to_string()).unwrap_or_default()
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn save_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/profiles.toml");
        let mut file = ProfileFile::default();
        file.profiles.insert(
            "default".into(),
            Profile {
                endpoint: "http://127.0.0.1:8080".into(),
                project_id: "0123456789abcdef0123456789abcdef".into(),
                credentials: Credentials::Aksk { ak: "AK".into(), sk: "SK".into() },
            },
        );
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = ProfileFile::load(&path).unwrap();
        assert_eq!(back.profiles, file.profiles);
        assert!(back.get("other").is_err());
    }
}
