//! The fault proxy against a real echo server on loopback: each mode does what RELIABILITY.md's
//! scenarios rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use docplane_loadtest::proxy::{Command, Mode, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn proxy(mode: Mode) -> Proxy {
    let target = echo_server().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Proxy::start(l, target, mode).unwrap()
}

/// Sends `msg` and waits up to `within` for its echo; `None` on timeout, `Some(false)` if closed.
async fn roundtrip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Option<bool> {
    if s.write_all(msg).await.is_err() {
        return Some(false);
    }
    let mut got = vec![0u8; msg.len()];
    match tokio::time::timeout(within, s.read_exact(&mut got)).await {
        Err(_) => None,
        Ok(Err(_)) => Some(false),
        Ok(Ok(_)) => Some(got == msg),
    }
}

#[tokio::test]
async fn pass_and_delay() {
    let p = proxy(Mode::Pass).await;
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"hello", Duration::from_secs(2)).await, Some(true));
    p.apply(Command::Set(Mode::Delay(Duration::from_millis(150))));
    let t = Instant::now();
    assert_eq!(roundtrip(&mut s, b"again", Duration::from_secs(3)).await, Some(true));
    // Held once each way.
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    assert!(p.status().contains("mode=delay:150"), "{}", p.status());
}

#[tokio::test]
async fn stall_holds_until_released() {
    let p = proxy(Mode::Pass).await;
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"a", Duration::from_secs(2)).await, Some(true));
    p.apply(Command::Set(Mode::Stall));
    assert_eq!(roundtrip(&mut s, b"b", Duration::from_millis(400)).await, None, "stalled bytes got through");
    // A connection opened during the stall is accepted but silent too.
    let mut s2 = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s2, b"c", Duration::from_millis(300)).await, None);
    p.apply(Command::Set(Mode::Pass));
    let mut got = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"b");
    tokio::time::timeout(Duration::from_secs(2), s2.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"c");
}

#[tokio::test]
async fn cut_closes_everything_and_drop_closes_once() {
    let p = proxy(Mode::Pass).await;
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"a", Duration::from_secs(2)).await, Some(true));
    p.apply(Command::Set(Mode::Cut));
    assert_eq!(roundtrip(&mut s, b"b", Duration::from_secs(2)).await, Some(false));
    let mut s2 = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s2, b"c", Duration::from_secs(2)).await, Some(false));
    p.apply(Command::Set(Mode::Pass));
    let mut s3 = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s3, b"d", Duration::from_secs(2)).await, Some(true));
    // `drop` closes the current connection but lets the next one through.
    p.apply(Command::Drop);
    assert_eq!(roundtrip(&mut s3, b"e", Duration::from_secs(2)).await, Some(false));
    let mut s4 = TcpStream::connect(p.local_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s4, b"f", Duration::from_secs(2)).await, Some(true));
    assert!(p.status().contains("generation=1"), "{}", p.status());
}
