//! What a connection can make the node do before it authenticates: small frames only (cut off at
//! the length prefix, before any of the body is buffered) and an idle timeout. Authenticated
//! connections keep the 48 MB limit and no timeout.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use bson::{Document, doc};
use bytes::BytesMut;
use docplane_node::{Node, NodeConfig, NodeHandle};
use docplane_wire::{FrameDecoder, Message, Op, OpMsg, encode_message};
use mongodb::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn node(auth: bool, unauth_idle: Option<Duration>) -> (NodeHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let handle = Node::start(NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_path_buf()),
        auth,
        root_user: Some((common::ROOT.0.into(), common::ROOT.1.into())),
        unauthenticated_idle_timeout: unauth_idle,
        ..Default::default()
    })
    .await
    .unwrap();
    (handle, dir)
}

fn frame(cmd: Document) -> Vec<u8> {
    encode_message(&Message::new(1, 0, Op::Msg(OpMsg::new(cmd)))).unwrap()
}

/// Reads one reply; `None` when the node closed the connection.
async fn recv(s: &mut TcpStream) -> Option<Document> {
    let dec = FrameDecoder::new(64 << 20);
    let mut buf = BytesMut::new();
    loop {
        if let Some(m) = dec.decode(&mut buf).unwrap() {
            let Op::Msg(m) = m.op else { panic!("not OP_MSG") };
            return Some(m.body);
        }
        if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return None;
        }
    }
}

/// Whether the node closes `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(tokio::time::timeout(within, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_before_authentication_are_cut_off_at_the_length_prefix() {
    let (h, _dir) = node(true, None).await;
    // Only a header declaring a 40 MB message (under the 48 MB limit): the node must close the
    // connection without waiting for, or reserving room for, a body that was never sent.
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&40_000_000i32.to_le_bytes());
    header.extend_from_slice(&1i32.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes());
    header.extend_from_slice(&2013i32.to_le_bytes());
    s.write_all(&header).await.unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "not closed");
    assert!(t.elapsed() < Duration::from_secs(2), "closed only after {:?}", t.elapsed());

    // mongod's own test: a 20 KiB hello before authentication closes the connection...
    let big_hello = doc! {"hello": 1, "$db": "admin", "bigField": "x".repeat(20 * 1024)};
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    s.write_all(&frame(big_hello.clone())).await.unwrap();
    assert!(recv(&mut s).await.is_none(), "a 20 KiB frame was answered before authentication");
    // ...while a normal handshake works, and the node is fine.
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    s.write_all(&frame(doc! {"hello": 1, "$db": "admin", "client": {"application": {"name": "raw"}}}))
        .await
        .unwrap();
    assert_eq!(recv(&mut s).await.unwrap().get_f64("ok").unwrap(), 1.0);

    // Authenticated (official driver): large messages still pass, up to the 48 MB limit.
    let client = Client::with_uri_str(format!("{}&serverSelectionTimeoutMS=5000", h.uri(Some(common::ROOT))))
        .await
        .unwrap();
    let coll = client.database("test").collection::<Document>("big");
    coll.insert_one(doc! {"_id": 1, "s": "y".repeat(8 << 20)}).await.unwrap();
    let docs: Vec<Document> = (0..2).map(|i| doc! {"_id": 10 + i, "s": "z".repeat(10 << 20)}).collect();
    coll.insert_many(docs).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 3);
    let r = client.database("admin").run_command(big_hello).await.unwrap();
    assert_eq!(r.get_f64("ok").unwrap(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_there_is_no_preauth_limit() {
    let (h, _dir) = node(false, Some(Duration::from_millis(300))).await;
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    s.write_all(&frame(doc! {"hello": 1, "$db": "admin", "bigField": "x".repeat(64 * 1024)})).await.unwrap();
    assert_eq!(recv(&mut s).await.unwrap().get_f64("ok").unwrap(), 1.0);
    // ...and no idle timeout either (the unauthenticated one does not apply).
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(&frame(doc! {"ping": 1, "$db": "admin"})).await.unwrap();
    assert_eq!(recv(&mut s).await.unwrap().get_f64("ok").unwrap(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connections_are_closed_authenticated_ones_are_not() {
    let (h, _dir) = node(true, Some(Duration::from_millis(1500))).await;
    // Idle from the start: closed after the timeout, not before.
    let mut idle = TcpStream::connect(h.local_addr()).await.unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await, "idle connection never closed");
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5), "{waited:?}");

    // Idle after a hello: the timer restarts after each reply, and a half-sent message does not
    // keep the connection open (slowloris).
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    for _ in 0..3 {
        s.write_all(&frame(doc! {"hello": 1, "$db": "admin"})).await.unwrap();
        assert!(recv(&mut s).await.is_some());
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let half = frame(doc! {"hello": 1, "$db": "admin"});
    s.write_all(&half[..half.len() / 2]).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(6)).await, "half-sent message kept it open");

    // An authenticated client (the driver's pool) idles past the timeout and keeps its
    // connections: no new connection is made for the next command.
    let uri = format!("{}&serverSelectionTimeoutMS=5000&heartbeatFrequencyMS=500", h.uri(Some(common::ROOT)));
    let client = Client::with_uri_str(uri).await.unwrap();
    let admin = client.database("admin");
    admin.run_command(doc! {"ping": 1}).await.unwrap();
    let created = |r: &Document| r.get_document("connections").unwrap().get("totalCreated").cloned().unwrap();
    let before = created(&admin.run_command(doc! {"serverStatus": 1}).await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = created(&admin.run_command(doc! {"serverStatus": 1}).await.unwrap());
    assert_eq!(before, after, "the authenticated connection was closed while idle");
}
