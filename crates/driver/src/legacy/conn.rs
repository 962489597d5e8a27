//! One connection of the legacy client: a TCP stream framed by `docplane-wire`, a handshake
//! (`isMaster` over `OP_QUERY`, which every server version answers), then commands over
//! `OP_MSG` (wire version >= 6) or `OP_QUERY` on `<db>.$cmd` (older), and SCRAM authentication.
//!
//! Invariants: one request in flight per connection (a reply must answer the last request id);
//! a connection whose round trip failed or was cancelled mid-way is dropped, never reused (the
//! caller owns that rule: it only returns connections to the cache after a completed command);
//! frames longer than the server's advertised `maxMessageSizeBytes` are refused before buffering.

use std::time::Duration;

use bson::{Bson, Document, doc};
use bytes::BytesMut;
use docplane_wire::{FrameDecoder, command_reply, decode_frame, encode_command_msg, encode_command_query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::scram::{ClientFirst, Mechanism, new_nonce};
use crate::config::Credentials;
use crate::error::{DriverError, Result};

/// First wire version with `OP_MSG` (MongoDB 3.6).
pub const OP_MSG_WIRE_VERSION: i32 = 6;

/// MongoDB's "AuthenticationFailed".
const AUTH_FAILED: i32 = 18;

/// A handshaken connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_id: i32,
    /// Whether commands go as `OP_MSG` (else `OP_QUERY`); from the handshake's wire version.
    pub(crate) use_op_msg: bool,
    /// The handshake's `isMaster` reply.
    pub hello: Document,
    /// `maxWireVersion` of the handshake (0 when absent: a pre-3.0 server).
    pub max_wire_version: i32,
}

/// `host:port` with MongoDB's default port added when none is given.
pub fn with_default_port(address: &str) -> Result<String> {
    let address = address.trim();
    if address.is_empty() {
        return Err(DriverError::InvalidRequest("empty node address".into()));
    }
    let has_port = match address.rsplit_once(':') {
        Some((host, port)) => {
            (!host.contains(':') || host.ends_with(']'))
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    };
    if has_port {
        return Ok(address.to_owned());
    }
    if address.contains(':') && !address.starts_with('[') {
        return Ok(format!("[{address}]:27017"));
    }
    Ok(format!("{address}:27017"))
}

/// The handshake command: `isMaster` with our application name (so the node's `currentOp`
/// shows it and docplane can hide its own connections) and, with credentials,
/// `saslSupportedMechs` for mechanism negotiation.
pub fn handshake_command(app_name: &str, credentials: Option<&Credentials>) -> Document {
    let mut cmd = doc! {
        "isMaster": 1,
        "client": {
            "application": {"name": app_name},
            "driver": {"name": "docplane-legacy", "version": env!("CARGO_PKG_VERSION")},
            "os": {"type": std::env::consts::OS, "architecture": std::env::consts::ARCH},
        },
    };
    if let Some(c) = credentials {
        cmd.insert("saslSupportedMechs", format!("{}.{}", auth_db(c), c.username));
    }
    cmd
}

fn auth_db(c: &Credentials) -> &str {
    c.source.as_deref().unwrap_or("admin")
}

/// `Ok(reply)` when `ok` is 1, else the classified command error.
pub fn check_ok(reply: Document) -> Result<Document> {
    let ok = match reply.get("ok") {
        Some(Bson::Double(d)) => *d == 1.0,
        Some(Bson::Int32(n)) => *n == 1,
        Some(Bson::Int64(n)) => *n == 1,
        Some(Bson::Boolean(b)) => *b,
        _ => false,
    };
    if ok {
        return Ok(reply);
    }
    let code = match reply.get("code") {
        Some(Bson::Int32(c)) => *c,
        Some(Bson::Int64(c)) => i32::try_from(*c).unwrap_or(0),
        Some(Bson::Double(c)) if c.fract() == 0.0 && c.abs() < 2.0e9 => {
            #[expect(clippy::cast_possible_truncation, reason = "integral and range checked")]
            let c = *c as i32;
            c
        }
        _ => 0,
    };
    let message =
        reply.get_str("errmsg").or_else(|_| reply.get_str("$err")).unwrap_or("command failed").to_owned();
    if code == AUTH_FAILED {
        return Err(DriverError::AuthenticationFailed(message));
    }
    Err(DriverError::CommandFailed { code, message })
}

fn io_error(address: &str, e: &std::io::Error) -> DriverError {
    DriverError::Unreachable(format!("{address}: {e}"))
}

impl Conn {
    /// Connects to `address` and handshakes, all within `timeout`.
    pub async fn connect(
        address: &str,
        app_name: &str,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<Conn> {
        let address = with_default_port(address)?;
        let fut = async {
            let stream = TcpStream::connect(&address).await.map_err(|e| io_error(&address, &e))?;
            stream.set_nodelay(true).map_err(|e| io_error(&address, &e))?;
            let mut conn = Conn {
                stream,
                buf: BytesMut::with_capacity(16 * 1024),
                decoder: FrameDecoder::new(docplane_wire::DEFAULT_MAX_MESSAGE_SIZE),
                next_id: 1,
                use_op_msg: false,
                hello: Document::new(),
                max_wire_version: 0,
            };
            let hello = check_ok(conn.round_trip("admin", handshake_command(app_name, credentials)).await?)?;
            conn.max_wire_version =
                crate::info::HelloInfo::from_document(&hello).max_wire_version.unwrap_or(0);
            conn.use_op_msg = conn.max_wire_version >= OP_MSG_WIRE_VERSION;
            if let Some(max) = hello.get("maxMessageSizeBytes").and_then(crate::info::bson_u64) {
                let max = usize::try_from(max).unwrap_or(usize::MAX).max(docplane_wire::HEADER_LEN);
                conn.decoder = FrameDecoder::new(max);
            }
            conn.hello = hello;
            Ok(conn)
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Unreachable(format!("{address}: no handshake within {timeout:?}"))),
        }
    }

    /// Sends `command` on `db` and returns the reply document, unchecked.
    pub async fn round_trip(&mut self, db: &str, command: Document) -> Result<Document> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let encoded = if self.use_op_msg {
            encode_command_msg(id, db, command)
        } else {
            encode_command_query(id, db, command)
        };
        let bytes = encoded.map_err(|e| DriverError::InvalidRequest(e.to_string()))?;
        let lost = |e: std::io::Error| DriverError::Unreachable(format!("connection lost: {e}"));
        self.stream.write_all(&bytes).await.map_err(lost)?;
        let protocol = |e: docplane_wire::WireError| DriverError::Unreachable(format!("protocol error: {e}"));
        loop {
            if let Some(len) = self.decoder.frame_len(&self.buf).map_err(protocol)?
                && self.buf.len() >= len
            {
                let frame = self.buf.split_to(len);
                let msg = decode_frame(&frame).map_err(protocol)?;
                return command_reply(msg, id).map_err(protocol);
            }
            let n = self.stream.read_buf(&mut self.buf).await.map_err(lost)?;
            if n == 0 {
                return Err(DriverError::Unreachable("connection closed by the node".into()));
            }
        }
    }

    /// Runs `command` on `db`, failing on `ok: 0`.
    pub async fn command(&mut self, db: &str, command: Document) -> Result<Document> {
        check_ok(self.round_trip(db, command).await?)
    }

    /// The SCRAM mechanism to use: SHA-256 when the handshake listed it for this user.
    pub fn mechanism(&self) -> Mechanism {
        let listed: Vec<String> = self
            .hello
            .get_array("saslSupportedMechs")
            .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Mechanism::negotiate(&listed)
    }

    /// SCRAM authentication (`saslStart` / `saslContinue` on the credentials' database).
    pub async fn authenticate(&mut self, credentials: &Credentials, mechanism: Mechanism) -> Result<()> {
        let db = auth_db(credentials).to_owned();
        let scram_err = |e: super::scram::ScramError| DriverError::AuthenticationFailed(e.to_string());
        let first = ClientFirst::new(mechanism, &credentials.username, &new_nonce());
        let reply = self
            .command(
                &db,
                doc! {
                    "saslStart": 1,
                    "mechanism": mechanism.name(),
                    "payload": binary(first.message().into_bytes()),
                    "autoAuthorize": 1,
                    "options": {"skipEmptyExchange": true},
                },
            )
            .await?;
        let conversation = reply.get("conversationId").cloned().unwrap_or(Bson::Int32(1));
        let server_first = payload_text(&reply)?;
        let input = mechanism.password_input(&credentials.username, &credentials.password);
        let (client_final, pending) = first.finish(&server_first, &input).map_err(scram_err)?;
        let mut reply = self
            .command(
                &db,
                doc! {
                    "saslContinue": 1,
                    "conversationId": conversation.clone(),
                    "payload": binary(client_final.into_bytes()),
                },
            )
            .await?;
        pending.verify(&payload_text(&reply)?).map_err(scram_err)?;
        // Servers without `skipEmptyExchange` (before 4.4) want one more, empty, round.
        let mut rounds = 0;
        while !reply.get_bool("done").unwrap_or(false) {
            rounds += 1;
            if rounds > 2 {
                return Err(DriverError::AuthenticationFailed("SCRAM conversation did not finish".into()));
            }
            reply = self
                .command(
                    &db,
                    doc! {"saslContinue": 1, "conversationId": conversation.clone(), "payload": binary(Vec::new())},
                )
                .await?;
        }
        Ok(())
    }
}

fn binary(bytes: Vec<u8>) -> bson::Binary {
    bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes }
}

fn payload_text(reply: &Document) -> Result<String> {
    let bytes = match reply.get("payload") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        Some(Bson::String(s)) => s.clone().into_bytes(),
        _ => return Err(DriverError::AuthenticationFailed("SASL reply has no payload".into())),
    };
    String::from_utf8(bytes)
        .map_err(|_| DriverError::AuthenticationFailed("SASL payload is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_port() {
        assert_eq!(with_default_port("db:27018").unwrap(), "db:27018");
        assert_eq!(with_default_port("db").unwrap(), "db:27017");
        assert_eq!(with_default_port("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(with_default_port("[::1]").unwrap(), "[::1]:27017");
        assert_eq!(with_default_port("::1").unwrap(), "[::1]:27017");
        assert!(with_default_port(" ").is_err());
    }

    #[test]
    fn classifies_replies() {
        assert!(check_ok(doc! {"ok": 1.0}).is_ok());
        assert!(check_ok(doc! {"ok": 1}).is_ok());
        assert!(matches!(
            check_ok(doc! {"ok": 0.0, "code": 18, "errmsg": "bad"}),
            Err(DriverError::AuthenticationFailed(m)) if m == "bad"
        ));
        assert_eq!(
            check_ok(doc! {"ok": 0.0, "code": 13.0, "errmsg": "no"}),
            Err(DriverError::CommandFailed { code: 13, message: "no".into() })
        );
        assert_eq!(
            check_ok(doc! {"$err": "old", "code": 2_i64}),
            Err(DriverError::CommandFailed { code: 2, message: "old".into() })
        );
    }

    #[test]
    fn handshake_names_the_app_and_user() {
        let c = Credentials { username: "bob".into(), password: "x".into(), source: Some("db1".into()) };
        let h = handshake_command("my-app", Some(&c));
        assert_eq!(
            h.get_document("client").unwrap().get_document("application").unwrap().get_str("name").unwrap(),
            "my-app"
        );
        assert_eq!(h.get_str("saslSupportedMechs").unwrap(), "db1.bob");
        assert!(!handshake_command("a", None).contains_key("saslSupportedMechs"));
    }
}
