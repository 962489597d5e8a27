//! Logical sessions, known from the `lsid` of commands: owner users, last use, last connection.
//!
//! A session is keyed by its lsid UUID bytes. Its `uid` is SHA-256 of the owner's `user@db` (of the empty
//! string without authentication), as mongod computes it. Sessions idle longer than
//! `logicalSessionTimeoutMinutes` (30) are forgotten by the reaper.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use docplane_query::CommandError;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::auth::UserName;
use crate::conn::ConnInfo;

/// `logicalSessionTimeoutMinutes`.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A logical session.
#[derive(Debug, Clone)]
pub struct Session {
    pub key: Vec<u8>,
    /// `{id: UUID, uid: BinData}`.
    pub lsid: Document,
    pub users: Vec<UserName>,
    pub last_use: Instant,
    pub last_use_wall: bson::DateTime,
    pub conn: Option<Arc<ConnInfo>>,
}

/// mongod's session uid: SHA-256 of `user@db` (empty string when unauthenticated).
pub fn session_uid(users: &[UserName]) -> Vec<u8> {
    let name = users.first().map(|u| u.to_string()).unwrap_or_default();
    Sha256::digest(name.as_bytes()).to_vec()
}

/// Extracts the 16 UUID bytes from an lsid's `id`.
pub fn lsid_key(lsid: &Bson) -> Result<Vec<u8>, CommandError> {
    let Bson::Document(d) = lsid else {
        return Err(CommandError::type_mismatch("lsid must be an object"));
    };
    uuid_bytes(d.get("id")).ok_or_else(|| CommandError::bad_value("lsid.id must be a UUID"))
}

/// The bytes of a UUID binary (subtype 4 or 3).
pub fn uuid_bytes(b: Option<&Bson>) -> Option<Vec<u8>> {
    match b {
        Some(Bson::Binary(bin))
            if bin.bytes.len() == 16
                && matches!(bin.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld) =>
        {
            Some(bin.bytes.clone())
        }
        _ => None,
    }
}

/// The `{id, uid}` document for a session key and owner.
pub fn lsid_doc(key: &[u8], users: &[UserName]) -> Document {
    doc! {
        "id": Binary { subtype: BinarySubtype::Uuid, bytes: key.to_vec() },
        "uid": Binary { subtype: BinarySubtype::Generic, bytes: session_uid(users) },
    }
}

/// All sessions seen.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    map: Mutex<HashMap<Vec<u8>, Session>>,
}

impl SessionRegistry {
    /// Records a use of `lsid` by `users` on `conn`; returns the key and the `{id, uid}` document.
    pub fn touch(
        &self,
        lsid: &Bson,
        users: &[UserName],
        conn: &Arc<ConnInfo>,
    ) -> Result<(Vec<u8>, Document), CommandError> {
        let key = lsid_key(lsid)?;
        let mut map = self.map.lock();
        let s = map.entry(key.clone()).or_insert_with(|| Session {
            key: key.clone(),
            lsid: lsid_doc(&key, users),
            users: users.to_vec(),
            last_use: Instant::now(),
            last_use_wall: bson::DateTime::now(),
            conn: None,
        });
        s.last_use = Instant::now();
        s.last_use_wall = bson::DateTime::now();
        s.conn = Some(conn.clone());
        Ok((key, s.lsid.clone()))
    }

    /// A copy of one session.
    pub fn get(&self, key: &[u8]) -> Option<Session> {
        self.map.lock().get(key).cloned()
    }

    /// Copies of all sessions.
    pub fn snapshot(&self) -> Vec<Session> {
        self.map.lock().values().cloned().collect()
    }

    /// Copies of the sessions `keep` accepts; the others are not copied (keep `keep` cheap: it runs
    /// under the registry lock).
    pub fn snapshot_where(&self, mut keep: impl FnMut(&Session) -> bool) -> Vec<Session> {
        self.map.lock().values().filter(|s| keep(s)).cloned().collect()
    }

    /// Forgets sessions (endSessions).
    pub fn end(&self, keys: &[Vec<u8>]) {
        let mut map = self.map.lock();
        for k in keys {
            map.remove(k);
        }
    }

    /// Forgets sessions idle longer than `timeout`; returns their keys.
    pub fn reap(&self, timeout: Duration) -> Vec<Vec<u8>> {
        let mut map = self.map.lock();
        let dead: Vec<Vec<u8>> =
            map.values().filter(|s| s.last_use.elapsed() > timeout).map(|s| s.key.clone()).collect();
        for k in &dead {
            map.remove(k);
        }
        dead
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether no session is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uid_is_sha256_of_user_at_db() {
        let u = vec![UserName::new("a", "admin")];
        assert_eq!(session_uid(&u), Sha256::digest(b"a@admin").to_vec());
        assert_eq!(session_uid(&[]), Sha256::digest(b"").to_vec());
    }

    #[test]
    fn lsid_validation() {
        let id = uuid::Uuid::new_v4();
        let good = Bson::Document(
            doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: id.as_bytes().to_vec() }},
        );
        assert_eq!(lsid_key(&good).unwrap(), id.as_bytes().to_vec());
        assert!(lsid_key(&Bson::Int32(1)).is_err());
        assert!(lsid_key(&Bson::Document(doc! {"id": "x"})).is_err());
    }
}
