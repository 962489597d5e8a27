//! Logical session commands: startSession, endSessions, refreshSessions, killSessions,
//! killAllSessions, killAllSessionsByPattern.
//!
//! A logical session is identified, as in mongod, by its `id` and its owner's `uid` (SHA-256 of
//! `user@db`). An `{id}` a client names means that id with the caller's own uid; naming another
//! user's `uid` needs `killAnySession` (killSessions) or `impersonate`, else 13 (mongod's
//! `makeLogicalSessionId` in `logical_session_id_helpers.cpp`). Killing a session interrupts its
//! in-progress operations (11601) and closes its cursors; a kill never interrupts the operation
//! issuing it.

use bson::{Bson, Document, doc};
use docplane_query::CommandError;

use super::{CmdResult, Ctx, util};
use crate::auth::{Action, Resource, UserName};
use crate::ops::{KILL_INTERRUPTED, OpEntry};
use crate::sessions::{key_parts, session_key, session_uid, uuid_bytes};

/// A session a client names: its id and, optionally, its owner's uid.
type SessionRef = (Vec<u8>, Option<Vec<u8>>);
/// A session as mongod identifies it: (id, uid).
type SessionId = (Vec<u8>, Vec<u8>);

fn session_refs(v: Option<&Bson>, key: &str) -> Result<Vec<SessionRef>, CommandError> {
    util::doc_array(v, key)?.into_iter().map(|d| session_ref(d, key)).collect()
}

fn session_ref(d: &Document, key: &str) -> Result<SessionRef, CommandError> {
    for k in d.keys() {
        if k != "id" && k != "uid" {
            return Err(CommandError::bad_value(format!("unknown field '{k}' in a {key} session id")));
        }
    }
    let id = uuid_bytes(d.get("id"))
        .ok_or_else(|| CommandError::bad_value(format!("{key} entries must be {{id: UUID}}")))?;
    let uid = match d.get("uid") {
        None => None,
        Some(Bson::Binary(b)) if b.bytes.len() == 32 => Some(b.bytes.clone()),
        Some(_) => return Err(CommandError::type_mismatch("uid must be a 32-byte BinData")),
    };
    Ok((id, uid))
}

/// The (id, uid) pairs `refs` name: the caller's own uid where none is given; another user's
/// only with `allow_spoof` or `impersonate` on the cluster.
fn resolve(
    ctx: &Ctx<'_>,
    refs: Vec<SessionRef>,
    allow_spoof: Option<Action>,
) -> Result<Vec<SessionId>, CommandError> {
    let mine = session_uid(&ctx.users());
    let may_spoof = allow_spoof.is_some_and(|a| ctx.has_cluster(a)) || ctx.has_cluster(Action::Impersonate);
    refs.into_iter()
        .map(|(id, uid)| match uid {
            None => Ok((id, mine.clone())),
            Some(u) if u == mine || may_spoof => Ok((id, u)),
            Some(_) => Err(CommandError::unauthorized("Unauthorized to set user digest in LogicalSessionId")),
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
    /// (id, uid): `None` matches that id whatever its owner (a pattern's lsid without uid).
    lsids: Vec<SessionRef>,
    users: Vec<UserName>,
    uids: Vec<Vec<u8>>,
}

impl Target {
    /// Whether the session with registry key `key`, used by `users`, is targeted.
    fn matches(&self, key: &[u8], users: &[UserName]) -> bool {
        let (key, uid) = key_parts(key);
        self.all
            || self.lsids.iter().any(|(id, u)| id == key && u.as_deref().is_none_or(|u| u == uid))
            || users.iter().any(|u| self.users.contains(u))
            || self.uids.iter().any(|u| u == uid)
    }
}

/// Kills the ops and cursors of the sessions matching `target`, never the current op. Returns
/// (ops killed, cursors closed).
fn kill_matching(ctx: &Ctx<'_>, target: &Target) -> (usize, usize) {
    let me = ctx.op.opid;
    let ops = ctx.state.ops.kill_where(KILL_INTERRUPTED, |op: &OpEntry| {
        op.opid != me && op.session.as_ref().is_some_and(|s| target.matches(s, &op.users))
    });
    let mut keys: Vec<Vec<u8>> = ctx
        .state
        .sessions
        .snapshot()
        .into_iter()
        .filter(|s| target.matches(&s.key, &s.users))
        .map(|s| s.key)
        .collect();
    // Cursors may outlive their session's record (reaped): named sessions close them too.
    keys.extend(target.lsids.iter().filter_map(|(id, uid)| {
        let key = session_key(id, uid.as_deref()?);
        ctx.state.sessions.get(&key).is_none().then_some(key)
    }));
    let cursors = ctx.state.cursors.kill_sessions(&keys);
    tracing::info!(ops, cursors, by_conn = ctx.conn.info.id, "killed sessions");
    (ops, cursors)
}

/// startSession: a new session of the caller, `{id: {id: UUID}, timeoutMinutes}`.
pub fn start_session(ctx: &mut Ctx<'_>) -> CmdResult {
    let id = bson::Binary {
        subtype: bson::spec::BinarySubtype::Uuid,
        bytes: uuid::Uuid::new_v4().as_bytes().to_vec(),
    };
    let users = ctx.users();
    ctx.state.sessions.touch(&Bson::Document(doc! {"id": id.clone()}), &users, &ctx.conn.info)?;
    let minutes = i32::try_from(crate::sessions::SESSION_TIMEOUT.as_secs() / 60).unwrap_or(i32::MAX);
    Ok(doc! {"id": {"id": id}, "timeoutMinutes": minutes})
}

/// endSessions: forgets the caller's sessions among those named and closes their cursors.
pub fn end_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let refs = session_refs(cmd.get("endSessions"), "endSessions")?;
    let named = resolve(ctx, refs, None)?;
    let ended: Vec<Vec<u8>> = named.iter().map(|(id, uid)| session_key(id, uid)).collect();
    ctx.state.cursors.kill_sessions(&ended);
    ctx.state.sessions.end(&ended);
    Ok(doc! {})
}

/// refreshSessions: marks sessions used now.
pub fn refresh_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let refs = session_refs(cmd.get("refreshSessions"), "refreshSessions")?;
    let named = resolve(ctx, refs, None)?;
    let me = ctx.users();
    let mine = session_uid(&me);
    for (id, uid) in named {
        if uid == mine {
            let lsid = Bson::Document(
                doc! {"id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: id }},
            );
            ctx.state.sessions.touch(&lsid, &me, &ctx.conn.info)?;
        } else {
            // Another user's (impersonate): refreshed if known, never created in its name.
            ctx.state.sessions.refresh(&session_key(&id, &uid));
        }
    }
    Ok(doc! {})
}

/// killSessions: `[{id: UUID, uid?}, ...]`, each the caller's own session unless `uid` names
/// another user's (killAnySession); an empty array kills all of the caller's sessions.
pub fn kill_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let refs = session_refs(cmd.get("killSessions"), "killSessions")?;
    let target = if refs.is_empty() {
        Target { uids: vec![session_uid(&ctx.users())], ..Default::default() }
    } else {
        let named = resolve(ctx, refs, Some(Action::KillAnySession))?;
        Target { lsids: named.into_iter().map(|(id, uid)| (id, Some(uid))).collect(), ..Default::default() }
    };
    kill_matching(ctx, &target);
    Ok(doc! {})
}

/// killAllSessions: `[{user, db}, ...]`; empty kills every session (the table requires
/// killAnySession, as mongod does even for the caller's own name).
pub fn kill_all_sessions(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let users = parse_users(cmd.get("killAllSessions").unwrap_or(&Bson::Null))?;
    let target = if users.is_empty() {
        Target { all: true, ..Default::default() }
    } else {
        Target { users, ..Default::default() }
    };
    kill_matching(ctx, &target);
    Ok(doc! {})
}

/// killAllSessionsByPattern: `[{lsid: {id, uid?}}, {uid: BinData}, {users: [...]}, {roles: [...]}]`;
/// empty kills all. Patterns naming users or roles need `impersonate` (mongod's
/// `KillAllSessionsByPatternCommand::run`), which only `__system` holds.
pub fn kill_all_sessions_by_pattern(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let patterns = util::doc_array(cmd.get("killAllSessionsByPattern"), "killAllSessionsByPattern")?;
    let impersonates = patterns.iter().any(|p| p.contains_key("users") || p.contains_key("roles"));
    if impersonates && !ctx.has(&Resource::Cluster, Action::Impersonate) {
        return Err(CommandError::unauthorized("Not authorized to impersonate in killAllSessionsByPattern"));
    }
    let mut target = Target { all: patterns.is_empty(), ..Default::default() };
    for p in patterns {
        if p.is_empty() {
            target.all = true;
        }
        for (k, v) in p {
            match k.as_str() {
                "lsid" => match v {
                    Bson::Document(l) => target.lsids.push(session_ref(l, "lsid")?),
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
    kill_matching(ctx, &target);
    Ok(doc! {})
}

/// The documents of a `$listLocalSessions` / `$listSessions` first stage (`stage` names which, for
/// messages): `{_id: {id, uid}, lastUse, user?: {name}}` of the caller's sessions, of `users`, or
/// of everyone with `allUsers: true` (the command table requires listSessions for others').
/// The node keeps one session registry, so both stages read it.
pub fn list_sessions_stage(ctx: &Ctx<'_>, stage: &str, spec: &Bson) -> Result<Vec<Document>, CommandError> {
    let Bson::Document(spec) = spec else {
        return Err(CommandError::type_mismatch(format!("{stage} options must be an object")));
    };
    let mut all = false;
    let mut users: Option<Vec<UserName>> = None;
    for (k, v) in spec {
        match k.as_str() {
            "allUsers" => match v {
                Bson::Boolean(b) => all = *b,
                _ => return Err(CommandError::type_mismatch("allUsers must be a boolean")),
            },
            "users" => users = Some(parse_users(v)?),
            other => {
                return Err(CommandError::location(
                    40415,
                    format!("BSON field 'ListSessionsSpec.{other}' is an unknown field."),
                ));
            }
        }
    }
    if all && users.is_some() {
        return Err(CommandError::bad_value(format!("{stage} may not specify both allUsers and users")));
    }
    let wanted: Option<Vec<Vec<u8>>> = match (all, users) {
        (true, _) => None,
        (false, Some(u)) if !u.is_empty() => {
            Some(u.iter().map(|u| session_uid(std::slice::from_ref(u))).collect())
        }
        _ => Some(vec![session_uid(&ctx.users())]),
    };
    let sessions = ctx.state.sessions.snapshot();
    Ok(sessions
        .into_iter()
        .filter(|s| wanted.as_ref().is_none_or(|w| w.iter().any(|u| u == key_parts(&s.key).1)))
        .map(|s| {
            let mut d = doc! {"_id": s.lsid.clone(), "lastUse": s.last_use_wall};
            if let Some(u) = s.users.first() {
                d.insert("user", doc! {"name": u.to_string()});
            }
            d
        })
        .collect())
}
