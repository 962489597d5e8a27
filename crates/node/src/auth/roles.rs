//! MongoDB's privilege model, written once: privilege actions, resources, the built-in roles as
//! privilege sets, and [`is_authorized`], the one function every authorization decision calls.
//!
//! The role definitions follow mongod's `src/mongo/db/auth/builtin_roles.yml` (the MongoDB 8.x
//! tree), restricted to the actions this node's commands check; an action no command of this node
//! checks is left out of the enum rather than granted for show. A privilege pairs a resource
//! pattern with actions:
//! - `Db(d)`: the non-system collections of database `d` (mongod's `database` match type);
//! - `AnyNormal`: every database but `local` and `config` (`any_normal`; mongod lists those two
//!   databases separately where a role covers them);
//! - `Cluster`: the cluster resource;
//! - `Any`: everything (`any`, and the special-cased `__system`).
//!
//! Database roles (`read`, `readWrite`, `dbAdmin`, `userAdmin`, `dbOwner`) exist in every
//! database and grant on it; all other built-in roles exist only in `admin`. `root` is what
//! mongod's is (clusterAdmin, userAdminAnyDatabase, dbAdminAnyDatabase, readWriteAnyDatabase,
//! backup, restore, validate on anything), not "everything": it has no `impersonate`, which only
//! `__system` holds. The node has no user-defined roles (`createRole` is not a command here).

use serde::{Deserialize, Serialize};

macro_rules! actions {
    ($($variant:ident = $name:literal,)*) => {
        /// A privilege action, as MongoDB's manual ("Privilege Actions") names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// mongod's name for the action (`connectionStatus` shows it).
            pub fn name(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    // query and write
    Find = "find",
    Insert = "insert",
    Update = "update",
    Remove = "remove",
    BypassDocumentValidation = "bypassDocumentValidation",
    // database management
    CreateCollection = "createCollection",
    DropCollection = "dropCollection",
    CreateIndex = "createIndex",
    DropIndex = "dropIndex",
    DropDatabase = "dropDatabase",
    RenameCollectionSameDb = "renameCollectionSameDB",
    CollMod = "collMod",
    ConvertToCapped = "convertToCapped",
    ListCollections = "listCollections",
    ListIndexes = "listIndexes",
    CollStats = "collStats",
    DbStats = "dbStats",
    DbHash = "dbHash",
    Validate = "validate",
    KillCursors = "killCursors",
    // user management
    ChangeCustomData = "changeCustomData",
    ChangePassword = "changePassword",
    ChangeOwnCustomData = "changeOwnCustomData",
    ChangeOwnPassword = "changeOwnPassword",
    CreateUser = "createUser",
    DropUser = "dropUser",
    CreateRole = "createRole",
    DropRole = "dropRole",
    GrantRole = "grantRole",
    RevokeRole = "revokeRole",
    ViewUser = "viewUser",
    ViewRole = "viewRole",
    // deployment and sessions (cluster resource)
    ListDatabases = "listDatabases",
    Inprog = "inprog",
    Killop = "killop",
    KillAnyCursor = "killAnyCursor",
    KillAnySession = "killAnySession",
    ListSessions = "listSessions",
    Impersonate = "impersonate",
    ServerStatus = "serverStatus",
    HostInfo = "hostInfo",
    GetCmdLineOpts = "getCmdLineOpts",
    GetLog = "getLog",
    GetParameter = "getParameter",
    SetParameter = "setParameter",
    GetDefaultRwConcern = "getDefaultRWConcern",
    ReplSetGetStatus = "replSetGetStatus",
    Shutdown = "shutdown",
    InvalidateUserCache = "invalidateUserCache",
}

/// What a command asks an action on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The non-system collections of one database.
    Db(String),
    /// The cluster (server-wide actions).
    Cluster,
    /// Every normal database at once (mongod's `forAnyNormalResource`): held only through an
    /// `AnyNormal` or `Any` privilege, never through privileges on single databases.
    AnyNormal,
}

/// A role granted to a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleRef {
    pub role: String,
    pub db: String,
}

/// What a privilege of a role applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// One database (its non-system collections).
    Db(String),
    /// Every database but `local` and `config`.
    AnyNormal,
    /// The cluster resource.
    Cluster,
    /// Every resource.
    Any,
}

impl Pattern {
    fn matches(&self, resource: &Resource) -> bool {
        match (self, resource) {
            (Pattern::Any, _) => true,
            (Pattern::Cluster, Resource::Cluster) => true,
            (Pattern::Db(p), Resource::Db(d)) => p == d,
            (Pattern::AnyNormal, Resource::Db(d)) => d != "local" && d != "config",
            (Pattern::AnyNormal, Resource::AnyNormal) => true,
            _ => false,
        }
    }

    /// The resource document mongod shows for the pattern (`connectionStatus`, `showPrivileges`).
    pub fn to_doc(&self) -> bson::Document {
        match self {
            Pattern::Db(d) => bson::doc! {"db": d, "collection": ""},
            Pattern::AnyNormal => bson::doc! {"db": "", "collection": ""},
            Pattern::Cluster => bson::doc! {"cluster": true},
            Pattern::Any => bson::doc! {"anyResource": true},
        }
    }
}

use Action::*;

// The action lists of builtin_roles.yml (anchors `readRoleActions` and so on).
const READ: &[Action] = &[CollStats, DbHash, DbStats, Find, KillCursors, ListCollections, ListIndexes];
const READ_WRITE_EXTRA: &[Action] = &[
    ConvertToCapped,
    CreateCollection,
    CreateIndex,
    DropCollection,
    DropIndex,
    Insert,
    Remove,
    RenameCollectionSameDb,
    Update,
];
const USER_ADMIN: &[Action] = &[
    ChangeCustomData,
    ChangePassword,
    CreateUser,
    CreateRole,
    DropUser,
    DropRole,
    GrantRole,
    RevokeRole,
    ViewUser,
    ViewRole,
];
const DB_ADMIN: &[Action] = &[
    BypassDocumentValidation,
    CollMod,
    CollStats,
    ConvertToCapped,
    CreateCollection,
    DbStats,
    DropCollection,
    DropDatabase,
    DropIndex,
    CreateIndex,
    ListCollections,
    ListIndexes,
    RenameCollectionSameDb,
    Validate,
];
const CLUSTER_MONITOR_CLUSTER: &[Action] = &[
    GetCmdLineOpts,
    GetDefaultRwConcern,
    GetLog,
    GetParameter,
    HostInfo,
    ListDatabases,
    ListSessions,
    ReplSetGetStatus,
    ServerStatus,
    Inprog,
];
const CLUSTER_MONITOR_DB: &[Action] = &[CollStats, DbStats];
const HOST_MANAGER_CLUSTER: &[Action] =
    &[SetParameter, Shutdown, InvalidateUserCache, KillAnyCursor, KillAnySession, Killop];
const CLUSTER_MANAGER_CLUSTER: &[Action] = &[ReplSetGetStatus, ListSessions, GetDefaultRwConcern];
const RESTORE_WRITE: &[Action] = &[
    BypassDocumentValidation,
    CollMod,
    ConvertToCapped,
    CreateCollection,
    CreateIndex,
    DropCollection,
    Insert,
];

/// Adds the privileges of `role@db` to `out`; false when no such built-in role exists.
fn add_role(role: &str, db: &str, out: &mut Vec<(Pattern, Action)>) -> bool {
    let on = |out: &mut Vec<(Pattern, Action)>, p: Pattern, actions: &[Action]| {
        out.extend(actions.iter().map(|a| (p.clone(), *a)));
    };
    let this = || Pattern::Db(db.to_owned());
    match role {
        "read" => on(out, this(), READ),
        "readWrite" => {
            on(out, this(), READ);
            on(out, this(), READ_WRITE_EXTRA);
        }
        "dbAdmin" => on(out, this(), DB_ADMIN),
        "userAdmin" => on(out, this(), USER_ADMIN),
        "dbOwner" => {
            for r in ["readWrite", "dbAdmin", "userAdmin"] {
                add_role(r, db, out);
            }
        }
        _ if db != "admin" => return false,
        "readAnyDatabase" => {
            on(out, Pattern::AnyNormal, READ);
            on(out, Pattern::Cluster, &[ListDatabases]);
        }
        "readWriteAnyDatabase" => {
            add_role("readAnyDatabase", db, out);
            on(out, Pattern::AnyNormal, READ);
            on(out, Pattern::AnyNormal, READ_WRITE_EXTRA);
        }
        "userAdminAnyDatabase" => {
            on(out, Pattern::AnyNormal, USER_ADMIN);
            on(out, Pattern::Db("local".into()), USER_ADMIN);
            on(out, Pattern::Db("config".into()), USER_ADMIN);
            on(out, Pattern::Cluster, &[ListDatabases, InvalidateUserCache, ViewUser]);
        }
        "dbAdminAnyDatabase" => {
            on(out, Pattern::Cluster, &[ListDatabases]);
            on(out, Pattern::AnyNormal, DB_ADMIN);
        }
        "clusterMonitor" => {
            add_role("read", "config", out);
            add_role("read", "local", out);
            on(out, Pattern::Cluster, CLUSTER_MONITOR_CLUSTER);
            on(out, Pattern::AnyNormal, CLUSTER_MONITOR_DB);
            on(out, Pattern::Db("config".into()), CLUSTER_MONITOR_DB);
            on(out, Pattern::Db("local".into()), CLUSTER_MONITOR_DB);
        }
        "hostManager" => {
            on(out, Pattern::Cluster, HOST_MANAGER_CLUSTER);
            on(out, Pattern::AnyNormal, &[KillCursors]);
        }
        "clusterManager" => {
            add_role("read", "config", out);
            on(out, Pattern::Cluster, CLUSTER_MANAGER_CLUSTER);
            on(out, Pattern::Db("config".into()), &[Insert, Update, Remove]);
            on(out, Pattern::Db("local".into()), &[Insert, Update, Remove]);
        }
        "clusterAdmin" => {
            for r in ["clusterMonitor", "hostManager", "clusterManager"] {
                add_role(r, db, out);
            }
            on(out, Pattern::AnyNormal, &[DropDatabase]);
        }
        // __queryableBackup, which backup inherits.
        "backup" => {
            on(out, Pattern::Any, &[CollStats, ListCollections, ListIndexes]);
            on(out, Pattern::AnyNormal, &[Find]);
            on(out, Pattern::Cluster, &[GetParameter, ListDatabases, ServerStatus]);
            on(out, Pattern::Db("config".into()), &[Find]);
            on(out, Pattern::Db("local".into()), &[Find]);
        }
        "restore" => {
            on(out, Pattern::Cluster, &[GetParameter]);
            on(out, Pattern::Db("local".into()), RESTORE_WRITE);
            on(out, Pattern::Db("config".into()), RESTORE_WRITE);
            on(out, Pattern::Any, &[ListCollections]);
            on(out, Pattern::AnyNormal, RESTORE_WRITE);
            on(out, Pattern::AnyNormal, USER_ADMIN);
        }
        "root" => {
            for r in [
                "clusterAdmin",
                "userAdminAnyDatabase",
                "dbAdminAnyDatabase",
                "readWriteAnyDatabase",
                "backup",
                "restore",
            ] {
                add_role(r, db, out);
            }
            on(out, Pattern::Any, &[Validate]);
        }
        // mongod special-cases __system with every action on every resource.
        "__system" => on(out, Pattern::Any, Action::ALL),
        _ => return false,
    }
    true
}

/// The privileges of one role, or `None` when `role@db` is no built-in role.
pub fn role_privileges(role: &RoleRef) -> Option<Vec<(Pattern, Action)>> {
    let mut out = Vec::new();
    add_role(&role.role, &role.db, &mut out).then_some(out)
}

/// Whether `role@db` names a built-in role.
pub fn role_exists(role: &RoleRef) -> bool {
    role_privileges(role).is_some()
}

/// The one authorization check: whether any of `roles` grants `action` on `resource`.
pub fn is_authorized(roles: &[RoleRef], resource: &Resource, action: Action) -> bool {
    roles.iter().filter_map(role_privileges).flatten().any(|(p, a)| a == action && p.matches(resource))
}

/// Whether any of `roles` grants any action on `resource` (what `listDatabases` shows a user
/// without the listDatabases action).
pub fn has_any_privilege(roles: &[RoleRef], resource: &Resource) -> bool {
    roles.iter().filter_map(role_privileges).flatten().any(|(p, _)| p.matches(resource))
}

/// Every privilege `roles` grant, grouped by resource pattern (actions sorted, deduplicated), as
/// `connectionStatus` with `showPrivileges` lists them.
pub fn privileges_of(roles: &[RoleRef]) -> Vec<(Pattern, Vec<Action>)> {
    let mut map: std::collections::BTreeMap<Pattern, std::collections::BTreeSet<Action>> =
        std::collections::BTreeMap::new();
    for (p, a) in roles.iter().filter_map(role_privileges).flatten() {
        map.entry(p).or_default().insert(a);
    }
    map.into_iter().map(|(p, a)| (p, a.into_iter().collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(role: &str, db: &str) -> RoleRef {
        RoleRef { role: role.into(), db: db.into() }
    }
    fn db(d: &str) -> Resource {
        Resource::Db(d.into())
    }
    fn grants(role: &RoleRef, res: &Resource, a: Action) -> bool {
        is_authorized(std::slice::from_ref(role), res, a)
    }

    #[test]
    fn db_roles_are_scoped() {
        assert!(grants(&r("read", "a"), &db("a"), Find));
        assert!(!grants(&r("read", "a"), &db("b"), Find));
        assert!(!grants(&r("read", "a"), &db("a"), Insert));
        assert!(grants(&r("readWrite", "a"), &db("a"), Insert));
        assert!(!grants(&r("readWrite", "a"), &Resource::Cluster, Inprog));
        assert!(grants(&r("dbAdmin", "a"), &db("a"), DropDatabase));
        assert!(!grants(&r("dbAdmin", "a"), &db("a"), Find));
        assert!(grants(&r("userAdmin", "a"), &db("a"), GrantRole));
        assert!(!grants(&r("userAdmin", "a"), &db("admin"), GrantRole));
        assert!(grants(&r("dbOwner", "a"), &db("a"), Find));
        assert!(grants(&r("dbOwner", "a"), &db("a"), CreateUser));
    }

    #[test]
    fn cluster_roles() {
        assert!(grants(&r("clusterMonitor", "admin"), &Resource::Cluster, Inprog));
        assert!(grants(&r("clusterMonitor", "admin"), &Resource::Cluster, ListSessions));
        assert!(!grants(&r("clusterMonitor", "admin"), &Resource::Cluster, Killop));
        assert!(grants(&r("hostManager", "admin"), &Resource::Cluster, Killop));
        assert!(grants(&r("hostManager", "admin"), &Resource::Cluster, KillAnySession));
        assert!(grants(&r("hostManager", "admin"), &Resource::Cluster, KillAnyCursor));
        assert!(!grants(&r("hostManager", "test"), &Resource::Cluster, Killop));
        assert!(grants(&r("root", "admin"), &db("x"), Insert));
        assert!(grants(&r("root", "admin"), &db("x"), GrantRole));
        assert!(grants(&r("readAnyDatabase", "admin"), &db("x"), Find));
        assert!(!grants(&r("readAnyDatabase", "admin"), &db("local"), Find));
        assert!(!grants(&r("readAnyDatabase", "admin"), &db("x"), Insert));
        assert!(grants(&r("userAdminAnyDatabase", "admin"), &db("x"), CreateUser));
        assert!(grants(&r("clusterAdmin", "admin"), &Resource::Cluster, Killop));
        assert!(grants(&r("clusterAdmin", "admin"), &db("x"), DropDatabase));
    }

    #[test]
    fn impersonate_is_only_for_system() {
        for role in ["root", "clusterAdmin", "hostManager", "userAdminAnyDatabase"] {
            assert!(!grants(&r(role, "admin"), &Resource::Cluster, Impersonate), "{role}");
        }
        assert!(grants(&r("__system", "admin"), &Resource::Cluster, Impersonate));
    }

    #[test]
    fn change_own_password_comes_with_no_built_in_role() {
        // mongod grants changeOwnPassword/changeOwnCustomData only through user-defined roles;
        // userAdmin and root change passwords with changePassword instead.
        for role in ["read", "readWrite", "dbAdmin", "userAdmin", "dbOwner"] {
            assert!(!grants(&r(role, "a"), &db("a"), ChangeOwnPassword), "{role}");
            assert!(!grants(&r(role, "a"), &db("a"), ChangeOwnCustomData), "{role}");
        }
        assert!(!grants(&r("root", "admin"), &db("a"), ChangeOwnPassword));
        assert!(grants(&r("root", "admin"), &db("a"), ChangePassword));
    }

    #[test]
    fn role_existence() {
        assert!(role_exists(&r("readWrite", "x")));
        assert!(role_exists(&r("root", "admin")));
        assert!(!role_exists(&r("root", "x")));
        assert!(!role_exists(&r("nope", "admin")));
    }

    #[test]
    fn privileges_are_grouped() {
        let p = privileges_of(&[r("read", "a"), r("readWrite", "a")]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, Pattern::Db("a".into()));
        assert!(p[0].1.contains(&Find) && p[0].1.contains(&Insert));
        assert_eq!(p[0].1.iter().filter(|a| **a == Find).count(), 1);
    }
}
