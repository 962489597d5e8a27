//! Logical sessions are (id, uid), as in mongod: two users sending the same lsid UUID have two
//! sessions, and naming another user's uid needs impersonate. Driven in process through
//! `cmd::dispatch` (the drivers always send their own lsids), with authenticated users set on the
//! connections directly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use docplane_node::NodeConfig;
use docplane_node::auth::{RoleRef, UserName};
use docplane_node::cmd::dispatch;
use docplane_node::conn::{ConnCtx, ConnInfo};
use docplane_node::sessions::session_uid;
use docplane_node::state::NodeState;

fn conn(id: i64, user: &str) -> ConnCtx {
    let info = Arc::new(ConnInfo::new(id, std::net::SocketAddr::from(([127, 0, 0, 1], 40_000))));
    info.auth
        .lock()
        .push((UserName::new(user, "admin"), vec![RoleRef { role: "readWrite".into(), db: "t".into() }]));
    ConnCtx::new(info)
}

fn lsid(uid: Option<Vec<u8>>) -> Document {
    let mut d = doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![42; 16] }};
    if let Some(uid) = uid {
        d.insert("uid", Binary { subtype: BinarySubtype::Generic, bytes: uid });
    }
    d
}

fn code(reply: &Document) -> Option<i32> {
    reply.get_i32("code").ok()
}

async fn open_cursor(state: &Arc<NodeState>, c: &mut ConnCtx) -> i64 {
    let r =
        dispatch(state, c, doc! {"find": "c", "batchSize": 1, "lsid": lsid(None), "$db": "t"}, None).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    r.get_document("cursor").unwrap().get_i64("id").unwrap()
}

#[tokio::test]
async fn the_same_lsid_of_two_users_is_two_sessions() {
    let state = NodeState::in_memory(NodeConfig { auth: true, ..NodeConfig::default() });
    let (mut a, mut b) = (conn(1, "a"), conn(2, "b"));
    let docs: Vec<Bson> = (0..5).map(|i| Bson::Document(doc! {"i": i})).collect();
    let r = dispatch(&state, &mut a, doc! {"insert": "c", "documents": docs, "$db": "t"}, None).await;
    assert_eq!(r.get_i32("n").unwrap(), 5, "{r}");
    let ca = open_cursor(&state, &mut a).await;
    let cb = open_cursor(&state, &mut b).await;
    assert_eq!(state.sessions.len(), 2);
    // a kills "its" session 42: b's session of the same id keeps its cursor
    let r = dispatch(
        &state,
        &mut a,
        doc! {"killSessions": [{"id": lsid(None).get("id").unwrap().clone()}], "$db": "admin"},
        None,
    )
    .await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    let more = |id: i64| doc! {"getMore": id, "collection": "c", "$db": "t"};
    assert_eq!(code(&dispatch(&state, &mut a, more(ca), None).await), Some(43));
    let r = dispatch(&state, &mut b, more(cb), None).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    // b may not run a command in a's session by naming a's uid
    let a_uid = session_uid(&[UserName::new("a", "admin")]);
    let r =
        dispatch(&state, &mut b, doc! {"ping": 1, "lsid": lsid(Some(a_uid.clone())), "$db": "t"}, None).await;
    assert_eq!(code(&r), Some(13), "{r}");
    // a may name its own uid
    let r = dispatch(&state, &mut a, doc! {"ping": 1, "lsid": lsid(Some(a_uid)), "$db": "t"}, None).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    // endSessions of b ends b's session only
    let r = dispatch(
        &state,
        &mut b,
        doc! {"endSessions": [{"id": lsid(None).get("id").unwrap().clone()}], "$db": "admin"},
        None,
    )
    .await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(state.sessions.len(), 1);
    assert_eq!(code(&dispatch(&state, &mut b, more(cb), None).await), Some(43));
}
