//! Internal errors: the detail (file paths, OS errors) goes to the server log, the client gets
//! a generic message with an id that finds the log line.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

use docplane_query::CommandError;

static NEXT_ERROR_ID: AtomicU64 = AtomicU64::new(1);

/// `InternalError` (1) for a failure of `what` ("writing the journal"): logs `detail` at error
/// level with a process-unique error id and returns only `what` and that id to the client.
pub fn internal_error(what: &str, detail: impl Display) -> CommandError {
    let id = NEXT_ERROR_ID.fetch_add(1, Ordering::Relaxed);
    tracing::error!(error_id = id, what, detail = %detail, "internal error");
    CommandError::new(1, "InternalError", format!("{what} failed; see the server log (error id {id})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_message_has_no_detail() {
        let a = internal_error("writing the journal", "/secret/dir/journal.0001: No space left on device");
        let b = internal_error("writing the journal", "again");
        assert_eq!(a.code, 1);
        assert!(
            a.message.starts_with("writing the journal failed; see the server log (error id "),
            "{}",
            a.message
        );
        assert!(!a.message.contains("/secret"), "{}", a.message);
        assert_ne!(a.message, b.message, "each failure has its own id");
    }
}
