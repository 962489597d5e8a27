//! Public request and result types of the engine API.

use std::borrow::Cow;
use std::time::Duration;

use bson::{Bson, Document};
use docplane_query::{CommandError, Filter, Projection, SortSpec, Update};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// fsync the journal before acknowledging each write. Default false: writes are `write()`n
    /// before the ack (survives kill -9) and fsynced every [`EngineOptions::sync_interval`].
    pub sync_every_write: bool,
    /// Period of the background fsync (default 100 ms).
    pub sync_interval: Duration,
    /// Compaction starts once the journal exceeds this many bytes... (default 64 MiB)
    pub compact_min_journal_bytes: u64,
    /// ...and is this many times larger than the live data (default 4).
    pub compact_ratio: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            sync_every_write: false,
            sync_interval: Duration::from_millis(100),
            compact_min_journal_bytes: 64 << 20,
            compact_ratio: 4,
        }
    }
}

/// One database, as listDatabases shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseInfo {
    pub name: String,
    pub size_on_disk: u64,
    pub empty: bool,
}

/// One collection, as listCollections shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub name: String,
    pub options: Document,
    pub uuid: bson::Uuid,
}

/// A find request.
#[derive(Debug, Clone)]
pub struct FindQuery {
    pub filter: Filter,
    pub projection: Option<Projection>,
    pub sort: Option<SortSpec>,
    pub skip: u64,
    /// 0 = no limit.
    pub limit: u64,
    pub hint: Option<Bson>,
}

impl FindQuery {
    /// A query with only a filter.
    pub fn new(filter: Filter) -> FindQuery {
        FindQuery { filter, projection: None, sort: None, skip: 0, limit: 0, hint: None }
    }
}

/// Documents produced by a read, with explain-style statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOutput {
    pub docs: Vec<Document>,
    /// `COLLSCAN`, `IXSCAN { a: 1 }`, `IDHACK` or `EOF`.
    pub plan_summary: String,
    pub docs_examined: u64,
    pub keys_examined: u64,
}

/// One update statement.
#[derive(Debug, Clone)]
pub struct UpdateStatement {
    pub filter: Filter,
    pub update: Update,
    pub upsert: bool,
    pub multi: bool,
    pub hint: Option<Bson>,
    /// The statement's `collation` (the collection's default when it gives none).
    pub collation: docplane_query::collation::Requested,
}

/// One delete statement.
#[derive(Debug, Clone)]
pub struct DeleteStatement {
    pub filter: Filter,
    /// `limit: 1`: delete at most one document.
    pub limit_one: bool,
    /// The statement's `hint`: the index its scan uses (2 BadValue when it names none).
    pub hint: Option<Bson>,
    /// The statement's `collation` (the collection's default when it gives none).
    pub collation: docplane_query::collation::Requested,
}

impl DeleteStatement {
    /// A statement.
    pub fn new(filter: Filter, limit_one: bool) -> DeleteStatement {
        DeleteStatement { filter, limit_one, hint: None, collation: Default::default() }
    }
}

/// A per-statement error of a write batch.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteError {
    /// Index of the statement (or document) in the batch.
    pub index: usize,
    pub code: i32,
    pub code_name: Cow<'static, str>,
    pub errmsg: String,
    /// The error's extra fields ([`CommandError::info`]: DuplicateKey's `keyPattern`, `keyValue`).
    pub info: Option<Box<Document>>,
}

impl WriteError {
    pub(crate) fn new(index: usize, e: CommandError) -> WriteError {
        WriteError { index, code: e.code, code_name: e.code_name, errmsg: e.message, info: e.info }
    }
    /// The error as a `writeErrors` element: `{index, code, codeName, errmsg}` and its `info`
    /// (`keyPattern`, `keyValue` of a DuplicateKey, as mongod 4.2+ sends them).
    pub fn to_document(&self) -> Document {
        let mut d = bson::doc! {
            "index": i32::try_from(self.index).unwrap_or(i32::MAX),
            "code": self.code,
            "codeName": self.code_name.as_ref(),
            "errmsg": self.errmsg.clone(),
        };
        if let Some(info) = &self.info {
            d.extend(info.as_ref().clone());
        }
        d
    }
}

/// Result of insert/update/delete batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// Documents inserted / matched (update) / deleted.
    pub n: u64,
    pub n_modified: u64,
    /// (statement index, `_id`) of upserted documents.
    pub upserted: Vec<(usize, Bson)>,
    pub write_errors: Vec<WriteError>,
    /// Set when the batch stopped at an interrupt point (killOp, shutdown, maxTimeMS): the node
    /// replies with this error.
    pub interrupted: Option<CommandError>,
}

/// A findAndModify request.
#[derive(Debug, Clone)]
pub struct FindAndModify {
    pub filter: Filter,
    pub sort: Option<SortSpec>,
    pub remove: bool,
    pub update: Option<Update>,
    /// Return the document after the update.
    pub new: bool,
    pub fields: Option<Projection>,
    pub upsert: bool,
    pub hint: Option<Bson>,
}

/// Result of findAndModify: `value` and `lastErrorObject`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindAndModifyOutcome {
    pub value: Option<Document>,
    pub n: u64,
    pub updated_existing: bool,
    pub upserted: Option<Bson>,
}

/// Result of createIndexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateIndexesOutcome {
    pub num_indexes_before: u32,
    pub num_indexes_after: u32,
    pub created_collection_automatically: bool,
    /// `"all indexes already exist"` when nothing was created.
    pub note: Option<String>,
}

/// collStats figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollStats {
    pub ns: String,
    pub count: u64,
    pub size: u64,
    pub avg_obj_size: u64,
    pub storage_size: u64,
    pub nindexes: u32,
    pub total_index_size: u64,
    pub index_sizes: Vec<(String, u64)>,
    /// A capped collection's `maxSize` (bytes) and `max` (documents, if set).
    pub capped: Option<(u64, Option<u64>)>,
}

/// dbStats figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbStats {
    pub db: String,
    pub collections: u64,
    pub objects: u64,
    pub data_size: u64,
    pub storage_size: u64,
    pub indexes: u64,
    pub index_size: u64,
}

/// The journal's counters ([`crate::Engine::journal_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Appends (one per journaled change or batch) `write()`n so far.
    pub appends: u64,
    /// How many of those are known fsynced.
    pub durable_appends: u64,
    /// fsyncs of the journal so far (background, per write, `j: true` waits, flush, compaction).
    pub fsyncs: u64,
}
