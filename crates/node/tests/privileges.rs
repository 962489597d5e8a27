//! MongoDB's privilege model at the node's boundary, with the official Rust driver: role grants,
//! `$currentOp`/`currentOp` visibility, session kills and ownership, cursors, `$listSessions`,
//! and the command table behind `listCommands`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, code, start};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};

/// Creates `user` in `db` with `roles` (as root) and returns a client logged in as it.
async fn user(n: &TestNode, root: &Client, db: &str, user: &str, roles: Bson) -> Client {
    root.database(db).run_command(doc! {"createUser": user, "pwd": "pw-123", "roles": roles}).await.unwrap();
    let uri = format!(
        "mongodb://{user}:pw-123@{}/?authSource={db}&appName={user}&serverSelectionTimeoutMS=5000",
        n.handle.local_addr()
    );
    Client::with_uri_str(uri).await.unwrap()
}

async fn aggregate(c: &Client, db: &str, pipeline: Vec<Document>) -> mongodb::error::Result<Vec<Document>> {
    c.database(db).aggregate(pipeline).await?.try_collect().await
}

/// Waits until root's `$currentOp` shows an op running `sleep` for `app`, and returns it.
async fn wait_for_sleep(root: &Client, app: &str) -> Document {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ops = aggregate(
            root,
            "admin",
            vec![
                doc! {"$currentOp": {"allUsers": true}},
                doc! {"$match": {"appName": app, "command.sleep": {"$exists": true}}},
            ],
        )
        .await
        .unwrap();
        if let Some(op) = ops.into_iter().next() {
            return op;
        }
        assert!(Instant::now() < deadline, "no sleep of {app} appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn granting_a_role_needs_grant_role_on_its_database() {
    let n = start().await;
    let root = n.root("root").await;
    let ua = user(&n, &root, "t", "ua", Bson::Array(vec!["userAdmin".into()])).await;
    let t = ua.database("t");
    // a userAdmin of t may not make itself (or a new user) root
    let root_role = doc! {"role": "root", "db": "admin"};
    let e = t.run_command(doc! {"grantRolesToUser": "ua", "roles": [root_role.clone()]}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    let e = t
        .run_command(doc! {"createUser": "evil", "pwd": "pw", "roles": [root_role.clone()]})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // updateUser with roles needs revokeRole on every database, which userAdmin@t lacks
    let e = t.run_command(doc! {"updateUser": "ua", "roles": ["read"]}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // nothing changed
    let info = root.database("t").run_command(doc! {"usersInfo": "ua"}).await.unwrap();
    let roles =
        info.get_array("users").unwrap()[0].as_document().unwrap().get_array("roles").unwrap().clone();
    assert_eq!(roles, vec![Bson::Document(doc! {"role": "userAdmin", "db": "t"})]);
    // roles of its own database it may grant, and users of it create and revoke
    t.run_command(doc! {"createUser": "r", "pwd": "pw", "roles": ["read"]}).await.unwrap();
    t.run_command(doc! {"grantRolesToUser": "r", "roles": ["readWrite"]}).await.unwrap();
    t.run_command(doc! {"revokeRolesFromUser": "r", "roles": ["read"]}).await.unwrap();
    let e = t.run_command(doc! {"revokeRolesFromUser": "r", "roles": [root_role]}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // and its own password: changePassword on t
    t.run_command(doc! {"updateUser": "ua", "pwd": "pw-456"}).await.unwrap();
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn current_op_shows_own_operations_and_others_with_inprog() {
    let n = start().await;
    let root = n.root("root").await;
    let plain =
        user(&n, &root, "admin", "plain", Bson::Array(vec![doc! {"role": "readWrite", "db": "t"}.into()]))
            .await;
    let mon = user(&n, &root, "admin", "mon", Bson::Array(vec!["clusterMonitor".into()])).await;
    let p2 = plain.clone();
    let sleeper =
        tokio::spawn(
            async move { p2.database("admin").run_command(doc! {"sleep": 1, "millis": 5_000}).await },
        );
    let op = wait_for_sleep(&root, "plain").await;
    let opid = op.get("opid").unwrap().clone();
    // a user without inprog sees its own ops with $currentOp (allUsers: false) ...
    let mine = aggregate(&plain, "admin", vec![doc! {"$currentOp": {}}]).await.unwrap();
    assert!(mine.iter().any(|d| d.get("opid") == Some(&opid)), "{mine:?}");
    assert!(mine.iter().all(|d| {
        d.get_array("effectiveUsers").unwrap()[0].as_document().unwrap().get_str("user").unwrap() == "plain"
    }));
    // ... and the currentOp command with $ownOps, but neither without
    let e = plain.database("admin").run_command(doc! {"currentOp": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    let e = aggregate(&plain, "admin", vec![doc! {"$currentOp": {"allUsers": true}}]).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // clusterMonitor (inprog) sees the other user's op both ways
    let all = aggregate(&mon, "admin", vec![doc! {"$currentOp": {"allUsers": true}}]).await.unwrap();
    assert!(all.iter().any(|d| d.get("opid") == Some(&opid)), "{all:?}");
    let r = mon.database("admin").run_command(doc! {"currentOp": 1, "opid": opid.clone()}).await.unwrap();
    assert_eq!(r.get_array("inprog").unwrap().len(), 1);
    // but may not kill it (killop is hostManager's)
    let e = mon.database("admin").run_command(doc! {"killOp": 1, "op": opid.clone()}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    root.database("admin").run_command(doc! {"killOp": 1, "op": opid}).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_sessions_of_another_users_uid_needs_kill_any_session() {
    let n = start().await;
    let root = n.root("root").await;
    let rw = || Bson::Array(vec![doc! {"role": "readWrite", "db": "t"}.into()]);
    let victim = user(&n, &root, "admin", "victim", rw()).await;
    let other = user(&n, &root, "admin", "other", rw()).await;
    let hm = user(&n, &root, "admin", "hm", Bson::Array(vec!["hostManager".into()])).await;
    let v2 = victim.clone();
    let sleeper = tokio::spawn(async move {
        let mut s = v2.start_session().await.unwrap();
        v2.database("admin").run_command(doc! {"sleep": 1, "millis": 20_000}).session(&mut s).await
    });
    let op = wait_for_sleep(&root, "victim").await;
    let lsid = op.get_document("lsid").unwrap().clone();
    let (id, uid) = (lsid.get("id").unwrap().clone(), lsid.get("uid").unwrap().clone());
    // naming another user's uid without killAnySession is refused, not ignored
    let e = other
        .database("admin")
        .run_command(doc! {"killSessions": [{"id": id.clone(), "uid": uid.clone()}]})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // an id alone is the caller's own session of that id: the victim's op keeps running
    other.database("admin").run_command(doc! {"killSessions": [{"id": id.clone()}]}).await.unwrap();
    hm.database("admin").run_command(doc! {"killSessions": [{"id": id.clone()}]}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sleeper.is_finished());
    // with killAnySession and the uid, it is killed
    hm.database("admin").run_command(doc! {"killSessions": [{"id": id, "uid": uid}]}).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
    assert_eq!(code(&r.unwrap_err()), Some(11601));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pattern_kills_by_users_or_roles_need_impersonate() {
    let n = start().await;
    let root = n.root("root").await;
    let hm = user(&n, &root, "admin", "hm", Bson::Array(vec!["hostManager".into()])).await;
    let a = hm.database("admin");
    for pattern in
        [doc! {"users": [{"user": "root", "db": "admin"}]}, doc! {"roles": [{"role": "root", "db": "admin"}]}]
    {
        for c in [&a, &root.database("admin")] {
            let e = c.run_command(doc! {"killAllSessionsByPattern": [pattern.clone()]}).await.unwrap_err();
            assert_eq!(code(&e), Some(13), "{pattern}: {e}");
        }
    }
    // patterns without impersonation data work with killAnySession
    a.run_command(doc! {"killAllSessionsByPattern": [{"uid": Bson::Binary(mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![0; 32] })}]}).await.unwrap();
    // killAllSessions needs killAnySession even for the caller's own name
    let plain = user(&n, &root, "admin", "plain", Bson::Array(vec![])).await;
    let e = plain
        .database("admin")
        .run_command(doc! {"killAllSessions": [{"user": "plain", "db": "admin"}]})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    a.run_command(doc! {"killAllSessions": [{"user": "plain", "db": "admin"}]}).await.unwrap();
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_sessions_needs_authentication_and_start_session_works() {
    let n = start().await;
    let root = n.root("root").await;
    let anon = n.anon().await;
    let id = Bson::Binary(mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Uuid,
        bytes: vec![7; 16],
    });
    let e = anon.database("admin").run_command(doc! {"endSessions": [{"id": id.clone()}]}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    let e = anon.database("admin").run_command(doc! {"startSession": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // startSession answers {id: {id: UUID}, timeoutMinutes} and the session is listed as the caller's
    let r = root.database("admin").run_command(doc! {"startSession": 1}).await.unwrap();
    assert_eq!(r.get_i32("timeoutMinutes").unwrap(), 30);
    let sid = r.get_document("id").unwrap().get("id").unwrap().clone();
    let listed = aggregate(&root, "admin", vec![doc! {"$listLocalSessions": {}}]).await.unwrap();
    let mine = listed.iter().find(|d| d.get_document("_id").unwrap().get("id") == Some(&sid)).unwrap();
    assert_eq!(mine.get_document("user").unwrap().get_str("name").unwrap(), "root@admin");
    root.database("admin").run_command(doc! {"endSessions": [{"id": sid.clone()}]}).await.unwrap();
    let listed = aggregate(&root, "admin", vec![doc! {"$listLocalSessions": {}}]).await.unwrap();
    assert!(listed.iter().all(|d| d.get_document("_id").unwrap().get("id") != Some(&sid)));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_sessions_stages_show_own_sessions_and_others_with_list_sessions() {
    let n = start().await;
    let root = n.root("root").await;
    let plain =
        user(&n, &root, "admin", "plain", Bson::Array(vec![doc! {"role": "readWrite", "db": "t"}.into()]))
            .await;
    let mon = user(&n, &root, "admin", "mon", Bson::Array(vec!["clusterMonitor".into()])).await;
    plain.database("admin").run_command(doc! {"startSession": 1}).await.unwrap();
    root.database("admin").run_command(doc! {"startSession": 1}).await.unwrap();
    let names = |docs: &[Document]| -> Vec<String> {
        docs.iter()
            .filter_map(|d| {
                d.get_document("user").ok().and_then(|u| u.get_str("name").ok()).map(str::to_owned)
            })
            .collect()
    };
    let own = aggregate(&plain, "admin", vec![doc! {"$listLocalSessions": {}}]).await.unwrap();
    assert!(!own.is_empty() && names(&own).iter().all(|u| u == "plain@admin"), "{own:?}");
    let sessions = || plain.database("config").collection::<Document>("system.sessions");
    let own: Vec<Document> =
        sessions().aggregate(vec![doc! {"$listSessions": {}}]).await.unwrap().try_collect().await.unwrap();
    assert!(!own.is_empty() && names(&own).iter().all(|u| u == "plain@admin"), "{own:?}");
    for spec in [doc! {"allUsers": true}, doc! {"users": [{"user": "root", "db": "admin"}]}] {
        let e =
            aggregate(&plain, "admin", vec![doc! {"$listLocalSessions": spec.clone()}]).await.unwrap_err();
        assert_eq!(code(&e), Some(13), "{e}");
        let e = sessions().aggregate(vec![doc! {"$listSessions": spec}]).await.map(|_| ()).unwrap_err();
        assert_eq!(code(&e), Some(13), "{e}");
    }
    let all = aggregate(&mon, "admin", vec![doc! {"$listLocalSessions": {"allUsers": true}}]).await.unwrap();
    let all = names(&all);
    assert!(all.contains(&"plain@admin".to_owned()) && all.contains(&"root@admin".to_owned()), "{all:?}");
    // $listSessions only on config.system.sessions, $listLocalSessions only collectionless
    let e = aggregate(&root, "admin", vec![doc! {"$listSessions": {}}]).await.unwrap_err();
    assert_eq!(code(&e), Some(73), "{e}");
    let e = root
        .database("t")
        .collection::<Document>("c")
        .aggregate(vec![doc! {"$listLocalSessions": {}}])
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(code(&e), Some(73), "{e}");
    let e = aggregate(&root, "admin", vec![doc! {"$listLocalSessions": {"bogus": 1}}]).await.unwrap_err();
    assert_eq!(code(&e), Some(40415), "{e}");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_manager_kills_any_cursor_others_only_their_own() {
    let n = start().await;
    let root = n.root("root").await;
    root.database("t").collection::<Document>("c").insert_many((0..5).map(|i| doc! {"i": i})).await.unwrap();
    let read = || Bson::Array(vec![doc! {"role": "read", "db": "t"}.into()]);
    let owner = user(&n, &root, "admin", "owner", read()).await;
    let reader = user(&n, &root, "admin", "reader", read()).await;
    let hm = user(&n, &root, "admin", "hm", Bson::Array(vec!["hostManager".into()])).await;
    let open = || async {
        let r = owner.database("t").run_command(doc! {"find": "c", "batchSize": 1}).await.unwrap();
        r.get_document("cursor").unwrap().get_i64("id").unwrap()
    };
    let id = open().await;
    let e = reader.database("t").run_command(doc! {"killCursors": "c", "cursors": [id]}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    let r = hm.database("t").run_command(doc! {"killCursors": "c", "cursors": [id]}).await.unwrap();
    assert_eq!(r.get_array("cursorsKilled").unwrap(), &vec![Bson::Int64(id)]);
    let id = open().await;
    let r = owner.database("t").run_command(doc! {"killCursors": "c", "cursors": [id]}).await.unwrap();
    assert_eq!(r.get_array("cursorsKilled").unwrap(), &vec![Bson::Int64(id)]);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_commands_is_the_dispatch_table() {
    // access control off: every command runs far enough to show whether it is dispatched
    let n = common::start_with(tempfile::tempdir().unwrap(), false).await;
    let anon = n.anon().await;
    let admin = anon.database("admin");
    let listed = admin.run_command(doc! {"listCommands": 1}).await.unwrap();
    let listed: Vec<String> = listed.get_document("commands").unwrap().keys().cloned().collect();
    let mut table: Vec<String> = docplane_node::cmd::table::names().into_iter().map(str::to_owned).collect();
    table.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    // the test node has test commands on, so everything in the table is listed, nothing else
    assert_eq!(sorted, table);
    for alias in ["isMaster", "ismaster", "buildinfo", "findandmodify", "deleteIndexes", "startSession"] {
        assert!(listed.iter().any(|n| n == alias), "{alias} not listed");
    }
    // every listed command is dispatched (CommandNotFound for none), an unlisted one is not
    for name in &listed {
        let mut cmd = doc! {name.as_str(): 1};
        if name == "sleep" {
            cmd.insert("millis", 1);
        }
        let r = admin.run_command(cmd).await;
        if let Err(e) = r {
            assert_ne!(code(&e), Some(59), "{name}: {e}");
        }
    }
    let e = admin.run_command(doc! {"frobnicate": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(59), "{e}");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_status_shows_the_privileges_of_the_roles() {
    let n = start().await;
    let root = n.root("root").await;
    let plain =
        user(&n, &root, "admin", "plain", Bson::Array(vec![doc! {"role": "read", "db": "t"}.into()])).await;
    let st = plain
        .database("admin")
        .run_command(doc! {"connectionStatus": 1, "showPrivileges": true})
        .await
        .unwrap();
    let privs =
        st.get_document("authInfo").unwrap().get_array("authenticatedUserPrivileges").unwrap().clone();
    assert_eq!(privs.len(), 1, "{privs:?}");
    let p = privs[0].as_document().unwrap();
    assert_eq!(p.get_document("resource").unwrap(), &doc! {"db": "t", "collection": ""});
    let actions = p.get_array("actions").unwrap();
    assert!(
        actions.contains(&Bson::String("find".into())) && !actions.contains(&Bson::String("insert".into()))
    );
    n.handle.shutdown().await.unwrap();
}
