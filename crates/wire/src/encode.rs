//! Encoding: a [`Message`] to bytes, with the length computed and, for OP_MSG with
//! `checksumPresent`, the CRC-32C trailer appended.

use bson::Document;

use crate::WireError;
use crate::message::{Message, Op, flags};

fn put_doc(out: &mut Vec<u8>, doc: &Document) -> Result<(), WireError> {
    doc.to_writer(out).map_err(|e| WireError::Encode(e.to_string()))
}

fn put_cstring(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    if s.as_bytes().contains(&0) {
        return Err(WireError::Encode("cstring contains NUL".into()));
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

fn len_i32(n: usize) -> Result<i32, WireError> {
    i32::try_from(n).map_err(|_| WireError::Encode(format!("length {n} does not fit in i32")))
}

/// Encodes `msg`; the header's `message_length` and `op_code` are derived from the body.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&msg.header.request_id.to_le_bytes());
    out.extend_from_slice(&msg.header.response_to.to_le_bytes());
    out.extend_from_slice(&msg.op.op_code().to_le_bytes());
    let mut checksum = false;
    match &msg.op {
        Op::Msg(m) => {
            out.extend_from_slice(&m.flags.to_le_bytes());
            out.push(0);
            put_doc(&mut out, &m.body)?;
            for seq in &m.sequences {
                out.push(1);
                let start = out.len();
                out.extend_from_slice(&[0u8; 4]);
                put_cstring(&mut out, &seq.identifier)?;
                for d in &seq.documents {
                    put_doc(&mut out, d)?;
                }
                let size = len_i32(out.len() - start)?;
                out[start..start + 4].copy_from_slice(&size.to_le_bytes());
            }
            checksum = m.flags & flags::CHECKSUM_PRESENT != 0;
        }
        Op::Query(q) => {
            out.extend_from_slice(&q.flags.to_le_bytes());
            put_cstring(&mut out, &q.full_collection_name)?;
            out.extend_from_slice(&q.number_to_skip.to_le_bytes());
            out.extend_from_slice(&q.number_to_return.to_le_bytes());
            put_doc(&mut out, &q.query)?;
            if let Some(sel) = &q.return_fields_selector {
                put_doc(&mut out, sel)?;
            }
        }
        Op::Reply(r) => {
            out.extend_from_slice(&r.response_flags.to_le_bytes());
            out.extend_from_slice(&r.cursor_id.to_le_bytes());
            out.extend_from_slice(&r.starting_from.to_le_bytes());
            out.extend_from_slice(&len_i32(r.documents.len())?.to_le_bytes());
            for d in &r.documents {
                put_doc(&mut out, d)?;
            }
        }
    }
    let total = out.len() + if checksum { 4 } else { 0 };
    let total = len_i32(total)?;
    out[0..4].copy_from_slice(&total.to_le_bytes());
    if checksum {
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    Ok(out)
}
