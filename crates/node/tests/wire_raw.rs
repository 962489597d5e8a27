//! Raw-protocol tests: legacy OP_QUERY handshake, checksums, moreToCome, malformed and oversized frames
//! closing only their connection, and random command documents that must always get a well-formed reply.
#![allow(clippy::unwrap_used)]

mod common;

use bson::{Bson, Document, doc};
use bytes::BytesMut;
use docplane_wire::{FrameDecoder, Message, Op, OpMsg, OpQuery, encode_message, flags};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn send(s: &mut TcpStream, m: &Message) {
    s.write_all(&encode_message(m).unwrap()).await.unwrap();
}

async fn recv(s: &mut TcpStream) -> Option<Message> {
    let dec = FrameDecoder::new(64 << 20);
    let mut buf = BytesMut::new();
    loop {
        if let Some(m) = dec.decode(&mut buf).unwrap() {
            return Some(m);
        }
        if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return None;
        }
    }
}

fn body(m: Message) -> Document {
    match m.op {
        Op::Msg(m) => m.body,
        Op::Reply(r) => r.documents.into_iter().next().unwrap(),
        Op::Query(_) => panic!("server sent OP_QUERY"),
    }
}

async fn command(s: &mut TcpStream, cmd: Document) -> Document {
    send(s, &Message::new(1, 0, Op::Msg(OpMsg::new(cmd)))).await;
    body(recv(s).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_op_query_checksum_more_to_come_and_bad_frames() {
    let n = common::start().await;
    let addr = n.handle.local_addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // OP_QUERY isMaster -> OP_REPLY
    let q = OpQuery {
        full_collection_name: "admin.$cmd".into(),
        number_to_return: -1,
        query: doc! {"isMaster": 1, "client": {"application": {"name": "legacy"}}},
        ..Default::default()
    };
    send(&mut s, &Message::new(7, 0, Op::Query(q))).await;
    let r = recv(&mut s).await.unwrap();
    assert_eq!(r.header.response_to, 7);
    let Op::Reply(reply) = r.op else { panic!("expected OP_REPLY") };
    assert!(reply.documents[0].get_bool("ismaster").unwrap());
    assert_eq!(reply.documents[0].get_i32("maxWireVersion").unwrap(), 21);
    // OP_MSG with checksum
    let mut m = OpMsg::new(doc! {"ping": 1, "$db": "admin"});
    m.flags = flags::CHECKSUM_PRESENT;
    send(&mut s, &Message::new(8, 0, Op::Msg(m))).await;
    assert_eq!(body(recv(&mut s).await.unwrap()).get_f64("ok").unwrap(), 1.0);
    // moreToCome: no reply, next command answered
    let mut m = OpMsg::new(doc! {"ping": 1, "$db": "admin"});
    m.flags = flags::MORE_TO_COME;
    send(&mut s, &Message::new(9, 0, Op::Msg(m))).await;
    let r = command(&mut s, doc! {"buildInfo": 1, "$db": "admin"}).await;
    assert_eq!(r.get_str("version").unwrap(), "7.0.0");
    // error shape, missing $db
    let r = command(&mut s, doc! {"ping": 1}).await;
    assert_eq!(r.get_f64("ok").unwrap(), 0.0);
    assert_eq!(r.get_i32("code").unwrap(), 40571);
    assert!(r.contains_key("codeName") && r.contains_key("errmsg"));
    // unauthenticated data command
    let r = command(&mut s, doc! {"find": "c", "$db": "t"}).await;
    assert_eq!(r.get_i32("code").unwrap(), 13);
    // a second connection sends garbage and is closed; the first keeps working
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(&[
        0x20, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0xd2, 0x07, 0, 0, 0xff, 0xff, 0xff, 0xff, 9, 9, 9, 9, 9, 9, 9,
        9, 9, 9, 9, 9,
    ])
    .await
    .unwrap();
    assert!(recv(&mut bad).await.is_none());
    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(&(49_000_000i32).to_le_bytes()).await.unwrap();
    assert!(recv(&mut huge).await.is_none());
    let r = command(&mut s, doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0);
    n.handle.shutdown().await.unwrap();
}

/// A random command for database `fuzz`; a `sleep` sleeps 1 ms so the run stays short.
fn arb_command() -> impl Strategy<Value = Document> {
    common::arb::arb_command(common::arb::command_names()).prop_map(|mut d| {
        d.insert("$db", "fuzz");
        if d.keys().next().is_some_and(|k| k == "sleep") {
            d.insert("millis", 1);
        }
        d
    })
}

/// Random command documents against a node with auth off: every reply is `ok: 1` or a full error.
#[test]
fn random_commands_always_get_well_formed_replies() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = rt.block_on(common::start_with(tempfile::tempdir().unwrap(), false));
    let addr = n.handle.local_addr();
    let conn = std::cell::RefCell::new(rt.block_on(TcpStream::connect(addr)).unwrap());
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 300, ..ProptestConfig::default() });
    runner
        .run(&arb_command(), |cmd| {
            let mut guard = conn.borrow_mut();
            let s = &mut *guard;
            let r = rt.block_on(async {
                send(s, &Message::new(1, 0, Op::Msg(OpMsg::new(cmd.clone())))).await;
                recv(s).await
            });
            let r = body(r.expect("connection closed on a well-formed frame"));
            let ok = r.get("ok").and_then(Bson::as_f64).unwrap();
            if ok == 0.0 {
                prop_assert!(
                    r.get_i32("code").is_ok() && r.get_str("codeName").is_ok() && r.get_str("errmsg").is_ok(),
                    "{r}"
                );
            }
            Ok(())
        })
        .unwrap();
    // still alive
    let r = rt.block_on(command(&mut conn.borrow_mut(), doc! {"ping": 1, "$db": "admin"}));
    assert_eq!(r.get_f64("ok").unwrap(), 1.0);
    rt.block_on(n.handle.shutdown()).unwrap();
}
