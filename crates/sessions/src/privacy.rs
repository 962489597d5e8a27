//! Privacy: a command with its literal values replaced by typed placeholders, its shape kept.
//!
//! When an instance's session settings say `redact_operations`, the list API shows each
//! operation's command through [`shape`] (or [`shape_text`] for text already rendered as relaxed
//! extended JSON), so that the people who may list sessions see what runs (which command, on
//! which collection, which fields and operators, how the pipeline is built) but none of the
//! application's data (an email in a filter, an `_id`, a document being inserted).
//!
//! # The placeholders
//!
//! They follow MongoDB's own debug query shapes (MongoDB 7/8 query stats, `$queryStats`, with
//! `LiteralSerializationPolicy::kToDebugTypeString`; `debugTypeString` in the server's
//! `src/mongo/db/query/serialization_options.cpp`). A literal becomes the string naming its
//! type:
//!
//! | literal | placeholder |
//! |---|---|
//! | string, symbol | `"?string"` |
//! | int32, int64, double, decimal128 | `"?number"` |
//! | boolean | `"?bool"` |
//! | null / undefined | `"?null"` / `"?undefined"` |
//! | ObjectId | `"?objectId"` |
//! | date / timestamp | `"?date"` / `"?timestamp"` |
//! | binary (UUIDs too) | `"?binData"` |
//! | regular expression | `"?regex"` |
//! | JavaScript (with scope) | `"?javascript"` (`"?javascriptWithScope"`) |
//! | DBPointer, MinKey, MaxKey | `"?dbPointer"`, `"?minKey"`, `"?maxKey"` |
//! | a document that is one literal (`$literal`'s operand) | `"?object"` |
//!
//! # Arrays
//!
//! An array whose elements are all literals (no document, no array, and in an aggregation
//! expression no field path) is one literal list, as MongoDB shapes `$in: [...]`: it becomes
//! `"?array<T>"` when every element has placeholder `T` (`"?array<?number>"`), `"?array<>"` when
//! they differ, and `"[]"` when it is empty; its length is not shown. Any other array (a pipeline,
//! `$and`'s clauses, `updates`, `documents`, an expression's argument list with a field path in
//! it) keeps its length and each element is shaped in place. Two deviations from MongoDB, both
//! revealing nothing more: numbers of different BSON types count as one type (`[1, 2.5]` is
//! `"?array<?number>"`, MongoDB says `"?array<>"`), and an array of documents keeps its
//! documents' field names instead of becoming `"?array<?object>"`.
//!
//! # What stays as it is
//!
//! Field names, operator names and nesting stay everywhere (field names are the schema, not the
//! data): `{email: "a@b.c"}` is `{email: "?string"}`, an inserted `{name: "x", tags: ["a"]}` is
//! `{name: "?string", tags: "?array<?string>"}`. Values stay only where they identify something
//! rather than carry the application's data:
//! - the command name's value when it names a collection (`find: "users"`; a known set of
//!   commands, see `COLLECTION_COMMANDS`), a getMore's cursor id, `1`/`true` for any command
//!   (`{ping: 1}`), and an `explain`'s inner command, which is shaped as a command. Any other
//!   first value is a literal, so a legacy filter that reaches here as a document is never
//!   mistaken for a command;
//! - at the top level of the command: `$db` and the driver's and server's options (`lsid`,
//!   `txnNumber`, read/write concerns, read preference, `$clusterTime`, `maxTimeMS`,
//!   `batchSize`, `cursor`, `ordered`, `upsert`, `new`, `hint`, `collation`, distinct's `key`...;
//!   the list is `KEPT_OPTIONS`), and in an `updates` / `deletes` statement `upsert`, `multi`,
//!   `upsertSupplied`, `limit`, `hint` and `collation`;
//! - sort specifications (`sort`, an update statement's `sort`, `$sort`): directions and
//!   `{$meta: ...}` are not literals (MongoDB's shapes keep them too); a sort value that is
//!   anything else makes the whole spec a literal;
//! - projections (`projection`, `fields`, `$project`): inclusion flags (numbers, booleans) and
//!   `$meta`; computed fields are expressions;
//! - in aggregation expressions (pipeline stages, `$expr`, `let`): strings starting with `$`,
//!   which MongoDB reads as field paths (`"$price"`) or variables (`"$$NOW"`) there, and `$meta`'s
//!   keyword; `$literal`'s operand is one literal, whatever its type (`{$literal: "?object"}`);
//! - identifiers of stages: `$lookup`'s `from`, `localField`, `foreignField`, `as`;
//!   `$graphLookup`'s `from`, `connectFromField`, `connectToField`, `as`, `depthField`;
//!   `$unionWith`'s collection; `$out`; `$merge`'s `into`, `on`, `whenMatched` (unless a
//!   pipeline), `whenNotMatched`; `$count`; `$unset`; `$unwind`'s path and `includeArrayIndex`;
//!   `$geoNear`'s `distanceField`, `includeLocs`, `key`, `spherical`; `$rename`'s new names; and
//!   the options of the administrative stages (`$currentOp`, `$collStats`, `$indexStats`,
//!   `$planCacheStats`, `$listSessions`, `$listLocalSessions`).
//!
//! Everything else is a literal: filters' values (`$in` lists, `$regex`, `$exists`, `$type`,
//! geometry), update values, inserted documents, `limit`/`skip` (as MongoDB shapes them),
//! `comment`, `min`/`max`, `$limit`/`$skip`/`$sample`, and any field, command or stage this
//! module does not know: unknown means replaced, never shown. A command mongod cut because it
//! was too large (`{$truncated: "<text of the command>"}`) is `{$truncated: "?string"}`.
//! Nesting deeper than [`MAX_DEPTH`] is replaced by its type placeholder as a whole.

use mongodb::bson::{Bson, Document};

/// Documents and arrays nested deeper than this are replaced as a whole by their placeholder.
pub const MAX_DEPTH: usize = 100;

/// What a caller may show instead of a command text [`shape_text`] could not read.
pub const UNREADABLE: &str = r#"{"?": "?unreadable"}"#;

/// Commands whose first value names a collection (or a namespace), which is not user data.
const COLLECTION_COMMANDS: &[&str] = &[
    "aggregate",
    "analyze",
    "analyzeShardKey",
    "checkMetadataConsistency",
    "cloneCollectionAsCapped",
    "collMod",
    "collStats",
    "compact",
    "configureQueryAnalyzer",
    "convertToCapped",
    "count",
    "create",
    "createIndexes",
    "dataSize",
    "delete",
    "deleteIndexes",
    "distinct",
    "drop",
    "dropIndexes",
    "find",
    "findAndModify",
    "findandmodify",
    "geoNear",
    "geoSearch",
    "insert",
    "killCursors",
    "listIndexes",
    "mapReduce",
    "mapreduce",
    "mergeChunks",
    "moveChunk",
    "moveCollection",
    "planCacheClear",
    "planCacheClearFilters",
    "planCacheListFilters",
    "planCacheSetFilter",
    "reIndex",
    "refineCollectionShardKey",
    "renameCollection",
    "reshardCollection",
    "shardCollection",
    "split",
    "splitVector",
    "unshardCollection",
    "update",
    "validate",
];

/// Top-level fields kept as they are: the database, and options of the driver and the server
/// that say how a command runs, not what data it touches.
const KEPT_OPTIONS: &[&str] = &[
    "$clusterTime",
    "$configTime",
    "$db",
    "$readPreference",
    "$topologyTime",
    "allowDiskUse",
    "allowPartialResults",
    "apiDeprecationErrors",
    "apiStrict",
    "apiVersion",
    "autocommit",
    "awaitData",
    "batchSize",
    "bypassDocumentValidation",
    "collation",
    "collection",
    "cursor",
    "cursors",
    "databaseVersion",
    "exhaust",
    "fromMongos",
    "hint",
    "key",
    "lsid",
    "maxAwaitTimeMS",
    "maxTimeMS",
    "maxTimeMSOpOnly",
    "needsMerge",
    "new",
    "noCursorTimeout",
    "ordered",
    "rawData",
    "readConcern",
    "readOnce",
    "remove",
    "returnKey",
    "shardVersion",
    "showRecordId",
    "singleBatch",
    "startTransaction",
    "stmtId",
    "stmtIds",
    "tailable",
    "txnNumber",
    "upsert",
    "verbosity",
    "writeConcern",
];

/// Stages whose whole specification is administrative options, kept as they are.
const KEPT_STAGES: &[&str] =
    &["$collStats", "$currentOp", "$indexStats", "$listLocalSessions", "$listSessions", "$planCacheStats"];

/// `command` with every literal replaced by its typed placeholder (see the module doc for the
/// exact rules). Pure; never fails; the result holds no string, number or other scalar of
/// `command` outside the positions the module doc lists.
pub fn shape(command: &Document) -> Document {
    shape_command(command, 0)
}

/// Why [`shape_text`] could not read a command text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeTextError {
    /// Not JSON (for example a snapshot cut at its size limit).
    #[error("the operation is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("the operation is not a JSON object")]
    NotAnObject,
    /// A JSON object whose extended-JSON values are malformed (`{"$oid": 5}`).
    #[error("the operation is not valid extended JSON: {0}")]
    BadExtendedJson(String),
}

/// [`shape`] for a command already rendered as (relaxed or canonical) extended JSON text, as the
/// list API's `operation` is; the result is relaxed extended JSON. A text that cannot be read is
/// an error, never passed through: callers show [`UNREADABLE`] (or nothing) instead.
pub fn shape_text(operation_json: &str) -> Result<String, ShapeTextError> {
    let value: serde_json::Value =
        serde_json::from_str(operation_json).map_err(|e| ShapeTextError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ShapeTextError::NotAnObject);
    }
    match Bson::try_from(value) {
        Ok(Bson::Document(command)) => Ok(Bson::Document(shape(&command)).into_relaxed_extjson().to_string()),
        // An object that is one extended-JSON value (`{"$oid": ...}`) is a literal, not a command.
        Ok(_) => Err(ShapeTextError::NotAnObject),
        Err(e) => Err(ShapeTextError::BadExtendedJson(e.to_string())),
    }
}

/// The placeholder of one literal value taken as a whole (a document is `"?object"`, an array
/// follows the array rule of the module doc with documents counted as `?object`).
pub fn placeholder(value: &Bson) -> Bson {
    match value {
        Bson::Array(items) => Bson::String(array_placeholder(items.iter().map(type_name))),
        other => Bson::String(type_name(other).to_owned()),
    }
}

fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::String(_) | Bson::Symbol(_) => "?string",
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => "?number",
        Bson::Boolean(_) => "?bool",
        Bson::Null => "?null",
        Bson::Undefined => "?undefined",
        Bson::ObjectId(_) => "?objectId",
        Bson::DateTime(_) => "?date",
        Bson::Timestamp(_) => "?timestamp",
        Bson::Binary(_) => "?binData",
        Bson::RegularExpression(_) => "?regex",
        Bson::JavaScriptCode(_) => "?javascript",
        Bson::JavaScriptCodeWithScope(_) => "?javascriptWithScope",
        Bson::DbPointer(_) => "?dbPointer",
        Bson::MinKey => "?minKey",
        Bson::MaxKey => "?maxKey",
        Bson::Document(_) => "?object",
        Bson::Array(_) => "?array",
    }
}

/// `"[]"`, `"?array<T>"` or `"?array<>"` for a list of element placeholders.
fn array_placeholder<'a>(mut types: impl Iterator<Item = &'a str>) -> String {
    match types.next() {
        None => "[]".to_owned(),
        Some(first) => {
            if types.all(|t| t == first) {
                format!("?array<{first}>")
            } else {
                "?array<>".to_owned()
            }
        }
    }
}

fn literal_str(value: &Bson) -> Bson {
    Bson::String(type_name(value).to_owned())
}

/// How the values of a position are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// Data: every scalar is a literal.
    Literal,
    /// An aggregation expression: `$`-prefixed strings are field paths or variables.
    Expr,
}

fn is_scalar(value: &Bson) -> bool {
    !matches!(value, Bson::Document(_) | Bson::Array(_))
}

fn is_field_path(value: &Bson) -> bool {
    matches!(value, Bson::String(s) if s.starts_with('$'))
}

fn is_one(value: &Bson) -> bool {
    match value {
        Bson::Int32(n) => *n == 1,
        Bson::Int64(n) => *n == 1,
        Bson::Double(n) => *n == 1.0,
        Bson::Boolean(b) => *b,
        _ => false,
    }
}

/// An array: one literal list, or shaped element by element (module doc, "Arrays").
fn array(items: &[Bson], ctx: Ctx, depth: usize) -> Bson {
    let literal_list = items.iter().all(|v| is_scalar(v) && !(ctx == Ctx::Expr && is_field_path(v)));
    if literal_list {
        return Bson::String(array_placeholder(items.iter().map(type_name)));
    }
    Bson::Array(
        items
            .iter()
            .map(|v| match ctx {
                Ctx::Literal => literal(v, depth + 1),
                Ctx::Expr => expr(v, depth + 1),
            })
            .collect(),
    )
}

/// Data: field names kept, every scalar replaced.
fn literal(value: &Bson, depth: usize) -> Bson {
    if depth > MAX_DEPTH {
        return placeholder(value);
    }
    match value {
        Bson::Document(d) => Bson::Document(map_values(d, |_, v| literal(v, depth + 1))),
        Bson::Array(items) => array(items, Ctx::Literal, depth),
        other => literal_str(other),
    }
}

fn map_values(d: &Document, mut f: impl FnMut(&str, &Bson) -> Bson) -> Document {
    d.iter().map(|(k, v)| (k.clone(), f(k, v))).collect()
}

/// A query filter: like data, except that `$expr` holds an aggregation expression and the
/// logical operators and `$elemMatch` hold filters again.
fn filter(value: &Bson, depth: usize) -> Bson {
    let Bson::Document(d) = value else { return literal(value, depth) };
    if depth > MAX_DEPTH {
        return placeholder(value);
    }
    Bson::Document(map_values(d, |k, v| match (k, v) {
        ("$expr", _) => expr(v, depth + 1),
        ("$and" | "$or" | "$nor", Bson::Array(clauses)) => {
            Bson::Array(clauses.iter().map(|c| filter(c, depth + 2)).collect())
        }
        _ if k.starts_with('$') => literal(v, depth + 1),
        _ => field_predicate(v, depth + 1),
    }))
}

/// The value of a field in a filter: an operator document (`{$gt: 5}`) or a literal to match.
fn field_predicate(value: &Bson, depth: usize) -> Bson {
    match value {
        Bson::Document(ops)
            if depth <= MAX_DEPTH && ops.keys().next().is_some_and(|k| k.starts_with('$')) =>
        {
            Bson::Document(map_values(ops, |op, v| match op {
                "$elemMatch" => filter(v, depth + 1),
                "$not" => field_predicate(v, depth + 1),
                _ => literal(v, depth + 1),
            }))
        }
        other => literal(other, depth),
    }
}

/// An aggregation expression.
fn expr(value: &Bson, depth: usize) -> Bson {
    if depth > MAX_DEPTH {
        return placeholder(value);
    }
    match value {
        Bson::String(s) if s.starts_with('$') => value.clone(),
        Bson::Array(items) => array(items, Ctx::Expr, depth),
        Bson::Document(d) => {
            if let Some(operand) = d.get("$literal")
                && d.len() == 1
            {
                let mut out = Document::new();
                out.insert("$literal", placeholder(operand));
                return Bson::Document(out);
            }
            Bson::Document(map_values(d, |k, v| match (k, v) {
                ("$meta", Bson::String(_)) => v.clone(),
                _ => expr(v, depth + 1),
            }))
        }
        other => literal_str(other),
    }
}

/// A sort specification: kept when every value is a direction or `{$meta: ...}`.
fn sort_spec(value: &Bson, depth: usize) -> Bson {
    let is_direction = |v: &Bson| match v {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => true,
        Bson::Document(m) => m.len() == 1 && matches!(m.get("$meta"), Some(Bson::String(_))),
        _ => false,
    };
    match value {
        Bson::Document(d) if d.values().all(is_direction) => value.clone(),
        other => literal(other, depth),
    }
}

/// A projection: inclusion flags and `$meta` kept, `$elemMatch` a filter, the rest expressions.
fn projection(value: &Bson, depth: usize) -> Bson {
    let Bson::Document(d) = value else { return literal(value, depth) };
    Bson::Document(map_values(d, |_, v| match v {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Boolean(_) => v.clone(),
        Bson::Document(inner) if inner.len() == 1 && inner.contains_key("$elemMatch") => {
            Bson::Document(map_values(inner, |_, m| filter(m, depth + 2)))
        }
        _ => expr(v, depth + 1),
    }))
}

/// An update: a pipeline, an operator document, or a replacement document (data).
fn update_spec(value: &Bson, depth: usize) -> Bson {
    match value {
        Bson::Array(stages) => pipeline(stages, depth),
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
            Bson::Document(map_values(d, |op, v| match (op, v) {
                // New field names, not data.
                ("$rename", Bson::Document(names))
                    if names.values().all(|n| matches!(n, Bson::String(_))) =>
                {
                    v.clone()
                }
                _ => literal(v, depth + 1),
            }))
        }
        other => literal(other, depth),
    }
}

fn pipeline(stages: &[Bson], depth: usize) -> Bson {
    if depth > MAX_DEPTH {
        return placeholder(&Bson::Array(stages.to_vec()));
    }
    Bson::Array(
        stages
            .iter()
            .map(|stage| match stage {
                Bson::Document(d) => {
                    Bson::Document(map_values(d, |name, spec| stage_spec(name, spec, depth + 2)))
                }
                other => literal(other, depth + 1),
            })
            .collect(),
    )
}

/// Keeps the listed identifiers of a stage (strings and booleans; a document only for `from`,
/// `{db, coll}`), shapes the fields `rest` names, and treats every other field as data.
fn stage_fields(
    spec: &Bson,
    depth: usize,
    kept: &[&str],
    rest: impl Fn(&str, &Bson) -> Option<Bson>,
) -> Bson {
    let Bson::Document(d) = spec else { return literal(spec, depth) };
    Bson::Document(map_values(d, |k, v| {
        let identifier = match v {
            Bson::String(_) | Bson::Boolean(_) => true,
            Bson::Document(_) => k == "from",
            _ => false,
        };
        if identifier && kept.contains(&k) {
            return v.clone();
        }
        rest(k, v).unwrap_or_else(|| literal(v, depth + 1))
    }))
}

fn stage_spec(name: &str, spec: &Bson, depth: usize) -> Bson {
    if depth > MAX_DEPTH {
        return placeholder(spec);
    }
    let d = depth + 1;
    match name {
        "$match" => filter(spec, d),
        "$sort" => sort_spec(spec, d),
        "$project" => projection(spec, d),
        "$addFields" | "$set" | "$group" | "$replaceRoot" | "$replaceWith" | "$bucket" | "$bucketAuto"
        | "$sortByCount" | "$redact" | "$setWindowFields" | "$densify" | "$fill" => expr(spec, d),
        "$count" | "$out" | "$unset" => match spec {
            Bson::String(_) => spec.clone(),
            Bson::Array(names) if names.iter().all(|n| matches!(n, Bson::String(_))) => spec.clone(),
            Bson::Document(_) if name == "$out" => spec.clone(),
            other => literal(other, d),
        },
        "$unwind" => match spec {
            Bson::String(_) => expr(spec, d),
            _ => stage_fields(spec, d, &["includeArrayIndex", "preserveNullAndEmptyArrays"], |k, v| {
                (k == "path").then(|| expr(v, d + 1))
            }),
        },
        "$lookup" => {
            stage_fields(spec, d, &["from", "localField", "foreignField", "as"], |k, v| match (k, v) {
                ("let", _) => Some(expr(v, d + 1)),
                ("pipeline", Bson::Array(stages)) => Some(pipeline(stages, d + 1)),
                _ => None,
            })
        }
        "$graphLookup" => stage_fields(
            spec,
            d,
            &["from", "connectFromField", "connectToField", "as", "depthField"],
            |k, v| match k {
                "startWith" => Some(expr(v, d + 1)),
                "restrictSearchWithMatch" => Some(filter(v, d + 1)),
                _ => None,
            },
        ),
        "$unionWith" => match spec {
            Bson::String(_) => spec.clone(),
            _ => stage_fields(spec, d, &["coll"], |k, v| match (k, v) {
                ("pipeline", Bson::Array(stages)) => Some(pipeline(stages, d + 1)),
                _ => None,
            }),
        },
        "$facet" => match spec {
            Bson::Document(facets) => Bson::Document(map_values(facets, |_, v| match v {
                Bson::Array(stages) => pipeline(stages, d + 1),
                other => literal(other, d + 1),
            })),
            other => literal(other, d),
        },
        "$merge" => match spec {
            Bson::String(_) => spec.clone(),
            _ => stage_fields(spec, d, &["into", "whenNotMatched"], |k, v| match (k, v) {
                ("on", Bson::String(_)) => Some(v.clone()),
                ("on", Bson::Array(names)) if names.iter().all(|n| matches!(n, Bson::String(_))) => {
                    Some(v.clone())
                }
                ("whenMatched", Bson::String(_)) => Some(v.clone()),
                ("whenMatched", Bson::Array(stages)) => Some(pipeline(stages, d + 1)),
                ("let", _) => Some(expr(v, d + 1)),
                _ => None,
            }),
        },
        "$geoNear" => stage_fields(spec, d, &["distanceField", "includeLocs", "key", "spherical"], |k, v| {
            (k == "query").then(|| filter(v, d + 1))
        }),
        _ if KEPT_STAGES.contains(&name) => spec.clone(),
        // $limit, $skip, $sample, $documents, $search, $changeStream... and unknown stages.
        _ => literal(spec, d),
    }
}

/// One statement of an `update` command's `updates`.
fn update_statement(value: &Bson, depth: usize) -> Bson {
    let Bson::Document(d) = value else { return literal(value, depth) };
    Bson::Document(map_values(d, |k, v| match k {
        "q" => filter(v, depth + 1),
        "u" => update_spec(v, depth + 1),
        "arrayFilters" => filters(v, depth + 1),
        "sort" => sort_spec(v, depth + 1),
        "upsert" | "multi" | "upsertSupplied" | "hint" | "collation" => v.clone(),
        _ => literal(v, depth + 1),
    }))
}

/// One statement of a `delete` command's `deletes`.
fn delete_statement(value: &Bson, depth: usize) -> Bson {
    let Bson::Document(d) = value else { return literal(value, depth) };
    Bson::Document(map_values(d, |k, v| match k {
        "q" => filter(v, depth + 1),
        "limit" | "hint" | "collation" => v.clone(),
        _ => literal(v, depth + 1),
    }))
}

/// An array of filters (`arrayFilters`).
fn filters(value: &Bson, depth: usize) -> Bson {
    match value {
        Bson::Array(items) => Bson::Array(items.iter().map(|f| filter(f, depth + 1)).collect()),
        other => literal(other, depth),
    }
}

fn statements(value: &Bson, depth: usize, each: fn(&Bson, usize) -> Bson) -> Bson {
    match value {
        Bson::Array(items) => Bson::Array(items.iter().map(|s| each(s, depth + 1)).collect()),
        other => literal(other, depth),
    }
}

/// The command name's value (module doc, "What stays as it is").
fn command_value(name: &str, value: &Bson, depth: usize) -> Bson {
    match value {
        Bson::Document(inner) if name == "explain" => Bson::Document(shape_command(inner, depth + 1)),
        Bson::String(_) if COLLECTION_COMMANDS.contains(&name) => value.clone(),
        Bson::Int64(_) | Bson::Int32(_) if name == "getMore" => value.clone(),
        v if is_one(v) => value.clone(),
        other => literal(other, depth + 1),
    }
}

fn shape_command(command: &Document, depth: usize) -> Document {
    if depth > MAX_DEPTH {
        return map_values(command, |_, v| placeholder(v));
    }
    let d = depth + 1;
    command
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let shaped = if i == 0 {
                command_value(k, v, depth)
            } else {
                match k.as_str() {
                    _ if KEPT_OPTIONS.contains(&k.as_str()) => v.clone(),
                    "filter" | "query" => filter(v, d),
                    "pipeline" => match v {
                        Bson::Array(stages) => pipeline(stages, d),
                        other => literal(other, d),
                    },
                    "sort" => sort_spec(v, d),
                    "projection" | "fields" => projection(v, d),
                    "update" => update_spec(v, d),
                    "arrayFilters" => filters(v, d),
                    "let" => expr(v, d),
                    "updates" => statements(v, d, update_statement),
                    "deletes" => statements(v, d, delete_statement),
                    _ => literal(v, d),
                }
            };
            (k.clone(), shaped)
        })
        .collect()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use mongodb::bson::oid::ObjectId;
    use mongodb::bson::{Binary, DateTime, Regex, Timestamp, doc, spec::BinarySubtype};

    use super::*;

    const EMAIL: &str = "alice@example.com";

    fn oid() -> ObjectId {
        ObjectId::parse_str("65f1c0ffee0000000000beef").unwrap()
    }

    fn lsid() -> Document {
        doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] }}
    }

    /// Every scalar of `d` (at any depth), as relaxed extended JSON text.
    fn scalars(v: &Bson, out: &mut Vec<String>) {
        match v {
            Bson::Document(d) => d.values().for_each(|x| scalars(x, out)),
            Bson::Array(a) => a.iter().for_each(|x| scalars(x, out)),
            other => out.push(other.clone().into_relaxed_extjson().to_string()),
        }
    }

    /// Asserts that no literal of `secrets` appears anywhere in the shaped command (as a value,
    /// and in its text).
    fn assert_hidden(shaped: &Document, secrets: &[Bson]) {
        let text = Bson::Document(shaped.clone()).into_relaxed_extjson().to_string();
        let mut values = Vec::new();
        scalars(&Bson::Document(shaped.clone()), &mut values);
        for s in secrets {
            let needle = match s {
                Bson::String(s) => s.clone(),
                Bson::ObjectId(o) => o.to_hex(),
                other => other.clone().into_relaxed_extjson().to_string(),
            };
            assert!(!text.contains(&needle), "{needle} leaked: {text}");
            assert!(!values.iter().any(|v| v.contains(&needle)), "{needle} leaked: {values:?}");
        }
    }

    #[test]
    fn find_filter_hides_an_email_and_an_object_id() {
        let cmd = doc! {
            "find": "users",
            "filter": {"email": EMAIL, "_id": oid(), "age": {"$gte": 21, "$lt": 65},
                       "tags": {"$in": ["vip", "beta"]}, "score": {"$in": [1, 2.5, 3_i64]},
                       "name": {"$regex": "^Ali", "$options": "i"}, "deleted": {"$exists": false},
                       "$or": [{"city": "Paris"}, {"zip": {"$nin": []}}]},
            "sort": {"age": -1, "name": 1},
            "projection": {"email": 1, "_id": 0},
            "limit": 10, "skip": 5, "batchSize": 101,
            "comment": "from the checkout page",
            "lsid": lsid(), "$db": "shop",
        };
        let shaped = shape(&cmd);
        assert_eq!(
            shaped,
            doc! {
                "find": "users",
                "filter": {"email": "?string", "_id": "?objectId", "age": {"$gte": "?number", "$lt": "?number"},
                           "tags": {"$in": "?array<?string>"}, "score": {"$in": "?array<?number>"},
                           "name": {"$regex": "?string", "$options": "?string"}, "deleted": {"$exists": "?bool"},
                           "$or": [{"city": "?string"}, {"zip": {"$nin": "[]"}}]},
                "sort": {"age": -1, "name": 1},
                "projection": {"email": 1, "_id": 0},
                "limit": "?number", "skip": "?number", "batchSize": 101,
                "comment": "?string",
                "lsid": lsid(), "$db": "shop",
            }
        );
        assert_hidden(&shaped, &[EMAIL.into(), oid().into(), "vip".into(), "Paris".into(), "^Ali".into()]);
    }

    #[test]
    fn aggregate_pipeline_keeps_its_stages_and_field_paths() {
        let cmd = doc! {
            "aggregate": "orders",
            "pipeline": [
                {"$match": {"customer": EMAIL, "$expr": {"$gt": ["$total", 100]}}},
                {"$lookup": {"from": "users", "localField": "customer", "foreignField": "email", "as": "u",
                             "pipeline": [{"$match": {"_id": oid()}}]}},
                {"$unwind": "$u"},
                {"$group": {"_id": "$u.country", "n": {"$sum": 1}, "big": {"$max": {"$literal": {"x": EMAIL}}}}},
                {"$project": {"n": 1, "label": {"$concat": ["$u.name", " <", EMAIL, ">"]}}},
                {"$sort": {"n": -1}},
                {"$limit": 5},
                {"$facet": {"a": [{"$match": {"status": "paid"}}], "b": [{"$count": "total"}]}},
                {"$merge": {"into": "report", "on": "_id", "whenMatched": "replace"}},
            ],
            "cursor": {}, "$db": "shop",
        };
        let shaped = shape(&cmd);
        assert_eq!(
            shaped,
            doc! {
                "aggregate": "orders",
                "pipeline": [
                    {"$match": {"customer": "?string", "$expr": {"$gt": ["$total", "?number"]}}},
                    {"$lookup": {"from": "users", "localField": "customer", "foreignField": "email", "as": "u",
                                 "pipeline": [{"$match": {"_id": "?objectId"}}]}},
                    {"$unwind": "$u"},
                    {"$group": {"_id": "$u.country", "n": {"$sum": "?number"}, "big": {"$max": {"$literal": "?object"}}}},
                    {"$project": {"n": 1, "label": {"$concat": ["$u.name", "?string", "?string", "?string"]}}},
                    {"$sort": {"n": -1}},
                    {"$limit": "?number"},
                    {"$facet": {"a": [{"$match": {"status": "?string"}}], "b": [{"$count": "total"}]}},
                    {"$merge": {"into": "report", "on": "_id", "whenMatched": "replace"}},
                ],
                "cursor": {}, "$db": "shop",
            }
        );
        assert_hidden(&shaped, &[EMAIL.into(), oid().into(), "paid".into()]);
    }

    #[test]
    fn update_and_find_and_modify_hide_their_values() {
        let cmd = doc! {
            "update": "users",
            "updates": [
                {"q": {"email": EMAIL}, "u": {"$set": {"email": "new@example.com", "profile": {"phone": "+33 6 12"}},
                                             "$inc": {"visits": 1}, "$push": {"log": {"$each": [oid()], "$slice": -3}},
                                             "$rename": {"old": "new"}},
                 "upsert": true, "multi": false, "arrayFilters": [{"e.addr": EMAIL}]},
                {"q": {"_id": oid()}, "u": {"name": "replacement", "email": EMAIL}},
                {"q": {}, "u": [{"$set": {"seen": "$$NOW", "flag": "yes"}}]},
            ],
            "ordered": true, "writeConcern": {"w": "majority"}, "txnNumber": 3_i64, "$db": "shop",
        };
        let shaped = shape(&cmd);
        assert_eq!(
            shaped,
            doc! {
                "update": "users",
                "updates": [
                    {"q": {"email": "?string"}, "u": {"$set": {"email": "?string", "profile": {"phone": "?string"}},
                                                     "$inc": {"visits": "?number"},
                                                     "$push": {"log": {"$each": "?array<?objectId>", "$slice": "?number"}},
                                                     "$rename": {"old": "new"}},
                     "upsert": true, "multi": false, "arrayFilters": [{"e.addr": "?string"}]},
                    {"q": {"_id": "?objectId"}, "u": {"name": "?string", "email": "?string"}},
                    {"q": {}, "u": [{"$set": {"seen": "$$NOW", "flag": "?string"}}]},
                ],
                "ordered": true, "writeConcern": {"w": "majority"}, "txnNumber": 3_i64, "$db": "shop",
            }
        );
        assert_hidden(&shaped, &[EMAIL.into(), oid().into(), "new@example.com".into(), "+33 6 12".into()]);

        let fam = doc! {"findAndModify": "users", "query": {"email": EMAIL}, "sort": {"_id": 1},
        "update": {"$set": {"token": "s3cr3t"}}, "new": true, "fields": {"token": 1}, "$db": "shop"};
        let shaped = shape(&fam);
        assert_eq!(
            shaped,
            doc! {"findAndModify": "users", "query": {"email": "?string"}, "sort": {"_id": 1},
            "update": {"$set": {"token": "?string"}}, "new": true, "fields": {"token": 1}, "$db": "shop"}
        );
        assert_hidden(&shaped, &[EMAIL.into(), "s3cr3t".into()]);
    }

    #[test]
    fn insert_documents_keep_their_field_names_only() {
        let cmd = doc! {
            "insert": "users",
            "documents": [
                {"_id": oid(), "email": EMAIL, "tags": ["a", "b"], "address": {"city": "Lyon", "geo": [4.8, 45.7]},
                 "born": DateTime::from_millis(0), "ok": true, "none": null, "avatar": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2] },
                 "ts": Timestamp { time: 1, increment: 2 }, "re": Regex { pattern: "x".into(), options: String::new() },
                 "mixed": [1, "a"], "nested": [[1, 2], {"k": "v"}]},
                {"email": "bob@example.com"},
            ],
            "ordered": false, "$db": "shop",
        };
        let shaped = shape(&cmd);
        assert_eq!(
            shaped,
            doc! {
                "insert": "users",
                "documents": [
                    {"_id": "?objectId", "email": "?string", "tags": "?array<?string>",
                     "address": {"city": "?string", "geo": "?array<?number>"},
                     "born": "?date", "ok": "?bool", "none": "?null", "avatar": "?binData",
                     "ts": "?timestamp", "re": "?regex", "mixed": "?array<>", "nested": ["?array<?number>", {"k": "?string"}]},
                    {"email": "?string"},
                ],
                "ordered": false, "$db": "shop",
            }
        );
        assert_hidden(&shaped, &[EMAIL.into(), oid().into(), "Lyon".into(), "bob@example.com".into()]);
    }

    #[test]
    fn delete_count_distinct_getmore_and_explain() {
        let del = doc! {"delete": "users", "deletes": [{"q": {"email": EMAIL}, "limit": 1}], "$db": "shop"};
        assert_eq!(
            shape(&del),
            doc! {"delete": "users", "deletes": [{"q": {"email": "?string"}, "limit": 1}], "$db": "shop"}
        );
        let count = doc! {"count": "users", "query": {"email": EMAIL}, "$db": "shop"};
        assert_eq!(shape(&count), doc! {"count": "users", "query": {"email": "?string"}, "$db": "shop"});
        let distinct = doc! {"distinct": "users", "key": "country", "query": {"age": 30}, "$db": "shop"};
        assert_eq!(
            shape(&distinct),
            doc! {"distinct": "users", "key": "country", "query": {"age": "?number"}, "$db": "shop"}
        );
        let more = doc! {"getMore": 8_123_456_789_i64, "collection": "users", "batchSize": 10, "$db": "shop"};
        assert_eq!(shape(&more), more);
        let explain = doc! {"explain": {"find": "users", "filter": {"email": EMAIL}}, "verbosity": "queryPlanner", "$db": "shop"};
        assert_eq!(
            shape(&explain),
            doc! {"explain": {"find": "users", "filter": {"email": "?string"}}, "verbosity": "queryPlanner", "$db": "shop"}
        );
    }

    #[test]
    fn unknown_commands_fields_and_stages_are_literals() {
        // A command name that does not take a collection: only `1` stays.
        let sleep = doc! {"sleep": 1, "millis": 30_000, "$db": "admin"};
        assert_eq!(shape(&sleep), doc! {"sleep": 1, "millis": "?number", "$db": "admin"});
        // A filter that reaches here without its command (legacy `query`) is not a command.
        let bare = doc! {"email": EMAIL, "age": 42};
        assert_eq!(shape(&bare), doc! {"email": "?string", "age": "?number"});
        // mongod's cut of a large command keeps the command's text in `$truncated`.
        let cut = doc! {"$truncated": format!("{{ find: \"users\", filter: {{ email: \"{EMAIL}\" }} }}"), "comment": "x"};
        assert_eq!(shape(&cut), doc! {"$truncated": "?string", "comment": "?string"});
        // Unknown top-level fields and stages.
        let odd = doc! {"aggregate": "c", "pipeline": [{"$search": {"index": "default", "text": {"query": EMAIL}}},
        {"$documents": [{"a": EMAIL}]}], "secretOption": EMAIL, "$db": "x"};
        let shaped = shape(&odd);
        assert_eq!(
            shaped,
            doc! {"aggregate": "c", "pipeline": [{"$search": {"index": "?string", "text": {"query": "?string"}}},
            {"$documents": [{"a": "?string"}]}], "secretOption": "?string", "$db": "x"}
        );
        // A string in the command position of a non-collection command is a literal.
        assert_eq!(shape(&doc! {"hello": EMAIL}), doc! {"hello": "?string"});
        // A sort value that is not a direction makes the spec a literal.
        assert_eq!(
            shape(&doc! {"find": "c", "sort": {"a": EMAIL}}),
            doc! {"find": "c", "sort": {"a": "?string"}}
        );
    }

    #[test]
    fn expressions_keep_field_paths_but_filters_do_not() {
        // `$x` is a literal string in a filter, a field path in an expression.
        let cmd = doc! {"find": "c", "filter": {"price": "$5 off", "$expr": {"$eq": ["$price", "$$limit"]}},
        "let": {"limit": 10}, "projection": {"label": "$name", "score": {"$meta": "textScore"},
        "hits": {"$elemMatch": {"who": "$boss"}}}};
        assert_eq!(
            shape(&cmd),
            doc! {"find": "c", "filter": {"price": "?string", "$expr": {"$eq": ["$price", "$$limit"]}},
            "let": {"limit": "?number"}, "projection": {"label": "$name", "score": {"$meta": "textScore"},
            "hits": {"$elemMatch": {"who": "?string"}}}}
        );
    }

    #[test]
    fn placeholders_follow_mongodb() {
        assert_eq!(placeholder(&Bson::Array(vec![])), Bson::String("[]".into()));
        assert_eq!(
            placeholder(&Bson::Array(vec![Bson::Int32(1), Bson::Double(2.0)])),
            "?array<?number>".into()
        );
        assert_eq!(placeholder(&Bson::Array(vec![Bson::Int32(1), "a".into()])), "?array<>".into());
        assert_eq!(placeholder(&Bson::Array(vec![doc! {}.into()])), "?array<?object>".into());
        assert_eq!(
            placeholder(&Bson::Decimal128(mongodb::bson::Decimal128::from_bytes([0; 16]))),
            "?number".into()
        );
        assert_eq!(placeholder(&Bson::MinKey), "?minKey".into());
        assert_eq!(placeholder(&Bson::JavaScriptCode("return 1".into())), "?javascript".into());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut v = Bson::String(EMAIL.into());
        for _ in 0..(MAX_DEPTH * 3) {
            v = Bson::Document(doc! {"a": v});
        }
        let mut cmd = doc! {"insert": "c"};
        cmd.insert("documents", Bson::Array(vec![v.clone()]));
        cmd.insert("filter", v);
        let shaped = shape(&cmd);
        assert_hidden(&shaped, &[EMAIL.into()]);
    }

    #[test]
    fn text_round_trip() {
        let text = format!(
            r#"{{"find":"users","filter":{{"email":"{EMAIL}","_id":{{"$oid":"{}"}},"n":{{"$numberLong":"7"}}}},"$db":"shop"}}"#,
            oid().to_hex()
        );
        let shaped = shape_text(&text).unwrap();
        assert_eq!(
            shaped,
            r#"{"find":"users","filter":{"email":"?string","_id":"?objectId","n":"?number"},"$db":"shop"}"#
        );
        assert!(matches!(
            shape_text("{\"find\": \"users\", \"filter\": {\"email\": \"al"),
            Err(ShapeTextError::NotJson(_))
        ));
        assert_eq!(shape_text("[1]"), Err(ShapeTextError::NotAnObject));
        assert_eq!(shape_text(r#"{"$oid": "65f1c0ffee0000000000beef"}"#), Err(ShapeTextError::NotAnObject));
        assert!(matches!(shape_text(r#"{"a": {"$oid": 5}}"#), Err(ShapeTextError::BadExtendedJson(_))));
        // The operation text of the list API as the driver renders it.
        let cmd = doc! {"find": "users", "filter": {"email": EMAIL}, "$db": "shop"};
        let text = Bson::Document(cmd.clone()).into_relaxed_extjson().to_string();
        let shaped = shape_text(&text).unwrap();
        assert_eq!(shaped, Bson::Document(shape(&cmd)).into_relaxed_extjson().to_string());
        assert!(!shaped.contains(EMAIL));
    }
}
