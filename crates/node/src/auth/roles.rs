//! Built-in roles and the privilege check.
//!
//! Actions are coarse-grained versions of MongoDB's privilege actions; each command names the
//! `(resource, action)` pairs it needs in `cmd::authz`. Database roles (`read`, `readWrite`, `dbAdmin`,
//! `userAdmin`, `dbOwner`) grant on their own database; the `*AnyDatabase` and cluster roles exist only in
//! `admin` and grant on every database and/or the cluster.

use serde::{Deserialize, Serialize};

/// A privilege action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Find,
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    ListCollections,
    ListIndexes,
    DbStats,
    CollStats,
    DropDatabase,
    RenameCollectionSameDb,
    KillCursors,
    /// createUser, updateUser, dropUser, grantRolesToUser, revokeRolesFromUser
    UserAdmin,
    ViewUser,
    /// updateUser of one's own password. No built-in role grants it apart from `root` (as in
    /// mongod, it comes with custom roles, which docplane does not have); `UserAdmin` covers it.
    ChangeOwnPassword,
    /// updateUser of one's own customData; like [`Action::ChangeOwnPassword`].
    ChangeOwnCustomData,
    // cluster actions
    ListDatabases,
    Inprog,
    Killop,
    KillAnySession,
    ServerStatus,
    HostInfo,
    GetCmdLineOpts,
    GetLog,
    GetParameter,
    Shutdown,
}

/// What an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    Db(String),
    Cluster,
}

/// A role granted to a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleRef {
    pub role: String,
    pub db: String,
}

use Action::*;

const READ: &[Action] = &[Find, ListCollections, ListIndexes, CollStats, DbStats, KillCursors];
const WRITE: &[Action] = &[
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    RenameCollectionSameDb,
];
const DB_ADMIN: &[Action] = &[
    CollStats,
    DbStats,
    ListCollections,
    ListIndexes,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    DropDatabase,
    RenameCollectionSameDb,
    KillCursors,
];
const USER_ADMIN: &[Action] = &[UserAdmin, ViewUser];
const CLUSTER_MONITOR: &[Action] =
    &[Inprog, ServerStatus, HostInfo, GetCmdLineOpts, GetLog, GetParameter, ListDatabases];
const HOST_MANAGER: &[Action] = &[Killop, KillAnySession, Shutdown];

/// Database-scoped built-in roles.
const DB_ROLES: &[&str] = &["read", "readWrite", "dbAdmin", "userAdmin", "dbOwner"];
/// Roles that only exist in `admin`.
const ADMIN_ROLES: &[&str] = &[
    "readAnyDatabase",
    "readWriteAnyDatabase",
    "dbAdminAnyDatabase",
    "userAdminAnyDatabase",
    "clusterMonitor",
    "hostManager",
    "clusterManager",
    "clusterAdmin",
    "root",
];

/// Whether `role@db` names a built-in role.
pub fn role_exists(role: &RoleRef) -> bool {
    DB_ROLES.contains(&role.role.as_str())
        || (role.db == "admin" && ADMIN_ROLES.contains(&role.role.as_str()))
}

fn db_actions(role: &str) -> Vec<Action> {
    match role {
        "read" => READ.to_vec(),
        "readWrite" => [READ, WRITE].concat(),
        "dbAdmin" => DB_ADMIN.to_vec(),
        "userAdmin" => USER_ADMIN.to_vec(),
        "dbOwner" => [READ, WRITE, DB_ADMIN, USER_ADMIN].concat(),
        _ => Vec::new(),
    }
}

/// (actions on every database, actions on the cluster) granted by an admin-only role.
fn any_db_actions(role: &str) -> (Vec<Action>, Vec<Action>) {
    match role {
        "readAnyDatabase" => (READ.to_vec(), vec![ListDatabases]),
        "readWriteAnyDatabase" => ([READ, WRITE].concat(), vec![ListDatabases]),
        "dbAdminAnyDatabase" => (DB_ADMIN.to_vec(), vec![ListDatabases]),
        "userAdminAnyDatabase" => (USER_ADMIN.to_vec(), vec![ListDatabases]),
        "clusterMonitor" => {
            (vec![CollStats, DbStats, ListCollections, ListIndexes], CLUSTER_MONITOR.to_vec())
        }
        "hostManager" => (Vec::new(), HOST_MANAGER.to_vec()),
        "clusterManager" => (vec![ListCollections, ListIndexes], vec![ListDatabases]),
        "clusterAdmin" => (
            vec![CollStats, DbStats, ListCollections, ListIndexes, DropDatabase],
            [CLUSTER_MONITOR, HOST_MANAGER].concat(),
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Whether `role` grants `action` on `resource`.
pub fn role_grants(role: &RoleRef, resource: &Resource, action: Action) -> bool {
    if role.role == "root" && role.db == "admin" {
        return true;
    }
    if DB_ROLES.contains(&role.role.as_str()) {
        // userAdmin in admin may administer users of any database (as in mongod: admin-scoped user docs).
        return match resource {
            Resource::Db(db) => db == &role.db && db_actions(&role.role).contains(&action),
            Resource::Cluster => false,
        };
    }
    if role.db != "admin" {
        return false;
    }
    let (any_db, cluster) = any_db_actions(&role.role);
    match resource {
        Resource::Db(_) => any_db.contains(&action),
        Resource::Cluster => cluster.contains(&action),
    }
}

/// Whether any of `roles` grants `action` on `resource`.
pub fn roles_grant(roles: &[RoleRef], resource: &Resource, action: Action) -> bool {
    roles.iter().any(|r| role_grants(r, resource, action))
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

    #[test]
    fn db_roles_are_scoped() {
        assert!(role_grants(&r("read", "a"), &db("a"), Find));
        assert!(!role_grants(&r("read", "a"), &db("b"), Find));
        assert!(!role_grants(&r("read", "a"), &db("a"), Insert));
        assert!(role_grants(&r("readWrite", "a"), &db("a"), Insert));
        assert!(!role_grants(&r("readWrite", "a"), &Resource::Cluster, Inprog));
        assert!(role_grants(&r("dbAdmin", "a"), &db("a"), DropDatabase));
        assert!(!role_grants(&r("dbAdmin", "a"), &db("a"), Find));
    }

    #[test]
    fn cluster_roles() {
        assert!(role_grants(&r("clusterMonitor", "admin"), &Resource::Cluster, Inprog));
        assert!(!role_grants(&r("clusterMonitor", "admin"), &Resource::Cluster, Killop));
        assert!(role_grants(&r("hostManager", "admin"), &Resource::Cluster, Killop));
        assert!(role_grants(&r("hostManager", "admin"), &Resource::Cluster, KillAnySession));
        assert!(!role_grants(&r("hostManager", "test"), &Resource::Cluster, Killop));
        assert!(role_grants(&r("root", "admin"), &db("x"), Insert));
        assert!(role_grants(&r("readAnyDatabase", "admin"), &db("x"), Find));
        assert!(!role_grants(&r("readAnyDatabase", "admin"), &db("x"), Insert));
        assert!(role_grants(&r("userAdminAnyDatabase", "admin"), &db("x"), UserAdmin));
    }

    #[test]
    fn change_own_password_comes_only_with_root() {
        for role in ["read", "readWrite", "dbAdmin", "userAdmin", "dbOwner"] {
            assert!(!role_grants(&r(role, "a"), &db("a"), ChangeOwnPassword), "{role}");
            assert!(!role_grants(&r(role, "a"), &db("a"), ChangeOwnCustomData), "{role}");
        }
        assert!(!role_grants(&r("readWriteAnyDatabase", "admin"), &db("a"), ChangeOwnPassword));
        assert!(role_grants(&r("root", "admin"), &db("a"), ChangeOwnPassword));
    }

    #[test]
    fn role_existence() {
        assert!(role_exists(&r("readWrite", "x")));
        assert!(role_exists(&r("root", "admin")));
        assert!(!role_exists(&r("root", "x")));
        assert!(!role_exists(&r("nope", "admin")));
    }
}
