//! Decoding: frame boundaries, opcode bodies, bounded BSON.
//!
//! [`FrameDecoder`] is the incremental, allocation-bounded entry point for a byte stream;
//! [`decode_frame`] parses one complete frame. Neither panics on any input.

use bson::{Document, RawBsonRef, RawDocument};
use bytes::BytesMut;

use crate::message::{DocumentSequence, Header, Message, Op, OpMsg, OpQuery, OpReply, flags};
use crate::{HEADER_LEN, MAX_BSON_DEPTH, OP_COMPRESSED, OP_MSG, OP_QUERY, OP_REPLY, WireError};

/// Incremental decoder over a growing byte buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_message_size: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_message_size`.
    pub fn new(max_message_size: usize) -> Self {
        FrameDecoder { max_message_size }
    }

    /// The length of the frame at the start of `buf` once its header length prefix is there,
    /// validated against the bounds. `Ok(None)` means fewer than 4 bytes are buffered.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, WireError> {
        let Some(prefix) = buf.get(..4) else { return Ok(None) };
        let len = i32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let Ok(len) = usize::try_from(len) else { return Err(WireError::BadLength(len.into())) };
        if len < HEADER_LEN {
            return Err(WireError::BadLength(len as i64));
        }
        if len > self.max_message_size {
            return Err(WireError::TooLarge { len, max: self.max_message_size });
        }
        Ok(Some(len))
    }

    /// Takes one complete message off the front of `buf`, or `Ok(None)` when more bytes are needed.
    /// After an error the stream is unusable (the caller closes the connection).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(len) = self.frame_len(buf)? else { return Ok(None) };
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(len);
        decode_frame(&frame).map(Some)
    }
}

/// A little-endian cursor over a byte slice that never panics.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::malformed(
                self.what,
                format!("truncated: wanted {n} bytes, {} left", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn cstring(&mut self) -> Result<String, WireError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return Err(WireError::malformed(self.what, "unterminated cstring"));
        };
        let bytes = self.take(nul + 1)?;
        std::str::from_utf8(&bytes[..nul])
            .map(str::to_owned)
            .map_err(|_| WireError::malformed(self.what, "cstring is not UTF-8"))
    }
    fn document(&mut self) -> Result<Document, WireError> {
        let (doc, used) = read_document(self.buf).map_err(|e| match e {
            WireError::Malformed { detail, .. } => WireError::malformed(self.what, detail),
            other => other,
        })?;
        self.buf = &self.buf[used..];
        Ok(doc)
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads one BSON document from the start of `buf`, returning it and the number of bytes it used.
/// The document's structure and nesting depth are validated before it is materialized.
pub fn read_document(buf: &[u8]) -> Result<(Document, usize), WireError> {
    let Some(prefix) = buf.get(..4) else {
        return Err(WireError::malformed("document", "truncated length prefix"));
    };
    let len = i32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let len = usize::try_from(len)
        .map_err(|_| WireError::malformed("document", format!("negative length {len}")))?;
    if len < 5 || len > buf.len() {
        return Err(WireError::malformed(
            "document",
            format!("length {len} out of bounds ({} available)", buf.len()),
        ));
    }
    let raw =
        RawDocument::from_bytes(&buf[..len]).map_err(|e| WireError::malformed("document", e.to_string()))?;
    check_document(raw, 1)?;
    let doc = Document::try_from(raw).map_err(|e| WireError::malformed("document", e.to_string()))?;
    Ok((doc, len))
}

/// Walks a raw document, failing on malformed elements or on nesting deeper than [`MAX_BSON_DEPTH`].
pub fn check_document(raw: &RawDocument, depth: usize) -> Result<(), WireError> {
    if depth > MAX_BSON_DEPTH {
        return Err(WireError::malformed("document", format!("nesting deeper than {MAX_BSON_DEPTH}")));
    }
    for elem in raw {
        let (_, value) = elem.map_err(|e| WireError::malformed("document", e.to_string()))?;
        check_value(value, depth)?;
    }
    Ok(())
}

fn check_value(value: RawBsonRef<'_>, depth: usize) -> Result<(), WireError> {
    match value {
        RawBsonRef::Document(d) => check_document(d, depth + 1),
        RawBsonRef::JavaScriptCodeWithScope(c) => check_document(c.scope, depth + 1),
        RawBsonRef::Array(a) => {
            if depth + 1 > MAX_BSON_DEPTH {
                return Err(WireError::malformed(
                    "document",
                    format!("nesting deeper than {MAX_BSON_DEPTH}"),
                ));
            }
            for v in a {
                let v = v.map_err(|e| WireError::malformed("document", e.to_string()))?;
                check_value(v, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Parses one complete frame (header included). `frame.len()` must equal the header's length.
pub fn decode_frame(frame: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { buf: frame, what: "header" };
    let header =
        Header { message_length: r.i32()?, request_id: r.i32()?, response_to: r.i32()?, op_code: r.i32()? };
    if usize::try_from(header.message_length).ok() != Some(frame.len()) {
        return Err(WireError::BadLength(header.message_length.into()));
    }
    let body = r.buf;
    let op = match header.op_code {
        OP_MSG => Op::Msg(decode_op_msg(frame, body)?),
        OP_QUERY => Op::Query(decode_op_query(body)?),
        OP_REPLY => Op::Reply(decode_op_reply(body)?),
        OP_COMPRESSED => return Err(WireError::UnsupportedOpCode(OP_COMPRESSED)),
        other => return Err(WireError::UnsupportedOpCode(other)),
    };
    Ok(Message { header, op })
}

fn decode_op_msg(frame: &[u8], body: &[u8]) -> Result<OpMsg, WireError> {
    let mut r = Reader { buf: body, what: "OP_MSG" };
    let flag_bits = r.u32()?;
    let unknown = flag_bits & flags::REQUIRED_MASK & !flags::KNOWN_REQUIRED;
    if unknown != 0 {
        return Err(WireError::UnknownRequiredFlags(unknown));
    }
    if flag_bits & flags::CHECKSUM_PRESENT != 0 {
        if r.buf.len() < 4 {
            return Err(WireError::malformed("OP_MSG", "checksum flag set but no checksum"));
        }
        let split = r.buf.len() - 4;
        let (sections, trailer) = r.buf.split_at(split);
        let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let computed = crc32c::crc32c(&frame[..frame.len() - 4]);
        if expected != computed {
            return Err(WireError::ChecksumMismatch { expected, computed });
        }
        r.buf = sections;
    }
    let mut body_doc = None;
    let mut sequences = Vec::new();
    while !r.is_empty() {
        match r.u8()? {
            0 => {
                let doc = r.document()?;
                if body_doc.replace(doc).is_some() {
                    return Err(WireError::malformed("OP_MSG", "more than one body section"));
                }
            }
            1 => {
                let size = r.i32()?;
                let size = usize::try_from(size)
                    .ok()
                    .filter(|s| *s >= 4)
                    .ok_or_else(|| WireError::malformed("OP_MSG", format!("bad section size {size}")))?;
                let section = r.take(size - 4)?;
                let mut s = Reader { buf: section, what: "OP_MSG document sequence" };
                let identifier = s.cstring()?;
                let mut documents = Vec::new();
                while !s.is_empty() {
                    documents.push(s.document()?);
                }
                sequences.push(DocumentSequence { identifier, documents });
            }
            kind => return Err(WireError::malformed("OP_MSG", format!("unknown section kind {kind}"))),
        }
    }
    let body = body_doc.ok_or_else(|| WireError::malformed("OP_MSG", "no body section"))?;
    Ok(OpMsg { flags: flag_bits, body, sequences })
}

fn decode_op_query(body: &[u8]) -> Result<OpQuery, WireError> {
    let mut r = Reader { buf: body, what: "OP_QUERY" };
    let flags = r.i32()?;
    let full_collection_name = r.cstring()?;
    let number_to_skip = r.i32()?;
    let number_to_return = r.i32()?;
    let query = r.document()?;
    let return_fields_selector = if r.is_empty() { None } else { Some(r.document()?) };
    if !r.is_empty() {
        return Err(WireError::malformed("OP_QUERY", "trailing bytes"));
    }
    Ok(OpQuery {
        flags,
        full_collection_name,
        number_to_skip,
        number_to_return,
        query,
        return_fields_selector,
    })
}

fn decode_op_reply(body: &[u8]) -> Result<OpReply, WireError> {
    let mut r = Reader { buf: body, what: "OP_REPLY" };
    let response_flags = r.i32()?;
    let cursor_id = r.i64()?;
    let starting_from = r.i32()?;
    let number_returned = r.i32()?;
    let mut documents = Vec::new();
    while !r.is_empty() {
        documents.push(r.document()?);
    }
    if usize::try_from(number_returned).ok() != Some(documents.len()) {
        return Err(WireError::malformed(
            "OP_REPLY",
            format!("numberReturned {number_returned} but {} documents", documents.len()),
        ));
    }
    Ok(OpReply { response_flags, cursor_id, starting_from, documents })
}
