//! One client connection: read frames, dispatch commands, write replies.
//!
//! The loop is generic over the stream so it can be tested over `tokio::io::duplex`. A frame that fails
//! to decode (malformed, too large, unsupported opcode) closes only this connection, with the reason
//! logged. `moreToCome` requests get no reply. Shutdown closes idle connections at once; a connection
//! busy with a command closes after its (interrupted) reply is written.
//!
//! Before a connection authenticates (auth on), what it can make the node hold is bounded: frames
//! longer than [`crate::NodeConfig::preauth_max_message_size`] close it as soon as their length
//! prefix arrives (nothing of the body is buffered), and it is closed when no complete message
//! arrives within [`crate::NodeConfig::unauthenticated_idle_timeout`]. Authenticated connections
//! (and every connection with auth off) get `max_message_size` and
//! [`crate::NodeConfig::idle_timeout`] (none by default).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use bytes::BytesMut;
use docplane_wire::{FrameDecoder, Message, Op, OpMsg, OpReply, encode_message};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::auth::scram::Conversation;
use crate::auth::{RoleRef, UserName};
use crate::reply::error_doc;
use crate::state::NodeState;

/// What the registry knows about a connection (shared with currentOp).
#[derive(Debug)]
pub struct ConnInfo {
    pub id: i64,
    pub client: SocketAddr,
    pub opened: Instant,
    /// `client` document from the first hello. Set at most once (later hellos leave it alone): the
    /// `currentOp` cache below relies on that.
    pub metadata: Mutex<Option<Document>>,
    /// `currentOp`'s connection fields (`type` .. `clientMetadata`), built by
    /// [`crate::cmd::currentop`] and cached once `metadata` is known.
    pub current_op_prefix: OnceLock<Document>,
    /// Authenticated users and their roles.
    pub auth: Mutex<Vec<(UserName, Vec<RoleRef>)>>,
    /// Whether a command is being executed.
    pub busy: AtomicBool,
}

impl ConnInfo {
    /// A new connection record.
    pub fn new(id: i64, client: SocketAddr) -> Self {
        ConnInfo {
            id,
            client,
            opened: Instant::now(),
            metadata: Mutex::new(None),
            current_op_prefix: OnceLock::new(),
            auth: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
        }
    }
    /// Authenticated user names.
    pub fn users(&self) -> Vec<UserName> {
        self.auth.lock().iter().map(|(u, _)| u.clone()).collect()
    }
    /// All roles of all authenticated users.
    pub fn roles(&self) -> Vec<RoleRef> {
        self.auth.lock().iter().flat_map(|(_, r)| r.iter().cloned()).collect()
    }
    /// `appName` from the client metadata.
    pub fn app_name(&self) -> Option<String> {
        let m = self.metadata.lock();
        m.as_ref()
            .and_then(|d| d.get_document("application").ok())
            .and_then(|a| a.get_str("name").ok())
            .map(str::to_owned)
    }
}

/// SASL conversation in progress on a connection.
#[derive(Debug)]
pub struct SaslState {
    pub conversation_id: i32,
    pub db: String,
    pub conversation: Conversation,
    /// The proof was verified and the server-final sent; waiting for the client's empty last step.
    pub awaiting_final_ack: bool,
}

/// Per-connection mutable state owned by the connection task.
#[derive(Debug)]
pub struct ConnCtx {
    pub info: Arc<ConnInfo>,
    pub sasl: Option<SaslState>,
    pub next_conversation_id: i32,
    /// Set by a command (the `failCommand` fail point's `closeConnection`): close the connection
    /// instead of replying.
    pub close_requested: bool,
    /// Fields added to the next reply (the `failCommand` fail point's `errorLabels`, ...).
    pub reply_extras: Document,
}

impl ConnCtx {
    pub fn new(info: Arc<ConnInfo>) -> Self {
        ConnCtx {
            info,
            sasl: None,
            next_conversation_id: 1,
            close_requested: false,
            reply_extras: Document::new(),
        }
    }

    /// Whether the connection counts as authenticated for its limits: auth is off, or a user
    /// is authenticated on it.
    fn trusted(&self, state: &NodeState) -> bool {
        !state.auth_enabled() || !self.info.auth.lock().is_empty()
    }

    /// Moves the pending extra fields into `reply` (errors only get error fields; a success
    /// keeps what its handler wrote).
    fn finish_reply(&mut self, reply: &mut Document) {
        for (k, v) in std::mem::take(&mut self.reply_extras) {
            if reply.get_f64("ok").is_ok_and(|ok| ok == 0.0) {
                reply.insert(k, v);
            }
        }
    }
}

static NEXT_REQUEST_ID: AtomicI32 = AtomicI32::new(1);

fn next_request_id() -> i32 {
    NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed) & i32::MAX
}

/// Why a connection ended (logged).
#[derive(Debug)]
pub enum CloseReason {
    ClientClosed,
    Shutdown,
    Protocol(String),
    Io(std::io::Error),
    /// No complete message within the idle timeout (`authenticated` says which one applied).
    IdleTimeout {
        authenticated: bool,
        after: Duration,
    },
    /// A command asked for it (the `failCommand` fail point's `closeConnection`).
    FailPoint,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ClientClosed => write!(f, "client closed the connection"),
            CloseReason::Shutdown => write!(f, "server shutting down"),
            CloseReason::Protocol(s) => write!(f, "protocol error: {s}"),
            CloseReason::Io(e) => write!(f, "io error: {e}"),
            CloseReason::IdleTimeout { authenticated: true, after } => {
                write!(f, "idle for {} ms", after.as_millis())
            }
            CloseReason::IdleTimeout { authenticated: false, after } => {
                write!(f, "unauthenticated and idle for {} ms", after.as_millis())
            }
            CloseReason::FailPoint => write!(f, "closed by the failCommand fail point"),
        }
    }
}

/// Serves one connection until it closes; returns why.
pub async fn serve<S>(
    state: Arc<NodeState>,
    mut stream: S,
    info: Arc<ConnInfo>,
    mut shutdown: watch::Receiver<bool>,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let full = FrameDecoder::new(state.config.max_message_size);
    let preauth = FrameDecoder::new(state.config.preauth_max_message_size.min(state.config.max_message_size));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut ctx = ConnCtx::new(info);
    // When the wait for the current message began (accept, or the last reply).
    let mut waiting_since = tokio::time::Instant::now();
    loop {
        let trusted = ctx.trusted(&state);
        let decoder = if trusted { &full } else { &preauth };
        let msg = match decoder.decode(&mut buf) {
            Ok(Some(m)) => m,
            Err(e) if trusted => return CloseReason::Protocol(e.to_string()),
            Err(e) => return CloseReason::Protocol(format!("before authentication: {e}")),
            Ok(None) => {
                if *shutdown.borrow() {
                    return CloseReason::Shutdown;
                }
                let idle = if trusted {
                    state.config.idle_timeout
                } else {
                    state.config.unauthenticated_idle_timeout
                };
                let deadline = idle.map(|d| waiting_since + d);
                tokio::select! {
                    r = stream.read_buf(&mut buf) => match r {
                        Ok(0) => return if buf.is_empty() { CloseReason::ClientClosed } else { CloseReason::Protocol("connection closed mid-message".into()) },
                        Ok(_) => continue,
                        Err(e) => return CloseReason::Io(e),
                    },
                    _ = shutdown.changed() => return CloseReason::Shutdown,
                    _ = sleep_until(deadline) => {
                        return CloseReason::IdleTimeout { authenticated: trusted, after: idle.unwrap_or_default() };
                    }
                }
            }
        };
        let reply = match handle_message(&state, &mut ctx, msg).await {
            Ok(r) => r,
            Err(reason) => return reason,
        };
        if let Some(bytes) = reply {
            if let Err(e) = stream.write_all(&bytes).await {
                return CloseReason::Io(e);
            }
            if let Err(e) = stream.flush().await {
                return CloseReason::Io(e);
            }
        }
        waiting_since = tokio::time::Instant::now();
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The largest reply the node sends: mongod's `BSONObjMaxInternalSize` (16 MiB + 16 KiB) for the
/// reply document, plus the message header and section bytes; so no reply nears the 48 MB message
/// limit either.
pub const MAX_REPLY_BYTES: usize = crate::cursors::MAX_INTERNAL_BSON + 64;

fn encode_or_error(msg: &Message, fallback: impl FnOnce(Document) -> Message) -> Vec<u8> {
    let err = match encode_message(msg) {
        Ok(b) if b.len() <= MAX_REPLY_BYTES => return b,
        Ok(b) => crate::cursors::too_large(b.len()),
        Err(e) => docplane_query::CommandError::new(
            10334,
            "BSONObjectTooLarge",
            format!("reply cannot be encoded: {e}"),
        ),
    };
    encode_message(&fallback(error_doc(&err))).unwrap_or_default()
}

/// Executes one message; `Ok(None)` when no reply is due, `Err` to close the connection.
async fn handle_message(
    state: &Arc<NodeState>,
    ctx: &mut ConnCtx,
    msg: Message,
) -> Result<Option<Vec<u8>>, CloseReason> {
    let request_id = msg.header.request_id;
    match msg.op {
        Op::Msg(m) => {
            let more_to_come = m.more_to_come();
            let cmd = m.into_command();
            let mut reply = crate::cmd::dispatch(state, ctx, cmd, None).await;
            if ctx.close_requested {
                return Err(CloseReason::FailPoint);
            }
            ctx.finish_reply(&mut reply);
            if more_to_come {
                return Ok(None);
            }
            let out = Message::new(next_request_id(), request_id, Op::Msg(OpMsg::new(reply)));
            Ok(Some(encode_or_error(&out, |d| {
                Message::new(next_request_id(), request_id, Op::Msg(OpMsg::new(d)))
            })))
        }
        Op::Query(q) => {
            let reply_of = |docs: Vec<Document>, flags: i32| {
                Message::new(
                    next_request_id(),
                    request_id,
                    Op::Reply(OpReply {
                        response_flags: flags,
                        cursor_id: 0,
                        starting_from: 0,
                        documents: docs,
                    }),
                )
            };
            let out = match q.command_db() {
                Some(db) => {
                    let cmd = q.command();
                    let mut reply = crate::cmd::dispatch(state, ctx, cmd, Some(db.to_owned())).await;
                    if ctx.close_requested {
                        return Err(CloseReason::FailPoint);
                    }
                    ctx.finish_reply(&mut reply);
                    reply_of(vec![reply], 8)
                }
                None => {
                    let err = doc! {
                        "$err": "OP_QUERY is no longer supported except for commands on <db>.$cmd",
                        "code": Bson::Int32(5739101),
                        "ok": 0.0,
                    };
                    reply_of(vec![err], 2)
                }
            };
            Ok(Some(encode_or_error(&out, |d| reply_of(vec![d], 8))))
        }
        Op::Reply(_) => Err(CloseReason::Protocol("client sent OP_REPLY".into())),
    }
}
