//! Reply documents: every error is `{ok: 0.0, errmsg, code, codeName}` (the Rust driver rejects errors
//! without `code`); successes end with `ok: 1.0`.

use bson::{Bson, Document};
use docplane_query::CommandError;

/// The error reply for `e`.
pub fn error_doc(e: &CommandError) -> Document {
    e.to_document()
}

/// Appends `ok: 1.0` unless the handler already set `ok`.
pub fn finish_ok(mut d: Document) -> Document {
    if !d.contains_key("ok") {
        d.insert("ok", 1.0);
    }
    d
}

/// mongod's answer to an unknown command.
pub fn command_not_found(name: &str) -> CommandError {
    CommandError::new(59, "CommandNotFound", format!("no such command: '{name}'"))
}

/// A short, single-line rendering of a command for messages (mongod prints the command in
/// "not authorized" errors), capped at `max` characters.
pub fn summarize(cmd: &Document, max: usize) -> String {
    let s = Bson::Document(cmd.clone()).into_relaxed_extjson().to_string();
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bson::doc;

    use super::*;

    #[test]
    fn error_has_all_fields() {
        let d = error_doc(&command_not_found("frob"));
        assert_eq!(d.get_f64("ok").unwrap(), 0.0);
        assert_eq!(d.get_i32("code").unwrap(), 59);
        assert_eq!(d.get_str("codeName").unwrap(), "CommandNotFound");
        assert_eq!(d.get_str("errmsg").unwrap(), "no such command: 'frob'");
        assert_eq!(finish_ok(doc! {"a": 1}).get_f64("ok").unwrap(), 1.0);
    }

    #[test]
    fn summarize_truncates_on_char_boundary() {
        let d = doc! {"k": "ééééééééééééééééééééé"};
        let s = summarize(&d, 10);
        assert!(s.ends_with("..."));
        assert!(s.len() <= 13);
    }
}
