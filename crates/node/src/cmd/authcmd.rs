//! Authentication (saslStart/saslContinue, speculative hello auth) and user management commands.
//!
//! Failures are reported to the client only as 18 AuthenticationFailed "Authentication failed." and
//! logged with the user name and reason, never with a password or proof.

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use docplane_query::CommandError;

use super::{CmdResult, Ctx, util};
use crate::auth::scram::{Conversation, Mechanism, parse_client_first};
use crate::auth::users::{parse_roles, user_not_found};
use crate::auth::{Action, Resource, RoleRef, User, UserName, role_exists};
use crate::conn::SaslState;

fn auth_failed() -> CommandError {
    CommandError::authentication_failed("Authentication failed.")
}

fn payload_bytes(cmd: &Document) -> Result<Vec<u8>, CommandError> {
    match cmd.get("payload") {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        Some(Bson::String(s)) => Ok(s.as_bytes().to_vec()),
        None => Ok(Vec::new()),
        Some(_) => Err(CommandError::type_mismatch("payload must be BinData or string")),
    }
}

fn bin(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes })
}

/// Starts a SCRAM conversation (saslStart or hello's speculativeAuthenticate) against `db`.
pub fn start_conversation(ctx: &mut Ctx<'_>, cmd: &Document, db: &str) -> CmdResult {
    let mech_name = util::req_str(cmd, "mechanism")?;
    let Some(mech) = Mechanism::parse(mech_name) else {
        return Err(CommandError::new(
            334,
            "MechanismUnavailable",
            format!("Received authentication for mechanism {mech_name} which is unknown or not enabled"),
        ));
    };
    let payload = payload_bytes(cmd)?;
    let conn_id = ctx.conn.info.id;
    let first = parse_client_first(&payload).map_err(|e| {
        tracing::warn!(conn = conn_id, db, reason = %e, "authentication failed");
        auth_failed()
    })?;
    let name = UserName::new(first.user.clone(), db);
    let cred = ctx.state.users.get(&name).and_then(|u| u.credential(mech).cloned());
    let Some(cred) = cred else {
        tracing::warn!(conn = conn_id, user = %name, mechanism = mech.name(), "authentication failed: no such user or mechanism");
        return Err(auth_failed());
    };
    let (conversation, server_first) = Conversation::start(mech, &first, cred);
    let id = ctx.conn.next_conversation_id;
    ctx.conn.next_conversation_id = id.wrapping_add(1).max(1);
    ctx.conn.sasl =
        Some(SaslState { conversation_id: id, db: db.to_owned(), conversation, awaiting_final_ack: false });
    Ok(doc! {"conversationId": id, "done": false, "payload": bin(server_first)})
}

/// saslStart.
pub fn sasl_start(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let db = ctx.db.clone();
    start_conversation(ctx, cmd, &db)
}

/// saslContinue.
pub fn sasl_continue(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let conn_id = ctx.conn.info.id;
    let id = cmd.get("conversationId").and_then(util::as_i64);
    let Some(sasl) = ctx.conn.sasl.as_mut() else {
        return Err(CommandError::new(17, "ProtocolError", "No SASL session state found"));
    };
    if id != Some(i64::from(sasl.conversation_id)) {
        return Err(CommandError::new(17, "ProtocolError", "Invalid conversation id"));
    }
    if sasl.awaiting_final_ack {
        let id = sasl.conversation_id;
        ctx.conn.sasl = None;
        return Ok(doc! {"conversationId": id, "done": true, "payload": bin(Vec::new())});
    }
    let payload = payload_bytes(cmd)?;
    let user = UserName::new(sasl.conversation.user.clone(), sasl.db.clone());
    match sasl.conversation.finish(&payload) {
        Ok(server_final) => {
            let Some(u) = ctx.state.users.get(&user) else {
                ctx.conn.sasl = None;
                return Err(auth_failed());
            };
            let id = sasl.conversation_id;
            let skip_empty = true;
            {
                let mut auth = ctx.conn.info.auth.lock();
                auth.retain(|(n, _)| n != &user);
                auth.push((user.clone(), u.roles.clone()));
            }
            tracing::info!(conn = conn_id, user = %user, mechanism = sasl.conversation.mechanism.name(), "authenticated");
            if skip_empty {
                ctx.conn.sasl = None;
                Ok(doc! {"conversationId": id, "done": true, "payload": bin(server_final)})
            } else {
                sasl.awaiting_final_ack = true;
                Ok(doc! {"conversationId": id, "done": false, "payload": bin(server_final)})
            }
        }
        Err(e) => {
            ctx.conn.sasl = None;
            tracing::warn!(conn = conn_id, user = %user, reason = %e, "authentication failed");
            Err(auth_failed())
        }
    }
}

fn check_roles(roles: &[RoleRef]) -> Result<(), CommandError> {
    for r in roles {
        if !role_exists(r) {
            return Err(CommandError::new(
                31,
                "RoleNotFound",
                format!("Could not find role: {}@{}", r.role, r.db),
            ));
        }
    }
    Ok(())
}

fn parse_mechanisms(cmd: &Document) -> Result<Vec<Mechanism>, CommandError> {
    match cmd.get("mechanisms") {
        None => Ok(vec![Mechanism::Sha1, Mechanism::Sha256]),
        Some(Bson::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|m| match m {
                Bson::String(s) => Mechanism::parse(s)
                    .ok_or_else(|| CommandError::bad_value(format!("Unknown auth mechanism '{s}'"))),
                _ => Err(CommandError::type_mismatch("mechanisms must be strings")),
            })
            .collect(),
        Some(_) => Err(CommandError::bad_value("mechanisms field must be a non-empty array of strings")),
    }
}

fn password(cmd: &Document) -> Result<Option<String>, CommandError> {
    match cmd.get("pwd") {
        None => Ok(None),
        Some(Bson::String(p)) if !p.is_empty() => Ok(Some(p.clone())),
        Some(Bson::String(_)) => Err(CommandError::bad_value("Password must not be empty")),
        Some(_) => Err(CommandError::type_mismatch("pwd must be a string")),
    }
}

/// createUser.
pub async fn create_user(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let name = UserName::new(util::req_str(cmd, "createUser")?, ctx.db.clone());
    if name.user.is_empty() {
        return Err(CommandError::bad_value("User name must not be empty"));
    }
    let pwd = password(cmd)?.ok_or_else(|| CommandError::bad_value("Must provide a 'pwd' field for all user documents, except those with '$external' as the user's source db"))?;
    let roles = parse_roles(cmd.get("roles").unwrap_or(&Bson::Array(vec![])), &ctx.db)?;
    check_roles(&roles)?;
    let mechs = parse_mechanisms(cmd)?;
    let custom = util::opt_doc(cmd, "customData")?.cloned();
    if ctx.state.users.get(&name).is_some() {
        return Err(CommandError::location(51003, format!("User \"{name}\" already exists")));
    }
    let n2 = name.clone();
    let mut user = tokio::task::spawn_blocking(move || User::new(n2, &pwd, roles, &mechs))
        .await
        .map_err(|_| CommandError::new(1, "InternalError", "credential derivation failed"))?;
    user.custom_data = custom;
    ctx.state.users.create(user)?;
    tracing::info!(user = %name, "user created");
    Ok(doc! {})
}

/// updateUser (its privileges, per field, are the command table's).
pub async fn update_user(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let name = UserName::new(util::req_str(cmd, "updateUser")?, ctx.db.clone());
    let pwd = password(cmd)?;
    let roles = match cmd.get("roles") {
        Some(r) => {
            let roles = parse_roles(r, &ctx.db)?;
            check_roles(&roles)?;
            Some(roles)
        }
        None => None,
    };
    let custom = util::opt_doc(cmd, "customData")?.cloned();
    if pwd.is_none() && roles.is_none() && custom.is_none() {
        return Err(CommandError::bad_value("Must specify at least one field to update in updateUser"));
    }
    let existing = ctx.state.users.get(&name).ok_or_else(|| user_not_found(&name))?;
    let mechs = match cmd.get("mechanisms") {
        Some(_) => parse_mechanisms(cmd)?,
        None => existing.credentials.keys().filter_map(|m| Mechanism::parse(m)).collect(),
    };
    let new_creds = match pwd {
        Some(p) => {
            let n2 = name.clone();
            let u = tokio::task::spawn_blocking(move || User::new(n2, &p, vec![], &mechs))
                .await
                .map_err(|_| CommandError::new(1, "InternalError", "credential derivation failed"))?;
            Some(u.credentials)
        }
        None => None,
    };
    ctx.state.users.modify(&name, |u| {
        if let Some(c) = new_creds {
            u.credentials = c;
        }
        if let Some(r) = roles {
            u.roles = r;
        }
        if let Some(cd) = custom {
            u.custom_data = Some(cd);
        }
        Ok(())
    })?;
    refresh_connection_roles(ctx, &name);
    Ok(doc! {})
}

fn refresh_connection_roles(ctx: &Ctx<'_>, name: &UserName) {
    let roles = ctx.state.users.get(name).map(|u| u.roles);
    for c in ctx.state.conns.lock().values() {
        let mut auth = c.auth.lock();
        match &roles {
            Some(r) => {
                for (n, rs) in auth.iter_mut() {
                    if n == name {
                        *rs = r.clone();
                    }
                }
            }
            None => auth.retain(|(n, _)| n != name),
        }
    }
}

/// dropUser.
pub fn drop_user(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let name = UserName::new(util::req_str(cmd, "dropUser")?, ctx.db.clone());
    ctx.state.users.remove(&name)?;
    refresh_connection_roles(ctx, &name);
    Ok(doc! {})
}

/// dropAllUsersFromDatabase.
pub fn drop_all_users(ctx: &mut Ctx<'_>) -> CmdResult {
    let users = ctx.state.users.list(Some(&ctx.db));
    for u in &users {
        ctx.state.users.remove(&u.name)?;
        refresh_connection_roles(ctx, &u.name);
    }
    Ok(doc! {"n": users.len() as i32})
}

/// grantRolesToUser / revokeRolesFromUser.
pub fn grant_roles(ctx: &mut Ctx<'_>, cmd: &Document, grant: bool) -> CmdResult {
    let key = if grant { "grantRolesToUser" } else { "revokeRolesFromUser" };
    let name = UserName::new(util::req_str(cmd, key)?, ctx.db.clone());
    let roles =
        parse_roles(cmd.get("roles").ok_or_else(|| CommandError::bad_value("roles is required"))?, &ctx.db)?;
    check_roles(&roles)?;
    ctx.state.users.modify(&name, |u| {
        for r in roles {
            if grant {
                if !u.roles.contains(&r) {
                    u.roles.push(r);
                }
            } else {
                u.roles.retain(|x| x != &r);
            }
        }
        Ok(())
    })?;
    refresh_connection_roles(ctx, &name);
    Ok(doc! {})
}

/// usersInfo: `1`, a name, `{user, db}`, an array of those, or `{forAllDBs: true}`.
pub fn users_info(ctx: &mut Ctx<'_>, cmd: &Document) -> CmdResult {
    let show_creds = util::opt_bool(cmd, "showCredentials")?.unwrap_or(false);
    let db = ctx.db.clone();
    let mut wanted: Vec<UserName> = Vec::new();
    let mut all_in: Option<Option<String>> = None;
    let one = |b: &Bson| -> Result<UserName, CommandError> {
        match b {
            Bson::String(s) => Ok(UserName::new(s.clone(), db.clone())),
            Bson::Document(d) => Ok(UserName::new(util::req_str(d, "user")?, util::req_str(d, "db")?)),
            _ => Err(CommandError::bad_value("User name must be a string or {user, db}")),
        }
    };
    match cmd.get("usersInfo") {
        Some(Bson::Document(d)) if d.get("forAllDBs").is_some_and(util::truthy) => all_in = Some(None),
        Some(Bson::Array(a)) => {
            for b in a {
                wanted.push(one(b)?);
            }
        }
        Some(b @ (Bson::String(_) | Bson::Document(_))) => wanted.push(one(b)?),
        Some(b) if util::as_i64(b) == Some(1) => all_in = Some(Some(db.clone())),
        _ => return Err(CommandError::bad_value("usersInfo must be 1, a user name, a document or an array")),
    }
    let me = ctx.users();
    let can_view = |d: &str| ctx.has(&Resource::Db(d.to_owned()), Action::ViewUser);
    let users: Vec<User> = match all_in {
        Some(None) => {
            if !can_view("admin") {
                return Err(CommandError::unauthorized(format!(
                    "not authorized on {db} to execute command {{ usersInfo: {{ forAllDBs: true }} }}"
                )));
            }
            ctx.state.users.list(None)
        }
        Some(Some(d)) => {
            if !can_view(&d) {
                return Err(CommandError::unauthorized(format!(
                    "not authorized on {d} to execute command {{ usersInfo: 1 }}"
                )));
            }
            ctx.state.users.list(Some(&d))
        }
        None => {
            let mut out = Vec::new();
            for w in wanted {
                if !can_view(&w.db) && !me.contains(&w) {
                    return Err(CommandError::unauthorized(format!(
                        "not authorized on {} to execute command {{ usersInfo: \"{}\" }}",
                        w.db, w.user
                    )));
                }
                if let Some(u) = ctx.state.users.get(&w) {
                    out.push(u);
                }
            }
            out
        }
    };
    let docs: Vec<Bson> = users.iter().map(|u| Bson::Document(u.to_doc(show_creds))).collect();
    Ok(doc! {"users": docs})
}
