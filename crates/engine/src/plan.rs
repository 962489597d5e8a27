//! Query planning and resumable scans.
//!
//! The planner turns `Filter::index_predicates()` (top-level conjunctive `Eq` / `In` / `Range`
//! predicates), an optional sort and an optional hint into a [`Plan`]: a full collection scan in
//! `_id` order, point lookups or a range on `_id`, or a scan of a secondary index over a list of
//! key intervals. Among usable indexes it picks the one whose intervals hold the fewest entries
//! (counted up to a cap), like a cheap version of mongod's plan ranking. A plan may also deliver
//! documents already in the requested sort order (an index whose fields, after the equality
//! prefix, match the sort), which lets the caller skip the in-memory sort and stop at the limit.
//!
//! Invariant: a plan yields a *superset* of the documents matching the filter (callers always
//! re-check the full filter), so bounds may be loose but never too tight. Predicates on null,
//! arrays and regexes are therefore never turned into bounds, and on a multikey index a range
//! keeps only its lower side (two conditions may be met by different elements).
//!
//! A [`Cursor`] runs a plan in chunks: each call takes the collection lock, reads up to a budget
//! of candidates after the remembered position, and returns; the caller releases the lock (a
//! yield) between chunks. Index scans remember the last entry, `_id` scans the last `_id`.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use bson::{Bson, Document, oid::ObjectId};
use docplane_query::collation::{self, Collation, has_string};
use docplane_query::{CommandError, IndexPredicate, Result, SortSpec};

use crate::collection::CollData;
use crate::index::{Index, key_pattern_text};
use crate::keys::{Entry, KeyVal, Part};

/// Most candidates counted when comparing indexes.
const COUNT_CAP: usize = 10_000;
/// Most point combinations an `$in` may expand to.
const MAX_POINTS: usize = 4_096;

/// How documents are reached.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// The collection does not exist.
    Eof,
    /// Every document in `_id` order.
    CollScan,
    /// Documents with these `_id`s (sorted, distinct).
    IdPoints(Vec<KeyVal>),
    /// Documents with `_id` in a range.
    IdRange(Box<(Bound<KeyVal>, Bound<KeyVal>)>),
    /// A secondary index over sorted, disjoint intervals (inclusive entry bounds).
    Index { index_id: u64, intervals: Vec<(Entry, Entry)> },
}

/// A chosen plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub access: Access,
    /// Walk the access path backwards.
    pub reverse: bool,
    /// Output already follows the requested sort.
    pub sorted: bool,
    pub summary: String,
}

impl Plan {
    fn collscan(sorted_by_id: Option<bool>) -> Plan {
        Plan {
            access: Access::CollScan,
            reverse: sorted_by_id == Some(true),
            sorted: sorted_by_id.is_some(),
            summary: "COLLSCAN".into(),
        }
    }
}

/// The filter's index predicates in the two forms the planner needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Predicates {
    /// Ranges on one path not intersected: valid for multikey indexes.
    pub multi: Vec<(String, IndexPredicate)>,
    /// Ranges intersected: valid when every indexed value is a scalar (`_id`, non-multikey).
    pub single: Vec<(String, IndexPredicate)>,
}

impl Predicates {
    pub(crate) fn of(filter: &docplane_query::Filter) -> Predicates {
        Predicates { multi: filter.index_predicates(), single: filter.index_predicates_intersected() }
    }
    fn for_index(&self, ix: &Index) -> &[(String, IndexPredicate)] {
        if ix.multikey { &self.multi } else { &self.single }
    }
}

/// The predicates an index ordered under `ix` (the `_id` map: `None`, binary) can bound for a
/// query under `query`: all of them when the collations agree (string values turned into the
/// index's collation keys), only those that compare no string when they differ (numbers,
/// dates, ids compare alike under every collation). The rest stay to the filter's re-check.
fn usable<'a>(
    preds: &'a [(String, IndexPredicate)],
    query: Option<&Arc<Collation>>,
    ix: Option<&Arc<Collation>>,
) -> Cow<'a, [(String, IndexPredicate)]> {
    if query.is_none() && ix.is_none() {
        return Cow::Borrowed(preds);
    }
    let same = collation::same(query, ix);
    let stringy = |p: &IndexPredicate| match p {
        IndexPredicate::Eq(v) => has_string(v),
        IndexPredicate::In(vs) => vs.iter().any(has_string),
        IndexPredicate::Range { lo, hi, .. } => lo.iter().chain(hi.iter()).any(has_string),
    };
    let keyed = |c: &Collation, p: &IndexPredicate| match p {
        IndexPredicate::Eq(v) => IndexPredicate::Eq(c.index_value(v)),
        IndexPredicate::In(vs) => IndexPredicate::In(vs.iter().map(|v| c.index_value(v)).collect()),
        IndexPredicate::Range { lo, lo_incl, hi, hi_incl } => IndexPredicate::Range {
            lo: lo.as_ref().map(|v| c.index_value(v)),
            lo_incl: *lo_incl,
            hi: hi.as_ref().map(|v| c.index_value(v)),
            hi_incl: *hi_incl,
        },
    };
    Cow::Owned(
        preds
            .iter()
            .filter_map(|(path, p)| {
                if !stringy(p) {
                    return Some((path.clone(), p.clone()));
                }
                match (same, ix) {
                    (true, Some(c)) => Some((path.clone(), keyed(c, p))),
                    _ => None,
                }
            })
            .collect(),
    )
}

/// The error for a hint that names no index.
fn bad_hint() -> CommandError {
    CommandError::bad_value("hint provided does not correspond to an existing index")
}

/// Whether an equality value can become an index point.
fn point_ok(v: &Bson) -> bool {
    !matches!(
        v,
        Bson::Null
            | Bson::Undefined
            | Bson::Array(_)
            | Bson::RegularExpression(_)
            | Bson::MinKey
            | Bson::MaxKey
    )
}

/// The smallest and largest values of `v`'s type bracket, as (value, inclusive); `None` means
/// unbounded on that side.
fn bracket(v: &Bson) -> (End, End) {
    match v {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
            (Some((Bson::Double(f64::NEG_INFINITY), true)), Some((Bson::Double(f64::INFINITY), true)))
        }
        Bson::String(_) | Bson::Symbol(_) => {
            (Some((Bson::String(String::new()), true)), Some((Bson::Document(Document::new()), false)))
        }
        Bson::DateTime(_) => (
            Some((Bson::DateTime(bson::DateTime::from_millis(i64::MIN)), true)),
            Some((Bson::DateTime(bson::DateTime::from_millis(i64::MAX)), true)),
        ),
        Bson::ObjectId(_) => (
            Some((Bson::ObjectId(ObjectId::from_bytes([0; 12])), true)),
            Some((Bson::ObjectId(ObjectId::from_bytes([0xff; 12])), true)),
        ),
        Bson::Boolean(_) => (Some((Bson::Boolean(false), true)), Some((Bson::Boolean(true), true))),
        _ => (None, None),
    }
}

/// One end of an interval: value and inclusiveness; `None` is unbounded.
type End = Option<(Bson, bool)>;

/// A value-order interval of one field: `None` ends are unbounded.
#[derive(Debug, Clone)]
struct Interval {
    lo: End,
    hi: End,
}

/// The interval of a range predicate, or `None` when it cannot be used.
fn range_interval(
    lo: &Option<Bson>,
    lo_incl: bool,
    hi: &Option<Bson>,
    hi_incl: bool,
    multikey: bool,
) -> Option<Interval> {
    let usable = |v: &Option<Bson>| {
        v.as_ref().is_none_or(|v| {
            !matches!(v, Bson::Array(_) | Bson::RegularExpression(_) | Bson::Null | Bson::Undefined)
        })
    };
    if !usable(lo) || !usable(hi) {
        return None;
    }
    let mut lo_b = lo.clone().map(|v| (v, lo_incl));
    let mut hi_b = hi.clone().map(|v| (v, hi_incl));
    if multikey && lo_b.is_some() && hi_b.is_some() {
        hi_b = None;
    }
    if let (Some((v, _)), None) = (&lo_b, &hi_b) {
        hi_b = bracket(v).1;
    }
    if let (None, Some((v, _))) = (&lo_b, &hi_b) {
        lo_b = bracket(v).0;
    }
    if lo_b.is_none() && hi_b.is_none() {
        return None;
    }
    Some(Interval { lo: lo_b, hi: hi_b })
}

/// Bounds on one index field.
#[derive(Debug, Clone)]
enum FieldBound {
    Points(Vec<Bson>),
    Range(Box<Interval>),
}

fn field_bound(preds: &[(String, IndexPredicate)], path: &str, multikey: bool) -> Option<FieldBound> {
    let mut best: Option<FieldBound> = None;
    for (p, pred) in preds.iter().filter(|(p, _)| p == path) {
        let _ = p;
        let fb = match pred {
            IndexPredicate::Eq(v) if point_ok(v) => FieldBound::Points(vec![v.clone()]),
            IndexPredicate::In(vs) if !vs.is_empty() && vs.iter().all(point_ok) => {
                let mut vs: Vec<KeyVal> = vs.iter().cloned().map(KeyVal).collect();
                vs.sort();
                vs.dedup();
                FieldBound::Points(vs.into_iter().map(|k| k.0).collect())
            }
            IndexPredicate::Range { lo, lo_incl, hi, hi_incl } => {
                match range_interval(lo, *lo_incl, hi, *hi_incl, multikey) {
                    Some(i) => FieldBound::Range(Box::new(i)),
                    None => continue,
                }
            }
            _ => continue,
        };
        let rank = |b: &FieldBound| match b {
            FieldBound::Points(v) if v.len() == 1 => 0,
            FieldBound::Points(v) => v.len().min(1000),
            FieldBound::Range(_) => 2000,
        };
        if best.as_ref().is_none_or(|b| rank(&fb) < rank(b)) {
            best = Some(fb);
        }
    }
    best
}

/// Index intervals for `fields` given the predicates; `None` when the leading field is
/// unconstrained. Also returns how many leading fields are single points.
fn index_intervals(
    preds: &[(String, IndexPredicate)],
    fields: &[(String, bool)],
    multikey: bool,
) -> Option<(Vec<(Entry, Entry)>, usize)> {
    let mut prefixes: Vec<Vec<Part>> = vec![Vec::new()];
    let mut single_points = 0;
    let mut all_single = true;
    let mut range: Option<(Interval, bool)> = None;
    for (path, desc) in fields {
        match field_bound(preds, path, multikey) {
            Some(FieldBound::Points(vs)) => {
                if prefixes.len() * vs.len() > MAX_POINTS {
                    break;
                }
                if vs.len() == 1 && all_single {
                    single_points += 1;
                } else {
                    all_single = false;
                }
                let mut next = Vec::with_capacity(prefixes.len() * vs.len());
                for p in &prefixes {
                    for v in &vs {
                        let mut p2 = p.clone();
                        p2.push(Part::new(v.clone(), *desc));
                        next.push(p2);
                    }
                }
                prefixes = next;
            }
            Some(FieldBound::Range(i)) => {
                range = Some((*i, *desc));
                break;
            }
            None => break,
        }
    }
    if prefixes[0].is_empty() && range.is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        let mut lo = p.clone();
        let mut hi = p;
        match &range {
            None => {
                lo.push(Part::Lo);
                hi.push(Part::Hi);
            }
            Some((iv, desc)) => {
                let (start, end) = if *desc { (&iv.hi, &iv.lo) } else { (&iv.lo, &iv.hi) };
                match start {
                    Some((v, incl)) => {
                        lo.push(Part::new(v.clone(), *desc));
                        lo.push(if *incl { Part::Lo } else { Part::Hi });
                    }
                    None => lo.push(Part::Lo),
                }
                match end {
                    Some((v, incl)) => {
                        hi.push(Part::new(v.clone(), *desc));
                        hi.push(if *incl { Part::Hi } else { Part::Lo });
                    }
                    None => hi.push(Part::Hi),
                }
            }
        }
        if lo <= hi {
            out.push((lo, hi));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some((out, single_points))
}

/// Whether scanning `fields` (after `skip` leading equality fields) yields `sort` order:
/// `Some(reverse)` if so.
fn sort_direction(fields: &[(String, bool)], skip: usize, sort: &[(String, i32)]) -> Option<bool> {
    if sort.is_empty() {
        return None;
    }
    // Sort fields that are pinned to one value by equality may be skipped too.
    let rest = fields.get(skip..)?;
    if sort.len() > rest.len() {
        return None;
    }
    let mut reverse = None;
    for ((path, desc), (spath, sdir)) in rest.iter().zip(sort) {
        if path != spath {
            return None;
        }
        let r = (*sdir < 0) != *desc;
        if *reverse.get_or_insert(r) != r {
            return None;
        }
    }
    reverse
}

fn count_index(ix: &Index, intervals: &[(Entry, Entry)], cap: usize) -> usize {
    let mut n = 0;
    for (lo, hi) in intervals {
        n += ix.entries.range(lo.clone()..=hi.clone()).take(cap - n.min(cap)).count();
        if n >= cap {
            break;
        }
    }
    n
}

fn id_bounds(preds: &[(String, IndexPredicate)]) -> Option<Access> {
    match field_bound(preds, "_id", false)? {
        FieldBound::Points(vs) => Some(Access::IdPoints(vs.into_iter().map(KeyVal).collect())),
        FieldBound::Range(iv) => {
            let b = |e: &End| match e {
                Some((v, true)) => Bound::Included(KeyVal(v.clone())),
                Some((v, false)) => Bound::Excluded(KeyVal(v.clone())),
                None => Bound::Unbounded,
            };
            Some(Access::IdRange(Box::new((b(&iv.lo), b(&iv.hi)))))
        }
    }
}

fn count_id(data: &CollData, access: &Access, cap: usize) -> usize {
    match access {
        Access::IdPoints(ps) => ps.iter().filter(|p| data.docs.contains_key(*p)).count(),
        Access::IdRange(b) if range_valid(b.0.as_ref(), b.1.as_ref()) => {
            data.docs.range((b.0.clone(), b.1.clone())).take(cap).count()
        }
        _ => 0,
    }
}

/// Whether `BTreeMap::range` accepts these bounds (it panics on inverted ones).
pub(crate) fn range_valid<T: Ord>(lo: Bound<&T>, hi: Bound<&T>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

fn id_summary(access: &Access) -> String {
    match access {
        Access::IdPoints(p) if p.len() == 1 => "IDHACK".into(),
        _ => "IXSCAN { _id: 1 }".into(),
    }
}

/// Which index a hint names: `None` for `$natural`, `Some(None)` for `_id_`, `Some(Some(i))`.
fn resolve_hint(data: &CollData, hint: &Bson) -> Result<Option<Option<usize>>> {
    match hint {
        Bson::String(name) => {
            if name == "_id_" {
                return Ok(Some(None));
            }
            data.indexes
                .iter()
                .position(|ix| ix.spec.name == *name && !ix.spec.hidden())
                .map(|i| Some(Some(i)))
                .ok_or_else(bad_hint)
        }
        Bson::Document(d) => {
            if d.keys().next().is_some_and(|k| k == "$natural") {
                return Ok(None);
            }
            if d.len() == 1 && d.keys().next().is_some_and(|k| k == "_id") {
                return Ok(Some(None));
            }
            let want: Option<Vec<(String, bool)>> = d
                .iter()
                .map(|(k, v)| {
                    let n = match v {
                        Bson::Int32(i) => f64::from(*i),
                        Bson::Int64(i) => *i as f64,
                        Bson::Double(f) => *f,
                        _ => return None,
                    };
                    Some((k.clone(), n < 0.0))
                })
                .collect();
            let want = want.ok_or_else(bad_hint)?;
            data.indexes
                .iter()
                .position(|ix| ix.spec.fields == want && !ix.spec.hidden())
                .map(|i| Some(Some(i)))
                .ok_or_else(bad_hint)
        }
        _ => Err(bad_hint()),
    }
}

/// Chooses a plan for the predicates (from `Filter::index_predicates`), sort and hint.
pub(crate) fn choose(
    data: Option<&CollData>,
    preds: &Predicates,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
) -> Result<Plan> {
    let Some(data) = data else {
        return Ok(Plan { access: Access::Eof, reverse: false, sorted: true, summary: "EOF".into() });
    };
    let sort_fields: &[(String, i32)] = sort.map(|s| s.fields()).unwrap_or(&[]);
    // The command's collation: indexes under another one bound no string and give no order.
    let query_coll = collation::current();
    let query_coll = query_coll.as_ref();
    let id_preds = usable(&preds.single, query_coll, None);
    let ix_preds = |ix: &Index| usable(preds.for_index(ix), query_coll, ix.spec.collation.as_ref());
    let ix_sort = |ix: &Index| {
        if collation::same(query_coll, ix.spec.collation.as_ref()) { sort_fields } else { &[] }
    };
    if let [(natural, dir)] = sort_fields
        && natural == "$natural"
    {
        // A capped collection scans in insertion order; another approximates it by `_id` order.
        return Ok(Plan::collscan(Some(*dir < 0)));
    }
    // The `_id` map orders strings bytewise: no order for a collated sort.
    let id_sort = if query_coll.is_some() {
        None
    } else {
        sort_direction(&[("_id".to_string(), false)], 0, sort_fields)
    };
    // A capped collection's scan follows insertion order, not `_id`'s: a sort on `_id` is then
    // the `_id` index's, as mongod's.
    let collscan = |id_sort: Option<bool>| {
        if data.natural.is_some()
            && let Some(reverse) = id_sort
        {
            Plan {
                access: Access::IdRange(Box::new((Bound::Unbounded, Bound::Unbounded))),
                reverse,
                sorted: true,
                summary: "IXSCAN { _id: 1 }".into(),
            }
        } else {
            Plan::collscan(id_sort)
        }
    };

    if let Some(h) = hint {
        return hinted(data, h, preds, query_coll, sort_fields, id_sort);
    }

    // Candidates: (estimated count, tie-breaker, plan)
    let mut best: Option<(usize, usize, Plan)> = None;
    let mut consider = |est: usize, tie: usize, plan: Plan| {
        let better = match &best {
            None => true,
            Some((e, t, p)) => (est, !plan.sorted, tie) < (*e, !p.sorted, *t),
        };
        if better {
            best = Some((est, tie, plan));
        }
    };
    if let Some(access) = id_bounds(&id_preds) {
        let est = count_id(data, &access, COUNT_CAP);
        let summary = id_summary(&access);
        let sorted = id_sort.is_some() && !matches!(access, Access::IdPoints(ref p) if p.len() > 1);
        consider(est, 0, Plan { access, reverse: id_sort == Some(true), sorted, summary });
    }
    for (i, ix) in data.indexes.iter().enumerate() {
        if ix.spec.hidden() {
            continue;
        }
        if let Some((intervals, skip)) = index_intervals(&ix_preds(ix), &ix.spec.fields, ix.multikey) {
            let est = count_index(ix, &intervals, COUNT_CAP);
            consider(est, 1 + i, index_plan(ix, intervals, skip, ix_sort(ix)));
        }
    }
    if let Some((_, _, plan)) = best {
        return Ok(plan);
    }
    // No usable predicate: an index can still provide the sort order.
    if id_sort.is_none() && !sort_fields.is_empty() {
        for ix in &data.indexes {
            if ix.multikey
                || ix.spec.sparse
                || ix.spec.hidden()
                || !collation::same(query_coll, ix.spec.collation.as_ref())
            {
                continue;
            }
            if let Some(reverse) = sort_direction(&ix.spec.fields, 0, sort_fields) {
                return Ok(Plan {
                    access: Access::Index {
                        index_id: ix.id,
                        intervals: vec![(vec![Part::Lo], vec![Part::Hi])],
                    },
                    reverse,
                    sorted: true,
                    summary: format!("IXSCAN {}", key_pattern_text(&ix.spec.key)),
                });
            }
        }
    }
    Ok(collscan(id_sort))
}

/// The plan of a hint (on a collection that exists).
fn hinted(
    data: &CollData,
    h: &Bson,
    preds: &Predicates,
    query_coll: Option<&Arc<Collation>>,
    sort_fields: &[(String, i32)],
    id_sort: Option<bool>,
) -> Result<Plan> {
    match resolve_hint(data, h)? {
        None if data.natural.is_some() => Ok(Plan::collscan(None)),
        None => Ok(Plan::collscan(id_sort)),
        Some(None) => {
            let access = id_bounds(&usable(&preds.single, query_coll, None))
                .unwrap_or(Access::IdRange(Box::new((Bound::Unbounded, Bound::Unbounded))));
            let summary = "IXSCAN { _id: 1 }".to_string();
            let sorted = id_sort.is_some() && !matches!(access, Access::IdPoints(ref p) if p.len() > 1);
            Ok(Plan { access, reverse: id_sort == Some(true), sorted, summary })
        }
        Some(Some(i)) => {
            let ix = &data.indexes[i];
            let ix_coll = ix.spec.collation.as_ref();
            let (intervals, skip) = index_intervals(
                &usable(preds.for_index(ix), query_coll, ix_coll),
                &ix.spec.fields,
                ix.multikey,
            )
            .unwrap_or_else(|| (vec![(vec![Part::Lo], vec![Part::Hi])], 0));
            let sort = if collation::same(query_coll, ix_coll) { sort_fields } else { &[] };
            Ok(index_plan(ix, intervals, skip, sort))
        }
    }
}

fn index_plan(ix: &Index, intervals: Vec<(Entry, Entry)>, skip: usize, sort: &[(String, i32)]) -> Plan {
    let dir =
        if intervals.len() <= 1 && !ix.multikey { sort_direction(&ix.spec.fields, skip, sort) } else { None };
    Plan {
        access: Access::Index { index_id: ix.id, intervals },
        reverse: dir == Some(true),
        sorted: dir.is_some(),
        summary: format!("IXSCAN {}", key_pattern_text(&ix.spec.key)),
    }
}

/// Where a scan stands.
#[derive(Debug, Clone)]
enum Pos {
    Start,
    AfterId(KeyVal),
    AfterEntry(usize, Entry),
    Point(usize),
    /// After this insertion sequence number (a capped collection's natural order).
    AfterSeq(u64),
}

/// A resumable execution of a [`Plan`].
#[derive(Debug)]
pub(crate) struct Cursor {
    plan: Plan,
    pos: Pos,
    done: bool,
    /// `_id`s already returned by an index scan (multikey entries, updated documents).
    seen: BTreeSet<KeyVal>,
    /// A read's scan of a capped collection, which dies when its position is deleted (136
    /// CappedPositionLost). A write's scan deletes behind itself and reads on.
    read_only: bool,
    pub keys_examined: u64,
    pub docs_examined: u64,
}

/// A scan result: the `_id` key and the document.
pub(crate) type Hit = (KeyVal, Arc<Document>);

/// mongod's error for a capped collection scan whose last record was deleted under it.
pub(crate) fn position_lost(last: &str) -> CommandError {
    CommandError::new(
        136,
        "CappedPositionLost",
        format!(
            "CollectionScan died due to position in capped collection being deleted. Last seen record id: {last}"
        ),
    )
}

fn killed(what: &str) -> CommandError {
    CommandError::new(175, "QueryPlanKilled", format!("query plan killed :: caused by :: {what}"))
}

impl Cursor {
    pub(crate) fn new(plan: Plan) -> Cursor {
        let done = matches!(plan.access, Access::Eof);
        Cursor {
            plan,
            pos: Pos::Start,
            done,
            seen: BTreeSet::new(),
            read_only: false,
            keys_examined: 0,
            docs_examined: 0,
        }
    }

    /// A cursor for a read (see `read_only`).
    pub(crate) fn reading(plan: Plan) -> Cursor {
        Cursor { read_only: true, ..Cursor::new(plan) }
    }

    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Appends up to `budget` candidate documents to `out`, advancing the position.
    pub(crate) fn next_chunk(&mut self, data: &CollData, budget: usize, out: &mut Vec<Hit>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        if data.dropped {
            return Err(killed("collection dropped"));
        }
        let start_len = out.len();
        match &self.plan.access {
            Access::Eof => self.done = true,
            Access::CollScan if data.natural.is_some() => self.natural_scan(data, budget, out)?,
            Access::CollScan => {
                let (lo, hi) = (Bound::Unbounded, Bound::Unbounded);
                self.id_range(data, lo, hi, budget, out);
            }
            Access::IdRange(b) => {
                let (lo, hi) = (b.0.clone(), b.1.clone());
                self.id_range(data, lo, hi, budget, out);
            }
            Access::IdPoints(points) => {
                let mut i = match self.pos {
                    Pos::Point(i) => i,
                    _ => 0,
                };
                let n = points.len();
                while i < n && out.len() - start_len < budget {
                    let p = if self.plan.reverse { &points[n - 1 - i] } else { &points[i] };
                    self.keys_examined += 1;
                    if let Some(rec) = data.docs.get(p) {
                        self.docs_examined += 1;
                        out.push((p.clone(), Arc::clone(&rec.doc)));
                    }
                    i += 1;
                }
                self.pos = Pos::Point(i);
                self.done = i >= n;
            }
            Access::Index { index_id, intervals } => {
                let index_id = *index_id;
                let Some(ix) = data.indexes.iter().find(|ix| ix.id == index_id) else {
                    return Err(killed("index dropped"));
                };
                let intervals = intervals.clone();
                self.index_scan(data, ix, &intervals, budget, out);
            }
        }
        Ok(())
    }

    /// Whether this is a collection scan (in insertion order on a capped collection).
    pub(crate) fn is_collscan(&self) -> bool {
        matches!(self.plan.access, Access::CollScan)
    }

    /// Whether this scan follows a capped collection's insertion order forwards, so that it
    /// can wait at its end for newer documents (a tailable cursor).
    pub(crate) fn can_tail(&self) -> bool {
        matches!(self.plan.access, Access::CollScan) && !self.plan.reverse
    }

    /// A tailable cursor's scan at its end: the next chunk reads what was inserted since.
    pub(crate) fn resume_tail(&mut self) {
        if self.can_tail() {
            self.done = false;
        }
    }

    /// A capped collection in insertion order. The last document read must still be there when
    /// the scan resumes: mongod's collection scan dies with 136 CappedPositionLost when the
    /// collection rolled over (or a delete removed it) in between.
    fn natural_scan(&mut self, data: &CollData, budget: usize, out: &mut Vec<Hit>) -> Result<()> {
        let Some(natural) = &data.natural else { return Ok(()) };
        let range = match self.pos {
            Pos::AfterSeq(k) => {
                if self.read_only && !natural.contains_key(&k) {
                    return Err(position_lost(&format!("RecordId({k})")));
                }
                if self.plan.reverse {
                    (Bound::Unbounded, Bound::Excluded(k))
                } else {
                    (Bound::Excluded(k), Bound::Unbounded)
                }
            }
            _ => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut n = 0;
        let mut last = None;
        let iter: Box<dyn Iterator<Item = (&u64, &KeyVal)>> = if self.plan.reverse {
            Box::new(natural.range(range).rev())
        } else {
            Box::new(natural.range(range))
        };
        for (seq, id) in iter.take(budget) {
            if let Some(rec) = data.docs.get(id) {
                out.push((id.clone(), Arc::clone(&rec.doc)));
            }
            last = Some(*seq);
            n += 1;
        }
        self.docs_examined += n as u64;
        if let Some(k) = last {
            self.pos = Pos::AfterSeq(k);
        }
        if n < budget {
            self.done = true;
        }
        Ok(())
    }

    fn id_range(
        &mut self,
        data: &CollData,
        lo: Bound<KeyVal>,
        hi: Bound<KeyVal>,
        budget: usize,
        out: &mut Vec<Hit>,
    ) {
        let (lo, hi) = match (&self.pos, self.plan.reverse) {
            (Pos::AfterId(k), false) => (Bound::Excluded(k.clone()), hi),
            (Pos::AfterId(k), true) => (lo, Bound::Excluded(k.clone())),
            _ => (lo, hi),
        };
        if !range_valid(lo.as_ref(), hi.as_ref()) {
            self.done = true;
            return;
        }
        let range = data.docs.range((lo, hi));
        let mut n = 0;
        // The position is the last key pushed, which `out` holds: no second copy per document.
        let start = out.len();
        let mut push = |k: &KeyVal, rec: &crate::collection::Rec| out.push((k.clone(), Arc::clone(&rec.doc)));
        if self.plan.reverse {
            for (k, rec) in range.rev().take(budget) {
                push(k, rec);
                n += 1;
            }
        } else {
            for (k, rec) in range.take(budget) {
                push(k, rec);
                n += 1;
            }
        }
        self.docs_examined += n as u64;
        if matches!(self.plan.access, Access::IdRange(..)) {
            self.keys_examined += n as u64;
        }
        match out.last() {
            Some((k, _)) if n == budget && out.len() > start => self.pos = Pos::AfterId(k.clone()),
            _ => self.done = true,
        }
    }

    fn index_scan(
        &mut self,
        data: &CollData,
        ix: &Index,
        intervals: &[(Entry, Entry)],
        budget: usize,
        out: &mut Vec<Hit>,
    ) {
        let n_iv = intervals.len();
        let mut taken = 0;
        let (mut iv, mut after) = match &self.pos {
            Pos::AfterEntry(i, e) => (*i, Some(e.clone())),
            _ => (0, None),
        };
        while iv < n_iv {
            let (lo, hi) = if self.plan.reverse { &intervals[n_iv - 1 - iv] } else { &intervals[iv] };
            let (lo_b, hi_b) = match (&after, self.plan.reverse) {
                (Some(e), false) => (Bound::Excluded(e), Bound::Included(hi)),
                (Some(e), true) => (Bound::Included(lo), Bound::Excluded(e)),
                (None, _) => (Bound::Included(lo), Bound::Included(hi)),
            };
            let mut exhausted = true;
            if range_valid(lo_b, hi_b) {
                let range = ix.entries.range::<Entry, _>((lo_b, hi_b));
                let iter: Box<dyn Iterator<Item = &Entry>> =
                    if self.plan.reverse { Box::new(range.rev()) } else { Box::new(range) };
                for e in iter {
                    self.keys_examined += 1;
                    after = Some(e.clone());
                    if let Some(id) = crate::keys::entry_id(e) {
                        let id = KeyVal(id.clone());
                        if !self.seen.contains(&id)
                            && let Some(rec) = data.docs.get(&id)
                        {
                            self.docs_examined += 1;
                            self.seen.insert(id.clone());
                            out.push((id, Arc::clone(&rec.doc)));
                            taken += 1;
                        }
                    }
                    if taken >= budget {
                        exhausted = false;
                        break;
                    }
                }
            }
            if !exhausted {
                if let Some(e) = after {
                    self.pos = Pos::AfterEntry(iv, e);
                }
                return;
            }
            iv += 1;
            after = None;
        }
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::collection::CollData;
    use crate::index::parse_spec;
    use bson::doc;

    fn coll(n: i32, specs: &[Document]) -> CollData {
        let mut c = CollData::default();
        for (i, s) in specs.iter().enumerate() {
            c.indexes.push(Index::new(i as u64 + 1, parse_spec(s).unwrap()));
        }
        for i in 0..n {
            let d = doc! {"_id": i, "a": i % 10, "b": i, "arr": [i, i + 1]};
            let id = KeyVal(Bson::Int32(i));
            let p = c.prepare("t.c", &d, &id, true).unwrap();
            c.insert(id, Arc::new(d), 1, p);
        }
        c
    }

    fn run(c: &CollData, plan: Plan, budget: usize) -> Vec<i32> {
        let mut cur = Cursor::new(plan);
        let mut out = Vec::new();
        while !cur.is_done() {
            cur.next_chunk(c, budget, &mut out).unwrap();
        }
        out.iter().map(|(_, d)| d.get_i32("_id").unwrap()).collect()
    }

    fn both(v: Vec<(String, IndexPredicate)>) -> Predicates {
        Predicates { multi: v.clone(), single: v }
    }

    fn eq(p: &str, v: Bson) -> (String, IndexPredicate) {
        (p.to_string(), IndexPredicate::Eq(v))
    }
    fn range(p: &str, lo: Option<i32>, hi: Option<i32>) -> (String, IndexPredicate) {
        (
            p.to_string(),
            IndexPredicate::Range {
                lo: lo.map(Bson::Int32),
                lo_incl: true,
                hi: hi.map(Bson::Int32),
                hi_incl: false,
            },
        )
    }

    #[test]
    fn collscan_and_idhack() {
        let c = coll(300, &[]);
        let p = choose(Some(&c), &Predicates::default(), None, None).unwrap();
        assert_eq!(p.summary, "COLLSCAN");
        assert_eq!(run(&c, p, 7), (0..300).collect::<Vec<_>>());
        let p = choose(Some(&c), &both(vec![eq("_id", Bson::Int32(5))]), None, None).unwrap();
        assert_eq!(p.summary, "IDHACK");
        assert_eq!(run(&c, p, 7), vec![5]);
        let p = choose(Some(&c), &both(vec![range("_id", Some(10), Some(20))]), None, None).unwrap();
        assert_eq!(p.summary, "IXSCAN { _id: 1 }");
        assert_eq!(run(&c, p, 3), (10..20).collect::<Vec<_>>());
        assert_eq!(choose(None, &Predicates::default(), None, None).unwrap().summary, "EOF");
    }

    #[test]
    fn index_equality_range_and_in() {
        let c = coll(200, &[doc! {"key": {"a": 1}}, doc! {"key": {"a": 1, "b": -1}}, doc! {"key": {"b": 1}}]);
        let p = choose(
            Some(&c),
            &both(vec![eq("a", Bson::Int32(3)), range("b", Some(50), Some(120))]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(p.summary, "IXSCAN { a: 1, b: -1 }");
        let mut got = run(&c, p, 4);
        assert_eq!(got, vec![113, 103, 93, 83, 73, 63, 53]);
        got.sort();
        let p = choose(Some(&c), &both(vec![range("b", Some(190), None)]), None, None).unwrap();
        assert_eq!(p.summary, "IXSCAN { b: 1 }");
        assert_eq!(run(&c, p, 3), (190..200).collect::<Vec<_>>());
        let p = choose(
            Some(&c),
            &both(vec![(
                "a".into(),
                IndexPredicate::In(vec![Bson::Int32(9), Bson::Int32(1), Bson::Int32(1)]),
            )]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(p.summary, "IXSCAN { a: 1 }");
        let mut got = run(&c, p, 5);
        got.sort();
        assert_eq!(got.len(), 40);
        // unusable predicates fall back to a collection scan
        let p = choose(Some(&c), &both(vec![eq("zzz", Bson::Int32(1)), eq("a", Bson::Null)]), None, None)
            .unwrap();
        assert_eq!(p.summary, "COLLSCAN");
    }

    #[test]
    fn multikey_index_deduplicates() {
        let c = coll(50, &[doc! {"key": {"arr": 1}}]);
        assert!(c.indexes[0].multikey);
        let p = choose(Some(&c), &both(vec![range("arr", Some(10), Some(13))]), None, None).unwrap();
        // multikey: only the lower bound is used, results are distinct
        let got = run(&c, p, 2);
        let set: BTreeSet<i32> = got.iter().copied().collect();
        assert_eq!(set.len(), got.len());
        assert!(set.is_superset(&(9..13).collect()));
    }

    #[test]
    fn sort_from_index() {
        let c = coll(100, &[doc! {"key": {"a": 1, "b": -1}}, doc! {"key": {"b": 1}}]);
        let s = SortSpec::parse(&doc! {"b": -1}).unwrap();
        let p = choose(Some(&c), &both(vec![eq("a", Bson::Int32(4))]), Some(&s), None).unwrap();
        assert!(p.sorted && !p.reverse);
        assert_eq!(run(&c, p, 3), vec![94, 84, 74, 64, 54, 44, 34, 24, 14, 4]);
        let s = SortSpec::parse(&doc! {"b": -1}).unwrap();
        let p = choose(Some(&c), &Predicates::default(), Some(&s), None).unwrap();
        assert_eq!(p.summary, "IXSCAN { b: 1 }");
        assert!(p.sorted && p.reverse);
        assert_eq!(run(&c, p, 7), (0..100).rev().collect::<Vec<_>>());
        let s = SortSpec::parse(&doc! {"_id": -1}).unwrap();
        let p = choose(Some(&c), &Predicates::default(), Some(&s), None).unwrap();
        assert_eq!(p.summary, "COLLSCAN");
        assert_eq!(run(&c, p, 9), (0..100).rev().collect::<Vec<_>>());
    }

    #[test]
    fn hints() {
        let c = coll(20, &[doc! {"key": {"a": 1}}, doc! {"key": {"b": 1}}]);
        let p =
            choose(Some(&c), &both(vec![eq("a", Bson::Int32(1))]), None, Some(&Bson::String("b_1".into())))
                .unwrap();
        assert_eq!(p.summary, "IXSCAN { b: 1 }");
        assert_eq!(run(&c, p, 5).len(), 20);
        let p = choose(
            Some(&c),
            &both(vec![eq("a", Bson::Int32(1))]),
            None,
            Some(&Bson::Document(doc! {"$natural": 1})),
        )
        .unwrap();
        assert_eq!(p.summary, "COLLSCAN");
        let e =
            choose(Some(&c), &Predicates::default(), None, Some(&Bson::String("nope".into()))).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "hint provided does not correspond to an existing index")
        );
        let p = choose(Some(&c), &Predicates::default(), None, Some(&Bson::Document(doc! {"a": 1}))).unwrap();
        assert_eq!(p.summary, "IXSCAN { a: 1 }");
        assert!(
            choose(Some(&c), &Predicates::default(), None, Some(&Bson::Document(doc! {"a": -1}))).is_err()
        );
    }

    #[test]
    fn resumes_across_mutations() {
        let mut c = coll(10, &[doc! {"key": {"b": 1}}]);
        let p = choose(Some(&c), &both(vec![range("b", Some(0), None)]), None, None).unwrap();
        let mut cur = Cursor::new(p);
        let mut out = Vec::new();
        cur.next_chunk(&c, 3, &mut out).unwrap();
        // delete the next document and drop the collection afterwards
        c.remove(&KeyVal(Bson::Int32(3)));
        cur.next_chunk(&c, 3, &mut out).unwrap();
        let ids: Vec<i32> = out.iter().map(|(_, d)| d.get_i32("_id").unwrap()).collect();
        assert_eq!(ids, vec![0, 1, 2, 4, 5, 6]);
        c.dropped = true;
        assert_eq!(cur.next_chunk(&c, 3, &mut out).unwrap_err().code, 175);
    }
}
