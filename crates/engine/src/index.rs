//! Secondary indexes: spec parsing and validation (`createIndexes` documents), default names,
//! and the ordered entry set kept in step with the collection's documents.
//!
//! Invariant: for every document `d` in the collection and every key `k` of `index_keys(d)`,
//! the entry `k ++ [Id(d._id)]` is in `entries`, and there are no other entries. A unique index
//! never holds two entries with equal key parts and different ids.

use std::collections::BTreeSet;
use std::sync::Arc;

use bson::{Bson, Document};
use docplane_query::collation::{self, Collation};
use docplane_query::{CommandError, Result};

use crate::keys::{self, Entry, KeyError, KeyVal, Part};

/// A validated index specification.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexSpec {
    pub name: String,
    /// (path, descending)
    pub fields: Vec<(String, bool)>,
    pub key: Document,
    pub unique: bool,
    pub sparse: bool,
    /// The index's collation (`None`: binary). Its entries hold collation keys for strings
    /// ([`Collation::index_value`]), so they order and clash under it.
    pub collation: Option<Arc<Collation>>,
    /// The spec as listIndexes shows it: `{v: 2, key, name, unique?, sparse?, ..options}`.
    pub listed: Document,
}

impl IndexSpec {
    /// Created with `hidden: true`: maintained (and unique) as any index, but the planner never
    /// chooses it and a hint cannot name it, as in mongod.
    pub(crate) fn hidden(&self) -> bool {
        matches!(self.listed.get("hidden"), Some(Bson::Boolean(true)))
    }
}

fn cannot_create(msg: impl Into<String>) -> CommandError {
    CommandError::new(67, "CannotCreateIndex", msg)
}

/// Direction of one key pattern value: `Some(false)` ascending, `Some(true)` descending.
fn direction(v: &Bson) -> Result<bool> {
    let n = match v {
        Bson::Int32(i) => f64::from(*i),
        Bson::Int64(i) => *i as f64,
        Bson::Double(f) => *f,
        Bson::String(s) => {
            return Err(cannot_create(format!("index type '{s}' is not supported; use 1 or -1")));
        }
        other => {
            return Err(cannot_create(format!(
                "Values in v:2 index key pattern cannot be of type {}. Only numbers > 0, numbers < 0, and strings are allowed.",
                type_name(other)
            )));
        }
    };
    if n > 0.0 {
        Ok(false)
    } else if n < 0.0 {
        Ok(true)
    } else {
        Err(cannot_create("Values in the index key pattern can't be 0."))
    }
}

fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Null => "null",
        Bson::Boolean(_) => "bool",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        _ => "this type",
    }
}

fn number_text(v: &Bson) -> String {
    match v {
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Bson::Double(f) => f.to_string(),
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// mongod's default index name: `a_1_b_-1`.
pub(crate) fn default_name(key: &Document) -> String {
    key.iter().map(|(k, v)| format!("{k}_{}", number_text(v))).collect::<Vec<_>>().join("_")
}

/// `{ a: 1, b: -1 }` as in plan summaries.
pub(crate) fn key_pattern_text(key: &Document) -> String {
    let mut s = String::from("{ ");
    for (i, (k, v)) in key.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push_str(": ");
        s.push_str(&number_text(v));
    }
    s.push_str(" }");
    s
}

/// Options accepted and echoed back (`hidden` is read back by [`IndexSpec::hidden`]; no TTL
/// monitor reads `expireAfterSeconds` yet). `background` is how the index
/// was asked to be built (mongod 7.0 ignores it for the build, but keeps it in the catalog and
/// lists it as given, which clients read back).
const PASSTHROUGH: &[&str] = &["expireAfterSeconds", "hidden", "storageEngine", "background"];
/// Options ignored entirely (mongod drops `ns` and `dropDups` from the specs it stores; `v` is
/// always 2 here).
const IGNORED: &[&str] = &["v", "ns", "dropDups"];

/// Parses one `createIndexes` spec; an index without `collation` takes `default`, the
/// collection's (recovery passes none: a journaled spec lists its collation when it has one).
pub(crate) fn parse_spec(spec: &Document) -> Result<IndexSpec> {
    parse_spec_in(spec, None)
}

/// [`parse_spec`] in a collection whose default collation is `default`.
pub(crate) fn parse_spec_in(spec: &Document, default: Option<&Arc<Collation>>) -> Result<IndexSpec> {
    let key = match spec.get("key") {
        Some(Bson::Document(k)) => k.clone(),
        Some(_) => return Err(CommandError::type_mismatch("The 'key' field must be an object")),
        None => {
            return Err(CommandError::failed_to_parse(
                "The 'key' field is a required property of an index specification",
            ));
        }
    };
    if key.is_empty() {
        return Err(cannot_create("Index keys cannot be empty."));
    }
    let mut fields = Vec::with_capacity(key.len());
    for (path, v) in &key {
        if path.is_empty() || path.split('.').any(str::is_empty) || path.starts_with('$') {
            return Err(cannot_create(format!("Index key contains an illegal field name: '{path}'")));
        }
        fields.push((path.clone(), direction(v)?));
    }
    let name = match spec.get("name") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        Some(Bson::String(_)) => return Err(cannot_create("The index name cannot be empty")),
        Some(_) => return Err(CommandError::type_mismatch("The 'name' field must be a string")),
        None => default_name(&key),
    };
    let flag = |f: &str| -> Result<bool> {
        match spec.get(f) {
            None | Some(Bson::Null) => Ok(false),
            Some(Bson::Boolean(b)) => Ok(*b),
            Some(Bson::Int32(i)) => Ok(*i != 0),
            Some(Bson::Int64(i)) => Ok(*i != 0),
            Some(Bson::Double(d)) => Ok(*d != 0.0),
            Some(_) => Err(CommandError::type_mismatch(format!("The field '{f}' must be a boolean"))),
        }
    };
    let unique = flag("unique")?;
    let sparse = flag("sparse")?;
    let mut listed = bson::doc! {"v": 2, "key": key.clone(), "name": name.clone()};
    if unique {
        listed.insert("unique", true);
    }
    if sparse {
        listed.insert("sparse", true);
    }
    let collation = collation::parse(spec.get("collation"))?.resolve(default);
    if let Some(c) = &collation {
        listed.insert("collation", c.spec().clone());
    }
    for (k, v) in spec {
        match k.as_str() {
            "key" | "name" | "unique" | "sparse" | "collation" => {}
            k if IGNORED.contains(&k) => {}
            "background"
                if !matches!(v, Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_)) =>
            {
                return Err(CommandError::type_mismatch(format!(
                    "The field 'background' must be a number or boolean, but got {}",
                    type_name(v)
                )));
            }
            k if PASSTHROUGH.contains(&k) => {
                listed.insert(k, v.clone());
            }
            "partialFilterExpression" | "weights" | "default_language" | "wildcardProjection" => {
                return Err(cannot_create(format!("index option '{k}' is not supported by docplane")));
            }
            other => {
                return Err(CommandError::new(
                    197,
                    "InvalidIndexSpecificationOption",
                    format!(
                        "The field '{other}' is not valid for an index specification. Specification: {spec}"
                    ),
                ));
            }
        }
    }
    Ok(IndexSpec { name, fields, key, unique, sparse, collation, listed })
}

/// A key with its strings replaced by collation keys.
fn collated_key(c: &Collation, key: Vec<Part>) -> Vec<Part> {
    key.into_iter()
        .map(|p| match p {
            Part::Asc(KeyVal(v)) if collation::has_string(&v) => Part::Asc(KeyVal(c.index_value(&v))),
            Part::Desc(KeyVal(v)) if collation::has_string(&v) => Part::Desc(KeyVal(c.index_value(&v))),
            other => other,
        })
        .collect()
}

/// One secondary index.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Process-unique id: scans resuming after a yield find their index by it.
    pub id: u64,
    pub spec: IndexSpec,
    pub entries: BTreeSet<Entry>,
    /// True once any document produced keys from an array.
    pub multikey: bool,
}

/// The keys of one document for one index (`None`: not indexed, sparse).
pub(crate) type DocKeys = Option<Vec<Vec<Part>>>;

impl Index {
    pub(crate) fn new(id: u64, spec: IndexSpec) -> Index {
        Index { id, spec, entries: BTreeSet::new(), multikey: false }
    }

    /// Keys of `doc`, or error 171 for parallel arrays. The bool is multikey-ness.
    pub(crate) fn keys_of(&self, doc: &Document) -> Result<(DocKeys, bool)> {
        match keys::index_keys(doc, &self.spec.fields, self.spec.sparse) {
            Ok(Some((k, mk))) => match &self.spec.collation {
                None => Ok((Some(k), mk)),
                Some(c) => Ok((Some(k.into_iter().map(|key| collated_key(c, key)).collect()), mk)),
            },
            Ok(None) => Ok((None, false)),
            Err(KeyError::ParallelArrays(a, b)) => Err(CommandError::new(
                171,
                "CannotIndexParallelArrays",
                format!("cannot index parallel arrays [{a}] [{b}]"),
            )),
        }
    }

    /// The first key of `keys` held by a different document, for unique indexes.
    pub(crate) fn conflict<'k>(&self, keys: &'k DocKeys, id: &KeyVal) -> Option<&'k [Part]> {
        if !self.spec.unique {
            return None;
        }
        for k in keys.iter().flatten() {
            let mut lo = k.clone();
            lo.push(Part::Lo);
            let mut hi = k.clone();
            hi.push(Part::Hi);
            let clash = self
                .entries
                .range(lo..=hi)
                .any(|e| keys::entry_id(e).is_some_and(|other| KeyVal(other.clone()) != *id));
            if clash {
                return Some(k);
            }
        }
        None
    }

    pub(crate) fn add(&mut self, keys: &DocKeys, multikey: bool, id: &Bson) {
        self.multikey |= multikey;
        for k in keys.iter().flatten() {
            let mut e = k.clone();
            e.push(Part::Asc(KeyVal(id.clone())));
            self.entries.insert(e);
        }
    }

    pub(crate) fn remove(&mut self, keys: &DocKeys, id: &Bson) {
        for k in keys.iter().flatten() {
            let mut e = k.clone();
            e.push(Part::Asc(KeyVal(id.clone())));
            self.entries.remove(&e);
        }
    }

    /// `{a: 1, b: "x"}` for a key: the index's field names with the key's values.
    pub(crate) fn key_document(&self, key: &[Part]) -> Document {
        let mut d = Document::new();
        for ((path, _), p) in self.spec.fields.iter().zip(key) {
            d.insert(path.clone(), p.value().cloned().unwrap_or(Bson::Null));
        }
        d
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    #[test]
    fn default_names_match_mongod() {
        assert_eq!(default_name(&doc! {"a": 1}), "a_1");
        assert_eq!(default_name(&doc! {"a": 1, "b": -1}), "a_1_b_-1");
        assert_eq!(default_name(&doc! {"x.y": 1.0}), "x.y_1");
        assert_eq!(key_pattern_text(&doc! {"a": 1, "b": -1}), "{ a: 1, b: -1 }");
    }

    #[test]
    fn parse_accepts_and_rejects() {
        let s = parse_spec(&doc! {"key": {"a": 1, "b": -1}, "unique": true}).unwrap();
        assert_eq!(s.name, "a_1_b_-1");
        assert_eq!(s.fields, vec![("a".into(), false), ("b".into(), true)]);
        assert!(s.unique && !s.sparse);
        assert_eq!(s.listed, doc! {"v": 2, "key": {"a": 1, "b": -1}, "name": "a_1_b_-1", "unique": true});
        assert_eq!(parse_spec(&doc! {"key": {"a": 0}}).unwrap_err().code, 67);
        assert_eq!(parse_spec(&doc! {"key": {"a": "text"}}).unwrap_err().code, 67);
        assert_eq!(parse_spec(&doc! {"key": {}}).unwrap_err().code, 67);
        assert_eq!(parse_spec(&doc! {"name": "x"}).unwrap_err().code, 9);
        assert_eq!(parse_spec(&doc! {"key": {"a": 1}, "bogus": 1}).unwrap_err().code, 197);
        let s = parse_spec(&doc! {"key": {"t": 1}, "expireAfterSeconds": 60, "background": true}).unwrap();
        assert_eq!(s.listed.get_i32("expireAfterSeconds").unwrap(), 60);
        assert!(s.listed.get_bool("background").unwrap());
    }

    #[test]
    fn unique_conflicts_ignore_own_id() {
        let spec = parse_spec(&doc! {"key": {"a": 1}, "unique": true}).unwrap();
        let mut ix = Index::new(1, spec);
        let d1 = doc! {"_id": 1, "a": [5, 6]};
        let (k1, mk) = ix.keys_of(&d1).unwrap();
        assert!(mk);
        ix.add(&k1, mk, &Bson::Int32(1));
        assert_eq!(ix.entries.len(), 2);
        assert!(ix.conflict(&k1, &KeyVal(Bson::Int32(1))).is_none());
        let (k2, _) = ix.keys_of(&doc! {"_id": 2, "a": 6.0}).unwrap();
        let clash = ix.conflict(&k2, &KeyVal(Bson::Int32(2))).unwrap();
        assert_eq!(ix.key_document(clash), doc! {"a": 6.0});
        ix.remove(&k1, &Bson::Int32(1));
        assert!(ix.entries.is_empty());
        assert!(ix.conflict(&k2, &KeyVal(Bson::Int32(2))).is_none());
    }
}
