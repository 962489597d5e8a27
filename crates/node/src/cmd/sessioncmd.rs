//! Logical session commands: endSessions, refreshSessions, killSessions, killAllSessions,
//! killAllSessionsByPattern.
//!
//! Killing a session interrupts its in-progress operations (11601) and closes its cursors. A kill never
//! interrupts the operation issuing it. Without `killAnySession`, a user may only kill its own sessions.

use std::collections::HashSet;

use bson::{Bson, Document, doc};
use docplane_query::CommandError;

use super::{CmdResult, Ctx, util};
use crate::auth::{Action, UserName};
use crate::ops::{KILL_INTERRUPTED, OpEntry};
use crate::sessions::{session_uid, uuid_bytes};

fn session_ids(v: Option<&Bson>, key: &str) -> Result<Vec<Vec<u8>>, CommandError> {
    util::doc_array(v, key)?
        .into_iter()
        .map(|d| {
            uuid_bytes(d.get("id"))
                .ok_or_else(|| CommandError::bad_value(format!("{key} entries must be {{id: UUID}}")))
        })
        .collect()
}

fn parse_users(v: &Bson) -> Result<Vec<UserName>, CommandError> {
    util::doc_array(Some(v), "users")?
        .into_iter()
        .map(|d| Ok(UserName::new(util::req_str(d, "user")?, util::req_str(d, "db")?)))
        .collect()
}

/// What to kill.
#[derive(Debug, Default)]
struct Target {
    all: bool,
    sessions: HashSet<Vec<u8>>,
    users: Vec<UserName>,
    uids: Vec<Vec<u8>>,
}

impl Target {
    fn matches(&self, session: &[u8], users: &[UserName]) -> bool {
        self.all
            || self.sessions.contains(session)
            || users.iter().any(|u| self.users.contains(u))
            || self.uids.contains(&session_uid(users))
    }
}

/// Kills the ops and cursors of the sessions matching `target` (restricted to `owner` when given),
/// never the current op. Returns (ops killed, cursors closed).
fn kill_matching(ctx: &Ctx<'_>, target: &Target, owner: Option<&[UserName]>) -> (usize, usize) {
    let me = ctx.op.opid;
    let owned = |users: &[UserName]| owner.is_none_or(|o| o == users);
    let ops = ctx.state.ops.kill_where(KILL_INTERRUPTED, |op: &OpEntry| {
        op.opid != me && op.session.as_ref().is_some_and(|s| target.matches(s, &op.users) && owned(&op.users))
    });
    let mut keys: Vec<Vec<u8>> = ctx
        .state
        .sessions
        .snapshot()
        .into_iter()
        .filter(|s| target.matches(&s.key, &s.users) && owned(&s.users))
        .map(|s| s.key)
        .collect();
    if target.all && owner.is_none() {
        keys.extend(target.sessions.iter().cloned());
    }
    keys.extend(
        target.sessions.iter().filter(|k| ctx.state.sessions.get(k).is_none_or(|s| owned(&s.users))).cloned(),
    );
    let cursors = ctx.state.cursors.kill_sessions(&keys);
    tracing::info!(ops, cursors, by_conn = ctx.conn.info.id, "killed sessions");
    (ops, cursors)
}

/// endSessions: forgets the sessions and closes their cursors.
pub fn end_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let ids = session_ids(cmd.get("endSessions"), "endSessions")?;
    let me = ctx.users();
    let allowed: Vec<Vec<u8>> = ids
        .into_iter()
        .filter(|k| ctx.state.sessions.get(k).is_none_or(|s| s.users == me || !ctx.state.auth_enabled()))
        .collect();
    ctx.state.cursors.kill_sessions(&allowed);
    ctx.state.sessions.end(&allowed);
    Ok(doc! {})
}

/// refreshSessions: marks sessions used now.
pub fn refresh_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let ids = session_ids(cmd.get("refreshSessions"), "refreshSessions")?;
    let me = ctx.users();
    for k in ids {
        let lsid =
            Bson::Document(doc! {"id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: k }});
        ctx.state.sessions.touch(&lsid, &me, &ctx.conn.info)?;
    }
    Ok(doc! {})
}

/// killSessions: `[{id: UUID}, ...]`; an empty array kills all of the caller's sessions.
pub fn kill_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let ids = session_ids(cmd.get("killSessions"), "killSessions")?;
    let any = ctx.has_cluster(Action::KillAnySession);
    let me = ctx.users();
    let target = if ids.is_empty() {
        Target { all: true, ..Default::default() }
    } else {
        Target { sessions: ids.into_iter().collect(), ..Default::default() }
    };
    let owner = if any && !target.all { None } else { Some(me.as_slice()) };
    kill_matching(ctx, &target, owner);
    Ok(doc! {})
}

/// killAllSessions: `[{user, db}, ...]`; empty kills every session (needs killAnySession unless the
/// list names only the caller).
pub fn kill_all_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let users = parse_users(cmd.get("killAllSessions").unwrap_or(&Bson::Null))?;
    let me = ctx.users();
    let only_self = !users.is_empty() && users.iter().all(|u| me.contains(u));
    if !only_self && !ctx.has_cluster(Action::KillAnySession) {
        return Err(CommandError::unauthorized(
            "not authorized on admin to execute command { killAllSessions: [...] }",
        ));
    }
    let target = if users.is_empty() {
        Target { all: true, ..Default::default() }
    } else {
        Target { users, ..Default::default() }
    };
    kill_matching(ctx, &target, None);
    Ok(doc! {})
}

/// killAllSessionsByPattern: `[{lsid: {id}}, {uid: BinData}, {users: [...]}, ...]`; empty kills all.
pub fn kill_all_sessions_by_pattern(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    if !ctx.has_cluster(Action::KillAnySession) {
        return Err(CommandError::unauthorized(
            "not authorized on admin to execute command { killAllSessionsByPattern: [...] }",
        ));
    }
    let patterns = util::doc_array(cmd.get("killAllSessionsByPattern"), "killAllSessionsByPattern")?;
    let mut target = Target { all: patterns.is_empty(), ..Default::default() };
    for p in patterns {
        if p.is_empty() {
            target.all = true;
        }
        for (k, v) in p {
            match k.as_str() {
                "lsid" => match v {
                    Bson::Document(l) => {
                        let id = uuid_bytes(l.get("id"))
                            .ok_or_else(|| CommandError::bad_value("lsid.id must be a UUID"))?;
                        target.sessions.insert(id);
                    }
                    _ => return Err(CommandError::type_mismatch("lsid must be an object")),
                },
                "uid" => match v {
                    Bson::Binary(b) => target.uids.push(b.bytes.clone()),
                    _ => return Err(CommandError::type_mismatch("uid must be BinData")),
                },
                "users" => target.users.extend(parse_users(v)?),
                "roles" => {
                    // Sessions of users holding any of these roles.
                    let roles = crate::auth::users::parse_roles(v, "admin")?;
                    for u in ctx.state.users.list(None) {
                        if u.roles.iter().any(|r| roles.contains(r)) {
                            target.users.push(u.name);
                        }
                    }
                }
                other => {
                    return Err(CommandError::bad_value(format!(
                        "unknown field '{other}' in session pattern"
                    )));
                }
            }
        }
    }
    kill_matching(ctx, &target, None);
    Ok(doc! {})
}
