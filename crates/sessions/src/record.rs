//! A node's current-op entry in docplane's neutral shape ([`SessionRecord`], the vendor's
//! "session": one operation, idle connection, or idle session holding transaction state), and
//! the snapshot a kill record keeps of it ([`KillTarget`]). Pure.

use docplane_driver::info::bson_u64;
use docplane_driver::ops::entry_app_name;
use mongodb::bson::{Bson, Document};

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
    /// The client's `appName` (or `clientMetadata.application.name`).
    pub app_name: Option<String>,
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
        // mongod reports an idle session only while it holds transaction state; an entry
        // without `transaction` names nothing the vendor lists.
        Some(uuid) if entry.get_str("type").is_ok_and(|t| t == "idleSession") => {
            entry.get_document("transaction").is_ok().then(|| format!("lsid:{uuid}"))
        }
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
            app_name: entry_app_name(entry).map(str::to_owned),
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

fn redact_value(v: &Bson) -> Bson {
    match v {
        Bson::Document(d) => Bson::Document(redact_deep(d)),
        Bson::Array(a) => Bson::Array(a.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

fn redact_deep(doc: &Document) -> Document {
    doc.iter()
        .map(|(k, v)| {
            let v = if SNAPSHOT_SECRET_FIELDS.contains(&k.as_str()) {
                Bson::String("xxx".into())
            } else {
                redact_value(v)
            };
            (k.clone(), v)
        })
        .collect()
}

/// The snapshot of one current-op entry that a kill record keeps: the command redacted (secret
/// fields at any depth) and cut at [`MAX_SNAPSHOT_COMMAND`] bytes.
pub fn kill_target(id: &str, entry: &Document, r: &SessionRecord) -> KillTarget {
    kill_target_with(id, entry, r, false)
}

/// [`kill_target`], with every literal of the command replaced by its placeholder first when
/// `shape` (the instance's privacy setting, [`crate::privacy::shape`]).
pub fn kill_target_with(id: &str, entry: &Document, r: &SessionRecord, shape: bool) -> KillTarget {
    let command = match entry.get("command").or_else(|| entry.get("query")) {
        Some(Bson::Document(cmd)) => {
            let cmd = if shape { crate::privacy::shape(cmd) } else { cmd.clone() };
            Bson::Document(redact_deep(&cmd)).into_relaxed_extjson().to_string()
        }
        _ => "{}".to_owned(),
    };
    let max = MAX_SNAPSHOT_COMMAND;
    let command = if command.len() > max {
        let mut cut = max;
        while !command.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &command[..cut])
    } else {
        command
    };
    KillTarget {
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

/// What one operation was when a kill was asked for: the snapshot a kill record keeps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KillTarget {
    /// The canonical id.
    pub id: String,
    /// `op`.
    pub op_type: String,
    /// `ns`.
    pub namespace: String,
    /// `client` (`client_s` on mongos).
    pub client: String,
    /// `effectiveUsers[0].user`.
    pub user: Option<String>,
    /// The client's `appName`.
    pub app_name: Option<String>,
    /// `microsecs_running` when it was read.
    pub running_us: u64,
    /// `planSummary`.
    pub plan_summary: String,
    /// The command as relaxed extended JSON, secrets replaced by `"xxx"`, cut at
    /// [`MAX_SNAPSHOT_COMMAND`] bytes.
    pub command: String,
}

/// Longest command text a [`KillTarget`] keeps.
pub const MAX_SNAPSHOT_COMMAND: usize = 4096;

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use mongodb::bson::doc;

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
        assert_eq!(r.app_name.as_deref(), Some("tester"));
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

        let mut session = doc! {"type": "idleSession", "desc": "inactive session", "active": false,
        "lsid": {"id": mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Uuid, bytes: (0u8..16).collect() }}};
        // Without transaction state an idle session is not reported (as mongod does not).
        assert!(SessionRecord::from_current_op(&session).is_none());
        session.insert("transaction", doc! {"parameters": {"txnNumber": 3_i64, "autocommit": false}});
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
}
