//! Data operations of the [`Engine`]: find, count, distinct, aggregate, insert, update, delete
//! and findAndModify, over plans from [`crate::plan`].
//!
//! Reads take the collection's read lock one chunk (128 candidates) at a time, match the filter
//! outside the lock, and call `intr.check()` / `intr.yielded()` between chunks. Writes take the
//! write lock per chunk, mutate, append the chunk's journal records, and undo the chunk if the
//! append fails, so memory never runs ahead of the journal.

use std::collections::BTreeSet;

use bson::oid::ObjectId;
use docplane_query::{
    DocSource, Filter, NeverInterrupt, Pipeline, PipelineEnv, Projection, SortSpec, Update, collation,
};

use super::*;
use crate::collection::Undo;
use crate::plan::{self, Cursor, Hit, Plan};

#[path = "stream.rs"]
mod stream;
pub use stream::{AggStream, FindStream};

/// Puts `_id` first, adding an ObjectId when missing; rejects unusable `_id` types.
fn normalize_id(mut doc: Document) -> Result<(KeyVal, Document)> {
    let id = match doc.remove("_id") {
        Some(id) => id,
        None => Bson::ObjectId(ObjectId::new()),
    };
    match &id {
        Bson::Array(_) | Bson::RegularExpression(_) | Bson::Undefined => {
            let t = match id {
                Bson::Array(_) => "array",
                Bson::RegularExpression(_) => "regex",
                _ => "undefined",
            };
            return Err(CommandError::new(
                53,
                "InvalidIdField",
                format!("The '_id' value cannot be of type {t}"),
            ));
        }
        _ => {}
    }
    let mut out = Document::new();
    out.insert("_id", id.clone());
    out.extend(doc);
    Ok((KeyVal(id), out))
}

/// mongod's `validIdField` for an `_id` that is an object (`storageValidEmbedded`): no
/// `$`-prefixed field at any depth, DBRefs (`$ref`, `$id`, `$db`) excepted; 52
/// DollarPrefixedFieldName otherwise, on insert, update, replacement and upsert alike.
fn check_id_storable(id: &Document) -> Result<()> {
    let mut keys = id.keys();
    let is_dbref = keys.next().is_some_and(|k| k == "$ref") && keys.next().is_some_and(|k| k == "$id");
    for (k, v) in id {
        let dbref_field = is_dbref && matches!(k.as_str(), "$ref" | "$id" | "$db");
        if k.starts_with('$') && !dbref_field {
            return Err(CommandError::new(
                52,
                "DollarPrefixedFieldName",
                format!("_id fields may not contain '$'-prefixed fields: {k} is not valid for storage."),
            ));
        }
        let nested: Vec<&Document> = match v {
            Bson::Document(d) => vec![d],
            Bson::Array(a) => a.iter().filter_map(Bson::as_document).collect(),
            _ => Vec::new(),
        };
        for d in nested {
            check_id_storable(d)?;
        }
    }
    Ok(())
}

/// A document framed for the journal, with its BSON size.
struct Framed {
    bytes: Vec<u8>,
    size: u64,
}

/// Frames `doc` as an insert or replace record after checking it is storable: no deeper than
/// [`crate::MAX_DOCUMENT_DEPTH`] (15 Overflow) and no larger than 16 MiB. Every write path
/// (insert, update, replacement, upsert, findAndModify) goes through here.
fn frame_doc(db: &str, coll: &str, doc: &Document, replace: bool) -> Result<Framed> {
    crate::depth::check_storable_depth(doc, !replace)?;
    if let Some(Bson::Document(id)) = doc.get("_id") {
        check_id_storable(id)?;
    }
    let mut bytes = Vec::new();
    let rec =
        if replace { RecordRef::Replace { db, coll, doc } } else { RecordRef::Insert { db, coll, doc } };
    journal::frame_record(&mut bytes, rec)?;
    let overhead = 8 + 1 + 4 + db.len() + 4 + coll.len();
    let size = (bytes.len() - overhead) as u64;
    if size > MAX_DOC {
        return Err(if replace {
            CommandError::location(17419, format!("Resulting document after update is larger than {MAX_DOC}"))
        } else {
            CommandError::new(
                10334,
                "BSONObjectTooLarge",
                format!("object to insert too large. size in bytes: {size}, max size: {MAX_DOC}"),
            )
        });
    }
    Ok(Framed { bytes, size })
}

/// Sorts hits by `spec`, ties broken by `_id` so the order is total and deterministic; keeps
/// only the first `keep` when given. The sort polls for interruption every few thousand
/// comparisons ([`docplane_query::sort::top_positions`]); what it keeps is held to mongod's
/// blocking-sort memory limit (292).
fn sort_hits(hits: &mut Vec<Hit>, spec: &SortSpec, keep: Option<usize>, intr: &dyn Interrupt) -> Result<()> {
    intr.check()?;
    let k = keep.filter(|k| *k > 0).unwrap_or(usize::MAX);
    let order = docplane_query::sort::top_positions(hits.len(), k, |a, b| {
        let (a, b) = (&hits[*a], &hits[*b]);
        spec.compare(&a.1, &b.1).then_with(|| a.0.cmp(&b.0))
    });
    intr.check()?;
    docplane_query::interrupt::poll()?;
    let mut slots: Vec<Option<Hit>> = hits.drain(..).map(Some).collect();
    hits.extend(order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)));
    docplane_query::mem::check_sort(hits.iter().map(|h| &*h.1))
}

/// Removes a capped collection's oldest documents while it is over its size or count (mongod's
/// `cappedDeleteAsNeeded` after an insert, never the document just inserted), journaling each
/// removal as a delete into `buf` so that recovery replays the same state.
fn evict_capped(
    c: &Collection,
    g: &mut CollData,
    cap: crate::collection::Cap,
    undo: &mut Vec<Undo>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    while g.docs.len() > 1 && (g.data_bytes > cap.size || cap.max.is_some_and(|m| g.docs.len() as u64 > m)) {
        let Some(id) = g.oldest() else { break };
        journal::frame_record(buf, RecordRef::Delete { db: &c.db, coll: &c.name, id: &id.0 })?;
        if let Some(u) = g.remove(&id) {
            undo.push(u);
        }
    }
    Ok(())
}

fn project(doc: &Document, p: Option<&Projection>) -> Result<Document> {
    match p {
        Some(p) => p.apply(doc),
        None => Ok(doc.clone()),
    }
}

/// The pipeline environment: `$lookup` reads collections of the same database.
struct Env<'a> {
    engine: &'a Engine,
    db: &'a str,
    intr: &'a dyn Interrupt,
}

impl Interrupt for Env<'_> {
    fn check(&self) -> Result<()> {
        self.intr.check()
    }
    fn yielded(&self) {
        self.intr.yielded()
    }
}

impl PipelineEnv for Env<'_> {
    fn lookup_collection(&self, coll: &str) -> Result<Vec<Document>> {
        let Some(c) = self.engine.get_coll(self.db, coll) else { return Ok(Vec::new()) };
        let mut cursor =
            Cursor::reading(plan::choose(Some(&c.data.read()), &plan::Predicates::default(), None, None)?);
        let hits = self.engine.scan(&c, &mut cursor, None, None, self.intr)?;
        Ok(hits.into_iter().map(|(_, d)| (*d).clone()).collect())
    }
}

/// The read part of a query.
#[derive(Clone, Copy)]
struct HitQuery<'a> {
    filter: &'a Filter,
    sort: Option<&'a SortSpec>,
    skip: u64,
    limit: u64,
    hint: Option<&'a Bson>,
}

impl<'a> HitQuery<'a> {
    fn filter(filter: &'a Filter) -> HitQuery<'a> {
        HitQuery { filter, sort: None, skip: 0, limit: 0, hint: None }
    }
}

/// Result of one update statement's execution against existing documents.
#[derive(Default)]
struct StmtCounts {
    matched: u64,
    modified: u64,
}

impl Engine {
    /// Reads candidates of `cursor` chunk by chunk, releasing the lock between chunks, keeping
    /// those matching `filter`; stops after `stop_after` matches.
    fn scan(
        &self,
        c: &Collection,
        cursor: &mut Cursor,
        filter: Option<&Filter>,
        stop_after: Option<usize>,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Hit>> {
        let mut out = Vec::new();
        let mut batch = Vec::with_capacity(CHUNK);
        if stop_after == Some(0) {
            return Ok(out);
        }
        loop {
            intr.check()?;
            {
                // Without a filter every candidate is a hit: read no more than still needed.
                let budget = match (stop_after, filter) {
                    (Some(n), None) => n.saturating_sub(out.len()).clamp(1, CHUNK),
                    _ => CHUNK,
                };
                let g = c.data.read();
                cursor.next_chunk(&g, budget, &mut batch)?;
            }
            for hit in batch.drain(..) {
                docplane_query::interrupt::poll()?;
                if filter.is_none_or(|f| f.matches(&hit.1)) {
                    out.push(hit);
                    if stop_after.is_some_and(|n| out.len() >= n) {
                        return Ok(out);
                    }
                }
            }
            if cursor.is_done() {
                return Ok(out);
            }
            intr.yielded();
        }
    }

    fn make_plan(
        &self,
        c: Option<&Collection>,
        filter: &Filter,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
    ) -> Result<Plan> {
        let preds = plan::Predicates::of(filter);
        match c {
            Some(c) => plan::choose(Some(&c.data.read()), &preds, sort, hint),
            None => plan::choose(None, &preds, sort, hint),
        }
    }

    /// The plan summary a query would use: `COLLSCAN`, `IXSCAN { a: 1 }`, `IDHACK`, `EOF`.
    pub fn plan_summary(
        &self,
        db: &str,
        coll: &str,
        filter: &Filter,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
    ) -> String {
        let c = self.get_coll(db, coll);
        match self.make_plan(c.as_deref(), filter, sort, hint) {
            Ok(p) => p.summary,
            Err(_) => "COLLSCAN".into(),
        }
    }

    /// The key pattern of the index this query's plan reads (`{_id: 1}` for an `_id` lookup or
    /// range, or a sort on `_id`; `None` for a collection scan or a missing collection): what find's `returnKey`
    /// returns the keys of.
    pub fn plan_key_pattern(
        &self,
        db: &str,
        coll: &str,
        filter: &Filter,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
    ) -> Result<Option<Document>> {
        let c = self.get_coll(db, coll);
        let p = self.make_plan(c.as_deref(), filter, sort, hint)?;
        Ok(match p.access {
            // A scan in `_id` order for a sort on `_id` is mongod's IXSCAN of the `_id` index.
            plan::Access::CollScan if p.sorted && sort.is_some() => Some(bson::doc! {"_id": 1}),
            plan::Access::Eof | plan::Access::CollScan => None,
            plan::Access::IdPoints(_) | plan::Access::IdRange(_) => Some(bson::doc! {"_id": 1}),
            plan::Access::Index { index_id, .. } => c.and_then(|c| {
                c.data.read().indexes.iter().find(|i| i.id == index_id).map(|i| i.spec.key.clone())
            }),
        })
    }

    /// The record ids (mongod's `$recordId`) of the documents with these `_id`s: their insertion
    /// sequence number ([`crate::collection::Rec::seq`]) plus one. They are this process's: recovery
    /// numbers the documents again in the order it reads them (a capped collection in insertion
    /// order, any other in `_id` order), so they need not survive a restart.
    pub fn record_ids(&self, db: &str, coll: &str, ids: &[Bson]) -> Vec<Option<i64>> {
        let Some(c) = self.get_coll(db, coll) else { return vec![None; ids.len()] };
        let g = c.data.read();
        ids.iter()
            .map(|id| g.docs.get(&KeyVal(id.clone())).and_then(|r| i64::try_from(r.seq).ok()).map(|s| s + 1))
            .collect()
    }

    /// [`Engine::plan_summary`], failing as the query would (a hint naming no index: 2
    /// BadValue), for explain.
    pub fn plan_summary_checked(
        &self,
        db: &str,
        coll: &str,
        filter: &Filter,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
    ) -> Result<String> {
        let c = self.get_coll(db, coll);
        Ok(self.make_plan(c.as_deref(), filter, sort, hint)?.summary)
    }

    /// Finds matching hits in sort order with skip/limit applied (no projection).
    fn find_hits(
        &self,
        c: Option<&Arc<Collection>>,
        q: HitQuery<'_>,
        intr: &dyn Interrupt,
    ) -> Result<(Vec<Hit>, Cursor)> {
        let HitQuery { filter, sort, skip, limit, hint } = q;
        let plan = self.make_plan(c.map(|c| &**c), filter, sort, hint)?;
        let need_sort = sort.is_some_and(|s| !s.fields().is_empty()) && !plan.sorted;
        let mut cursor = Cursor::reading(plan);
        let Some(c) = c else { return Ok((Vec::new(), cursor)) };
        let stop_after =
            if need_sort || limit == 0 { None } else { Some(skip.saturating_add(limit) as usize) };
        let f = if filter.is_empty() { None } else { Some(filter) };
        let mut hits = self.scan(c, &mut cursor, f, stop_after, intr)?;
        if need_sort && let Some(s) = sort {
            let keep = if limit > 0 { Some(skip.saturating_add(limit) as usize) } else { None };
            sort_hits(&mut hits, s, keep, intr)?;
        }
        let skip = (skip as usize).min(hits.len());
        hits.drain(..skip);
        if limit > 0 {
            hits.truncate(limit as usize);
        }
        Ok((hits, cursor))
    }

    /// find: filter, sort, skip, limit, projection, hint.
    pub fn find(&self, db: &str, coll: &str, q: &FindQuery, intr: &dyn Interrupt) -> Result<QueryOutput> {
        let c = self.get_coll(db, coll);
        let (hits, cursor) = self.find_hits(
            c.as_ref(),
            HitQuery {
                filter: &q.filter,
                sort: q.sort.as_ref(),
                skip: q.skip,
                limit: q.limit,
                hint: q.hint.as_ref(),
            },
            intr,
        )?;
        let mut docs = Vec::with_capacity(hits.len());
        for (i, (_, d)) in hits.iter().enumerate() {
            if i % CHUNK == 0 {
                intr.check()?;
            }
            docs.push(project(d, q.projection.as_ref())?);
        }
        Ok(QueryOutput {
            docs,
            plan_summary: cursor.plan().summary.clone(),
            docs_examined: cursor.docs_examined,
            keys_examined: cursor.keys_examined,
        })
    }

    /// count with skip and limit (0 = none).
    pub fn count(
        &self,
        db: &str,
        coll: &str,
        filter: &Filter,
        skip: u64,
        limit: u64,
        intr: &dyn Interrupt,
    ) -> Result<u64> {
        self.count_hinted(db, coll, filter, skip, limit, None, intr)
    }

    /// [`Engine::count`] with the command's `hint` (the index the scan uses; 2 BadValue when
    /// it names none, even where no scan is needed).
    #[expect(clippy::too_many_arguments, reason = "count's own arguments")]
    pub fn count_hinted(
        &self,
        db: &str,
        coll: &str,
        filter: &Filter,
        skip: u64,
        limit: u64,
        hint: Option<&Bson>,
        intr: &dyn Interrupt,
    ) -> Result<u64> {
        let Some(c) = self.get_coll(db, coll) else { return Ok(0) };
        let n = if filter.is_empty() && hint.is_none() {
            c.data.read().docs.len() as u64
        } else {
            let q = HitQuery { hint, ..HitQuery::filter(filter) };
            let (hits, _) = self.find_hits(Some(&c), q, intr)?;
            hits.len() as u64
        };
        let n = n.saturating_sub(skip);
        Ok(if limit > 0 { n.min(limit) } else { n })
    }

    /// distinct values of `key` among matching documents (values equal under the collation
    /// are one, the first found) (arrays contribute their elements),
    /// in BSON order.
    pub fn distinct(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        filter: &Filter,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Bson>> {
        self.distinct_hinted(db, coll, key, filter, None, intr)
    }

    /// [`Engine::distinct`] with the command's `hint`.
    pub fn distinct_hinted(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        filter: &Filter,
        hint: Option<&Bson>,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Bson>> {
        let Some(c) = self.get_coll(db, coll) else { return Ok(Vec::new()) };
        let (hits, _) = self.find_hits(Some(&c), HitQuery { hint, ..HitQuery::filter(filter) }, intr)?;
        let mut set = BTreeSet::new();
        for (i, (_, d)) in hits.iter().enumerate() {
            if i % CHUNK == 0 {
                intr.check()?;
            }
            let (vals, _) = keys::path_values(d, key);
            for v in vals {
                if !matches!(v, Bson::Undefined) {
                    set.insert(Distinct(v));
                }
            }
        }
        Ok(set.into_iter().map(|k| k.0).collect())
    }

    /// Runs `pipeline` over the collection; a leading `$match` may use an index. `$lookup`
    /// reads collections of `db`.
    pub fn aggregate(
        &self,
        db: &str,
        coll: &str,
        pipeline: &Pipeline,
        intr: &dyn Interrupt,
    ) -> Result<QueryOutput> {
        self.aggregate_hinted(db, coll, pipeline, None, intr)
    }

    /// [`Engine::aggregate`] with the command's `hint` (the index the collection read uses).
    pub fn aggregate_hinted(
        &self,
        db: &str,
        coll: &str,
        pipeline: &Pipeline,
        hint: Option<&Bson>,
        intr: &dyn Interrupt,
    ) -> Result<QueryOutput> {
        let c = self.get_coll(db, coll);
        let all = Filter::match_all();
        let filter = pipeline.leading_match().unwrap_or(&all);
        let (hits, cursor) =
            self.find_hits(c.as_ref(), HitQuery { hint, ..HitQuery::filter(filter) }, intr)?;
        // The stored documents themselves: the pipeline copies only what its first stage that
        // does not just select, order, count or group lets through.
        let docs: Vec<&Document> = hits.iter().map(|(_, d)| d.as_ref()).collect();
        let env = Env { engine: self, db, intr };
        let docs = pipeline.run_refs(docs, &env)?;
        Ok(QueryOutput {
            docs,
            plan_summary: cursor.plan().summary.clone(),
            docs_examined: cursor.docs_examined,
            keys_examined: cursor.keys_examined,
        })
    }

    /// Runs a pipeline over given documents (for `$currentOp` and other collection-less
    /// aggregations); `$lookup` reads collections of `db`.
    pub fn run_pipeline(
        &self,
        db: &str,
        input: Vec<Document>,
        pipeline: &Pipeline,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Document>> {
        let env = Env { engine: self, db, intr };
        pipeline.run(input, &env)
    }

    /// Runs a pipeline over the documents of `src`, building them whole only as far as the
    /// pipeline needs ([`Pipeline::run_source`]; `$currentOp`).
    pub fn run_pipeline_source(
        &self,
        db: &str,
        src: &dyn DocSource,
        pipeline: &Pipeline,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Document>> {
        let env = Env { engine: self, db, intr };
        pipeline.run_source(src, &env)
    }

    /// Inserts documents (adding `_id` where missing), creating the collection implicitly.
    pub fn insert(
        &self,
        db: &str,
        coll: &str,
        docs: Vec<Document>,
        ordered: bool,
        intr: &dyn Interrupt,
    ) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        let mut iter = docs.into_iter().enumerate().peekable();
        let mut stop = false;
        while iter.peek().is_some() && !stop {
            if let Err(e) = intr.check() {
                out.interrupted = Some(e);
                break;
            }
            // Validate and encode outside the lock.
            let mut ready = Vec::with_capacity(CHUNK);
            for (i, d) in iter.by_ref().take(CHUNK) {
                let prepared =
                    normalize_id(d).and_then(|(id, d)| frame_doc(db, coll, &d, false).map(|f| (id, d, f)));
                match prepared {
                    Ok((id, d, f)) => ready.push((i, id, d, f)),
                    Err(e) => {
                        out.write_errors.push(WriteError::new(i, e));
                        if ordered {
                            stop = true;
                            break;
                        }
                    }
                }
            }
            let first_index = ready.first().map(|r| r.0);
            let res = self.with_write(db, coll, true, |c, g| {
                let ns = c.ns();
                let mut undo = Vec::with_capacity(ready.len());
                let mut buf = Vec::new();
                let mut applied = Vec::with_capacity(ready.len());
                let mut errors = Vec::new();
                let mut halted = false;
                for (i, id, d, f) in ready {
                    if let Some(cap) = c.cap
                        && f.size > cap.size
                    {
                        // mongod's WiredTiger record store refuses it before anything is evicted.
                        errors.push(WriteError::new(
                            i,
                            CommandError::bad_value("object to insert exceeds cappedMaxSize"),
                        ));
                        if ordered {
                            halted = true;
                            break;
                        }
                        continue;
                    }
                    match c.check_valid(&d, None).and_then(|()| g.prepare(&ns, &d, &id, true)) {
                        Ok(p) => {
                            undo.push(g.insert(id, Arc::new(d), f.size, p));
                            buf.extend_from_slice(&f.bytes);
                            applied.push(i);
                            if let Some(cap) = c.cap
                                && let Err(e) = evict_capped(c, g, cap, &mut undo, &mut buf)
                            {
                                g.undo(undo);
                                errors.extend(applied.iter().map(|i| WriteError::new(*i, e.clone())));
                                return (0, errors, true);
                            }
                        }
                        Err(e) => {
                            errors.push(WriteError::new(i, e));
                            if ordered {
                                halted = true;
                                break;
                            }
                        }
                    }
                }
                if let Err(e) = self.append(&buf) {
                    g.undo(undo);
                    errors.extend(applied.iter().map(|i| WriteError::new(*i, e.clone())));
                    return (0, errors, true);
                }
                (applied.len() as u64, errors, halted)
            });
            match res {
                Ok(Some((n, errors, halted))) => {
                    if n > 0 {
                        self.notify_capped_insert(db, coll);
                    }
                    out.n += n;
                    out.write_errors.extend(errors);
                    stop |= halted;
                }
                Ok(None) => {}
                Err(e) => {
                    // The collection could not be created: the batch stops at its first document.
                    if let Some(i) = first_index {
                        out.write_errors.push(WriteError::new(i, e));
                    }
                    stop = true;
                }
            }
        }
        out.write_errors.sort_by_key(|e| e.index);
        out
    }

    /// Inserts one document, returning its `_id`.
    fn insert_one(&self, db: &str, coll: &str, doc: Document) -> Result<Bson> {
        let (id, doc) = normalize_id(doc)?;
        let out = self.insert(db, coll, vec![doc], true, &NeverInterrupt);
        match out.write_errors.into_iter().next() {
            Some(e) => {
                Err(CommandError { code: e.code, code_name: e.code_name, message: e.errmsg, info: e.info })
            }
            None => Ok(id.0),
        }
    }

    /// Applies `update` to the matches of `filter` (one or all), chunk by chunk under the write
    /// lock. `after` receives each updated document.
    fn update_matches(
        &self,
        c: &Arc<Collection>,
        filter: &Filter,
        update: &Update,
        multi: bool,
        hint: Option<&Bson>,
        intr: &dyn Interrupt,
    ) -> Result<StmtCounts> {
        let plan = self.make_plan(Some(c), filter, None, hint)?;
        let mut cursor = Cursor::new(plan);
        let mut counts = StmtCounts::default();
        let ns = c.ns();
        let mut hits = Vec::with_capacity(CHUNK);
        loop {
            intr.check()?;
            let mut g = c.data.write();
            cursor.next_chunk(&g, CHUNK, &mut hits)?;
            let mut buf = Vec::new();
            let mut undo: Vec<Undo> = Vec::new();
            let mut chunk = StmtCounts::default();
            let mut result: Result<bool> = Ok(false);
            for (id, doc) in hits.drain(..) {
                if !filter.matches(&doc) {
                    continue;
                }
                chunk.matched += 1;
                let step = (|| -> Result<()> {
                    let mut new = (*doc).clone();
                    if !update.apply_with_query(&mut new, false, Some(filter))? {
                        return Ok(());
                    }
                    if new.get("_id").is_none_or(|v| KeyVal(v.clone()) != id) {
                        return Err(CommandError::immutable_field(
                            "Performing an update on the path '_id' would modify the immutable field '_id'",
                        ));
                    }
                    let (_, new) = normalize_id(new)?;
                    c.check_valid(&new, Some(&doc))?;
                    let f = frame_doc(&c.db, &c.name, &new, true)?;
                    let p = g.prepare(&ns, &new, &id, false)?;
                    if let Some(u) = g.replace(id.clone(), Arc::new(new), f.size, p) {
                        undo.push(u);
                        buf.extend_from_slice(&f.bytes);
                        chunk.modified += 1;
                    }
                    Ok(())
                })();
                if let Err(e) = step {
                    chunk.matched -= 1;
                    result = Err(e);
                    break;
                }
                if !multi {
                    result = Ok(true);
                    break;
                }
            }
            if let Err(e) = self.append(&buf) {
                g.undo(undo);
                return Err(e);
            }
            counts.matched += chunk.matched;
            counts.modified += chunk.modified;
            let finished = result?;
            drop(g);
            if finished || cursor.is_done() {
                return Ok(counts);
            }
            intr.yielded();
        }
    }

    /// Inserts the upsert document for `filter` + `update`; returns its `_id` and the document.
    fn upsert_insert(
        &self,
        db: &str,
        coll: &str,
        filter: &Filter,
        update: &Update,
    ) -> Result<(Bson, Document)> {
        let mut doc = filter.equality_seed();
        update.apply_with_query(&mut doc, true, Some(filter))?;
        let (_, doc) = normalize_id(doc)?;
        let id = self.insert_one(db, coll, doc.clone())?;
        Ok((id, doc))
    }

    /// Update statements (operators or replacement; upsert; multi).
    pub fn update(
        &self,
        db: &str,
        coll: &str,
        stmts: &[UpdateStatement],
        ordered: bool,
        intr: &dyn Interrupt,
    ) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        for (i, st) in stmts.iter().enumerate() {
            let coll_now = st.collation.resolve(self.default_collation(db, coll).as_ref());
            let res = collation::scoped(coll_now, || -> Result<()> {
                let counts = match self.get_coll(db, coll) {
                    Some(c) => {
                        self.update_matches(&c, &st.filter, &st.update, st.multi, st.hint.as_ref(), intr)?
                    }
                    None => {
                        validate_names(db, coll)?;
                        StmtCounts::default()
                    }
                };
                out.n += counts.matched;
                out.n_modified += counts.modified;
                if counts.matched == 0 && st.upsert {
                    intr.check()?;
                    let (id, _) = self.upsert_insert(db, coll, &st.filter, &st.update)?;
                    out.n += 1;
                    out.upserted.push((i, id));
                }
                Ok(())
            });
            if let Err(e) = res {
                if e.is_interruption() {
                    out.interrupted = Some(e);
                    break;
                }
                out.write_errors.push(WriteError::new(i, e));
                if ordered {
                    break;
                }
            }
        }
        out
    }

    /// Deletes matches of `filter` (one or all), chunk by chunk; returns the count.
    fn delete_matches(
        &self,
        c: &Arc<Collection>,
        filter: &Filter,
        limit_one: bool,
        hint: Option<&Bson>,
        intr: &dyn Interrupt,
    ) -> Result<u64> {
        let plan = self.make_plan(Some(c), filter, None, hint)?;
        let mut cursor = Cursor::new(plan);
        let mut n = 0;
        let mut hits = Vec::with_capacity(CHUNK);
        let journaled = self.inner.journal.is_some();
        loop {
            intr.check()?;
            let mut g = c.data.write();
            cursor.next_chunk(&g, CHUNK, &mut hits)?;
            let mut buf = Vec::new();
            let mut undo = Vec::new();
            let mut finished = false;
            for (id, doc) in hits.drain(..) {
                if !filter.matches(&doc) {
                    continue;
                }
                if journaled {
                    journal::frame_record(
                        &mut buf,
                        RecordRef::Delete { db: &c.db, coll: &c.name, id: &id.0 },
                    )?;
                }
                if let Some(u) = g.remove(&id) {
                    undo.push(u);
                }
                if limit_one {
                    finished = true;
                    break;
                }
            }
            if let Err(e) = self.append(&buf) {
                g.undo(undo);
                return Err(e);
            }
            n += undo.len() as u64;
            drop(g);
            if finished || cursor.is_done() {
                return Ok(n);
            }
            intr.yielded();
        }
    }

    /// Delete statements (`limit_one` or all matches).
    pub fn delete(
        &self,
        db: &str,
        coll: &str,
        stmts: &[DeleteStatement],
        ordered: bool,
        intr: &dyn Interrupt,
    ) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        let Some(c) = self.get_coll(db, coll) else { return out };
        for (i, st) in stmts.iter().enumerate() {
            let coll_now = st.collation.resolve(c.collation.as_ref());
            let res = collation::scoped(coll_now, || {
                self.delete_matches(&c, &st.filter, st.limit_one, st.hint.as_ref(), intr)
            });
            match res {
                Ok(n) => out.n += n,
                Err(e) if e.is_interruption() => {
                    out.interrupted = Some(e);
                    break;
                }
                Err(e) => {
                    out.write_errors.push(WriteError::new(i, e));
                    if ordered {
                        break;
                    }
                }
            }
        }
        out
    }

    /// findAndModify: finds the first match (in `sort` order), then removes or updates it
    /// atomically; upserts when asked.
    pub fn find_and_modify(
        &self,
        db: &str,
        coll: &str,
        req: &FindAndModify,
        intr: &dyn Interrupt,
    ) -> Result<FindAndModifyOutcome> {
        let parse_err = |m: &str| Err(CommandError::failed_to_parse(m));
        match (req.remove, req.update.is_some()) {
            (false, false) => return parse_err("Either an update or remove=true must be specified"),
            (true, true) => return parse_err("Cannot specify both an update and remove=true"),
            (true, false) if req.upsert => {
                return parse_err("Cannot specify both upsert=true and remove=true");
            }
            (true, false) if req.new => {
                return parse_err(
                    "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document",
                );
            }
            _ => {}
        }
        let fields = req.fields.as_ref();
        loop {
            let c = self.get_coll(db, coll);
            let (hits, _) = self.find_hits(
                c.as_ref(),
                HitQuery {
                    filter: &req.filter,
                    sort: req.sort.as_ref(),
                    skip: 0,
                    limit: 1,
                    hint: req.hint.as_ref(),
                },
                intr,
            )?;
            let (Some(c), Some((id, found))) = (c, hits.into_iter().next()) else {
                let Some(update) = req.update.as_ref().filter(|_| req.upsert) else {
                    return Ok(FindAndModifyOutcome::default());
                };
                let (id, doc) = self.upsert_insert(db, coll, &req.filter, update)?;
                let value = if req.new { Some(project(&doc, fields)?) } else { None };
                return Ok(FindAndModifyOutcome { value, n: 1, updated_existing: false, upserted: Some(id) });
            };
            let ns = c.ns();
            let done = self.with_existing_write(&c, |g| -> Result<Option<FindAndModifyOutcome>> {
                // Optimistic check: the document must be unchanged since the search.
                match g.docs.get(&id) {
                    Some(rec) if Arc::ptr_eq(&rec.doc, &found) => {}
                    _ => return Ok(None),
                }
                if req.remove {
                    let mut buf = Vec::new();
                    if self.inner.journal.is_some() {
                        journal::frame_record(
                            &mut buf,
                            RecordRef::Delete { db: &c.db, coll: &c.name, id: &id.0 },
                        )?;
                    }
                    self.append(&buf)?;
                    g.remove(&id);
                    let value = Some(project(&found, fields)?);
                    return Ok(Some(FindAndModifyOutcome {
                        value,
                        n: 1,
                        updated_existing: false,
                        upserted: None,
                    }));
                }
                let update =
                    req.update.as_ref().ok_or_else(|| CommandError::failed_to_parse("missing update"))?;
                let mut new = (*found).clone();
                if update.apply_with_query(&mut new, false, Some(&req.filter))? {
                    if new.get("_id").is_none_or(|v| KeyVal(v.clone()) != id) {
                        return Err(CommandError::immutable_field(
                            "Performing an update on the path '_id' would modify the immutable field '_id'",
                        ));
                    }
                    let (_, n2) = normalize_id(new)?;
                    new = n2;
                    c.check_valid(&new, Some(&found))?;
                    let f = frame_doc(&c.db, &c.name, &new, true)?;
                    let p = g.prepare(&ns, &new, &id, false)?;
                    self.append(&f.bytes)?;
                    g.replace(id.clone(), Arc::new(new.clone()), f.size, p);
                }
                let value = if req.new { project(&new, fields)? } else { project(&found, fields)? };
                Ok(Some(FindAndModifyOutcome {
                    value: Some(value),
                    n: 1,
                    updated_existing: true,
                    upserted: None,
                }))
            })?;
            if let Some(out) = done {
                return Ok(out);
            }
            intr.check()?;
        }
    }

    fn with_existing_write<R>(
        &self,
        c: &Collection,
        f: impl FnOnce(&mut CollData) -> Result<Option<R>>,
    ) -> Result<Option<R>> {
        let mut g = c.data.write();
        if g.dropped {
            return Ok(None);
        }
        f(&mut g)
    }
}

/// A `distinct` value, ordered by [`docplane_query::cmp_bson`]: under the command's collation,
/// where the `_id` map's and the indexes' [`KeyVal`] are binary.
struct Distinct(Bson);

impl PartialEq for Distinct {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Distinct {}
impl PartialOrd for Distinct {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Distinct {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        docplane_query::cmp_bson(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    fn f(d: Document) -> Filter {
        Filter::parse(&d).unwrap()
    }

    #[test]
    fn normalize_id_puts_id_first() {
        let (id, d) = normalize_id(doc! {"a": 1, "_id": 5}).unwrap();
        assert_eq!(id, KeyVal(Bson::Int32(5)));
        assert_eq!(d.keys().next().unwrap(), "_id");
        let (id, _) = normalize_id(doc! {"a": 1}).unwrap();
        assert!(matches!(id.0, Bson::ObjectId(_)));
        assert_eq!(normalize_id(doc! {"_id": [1]}).unwrap_err().code, 53);
    }

    #[test]
    fn insert_find_and_duplicate_ids() {
        let e = Engine::in_memory();
        let out = e.insert(
            "db",
            "c",
            vec![doc! {"_id": 1}, doc! {"_id": 1}, doc! {"_id": 2}],
            true,
            &NeverInterrupt,
        );
        assert_eq!(out.n, 1);
        assert_eq!(out.write_errors.len(), 1);
        assert_eq!(out.write_errors[0].index, 1);
        assert_eq!(out.write_errors[0].code, 11000);
        assert_eq!(
            out.write_errors[0].errmsg,
            "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1 }"
        );
        let out = e.insert(
            "db",
            "c",
            vec![doc! {"_id": 1}, doc! {"_id": 3}, doc! {"x": 1}],
            false,
            &NeverInterrupt,
        );
        assert_eq!(out.n, 2);
        assert_eq!(out.write_errors.len(), 1);
        let all = e.find("db", "c", &FindQuery::new(Filter::match_all()), &NeverInterrupt).unwrap();
        assert_eq!(all.docs.len(), 3);
        assert_eq!(all.plan_summary, "COLLSCAN");
        assert_eq!(e.count("db", "c", &Filter::match_all(), 1, 1, &NeverInterrupt).unwrap(), 1);
    }

    #[test]
    fn unique_index_violations_are_write_errors() {
        let e = Engine::in_memory();
        e.create_indexes("db", "c", &[doc! {"key": {"u": 1}, "unique": true}], &NeverInterrupt).unwrap();
        let out = e.insert(
            "db",
            "c",
            vec![doc! {"_id": 1, "u": "x"}, doc! {"_id": 2, "u": "x"}],
            false,
            &NeverInterrupt,
        );
        assert_eq!(out.n, 1);
        assert_eq!(
            out.write_errors[0].errmsg,
            "E11000 duplicate key error collection: db.c index: u_1 dup key: { u: \"x\" }"
        );
        // building a unique index over duplicates fails and leaves no index
        // a second document without `u` would clash on null
        let out = e.insert(
            "db",
            "c",
            vec![doc! {"_id": 3, "v": 1}, doc! {"_id": 4, "v": 1}],
            true,
            &NeverInterrupt,
        );
        assert_eq!(
            out.write_errors[0].errmsg,
            "E11000 duplicate key error collection: db.c index: u_1 dup key: { u: null }"
        );
        e.insert("db", "c", vec![doc! {"_id": 4, "v": 1, "u": 4}], true, &NeverInterrupt);
        let err = e
            .create_indexes("db", "c", &[doc! {"key": {"v": 1}, "unique": true}], &NeverInterrupt)
            .unwrap_err();
        assert_eq!(err.code, 11000);
        assert_eq!(e.list_indexes("db", "c").unwrap().len(), 2);
    }

    #[test]
    fn plan_summaries() {
        let e = Engine::in_memory();
        let docs: Vec<Document> = (0..100).map(|i| doc! {"_id": i, "a": i, "b": i % 7}).collect();
        e.insert("db", "c", docs, true, &NeverInterrupt);
        e.create_indexes(
            "db",
            "c",
            &[doc! {"key": {"a": 1}}, doc! {"key": {"a": 1, "b": -1}}],
            &NeverInterrupt,
        )
        .unwrap();
        assert_eq!(e.plan_summary("db", "nope", &f(doc! {}), None, None), "EOF");
        assert_eq!(e.plan_summary("db", "c", &f(doc! {"b": 1}), None, None), "COLLSCAN");
        assert_eq!(e.plan_summary("db", "c", &f(doc! {"_id": 1}), None, None), "IDHACK");
        let q = FindQuery { hint: Some(Bson::String("zz".into())), ..FindQuery::new(f(doc! {})) };
        assert_eq!(e.find("db", "c", &q, &NeverInterrupt).unwrap_err().code, 2);
    }

    #[test]
    fn sort_hits_top_k_matches_full_sort_and_is_interruptible() {
        let hits: Vec<Hit> = (0..5000)
            .map(|i: i32| {
                let d = doc! {"_id": i, "k": (i * 7919) % 97};
                (KeyVal(Bson::Int32(i)), Arc::new(d))
            })
            .collect();
        let spec = SortSpec::parse(&doc! {"k": -1}).unwrap();
        let mut full = hits.clone();
        sort_hits(&mut full, &spec, None, &NeverInterrupt).unwrap();
        let mut top = hits.clone();
        sort_hits(&mut top, &spec, Some(60), &NeverInterrupt).unwrap();
        assert_eq!(top.len(), 60);
        let ids = |v: &[Hit]| v.iter().map(|h| h.1.get_i32("_id").unwrap()).collect::<Vec<_>>();
        assert_eq!(ids(&top), ids(&full[..60]));
        // ties are broken by _id
        assert!(full.windows(2).all(|w| {
            let (a, b) = (w[0].1.get_i32("k").unwrap(), w[1].1.get_i32("k").unwrap());
            a > b || (a == b && w[0].0 < w[1].0)
        }));
        struct Second(std::sync::atomic::AtomicU32);
        impl Interrupt for Second {
            fn check(&self) -> Result<()> {
                if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1 {
                    Err(CommandError::interrupted())
                } else {
                    Ok(())
                }
            }
        }
        let mut v = hits.clone();
        let e = sort_hits(&mut v, &spec, None, &Second(std::sync::atomic::AtomicU32::new(0))).unwrap_err();
        assert_eq!(e.code, 11601);
    }
}
