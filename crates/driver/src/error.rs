//! The driver's error type: what went wrong talking to a node, without any HTTP meaning.
//!
//! Invariant: every failure of the official `mongodb` driver is classified here exactly once
//! (see [`DriverError::from_mongo`]), so callers match on a small closed set of variants and the
//! API layer can map each to a vendor error code with one `match`.

use std::time::Duration;

/// A failure while managing or talking to a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The node could not be reached (connection refused, DNS failure, no server selectable
    /// within the server-selection timeout, connection dropped).
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// An operation did not finish within the configured operation timeout.
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),
    /// The node answered with a command error.
    #[error("command failed ({code}): {message}")]
    CommandFailed {
        /// MongoDB error code (0 when the failure carries none).
        code: i32,
        /// The server's or driver's message.
        message: String,
    },
    /// Authentication with the node's stored credentials failed.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// The node runs a version docplane cannot manage (below 3.4, or refused by the driver's
    /// wire-version check).
    #[error("unsupported server version: {0}")]
    UnsupportedVersion(String),
    /// A request the driver refuses before touching any node (a malformed address, a topology
    /// that does not match the requested mode, a current-op stage the node's version lacks).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl DriverError {
    /// Classifies an error of the official driver.
    pub fn from_mongo(err: &mongodb::error::Error) -> Self {
        use mongodb::error::ErrorKind;
        match err.kind.as_ref() {
            ErrorKind::Command(c) => DriverError::CommandFailed { code: c.code, message: c.message.clone() },
            ErrorKind::Authentication { message, .. } => DriverError::AuthenticationFailed(message.clone()),
            ErrorKind::ServerSelection { message, .. } => DriverError::Unreachable(message.clone()),
            ErrorKind::Io(io) => DriverError::Unreachable(io.to_string()),
            ErrorKind::ConnectionPoolCleared { message, .. } => DriverError::Unreachable(message.clone()),
            ErrorKind::DnsResolve { message, .. } => DriverError::Unreachable(message.clone()),
            ErrorKind::IncompatibleServer { message, .. } => DriverError::UnsupportedVersion(message.clone()),
            ErrorKind::InvalidArgument { message, .. } => DriverError::InvalidRequest(message.clone()),
            ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
                DriverError::CommandFailed { code: w.code, message: w.message.clone() }
            }
            _ => DriverError::CommandFailed { code: 0, message: err.to_string() },
        }
    }

    /// True for failures that mean "the node is not there" rather than "the node said no";
    /// the health loop marks a node abnormal on these.
    pub fn is_connectivity(&self) -> bool {
        matches!(
            self,
            DriverError::Unreachable(_) | DriverError::Timeout(_) | DriverError::AuthenticationFailed(_)
        )
    }
}

impl From<mongodb::error::Error> for DriverError {
    fn from(err: mongodb::error::Error) -> Self {
        DriverError::from_mongo(&err)
    }
}

/// Result alias of this crate.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
