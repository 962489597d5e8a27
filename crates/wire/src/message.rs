//! Message types. A [`Message`] is a header plus one opcode body; encoding recomputes the length and opcode
//! from the body, so the header fields that matter to callers are `request_id` and `response_to`.

use bson::Document;

/// `OP_REPLY`.
pub const OP_REPLY: i32 = 1;
/// `OP_QUERY`.
pub const OP_QUERY: i32 = 2004;
/// `OP_COMPRESSED` (not supported; we never advertise compressors).
pub const OP_COMPRESSED: i32 = 2012;
/// `OP_MSG`.
pub const OP_MSG: i32 = 2013;

/// OP_MSG flag bits.
pub mod flags {
    /// A CRC-32C of the message trails the sections.
    pub const CHECKSUM_PRESENT: u32 = 1 << 0;
    /// The sender will send another message without waiting for a reply (no reply to this one).
    pub const MORE_TO_COME: u32 = 1 << 1;
    /// The client is prepared for multiple replies (exhaust cursors).
    pub const EXHAUST_ALLOWED: u32 = 1 << 16;
    /// Bits 0-15 are "required": a parser must reject unknown ones.
    pub const REQUIRED_MASK: u32 = 0xFFFF;
    /// Required bits we understand.
    pub const KNOWN_REQUIRED: u32 = CHECKSUM_PRESENT | MORE_TO_COME;
}

/// The standard message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub message_length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

/// A kind-1 section: an identifier (e.g. `documents`) and its documents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocumentSequence {
    pub identifier: String,
    pub documents: Vec<Document>,
}

/// `OP_MSG`: exactly one body section plus any number of document sequences.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpMsg {
    pub flags: u32,
    pub body: Document,
    pub sequences: Vec<DocumentSequence>,
}

impl OpMsg {
    /// A reply or request with only a body and no flags.
    pub fn new(body: Document) -> Self {
        OpMsg { flags: 0, body, sequences: Vec::new() }
    }
    /// Whether the sender wants no reply.
    pub fn more_to_come(&self) -> bool {
        self.flags & flags::MORE_TO_COME != 0
    }
    /// Whether the message carries (or is to be encoded with) a CRC-32C trailer.
    pub fn checksum_present(&self) -> bool {
        self.flags & flags::CHECKSUM_PRESENT != 0
    }
    /// The command document with every document sequence folded into the body as an array field,
    /// as the server sees the command (`insert` + sequence `documents` -> `{insert, documents: [...]}`).
    /// A sequence whose identifier is also a body field replaces it.
    pub fn into_command(self) -> Document {
        let mut body = self.body;
        for seq in self.sequences {
            let arr = seq.documents.into_iter().map(bson::Bson::Document).collect::<Vec<_>>();
            body.insert(seq.identifier, bson::Bson::Array(arr));
        }
        body
    }
}

/// Legacy `OP_QUERY`; only used for commands on `<db>.$cmd`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpQuery {
    pub flags: i32,
    pub full_collection_name: String,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    pub query: Document,
    pub return_fields_selector: Option<Document>,
}

impl OpQuery {
    /// The database of a `<db>.$cmd` query, `None` for other namespaces.
    pub fn command_db(&self) -> Option<&str> {
        self.full_collection_name.strip_suffix(".$cmd").filter(|d| !d.is_empty())
    }
    /// The command document: legacy drivers may wrap it as `{$query: {...}, $readPreference: ...}`.
    pub fn command(&self) -> Document {
        match self.query.get("$query") {
            Some(bson::Bson::Document(inner)) => inner.clone(),
            _ => self.query.clone(),
        }
    }
}

/// Legacy `OP_REPLY`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpReply {
    pub response_flags: i32,
    pub cursor_id: i64,
    pub starting_from: i32,
    pub documents: Vec<Document>,
}

/// One opcode body.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Msg(OpMsg),
    Query(OpQuery),
    Reply(OpReply),
}

impl Op {
    /// The opcode number of this body.
    pub fn op_code(&self) -> i32 {
        match self {
            Op::Msg(_) => OP_MSG,
            Op::Query(_) => OP_QUERY,
            Op::Reply(_) => OP_REPLY,
        }
    }
}

/// A decoded or to-be-encoded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub header: Header,
    pub op: Op,
}

impl Message {
    /// A message with the given ids; length and opcode are filled in by encoding.
    pub fn new(request_id: i32, response_to: i32, op: Op) -> Self {
        let header = Header { message_length: 0, request_id, response_to, op_code: op.op_code() };
        Message { header, op }
    }
}
