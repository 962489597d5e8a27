//! The [`Engine`]: opening and recovery, the catalog (databases, collections, indexes), the
//! journal append path, background fsync and compaction. Data operations are in `crud`.
//!
//! Invariants:
//! - Every change is appended to the journal (when persistent) while the lock protecting the
//!   changed state is held, *before* the lock is released and before the call returns; a failed
//!   append rolls the in-memory change back, so memory never runs ahead of the journal.
//! - Lock order: catalog → collection data → journal. Code holding a collection lock never
//!   takes the catalog lock.
//! - A dropped or renamed-away collection is marked `dropped` under its write lock; writers
//!   that find it so retry against the catalog, scans stop with QueryPlanKilled (175).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bson::{Bson, Document};
use docplane_query::{CommandError, Interrupt, Result};
use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard};

use crate::collection::{CollData, Collection};
use crate::index::{Index, IndexSpec, parse_spec, parse_spec_in};
use crate::journal::{self, FileKind, JournalWriter, ScanEnd, StorageError};
use crate::keys::{self, KeyVal};
use crate::record::{Record, RecordRef};
use crate::types::*;

/// Documents per chunk between interrupt checks and lock releases.
const CHUNK: usize = docplane_query::interrupt::CHECK_EVERY;
/// Largest document accepted.
const MAX_DOC: u64 = 16 * 1024 * 1024;

#[path = "crud.rs"]
mod crud;
pub use crud::{AggStream, FindStream};

type Catalog = BTreeMap<String, BTreeMap<String, Arc<Collection>>>;

/// The storage engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

struct Inner {
    catalog: RwLock<Catalog>,
    journal: Option<Mutex<JournalWriter>>,
    dirty: Arc<AtomicBool>,
    /// What has been appended and what is known durable (group commit for `j: true`).
    durability: Arc<Durability>,
    /// Serializes the fsyncs of [`Engine::sync_journal`] so that waiters share them.
    sync_lock: Mutex<()>,
    dir: Option<PathBuf>,
    opts: EngineOptions,
    compact_lock: Mutex<()>,
    next_index_id: AtomicU64,
    /// Called after documents were inserted into a capped collection (tailable cursors wait
    /// for it; [`Engine::on_capped_insert`]).
    capped_listener: RwLock<Option<CappedListener>>,
    _lock_file: Option<File>,
}

/// What [`Engine::on_capped_insert`] registers: called with the database and collection names.
pub type CappedListener = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(j) = &self.journal {
            let upto = self.durability.appends.load(AtomicOrdering::SeqCst);
            match j.lock().sync() {
                Ok(()) => self.durability.synced(upto),
                Err(e) => tracing::warn!(error = %e, "final journal fsync failed"),
            }
        }
    }
}

/// Counters of the journal's appends and fsyncs. An append is counted (under the journal lock)
/// once it has been `write()`n; `durable` is the count of appends known to be fsynced: an fsync
/// started after `appends` read `n` makes the first `n` appends durable.
#[derive(Debug, Default)]
struct Durability {
    appends: AtomicU64,
    durable: AtomicU64,
    fsyncs: AtomicU64,
}

impl Durability {
    /// Records a successful fsync that covers the first `upto` appends.
    fn synced(&self, upto: u64) {
        self.fsyncs.fetch_add(1, AtomicOrdering::SeqCst);
        self.durable.fetch_max(upto, AtomicOrdering::SeqCst);
    }
}

fn invalid_ns(msg: String) -> CommandError {
    CommandError::invalid_namespace(msg)
}

fn validate_db_name(db: &str) -> Result<()> {
    if db.is_empty() || db.len() >= 64 || db.chars().any(|c| "/\\. \"$*<>:|?\0".contains(c)) {
        return Err(invalid_ns(format!("Invalid database name: '{db}'")));
    }
    Ok(())
}

fn validate_names(db: &str, coll: &str) -> Result<()> {
    validate_db_name(db)?;
    if coll.is_empty() || coll.contains('\0') || coll.starts_with('.') || coll.contains('$') {
        return Err(invalid_ns(format!("Invalid collection name: {coll}")));
    }
    Ok(())
}

fn ns_not_found(db: &str, coll: &str) -> CommandError {
    CommandError::namespace_not_found(format!("ns not found: {db}.{coll}"))
}

/// Applies one replayed record to a catalog being rebuilt.
fn apply_record(
    cat: &mut Catalog,
    rec: Record,
    payload_len: usize,
    next_index_id: &AtomicU64,
) -> std::result::Result<(), String> {
    let coll_mut =
        |cat: &mut Catalog, db: &str, coll: &str| -> std::result::Result<Arc<Collection>, String> {
            cat.get(db)
                .and_then(|d| d.get(coll))
                .cloned()
                .ok_or_else(|| format!("record for missing collection {db}.{coll}"))
        };
    match rec {
        Record::CreateCollection { db, coll, options, uuid } => {
            let d = cat.entry(db.clone()).or_default();
            if d.contains_key(&coll) {
                return Err(format!("collection {db}.{coll} created twice"));
            }
            d.insert(coll.clone(), Arc::new(Collection::new(&db, &coll, uuid, options)));
        }
        Record::DropCollection { db, coll } => {
            if let Some(d) = cat.get_mut(&db) {
                d.remove(&coll);
                if d.is_empty() {
                    cat.remove(&db);
                }
            }
        }
        Record::DropDatabase { db } => {
            cat.remove(&db);
        }
        Record::Rename { db, coll, to_db, to_coll, drop_target } => {
            let src = coll_mut(cat, &db, &coll)?;
            let exists = cat.get(&to_db).is_some_and(|d| d.contains_key(&to_coll));
            if exists && !drop_target {
                return Err(format!("rename target {to_db}.{to_coll} exists"));
            }
            let data = std::mem::take(&mut *src.data.write());
            if let Some(d) = cat.get_mut(&db) {
                d.remove(&coll);
                if d.is_empty() {
                    cat.remove(&db);
                }
            }
            let moved = Collection::new(&to_db, &to_coll, src.uuid, src.options());
            *moved.data.write() = data;
            cat.entry(to_db).or_default().insert(to_coll, Arc::new(moved));
        }
        Record::CreateIndex { db, coll, spec } => {
            let c = coll_mut(cat, &db, &coll)?;
            let spec = parse_spec(&spec).map_err(|e| e.message)?;
            let mut g = c.data.write();
            if g.indexes.iter().any(|ix| ix.spec.name == spec.name) {
                return Err(format!("index {} created twice", spec.name));
            }
            let ix = Index::new(next_index_id.fetch_add(1, AtomicOrdering::Relaxed), spec);
            let ix = g.build_index(&c.ns(), ix, &mut || Ok(())).map_err(|e| e.message)?;
            g.indexes.push(ix);
        }
        Record::DropIndex { db, coll, name } => {
            let c = coll_mut(cat, &db, &coll)?;
            c.data.write().indexes.retain(|ix| ix.spec.name != name);
        }
        Record::Insert { db, coll, doc } | Record::Replace { db, coll, doc } => {
            let c = coll_mut(cat, &db, &coll)?;
            let id = KeyVal(doc.get("_id").cloned().ok_or("document without _id")?);
            // The payload is op, db, coll, then the document.
            let size = payload_len.saturating_sub(1 + 4 + db.len() + 4 + coll.len()) as u64;
            let mut g = c.data.write();
            let exists = g.docs.contains_key(&id);
            let p = g.prepare(&c.ns(), &doc, &id, !exists).map_err(|e| e.message)?;
            if exists {
                g.replace(id, Arc::new(doc), size, p);
            } else {
                g.insert(id, Arc::new(doc), size, p);
            }
        }
        Record::Delete { db, coll, id } => {
            let c = coll_mut(cat, &db, &coll)?;
            c.data.write().remove(&KeyVal(id));
        }
        Record::SetOptions { db, coll, options } => {
            let c = coll_mut(cat, &db, &coll)?;
            let v = docplane_query::validator::Validation::from_options(&options).map_err(|e| e.message)?;
            *c.validation.write() = v.map(Arc::new);
            *c.options.write() = options;
        }
        Record::SnapshotBegin { .. } | Record::SnapshotEnd => {
            return Err("snapshot marker inside a journal".into());
        }
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> std::result::Result<File, StorageError> {
    let path = dir.join("LOCK");
    let f = crate::files::private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    // A just-dropped engine of this process may still be finishing its final fsync in `Drop`.
    let deadline = Instant::now() + Duration::from_millis(300);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked { path: dir.to_path_buf() });
            }
            Err(fs::TryLockError::Error(e)) => return Err(StorageError::io(&path, e)),
        }
    }
}

/// Replays the data directory into a catalog; returns it with the journal writer.
fn recover(
    dir: &Path,
    opts: &EngineOptions,
    next_index_id: &AtomicU64,
) -> std::result::Result<(Catalog, JournalWriter), StorageError> {
    let listing = journal::list_dir(dir)?;
    let mut cat = Catalog::new();
    let base = listing.snapshots.last().copied();
    if let Some(s) = base {
        let path = journal::snapshot_path(dir, s);
        let data = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let mut state = 0u8; // 0: expect begin, 1: body, 2: ended
        journal::scan_file(&path, &data, FileKind::Snapshot, s, false, |rec, len| match (state, rec) {
            (0, Record::SnapshotBegin { generation }) if generation == s => {
                state = 1;
                Ok(())
            }
            (1, Record::SnapshotEnd) => {
                state = 2;
                Ok(())
            }
            (1, rec) => apply_record(&mut cat, rec, len, next_index_id),
            (_, rec) => Err(format!("unexpected record {rec:?} in snapshot")),
        })?;
        if state != 2 {
            return Err(StorageError::Corrupt {
                path,
                offset: data.len() as u64,
                reason: "snapshot has no end marker".into(),
            });
        }
    }
    let start = base.unwrap_or(0);
    let journals: Vec<u64> = listing.journals.iter().copied().filter(|g| *g >= start).collect();
    for (i, g) in journals.iter().enumerate() {
        let expected = start + i as u64;
        if *g != expected {
            let reason = if i == 0 && base.is_none() {
                format!("journal generation {g} needs snapshot {g}, which is missing")
            } else {
                format!("journal generation {expected} is missing from the sequence")
            };
            return Err(StorageError::Corrupt { path: journal::journal_path(dir, *g), offset: 0, reason });
        }
    }
    let mut writer = None;
    for (i, g) in journals.iter().enumerate() {
        let is_last = i + 1 == journals.len();
        let path = journal::journal_path(dir, *g);
        let data = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let end = journal::scan_file(&path, &data, FileKind::Journal, *g, is_last, |rec, len| {
            apply_record(&mut cat, rec, len, next_index_id)
        })?;
        if is_last {
            let valid = match end {
                ScanEnd::Clean => data.len() as u64,
                ScanEnd::Torn(off) => off,
            };
            writer = Some(JournalWriter::reopen(dir, *g, valid, opts.sync_every_write)?);
        }
    }
    let writer = match writer {
        Some(w) => w,
        None => JournalWriter::create(dir, start, opts.sync_every_write)?,
    };
    if let Some(s) = base {
        journal::remove_older_than(dir, s)?;
    } else if let Some(first) = journals.first() {
        journal::remove_older_than(dir, *first)?;
    }
    Ok((cat, writer))
}

/// Stack of the threads that decode or encode stored documents outside a request: recovery and
/// the background flusher (which writes snapshots). BSON decoding recurses once per nesting
/// level with large frames (in debug builds a 2 MiB stack overflows at about 150 levels), and a
/// journal written before the depth limit existed may hold documents nested up to the wire's 200
/// levels or deeper (through updates). The memory is reserved, not committed.
const LARGE_STACK: usize = 64 << 20;

/// [`recover`] on a dedicated thread with a [`LARGE_STACK`], so that deeply nested documents in
/// an existing journal or snapshot can always be replayed, whatever thread opens the engine.
fn recover_on_large_stack(
    dir: &Path,
    opts: &EngineOptions,
    next_index_id: &AtomicU64,
) -> std::result::Result<(Catalog, JournalWriter), StorageError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("docplane-recovery".into())
            .stack_size(LARGE_STACK)
            .spawn_scoped(s, || recover(dir, opts, next_index_id))
            .map_err(|e| StorageError::io(dir, e))?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StorageError::Corrupt {
                    path: dir.to_path_buf(),
                    offset: 0,
                    reason: format!("recovery failed: {what}"),
                })
            }
        }
    })
}

/// An fsync owed by the background thread.
struct PendingSync {
    handle: Arc<File>,
    /// Set again when the fsync fails.
    dirty: Arc<AtomicBool>,
    dir: PathBuf,
    durability: Arc<Durability>,
    /// Appends counted before the handle was taken: the fsync covers them.
    upto: u64,
}

/// Starts the background thread: fsync every `interval` when dirty, compaction check every 10
/// ticks. It holds only a `Weak` between ticks and drops its strong reference before fsyncing,
/// so dropping the last `Engine` releases the directory lock promptly.
fn spawn_flusher(weak: Weak<Inner>, interval: Duration) {
    let res = std::thread::Builder::new().name("docplane-journal-sync".into()).stack_size(LARGE_STACK).spawn(
        move || {
            let mut ticks = 0u64;
            loop {
                std::thread::sleep(interval);
                let Some(inner) = weak.upgrade() else { break };
                let engine = Engine { inner };
                ticks += 1;
                if ticks.is_multiple_of(10)
                    && engine.should_compact()
                    && let Err(e) = engine.compact_storage()
                {
                    tracing::warn!(error = %e, "journal compaction failed");
                }
                let pending = engine.take_dirty_handle();
                drop(engine);
                if let Some(p) = pending {
                    match p.handle.sync_data() {
                        Ok(()) => p.durability.synced(p.upto),
                        Err(e) => {
                            p.dirty.store(true, AtomicOrdering::SeqCst);
                            tracing::warn!(dir = %p.dir.display(), error = %e, "background journal fsync failed");
                        }
                    }
                }
            }
        },
    );
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not start the journal sync thread; fsync happens on flush only");
    }
}

/// One collection frozen for a snapshot.
struct SnapColl {
    db: String,
    name: String,
    uuid: [u8; 16],
    options: Document,
    specs: Vec<Document>,
    docs: Vec<Arc<Document>>,
}

impl Engine {
    /// Opens (creating if needed) a persistent engine in `dir`, replaying snapshot and journal.
    /// The error keeps its detail (file, offset): it is for the operator starting the node, never
    /// a client's (clients get [`crate::internal_error`]'s generic form of storage errors).
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<Engine> {
        Self::try_open(dir, opts).map_err(|e| CommandError::new(1, "InternalError", e.to_string()))
    }

    /// [`Engine::open`] with the typed storage error (file and offset of corruption).
    pub fn try_open(dir: &Path, opts: EngineOptions) -> std::result::Result<Engine, StorageError> {
        // Owner-only, whatever the directory's prior mode (files of older versions included).
        crate::files::private_tree(dir).map_err(|e| StorageError::io(dir, e))?;
        let lock = lock_dir(dir)?;
        let next_index_id = AtomicU64::new(1);
        let (catalog, writer) = recover_on_large_stack(dir, &opts, &next_index_id)?;
        let interval = opts.sync_interval;
        let inner = Arc::new(Inner {
            catalog: RwLock::new(catalog),
            journal: Some(Mutex::new(writer)),
            dirty: Arc::new(AtomicBool::new(false)),
            durability: Arc::default(),
            sync_lock: Mutex::new(()),
            dir: Some(dir.to_path_buf()),
            opts,
            compact_lock: Mutex::new(()),
            next_index_id,
            capped_listener: RwLock::new(None),
            _lock_file: Some(lock),
        });
        spawn_flusher(Arc::downgrade(&inner), interval);
        Ok(Engine { inner })
    }

    /// A non-persistent engine.
    pub fn in_memory() -> Engine {
        Engine {
            inner: Arc::new(Inner {
                catalog: RwLock::new(Catalog::new()),
                journal: None,
                dirty: Arc::new(AtomicBool::new(false)),
                durability: Arc::default(),
                sync_lock: Mutex::new(()),
                dir: None,
                opts: EngineOptions::default(),
                compact_lock: Mutex::new(()),
                next_index_id: AtomicU64::new(1),
                capped_listener: RwLock::new(None),
                _lock_file: None,
            }),
        }
    }

    /// fsyncs the journal (called on shutdown).
    pub fn flush(&self) -> Result<()> {
        if let Some(j) = &self.inner.journal {
            self.inner.dirty.store(false, AtomicOrdering::SeqCst);
            let upto = self.inner.durability.appends.load(AtomicOrdering::SeqCst);
            if let Err(e) = j.lock().sync() {
                self.inner.dirty.store(true, AtomicOrdering::SeqCst);
                return Err(e.into());
            }
            self.inner.durability.synced(upto);
        }
        Ok(())
    }

    /// Returns once every write acknowledged before the call is fsynced (what `j: true` waits
    /// for). Group commit: callers queue on one lock, and a caller whose writes an fsync started
    /// meanwhile already covered returns without one of its own. No-op in memory.
    pub fn sync_journal(&self) -> Result<()> {
        let Some(j) = &self.inner.journal else { return Ok(()) };
        let d = &self.inner.durability;
        let target = d.appends.load(AtomicOrdering::SeqCst);
        if d.durable.load(AtomicOrdering::SeqCst) >= target {
            return Ok(());
        }
        let _one_fsync_at_a_time = self.inner.sync_lock.lock();
        if d.durable.load(AtomicOrdering::SeqCst) >= target {
            return Ok(());
        }
        // Appends counted now were written to the file current now or to an older one, which
        // compaction fsyncs before it switches files; so fsyncing the current file covers them.
        let upto = d.appends.load(AtomicOrdering::SeqCst);
        let handle = j.lock().sync_handle();
        handle.sync_data().map_err(|e| crate::internal_error("syncing the journal", e))?;
        d.synced(upto);
        Ok(())
    }

    /// Journal counters (for tests and `serverStatus`): appends, appends known durable, fsyncs.
    pub fn journal_stats(&self) -> JournalStats {
        let d = &self.inner.durability;
        JournalStats {
            appends: d.appends.load(AtomicOrdering::SeqCst),
            durable_appends: d.durable.load(AtomicOrdering::SeqCst),
            fsyncs: d.fsyncs.load(AtomicOrdering::SeqCst),
        }
    }

    /// Whether the engine writes a journal (false in memory: `j: true` cannot be honoured).
    pub fn is_durable(&self) -> bool {
        self.inner.journal.is_some()
    }

    /// When the journal has unsynced writes: a handle to fsync it, the dirty flag to restore if
    /// that fails, and the directory (for messages). Clears the flag.
    fn take_dirty_handle(&self) -> Option<PendingSync> {
        let j = self.inner.journal.as_ref()?;
        if !self.inner.dirty.swap(false, AtomicOrdering::SeqCst) {
            return None;
        }
        let upto = self.inner.durability.appends.load(AtomicOrdering::SeqCst);
        let handle = j.lock().sync_handle();
        Some(PendingSync {
            handle,
            dirty: Arc::clone(&self.inner.dirty),
            dir: self.inner.dir.clone().unwrap_or_default(),
            durability: Arc::clone(&self.inner.durability),
            upto,
        })
    }

    /// Appends framed records to the journal (no-op in memory).
    fn append(&self, buf: &[u8]) -> Result<()> {
        if let Some(j) = &self.inner.journal
            && !buf.is_empty()
        {
            let mut w = j.lock();
            w.append(buf)?;
            let n = self.inner.durability.appends.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            if self.inner.opts.sync_every_write {
                // `append` fsynced this write (and every earlier one) before returning.
                self.inner.durability.synced(n);
            }
            drop(w);
            self.inner.dirty.store(true, AtomicOrdering::SeqCst);
        }
        Ok(())
    }

    fn append_records(&self, recs: &[RecordRef<'_>]) -> Result<()> {
        if self.inner.journal.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in recs {
            journal::frame_record(&mut buf, *r)?;
        }
        self.append(&buf)
    }

    /// Registers the function called after every insert into a capped collection (replacing
    /// any earlier one); the node wakes its awaitData cursors with it.
    pub fn on_capped_insert(&self, f: CappedListener) {
        *self.inner.capped_listener.write() = Some(f);
    }

    /// Calls the capped-insert listener if `db.coll` is capped (no lock is held).
    fn notify_capped_insert(&self, db: &str, coll: &str) {
        if self.get_coll(db, coll).is_some_and(|c| c.cap.is_some()) {
            let f = self.inner.capped_listener.read().clone();
            if let Some(f) = f {
                f(db, coll);
            }
        }
    }

    fn get_coll(&self, db: &str, coll: &str) -> Option<Arc<Collection>> {
        self.inner.catalog.read().get(db)?.get(coll).cloned()
    }

    /// Creates the collection (journaled) unless it exists. Returns it and whether it was created.
    fn ensure_collection(
        &self,
        db: &str,
        coll: &str,
        options: Document,
        fail_if_exists: bool,
    ) -> Result<(Arc<Collection>, bool)> {
        if !fail_if_exists && let Some(c) = self.get_coll(db, coll) {
            return Ok((c, false));
        }
        validate_names(db, coll)?;
        let mut cat = self.inner.catalog.write();
        if let Some(c) = cat.get(db).and_then(|d| d.get(coll)) {
            if fail_if_exists {
                return Err(CommandError::namespace_exists(format!(
                    "Collection {db}.{coll} already exists."
                )));
            }
            return Ok((Arc::clone(c), false));
        }
        let uuid = *uuid::Uuid::new_v4().as_bytes();
        self.append_records(&[RecordRef::CreateCollection { db, coll, options: &options, uuid }])?;
        let c = Arc::new(Collection::new(db, coll, uuid, options));
        cat.entry(db.to_string()).or_default().insert(coll.to_string(), Arc::clone(&c));
        Ok((c, true))
    }

    /// Runs `f` under the write lock of a live collection, creating it if `create`.
    fn with_write<R>(
        &self,
        db: &str,
        coll: &str,
        create: bool,
        f: impl FnOnce(&Arc<Collection>, &mut CollData) -> R,
    ) -> Result<Option<R>> {
        loop {
            let c = if create {
                self.ensure_collection(db, coll, Document::new(), false)?.0
            } else {
                match self.get_coll(db, coll) {
                    Some(c) => c,
                    None => return Ok(None),
                }
            };
            let mut g = c.data.write();
            if g.dropped {
                continue;
            }
            return Ok(Some(f(&c, &mut g)));
        }
    }

    /// Databases that hold at least one collection.
    pub fn list_databases(&self) -> Vec<DatabaseInfo> {
        let cat = self.inner.catalog.read();
        cat.iter()
            .map(|(name, colls)| {
                let size: u64 = colls
                    .values()
                    .map(|c| {
                        let g = c.data.read();
                        g.data_bytes + g.index_sizes().iter().map(|(_, s)| s).sum::<u64>()
                    })
                    .sum();
                DatabaseInfo { name: name.clone(), size_on_disk: size, empty: colls.is_empty() }
            })
            .collect()
    }

    /// Drops a database; false when it did not exist.
    pub fn drop_database(&self, db: &str) -> Result<bool> {
        let mut cat = self.inner.catalog.write();
        let Some(colls) = cat.get(db) else { return Ok(false) };
        let colls: Vec<Arc<Collection>> = colls.values().cloned().collect();
        let mut guards: Vec<_> = colls.iter().map(|c| c.data.write()).collect();
        self.append_records(&[RecordRef::DropDatabase { db }])?;
        for g in &mut guards {
            g.dropped = true;
        }
        cat.remove(db);
        Ok(true)
    }

    /// Collections of a database, by name.
    pub fn list_collections(&self, db: &str) -> Vec<CollectionInfo> {
        let cat = self.inner.catalog.read();
        cat.get(db)
            .map(|colls| {
                colls
                    .values()
                    .map(|c| CollectionInfo {
                        name: c.name.clone(),
                        options: c.options(),
                        uuid: bson::Uuid::from_bytes(c.uuid),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates a collection; 48 NamespaceExists if it exists. A `collation` option is stored
    /// normalized (mongod's full spec), the simple one not at all, as mongod lists them.
    pub fn create_collection(&self, db: &str, coll: &str, mut options: Document) -> Result<()> {
        match docplane_query::collation::parse(options.get("collation"))? {
            docplane_query::collation::Requested::Collated(c) => {
                options.insert("collation", c.spec().clone());
            }
            _ => {
                options.remove("collation");
            }
        }
        self.ensure_collection(db, coll, options, true).map(|_| ())
    }

    /// `collMod`'s validation settings: `changes` holds the new `validator` (`{}` removes it),
    /// `validationLevel`, `validationAction` (already validated by the node); they replace
    /// the old ones in the options, are journaled (a snapshot keeps them as options) and apply
    /// to every write after this returns. 26 NamespaceNotFound for a missing collection.
    pub fn coll_mod(&self, db: &str, coll: &str, changes: &Document) -> Result<()> {
        // mongod's collMod message (not `ns not found`, which drop and the others use).
        let missing = || CommandError::namespace_not_found(format!("ns does not exist: {db}.{coll}"));
        let Some(c) = self.get_coll(db, coll) else { return Err(missing()) };
        let g = c.data.write();
        if g.dropped {
            return Err(missing());
        }
        let mut options = c.options();
        for (k, v) in changes {
            match v {
                Bson::Document(d) if k == "validator" && d.is_empty() => {
                    options.remove(k);
                }
                _ => {
                    options.insert(k.clone(), v.clone());
                }
            }
        }
        let validation = docplane_query::validator::Validation::from_options(&options)?;
        self.append_records(&[RecordRef::SetOptions { db, coll, options: &options }])?;
        *c.validation.write() = validation.map(Arc::new);
        *c.options.write() = options;
        drop(g);
        Ok(())
    }

    /// The collection's default collation (`None`: none, or no such collection).
    pub fn default_collation(&self, db: &str, coll: &str) -> Option<Arc<docplane_query::Collation>> {
        self.get_coll(db, coll).and_then(|c| c.collation.clone())
    }

    /// Drops a collection; false when it did not exist.
    pub fn drop_collection(&self, db: &str, coll: &str) -> Result<bool> {
        let mut cat = self.inner.catalog.write();
        let Some(c) = cat.get(db).and_then(|d| d.get(coll)).cloned() else { return Ok(false) };
        let mut g = c.data.write();
        self.append_records(&[RecordRef::DropCollection { db, coll }])?;
        g.dropped = true;
        if let Some(d) = cat.get_mut(db) {
            d.remove(coll);
            if d.is_empty() {
                cat.remove(db);
            }
        }
        Ok(true)
    }

    /// Renames a collection (across databases too), optionally dropping an existing target.
    pub fn rename_collection(&self, from: (&str, &str), to: (&str, &str), drop_target: bool) -> Result<()> {
        validate_names(to.0, to.1)?;
        if from == to {
            return Err(CommandError::illegal_operation("Can't rename a collection to itself"));
        }
        let mut cat = self.inner.catalog.write();
        let Some(src) = cat.get(from.0).and_then(|d| d.get(from.1)).cloned() else {
            return Err(CommandError::namespace_not_found("Source collection does not exist"));
        };
        let target = cat.get(to.0).and_then(|d| d.get(to.1)).cloned();
        if target.is_some() && !drop_target {
            return Err(CommandError::namespace_exists("target namespace exists"));
        }
        let mut sg = src.data.write();
        let tg = target.as_ref().map(|t| t.data.write());
        self.append_records(&[RecordRef::Rename {
            db: from.0,
            coll: from.1,
            to_db: to.0,
            to_coll: to.1,
            drop_target,
        }])?;
        if let Some(mut tg) = tg {
            tg.dropped = true;
        }
        let data = std::mem::take(&mut *sg);
        sg.dropped = true;
        drop(sg);
        if let Some(d) = cat.get_mut(from.0) {
            d.remove(from.1);
            if d.is_empty() {
                cat.remove(from.0);
            }
        }
        let moved = Collection::new(to.0, to.1, src.uuid, src.options());
        *moved.data.write() = data;
        cat.entry(to.0.to_string()).or_default().insert(to.1.to_string(), Arc::new(moved));
        Ok(())
    }

    /// createIndexes: builds the missing indexes (checking `intr`), creating the collection
    /// implicitly.
    pub fn create_indexes(
        &self,
        db: &str,
        coll: &str,
        specs: &[Document],
        intr: &dyn Interrupt,
    ) -> Result<CreateIndexesOutcome> {
        if specs.is_empty() {
            return Err(CommandError::bad_value("Must specify at least one index to create"));
        }
        // Parsed once without the collection (errors before it is created), again with its
        // default collation.
        specs.iter().try_for_each(|s| parse_spec(s).map(|_| ()))?;
        loop {
            let (c, created) = self.ensure_collection(db, coll, Document::new(), false)?;
            let parsed: Vec<IndexSpec> =
                specs.iter().map(|s| parse_spec_in(s, c.collation.as_ref())).collect::<Result<_>>()?;
            let g = c.data.upgradable_read();
            if g.dropped {
                continue;
            }
            let before = 1 + g.indexes.len() as u32;
            let mut todo: Vec<IndexSpec> = Vec::new();
            for spec in &parsed {
                if spec.fields.len() == 1 && spec.fields[0] == ("_id".to_string(), false) && !spec.sparse {
                    if spec.name == "_id_" || spec.name == "_id_1" {
                        continue;
                    }
                    return Err(CommandError::index_options_conflict(
                        "Index already exists with a different name: _id_",
                    ));
                }
                let existing = g.indexes.iter().map(|ix| &ix.spec).chain(todo.iter());
                let mut skip = false;
                for ex in existing {
                    let same_collation =
                        docplane_query::collation::same(ex.collation.as_ref(), spec.collation.as_ref());
                    if ex.name == spec.name {
                        if ex.fields == spec.fields
                            && ex.unique == spec.unique
                            && ex.sparse == spec.sparse
                            && same_collation
                        {
                            skip = true;
                            break;
                        }
                        return Err(CommandError::index_key_specs_conflict(format!(
                            "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {}, existing index: {}",
                            spec.listed, ex.listed
                        )));
                    }
                    // mongod allows indexes on the same keys that differ in collation.
                    if ex.fields == spec.fields && same_collation {
                        return Err(CommandError::index_options_conflict(format!(
                            "Index already exists with a different name: {}",
                            ex.name
                        )));
                    }
                }
                if !skip {
                    todo.push(spec.clone());
                }
            }
            if todo.is_empty() {
                return Ok(CreateIndexesOutcome {
                    num_indexes_before: before,
                    num_indexes_after: before,
                    created_collection_automatically: created,
                    note: Some("all indexes already exist".into()),
                });
            }
            let ns = c.ns();
            let mut built = Vec::with_capacity(todo.len());
            for spec in todo {
                let ix = Index::new(self.inner.next_index_id.fetch_add(1, AtomicOrdering::Relaxed), spec);
                built.push(g.build_index(&ns, ix, &mut || intr.check())?);
            }
            let mut w = RwLockUpgradableReadGuard::upgrade(g);
            let recs: Vec<RecordRef<'_>> =
                built.iter().map(|ix| RecordRef::CreateIndex { db, coll, spec: &ix.spec.listed }).collect();
            self.append_records(&recs)?;
            let n = built.len() as u32;
            w.indexes.extend(built);
            return Ok(CreateIndexesOutcome {
                num_indexes_before: before,
                num_indexes_after: before + n,
                created_collection_automatically: created,
                note: None,
            });
        }
    }

    /// listIndexes: `_id_` first, then the others in creation order.
    pub fn list_indexes(&self, db: &str, coll: &str) -> Result<Vec<Document>> {
        let Some(c) = self.get_coll(db, coll) else {
            return Err(CommandError::namespace_not_found(format!("ns does not exist: {db}.{coll}")));
        };
        let g = c.data.read();
        let mut id = bson::doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"};
        if let Some(coll) = &c.collation {
            id.insert("collation", coll.spec().clone());
        }
        let mut out = vec![id];
        out.extend(g.indexes.iter().map(|ix| ix.spec.listed.clone()));
        Ok(out)
    }

    /// dropIndexes: `"*"` (all but `_id_`), a name, a key pattern, or an array of names.
    /// Returns the number of indexes before.
    pub fn drop_indexes(&self, db: &str, coll: &str, which: &Bson) -> Result<u32> {
        let res = self.with_write(db, coll, false, |c, g| -> Result<u32> {
            let was = 1 + g.indexes.len() as u32;
            let names: Vec<String> = match which {
                Bson::String(s) if s == "*" => g.indexes.iter().map(|ix| ix.spec.name.clone()).collect(),
                Bson::String(s) if s == "_id_" => {
                    return Err(CommandError::invalid_options("cannot drop _id index"));
                }
                Bson::String(s) => {
                    if !g.indexes.iter().any(|ix| ix.spec.name == *s) {
                        return Err(CommandError::index_not_found(format!(
                            "index not found with name [{s}]"
                        )));
                    }
                    vec![s.clone()]
                }
                Bson::Array(items) => {
                    let mut v = Vec::new();
                    for it in items {
                        let Bson::String(s) = it else {
                            return Err(CommandError::type_mismatch(
                                "dropIndexes index names must be strings",
                            ));
                        };
                        if s == "_id_" {
                            return Err(CommandError::invalid_options("cannot drop _id index"));
                        }
                        if !g.indexes.iter().any(|ix| ix.spec.name == *s) {
                            return Err(CommandError::index_not_found(format!(
                                "index not found with name [{s}]"
                            )));
                        }
                        v.push(s.clone());
                    }
                    v
                }
                Bson::Document(key) => {
                    let mut text = String::new();
                    keys::render_doc(key, &mut text);
                    if key.len() == 1 && key.contains_key("_id") {
                        return Err(CommandError::invalid_options("cannot drop _id index"));
                    }
                    match g.indexes.iter().find(|ix| ix.spec.key == *key) {
                        Some(ix) => vec![ix.spec.name.clone()],
                        None => {
                            return Err(CommandError::index_not_found(format!(
                                "can't find index with key: {text}"
                            )));
                        }
                    }
                }
                _ => {
                    return Err(CommandError::type_mismatch(
                        "dropIndexes 'index' must be a string, object or array",
                    ));
                }
            };
            let recs: Vec<RecordRef<'_>> =
                names.iter().map(|n| RecordRef::DropIndex { db: &c.db, coll: &c.name, name: n }).collect();
            self.append_records(&recs)?;
            g.indexes.retain(|ix| !names.contains(&ix.spec.name));
            Ok(was)
        })?;
        match res {
            Some(r) => r,
            None => Err(ns_not_found(db, coll)),
        }
    }

    /// collStats.
    pub fn collection_stats(&self, db: &str, coll: &str) -> Result<CollStats> {
        let Some(c) = self.get_coll(db, coll) else { return Err(ns_not_found(db, coll)) };
        let g = c.data.read();
        let count = g.docs.len() as u64;
        let index_sizes = g.index_sizes();
        Ok(CollStats {
            ns: c.ns(),
            count,
            size: g.data_bytes,
            avg_obj_size: g.data_bytes.checked_div(count).unwrap_or(0),
            storage_size: g.data_bytes,
            nindexes: index_sizes.len() as u32,
            total_index_size: index_sizes.iter().map(|(_, s)| s).sum(),
            index_sizes,
            capped: c.cap.map(|cap| (cap.size, cap.max)),
        })
    }

    /// dbStats.
    pub fn db_stats(&self, db: &str) -> DbStats {
        let colls: Vec<Arc<Collection>> =
            self.inner.catalog.read().get(db).map(|d| d.values().cloned().collect()).unwrap_or_default();
        let mut s = DbStats { db: db.to_string(), collections: colls.len() as u64, ..DbStats::default() };
        for c in colls {
            let g = c.data.read();
            s.objects += g.docs.len() as u64;
            s.data_size += g.data_bytes;
            let sizes = g.index_sizes();
            s.indexes += sizes.len() as u64;
            s.index_size += sizes.iter().map(|(_, x)| x).sum::<u64>();
        }
        s.storage_size = s.data_size;
        s
    }

    /// Journal bytes and live data bytes (for compaction decisions and tests).
    pub fn storage_sizes(&self) -> (u64, u64) {
        let journal = self.inner.journal.as_ref().map(|j| j.lock().len()).unwrap_or(0);
        let colls: Vec<Arc<Collection>> =
            self.inner.catalog.read().values().flat_map(|d| d.values().cloned()).collect();
        let live = colls.iter().map(|c| c.data.read().data_bytes).sum();
        (journal, live)
    }

    fn should_compact(&self) -> bool {
        let (journal, live) = self.storage_sizes();
        let o = &self.inner.opts;
        journal > o.compact_min_journal_bytes && journal > live.saturating_mul(o.compact_ratio)
    }

    /// Writes a snapshot of the current state and starts a new journal; older files are
    /// deleted once the snapshot is durable. No-op in memory.
    pub fn compact(&self) -> Result<()> {
        self.compact_storage().map_err(CommandError::from)
    }

    fn compact_storage(&self) -> std::result::Result<(), StorageError> {
        let (Some(journal), Some(dir)) = (&self.inner.journal, &self.inner.dir) else { return Ok(()) };
        let _one_at_a_time = self.inner.compact_lock.lock();
        let (state, generation) = {
            let cat = self.inner.catalog.write();
            let colls: Vec<Arc<Collection>> = cat.values().flat_map(|d| d.values().cloned()).collect();
            let guards: Vec<_> = colls.iter().map(|c| c.data.read()).collect();
            let state: Vec<SnapColl> = colls
                .iter()
                .zip(&guards)
                .map(|(c, g)| SnapColl {
                    db: c.db.clone(),
                    name: c.name.clone(),
                    uuid: c.uuid,
                    options: c.options(),
                    specs: g.indexes.iter().map(|ix| ix.spec.listed.clone()).collect(),
                    // A capped collection in insertion order, which replaying restores.
                    docs: match &g.natural {
                        Some(n) => {
                            n.values().filter_map(|id| g.docs.get(id)).map(|r| Arc::clone(&r.doc)).collect()
                        }
                        None => g.docs.values().map(|r| Arc::clone(&r.doc)).collect(),
                    },
                })
                .collect();
            let mut j = journal.lock();
            let upto = self.inner.durability.appends.load(AtomicOrdering::SeqCst);
            j.sync()?;
            self.inner.durability.synced(upto);
            let generation = j.generation() + 1;
            *j = JournalWriter::create(dir, generation, self.inner.opts.sync_every_write)?;
            drop(j);
            drop(guards);
            drop(cat);
            (state, generation)
        };
        let records = state.iter().flat_map(|c| {
            std::iter::once(RecordRef::CreateCollection {
                db: &c.db,
                coll: &c.name,
                options: &c.options,
                uuid: c.uuid,
            })
            .chain(c.specs.iter().map(|s| RecordRef::CreateIndex { db: &c.db, coll: &c.name, spec: s }))
            .chain(c.docs.iter().map(|d| RecordRef::Insert {
                db: &c.db,
                coll: &c.name,
                doc: d,
            }))
        });
        journal::write_snapshot(dir, generation, records)?;
        journal::remove_older_than(dir, generation)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;
    use docplane_query::{Filter, NeverInterrupt};

    /// `{_id: id, a: {a: ... {a: 1}}}` nested `depth` levels in all.
    fn deep_doc(id: i32, depth: usize) -> Document {
        let mut d = doc! {"a": 1};
        for _ in 2..depth {
            d = doc! {"a": d};
        }
        doc! {"_id": id, "a": d}
    }

    /// Runs `f` on a thread with a 2 MiB stack, like tokio's blocking pool and the test harness
    /// default, whatever RUST_MIN_STACK says.
    fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            std::thread::Builder::new().stack_size(2 << 20).spawn_scoped(s, f).unwrap().join().unwrap()
        })
    }

    #[test]
    fn journal_with_deeply_nested_documents_still_opens() {
        // An older version accepted documents up to the wire's nesting limit; they must replay.
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<Document> = [150, 200].iter().zip(1..).map(|(d, id)| deep_doc(id, *d)).collect();
        {
            let mut w = JournalWriter::create(dir.path(), 0, false).unwrap();
            let mut buf = Vec::new();
            let rec = RecordRef::CreateCollection { db: "d", coll: "c", options: &doc! {}, uuid: [1; 16] };
            journal::frame_record(&mut buf, rec).unwrap();
            for d in &docs {
                journal::frame_record(&mut buf, RecordRef::Insert { db: "d", coll: "c", doc: d }).unwrap();
            }
            w.append(&buf).unwrap();
            w.sync().unwrap();
        }
        let find_all = |e: &Engine| {
            e.find("d", "c", &crate::FindQuery::new(Filter::match_all()), &NeverInterrupt).unwrap().docs
        };
        let got = on_small_stack(|| {
            let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
            let got = find_all(&e);
            // A snapshot holding them must replay too.
            e.compact().unwrap();
            got
        });
        assert_eq!(got, docs);
        let again = on_small_stack(|| find_all(&Engine::open(dir.path(), EngineOptions::default()).unwrap()));
        assert_eq!(again, docs);
        assert!(!journal::list_dir(dir.path()).unwrap().snapshots.is_empty());
    }

    #[test]
    fn coll_mod_survives_replay_and_snapshots_and_bypass_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        let insert = |e: &Engine, id: i32| e.insert("d", "c", vec![doc! {"_id": id}], true, &NeverInterrupt);
        {
            let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
            e.create_collection("d", "c", doc! {}).unwrap();
            e.coll_mod("d", "c", &doc! {"validator": {"a": {"$exists": true}}}).unwrap();
            assert_eq!(insert(&e, 1).write_errors[0].code, 121);
            assert_eq!(crate::bypassing_validation(true, || insert(&e, 1)).n, 1);
            assert_eq!(e.coll_mod("d", "nope", &doc! {"validationLevel": "off"}).unwrap_err().code, 26);
        }
        // Replayed from the journal, then from a snapshot.
        for compact in [true, false] {
            let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
            assert_eq!(e.list_collections("d")[0].options, doc! {"validator": {"a": {"$exists": true}}});
            assert_eq!(insert(&e, 2).write_errors[0].code, 121);
            if compact {
                e.compact().unwrap();
            }
        }
        assert!(!journal::list_dir(dir.path()).unwrap().snapshots.is_empty());
    }

    #[test]
    fn engine_is_send_sync_clone() {
        fn assert<T: Send + Sync + Clone>() {}
        assert::<Engine>();
    }

    #[test]
    fn catalog_operations() {
        let e = Engine::in_memory();
        e.create_collection("db", "a", doc! {}).unwrap();
        assert_eq!(e.create_collection("db", "a", doc! {}).unwrap_err().code, 48);
        assert_eq!(e.create_collection("db", "bad$name", doc! {}).unwrap_err().code, 73);
        e.insert("db", "a", vec![doc! {"_id": 1}], true, &NeverInterrupt);
        e.rename_collection(("db", "a"), ("db2", "b"), false).unwrap();
        assert!(e.list_collections("db").is_empty());
        assert_eq!(e.list_collections("db2")[0].name, "b");
        assert_eq!(e.count("db2", "b", &Filter::match_all(), 0, 0, &NeverInterrupt).unwrap(), 1);
        assert_eq!(e.rename_collection(("db", "a"), ("db", "z"), false).unwrap_err().code, 26);
        e.create_collection("db2", "c", doc! {}).unwrap();
        assert_eq!(e.rename_collection(("db2", "b"), ("db2", "c"), false).unwrap_err().code, 48);
        e.rename_collection(("db2", "b"), ("db2", "c"), true).unwrap();
        assert_eq!(e.list_collections("db2").len(), 1);
        assert!(e.drop_collection("db2", "c").unwrap());
        assert!(!e.drop_collection("db2", "c").unwrap());
        assert!(e.list_databases().is_empty());
        e.create_collection("x", "y", doc! {}).unwrap();
        assert!(e.drop_database("x").unwrap());
        assert!(!e.drop_database("x").unwrap());
    }

    #[test]
    fn index_lifecycle() {
        let e = Engine::in_memory();
        let out = e.create_indexes("db", "c", &[doc! {"key": {"a": 1, "b": -1}}], &NeverInterrupt).unwrap();
        assert_eq!(
            (out.num_indexes_before, out.num_indexes_after, out.created_collection_automatically),
            (1, 2, true)
        );
        let out = e.create_indexes("db", "c", &[doc! {"key": {"a": 1, "b": -1}}], &NeverInterrupt).unwrap();
        assert_eq!(out.note.as_deref(), Some("all indexes already exist"));
        assert_eq!(
            e.create_indexes("db", "c", &[doc! {"key": {"a": 1, "b": -1}, "name": "other"}], &NeverInterrupt)
                .unwrap_err()
                .code,
            85
        );
        assert_eq!(
            e.create_indexes("db", "c", &[doc! {"key": {"z": 1}, "name": "a_1_b_-1"}], &NeverInterrupt)
                .unwrap_err()
                .code,
            86
        );
        let names: Vec<String> = e
            .list_indexes("db", "c")
            .unwrap()
            .iter()
            .map(|d| d.get_str("name").unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["_id_", "a_1_b_-1"]);
        assert_eq!(e.drop_indexes("db", "c", &Bson::String("_id_".into())).unwrap_err().code, 72);
        assert_eq!(e.drop_indexes("db", "c", &Bson::String("nope".into())).unwrap_err().code, 27);
        assert_eq!(e.drop_indexes("db", "c", &Bson::Document(doc! {"a": 1, "b": -1})).unwrap(), 2);
        assert_eq!(e.drop_indexes("db", "c", &Bson::String("*".into())).unwrap(), 1);
        assert_eq!(e.drop_indexes("db", "nope", &Bson::String("*".into())).unwrap_err().code, 26);
        assert_eq!(e.list_indexes("db", "nope").unwrap_err().code, 26);
    }
}
