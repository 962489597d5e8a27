//! The nesting-depth limit on stored documents.
//!
//! mongod refuses to store a document nested more than 100 levels deep (code 15 Overflow). The
//! wire accepts up to 200 levels, and several code paths (BSON decoding in recovery, encoding,
//! comparison) recurse once per level, so the limit also bounds the stack those paths need.
//!
//! Counting follows mongod: the top-level document is level 1; each non-empty embedded document
//! or array (or code-with-scope scope) adds a level; empty ones do not count. The check itself is
//! iterative, so it is safe on documents of any depth.

use bson::{Bson, Document};
use docplane_query::CommandError;

/// Deepest nesting accepted for a stored document (mongod's `getMaxDepthForUserStorage`).
pub const MAX_DOCUMENT_DEPTH: usize = 100;

enum Level<'a> {
    Doc(bson::document::Iter<'a>),
    Arr(std::slice::Iter<'a, Bson>),
}

/// Whether `doc` nests more than `max` levels deep (see the module docs for how levels count).
pub fn exceeds_depth(doc: &Document, max: usize) -> bool {
    if max == 0 {
        return true;
    }
    let mut stack = vec![Level::Doc(doc.iter())];
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Level::Doc(it) => it.next().map(|(_, v)| v),
            Level::Arr(it) => it.next(),
        };
        let Some(v) = next else {
            stack.pop();
            continue;
        };
        let child = match v {
            Bson::Document(d) if !d.is_empty() => Level::Doc(d.iter()),
            Bson::Array(a) if !a.is_empty() => Level::Arr(a.iter()),
            Bson::JavaScriptCodeWithScope(c) if !c.scope.is_empty() => Level::Doc(c.scope.iter()),
            _ => continue,
        };
        if stack.len() >= max {
            return true;
        }
        stack.push(child);
    }
    false
}

/// Fails with 15 Overflow when `doc` is too deep to store; `insert` picks mongod's insert
/// message, otherwise its update message.
pub(crate) fn check_storable_depth(doc: &Document, insert: bool) -> Result<(), CommandError> {
    if !exceeds_depth(doc, MAX_DOCUMENT_DEPTH) {
        return Ok(());
    }
    let message = if insert {
        format!("cannot insert document because it exceeds {MAX_DOCUMENT_DEPTH} levels of nesting")
    } else {
        format!("Document exceeds maximum nesting depth of {MAX_DOCUMENT_DEPTH}")
    };
    Err(CommandError::new(15, "Overflow", message))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    /// `{a: {a: ... {a: 1}}}` with `depth` documents in all (mongod's makeNestedObject).
    fn nested(depth: usize) -> Document {
        let mut d = doc! {"a": 1};
        for _ in 1..depth {
            d = doc! {"a": d};
        }
        d
    }

    /// `{a: [[...[1]...]]}` with `depth` levels counting the top document.
    fn nested_array(depth: usize) -> Document {
        let mut v = Bson::Array(vec![Bson::Int32(1)]);
        for _ in 2..depth {
            v = Bson::Array(vec![v]);
        }
        doc! {"a": v}
    }

    #[test]
    fn counts_levels_like_mongod() {
        assert!(!exceeds_depth(&doc! {}, 1));
        assert!(!exceeds_depth(&doc! {"a": 1}, 1));
        assert!(exceeds_depth(&doc! {"a": {"b": 1}}, 1));
        assert!(!exceeds_depth(&doc! {"a": {"b": 1}}, 2));
        // empty embedded documents and arrays do not count
        assert!(!exceeds_depth(&doc! {"a": {}, "b": []}, 1));
        for n in [1, 2, 50, 99, 100] {
            assert!(!exceeds_depth(&nested(n), MAX_DOCUMENT_DEPTH), "{n}");
            assert!(!exceeds_depth(&nested_array(n.max(2)), MAX_DOCUMENT_DEPTH), "{n}");
        }
        assert!(exceeds_depth(&nested(101), MAX_DOCUMENT_DEPTH));
        assert!(exceeds_depth(&nested_array(101), MAX_DOCUMENT_DEPTH));
        // the deep branch may come after shallow siblings
        let d = doc! {"x": [1, {"y": 2}], "z": nested(100)};
        assert!(exceeds_depth(&d, MAX_DOCUMENT_DEPTH));
        assert!(!exceeds_depth(&d, MAX_DOCUMENT_DEPTH + 1));
    }

    #[test]
    fn overflow_error_codes() {
        assert!(check_storable_depth(&nested(100), true).is_ok());
        let e = check_storable_depth(&nested(101), true).unwrap_err();
        assert_eq!((e.code, e.code_name.as_ref()), (15, "Overflow"));
        assert!(e.message.contains("100 levels of nesting"), "{}", e.message);
        let e = check_storable_depth(&nested(101), false).unwrap_err();
        assert_eq!(e.message, "Document exceeds maximum nesting depth of 100");
    }
}
