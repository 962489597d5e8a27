//! The writing stages of an aggregation, `$out` and `$merge`, as mongod runs them on a standalone.
//!
//! The node runs the pipeline before them, then writes its result:
//! - `$out` (a collection name, or `{db, coll}`) replaces the target collection: the documents are
//!   inserted into a temporary `tmp.agg_out.<hex>` collection of the target database, created with
//!   the target's options and indexes, which is then renamed over the target, so readers see the
//!   old contents or the new ones, never a mix; on any error the temporary collection is dropped
//!   and the target is left as it was.
//! - `$merge` (`into`, `on`, `let`, `whenMatched`, `whenNotMatched`) merges each document into the
//!   target by its `on` fields (default `_id`), which must be those of a unique index of the
//!   target (51183), as mongod requires; every mode and mode combination mongod accepts is
//!   implemented (`whenMatched`: replace, keepExisting, merge, fail, or an update pipeline seeing
//!   `$$new` and `let`; `whenNotMatched`: insert, discard, fail), the others fail with mongod's
//!   51181.
//!
//! Either stage must be the last (40601); the reply is an empty cursor.

use bson::{Bson, Document, doc, oid::ObjectId};
use docplane_engine::{Engine, UpdateStatement, WriteError};
use docplane_query::{CommandError, Filter, Interrupt, LetVars, Update, expr::Expr};

use super::util;

/// Where the writing stage writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub db: String,
    pub coll: String,
}

/// `$merge`'s `whenNotMatched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNotMatched {
    Insert,
    Discard,
    Fail,
}

/// `$merge`'s `whenMatched` (a pipeline as its stages).
#[derive(Debug, Clone)]
pub enum WhenMatched {
    Replace,
    KeepExisting,
    Merge,
    Fail,
    Pipeline(Vec<Document>),
}

/// A parsed writing stage.
#[derive(Debug, Clone)]
pub enum Sink {
    Out(Target),
    Merge {
        target: Target,
        on: Vec<String>,
        lets: Vec<(String, Expr)>,
        matched: WhenMatched,
        not_matched: WhenNotMatched,
    },
}

fn wrong_type(code: i32, what: &str, v: &Bson) -> CommandError {
    CommandError::location(code, format!("{what}, not {}", util::type_name(v)))
}

fn check_target(t: &Target, stage: &str) -> Result<(), CommandError> {
    util::check_db_name(&t.db)?;
    if t.coll.is_empty() {
        return Err(CommandError::invalid_namespace(format!("Invalid {stage} target namespace: {}.", t.db)));
    }
    if t.coll.starts_with("system.") {
        return Err(CommandError::location(
            17385,
            format!("Can't {stage} to special collection: {}", t.coll),
        ));
    }
    util::check_coll_name(&t.db, &t.coll)
}

fn parse_out(arg: &Bson, db: &str) -> Result<Target, CommandError> {
    let t = match arg {
        Bson::String(c) => Target { db: db.to_owned(), coll: c.clone() },
        Bson::Document(d) => {
            for k in d.keys() {
                match k.as_str() {
                    "db" | "coll" => {}
                    "timeseries" => {
                        return Err(CommandError::command_not_supported(
                            "$out to a time-series collection is not supported by docplane's node",
                        ));
                    }
                    other => {
                        return Err(CommandError::location(
                            40415,
                            format!("BSON field '$out.{other}' is an unknown field."),
                        ));
                    }
                }
            }
            let field = |k: &str| match d.get(k) {
                Some(Bson::String(s)) => Ok(s.clone()),
                None => Err(CommandError::location(
                    40414,
                    format!("BSON field '$out.{k}' is missing but a required field"),
                )),
                Some(other) => Err(CommandError::type_mismatch(format!(
                    "BSON field '$out.{k}' is the wrong type '{}', expected type 'string'",
                    util::type_name(other)
                ))),
            };
            Target { db: field("db")?, coll: field("coll")? }
        }
        other => return Err(wrong_type(16990, "$out only supports a string or object argument", other)),
    };
    check_target(&t, "$out")?;
    Ok(t)
}

fn parse_into(v: Option<&Bson>, db: &str) -> Result<Target, CommandError> {
    let t = match v {
        Some(Bson::String(c)) => Target { db: db.to_owned(), coll: c.clone() },
        Some(Bson::Document(d)) => {
            let s = |k: &str| d.get(k).and_then(Bson::as_str).map(str::to_owned);
            Target { db: s("db").unwrap_or_else(|| db.to_owned()), coll: s("coll").unwrap_or_default() }
        }
        None => {
            return Err(CommandError::location(
                40414,
                "BSON field '$merge.into' is missing but a required field",
            ));
        }
        Some(other) => {
            return Err(wrong_type(51178, "$merge 'into' field must be either a string or an object", other));
        }
    };
    if t.coll.is_empty() {
        return Err(CommandError::location(
            51178,
            "$merge 'into' field must specify a 'coll' that is not empty, null or undefined",
        ));
    }
    check_target(&t, "$merge")?;
    Ok(t)
}

/// `$merge`'s argument: a collection name or a document of `into`, `on`, `let`, `whenMatched` and
/// `whenNotMatched`. Fields are checked in mongod's order, so the first error is the one it reports.
fn parse_merge(arg: &Bson, db: &str) -> Result<Sink, CommandError> {
    let d = match arg {
        Bson::String(c) => doc! {"into": c.clone()},
        Bson::Document(d) => d.clone(),
        other => return Err(wrong_type(51182, "$merge only supports a string or object argument", other)),
    };
    for k in d.keys() {
        if !matches!(k.as_str(), "into" | "on" | "let" | "whenMatched" | "whenNotMatched") {
            return Err(CommandError::location(
                40415,
                format!("BSON field '$merge.{k}' is an unknown field."),
            ));
        }
    }
    let target = parse_into(d.get("into"), db)?;
    let on = parse_on(d.get("on"))?;
    let matched = parse_when_matched(d.get("whenMatched"))?;
    let not_matched = parse_when_not_matched(d.get("whenNotMatched"))?;
    let lets = parse_merge_let(d.get("let"), &matched)?;
    check_modes(&matched, not_matched)?;
    Ok(Sink::Merge { target, on, lets, matched, not_matched })
}

/// `$merge.on`: one field or a non-empty array of distinct fields; `_id` when absent.
fn parse_on(v: Option<&Bson>) -> Result<Vec<String>, CommandError> {
    let on: Vec<String> = match v {
        None => vec!["_id".to_owned()],
        Some(Bson::String(s)) => vec![s.clone()],
        Some(Bson::Array(a)) if !a.is_empty() && a.iter().all(|v| matches!(v, Bson::String(_))) => {
            a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Some(other) => {
            return Err(wrong_type(
                51186,
                "$merge 'on' field must be either a string or an array of strings",
                other,
            ));
        }
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = on.iter().find(|f| !seen.insert(f.as_str())) {
        return Err(CommandError::location(31465, format!("Found a duplicate field '{dup}'")));
    }
    Ok(on)
}

/// `$merge.whenMatched`: a mode name or an update pipeline (`merge` when absent).
fn parse_when_matched(v: Option<&Bson>) -> Result<WhenMatched, CommandError> {
    Ok(match v {
        None => WhenMatched::Merge,
        Some(Bson::String(s)) => match s.as_str() {
            "replace" => WhenMatched::Replace,
            "keepExisting" => WhenMatched::KeepExisting,
            "merge" => WhenMatched::Merge,
            "fail" => WhenMatched::Fail,
            other => return Err(enum_error("whenMatched", other)),
        },
        Some(Bson::Array(_)) => {
            let stages: Vec<Document> = util::doc_array(v, "whenMatched")?.into_iter().cloned().collect();
            // Parsed now for its errors (only the update stages are allowed, as in mongod).
            Update::parse_pipeline(&stages)?;
            WhenMatched::Pipeline(stages)
        }
        Some(other) => {
            return Err(wrong_type(51191, "$merge 'whenMatched' must be a string or an array", other));
        }
    })
}

/// `$merge.whenNotMatched`: `insert` (the default), `discard` or `fail`.
fn parse_when_not_matched(v: Option<&Bson>) -> Result<WhenNotMatched, CommandError> {
    Ok(match v {
        None => WhenNotMatched::Insert,
        Some(Bson::String(s)) => match s.as_str() {
            "insert" => WhenNotMatched::Insert,
            "discard" => WhenNotMatched::Discard,
            "fail" => WhenNotMatched::Fail,
            other => return Err(enum_error("whenNotMatched", other)),
        },
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field '$merge.whenNotMatched' is the wrong type '{}', expected type 'string'",
                util::type_name(other)
            )));
        }
    })
}

/// `$merge.let`: variables for a `whenMatched` pipeline (51199 with any other mode), each name
/// checked as a user variable's and each value parsed as an expression.
fn parse_merge_let(v: Option<&Bson>, matched: &WhenMatched) -> Result<Vec<(String, Expr)>, CommandError> {
    match v {
        None | Some(Bson::Null) => Ok(Vec::new()),
        Some(Bson::Document(l)) => {
            if !matches!(matched, WhenMatched::Pipeline(_)) {
                return Err(CommandError::location(
                    51199,
                    "Cannot use 'let' variables with 'whenMatched: ...' mode other than a pipeline",
                ));
            }
            let mut out = Vec::new();
            for (k, v) in l {
                docplane_query::vars::validate_user_name(k)?;
                out.push((k.clone(), Expr::parse(v)?));
            }
            Ok(out)
        }
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '$merge.let' is the wrong type '{}', expected type 'object'",
            util::type_name(other)
        ))),
    }
}

/// The mode combinations mongod refuses (51181): `whenMatched` `fail` or `keepExisting` with
/// `whenNotMatched` `fail` or `discard`.
fn check_modes(matched: &WhenMatched, not_matched: WhenNotMatched) -> Result<(), CommandError> {
    let supported = !matches!(
        (matched, not_matched),
        (WhenMatched::Fail, WhenNotMatched::Fail | WhenNotMatched::Discard)
            | (WhenMatched::KeepExisting, WhenNotMatched::Fail | WhenNotMatched::Discard)
    );
    if !supported {
        let m = match matched {
            WhenMatched::Fail => "fail",
            _ => "keepExisting",
        };
        let n = if not_matched == WhenNotMatched::Fail { "fail" } else { "discard" };
        return Err(CommandError::location(
            51181,
            format!(
                "Combination of $merge modes 'whenMatched: {m}' and 'whenNotMatched: {n}' is not supported"
            ),
        ));
    }
    Ok(())
}

fn enum_error(field: &str, v: &str) -> CommandError {
    CommandError::bad_value(format!(
        "Enumeration value '{v}' for field '$merge.{field}' is not a valid value."
    ))
}

/// Splits a final `$out` / `$merge` off `stages`; any other one fails with 40601 (mongod's
/// "can only be the final stage").
pub fn split(stages: &[Document], db: &str) -> Result<(Vec<Document>, Option<Sink>), CommandError> {
    let writes = |s: &Document| s.keys().next().is_some_and(|k| k == "$out" || k == "$merge");
    if let Some(i) = stages.iter().position(writes)
        && i + 1 < stages.len()
    {
        let name = stages[i].keys().next().cloned().unwrap_or_default();
        return Err(CommandError::location(
            40601,
            format!("{name} can only be the final stage in the pipeline"),
        ));
    }
    let Some(last) = stages.last().filter(|s| writes(s)) else {
        return Ok((stages.to_vec(), None));
    };
    if last.len() != 1 {
        return Err(CommandError::location(
            40323,
            "A pipeline stage specification object must contain exactly one field.",
        ));
    }
    let (name, arg) = last.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Bson::Null));
    let sink = if name == "$out" { Sink::Out(parse_out(arg, db)?) } else { parse_merge(arg, db)? };
    Ok((stages[..stages.len() - 1].to_vec(), Some(sink)))
}

impl Sink {
    /// The target namespace.
    pub fn target(&self) -> &Target {
        match self {
            Sink::Out(t) | Sink::Merge { target: t, .. } => t,
        }
    }

    /// Writes the pipeline's result.
    pub fn write(&self, e: &Engine, docs: Vec<Document>, intr: &dyn Interrupt) -> Result<(), CommandError> {
        match self {
            Sink::Out(t) => write_out(e, t, docs, intr),
            Sink::Merge { target, on, lets, matched, not_matched } => {
                write_merge(e, target, on, lets, matched, *not_matched, docs, intr)
            }
        }
    }
}

fn first_error(errs: Vec<WriteError>) -> Option<CommandError> {
    errs.into_iter().next().map(|w| CommandError {
        code: w.code,
        code_name: w.code_name,
        message: w.errmsg,
        info: w.info,
    })
}

fn write_out(e: &Engine, t: &Target, docs: Vec<Document>, intr: &dyn Interrupt) -> Result<(), CommandError> {
    let existing = e.list_collections(&t.db).into_iter().find(|c| c.name == t.coll);
    if existing.as_ref().is_some_and(|c| c.options.get("capped").is_some_and(util::truthy)) {
        return Err(CommandError::location(
            17152,
            format!("namespace '{}.{}' is capped so it can't be used for $out", t.db, t.coll),
        ));
    }
    let tmp = format!("tmp.agg_out.{:016x}", rand::random::<u64>());
    let options = existing.map(|c| c.options).unwrap_or_default();
    let collated = options.contains_key("collation");
    e.create_collection(&t.db, &tmp, options)?;
    let filled = (|| {
        if let Ok(indexes) = e.list_indexes(&t.db, &t.coll) {
            let specs: Vec<Document> = indexes
                .into_iter()
                .filter(|i| i.get_str("name").ok() != Some("_id_"))
                .map(|mut i| {
                    i.remove("v");
                    // Listed without a collation in a collection with a default: a binary
                    // index, which must not take the copy's default.
                    if collated && !i.contains_key("collation") {
                        i.insert("collation", doc! {"locale": "simple"});
                    }
                    i
                })
                .collect();
            if !specs.is_empty() {
                e.create_indexes(&t.db, &tmp, &specs, intr)?;
            }
        }
        let out = e.insert(&t.db, &tmp, docs, true, intr);
        if let Some(err) = out.interrupted {
            return Err(err);
        }
        if let Some(err) = first_error(out.write_errors) {
            return Err(err);
        }
        e.rename_collection((&t.db, &tmp), (&t.db, &t.coll), true)
    })();
    if filled.is_err()
        && let Err(err) = e.drop_collection(&t.db, &tmp)
    {
        tracing::warn!(db = %t.db, coll = %tmp, error = %err.message, "temporary collection not dropped");
    }
    filled
}

/// `$merge`'s `on` fields must be the key fields (in any order) of a unique index of the target.
fn check_on_index(e: &Engine, t: &Target, on: &[String]) -> Result<(), CommandError> {
    if on == ["_id"] {
        return Ok(());
    }
    let unique = e.list_indexes(&t.db, &t.coll).unwrap_or_default().into_iter().any(|ix| {
        let key_fields: Vec<&str> =
            ix.get_document("key").map(|k| k.keys().map(String::as_str).collect()).unwrap_or_default();
        ix.get("unique").is_some_and(util::truthy)
            && key_fields.len() == on.len()
            && on.iter().all(|f| key_fields.contains(&f.as_str()))
    });
    if unique {
        Ok(())
    } else {
        Err(CommandError::location(51183, "Cannot find index to verify that join fields will be unique"))
    }
}

/// The equality filter on `doc`'s `on` fields (51132 when one is missing, null or an array).
fn on_filter(doc: &Document, on: &[String]) -> Result<Filter, CommandError> {
    let mut f = Document::new();
    for field in on {
        match docplane_query::get_path_exact(doc, field) {
            Some(Bson::Null | Bson::Undefined | Bson::Array(_)) | None => {
                return Err(CommandError::location(
                    51132,
                    format!(
                        "$merge write error: 'on' field '{field}' cannot be missing, null, undefined or an array"
                    ),
                ));
            }
            Some(v) => {
                f.insert(field.clone(), doc! {"$eq": v.clone()});
            }
        }
    }
    Filter::parse(&f)
}

fn one_update(
    e: &Engine,
    t: &Target,
    filter: Filter,
    update: Update,
    intr: &dyn Interrupt,
) -> Result<u64, CommandError> {
    let stmt = UpdateStatement {
        filter,
        update,
        upsert: false,
        multi: false,
        hint: None,
        collation: Default::default(),
    };
    let out = e.update(&t.db, &t.coll, &[stmt], true, intr);
    if let Some(err) = out.interrupted {
        return Err(err);
    }
    match first_error(out.write_errors) {
        Some(err) => Err(err),
        None => Ok(out.n),
    }
}

fn insert_one(e: &Engine, t: &Target, doc: Document, intr: &dyn Interrupt) -> Result<(), CommandError> {
    let out = e.insert(&t.db, &t.coll, vec![doc], true, intr);
    if let Some(err) = out.interrupted {
        return Err(err);
    }
    first_error(out.write_errors).map_or(Ok(()), Err)
}

#[expect(clippy::too_many_arguments, reason = "one stage's parsed fields")]
fn write_merge(
    e: &Engine,
    t: &Target,
    on: &[String],
    lets: &[(String, Expr)],
    matched: &WhenMatched,
    not_matched: WhenNotMatched,
    docs: Vec<Document>,
    intr: &dyn Interrupt,
) -> Result<(), CommandError> {
    check_on_index(e, t, on)?;
    let pipeline = match matched {
        WhenMatched::Pipeline(stages) => Some(Update::parse_pipeline(stages)?),
        _ => None,
    };
    for (i, mut doc) in docs.into_iter().enumerate() {
        if i % docplane_query::interrupt::CHECK_EVERY == 0 {
            intr.check()?;
        }
        if on == ["_id"] && !doc.contains_key("_id") {
            // mongod gives a document without `_id` a new one before merging it.
            let mut with_id = doc! {"_id": ObjectId::new()};
            with_id.extend(doc);
            doc = with_id;
        }
        let filter = on_filter(&doc, on)?;
        if matches!(matched, WhenMatched::Fail) {
            // Inserted as is: the unique index on `on` fails it with the DuplicateKey mongod
            // reports (keyPattern, keyValue) when it matches.
            insert_one(e, t, doc, intr)?;
            continue;
        }
        let n = match matched {
            WhenMatched::Replace => one_update(e, t, filter.clone(), Update::parse(&doc, None)?, intr)?,
            WhenMatched::Merge if doc.is_empty() => e.count(&t.db, &t.coll, &filter, 0, 1, intr)?,
            WhenMatched::Merge => {
                one_update(e, t, filter.clone(), Update::parse(&doc! {"$set": doc.clone()}, None)?, intr)?
            }
            WhenMatched::KeepExisting => e.count(&t.db, &t.coll, &filter, 0, 1, intr)?,
            WhenMatched::Pipeline(_) => {
                let mut vars = vec![("new".to_owned(), Bson::Document(doc.clone()))];
                for (k, ex) in lets {
                    let v = ex.eval(&doc, &mut docplane_query::expr::EvalCtx::new())?;
                    vars.push((k.clone(), v));
                }
                let update = pipeline.clone().map(|p| p.with_let(&LetVars::from_values(vars)));
                match update {
                    Some(u) => one_update(e, t, filter.clone(), u, intr)?,
                    None => 0,
                }
            }
            WhenMatched::Fail => 0,
        };
        if n > 0 {
            continue;
        }
        match not_matched {
            WhenNotMatched::Insert => insert_one(e, t, doc, intr)?,
            WhenNotMatched::Discard => {}
            WhenNotMatched::Fail => {
                return Err(CommandError::new(
                    13113,
                    "MergeStageNoMatchingDocument",
                    "$merge could not find a matching document in the target collection for at least one document in the source collection",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn err(stages: Vec<Document>) -> i32 {
        split(&stages, "d").unwrap_err().code
    }

    #[test]
    fn parsing_as_mongod() {
        let (rest, sink) = split(&[doc! {"$match": {}}, doc! {"$out": "o"}], "d").unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(sink.unwrap().target(), &Target { db: "d".into(), coll: "o".into() });
        let (_, sink) = split(&[doc! {"$out": {"db": "x", "coll": "y"}}], "d").unwrap();
        assert_eq!(sink.unwrap().target(), &Target { db: "x".into(), coll: "y".into() });
        assert!(split(&[doc! {"$match": {}}], "d").unwrap().1.is_none());
        assert_eq!(err(vec![doc! {"$out": "o"}, doc! {"$match": {}}]), 40601);
        assert_eq!(err(vec![doc! {"$merge": "o"}, doc! {"$match": {}}]), 40601);
        assert_eq!(err(vec![doc! {"$out": 1}]), 16990);
        assert_eq!(err(vec![doc! {"$out": "system.x"}]), 17385);
        assert_eq!(err(vec![doc! {"$out": {"coll": "y"}}]), 40414);
        assert_eq!(err(vec![doc! {"$out": {"db": "d", "coll": "y", "timeseries": {}}}]), 115);
        assert_eq!(err(vec![doc! {"$merge": {"into": "o", "bogus": 1}}]), 40415);
        assert_eq!(err(vec![doc! {"$merge": {"on": "a"}}]), 40414);
        assert_eq!(err(vec![doc! {"$merge": {"into": "o", "whenMatched": "nope"}}]), 2);
        assert_eq!(
            err(vec![doc! {"$merge": {"into": "o", "whenMatched": "fail", "whenNotMatched": "discard"}}]),
            51181
        );
        assert_eq!(
            err(vec![
                doc! {"$merge": {"into": "o", "whenMatched": "keepExisting", "whenNotMatched": "fail"}}
            ]),
            51181
        );
        assert_eq!(err(vec![doc! {"$merge": {"into": "o", "on": ["a", "a"]}}]), 31465);
        assert_eq!(err(vec![doc! {"$merge": {"into": "o", "let": {"v": 1}}}]), 51199);
        assert_eq!(err(vec![doc! {"$merge": {"into": "o", "whenMatched": [{"$match": {}}]}}]), 40324);
        assert!(split(&[doc! {"$merge": {"into": {"coll": "o"}, "on": ["a", "b"], "whenMatched": [{"$set": {"x": "$$new.x"}}], "whenNotMatched": "discard"}}], "d").is_ok());
    }
}
