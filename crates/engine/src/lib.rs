//! docplane-engine: the storage engine of docplane's embedded MongoDB-compatible node.
//!
//! Databases hold collections; a collection is an ordered map from `_id` to document plus
//! secondary indexes, all in memory (`collection`, `index`, `keys`). Durability comes from an
//! append-only journal of write records with CRC-32C framing and periodic snapshots (`journal`
//! documents the file format and the recovery rules, `record` the record encoding). Reads and
//! writes run over plans chosen from the filter's index predicates (`plan`) and proceed in chunks
//! of 128 documents, checking for interruption and releasing the collection lock between chunks
//! so that long scans never starve writers (`engine::crud`).
//!
//! The document logic (filters, projections, sorts, updates, pipelines) is `docplane-query`'s;
//! this crate never interprets a query operator itself.
//!
//! Concurrency: [`Engine`] is `Send + Sync + Clone` and blocking (the node calls it from
//! `spawn_blocking`). Lock order is catalog → collection → journal; nobody takes the catalog lock
//! while holding a collection lock, and a write appends its journal records while holding its
//! collection's write lock, so per-collection record order in the journal equals the order of
//! the changes in memory.
//!
//! Not supported (rejected or ignored, never silently wrong): text/hashed/geo/wildcard indexes,
//! partial indexes (createIndexes fails with 67); TTL
//! expiry (the option is stored and listed, not enforced). Collations: indexes and collection
//! defaults keep theirs (entries hold collation keys); queries run under the thread's
//! (`docplane_query::collation::scoped`), and the planner uses an index's string bounds and
//! order only under its own collation. `$out`/`$merge` are the node's
//! (`cmd::out_merge`, over this crate's writes); views are refused by the node's `create`.
//! Collection validators (`docplane_query::validator`) are checked by every write path here,
//! under the collection's lock (`Collection::check_valid`), and changed by `Engine::coll_mod`.

mod collection;
mod depth;
mod engine;
pub mod files;
mod index;
mod internal;
mod journal;
mod keys;
mod plan;
mod record;
mod types;
mod validation;

pub use depth::{MAX_DOCUMENT_DEPTH, exceeds_depth};
pub use engine::{AggStream, CappedListener, Engine, FindStream};
pub use internal::internal_error;
pub use journal::StorageError;
pub use types::*;
pub use validation::bypassing_validation;
