//! The master key and what is derived from it.
//!
//! One 32-byte master key per deployment: from `DOCPLANE_MASTER_KEY` (64 hex chars or base64 of 32
//! bytes) or from the file `master.key` in the data dir, created with mode 0600 at first start.
//! Replicas must share it. From it we derive, by HMAC-SHA256 over fixed labels, independent subkeys:
//! one for sealing secrets (AES-256-GCM) and one for signing tokens, so a leak of one use never
//! weakens the other. Sealed blobs are `version(1) || nonce(12) || ciphertext+tag`.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "DOCPLANE_MASTER_KEY";
/// File name of the master key inside the data dir.
pub const MASTER_KEY_FILE: &str = "master.key";
const SEAL_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key must be 32 bytes, given as 64 hex characters or base64")]
    BadKey,
    #[error("master key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sealed value is corrupt or was sealed under another key")]
    Open,
}

/// The deployment's 32-byte master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        Self(b)
    }

    /// Parses 64 hex characters or standard base64 of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| KeyError::BadKey)?
        } else {
            base64::engine::general_purpose::STANDARD.decode(t).map_err(|_| KeyError::BadKey)?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadKey)?;
        Ok(Self(arr))
    }

    /// Hex text, as written to the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `DOCPLANE_MASTER_KEY` if set, else `<data_dir>/master.key`, created (mode 0600) if missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        if let Ok(v) = std::env::var(MASTER_KEY_ENV) {
            return Self::parse(&v);
        }
        Self::load_or_create_file(&data_dir.join(MASTER_KEY_FILE))
    }

    /// Reads the key file, or creates it with a new key and mode 0600 (never overwrites).
    pub fn load_or_create_file(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let key = Self::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                f.write_all(format!("{}\n", key.to_hex()).as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(key)
            }
            // Another process won the race: use its key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::parse(&std::fs::read_to_string(path).map_err(io)?)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A 32-byte subkey for `label` (HMAC-SHA256(master, label)).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            mac.update(b"docplane-kdf-v1\0");
            mac.update(label.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// The key check value: hex of a subkey derived for a fixed label. Stored once per metadata
    /// store so that a replica started with another master key is refused at start instead of
    /// failing every token and secret of the others. Reveals nothing about the key (one-way) and is
    /// independent of the sealing and token subkeys (label-separated).
    pub fn check_value(&self) -> String {
        format!("kcv1:{}", hex::encode(self.derive("key-check-v1")))
    }

    /// The sealer for secrets at rest.
    pub fn sealer(&self) -> Sealer {
        Sealer { key: self.derive("seal") }
    }
}

/// AES-256-GCM sealing of secrets at rest. `aad` binds a ciphertext to its row (e.g. the access key
/// id), so swapping blobs between rows fails to open.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.key).into());
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ct =
            cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 1 + 12 + 16 || sealed[0] != SEAL_VERSION {
            return Err(KeyError::Open);
        }
        let cipher = Aes256Gcm::new((&self.key).into());
        cipher
            .decrypt(Nonce::from_slice(&sealed[1..13]), Payload { msg: &sealed[13..], aad })
            .map_err(|_| KeyError::Open)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_binding() {
        let s = MasterKey::generate().sealer();
        let blob = s.seal(b"secret", b"AK1");
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open(&blob, b"AK1").unwrap(), b"secret");
        assert!(s.open(&blob, b"AK2").is_err());
        assert!(MasterKey::generate().sealer().open(&blob, b"AK1").is_err());
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(s.open(&bad, b"AK1").is_err());
        assert!(s.open(&blob[..10], b"AK1").is_err());
        assert_ne!(s.seal(b"secret", b"AK1"), blob, "fresh nonce each time");
    }

    #[test]
    fn parse_forms() {
        let k = MasterKey::generate();
        assert_eq!(MasterKey::parse(&k.to_hex()).unwrap().0, k.0);
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.0);
        assert_eq!(MasterKey::parse(&b64).unwrap().0, k.0);
        assert!(MasterKey::parse("abcd").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn check_value_identifies_the_key() {
        let k = MasterKey::generate();
        assert_eq!(k.check_value(), MasterKey::parse(&k.to_hex()).unwrap().check_value());
        assert_ne!(k.check_value(), MasterKey::generate().check_value());
        assert!(!k.check_value().contains(&k.to_hex()));
        assert!(!k.check_value().contains(&hex::encode(k.derive("seal"))));
        assert!(!k.check_value().contains(&hex::encode(k.derive("token"))));
    }

    #[test]
    fn derive_is_label_separated() {
        let k = MasterKey::generate();
        assert_ne!(k.derive("seal"), k.derive("token"));
        assert_eq!(k.derive("seal"), k.derive("seal"));
    }

    #[test]
    fn key_file_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(MASTER_KEY_FILE);
        let a = MasterKey::load_or_create_file(&p).unwrap();
        let b = MasterKey::load_or_create_file(&p).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
