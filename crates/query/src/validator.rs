//! Collection validators as mongod 7.0 has them: a query filter (`validator`), when it applies
//! (`validationLevel`) and what a failing write does (`validationAction`), plus the detailed
//! `errInfo` mongod 5.0+ attaches to 121 DocumentValidationFailure.
//!
//! The validator is parsed by the node's own matcher ([`Filter`]), so it supports exactly the
//! operators `find` does. What mongod refuses in a validator is refused here with mongod's code
//! (224 QueryFeatureNotAllowed for `$where`, `$text`, `$near`, `$nearSphere`, `$geoNear`; 17276
//! for a `$expr` reading an undefined variable); `$jsonSchema`, which mongod accepts and the
//! matcher does not implement, is refused with 115 naming it, never accepted and ignored.

use bson::{Bson, Document, doc};

use crate::error::{CommandError, Result};
use crate::filter::{Filter, bson_type_code, type_alias};
use crate::path::get_path;

/// `validationLevel`: which writes are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Every insert and update (mongod's default).
    Strict,
    /// Inserts, and updates of documents that already satisfy the validator.
    Moderate,
    /// Nothing.
    Off,
}

impl Level {
    /// The level named `s`, as `validationLevel` spells it.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "strict" => Some(Level::Strict),
            "moderate" => Some(Level::Moderate),
            "off" => Some(Level::Off),
            _ => None,
        }
    }
}

/// `validationAction`: what a write that fails the validator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It fails with 121 (mongod's default).
    Error,
    /// It succeeds; the node logs a warning.
    Warn,
}

impl Action {
    /// The action named `s`, as `validationAction` spells it.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "error" => Some(Action::Error),
            "warn" => Some(Action::Warn),
            _ => None,
        }
    }
}

/// A collection's validation settings, read from its options (`validator`,
/// `validationLevel`, `validationAction`).
#[derive(Debug, Clone)]
pub struct Validation {
    /// The validator as given (what listCollections shows and `errInfo` explains).
    pub spec: Document,
    filter: Filter,
    pub level: Level,
    pub action: Action,
}

/// The top-level operators mongod's validator parser refuses (`$where`: no JavaScript;
/// the others need an index or a sort a validator has no place for).
const NOT_ALLOWED: &[(&str, &str)] = &[
    ("$where", "$where is not allowed in this context"),
    ("$text", "$text is not allowed in this context"),
    ("$near", "$geoNear, $near, and $nearSphere are not allowed in this context"),
    ("$nearSphere", "$geoNear, $near, and $nearSphere are not allowed in this context"),
    ("$geoNear", "$geoNear, $near, and $nearSphere are not allowed in this context"),
];

/// Refuses what mongod refuses in a validator, and `$jsonSchema` (115), wherever it occurs:
/// at top level, inside `$and`/`$or`/`$nor`, or as a field's operator (`$near`).
fn check_allowed(d: &Document) -> Result<()> {
    for (k, v) in d {
        if k == "$jsonSchema" {
            return Err(CommandError::command_not_supported(
                "$jsonSchema is not supported by docplane's node (collection validators take query operators only)",
            ));
        }
        if let Some((_, msg)) = NOT_ALLOWED.iter().find(|(op, _)| op == k) {
            return Err(CommandError::new(
                crate::error::codes::QUERY_FEATURE_NOT_ALLOWED,
                "QueryFeatureNotAllowed",
                format!("Parsing of collection validator failed :: caused by :: {msg}"),
            ));
        }
        match v {
            Bson::Array(items) if matches!(k.as_str(), "$and" | "$or" | "$nor") => {
                for item in items {
                    if let Bson::Document(sub) = item {
                        check_allowed(sub)?;
                    }
                }
            }
            Bson::Document(sub) if !k.starts_with('$') && sub.keys().any(|s| s.starts_with('$')) => {
                check_allowed(sub)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a validator as mongod does for `create` and `collMod` (see the module's doc).
pub fn parse_validator(spec: &Document) -> Result<Filter> {
    check_allowed(spec)?;
    Filter::parse(spec)?.with_let(&crate::vars::LetVars::none())
}

impl Validation {
    /// The settings in a collection's `options`; `None` without a validator (or with `{}`,
    /// which mongod treats as none).
    pub fn from_options(options: &Document) -> Result<Option<Validation>> {
        let spec = match options.get("validator") {
            Some(Bson::Document(d)) if !d.is_empty() => d.clone(),
            _ => return Ok(None),
        };
        let filter = parse_validator(&spec)?;
        let level = options.get_str("validationLevel").ok().and_then(Level::parse).unwrap_or(Level::Strict);
        let action =
            options.get_str("validationAction").ok().and_then(Action::parse).unwrap_or(Action::Error);
        Ok(Some(Validation { spec, filter, level, action }))
    }

    /// The 121 a write of `new` (replacing `old`, for an update) fails with; `None` when the
    /// document passes or the level exempts the write. The action is the caller's to apply.
    pub fn violation(&self, new: &Document, old: Option<&Document>) -> Option<CommandError> {
        match self.level {
            Level::Off => return None,
            // mongod's moderate: an update of a document that already fails is not checked.
            Level::Moderate if old.is_some_and(|o| !self.filter.matches(o)) => return None,
            _ => {}
        }
        if self.filter.matches(new) {
            return None;
        }
        let mut info = Document::new();
        if let Some(id) = new.get("_id") {
            info.insert("failingDocumentId", id.clone());
        }
        info.insert("details", explain(&self.spec, new));
        Some(
            CommandError::new(
                crate::error::codes::DOCUMENT_VALIDATION_FAILURE,
                "DocumentValidationFailure",
                "Document failed validation",
            )
            .with_info(doc! {"errInfo": info}),
        )
    }
}

/// Whether `clause` (a filter document) matches `doc`.
fn holds(clause: &Document, doc: &Document) -> bool {
    Filter::parse(clause).is_ok_and(|f| f.matches(doc))
}

/// A filter document's clauses as mongod's parser sees them: one per top-level operator or
/// field, and one per operator of a field with several (`{a: {$gt: 1, $lt: 5}}` is two, both
/// children of the document's implicit `$and`); `$options` stays with its `$regex`.
fn clauses(d: &Document) -> Vec<Document> {
    let mut out = Vec::new();
    for (k, v) in d {
        if k == "$comment" {
            continue;
        }
        match v {
            Bson::Document(ops)
                if !k.starts_with('$') && ops.len() > 1 && ops.keys().all(|o| o.starts_with('$')) =>
            {
                for (op, arg) in ops {
                    if op == "$options" {
                        continue;
                    }
                    let mut one = doc! {op: arg.clone()};
                    if op == "$regex"
                        && let Some(o) = ops.get("$options")
                    {
                        one.insert("$options", o.clone());
                    }
                    out.push(doc! {k: one});
                }
            }
            _ => out.push(doc! {k: v.clone()}),
        }
    }
    out
}

/// mongod's explanation of why `doc` fails `spec` (or, `inverted`, why it matches, under a
/// `$not`/`$nor`): the `details` of `errInfo`.
pub fn explain(spec: &Document, doc: &Document) -> Document {
    explain_doc(spec, doc, false)
}

fn explain_doc(d: &Document, doc: &Document, inverted: bool) -> Document {
    let cl = clauses(d);
    match cl.as_slice() {
        [one] => explain_clause(one, doc, inverted),
        _ => explain_list("$and", &cl, doc, inverted),
    }
}

/// `$and`, `$or`, `$nor` (or a document's implicit `$and`): the clauses that explain the
/// failure, each with its index. A `$nor`'s clauses are explained inverted.
fn explain_list(op: &str, items: &[Document], doc: &Document, inverted: bool) -> Document {
    let child_inverted = if op == "$nor" { !inverted } else { inverted };
    // The clauses that explain the result: those failing (normal `$and`/`$or`), or those
    // matching (inverted `$and`/`$or`; normal `$nor`).
    let want_match = child_inverted;
    let key = if inverted { "clausesSatisfied" } else { "clausesNotSatisfied" };
    let mut list = Vec::new();
    for (i, c) in items.iter().enumerate() {
        if holds(c, doc) == want_match {
            let i = i64::try_from(i).unwrap_or(i64::MAX);
            list.push(Bson::Document(doc! {"index": i, "details": explain_doc(c, doc, child_inverted)}));
        }
    }
    doc! {"operatorName": op, key: list}
}

fn explain_clause(clause: &Document, doc: &Document, inverted: bool) -> Document {
    let Some((k, v)) = clause.iter().next() else { return Document::new() };
    match (k.as_str(), v) {
        ("$and" | "$or" | "$nor", Bson::Array(items)) => {
            let items: Vec<Document> = items.iter().filter_map(|b| b.as_document().cloned()).collect();
            explain_list(k, &items, doc, inverted)
        }
        ("$expr", _) => {
            let reason = if inverted { "expression did match" } else { "expression did not match" };
            doc! {"operatorName": "$expr", "specifiedAs": clause.clone(), "reason": reason}
        }
        ("$alwaysFalse" | "$alwaysTrue", _) => {
            let reason = if k == "$alwaysFalse" {
                "expression always evaluates to false"
            } else {
                "expression always evaluates to true"
            };
            doc! {"operatorName": k, "specifiedAs": clause.clone(), "reason": reason}
        }
        _ => explain_field(k, v, clause, doc, inverted),
    }
}

/// mongod's (normal, inverted) reason strings of a field operator.
fn reasons(op: &str) -> (&'static str, &'static str) {
    match op {
        "$in" => ("no matching value found in array", "matching value found in array"),
        "$exists" => ("path does not exist", "path does exist"),
        "$type" => ("type did not match", "type did match"),
        "$regex" => ("regular expression did not match", "regular expression did match"),
        "$elemMatch" => {
            ("array did not satisfy the child predicate", "array did satisfy the child predicate")
        }
        "$size" => ("array length was not equal to given size", "array length was equal to given size"),
        "$all" => ("array did not contain all specified values", "array did contain all specified values"),
        "$mod" => ("$mod did not evaluate to expected remainder", "$mod did evaluate to expected remainder"),
        "$bitsAllSet" | "$bitsAnySet" | "$bitsAllClear" | "$bitsAnyClear" => {
            ("bitwise operator failed to match", "bitwise operator matched successfully")
        }
        _ => ("comparison failed", "comparison succeeded"),
    }
}

/// The values mongod's error considers at `path` for `op`: each value reached, a leaf array
/// expanded into its elements before the array itself (comparisons, `$in`, `$mod`, bit tests),
/// without the array (`$type`, `$regex`), or not at all (the array operators `$size`,
/// `$elemMatch`, `$all`), as mongod's `LeafArrayBehavior`s for them are.
fn considered(doc: &Document, path: &str, op: &str) -> Vec<Bson> {
    let (expand, keep_array) = match op {
        "$size" | "$elemMatch" | "$all" => (false, true),
        "$type" | "$regex" => (true, false),
        _ => (true, true),
    };
    let mut out = Vec::new();
    for v in get_path(doc, path) {
        match v {
            Bson::Array(items) if expand => {
                out.extend(items.iter().cloned());
                if keep_array {
                    out.push(v.clone());
                }
            }
            _ => out.push(v.clone()),
        }
    }
    out
}

/// One field predicate (`{path: value}` or `{path: {$op: arg}}`).
fn explain_field(path: &str, v: &Bson, clause: &Document, doc: &Document, inverted: bool) -> Document {
    let (op, arg) = match v {
        Bson::Document(ops) if ops.keys().next().is_some_and(|o| o.starts_with('$')) => {
            ops.iter().next().map_or(("$eq", v), |(o, a)| (o.as_str(), a))
        }
        _ => ("$eq", v),
    };
    if op == "$not"
        && let Bson::Document(inner) = arg
    {
        let sub = doc! {path: inner.clone()};
        return doc! {"operatorName": "$not", "details": explain_doc(&sub, doc, !inverted)};
    }
    // `$ne`, `$nin` and `$exists: false` are mongod's negations of `$eq`, `$in`, `$exists`.
    let negated = match op {
        "$ne" | "$nin" => true,
        "$exists" => !crate::filter::truthy_flag(arg),
        _ => false,
    };
    let base = match op {
        "$ne" => "$eq",
        "$nin" => "$in",
        o => o,
    };
    let (normal, inv) = reasons(base);
    let flipped = inverted != negated;
    let values = considered(doc, path, base);
    let mut out = doc! {"operatorName": op, "specifiedAs": clause.clone()};
    if values.is_empty() && base != "$exists" {
        out.insert("reason", "field was missing");
        return out;
    }
    out.insert("reason", if flipped { inv } else { normal });
    if base == "$exists" {
        return out;
    }
    match values.as_slice() {
        [one] => out.insert("consideredValue", one.clone()),
        _ => out.insert("consideredValues", values.clone()),
    };
    if base == "$type" {
        let mut types: Vec<&str> = values.iter().map(|v| type_alias(bson_type_code(v))).collect();
        types.sort_unstable();
        types.dedup();
        match types.as_slice() {
            [one] => out.insert("consideredType", *one),
            _ => out.insert(
                "consideredTypes",
                types.iter().map(|t| Bson::String((*t).to_string())).collect::<Vec<_>>(),
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn contacts_example_from_mongods_jstests() {
        // jstests/core/doc_validation/doc_validation_error.js, "Contacts".
        let spec = doc! {"$or": [
            {"phone": {"$type": "string"}},
            {"email": {"$regex": bson::Regex{pattern: "@mongodb\\.com$".into(), options: String::new()}}},
            {"status": {"$in": ["Unknown", "Incomplete"]}},
        ]};
        let d = explain(&spec, &doc! {"email": "info@mongodb.co"});
        assert_eq!(d.get_str("operatorName").unwrap(), "$or");
        let list = d.get_array("clausesNotSatisfied").unwrap();
        assert_eq!(list.len(), 3);
        let first = list[0].as_document().unwrap();
        assert_eq!(
            first,
            &doc! {"index": 0_i64, "details": {"operatorName": "$type", "specifiedAs": {"phone": {"$type": "string"}}, "reason": "field was missing"}}
        );
        let second = list[1].as_document().unwrap().get_document("details").unwrap();
        assert_eq!(second.get_str("reason").unwrap(), "regular expression did not match");
        assert_eq!(second.get_str("consideredValue").unwrap(), "info@mongodb.co");
    }

    #[test]
    fn implicit_and_and_negations() {
        let spec = doc! {"a": {"$gt": 1, "$lt": 5}, "b": {"$ne": 2}};
        let d = explain(&spec, &doc! {"a": 7, "b": 2});
        assert_eq!(d.get_str("operatorName").unwrap(), "$and");
        let list = d.get_array("clausesNotSatisfied").unwrap();
        let idx: Vec<i64> = list.iter().map(|c| c.as_document().unwrap().get_i64("index").unwrap()).collect();
        assert_eq!(idx, vec![1, 2]);
        let ne = list[1].as_document().unwrap().get_document("details").unwrap();
        assert_eq!(ne.get_str("reason").unwrap(), "comparison succeeded");
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_validator(&doc! {"$jsonSchema": {}}).unwrap_err().code, 115);
        assert_eq!(parse_validator(&doc! {"$where": "1"}).unwrap_err().code, 224);
        assert_eq!(parse_validator(&doc! {"$or": [{"$text": {"$search": "x"}}]}).unwrap_err().code, 224);
        assert_eq!(parse_validator(&doc! {"p": {"$near": [0, 0]}}).unwrap_err().code, 224);
        assert_eq!(parse_validator(&doc! {"$expr": {"$eq": ["$a", "$$unbound"]}}).unwrap_err().code, 17276);
        assert!(parse_validator(&doc! {"$expr": {"$lt": ["$a", "$$NOW"]}}).is_ok());
    }

    #[test]
    fn moderate_skips_updates_of_invalid_documents() {
        let v = Validation::from_options(
            &doc! {"validator": {"a": {"$exists": true}}, "validationLevel": "moderate"},
        )
        .unwrap()
        .unwrap();
        assert!(v.violation(&doc! {"_id": 1}, Some(&doc! {"_id": 1})).is_none());
        assert!(v.violation(&doc! {"_id": 1}, Some(&doc! {"_id": 1, "a": 1})).is_some());
        let e = v.violation(&doc! {"_id": 1}, None).unwrap();
        assert_eq!(e.code, 121);
        let info = e.info.unwrap();
        assert_eq!(info.get_document("errInfo").unwrap().get_i32("failingDocumentId").unwrap(), 1);
    }
}
