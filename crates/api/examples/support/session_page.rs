//! One round trip for a page of a node's sessions: the total count of matching entries and just
//! the requested page, filtered, ordered and paged **on the node** by one aggregation that any
//! MongoDB 3.6+ (and docplane's embedded node) runs.
//!
//! This is the pushdown of docplane-driver's client-side listing (`sessions::list`:
//! `SessionRecord::summary`, `SessionFilter::matches`, `select_indices`, and `ops::is_own_operation`
//! on every entry) into the server. It lives here, in the benchmark that measures it, until the
//! session service is rewired to it; the test `crates/api/tests/session_page_pushdown.rs` checks it
//! against those driver functions entry by entry.
//!
//! ```text
//! [ {$currentOp: {allUsers: true, idleConnections: true, idleSessions: true (4.0+ only)}},
//!   // 1. exact filters and docplane's own entries, first, so that a node can test them before it
//!   //    builds entries (docplane's node applies a $match right after $currentOp to its registry)
//!   {$match: {$and: [
//!       {op: T},                                   // or, for T = "none": op "none" or not a string
//!       {ns: NS},
//!       {planSummary: {$regex: "(^|[^A-Za-z0-9_])[Ii][Xx][Ss][Cc][Aa][Nn]([^A-Za-z0-9_]|$)"}},
//!       {$nor: [{"command.comment": {$in: TAGS}}, {"command.$comment": {$in: TAGS}},
//!               {"query.comment": ...}, {"query.$comment": ...},
//!               {$and: [{$or: [{appName: APP}, {"clientMetadata.application.name": APP}]},
//!                       {$expr: app name (appName, else clientMetadata.application.name; strings only)
//!                               == APP and (active is not true or the command's first field is
//!                               hello/isMaster/ismaster)}]}]},
//!       {$nor: [{"cursor.originatingCommand.comment": ...},
//!               {"cursor.originatingCommand.$comment": ...}]}]}},
//!   // 2. what the driver computes per entry
//!   {$addFields: {
//!       _dp_us:  microsecs_running if a non-negative integral number, else secs_running * 1e6 (same
//!                test), else 0,
//!       _dp_id:  opid (int, long, integral double below 9e15, or string), else "lsid:" for an
//!                idleSession with a binary lsid.id, else desc,
//!       _dp_src: 0 opid, 1 idle session, 2 desc}},
//!   // 3. entries that name nothing, and the running-time filter
//!   {$match: {$or: [{_dp_src: {$lt: 2}}, {desc: {$regex: "^conn[0-9]{1,12}\z"}}], _dp_us: {$gt: N}}},
//!   // 4. count and page in one reply document
//!   {$facet: {total: [{$count: "n"}],
//!             page:  [{$sort: {_dp_us: -1, _dp_id: 1, "lsid.id": 1}}, {$skip: OFFSET}, {$limit: LIMIT},
//!                     {$project: {_dp_us: 0, _dp_id: 0, _dp_src: 0}}]}} ]
//! ```
//!
//! The reply is one document `{total: [{n}] or [], page: [entries]}` ([`parse_page`]); `page`'s
//! entries are the raw `$currentOp` entries the driver maps with `SessionRecord::from_current_op`.
//!
//! Operators and their first MongoDB version (every one is in 3.6): `$expr` in `$match` (also
//! inside `$nor`/`$and`) 3.6; `$facet`, `$count`, `$addFields`, `$switch`, `$type` and `$in` as
//! expressions, exclusion `$project` 3.4; `$objectToArray` 3.4.4; `$arrayElemAt`, `$trunc`, `$abs`
//! 3.2; `$cond`, `$ifNull`, `$map`, `$literal`, `$regex` in `$match`, `$nor` older. Not used
//! because they are newer than 3.6: `$regexMatch` (4.2), `$unset` (4.2), `$binarySize` (4.4),
//! `$toString` (4.0). `idleSessions` is an option from 4.0 on (pass the stage the driver builds
//! for the node's version).
//!
//! Where it can differ from the driver's client-side result (none of these occur with the values
//! mongod, mongos and the embedded node produce):
//! - an `op`, `ns` or tag `comment` field holding an array is matched element-wise, as MongoDB
//!   matches arrays; the driver reads only strings;
//! - an `idleSession` whose `lsid.id` is binary of a length other than 16 keeps its `lsid:` id here
//!   (3.6 cannot measure binary length);
//! - an entry carrying two different `docplane:` tags is hidden if either is live; the driver looks
//!   only at the first one;
//! - ties on running time and id among idle sessions are broken by `lsid.id` as BSON orders binary
//!   (length, then subtype, then bytes); the driver orders the lowercase hex of the bytes.

use mongodb::bson::{Bson, Document, doc};

/// Name of the facet holding the count.
pub const TOTAL: &str = "total";
/// Name of the facet holding the page.
pub const PAGE: &str = "page";

/// A page request, with the vendor API's filters (already validated as the API validates them).
#[derive(Debug, Clone, Default)]
pub struct PageRequest<'a> {
    /// Exact operation type (`op`; entries without a string `op` count as `"none"`).
    pub op_type: Option<&'a str>,
    /// Exact namespace (`ns`).
    pub namespace: Option<&'a str>,
    /// One plan stage name ([A-Za-z0-9_]+), matched as a whole word of `planSummary`, ignoring ASCII
    /// case (words are separated by any character outside [A-Za-z0-9_]).
    pub plan_summary: Option<&'a str>,
    /// Only entries running longer than this many microseconds.
    pub min_cost_time_us: Option<u64>,
    /// Entries to skip.
    pub offset: u64,
    /// Entries to return at most.
    pub limit: u64,
}

/// Why a request cannot be turned into a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// The plan summary filter is not one word of [A-Za-z0-9_] (the API accepts only stage names).
    PlanSummaryNotAWord(String),
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `(^|[^A-Za-z0-9_])` + the word with each ASCII letter as `[xX]` + `([^A-Za-z0-9_]|$)`: a whole
/// word, ASCII case ignored. Not the `i` option: PCRE's caseless matching also folds non-ASCII
/// characters (the Kelvin sign matches `k`), the driver's `eq_ignore_ascii_case` does not.
fn word_pattern(word: &str) -> Result<String, PageError> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(PageError::PlanSummaryNotAWord(word.to_owned()));
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
    Ok(p)
}

/// `path` (a `$field` reference) when it holds a non-negative integral number below 1.8e19 (the
/// driver's `bson_u64`), else null. `$cond` evaluates only the branch it takes, so `$trunc` never
/// sees a non-number.
fn count_or_null(path: &str) -> Bson {
    let general = doc! {"$cond": [
        {"$in": [{"$type": path}, ["int", "long", "double"]]},
        {"$cond": [
            {"$and": [{"$gte": [path, 0]}, {"$lt": [path, 1.8e19]}, {"$eq": [path, {"$trunc": path}]}]},
            path,
            Bson::Null,
        ]},
        Bson::Null,
    ]};
    // What servers send (a non-negative long) first: two comparisons instead of the general test.
    Bson::Document(doc! {"$cond": [
        {"$and": [{"$eq": [{"$type": path}, "long"]}, {"$gte": [path, 0_i64]}]},
        path,
        general,
    ]})
}

/// The aggregation pipeline (to run with `aggregate: 1` on `admin`, its `comment` set to one of
/// `own_tags` so that the read hides itself) that answers `req` in one reply document.
///
/// `current_op_stage` is the `$currentOp` stage for the node's version (docplane-driver's
/// `ops::current_op_stage`); `own_tags` the live current-op tags of this process (the driver's
/// `OwnOpTag` comments, at least this read's own); `app_name` the driver's application name.
pub fn session_page_pipeline(
    current_op_stage: Document,
    req: &PageRequest<'_>,
    own_tags: &[&str],
    app_name: &str,
) -> Result<Vec<Document>, PageError> {
    // 1. Exact filters and docplane's own entries: a $match right after $currentOp.
    let mut first: Vec<Bson> = Vec::new();
    match req.op_type {
        Some("none") => {
            first.push(Bson::Document(doc! {"$or": [{"op": "none"}, {"op": {"$not": {"$type": "string"}}}]}))
        }
        Some(t) => first.push(Bson::Document(doc! {"op": t})),
        None => {}
    }
    if let Some(ns) = req.namespace {
        first.push(Bson::Document(doc! {"ns": ns}));
    }
    if let Some(stage) = req.plan_summary {
        first.push(Bson::Document(doc! {"planSummary": {"$regex": word_pattern(stage.trim())?}}));
    }
    // docplane's own entries (`ops::is_own_operation`): a live tag on the command (or the legacy
    // query, or a getMore's originating command), or, under the driver's app name, an entry
    // that is not active or whose command's first field is a hello. Two $nor conjuncts, so that
    // a node can test the one reading only fixed fields (command, app name, active) apart from
    // the one reading the cursor, which changes while an operation runs.
    let app = doc! {"$cond": [
        {"$eq": [{"$type": "$appName"}, "string"]},
        "$appName",
        {"$cond": [
            {"$eq": [{"$type": "$clientMetadata.application.name"}, "string"]},
            "$clientMetadata.application.name",
            Bson::Null,
        ]},
    ]};
    let first_command_field = doc! {"$cond": [
        {"$eq": [{"$type": "$command"}, "object"]},
        {"$arrayElemAt": [{"$map": {"input": {"$objectToArray": "$command"}, "as": "f", "in": "$$f.k"}}, 0]},
        Bson::Null,
    ]};
    let hidden_by_app = doc! {"$cond": [
        {"$eq": [app, {"$literal": app_name}]},
        {"$or": [{"$ne": ["$active", true]}, {"$in": [first_command_field, ["hello", "isMaster", "ismaster"]]}]},
        false,
    ]};
    let tags: Vec<Bson> = own_tags.iter().map(|t| Bson::String((*t).to_owned())).collect();
    let carrier = |base: &str| -> Vec<Bson> {
        ["comment", "$comment"]
            .iter()
            .map(|field| {
                let mut d = Document::new();
                d.insert(format!("{base}.{field}"), doc! {"$in": tags.clone()});
                Bson::Document(d)
            })
            .collect()
    };
    let mut fixed = carrier("command");
    fixed.extend(carrier("query"));
    // The plain match on the two app-name fields first: it holds whenever the $expr does, and
    // spares evaluating it for every other application's entries.
    fixed.push(Bson::Document(doc! {"$and": [
        {"$or": [{"appName": app_name}, {"clientMetadata.application.name": app_name}]},
        {"$expr": hidden_by_app},
    ]}));
    first.push(Bson::Document(doc! {"$nor": fixed}));
    if !tags.is_empty() {
        first.push(Bson::Document(doc! {"$nor": carrier("cursor.originatingCommand")}));
    }

    // 2. The driver's per-entry values.
    let integral_double_opid = doc! {"$cond": [
        {"$eq": [{"$type": "$opid"}, "double"]},
        {"$and": [{"$eq": ["$opid", {"$trunc": "$opid"}]}, {"$lt": [{"$abs": "$opid"}, 9.0e15]}]},
        false,
    ]};
    let opid_usable = doc! {"$or": [
        {"$in": [{"$type": "$opid"}, ["int", "long", "string"]]},
        integral_double_opid,
    ]};
    let idle_session = doc! {"$and": [
        {"$eq": ["$type", "idleSession"]},
        {"$eq": [{"$type": "$lsid.id"}, "binData"]},
    ]};
    // mongod's and the node's opids are ints: tested first.
    let int_opid = doc! {"$eq": [{"$type": "$opid"}, "int"]};
    let add = doc! {
        "_dp_us": {"$ifNull": [
            count_or_null("$microsecs_running"),
            {"$ifNull": [{"$multiply": [count_or_null("$secs_running"), 1_000_000_i64]}, 0_i64]},
        ]},
        "_dp_id": {"$switch": {
            "branches": [
                {"case": int_opid.clone(), "then": "$opid"},
                {"case": opid_usable.clone(), "then": "$opid"},
                {"case": idle_session.clone(), "then": "lsid:"},
            ],
            "default": "$desc",
        }},
        "_dp_src": {"$switch": {
            "branches": [
                {"case": int_opid, "then": 0},
                {"case": opid_usable, "then": 0},
                {"case": idle_session, "then": 1},
            ],
            "default": 2,
        }},
    };

    // 3. Entries that name nothing, and the running time.
    let mut keep = doc! {
        "$or": [{"_dp_src": {"$lt": 2}}, {"desc": {"$regex": "^conn[0-9]{1,12}\\z"}}],
    };
    if let Some(min) = req.min_cost_time_us {
        keep.insert("_dp_us", doc! {"$gt": clamp_i64(min)});
    }

    // 4. Count and page.
    let mut page = vec![Bson::Document(doc! {"$sort": {"_dp_us": -1, "_dp_id": 1, "lsid.id": 1}})];
    if req.offset > 0 {
        page.push(Bson::Document(doc! {"$skip": clamp_i64(req.offset)}));
    }
    if req.limit > 0 {
        page.push(Bson::Document(doc! {"$limit": clamp_i64(req.limit)}));
    } else {
        // $limit must be positive: one entry, then skip it.
        page.push(Bson::Document(doc! {"$limit": 1}));
        page.push(Bson::Document(doc! {"$skip": 1}));
    }
    page.push(Bson::Document(doc! {"$project": {"_dp_us": 0, "_dp_id": 0, "_dp_src": 0}}));

    let mut pipeline = vec![current_op_stage, doc! {"$match": {"$and": first}}];
    pipeline.push(doc! {"$addFields": add});
    pipeline.push(doc! {"$match": keep});
    pipeline.push(doc! {"$facet": {TOTAL: [{"$count": "n"}], PAGE: page}});
    Ok(pipeline)
}

/// Reads the pipeline's one reply document: (total, page entries). `None` if it is not shaped as
/// the pipeline shapes it.
pub fn parse_page(reply: &Document) -> Option<(u64, Vec<Document>)> {
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
