//! Streaming finds: a [`FindStream`] returns a find's results batch by batch, reading the
//! collection only as far as each batch needs, and resumes from its plan position (the last `_id`
//! or index entry read), not from a snapshot. Each batch sees the collection as it is then, as
//! mongod's cursors do across getMores (no isolation across batches): documents inserted ahead
//! of the position are returned, documents deleted ahead are not, an index scan returns no
//! document twice. A find that needs a blocking sort computes its whole (sorted) result at
//! open, under the sort's memory limit; a dropped collection or index ends the stream with 175
//! QueryPlanKilled.

use std::collections::VecDeque;

use super::*;

/// The state of a find between batches.
pub struct FindStream {
    coll: Option<Arc<Collection>>,
    filter: Filter,
    projection: Option<Projection>,
    cursor: Cursor,
    /// Candidates read but not yet matched (a chunk can hold more than a batch takes; each
    /// is matched only when the batch reaches it).
    pending: VecDeque<Hit>,
    /// A projected document that did not fit the last batch's byte budget.
    carry: Option<Document>,
    /// A blocking sort's result, projected, or the whole result when nothing is left to read.
    ready: Option<VecDeque<Document>>,
    skip_left: u64,
    /// Documents still to return (`None`: no limit).
    limit_left: Option<u64>,
    plan_summary: String,
    /// The `_id` of the last candidate examined: a capped collection's scan dies when it is
    /// deleted before the next batch (136 CappedPositionLost, as mongod's).
    examined: Option<KeyVal>,
    /// A tailable cursor's stream: at the end of the collection it waits for newer documents
    /// instead of ending ([`Engine::find_tail`]).
    tailable: bool,
    /// The collation the find was opened under: each batch (each getMore's thread) compares
    /// under it again.
    collation: Option<std::sync::Arc<docplane_query::Collation>>,
}

impl std::fmt::Debug for FindStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FindStream")
            .field("plan_summary", &self.plan_summary)
            .field("pending", &self.pending.len())
            .field("limit_left", &self.limit_left)
            .finish_non_exhaustive()
    }
}

impl FindStream {
    /// The plan summary (`COLLSCAN`, `IXSCAN { a: 1 }`, ...).
    pub fn plan_summary(&self) -> &str {
        &self.plan_summary
    }

    /// Whether every result has been returned.
    pub fn is_done(&self) -> bool {
        if self.limit_left == Some(0) {
            return true;
        }
        if self.tailable {
            return self.coll.is_none();
        }
        match &self.ready {
            Some(r) => r.is_empty(),
            None => {
                self.coll.is_none()
                    || (self.carry.is_none() && self.pending.is_empty() && self.cursor.is_done())
            }
        }
    }
}

impl Engine {
    /// Opens a streaming find (see [`FindStream`]); reads nothing unless the find needs a
    /// blocking sort, which it computes now.
    pub fn find_stream(
        &self,
        db: &str,
        coll: &str,
        q: FindQuery,
        intr: &dyn Interrupt,
    ) -> Result<FindStream> {
        let c = self.get_coll(db, coll);
        let plan = self.make_plan(c.as_deref(), &q.filter, q.sort.as_ref(), q.hint.as_ref())?;
        let plan_summary = plan.summary.clone();
        let need_sort = q.sort.as_ref().is_some_and(|s| !s.fields().is_empty()) && !plan.sorted;
        let mut s = FindStream {
            coll: c,
            filter: q.filter,
            projection: q.projection,
            cursor: Cursor::reading(plan),
            pending: VecDeque::new(),
            carry: None,
            ready: None,
            skip_left: q.skip,
            limit_left: (q.limit > 0).then_some(q.limit),
            plan_summary,
            examined: None,
            tailable: false,
            collation: docplane_query::collation::current(),
        };
        if need_sort && let Some(c) = s.coll.clone() {
            let query = HitQuery {
                filter: &s.filter,
                sort: q.sort.as_ref(),
                skip: q.skip,
                limit: q.limit,
                hint: q.hint.as_ref(),
            };
            let (hits, cursor) = self.find_hits(Some(&c), query, intr)?;
            let mut docs = VecDeque::with_capacity(hits.len());
            for (i, (_, d)) in hits.iter().enumerate() {
                if i % CHUNK == 0 {
                    intr.check()?;
                }
                docs.push_back(project(d, s.projection.as_ref())?);
            }
            s.cursor = cursor;
            s.ready = Some(docs);
            s.skip_left = 0;
        }
        Ok(s)
    }

    /// Opens a tailable find on a capped collection: a scan in insertion order (no sort, no
    /// index) that, at the end of the collection, stays where it is and returns what was
    /// inserted since at the next [`Engine::find_next`]. A collection that does not exist gives a
    /// stream that is done at once (mongod opens no cursor); an uncapped one fails with mongod's
    /// 2 BadValue.
    pub fn find_tail(&self, db: &str, coll: &str, q: FindQuery) -> Result<FindStream> {
        let c = self.get_coll(db, coll);
        if let Some(c) = &c
            && c.cap.is_none()
        {
            return Err(CommandError::bad_value(format!(
                "error processing query: ns={db}.{coll} tailable cursor requested on non capped collection"
            )));
        }
        let plan = match &c {
            Some(c) => plan::choose(Some(&c.data.read()), &plan::Predicates::default(), None, None)?,
            None => plan::choose(None, &plan::Predicates::default(), None, None)?,
        };
        Ok(FindStream {
            plan_summary: plan.summary.clone(),
            coll: c,
            filter: q.filter,
            projection: q.projection,
            cursor: Cursor::reading(plan),
            pending: VecDeque::new(),
            carry: None,
            ready: None,
            skip_left: q.skip,
            limit_left: (q.limit > 0).then_some(q.limit),
            examined: None,
            tailable: true,
            collation: docplane_query::collation::current(),
        })
    }

    /// Whether the collection a stream reads holds no document (mongod opens no tailable
    /// cursor on an empty capped collection).
    pub fn stream_collection_empty(&self, s: &FindStream) -> bool {
        s.coll.as_ref().is_none_or(|c| c.data.read().docs.is_empty())
    }

    /// The next batch of `s`: at most `max_docs` documents (0: no count limit) and, past the first
    /// document, at most `max_bytes` of BSON.
    pub fn find_next(
        &self,
        s: &mut FindStream,
        max_docs: usize,
        max_bytes: usize,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Document>> {
        docplane_query::collation::scoped(s.collation.clone(), || {
            self.find_batch(s, max_docs, max_bytes, intr)
        })
    }

    /// [`Engine::find_next`] under the stream's collation.
    fn find_batch(
        &self,
        s: &mut FindStream,
        max_docs: usize,
        max_bytes: usize,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let room = |out: &Vec<Document>, bytes: usize, limit_left: Option<u64>| {
            (max_docs == 0 || out.len() < max_docs)
                && (out.is_empty() || bytes < max_bytes)
                && limit_left != Some(0)
        };
        if let Some(ready) = &mut s.ready {
            while room(&out, bytes, s.limit_left) {
                let Some(d) = ready.front() else { break };
                let size = docplane_query::mem::doc_size(d);
                if !out.is_empty() && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                s.limit_left = s.limit_left.map(|l| l - 1);
                out.extend(ready.pop_front());
            }
            return Ok(out);
        }
        let Some(c) = s.coll.clone() else { return Ok(out) };
        if !s.pending.is_empty() {
            // Candidates read ahead by the last batch are taken as they are now: deleted ones
            // dropped, updated ones replaced by their current version.
            let g = c.data.read();
            if g.dropped {
                return Err(CommandError::new(
                    175,
                    "QueryPlanKilled",
                    "query plan killed :: caused by :: collection dropped",
                ));
            }
            if g.natural.is_some()
                && s.cursor.is_collscan()
                && let Some(k) = &s.examined
                && !g.docs.contains_key(k)
            {
                return Err(plan::position_lost(&format!("{}", k.0)));
            }
            s.pending.retain_mut(|(id, d)| match g.docs.get(id) {
                Some(rec) => {
                    *d = Arc::clone(&rec.doc);
                    true
                }
                None => false,
            });
        }
        if s.tailable && s.cursor.is_done() && s.pending.is_empty() && s.carry.is_none() {
            // A tailable scan at its end: read on from where it stopped.
            s.cursor.resume_tail();
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        while room(&out, bytes, s.limit_left) {
            let d = match s.carry.take() {
                Some(d) => d,
                None => {
                    let Some((id, d)) = s.pending.pop_front() else {
                        if s.cursor.is_done() {
                            break;
                        }
                        intr.check()?;
                        {
                            let g = c.data.read();
                            s.cursor.next_chunk(&g, CHUNK, &mut chunk)?;
                        }
                        intr.yielded();
                        s.pending.extend(chunk.drain(..));
                        continue;
                    };
                    s.examined = Some(id);
                    docplane_query::interrupt::poll()?;
                    if !s.filter.is_empty() && !s.filter.matches(&d) {
                        continue;
                    }
                    if s.skip_left > 0 {
                        s.skip_left -= 1;
                        continue;
                    }
                    project(&d, s.projection.as_ref())?
                }
            };
            let size = docplane_query::mem::doc_size(&d);
            if size as u64 > MAX_DOC {
                // A computed projection can outgrow the stored document.
                return Err(CommandError::new(
                    10334,
                    "BSONObjectTooLarge",
                    format!(
                        "BSONObj size: {size} (0x{size:X}) is invalid. Size must be between 0 and {MAX_DOC}(16MB)"
                    ),
                ));
            }
            if !out.is_empty() && bytes + size > max_bytes {
                // First in the next batch.
                s.carry = Some(d);
                break;
            }
            bytes += size;
            s.limit_left = s.limit_left.map(|l| l - 1);
            out.push(d);
        }
        Ok(out)
    }
}

/// A streaming aggregate's state between batches: the find reading the collection (the leading
/// `$match` as its filter, so an index may serve it), the rest of the pipeline with its
/// counters, and output computed beyond the last batch.
pub struct AggStream {
    db: String,
    find: FindStream,
    pipeline: Pipeline,
    state: docplane_query::StreamState,
    out: VecDeque<Document>,
}

impl std::fmt::Debug for AggStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggStream")
            .field("find", &self.find)
            .field("out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl AggStream {
    /// The plan summary of the collection read.
    pub fn plan_summary(&self) -> &str {
        self.find.plan_summary()
    }

    /// Whether every result has been returned.
    pub fn is_done(&self) -> bool {
        self.out.is_empty() && (self.find.is_done() || self.state.exhausted(&self.pipeline))
    }
}

impl Engine {
    /// Opens a streaming aggregate over `db.coll` when every stage of `pipeline` works document
    /// by document ([`Pipeline::is_streaming`]); `None` otherwise (run it whole with
    /// [`Engine::aggregate`]). Reads nothing.
    pub fn aggregate_stream(
        &self,
        db: &str,
        coll: &str,
        pipeline: &Pipeline,
        hint: Option<Bson>,
        intr: &dyn Interrupt,
    ) -> Result<Option<AggStream>> {
        if !pipeline.is_streaming() {
            return Ok(None);
        }
        let (filter, rest) = match pipeline.leading_match() {
            Some(f) => (f.clone(), pipeline.clone().without_first()),
            None => (Filter::match_all(), pipeline.clone()),
        };
        let find = self.find_stream(db, coll, FindQuery { hint, ..FindQuery::new(filter) }, intr)?;
        let state = rest.stream_state();
        Ok(Some(AggStream { db: db.to_owned(), find, pipeline: rest, state, out: VecDeque::new() }))
    }

    /// The next batch of a streaming aggregate: at most `max_docs` documents (0: no count
    /// limit) and, past the first, at most `max_bytes` of BSON. Reads the collection only as
    /// far as the batch needs (in chunks of at most 128 documents), holding no lock between
    /// chunks; a result document over 16 MiB fails with 10334.
    pub fn aggregate_next(
        &self,
        s: &mut AggStream,
        max_docs: usize,
        max_bytes: usize,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Document>> {
        let c = s.find.collation.clone();
        docplane_query::collation::scoped(c, || self.aggregate_batch(s, max_docs, max_bytes, intr))
    }

    /// [`Engine::aggregate_next`] under the stream's collation.
    fn aggregate_batch(
        &self,
        s: &mut AggStream,
        max_docs: usize,
        max_bytes: usize,
        intr: &dyn Interrupt,
    ) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            while max_docs == 0 || out.len() < max_docs {
                let Some(d) = s.out.front() else { break };
                let size = docplane_query::mem::doc_size(d);
                if size as u64 > MAX_DOC {
                    return Err(CommandError::new(
                        10334,
                        "BSONObjectTooLarge",
                        format!(
                            "BSONObj size: {size} (0x{size:X}) is invalid. Size must be between 0 and {MAX_DOC}(16MB)"
                        ),
                    ));
                }
                if !out.is_empty() && bytes + size > max_bytes {
                    return Ok(out);
                }
                bytes += size;
                out.extend(s.out.pop_front());
            }
            if (max_docs != 0 && out.len() >= max_docs) || s.find.is_done() || s.state.exhausted(&s.pipeline)
            {
                return Ok(out);
            }
            let want = if max_docs == 0 { CHUNK } else { (max_docs - out.len()).min(CHUNK) };
            let input = self.find_next(&mut s.find, want, max_bytes, intr)?;
            let env = Env { engine: self, db: &s.db, intr };
            let produced = s.pipeline.stream_chunk(&mut s.state, input, &env)?;
            s.out.extend(produced);
        }
    }
}
