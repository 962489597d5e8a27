//! Shared test helpers: start a node in-process on 127.0.0.1:0 with a temp data dir.
#![allow(dead_code, clippy::unwrap_used)]

pub mod arb;

use docplane_node::{Node, NodeConfig, NodeHandle};
use mongodb::Client;
use mongodb::error::{ErrorKind, WriteFailure};

pub const ROOT: (&str, &str) = ("root", "root-pw-123");

/// Generous bound for a kill, an expired deadline or a wake-up to reach the client (the goal
/// is 20 ms; the bound leaves room for a loaded CI machine).
pub const PROMPT: std::time::Duration = std::time::Duration::from_millis(500);

/// An expression costing milliseconds per document (`$expr`-able; reads `$n`, so nothing
/// folds it): a `$reduce` over a `$range` of 30,000.
pub fn heavy() -> mongodb::bson::Document {
    mongodb::bson::doc! {"$reduce": {
        "input": {"$range": [0, {"$add": ["$n", 30_000]}]},
        "initialValue": 0,
        "in": {"$add": ["$$value", "$$this"]},
    }}
}

pub struct TestNode {
    pub handle: NodeHandle,
    pub dir: tempfile::TempDir,
}

pub async fn start_with(dir: tempfile::TempDir, auth: bool) -> TestNode {
    let config = NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_path_buf()),
        enable_test_commands: true,
        auth,
        root_user: Some((ROOT.0.into(), ROOT.1.into())),
        ..Default::default()
    };
    let handle = Node::start(config).await.unwrap();
    TestNode { handle, dir }
}

pub async fn start() -> TestNode {
    start_with(tempfile::tempdir().unwrap(), true).await
}

impl TestNode {
    pub fn uri(&self, user: &str, pw: &str) -> String {
        format!("mongodb://{user}:{pw}@{}/?authSource=admin", self.handle.local_addr())
    }
    pub fn root_uri(&self) -> String {
        self.uri(ROOT.0, ROOT.1)
    }
    pub async fn client(&self, user: &str, pw: &str, app: &str) -> Client {
        let uri = format!("{}&appName={app}&serverSelectionTimeoutMS=5000", self.uri(user, pw));
        Client::with_uri_str(uri).await.unwrap()
    }
    pub async fn root(&self, app: &str) -> Client {
        self.client(ROOT.0, ROOT.1, app).await
    }
    pub async fn anon(&self) -> Client {
        let uri = format!("mongodb://{}/?serverSelectionTimeoutMS=5000", self.handle.local_addr());
        Client::with_uri_str(uri).await.unwrap()
    }
}

/// The server error code inside a driver error.
pub fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m.write_errors.as_ref().and_then(|w| w.first()).map(|w| w.code),
        _ => None,
    }
}

/// Database `name` of `c`, dropped first: each test starts from an empty one.
pub async fn db(c: &Client, name: &str) -> mongodb::Database {
    let d = c.database(name);
    d.drop().await.unwrap();
    d
}

/// Runs `cmd` on `d`, which must fail; its error code.
pub async fn fail(d: &mongodb::Database, cmd: mongodb::bson::Document) -> i32 {
    let e = d.run_command(cmd.clone()).await.expect_err(&format!("{cmd} must fail"));
    code(&e).unwrap_or_else(|| panic!("{cmd}: {e}"))
}

/// Every document of `coll` in `_id` order.
pub async fn all(d: &mongodb::Database, coll: &str) -> Vec<mongodb::bson::Document> {
    use futures::TryStreamExt;
    d.collection::<mongodb::bson::Document>(coll)
        .find(mongodb::bson::doc! {})
        .sort(mongodb::bson::doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}
