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

/// What a session call needs of a node, read at once ([`crate::MetaStore::get_node_context`]):
/// the node, its instance, and the instance's session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    pub node: Node,
    pub instance: Instance,
    pub settings: SessionSettings,
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

// ---- session settings (issue 9): privacy and safety rails, per instance

/// The settings of the session service for one instance: whether listed operations show their
/// command shaped (literals replaced by placeholders, `docplane_sessions::privacy`) and which
/// operations no kill may touch (`docplane_sessions::rails`). An instance that was never
/// configured has [`SessionSettings::defaults`]; the settings go with their instance.
///
/// The store keeps the lists as given; the API validates them (bounds, no duplicates) first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettings {
    pub instance_id: String,
    /// Show operations with their literals replaced by typed placeholders.
    pub redact_operations: bool,
    /// MongoDB users (`name`, or `name@db`) whose operations are never killed.
    pub protected_users: Vec<String>,
    /// Client application names (`appName`) whose operations are never killed.
    pub protected_app_names: Vec<String>,
    /// When they were last stored (unix ms); 0 while the defaults apply.
    pub updated_at: i64,
    /// Who stored them (a user name); empty while the defaults apply.
    pub updated_by: String,
}

impl SessionSettings {
    /// The settings of an instance that was never configured: nothing redacted, nothing
    /// protected.
    pub fn defaults(instance_id: &str) -> Self {
        SessionSettings {
            instance_id: instance_id.to_owned(),
            redact_operations: false,
            protected_users: Vec::new(),
            protected_app_names: Vec::new(),
            updated_at: 0,
            updated_by: String::new(),
        }
    }
}

// ---- kill records (audit): an append-only, per-project hash chain

/// The `prev_hash` of a project's first kill-log entry.
pub const KILL_CHAIN_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Kinds of kill-log entries.
pub mod kill_entry_kind {
    /// The immutable part of a kill, committed before any killOp is sent.
    pub const INTENT: &str = "intent";
    /// The outcome of a kill, appended once it is known (at most one per record).
    pub const OUTCOME: &str = "outcome";
}

/// A kill-log entry as the caller gives it; the store assigns `seq`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKillEntry {
    pub project_id: String,
    /// The kill record this entry belongs to (an intent and its outcome share it).
    pub record_id: String,
    /// [`kill_entry_kind::INTENT`] or [`kill_entry_kind::OUTCOME`].
    pub kind: String,
    pub at: i64,
    pub node_id: String,
    /// The acting user's name, or `rule:<id>` for an automatic kill.
    pub principal: String,
    /// The access key the request was signed with (empty for tokens and rules).
    pub access_key: String,
    /// The outcome (`killed`, `still_running`, `failed`, `unknown`, `refused`); empty on intents.
    pub outcome: String,
    /// The rest of the entry as JSON text, hashed byte for byte.
    pub body: String,
}

/// One committed kill-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KillLogEntry {
    pub project_id: String,
    /// 1, 2, 3... per project, in append order.
    pub seq: i64,
    pub record_id: String,
    pub kind: String,
    pub at: i64,
    pub node_id: String,
    pub principal: String,
    pub access_key: String,
    pub outcome: String,
    pub body: String,
    /// The hash of the entry `seq - 1` of the project ([`KILL_CHAIN_GENESIS`] for the first).
    pub prev_hash: String,
    /// [`KillLogEntry::compute_hash`] at append time, lowercase hex.
    pub hash: String,
}

fn put_field(h: &mut sha2::Sha256, bytes: &[u8]) {
    use sha2::Digest;
    // Length-prefixed, so no two different field lists encode to the same bytes.
    h.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
    h.update(bytes);
}

impl KillLogEntry {
    /// SHA-256 over the canonical encoding of the entry: a version tag, then every field but
    /// `hash` (project, seq, record, kind, at, node, principal, access key, outcome, body,
    /// previous hash), each as an 8-byte big-endian length followed by its UTF-8 bytes (numbers
    /// in decimal).
    pub fn compute_hash(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        put_field(&mut h, b"docplane-kill-log-v1");
        for field in [
            self.project_id.as_bytes(),
            self.seq.to_string().as_bytes(),
            self.record_id.as_bytes(),
            self.kind.as_bytes(),
            self.at.to_string().as_bytes(),
            self.node_id.as_bytes(),
            self.principal.as_bytes(),
            self.access_key.as_bytes(),
            self.outcome.as_bytes(),
            self.body.as_bytes(),
            self.prev_hash.as_bytes(),
        ] {
            put_field(&mut h, field);
        }
        hex::encode(h.finalize())
    }

    /// The entry `e` would be once appended after `seq - 1` whose hash is `prev_hash`.
    pub fn chained(e: &NewKillEntry, seq: i64, prev_hash: &str) -> Self {
        let mut entry = KillLogEntry {
            project_id: e.project_id.clone(),
            seq,
            record_id: e.record_id.clone(),
            kind: e.kind.clone(),
            at: e.at,
            node_id: e.node_id.clone(),
            principal: e.principal.clone(),
            access_key: e.access_key.clone(),
            outcome: e.outcome.clone(),
            body: e.body.clone(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }
}

/// The head of a project's kill chain: the last entry appended, and the anchor below which
/// entries were pruned by retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KillChainHead {
    pub project_id: String,
    /// The seq of the last appended entry.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// Entries with `seq <= base_seq` were pruned (0: none).
    pub base_seq: i64,
    /// The hash of the entry `base_seq` ([`KILL_CHAIN_GENESIS`] when nothing was pruned).
    pub base_hash: String,
}

/// One kill record: its intent and, once known, its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRecord {
    pub intent: KillLogEntry,
    pub outcome: Option<KillLogEntry>,
}

/// The outcome filter value that selects records without an outcome yet.
pub const KILL_OUTCOME_PENDING: &str = "pending";

/// Filters of [`crate::MetaStore::list_kill_records`] (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KillRecordFilter {
    pub project_id: String,
    /// Intents at or after this time (unix ms).
    pub from: Option<i64>,
    /// Intents before this time (unix ms).
    pub to: Option<i64>,
    pub node_id: Option<String>,
    /// A user name, `rule:<id>`, or an access key.
    pub principal: Option<String>,
    /// An outcome, or [`KILL_OUTCOME_PENDING`].
    pub outcome: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// A problem the chain verifier found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProblem {
    /// The seq at which the chain breaks.
    pub seq: i64,
    /// What is wrong, as a sentence.
    pub problem: String,
}

/// Recomputes a project's chain (pure): `entries` in seq order, as read from the store, and the
/// head row. Reports every entry whose hash does not match its content (edited), whose
/// `prev_hash` is not the previous entry's hash (inserted, reordered), every gap in seq (deleted)
/// and a head that does not match the last entry (appended outside the store, or the newest
/// entries deleted).
pub fn verify_kill_chain(head: Option<&KillChainHead>, entries: &[KillLogEntry]) -> Vec<ChainProblem> {
    let mut problems = Vec::new();
    let (mut expect_seq, mut prev_hash) = match head {
        Some(h) => (h.base_seq + 1, h.base_hash.clone()),
        None => (1, KILL_CHAIN_GENESIS.to_owned()),
    };
    for e in entries {
        if e.seq != expect_seq {
            let problem = if e.seq > expect_seq {
                format!("entries {expect_seq}..{} are missing (deleted)", e.seq - 1)
            } else {
                format!("entry {} appears again or out of order (inserted)", e.seq)
            };
            problems.push(ChainProblem { seq: e.seq, problem });
        }
        if e.prev_hash != prev_hash {
            problems.push(ChainProblem {
                seq: e.seq,
                problem: format!("entry {} does not link to the entry before it", e.seq),
            });
        }
        if e.compute_hash() != e.hash {
            problems.push(ChainProblem {
                seq: e.seq,
                problem: format!("entry {} does not match its hash (edited)", e.seq),
            });
        }
        expect_seq = e.seq + 1;
        prev_hash = e.hash.clone();
    }
    match head {
        None if !entries.is_empty() => {
            problems.push(ChainProblem { seq: 0, problem: "entries exist but the chain head is missing".into() })
        }
        Some(h) if h.seq != expect_seq - 1 || h.hash != prev_hash => problems.push(ChainProblem {
            seq: h.seq,
            problem: format!(
                "the chain head names entry {} but the last entry found is {} (entries deleted or appended outside the store)",
                h.seq,
                expect_seq - 1
            ),
        }),
        _ => {}
    }
    problems
}

/// The current time in unix milliseconds.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---- kill-op rules (issue 11)

/// Most kill-op rules an instance may have (the vendor's limit).
pub const MAX_KILL_OP_RULES: i64 = 10;

/// Rule statuses (vendor spelling).
pub mod rule_status {
    /// The rule is enforced.
    pub const ENABLED: &str = "ENABLED";
    /// The rule is kept but not enforced (every new rule starts so).
    pub const DISABLED: &str = "DISABLED";
}

/// A kill-op rule of an instance: which operations it matches and what it does to them.
/// Empty lists and an empty `plan_summary` mean "any"; 0 for `max_concurrency` or
/// `secs_running` means "no limit" (never both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillOpRule {
    /// A UUID (the vendor's format).
    pub id: String,
    pub instance_id: String,
    /// `insert update query command remove getmore` (at least one).
    pub operation_types: Vec<String>,
    /// At most one `db` or `db.coll`.
    pub namespaces: Vec<String>,
    /// IPv4 client addresses, at most 5.
    pub client_ips: Vec<String>,
    pub plan_summary: String,
    pub max_concurrency: i64,
    pub secs_running: i64,
    /// `mongos_shard`, `mongos`, `shard` or `replica`.
    pub node_type: String,
    /// [`rule_status::ENABLED`] or [`rule_status::DISABLED`].
    pub status: String,
    /// docplane's extension: `kill` or `observe` (record what would be killed, kill nothing).
    pub mode: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a rule listing selects (every field but the instance optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillOpRuleFilter {
    pub project_id: String,
    pub instance_id: String,
    /// Rules whose `operation_types` hold this type.
    pub operation_type: Option<String>,
    /// Rules whose `namespaces` hold this namespace.
    pub namespace: Option<String>,
    pub status: Option<String>,
    pub plan_summary: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// How a create can fail besides the store itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRuleOutcome {
    Created,
    /// The instance is not in the project.
    NoInstance,
    /// The instance already has [`MAX_KILL_OP_RULES`] rules; nothing was written.
    LimitReached,
}

/// A node with enabled rules, as the enforcer sees it: the node, its instance and the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcedNode {
    pub node: Node,
    pub instance: Instance,
    /// Its instance's enabled rules (oldest first).
    pub rules: Vec<KillOpRule>,
}
