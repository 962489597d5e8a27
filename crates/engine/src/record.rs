//! Write records: the unit of the journal and of snapshots, and their binary encoding.
//!
//! A record's payload (what the frame's CRC covers, see [`crate::journal`]) is:
//!
//! ```text
//! op: u8, then the op's fields in order:
//!   str  = u32 LE byte length + UTF-8 bytes
//!   doc  = one BSON document (self-delimiting: its first 4 bytes are its length)
//!   bool = u8 (0 or 1)
//!   u64  = 8 bytes LE
//! 1 CreateCollection  db:str coll:str options:doc uuid:16 bytes
//! 2 DropCollection    db:str coll:str
//! 3 Rename            db:str coll:str to_db:str to_coll:str drop_target:bool
//! 4 DropDatabase      db:str
//! 5 CreateIndex       db:str coll:str spec:doc
//! 6 DropIndex         db:str coll:str name:str
//! 7 Insert            db:str coll:str doc:doc
//! 8 Replace           db:str coll:str doc:doc          (full new document, found by its _id)
//! 9 Delete            db:str coll:str id:doc           ({_id: <id>})
//! 10 SnapshotBegin    generation:u64
//! 11 SnapshotEnd
//! ```
//!
//! Invariant: `decode(encode(r)) == r` for every record; a payload with trailing bytes or an
//! unknown op is rejected (the caller reports it as corruption).

use bson::{Bson, Document};

/// One logical change to the engine's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    CreateCollection {
        db: String,
        coll: String,
        options: Document,
        uuid: [u8; 16],
    },
    DropCollection {
        db: String,
        coll: String,
    },
    Rename {
        db: String,
        coll: String,
        to_db: String,
        to_coll: String,
        drop_target: bool,
    },
    DropDatabase {
        db: String,
    },
    CreateIndex {
        db: String,
        coll: String,
        spec: Document,
    },
    DropIndex {
        db: String,
        coll: String,
        name: String,
    },
    Insert {
        db: String,
        coll: String,
        doc: Document,
    },
    Replace {
        db: String,
        coll: String,
        doc: Document,
    },
    Delete {
        db: String,
        coll: String,
        id: Bson,
    },
    SnapshotBegin {
        generation: u64,
    },
    SnapshotEnd,
    /// `collMod`: the collection's options from now on (its validation settings changed).
    SetOptions {
        db: String,
        coll: String,
        options: Document,
    },
}

/// Borrowed form used on the write path, so documents are not cloned to be journaled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RecordRef<'a> {
    CreateCollection { db: &'a str, coll: &'a str, options: &'a Document, uuid: [u8; 16] },
    DropCollection { db: &'a str, coll: &'a str },
    Rename { db: &'a str, coll: &'a str, to_db: &'a str, to_coll: &'a str, drop_target: bool },
    DropDatabase { db: &'a str },
    CreateIndex { db: &'a str, coll: &'a str, spec: &'a Document },
    DropIndex { db: &'a str, coll: &'a str, name: &'a str },
    Insert { db: &'a str, coll: &'a str, doc: &'a Document },
    Replace { db: &'a str, coll: &'a str, doc: &'a Document },
    Delete { db: &'a str, coll: &'a str, id: &'a Bson },
    SnapshotBegin { generation: u64 },
    SnapshotEnd,
    SetOptions { db: &'a str, coll: &'a str, options: &'a Document },
}

#[cfg(test)]
impl Record {
    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Record::CreateCollection { db, coll, options, uuid } => {
                RecordRef::CreateCollection { db, coll, options, uuid: *uuid }
            }
            Record::DropCollection { db, coll } => RecordRef::DropCollection { db, coll },
            Record::Rename { db, coll, to_db, to_coll, drop_target } => {
                RecordRef::Rename { db, coll, to_db, to_coll, drop_target: *drop_target }
            }
            Record::DropDatabase { db } => RecordRef::DropDatabase { db },
            Record::CreateIndex { db, coll, spec } => RecordRef::CreateIndex { db, coll, spec },
            Record::DropIndex { db, coll, name } => RecordRef::DropIndex { db, coll, name },
            Record::Insert { db, coll, doc } => RecordRef::Insert { db, coll, doc },
            Record::Replace { db, coll, doc } => RecordRef::Replace { db, coll, doc },
            Record::Delete { db, coll, id } => RecordRef::Delete { db, coll, id },
            Record::SnapshotBegin { generation } => RecordRef::SnapshotBegin { generation: *generation },
            Record::SnapshotEnd => RecordRef::SnapshotEnd,
            Record::SetOptions { db, coll, options } => RecordRef::SetOptions { db, coll, options },
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_doc(out: &mut Vec<u8>, d: &Document) -> Result<(), String> {
    d.to_writer(out).map_err(|e| format!("cannot encode document: {e}"))
}

impl RecordRef<'_> {
    /// Appends the payload of this record to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        match *self {
            RecordRef::CreateCollection { db, coll, options, uuid } => {
                out.push(1);
                put_str(out, db);
                put_str(out, coll);
                put_doc(out, options)?;
                out.extend_from_slice(&uuid);
            }
            RecordRef::DropCollection { db, coll } => {
                out.push(2);
                put_str(out, db);
                put_str(out, coll);
            }
            RecordRef::Rename { db, coll, to_db, to_coll, drop_target } => {
                out.push(3);
                put_str(out, db);
                put_str(out, coll);
                put_str(out, to_db);
                put_str(out, to_coll);
                out.push(u8::from(drop_target));
            }
            RecordRef::DropDatabase { db } => {
                out.push(4);
                put_str(out, db);
            }
            RecordRef::CreateIndex { db, coll, spec } => {
                out.push(5);
                put_str(out, db);
                put_str(out, coll);
                put_doc(out, spec)?;
            }
            RecordRef::DropIndex { db, coll, name } => {
                out.push(6);
                put_str(out, db);
                put_str(out, coll);
                put_str(out, name);
            }
            RecordRef::Insert { db, coll, doc } => {
                out.push(7);
                put_str(out, db);
                put_str(out, coll);
                put_doc(out, doc)?;
            }
            RecordRef::Replace { db, coll, doc } => {
                out.push(8);
                put_str(out, db);
                put_str(out, coll);
                put_doc(out, doc)?;
            }
            RecordRef::Delete { db, coll, id } => {
                out.push(9);
                put_str(out, db);
                put_str(out, coll);
                let mut d = Document::new();
                d.insert("_id", id.clone());
                put_doc(out, &d)?;
            }
            RecordRef::SnapshotBegin { generation } => {
                out.push(10);
                out.extend_from_slice(&generation.to_le_bytes());
            }
            RecordRef::SnapshotEnd => out.push(11),
            RecordRef::SetOptions { db, coll, options } => {
                out.push(12);
                put_str(out, db);
                put_str(out, coll);
                put_doc(out, options)?;
            }
        }
        Ok(())
    }
}

/// A cursor over a payload being decoded.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("payload too short: need {n} bytes at {}", self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in name".to_string())
    }
    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("invalid bool byte {b}")),
        }
    }
    fn doc(&mut self) -> Result<Document, String> {
        let rest = &self.buf[self.pos..];
        if rest.len() < 4 {
            return Err("truncated document".into());
        }
        let n = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let n = usize::try_from(n).map_err(|_| "negative document length".to_string())?;
        let b = self.take(n)?;
        Document::from_reader(b).map_err(|e| format!("invalid BSON document: {e}"))
    }
}

/// Decodes one payload.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, String> {
    let mut r = Reader { buf: payload, pos: 0 };
    let rec = match r.u8()? {
        1 => {
            let db = r.str()?;
            let coll = r.str()?;
            let options = r.doc()?;
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(r.take(16)?);
            Record::CreateCollection { db, coll, options, uuid }
        }
        2 => Record::DropCollection { db: r.str()?, coll: r.str()? },
        3 => Record::Rename {
            db: r.str()?,
            coll: r.str()?,
            to_db: r.str()?,
            to_coll: r.str()?,
            drop_target: r.bool()?,
        },
        4 => Record::DropDatabase { db: r.str()? },
        5 => Record::CreateIndex { db: r.str()?, coll: r.str()?, spec: r.doc()? },
        6 => Record::DropIndex { db: r.str()?, coll: r.str()?, name: r.str()? },
        7 => Record::Insert { db: r.str()?, coll: r.str()?, doc: r.doc()? },
        8 => Record::Replace { db: r.str()?, coll: r.str()?, doc: r.doc()? },
        9 => {
            let db = r.str()?;
            let coll = r.str()?;
            let d = r.doc()?;
            let id = d.get("_id").cloned().ok_or_else(|| "delete record without _id".to_string())?;
            Record::Delete { db, coll, id }
        }
        10 => Record::SnapshotBegin { generation: r.u64()? },
        11 => Record::SnapshotEnd,
        12 => Record::SetOptions { db: r.str()?, coll: r.str()?, options: r.doc()? },
        op => return Err(format!("unknown record op {op}")),
    };
    if r.pos != payload.len() {
        return Err(format!("{} trailing bytes after record", payload.len() - r.pos));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    fn roundtrip(r: Record) {
        let mut buf = Vec::new();
        r.as_ref().encode(&mut buf).unwrap();
        assert_eq!(decode(&buf).unwrap(), r);
        // Every strict prefix must fail to decode (no silent partial records).
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "prefix {cut} of {r:?} decoded");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn all_records_roundtrip() {
        let s = |x: &str| x.to_string();
        roundtrip(Record::CreateCollection {
            db: s("db"),
            coll: s("c"),
            options: doc! {"capped": false},
            uuid: [7; 16],
        });
        roundtrip(Record::DropCollection { db: s("db"), coll: s("c") });
        roundtrip(Record::Rename {
            db: s("a"),
            coll: s("b"),
            to_db: s("c"),
            to_coll: s("d"),
            drop_target: true,
        });
        roundtrip(Record::DropDatabase { db: s("ü") });
        roundtrip(Record::CreateIndex {
            db: s("db"),
            coll: s("c"),
            spec: doc! {"key": {"a": 1}, "name": "a_1"},
        });
        roundtrip(Record::DropIndex { db: s("db"), coll: s("c"), name: s("a_1") });
        roundtrip(Record::Insert { db: s("db"), coll: s("c"), doc: doc! {"_id": 1, "x": [1, {"y": null}]} });
        roundtrip(Record::Replace { db: s("db"), coll: s("c"), doc: doc! {"_id": "k", "x": 2.5} });
        roundtrip(Record::Delete { db: s("db"), coll: s("c"), id: Bson::Int64(9) });
        roundtrip(Record::SnapshotBegin { generation: u64::MAX - 3 });
        roundtrip(Record::SnapshotEnd);
        roundtrip(Record::SetOptions {
            db: "d".into(),
            coll: "c".into(),
            options: bson::doc! {"validator": {"a": 1}, "validationLevel": "moderate"},
        });
    }

    #[test]
    fn unknown_op_is_rejected() {
        assert!(decode(&[200]).is_err());
        assert!(decode(&[]).is_err());
    }
}
