//! Ordered keys: `_id` keys of the primary map, index entries, index key extraction from
//! documents, and the shell-like rendering used in duplicate-key messages.
//!
//! Invariants:
//! - [`KeyVal`] orders by `cmp_bson_binary` (never the thread's collation: a collated index stores collation keys), so `1`, `1.0` and `NumberLong(1)` are the same key, as in
//!   MongoDB's indexes.
//! - An index entry is `[part_1 .. part_n, Id(_id)]`: one [`Part`] per indexed field, in the
//!   field's direction, then the document's `_id`. Bounds use the sentinels [`Part::Lo`] and
//!   [`Part::Hi`], which sort below and above every value part, so that any interval over the
//!   first k fields is a contiguous range of entries.

use std::cmp::Ordering;

use bson::{Bson, Document};
use docplane_query::cmp_bson_binary;

/// A BSON value ordered as MongoDB orders index keys.
#[derive(Debug, Clone)]
pub(crate) struct KeyVal(pub Bson);

impl PartialEq for KeyVal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for KeyVal {}
impl PartialOrd for KeyVal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KeyVal {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_bson_binary(&self.0, &other.0)
    }
}

/// One component of an index entry or bound.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// Below every value.
    Lo,
    /// An ascending field's value (also the trailing `_id`).
    Asc(KeyVal),
    /// A descending field's value: orders in reverse.
    Desc(KeyVal),
    /// Above every value.
    Hi,
}

impl Part {
    pub(crate) fn new(v: Bson, descending: bool) -> Part {
        if descending { Part::Desc(KeyVal(v)) } else { Part::Asc(KeyVal(v)) }
    }
    pub(crate) fn value(&self) -> Option<&Bson> {
        match self {
            Part::Asc(k) | Part::Desc(k) => Some(&k.0),
            Part::Lo | Part::Hi => None,
        }
    }
    fn rank(&self) -> u8 {
        match self {
            Part::Lo => 0,
            Part::Asc(_) => 1,
            Part::Desc(_) => 2,
            Part::Hi => 3,
        }
    }
}

impl PartialEq for Part {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Part {}
impl PartialOrd for Part {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Part {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Part::Asc(a), Part::Asc(b)) => a.cmp(b),
            (Part::Desc(a), Part::Desc(b)) => b.cmp(a),
            // Lo/Hi against values, or (never in one index position) Asc against Desc.
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// An index entry or bound.
pub(crate) type Entry = Vec<Part>;

/// The distinct keys (without `_id`) of one document for one index.
pub(crate) type KeySet = Vec<Vec<Part>>;

/// The `_id` at the end of an entry.
pub(crate) fn entry_id(e: &Entry) -> Option<&Bson> {
    e.last().and_then(Part::value)
}

/// The values a document has at `path` for indexing, and whether an array was expanded.
///
/// Arrays met along the path are traversed element by element (documents inside them are
/// followed); a numeric component also indexes into an array. The final value, if an array,
/// contributes each element (an empty array contributes `undefined`, as in MongoDB). A missing
/// value contributes nothing; the caller decides about null.
pub(crate) fn path_values(doc: &Document, path: &str) -> (Vec<Bson>, bool) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    let mut multikey = false;
    walk_doc(doc, &parts, &mut out, &mut multikey);
    (out, multikey)
}

fn walk_doc(doc: &Document, parts: &[&str], out: &mut Vec<Bson>, multikey: &mut bool) {
    let Some((first, rest)) = parts.split_first() else { return };
    if let Some(v) = doc.get(*first) {
        walk_value(v, rest, out, multikey);
    }
}

fn walk_value(v: &Bson, rest: &[&str], out: &mut Vec<Bson>, multikey: &mut bool) {
    if rest.is_empty() {
        match v {
            Bson::Array(items) => {
                *multikey = true;
                if items.is_empty() {
                    out.push(Bson::Undefined);
                }
                for it in items {
                    out.push(it.clone());
                }
            }
            other => out.push(other.clone()),
        }
        return;
    }
    match v {
        Bson::Document(d) => walk_doc(d, rest, out, multikey),
        Bson::Array(items) => {
            if let Ok(i) = rest[0].parse::<usize>() {
                if let Some(it) = items.get(i) {
                    walk_value(it, &rest[1..], out, multikey);
                }
                return;
            }
            *multikey = true;
            for it in items {
                if let Bson::Document(d) = it {
                    walk_doc(d, rest, out, multikey);
                }
            }
        }
        _ => {}
    }
}

/// Errors of key generation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyError {
    /// Two fields of a compound index hold arrays.
    ParallelArrays(String, String),
}

/// The keys of a document (without the trailing `_id`), deduplicated, plus whether the document
/// is multikey for this index. `None` when `sparse` and the document has none of the fields.
pub(crate) fn index_keys(
    doc: &Document,
    fields: &[(String, bool)],
    sparse: bool,
) -> Result<Option<(KeySet, bool)>, KeyError> {
    let mut per_field: Vec<Vec<Bson>> = Vec::with_capacity(fields.len());
    let mut array_field: Option<&str> = None;
    let mut any_present = false;
    let mut multikey = false;
    for (path, _) in fields {
        let (mut vals, mk) = path_values(doc, path);
        if mk {
            if let Some(prev) = array_field {
                return Err(KeyError::ParallelArrays(path.clone(), prev.to_string()));
            }
            array_field = Some(path);
            multikey = true;
        }
        if vals.is_empty() {
            vals.push(Bson::Null);
        } else {
            any_present = true;
        }
        per_field.push(vals);
    }
    if sparse && !any_present {
        return Ok(None);
    }
    let mut keys: Vec<Vec<Part>> = vec![Vec::with_capacity(fields.len())];
    for (vals, (_, desc)) in per_field.into_iter().zip(fields) {
        let mut next = Vec::with_capacity(keys.len() * vals.len());
        for k in &keys {
            for v in &vals {
                let mut k2 = k.clone();
                k2.push(Part::new(v.clone(), *desc));
                next.push(k2);
            }
        }
        keys = next;
    }
    keys.sort();
    keys.dedup();
    Ok(Some((keys, multikey)))
}

/// Renders a value the way mongod prints keys in messages: `{ _id: 1 }`, `"x"`, `ObjectId('..')`.
pub(crate) fn render(v: &Bson, out: &mut String) {
    use std::fmt::Write;
    match v {
        Bson::Document(d) => render_doc(d, out),
        Bson::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                render(x, out);
            }
            out.push_str(if a.is_empty() { "]" } else { " ]" });
        }
        Bson::String(s) => {
            let _ = write!(out, "{s:?}");
        }
        Bson::ObjectId(o) => {
            let _ = write!(out, "ObjectId('{o}')");
        }
        Bson::Int32(i) => {
            let _ = write!(out, "{i}");
        }
        Bson::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Bson::Double(f) => {
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
                let _ = write!(out, "{f:.1}");
            } else {
                let _ = write!(out, "{f}");
            }
        }
        Bson::Null => out.push_str("null"),
        Bson::Undefined => out.push_str("undefined"),
        Bson::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        Bson::DateTime(d) => {
            let _ = write!(out, "new Date({})", d.timestamp_millis());
        }
        Bson::MinKey => out.push_str("MinKey"),
        Bson::MaxKey => out.push_str("MaxKey"),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Renders a document as `{ a: 1, b: "x" }` (`{}` when empty).
pub(crate) fn render_doc(d: &Document, out: &mut String) {
    if d.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{ ");
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push_str(": ");
        render(v, out);
    }
    out.push_str(" }");
}

/// `E11000 duplicate key error collection: db.c index: a_1 dup key: { a: 1 }`.
pub(crate) fn dup_key_message(ns: &str, index: &str, key: &Document) -> String {
    let mut s = format!("E11000 duplicate key error collection: {ns} index: {index} dup key: ");
    render_doc(key, &mut s);
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::{doc, oid::ObjectId};

    #[test]
    fn keyval_equates_numeric_types() {
        assert_eq!(KeyVal(Bson::Int32(1)), KeyVal(Bson::Double(1.0)));
        assert!(KeyVal(Bson::Int64(2)) > KeyVal(Bson::Double(1.5)));
        assert!(KeyVal(Bson::String("a".into())) > KeyVal(Bson::Int32(100)));
    }

    #[test]
    fn parts_order_with_direction_and_sentinels() {
        let a = |i: i32| Part::new(Bson::Int32(i), false);
        let d = |i: i32| Part::new(Bson::Int32(i), true);
        assert!(a(1) < a(2));
        assert!(d(1) > d(2));
        assert!(Part::Lo < a(i32::MIN) && a(i32::MAX) < Part::Hi);
        assert!(Part::Lo < d(5) && d(5) < Part::Hi);
        // Bounds over a prefix bracket every longer entry with that prefix.
        let lo = vec![a(5), Part::Lo];
        let hi = vec![a(5), Part::Hi];
        let e = vec![a(5), a(9)];
        assert!(lo < e && e < hi);
        assert!(vec![a(5), a(0)] < vec![a(5), Part::Hi]);
        assert!(vec![a(4), Part::Hi] < vec![a(5), Part::Lo]);
    }

    #[test]
    fn path_values_expand_arrays() {
        let d = doc! {"a": [1, 2, {"b": 3}], "c": {"d": [ {"e": 1}, {"e": [2, 3]}, {"f": 0} ]}, "z": []};
        assert_eq!(
            path_values(&d, "a"),
            (vec![Bson::Int32(1), Bson::Int32(2), Bson::Document(doc! {"b": 3})], true)
        );
        assert_eq!(path_values(&d, "a.b"), (vec![Bson::Int32(3)], true));
        assert_eq!(path_values(&d, "c.d.e"), (vec![Bson::Int32(1), Bson::Int32(2), Bson::Int32(3)], true));
        assert_eq!(path_values(&d, "a.1"), (vec![Bson::Int32(2)], false));
        assert_eq!(path_values(&d, "missing"), (vec![], false));
        assert_eq!(path_values(&d, "z"), (vec![Bson::Undefined], true));
        assert_eq!(path_values(&doc! {"x": {"y": 5}}, "x.y"), (vec![Bson::Int32(5)], false));
    }

    #[test]
    fn compound_keys_and_parallel_arrays() {
        let f = vec![("a".to_string(), false), ("b".to_string(), true)];
        let (keys, mk) = index_keys(&doc! {"a": [1, 2, 1], "b": "x"}, &f, false).unwrap().unwrap();
        assert!(mk);
        assert_eq!(keys.len(), 2);
        let (keys, mk) = index_keys(&doc! {"b": 1}, &f, false).unwrap().unwrap();
        assert!(!mk);
        assert_eq!(keys, vec![vec![Part::new(Bson::Null, false), Part::new(Bson::Int32(1), true)]]);
        assert!(index_keys(&doc! {"x": 1}, &f, true).unwrap().is_none());
        assert_eq!(
            index_keys(&doc! {"a": [1], "b": [2]}, &f, false),
            Err(KeyError::ParallelArrays("b".into(), "a".into()))
        );
    }

    #[test]
    fn dup_key_message_matches_mongod() {
        assert_eq!(
            dup_key_message("db.c", "_id_", &doc! {"_id": 1}),
            "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1 }"
        );
        let oid = ObjectId::parse_str("64b7f0f0f0f0f0f0f0f0f0f0").unwrap();
        assert_eq!(
            dup_key_message("t.u", "a_1_b_-1", &doc! {"a": "x", "b": oid, "c": 1.5, "d": 2.0}),
            "E11000 duplicate key error collection: t.u index: a_1_b_-1 dup key: { a: \"x\", b: ObjectId('64b7f0f0f0f0f0f0f0f0f0f0'), c: 1.5, d: 2.0 }"
        );
    }
}
