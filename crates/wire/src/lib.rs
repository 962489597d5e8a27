//! MongoDB wire protocol codec, sans-IO: bytes in, messages out, messages in, bytes out.
//!
//! Supported opcodes: `OP_MSG` (2013) with section kinds 0 (body) and 1 (document sequence), the
//! `checksumPresent` (CRC-32C trailer) and `moreToCome` flags; legacy `OP_QUERY` (2004), which old drivers
//! send to `<db>.$cmd` for their first handshake, and its answer `OP_REPLY` (1).
//!
//! Invariants:
//! - [`decode_frame`] never panics, whatever the bytes; every problem is a [`WireError`].
//! - A frame's declared length is checked against the configured maximum before any byte of the body is
//!   buffered beyond the header, so a peer cannot make us allocate more than `max_message_size`.
//! - BSON documents nested deeper than [`MAX_BSON_DEPTH`] are rejected before they are materialized, so
//!   converting them cannot overflow the stack.

mod client;
mod decode;
mod encode;
mod error;
mod message;

pub use client::{
    QUERY_FLAG_SECONDARY_OK, REPLY_FLAG_CURSOR_NOT_FOUND, REPLY_FLAG_QUERY_FAILURE, command_msg,
    command_query, command_reply, encode_command_msg, encode_command_query,
};
pub use decode::{FrameDecoder, check_document, decode_frame, read_document};
pub use encode::encode_message;
pub use error::WireError;
pub use message::{
    DocumentSequence, Header, Message, OP_COMPRESSED, OP_MSG, OP_QUERY, OP_REPLY, Op, OpMsg, OpQuery,
    OpReply, flags,
};

/// `maxMessageSizeBytes` advertised by mongod and by us.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 48_000_000;
/// `maxBsonObjectSize`.
pub const MAX_BSON_OBJECT_SIZE: usize = 16 * 1024 * 1024;
/// Deepest accepted nesting of documents and arrays (mongod allows 180 levels of user nesting).
pub const MAX_BSON_DEPTH: usize = 200;
/// Size of the standard message header.
pub const HEADER_LEN: usize = 16;
