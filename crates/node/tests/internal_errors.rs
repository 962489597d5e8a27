//! Internal failures reach the client as a generic message with an error id; the detail (file
//! paths, OS errors) stays in the server log.
#![allow(clippy::unwrap_used)]

mod common;

use common::{code, start};
use mongodb::bson::doc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_users_file_write_names_no_path() {
    let n = start().await;
    let root = n.root("admin").await;
    // The users file is written through `users.bson.tmp`; a directory there makes it fail.
    std::fs::create_dir(n.dir.path().join("users.bson.tmp")).unwrap();
    let e = root
        .database("admin")
        .run_command(doc! {"createUser": "alice", "pwd": "alice-pw-123", "roles": []})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(1), "{e}");
    let text = e.to_string();
    assert!(text.contains("writing the users file failed; see the server log (error id "), "{text}");
    let dir = n.dir.path().to_string_lossy().into_owned();
    assert!(!text.contains(&dir) && !text.contains("os error"), "detail leaked: {text}");
    // Nothing was half done: once the file can be written, the same user is created.
    std::fs::remove_dir(n.dir.path().join("users.bson.tmp")).unwrap();
    root.database("admin")
        .run_command(doc! {"createUser": "alice", "pwd": "alice-pw-123", "roles": []})
        .await
        .unwrap();
    n.handle.shutdown().await.unwrap();
}
