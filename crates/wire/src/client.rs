//! Client-side helpers: framing a command request and reading its reply, for a small driver that
//! talks to servers of any wire version (MongoDB 3.4 speaks only `OP_QUERY` commands; `OP_MSG`
//! arrived with wire version 6).
//!
//! Invariants:
//! - requests are commands only: `OP_QUERY` on `<db>.$cmd` with `numberToReturn = -1`, or an `OP_MSG`
//!   whose body carries `$db`; nothing here builds a legacy find;
//! - [`command_reply`] accepts a reply only if it answers the given request id, and turns an
//!   `OP_REPLY` `QueryFailure` (`$err`) into an ordinary `{ok: 0, errmsg, code}` document, so the
//!   caller interprets one reply shape whatever the transport.

use bson::{Bson, Document};

use crate::message::{Message, Op, OpMsg, OpQuery};
use crate::{WireError, encode_message};

/// `OP_QUERY` flag `SecondaryOk` (bit 2): the command may run on a secondary.
pub const QUERY_FLAG_SECONDARY_OK: i32 = 1 << 2;
/// `OP_REPLY` flag `CursorNotFound` (bit 0).
pub const REPLY_FLAG_CURSOR_NOT_FOUND: i32 = 1;
/// `OP_REPLY` flag `QueryFailure` (bit 1): the single document is `{$err, code}`.
pub const REPLY_FLAG_QUERY_FAILURE: i32 = 1 << 1;

/// The `OP_QUERY` message running `command` on `db` (namespace `<db>.$cmd`), allowed on
/// secondaries, asking for exactly one reply document.
pub fn command_query(request_id: i32, db: &str, command: Document) -> Message {
    let query = OpQuery {
        flags: QUERY_FLAG_SECONDARY_OK,
        full_collection_name: format!("{db}.$cmd"),
        number_to_skip: 0,
        number_to_return: -1,
        query: command,
        return_fields_selector: None,
    };
    Message::new(request_id, 0, Op::Query(query))
}

/// The `OP_MSG` message running `command` on `db` (`$db` is set, replacing any given one).
pub fn command_msg(request_id: i32, db: &str, mut command: Document) -> Message {
    command.insert("$db", db);
    Message::new(request_id, 0, Op::Msg(OpMsg::new(command)))
}

/// Encodes [`command_query`].
pub fn encode_command_query(request_id: i32, db: &str, command: Document) -> Result<Vec<u8>, WireError> {
    if db.is_empty() || db.contains('.') {
        return Err(WireError::Encode(format!("invalid database name {db:?}")));
    }
    encode_message(&command_query(request_id, db, command))
}

/// Encodes [`command_msg`].
pub fn encode_command_msg(request_id: i32, db: &str, command: Document) -> Result<Vec<u8>, WireError> {
    if db.is_empty() || db.contains('.') {
        return Err(WireError::Encode(format!("invalid database name {db:?}")));
    }
    encode_message(&command_msg(request_id, db, command))
}

/// The command reply document carried by `reply`, which must answer `request_id`.
///
/// `OP_MSG`: its body (document sequences folded in). `OP_REPLY`: its single document; with
/// `QueryFailure` set, `{ok: 0, errmsg: $err, code}`. Anything else is an error.
pub fn command_reply(reply: Message, request_id: i32) -> Result<Document, WireError> {
    if reply.header.response_to != request_id {
        return Err(WireError::malformed(
            "reply",
            format!("responseTo {} does not match request {request_id}", reply.header.response_to),
        ));
    }
    match reply.op {
        Op::Msg(m) => Ok(m.into_command()),
        Op::Reply(r) => {
            let mut docs = r.documents.into_iter();
            let (Some(first), None) = (docs.next(), docs.next()) else {
                return Err(WireError::malformed("OP_REPLY", "a command reply carries exactly one document"));
            };
            if r.response_flags & REPLY_FLAG_QUERY_FAILURE == 0 {
                return Ok(first);
            }
            let message = match first.get("$err") {
                Some(Bson::String(s)) => s.clone(),
                _ => "query failure".to_owned(),
            };
            let code = match first.get("code") {
                Some(Bson::Int32(c)) => Bson::Int32(*c),
                Some(Bson::Int64(c)) => i32::try_from(*c).map(Bson::Int32).unwrap_or(Bson::Int32(0)),
                _ => Bson::Int32(0),
            };
            let mut out = Document::new();
            out.insert("ok", 0.0);
            out.insert("errmsg", message);
            out.insert("code", code);
            Ok(out)
        }
        Op::Query(_) => Err(WireError::malformed("reply", "server answered with OP_QUERY")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bson::doc;

    use super::*;
    use crate::message::OpReply;
    use crate::{OP_MSG, OP_QUERY, decode_frame};

    #[test]
    fn query_frame_layout() {
        let bytes = encode_command_query(7, "admin", doc! {"isMaster": 1}).unwrap();
        let len = i32::from_le_bytes(bytes[0..4].try_into().unwrap());
        assert_eq!(usize::try_from(len).unwrap(), bytes.len());
        assert_eq!(i32::from_le_bytes(bytes[4..8].try_into().unwrap()), 7);
        assert_eq!(i32::from_le_bytes(bytes[8..12].try_into().unwrap()), 0);
        assert_eq!(i32::from_le_bytes(bytes[12..16].try_into().unwrap()), OP_QUERY);
        assert_eq!(i32::from_le_bytes(bytes[16..20].try_into().unwrap()), QUERY_FLAG_SECONDARY_OK);
        assert_eq!(&bytes[20..31], b"admin.$cmd\0");
        assert_eq!(i32::from_le_bytes(bytes[31..35].try_into().unwrap()), 0);
        assert_eq!(i32::from_le_bytes(bytes[35..39].try_into().unwrap()), -1);
        let Op::Query(q) = decode_frame(&bytes).unwrap().op else { panic!("not a query") };
        assert_eq!(q.command_db(), Some("admin"));
        assert_eq!(q.command(), doc! {"isMaster": 1});
        assert!(encode_command_query(1, "", doc! {}).is_err());
        assert!(encode_command_query(1, "a.b", doc! {}).is_err());
    }

    #[test]
    fn msg_frame_sets_db() {
        let bytes = encode_command_msg(9, "admin", doc! {"ping": 1, "$db": "other"}).unwrap();
        let m = decode_frame(&bytes).unwrap();
        assert_eq!(m.header.op_code, OP_MSG);
        assert_eq!(m.header.request_id, 9);
        let Op::Msg(msg) = m.op else { panic!("not a msg") };
        assert_eq!(msg.flags, 0);
        assert_eq!(msg.body, doc! {"ping": 1, "$db": "admin"});
    }

    fn reply(response_to: i32, flags: i32, documents: Vec<Document>) -> Message {
        Message::new(
            99,
            response_to,
            Op::Reply(OpReply { response_flags: flags, cursor_id: 0, starting_from: 0, documents }),
        )
    }

    #[test]
    fn reply_round_trips_through_bytes() {
        let sent = reply(5, 8, vec![doc! {"ok": 1.0, "ismaster": true, "maxWireVersion": 5}]);
        let decoded = decode_frame(&encode_message(&sent).unwrap()).unwrap();
        let d = command_reply(decoded, 5).unwrap();
        assert_eq!(d.get_i32("maxWireVersion").unwrap(), 5);
        assert!(d.get_bool("ismaster").unwrap());
    }

    #[test]
    fn reply_checks() {
        assert!(command_reply(reply(5, 0, vec![doc! {"ok": 1.0}]), 6).is_err());
        assert!(command_reply(reply(5, 0, vec![]), 5).is_err());
        assert!(command_reply(reply(5, 0, vec![doc! {}, doc! {}]), 5).is_err());
        let failed =
            command_reply(reply(5, REPLY_FLAG_QUERY_FAILURE, vec![doc! {"$err": "boom", "code": 13}]), 5)
                .unwrap();
        assert_eq!(failed, doc! {"ok": 0.0, "errmsg": "boom", "code": 13});
        let msg = Message::new(1, 4, Op::Msg(OpMsg::new(doc! {"ok": 1.0})));
        assert_eq!(command_reply(msg, 4).unwrap(), doc! {"ok": 1.0});
        let q = command_query(1, "admin", doc! {});
        let q = Message { header: crate::Header { response_to: 3, ..q.header }, ..q };
        assert!(command_reply(q, 3).is_err());
    }
}
