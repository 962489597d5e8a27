//! Reading a node's current operations and killing one, version- and mongos-aware.
//!
//! `$currentOp` (3.6+; `idleSessions` from 4.0) or the `currentOp` command with `$all: true`
//! (3.4) is read with all users and idle connections, so inactive sessions are listed too.
//! Each raw entry becomes a neutral [`SessionRecord`] ([`SessionRecord::from_current_op`], pure).
//!
//! Invariant: docplane's own operations (any entry whose application name is the driver's
//! `app_name`, and every `currentOp` / `$currentOp` command) never leave this module, so they can
//! be neither listed nor killed through docplane.

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

/// True for entries that are docplane's own work: its application name, or any
/// `currentOp` command / `$currentOp` aggregation.
pub fn is_own_operation(entry: &Document, app_name: &str) -> bool {
    let app = entry.get_str("appName").ok().or_else(|| {
        entry
            .get_document("clientMetadata")
            .ok()
            .and_then(|m| m.get_document("application").ok())
            .and_then(|a| a.get_str("name").ok())
    });
    if app == Some(app_name) {
        return true;
    }
    let Ok(command) = entry.get_document("command") else {
        return false;
    };
    if command.contains_key("currentOp") {
        return true;
    }
    command.contains_key("aggregate")
        && command
            .get_array("pipeline")
            .ok()
            .and_then(|p| p.first())
            .and_then(Bson::as_document)
            .is_some_and(|stage| stage.contains_key("$currentOp"))
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
        let version = self.node_version(target).await?;
        version.check_supported()?;
        let client = self.client(target)?;
        let entries = if version.has_current_op_stage() {
            let mut pipeline = vec![current_op_stage(version)];
            if let Some(p) = predicate {
                pipeline.push(doc! {"$match": p});
            }
            let db = client.database("admin");
            self.run(async {
                db.aggregate(pipeline).batch_size(100_000).await?.try_collect::<Vec<Document>>().await
            })
            .await?
        } else {
            let mut command = doc! {"currentOp": 1, "$all": true};
            if let Some(p) = predicate {
                command.extend(p);
            }
            let reply = self.command(&client, "admin", command).await?;
            reply
                .get_array("inprog")
                .map(|a| a.iter().filter_map(Bson::as_document).cloned().collect())
                .unwrap_or_default()
        };
        let app_name = &self.config().app_name;
        Ok(entries.into_iter().filter(|e| !is_own_operation(e, app_name)).collect())
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
    fn own_operations_are_recognized() {
        let app = "docplane-control";
        assert!(is_own_operation(&doc! {"appName": app, "opid": 1}, app));
        assert!(is_own_operation(&doc! {"clientMetadata": {"application": {"name": app}}, "opid": 1}, app));
        assert!(is_own_operation(
            &doc! {"opid": 1, "command": {"aggregate": 1, "pipeline": [{"$currentOp": {}}]}},
            app
        ));
        assert!(is_own_operation(&doc! {"opid": 1, "command": {"currentOp": 1}}, app));
        assert!(!is_own_operation(&sleep_entry(), app));
        assert!(!is_own_operation(
            &doc! {"opid": 1, "command": {"aggregate": "c", "pipeline": [{"$match": {}}]}},
            app
        ));
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
