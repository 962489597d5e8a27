//! Command dispatch: lookup in the command table ([`table`]), authentication and authorization
//! ([`authorize`], the table's privileges checked with [`crate::auth::is_authorized`]), op
//! registration (with `maxTimeMS` and `lsid`), the handler, and the reply.
//!
//! Invariants: every command that passes lookup runs as a registered op (so `currentOp` sees it and
//! `killOp` can kill it); handlers never panic on input, they return `CommandError`; engine work runs on
//! `spawn_blocking` via [`Ctx::blocking`].

pub mod admin;
pub mod apiversion;
pub mod authcmd;
// `aggregate` runs over `too_many_lines`; its split waits for the collation work in progress in
// crud.rs. Module-wide so that file stays untouched here; remove once `aggregate` is split (the
// `expect` then fails the build, as a reminder).
#[expect(clippy::too_many_lines, reason = "split pending: collation work in progress on this file")]
pub mod crud;
pub mod currentop;
pub mod findopts;
pub mod minmax;
pub mod options;
pub mod out_merge;
pub mod rulescmd;
pub mod sessioncmd;
pub mod table;
pub mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use docplane_engine::Engine;
use docplane_query::CommandError;

use crate::auth::{Action, Resource, RoleRef, UserName, is_authorized};
use crate::conn::ConnCtx;
use crate::ops::{NewOp, OpEntry, OpInterrupt};
use crate::redact::{needs_redaction, redact_command};
use crate::reply::{command_not_found, error_doc, finish_ok, summarize};
use crate::state::NodeState;

/// Result of a handler.
pub type CmdResult = Result<Document, CommandError>;

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
        let state = self.op.state.clone();
        let engine = self.state.engine.clone();
        // The op's interrupt is this thread's for the query crate's fine-grained polls
        // (expressions, matching, sorts); an interruption a poll saw fails the whole work.
        let work = move || {
            let scope: std::sync::Arc<dyn docplane_query::Interrupt + Send + Sync> =
                std::sync::Arc::new(intr.clone());
            match docplane_query::interrupt::scoped(scope, || f(&engine, &intr)) {
                (_, Some(e)) => Err(e),
                (r, None) => r,
            }
        };
        match tokio::task::spawn_blocking(work).await {
            // A kill-op rule refused the op when its plan summary was set (inside `f`): whatever
            // `f` made of the failed checks (write errors, an empty result), it fails whole.
            Ok(Ok(v)) => match state.refused() {
                Some(e) => Err(e),
                None => Ok(v),
            },
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "engine task failed");
                Err(CommandError::new(1, "InternalError", "internal error executing the operation"))
            }
        }
    }

    /// [`Ctx::blocking`] under the collation a command (or its collection) asks for: `req`
    /// resolved against `db.coll`'s default collation on the blocking thread, and installed
    /// there for the query crate's comparisons.
    pub async fn blocking_in<T, F>(
        &self,
        ns: (String, Option<String>),
        req: docplane_query::collation::Requested,
        f: F,
    ) -> Result<T, CommandError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine, &OpInterrupt) -> Result<T, CommandError> + Send + 'static,
    {
        self.blocking(move |e, intr| {
            let default = ns.1.as_deref().and_then(|c| e.default_collation(&ns.0, c));
            docplane_query::collation::scoped(req.resolve(default.as_ref()), || f(e, intr))
        })
        .await
    }

    /// Authenticated users of this connection.
    pub fn users(&self) -> Vec<UserName> {
        self.conn.info.users()
    }

    /// Whether the connection's users hold `action` on `resource` (always true without auth).
    pub fn has(&self, resource: &Resource, action: Action) -> bool {
        Ctx::holds(self.state, self.conn, resource, action)
    }

    /// [`Ctx::has`] before a context exists.
    fn holds(state: &NodeState, conn: &ConnCtx, resource: &Resource, action: Action) -> bool {
        !state.auth_enabled() || is_authorized(&conn.info.roles(), resource, action)
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

/// Largest `command` a `truncateOps: true` reader (the `currentOp` command) sees whole, in bytes of
/// BSON; mongod's `CurOp` uses 1000.
pub const MAX_CURRENT_OP_COMMAND: usize = 1000;

/// mongod's truncated form of a command over [`MAX_CURRENT_OP_COMMAND`] bytes:
/// `{$truncated: "<its shell form, cut at 1000 characters, the last three '...'>", comment?}`;
/// `None` when it is small enough to be shown whole.
pub fn truncated_command(cmd: &Document) -> Option<Document> {
    let size = bson::to_vec(cmd).map(|v| v.len()).unwrap_or(usize::MAX);
    if size <= MAX_CURRENT_OP_COMMAND {
        return None;
    }
    let mut text = crate::reply::shell_form(cmd, MAX_CURRENT_OP_COMMAND + 4);
    if text.len() > MAX_CURRENT_OP_COMMAND {
        let mut end = MAX_CURRENT_OP_COMMAND - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    let mut d = doc! {"$truncated": text};
    if let Some(c) = cmd.get("comment") {
        d.insert("comment", c.clone());
    }
    Some(d)
}

/// `d` in whole microseconds, saturating: the unit of the node's timing events
/// (`docplane_node::command`, `docplane_node::current_op`).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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

/// The op's `maxTimeMS` deadline. An awaitData cursor's getMore takes maxTimeMS as how long to
/// wait for new data (mongod's getMore), not as a deadline: the handler waits that long at most.
/// Any other getMore without its own maxTimeMS runs under what its cursor's command left.
fn op_deadline(
    state: &NodeState,
    spec: &table::Command,
    cmd: &Document,
) -> Result<Option<Instant>, CommandError> {
    let deadline = parse_max_time(cmd)?;
    if spec.handler != table::Handler::GetMore {
        return Ok(deadline);
    }
    let Some(id) = cmd.get("getMore").and_then(util::as_i64) else { return Ok(deadline) };
    if state.cursors.is_await_data(id) {
        return Ok(None);
    }
    Ok(deadline.or_else(|| state.cursors.max_time_left(id).map(|left| Instant::now() + left)))
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
fn localhost_exception(state: &NodeState, conn: &ConnCtx, spec: &table::Command, db: &str) -> bool {
    spec.handler == table::Handler::CreateUser
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
    let started = std::time::Instant::now();
    // The command's name, for the debug event below; taken only when someone listens.
    let name = tracing::enabled!(target: "docplane_node::command", tracing::Level::DEBUG)
        .then(|| cmd.keys().next().cloned().unwrap_or_default());
    let result = dispatch_inner(state, conn, cmd, legacy_db).await;
    if let Some(name) = name {
        tracing::debug!(
            target: "docplane_node::command",
            conn = conn.info.id,
            command = %name,
            micros = micros(started.elapsed()),
            code = result.as_ref().err().map_or(0, |e| e.code),
        );
    }
    let reply = match result {
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
    let spec = match table::lookup(&name) {
        Some(s) if s.available_on(&state.config) => s,
        _ => return Err(command_not_found(&name)),
    };
    if spec.admin_only && db != "admin" {
        return Err(CommandError::unauthorized(format!(
            "{name} may only be run against the admin database."
        )));
    }
    apiversion::check(spec, &cmd)?;
    check_session_info(&cmd, spec.requires_auth())?;
    if state.auth_enabled() && spec.requires_auth() {
        if localhost_exception(state, conn, spec, &db) {
            tracing::warn!(conn = conn.info.id, client = %conn.info.client, "createUser allowed by the localhost exception: no user exists yet");
        } else {
            authorize(conn, spec, &db, &cmd)?;
        }
    }
    let deadline = op_deadline(state, spec, &cmd)?;
    let wc = crate::writeconcern::parse(&name, &cmd, state.engine.is_durable())?;
    crate::readconcern::check(&cmd)?;
    let users = conn.info.users();
    let (session, lsid) = match cmd.get("lsid") {
        Some(l) => {
            // Naming a uid other than one's own needs impersonate (mongod's `makeLogicalSessionId`).
            if let (_, Some(uid)) = crate::sessions::lsid_parts(l)?
                && uid != crate::sessions::session_uid(&users)
                && !(Ctx::holds(state, conn, &Resource::Cluster, Action::Impersonate))
            {
                return Err(CommandError::unauthorized(
                    "Unauthorized to set user digest in LogicalSessionId",
                ));
            }
            let (k, d) = state.sessions.touch(l, &users, &conn.info)?;
            (Some(k), Some(d))
        }
        None => (None, None),
    };
    // Shared with the op registry: currentOp shows the command without copying it.
    let cmd = Arc::new(cmd);
    let ns = match (spec.handler, cmd.get(&name)) {
        (table::Handler::GetMore, _) => format!("{db}.{}", cmd.get_str("collection").unwrap_or("$cmd")),
        (table::Handler::Aggregate, Some(Bson::String(c))) => format!("{db}.{c}"),
        (table::Handler::Aggregate, _) => format!("{db}.$cmd.aggregate"),
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
        command: if needs_redaction(&cmd) { Arc::new(redact_command(&cmd)) } else { cmd.clone() },
        command_name: name.clone(),
        deadline,
    })?;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        guard.entry.state.kill(crate::ops::KILL_SHUTDOWN);
    }
    state.opcounters.bump(spec.op, 1);
    // mongod's execCommandDatabase checks for an interrupt before the command runs: a deadline
    // already passed (or `maxTimeAlwaysTimeOut`) fails even `ping`. getMore checks in its
    // handler, which also destroys the cursor, as mongod does.
    if spec.handler != table::Handler::GetMore
        && guard.entry.state.deadline_expired()
        && let Some(e) = guard.entry.state.error()
    {
        return Err(e);
    }
    let mut ctx = Ctx { state, conn, op: guard.entry.clone(), db };
    let result = match crate::failpoint::before_command(&mut ctx, &name).await {
        Ok(()) => run(&mut ctx, spec.handler, &name, &cmd).await,
        Err(e) => Err(e),
    };
    if let (Ok(reply), Some(d)) = (&result, deadline) {
        keep_max_time_left(state, reply, d);
    }
    let result = crate::failpoint::after_command(&mut ctx, &name, &cmd, wc, result).await;
    drop(guard);
    result
}

/// A command that ran under a deadline and left a cursor open leaves it what remains of the
/// deadline, for the getMores to run under (mongod's `setLeftoverMaxTimeMicros`).
fn keep_max_time_left(state: &NodeState, reply: &Document, deadline: Instant) {
    let id = match reply.get_document("cursor").map(|c| c.get("id")) {
        Ok(Some(Bson::Int64(id))) if *id != 0 => *id,
        _ => return,
    };
    state.cursors.set_max_time_left(id, Some(deadline.saturating_duration_since(Instant::now())));
}

/// Refuses the command unless the connection is authenticated and holds every privilege it needs.
pub fn authorize(
    conn: &ConnCtx,
    spec: &table::Command,
    db: &str,
    cmd: &Document,
) -> Result<(), CommandError> {
    let users = conn.info.users();
    if users.is_empty() {
        return Err(CommandError::unauthorized(format!("Command {} requires authentication", spec.name)));
    }
    let needs = spec.needs(&table::Request { db, cmd, users: &users })?;
    let roles = conn.info.roles();
    if !needs.iter().all(|n| n.0.iter().any(|(r, a)| is_authorized(&roles, r, *a))) {
        return Err(CommandError::unauthorized(format!(
            "not authorized on {db} to execute command {}",
            summarize(&redact_command(cmd), 512)
        )));
    }
    Ok(())
}

/// The one place a handler is chosen (the table names the commands).
async fn run(ctx: &mut Ctx<'_>, handler: table::Handler, name: &str, cmd: &Document) -> CmdResult {
    use table::Handler as H;
    match handler {
        H::Hello => admin::hello(ctx, cmd, name).await,
        H::BuildInfo => Ok(admin::build_info()),
        H::Ping => Ok(doc! {}),
        H::WhatsMyUri => Ok(doc! {"you": ctx.conn.info.client.to_string()}),
        H::GetParameter => admin::get_parameter(ctx, cmd),
        H::SetParameter => Err(CommandError::new(
            115,
            "CommandNotSupported",
            "setParameter is not supported by docplane's node",
        )),
        H::GetCmdLineOpts => Ok(admin::get_cmd_line_opts(ctx)),
        H::ConnectionStatus => admin::connection_status(ctx, cmd),
        H::ServerStatus => Ok(admin::server_status(ctx)),
        H::HostInfo => Ok(admin::host_info(ctx)),
        H::ListCommands => Ok(admin::list_commands(&ctx.state.config)),
        H::GetLog => admin::get_log(ctx, cmd),
        H::GetFreeMonitoringStatus => {
            Ok(doc! {"state": "disabled", "message": "", "url": "", "userReminder": ""})
        }
        H::Features => Ok(doc! {"oidMachine": 0, "js": false}),
        H::GetLastError => crate::writeconcern::get_last_error(ctx.state, cmd).await,
        H::GetNonce => Ok(doc! {"nonce": format!("{:016x}", rand::random::<u64>())}),
        H::LockInfo => Ok(doc! {"lockInfo": []}),
        H::GetDefaultRwConcern => Ok(
            doc! {"defaultReadConcern": {"level": "local"}, "defaultWriteConcern": {"w": 1, "wtimeout": 0}, "defaultReadConcernSource": "implicit", "defaultWriteConcernSource": "implicit"},
        ),
        H::ReplSetGetStatus => {
            Err(CommandError::new(76, "NoReplicationEnabled", "not running with --replSet"))
        }
        H::Shutdown => Err(CommandError::new(
            115,
            "CommandNotSupported",
            "shutdown is not available over the wire; stop the docplane process",
        )),
        H::Sleep => admin::sleep(ctx, cmd).await,
        H::ConfigureFailPoint => crate::failpoint::configure(ctx, cmd),
        H::TestApiVersion => Ok(doc! {}),
        H::SaslStart => authcmd::sasl_start(ctx, cmd),
        H::SaslContinue => authcmd::sasl_continue(ctx, cmd),
        H::Logout => {
            ctx.conn.info.auth.lock().clear();
            Ok(doc! {})
        }
        H::CreateUser => authcmd::create_user(ctx, cmd).await,
        H::UpdateUser => authcmd::update_user(ctx, cmd).await,
        H::DropUser => authcmd::drop_user(ctx, cmd),
        H::DropAllUsersFromDatabase => authcmd::drop_all_users(ctx),
        H::UsersInfo => authcmd::users_info(ctx, cmd),
        H::GrantRolesToUser => authcmd::grant_roles(ctx, cmd, true),
        H::RevokeRolesFromUser => authcmd::grant_roles(ctx, cmd, false),
        H::CurrentOp => currentop::current_op_command(ctx, cmd).await,
        H::KillOp => currentop::kill_op(ctx, cmd),
        H::DocplaneKillOpRules => rulescmd::kill_op_rules(ctx, cmd),
        H::StartSession => sessioncmd::start_session(ctx),
        H::EndSessions => sessioncmd::end_sessions(ctx, cmd),
        H::RefreshSessions => sessioncmd::refresh_sessions(ctx, cmd),
        H::KillSessions => sessioncmd::kill_sessions(ctx, cmd),
        H::KillAllSessions => sessioncmd::kill_all_sessions(ctx, cmd),
        H::KillAllSessionsByPattern => sessioncmd::kill_all_sessions_by_pattern(ctx, cmd),
        H::Find => crud::find(ctx, cmd).await,
        H::GetMore => crud::get_more(ctx, cmd).await,
        H::KillCursors => crud::kill_cursors(ctx, cmd),
        H::Insert => crud::insert(ctx, cmd).await,
        H::Update => crud::update(ctx, cmd).await,
        H::Delete => crud::delete(ctx, cmd).await,
        H::FindAndModify => crud::find_and_modify(ctx, cmd, name).await,
        H::Count => crud::count(ctx, cmd).await,
        H::Distinct => crud::distinct(ctx, cmd).await,
        H::Aggregate => crud::aggregate(ctx, cmd).await,
        H::Create => crud::create(ctx, cmd).await,
        H::Drop => crud::drop_coll(ctx, cmd).await,
        H::CollMod => crud::coll_mod(ctx, cmd).await,
        H::ListCollections => crud::list_collections(ctx, cmd).await,
        H::ListDatabases => crud::list_databases(ctx, cmd).await,
        H::DropDatabase => crud::drop_database(ctx).await,
        H::RenameCollection => crud::rename_collection(ctx, cmd).await,
        H::CreateIndexes => crud::create_indexes(ctx, cmd).await,
        H::ListIndexes => crud::list_indexes(ctx, cmd).await,
        H::DropIndexes => crud::drop_indexes(ctx, cmd, name).await,
        H::CollStats => crud::coll_stats(ctx, cmd).await,
        H::DbStats => crud::db_stats(ctx, cmd).await,
        H::Validate => crud::validate(ctx, cmd).await,
        H::Explain => crud::explain(ctx, cmd).await,
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
