//! Small pure helpers for reading command fields the way mongod coerces them.

use bson::{Bson, Document};
use docplane_query::CommandError;

/// A number as i64 if it is integral (int32, int64, or a double without fraction).
pub fn as_i64(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.2e18 => Some(*f as i64),
        Bson::Decimal128(d) => d.to_string().parse::<i64>().ok(),
        _ => None,
    }
}

/// mongod's truthiness for flags like `{hello: 1}` or `upsert: true`.
pub fn truthy(b: &Bson) -> bool {
    match b {
        Bson::Boolean(v) => *v,
        Bson::Int32(i) => *i != 0,
        Bson::Int64(i) => *i != 0,
        Bson::Double(f) => *f != 0.0,
        Bson::Null | Bson::Undefined => false,
        _ => true,
    }
}

/// An optional boolean field (numbers accepted).
pub fn opt_bool(cmd: &Document, key: &str) -> Result<Option<bool>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(b @ (Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
            Ok(Some(truthy(b)))
        }
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'bool'",
            type_name(other)
        ))),
    }
}

/// An optional document field.
pub fn opt_doc<'a>(cmd: &'a Document, key: &str) -> Result<Option<&'a Document>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d)),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'object'",
            type_name(other)
        ))),
    }
}

/// An optional non-negative integer field.
pub fn opt_u64(cmd: &Document, key: &str) -> Result<Option<u64>, CommandError> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(b) => {
            let n = as_i64(b).ok_or_else(|| {
                CommandError::type_mismatch(format!(
                    "BSON field '{key}' is the wrong type '{}', expected a number",
                    type_name(b)
                ))
            })?;
            u64::try_from(n)
                .map(Some)
                .map_err(|_| CommandError::bad_value(format!("{key} must be non-negative, got {n}")))
        }
    }
}

/// A required string field.
pub fn req_str<'a>(cmd: &'a Document, key: &str) -> Result<&'a str, CommandError> {
    match cmd.get(key) {
        Some(Bson::String(s)) => Ok(s),
        None => Err(CommandError::new(
            40414,
            "Location40414",
            format!("BSON field '{key}' is missing but a required field"),
        )),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'string'",
            type_name(other)
        ))),
    }
}

/// An array of documents.
pub fn doc_array<'a>(v: Option<&'a Bson>, key: &str) -> Result<Vec<&'a Document>, CommandError> {
    match v {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|b| match b {
                Bson::Document(d) => Ok(d),
                other => Err(CommandError::type_mismatch(format!(
                    "BSON field '{key}' element is the wrong type '{}', expected type 'object'",
                    type_name(other)
                ))),
            })
            .collect(),
        None => Err(CommandError::new(
            40414,
            "Location40414",
            format!("BSON field '{key}' is missing but a required field"),
        )),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'array'",
            type_name(other)
        ))),
    }
}

/// mongod's type alias names for messages.
pub fn type_name(b: &Bson) -> &'static str {
    match b {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Undefined => "undefined",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::DbPointer(_) => "dbPointer",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::Symbol(_) => "symbol",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MaxKey => "maxKey",
        Bson::MinKey => "minKey",
    }
}

/// Validates a database name as mongod does (non-empty, no `/\. "$` or NUL, < 64 bytes).
pub fn check_db_name(db: &str) -> Result<(), CommandError> {
    if db.is_empty()
        || db.len() >= 64
        || db.chars().any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
    {
        return Err(CommandError::invalid_namespace(format!("Invalid database name: '{db}'")));
    }
    Ok(())
}

/// Validates a collection name (non-empty, no `$` except system names, no NUL).
pub fn check_coll_name(db: &str, coll: &str) -> Result<(), CommandError> {
    if coll.is_empty() || coll.contains('\0') || coll.contains('$') || coll.starts_with('.') {
        return Err(CommandError::invalid_namespace(format!("Invalid namespace specified '{db}.{coll}'")));
    }
    Ok(())
}

/// The collection named by the command's first field (a string), validated.
pub fn coll_arg<'a>(cmd: &'a Document, name: &str, db: &str) -> Result<&'a str, CommandError> {
    match cmd.get(name) {
        Some(Bson::String(s)) => {
            check_coll_name(db, s)?;
            Ok(s)
        }
        Some(other) => Err(CommandError::invalid_namespace(format!(
            "collection name has invalid type {}",
            type_name(other)
        ))),
        None => Err(CommandError::invalid_namespace("no collection name")),
    }
}

/// Splits `db.coll`.
pub fn split_ns(ns: &str) -> Result<(&str, &str), CommandError> {
    match ns.split_once('.') {
        Some((d, c)) if !d.is_empty() && !c.is_empty() => Ok((d, c)),
        _ => Err(CommandError::invalid_namespace(format!("Invalid namespace specified '{ns}'"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    #[test]
    fn numeric_coercion() {
        assert_eq!(as_i64(&Bson::Double(3.0)), Some(3));
        assert_eq!(as_i64(&Bson::Double(3.5)), None);
        assert_eq!(as_i64(&Bson::Double(f64::NAN)), None);
        assert_eq!(as_i64(&Bson::String("1".into())), None);
        assert!(truthy(&Bson::Int32(1)) && !truthy(&Bson::Int64(0)));
    }

    #[test]
    fn field_readers() {
        let d = doc! {"a": true, "b": "x", "n": -1, "arr": [{"x": 1}, 2]};
        assert_eq!(opt_bool(&d, "a").unwrap(), Some(true));
        assert!(opt_bool(&d, "b").is_err());
        assert!(opt_u64(&d, "n").is_err());
        assert_eq!(req_str(&d, "b").unwrap(), "x");
        assert_eq!(req_str(&d, "zz").unwrap_err().code, 40414);
        assert!(doc_array(d.get("arr"), "arr").is_err());
        assert!(check_db_name("a.b").is_err() && check_db_name("ok_db").is_ok());
        assert!(check_coll_name("d", "a$b").is_err());
        assert_eq!(split_ns("a.b.c").unwrap(), ("a", "b.c"));
    }
}
