//! Plain data types stored by [`crate::MetaStore`].
//!
//! Invariants: timestamps are unix milliseconds (`i64`); ids are opaque strings chosen by the caller
//! (the store never generates ids, so every replica agrees on them); secrets only ever appear here as
//! ciphertext (`*_enc` fields), the store never sees a key.

use serde::{Deserialize, Serialize};

/// An account (the vendor calls it a domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Domain {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub created_at: i64,
}

/// A project inside an account; every DDS resource belongs to exactly one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Project {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub created_at: i64,
}

/// An IAM user. `token_epoch` is bumped whenever earlier tokens must stop working (password change,
/// disable); tokens carry the epoch they were issued under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub enabled: bool,
    pub is_domain_admin: bool,
    pub token_epoch: i64,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user group; policies reach users through groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Group {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// A custom policy (vendor: "role" of type AX/XA). `policy` is the JSON policy document as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Role {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub role_type: String,
    pub policy: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A role granted to a group on a scope (a project id, or a domain id for account-wide grants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Grant {
    pub scope_id: String,
    pub group_id: String,
    pub role_id: String,
}

/// A permanent access key. `secret_enc` is the secret key sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Credential {
    pub access_key: String,
    pub user_id: String,
    pub secret_enc: Vec<u8>,
    /// `active` or `inactive`.
    pub status: String,
    pub description: String,
    pub created_at: i64,
}

/// One entry of the change log: "entity `entity_id` of `kind` changed". `seq` grows monotonically in
/// commit order on both backends, so "everything after N" is a cheap, gap-free poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Change {
    pub seq: i64,
    pub kind: String,
    pub entity_id: String,
    pub at: i64,
}

/// Change kinds written by the store.
pub mod change_kind {
    pub const DOMAIN: &str = "domain";
    pub const PROJECT: &str = "project";
    pub const USER: &str = "user";
    pub const GROUP: &str = "group";
    pub const MEMBERSHIP: &str = "membership";
    pub const ROLE: &str = "role";
    pub const GRANT: &str = "grant";
    pub const CREDENTIAL: &str = "credential";
    pub const SETTING: &str = "setting";
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// The wire/database spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            /// Parses the wire/database spelling (exact match).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s).ok_or_else(|| format!("unknown {} {s:?}", stringify!($name)))
            }
        }
    };
}

string_enum!(
    /// Instance topology (vendor `mode`).
    InstanceMode { Single = "Single", ReplicaSet = "ReplicaSet", Sharding = "Sharding" }
);
string_enum!(
    /// Instance group type (vendor `groups[].type`).
    GroupType { Single = "single", Replica = "replica", Mongos = "mongos", Shard = "shard", Config = "config" }
);

/// A managed MongoDB deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Instance {
    pub id: String,
    pub project_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub mode: InstanceMode,
    pub status: String,
    pub datastore_version: String,
    pub port: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A group of nodes inside an instance (replica set, shard, mongos tier, config servers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct InstanceGroup {
    pub id: String,
    pub instance_id: String,
    #[sqlx(try_from = "String")]
    pub group_type: GroupType,
    pub name: String,
    pub status: String,
}

/// One mongod/mongos process. `credentials_enc` is the sealed connection credential blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Node {
    pub id: String,
    pub instance_id: String,
    pub group_id: String,
    pub name: String,
    pub role: String,
    pub status: String,
    /// `host:port`.
    pub address: String,
    pub credentials_enc: Option<Vec<u8>>,
    pub version: String,
    pub updated_at: i64,
}

/// Filters of `GET /v3/{project_id}/instances`; `None` means "no filter".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceFilter {
    pub project_id: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub mode: Option<InstanceMode>,
    pub offset: i64,
    pub limit: i64,
}

/// Partial update of a node; `None` fields are left alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeUpdate {
    pub status: Option<String>,
    pub role: Option<String>,
    pub version: Option<String>,
    pub address: Option<String>,
}

/// One audited kill request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KillAudit {
    pub id: String,
    pub at: i64,
    pub project_id: String,
    pub instance_id: String,
    pub node_id: String,
    pub principal_id: String,
    pub principal_name: String,
    pub request_id: String,
    /// JSON array of the session ids asked for.
    pub session_ids: String,
    pub outcome: String,
    pub detail: String,
}

/// The current time in unix milliseconds.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
