//! docplane-sessions: the session service. The vendor's "sessions" are a node's current
//! operations; this crate lists, selects and kills them, verifies kills, records them in the
//! audit chain and applies the safety rails and the privacy setting, for every caller (the DDS
//! API, the CLI through it, and the rule enforcer). It talks to nodes only through
//! `docplane_driver`'s [`NodeTransport`](docplane_driver::NodeTransport) and knows nothing of
//! HTTP.
//!
//! - [`ids`]: session ids (`opid`, `shard:opid`, idle ids) parsed for a node kind;
//! - [`record`]: a `$currentOp` entry as a [`SessionRecord`], and a kill's [`KillTarget`]
//!   snapshot;
//! - [`select`]: the vendor's filter vocabulary, filtering, ordering and paging (pure), and
//!   [`pushdown`], the same as one aggregation the node runs;
//! - [`kill`]: prepare (check all-or-nothing), send, verify;
//! - [`privacy`], [`rails`]: the placeholder for literal values, the operations never killed;
//! - [`rules`]: kill-op rules (matching, victims, node types), enforced by
//!   [`SessionService::enforce`], or by the node itself ([`native`]:
//!   [`SessionService::enforce_native`] installs them and records the node's events);
//!   [`conns`]: connection statistics;
//! - [`audit`]: kill records (intent before killOp, outcome after) in the project's hash chain;
//! - [`service`]: [`SessionService`], the one sequence every list and kill path runs.

pub mod audit;
pub mod conns;
pub mod error;
pub mod ids;
pub mod kill;
pub mod native;
pub mod privacy;
pub mod pushdown;
pub mod rails;
pub mod record;
pub mod rules;
pub mod select;
pub mod service;

pub use audit::{Actor, KillRecorder, KillScope};
pub use error::{Result, SessionError};
pub use ids::{MAX_KILL_IDS, SessionId, parse_session_ids};
pub use kill::{KillOutcome, KillReport, KillStatus, PreparedKill};
pub use native::{NativeMemory, NativeMode};
pub use record::{KillTarget, SessionRecord};
pub use select::{SessionFilter, SessionPage, SessionQuery};
pub use service::{
    KILL_PHASES, KillResult, MatchOutcome, MatchedSession, NodeRef, ObserveMemory, RuleAction, Selection,
    SelectionResult, SessionService, micros,
};
