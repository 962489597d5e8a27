//! Command dispatch: name lookup, authentication and authorization, op registration (with `maxTimeMS`
//! and `lsid`), the handler, and the reply.
//!
//! Invariants: every command that passes lookup runs as a registered op (so `currentOp` sees it and
//! `killOp` can kill it); handlers never panic on input, they return `CommandError`; engine work runs on
//! `spawn_blocking` via [`Ctx::blocking`].

pub mod admin;
pub mod authcmd;
pub mod crud;
pub mod currentop;
pub mod sessioncmd;
pub mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use docplane_engine::Engine;
use docplane_query::CommandError;

use crate::auth::{Action, Resource, RoleRef, UserName, roles_grant};
use crate::conn::ConnCtx;
use crate::ops::{NewOp, OpEntry, OpInterrupt};
use crate::redact::{needs_redaction, redact_command};
use crate::reply::{command_not_found, error_doc, finish_ok, summarize};
use crate::state::NodeState;

/// Result of a handler.
pub type CmdResult = Result<Document, CommandError>;

/// How a command is authorized.
#[derive(Debug, Clone, PartialEq)]
pub enum Authz {
    /// Allowed without authentication (handshake, auth, ping).
    Public,
    /// Any authenticated user; the handler applies finer rules (own ops, own sessions, own cursors).
    Authenticated,
    /// Needs all these privileges.
    Need(Vec<(Resource, Action)>),
}

/// Static facts about a command.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// currentOp's `op` field.
    pub op: &'static str,
    /// Must run against `admin`.
    pub admin_only: bool,
    /// Only with `enable_test_commands`.
    pub test_only: bool,
    /// Accepts a collection name as its first value (for `ns`).
    pub has_coll: bool,
}

const fn s(op: &'static str, admin_only: bool, has_coll: bool) -> Spec {
    Spec { op, admin_only, test_only: false, has_coll }
}

/// The command table.
pub fn spec(name: &str) -> Option<Spec> {
    Some(match name {
        "hello"
        | "isMaster"
        | "ismaster"
        | "buildInfo"
        | "buildinfo"
        | "ping"
        | "whatsmyuri"
        | "connectionStatus"
        | "saslStart"
        | "saslContinue"
        | "logout"
        | "listCommands"
        | "endSessions"
        | "refreshSessions"
        | "killSessions"
        | "getFreeMonitoringStatus"
        | "createUser"
        | "updateUser"
        | "dropUser"
        | "usersInfo"
        | "grantRolesToUser"
        | "revokeRolesFromUser"
        | "dropAllUsersFromDatabase"
        | "dbStats"
        | "listCollections"
        | "dropDatabase"
        | "features"
        | "getLastError"
        | "getnonce"
        | "lockInfo" => s("command", false, false),
        "getParameter"
        | "getCmdLineOpts"
        | "serverStatus"
        | "hostInfo"
        | "getLog"
        | "currentOp"
        | "killOp"
        | "killAllSessions"
        | "killAllSessionsByPattern"
        | "listDatabases"
        | "renameCollection"
        | "shutdown"
        | "setParameter"
        | "getDefaultRWConcern"
        | "replSetGetStatus" => s("command", true, false),
        "insert" => s("insert", false, true),
        "update" => s("update", false, true),
        "delete" => s("remove", false, true),
        "find" => s("query", false, true),
        "getMore" => s("getmore", false, false),
        "killCursors" => s("killcursors", false, true),
        "findAndModify" | "findandmodify" | "count" | "distinct" | "aggregate" | "create" | "drop"
        | "createIndexes" | "listIndexes" | "dropIndexes" | "deleteIndexes" | "collStats" | "explain"
        | "validate" => s("command", false, true),
        "sleep" => Spec { op: "command", admin_only: false, test_only: true, has_coll: false },
        _ => return None,
    })
}

fn db_res(db: &str) -> Resource {
    Resource::Db(db.to_owned())
}

/// Privileges a command needs on `db`.
pub fn authz(name: &str, db: &str, cmd: &Document) -> Authz {
    use Action::*;
    let on_db = |actions: &[Action]| Authz::Need(actions.iter().map(|a| (db_res(db), *a)).collect());
    let cluster = |a: Action| Authz::Need(vec![(Resource::Cluster, a)]);
    match name {
        "hello" | "isMaster" | "ismaster" | "buildInfo" | "buildinfo" | "ping" | "whatsmyuri"
        | "saslStart" | "saslContinue" | "logout" | "connectionStatus" | "listCommands" | "endSessions"
        | "getnonce" => Authz::Public,
        "refreshSessions"
        | "killSessions"
        | "currentOp"
        | "killOp"
        | "killAllSessions"
        | "killAllSessionsByPattern"
        | "getMore"
        | "killCursors"
        | "usersInfo"
        | "sleep"
        | "getFreeMonitoringStatus"
        | "features"
        | "getLastError"
        | "getDefaultRWConcern"
        | "lockInfo"
        | "explain"
        | "updateUser" => Authz::Authenticated,
        "insert" => on_db(&[Insert]),
        "update" => on_db(&[Update]),
        "delete" => on_db(&[Remove]),
        "find" | "count" | "distinct" => on_db(&[Find]),
        "aggregate" => {
            let writes = cmd.get_array("pipeline").ok().is_some_and(|p| {
                p.iter().any(
                    |s| matches!(s, Bson::Document(d) if d.contains_key("$out") || d.contains_key("$merge")),
                )
            });
            if writes { on_db(&[Find, Insert, Remove]) } else { on_db(&[Find]) }
        }
        "findAndModify" | "findandmodify" => on_db(&[Find, Update, Remove]),
        "create" => on_db(&[CreateCollection]),
        "drop" => on_db(&[DropCollection]),
        "createIndexes" => on_db(&[CreateIndex]),
        "dropIndexes" | "deleteIndexes" => on_db(&[DropIndex]),
        "listIndexes" => on_db(&[ListIndexes]),
        "listCollections" => on_db(&[ListCollections]),
        "collStats" | "validate" => on_db(&[CollStats]),
        "dbStats" => on_db(&[DbStats]),
        "dropDatabase" => on_db(&[DropDatabase]),
        "renameCollection" => {
            let to_db = cmd.get_str("to").ok().and_then(|t| t.split_once('.')).map(|(d, _)| d.to_owned());
            let from_db = cmd
                .get_str("renameCollection")
                .ok()
                .and_then(|t| t.split_once('.'))
                .map(|(d, _)| d.to_owned());
            let mut need = Vec::new();
            for d in [from_db, to_db].into_iter().flatten() {
                need.push((db_res(&d), RenameCollectionSameDb));
                need.push((db_res(&d), Find));
                need.push((db_res(&d), Insert));
            }
            if need.is_empty() { cluster(ListDatabases) } else { Authz::Need(need) }
        }
        "listDatabases" => Authz::Authenticated,
        "createUser"
        | "dropUser"
        | "grantRolesToUser"
        | "revokeRolesFromUser"
        | "dropAllUsersFromDatabase" => on_db(&[UserAdmin]),
        "getParameter" | "setParameter" => cluster(GetParameter),
        "getCmdLineOpts" => cluster(GetCmdLineOpts),
        "serverStatus" | "replSetGetStatus" => cluster(ServerStatus),
        "hostInfo" => cluster(HostInfo),
        "getLog" => cluster(GetLog),
        "shutdown" => cluster(Shutdown),
        _ => Authz::Need(vec![(Resource::Cluster, Shutdown)]),
    }
}

/// Everything a handler gets.
pub struct Ctx<'a> {
    pub state: &'a Arc<NodeState>,
    pub conn: &'a mut ConnCtx,
    pub op: Arc<OpEntry>,
    pub db: String,
}

impl Ctx<'_> {
    /// Runs engine work on a blocking thread with this op's interrupt; panics become InternalError.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, CommandError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine, &OpInterrupt) -> Result<T, CommandError> + Send + 'static,
    {
        let intr = self.op.interrupt();
        if let Some(e) = intr.0.error() {
            return Err(e);
        }
        let engine = self.state.engine.clone();
        match tokio::task::spawn_blocking(move || f(&engine, &intr)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "engine task failed");
                Err(CommandError::new(1, "InternalError", "internal error executing the operation"))
            }
        }
    }

    /// Authenticated users of this connection.
    pub fn users(&self) -> Vec<UserName> {
        self.conn.info.users()
    }

    /// Whether the connection's users hold `action` on `resource` (always true without auth).
    pub fn has(&self, resource: &Resource, action: Action) -> bool {
        !self.state.auth_enabled() || roles_grant(&self.conn.info.roles(), resource, action)
    }

    /// Whether the connection holds a cluster action.
    pub fn has_cluster(&self, action: Action) -> bool {
        self.has(&Resource::Cluster, action)
    }

    /// Roles of the connection's users.
    pub fn roles(&self) -> Vec<RoleRef> {
        self.conn.info.roles()
    }
}

/// Largest `command` document currentOp shows in full (mongod truncates above about 1 KB).
pub const MAX_CURRENT_OP_COMMAND: usize = 1024;

/// The command as currentOp shows it: itself, or `{$truncated: "<prefix>", comment?}` when large.
pub fn truncate_command(cmd: &Document) -> Document {
    let size = bson::to_vec(cmd).map(|v| v.len()).unwrap_or(usize::MAX);
    if size <= MAX_CURRENT_OP_COMMAND {
        return cmd.clone();
    }
    let mut d = doc! {"$truncated": summarize(cmd, MAX_CURRENT_OP_COMMAND)};
    if let Some(c) = cmd.get("comment") {
        d.insert("comment", c.clone());
    }
    d
}

fn parse_max_time(cmd: &Document) -> Result<Option<Instant>, CommandError> {
    match cmd.get("maxTimeMS") {
        None | Some(Bson::Null) => Ok(None),
        Some(b) => {
            let n = util::as_i64(b).ok_or_else(|| CommandError::bad_value("maxTimeMS must be a number"))?;
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                return Err(CommandError::bad_value(format!(
                    "{n} value for maxTimeMS is out of range [0, 2147483647]"
                )));
            }
            Ok(if n == 0 { None } else { Some(Instant::now() + Duration::from_millis(n as u64)) })
        }
    }
}

/// mongod's checks of a command's transaction fields (`txnNumber`, `autocommit`,
/// `startTransaction`; `initializeOperationSessionInfo` in mongod), as a standalone mongod applies
/// them before authorization. The node is a standalone without transactions or retryable writes
/// (its `hello` has no `setName`, so drivers never send these fields on their own): a command
/// carrying `txnNumber` is refused with 20 IllegalOperation, never run as if the field were absent,
/// and the fields' types and combinations are checked the way mongod checks them first.
/// `requires_auth` is false for the commands anyone may run (handshake, auth, ping).
pub fn check_session_info(cmd: &Document, requires_auth: bool) -> Result<(), CommandError> {
    fn typed<'a>(cmd: &'a Document, key: &str, want: &str) -> Result<Option<&'a Bson>, CommandError> {
        match cmd.get(key) {
            None => Ok(None),
            Some(v @ Bson::Int64(_)) if want == "long" => Ok(Some(v)),
            Some(v @ Bson::Boolean(_)) if want == "bool" => Ok(Some(v)),
            Some(other) => Err(CommandError::type_mismatch(format!(
                "BSON field 'OperationSessionInfo.{key}' is the wrong type '{}', expected type '{want}'",
                util::type_name(other)
            ))),
        }
    }
    let txn_number = typed(cmd, "txnNumber", "long")?;
    let autocommit = typed(cmd, "autocommit", "bool")?;
    let start_transaction = typed(cmd, "startTransaction", "bool")?;
    if !requires_auth {
        if autocommit.is_some() {
            return Err(CommandError::new(
                263,
                "OperationNotSupportedInTransaction",
                "This command is not supported in transactions",
            ));
        }
        if txn_number.is_some() {
            return Err(CommandError::location(
                50889,
                "It is illegal to provide a txnNumber for this command",
            ));
        }
    }
    if txn_number.is_some() {
        if !cmd.contains_key("lsid") {
            return Err(CommandError::invalid_options(
                "Transaction number requires a session ID to also be specified",
            ));
        }
        return Err(CommandError::illegal_operation(
            "Transaction numbers are only allowed on a replica set member or mongos",
        ));
    }
    if autocommit.is_some() {
        return Err(CommandError::invalid_options(
            "'autocommit' field requires a transaction number to also be specified",
        ));
    }
    if start_transaction.is_some() {
        return Err(CommandError::invalid_options(
            "'startTransaction' field requires 'autocommit' field to also be specified",
        ));
    }
    Ok(())
}

/// mongod's localhost exception: while no user exists at all, an unauthenticated connection from a
/// loopback address may run `createUser` in `admin` (to create the first user). It closes as soon
/// as any user exists.
fn localhost_exception(state: &NodeState, conn: &ConnCtx, name: &str, db: &str) -> bool {
    name == "createUser"
        && db == "admin"
        && conn.info.client.ip().to_canonical().is_loopback()
        && conn.info.auth.lock().is_empty()
        && state.users.is_empty()
}

/// Executes one command document and returns the reply (never panics on input).
/// `legacy_db` is the database of an OP_QUERY `<db>.$cmd`; OP_MSG commands carry `$db`.
pub async fn dispatch(
    state: &Arc<NodeState>,
    conn: &mut ConnCtx,
    cmd: Document,
    legacy_db: Option<String>,
) -> Document {
    conn.info.busy.store(true, std::sync::atomic::Ordering::Relaxed);
    let reply = match dispatch_inner(state, conn, cmd, legacy_db).await {
        Ok(d) => finish_ok(d),
        Err(e) => error_doc(&e),
    };
    conn.info.busy.store(false, std::sync::atomic::Ordering::Relaxed);
    reply
}

/// Decodes `bytes` as one command document exactly as the connection loop does (structure and
/// nesting depth are checked before the document is built, see `docplane_wire::read_document`)
/// and dispatches it. `None` when the bytes are not one valid BSON document (the connection loop
/// would close the connection). The entry point of the command fuzz target and of the in-process
/// property tests: no socket is involved.
pub async fn dispatch_bytes(
    state: &Arc<NodeState>,
    conn: &mut ConnCtx,
    bytes: &[u8],
    legacy_db: Option<String>,
) -> Option<Document> {
    let (cmd, used) = docplane_wire::read_document(bytes).ok()?;
    if used != bytes.len() {
        return None;
    }
    Some(dispatch(state, conn, cmd, legacy_db).await)
}

async fn dispatch_inner(
    state: &Arc<NodeState>,
    conn: &mut ConnCtx,
    cmd: Document,
    legacy_db: Option<String>,
) -> CmdResult {
    let Some(name) = cmd.keys().next().cloned() else {
        return Err(command_not_found(""));
    };
    let db = match (cmd.get("$db"), legacy_db) {
        (Some(Bson::String(d)), _) => d.clone(),
        (Some(_), _) => return Err(CommandError::type_mismatch("$db must be a string")),
        (None, Some(d)) => d,
        (None, None) => {
            return Err(CommandError::location(40571, "OP_MSG requests require a $db argument"));
        }
    };
    util::check_db_name(&db)?;
    let spec = match spec(&name) {
        Some(s) if !s.test_only || state.config.enable_test_commands => s,
        _ => return Err(command_not_found(&name)),
    };
    if spec.admin_only && db != "admin" {
        return Err(CommandError::unauthorized(format!(
            "{name} may only be run against the admin database."
        )));
    }
    check_session_info(&cmd, !matches!(authz(&name, &db, &cmd), Authz::Public))?;
    if state.auth_enabled() {
        match authz(&name, &db, &cmd) {
            Authz::Public => {}
            _ if localhost_exception(state, conn, &name, &db) => {
                tracing::warn!(conn = conn.info.id, client = %conn.info.client, "createUser allowed by the localhost exception: no user exists yet");
            }
            need => {
                if conn.info.auth.lock().is_empty() {
                    return Err(CommandError::unauthorized(format!(
                        "Command {name} requires authentication"
                    )));
                }
                if let Authz::Need(privs) = need {
                    let roles = conn.info.roles();
                    if !privs.iter().all(|(r, a)| roles_grant(&roles, r, *a)) {
                        return Err(CommandError::unauthorized(format!(
                            "not authorized on {db} to execute command {}",
                            summarize(&redact_command(&cmd), 512)
                        )));
                    }
                }
            }
        }
    }
    let deadline = parse_max_time(&cmd)?;
    let users = conn.info.users();
    let (session, lsid) = match cmd.get("lsid") {
        Some(l) => {
            let (k, d) = state.sessions.touch(l, &users, &conn.info)?;
            (Some(k), Some(d))
        }
        None => (None, None),
    };
    let ns = match (&name[..], cmd.get(&name)) {
        ("getMore", _) => format!("{db}.{}", cmd.get_str("collection").unwrap_or("$cmd")),
        ("aggregate", Some(Bson::String(c))) => format!("{db}.{c}"),
        ("aggregate", _) => format!("{db}.$cmd.aggregate"),
        (_, Some(Bson::String(c))) if spec.has_coll => format!("{db}.{c}"),
        _ => format!("{db}.$cmd"),
    };
    let guard = state.ops.register(NewOp {
        conn: conn.info.clone(),
        users,
        lsid,
        session,
        op: spec.op,
        ns,
        // currentOp shows the command: never with a password or SASL payload in it.
        command: if needs_redaction(&cmd) {
            truncate_command(&redact_command(&cmd))
        } else {
            truncate_command(&cmd)
        },
        command_name: name.clone(),
        deadline,
    })?;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        guard.entry.state.kill(crate::ops::KILL_SHUTDOWN);
    }
    state.opcounters.bump(spec.op, 1);
    let mut ctx = Ctx { state, conn, op: guard.entry.clone(), db };
    let result = run(&mut ctx, &name, &cmd).await;
    drop(guard);
    result
}

async fn run(ctx: &mut Ctx<'_>, name: &str, cmd: &Document) -> CmdResult {
    match name {
        "hello" | "isMaster" | "ismaster" => admin::hello(ctx, cmd, name).await,
        "buildInfo" | "buildinfo" => Ok(admin::build_info()),
        "ping" => Ok(doc! {}),
        "whatsmyuri" => Ok(doc! {"you": ctx.conn.info.client.to_string()}),
        "getParameter" => admin::get_parameter(ctx, cmd),
        "setParameter" => Err(CommandError::new(
            115,
            "CommandNotSupported",
            "setParameter is not supported by docplane's node",
        )),
        "getCmdLineOpts" => Ok(admin::get_cmd_line_opts(ctx)),
        "connectionStatus" => admin::connection_status(ctx, cmd),
        "serverStatus" => Ok(admin::server_status(ctx)),
        "hostInfo" => Ok(admin::host_info(ctx)),
        "listCommands" => Ok(admin::list_commands()),
        "getLog" => admin::get_log(ctx, cmd),
        "getFreeMonitoringStatus" => {
            Ok(doc! {"state": "disabled", "message": "", "url": "", "userReminder": ""})
        }
        "features" => Ok(doc! {"oidMachine": 0, "js": false}),
        "getLastError" => Ok(doc! {"err": Bson::Null, "n": 0}),
        "getnonce" => Ok(doc! {"nonce": format!("{:016x}", rand::random::<u64>())}),
        "lockInfo" => Ok(doc! {"lockInfo": []}),
        "getDefaultRWConcern" => Ok(
            doc! {"defaultReadConcern": {"level": "local"}, "defaultWriteConcern": {"w": 1, "wtimeout": 0}, "defaultReadConcernSource": "implicit", "defaultWriteConcernSource": "implicit"},
        ),
        "replSetGetStatus" => {
            Err(CommandError::new(76, "NoReplicationEnabled", "not running with --replSet"))
        }
        "shutdown" => Err(CommandError::new(
            115,
            "CommandNotSupported",
            "shutdown is not available over the wire; stop the docplane process",
        )),
        "sleep" => admin::sleep(ctx, cmd).await,
        "saslStart" => authcmd::sasl_start(ctx, cmd),
        "saslContinue" => authcmd::sasl_continue(ctx, cmd),
        "logout" => {
            ctx.conn.info.auth.lock().clear();
            Ok(doc! {})
        }
        "createUser" => authcmd::create_user(ctx, cmd).await,
        "updateUser" => authcmd::update_user(ctx, cmd).await,
        "dropUser" => authcmd::drop_user(ctx, cmd),
        "dropAllUsersFromDatabase" => authcmd::drop_all_users(ctx),
        "usersInfo" => authcmd::users_info(ctx, cmd),
        "grantRolesToUser" => authcmd::grant_roles(ctx, cmd, true),
        "revokeRolesFromUser" => authcmd::grant_roles(ctx, cmd, false),
        "currentOp" => currentop::current_op_command(ctx, cmd).await,
        "killOp" => currentop::kill_op(ctx, cmd),
        "endSessions" => sessioncmd::end_sessions(ctx, cmd),
        "refreshSessions" => sessioncmd::refresh_sessions(ctx, cmd),
        "killSessions" => sessioncmd::kill_sessions(ctx, cmd),
        "killAllSessions" => sessioncmd::kill_all_sessions(ctx, cmd),
        "killAllSessionsByPattern" => sessioncmd::kill_all_sessions_by_pattern(ctx, cmd),
        _ => crud::run(ctx, name, cmd).await,
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn lsid() -> Bson {
        Bson::Document(
            doc! {"id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![7; 16] }},
        )
    }

    fn refusal(cmd: Document, requires_auth: bool) -> (i32, String) {
        let e = check_session_info(&cmd, requires_auth).unwrap_err();
        (e.code, e.message)
    }

    #[test]
    fn transaction_fields_are_refused_as_a_standalone_mongod_refuses_them() {
        let l = lsid();
        // Accepted: no transaction field at all, with or without a session.
        check_session_info(&doc! {"find": "c"}, true).unwrap();
        check_session_info(&doc! {"find": "c", "lsid": l.clone()}, true).unwrap();
        check_session_info(&doc! {"ping": 1, "lsid": l.clone()}, false).unwrap();
        // The IllegalOperation a standalone answers any txnNumber with (retryable write or
        // transaction), after the session check.
        let illegal =
            (20, "Transaction numbers are only allowed on a replica set member or mongos".to_owned());
        assert_eq!(refusal(doc! {"insert": "c", "lsid": l.clone(), "txnNumber": 1_i64}, true), illegal);
        assert_eq!(
            refusal(
                doc! {"find": "c", "lsid": l.clone(), "txnNumber": 0_i64, "autocommit": false, "startTransaction": true},
                true
            ),
            illegal
        );
        assert_eq!(
            refusal(doc! {"insert": "c", "txnNumber": 1_i64}, true),
            (72, "Transaction number requires a session ID to also be specified".to_owned())
        );
        assert_eq!(
            refusal(doc! {"insert": "c", "lsid": l.clone(), "autocommit": false}, true),
            (72, "'autocommit' field requires a transaction number to also be specified".to_owned())
        );
        assert_eq!(
            refusal(doc! {"insert": "c", "lsid": l.clone(), "startTransaction": true}, true),
            (72, "'startTransaction' field requires 'autocommit' field to also be specified".to_owned())
        );
        // Types first (the IDL parse), whatever else is wrong.
        assert_eq!(
            refusal(doc! {"insert": "c", "txnNumber": 1_i32}, true),
            (
                14,
                "BSON field 'OperationSessionInfo.txnNumber' is the wrong type 'int', expected type 'long'"
                    .to_owned()
            )
        );
        assert_eq!(refusal(doc! {"insert": "c", "autocommit": 0}, true).0, 14);
        assert_eq!(refusal(doc! {"insert": "c", "startTransaction": "yes"}, true).0, 14);
        // Commands that need no authentication refuse them with their own codes.
        assert_eq!(refusal(doc! {"ping": 1, "lsid": l.clone(), "autocommit": false}, false).0, 263);
        assert_eq!(refusal(doc! {"ping": 1, "lsid": l, "txnNumber": 1_i64}, false).0, 50889);
    }
}
