//! docplane-query: the pure document logic of docplane's embedded MongoDB-compatible node.
//!
//! No IO and no threads: errors ([`CommandError`]), interruption points ([`Interrupt`]),
//! BSON comparison ([`cmp_bson`]), dotted paths ([`path`]), the query matcher ([`Filter`]),
//! projections ([`Projection`]), sort specifications ([`SortSpec`]), update operators
//! ([`Update`]) and the aggregation pipeline ([`Pipeline`]) with its expression language
//! ([`expr`]).
//!
//! Architecture invariants:
//! - Every error that reaches a client is a [`CommandError`] carrying MongoDB's code and
//!   codeName; parsing (`Filter::parse`, `Update::parse`, `Pipeline::parse`, ...) reports the
//!   same codes the server does, so drivers see the errors they expect.
//! - Parsed objects are immutable and `Clone + Send + Sync`; parse once, apply to many
//!   documents.
//! - Work over many documents calls [`Interrupt::check`] at least every
//!   [`interrupt::CHECK_EVERY`] documents and once per pipeline stage, and
//!   [`interrupt::poll`] at every document, expression evaluation, sort comparison and every few
//!   thousand elements of an array operator, so no step runs long between interrupt points.
//! - The positional `$` operator needs the query: use [`Update::apply_with_query`] and
//!   [`Projection::apply_with_query`] when [`Update::needs_query`] /
//!   [`Projection::has_positional`] say so.
//! - [`Filter::index_predicates`] is safe for multikey indexes; bounds are supersets and every
//!   candidate document must still pass [`Filter::matches`].

pub mod aggregate;
pub mod collation;
pub mod compare;
pub mod error;
pub mod expr;
pub mod filter;
pub mod interrupt;
pub mod mem;
pub mod path;
pub mod projection;
pub mod sort;
pub mod update;
pub mod validator;
pub mod vars;

pub use aggregate::{DocSource, Pipeline, PipelineEnv, StreamState};
pub use collation::Collation;
pub use compare::{bson_eq, canonical_key, canonical_type_order, cmp_bson, cmp_bson_binary, cmp_documents};
pub use error::{CommandError, Result};
pub use filter::{Filter, IndexPredicate};
pub use interrupt::{Interrupt, NeverInterrupt};
pub use path::{Fields, get_path, get_path_exact, remove_path, set_path};
pub use projection::{Projection, ProjectionKind};
pub use sort::SortSpec;
pub use update::Update;
pub use vars::LetVars;
