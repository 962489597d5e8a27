//! [`Iam`]: the identity service the HTTP layer calls.
//!
//! It authenticates (password -> token, token -> principal, signed request -> principal), authorizes
//! (principal + project + action -> allow/deny) and performs the IAM writes (users, groups, policies,
//! grants, access keys, bootstrap).
//!
//! Hot path without the database: tokens are verified by HMAC; user state (enabled, token epoch),
//! decrypted access keys and compiled policy sets are cached in memory. Correctness across replicas
//! comes from the store's change log: [`Iam::sync`] (run about every second by [`Iam::spawn_sync`],
//! and right after every local write) reads the changes since the last seen sequence number and
//! drops the affected cache entries. A cache fill that raced with an invalidation is not kept
//! (generation check), so a stale value can never stick.
//!
//! Invariant: every refusal of a credential (unknown user, wrong password, disabled user, unknown or
//! inaccessible project or account) is the same [`IamError::InvalidCredentials`], so callers cannot
//! probe.
//!
//! Identity rules (docs/iam-rules.md): the writes that touch a user (`*_as` methods) take the acting
//! [`Principal`] and refuse what no policy can grant: changing the account administrator
//! ([`IamError::ProtectedAdministrator`]), or, below the account-admin level (the administrator and
//! the members of the account's `admin` group), changing another user's password or keys, anyone's
//! group membership, or a user of the admin level ([`IamError::AdminLevelRequired`]). The route's
//! IAM action is checked before, by the API layer; these rules come on top of it. The methods without
//! `_as` (`update_user`, `create_access_key`, ...) apply no identity rule: they are for bootstrap and
//! tooling that acts as the system itself, never for a request's caller.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use docplane_store::{
    Credential, Domain, Grant, Group, MetaStore, Project, Role, StoreError, User, change_kind, now_millis,
};
use parking_lot::RwLock;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::keys::{MasterKey, Sealer};
use crate::login::{LoginGuard, LoginLimits};
use crate::password;
use crate::policy::{self, Decision, Statement};
use crate::sign::{self, SignError, SignedRequest};
use crate::token::{self, Claims, TOKEN_TTL_SECS, TokenError};

/// Errors of the identity service. The API maps each to one vendor code.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// Wrong user, password, project, disabled user: one answer for all.
    #[error("the username or password is wrong")]
    InvalidCredentials,
    /// A token that does not verify, expired, or was revoked.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A signed request that does not verify.
    #[error("invalid signature: {0}")]
    InvalidSignature(#[from] SignError),
    /// The principal may not perform `action`.
    #[error("no permission for action {action}")]
    Forbidden { action: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An access key that does not exist or is not active (told apart from a bad signature because
    /// the vendor's gateway tells them apart too).
    #[error("unknown or inactive access key")]
    UnknownAccessKey,
    /// The change needs the account-admin level (see the module docs); the text says which change.
    #[error("needs the account administrator level: {0}")]
    AdminLevelRequired(String),
    /// The change would touch the account administrator in a way only it may, or nobody may.
    #[error("the account administrator is protected: {0}")]
    ProtectedAdministrator(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The store's key check value is not this process's master key's.
    #[error(
        "this store was initialised with a different master key; give every replica the same {}",
        crate::keys::MASTER_KEY_ENV
    )]
    MasterKeyMismatch,
    #[error("store: {0}")]
    Store(StoreError),
    #[error("internal: {0}")]
    Internal(String),
    /// A login refused before checking the password: the caller failed too often recently, or no
    /// password worker became free in time (see [`crate::login`]).
    #[error("too many login attempts; retry after {retry_after:?}")]
    TooManyAttempts { retry_after: Duration },
}

impl From<StoreError> for IamError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => IamError::Conflict(m),
            other => IamError::Store(other),
        }
    }
}

pub type Result<T, E = IamError> = std::result::Result<T, E>;

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMethod {
    Token,
    AccessKey { access_key: String },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
    pub domain_id: String,
    /// The project the credential is bound to: the token's project, or for AK/SK the project the
    /// request names (`X-Project-Id` / path), filled in by the API layer.
    pub project_id: Option<String>,
    /// The account's administrator (its root user): allowed everything inside its own account.
    /// Members of the account's `admin` group have the same level (see [`Iam::is_admin_level`]).
    pub is_admin: bool,
    pub method: AuthMethod,
}

/// The user state tokens are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserState {
    name: String,
    domain_id: String,
    enabled: bool,
    is_admin: bool,
    /// The administrator, or a member of the account's [`ADMIN_GROUP`].
    admin_level: bool,
    epoch: i64,
}

#[derive(Debug, Clone)]
struct KeyEntry {
    user_id: String,
    secret: Vec<u8>,
    active: bool,
}

#[derive(Debug, Default)]
struct Cache {
    /// Last change sequence applied.
    seq: i64,
    /// Bumped on every invalidation; fills started under another generation are dropped.
    generation: u64,
    /// `None` = known not to exist.
    users: HashMap<String, Option<UserState>>,
    keys: HashMap<String, Option<KeyEntry>>,
    projects: HashMap<String, Option<Project>>,
    /// (user id, scope id) -> statements.
    policies: HashMap<(String, String), Arc<Vec<Statement>>>,
}

/// Which project a password authentication is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSelector {
    Id(String),
    Name(String),
}

/// Which account a domain-scoped authentication is scoped to (it must be the user's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainSelector {
    Id(String),
    Name(String),
}

/// The scope of a password authentication: one project, or the account itself (a domain-scoped
/// token, for account-level IAM calls only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSelector {
    Project(ProjectSelector),
    Domain(DomainSelector),
}

/// The name of the group whose members have the account-admin level (the vendor's default
/// `admin` group: "has all permissions ... including creating user groups and users, modifying
/// permissions"; vendor IAM user guide, "Creating an IAM User"). Bootstrap creates it.
pub const ADMIN_GROUP: &str = "admin";

/// Who is logging in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSelector {
    /// By name inside the account named `domain_name` (or with id `domain_id`).
    Name {
        domain_name: Option<String>,
        domain_id: Option<String>,
        name: String,
    },
    Id(String),
}

/// A freshly issued (or validated) token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
    pub user: User,
    pub domain: Domain,
    /// `None` for a domain-scoped token.
    pub project: Option<Project>,
}

/// Fields of a user update; `None` leaves the field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub password: Option<String>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

/// What to create at first start.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub domain_name: String,
    pub project_name: String,
    pub admin_name: String,
    /// `None` generates one.
    pub admin_password: Option<String>,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            domain_name: "docplane".into(),
            project_name: "local".into(),
            admin_name: "admin".into(),
            admin_password: None,
        }
    }
}

/// What bootstrap created or found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapOutput {
    pub domain_id: String,
    pub domain_name: String,
    pub project_id: String,
    pub project_name: String,
    pub admin_user_id: String,
    pub admin_name: String,
    /// Only on the start that created the admin (the store keeps a hash, not the password).
    pub admin_password: Option<String>,
    pub access_key: String,
    pub secret_key: String,
    /// True on the start that created everything.
    pub created: bool,
}

#[derive(Serialize, Deserialize)]
struct BootstrapRecord {
    domain_id: String,
    project_id: String,
    admin_user_id: String,
    access_key: String,
}

const BOOTSTRAP_SETTING: &str = "bootstrap";
/// Setting holding the master key's check value.
pub const KEY_CHECK_SETTING: &str = "master_key_check";

/// A new 32-character lowercase hex id (the vendor's id shape).
pub fn new_id() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 16]>())
}

fn random_chars(n: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())])).collect()
}

/// A new access key id (20 upper-case alphanumerics) and secret key (40 alphanumerics).
pub fn new_access_key_pair() -> (String, String) {
    let ak = random_chars(20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    let sk = random_chars(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    (ak, sk)
}

/// A generated password that satisfies [`password::password_acceptable`].
pub fn generate_password() -> String {
    let body = random_chars(20, b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789");
    format!("{body}-7a")
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().count() <= 64 && !n.chars().any(char::is_control)
}

/// The identity service. Create one per process with [`Iam::new`] and share it in an `Arc`.
pub struct Iam {
    store: Arc<dyn MetaStore>,
    sealer: Sealer,
    token_key: [u8; 32],
    cache: RwLock<Cache>,
    /// The password worker pool and the failed-login throttle.
    pub(crate) login: LoginGuard,
}

impl std::fmt::Debug for Iam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iam").field("store", &self.store.backend()).finish_non_exhaustive()
    }
}

impl Iam {
    /// Builds the service; the caches start empty at the store's current change sequence.
    ///
    /// Refuses ([`IamError::MasterKeyMismatch`]) a master key other than the one the store was
    /// first used with: the first `Iam::new` on a store records the key's check value
    /// ([`MasterKey::check_value`], setting `master_key_check`), every later one compares.
    pub async fn new(store: Arc<dyn MetaStore>, master: &MasterKey) -> Result<Arc<Self>> {
        Self::with_login_limits(store, master, LoginLimits::default()).await
    }

    /// [`Iam::new`] with the given password pool and login throttle parameters (refused with
    /// [`IamError::BadRequest`] if they cannot work).
    pub async fn with_login_limits(
        store: Arc<dyn MetaStore>,
        master: &MasterKey,
        limits: LoginLimits,
    ) -> Result<Arc<Self>> {
        let login = LoginGuard::new(limits)?;
        let mine = master.check_value();
        let recorded = store.put_setting_if_absent(KEY_CHECK_SETTING, &mine).await?;
        if recorded != mine {
            return Err(IamError::MasterKeyMismatch);
        }
        let seq = store.latest_change_seq().await?;
        Ok(Arc::new(Self {
            store,
            sealer: master.sealer(),
            token_key: master.derive("token"),
            cache: RwLock::new(Cache { seq, ..Cache::default() }),
            login,
        }))
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// Seals a secret under the master key (for other crates: node connection credentials).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        self.sealer.seal(plaintext, aad)
    }

    /// Opens what [`Iam::seal`] sealed.
    pub fn open_sealed(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.sealer.open(sealed, aad).map_err(|e| IamError::Internal(e.to_string()))
    }

    // ------------------------------------------------------------------ cache maintenance

    /// Applies every change since the last poll. Cheap when nothing changed (one indexed query).
    pub async fn sync(&self) -> Result<usize> {
        let mut applied = 0;
        loop {
            let after = self.cache.read().seq;
            let changes = self.store.changes_since(after, 500).await?;
            if changes.is_empty() {
                return Ok(applied);
            }
            let mut c = self.cache.write();
            if c.seq != after {
                continue; // another sync ran meanwhile; re-read from its position
            }
            for ch in &changes {
                match ch.kind.as_str() {
                    change_kind::USER | change_kind::MEMBERSHIP => {
                        c.users.remove(&ch.entity_id);
                        c.policies.retain(|(u, _), _| u != &ch.entity_id);
                        if ch.kind == change_kind::USER {
                            // Keys of a deleted/disabled user must be re-read too.
                            c.keys.retain(|_, k| k.as_ref().is_some_and(|k| k.user_id != ch.entity_id));
                        }
                    }
                    change_kind::GROUP => {
                        // A group's name decides the admin level of its members.
                        c.policies.clear();
                        c.users.clear();
                    }
                    change_kind::ROLE | change_kind::GRANT => c.policies.clear(),
                    change_kind::CREDENTIAL => {
                        c.keys.remove(&ch.entity_id);
                    }
                    change_kind::PROJECT => {
                        c.projects.remove(&ch.entity_id);
                    }
                    _ => {}
                }
                c.seq = ch.seq;
            }
            c.generation += 1;
            applied += changes.len();
        }
    }

    /// Runs [`Iam::sync`] every `interval` until the service is dropped.
    pub fn spawn_sync(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(iam) = weak.upgrade() else { return };
                if let Err(e) = iam.sync().await {
                    tracing::warn!(error = %e, "iam cache sync failed");
                }
            }
        })
    }

    async fn user_state(&self, user_id: &str) -> Result<Option<UserState>> {
        let generation = {
            let c = self.cache.read();
            if let Some(s) = c.users.get(user_id) {
                return Ok(s.clone());
            }
            c.generation
        };
        let state = match self.store.get_user(user_id).await? {
            Some(u) => {
                let in_admin_group = self
                    .store
                    .list_user_groups(&u.id)
                    .await?
                    .iter()
                    .any(|g| g.name == ADMIN_GROUP && g.domain_id == u.domain_id);
                Some(UserState {
                    admin_level: u.is_domain_admin || in_admin_group,
                    name: u.name,
                    domain_id: u.domain_id,
                    enabled: u.enabled,
                    is_admin: u.is_domain_admin,
                    epoch: u.token_epoch,
                })
            }
            None => None,
        };
        let mut c = self.cache.write();
        if c.generation == generation {
            c.users.insert(user_id.to_owned(), state.clone());
        }
        Ok(state)
    }

    async fn key_entry(&self, access_key: &str) -> Result<Option<KeyEntry>> {
        let generation = {
            let c = self.cache.read();
            if let Some(k) = c.keys.get(access_key) {
                return Ok(k.clone());
            }
            c.generation
        };
        let entry = match self.store.get_credential(access_key).await? {
            Some(cred) => {
                let secret = self
                    .sealer
                    .open(&cred.secret_enc, cred.access_key.as_bytes())
                    .map_err(|e| IamError::Internal(format!("access key {access_key}: {e}")))?;
                Some(KeyEntry { user_id: cred.user_id, secret, active: cred.status == "active" })
            }
            None => None,
        };
        let mut c = self.cache.write();
        if c.generation == generation {
            c.keys.insert(access_key.to_owned(), entry.clone());
        }
        Ok(entry)
    }

    /// The project `id` (cached).
    pub async fn project(&self, id: &str) -> Result<Option<Project>> {
        let generation = {
            let c = self.cache.read();
            if let Some(p) = c.projects.get(id) {
                return Ok(p.clone());
            }
            c.generation
        };
        let p = self.store.get_project(id).await?;
        let mut c = self.cache.write();
        if c.generation == generation {
            c.projects.insert(id.to_owned(), p.clone());
        }
        Ok(p)
    }

    async fn statements(&self, user_id: &str, scope_id: &str) -> Result<Arc<Vec<Statement>>> {
        let key = (user_id.to_owned(), scope_id.to_owned());
        let generation = {
            let c = self.cache.read();
            if let Some(s) = c.policies.get(&key) {
                return Ok(s.clone());
            }
            c.generation
        };
        let docs = self.store.policies_for_user(user_id, scope_id).await?;
        let mut stmts = Vec::new();
        for d in docs {
            match policy::parse_policy_text(&d) {
                Ok(s) => stmts.extend(s),
                // Stored policies were validated on write; a corrupt one grants nothing.
                Err(e) => tracing::warn!(error = %e, "ignoring unparsable stored policy"),
            }
        }
        let stmts = Arc::new(stmts);
        let mut c = self.cache.write();
        if c.generation == generation {
            c.policies.insert(key, stmts.clone());
        }
        Ok(stmts)
    }

    // ------------------------------------------------------------------ authentication

    /// Password authentication scoped to a project: issues a 24 h token. The password check runs on
    /// the bounded password pool; the failed-login throttle is [`Iam::login`]'s (the HTTP route's).
    pub async fn issue_token(
        &self,
        who: &UserSelector,
        password: &str,
        project: &ProjectSelector,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken> {
        self.issue_scoped_token(who, password, &ScopeSelector::Project(project.clone()), now).await
    }

    /// Password authentication scoped to a project or to the user's own account: issues a 24 h
    /// token. A domain-scoped token works only on account-level routes.
    pub async fn issue_scoped_token(
        &self,
        who: &UserSelector,
        password: &str,
        scope: &ScopeSelector,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken> {
        let user = match who {
            UserSelector::Id(id) => self.store.get_user(id).await?,
            UserSelector::Name { domain_name, domain_id, name } => {
                let domain = match (domain_id, domain_name) {
                    (Some(id), _) => self.store.get_domain(id).await?,
                    (None, Some(n)) => self.store.get_domain_by_name(n).await?,
                    (None, None) => None,
                };
                match domain {
                    Some(d) => self.store.get_user_by_name(&d.id, name).await?,
                    None => None,
                }
            }
        };
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_owned());
        let pw = password.to_owned();
        let ok = self.login.run(move || password::verify_password(&pw, &hash)).await?;
        let user = match user {
            Some(u) if ok && u.enabled => u,
            _ => return Err(IamError::InvalidCredentials),
        };
        let domain = self
            .store
            .get_domain(&user.domain_id)
            .await?
            .filter(|d| d.enabled)
            .ok_or(IamError::InvalidCredentials)?;
        let project = match scope {
            ScopeSelector::Project(ProjectSelector::Id(id)) => Some(self.store.get_project(id).await?),
            ScopeSelector::Project(ProjectSelector::Name(n)) => {
                Some(self.store.list_projects(&user.domain_id, Some(n)).await?.into_iter().next())
            }
            ScopeSelector::Domain(DomainSelector::Id(id)) if *id == domain.id => None,
            ScopeSelector::Domain(DomainSelector::Name(n)) if *n == domain.name => None,
            ScopeSelector::Domain(_) => return Err(IamError::InvalidCredentials),
        };
        let project = match project {
            None => None,
            Some(p) => Some(
                p.filter(|p| p.domain_id == user.domain_id && p.enabled)
                    .ok_or(IamError::InvalidCredentials)?,
            ),
        };
        let iat = now.timestamp();
        let claims = Claims {
            sub: user.id.clone(),
            dom: user.domain_id.clone(),
            prj: project.as_ref().map(|p| p.id.clone()),
            epo: user.token_epoch,
            iat,
            exp: iat + TOKEN_TTL_SECS,
        };
        let token = token::issue(&self.token_key, &claims);
        Ok(IssuedToken { token, claims, user, domain, project })
    }

    /// Verifies a token: signature and expiry locally, revocation against the cached user state.
    pub async fn verify_token(&self, token: &str, now: DateTime<Utc>) -> Result<Principal> {
        let claims = self.token_claims(token, now)?;
        let state = self.live_state(&claims).await?;
        Ok(Principal {
            user_id: claims.sub,
            user_name: state.name,
            domain_id: claims.dom,
            project_id: claims.prj,
            is_admin: state.is_admin,
            method: AuthMethod::Token,
        })
    }

    /// The claims of a token whose signature and time window check out.
    fn token_claims(&self, token: &str, now: DateTime<Utc>) -> Result<Claims> {
        token::verify(&self.token_key, token, now.timestamp()).map_err(|e| {
            IamError::InvalidToken(match e {
                TokenError::Expired => "expired",
                TokenError::NotYetValid => "not yet valid",
                TokenError::Malformed | TokenError::BadSignature => "malformed",
            })
        })
    }

    /// The state of the token's user, if the token has not been revoked since.
    async fn live_state(&self, claims: &Claims) -> Result<UserState> {
        let state = self.user_state(&claims.sub).await?.ok_or(IamError::InvalidToken("revoked"))?;
        if !state.enabled || state.epoch != claims.epo || state.domain_id != claims.dom {
            return Err(IamError::InvalidToken("revoked"));
        }
        Ok(state)
    }

    /// Validates `subject` for `actor` (Keystone's `GET /v3/auth/tokens`): the token's claims and
    /// current rows. Any token that does not verify, is expired or revoked, or belongs to another
    /// account is [`IamError::NotFound`] ("token"). Validating another user's token needs the
    /// account-admin level (the vendor asks for the Security Administrator role there).
    pub async fn validate_token(
        &self,
        actor: &Principal,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken> {
        let checked = match self.token_claims(subject, now) {
            Ok(claims) => self.live_state(&claims).await.map(|_| claims),
            Err(e) => Err(e),
        };
        let claims = match checked {
            Ok(c) => c,
            Err(IamError::InvalidToken(_)) => return Err(IamError::NotFound("token")),
            Err(e) => return Err(e),
        };
        if claims.dom != actor.domain_id {
            return Err(IamError::NotFound("token"));
        }
        if claims.sub != actor.user_id && !self.is_admin_level(actor).await? {
            return Err(IamError::AdminLevelRequired("validating another user's token".into()));
        }
        let user = self.store.get_user(&claims.sub).await?.ok_or(IamError::NotFound("token"))?;
        let domain = self.store.get_domain(&claims.dom).await?.ok_or(IamError::NotFound("token"))?;
        let project = match &claims.prj {
            Some(id) => Some(
                self.project(id)
                    .await?
                    .filter(|pr| pr.domain_id == claims.dom && pr.enabled)
                    .ok_or(IamError::NotFound("token"))?,
            ),
            None => None,
        };
        Ok(IssuedToken { token: subject.to_owned(), claims, user, domain, project })
    }

    /// Verifies an `SDK-HMAC-SHA256` signed request. The returned principal has no project yet.
    pub async fn verify_signed(&self, req: &SignedRequest<'_>, now: DateTime<Utc>) -> Result<Principal> {
        let auth = sign::precheck(req, now)?;
        let key =
            self.key_entry(&auth.access_key).await?.filter(|k| k.active).ok_or(IamError::UnknownAccessKey)?;
        sign::verify(req, &auth, &key.secret)?;
        let state =
            self.user_state(&key.user_id).await?.filter(|s| s.enabled).ok_or(IamError::UnknownAccessKey)?;
        Ok(Principal {
            user_id: key.user_id,
            user_name: state.name,
            domain_id: state.domain_id,
            project_id: None,
            is_admin: state.is_admin,
            method: AuthMethod::AccessKey { access_key: auth.access_key },
        })
    }

    // ------------------------------------------------------------------ authorization

    /// Whether `principal` may perform `action` on `scope_id` (a project of its account, or its
    /// account id for account-wide actions). The account admin may do everything in its account.
    pub async fn authorize(&self, principal: &Principal, scope_id: &str, action: &str) -> Result<()> {
        if self.is_admin_level(principal).await? {
            return Ok(());
        }
        let stmts = self.statements(&principal.user_id, scope_id).await?;
        match policy::evaluate(stmts.iter(), action) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny | Decision::ImplicitDeny => {
                Err(IamError::Forbidden { action: action.to_owned() })
            }
        }
    }

    /// Whether `principal` has the account-admin level: it is the account administrator, or a
    /// member of its account's [`ADMIN_GROUP`] (cached with the user's state).
    pub async fn is_admin_level(&self, principal: &Principal) -> Result<bool> {
        if principal.is_admin {
            return Ok(true);
        }
        Ok(self
            .user_state(&principal.user_id)
            .await?
            .is_some_and(|s| s.admin_level && s.enabled && s.domain_id == principal.domain_id))
    }

    /// The identity rules (module docs, docs/iam-rules.md) for `actor` doing `change` to `target`.
    async fn check_user_change(&self, actor: &Principal, target: &User, change: UserChange) -> Result<()> {
        let is_self = actor.user_id == target.id;
        if target.is_domain_admin {
            return match change {
                UserChange::Disable => Err(IamError::ProtectedAdministrator(
                    "the account administrator cannot be disabled (not even by itself)".into(),
                )),
                UserChange::Delete => Err(IamError::ProtectedAdministrator(
                    "the account administrator cannot be deleted".into(),
                )),
                _ if is_self => Ok(()),
                _ => Err(IamError::ProtectedAdministrator(format!(
                    "only the account administrator itself may {}",
                    change.describe(true)
                ))),
            };
        }
        if is_self && !matches!(change, UserChange::Membership) {
            return Ok(());
        }
        if self.is_admin_level(actor).await? {
            return Ok(());
        }
        let target_state = self.user_state(&target.id).await?;
        if target_state.is_some_and(|s| s.admin_level) {
            return Err(IamError::AdminLevelRequired(format!(
                "changing a member of the {ADMIN_GROUP} group ({})",
                change.describe(false)
            )));
        }
        match change {
            UserChange::Profile | UserChange::Enable | UserChange::Disable | UserChange::Delete => Ok(()),
            UserChange::Password | UserChange::CreateKey | UserChange::DeleteKey | UserChange::Membership => {
                Err(IamError::AdminLevelRequired(change.describe(false)))
            }
        }
    }

    // ------------------------------------------------------------------ IAM writes

    async fn after_write(&self) {
        if let Err(e) = self.sync().await {
            tracing::warn!(error = %e, "iam cache sync after write failed");
        }
    }

    async fn user_in_domain(&self, domain_id: &str, user_id: &str) -> Result<User> {
        self.store
            .get_user(user_id)
            .await?
            .filter(|u| u.domain_id == domain_id)
            .ok_or(IamError::NotFound("user"))
    }

    async fn group_in_domain(&self, domain_id: &str, group_id: &str) -> Result<Group> {
        self.store
            .get_group(group_id)
            .await?
            .filter(|g| g.domain_id == domain_id)
            .ok_or(IamError::NotFound("group"))
    }

    /// Creates a user in `domain_id`.
    pub async fn create_user(
        &self,
        domain_id: &str,
        name: &str,
        password: Option<&str>,
        enabled: bool,
        description: &str,
        is_admin: bool,
    ) -> Result<User> {
        if !valid_name(name) {
            return Err(IamError::BadRequest("invalid user name".into()));
        }
        let hash = match password {
            Some(p) => hash_checked(&self.login, p).await?,
            // No password: the user can only use access keys until one is set.
            None => "!".to_owned(),
        };
        let now = now_millis();
        let u = User {
            id: new_id(),
            domain_id: domain_id.to_owned(),
            name: name.to_owned(),
            password_hash: hash,
            enabled,
            is_domain_admin: is_admin,
            token_epoch: 1,
            description: description.to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.store.create_user(&u).await?;
        self.after_write().await;
        Ok(u)
    }

    /// Updates a user. Changing the password or disabling the user revokes its earlier tokens.
    pub async fn update_user(&self, domain_id: &str, user_id: &str, patch: &UserPatch) -> Result<User> {
        let mut u = self.user_in_domain(domain_id, user_id).await?;
        let mut revoke = false;
        if let Some(n) = &patch.name {
            if !valid_name(n) {
                return Err(IamError::BadRequest("invalid user name".into()));
            }
            u.name = n.clone();
        }
        if let Some(p) = &patch.password {
            u.password_hash = hash_checked(&self.login, p).await?;
            revoke = true;
        }
        if let Some(e) = patch.enabled {
            revoke |= u.enabled && !e;
            u.enabled = e;
        }
        if let Some(d) = &patch.description {
            u.description = d.clone();
        }
        if revoke {
            u.token_epoch += 1;
        }
        u.updated_at = now_millis();
        self.store.update_user(&u).await?;
        self.after_write().await;
        Ok(u)
    }

    /// [`Iam::update_user`] by `actor`, under the identity rules.
    pub async fn update_user_as(&self, actor: &Principal, user_id: &str, patch: &UserPatch) -> Result<User> {
        let u = self.user_in_domain(&actor.domain_id, user_id).await?;
        if patch.name.is_some() || patch.description.is_some() {
            self.check_user_change(actor, &u, UserChange::Profile).await?;
        }
        if patch.password.is_some() {
            self.check_user_change(actor, &u, UserChange::Password).await?;
        }
        match patch.enabled {
            Some(false) => self.check_user_change(actor, &u, UserChange::Disable).await?,
            Some(true) => self.check_user_change(actor, &u, UserChange::Enable).await?,
            None => {}
        }
        self.update_user(&actor.domain_id, user_id, patch).await
    }

    /// [`Iam::delete_user`] by `actor`, under the identity rules.
    pub async fn delete_user_as(&self, actor: &Principal, user_id: &str) -> Result<()> {
        let u = self.user_in_domain(&actor.domain_id, user_id).await?;
        self.check_user_change(actor, &u, UserChange::Delete).await?;
        self.delete_user(&actor.domain_id, user_id).await
    }

    /// [`Iam::add_user_to_group`] by `actor`: needs the account-admin level (adding anyone,
    /// oneself included, to a group hands them the group's policies).
    pub async fn add_user_to_group_as(&self, actor: &Principal, group_id: &str, user_id: &str) -> Result<()> {
        self.group_in_domain(&actor.domain_id, group_id).await?;
        let u = self.user_in_domain(&actor.domain_id, user_id).await?;
        self.check_user_change(actor, &u, UserChange::Membership).await?;
        self.add_user_to_group(&actor.domain_id, group_id, user_id).await
    }

    /// [`Iam::remove_user_from_group`] by `actor`: needs the account-admin level (leaving a group
    /// can shed a Deny).
    pub async fn remove_user_from_group_as(
        &self,
        actor: &Principal,
        group_id: &str,
        user_id: &str,
    ) -> Result<()> {
        self.group_in_domain(&actor.domain_id, group_id).await?;
        let u = self.user_in_domain(&actor.domain_id, user_id).await?;
        self.check_user_change(actor, &u, UserChange::Membership).await?;
        self.remove_user_from_group(&actor.domain_id, group_id, user_id).await
    }

    /// [`Iam::create_group`] by `actor`: the group named [`ADMIN_GROUP`] confers the admin level,
    /// so only that level may create it.
    pub async fn create_group_as(&self, actor: &Principal, name: &str, description: &str) -> Result<Group> {
        if name.eq_ignore_ascii_case(ADMIN_GROUP) && !self.is_admin_level(actor).await? {
            return Err(IamError::AdminLevelRequired(format!("creating the {ADMIN_GROUP} group")));
        }
        self.create_group(&actor.domain_id, name, description).await
    }

    /// [`Iam::create_access_key`] by `actor`: a key for another user needs the account-admin
    /// level; one for the account administrator only the administrator itself may create.
    pub async fn create_access_key_as(
        &self,
        actor: &Principal,
        user_id: &str,
        description: &str,
    ) -> Result<(Credential, String)> {
        let u = self.user_in_domain(&actor.domain_id, user_id).await?;
        self.check_user_change(actor, &u, UserChange::CreateKey).await?;
        self.create_access_key(&actor.domain_id, user_id, description).await
    }

    /// Deletes the access key `access_key` by `actor`: a key of another user needs the
    /// account-admin level; the administrator's keys only the administrator itself may delete.
    /// A key outside the actor's account is [`IamError::NotFound`].
    pub async fn delete_access_key_as(&self, actor: &Principal, access_key: &str) -> Result<()> {
        let cred = self.store.get_credential(access_key).await?.ok_or(IamError::NotFound("access key"))?;
        let u = self
            .user_in_domain(&actor.domain_id, &cred.user_id)
            .await
            .map_err(|_| IamError::NotFound("access key"))?;
        self.check_user_change(actor, &u, UserChange::DeleteKey).await?;
        self.store.delete_credential(access_key).await.map_err(|e| match e {
            StoreError::NotFound => IamError::NotFound("access key"),
            other => other.into(),
        })?;
        self.after_write().await;
        Ok(())
    }

    /// Creates a project in `domain_id` (KeystoneCreateProject).
    pub async fn create_project(&self, domain_id: &str, name: &str, description: &str) -> Result<Project> {
        if !valid_name(name) {
            return Err(IamError::BadRequest("invalid project name".into()));
        }
        if description.chars().count() > 255 {
            return Err(IamError::BadRequest("project description longer than 255 characters".into()));
        }
        let p = Project {
            id: new_id(),
            domain_id: domain_id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            enabled: true,
            created_at: now_millis(),
        };
        self.store.create_project(&p).await?;
        self.after_write().await;
        Ok(p)
    }

    /// Renames a project or changes its description (KeystoneUpdateProject).
    pub async fn update_project(
        &self,
        domain_id: &str,
        project_id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Project> {
        let mut p = self
            .store
            .get_project(project_id)
            .await?
            .filter(|p| p.domain_id == domain_id)
            .ok_or(IamError::NotFound("project"))?;
        if let Some(n) = name {
            if !valid_name(n) {
                return Err(IamError::BadRequest("invalid project name".into()));
            }
            p.name = n.to_owned();
        }
        if let Some(d) = description {
            if d.chars().count() > 255 {
                return Err(IamError::BadRequest("project description longer than 255 characters".into()));
            }
            p.description = d.to_owned();
        }
        self.store.update_project(&p).await.map_err(|e| match e {
            StoreError::NotFound => IamError::NotFound("project"),
            other => other.into(),
        })?;
        self.after_write().await;
        Ok(p)
    }

    pub async fn delete_user(&self, domain_id: &str, user_id: &str) -> Result<()> {
        let u = self.user_in_domain(domain_id, user_id).await?;
        if u.is_domain_admin {
            return Err(IamError::ProtectedAdministrator(
                "the account administrator cannot be deleted".into(),
            ));
        }
        self.store.delete_user(user_id).await?;
        self.after_write().await;
        Ok(())
    }

    pub async fn create_group(&self, domain_id: &str, name: &str, description: &str) -> Result<Group> {
        if !valid_name(name) {
            return Err(IamError::BadRequest("invalid group name".into()));
        }
        let g = Group {
            id: new_id(),
            domain_id: domain_id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: now_millis(),
        };
        self.store.create_group(&g).await?;
        self.after_write().await;
        Ok(g)
    }

    pub async fn add_user_to_group(&self, domain_id: &str, group_id: &str, user_id: &str) -> Result<()> {
        self.group_in_domain(domain_id, group_id).await?;
        self.user_in_domain(domain_id, user_id).await?;
        self.store.add_group_member(group_id, user_id).await?;
        self.after_write().await;
        Ok(())
    }

    pub async fn remove_user_from_group(&self, domain_id: &str, group_id: &str, user_id: &str) -> Result<()> {
        self.group_in_domain(domain_id, group_id).await?;
        self.user_in_domain(domain_id, user_id).await?;
        self.store.remove_group_member(group_id, user_id).await.map_err(|e| match e {
            StoreError::NotFound => IamError::NotFound("membership"),
            other => other.into(),
        })?;
        self.after_write().await;
        Ok(())
    }

    /// Creates a custom policy after validating its document.
    pub async fn create_role(
        &self,
        domain_id: &str,
        display_name: &str,
        role_type: &str,
        description: &str,
        policy_doc: &serde_json::Value,
    ) -> Result<Role> {
        if !valid_name(display_name) {
            return Err(IamError::BadRequest("invalid display_name".into()));
        }
        if role_type != "AX" && role_type != "XA" {
            return Err(IamError::BadRequest("type must be AX or XA".into()));
        }
        policy::parse_policy(policy_doc).map_err(|e| IamError::BadRequest(e.to_string()))?;
        let now = now_millis();
        let id = new_id();
        let r = Role {
            name: format!("custom_{}_{}", &domain_id[..domain_id.len().min(8)], &id[..8]),
            id,
            domain_id: domain_id.to_owned(),
            display_name: display_name.to_owned(),
            description: description.to_owned(),
            role_type: role_type.to_owned(),
            policy: policy_doc.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.store.create_role(&r).await?;
        self.after_write().await;
        Ok(r)
    }

    /// Grants `role_id` to `group_id` on `scope_id` (a project of the account, or the account).
    pub async fn grant(&self, domain_id: &str, scope_id: &str, group_id: &str, role_id: &str) -> Result<()> {
        if scope_id != domain_id {
            self.project(scope_id)
                .await?
                .filter(|p| p.domain_id == domain_id)
                .ok_or(IamError::NotFound("project"))?;
        }
        self.group_in_domain(domain_id, group_id).await?;
        self.store
            .get_role(role_id)
            .await?
            .filter(|r| r.domain_id == domain_id)
            .ok_or(IamError::NotFound("role"))?;
        self.store
            .create_grant(&Grant {
                scope_id: scope_id.to_owned(),
                group_id: group_id.to_owned(),
                role_id: role_id.to_owned(),
            })
            .await?;
        self.after_write().await;
        Ok(())
    }

    /// Creates a permanent access key for a user of the account; returns the row and the secret.
    pub async fn create_access_key(
        &self,
        domain_id: &str,
        user_id: &str,
        description: &str,
    ) -> Result<(Credential, String)> {
        self.user_in_domain(domain_id, user_id).await?;
        let (ak, sk) = new_access_key_pair();
        let c = Credential {
            secret_enc: self.sealer.seal(sk.as_bytes(), ak.as_bytes()),
            access_key: ak,
            user_id: user_id.to_owned(),
            status: "active".into(),
            description: description.to_owned(),
            created_at: now_millis(),
        };
        self.store.create_credential(&c).await?;
        self.after_write().await;
        Ok((c, sk))
    }

    /// The secret of an access key (used by bootstrap to hand the admin key back on later starts).
    pub async fn access_key_secret(&self, access_key: &str) -> Result<String> {
        let e = self.key_entry(access_key).await?.ok_or(IamError::NotFound("access key"))?;
        String::from_utf8(e.secret).map_err(|_| IamError::Internal("secret is not UTF-8".into()))
    }

    /// Creates account, project, admin user and an admin access key on first start; on later starts
    /// returns what the first start created (without the password). Safe when replicas race.
    pub async fn bootstrap(&self, opts: &BootstrapOptions) -> Result<BootstrapOutput> {
        for _ in 0..50 {
            if let Some(rec) = self.store.get_setting(BOOTSTRAP_SETTING).await? {
                return self.bootstrap_output(&rec, None, false).await;
            }
            match self.bootstrap_create(opts).await {
                Ok(out) => return Ok(out),
                // Another replica is bootstrapping; wait for its record.
                Err(IamError::Conflict(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(e),
            }
        }
        Err(IamError::Internal("bootstrap did not converge".into()))
    }

    async fn bootstrap_output(
        &self,
        rec: &str,
        password: Option<String>,
        created: bool,
    ) -> Result<BootstrapOutput> {
        let rec: BootstrapRecord =
            serde_json::from_str(rec).map_err(|e| IamError::Internal(format!("bootstrap record: {e}")))?;
        let domain = self.store.get_domain(&rec.domain_id).await?.ok_or(IamError::NotFound("domain"))?;
        let project = self.store.get_project(&rec.project_id).await?.ok_or(IamError::NotFound("project"))?;
        let admin = self.store.get_user(&rec.admin_user_id).await?.ok_or(IamError::NotFound("user"))?;
        let secret_key = self.access_key_secret(&rec.access_key).await?;
        Ok(BootstrapOutput {
            domain_id: domain.id,
            domain_name: domain.name,
            project_id: project.id,
            project_name: project.name,
            admin_user_id: admin.id,
            admin_name: admin.name,
            admin_password: password,
            access_key: rec.access_key,
            secret_key,
            created,
        })
    }

    async fn bootstrap_create(&self, opts: &BootstrapOptions) -> Result<BootstrapOutput> {
        let now = now_millis();
        let domain = Domain { id: new_id(), name: opts.domain_name.clone(), enabled: true, created_at: now };
        self.store.create_domain(&domain).await?;
        let project = Project {
            id: new_id(),
            domain_id: domain.id.clone(),
            name: opts.project_name.clone(),
            description: "created at first start".into(),
            enabled: true,
            created_at: now,
        };
        self.store.create_project(&project).await?;
        let password = opts.admin_password.clone().unwrap_or_else(generate_password);
        let admin = self
            .create_user(&domain.id, &opts.admin_name, Some(&password), true, "account administrator", true)
            .await?;
        let (cred, _) = self.create_access_key(&domain.id, &admin.id, "created at first start").await?;
        let admins = self
            .create_group(&domain.id, ADMIN_GROUP, "account administrators: every permission, IAM included")
            .await?;
        self.add_user_to_group(&domain.id, &admins.id, &admin.id).await?;
        let rec = BootstrapRecord {
            domain_id: domain.id,
            project_id: project.id,
            admin_user_id: admin.id,
            access_key: cred.access_key,
        };
        let text = serde_json::to_string(&rec).map_err(|e| IamError::Internal(e.to_string()))?;
        self.store.put_setting(BOOTSTRAP_SETTING, &text).await?;
        self.bootstrap_output(&text, Some(password), true).await
    }
}

/// What an IAM write does to a user, for [`Iam::check_user_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserChange {
    /// Name or description.
    Profile,
    Enable,
    Disable,
    Password,
    Delete,
    CreateKey,
    DeleteKey,
    /// Joining or leaving a group.
    Membership,
}

impl UserChange {
    fn describe(self, of_itself: bool) -> String {
        let whose = if of_itself { "its own" } else { "another user's" };
        match self {
            UserChange::Profile => format!("change {whose} name or description"),
            UserChange::Enable => "enable a user".into(),
            UserChange::Disable => "disable a user".into(),
            UserChange::Password => format!("change {whose} password"),
            UserChange::Delete => "delete a user".into(),
            UserChange::CreateKey => format!("create {whose} access keys"),
            UserChange::DeleteKey => format!("delete {whose} access keys"),
            UserChange::Membership if of_itself => "change its own group membership".into(),
            UserChange::Membership => "change group membership".into(),
        }
    }
}

async fn hash_checked(login: &LoginGuard, p: &str) -> Result<String> {
    if !password::password_acceptable(p) {
        return Err(IamError::BadRequest(
            "password must be 8-64 characters with at least two of: lower, upper, digit, other".into(),
        ));
    }
    let p = p.to_owned();
    login.run(move || password::hash_password(&p)).await?.map_err(|e| IamError::Internal(e.to_string()))
}
