//! One collection's in-memory state: documents ordered by `_id` plus its secondary indexes,
//! with the three primitive mutations (insert, replace, remove) that keep them in step, and an
//! undo log so a batch can be rolled back when its journal write fails.
//!
//! Invariants: `docs` maps `KeyVal(doc._id)` to the document; every index holds exactly the
//! entries of the current documents (see [`crate::index`]); `data_bytes` is the sum of the
//! documents' BSON sizes. Mutations check uniqueness *before* changing anything, so a failed
//! check leaves the state untouched.

use std::collections::BTreeMap;
use std::sync::Arc;

use bson::{Bson, Document};
use docplane_query::{CommandError, Result};
use parking_lot::RwLock;

use crate::index::{DocKeys, Index};
use crate::keys::{self, KeyVal};

/// A stored document, its BSON size and its place in insertion order.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub doc: Arc<Document>,
    pub size: u64,
    /// Insertion sequence number (a capped collection's natural order); an update keeps it.
    pub seq: u64,
}

/// A capped collection's limits (mongod's `cappedSize`, rounded up to 256 bytes, and
/// `cappedMaxDocs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    pub size: u64,
    pub max: Option<u64>,
}

impl Cap {
    /// The limits of a collection created with `options` (`capped: true`, `size`, `max`);
    /// `None` for an uncapped one.
    pub(crate) fn of(options: &Document) -> Option<Cap> {
        let num = |k: &str| match options.get(k) {
            Some(Bson::Int32(i)) => Some(i64::from(*i)),
            Some(Bson::Int64(i)) => Some(*i),
            Some(Bson::Double(f)) => Some(*f as i64),
            _ => None,
        };
        let capped = match options.get("capped") {
            Some(Bson::Boolean(b)) => *b,
            Some(Bson::Double(f)) => *f != 0.0,
            Some(Bson::Int32(_) | Bson::Int64(_)) => num("capped") != Some(0),
            _ => false,
        };
        if !capped {
            return None;
        }
        let size = num("size").unwrap_or(0).max(0) as u64;
        let size = size.saturating_add(0xff) & !0xff;
        let max = num("max").filter(|m| *m > 0).map(|m| m as u64);
        Some(Cap { size, max })
    }
}

/// A collection in the catalog. Renaming creates a new `Collection` and marks the old one
/// dropped, so holders of the old `Arc` notice.
#[derive(Debug)]
pub(crate) struct Collection {
    pub db: String,
    pub name: String,
    pub uuid: [u8; 16],
    /// The options as listCollections shows them; `collMod` changes the validation ones
    /// (under the data lock, with [`Collection::validation`]).
    pub options: RwLock<Document>,
    /// The parsed validator (`options.validator`, `validationLevel`, `validationAction`),
    /// read by every write under the data lock; `None` without a validator.
    pub validation: RwLock<Option<Arc<docplane_query::validator::Validation>>>,
    /// The default collation (`options.collation`, normalized at create): commands without
    /// one and indexes created without one take it.
    pub collation: Option<std::sync::Arc<docplane_query::Collation>>,
    /// Set for a capped collection.
    pub cap: Option<Cap>,
    pub data: RwLock<CollData>,
}

impl Collection {
    pub(crate) fn new(db: &str, name: &str, uuid: [u8; 16], options: Document) -> Collection {
        let cap = Cap::of(&options);
        // The node validated the spec and `create_collection` stored it normalized, so it
        // parses; a journal edited by hand to hold something else loses its default collation.
        let collation = match docplane_query::collation::parse(options.get("collation")) {
            Ok(r) => r.resolve(None),
            Err(e) => {
                tracing::warn!(error = %e, ns = %format!("{db}.{name}"), "stored collation does not parse");
                None
            }
        };
        // mongod's `_id_` index has the collection's collation: `_id`s equal under it clash.
        let id_collated = collation.as_ref().and_then(|c| {
            let spec = bson::doc! {"key": {"_id": 1}, "name": "_id_", "unique": true};
            crate::index::parse_spec_in(&spec, Some(c)).ok().map(|s| Index::new(0, s))
        });
        let data = CollData { natural: cap.map(|_| BTreeMap::new()), id_collated, ..CollData::default() };
        // As the collation: the node validated the validator before storing it.
        let validation = match docplane_query::validator::Validation::from_options(&options) {
            Ok(v) => v.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, ns = %format!("{db}.{name}"), "stored validator does not parse");
                None
            }
        };
        Collection {
            db: db.to_string(),
            name: name.to_string(),
            uuid,
            options: RwLock::new(options),
            validation: RwLock::new(validation),
            collation,
            cap,
            data: RwLock::new(data),
        }
    }
    pub(crate) fn ns(&self) -> String {
        format!("{}.{}", self.db, self.name)
    }

    /// A copy of the current options.
    pub(crate) fn options(&self) -> Document {
        self.options.read().clone()
    }

    /// Checks a write of `new` (replacing `old`) against the validator, unless the thread
    /// bypasses validation ([`crate::bypassing_validation`]): `Err` with 121 when it fails
    /// under `validationAction: "error"`; under `"warn"` the failure is logged and the write
    /// goes ahead, as in mongod. Called with the data lock held, so a `collMod` never
    /// changes the validator halfway through a write.
    pub(crate) fn check_valid(&self, new: &Document, old: Option<&Document>) -> Result<()> {
        if crate::validation::bypassed() {
            return Ok(());
        }
        let Some(v) = self.validation.read().clone() else { return Ok(()) };
        match v.violation(new, old) {
            None => Ok(()),
            Some(e) if v.action == docplane_query::validator::Action::Warn => {
                let info = e.info.as_deref().map(ToString::to_string).unwrap_or_default();
                tracing::warn!(ns = %self.ns(), err_info = %info, "Document would fail validation");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }
}

/// Precomputed index keys of a document about to be stored (one slot per index).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    keys: Vec<(DocKeys, bool)>,
    /// The `_id`'s key in [`CollData::id_collated`], when the collection has one.
    id_key: DocKeys,
}

/// How to reverse one mutation.
#[derive(Debug)]
pub(crate) enum Undo {
    Inserted(Bson),
    Replaced(Rec),
    Removed(Rec),
}

/// Documents and indexes of one collection.
#[derive(Debug, Default)]
pub(crate) struct CollData {
    /// Set when the collection was dropped or renamed away; scans then stop.
    pub dropped: bool,
    pub docs: BTreeMap<KeyVal, Rec>,
    pub indexes: Vec<Index>,
    pub data_bytes: u64,
    /// A capped collection's documents in insertion order (by [`Rec::seq`]); `None` for an
    /// uncapped collection, whose scans follow `_id` order.
    pub natural: Option<BTreeMap<u64, KeyVal>>,
    /// The next insertion's [`Rec::seq`].
    pub next_seq: u64,
    /// A collection with a default collation: its `_id`s as a unique index under it (mongod's
    /// `_id_` index has that collation), so two `_id`s equal only under it clash. `None`
    /// without one: `docs`' binary order is then the whole `_id` index.
    pub id_collated: Option<Index>,
}

/// mongod's DuplicateKey: the message, and `keyPattern` / `keyValue` beside the code (4.2+).
pub(crate) fn dup_key_error(ns: &str, index: &str, pattern: &Document, key: Document) -> CommandError {
    CommandError::duplicate_key(keys::dup_key_message(ns, index, &key))
        .with_info(bson::doc! {"keyPattern": pattern.clone(), "keyValue": key})
}

impl CollData {
    /// Computes index keys for `doc` and checks every unique constraint, treating the document
    /// with `doc._id` (if stored) as the one being replaced.
    pub(crate) fn prepare(&self, ns: &str, doc: &Document, id: &KeyVal, is_insert: bool) -> Result<Prepared> {
        if is_insert && self.docs.contains_key(id) {
            let mut k = Document::new();
            k.insert("_id", id.0.clone());
            return Err(dup_key_error(ns, "_id_", &bson::doc! {"_id": 1}, k));
        }
        let id_key = match &self.id_collated {
            Some(ix) => {
                let (k, _) = ix.keys_of(doc)?;
                if ix.conflict(&k, id).is_some() {
                    let mut k = Document::new();
                    k.insert("_id", id.0.clone());
                    return Err(dup_key_error(ns, "_id_", &bson::doc! {"_id": 1}, k));
                }
                k
            }
            None => None,
        };
        let mut keys = Vec::with_capacity(self.indexes.len());
        for ix in &self.indexes {
            let (k, mk) = ix.keys_of(doc)?;
            if let Some(clash) = ix.conflict(&k, id) {
                return Err(dup_key_error(ns, &ix.spec.name, &ix.spec.key, ix.key_document(clash)));
            }
            keys.push((k, mk));
        }
        Ok(Prepared { keys, id_key })
    }

    /// Stores a new document (after [`CollData::prepare`]).
    pub(crate) fn insert(&mut self, id: KeyVal, doc: Arc<Document>, size: u64, prepared: Prepared) -> Undo {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert_at(id, doc, size, prepared, seq)
    }

    /// Stores a document at insertion position `seq` (a new one, or one put back).
    fn insert_at(&mut self, id: KeyVal, doc: Arc<Document>, size: u64, prepared: Prepared, seq: u64) -> Undo {
        for (ix, (k, mk)) in self.indexes.iter_mut().zip(&prepared.keys) {
            ix.add(k, *mk, &id.0);
        }
        if let Some(ix) = &mut self.id_collated {
            ix.add(&prepared.id_key, false, &id.0);
        }
        self.data_bytes += size;
        let undo = Undo::Inserted(id.0.clone());
        if let Some(n) = &mut self.natural {
            n.insert(seq, id.clone());
        }
        self.docs.insert(id, Rec { doc, size, seq });
        undo
    }

    /// The oldest document of a capped collection (its `_id`), for eviction.
    pub(crate) fn oldest(&self) -> Option<KeyVal> {
        self.natural.as_ref()?.values().next().cloned()
    }

    fn unindex(&mut self, id: &Bson, doc: &Document) {
        for ix in self.indexes.iter_mut().chain(self.id_collated.as_mut()) {
            // Keys of a stored document were computable when it was stored.
            if let Ok((k, _)) = ix.keys_of(doc) {
                ix.remove(&k, id);
            }
        }
    }

    /// Replaces the stored document with the same `_id` (after [`CollData::prepare`]).
    pub(crate) fn replace(
        &mut self,
        id: KeyVal,
        doc: Arc<Document>,
        size: u64,
        prepared: Prepared,
    ) -> Option<Undo> {
        let old = self.docs.remove(&id)?;
        self.unindex(&id.0, &old.doc);
        self.data_bytes = self.data_bytes.saturating_sub(old.size);
        // An update keeps the document's place in insertion order, as mongod's does.
        self.insert_at(id, doc, size, prepared, old.seq);
        Some(Undo::Replaced(old))
    }

    /// Removes the document with this `_id`.
    pub(crate) fn remove(&mut self, id: &KeyVal) -> Option<Undo> {
        let old = self.docs.remove(id)?;
        self.unindex(&id.0, &old.doc);
        self.data_bytes = self.data_bytes.saturating_sub(old.size);
        if let Some(n) = &mut self.natural {
            n.remove(&old.seq);
        }
        Some(Undo::Removed(old))
    }

    /// Reverts mutations, newest first.
    pub(crate) fn undo(&mut self, log: Vec<Undo>) {
        for u in log.into_iter().rev() {
            match u {
                Undo::Inserted(id) => {
                    self.remove(&KeyVal(id));
                }
                Undo::Replaced(rec) | Undo::Removed(rec) => {
                    let Some(id) = rec.doc.get("_id").cloned() else { continue };
                    let id = KeyVal(id);
                    self.remove(&id);
                    if let Ok(p) = self.prepare("", &rec.doc, &id, true) {
                        self.insert_at(id, rec.doc, rec.size, p, rec.seq);
                    }
                }
            }
        }
    }

    /// Builds `ix` over every document and adds it. Fails (leaving `self` unchanged) on a unique
    /// violation or unindexable document. `check` is called every 128 documents.
    pub(crate) fn build_index(
        &self,
        ns: &str,
        mut ix: Index,
        check: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Index> {
        for (n, (id, rec)) in self.docs.iter().enumerate() {
            if n % docplane_query::interrupt::CHECK_EVERY == 0 {
                check()?;
            }
            docplane_query::interrupt::poll()?;
            let (k, mk) = ix.keys_of(&rec.doc)?;
            if let Some(clash) = ix.conflict(&k, id) {
                return Err(dup_key_error(ns, &ix.spec.name, &ix.spec.key, ix.key_document(clash)));
            }
            ix.add(&k, mk, &id.0);
        }
        Ok(ix)
    }

    /// Approximate bytes used by index entries (`_id_` included), for stats.
    pub(crate) fn index_sizes(&self) -> Vec<(String, u64)> {
        let mut out = vec![("_id_".to_string(), self.docs.len() as u64 * 24)];
        for ix in &self.indexes {
            out.push((
                ix.spec.name.clone(),
                ix.entries.len() as u64 * (16 + 16 * ix.spec.fields.len() as u64),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::index::{Index, parse_spec};
    use bson::doc;

    fn put(c: &mut CollData, d: Document) -> Result<Undo> {
        let id = KeyVal(d.get("_id").unwrap().clone());
        let p = c.prepare("t.c", &d, &id, true)?;
        Ok(c.insert(id, Arc::new(d), 10, p))
    }

    fn with_unique_a() -> CollData {
        let mut c = CollData::default();
        c.indexes.push(Index::new(1, parse_spec(&doc! {"key": {"a": 1}, "unique": true}).unwrap()));
        c
    }

    #[test]
    fn insert_replace_remove_keep_indexes_in_step() {
        let mut c = with_unique_a();
        put(&mut c, doc! {"_id": 1, "a": 1}).unwrap();
        put(&mut c, doc! {"_id": 2, "a": 2}).unwrap();
        let e = put(&mut c, doc! {"_id": 3, "a": 1}).unwrap_err();
        assert_eq!(e.code, 11000);
        assert_eq!(e.message, "E11000 duplicate key error collection: t.c index: a_1 dup key: { a: 1 }");
        let e = put(&mut c, doc! {"_id": 1.0, "a": 9}).unwrap_err();
        assert_eq!(e.message, "E11000 duplicate key error collection: t.c index: _id_ dup key: { _id: 1.0 }");
        assert_eq!(c.docs.len(), 2);
        assert_eq!(c.indexes[0].entries.len(), 2);

        let id = KeyVal(Bson::Int32(1));
        let d = doc! {"_id": 1, "a": 3};
        let p = c.prepare("t.c", &d, &id, false).unwrap();
        c.replace(id.clone(), Arc::new(d), 10, p).unwrap();
        // a:1 is free again
        put(&mut c, doc! {"_id": 4, "a": 1}).unwrap();
        assert_eq!(c.indexes[0].entries.len(), 3);
        c.remove(&id).unwrap();
        assert_eq!(c.indexes[0].entries.len(), 2);
        assert_eq!(c.data_bytes, 20);
    }

    #[test]
    fn undo_restores_previous_state() {
        let mut c = with_unique_a();
        put(&mut c, doc! {"_id": 1, "a": 1}).unwrap();
        let mut log = vec![put(&mut c, doc! {"_id": 2, "a": 2}).unwrap()];
        let id = KeyVal(Bson::Int32(1));
        let d = doc! {"_id": 1, "a": 7};
        let p = c.prepare("t.c", &d, &id, false).unwrap();
        log.push(c.replace(id.clone(), Arc::new(d), 10, p).unwrap());
        log.push(c.remove(&id).unwrap());
        c.undo(log);
        assert_eq!(c.docs.len(), 1);
        assert_eq!(*c.docs[&id].doc, doc! {"_id": 1, "a": 1});
        assert_eq!(c.indexes[0].entries.len(), 1);
        assert_eq!(c.data_bytes, 10);
    }

    #[test]
    fn build_index_detects_duplicates() {
        let mut c = CollData::default();
        put(&mut c, doc! {"_id": 1, "a": 1}).unwrap();
        put(&mut c, doc! {"_id": 2, "a": 1}).unwrap();
        let ix = Index::new(2, parse_spec(&doc! {"key": {"a": 1}, "unique": true}).unwrap());
        let e = c.build_index("t.c", ix, &mut || Ok(())).unwrap_err();
        assert_eq!(e.code, 11000);
        let ix = Index::new(3, parse_spec(&doc! {"key": {"a": 1}}).unwrap());
        let ix = c.build_index("t.c", ix, &mut || Ok(())).unwrap();
        assert_eq!(ix.entries.len(), 2);
        let ix = Index::new(4, parse_spec(&doc! {"key": {"a": 1}}).unwrap());
        let e = c.build_index("t.c", ix, &mut || Err(CommandError::interrupted())).unwrap_err();
        assert_eq!(e.code, 11601);
    }
}
