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

/// A document in the form mongod's `BSONObj::toString` gives it (`{ find: "c", filter: { a: 1 } }`),
/// which currentOp's `$truncated` and mongod's log lines use. Rendering stops once the text is
/// longer than `limit` bytes, so a huge command costs only what is shown.
pub fn shell_form(d: &Document, limit: usize) -> String {
    let mut out = String::new();
    write_doc(&mut out, d, limit);
    out
}

fn write_doc(out: &mut String, d: &Document, limit: usize) {
    if d.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{ ");
    for (i, (k, v)) in d.iter().enumerate() {
        if out.len() > limit {
            return;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push_str(": ");
        write_value(out, v, limit);
    }
    out.push_str(" }");
}

fn write_value(out: &mut String, v: &Bson, limit: usize) {
    match v {
        Bson::Document(d) => write_doc(out, d, limit),
        Bson::Array(a) if a.is_empty() => out.push_str("[]"),
        Bson::Array(a) => {
            out.push_str("[ ");
            for (i, x) in a.iter().enumerate() {
                if out.len() > limit {
                    return;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, x, limit);
            }
            out.push_str(" ]");
        }
        Bson::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if u32::from(c) < 0x20 => {
                        out.push_str(&format!("\\u{:04x}", u32::from(c)));
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Bson::Int32(n) => {
            out.push_str(&format!("{n}"));
        }
        Bson::Int64(n) => {
            out.push_str(&format!("{n}"));
        }
        Bson::Double(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
            out.push_str(&format!("{f:.1}"));
        }
        Bson::Double(f) => {
            out.push_str(&format!("{f}"));
        }
        Bson::Boolean(b) => {
            out.push_str(&format!("{b}"));
        }
        Bson::Null => out.push_str("null"),
        Bson::Undefined => out.push_str("undefined"),
        Bson::ObjectId(o) => {
            out.push_str(&format!("ObjectId('{o}')"));
        }
        Bson::DateTime(t) => {
            out.push_str(&format!("new Date({})", t.timestamp_millis()));
        }
        Bson::Timestamp(t) => {
            out.push_str(&format!("Timestamp({}, {})", t.time, t.increment));
        }
        Bson::Binary(b) => {
            let hex: String = b.bytes.iter().map(|x| format!("{x:02X}")).collect();
            out.push_str(&format!("BinData({}, {hex})", u8::from(b.subtype)));
        }
        Bson::RegularExpression(r) => {
            out.push_str(&format!("/{}/{}", r.pattern, r.options));
        }
        Bson::Decimal128(d) => {
            out.push_str(&format!("NumberDecimal(\"{d}\")"));
        }
        Bson::MinKey => out.push_str("MinKey"),
        Bson::MaxKey => out.push_str("MaxKey"),
        Bson::JavaScriptCode(c) => out.push_str(c),
        Bson::JavaScriptCodeWithScope(c) => out.push_str(&c.code),
        Bson::Symbol(s) => out.push_str(s),
        Bson::DbPointer(_) => out.push_str("DBRef(...)"),
    }
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
    fn shell_form_is_mongods_to_string() {
        let d =
            doc! {"find": "c", "filter": {"a": 1, "b": 2.0, "l": 3_i64, "s": [true, null]}, "e": {}, "x": []};
        assert_eq!(
            shell_form(&d, 1000),
            r#"{ find: "c", filter: { a: 1, b: 2.0, l: 3, s: [ true, null ] }, e: {}, x: [] }"#
        );
        // rendering stops past the limit
        let big = doc! {"insert": "c", "documents": (0..10_000).map(Bson::Int32).collect::<Vec<_>>()};
        let s = shell_form(&big, 100);
        assert!(s.len() < 120, "{}", s.len());
    }

    #[test]
    fn summarize_truncates_on_char_boundary() {
        let d = doc! {"k": "ééééééééééééééééééééé"};
        let s = summarize(&d, 10);
        assert!(s.ends_with("..."));
        assert!(s.len() <= 13);
    }
}
