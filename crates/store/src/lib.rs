//! docplane-store: the metadata store.
//!
//! One async trait, [`MetaStore`], used as `Arc<dyn MetaStore>`, with two implementations that share
//! their SQL text (written once in `sql.rs`, expanded per backend by a macro):
//! - SQLite ([`SqliteStore`]), the default: one file, WAL mode;
//! - PostgreSQL ([`PostgresStore`]), selected by a `postgres://` URL; many docplane replicas may share
//!   one database.
//!
//! [`open`] picks the backend and applies the versioned migrations (`migrations/sqlite`,
//! `migrations/postgres`) before returning.
//!
//! Architecture invariants:
//! - The store holds no in-process state beyond its connection pool, so two handles on one PostgreSQL
//!   database always agree.
//! - Every write that can change an authentication or authorization decision (users, groups,
//!   membership, roles, grants, credentials, projects) appends a row to the `changes` log in the same
//!   transaction. `seq` is strictly increasing in commit order (PostgreSQL serialises change writers
//!   with a transaction-scoped advisory lock; SQLite has a single writer), so a replica that polls
//!   [`MetaStore::changes_since`] never misses a change.
//! - The store never sees keys: secrets arrive already sealed (`*_enc` columns).

mod model;
mod sql;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use model::*;
pub use sql::{PostgresStore, SqliteStore};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist (or did not exist when an update or delete ran).
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated (duplicate id or name).
    #[error("already exists: {0}")]
    Conflict(String),
    /// A referenced row (domain, group, user, instance...) does not exist.
    #[error("referenced row does not exist: {0}")]
    MissingReference(String),
    /// The location given to [`open`] is not usable.
    #[error("invalid store location: {0}")]
    InvalidLocation(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database cannot be reached: no connection within the pool's acquire timeout, or the
    /// connection broke (PostgreSQL down or unreachable). Transient: the pool reconnects by itself.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Backend(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::MissingReference(db.message().to_owned())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt(e.to_string()),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Backend(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The metadata store. Object-safe; share it as `Arc<dyn MetaStore>`.
///
/// Methods that take a whole row insert it as given (ids are chosen by the caller). `update_*`
/// and `delete_*` return [`StoreError::NotFound`] when no row matched. Lookups return `Ok(None)`
/// when nothing matched.
#[async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// One cheap round trip to the database (`SELECT 1`): what readiness (`GET /ready`) asks.
    async fn ping(&self) -> Result<()>;

    // ---- accounts and projects
    async fn create_domain(&self, d: &Domain) -> Result<()>;
    async fn get_domain(&self, id: &str) -> Result<Option<Domain>>;
    async fn get_domain_by_name(&self, name: &str) -> Result<Option<Domain>>;
    async fn list_domains(&self) -> Result<Vec<Domain>>;
    async fn create_project(&self, p: &Project) -> Result<()>;
    async fn get_project(&self, id: &str) -> Result<Option<Project>>;
    /// Projects of an account, optionally only the one with `name`, ordered by name.
    async fn list_projects(&self, domain_id: &str, name: Option<&str>) -> Result<Vec<Project>>;
    /// Replaces name, description and enabled of the project `p.id` (its account never changes).
    async fn update_project(&self, p: &Project) -> Result<()>;

    // ---- users
    async fn create_user(&self, u: &User) -> Result<()>;
    async fn get_user(&self, id: &str) -> Result<Option<User>>;
    async fn get_user_by_name(&self, domain_id: &str, name: &str) -> Result<Option<User>>;
    async fn list_users(&self, domain_id: &str) -> Result<Vec<User>>;
    /// Replaces every mutable column (name, password_hash, enabled, is_domain_admin, token_epoch,
    /// description, updated_at) of the user `u.id`.
    async fn update_user(&self, u: &User) -> Result<()>;
    async fn delete_user(&self, id: &str) -> Result<()>;

    // ---- groups and membership
    async fn create_group(&self, g: &Group) -> Result<()>;
    async fn get_group(&self, id: &str) -> Result<Option<Group>>;
    async fn list_groups(&self, domain_id: &str) -> Result<Vec<Group>>;
    async fn delete_group(&self, id: &str) -> Result<()>;
    /// Idempotent.
    async fn add_group_member(&self, group_id: &str, user_id: &str) -> Result<()>;
    async fn remove_group_member(&self, group_id: &str, user_id: &str) -> Result<()>;
    async fn list_user_groups(&self, user_id: &str) -> Result<Vec<Group>>;

    // ---- roles (custom policies) and grants
    async fn create_role(&self, r: &Role) -> Result<()>;
    async fn get_role(&self, id: &str) -> Result<Option<Role>>;
    async fn list_roles(&self, domain_id: &str) -> Result<Vec<Role>>;
    /// Replaces name, display_name, description, role_type, policy and updated_at.
    async fn update_role(&self, r: &Role) -> Result<()>;
    async fn delete_role(&self, id: &str) -> Result<()>;
    /// Idempotent.
    async fn create_grant(&self, g: &Grant) -> Result<()>;
    async fn delete_grant(&self, g: &Grant) -> Result<()>;
    async fn list_grants(&self, scope_id: &str) -> Result<Vec<Grant>>;
    /// The policy documents (JSON text) that reach `user_id` on `scope_id` through its groups.
    async fn policies_for_user(&self, user_id: &str, scope_id: &str) -> Result<Vec<String>>;

    // ---- access keys
    async fn create_credential(&self, c: &Credential) -> Result<()>;
    async fn get_credential(&self, access_key: &str) -> Result<Option<Credential>>;
    async fn list_credentials(&self, user_id: &str) -> Result<Vec<Credential>>;
    async fn set_credential_status(&self, access_key: &str, status: &str) -> Result<()>;
    async fn delete_credential(&self, access_key: &str) -> Result<()>;

    // ---- settings
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;
    /// Stores `value` under `key` unless the key already has a value; returns the value stored
    /// afterwards (the given one, or the one that was there). Atomic: of concurrent callers on
    /// one database, exactly one value wins and every caller sees it.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String>;

    // ---- change log
    /// The highest sequence number written so far (0 when the log is empty).
    async fn latest_change_seq(&self) -> Result<i64>;
    /// Changes with `seq > after`, oldest first, at most `limit`.
    async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>>;

    // ---- instances, groups, nodes
    async fn create_instance(&self, i: &Instance) -> Result<()>;
    /// The instance `id` if it belongs to `project_id` (tenant isolation lives in the query).
    async fn get_instance(&self, project_id: &str, id: &str) -> Result<Option<Instance>>;
    /// One page of instances plus the total count matching the filters, newest first.
    async fn list_instances(&self, f: &InstanceFilter) -> Result<(Vec<Instance>, i64)>;
    async fn update_instance_status(&self, id: &str, status: &str) -> Result<()>;
    async fn update_instance_version(&self, id: &str, version: &str) -> Result<()>;
    /// Deletes the instance with its groups, nodes and session settings.
    async fn delete_instance(&self, id: &str) -> Result<()>;
    async fn create_instance_group(&self, g: &InstanceGroup) -> Result<()>;
    async fn list_instance_groups(&self, instance_id: &str) -> Result<Vec<InstanceGroup>>;
    async fn update_instance_group_status(&self, id: &str, status: &str) -> Result<()>;
    async fn delete_instance_group(&self, id: &str) -> Result<()>;
    async fn create_node(&self, n: &Node) -> Result<()>;
    /// The node `id` if its instance belongs to `project_id`.
    async fn get_node(&self, project_id: &str, id: &str) -> Result<Option<Node>>;
    /// The node `node_id` with its instance and the instance's session settings (the defaults
    /// when none are stored), if the instance belongs to `project_id`: one query, the read every
    /// session call starts with.
    async fn get_node_context(&self, project_id: &str, node_id: &str) -> Result<Option<NodeContext>>;
    async fn list_nodes(&self, instance_id: &str) -> Result<Vec<Node>>;
    async fn update_node(&self, id: &str, u: &NodeUpdate) -> Result<()>;
    async fn delete_node(&self, id: &str) -> Result<()>;

    // ---- session settings (per instance)
    /// The session settings of the instance `instance_id` if it belongs to `project_id`:
    /// the stored ones, or [`SessionSettings::defaults`] when none were stored; `None` when the
    /// instance is not in that project.
    async fn get_session_settings(
        &self,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Option<SessionSettings>>;
    /// Stores (replacing) the settings of the instance `s.instance_id`, which must belong to
    /// `project_id` (else [`StoreError::NotFound`], and nothing is written). Not in the change
    /// log: the settings decide no authentication or authorization, and nothing caches them
    /// (every list and kill reads them afresh), so replicas agree without it.
    async fn put_session_settings(&self, project_id: &str, s: &SessionSettings) -> Result<()>;

    // ---- kill-op rules (per instance) and enforcement leases
    /// Creates `r` in its instance if the instance belongs to `project_id` and has fewer than
    /// [`MAX_KILL_OP_RULES`] rules: one transaction that first locks the instance row (a write,
    /// so on SQLite the writer lock), so concurrent creates on any replica cannot pass the limit.
    async fn create_kill_op_rule(&self, project_id: &str, r: &KillOpRule) -> Result<CreateRuleOutcome>;
    /// Every rule of the instance, oldest first; `None` when the instance is not in the project.
    async fn list_kill_op_rules(
        &self,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Option<Vec<KillOpRule>>>;
    /// Sets the status of the rules `ids` of the instance (in the project), all or nothing: if
    /// any id is not a rule of that instance nothing changes and the answer is
    /// [`StoreError::NotFound`].
    async fn set_kill_op_rule_status(
        &self,
        project_id: &str,
        instance_id: &str,
        ids: &[String],
        status: &str,
    ) -> Result<()>;
    /// Deletes the rules `ids` of the instance (in the project), all or nothing, only if every
    /// one is disabled: [`StoreError::NotFound`] if one does not exist there,
    /// [`StoreError::Conflict`] if one is enabled (nothing deleted either way).
    async fn delete_kill_op_rules(&self, project_id: &str, instance_id: &str, ids: &[String]) -> Result<()>;
    /// Every node whose instance has enabled rules, with them (the enforcer's work list).
    async fn enforced_nodes(&self) -> Result<Vec<EnforcedNode>>;
    /// Takes or renews the enforcement lease of `node_id` for `owner` until `now + ttl_ms`
    /// (unix ms): succeeds when the lease is free, already `owner`'s, or expired (`expires_at <
    /// now`). One statement, so of concurrent claimants exactly one gets it. Answers whether
    /// `owner` holds it now.
    async fn acquire_enforcer_lease(&self, node_id: &str, owner: &str, now: i64, ttl_ms: i64)
    -> Result<bool>;
    /// Gives the lease of `node_id` up if `owner` holds it (at shutdown, so another replica
    /// takes over at once).
    async fn release_enforcer_lease(&self, node_id: &str, owner: &str) -> Result<()>;

    // ---- kill records (audit): an append-only hash chain per project
    /// Appends one entry to its project's chain: assigns the next seq, links it to the previous
    /// entry's hash and updates the chain head, in one transaction serialized per project
    /// (PostgreSQL: the head row is locked `FOR UPDATE`; SQLite: the first statement is a write,
    /// so the transaction holds the single writer lock). An outcome for a record that already
    /// has one is [`StoreError::Conflict`] (and nothing is appended).
    async fn append_kill_entry(&self, e: &NewKillEntry) -> Result<KillLogEntry>;
    /// One page of kill records (newest intent first) plus the total count matching.
    async fn list_kill_records(&self, f: &KillRecordFilter) -> Result<(Vec<KillRecord>, i64)>;
    /// A project's chain entries with `seq > after_seq`, in seq order, at most `limit`.
    async fn kill_log_entries(
        &self,
        project_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<KillLogEntry>>;
    /// A project's chain head (`None` before its first kill entry).
    async fn kill_chain_head(&self, project_id: &str) -> Result<Option<KillChainHead>>;
    /// Intents (of every project) without an outcome and older than `before` (unix ms), oldest
    /// first, at most `limit`.
    async fn pending_kill_intents(&self, before: i64, limit: i64) -> Result<Vec<KillLogEntry>>;
    /// Retention: deletes, per project, the oldest entries up to the newest one older than
    /// `before` (unix ms), moving the head's base to it; returns how many entries were deleted.
    async fn prune_kill_log(&self, before: i64) -> Result<u64>;
}

/// Opens (creating if needed) the store at `location` and applies pending migrations.
///
/// - `postgres://...` or `postgresql://...`: PostgreSQL.
/// - `sqlite:...`: an SQLite URL, used as given.
/// - anything else is a filesystem path: an existing directory means `<dir>/docplane.db`, otherwise
///   the path is the database file (created if missing).
pub async fn open(location: &str) -> Result<Arc<dyn MetaStore>> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(location).await?));
    }
    if location.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::connect_url(location).await?));
    }
    if location.is_empty() {
        return Err(StoreError::InvalidLocation("empty".into()));
    }
    let p = Path::new(location);
    let file = if p.is_dir() { p.join("docplane.db") } else { p.to_path_buf() };
    Ok(Arc::new(SqliteStore::open_file(&file).await?))
}
