//! The fault-injecting TCP proxy's core: forwards every accepted connection to one target and applies
//! the current [`Mode`] to each chunk of bytes in both directions.
//!
//! - `pass`: forward.
//! - `delay MS`: hold each chunk MS milliseconds before forwarding it (in each direction, so a
//!   request/response exchange gains at least 2 x MS).
//! - `stall`: hold every chunk until the mode changes; connections stay open and new ones are
//!   accepted, so the peers see a node (or database) that stopped answering.
//! - `cut`: close every connection and close new ones at once, until the mode changes.
//! - `drop` (a command, not a mode): close every current connection once and keep the mode, as a
//!   server restart would.
//!
//! Closing is a FIN, not an RST: the peer sees the connection end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Stall,
    Cut,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Pass => f.write_str("pass"),
            Mode::Delay(d) => write!(f, "delay {}", d.as_millis()),
            Mode::Stall => f.write_str("stall"),
            Mode::Cut => f.write_str("cut"),
        }
    }
}

/// A control command (one line on the control port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Set(Mode),
    /// Close every current connection once.
    Drop,
    Status,
}

/// The longest delay accepted (a minute): longer holds are what `stall` is for.
pub const MAX_DELAY_MS: u64 = 60_000;

/// Parses `pass`, `delay MS`, `stall`, `cut`, `drop` or `status`.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["pass"] => Ok(Command::Set(Mode::Pass)),
        ["stall"] => Ok(Command::Set(Mode::Stall)),
        ["cut"] => Ok(Command::Set(Mode::Cut)),
        ["drop"] => Ok(Command::Drop),
        ["status"] => Ok(Command::Status),
        ["delay", ms] => match ms.parse::<u64>() {
            Ok(ms) if ms <= MAX_DELAY_MS => Ok(Command::Set(Mode::Delay(Duration::from_millis(ms)))),
            _ => Err(format!("delay takes milliseconds in 0..={MAX_DELAY_MS}, got {ms:?}")),
        },
        _ => Err(format!("unknown command {line:?}: pass | delay MS | stall | cut | drop | status")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: Mode,
    /// Bumped by `drop`: connections of an older generation close.
    generation: u64,
}

/// Counters, readable while the proxy runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    pub bytes: AtomicU64,
}

/// A running proxy.
pub struct Proxy {
    local_addr: SocketAddr,
    state: watch::Sender<State>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listener` and forwards to `target`, starting in `mode`.
    pub fn start(listener: TcpListener, target: SocketAddr, mode: Mode) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (state, rx) = watch::channel(State { mode, generation: 0 });
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(listener, target, rx, counters.clone()));
        Ok(Proxy { local_addr, state, counters, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn mode(&self) -> Mode {
        self.state.borrow().mode
    }

    /// Applies a command; returns the status line the control port answers with.
    pub fn apply(&self, cmd: Command) -> String {
        match cmd {
            Command::Set(mode) => self.state.send_modify(|s| s.mode = mode),
            Command::Drop => self.state.send_modify(|s| s.generation += 1),
            Command::Status => {}
        }
        self.status()
    }

    pub fn status(&self) -> String {
        let s = *self.state.borrow();
        format!(
            "ok mode={} generation={} accepted={} active={} bytes={}",
            s.mode.to_string().replace(' ', ":"),
            s.generation,
            self.counters.accepted.load(Ordering::Relaxed),
            self.counters.active.load(Ordering::Relaxed),
            self.counters.bytes.load(Ordering::Relaxed)
        )
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Stop accepting, and close every connection (their tasks end when the channel closes).
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: watch::Receiver<State>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let (state, counters) = (state.clone(), counters.clone());
        tokio::spawn(async move {
            counters.active.fetch_add(1, Ordering::Relaxed);
            connection(client, target, state, &counters).await;
            counters.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    client: TcpStream,
    target: SocketAddr,
    state: watch::Receiver<State>,
    counters: &Counters,
) {
    let s = *state.borrow();
    if s.mode == Mode::Cut {
        return;
    }
    if let Err(e) = client.set_nodelay(true) {
        eprintln!("docplane-faultproxy: TCP_NODELAY on the client side: {e}");
    }
    let upstream = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await {
        Ok(Ok(u)) => u,
        // The target is down: close the client's connection, as a dead server would.
        _ => return,
    };
    if let Err(e) = upstream.set_nodelay(true) {
        eprintln!("docplane-faultproxy: TCP_NODELAY on the upstream side: {e}");
    }
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::join!(
        pump(cr, uw, state.clone(), s.generation, counters),
        pump(ur, cw, state, s.generation, counters)
    );
}

/// True once this connection must close: a `cut`, a `drop` after it started, or the proxy stopped.
fn over(s: &State, generation: u64) -> bool {
    s.mode == Mode::Cut || s.generation != generation
}

async fn closed(state: &mut watch::Receiver<State>, generation: u64) {
    loop {
        if over(&state.borrow_and_update(), generation) {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
    counters: &Counters,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    // Pass the close on. A peer that is already gone is the normal end, not an error.
                    if let Err(e) = to.shutdown().await
                        && e.kind() != std::io::ErrorKind::NotConnected
                    {
                        eprintln!("docplane-faultproxy: closing a connection: {e}");
                    }
                    return;
                }
                Ok(n) => n,
            },
            () = closed(&mut state, generation) => return,
        };
        // Hold the chunk as the mode says.
        loop {
            let s = *state.borrow_and_update();
            if over(&s, generation) {
                return;
            }
            match s.mode {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    tokio::select! {
                        () = tokio::time::sleep(d) => break,
                        r = state.changed() => if r.is_err() { return },
                    }
                }
                Mode::Stall | Mode::Cut => {
                    if state.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_command("pass"), Ok(Command::Set(Mode::Pass)));
        assert_eq!(parse_command(" delay 250 \n"), Ok(Command::Set(Mode::Delay(Duration::from_millis(250)))));
        assert_eq!(parse_command("stall"), Ok(Command::Set(Mode::Stall)));
        assert_eq!(parse_command("cut"), Ok(Command::Set(Mode::Cut)));
        assert_eq!(parse_command("drop"), Ok(Command::Drop));
        assert_eq!(parse_command("status"), Ok(Command::Status));
        assert!(parse_command("delay").is_err());
        assert!(parse_command("delay -1").is_err());
        assert!(parse_command("delay 60001").is_err());
        assert!(parse_command("pause").is_err());
        assert!(parse_command("").is_err());
    }
}
