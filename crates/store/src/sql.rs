//! The SQL behind [`MetaStore`], written once and expanded for SQLite and PostgreSQL.
//!
//! Both backends accept `$N` placeholders, `ON CONFLICT DO NOTHING`, `LIMIT/OFFSET` and the column
//! types used by the migrations (TEXT, BOOLEAN, INTEGER/BIGINT, BLOB/BYTEA), so one statement text
//! serves both; the macro [`impl_meta_store`] stamps the trait implementation out per backend. The only
//! backend-specific statement is `LOCK_CHANGES`, run at the start of every transaction that appends to
//! the change log: PostgreSQL takes a transaction-scoped advisory lock so that change sequence numbers
//! are handed out and committed in the same order; SQLite has a single writer and needs nothing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::model::{change_kind as ck, *};
use crate::{MetaStore, Result, StoreError};

/// SQLite-backed store (the default).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// The kill chains' heads as this handle last wrote or read them (see `append_kill_entry`).
    heads: KillHeads,
    /// When the write-ahead log is copied back into the database file (see [`Checkpoints`]).
    checkpoints: std::sync::Arc<Checkpoints>,
}

/// Checkpoints off the kill path. SQLite's own auto-checkpoint runs inside the commit that
/// crosses its threshold (1,000 pages by default): that commit copies the whole log back into
/// the database file and syncs it, several milliseconds on this class of machine, so about one
/// kill in a hundred had its intent or outcome commit take 2-5 ms (the p99 of `dds_bench`'s
/// kill phases). Instead, every [`Checkpoints::EVERY`] kill-log appends a task runs a PASSIVE
/// checkpoint on its own connection, which never blocks writers or readers. It cannot restart
/// the log while writes keep coming (SQLite restarts it only when a writer finds it wholly
/// copied back), so SQLite's auto-checkpoint stays on at [`Checkpoints::BACKSTOP_PAGES`]: that
/// one bounds the log file, and finds little left to copy when it runs.
#[derive(Debug, Default)]
struct Checkpoints {
    appends: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicBool,
    /// Background checkpoints that completed (for tests and diagnostics).
    done: std::sync::atomic::AtomicU64,
}

impl Checkpoints {
    const EVERY: u64 = 64;
    const BACKSTOP_PAGES: u32 = 2_000;

    /// Counts one append; every [`Checkpoints::EVERY`]th starts a background checkpoint unless
    /// one is still running.
    fn after_append(self: &std::sync::Arc<Self>, pool: &sqlx::SqlitePool) {
        use std::sync::atomic::Ordering;
        let n = self.appends.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(Self::EVERY) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, this) = (pool.clone(), self.clone());
        tokio::spawn(async move {
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                Ok(_) => {
                    this.done.fetch_add(1, Ordering::Relaxed);
                }
                // Not an error of any caller's: the backstop checkpoints instead.
                Err(e) => tracing::debug!(error = %e, "background WAL checkpoint failed"),
            }
            this.running.store(false, Ordering::Release);
        });
    }
}

/// PostgreSQL-backed store (several replicas may share one database).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: sqlx::PgPool,
}

/// SQLite appends to a kill chain in one statement: this process remembers each chain's head
/// (seq, hash), computes the next entry from it, and inserts it guarded by "the head is still
/// that" (a trigger then moves the head). A head moved by another handle or process fails the
/// guard; the head is read again and the append retried. The lock also serialises this
/// process's appends, which SQLite's single writer would serialise anyway.
type KillHeads = std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, (i64, String)>>>;

/// How many times an append retries after another writer moved the head under it.
const APPEND_RETRIES: usize = 16;

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` in WAL mode and migrates it.
    pub async fn open_file(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new().filename(path);
        Self::connect_with(opts).await
    }

    /// How many background checkpoints have completed on this handle (see `Checkpoints`).
    pub fn background_checkpoints(&self) -> u64 {
        self.checkpoints.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens an `sqlite:` URL and migrates it.
    pub async fn connect_url(url: &str) -> Result<Self> {
        let opts =
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidLocation(e.to_string()))?;
        Self::connect_with(opts).await
    }

    async fn connect_with(opts: SqliteConnectOptions) -> Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("wal_autocheckpoint", Checkpoints::BACKSTOP_PAGES.to_string());
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, heads: KillHeads::default(), checkpoints: std::sync::Arc::default() })
    }
}

/// How long a PostgreSQL call waits for a connection (connecting included) before it fails with
/// [`StoreError::Unavailable`]: while the database is down, calls fail this fast instead of
/// queueing; the pool reconnects on its own once it is back.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

impl SqliteStore {
    /// [`MetaStore::append_kill_entry`] on SQLite: one guarded INSERT (see [`KillHeads`]).
    async fn append_kill_entry_fast(&self, e: &NewKillEntry) -> Option<Result<KillLogEntry>> {
        Some(self.append_kill_entry_guarded(e).await)
    }

    async fn append_kill_entry_guarded(&self, e: &NewKillEntry) -> Result<KillLogEntry> {
        let mut heads = self.heads.lock().await;
        for _ in 0..APPEND_RETRIES {
            let (seq, hash) = match heads.get(&e.project_id) {
                Some(h) => h.clone(),
                None => sqlx::query_as::<_, (i64, String)>(
                    "SELECT seq, hash FROM kill_chain_heads WHERE project_id = $1",
                )
                .bind(&e.project_id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or_else(|| (0, KILL_CHAIN_GENESIS.to_owned())),
            };
            let entry = KillLogEntry::chained(e, seq + 1, &hash);
            let inserted = sqlx::query(
                "INSERT INTO kill_log (project_id, seq, record_id, kind, at, node_id, principal, \
                 access_key, outcome, body, prev_hash, hash) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
                 WHERE COALESCE((SELECT seq FROM kill_chain_heads WHERE project_id = $1), 0) = $13 \
                 AND COALESCE((SELECT hash FROM kill_chain_heads WHERE project_id = $1), $14) = $11",
            )
            .bind(&entry.project_id)
            .bind(entry.seq)
            .bind(&entry.record_id)
            .bind(&entry.kind)
            .bind(entry.at)
            .bind(&entry.node_id)
            .bind(&entry.principal)
            .bind(&entry.access_key)
            .bind(&entry.outcome)
            .bind(&entry.body)
            .bind(&entry.prev_hash)
            .bind(&entry.hash)
            .bind(seq)
            .bind(KILL_CHAIN_GENESIS)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(r) if r.rows_affected() == 1 => {
                    heads.insert(e.project_id.clone(), (entry.seq, entry.hash.clone()));
                    self.checkpoints.after_append(&self.pool);
                    return Ok(entry);
                }
                // Another writer moved the head: read it again.
                Ok(_) => {
                    heads.remove(&e.project_id);
                }
                // The same seq written meanwhile by another writer (the guard read its old head).
                Err(sqlx::Error::Database(d))
                    if d.is_unique_violation() && d.message().contains("kill_log.seq") =>
                {
                    heads.remove(&e.project_id);
                }
                Err(other) => {
                    heads.remove(&e.project_id);
                    return Err(other.into());
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "kill chain of project {} kept moving under {APPEND_RETRIES} appends",
            e.project_id
        )))
    }
}

impl PostgresStore {
    /// No one-statement path: replicas share the chain, so an append locks its head row in a
    /// transaction ([`MetaStore::append_kill_entry`]).
    #[expect(clippy::unused_async, reason = "awaited like SqliteStore's, from the shared macro")]
    async fn append_kill_entry_fast(&self, _: &NewKillEntry) -> Option<Result<KillLogEntry>> {
        None
    }

    /// Connects to a `postgres://` URL and migrates the database (sqlx serialises concurrent
    /// migrators with an advisory lock, so replicas may start together).
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidLocation(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool (tests use it before dropping their database).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const DOMAIN_COLS: &str = "id, name, enabled, created_at";
const PROJECT_COLS: &str = "id, domain_id, name, description, enabled, created_at";
const USER_COLS: &str = "id, domain_id, name, password_hash, enabled, is_domain_admin, token_epoch, description, created_at, updated_at";
const GROUP_COLS: &str = "id, domain_id, name, description, created_at";
const ROLE_COLS: &str =
    "id, domain_id, name, display_name, description, role_type, policy, created_at, updated_at";
const CRED_COLS: &str = "access_key, user_id, secret_enc, status, description, created_at";
const INSTANCE_COLS: &str =
    "id, project_id, name, mode, status, datastore_version, port, created_at, updated_at";
const IGROUP_COLS: &str = "id, instance_id, group_type, name, status";
const NODE_COLS: &str =
    "id, instance_id, group_id, name, role, status, address, credentials_enc, version, updated_at";
const KILL_LOG_COLS: &str =
    "project_id, seq, record_id, kind, at, node_id, principal, access_key, outcome, body, prev_hash, hash";
/// The filter of kill-record listings ($1 project, $2 from, $3 to, $4 node, $5 principal, $6 outcome).
const KILL_RECORD_WHERE: &str = "i.project_id = $1 AND i.kind = 'intent' \
     AND ($2 IS NULL OR i.at >= $2) AND ($3 IS NULL OR i.at < $3) AND ($4 IS NULL OR i.node_id = $4) \
     AND ($5 IS NULL OR i.principal = $5 OR i.access_key = $5) \
     AND ($6 IS NULL \
          OR ($6 = 'pending' AND NOT EXISTS (SELECT 1 FROM kill_log o WHERE o.record_id = i.record_id AND o.kind = 'outcome')) \
          OR EXISTS (SELECT 1 FROM kill_log o WHERE o.record_id = i.record_id AND o.kind = 'outcome' AND o.outcome = $6))";

/// A row of `instances LEFT JOIN session_settings`: the instance id, then the settings columns
/// (all `NULL` when the instance has none stored).
type SettingsRow = (String, Option<bool>, Option<String>, Option<String>, Option<i64>, Option<String>);

fn settings_from_row(row: SettingsRow) -> Result<SessionSettings> {
    match row {
        (id, None, None, None, None, None) => Ok(SessionSettings::defaults(&id)),
        (
            instance_id,
            Some(redact_operations),
            Some(users),
            Some(apps),
            Some(updated_at),
            Some(updated_by),
        ) => Ok(SessionSettings {
            protected_users: decode_names(&instance_id, &users)?,
            protected_app_names: decode_names(&instance_id, &apps)?,
            instance_id,
            redact_operations,
            updated_at,
            updated_by,
        }),
        (id, ..) => Err(StoreError::Corrupt(format!("session settings of {id}: a column is NULL"))),
    }
}

/// [`MetaStore::get_node_context`]'s query ($1 node, $2 project), written once: it runs on every
/// session call.
static NODE_CONTEXT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let instance_cols =
        INSTANCE_COLS.split(", ").map(|c| format!("i.{c} AS {c}")).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT n.id AS n_id, n.instance_id AS n_instance_id, n.group_id AS n_group_id, \
         n.name AS n_name, n.role AS n_role, n.status AS n_status, n.address AS n_address, \
         n.credentials_enc AS n_credentials_enc, n.version AS n_version, \
         n.updated_at AS n_updated_at, {instance_cols}, \
         s.redact_operations AS s_redact_operations, s.protected_users AS s_protected_users, \
         s.protected_app_names AS s_protected_app_names, s.updated_at AS s_updated_at, \
         s.updated_by AS s_updated_by \
         FROM nodes n JOIN instances i ON i.id = n.instance_id \
         LEFT JOIN session_settings s ON s.instance_id = i.id \
         WHERE n.id = $1 AND i.project_id = $2"
    )
});

/// A row of [`MetaStore::get_node_context`]'s query: the node's columns (`n_`), the instance's
/// (their own names), the settings' (`s_`, all `NULL` when none are stored).
#[derive(sqlx::FromRow)]
struct NodeContextRow {
    n_id: String,
    n_instance_id: String,
    n_group_id: String,
    n_name: String,
    n_role: String,
    n_status: String,
    n_address: String,
    n_credentials_enc: Option<Vec<u8>>,
    n_version: String,
    n_updated_at: i64,
    #[sqlx(flatten)]
    instance: Instance,
    s_redact_operations: Option<bool>,
    s_protected_users: Option<String>,
    s_protected_app_names: Option<String>,
    s_updated_at: Option<i64>,
    s_updated_by: Option<String>,
}

impl NodeContextRow {
    fn into_context(self) -> Result<NodeContext> {
        let settings = settings_from_row((
            self.instance.id.clone(),
            self.s_redact_operations,
            self.s_protected_users,
            self.s_protected_app_names,
            self.s_updated_at,
            self.s_updated_by,
        ))?;
        let node = Node {
            id: self.n_id,
            instance_id: self.n_instance_id,
            group_id: self.n_group_id,
            name: self.n_name,
            role: self.n_role,
            status: self.n_status,
            address: self.n_address,
            credentials_enc: self.n_credentials_enc,
            version: self.n_version,
            updated_at: self.n_updated_at,
        };
        Ok(NodeContext { node, instance: self.instance, settings })
    }
}

/// A list of names as stored: a JSON array of strings.
fn encode_names(names: &[String]) -> Result<String> {
    serde_json::to_string(names).map_err(|e| StoreError::Corrupt(format!("encoding names: {e}")))
}

fn decode_names(instance_id: &str, text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("session settings of {instance_id}: {e}")))
}

const RULE_COLS: &str = "id, instance_id, operation_types, namespaces, client_ips, plan_summary, \
     max_concurrency, secs_running, node_type, status, mode, created_at, updated_at";

/// A row of `kill_op_rules` in [`RULE_COLS`] order.
type RuleRow = (String, String, String, String, String, String, i64, i64, String, String, String, i64, i64);

fn rule_from_row(row: RuleRow) -> Result<KillOpRule> {
    let (
        id,
        instance_id,
        ops,
        nss,
        ips,
        plan_summary,
        max_concurrency,
        secs_running,
        node_type,
        status,
        mode,
        created_at,
        updated_at,
    ) = row;
    let list = |text: &str| -> Result<Vec<String>> {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("kill-op rule {id}: {e}")))
    };
    Ok(KillOpRule {
        operation_types: list(&ops)?,
        namespaces: list(&nss)?,
        client_ips: list(&ips)?,
        id,
        instance_id,
        plan_summary,
        max_concurrency,
        secs_running,
        node_type,
        status,
        mode,
        created_at,
        updated_at,
    })
}

/// `$first, $first+1, ...` for `n` values (the ids of an `IN` list).
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn affected(n: u64) -> Result<()> {
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

macro_rules! impl_meta_store {
    ($store:ident, $db:ty, $backend:literal, $lock_changes:expr) => {
        impl $store {
            /// Starts a transaction that will append to the change log.
            async fn begin_change(&self) -> Result<sqlx::Transaction<'static, $db>> {
                let mut tx = self.pool.begin().await?;
                let lock: Option<&str> = $lock_changes;
                if let Some(sql) = lock {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                Ok(tx)
            }

            async fn record_change(
                tx: &mut sqlx::Transaction<'static, $db>,
                kind: &str,
                entity_id: &str,
            ) -> Result<()> {
                sqlx::query("INSERT INTO changes (kind, entity_id, at) VALUES ($1, $2, $3)")
                    .bind(kind)
                    .bind(entity_id)
                    .bind(now_millis())
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Runs one statement plus its change-log row in a transaction; NotFound when the
            /// statement touched no row.
            async fn exec_with_change<'q>(
                &self,
                q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
                kind: &str,
                entity_id: &str,
            ) -> Result<()> {
                let mut tx = self.begin_change().await?;
                let n = q.execute(&mut *tx).await?.rows_affected();
                affected(n)?;
                Self::record_change(&mut tx, kind, entity_id).await?;
                tx.commit().await?;
                Ok(())
            }

            /// Runs one statement outside the change log; NotFound when it touched no row.
            async fn exec_one<'q>(
                &self,
                q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            ) -> Result<()> {
                affected(q.execute(&self.pool).await?.rows_affected())
            }
        }

        #[async_trait]
        impl MetaStore for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_domain(&self, d: &Domain) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO domains (id, name, enabled, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&d.id)
                .bind(&d.name)
                .bind(d.enabled)
                .bind(d.created_at);
                self.exec_with_change(q, ck::DOMAIN, &d.id).await
            }

            async fn get_domain(&self, id: &str) -> Result<Option<Domain>> {
                let sql = format!("SELECT {DOMAIN_COLS} FROM domains WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn get_domain_by_name(&self, name: &str) -> Result<Option<Domain>> {
                let sql = format!("SELECT {DOMAIN_COLS} FROM domains WHERE name = $1");
                Ok(sqlx::query_as(&sql).bind(name).fetch_optional(&self.pool).await?)
            }

            async fn list_domains(&self) -> Result<Vec<Domain>> {
                let sql = format!("SELECT {DOMAIN_COLS} FROM domains ORDER BY name");
                Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
            }

            async fn create_project(&self, p: &Project) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO projects (id, domain_id, name, description, enabled, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&p.id)
                .bind(&p.domain_id)
                .bind(&p.name)
                .bind(&p.description)
                .bind(p.enabled)
                .bind(p.created_at);
                self.exec_with_change(q, ck::PROJECT, &p.id).await
            }

            async fn get_project(&self, id: &str) -> Result<Option<Project>> {
                let sql = format!("SELECT {PROJECT_COLS} FROM projects WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_projects(&self, domain_id: &str, name: Option<&str>) -> Result<Vec<Project>> {
                let sql = format!(
                    "SELECT {PROJECT_COLS} FROM projects WHERE domain_id = $1 \
                     AND ($2 IS NULL OR name = $2) ORDER BY name"
                );
                Ok(sqlx::query_as(&sql).bind(domain_id).bind(name).fetch_all(&self.pool).await?)
            }

            async fn update_project(&self, p: &Project) -> Result<()> {
                let q = sqlx::query(
                    "UPDATE projects SET name = $2, description = $3, enabled = $4 WHERE id = $1",
                )
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.description)
                .bind(p.enabled);
                self.exec_with_change(q, ck::PROJECT, &p.id).await
            }

            async fn create_user(&self, u: &User) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO users (id, domain_id, name, password_hash, enabled, is_domain_admin, \
                     token_epoch, description, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&u.id)
                .bind(&u.domain_id)
                .bind(&u.name)
                .bind(&u.password_hash)
                .bind(u.enabled)
                .bind(u.is_domain_admin)
                .bind(u.token_epoch)
                .bind(&u.description)
                .bind(u.created_at)
                .bind(u.updated_at);
                self.exec_with_change(q, ck::USER, &u.id).await
            }

            async fn get_user(&self, id: &str) -> Result<Option<User>> {
                let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn get_user_by_name(&self, domain_id: &str, name: &str) -> Result<Option<User>> {
                let sql = format!("SELECT {USER_COLS} FROM users WHERE domain_id = $1 AND name = $2");
                Ok(sqlx::query_as(&sql).bind(domain_id).bind(name).fetch_optional(&self.pool).await?)
            }

            async fn list_users(&self, domain_id: &str) -> Result<Vec<User>> {
                let sql = format!("SELECT {USER_COLS} FROM users WHERE domain_id = $1 ORDER BY name");
                Ok(sqlx::query_as(&sql).bind(domain_id).fetch_all(&self.pool).await?)
            }

            async fn update_user(&self, u: &User) -> Result<()> {
                let q = sqlx::query(
                    "UPDATE users SET name = $2, password_hash = $3, enabled = $4, \
                     is_domain_admin = $5, token_epoch = $6, description = $7, updated_at = $8 \
                     WHERE id = $1",
                )
                .bind(&u.id)
                .bind(&u.name)
                .bind(&u.password_hash)
                .bind(u.enabled)
                .bind(u.is_domain_admin)
                .bind(u.token_epoch)
                .bind(&u.description)
                .bind(u.updated_at);
                self.exec_with_change(q, ck::USER, &u.id).await
            }

            async fn delete_user(&self, id: &str) -> Result<()> {
                let q = sqlx::query("DELETE FROM users WHERE id = $1").bind(id);
                self.exec_with_change(q, ck::USER, id).await
            }

            async fn create_group(&self, g: &Group) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO groups (id, domain_id, name, description, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&g.id)
                .bind(&g.domain_id)
                .bind(&g.name)
                .bind(&g.description)
                .bind(g.created_at);
                self.exec_with_change(q, ck::GROUP, &g.id).await
            }

            async fn get_group(&self, id: &str) -> Result<Option<Group>> {
                let sql = format!("SELECT {GROUP_COLS} FROM groups WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_groups(&self, domain_id: &str) -> Result<Vec<Group>> {
                let sql = format!("SELECT {GROUP_COLS} FROM groups WHERE domain_id = $1 ORDER BY name");
                Ok(sqlx::query_as(&sql).bind(domain_id).fetch_all(&self.pool).await?)
            }

            async fn delete_group(&self, id: &str) -> Result<()> {
                let q = sqlx::query("DELETE FROM groups WHERE id = $1").bind(id);
                self.exec_with_change(q, ck::GROUP, id).await
            }

            async fn add_group_member(&self, group_id: &str, user_id: &str) -> Result<()> {
                let mut tx = self.begin_change().await?;
                sqlx::query(
                    "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(group_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                Self::record_change(&mut tx, ck::MEMBERSHIP, user_id).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn remove_group_member(&self, group_id: &str, user_id: &str) -> Result<()> {
                let q = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(group_id)
                    .bind(user_id);
                self.exec_with_change(q, ck::MEMBERSHIP, user_id).await
            }

            async fn list_user_groups(&self, user_id: &str) -> Result<Vec<Group>> {
                let sql = "SELECT g.id, g.domain_id, g.name, g.description, g.created_at \
                           FROM groups g JOIN group_members m ON m.group_id = g.id \
                           WHERE m.user_id = $1 ORDER BY g.name";
                Ok(sqlx::query_as(sql).bind(user_id).fetch_all(&self.pool).await?)
            }

            async fn create_role(&self, r: &Role) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO roles (id, domain_id, name, display_name, description, role_type, \
                     policy, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&r.id)
                .bind(&r.domain_id)
                .bind(&r.name)
                .bind(&r.display_name)
                .bind(&r.description)
                .bind(&r.role_type)
                .bind(&r.policy)
                .bind(r.created_at)
                .bind(r.updated_at);
                self.exec_with_change(q, ck::ROLE, &r.id).await
            }

            async fn get_role(&self, id: &str) -> Result<Option<Role>> {
                let sql = format!("SELECT {ROLE_COLS} FROM roles WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_roles(&self, domain_id: &str) -> Result<Vec<Role>> {
                let sql = format!("SELECT {ROLE_COLS} FROM roles WHERE domain_id = $1 ORDER BY display_name");
                Ok(sqlx::query_as(&sql).bind(domain_id).fetch_all(&self.pool).await?)
            }

            async fn update_role(&self, r: &Role) -> Result<()> {
                let q = sqlx::query(
                    "UPDATE roles SET name = $2, display_name = $3, description = $4, \
                     role_type = $5, policy = $6, updated_at = $7 WHERE id = $1",
                )
                .bind(&r.id)
                .bind(&r.name)
                .bind(&r.display_name)
                .bind(&r.description)
                .bind(&r.role_type)
                .bind(&r.policy)
                .bind(r.updated_at);
                self.exec_with_change(q, ck::ROLE, &r.id).await
            }

            async fn delete_role(&self, id: &str) -> Result<()> {
                let q = sqlx::query("DELETE FROM roles WHERE id = $1").bind(id);
                self.exec_with_change(q, ck::ROLE, id).await
            }

            async fn create_grant(&self, g: &Grant) -> Result<()> {
                let mut tx = self.begin_change().await?;
                sqlx::query(
                    "INSERT INTO grants (scope_id, group_id, role_id) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&g.scope_id)
                .bind(&g.group_id)
                .bind(&g.role_id)
                .execute(&mut *tx)
                .await?;
                Self::record_change(&mut tx, ck::GRANT, &g.group_id).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_grant(&self, g: &Grant) -> Result<()> {
                let q =
                    sqlx::query("DELETE FROM grants WHERE scope_id = $1 AND group_id = $2 AND role_id = $3")
                        .bind(&g.scope_id)
                        .bind(&g.group_id)
                        .bind(&g.role_id);
                self.exec_with_change(q, ck::GRANT, &g.group_id).await
            }

            async fn list_grants(&self, scope_id: &str) -> Result<Vec<Grant>> {
                let sql = "SELECT scope_id, group_id, role_id FROM grants WHERE scope_id = $1 \
                           ORDER BY group_id, role_id";
                Ok(sqlx::query_as(sql).bind(scope_id).fetch_all(&self.pool).await?)
            }

            async fn policies_for_user(&self, user_id: &str, scope_id: &str) -> Result<Vec<String>> {
                let sql = "SELECT DISTINCT r.id, r.policy FROM roles r \
                           JOIN grants g ON g.role_id = r.id \
                           JOIN group_members m ON m.group_id = g.group_id \
                           WHERE m.user_id = $1 AND g.scope_id = $2 ORDER BY r.id";
                let rows: Vec<(String, String)> =
                    sqlx::query_as(sql).bind(user_id).bind(scope_id).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(_, p)| p).collect())
            }

            async fn create_credential(&self, c: &Credential) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO credentials (access_key, user_id, secret_enc, status, description, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&c.access_key)
                .bind(&c.user_id)
                .bind(&c.secret_enc)
                .bind(&c.status)
                .bind(&c.description)
                .bind(c.created_at);
                self.exec_with_change(q, ck::CREDENTIAL, &c.access_key).await
            }

            async fn get_credential(&self, access_key: &str) -> Result<Option<Credential>> {
                let sql = format!("SELECT {CRED_COLS} FROM credentials WHERE access_key = $1");
                Ok(sqlx::query_as(&sql).bind(access_key).fetch_optional(&self.pool).await?)
            }

            async fn list_credentials(&self, user_id: &str) -> Result<Vec<Credential>> {
                let sql =
                    format!("SELECT {CRED_COLS} FROM credentials WHERE user_id = $1 ORDER BY created_at");
                Ok(sqlx::query_as(&sql).bind(user_id).fetch_all(&self.pool).await?)
            }

            async fn set_credential_status(&self, access_key: &str, status: &str) -> Result<()> {
                let q = sqlx::query("UPDATE credentials SET status = $2 WHERE access_key = $1")
                    .bind(access_key)
                    .bind(status);
                self.exec_with_change(q, ck::CREDENTIAL, access_key).await
            }

            async fn delete_credential(&self, access_key: &str) -> Result<()> {
                let q = sqlx::query("DELETE FROM credentials WHERE access_key = $1").bind(access_key);
                self.exec_with_change(q, ck::CREDENTIAL, access_key).await
            }

            async fn get_setting(&self, key: &str) -> Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.0))
            }

            async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
                let q = sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value);
                self.exec_with_change(q, ck::SETTING, key).await
            }

            async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
                let mut tx = self.begin_change().await?;
                let inserted = sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted > 0 {
                    Self::record_change(&mut tx, ck::SETTING, key).await?;
                }
                let row: (String,) = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.0)
            }

            async fn latest_change_seq(&self) -> Result<i64> {
                let row: (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(seq) FROM changes").fetch_one(&self.pool).await?;
                Ok(row.0.unwrap_or(0))
            }

            async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
                Ok(sqlx::query_as(
                    "SELECT seq, kind, entity_id, at FROM changes WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_instance(&self, i: &Instance) -> Result<()> {
                sqlx::query(
                    "INSERT INTO instances (id, project_id, name, mode, status, datastore_version, \
                     port, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&i.id)
                .bind(&i.project_id)
                .bind(&i.name)
                .bind(i.mode.as_str())
                .bind(&i.status)
                .bind(&i.datastore_version)
                .bind(i.port)
                .bind(i.created_at)
                .bind(i.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_instance(&self, project_id: &str, id: &str) -> Result<Option<Instance>> {
                let sql = format!("SELECT {INSTANCE_COLS} FROM instances WHERE id = $1 AND project_id = $2");
                Ok(sqlx::query_as(&sql).bind(id).bind(project_id).fetch_optional(&self.pool).await?)
            }

            async fn list_instances(&self, f: &InstanceFilter) -> Result<(Vec<Instance>, i64)> {
                let filter = "WHERE project_id = $1 AND ($2 IS NULL OR id = $2) \
                              AND ($3 IS NULL OR name = $3) AND ($4 IS NULL OR mode = $4)";
                let mode = f.mode.map(|m| m.as_str());
                let count_sql = format!("SELECT COUNT(*) FROM instances {filter}");
                let total: (i64,) = sqlx::query_as(&count_sql)
                    .bind(&f.project_id)
                    .bind(&f.id)
                    .bind(&f.name)
                    .bind(mode)
                    .fetch_one(&self.pool)
                    .await?;
                let sql = format!(
                    "SELECT {INSTANCE_COLS} FROM instances {filter} \
                     ORDER BY created_at DESC, id LIMIT $5 OFFSET $6"
                );
                let rows = sqlx::query_as(&sql)
                    .bind(&f.project_id)
                    .bind(&f.id)
                    .bind(&f.name)
                    .bind(mode)
                    .bind(f.limit.max(0))
                    .bind(f.offset.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                Ok((rows, total.0))
            }

            async fn update_instance_status(&self, id: &str, status: &str) -> Result<()> {
                self.exec_one(
                    sqlx::query("UPDATE instances SET status = $2, updated_at = $3 WHERE id = $1")
                        .bind(id)
                        .bind(status)
                        .bind(now_millis()),
                )
                .await
            }

            async fn update_instance_version(&self, id: &str, version: &str) -> Result<()> {
                self.exec_one(
                    sqlx::query("UPDATE instances SET datastore_version = $2, updated_at = $3 WHERE id = $1")
                        .bind(id)
                        .bind(version)
                        .bind(now_millis()),
                )
                .await
            }

            async fn delete_instance(&self, id: &str) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM session_settings WHERE instance_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM kill_op_rules WHERE instance_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM enforcer_leases WHERE node_id IN (SELECT id FROM nodes WHERE instance_id = $1)")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM nodes WHERE instance_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM instance_groups WHERE instance_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query("DELETE FROM instances WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                affected(n)?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_instance_group(&self, g: &InstanceGroup) -> Result<()> {
                sqlx::query(
                    "INSERT INTO instance_groups (id, instance_id, group_type, name, status) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&g.id)
                .bind(&g.instance_id)
                .bind(g.group_type.as_str())
                .bind(&g.name)
                .bind(&g.status)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_instance_groups(&self, instance_id: &str) -> Result<Vec<InstanceGroup>> {
                let sql = format!(
                    "SELECT {IGROUP_COLS} FROM instance_groups WHERE instance_id = $1 ORDER BY name, id"
                );
                Ok(sqlx::query_as(&sql).bind(instance_id).fetch_all(&self.pool).await?)
            }

            async fn update_instance_group_status(&self, id: &str, status: &str) -> Result<()> {
                self.exec_one(
                    sqlx::query("UPDATE instance_groups SET status = $2 WHERE id = $1").bind(id).bind(status),
                )
                .await
            }

            async fn delete_instance_group(&self, id: &str) -> Result<()> {
                self.exec_one(sqlx::query("DELETE FROM instance_groups WHERE id = $1").bind(id)).await
            }

            async fn create_node(&self, n: &Node) -> Result<()> {
                sqlx::query(
                    "INSERT INTO nodes (id, instance_id, group_id, name, role, status, address, \
                     credentials_enc, version, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&n.id)
                .bind(&n.instance_id)
                .bind(&n.group_id)
                .bind(&n.name)
                .bind(&n.role)
                .bind(&n.status)
                .bind(&n.address)
                .bind(&n.credentials_enc)
                .bind(&n.version)
                .bind(n.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_node_context(&self, project_id: &str, node_id: &str) -> Result<Option<NodeContext>> {
                let row: Option<NodeContextRow> = sqlx::query_as(&NODE_CONTEXT_SQL)
                    .bind(node_id)
                    .bind(project_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(NodeContextRow::into_context).transpose()
            }

            async fn get_node(&self, project_id: &str, id: &str) -> Result<Option<Node>> {
                let sql = "SELECT n.id, n.instance_id, n.group_id, n.name, n.role, n.status, \
                           n.address, n.credentials_enc, n.version, n.updated_at \
                           FROM nodes n JOIN instances i ON i.id = n.instance_id \
                           WHERE n.id = $1 AND i.project_id = $2";
                Ok(sqlx::query_as(sql).bind(id).bind(project_id).fetch_optional(&self.pool).await?)
            }

            async fn list_nodes(&self, instance_id: &str) -> Result<Vec<Node>> {
                let sql = format!("SELECT {NODE_COLS} FROM nodes WHERE instance_id = $1 ORDER BY name, id");
                Ok(sqlx::query_as(&sql).bind(instance_id).fetch_all(&self.pool).await?)
            }

            async fn update_node(&self, id: &str, u: &NodeUpdate) -> Result<()> {
                self.exec_one(
                    sqlx::query(
                        "UPDATE nodes SET status = COALESCE($2, status), role = COALESCE($3, role), \
                     version = COALESCE($4, version), address = COALESCE($5, address), \
                     updated_at = $6 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&u.status)
                    .bind(&u.role)
                    .bind(&u.version)
                    .bind(&u.address)
                    .bind(now_millis()),
                )
                .await
            }

            async fn delete_node(&self, id: &str) -> Result<()> {
                self.exec_one(sqlx::query("DELETE FROM nodes WHERE id = $1").bind(id)).await
            }

            // ---- session settings

            async fn get_session_settings(
                &self,
                project_id: &str,
                instance_id: &str,
            ) -> Result<Option<SessionSettings>> {
                let row: Option<SettingsRow> = sqlx::query_as(
                    "SELECT i.id, s.redact_operations, s.protected_users, s.protected_app_names, \
                     s.updated_at, s.updated_by \
                     FROM instances i LEFT JOIN session_settings s ON s.instance_id = i.id \
                     WHERE i.id = $1 AND i.project_id = $2",
                )
                .bind(instance_id)
                .bind(project_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(settings_from_row).transpose()
            }

            async fn put_session_settings(&self, project_id: &str, s: &SessionSettings) -> Result<()> {
                // One statement: the row is written only if the instance is in the project.
                let q = sqlx::query(
                    "INSERT INTO session_settings (instance_id, redact_operations, protected_users, \
                     protected_app_names, updated_at, updated_by) \
                     SELECT id, $2, $3, $4, $5, $6 FROM instances WHERE id = $1 AND project_id = $7 \
                     ON CONFLICT (instance_id) DO UPDATE SET \
                     redact_operations = excluded.redact_operations, \
                     protected_users = excluded.protected_users, \
                     protected_app_names = excluded.protected_app_names, \
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(&s.instance_id)
                .bind(s.redact_operations)
                .bind(encode_names(&s.protected_users)?)
                .bind(encode_names(&s.protected_app_names)?)
                .bind(s.updated_at)
                .bind(&s.updated_by)
                .bind(project_id);
                match self.exec_one(q).await {
                    // The instance was deleted in between: as if it had never been there.
                    Err(StoreError::MissingReference(_)) => Err(StoreError::NotFound),
                    other => other,
                }
            }

            // ---- kill-op rules and enforcement leases

            async fn create_kill_op_rule(&self, project_id: &str, r: &KillOpRule) -> Result<CreateRuleOutcome> {
                let mut tx = self.pool.begin().await?;
                // A write first: it locks the instance row (PostgreSQL) or takes the writer lock
                // (SQLite), so the count below cannot be raced by another create.
                let n = sqlx::query("UPDATE instances SET id = id WHERE id = $1 AND project_id = $2")
                    .bind(&r.instance_id)
                    .bind(project_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(CreateRuleOutcome::NoInstance);
                }
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM kill_op_rules WHERE instance_id = $1")
                    .bind(&r.instance_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if count >= MAX_KILL_OP_RULES {
                    return Ok(CreateRuleOutcome::LimitReached);
                }
                let sql = format!(
                    "INSERT INTO kill_op_rules ({RULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                );
                sqlx::query(&sql)
                    .bind(&r.id)
                    .bind(&r.instance_id)
                    .bind(encode_names(&r.operation_types)?)
                    .bind(encode_names(&r.namespaces)?)
                    .bind(encode_names(&r.client_ips)?)
                    .bind(&r.plan_summary)
                    .bind(r.max_concurrency)
                    .bind(r.secs_running)
                    .bind(&r.node_type)
                    .bind(&r.status)
                    .bind(&r.mode)
                    .bind(r.created_at)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(CreateRuleOutcome::Created)
            }

            async fn list_kill_op_rules(
                &self,
                project_id: &str,
                instance_id: &str,
            ) -> Result<Option<Vec<KillOpRule>>> {
                if self.get_instance(project_id, instance_id).await?.is_none() {
                    return Ok(None);
                }
                let sql = format!(
                    "SELECT {RULE_COLS} FROM kill_op_rules WHERE instance_id = $1 ORDER BY created_at, id"
                );
                let rows: Vec<RuleRow> = sqlx::query_as(&sql).bind(instance_id).fetch_all(&self.pool).await?;
                rows.into_iter().map(rule_from_row).collect::<Result<Vec<_>>>().map(Some)
            }

            async fn set_kill_op_rule_status(
                &self,
                project_id: &str,
                instance_id: &str,
                ids: &[String],
                status: &str,
            ) -> Result<()> {
                if ids.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                let sql = format!(
                    "UPDATE kill_op_rules SET status = $1, updated_at = $2 WHERE instance_id = $3 \
                     AND instance_id IN (SELECT id FROM instances WHERE project_id = $4) AND id IN ({})",
                    placeholders(5, ids.len())
                );
                let mut q = sqlx::query(&sql).bind(status).bind(now_millis()).bind(instance_id).bind(project_id);
                for id in ids {
                    q = q.bind(id);
                }
                let n = q.execute(&mut *tx).await?.rows_affected();
                if usize::try_from(n).ok() != Some(ids.len()) {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn delete_kill_op_rules(&self, project_id: &str, instance_id: &str, ids: &[String]) -> Result<()> {
                if ids.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                let scope = format!(
                    "instance_id = $1 AND instance_id IN (SELECT id FROM instances WHERE project_id = $2) AND id IN ({})",
                    placeholders(3, ids.len())
                );
                // The write first (writer lock on SQLite, row locks on PostgreSQL), then the check.
                let sql = format!("DELETE FROM kill_op_rules WHERE {scope} AND status = 'DISABLED'");
                let mut q = sqlx::query(&sql).bind(instance_id).bind(project_id);
                for id in ids {
                    q = q.bind(id);
                }
                let deleted = q.execute(&mut *tx).await?.rows_affected();
                if usize::try_from(deleted).ok() == Some(ids.len()) {
                    tx.commit().await?;
                    return Ok(());
                }
                let sql = format!("SELECT COUNT(*) FROM kill_op_rules WHERE {scope}");
                let mut q = sqlx::query_as::<_, (i64,)>(&sql).bind(instance_id).bind(project_id);
                for id in ids {
                    q = q.bind(id);
                }
                let (left,) = q.fetch_one(&mut *tx).await?;
                tx.rollback().await?;
                let found = i64::try_from(deleted).unwrap_or(i64::MAX).saturating_add(left);
                if usize::try_from(found).ok() == Some(ids.len()) {
                    Err(StoreError::Conflict("an enabled rule cannot be deleted".into()))
                } else {
                    Err(StoreError::NotFound)
                }
            }

            async fn enforced_nodes(&self) -> Result<Vec<EnforcedNode>> {
                let sql = format!(
                    "SELECT {RULE_COLS} FROM kill_op_rules WHERE status = 'ENABLED' ORDER BY instance_id, created_at, id"
                );
                let rows: Vec<RuleRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                let mut by_instance: Vec<(String, Vec<KillOpRule>)> = Vec::new();
                for row in rows {
                    let rule = rule_from_row(row)?;
                    match by_instance.last_mut() {
                        Some((id, rules)) if *id == rule.instance_id => rules.push(rule),
                        _ => by_instance.push((rule.instance_id.clone(), vec![rule])),
                    }
                }
                let mut out = Vec::new();
                let instance_sql = format!("SELECT {INSTANCE_COLS} FROM instances WHERE id = $1");
                for (instance_id, rules) in by_instance {
                    let instance: Option<Instance> =
                        sqlx::query_as(&instance_sql).bind(&instance_id).fetch_optional(&self.pool).await?;
                    let Some(instance) = instance else { continue };
                    for node in self.list_nodes(&instance_id).await? {
                        out.push(EnforcedNode { node, instance: instance.clone(), rules: rules.clone() });
                    }
                }
                Ok(out)
            }

            async fn acquire_enforcer_lease(&self, node_id: &str, owner: &str, now: i64, ttl_ms: i64) -> Result<bool> {
                let n = sqlx::query(
                    "INSERT INTO enforcer_leases (node_id, owner, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (node_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                     WHERE enforcer_leases.owner = excluded.owner OR enforcer_leases.expires_at < $4",
                )
                .bind(node_id)
                .bind(owner)
                .bind(now.saturating_add(ttl_ms))
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn release_enforcer_lease(&self, node_id: &str, owner: &str) -> Result<()> {
                sqlx::query("DELETE FROM enforcer_leases WHERE node_id = $1 AND owner = $2")
                    .bind(node_id)
                    .bind(owner)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            // ---- kill records (audit)

            async fn append_kill_entry(&self, e: &NewKillEntry) -> Result<KillLogEntry> {
                if let Some(done) = self.append_kill_entry_fast(e).await {
                    return done;
                }
                let mut tx = self.pool.begin().await?;
                // One statement creates the project's head if needed and returns it. As a write it
                // takes SQLite's writer lock for the whole transaction, and on PostgreSQL the
                // (no-op) update locks the head row until commit: appends are serialized per chain.
                let (seq, hash): (i64, String) = sqlx::query_as(
                    "INSERT INTO kill_chain_heads (project_id, seq, hash, base_seq, base_hash) \
                     VALUES ($1, 0, $2, 0, $2) \
                     ON CONFLICT (project_id) DO UPDATE SET seq = kill_chain_heads.seq \
                     RETURNING seq, hash",
                )
                .bind(&e.project_id)
                .bind(KILL_CHAIN_GENESIS)
                .fetch_one(&mut *tx)
                .await?;
                let entry = KillLogEntry::chained(e, seq + 1, &hash);
                sqlx::query(
                    "INSERT INTO kill_log (project_id, seq, record_id, kind, at, node_id, principal, \
                     access_key, outcome, body, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&entry.project_id)
                .bind(entry.seq)
                .bind(&entry.record_id)
                .bind(&entry.kind)
                .bind(entry.at)
                .bind(&entry.node_id)
                .bind(&entry.principal)
                .bind(&entry.access_key)
                .bind(&entry.outcome)
                .bind(&entry.body)
                .bind(&entry.prev_hash)
                .bind(&entry.hash)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE kill_chain_heads SET seq = $2, hash = $3 WHERE project_id = $1")
                    .bind(&entry.project_id)
                    .bind(entry.seq)
                    .bind(&entry.hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(entry)
            }

            async fn list_kill_records(&self, f: &KillRecordFilter) -> Result<(Vec<KillRecord>, i64)> {
                let count_sql = format!("SELECT COUNT(*) FROM kill_log i WHERE {KILL_RECORD_WHERE}");
                let (total,): (i64,) = sqlx::query_as(&count_sql)
                    .bind(&f.project_id)
                    .bind(f.from)
                    .bind(f.to)
                    .bind(&f.node_id)
                    .bind(&f.principal)
                    .bind(&f.outcome)
                    .fetch_one(&self.pool)
                    .await?;
                let cols = KILL_LOG_COLS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
                let page_sql = format!(
                    "SELECT {cols} FROM kill_log i WHERE {KILL_RECORD_WHERE} ORDER BY i.seq DESC LIMIT $7 OFFSET $8"
                );
                let intents: Vec<KillLogEntry> = sqlx::query_as(&page_sql)
                    .bind(&f.project_id)
                    .bind(f.from)
                    .bind(f.to)
                    .bind(&f.node_id)
                    .bind(&f.principal)
                    .bind(&f.outcome)
                    .bind(f.limit.max(0))
                    .bind(f.offset.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                let outcome_sql = format!(
                    "SELECT {KILL_LOG_COLS} FROM kill_log WHERE project_id = $1 AND record_id = $2 AND kind = 'outcome'"
                );
                let mut records = Vec::with_capacity(intents.len());
                for intent in intents {
                    let outcome: Option<KillLogEntry> = sqlx::query_as(&outcome_sql)
                        .bind(&intent.project_id)
                        .bind(&intent.record_id)
                        .fetch_optional(&self.pool)
                        .await?;
                    records.push(KillRecord { intent, outcome });
                }
                Ok((records, total))
            }

            async fn kill_log_entries(
                &self,
                project_id: &str,
                after_seq: i64,
                limit: i64,
            ) -> Result<Vec<KillLogEntry>> {
                let sql = format!(
                    "SELECT {KILL_LOG_COLS} FROM kill_log WHERE project_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(after_seq)
                    .bind(limit.max(0))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn kill_chain_head(&self, project_id: &str) -> Result<Option<KillChainHead>> {
                Ok(sqlx::query_as(
                    "SELECT project_id, seq, hash, base_seq, base_hash FROM kill_chain_heads WHERE project_id = $1",
                )
                .bind(project_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn pending_kill_intents(&self, before: i64, limit: i64) -> Result<Vec<KillLogEntry>> {
                let cols = KILL_LOG_COLS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
                let sql = format!(
                    "SELECT {cols} FROM kill_log i WHERE i.kind = 'intent' AND i.at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM kill_log o WHERE o.record_id = i.record_id AND o.kind = 'outcome') \
                     ORDER BY i.at LIMIT $2"
                );
                Ok(sqlx::query_as(&sql).bind(before).bind(limit.max(0)).fetch_all(&self.pool).await?)
            }

            async fn prune_kill_log(&self, before: i64) -> Result<u64> {
                let projects: Vec<(String,)> =
                    sqlx::query_as("SELECT DISTINCT project_id FROM kill_log WHERE at < $1")
                        .bind(before)
                        .fetch_all(&self.pool)
                        .await?;
                let mut deleted = 0;
                for (project_id,) in projects {
                    let mut tx = self.pool.begin().await?;
                    // The same lock order as an append: the head row first.
                    let lock = if $backend == "postgres" { " FOR UPDATE" } else { "" };
                    sqlx::query("UPDATE kill_chain_heads SET seq = seq WHERE project_id = $1")
                        .bind(&project_id)
                        .execute(&mut *tx)
                        .await?;
                    let sql = format!("SELECT seq FROM kill_chain_heads WHERE project_id = $1{lock}");
                    sqlx::query(&sql).bind(&project_id).execute(&mut *tx).await?;
                    let last: Option<(i64, String)> = sqlx::query_as(
                        "SELECT seq, hash FROM kill_log WHERE project_id = $1 AND at < $2 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(&project_id)
                    .bind(before)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((seq, hash)) = last else { continue };
                    let n = sqlx::query("DELETE FROM kill_log WHERE project_id = $1 AND seq <= $2")
                        .bind(&project_id)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query(
                        "UPDATE kill_chain_heads SET base_seq = $2, base_hash = $3 WHERE project_id = $1 AND base_seq < $2",
                    )
                    .bind(&project_id)
                    .bind(seq)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    deleted += n;
                }
                Ok(deleted)
            }
        }
    };
}

impl_meta_store!(SqliteStore, sqlx::Sqlite, "sqlite", None);
impl_meta_store!(PostgresStore, sqlx::Postgres, "postgres", Some("SELECT pg_advisory_xact_lock(7343020111)"));
