//! Cursors: what remains of a find/aggregate/listCollections/listIndexes, served in batches by
//! getMore. A find's cursor holds a [`FindStream`], a streaming aggregate's an [`AggStream`]
//! (getMore reads the collection from where the last batch stopped, on a blocking thread, as a
//! killable `getmore` op); the others hold their remaining documents. A tailable cursor (a
//! find on a capped collection) stays open at the end of the data; an awaitData one's getMore
//! waits for inserts.
//!
//! Invariants: cursor ids are random positive `i64` (never 0, which means "exhausted"); a cursor is
//! removed when exhausted, killed (killCursors, its session killed or ended), idle past the timeout,
//! or when a getMore on it fails (mongod destroys a cursor whose getMore was interrupted). While a
//! getMore runs the cursor is checked out of the store (pinned): killCursors then kills the
//! getMore's op (which destroys the cursor), and `$currentOp` lists the running getmore instead
//! of an idle cursor.
//! Batches respect both `batchSize` and a 16 MiB byte budget (at least one document per batch).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use docplane_query::CommandError;
use parking_lot::Mutex;
use rand::Rng;

use docplane_engine::{AggStream, FindStream};

use crate::auth::UserName;
use crate::ops::OpState;

/// Default first batch size (mongod: 101).
pub const DEFAULT_FIRST_BATCH: usize = 101;
/// Byte budget of one batch.
pub const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// What a streaming cursor reads from.
#[derive(Debug)]
pub enum Stream {
    Find(FindStream),
    Aggregate(AggStream),
}

impl Stream {
    /// Whether every result has been returned.
    pub fn is_done(&self) -> bool {
        match self {
            Stream::Find(s) => s.is_done(),
            Stream::Aggregate(s) => s.is_done(),
        }
    }

    /// The plan summary of the collection read.
    pub fn plan_summary(&self) -> &str {
        match self {
            Stream::Find(s) => s.plan_summary(),
            Stream::Aggregate(s) => s.plan_summary(),
        }
    }
}

/// An open cursor.
#[derive(Debug)]
pub struct Cursor {
    pub id: i64,
    pub ns: String,
    pub docs: VecDeque<Document>,
    /// A streaming find's or aggregate's position (then `docs` is empty).
    pub stream: Option<Stream>,
    pub tailable: bool,
    pub await_data: bool,
    pub users: Vec<UserName>,
    pub session: Option<Vec<u8>>,
    pub lsid: Option<Document>,
    pub conn_id: i64,
    pub created: bson::DateTime,
    pub last_access: Instant,
    pub last_access_wall: bson::DateTime,
    pub n_returned: u64,
    pub n_batches: u64,
    pub originating_command: Document,
    pub plan_summary: Option<String>,
    pub no_timeout: bool,
    /// What remains of the `maxTimeMS` of the command that opened it (mongod's
    /// `ClientCursor::getLeftoverMaxTimeMicros`): a getMore without its own `maxTimeMS` runs
    /// under it, and leaves back what it did not use. `None`: no limit.
    pub max_time_left: Option<Duration>,
}

/// The largest document a reply may carry (mongod's `BSONObjMaxUserSize`, 16 MiB).
pub const MAX_USER_BSON: usize = 16 * 1024 * 1024;
/// mongod's `BSONObjMaxInternalSize` (16 MiB + 16 KiB): the largest reply document.
pub const MAX_INTERNAL_BSON: usize = MAX_USER_BSON + 16 * 1024;

/// mongod's error for a document over the BSON size limit (10334 BSONObjectTooLarge).
pub fn too_large(size: usize) -> CommandError {
    CommandError::new(
        10334,
        "BSONObjectTooLarge",
        format!(
            "BSONObj size: {size} (0x{size:X}) is invalid. Size must be between 0 and {MAX_INTERNAL_BSON}(16MB)"
        ),
    )
}

/// Takes up to `batch_size` documents (0 = no count limit) from the front within the byte budget.
/// A document over 16 MiB (an aggregation can build one) fails with 10334 BSONObjectTooLarge.
pub fn take_batch(docs: &mut VecDeque<Document>, batch_size: usize) -> Result<Vec<Document>, CommandError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(d) = docs.front() {
        if batch_size != 0 && out.len() >= batch_size {
            break;
        }
        let size = docplane_query::mem::doc_size(d);
        if size > MAX_USER_BSON {
            return Err(too_large(size));
        }
        if !out.is_empty() && bytes + size > BATCH_BYTES {
            break;
        }
        bytes += size;
        if let Some(d) = docs.pop_front() {
            out.push(d);
        }
    }
    Ok(out)
}

/// Parses a `batchSize` (non-negative integer).
pub fn parse_batch_size(v: Option<&Bson>) -> Result<Option<usize>, CommandError> {
    match v {
        None => Ok(None),
        Some(b) => {
            let n = crate::cmd::util::as_i64(b)
                .ok_or_else(|| CommandError::type_mismatch("batchSize must be a number"))?;
            if n < 0 {
                return Err(CommandError::bad_value(format!(
                    "BatchSize value must be non-negative, but received: {n}"
                )));
            }
            Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
        }
    }
}

/// All open cursors.
#[derive(Debug, Default)]
pub struct CursorStore {
    map: Mutex<HashMap<i64, Cursor>>,
    /// Cursors checked out by a running getMore: namespace, owners and the getMore's op state
    /// (killCursors kills it).
    pinned: Mutex<HashMap<i64, Pinned>>,
}

#[derive(Debug)]
struct Pinned {
    ns: String,
    users: Vec<UserName>,
    op: Arc<OpState>,
}

/// Unpins a checked-out cursor when its getMore ends, however it ends.
#[derive(Debug)]
pub struct PinGuard<'a> {
    store: &'a CursorStore,
    id: i64,
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        self.store.pinned.lock().remove(&self.id);
    }
}

/// What a cursor needs at creation.
#[derive(Debug)]
pub struct NewCursor {
    pub ns: String,
    pub users: Vec<UserName>,
    pub session: Option<Vec<u8>>,
    pub lsid: Option<Document>,
    pub conn_id: i64,
    pub originating_command: Document,
    pub plan_summary: Option<String>,
    pub no_timeout: bool,
    pub tailable: bool,
    pub await_data: bool,
}

impl CursorStore {
    /// Serves the first batch; if documents remain, opens a cursor and returns its id (else 0).
    /// A `batch_size` of 0 is mongod's `batchSize: 0`: an empty first batch and an open cursor,
    /// whatever the result holds (the first getMore serves it).
    pub fn first_batch(
        &self,
        mut docs: VecDeque<Document>,
        batch_size: usize,
        new: NewCursor,
    ) -> Result<(Vec<Document>, i64), CommandError> {
        // batchSize 0: an empty first batch and the cursor open, whatever the result's size.
        let batch = if batch_size == 0 { Vec::new() } else { take_batch(&mut docs, batch_size)? };
        if docs.is_empty() && batch_size != 0 {
            return Ok((batch, 0));
        }
        let id = self.open(docs, None, batch.len(), new);
        Ok((batch, id))
    }

    /// Serves a getMore batch; returns (documents, id or 0 when exhausted).
    /// Errors: 43 CursorNotFound; 13 when `users` differ from the cursor's owners (with `check_owner`).
    pub fn get_more(
        &self,
        id: i64,
        ns: &str,
        batch_size: usize,
        users: &[UserName],
        check_owner: bool,
    ) -> Result<(Vec<Document>, i64), CommandError> {
        let mut map = self.map.lock();
        let c = Self::owned(&mut map, id, ns, users, check_owner)?;
        let batch = match take_batch(&mut c.docs, batch_size) {
            Ok(b) => b,
            Err(e) => {
                map.remove(&id);
                return Err(e);
            }
        };
        c.n_returned += batch.len() as u64;
        c.n_batches += 1;
        c.last_access = Instant::now();
        c.last_access_wall = bson::DateTime::now();
        if c.docs.is_empty() {
            map.remove(&id);
            return Ok((batch, 0));
        }
        Ok((batch, id))
    }

    /// Opens a cursor over a streaming find or aggregate whose first batch of `returned`
    /// documents was sent; returns its id.
    pub fn open_stream(&self, stream: Stream, returned: usize, new: NewCursor) -> i64 {
        self.open(VecDeque::new(), Some(stream), returned, new)
    }

    /// Whether cursor `id` is open and awaitData (its getMore's `maxTimeMS` is the wait for new
    /// data, not a deadline).
    pub fn is_await_data(&self, id: i64) -> bool {
        self.map.lock().get(&id).is_some_and(|c| c.await_data)
    }

    /// The `maxTimeMS` budget cursor `id` has left (`None`: none, or no such cursor).
    pub fn max_time_left(&self, id: i64) -> Option<Duration> {
        self.map.lock().get(&id).and_then(|c| c.max_time_left)
    }

    /// Records the `maxTimeMS` budget cursor `id` has left after the command that opened it
    /// or a getMore on it.
    pub fn set_max_time_left(&self, id: i64, left: Option<Duration>) {
        if let Some(c) = self.map.lock().get_mut(&id) {
            c.max_time_left = left;
        }
    }

    /// Registers a cursor (stored documents or a stream) after a first batch of `returned`.
    fn open(&self, docs: VecDeque<Document>, stream: Option<Stream>, returned: usize, new: NewCursor) -> i64 {
        let mut map = self.map.lock();
        let id = Self::fresh_id(&map);
        let now = bson::DateTime::now();
        map.insert(
            id,
            Cursor {
                id,
                ns: new.ns,
                docs,
                stream,
                tailable: new.tailable,
                await_data: new.await_data,
                users: new.users,
                session: new.session,
                lsid: new.lsid,
                conn_id: new.conn_id,
                created: now,
                last_access: Instant::now(),
                last_access_wall: now,
                n_returned: returned as u64,
                n_batches: 1,
                originating_command: new.originating_command,
                plan_summary: new.plan_summary,
                no_timeout: new.no_timeout,
                max_time_left: None,
            },
        );
        id
    }

    fn fresh_id(map: &HashMap<i64, Cursor>) -> i64 {
        let mut rng = rand::thread_rng();
        loop {
            let id = rng.gen_range(1..i64::MAX);
            if !map.contains_key(&id) {
                return id;
            }
        }
    }

    /// Takes a streaming cursor out of the store for a getMore (see [`CursorStore::get_more`] for
    /// the checks and errors); `Ok(None)` when the cursor holds documents, not a stream (then serve
    /// it with [`CursorStore::get_more`]).
    /// The cursor stays pinned to `op` (killCursors kills it) until the guard drops.
    pub fn checkout_stream(
        &self,
        id: i64,
        ns: &str,
        users: &[UserName],
        check_owner: bool,
        op: &Arc<OpState>,
    ) -> Result<Option<(Cursor, PinGuard<'_>)>, CommandError> {
        let mut map = self.map.lock();
        let c = Self::owned(&mut map, id, ns, users, check_owner)?;
        if c.stream.is_none() {
            return Ok(None);
        }
        let Some(c) = map.remove(&id) else { return Ok(None) };
        self.pinned
            .lock()
            .insert(id, Pinned { ns: c.ns.clone(), users: c.users.clone(), op: Arc::clone(op) });
        Ok(Some((c, PinGuard { store: self, id })))
    }

    /// Puts a cursor back after a getMore served `returned` documents from it; false (the cursor
    /// dropped) when killCursors killed it meanwhile.
    pub fn checkin(&self, mut c: Cursor, returned: usize) -> bool {
        c.n_returned += returned as u64;
        c.n_batches += 1;
        c.last_access = Instant::now();
        c.last_access_wall = bson::DateTime::now();
        let mut map = self.map.lock();
        if self.pinned.lock().get(&c.id).is_some_and(|p| p.op.killed()) {
            return false;
        }
        map.insert(c.id, c);
        true
    }

    fn owned<'m>(
        map: &'m mut HashMap<i64, Cursor>,
        id: i64,
        ns: &str,
        users: &[UserName],
        check_owner: bool,
    ) -> Result<&'m mut Cursor, CommandError> {
        let Some(c) = map.get_mut(&id) else {
            return Err(CommandError::cursor_not_found(format!("cursor id {id} not found")));
        };
        if c.ns != ns {
            return Err(CommandError::unauthorized(format!(
                "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}",
                c.ns
            )));
        }
        if check_owner && c.users != users {
            return Err(CommandError::unauthorized(format!(
                "cursor id {id} was not created by the authenticated user"
            )));
        }
        Ok(c)
    }

    /// Kills cursors by id; returns (killed, not found). A cursor a getMore has checked out is
    /// killed by interrupting that getMore, which then destroys it.
    pub fn kill(&self, ids: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let mut map = self.map.lock();
        let pinned = self.pinned.lock();
        let (mut killed, mut missing) = (Vec::new(), Vec::new());
        for id in ids {
            if map.remove(id).is_some() {
                killed.push(*id);
            } else if let Some(p) = pinned.get(id) {
                p.op.kill(crate::ops::KILL_INTERRUPTED);
                killed.push(*id);
            } else {
                missing.push(*id);
            }
        }
        (killed, missing)
    }

    /// The namespace and owners of a cursor (open or checked out by a getMore).
    pub fn owner(&self, id: i64) -> Option<(String, Vec<UserName>)> {
        if let Some(c) = self.map.lock().get(&id) {
            return Some((c.ns.clone(), c.users.clone()));
        }
        self.pinned.lock().get(&id).map(|p| (p.ns.clone(), p.users.clone()))
    }

    /// Closes all cursors of the given sessions; returns how many.
    pub fn kill_sessions(&self, keys: &[Vec<u8>]) -> usize {
        let mut map = self.map.lock();
        let before = map.len();
        map.retain(|_, c| !c.session.as_ref().is_some_and(|s| keys.contains(s)));
        before - map.len()
    }

    /// Closes cursors idle longer than `timeout` (unless noCursorTimeout); returns how many.
    pub fn reap(&self, timeout: Duration) -> usize {
        let mut map = self.map.lock();
        let before = map.len();
        map.retain(|_, c| c.no_timeout || c.last_access.elapsed() <= timeout);
        before - map.len()
    }

    /// Number of open cursors.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether no cursor is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `$currentOp` documents for idle cursors (`type: "idleCursor"`), with the connection id of each.
    pub fn idle_cursor_docs(&self) -> Vec<(i64, Vec<UserName>, Document)> {
        let map = self.map.lock();
        map.values()
            .map(|c| {
                let mut d = doc! {"type": "idleCursor", "active": false, "ns": &c.ns};
                if let Some(l) = &c.lsid {
                    d.insert("lsid", l.clone());
                }
                let mut cur = doc! {
                    "cursorId": c.id,
                    "createdDate": c.created,
                    "lastAccessDate": c.last_access_wall,
                    "nDocsReturned": c.n_returned as i64,
                    "nBatchesReturned": c.n_batches as i64,
                    "noCursorTimeout": c.no_timeout,
                    "tailable": c.tailable,
                    "awaitData": c.await_data,
                    "originatingCommand": c.originating_command.clone(),
                };
                if let Some(p) = &c.plan_summary {
                    cur.insert("planSummary", p.clone());
                    d.insert("planSummary", p.clone());
                }
                d.insert("cursor", cur);
                (c.conn_id, c.users.clone(), d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nc() -> NewCursor {
        NewCursor {
            ns: "d.c".into(),
            users: vec![],
            session: Some(vec![1; 16]),
            lsid: None,
            conn_id: 1,
            originating_command: doc! {},
            plan_summary: None,
            no_timeout: false,
            tailable: false,
            await_data: false,
        }
    }

    #[test]
    fn batches_and_exhaustion() {
        let store = CursorStore::default();
        let docs: VecDeque<Document> = (0..5).map(|i| doc! {"i": i}).collect();
        let (b, id) = store.first_batch(docs, 2, nc()).unwrap();
        assert_eq!(b.len(), 2);
        assert!(id > 0);
        let (b, id2) = store.get_more(id, "d.c", 2, &[], true).unwrap();
        assert_eq!((b.len(), id2), (2, id));
        assert!(store.get_more(id, "other.c", 2, &[], true).is_err());
        let (b, id3) = store.get_more(id, "d.c", 2, &[], true).unwrap();
        assert_eq!((b.len(), id3), (1, 0));
        assert_eq!(store.get_more(id, "d.c", 2, &[], true).unwrap_err().code, 43);
    }

    #[test]
    fn a_document_over_16_mib_fails_the_batch() {
        let store = CursorStore::default();
        let big = doc! {"s": "x".repeat(MAX_USER_BSON)};
        let docs: VecDeque<Document> = vec![doc! {"i": 1}, big].into();
        let (b, id) = store.first_batch(docs, 1, nc()).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(store.get_more(id, "d.c", 1, &[], true).unwrap_err().code, 10334);
        assert!(store.is_empty(), "the failed cursor is closed");
    }

    #[test]
    fn small_result_opens_no_cursor() {
        let store = CursorStore::default();
        let (b, id) = store.first_batch((0..3).map(|i| doc! {"i": i}).collect(), 101, nc()).unwrap();
        assert_eq!((b.len(), id), (3, 0));
        assert!(store.is_empty());
    }

    #[test]
    fn batch_size_zero_serves_nothing_and_keeps_the_cursor_open() {
        let store = CursorStore::default();
        let (b, id) = store.first_batch((0..3).map(|i| doc! {"i": i}).collect(), 0, nc()).unwrap();
        assert!(b.is_empty());
        assert!(id > 0);
        let (b, next) = store.get_more(id, "d.c", 0, &[], true).unwrap();
        assert_eq!((b.len(), next), (3, 0));
        // Even an empty result: mongod opens the cursor without running the query.
        let (b, id) = store.first_batch(VecDeque::new(), 0, nc()).unwrap();
        assert!(b.is_empty() && id > 0);
        assert_eq!(store.get_more(id, "d.c", 0, &[], true).unwrap(), (vec![], 0));
    }

    #[test]
    fn kill_by_session_and_reap() {
        let store = CursorStore::default();
        let (_, id) = store.first_batch((0..3).map(|i| doc! {"i": i}).collect(), 1, nc()).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.kill_sessions(&[vec![2; 16]]), 0);
        assert_eq!(store.kill_sessions(&[vec![1; 16]]), 1);
        assert_eq!(store.kill(&[id]), (vec![], vec![id]));
        let (_, _) = store.first_batch((0..3).map(|i| doc! {"i": i}).collect(), 1, nc()).unwrap();
        assert_eq!(store.reap(Duration::from_secs(60)), 0);
        assert_eq!(store.reap(Duration::ZERO), 1);
    }
}
