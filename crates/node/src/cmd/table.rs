//! The command table: the one place that names a command. Each entry gives its name and aliases,
//! who may run it ([`Access`]: public, any authenticated user with the handler's own rule, or
//! privileges as MongoDB's manual lists them under "Access control"), whether it must run on
//! `admin`, whether it exists only with test commands on, the operation type `$currentOp` reports
//! for it, and its [`Handler`]. The dispatcher, `listCommands`, the authorization check and
//! `explain` all read this table; the handlers are reached through one `match` on [`Handler`].
//!
//! Where mongod's rule is not a fixed privilege list, [`Access::Custom`] computes it from the
//! command's arguments (cited per function), and [`Access::Authenticated`] marks commands whose
//! handler applies mongod's ownership rule itself (own operations, sessions, cursors, users).

use std::collections::HashMap;
use std::sync::LazyLock;

use bson::{Bson, Document};
use docplane_query::CommandError;

use super::util;
use crate::auth::users::parse_roles;
use crate::auth::{Action, Resource, UserName};

/// Which handler runs a command (one `match` in [`super::run`] maps each to its function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handler {
    Hello,
    BuildInfo,
    Ping,
    WhatsMyUri,
    GetParameter,
    SetParameter,
    GetCmdLineOpts,
    ConnectionStatus,
    ServerStatus,
    HostInfo,
    ListCommands,
    GetLog,
    GetFreeMonitoringStatus,
    Features,
    GetLastError,
    GetNonce,
    LockInfo,
    GetDefaultRwConcern,
    ReplSetGetStatus,
    Shutdown,
    Sleep,
    ConfigureFailPoint,
    TestApiVersion,
    SaslStart,
    SaslContinue,
    Logout,
    CreateUser,
    UpdateUser,
    DropUser,
    DropAllUsersFromDatabase,
    UsersInfo,
    GrantRolesToUser,
    RevokeRolesFromUser,
    CurrentOp,
    KillOp,
    DocplaneKillOpRules,
    StartSession,
    EndSessions,
    RefreshSessions,
    KillSessions,
    KillAllSessions,
    KillAllSessionsByPattern,
    Find,
    GetMore,
    KillCursors,
    Insert,
    Update,
    Delete,
    FindAndModify,
    Count,
    Distinct,
    Aggregate,
    Create,
    Drop,
    CollMod,
    ListCollections,
    ListDatabases,
    DropDatabase,
    RenameCollection,
    CreateIndexes,
    ListIndexes,
    DropIndexes,
    CollStats,
    DbStats,
    Validate,
    Explain,
}

/// What a command's arguments are judged with by [`Access::Custom`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The database the command runs on.
    pub db: &'a str,
    pub cmd: &'a Document,
    /// The connection's authenticated users.
    pub users: &'a [UserName],
}

/// One requirement: at least one of these privileges.
#[derive(Debug, Clone, PartialEq)]
pub struct Need(pub Vec<(Resource, Action)>);

impl Need {
    fn one(resource: Resource, action: Action) -> Need {
        Need(vec![(resource, action)])
    }
}

/// Who may run a command.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone, authenticated or not (handshake, authentication, ping).
    Public,
    /// Any authenticated user; the handler applies mongod's finer rule (own operations, sessions,
    /// cursors or users, unless a privilege such as `killop` says otherwise).
    Authenticated,
    /// Every one of these actions on the command's database.
    Db(&'static [Action]),
    /// Every one of these actions on the cluster.
    Cluster(&'static [Action]),
    /// Computed from the arguments: every [`Need`] must be met.
    Custom(fn(&Request<'_>) -> Result<Vec<Need>, CommandError>),
}

/// One command.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    pub name: &'static str,
    /// Other names dispatched to the same handler (each listed by `listCommands` too).
    pub aliases: &'static [&'static str],
    pub access: Access,
    /// Must run against `admin`.
    pub admin_only: bool,
    /// Exists only with `enable_test_commands`.
    pub test_only: bool,
    /// `$currentOp`'s `op` field for it.
    pub op: &'static str,
    /// Its first value names a collection (for the operation's `ns`).
    pub has_coll: bool,
    /// The Stable API versions it belongs to (mongod's `apiVersions()`, the IDL's
    /// `api_version`): with `apiStrict: true` a command outside the requested version fails with
    /// 323 APIStrictError (`super::apiversion`).
    pub api_versions: &'static [&'static str],
    /// The versions that deprecate it (`deprecatedApiVersions()`): with
    /// `apiDeprecationErrors: true` it fails with 324 APIDeprecationError.
    pub deprecated_api_versions: &'static [&'static str],
    pub handler: Handler,
}

impl Command {
    /// The name and the aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// Whether an unauthenticated connection may run it (with access control on).
    pub fn requires_auth(&self) -> bool {
        !matches!(self.access, Access::Public)
    }

    /// Whether it exists on a node configured with `test_commands`.
    pub fn available(&self, test_commands: bool) -> bool {
        !self.test_only || test_commands
    }

    /// Whether it exists on a node with `config` (test commands; `docplaneKillOpRules` only
    /// with [`crate::NodeConfig::native_kill_op_rules`]).
    pub fn available_on(&self, config: &crate::NodeConfig) -> bool {
        self.available(config.enable_test_commands)
            && (self.handler != Handler::DocplaneKillOpRules || config.native_kill_op_rules)
    }

    /// The privileges the command needs for these arguments (empty for public and
    /// authenticated-only commands).
    pub fn needs(&self, req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
        let db = || Resource::Db(req.db.to_owned());
        Ok(match self.access {
            Access::Public | Access::Authenticated => Vec::new(),
            Access::Db(actions) => actions.iter().map(|a| Need::one(db(), *a)).collect(),
            Access::Cluster(actions) => actions.iter().map(|a| Need::one(Resource::Cluster, *a)).collect(),
            Access::Custom(f) => f(req)?,
        })
    }
}

use Access::{Authenticated, Cluster, Custom, Db, Public};
use Action::*;

const fn c(name: &'static str, access: Access, handler: Handler) -> Command {
    Command {
        name,
        aliases: &[],
        access,
        admin_only: false,
        test_only: false,
        op: "command",
        has_coll: false,
        api_versions: &[],
        deprecated_api_versions: &[],
        handler,
    }
}

impl Command {
    const fn aka(mut self, aliases: &'static [&'static str]) -> Command {
        self.aliases = aliases;
        self
    }
    const fn admin(mut self) -> Command {
        self.admin_only = true;
        self
    }
    const fn test(mut self) -> Command {
        self.test_only = true;
        self
    }
    const fn coll(mut self) -> Command {
        self.has_coll = true;
        self
    }
    const fn op(mut self, op: &'static str) -> Command {
        self.op = op;
        self
    }
    /// In Stable API version 1.
    const fn v1(self) -> Command {
        self.api(&["1"], &[])
    }
    const fn api(
        mut self,
        versions: &'static [&'static str],
        deprecated: &'static [&'static str],
    ) -> Command {
        self.api_versions = versions;
        self.deprecated_api_versions = deprecated;
        self
    }
}

/// Every command the node runs. `.v1()` marks those whose mongod 7.0 IDL or class has
/// `api_version: "1"` (`kApiVersions1`): the Stable API's commands.
pub const COMMANDS: &[Command] = &[
    // handshake and diagnostics; `hello` is in API version 1, `isMaster` (a command of its own
    // in mongod, `CmdIsMaster`) is not
    c("hello", Public, Handler::Hello).v1(),
    c("isMaster", Public, Handler::Hello).aka(&["ismaster"]),
    c("buildInfo", Public, Handler::BuildInfo).aka(&["buildinfo"]),
    c("ping", Public, Handler::Ping).v1(),
    c("whatsmyuri", Public, Handler::WhatsMyUri),
    c("connectionStatus", Public, Handler::ConnectionStatus),
    c("listCommands", Public, Handler::ListCommands),
    c("getnonce", Public, Handler::GetNonce),
    c("getParameter", Cluster(&[GetParameter]), Handler::GetParameter).admin(),
    c("setParameter", Cluster(&[SetParameter]), Handler::SetParameter).admin(),
    c("getCmdLineOpts", Cluster(&[GetCmdLineOpts]), Handler::GetCmdLineOpts).admin(),
    c("serverStatus", Cluster(&[ServerStatus]), Handler::ServerStatus).admin(),
    c("hostInfo", Cluster(&[HostInfo]), Handler::HostInfo).admin(),
    c("getLog", Cluster(&[GetLog]), Handler::GetLog).admin(),
    c("replSetGetStatus", Cluster(&[ReplSetGetStatus]), Handler::ReplSetGetStatus).admin(),
    c("getDefaultRWConcern", Cluster(&[GetDefaultRwConcern]), Handler::GetDefaultRwConcern).admin(),
    c("shutdown", Cluster(&[Shutdown]), Handler::Shutdown).admin(),
    c("getFreeMonitoringStatus", Authenticated, Handler::GetFreeMonitoringStatus),
    c("features", Authenticated, Handler::Features),
    c("getLastError", Authenticated, Handler::GetLastError),
    // lockInfo: serverStatus on the cluster (mongod's lock_info.cpp).
    c("lockInfo", Cluster(&[ServerStatus]), Handler::LockInfo).admin(),
    c("sleep", Authenticated, Handler::Sleep).test(),
    // mongod needs no privilege for it (test commands only); docplane asks for a user, as for sleep.
    c("configureFailPoint", Authenticated, Handler::ConfigureFailPoint).admin().test(),
    // mongod's test commands of the Stable API (`test_api_version_2_commands.cpp`,
    // `test_deprecation_command.cpp`): they only answer ok; the node accepts apiVersion "1" only.
    c("testDeprecation", Authenticated, Handler::TestApiVersion).test().api(&["1"], &["1"]),
    c("testVersion2", Authenticated, Handler::TestApiVersion).test().api(&["2"], &[]),
    c("testVersions1And2", Authenticated, Handler::TestApiVersion).test().api(&["1", "2"], &[]),
    c("testDeprecationInVersion2", Authenticated, Handler::TestApiVersion).test().api(&["1", "2"], &["2"]),
    // authentication and users
    c("saslStart", Public, Handler::SaslStart).v1(),
    c("saslContinue", Public, Handler::SaslContinue).v1(),
    c("logout", Public, Handler::Logout),
    c("createUser", Custom(create_user_needs), Handler::CreateUser),
    c("updateUser", Custom(update_user_needs), Handler::UpdateUser),
    c("dropUser", Db(&[DropUser]), Handler::DropUser),
    c("dropAllUsersFromDatabase", Db(&[DropUser]), Handler::DropAllUsersFromDatabase),
    // usersInfo: viewUser on each user's database, or the user itself (the handler checks).
    c("usersInfo", Authenticated, Handler::UsersInfo),
    c("grantRolesToUser", Custom(grant_roles_needs), Handler::GrantRolesToUser),
    c("revokeRolesFromUser", Custom(revoke_roles_needs), Handler::RevokeRolesFromUser),
    // operations; killOp: killop, or the caller's own operation (the handler checks)
    c("currentOp", Custom(current_op_needs), Handler::CurrentOp).admin(),
    c("killOp", Authenticated, Handler::KillOp).admin(),
    // docplane's extension: the control plane installs its kill-op rules and reads their events
    // (`crate::rules`); it can see and kill every operation, so it needs both privileges.
    c("docplaneKillOpRules", Cluster(&[Inprog, Killop]), Handler::DocplaneKillOpRules).admin(),
    // logical sessions: own sessions; others' with killAnySession (the handlers check)
    c("startSession", Authenticated, Handler::StartSession),
    c("endSessions", Authenticated, Handler::EndSessions).v1(),
    c("refreshSessions", Authenticated, Handler::RefreshSessions).v1(),
    c("killSessions", Authenticated, Handler::KillSessions),
    c("killAllSessions", Cluster(&[KillAnySession]), Handler::KillAllSessions),
    // and impersonate for patterns naming users or roles (the handler checks)
    c("killAllSessionsByPattern", Cluster(&[KillAnySession]), Handler::KillAllSessionsByPattern),
    // data
    c("find", Db(&[Find]), Handler::Find).coll().op("query").v1(),
    // getMore: the cursor's own users only (the cursor store checks).
    c("getMore", Authenticated, Handler::GetMore).op("getmore").v1(),
    // killCursors: own cursors, or killAnyCursor (the handler checks).
    c("killCursors", Authenticated, Handler::KillCursors).coll().op("killcursors").v1(),
    c("insert", Custom(insert_needs), Handler::Insert).coll().op("insert").v1(),
    c("update", Custom(update_needs), Handler::Update).coll().op("update").v1(),
    c("delete", Db(&[Remove]), Handler::Delete).coll().op("remove").v1(),
    c("findAndModify", Custom(find_and_modify_needs), Handler::FindAndModify)
        .aka(&["findandmodify"])
        .coll()
        .v1(),
    c("count", Db(&[Find]), Handler::Count).coll().v1(),
    c("distinct", Db(&[Find]), Handler::Distinct).coll(),
    c("aggregate", Custom(aggregate_needs), Handler::Aggregate).coll().v1(),
    c("create", Db(&[CreateCollection]), Handler::Create).coll().v1(),
    c("drop", Db(&[DropCollection]), Handler::Drop).coll().v1(),
    c("collMod", Db(&[CollMod]), Handler::CollMod).coll().v1(),
    c("listCollections", Db(&[ListCollections]), Handler::ListCollections).v1(),
    // listDatabases: every database with listDatabases, else those the user has privileges on.
    c("listDatabases", Authenticated, Handler::ListDatabases).admin().v1(),
    c("dropDatabase", Db(&[DropDatabase]), Handler::DropDatabase).v1(),
    c("renameCollection", Custom(rename_collection_needs), Handler::RenameCollection).admin(),
    c("createIndexes", Db(&[CreateIndex]), Handler::CreateIndexes).coll().v1(),
    c("listIndexes", Db(&[ListIndexes]), Handler::ListIndexes).coll().v1(),
    c("dropIndexes", Db(&[DropIndex]), Handler::DropIndexes).aka(&["deleteIndexes"]).coll().v1(),
    c("collStats", Db(&[CollStats]), Handler::CollStats).coll(),
    c("dbStats", Db(&[DbStats]), Handler::DbStats),
    c("validate", Db(&[Validate]), Handler::Validate).coll(),
    c("explain", Custom(explain_needs), Handler::Explain).coll().v1(),
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Command>> =
    LazyLock::new(|| COMMANDS.iter().flat_map(|c| c.names().map(move |n| (n, c))).collect());

/// The command named `name` (or an alias), whether or not it is available on this node.
pub fn lookup(name: &str) -> Option<&'static Command> {
    BY_NAME.get(name).copied()
}

/// Every name and alias, in table order.
pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().flat_map(|c| c.names()).collect()
}

fn db_of(db: &str) -> Resource {
    Resource::Db(db.to_owned())
}

/// createUser: createUser on the database, and grantRole on the database of every role given
/// (mongod's `checkAuthForTypedCommand(CreateUserCommand)` in `authorization_checks.cpp`, with
/// `checkAuthorizedToGrantRoles`).
fn create_user_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    let mut needs = vec![Need::one(db_of(req.db), CreateUser)];
    if let Some(roles) = req.cmd.get("roles") {
        needs.extend(role_needs(roles, req.db, GrantRole)?);
    }
    Ok(needs)
}

/// grantRolesToUser: grantRole on the database of each role granted. This is what stops a
/// `userAdmin` of one database granting itself `root@admin`.
fn grant_roles_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    role_needs(req.cmd.get("roles").unwrap_or(&Bson::Null), req.db, GrantRole)
}

/// revokeRolesFromUser: revokeRole on the database of each role revoked.
fn revoke_roles_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    role_needs(req.cmd.get("roles").unwrap_or(&Bson::Null), req.db, RevokeRole)
}

fn role_needs(roles: &Bson, db: &str, action: Action) -> Result<Vec<Need>, CommandError> {
    let roles = parse_roles(roles, db)?;
    Ok(roles.into_iter().map(|r| Need::one(db_of(&r.db), action)).collect())
}

/// updateUser, as mongod's `checkAuthForTypedCommand(UpdateUserCommand)`: `pwd` needs
/// changePassword on the user's database (or changeOwnPassword for oneself), `customData`
/// changeCustomData (or changeOwnCustomData), and `roles` revokeRole on every normal database
/// ("you don't know what roles you might be revoking") plus grantRole on each role's database.
fn update_user_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    let target = UserName::new(util::req_str(req.cmd, "updateUser")?, req.db);
    let own = req.users.contains(&target);
    let db = db_of(req.db);
    let either = |any: Action, own_action: Action| {
        let mut n = vec![(db.clone(), any)];
        if own {
            n.push((db.clone(), own_action));
        }
        Need(n)
    };
    let mut needs = Vec::new();
    if req.cmd.contains_key("pwd") {
        needs.push(either(ChangePassword, ChangeOwnPassword));
    }
    if req.cmd.contains_key("customData") {
        needs.push(either(ChangeCustomData, ChangeOwnCustomData));
    }
    if let Some(roles) = req.cmd.get("roles") {
        needs.push(Need::one(Resource::AnyNormal, RevokeRole));
        needs.extend(role_needs(roles, req.db, GrantRole)?);
    }
    if needs.is_empty() {
        // Nothing to change: the handler refuses it, but only for someone who may administer
        // the database's users.
        needs.push(either(ChangePassword, ChangeOwnPassword));
    }
    Ok(needs)
}

/// currentOp: inprog, or any authenticated user with `$ownOps: true` (mongod's
/// `CurrentOpCommand::checkAuthForOperation` in `src/mongo/db/commands/current_op.cpp`).
fn current_op_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    if req.cmd.get("$ownOps").is_some_and(util::truthy) {
        return Ok(Vec::new());
    }
    Ok(vec![Need::one(Resource::Cluster, Inprog)])
}

/// aggregate: the union of its stages' privileges, and find on the namespace unless the pipeline
/// starts with a stage that makes its own documents (mongod's `getPrivilegesForAggregate`):
/// `$currentOp` needs inprog only with `allUsers: true`, `$listLocalSessions` and `$listSessions`
/// need listSessions only for other users' sessions (`listSessionsRequiredPrivileges`).
fn aggregate_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    let first = match req.cmd.get("pipeline") {
        Some(Bson::Array(stages)) => stages.first().and_then(Bson::as_document),
        _ => None,
    };
    let stage = first.and_then(|d| d.iter().next()).filter(|_| first.is_some_and(|d| d.len() == 1));
    match stage {
        Some((name, spec)) if name == "$currentOp" => {
            let all = matches!(spec, Bson::Document(d) if d.get("allUsers").is_some_and(util::truthy));
            Ok(if all { vec![Need::one(Resource::Cluster, Inprog)] } else { Vec::new() })
        }
        Some((name, spec)) if name == "$listLocalSessions" || name == "$listSessions" => {
            let others = match spec {
                Bson::Document(d) => {
                    d.get("allUsers").is_some_and(util::truthy)
                        || match d.get("users") {
                            Some(Bson::Array(users)) => users.iter().any(|u| match u {
                                Bson::Document(u) => {
                                    let name = UserName::new(
                                        u.get_str("user").unwrap_or_default(),
                                        u.get_str("db").unwrap_or_default(),
                                    );
                                    !req.users.contains(&name)
                                }
                                _ => true,
                            }),
                            _ => false,
                        }
                }
                _ => false,
            };
            Ok(if others { vec![Need::one(Resource::Cluster, ListSessions)] } else { Vec::new() })
        }
        _ => {
            let mut needs = vec![Need::one(db_of(req.db), Find)];
            needs.extend(writing_stage_needs(req));
            Ok(needs)
        }
    }
}

/// A final `$out` needs insert and remove on the target's database, a final `$merge` insert and
/// update (mongod's `DocumentSourceOut` / `DocumentSourceMerge` required privileges), and
/// bypassDocumentValidation with that flag.
/// A write command's actions on its database, plus `bypassDocumentValidation` when it asks to
/// bypass the validator (mongod's `checkAuthForWriteCommand` / findAndModify's check).
fn write_needs(req: &Request<'_>, actions: &[Action]) -> Vec<Need> {
    let mut needs: Vec<Need> = actions.iter().map(|a| Need::one(db_of(req.db), *a)).collect();
    if req.cmd.get("bypassDocumentValidation").is_some_and(util::truthy) {
        needs.push(Need::one(db_of(req.db), BypassDocumentValidation));
    }
    needs
}

fn insert_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    Ok(write_needs(req, &[Insert]))
}

fn update_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    Ok(write_needs(req, &[Update]))
}

fn find_and_modify_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    Ok(write_needs(req, &[Find, Update, Remove]))
}

fn writing_stage_needs(req: &Request<'_>) -> Vec<Need> {
    let last = match req.cmd.get("pipeline") {
        Some(Bson::Array(stages)) => stages.last().and_then(Bson::as_document),
        _ => None,
    };
    let Some((name, arg)) = last.and_then(|d| d.iter().next()) else { return Vec::new() };
    let target_db = |arg: &Bson, key: &str| match arg {
        Bson::Document(d) => match d.get(key) {
            Some(Bson::Document(into)) => into.get_str("db").unwrap_or(req.db).to_owned(),
            _ => d.get_str("db").unwrap_or(req.db).to_owned(),
        },
        _ => req.db.to_owned(),
    };
    let (db, actions): (String, &[Action]) = match name.as_str() {
        "$out" => (target_db(arg, ""), &[Insert, Remove]),
        "$merge" => (target_db(arg, "into"), &[Insert, Update]),
        _ => return Vec::new(),
    };
    let mut needs: Vec<Need> = actions.iter().map(|a| Need::one(db_of(&db), *a)).collect();
    if req.cmd.get("bypassDocumentValidation").is_some_and(util::truthy) {
        needs.push(Need::one(db_of(&db), BypassDocumentValidation));
    }
    needs
}

/// renameCollection (mongod's `rename_collection_common.cpp`): within one database,
/// renameCollectionSameDB on it (and dropCollection with `dropTarget`); across databases, find
/// and dropCollection on the source's, insert, createIndex and createCollection (and
/// dropCollection with `dropTarget`) on the target's.
fn rename_collection_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    let from = util::req_str(req.cmd, "renameCollection")?;
    let to = util::req_str(req.cmd, "to")?;
    let (fd, _) = util::split_ns(from)?;
    let (td, _) = util::split_ns(to)?;
    let drop_target = req.cmd.get("dropTarget").is_some_and(util::truthy);
    let mut needs = Vec::new();
    let mut on = |db: &str, actions: &[Action]| {
        needs.extend(actions.iter().map(|a| Need::one(db_of(db), *a)));
    };
    if fd == td {
        on(fd, &[RenameCollectionSameDb]);
    } else {
        on(fd, &[Find, DropCollection]);
        on(td, &[Insert, CreateIndex, CreateCollection]);
    }
    if drop_target {
        on(td, &[DropCollection]);
    }
    Ok(needs)
}

/// explain: the explained command's privileges.
fn explain_needs(req: &Request<'_>) -> Result<Vec<Need>, CommandError> {
    let inner = util::opt_doc(req.cmd, "explain")?
        .ok_or_else(|| CommandError::failed_to_parse("explain requires a command object"))?;
    let Some(name) = inner.keys().next() else {
        return Err(CommandError::failed_to_parse("explain requires a command object"));
    };
    match lookup(name) {
        Some(c) if c.handler != Handler::Explain => c.needs(&Request { cmd: inner, ..*req }),
        _ => {
            Err(CommandError::new(115, "CommandNotSupported", format!("explain is not supported for {name}")))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    #[test]
    fn names_are_unique() {
        let all = names();
        let set: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), set.len());
        assert_eq!(lookup("ismaster").unwrap().handler, Handler::Hello);
        assert!(lookup("nope").is_none());
    }

    #[test]
    fn granting_a_role_needs_grant_role_on_its_database() {
        let users = [UserName::new("ua", "t")];
        let req = Request {
            db: "t",
            cmd: &doc! {"grantRolesToUser": "ua", "roles": ["read", {"role": "root", "db": "admin"}]},
            users: &users,
        };
        let needs = lookup("grantRolesToUser").unwrap().needs(&req).unwrap();
        assert_eq!(needs, vec![Need::one(db_of("t"), GrantRole), Need::one(db_of("admin"), GrantRole)]);
    }

    #[test]
    fn current_op_needs_inprog_unless_own_ops() {
        fn needs(name: &str, cmd: Document) -> Vec<Need> {
            lookup(name).unwrap().needs(&Request { db: "admin", cmd: &cmd, users: &[] }).unwrap()
        }
        assert_eq!(needs("currentOp", doc! {"currentOp": 1}), vec![Need::one(Resource::Cluster, Inprog)]);
        assert!(needs("currentOp", doc! {"currentOp": 1, "$ownOps": true}).is_empty());
        let p = |s: Document| doc! {"aggregate": 1, "pipeline": [s], "cursor": {}};
        assert!(needs("aggregate", p(doc! {"$currentOp": {}})).is_empty());
        assert_eq!(
            needs("aggregate", p(doc! {"$currentOp": {"allUsers": true}})),
            vec![Need::one(Resource::Cluster, Inprog)]
        );
        assert_eq!(
            needs("aggregate", p(doc! {"$listSessions": {"users": [{"user": "x", "db": "y"}]}})),
            vec![Need::one(Resource::Cluster, ListSessions)]
        );
        assert!(needs("aggregate", p(doc! {"$listLocalSessions": {}})).is_empty());
        assert_eq!(needs("aggregate", p(doc! {"$match": {}})), vec![Need::one(db_of("admin"), Find)]);
    }
}
