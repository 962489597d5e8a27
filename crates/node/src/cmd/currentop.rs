//! `currentOp`, the `$currentOp` aggregation stage's document source, and `killOp`.
//!
//! Visibility: without the `inprog` privilege a user sees only operations whose effective users equal its
//! own (`$ownOps`); `$currentOp` with `allUsers: true` then fails with 13. Idle connections are reported
//! with `idleConnections` (`$all` for the command), idle sessions (an lsid seen, no op running) with
//! `idleSessions` (`$all` for the command), idle cursors with `idleCursors`.

use std::collections::HashSet;

use bson::{Bson, Document, doc};
use docplane_query::{CommandError, Filter};

use super::{CmdResult, Ctx, util};
use crate::auth::{Action, UserName};
use crate::conn::ConnInfo;
use crate::ops::{KILL_INTERRUPTED, OpEntry};
use crate::state::NodeState;

/// `$currentOp` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentOpOptions {
    pub all_users: bool,
    pub idle_connections: bool,
    pub idle_sessions: bool,
    pub idle_cursors: bool,
    pub local_ops: bool,
}

impl Default for CurrentOpOptions {
    fn default() -> Self {
        CurrentOpOptions {
            all_users: false,
            idle_connections: false,
            idle_sessions: true,
            idle_cursors: false,
            local_ops: false,
        }
    }
}

impl CurrentOpOptions {
    /// Parses the `$currentOp` stage argument.
    pub fn parse(spec: &Bson) -> Result<Self, CommandError> {
        let Bson::Document(d) = spec else {
            return Err(CommandError::failed_to_parse("$currentOp options must be specified in an object"));
        };
        let mut o = CurrentOpOptions::default();
        for (k, v) in d {
            let Bson::Boolean(b) = v else {
                return Err(CommandError::failed_to_parse(format!(
                    "The '{k}' parameter of the $currentOp stage must be a boolean value"
                )));
            };
            match k.as_str() {
                "allUsers" => o.all_users = *b,
                "idleConnections" => o.idle_connections = *b,
                "idleSessions" => o.idle_sessions = *b,
                "idleCursors" => o.idle_cursors = *b,
                "localOps" => o.local_ops = *b,
                "truncateOps" | "backtrace" | "targetAllNodes" => {}
                other => {
                    return Err(CommandError::failed_to_parse(format!(
                        "Unrecognized option '{other}' in $currentOp stage."
                    )));
                }
            }
        }
        Ok(o)
    }
}

fn current_op_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

fn users_doc(users: &[UserName]) -> Vec<Bson> {
    users.iter().map(|u| Bson::Document(u.to_doc())).collect()
}

fn conn_fields(d: &mut Document, host: &str, conn: &ConnInfo) {
    d.insert("host", host);
    d.insert("desc", format!("conn{}", conn.id));
    d.insert("connectionId", i32::try_from(conn.id).unwrap_or(i32::MAX));
    d.insert("client", conn.client.to_string());
    if let Some(app) = conn.app_name() {
        d.insert("appName", app);
    }
    if let Some(meta) = conn.metadata.lock().clone() {
        d.insert("clientMetadata", meta);
    }
}

/// The `$currentOp` document of one active op.
pub fn op_doc(host: &str, op: &OpEntry) -> Document {
    let mut d = doc! {"type": "op"};
    conn_fields(&mut d, host, &op.conn);
    let elapsed = op.elapsed();
    d.insert("active", true);
    d.insert("currentOpTime", current_op_time());
    d.insert("effectiveUsers", users_doc(&op.users));
    d.insert("threaded", true);
    d.insert("opid", op.opid);
    if let Some(l) = &op.lsid {
        d.insert("lsid", l.clone());
    }
    d.insert("secs_running", elapsed.as_secs() as i64);
    d.insert("microsecs_running", i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
    d.insert("op", op.op);
    d.insert("ns", &op.ns);
    d.insert("redacted", false);
    d.insert("command", op.command.clone());
    if let Some(p) = op.plan_summary.lock().clone() {
        d.insert("planSummary", p);
    }
    let cursor_id = op.cursor_id.load(std::sync::atomic::Ordering::Relaxed);
    if cursor_id != 0 {
        d.insert("cursor", doc! {"cursorId": cursor_id});
    }
    d.insert("numYields", op.state.yields() as i64);
    d.insert("locks", Document::new());
    d.insert("waitingForLock", false);
    d.insert("lockStats", Document::new());
    if op.state.killed() {
        d.insert("killPending", true);
    }
    d
}

/// All `$currentOp` documents visible to `viewer` under `opts`.
pub fn current_op_docs(state: &NodeState, viewer: &[UserName], opts: CurrentOpOptions) -> Vec<Document> {
    let host = state.host.as_str();
    let visible = |users: &[UserName]| opts.all_users || users == viewer;
    let ops = state.ops.snapshot();
    let mut out: Vec<Document> = Vec::with_capacity(ops.len());
    let mut busy_conns = HashSet::new();
    let mut busy_sessions = HashSet::new();
    for op in &ops {
        busy_conns.insert(op.conn.id);
        if let Some(s) = &op.session {
            busy_sessions.insert(s.clone());
        }
        if visible(&op.users) {
            out.push(op_doc(host, op));
        }
    }
    if opts.idle_connections {
        let conns: Vec<_> = state.conns.lock().values().cloned().collect();
        for c in conns {
            let users = c.users();
            if busy_conns.contains(&c.id) || !visible(&users) {
                continue;
            }
            let mut d = doc! {"type": "op"};
            conn_fields(&mut d, host, &c);
            d.insert("active", false);
            d.insert("currentOpTime", current_op_time());
            d.insert("effectiveUsers", users_doc(&users));
            out.push(d);
        }
    }
    if opts.idle_sessions {
        for s in state.sessions.snapshot() {
            if busy_sessions.contains(&s.key) || !visible(&s.users) {
                continue;
            }
            let mut d = doc! {"type": "idleSession", "host": host, "desc": "inactive session"};
            if let Some(c) = &s.conn {
                d.insert("connectionId", i32::try_from(c.id).unwrap_or(i32::MAX));
                d.insert("client", c.client.to_string());
                if let Some(app) = c.app_name() {
                    d.insert("appName", app);
                }
            }
            d.insert("active", false);
            d.insert("currentOpTime", current_op_time());
            d.insert("effectiveUsers", users_doc(&s.users));
            d.insert("lsid", s.lsid.clone());
            d.insert("lastUse", s.last_use_wall);
            out.push(d);
        }
    }
    if opts.idle_cursors {
        for (conn_id, users, mut d) in state.cursors.idle_cursor_docs() {
            if !visible(&users) {
                continue;
            }
            d.insert("host", host);
            d.insert("desc", format!("conn{conn_id}"));
            d.insert("connectionId", i32::try_from(conn_id).unwrap_or(i32::MAX));
            d.insert("effectiveUsers", users_doc(&users));
            out.push(d);
        }
    }
    out
}

/// Generic command arguments that are not currentOp predicates.
const GENERIC_ARGS: &[&str] = &[
    "currentOp",
    "$all",
    "$ownOps",
    "$db",
    "lsid",
    "$clusterTime",
    "$readPreference",
    "maxTimeMS",
    "comment",
    "txnNumber",
    "autocommit",
    "startTransaction",
    "readConcern",
    "writeConcern",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "$audit",
    "$client",
    "$queryOptions",
];

/// Splits the currentOp command into (all, ownOps, predicate filter).
pub fn parse_current_op_command(cmd: &Document) -> Result<(bool, bool, Document), CommandError> {
    let all = cmd.get("$all").is_some_and(util::truthy);
    let own = cmd.get("$ownOps").is_some_and(util::truthy);
    let mut filter = Document::new();
    for (k, v) in cmd {
        if !GENERIC_ARGS.contains(&k.as_str()) {
            filter.insert(k.clone(), v.clone());
        }
    }
    Ok((all, own, filter))
}

/// `{currentOp: 1, $all, $ownOps, <predicates>}` -> `{inprog: [...]}`.
pub async fn current_op_command(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let (all, own, filter) = parse_current_op_command(cmd)?;
    let filter = Filter::parse(&filter)?;
    let inprog = ctx.has_cluster(Action::Inprog);
    let opts = CurrentOpOptions {
        all_users: inprog && !own,
        idle_connections: all,
        idle_sessions: all,
        idle_cursors: false,
        local_ops: false,
    };
    let viewer = ctx.users();
    let docs = current_op_docs(ctx.state, &viewer, opts);
    let matched: Vec<Bson> = docs.into_iter().filter(|d| filter.matches(d)).map(Bson::Document).collect();
    Ok(doc! {"inprog": matched})
}

/// Runs `$currentOp` as the first stage of an aggregation on `admin`: the documents it produces.
pub fn current_op_stage(ctx: &Ctx<'_>, spec: &Bson) -> Result<Vec<Document>, CommandError> {
    if ctx.db != "admin" {
        return Err(CommandError::new(
            73,
            "InvalidNamespace",
            "$currentOp must be run against the 'admin' database with {aggregate: 1}",
        ));
    }
    let opts = CurrentOpOptions::parse(spec)?;
    if opts.all_users && !ctx.has_cluster(Action::Inprog) {
        return Err(CommandError::unauthorized(
            "not authorized on admin to execute command { aggregate: 1, pipeline: [ { $currentOp: { allUsers: true } } ] }",
        ));
    }
    Ok(current_op_docs(ctx.state, &ctx.users(), opts))
}

/// Parses killOp's `op` (a 32-bit integer, possibly sent as long or double).
pub fn parse_kill_op_id(v: Option<&Bson>) -> Result<i32, CommandError> {
    let Some(b) = v else {
        return Err(CommandError::bad_value("Did not provide \"op\" field"));
    };
    let n = util::as_i64(b).ok_or_else(|| CommandError::type_mismatch("\"op\" must be a number"))?;
    i32::try_from(n).map_err(|_| {
        CommandError::location(26823, format!("invalid op : {n}. Op ID cannot be represented with 32 bits"))
    })
}

/// `{killOp: 1, op: <int>}`.
pub fn kill_op(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let opid = parse_kill_op_id(cmd.get("op"))?;
    let may_kill_any = ctx.has_cluster(Action::Killop);
    let me = ctx.users();
    match ctx.state.ops.get(opid) {
        Some(op) => {
            if !may_kill_any && op.users != me {
                return Err(CommandError::unauthorized(
                    "not authorized on admin to execute command { killOp: 1 }",
                ));
            }
            tracing::info!(opid, by_conn = ctx.conn.info.id, target_conn = op.conn.id, "killOp");
            op.state.kill(KILL_INTERRUPTED);
        }
        None => {
            if !may_kill_any {
                return Err(CommandError::unauthorized(
                    "not authorized on admin to execute command { killOp: 1 }",
                ));
            }
        }
    }
    Ok(doc! {"info": "attempting to kill op"})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kill_op_id_parsing() {
        assert_eq!(parse_kill_op_id(Some(&Bson::Int32(5))).unwrap(), 5);
        assert_eq!(parse_kill_op_id(Some(&Bson::Int64(7))).unwrap(), 7);
        assert_eq!(parse_kill_op_id(Some(&Bson::Double(9.0))).unwrap(), 9);
        assert_eq!(parse_kill_op_id(Some(&Bson::Int64(1 << 40))).unwrap_err().code, 26823);
        assert_eq!(parse_kill_op_id(None).unwrap_err().code, 2);
        assert_eq!(parse_kill_op_id(Some(&Bson::String("x".into()))).unwrap_err().code, 14);
    }

    #[test]
    fn current_op_command_splits_filter() {
        let (all, own, f) = parse_current_op_command(
            &doc! {"currentOp": 1, "$all": true, "$db": "admin", "op": "command", "secs_running": {"$gte": 1}},
        )
        .unwrap();
        assert!(all && !own);
        assert_eq!(f, doc! {"op": "command", "secs_running": {"$gte": 1}});
    }

    #[test]
    fn stage_options() {
        let o = CurrentOpOptions::parse(&Bson::Document(doc! {"allUsers": true, "idleConnections": true}))
            .unwrap();
        assert!(o.all_users && o.idle_connections && o.idle_sessions && !o.idle_cursors);
        assert!(CurrentOpOptions::parse(&Bson::Document(doc! {"allUsers": 1})).is_err());
        assert!(CurrentOpOptions::parse(&Bson::Document(doc! {"bogus": true})).is_err());
        assert!(CurrentOpOptions::parse(&Bson::Int32(1)).is_err());
    }
}
