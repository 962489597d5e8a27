//! Audit fixes, end to end: nesting-depth limit and restart, updateUser of one's own password,
//! the localhost exception and its startup warning, secrets redacted from error messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::Arc;

use common::{code, start, start_with};
use docplane_node::{Node, NodeConfig};
use mongodb::Client;
use mongodb::bson::{Document, doc};
use parking_lot::Mutex;

/// `{a: {a: ... {a: 1}}}` nested `depth` levels in all (the top document is level 1).
fn nested(depth: usize) -> Document {
    let mut d = doc! {"a": 1};
    for _ in 1..depth {
        d = doc! {"a": d};
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nesting_limit_is_enforced_and_data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = start_with(dir, true).await;
    let c = n.root("deep").await;
    let coll = c.database("t").collection::<Document>("deep");
    let mut ok = nested(99);
    ok.insert("_id", 1);
    coll.insert_one(ok.clone()).await.unwrap();
    let mut too_deep = nested(101);
    too_deep.insert("_id", 2);
    let e = coll.insert_one(too_deep).await.unwrap_err();
    assert_eq!(code(&e), Some(15), "{e}");
    // an update that would nest too deep, and an upsert
    let e = coll.update_one(doc! {"_id": 1}, doc! {"$set": {"a.a": nested(99)}}).await.unwrap_err();
    assert_eq!(code(&e), Some(15), "{e}");
    let e =
        coll.update_one(doc! {"_id": 3}, doc! {"$set": {"x": nested(100)}}).upsert(true).await.unwrap_err();
    assert_eq!(code(&e), Some(15), "{e}");
    let e = coll.find_one_and_update(doc! {"_id": 1}, doc! {"$set": {"a.a": nested(99)}}).await.unwrap_err();
    assert_eq!(code(&e), Some(15), "{e}");
    let common::TestNode { handle, dir } = n;
    handle.shutdown().await.unwrap();
    // the data directory opens again and holds exactly the accepted document
    let n = start_with(dir, true).await;
    let c = n.root("deep2").await;
    let coll = c.database("t").collection::<Document>("deep");
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    let got = coll.find_one(doc! {"_id": 1}).await.unwrap().unwrap();
    let mut expect = doc! {"_id": 1};
    expect.extend(ok.into_iter().filter(|(k, _)| k != "_id"));
    assert_eq!(got, expect);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_user_of_own_password_needs_user_admin() {
    let n = start().await;
    let root = n.root("root").await;
    let t = root.database("t");
    t.run_command(doc! {"createUser": "rw", "pwd": "pw-rw", "roles": ["readWrite"]}).await.unwrap();
    t.run_command(doc! {"createUser": "ua", "pwd": "pw-ua", "roles": ["userAdmin"]}).await.unwrap();
    let login = |u: &str, p: &str| format!("mongodb://{u}:{p}@{}/?authSource=t", n.handle.local_addr());
    let rw = Client::with_uri_str(login("rw", "pw-rw")).await.unwrap();
    let e = rw.database("t").run_command(doc! {"updateUser": "rw", "pwd": "new-pw"}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    assert!(!e.to_string().contains("new-pw"), "{e}");
    let e =
        rw.database("t").run_command(doc! {"updateUser": "rw", "customData": {"x": 1}}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    // the old password still works
    let again = Client::with_uri_str(login("rw", "pw-rw")).await.unwrap();
    again.database("t").run_command(doc! {"ping": 1}).await.unwrap();
    again.database("t").collection::<Document>("c").find_one(doc! {}).await.unwrap();
    // userAdmin may change its own password, and root anyone's
    let ua = Client::with_uri_str(login("ua", "pw-ua")).await.unwrap();
    ua.database("t").run_command(doc! {"updateUser": "ua", "pwd": "pw-ua2"}).await.unwrap();
    t.run_command(doc! {"updateUser": "rw", "pwd": "pw-rw2"}).await.unwrap();
    let rw2 = Client::with_uri_str(login("rw", "pw-rw2")).await.unwrap();
    rw2.database("t").collection::<Document>("c").find_one(doc! {}).await.unwrap();
    let ua2 = Client::with_uri_str(login("ua", "pw-ua2")).await.unwrap();
    ua2.database("t").run_command(doc! {"usersInfo": 1}).await.unwrap();
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthorized_errors_do_not_echo_passwords() {
    let n = start().await;
    let root = n.root("root").await;
    root.database("t")
        .run_command(doc! {"createUser": "reader", "pwd": "pw-r", "roles": ["read"]})
        .await
        .unwrap();
    let uri = format!("mongodb://reader:pw-r@{}/?authSource=t", n.handle.local_addr());
    let reader = Client::with_uri_str(uri).await.unwrap();
    for cmd in [
        doc! {"createUser": "evil", "pwd": "TopSecret-1", "roles": ["root"]},
        doc! {"explain": {"createUser": "evil", "pwd": "TopSecret-1"}},
    ] {
        let e = reader.database("t").run_command(cmd).await.unwrap_err();
        assert_eq!(code(&e), Some(13), "{e}");
        let msg = e.to_string();
        assert!(!msg.contains("TopSecret-1"), "{msg}");
        assert!(msg.contains("not authorized on t"), "{msg}");
    }
    n.handle.shutdown().await.unwrap();
}

/// A `MakeWriter` collecting log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn no_users_with_auth_warns_and_localhost_may_create_the_first_user() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        auth: true,
        root_user: None,
        ..Default::default()
    };
    let handle = tracing::subscriber::with_default(subscriber, || rt.block_on(Node::start(config))).unwrap();
    let text = String::from_utf8(logs.0.lock().clone()).unwrap();
    let warn = text.lines().find(|l| l.contains("WARN") && l.contains("no user exists"));
    assert!(warn.is_some_and(|l| l.contains("nobody can authenticate")), "{text}");
    rt.block_on(async {
        let addr = handle.local_addr();
        let anon =
            Client::with_uri_str(format!("mongodb://{addr}/?serverSelectionTimeoutMS=5000")).await.unwrap();
        let e = anon.database("t").run_command(doc! {"find": "c"}).await.unwrap_err();
        assert_eq!(code(&e), Some(13));
        // the exception covers createUser in admin only
        let e = anon
            .database("t")
            .run_command(doc! {"createUser": "x", "pwd": "p", "roles": ["read"]})
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(13));
        anon.database("admin")
            .run_command(doc! {"createUser": "first", "pwd": "first-pw", "roles": ["root"]})
            .await
            .unwrap();
        // closed once a user exists
        let e = anon
            .database("admin")
            .run_command(doc! {"createUser": "second", "pwd": "p", "roles": ["root"]})
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(13));
        let first =
            Client::with_uri_str(format!("mongodb://first:first-pw@{addr}/?authSource=admin")).await.unwrap();
        let info = first.database("admin").run_command(doc! {"usersInfo": 1}).await.unwrap();
        assert_eq!(info.get_array("users").unwrap().len(), 1);
        handle.shutdown().await.unwrap();
    });
}
