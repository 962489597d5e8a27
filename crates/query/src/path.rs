//! Dotted field paths over documents.
//!
//! Query paths follow MongoDB's array traversal: a component that meets an array of documents
//! continues into each element (`a.b` on `{a: [{b: 1}, {b: 2}]}` yields 1 and 2), and a numeric
//! component meeting an array indexes it (`a.1`). Leaf arrays are returned as they are; the
//! matcher decides whether to look at the array itself or its elements.
//!
//! Write paths ([`set_path`], [`remove_path`]) never traverse arrays implicitly: numeric
//! components index arrays, other components on an array or a scalar fail with PathNotViable.

use bson::{Bson, Document};

use crate::error::{CommandError, Result};

/// A document's top-level fields as the matcher, expressions and sort keys read them: a
/// [`Document`], or a view that lays some fields over a stored document (the partial rows of
/// [`crate::Pipeline::run_source`]).
pub trait Fields {
    /// The value of top-level field `key`.
    fn field(&self, key: &str) -> Option<&Bson>;
    /// The document as a whole, copied (`$$ROOT`).
    fn to_document(&self) -> Document;
}

/// Up to this many fields, a field is found by comparing names rather than hashing the key
/// (stored documents are mostly this small; the answer is the same).
const SCAN_FIELDS: usize = 16;

impl Fields for Document {
    fn field(&self, key: &str) -> Option<&Bson> {
        if self.len() <= SCAN_FIELDS {
            return self.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v);
        }
        self.get(key)
    }
    fn to_document(&self) -> Document {
        self.clone()
    }
}

/// [`collect_doc`] from a [`Fields`] view.
pub(crate) fn collect_fields<'a, S: AsRef<str>>(
    doc: &'a dyn Fields,
    parts: &[S],
    out: &mut Vec<Option<&'a Bson>>,
) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    match doc.field(first.as_ref()) {
        Some(v) => collect_value(v, rest, out),
        None => out.push(None),
    }
}

/// Splits a dotted path into its components.
pub fn split_path(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// A path component as an array index, when it is a plain non-negative decimal number.
pub(crate) fn as_index(part: &str) -> Option<usize> {
    if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if part.len() > 1 && part.starts_with('0') {
        return None;
    }
    part.parse().ok()
}

/// Values at `path` with array expansion along the way, as the matcher needs. Missing values
/// are not returned.
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Vec<&'a Bson> {
    let parts = split_path(path);
    let mut out = Vec::new();
    collect_doc(doc, &parts, &mut out);
    out.into_iter().flatten().collect()
}

/// Like [`get_path`] but also reports where a path is missing (`None`), which `null` equality
/// and `$exists` need.
pub(crate) fn collect_doc<'a, S: AsRef<str>>(
    doc: &'a Document,
    parts: &[S],
    out: &mut Vec<Option<&'a Bson>>,
) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    match doc.get(first.as_ref()) {
        Some(v) => collect_value(v, rest, out),
        None => out.push(None),
    }
}

/// Traverses `parts` from the value `v`.
pub(crate) fn collect_value<'a, S: AsRef<str>>(v: &'a Bson, parts: &[S], out: &mut Vec<Option<&'a Bson>>) {
    let Some((first, rest)) = parts.split_first() else {
        out.push(Some(v));
        return;
    };
    match v {
        Bson::Document(d) => collect_doc(d, parts, out),
        Bson::Array(arr) => {
            let before = out.len();
            let first = first.as_ref();
            if let Some(i) = as_index(first) {
                if let Some(elem) = arr.get(i) {
                    collect_value(elem, rest, out);
                }
                // Documents inside the array may also have a field named like the index.
                for elem in arr {
                    if let Bson::Document(d) = elem
                        && let Some(child) = d.get(first)
                    {
                        collect_value(child, rest, out);
                    }
                }
            } else {
                for elem in arr {
                    if let Bson::Document(d) = elem {
                        collect_doc(d, parts, out);
                    }
                }
            }
            if out.len() == before {
                out.push(None);
            }
        }
        _ => out.push(None),
    }
}

/// The value at `path` without array expansion: numeric components index arrays.
pub fn get_path_exact<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let parts = split_path(path);
    get_parts_exact(doc, &parts)
}

/// [`get_path_exact`] over pre-split components.
pub(crate) fn get_parts_exact<'a, S: AsRef<str>>(doc: &'a Document, parts: &[S]) -> Option<&'a Bson> {
    let (first, rest) = parts.split_first()?;
    let mut cur = doc.get(first.as_ref())?;
    for p in rest {
        cur = step(cur, p.as_ref())?;
    }
    Some(cur)
}

fn step<'a>(v: &'a Bson, part: &str) -> Option<&'a Bson> {
    match v {
        Bson::Document(d) => d.get(part),
        Bson::Array(a) => a.get(as_index(part)?),
        _ => None,
    }
}

fn step_mut<'a>(v: &'a mut Bson, part: &str) -> Option<&'a mut Bson> {
    match v {
        Bson::Document(d) => d.get_mut(part),
        Bson::Array(a) => a.get_mut(as_index(part)?),
        _ => None,
    }
}

/// Mutable access to the value at the components `parts` (no array expansion).
pub(crate) fn get_parts_mut<'a, S: AsRef<str>>(doc: &'a mut Document, parts: &[S]) -> Option<&'a mut Bson> {
    let (first, rest) = parts.split_first()?;
    let mut cur = doc.get_mut(first.as_ref())?;
    for p in rest {
        cur = step_mut(cur, p.as_ref())?;
    }
    Some(cur)
}

/// Sets `path` to `value`, creating intermediate documents; numeric components index arrays
/// (padding with nulls). Fails with PathNotViable (28) when a scalar is in the way.
pub fn set_path(doc: &mut Document, path: &str, value: Bson) -> Result<()> {
    let parts = split_path(path);
    set_parts(doc, &parts, value)
}

fn brief(v: &Bson) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

fn not_viable(part: &str, key: &str, v: &Bson) -> CommandError {
    CommandError::path_not_viable(format!("Cannot create field '{part}' in element {{{key}: {}}}", brief(v)))
}

/// [`set_path`] over pre-split components.
pub(crate) fn set_parts<S: AsRef<str>>(doc: &mut Document, parts: &[S], value: Bson) -> Result<()> {
    let Some((first, rest)) = parts.split_first() else {
        return Err(CommandError::empty_field_name("empty path"));
    };
    let first = first.as_ref();
    if rest.is_empty() {
        doc.insert(first, value);
        return Ok(());
    }
    if !doc.contains_key(first) {
        doc.insert(first, Document::new());
    }
    match doc.get_mut(first) {
        Some(child) => set_in_value(child, first, rest, value),
        None => Err(CommandError::empty_field_name("empty path")),
    }
}

fn set_in_value<S: AsRef<str>>(cur: &mut Bson, key: &str, parts: &[S], value: Bson) -> Result<()> {
    let Some((first, rest)) = parts.split_first() else {
        *cur = value;
        return Ok(());
    };
    let first = first.as_ref();
    match cur {
        Bson::Document(d) => set_parts(d, parts, value),
        Bson::Array(arr) => {
            let Some(i) = as_index(first) else {
                return Err(not_viable(first, key, cur));
            };
            if i >= arr.len() {
                arr.resize(i, Bson::Null);
                if rest.is_empty() {
                    arr.push(value);
                    return Ok(());
                }
                arr.push(Bson::Document(Document::new()));
            }
            if rest.is_empty() {
                arr[i] = value;
                return Ok(());
            }
            set_in_value(&mut arr[i], first, rest, value)
        }
        other => Err(not_viable(first, key, other)),
    }
}

/// Removes the value at `path` and returns it. Inside an array, the element is replaced by
/// `null` (MongoDB's `$unset` semantics) and the old value returned.
pub fn remove_path(doc: &mut Document, path: &str) -> Option<Bson> {
    let parts = split_path(path);
    remove_parts(doc, &parts)
}

/// [`remove_path`] over pre-split components.
pub(crate) fn remove_parts<S: AsRef<str>>(doc: &mut Document, parts: &[S]) -> Option<Bson> {
    let (last, parent) = parts.split_last()?;
    if parent.is_empty() {
        return doc.remove(last.as_ref());
    }
    match get_parts_mut(doc, parent)? {
        Bson::Document(d) => d.remove(last.as_ref()),
        Bson::Array(a) => {
            let slot = a.get_mut(as_index(last.as_ref())?)?;
            Some(std::mem::replace(slot, Bson::Null))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;
    use proptest::prelude::*;

    #[test]
    fn get_path_expands_arrays() {
        let d = doc! {"a": [{"b": 1}, {"b": [2, 3]}, {"c": 4}, 5], "x": {"y": {"z": "deep"}}};
        let table: Vec<(&str, Vec<Bson>)> = vec![
            ("a.b", vec![1.into(), Bson::Array(vec![2.into(), 3.into()])]),
            ("a.c", vec![4.into()]),
            ("a.0.b", vec![1.into()]),
            ("a.3", vec![5.into()]),
            ("x.y.z", vec!["deep".into()]),
            ("x.q", vec![]),
            ("nope", vec![]),
        ];
        for (p, want) in table {
            let got: Vec<Bson> = get_path(&d, p).into_iter().cloned().collect();
            assert_eq!(got, want, "{p}");
        }
    }

    #[test]
    fn collect_reports_missing() {
        let d = doc! {"a": [{"b": 1}, {"c": 2}]};
        let mut out = Vec::new();
        collect_doc(&d, &["a", "b"], &mut out);
        assert_eq!(out, vec![Some(&Bson::Int32(1)), None]);
        let d = doc! {"a": 5};
        let mut out = Vec::new();
        collect_doc(&d, &["a", "b"], &mut out);
        assert_eq!(out, vec![None]);
    }

    #[test]
    fn exact_paths() {
        let d = doc! {"a": [{"b": 1}, {"b": 2}], "c": {"d": null}};
        assert_eq!(get_path_exact(&d, "a.1.b"), Some(&Bson::Int32(2)));
        assert_eq!(get_path_exact(&d, "a.b"), None);
        assert_eq!(get_path_exact(&d, "c.d"), Some(&Bson::Null));
        assert_eq!(get_path_exact(&d, "a.01"), None);
    }

    #[test]
    fn set_creates_and_pads() {
        let mut d = doc! {"a": {"b": 1}, "arr": [1]};
        set_path(&mut d, "a.c", 2.into()).unwrap();
        set_path(&mut d, "n.m.o", true.into()).unwrap();
        set_path(&mut d, "arr.3", 9.into()).unwrap();
        set_path(&mut d, "arr.5.x", 1.into()).unwrap();
        assert_eq!(
            d,
            doc! {"a": {"b": 1, "c": 2}, "arr": [1, null, null, 9, null, {"x": 1}], "n": {"m": {"o": true}}}
        );
    }

    #[test]
    fn set_replaces_in_place_keeping_order() {
        let mut d = doc! {"a": 1, "b": 2};
        set_path(&mut d, "a", 3.into()).unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn set_through_scalar_fails() {
        let mut d = doc! {"a": 5, "arr": [1]};
        let e = set_path(&mut d, "a.b", 1.into()).unwrap_err();
        assert_eq!(e.code, 28);
        let e = set_path(&mut d, "arr.x", 1.into()).unwrap_err();
        assert_eq!(e.code, 28);
    }

    #[test]
    fn remove_paths() {
        let mut d = doc! {"a": {"b": 1, "c": 2}, "arr": [1, 2]};
        assert_eq!(remove_path(&mut d, "a.b"), Some(Bson::Int32(1)));
        assert_eq!(remove_path(&mut d, "arr.0"), Some(Bson::Int32(1)));
        assert_eq!(remove_path(&mut d, "zz.y"), None);
        assert_eq!(d, doc! {"a": {"c": 2}, "arr": [null, 2]});
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// What set_path writes, get_path_exact reads back; remove_path then removes it.
        #[test]
        fn set_get_remove_round_trip(parts in prop::collection::vec("[a-c]", 1..4), v in any::<i32>()) {
            let path = parts.join(".");
            let mut d = doc! {"keep": 1};
            set_path(&mut d, &path, Bson::Int32(v)).unwrap();
            prop_assert_eq!(get_path_exact(&d, &path), Some(&Bson::Int32(v)));
            let want = Bson::Int32(v);
            prop_assert_eq!(get_path(&d, &path), vec![&want]);
            prop_assert_eq!(remove_path(&mut d, &path), Some(Bson::Int32(v)));
            prop_assert_eq!(get_path_exact(&d, &path), None);
            prop_assert_eq!(d.get("keep"), Some(&Bson::Int32(1)));
        }
    }
}
