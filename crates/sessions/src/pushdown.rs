//! The vendor listing pushed down to the node: one aggregation that filters, orders and pages a
//! node's `$currentOp` entries and returns the total and just the page, in one reply document, on
//! any MongoDB 3.6+ (and the embedded node). It computes what [`crate::select::select_indices`]
//! computes over [`SessionRecord::summary`](crate::record::SessionRecord::summary); the test
//! `tests/pushdown.rs` checks the two agree on a live node. The driver puts its own-entry
//! exclusion (`docplane_driver::ops::own_exclusion`) right after `$currentOp`, before these stages.
//!
//! ```text
//! {$match: {$and: [{op: T} | {$or: [{op: "none"}, {op: {$not: {$type: "string"}}}]},  // filters
//!                  {ns: NS}, {planSummary: {$regex: <whole word, ASCII case ignored>}}]}},
//! {$addFields: {_dp_us: microsecs_running, else secs_running * 1e6 (each only when a
//!                       non-negative integral number), else 0,
//!               _dp_src: 0 opid (int, long, string, integral double), 1 idle session holding
//!                        transaction state, 2 desc}},
//! {$match: {$or: [{_dp_src: {$lt: 2}}, {desc: /^conn[0-9]{1,12}$/}], _dp_us: {$gt: N}}},
//! {$addFields: {_dp_id: by _dp_src: opid, "lsid:", desc}},
//! {$facet: {total: [{$count: "n"}],
//!           page: [{$sort: {_dp_us: -1, _dp_id: 1, "lsid.id": 1}}, {$skip}, {$limit},
//!                  {$project: {_dp_us: 0, _dp_id: 0, _dp_src: 0}}]}}
//! ```
//!
//! Every operator is in MongoDB 3.6 (`$facet`, `$count`, `$addFields`, `$switch`, `$type`, `$in`
//! 3.4; `$trunc`, `$abs` 3.2; `$expr` is not needed). Not used, being newer: `$regexMatch`,
//! `$unset`, `$toString`. Where it can differ from the client-side result (no value mongod, mongos
//! or the embedded node produces): an array-valued `op`/`ns` is matched element-wise; ties among
//! idle sessions are broken by `lsid.id` as BSON orders binary, not by its hex text; mixed id
//! types (numbers and strings on one node) order numbers first, as BSON does (the client-side order
//! compares them as text).

use mongodb::bson::{Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf, doc};

use crate::select::SessionQuery;

/// Name of the facet holding the count.
pub const TOTAL: &str = "total";
/// Name of the facet holding the page.
pub const PAGE: &str = "page";

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `(^|[^A-Za-z0-9_])` + the word with each ASCII letter as `[Xx]` + `([^A-Za-z0-9_]|$)`: a whole
/// word, ASCII case ignored. Not the `i` option: PCRE's caseless matching also folds non-ASCII
/// characters (the Kelvin sign matches `k`), `eq_ignore_ascii_case` does not. `None` if `word` is
/// not made of [A-Za-z0-9_] (the API accepts only stage names).
pub(crate) fn word_pattern(word: &str) -> Option<String> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let mut p = String::from("(^|[^A-Za-z0-9_])");
    for c in word.chars() {
        if c.is_ascii_alphabetic() {
            p.push('[');
            p.push(c.to_ascii_uppercase());
            p.push(c.to_ascii_lowercase());
            p.push(']');
        } else {
            p.push(c);
        }
    }
    p.push_str("([^A-Za-z0-9_]|$)");
    Some(p)
}

/// `path` when it holds a non-negative integral number below 1.8e19 (`bson_u64`), else null. An
/// int or long (what every server reports) needs only the sign test: it is integral and below
/// 2^63; a double gets the whole test.
fn count_or_null(path: &str) -> Bson {
    Bson::Document(doc! {"$switch": {
        "branches": [
            {"case": {"$in": [{"$type": path}, ["int", "long"]]},
             "then": {"$cond": [{"$gte": [path, 0]}, path, Bson::Null]}},
            {"case": {"$eq": [{"$type": path}, "double"]},
             "then": {"$cond": [
                {"$and": [{"$gte": [path, 0]}, {"$lt": [path, 1.8e19]}, {"$eq": [path, {"$trunc": path}]}]},
                path,
                Bson::Null,
             ]}},
        ],
        "default": Bson::Null,
    }})
}

/// The stages after `$currentOp` that answer `query` in one document `{total, page}`, or `None`
/// when the query cannot be pushed down (a filter only the client side evaluates: client, user,
/// application name; or a plan summary that is not one word).
pub fn page_stages(query: &SessionQuery) -> Option<Vec<Document>> {
    let f = &query.filter;
    if f.client.is_some() || f.user.is_some() || f.app_name.is_some() {
        return None;
    }
    let mut exact: Vec<Bson> = Vec::new();
    match f.op_type.as_deref() {
        Some("none") => {
            exact.push(Bson::Document(doc! {"$or": [{"op": "none"}, {"op": {"$not": {"$type": "string"}}}]}))
        }
        Some(t) => exact.push(Bson::Document(doc! {"op": t})),
        None => {}
    }
    if let Some(ns) = &f.namespace {
        exact.push(Bson::Document(doc! {"ns": ns}));
    }
    if let Some(stage) = &f.plan_summary {
        exact.push(Bson::Document(doc! {"planSummary": {"$regex": word_pattern(stage.trim())?}}));
    }
    let integral_double_opid = doc! {"$cond": [
        {"$eq": [{"$type": "$opid"}, "double"]},
        {"$and": [{"$eq": ["$opid", {"$trunc": "$opid"}]}, {"$lt": [{"$abs": "$opid"}, 9.0e15]}]},
        false,
    ]};
    let opid_usable =
        doc! {"$or": [{"$in": [{"$type": "$opid"}, ["int", "long", "string"]]}, integral_double_opid]};
    // An idle session names something only while it holds transaction state (record.rs).
    let idle_session = doc! {"$and": [
        {"$eq": ["$type", "idleSession"]},
        {"$eq": [{"$type": "$lsid.id"}, "binData"]},
        {"$eq": [{"$type": "$transaction"}, "object"]},
    ]};
    let add = doc! {
        "_dp_us": {"$ifNull": [
            count_or_null("$microsecs_running"),
            {"$ifNull": [{"$multiply": [count_or_null("$secs_running"), 1_000_000_i64]}, 0_i64]},
        ]},
        "_dp_src": {"$switch": {
            "branches": [{"case": opid_usable, "then": 0}, {"case": idle_session, "then": 1}],
            "default": 2,
        }},
    };
    // From `_dp_src`, so that each entry's id source is decided once.
    let add_id = doc! {
        "_dp_id": {"$switch": {
            "branches": [
                {"case": {"$eq": ["$_dp_src", 0]}, "then": "$opid"},
                {"case": {"$eq": ["$_dp_src", 1]}, "then": "lsid:"},
            ],
            "default": "$desc",
        }},
    };
    let mut keep = doc! {"$or": [{"_dp_src": {"$lt": 2}}, {"desc": {"$regex": "^conn[0-9]{1,12}$"}}]};
    if let Some(min) = f.min_cost_time_us {
        keep.insert("_dp_us", doc! {"$gt": clamp_i64(min)});
    }
    let mut page = vec![Bson::Document(doc! {"$sort": {"_dp_us": -1, "_dp_id": 1, "lsid.id": 1}})];
    if query.offset > 0 {
        page.push(Bson::Document(doc! {"$skip": clamp_i64(query.offset)}));
    }
    if query.limit == 0 {
        // $limit must be positive: one entry, then skip it.
        page.push(Bson::Document(doc! {"$limit": 1}));
        page.push(Bson::Document(doc! {"$skip": 1}));
    } else {
        page.push(Bson::Document(doc! {"$limit": clamp_i64(query.limit)}));
    }
    page.push(Bson::Document(doc! {"$project": {"_dp_us": 0, "_dp_id": 0, "_dp_src": 0}}));
    let mut stages = Vec::with_capacity(4);
    if !exact.is_empty() {
        stages.push(doc! {"$match": {"$and": exact}});
    }
    stages.push(doc! {"$addFields": add});
    stages.push(doc! {"$match": keep});
    stages.push(doc! {"$addFields": add_id});
    stages.push(doc! {"$facet": {TOTAL: [{"$count": "n"}], PAGE: page}});
    Some(stages)
}

/// The top-level fields of a page entry the service reads: what
/// [`SessionRecord::summary`](crate::record::SessionRecord::summary), the shown operation and the
/// own-entry check (`docplane_driver::ops::is_own_operation`) read, whole. Of `clientMetadata`
/// only `application.name` is read and of `cursor` only `originatingCommand`: those two keep
/// just that. The rest of an entry (client metadata, locks, timing) is never decoded.
/// `tests/pushdown.rs` compares every field of the records this gives with the client-side ones.
const PAGE_FIELDS: &[&str] = &[
    "type",
    "host",
    "desc",
    "active",
    "opid",
    "lsid",
    "transaction",
    "secs_running",
    "microsecs_running",
    "op",
    "ns",
    "command",
    "query",
    "planSummary",
    "client",
    "client_s",
    "appName",
    "effectiveUsers",
];

fn decoded(v: RawBsonRef<'_>) -> Option<Bson> {
    Bson::try_from(v).ok()
}

/// `path` (below `v`) kept alone: `{a: {b: x}}` from `v` = `{a: {b: x, c: ...}}`; `None` when absent.
fn only_path(v: RawBsonRef<'_>, path: &[&str]) -> Option<Bson> {
    let Some((first, rest)) = path.split_first() else { return decoded(v) };
    let below = v.as_document()?.get(first).ok()??;
    let mut d = Document::new();
    d.insert(*first, only_path(below, rest)?);
    Some(Bson::Document(d))
}

/// A page entry as the service reads it (see [`PAGE_FIELDS`]); `None` when it is not valid BSON.
fn page_entry(raw: &RawDocument) -> Option<Document> {
    let mut out = Document::new();
    for item in raw {
        let (k, v) = item.ok()?;
        let value = match k {
            "clientMetadata" => only_path(v, &["application", "name"]),
            "cursor" => only_path(v, &["originatingCommand"]),
            _ if PAGE_FIELDS.contains(&k) => Some(decoded(v)?),
            _ => None,
        };
        if let Some(value) = value {
            out.insert(k, value);
        }
    }
    Some(out)
}

/// [`parse_page`] over the reply as the node encoded it, decoding of each page entry only what
/// the service reads (a page of 100 `$currentOp` entries decoded whole was most of the
/// listing's client-side time).
pub fn parse_raw_page(reply: &[RawDocumentBuf]) -> Option<(u64, Vec<Document>)> {
    let [reply] = reply else { return None };
    let total = match reply.get_array(TOTAL).ok()?.into_iter().next() {
        None => 0,
        Some(first) => match first.ok()?.as_document()?.get("n").ok()?? {
            RawBsonRef::Int32(n) => u64::try_from(n).ok()?,
            RawBsonRef::Int64(n) => u64::try_from(n).ok()?,
            _ => return None,
        },
    };
    let page = reply
        .get_array(PAGE)
        .ok()?
        .into_iter()
        .map(|e| e.ok()?.as_document().and_then(page_entry))
        .collect::<Option<Vec<Document>>>()?;
    Some((total, page))
}

/// Reads the one reply document: (total, page entries); `None` if it is not shaped as
/// [`page_stages`] shapes it.
pub fn parse_page(reply: &[Document]) -> Option<(u64, Vec<Document>)> {
    let [reply] = reply else { return None };
    let total = match reply.get_array(TOTAL).ok()?.first() {
        None => 0,
        Some(Bson::Document(d)) => match d.get("n")? {
            Bson::Int32(n) => u64::try_from(*n).ok()?,
            Bson::Int64(n) => u64::try_from(*n).ok()?,
            _ => return None,
        },
        Some(_) => return None,
    };
    let page = reply
        .get_array(PAGE)
        .ok()?
        .iter()
        .map(|e| e.as_document().cloned())
        .collect::<Option<Vec<Document>>>()?;
    Some((total, page))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::select::SessionFilter;

    #[test]
    fn words_and_shapes() {
        assert_eq!(
            word_pattern("IXSCAN").as_deref(),
            Some("(^|[^A-Za-z0-9_])[Ii][Xx][Ss][Cc][Aa][Nn]([^A-Za-z0-9_]|$)")
        );
        assert_eq!(word_pattern("A B"), None);
        let q = |f: SessionFilter| SessionQuery { filter: f, offset: 0, limit: 10 };
        assert!(
            page_stages(&q(SessionFilter { user: Some("a".into()), ..SessionFilter::default() })).is_none()
        );
        let s = page_stages(&q(SessionFilter::default())).unwrap();
        assert_eq!(s.len(), 4, "no exact filter, no first $match");
        let s = page_stages(&q(SessionFilter { op_type: Some("query".into()), ..SessionFilter::default() }))
            .unwrap();
        assert_eq!(s[0], doc! {"$match": {"$and": [{"op": "query"}]}});
        let reply = vec![doc! {"total": [{"n": 3}], "page": [{"opid": 1}]}];
        assert_eq!(parse_page(&reply), Some((3, vec![doc! {"opid": 1}])));
        assert_eq!(parse_page(&[doc! {"total": [], "page": []}]), Some((0, vec![])));
        assert_eq!(parse_page(&[]), None);
        assert_eq!(parse_page(&[doc! {"total": "x", "page": []}]), None);
        // The raw reader: the same total and entries, cut to what the service reads.
        let raw = |d: Document| vec![RawDocumentBuf::from_document(&d).unwrap()];
        let entry = doc! {
            "type": "op", "opid": 7, "active": true, "appName": "shop", "locks": {"Global": "r"},
            "clientMetadata": {"application": {"name": "shop"}, "driver": {"name": "d"}},
            "cursor": {"cursorId": 5_i64, "originatingCommand": {"find": "x", "comment": "c"}},
            "command": {"getMore": 5_i64}, "effectiveUsers": [{"user": "u", "db": "admin"}],
        };
        let want = doc! {
            "type": "op", "opid": 7, "active": true, "appName": "shop",
            "clientMetadata": {"application": {"name": "shop"}},
            "cursor": {"originatingCommand": {"find": "x", "comment": "c"}},
            "command": {"getMore": 5_i64}, "effectiveUsers": [{"user": "u", "db": "admin"}],
        };
        let (total, page) = parse_raw_page(&raw(doc! {"total": [{"n": 3_i64}], "page": [entry]})).unwrap();
        assert_eq!((total, page.len()), (3, 1));
        assert_eq!(
            mongodb::bson::to_vec(&page[0]).unwrap(),
            mongodb::bson::to_vec(&want).unwrap(),
            "{}",
            page[0]
        );
        let bare = doc! {"opid": 8, "clientMetadata": {"driver": {}}, "cursor": {"cursorId": 1}};
        let (_, page) = parse_raw_page(&raw(doc! {"total": [], "page": [bare]})).unwrap();
        assert_eq!(page, vec![doc! {"opid": 8}]);
        assert_eq!(parse_raw_page(&raw(doc! {"total": "x", "page": []})), None);
        assert_eq!(parse_raw_page(&[]), None);
    }
}
