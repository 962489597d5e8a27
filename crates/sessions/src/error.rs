//! The session service's error: a refusal in the vendor's session vocabulary, or what went wrong
//! underneath (the node, the store).

use docplane_driver::DriverError;

/// Why a list, selection or kill did not happen (or did not complete).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Session ids malformed for the node kind, or naming no current operation.
    #[error("invalid session ids: {}", .0.join(", "))]
    InvalidSessionIds(Vec<String>),
    /// Session ids naming operations that are not active ("Inactive sessions cannot be
    /// terminated").
    #[error("inactive sessions cannot be terminated: {}", .0.join(", "))]
    InactiveSessions(Vec<String>),
    /// Session ids naming operations that no kill path may kill (the safety rails), each with
    /// its reason.
    #[error("protected sessions cannot be killed: {}", .0.iter().map(|(id, why)| format!("{id} ({why})")).collect::<Vec<_>>().join(", "))]
    Protected(Vec<(String, String)>),
    /// A selector kill matched more sessions than its `max`.
    #[error("the selector matches {matched} sessions, more than max {max}; nothing was killed")]
    TooManyMatches {
        /// Killable sessions matched.
        matched: usize,
        /// The caller's bound.
        max: usize,
    },
    /// A request refused before any node is touched (empty or oversized id list, a filter the
    /// service cannot apply).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The kill's record could not be committed: nothing was killed.
    #[error("the kill could not be recorded: {0}")]
    NotRecorded(String),
    /// The node could not be read or refused the command.
    #[error(transparent)]
    Node(#[from] DriverError),
}

/// Result alias of this crate.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;
