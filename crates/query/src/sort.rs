//! Sort specifications (`{a: 1, "b.c": -1}`) and MongoDB's document ordering.
//!
//! The sort key of a document for one field is taken from all values at the dotted path (with
//! array traversal): arrays contribute their elements, an empty array sorts below `null`, and a
//! missing path counts as `null`. Ascending order uses the smallest such value, descending the
//! largest, as MongoDB does. `{$meta: ...}` keys are rejected.

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::compare::{Num, as_num, cmp_bson};
use crate::error::{CommandError, Result};
use crate::path::collect_value;

/// A parsed sort specification.
#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    fields: Vec<(String, i32)>,
    parts: Vec<Vec<String>>,
}

fn direction(v: &Bson) -> Option<i32> {
    match as_num(v)? {
        Num::Int(1) => Some(1),
        Num::Int(-1) => Some(-1),
        Num::Float(1.0) => Some(1),
        Num::Float(-1.0) => Some(-1),
        _ => None,
    }
}

static NULL_KEY: Bson = Bson::Null;
/// The key of an empty array: below null, as MongoDB sorts it.
static EMPTY_ARRAY_KEY: Bson = Bson::Undefined;

impl SortSpec {
    /// Parses `{field: 1 | -1, ...}`; an empty document sorts nothing.
    pub fn parse(spec: &Document) -> Result<Self> {
        let mut fields = Vec::with_capacity(spec.len());
        for (k, v) in spec {
            if k.is_empty() || k.split('.').any(str::is_empty) {
                return Err(CommandError::bad_value(format!("bad sort key: '{k}'")));
            }
            // `{$natural: 1 | -1}` alone is the collection's natural order, which the engine's
            // planner serves (a scan in insertion order); any other `$` key is refused.
            if k.starts_with('$') && !(k == "$natural" && spec.len() == 1) {
                return Err(CommandError::bad_value(format!("bad sort key: '{k}' may not start with '$'")));
            }
            if let Bson::Document(d) = v
                && d.contains_key("$meta")
            {
                return Err(CommandError::bad_value("$meta sort keys are not supported by this server"));
            }
            let dir = direction(v).ok_or_else(|| {
                CommandError::location(
                    15975,
                    "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                )
            })?;
            fields.push((k.clone(), dir));
        }
        let parts = fields.iter().map(|(k, _)| k.split('.').map(str::to_string).collect()).collect();
        Ok(SortSpec { fields, parts })
    }

    /// Adds the top-level fields the sort reads to `deps`.
    pub(crate) fn add_deps(&self, deps: &mut crate::aggregate::Deps) {
        for parts in &self.parts {
            if let Some(f) = parts.first() {
                deps.add(f);
            }
        }
    }

    /// The fields and directions, in order.
    pub fn fields(&self) -> &[(String, i32)] {
        &self.fields
    }

    /// True when the spec has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Compares two documents by the spec.
    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        for ((_, dir), parts) in self.fields.iter().zip(&self.parts) {
            let ka = key_ref(a, parts, *dir);
            let kb = key_ref(b, parts, *dir);
            let o = cmp_bson(ka, kb);
            let o = if *dir < 0 { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// The sort key of a document: one value per field (see [`sort_key`]). Sorting by
    /// precomputed keys with [`SortSpec::compare_keys`] equals sorting with
    /// [`SortSpec::compare`].
    pub fn key(&self, doc: &Document) -> Vec<Bson> {
        self.fields
            .iter()
            .zip(&self.parts)
            .map(|((_, dir), parts)| key_ref(doc, parts, *dir).clone())
            .collect()
    }

    /// Compares two keys made by [`SortSpec::key`].
    pub fn compare_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for (((_, dir), ka), kb) in self.fields.iter().zip(a).zip(b) {
            let o = cmp_bson(ka, kb);
            let o = if *dir < 0 { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Sorts documents in place (stable), computing each document's key once.
    pub fn sort(&self, docs: &mut Vec<Document>) {
        self.sort_top(docs, usize::MAX);
    }

    /// Appends the sort key of a document (one value per field, by reference) to `out`.
    pub(crate) fn key_refs<'x>(&self, doc: &'x Document, out: &mut Vec<&'x Bson>) {
        for ((_, dir), parts) in self.fields.iter().zip(&self.parts) {
            out.push(key_ref(doc, parts, *dir));
        }
    }

    /// The key of sort field `j` of a document whose top-level fields `field` gives.
    fn key_at<'x>(&self, j: usize, field: impl Fn(&str) -> Option<&'x Bson>) -> &'x Bson {
        let dir = self.fields.get(j).map_or(1, |(_, d)| *d);
        match self.parts.get(j).and_then(|p| p.split_first()) {
            Some((first, rest)) => match field(first) {
                Some(v) => key_below(v, rest, dir),
                None => &NULL_KEY,
            },
            None => &NULL_KEY,
        }
    }

    /// The positions of the first `k` items of the stable sort of `docs` (as
    /// [`SortSpec::top_order`]), each item's top-level fields given by `field_of`. The first sort
    /// field's key is read for every item, the others only for items that tie on it, once each:
    /// where the first key decides (a running time) the others are never read.
    pub(crate) fn top_order_by_fields<'x, D>(
        &self,
        docs: &'x [D],
        k: usize,
        field_of: impl Fn(&'x D, &str) -> Option<&'x Bson>,
    ) -> Vec<usize> {
        let (n, m) = (docs.len(), self.fields.len());
        if let Some(order) = trivial_order(n, m, k) {
            return order;
        }
        let first: Vec<&Bson> = docs.iter().map(|d| self.key_at(0, |f| field_of(d, f))).collect();
        let rest: Vec<std::cell::OnceCell<Vec<&Bson>>> = (0..n).map(|_| std::cell::OnceCell::new()).collect();
        let rest_of = |i: usize| {
            rest[i].get_or_init(|| (1..m).map(|j| self.key_at(j, |f| field_of(&docs[i], f))).collect())
        };
        let cmp = |a: &usize, b: &usize| {
            let o = self.compare_key_refs_from(0, &first[*a..=*a], &first[*b..=*b]);
            if o != Ordering::Equal || m == 1 {
                return o.then(a.cmp(b));
            }
            self.compare_key_refs_from(1, rest_of(*a), rest_of(*b)).then(a.cmp(b))
        };
        top_positions(n, k, cmp)
    }

    /// Keeps the first `k` documents of the stable sort of `docs`, in order (`$sort` followed
    /// by `$limit`, MongoDB's top-k sort): the same documents in the same order as
    /// [`SortSpec::sort`] then truncating to `k`, without ordering the rest.
    pub fn sort_top<D: std::borrow::Borrow<Document>>(&self, docs: &mut Vec<D>, k: usize) {
        self.sort_top_with(docs, k, |d, out| self.key_refs(d.borrow(), out));
    }

    /// [`SortSpec::sort_top`] with each item's key appended by `key_of` (as
    /// [`SortSpec::key_refs`] appends it). Keys are read in place, never copied.
    pub(crate) fn sort_top_with<D>(
        &self,
        docs: &mut Vec<D>,
        k: usize,
        key_of: impl for<'x> Fn(&'x D, &mut Vec<&'x Bson>),
    ) {
        let order = self.top_order(docs, k, |d, out| key_of(d, out));
        permute(docs, order);
    }

    /// The positions of the first `k` items of the stable sort of `docs`, in order; `None` when
    /// that is `docs` as they are.
    pub(crate) fn top_order<'x, D>(
        &self,
        docs: &'x [D],
        k: usize,
        key_of: impl Fn(&'x D, &mut Vec<&'x Bson>),
    ) -> Vec<usize> {
        let (n, m) = (docs.len(), self.fields.len());
        if let Some(order) = trivial_order(n, m, k) {
            return order;
        }
        let mut keys: Vec<&Bson> = Vec::with_capacity(n * m);
        for d in docs {
            key_of(d, &mut keys);
        }
        let key = |i: usize| keys.get(i * m..i * m + m).unwrap_or_default();
        // (key, input position): a strict total order equal to the stable sort's.
        let cmp = |a: &usize, b: &usize| self.compare_key_refs_from(0, key(*a), key(*b)).then(a.cmp(b));
        top_positions(n, k, cmp)
    }

    /// Compares the keys of sort fields `from..`, one value per field.
    fn compare_key_refs_from(&self, from: usize, a: &[&Bson], b: &[&Bson]) -> Ordering {
        for (((_, dir), ka), kb) in self.fields[from..].iter().zip(a).zip(b) {
            let o = cmp_bson(ka, kb);
            let o = if *dir < 0 { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

/// The order of a top-`k` sort that needs no key: none kept, no sort field, or under two items.
fn trivial_order(n: usize, m: usize, k: usize) -> Option<Vec<usize>> {
    if k == 0 {
        return Some(Vec::new());
    }
    (m == 0 || n < 2).then(|| (0..n.min(k)).collect())
}

fn pick<'a>(candidates: impl Iterator<Item = &'a Bson>, dir: i32) -> Option<&'a Bson> {
    if dir < 0 { candidates.max_by(|x, y| cmp_bson(x, y)) } else { candidates.min_by(|x, y| cmp_bson(x, y)) }
}

fn leaf_key(v: &Bson, dir: i32) -> &Bson {
    match v {
        Bson::Array(items) if items.is_empty() => &EMPTY_ARRAY_KEY,
        Bson::Array(items) => pick(items.iter(), dir).unwrap_or(&NULL_KEY),
        other => other,
    }
}

/// The key of `doc` for one field, by reference: a fast walk through documents, falling back
/// to full array traversal when the path crosses an array.
fn key_ref<'a>(doc: &'a Document, parts: &[String], dir: i32) -> &'a Bson {
    let Some((first, rest)) = parts.split_first() else {
        return &NULL_KEY;
    };
    match doc.get(first) {
        Some(v) => key_below(v, rest, dir),
        None => &NULL_KEY,
    }
}

/// The key below the value `cur` of a path's first component.
fn key_below<'a>(cur: &'a Bson, rest: &[String], dir: i32) -> &'a Bson {
    let mut cur = cur;
    for (i, p) in rest.iter().enumerate() {
        match cur {
            Bson::Document(d) => match d.get(p) {
                Some(v) => cur = v,
                None => return &NULL_KEY,
            },
            Bson::Array(_) => return key_slow(cur, &rest[i..], dir),
            _ => return &NULL_KEY,
        }
    }
    leaf_key(cur, dir)
}

fn key_slow<'a>(v: &'a Bson, parts: &[String], dir: i32) -> &'a Bson {
    let mut found = Vec::new();
    collect_value(v, parts, &mut found);
    let candidates = found.iter().map(|f| match f {
        None => &NULL_KEY,
        Some(x) => leaf_key(x, dir),
    });
    pick(candidates, dir).unwrap_or(&NULL_KEY)
}

/// The key of `doc` for one sort field: the min (ascending) or max (descending) of the values
/// at `path`, arrays contributing their elements; missing is null, an empty array sorts below
/// null.
pub fn sort_key(doc: &Document, path: &str, dir: i32) -> Bson {
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    key_ref(doc, &parts, dir).clone()
}

/// Keeps the items of `docs` at the positions `order`, in that order.
/// Items a sort orders or merges between two interrupt polls.
const SORT_RUN: usize = 2048;

/// The positions `0..n` ordered by `cmp` (a strict total order), keeping the first `k`: sorted
/// runs of [`SORT_RUN`] positions merged pairwise, with [`crate::interrupt::poll`] between runs
/// and every [`SORT_RUN`] merged items, so a kill lands within one run's work whatever `n`. When
/// a poll fails the order returned is incomplete; the interrupt scope then fails the operation.
pub fn top_positions(n: usize, k: usize, cmp: impl Fn(&usize, &usize) -> Ordering) -> Vec<usize> {
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut runs: Vec<Vec<usize>> = Vec::with_capacity(n.div_ceil(SORT_RUN));
    let mut start = 0;
    while start < n {
        if crate::interrupt::poll().is_err() {
            return Vec::new();
        }
        let end = (start + SORT_RUN).min(n);
        let mut run: Vec<usize> = (start..end).collect();
        if k < run.len() {
            run.select_nth_unstable_by(k - 1, &cmp);
            run.truncate(k);
        }
        run.sort_unstable_by(&cmp);
        runs.push(run);
        start = end;
    }
    while runs.len() > 1 {
        let mut next = Vec::with_capacity(runs.len().div_ceil(2));
        let mut it = runs.into_iter();
        while let Some(a) = it.next() {
            match it.next() {
                Some(b) => match merge_runs(&a, &b, k, &cmp) {
                    Some(m) => next.push(m),
                    None => return Vec::new(),
                },
                None => next.push(a),
            }
        }
        runs = next;
    }
    runs.pop().unwrap_or_default()
}

/// Merges two sorted runs, keeping the first `k`; `None` when a poll fails.
fn merge_runs(
    a: &[usize],
    b: &[usize],
    k: usize,
    cmp: &impl Fn(&usize, &usize) -> Ordering,
) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity((a.len() + b.len()).min(k));
    let (mut i, mut j) = (0, 0);
    while out.len() < k && (i < a.len() || j < b.len()) {
        if out.len() % SORT_RUN == SORT_RUN - 1 && crate::interrupt::poll().is_err() {
            return None;
        }
        let take_a = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => cmp(x, y) != Ordering::Greater,
            (Some(_), None) => true,
            _ => false,
        };
        if take_a {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    Some(out)
}

pub(crate) fn permute<D>(docs: &mut Vec<D>, order: Vec<usize>) {
    let mut slots: Vec<Option<D>> = docs.drain(..).map(Some).collect();
    docs.extend(order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;
    use proptest::prelude::*;

    fn ids(docs: &[Document]) -> Vec<i32> {
        docs.iter().map(|d| d.get_i32("_id").unwrap()).collect()
    }

    proptest! {
        /// Keys read lazily (the first field for all, the rest on ties) order as keys read
        /// eagerly, with many ties, both directions, dotted paths, arrays and missing fields.
        #[test]
        fn lazy_keys_order_as_eager_keys(
            vals in proptest::collection::vec((0u8..4, 0u8..4, proptest::option::of(0u8..3)), 0..300),
            dirs in proptest::collection::vec(prop_oneof![Just(1), Just(-1)], 3),
            fields in 1usize..4,
            k in 0usize..400,
        ) {
            let docs: Vec<Document> = vals
                .iter()
                .map(|(a, b, c)| {
                    let mut d = doc! {"a": i32::from(*a), "b": {"c": i32::from(*b)}};
                    if let Some(c) = c {
                        d.insert("c", vec![i32::from(*c), 2]);
                    }
                    d
                })
                .collect();
            let mut spec = doc! {};
            for (name, dir) in ["a", "b.c", "c"].iter().zip(&dirs).take(fields) {
                spec.insert(*name, *dir);
            }
            let spec = SortSpec::parse(&spec).unwrap();
            let eager = spec.top_order(&docs, k, |d, out| spec.key_refs(d, out));
            let lazy = spec.top_order_by_fields(&docs, k, |d, f| d.get(f));
            prop_assert_eq!(lazy, eager);
        }

        #[test]
        fn top_positions_equal_a_full_sort(v in proptest::collection::vec(0u8..50, 0..6000), k in 0usize..7000) {
            let cmp = |a: &usize, b: &usize| v[*a].cmp(&v[*b]).then(a.cmp(b));
            let mut want: Vec<usize> = (0..v.len()).collect();
            want.sort_by(cmp);
            want.truncate(k);
            prop_assert_eq!(top_positions(v.len(), k, cmp), want);
        }
    }

    #[test]
    fn parse_rejects_bad_directions() {
        for bad in [doc! {"a": 2}, doc! {"a": "x"}, doc! {"a": {"$meta": "textScore"}}, doc! {"": 1}] {
            assert!(SortSpec::parse(&bad).is_err(), "{bad}");
        }
        let s = SortSpec::parse(&doc! {"a": 1, "b": -1.0, "c": 1i64}).unwrap();
        assert_eq!(s.fields(), &[("a".to_string(), 1), ("b".to_string(), -1), ("c".to_string(), 1)]);
    }

    #[test]
    fn multi_field_sort() {
        let mut docs = vec![
            doc! {"_id": 1, "a": 2, "b": 1},
            doc! {"_id": 2, "a": 1, "b": 5},
            doc! {"_id": 3, "a": 2, "b": 3},
            doc! {"_id": 4, "a": 1, "b": 7},
        ];
        SortSpec::parse(&doc! {"a": 1, "b": -1}).unwrap().sort(&mut docs);
        assert_eq!(ids(&docs), vec![4, 2, 3, 1]);
    }

    #[test]
    fn mixed_types_and_missing() {
        let mut docs = vec![
            doc! {"_id": 1, "a": "str"},
            doc! {"_id": 2, "a": 5},
            doc! {"_id": 3},
            doc! {"_id": 4, "a": null},
            doc! {"_id": 5, "a": {"x": 1}},
            doc! {"_id": 6, "a": 1.5},
        ];
        SortSpec::parse(&doc! {"a": 1}).unwrap().sort(&mut docs);
        // null and missing tie and keep input order (stable).
        assert_eq!(ids(&docs), vec![3, 4, 6, 2, 1, 5]);
    }

    #[test]
    fn arrays_use_min_ascending_max_descending() {
        let mut docs = vec![
            doc! {"_id": 1, "a": [1, 10]},
            doc! {"_id": 2, "a": [5]},
            doc! {"_id": 3, "a": 7},
            doc! {"_id": 4, "a": []},
        ];
        let asc = SortSpec::parse(&doc! {"a": 1}).unwrap();
        asc.sort(&mut docs);
        assert_eq!(ids(&docs), vec![4, 1, 2, 3]);
        let desc = SortSpec::parse(&doc! {"a": -1}).unwrap();
        desc.sort(&mut docs);
        assert_eq!(ids(&docs), vec![1, 3, 2, 4]);
    }

    #[test]
    fn dotted_paths_through_arrays() {
        let mut docs = vec![
            doc! {"_id": 1, "a": [{"b": 9}, {"b": 2}]},
            doc! {"_id": 2, "a": {"b": 3}},
            doc! {"_id": 3, "a": [{"b": 1}]},
        ];
        SortSpec::parse(&doc! {"a.b": 1}).unwrap().sort(&mut docs);
        assert_eq!(ids(&docs), vec![3, 1, 2]);
    }

    fn arb_field() -> impl Strategy<Value = Bson> {
        let leaf = prop_oneof![
            Just(Bson::Null),
            (-3i32..3).prop_map(Bson::Int32),
            (-3i64..3).prop_map(|i| Bson::Double(i as f64 / 2.0)),
            "[ab]{0,2}".prop_map(Bson::String),
        ];
        prop_oneof![
            3 => leaf.clone(),
            1 => prop::collection::vec(leaf, 0..3).prop_map(Bson::Array),
        ]
    }

    fn arb_doc() -> impl Strategy<Value = Document> {
        (prop::option::of(arb_field()), prop::option::of(arb_field())).prop_map(|(a, b)| {
            let mut d = Document::new();
            if let Some(a) = a {
                d.insert("a", a);
            }
            if let Some(b) = b {
                d.insert("b", b);
            }
            d
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// The document order is a total preorder: antisymmetric and transitive on samples, so
        /// `sort_by` is well defined.
        #[test]
        fn compare_is_a_total_preorder(x in arb_doc(), y in arb_doc(), z in arb_doc(), da in prop_oneof![Just(1), Just(-1)], db in prop_oneof![Just(1), Just(-1)]) {
            let spec = SortSpec::parse(&doc! {"a": da, "b": db}).unwrap();
            prop_assert_eq!(spec.compare(&x, &y), spec.compare(&y, &x).reverse());
            let mut v = [x, y, z];
            v.sort_by(|p, q| spec.compare(p, q));
            prop_assert_ne!(spec.compare(&v[0], &v[1]), Ordering::Greater);
            prop_assert_ne!(spec.compare(&v[1], &v[2]), Ordering::Greater);
            prop_assert_ne!(spec.compare(&v[0], &v[2]), Ordering::Greater);
            // Precomputed keys order exactly like compare().
            let (k0, k1) = (spec.key(&v[0]), spec.key(&v[1]));
            prop_assert_eq!(spec.compare_keys(&k0, &k1), spec.compare(&v[0], &v[1]));
        }

        /// Nested paths through arrays: the fast path and the full traversal agree.
        #[test]
        fn nested_keys_match_reference(inner in prop::collection::vec(arb_doc(), 0..3), dir in prop_oneof![Just(1), Just(-1)]) {
            let d = doc! {"x": inner.iter().cloned().map(Bson::Document).collect::<Vec<_>>()};
            let got = sort_key(&d, "x.a", dir);
            // Reference: all values at the path, arrays expanded, missing as null.
            let parts = ["x", "a"];
            let mut found = Vec::new();
            crate::path::collect_doc(&d, &parts, &mut found);
            let mut cands: Vec<Bson> = Vec::new();
            for f in found {
                match f {
                    None => cands.push(Bson::Null),
                    Some(Bson::Array(a)) if a.is_empty() => cands.push(Bson::Undefined),
                    Some(Bson::Array(a)) => cands.extend(a.iter().cloned()),
                    Some(v) => cands.push(v.clone()),
                }
            }
            let want = if dir < 0 { cands.into_iter().max_by(cmp_bson) } else { cands.into_iter().min_by(cmp_bson) };
            prop_assert_eq!(cmp_bson(&got, &want.unwrap_or(Bson::Null)), Ordering::Equal);
        }
    }
}
