//! The user store: users with SCRAM credentials (never plaintext) and roles, persisted as one BSON file
//! `users.bson` in the data directory (written to a temp file, fsynced, renamed), or in memory.
//!
//! Invariant: the in-memory map is only changed after the file write that reflects it succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bson::{Bson, Document, doc};
use docplane_query::CommandError;
use parking_lot::Mutex;

use super::roles::RoleRef;
use super::scram::{Mechanism, ScramCredential, new_credential};

/// A user's qualified name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName {
    pub user: String,
    pub db: String,
}

impl UserName {
    pub fn new(user: impl Into<String>, db: impl Into<String>) -> Self {
        UserName { user: user.into(), db: db.into() }
    }
    /// `{user, db}` as currentOp's effectiveUsers shows it.
    pub fn to_doc(&self) -> Document {
        doc! {"user": &self.user, "db": &self.db}
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.db)
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: UserName,
    pub user_id: uuid::Uuid,
    pub roles: Vec<RoleRef>,
    pub credentials: BTreeMap<&'static str, ScramCredential>,
    pub custom_data: Option<Document>,
}

impl User {
    /// A new user with credentials for `mechanisms`.
    pub fn new(name: UserName, password: &str, roles: Vec<RoleRef>, mechanisms: &[Mechanism]) -> Self {
        let mut u = User {
            name,
            user_id: uuid::Uuid::new_v4(),
            roles,
            credentials: BTreeMap::new(),
            custom_data: None,
        };
        u.set_password(password, mechanisms);
        u
    }
    /// Replaces the credentials.
    pub fn set_password(&mut self, password: &str, mechanisms: &[Mechanism]) {
        self.credentials.clear();
        for m in mechanisms {
            self.credentials.insert(m.name(), new_credential(*m, &self.name.user, password));
        }
    }
    /// The credential for a mechanism.
    pub fn credential(&self, m: Mechanism) -> Option<&ScramCredential> {
        self.credentials.get(m.name())
    }
    /// Mechanism names, as `saslSupportedMechs` and usersInfo list them.
    pub fn mechanisms(&self) -> Vec<String> {
        self.credentials.keys().map(|s| s.to_string()).collect()
    }
    /// The document usersInfo returns (and the file stores when `with_credentials`).
    pub fn to_doc(&self, with_credentials: bool) -> Document {
        let mut d = doc! {
            "_id": format!("{}.{}", self.name.db, self.name.user),
            "userId": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: self.user_id.as_bytes().to_vec() },
            "user": &self.name.user,
            "db": &self.name.db,
        };
        if with_credentials {
            let mut creds = Document::new();
            for (m, c) in &self.credentials {
                creds.insert(
                    *m,
                    doc! {
                        "iterationCount": c.iteration_count as i32,
                        "salt": B64.encode(&c.salt),
                        "storedKey": B64.encode(&c.stored_key),
                        "serverKey": B64.encode(&c.server_key),
                    },
                );
            }
            d.insert("credentials", creds);
        }
        d.insert(
            "roles",
            self.roles
                .iter()
                .map(|r| Bson::Document(doc! {"role": &r.role, "db": &r.db}))
                .collect::<Vec<_>>(),
        );
        if let Some(cd) = &self.custom_data {
            d.insert("customData", cd.clone());
        }
        d.insert("mechanisms", self.mechanisms());
        d
    }
    /// Parses a stored user document.
    pub fn from_doc(d: &Document) -> Option<User> {
        let name = UserName::new(d.get_str("user").ok()?, d.get_str("db").ok()?);
        let user_id = match d.get("userId") {
            Some(Bson::Binary(b)) => uuid::Uuid::from_slice(&b.bytes).ok()?,
            _ => uuid::Uuid::new_v4(),
        };
        let roles = parse_role_docs(d.get_array("roles").ok()?)?;
        let mut credentials = BTreeMap::new();
        if let Ok(creds) = d.get_document("credentials") {
            for m in [Mechanism::Sha1, Mechanism::Sha256] {
                if let Ok(c) = creds.get_document(m.name()) {
                    let cred = ScramCredential {
                        iteration_count: u32::try_from(c.get_i32("iterationCount").ok()?).ok()?,
                        salt: B64.decode(c.get_str("salt").ok()?).ok()?,
                        stored_key: B64.decode(c.get_str("storedKey").ok()?).ok()?,
                        server_key: B64.decode(c.get_str("serverKey").ok()?).ok()?,
                    };
                    credentials.insert(m.name(), cred);
                }
            }
        }
        let custom_data = d.get_document("customData").ok().cloned();
        Some(User { name, user_id, roles, credentials, custom_data })
    }
}

fn parse_role_docs(arr: &[Bson]) -> Option<Vec<RoleRef>> {
    arr.iter()
        .map(|b| match b {
            Bson::Document(r) => {
                Some(RoleRef { role: r.get_str("role").ok()?.into(), db: r.get_str("db").ok()?.into() })
            }
            _ => None,
        })
        .collect()
}

/// Parses a `roles` array of a user command: strings (role in `default_db`) or `{role, db}` documents.
pub fn parse_roles(v: &Bson, default_db: &str) -> Result<Vec<RoleRef>, CommandError> {
    let Bson::Array(arr) = v else {
        return Err(CommandError::type_mismatch("roles must be an array"));
    };
    arr.iter()
        .map(|b| match b {
            Bson::String(s) => Ok(RoleRef { role: s.clone(), db: default_db.into() }),
            Bson::Document(d) => match (d.get_str("role"), d.get_str("db")) {
                (Ok(r), Ok(db)) => Ok(RoleRef { role: r.into(), db: db.into() }),
                _ => Err(CommandError::bad_value("role documents need string fields role and db")),
            },
            _ => Err(CommandError::type_mismatch("role names must be strings or {role, db} documents")),
        })
        .collect()
}

/// All users, keyed by (db, user).
#[derive(Debug, Default)]
pub struct UserStore {
    users: Mutex<BTreeMap<UserName, User>>,
    path: Option<PathBuf>,
}

impl UserStore {
    /// An empty in-memory store.
    pub fn in_memory() -> Self {
        UserStore::default()
    }

    /// Loads `dir/users.bson` (missing file = no users).
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join("users.bson");
        let mut users = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let doc = Document::from_reader(&mut bytes.as_slice()).map_err(|e| e.to_string())?;
                for b in doc.get_array("users").map_err(|e| e.to_string())? {
                    if let Bson::Document(d) = b {
                        let u = User::from_doc(d).ok_or_else(|| format!("bad user document {d}"))?;
                        users.insert(u.name.clone(), u);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.to_string()),
        }
        Ok(UserStore { users: Mutex::new(users), path: Some(path) })
    }

    fn persist(&self, users: &BTreeMap<UserName, User>) -> Result<(), CommandError> {
        let Some(path) = &self.path else { return Ok(()) };
        let arr: Vec<Bson> = users.values().map(|u| Bson::Document(u.to_doc(true))).collect();
        let doc = doc! {"users": arr};
        let mut bytes = Vec::new();
        doc.to_writer(&mut bytes)
            .map_err(|e| docplane_engine::internal_error("encoding the users file", e))?;
        let tmp = path.with_extension("bson.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            // 0600 even if a stale temporary file had another mode: it holds the SCRAM keys.
            let mut f = docplane_engine::files::create_private(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            docplane_engine::internal_error("writing the users file", format!("{}: {e}", path.display()))
        })
    }

    /// A copy of one user.
    pub fn get(&self, name: &UserName) -> Option<User> {
        self.users.lock().get(name).cloned()
    }

    /// All users of `db` (all users when `None`).
    pub fn list(&self, db: Option<&str>) -> Vec<User> {
        self.users.lock().values().filter(|u| db.is_none_or(|d| u.name.db == d)).cloned().collect()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.lock().len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a user; code 51003 if it exists.
    pub fn create(&self, user: User) -> Result<(), CommandError> {
        let mut users = self.users.lock();
        if users.contains_key(&user.name) {
            return Err(CommandError::location(51003, format!("User \"{}\" already exists", user.name)));
        }
        let mut next = users.clone();
        next.insert(user.name.clone(), user);
        self.persist(&next)?;
        *users = next;
        Ok(())
    }

    /// Changes a user with `f`; code 11 UserNotFound if missing.
    pub fn modify(
        &self,
        name: &UserName,
        f: impl FnOnce(&mut User) -> Result<(), CommandError>,
    ) -> Result<(), CommandError> {
        let mut users = self.users.lock();
        let mut next = users.clone();
        let u = next.get_mut(name).ok_or_else(|| user_not_found(name))?;
        f(u)?;
        self.persist(&next)?;
        *users = next;
        Ok(())
    }

    /// Removes a user; code 11 UserNotFound if missing.
    pub fn remove(&self, name: &UserName) -> Result<(), CommandError> {
        let mut users = self.users.lock();
        let mut next = users.clone();
        if next.remove(name).is_none() {
            return Err(user_not_found(name));
        }
        self.persist(&next)?;
        *users = next;
        Ok(())
    }
}

/// mongod's UserNotFound error.
pub fn user_not_found(name: &UserName) -> CommandError {
    CommandError::new(
        11,
        "UserNotFound",
        format!("Could not find user \"{}\" for db \"{}\"", name.user, name.db),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn persist_and_reload_without_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        let roles = vec![RoleRef { role: "root".into(), db: "admin".into() }];
        store
            .create(User::new(UserName::new("bob", "admin"), "hunter2-pw", roles, &[Mechanism::Sha256]))
            .unwrap();
        assert!(
            store.create(User::new(UserName::new("bob", "admin"), "x", vec![], &[Mechanism::Sha1])).is_err()
        );
        let raw = std::fs::read(dir.path().join("users.bson")).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"hunter2-pw"));
        let again = UserStore::open(dir.path()).unwrap();
        let bob = again.get(&UserName::new("bob", "admin")).unwrap();
        assert_eq!(bob.roles.len(), 1);
        assert!(bob.credential(Mechanism::Sha256).is_some());
        assert_eq!(bob, store.get(&UserName::new("bob", "admin")).unwrap());
        again.remove(&UserName::new("bob", "admin")).unwrap();
        assert!(UserStore::open(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn roles_parsing() {
        let r = parse_roles(
            &Bson::Array(vec!["read".into(), Bson::Document(doc! {"role": "root", "db": "admin"})]),
            "t",
        )
        .unwrap();
        assert_eq!(r[0], RoleRef { role: "read".into(), db: "t".into() });
        assert_eq!(r[1].db, "admin");
        assert!(parse_roles(&Bson::Int32(1), "t").is_err());
    }
}
