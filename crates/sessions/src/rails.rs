//! Safety rails: the operations no kill path may kill, and why.
//!
//! Every kill (by an API caller, or later by a rule) passes each target through [`protection`]
//! first; a protected target refuses the kill with [`Protection::reason`] in the message. The
//! decision uses only the facts of the target's `$currentOp` entry ([`facts`]), the instance's
//! [`SessionSettings`] and the set of docplane's own server-side connection ids on the node.
//! Pure: no IO, no clock.
//!
//! An operation is protected, checked in this order (the first that applies is reported):
//! 1. [`ProtectionKind::Internal`]: the server's own work, with no client connection: the entry
//!    is an operation (`type` `"op"`, or absent before 4.2) without `client`, `client_s` and
//!    `connectionId`. mongod reports `connectionId` only for a client with a transport session and
//!    `client` only when it has a remote address (`Client::reportState`, `src/mongo/db/client.cpp`),
//!    so its background threads (`TTLMonitor`, `WTCheckpointThread`, replication's `ReplBatcher`,
//!    `OplogApplier-0`, `LogicalSessionCacheRefresh`...) show neither. Idle sessions and idle
//!    cursors are not operations and get no such verdict (they cannot be killed by opid anyway).
//! 2. [`ProtectionKind::Docplane`]: its `connectionId` is one of docplane's own connections to the
//!    node (the caller collects them), so docplane never kills its own reads.
//! 3. [`ProtectionKind::ClusterMember`]: it runs as the cluster's internal user `__system` (any
//!    effective user named so): another member's replication (oplog fetching), chunk migrations,
//!    the balancer. Impersonated operations that a mongos forwards carry `__system` in `runBy`
//!    only and stay the user's.
//! 4. [`ProtectionKind::ProtectedUser`]: one of its `effectiveUsers` is protected. A protected name
//!    `X` matches the user `u` of database `d` when `X == u` (that user name in any database) or
//!    `X == "u@d"` (only there). Exact and case-sensitive, as MongoDB compares user names; a user
//!    name may itself contain `@` (`$external` users), which the first form covers.
//! 5. [`ProtectionKind::ProtectedApp`]: its application name (`appName`, or
//!    `clientMetadata.application.name`) is one of the protected names: exact and case-sensitive
//!    (drivers send it as the application set it; note that mongosh's includes its version).
//!
//! An entry field of an unexpected type counts as absent; for `client`/`client_s` an empty string
//! does too. Both err on the protected side: a connection we cannot see is taken for none.

use std::collections::HashSet;

use docplane_store::SessionSettings;
use mongodb::bson::{Bson, Document};

/// The cluster's internal user (`__system@local`), which members authenticate as.
pub const CLUSTER_USER: &str = "__system";

/// One user an operation runs as (an element of `effectiveUsers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpUser {
    pub user: String,
    /// Its authentication database (empty when the entry does not say).
    pub db: String,
}

impl std::fmt::Display for OpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.db)
    }
}

/// What the rails read from one `$currentOp` / `inprog` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpFacts {
    /// `opid` as the API names it: decimal (mongod) or `shard:opid` (mongos).
    pub opid: Option<String>,
    /// `type`: `op`, `idleSession`, `idleCursor` (absent before MongoDB 4.2, where every entry
    /// is an operation).
    pub entry_type: Option<String>,
    /// `client` (mongod) or `client_s` (mongos): the client connection's address.
    pub client: Option<String>,
    /// `connectionId`: the server-side id of the connection (`conn<N>`).
    pub connection_id: Option<i64>,
    /// Every element of `effectiveUsers`.
    pub users: Vec<OpUser>,
    /// `appName`, or `clientMetadata.application.name`.
    pub app_name: Option<String>,
    /// `desc`: `conn<N>` for clients, the thread's name for the server's own work.
    pub desc: Option<String>,
}

impl OpFacts {
    /// Whether the entry is an operation (not an idle session or cursor).
    pub fn is_operation(&self) -> bool {
        self.entry_type.as_deref().is_none_or(|t| t == "op")
    }

    /// `operation 42`, or the entry's `desc` when it has no opid.
    pub fn label(&self) -> String {
        match (&self.opid, &self.desc) {
            (Some(id), _) => format!("operation {id}"),
            (None, Some(desc)) => format!("operation \"{desc}\""),
            (None, None) => "the operation".to_owned(),
        }
    }
}

fn text(entry: &Document, key: &str) -> Option<String> {
    entry.get_str(key).ok().map(str::to_owned)
}

fn integer(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        // Only integral values well inside i64's range get here, so the cast is exact.
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

/// The rails' facts of one raw `$currentOp` entry (mongod's or mongos's).
pub fn facts(entry: &Document) -> OpFacts {
    let opid = entry.get("opid").and_then(|v| match v {
        Bson::String(s) if !s.is_empty() => Some(s.clone()),
        other => integer(other).map(|n| n.to_string()),
    });
    let client = ["client", "client_s"].iter().find_map(|k| text(entry, k).filter(|c| !c.is_empty()));
    let users = entry
        .get_array("effectiveUsers")
        .map(|users| {
            users
                .iter()
                .filter_map(Bson::as_document)
                .filter_map(|u| {
                    Some(OpUser { user: text(u, "user")?, db: text(u, "db").unwrap_or_default() })
                })
                .collect()
        })
        .unwrap_or_default();
    let app_name = text(entry, "appName").or_else(|| {
        entry
            .get_document("clientMetadata")
            .ok()
            .and_then(|m| m.get_document("application").ok())
            .and_then(|a| text(a, "name"))
    });
    OpFacts {
        opid,
        entry_type: text(entry, "type"),
        client,
        connection_id: entry.get("connectionId").and_then(integer),
        users,
        app_name,
        desc: text(entry, "desc"),
    }
}

/// Why an operation is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtectionKind {
    /// The server's own work: no client connection.
    Internal,
    /// One of docplane's own connections to the node.
    Docplane,
    /// Runs as the cluster's internal user (the effective user, as `user@db`).
    ClusterMember(String),
    /// Runs as a protected user (the effective user that matched, as `user@db`).
    ProtectedUser(String),
    /// Comes from a protected application (its name).
    ProtectedApp(String),
}

/// A protected operation: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// [`OpFacts::label`] of the operation (`operation 42`).
    pub operation: String,
    /// What protects it.
    pub kind: ProtectionKind,
    /// The operation's `desc` (named for the server's own work).
    pub desc: Option<String>,
    /// The connection docplane owns, for [`ProtectionKind::Docplane`].
    pub connection_id: Option<i64>,
}

impl Protection {
    /// A sentence for an error message: `operation 42 is the server's own work (no client
    /// connection: TTLMonitor)`.
    pub fn reason(&self) -> String {
        let op = &self.operation;
        match &self.kind {
            ProtectionKind::Internal => match &self.desc {
                Some(desc) => format!("{op} is the server's own work (no client connection: {desc})"),
                None => format!("{op} is the server's own work (no client connection)"),
            },
            ProtectionKind::Docplane => match self.connection_id {
                Some(id) => format!("{op} is docplane's own (connection {id} to the node is docplane's)"),
                None => format!("{op} is docplane's own"),
            },
            ProtectionKind::ClusterMember(user) => format!(
                "{op} runs as the cluster's internal user {user} (replication or cluster maintenance)"
            ),
            ProtectionKind::ProtectedUser(user) => {
                format!("{op} runs as user {user}, which the instance's session settings protect")
            }
            ProtectionKind::ProtectedApp(app) => {
                format!(
                    "{op} comes from application \"{app}\", which the instance's session settings protect"
                )
            }
        }
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason())
    }
}

/// Whether the protected name `entry` covers `user` (module doc, rule 4).
pub fn user_matches(entry: &str, user: &OpUser) -> bool {
    entry == user.user
        || entry.strip_prefix(user.user.as_str()).and_then(|rest| rest.strip_prefix('@')) == Some(&user.db)
}

/// Whether (and why) the operation of `facts` is protected (module doc for the rules and their
/// order). `own_connections` are docplane's own server-side connection ids on the node.
pub fn protection(
    facts: &OpFacts,
    settings: &SessionSettings,
    own_connections: &HashSet<i64>,
) -> Option<Protection> {
    let kind = if facts.is_operation() && facts.client.is_none() && facts.connection_id.is_none() {
        Some(ProtectionKind::Internal)
    } else if facts.connection_id.is_some_and(|id| own_connections.contains(&id)) {
        Some(ProtectionKind::Docplane)
    } else if let Some(u) = facts.users.iter().find(|u| u.user == CLUSTER_USER) {
        Some(ProtectionKind::ClusterMember(u.to_string()))
    } else if let Some(u) =
        facts.users.iter().find(|u| settings.protected_users.iter().any(|p| user_matches(p, u)))
    {
        Some(ProtectionKind::ProtectedUser(u.to_string()))
    } else {
        facts
            .app_name
            .as_ref()
            .filter(|app| settings.protected_app_names.contains(*app))
            .map(|app| ProtectionKind::ProtectedApp(app.clone()))
    }?;
    Some(Protection {
        operation: facts.label(),
        kind,
        desc: facts.desc.clone(),
        connection_id: facts.connection_id,
    })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use mongodb::bson::{Binary, DateTime, Timestamp, doc, spec::BinarySubtype};

    use super::*;

    fn settings(users: &[&str], apps: &[&str]) -> SessionSettings {
        SessionSettings {
            protected_users: users.iter().map(|s| (*s).to_owned()).collect(),
            protected_app_names: apps.iter().map(|s| (*s).to_owned()).collect(),
            ..SessionSettings::defaults("i1")
        }
    }

    fn none() -> HashSet<i64> {
        HashSet::new()
    }

    fn lsid() -> Document {
        doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![3; 16] }, "uid": Binary { subtype: BinarySubtype::Generic, bytes: vec![9; 32] }}
    }

    /// mongod 7.0's `$currentOp` entry of its TTL thread (`idleConnections: true`, a pass running).
    fn ttl_monitor() -> Document {
        doc! {
            "type": "op", "host": "db1:27017", "desc": "TTLMonitor", "active": true,
            "currentOpTime": "2024-03-13T10:00:00.000+00:00", "opid": 1021, "op": "none", "ns": "",
            "redacted": false, "command": {}, "numYields": 0, "locks": {},
            "waitingForLock": false, "lockStats": {}, "waitingForFlowControl": false, "flowControlStats": {},
        }
    }

    /// An application's collection scan on mongod 7.0.
    fn app_find() -> Document {
        doc! {
            "type": "op", "host": "db1:27017", "desc": "conn42", "connectionId": 42, "client": "10.0.0.5:51234",
            "appName": "shop-app",
            "clientMetadata": {"application": {"name": "shop-app"}, "driver": {"name": "nodejs", "version": "6.3.0"},
                               "os": {"type": "Linux", "name": "linux", "architecture": "x64", "version": "6.1.0"},
                               "platform": "Node.js v20.11.0, LE"},
            "active": true, "currentOpTime": "2024-03-13T10:00:03.100+00:00",
            "effectiveUsers": [{"user": "app", "db": "admin"}], "threaded": true, "opid": 5678_i64,
            "lsid": lsid(), "secs_running": 3_i64, "microsecs_running": 3_000_123_i64, "op": "query",
            "ns": "shop.orders",
            "command": {"find": "orders", "filter": {"total": {"$gt": 100}}, "lsid": lsid(), "$db": "shop"},
            "planSummary": "COLLSCAN", "numYields": 10, "queryFramework": "classic",
            "locks": {"FeatureCompatibilityVersion": "r", "Global": "r"}, "waitingForLock": false,
        }
    }

    #[test]
    fn facts_of_a_mongod_client_operation() {
        let f = facts(&app_find());
        assert_eq!(
            f,
            OpFacts {
                opid: Some("5678".into()),
                entry_type: Some("op".into()),
                client: Some("10.0.0.5:51234".into()),
                connection_id: Some(42),
                users: vec![OpUser { user: "app".into(), db: "admin".into() }],
                app_name: Some("shop-app".into()),
                desc: Some("conn42".into()),
            }
        );
        assert_eq!(
            protection(&f, &SessionSettings::defaults("i1"), &none()),
            None,
            "nothing protects it by default"
        );
    }

    #[test]
    fn the_servers_own_work_is_internal() {
        let f = facts(&ttl_monitor());
        assert_eq!((f.client.as_deref(), f.connection_id), (None, None));
        let p = protection(&f, &SessionSettings::defaults("i1"), &none()).unwrap();
        assert_eq!(p.kind, ProtectionKind::Internal);
        assert_eq!(p.reason(), "operation 1021 is the server's own work (no client connection: TTLMonitor)");
        // An inactive thread (no opid) is named by its desc; a pre-4.2 entry has no `type`.
        let mut idle = doc! {"desc": "ReplCoord-3", "host": "db1:27017", "active": false, "threaded": true};
        let p = protection(&facts(&idle), &SessionSettings::defaults("i1"), &none()).unwrap();
        assert_eq!(
            p.reason(),
            "operation \"ReplCoord-3\" is the server's own work (no client connection: ReplCoord-3)"
        );
        // A client connection shown with an empty address counts as none (protected side).
        idle.insert("client", "");
        assert_eq!(
            protection(&facts(&idle), &SessionSettings::defaults("i1"), &none()).unwrap().kind,
            ProtectionKind::Internal
        );
        // A unix-socket client has a connectionId: not internal.
        let unix = doc! {"type": "op", "desc": "conn9", "connectionId": 9, "opid": 77, "active": true};
        assert_eq!(protection(&facts(&unix), &SessionSettings::defaults("i1"), &none()), None);
    }

    #[test]
    fn idle_sessions_and_cursors_are_not_internal() {
        let session = doc! {
            "type": "idleSession", "host": "db1:27017", "desc": "inactive transaction", "active": false,
            "lsid": lsid(), "transaction": {"parameters": {"txnNumber": 1_i64, "autocommit": false}},
            "effectiveUsers": [{"user": "app", "db": "admin"}],
        };
        let f = facts(&session);
        assert!(!f.is_operation());
        assert_eq!(protection(&f, &SessionSettings::defaults("i1"), &none()), None);
        // The user rule still applies to them.
        let p = protection(&f, &settings(&["app"], &[]), &none()).unwrap();
        assert_eq!(p.kind, ProtectionKind::ProtectedUser("app@admin".into()));
        let cursor = doc! {"type": "idleCursor", "host": "db1:27017", "ns": "shop.orders", "lsid": lsid(),
        "cursor": {"cursorId": 123_i64, "createdDate": DateTime::from_millis(0)}};
        assert_eq!(protection(&facts(&cursor), &SessionSettings::defaults("i1"), &none()), None);
    }

    #[test]
    fn docplanes_own_connections_are_protected_first() {
        let own: HashSet<i64> = [42, 7].into_iter().collect();
        let p = protection(&facts(&app_find()), &settings(&["app"], &["shop-app"]), &own).unwrap();
        assert_eq!(p.kind, ProtectionKind::Docplane, "before the user and app rules");
        assert_eq!(p.reason(), "operation 5678 is docplane's own (connection 42 to the node is docplane's)");
        // The embedded node reports connectionId as int32, mongod as int32 or int64.
        let mut entry = app_find();
        entry.insert("connectionId", 42_i64);
        assert_eq!(
            protection(&facts(&entry), &SessionSettings::defaults("i1"), &own).unwrap().kind,
            ProtectionKind::Docplane
        );
        entry.insert("connectionId", 43_i64);
        assert_eq!(protection(&facts(&entry), &SessionSettings::defaults("i1"), &own), None);
    }

    #[test]
    fn protected_users_match_name_or_name_at_db_exactly() {
        let f = facts(&app_find());
        for (entry, protected) in [
            ("app", true),
            ("app@admin", true),
            ("app@shop", false),
            ("App", false),
            ("ap", false),
            ("app@", false),
            ("app@admin ", false),
        ] {
            let p = protection(&f, &settings(&["backup", entry], &[]), &none());
            assert_eq!(p.is_some(), protected, "{entry:?}");
        }
        let p = protection(&f, &settings(&["app@admin"], &[]), &none()).unwrap();
        assert_eq!(
            p.reason(),
            "operation 5678 runs as user app@admin, which the instance's session settings protect"
        );
        // Any of several effective users; a user name containing `@` (LDAP, x.509).
        let mut entry = app_find();
        entry.insert(
            "effectiveUsers",
            vec![
                Bson::Document(doc! {"user": "reader", "db": "admin"}),
                Bson::Document(doc! {"user": "alice@corp.example", "db": "$external"}),
            ],
        );
        let f = facts(&entry);
        assert_eq!(f.users.len(), 2);
        for entry in ["alice@corp.example", "alice@corp.example@$external"] {
            let p = protection(&f, &settings(&[entry], &[]), &none()).unwrap();
            assert_eq!(
                p.kind,
                ProtectionKind::ProtectedUser("alice@corp.example@$external".into()),
                "{entry}"
            );
        }
        assert_eq!(protection(&f, &settings(&["alice"], &[]), &none()), None);
    }

    #[test]
    fn protected_apps_match_exactly_from_either_field() {
        let p = protection(&facts(&app_find()), &settings(&[], &["shop-app"]), &none()).unwrap();
        assert_eq!(p.kind, ProtectionKind::ProtectedApp("shop-app".into()));
        assert_eq!(
            p.reason(),
            "operation 5678 comes from application \"shop-app\", which the instance's session settings protect"
        );
        assert_eq!(protection(&facts(&app_find()), &settings(&[], &["Shop-App", "shop"]), &none()), None);
        // Only `clientMetadata.application.name` (4.x entries without `appName`).
        let mut entry = app_find();
        entry.remove("appName");
        assert_eq!(facts(&entry).app_name.as_deref(), Some("shop-app"));
        assert!(protection(&facts(&entry), &settings(&[], &["shop-app"]), &none()).is_some());
        // The user rule is reported before the app rule.
        let p = protection(&facts(&entry), &settings(&["app"], &["shop-app"]), &none()).unwrap();
        assert!(matches!(p.kind, ProtectionKind::ProtectedUser(_)));
    }

    #[test]
    fn a_mongos_entry() {
        // `$currentOp` through mongos: the shard's operation, its client as `client_s`, the
        // original user effective and mongos's `__system` in `runBy` only.
        let entry = doc! {
            "shard": "shard01", "type": "op", "host": "shard01-a:27018", "desc": "conn12", "connectionId": 12,
            "client_s": "10.0.0.9:40000",
            "clientMetadata": {"application": {"name": "reporting"}, "driver": {"name": "PyMongo", "version": "4.6.1"},
                               "mongos": {"host": "router1:27017", "client": "10.0.0.7:55555", "version": "7.0.5"}},
            "active": true, "currentOpTime": "2024-03-13T10:00:00.000+00:00",
            "effectiveUsers": [{"user": "analyst", "db": "admin"}], "runBy": [{"user": "__system", "db": "local"}],
            "opid": "shard01:4321", "secs_running": 12_i64, "microsecs_running": 12_000_000_i64, "op": "command",
            "ns": "shop.orders", "command": {"aggregate": "orders", "pipeline": [], "cursor": {}, "$db": "shop"},
        };
        let f = facts(&entry);
        assert_eq!(f.opid.as_deref(), Some("shard01:4321"));
        assert_eq!(f.client.as_deref(), Some("10.0.0.9:40000"));
        assert_eq!(f.app_name.as_deref(), Some("reporting"));
        assert_eq!(
            protection(&f, &SessionSettings::defaults("i1"), &none()),
            None,
            "runBy is not the effective user"
        );
        let p = protection(&f, &settings(&[], &["reporting"]), &none()).unwrap();
        assert_eq!(p.operation, "operation shard01:4321");
    }

    #[test]
    fn cluster_members_are_protected() {
        // A secondary fetching the oplog from the primary.
        let entry = doc! {
            "type": "op", "host": "db1:27017", "desc": "conn7", "connectionId": 7, "client": "10.0.0.2:45678",
            "clientMetadata": {"driver": {"name": "NetworkInterfaceTL-ReplNetwork", "version": "7.0.5"},
                               "os": {"type": "Linux"}},
            "active": true, "effectiveUsers": [{"user": "__system", "db": "local"}], "opid": 99,
            "op": "getmore", "ns": "local.oplog.rs",
            "command": {"getMore": 8_123_i64, "collection": "oplog.rs", "batchSize": 13981010,
                        "maxTimeMS": 5000_i64, "term": 3_i64, "lastKnownCommittedOpTime": {"ts": Timestamp { time: 1, increment: 1 }, "t": 3_i64}, "$db": "local"},
        };
        let p = protection(&facts(&entry), &SessionSettings::defaults("i1"), &none()).unwrap();
        assert_eq!(p.kind, ProtectionKind::ClusterMember("__system@local".into()));
        assert_eq!(
            p.reason(),
            "operation 99 runs as the cluster's internal user __system@local (replication or cluster maintenance)"
        );
    }

    #[test]
    fn odd_field_types_count_as_absent() {
        let entry = doc! {"type": "op", "opid": 1.5, "connectionId": "12", "client": 5, "appName": 3,
        "effectiveUsers": [{"user": 1, "db": "x"}, "bob", {"user": "carol"}], "desc": true};
        let f = facts(&entry);
        assert_eq!(
            f,
            OpFacts {
                opid: None,
                entry_type: Some("op".into()),
                client: None,
                connection_id: None,
                users: vec![OpUser { user: "carol".into(), db: String::new() }],
                app_name: None,
                desc: None,
            }
        );
        let p = protection(&f, &SessionSettings::defaults("i1"), &none()).unwrap();
        assert_eq!(p.reason(), "the operation is the server's own work (no client connection)");
        assert!(user_matches("carol", &f.users[0]));
        assert!(user_matches("carol@", &f.users[0]), "a user without db matches `name@`");
        assert_eq!(facts(&doc! {"opid": 3.0}).opid.as_deref(), Some("3"));
    }
}
