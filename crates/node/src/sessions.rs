//! Logical sessions, known from the `lsid` of commands: owner users, last use, last connection.
//!
//! A session is identified, as in mongod, by its lsid's UUID *and* its owner's `uid` (SHA-256 of the
//! owner's `user@db`, of the empty string without authentication): two users sending the same UUID
//! have two sessions. The registry's key is the 16 UUID bytes followed by the 32 uid bytes
//! ([`session_key`], [`key_parts`]); ops and cursors carry that key. Sessions idle longer than
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

/// The registry key of session `id` owned by `uid`.
pub fn session_key(id: &[u8], uid: &[u8]) -> Vec<u8> {
    [id, uid].concat()
}

/// (id, uid) of a registry key.
pub fn key_parts(key: &[u8]) -> (&[u8], &[u8]) {
    key.split_at(key.len().min(16))
}

/// The 16 UUID bytes of an lsid's `id` and its `uid` if the client sent one.
pub fn lsid_parts(lsid: &Bson) -> Result<(Vec<u8>, Option<Vec<u8>>), CommandError> {
    let Bson::Document(d) = lsid else {
        return Err(CommandError::type_mismatch("lsid must be an object"));
    };
    let id = uuid_bytes(d.get("id")).ok_or_else(|| CommandError::bad_value("lsid.id must be a UUID"))?;
    let uid = match d.get("uid") {
        None => None,
        Some(Bson::Binary(b)) if b.bytes.len() == 32 => Some(b.bytes.clone()),
        Some(_) => return Err(CommandError::type_mismatch("lsid.uid must be a 32-byte BinData")),
    };
    Ok((id, uid))
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

/// The `{id, uid}` document of a session.
pub fn lsid_doc(id: &[u8], uid: &[u8]) -> Document {
    doc! {
        "id": Binary { subtype: BinarySubtype::Uuid, bytes: id.to_vec() },
        "uid": Binary { subtype: BinarySubtype::Generic, bytes: uid.to_vec() },
    }
}

/// All sessions seen.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    map: Mutex<HashMap<Vec<u8>, Session>>,
}

impl SessionRegistry {
    /// Records a use of `lsid` by `users` on `conn`; returns the key and the `{id, uid}` document.
    /// The session is the lsid's id with its `uid` if given (the caller has checked the client may
    /// name it), else with `users`' uid.
    pub fn touch(
        &self,
        lsid: &Bson,
        users: &[UserName],
        conn: &Arc<ConnInfo>,
    ) -> Result<(Vec<u8>, Document), CommandError> {
        let (id, uid) = lsid_parts(lsid)?;
        let uid = uid.unwrap_or_else(|| session_uid(users));
        let key = session_key(&id, &uid);
        let mut map = self.map.lock();
        let s = map.entry(key.clone()).or_insert_with(|| Session {
            key: key.clone(),
            lsid: lsid_doc(&id, &uid),
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

    /// Marks a known session used now; false when it is not known.
    pub fn refresh(&self, key: &[u8]) -> bool {
        match self.map.lock().get_mut(key) {
            Some(s) => {
                s.last_use = Instant::now();
                s.last_use_wall = bson::DateTime::now();
                true
            }
            None => false,
        }
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
        assert_eq!(lsid_parts(&good).unwrap(), (id.as_bytes().to_vec(), None));
        assert!(lsid_parts(&Bson::Int32(1)).is_err());
        assert!(lsid_parts(&Bson::Document(doc! {"id": "x"})).is_err());
        let bad_uid = doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![1; 16] }, "uid": 1};
        assert!(lsid_parts(&Bson::Document(bad_uid)).is_err());
    }

    #[test]
    fn the_same_id_of_two_users_is_two_sessions() {
        let reg = SessionRegistry::default();
        let conn = Arc::new(ConnInfo::new(1, std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
        let lsid = Bson::Document(doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![9; 16] }});
        let a = [UserName::new("a", "admin")];
        let b = [UserName::new("b", "admin")];
        let (ka, la) = reg.touch(&lsid, &a, &conn).unwrap();
        let (kb, lb) = reg.touch(&lsid, &b, &conn).unwrap();
        assert_ne!(ka, kb);
        assert_eq!(reg.len(), 2);
        assert_eq!(key_parts(&ka), (&[9u8; 16][..], &session_uid(&a)[..]));
        assert_eq!(
            la.get("uid"),
            Some(&Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: session_uid(&a) }))
        );
        assert_ne!(la, lb);
        assert_eq!(reg.get(&kb).unwrap().users, b.to_vec());
    }
}
