//! Reading a node's current operations and killing one, version- and mongos-aware.
//!
//! `$currentOp` (3.6+; `idleSessions` from 4.0) or the `currentOp` command with `$all: true`
//! (3.4) is read with all users and idle connections, so inactive sessions are listed too.
//! Each raw entry becomes a neutral [`SessionRecord`] ([`SessionRecord::from_current_op`], pure).
//!
//! Invariants:
//! - docplane's own current-op reads never leave this module: each one carries a fresh random
//!   [`OwnOpTag`] (`comment: "docplane:<128-bit hex>"` on the aggregate, a no-op `$comment`
//!   predicate on the `currentOp` command), registered while the read runs, and exactly the
//!   entries whose command carries a registered tag are dropped ([`is_own_operation`]);
//! - the application name alone never hides an *active* operation: a client that merely calls
//!   itself `docplane-control` is listed and can be killed like any other. Only entries under the
//!   driver's `app_name` that cannot matter are hidden: idle connections (nothing to kill) and the
//!   driver's monitoring `hello` / `isMaster` (awaitable heartbeats).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use crate::config::NodeTarget;
use crate::error::{DriverError, Result};
use crate::info::{ServerVersion, bson_u64};
use crate::pool::Driver;
use crate::sessions::SessionId;

/// One operation or idle session of a node, in docplane's neutral shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionRecord {
    /// `opid` as text: decimal on mongod, `"<shard>:<opid>"` on mongos; `desc` (e.g. "conn12")
    /// for idle entries that carry no opid.
    pub id: String,
    /// `active`.
    pub active: bool,
    /// `command` (or the legacy `query`) as relaxed extended JSON text; `{}` when absent.
    pub operation: String,
    /// `op`: none update insert query command getmore remove killcursors.
    pub op_type: String,
    /// `microsecs_running` (0 for idle entries).
    pub cost_time_us: u64,
    /// `planSummary`.
    pub plan_summary: String,
    /// `host`.
    pub host: String,
    /// `client` (`client_s` on mongos).
    pub client: String,
    /// `desc`, e.g. "conn20".
    pub description: String,
    /// `ns`.
    pub namespace: String,
    /// Database part of `ns`.
    pub db: Option<String>,
    /// `effectiveUsers[0].user`.
    pub user: Option<String>,
    /// Whether the entry carried a real opid (only those can be killed).
    pub has_opid: bool,
}

fn opid_text(b: &Bson) -> Option<String> {
    match b {
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 =>
        {
            #[expect(clippy::cast_possible_truncation, reason = "integral and range checked")]
            Some((*d as i64).to_string())
        }
        Bson::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The id of an entry without an opid: `lsid:<uuid>` for an idle session, the connection's
/// `desc` (`conn12`) for an idle connection.
fn idle_id(entry: &Document, description: &str) -> Option<String> {
    let lsid = entry.get_document("lsid").ok().and_then(|l| l.get("id")).and_then(|id| match id {
        Bson::Binary(b) if b.bytes.len() == 16 => Some(hex_uuid(&b.bytes)),
        _ => None,
    });
    match lsid {
        Some(uuid) if entry.get_str("type").is_ok_and(|t| t == "idleSession") => Some(format!("lsid:{uuid}")),
        _ if is_connection_desc(description) => Some(description.to_owned()),
        _ => None,
    }
}

fn hex_uuid(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `conn<digits>`: the `desc` of a client connection.
pub fn is_connection_desc(text: &str) -> bool {
    text.strip_prefix("conn")
        .is_some_and(|d| !d.is_empty() && d.len() <= 12 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `lsid:<uuid>` as [`SessionRecord::from_current_op`] names idle sessions.
pub fn is_idle_session_id(text: &str) -> bool {
    text.strip_prefix("lsid:").is_some_and(|u| {
        u.len() == 36
            && u.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_digit() || ('a'..='f').contains(&c)
                }
            })
    })
}

fn str_field(doc: &Document, key: &str) -> Option<String> {
    doc.get_str(key).ok().map(str::to_owned)
}

impl SessionRecord {
    /// Maps one `$currentOp` / `inprog` entry. `None` for entries that identify nothing
    /// (neither an opid, an idle session's lsid, nor a connection's `desc`).
    pub fn from_current_op(entry: &Document) -> Option<Self> {
        let mut record = Self::summary(entry)?;
        record.operation = operation_text(entry);
        Some(record)
    }

    /// Like [`SessionRecord::from_current_op`] but leaves `operation` empty: filtering, sorting
    /// and paging need no command text, so only the returned page pays for rendering it.
    pub fn summary(entry: &Document) -> Option<Self> {
        let opid = entry.get("opid").and_then(opid_text);
        let description = str_field(entry, "desc").unwrap_or_default();
        let has_opid = opid.is_some();
        let id = match opid {
            Some(id) => id,
            None => idle_id(entry, &description)?,
        };
        let cost_time_us = entry
            .get("microsecs_running")
            .and_then(bson_u64)
            .or_else(|| entry.get("secs_running").and_then(bson_u64).map(|s| s.saturating_mul(1_000_000)))
            .unwrap_or(0);
        let namespace = str_field(entry, "ns").unwrap_or_default();
        let db = namespace.split('.').next().filter(|d| !d.is_empty()).map(str::to_owned);
        let user = entry
            .get_array("effectiveUsers")
            .ok()
            .and_then(|users| users.first())
            .and_then(Bson::as_document)
            .and_then(|u| str_field(u, "user"));
        Some(Self {
            id,
            active: entry.get_bool("active").unwrap_or(false),
            operation: String::new(),
            op_type: str_field(entry, "op").unwrap_or_else(|| "none".to_owned()),
            cost_time_us,
            plan_summary: str_field(entry, "planSummary").unwrap_or_default(),
            host: str_field(entry, "host").unwrap_or_default(),
            client: str_field(entry, "client").or_else(|| str_field(entry, "client_s")).unwrap_or_default(),
            description,
            namespace,
            db,
            user,
            has_opid,
        })
    }
}

/// `command` (or the legacy `query`) of an entry as relaxed extended JSON; `{}` when absent.
pub fn operation_text(entry: &Document) -> String {
    match entry.get("command").or_else(|| entry.get("query")) {
        Some(Bson::Document(cmd)) => Bson::Document(cmd.clone()).into_relaxed_extjson().to_string(),
        _ => "{}".to_owned(),
    }
}

/// Fields whose value is a secret in any command (as the embedded node's `redact.rs` and mongod
/// treat them), replaced by `"xxx"` at any depth in a kill snapshot.
const SNAPSHOT_SECRET_FIELDS: &[&str] = &["pwd", "payload", "password", "secretKey"];

fn redact_deep(doc: &Document) -> Document {
    doc.iter()
        .map(|(k, v)| {
            let v = if SNAPSHOT_SECRET_FIELDS.contains(&k.as_str()) {
                Bson::String("xxx".into())
            } else {
                match v {
                    Bson::Document(d) => Bson::Document(redact_deep(d)),
                    Bson::Array(a) => Bson::Array(
                        a.iter()
                            .map(|x| match x {
                                Bson::Document(d) => Bson::Document(redact_deep(d)),
                                other => other.clone(),
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                }
            };
            (k.clone(), v)
        })
        .collect()
}

/// The snapshot of one current-op entry that a kill record keeps: the command redacted (secret
/// fields at any depth) and cut at [`crate::sessions::MAX_SNAPSHOT_COMMAND`] bytes.
pub fn kill_target(id: &str, entry: &Document, r: &SessionRecord) -> crate::sessions::KillTarget {
    let command = match entry.get("command").or_else(|| entry.get("query")) {
        Some(Bson::Document(cmd)) => Bson::Document(redact_deep(cmd)).into_relaxed_extjson().to_string(),
        _ => "{}".to_owned(),
    };
    let max = crate::sessions::MAX_SNAPSHOT_COMMAND;
    let command = if command.len() > max {
        let mut cut = max;
        while !command.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &command[..cut])
    } else {
        command
    };
    crate::sessions::KillTarget {
        id: id.to_owned(),
        op_type: r.op_type.clone(),
        namespace: r.namespace.clone(),
        client: r.client.clone(),
        user: r.user.clone(),
        app_name: entry_app_name(entry).map(str::to_owned),
        running_us: r.cost_time_us,
        plan_summary: r.plan_summary.clone(),
        command,
    }
}

/// Prefix of every [`OwnOpTag`] comment.
pub const OWN_TAG_PREFIX: &str = "docplane:";

/// Tags of the current-op reads running in this process right now.
static LIVE_TAGS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn live_tags() -> std::sync::MutexGuard<'static, HashSet<String>> {
    LIVE_TAGS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mark of one current-op read of docplane's: a fresh random comment, registered as live
/// from creation until drop. Keep it alive until the read's entries have been filtered.
#[derive(Debug)]
pub struct OwnOpTag {
    comment: String,
}

impl OwnOpTag {
    /// A fresh tag (`docplane:` + 128 random bits in hex), registered as live.
    #[allow(clippy::new_without_default, reason = "each call makes a distinct random tag")]
    pub fn new() -> Self {
        let comment = format!("{OWN_TAG_PREFIX}{:032x}", rand::random::<u128>());
        live_tags().insert(comment.clone());
        Self { comment }
    }

    /// The comment text.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// Marks a current-op request with this tag (see [`tag_request`]).
    pub fn tag(&self, request: &mut Document) {
        tag_request(request, &self.comment);
    }
}

impl Drop for OwnOpTag {
    fn drop(&mut self) {
        live_tags().remove(&self.comment);
    }
}

/// Marks a current-op request with `comment`: the `comment` option on an `aggregate` (3.6+,
/// recorded in the op's `command`), a `$comment` predicate on the `currentOp` command (a no-op
/// in any filter, so it can neither hide nor add entries; the command's fields other than
/// `$all` / `$ownOps` are its filter on 3.4).
pub fn tag_request(request: &mut Document, comment: &str) {
    if request.contains_key("aggregate") {
        request.insert("comment", comment);
    } else {
        request.insert("$comment", comment);
    }
}

/// The docplane tag an entry's command carries, if any: `comment` / `$comment` of `command`
/// (3.6+), of the legacy `query` (3.4), or of a getMore's `cursor.originatingCommand`.
pub fn entry_tag(entry: &Document) -> Option<&str> {
    let commands = [
        entry.get_document("command").ok(),
        entry.get_document("query").ok(),
        entry.get_document("cursor").ok().and_then(|c| c.get_document("originatingCommand").ok()),
    ];
    commands.into_iter().flatten().find_map(|c| {
        ["comment", "$comment"]
            .into_iter()
            .filter_map(|k| c.get_str(k).ok())
            .find(|t| t.starts_with(OWN_TAG_PREFIX))
    })
}

fn entry_app_name(entry: &Document) -> Option<&str> {
    entry.get_str("appName").ok().or_else(|| {
        entry
            .get_document("clientMetadata")
            .ok()
            .and_then(|m| m.get_document("application").ok())
            .and_then(|a| a.get_str("name").ok())
    })
}

/// Whether an entry's command is a handshake / heartbeat (`hello`, `isMaster`).
fn is_hello(entry: &Document) -> bool {
    entry
        .get_document("command")
        .ok()
        .and_then(|c| c.keys().next())
        .is_some_and(|k| matches!(k.as_str(), "hello" | "isMaster" | "ismaster"))
}

/// Pure core of [`is_own_operation`] over an explicit set of live tags.
pub fn is_own_operation_with(entry: &Document, app_name: &str, live: &HashSet<String>) -> bool {
    if entry_tag(entry).is_some_and(|t| live.contains(t)) {
        return true;
    }
    if entry_app_name(entry) != Some(app_name) {
        return false;
    }
    let active = entry.get_bool("active").unwrap_or(false);
    !active || is_hello(entry)
}

/// True for entries docplane hides as its own: a current-op read of this process (its command
/// carries a live [`OwnOpTag`]), or, under docplane's `app_name`, an idle connection or a
/// `hello` / `isMaster` heartbeat. Any other active operation is the user's, whatever its
/// application name.
pub fn is_own_operation(entry: &Document, app_name: &str) -> bool {
    let live = live_tags();
    is_own_operation_with(entry, app_name, &live)
}

/// The `$currentOp` stage options for a server version.
pub fn current_op_stage(version: ServerVersion) -> Document {
    let mut options = doc! {"allUsers": true, "idleConnections": true};
    if version.at_least(4, 0) {
        options.insert("idleSessions", true);
    }
    doc! {"$currentOp": options}
}

/// The `$match` / command predicate selecting the given session ids.
pub fn opid_predicate(ids: &[SessionId]) -> Document {
    let values: Vec<Bson> = ids.iter().filter_map(SessionId::op_value).collect();
    doc! {"opid": {"$in": values}}
}

impl Driver {
    /// The node's version, from the per-pool cache or a `buildInfo` round trip.
    pub async fn node_version(&self, target: &NodeTarget) -> Result<ServerVersion> {
        if self.legacy_wire(target).await? {
            return self.legacy_version(target).await;
        }
        if let Some(v) = self.cached_version(target) {
            return Ok(v);
        }
        let client = self.client(target)?;
        let build = self.command(&client, "admin", doc! {"buildInfo": 1}).await?;
        let version = ServerVersion::from_build_info(&build)
            .ok_or_else(|| DriverError::UnsupportedVersion("buildInfo has no parseable version".into()))?;
        self.remember_version(target, version);
        Ok(version)
    }

    /// Raw current-operation entries of a node (docplane's own removed), optionally restricted
    /// by a predicate on the entries.
    pub async fn current_op_entries(
        &self,
        target: &NodeTarget,
        predicate: Option<Document>,
    ) -> Result<Vec<Document>> {
        if self.legacy_wire(target).await? {
            return self.legacy_current_op_entries(target, predicate).await;
        }
        let version = self.node_version(target).await?;
        version.check_supported()?;
        let client = self.client(target)?;
        // Lives until the entries are filtered below.
        let tag = OwnOpTag::new();
        let entries = if version.has_current_op_stage() {
            let mut pipeline = vec![current_op_stage(version)];
            if let Some(p) = predicate {
                pipeline.push(doc! {"$match": p});
            }
            let db = client.database("admin");
            self.run(async {
                db.aggregate(pipeline)
                    .batch_size(100_000)
                    .comment(tag.comment())
                    .await?
                    .try_collect::<Vec<Document>>()
                    .await
            })
            .await?
        } else {
            let mut command = doc! {"currentOp": 1, "$all": true};
            if let Some(p) = predicate {
                command.extend(p);
            }
            tag.tag(&mut command);
            let reply = self.command(&client, "admin", command).await?;
            reply
                .get_array("inprog")
                .map(|a| a.iter().filter_map(Bson::as_document).cloned().collect())
                .unwrap_or_default()
        };
        let app_name = &self.config().app_name;
        let own = entries.into_iter().filter(|e| !is_own_operation(e, app_name)).collect();
        drop(tag);
        Ok(own)
    }

    /// Every current operation, idle connection and idle session of a node, mapped.
    pub async fn list_ops(&self, target: &NodeTarget) -> Result<Vec<SessionRecord>> {
        let entries = self.current_op_entries(target, None).await?;
        Ok(entries.iter().filter_map(SessionRecord::from_current_op).collect())
    }

    /// The current operations among `ids` (a server-side `opid` filter keeps this cheap on
    /// nodes with many operations).
    pub async fn ops_matching(&self, target: &NodeTarget, ids: &[SessionId]) -> Result<Vec<SessionRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.iter().any(|id| matches!(id, SessionId::Idle(_))) {
            // Idle entries have no opid to filter on: read everything, keep the ids asked for.
            let wanted: Vec<String> = ids.iter().map(ToString::to_string).collect();
            let all = self.list_ops(target).await?;
            return Ok(all.into_iter().filter(|r| wanted.contains(&r.id)).collect());
        }
        let entries = self.current_op_entries(target, Some(opid_predicate(ids))).await?;
        Ok(entries.iter().filter_map(SessionRecord::from_current_op).filter(|r| r.has_opid).collect())
    }

    /// `{killOp: 1, op: <id>}` on `admin`: an integer on mongod, the `"shard:opid"` string on
    /// mongos. Only marks the operation; it ends at its next interrupt point.
    pub async fn kill_op(&self, target: &NodeTarget, id: &SessionId) -> Result<()> {
        let op = match id.op_value() {
            Some(op) if id.kind() == Some(target.kind) => op,
            Some(_) => return Err(DriverError::InvalidSessionIds(vec![id.to_string()])),
            None => return Err(DriverError::InactiveSessions(vec![id.to_string()])),
        };
        if self.legacy_wire(target).await? {
            return self.legacy_command(target, "admin", doc! {"killOp": 1, "op": op}).await.map(|_| ());
        }
        let client = self.client(target)?;
        self.command(&client, "admin", doc! {"killOp": 1, "op": op}).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sleep_entry() -> Document {
        doc! {
            "type": "op", "host": "node1:27017", "desc": "conn7", "connectionId": 7,
            "client": "127.0.0.1:50000", "appName": "tester", "active": true,
            "opid": 42_i32, "secs_running": 1_i64, "microsecs_running": 1_500_000_i64,
            "op": "command", "ns": "admin.$cmd",
            "command": {"sleep": 1, "millis": 5000_i64, "$db": "admin"},
            "planSummary": "", "effectiveUsers": [{"user": "alice", "db": "admin"}],
        }
    }

    #[test]
    fn maps_an_active_operation() {
        let r = SessionRecord::from_current_op(&sleep_entry()).unwrap();
        let summary = SessionRecord::summary(&sleep_entry()).unwrap();
        assert!(summary.operation.is_empty());
        assert_eq!(SessionRecord { operation: r.operation.clone(), ..summary }, r);
        assert_eq!(r.id, "42");
        assert!(r.active && r.has_opid);
        assert_eq!(r.op_type, "command");
        assert_eq!(r.cost_time_us, 1_500_000);
        assert_eq!(r.host, "node1:27017");
        assert_eq!(r.client, "127.0.0.1:50000");
        assert_eq!(r.description, "conn7");
        assert_eq!(r.namespace, "admin.$cmd");
        assert_eq!(r.db.as_deref(), Some("admin"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        let op: serde_json::Value = serde_json::from_str(&r.operation).unwrap();
        assert_eq!(op["sleep"], 1);
        assert_eq!(op["millis"], 5000);
    }

    #[test]
    fn maps_mongos_and_idle_entries() {
        let mongos = doc! {"opid": "shard01:1234", "active": true, "client_s": "10.0.0.1:4000",
        "op": "query", "ns": "shop.orders", "planSummary": "COLLSCAN", "secs_running": 3};
        let r = SessionRecord::from_current_op(&mongos).unwrap();
        assert_eq!(r.id, "shard01:1234");
        assert_eq!(r.client, "10.0.0.1:4000");
        assert_eq!(r.cost_time_us, 3_000_000);
        assert_eq!(r.plan_summary, "COLLSCAN");
        assert_eq!(r.db.as_deref(), Some("shop"));
        assert_eq!(r.operation, "{}");
        assert_eq!(r.user, None);

        let session = doc! {"type": "idleSession", "desc": "inactive session", "active": false,
        "lsid": {"id": mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Uuid, bytes: (0u8..16).collect() }}};
        let r = SessionRecord::from_current_op(&session).unwrap();
        assert_eq!(r.id, "lsid:00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert!(is_idle_session_id(&r.id));
        assert_eq!(r.description, "inactive session");
        assert!(!is_idle_session_id("lsid:00010203-0405-0607-0809-0a0b0c0d0e0F"));
        assert!(is_connection_desc("conn12") && !is_connection_desc("conn") && !is_connection_desc("conn1a"));
        assert!(SessionRecord::from_current_op(&doc! {"desc": "monitor", "active": false}).is_none());

        let idle = doc! {"type": "op", "desc": "conn9", "active": false, "client": "1.2.3.4:5"};
        let r = SessionRecord::from_current_op(&idle).unwrap();
        assert_eq!(r.id, "conn9");
        assert!(!r.active && !r.has_opid);
        assert_eq!(r.op_type, "none");
        assert_eq!(r.cost_time_us, 0);
        assert_eq!(r.db, None);

        assert!(SessionRecord::from_current_op(&doc! {"active": false}).is_none());
        let int64 = doc! {"opid": 7_i64, "active": false, "op": "none"};
        assert_eq!(SessionRecord::from_current_op(&int64).unwrap().id, "7");
    }

    #[test]
    fn operation_is_relaxed_extended_json() {
        let mut e = sleep_entry();
        e.insert("command", doc! {"find": "c", "filter": {"_id": mongodb::bson::oid::ObjectId::from_bytes([1; 12])}, "limit": 5_i64});
        let r = SessionRecord::from_current_op(&e).unwrap();
        assert!(r.operation.contains("\"$oid\":\"010101010101010101010101\""), "{}", r.operation);
        assert!(r.operation.contains("\"limit\":5"), "{}", r.operation);
    }

    #[test]
    fn own_operations_are_recognized_by_live_tag_only() {
        let app = "docplane-control";
        let live: HashSet<String> = ["docplane:00ff".to_owned()].into();
        let own = |e: &Document| is_own_operation_with(e, app, &live);
        // Tagged reads: the aggregate (3.6+), the currentOp command (3.4's `query`), a getMore.
        let agg = doc! {"active": true, "opid": 1, "appName": app,
        "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "comment": "docplane:00ff"}};
        assert!(own(&agg));
        assert!(own(
            &doc! {"active": true, "opid": 2, "query": {"currentOp": 1, "$all": true, "$comment": "docplane:00ff"}}
        ));
        assert!(own(&doc! {"active": true, "opid": 3, "command": {"getMore": 5_i64},
        "cursor": {"originatingCommand": {"aggregate": 1, "comment": "docplane:00ff"}}}));
        // A tag that is not live (guessed, or of a finished read) hides nothing.
        let stale = doc! {"active": true, "opid": 4,
        "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "comment": "docplane:0bad"}};
        assert!(!own(&stale));
        // An untagged $currentOp / currentOp is someone else's.
        assert!(!own(
            &doc! {"active": true, "opid": 5, "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}]}}
        ));
        assert!(!own(&doc! {"active": true, "opid": 6, "command": {"currentOp": 1}}));
        // The app name alone: idle connections and heartbeats hidden, active work listed.
        assert!(own(&doc! {"active": false, "desc": "conn3", "appName": app}));
        assert!(own(
            &doc! {"active": false, "desc": "conn4", "clientMetadata": {"application": {"name": app}}}
        ));
        assert!(own(
            &doc! {"active": true, "opid": 7, "appName": app, "command": {"hello": 1, "maxAwaitTimeMS": 10_000}}
        ));
        assert!(own(&doc! {"active": true, "opid": 8, "appName": app, "command": {"isMaster": 1}}));
        let mut impostor = sleep_entry();
        impostor.insert("appName", app);
        assert!(!own(&impostor));
        let mut impostor = sleep_entry();
        impostor.remove("appName");
        impostor.insert("clientMetadata", doc! {"application": {"name": app}});
        assert!(!own(&impostor));
        assert!(!own(&sleep_entry()));
        assert!(!own(&doc! {"active": false, "desc": "conn9", "appName": "other"}));
    }

    #[test]
    fn tags_are_fresh_live_while_held_and_land_in_the_request() {
        let (a, b) = (OwnOpTag::new(), OwnOpTag::new());
        assert_ne!(a.comment(), b.comment());
        assert!(a.comment().starts_with(OWN_TAG_PREFIX) && a.comment().len() == OWN_TAG_PREFIX.len() + 32);
        let mut agg = doc! {"aggregate": 1, "pipeline": [current_op_stage(ServerVersion::new(4, 4, 0))]};
        a.tag(&mut agg);
        assert_eq!(agg.get_str("comment").unwrap(), a.comment());
        let mut cmd = doc! {"currentOp": 1, "$all": true, "opid": {"$in": [5]}};
        b.tag(&mut cmd);
        assert_eq!(cmd.get_str("$comment").unwrap(), b.comment());
        assert!(!cmd.contains_key("comment"));
        let entry = doc! {"active": true, "opid": 1, "command": agg};
        assert_eq!(entry_tag(&entry), Some(a.comment()));
        assert!(is_own_operation(&entry, "docplane-control"));
        drop(a);
        assert!(!is_own_operation(&entry, "docplane-control"), "a dropped tag hides nothing");
        assert!(is_own_operation(&doc! {"active": true, "opid": 2, "query": cmd}, "x"));
    }

    #[test]
    fn stage_options_follow_version() {
        let s = current_op_stage(ServerVersion::new(3, 6, 0));
        let o = s.get_document("$currentOp").unwrap();
        assert!(o.get_bool("allUsers").unwrap() && o.get_bool("idleConnections").unwrap());
        assert!(!o.contains_key("idleSessions"));
        let s = current_op_stage(ServerVersion::new(4, 4, 0));
        assert!(s.get_document("$currentOp").unwrap().get_bool("idleSessions").unwrap());
    }
}
