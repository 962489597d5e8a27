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
            cursor: Cursor::new(plan),
            pending: VecDeque::new(),
            carry: None,
            ready: None,
            skip_left: q.skip,
            limit_left: (q.limit > 0).then_some(q.limit),
            plan_summary,
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

    /// The next batch of `s`: at most `max_docs` documents (0: no count limit) and, past the first
    /// document, at most `max_bytes` of BSON.
    pub fn find_next(
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
            s.pending.retain_mut(|(id, d)| match g.docs.get(id) {
                Some(rec) => {
                    *d = Arc::clone(&rec.doc);
                    true
                }
                None => false,
            });
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        while room(&out, bytes, s.limit_left) {
            let d = match s.carry.take() {
                Some(d) => d,
                None => {
                    let Some((_, d)) = s.pending.pop_front() else {
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
