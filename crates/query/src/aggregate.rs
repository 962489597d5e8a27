//! The aggregation pipeline: stage parsing and execution over in-memory documents.
//!
//! Supported stages: `$match`, `$project`, `$addFields`/`$set`, `$unset`, `$group`, `$sort`,
//! `$skip`, `$limit`, `$count`, `$unwind`, `$lookup` (equality and pipeline forms, the foreign
//! collection comes from [`PipelineEnv::lookup_collection`]), `$replaceRoot`/`$replaceWith`,
//! `$sortByCount`, `$facet`, `$sample`, `$documents`. Unknown stages fail with 40324
//! "Unrecognized pipeline stage name". Every stage calls `env.check()` once and at least every
//! 128 documents, so a killed operation stops promptly.

use std::collections::HashMap;

use bson::{Bson, Document};

use crate::compare::{Num, as_num, canonical_key, cmp_bson};
use crate::error::{CommandError, Result};
use crate::expr::{EvalCtx, Expr, MISSING, is_missing, num_add};
use crate::filter::Filter;
use crate::interrupt::{CHECK_EVERY, Interrupt};
use crate::path::{Fields, collect_doc};
use crate::projection::{Projection, ProjectionKind};
use crate::sort::SortSpec;

/// What a pipeline needs from its surroundings: interruption and `$lookup`'s foreign
/// collections (in the pipeline's database).
pub trait PipelineEnv: Interrupt {
    /// All documents of collection `coll` (empty if it does not exist).
    fn lookup_collection(&self, coll: &str) -> Result<Vec<Document>>;
}

/// Documents a pipeline can read in part before it builds any of them whole (late
/// materialization, see [`Pipeline::run_source`]).
///
/// Document `i` is [`DocSource::fixed`]`(i)` (a stored document, read in place) with its *live*
/// fields ([`DocSource::is_live`]) taken from [`DocSource::partial`] instead; without a fixed
/// document, every field comes from `partial`.
pub trait DocSource {
    /// Number of documents.
    fn len(&self) -> usize;
    /// Whether there is none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The stored document holding document `i`'s fields that are not live, as they are.
    fn fixed(&self, _i: usize) -> Option<&Document> {
        None
    }
    /// Whether the value of top-level field `name` may differ from the fixed document's (the
    /// live fields are read from `partial`).
    fn is_live(&self, _name: &str) -> bool {
        true
    }
    /// Document `i`'s values of those of the top-level `fields` it has that do not come from
    /// its fixed document (all of them when it has none); order does not matter.
    fn partial(&self, i: usize, fields: &[String]) -> Document;
    /// Document `i`, whole.
    fn whole(&self, i: usize) -> Document;
    /// Whether some document of the source may have the top-level field `name`.
    fn may_have(&self, name: &str) -> bool;
}

/// The top-level fields something reads, or the whole document.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deps {
    fields: Vec<String>,
    whole: bool,
}

impl Deps {
    pub(crate) fn add(&mut self, field: &str) {
        if !self.whole && !self.fields.iter().any(|f| f == field) {
            self.fields.push(field.to_owned());
        }
    }
    pub(crate) fn set_whole(&mut self) {
        self.whole = true;
        self.fields.clear();
    }
    /// The fields, or `None` for the whole document.
    pub(crate) fn into_fields(self) -> Option<Vec<String>> {
        (!self.whole).then_some(self.fields)
    }
}

/// A parsed aggregation pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
    /// The command's `let` variables ([`Pipeline::with_let`]).
    lets: crate::vars::LetVars,
}

#[derive(Debug, Clone)]
enum AddSpec {
    Value(Expr),
    Nested(Vec<(String, AddSpec)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acc {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    MergeObjects,
    StdDevPop,
    StdDevSamp,
}

#[derive(Debug, Clone)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Vec<(String, AddSpec)>),
    Group {
        id: Expr,
        accs: Vec<(String, Acc, Expr)>,
    },
    Sort(SortSpec),
    Skip(u64),
    Limit(u64),
    Count(String),
    Unwind {
        path: Vec<String>,
        index: Option<String>,
        preserve: bool,
    },
    Lookup {
        from: String,
        local: Option<String>,
        foreign: Option<String>,
        as_field: String,
        lets: Vec<(String, Expr)>,
        pipeline: Option<Box<Pipeline>>,
    },
    ReplaceRoot(Expr),
    SortByCount(Expr),
    Facet(Vec<(String, Pipeline)>),
    Sample(u64),
    Documents(Expr),
    UnionWith {
        coll: String,
        pipeline: Option<Box<Pipeline>>,
    },
    Bucket {
        group_by: Expr,
        boundaries: Vec<Bson>,
        default: Option<Bson>,
        accs: Vec<(String, Acc, Expr)>,
    },
}

fn stage_int(v: &Bson, stage: &str, code: i32) -> Result<i64> {
    match as_num(v) {
        Some(Num::Int(i)) => Ok(i),
        Some(Num::Float(f)) if f.fract() == 0.0 && f.is_finite() => Ok(f as i64),
        _ => Err(CommandError::location(
            code,
            format!("invalid argument to {stage} stage: Expected an integer: {stage}: {v}"),
        )),
    }
}

/// Parses an `$addFields` / `$set` specification (`stage` names it in messages). Two paths of
/// which one is the other or a prefix of it fail with 40176, as MongoDB's specification validator
/// refuses them (`{a: 1, "a.b": 1}`, `{"a.b": 1, a: {b: 2}}`); siblings merge.
fn parse_add_fields_spec(stage: &str, d: &Document) -> Result<Vec<(String, AddSpec)>> {
    let mut seen = Vec::new();
    check_add_paths(stage, d, d, "", &mut seen)?;
    parse_add_fields(d)
}

fn check_add_paths(
    stage: &str,
    spec: &Document,
    d: &Document,
    prefix: &str,
    seen: &mut Vec<String>,
) -> Result<()> {
    for (k, v) in d {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Bson::Document(sub) if sub.keys().next().is_some_and(|f| !f.starts_with('$')) => {
                check_add_paths(stage, spec, sub, &path, seen)?;
            }
            _ => {
                let prefix_of =
                    |a: &str, b: &str| b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'.';
                if let Some(other) =
                    seen.iter().find(|s| **s == path || prefix_of(s, &path) || prefix_of(&path, s))
                {
                    return Err(CommandError::location(
                        40176,
                        format!(
                            "Invalid {stage} :: caused by :: specification contains two conflicting paths. Cannot specify both '{path}' and '{other}': {spec}"
                        ),
                    ));
                }
                seen.push(path);
            }
        }
    }
    Ok(())
}

fn parse_add_fields(d: &Document) -> Result<Vec<(String, AddSpec)>> {
    let mut out: Vec<(String, AddSpec)> = Vec::new();
    for (k, v) in d {
        if k.is_empty() || k.starts_with('$') || k.split('.').any(str::is_empty) {
            return Err(CommandError::location(16410, format!("Invalid $addFields field name '{k}'")));
        }
        let spec = match v {
            Bson::Document(sub) if sub.keys().next().is_some_and(|f| !f.starts_with('$')) => {
                AddSpec::Nested(parse_add_fields(sub)?)
            }
            other => AddSpec::Value(Expr::parse(other)?),
        };
        // Dotted names become nested specs.
        let parts: Vec<&str> = k.split('.').collect();
        let mut spec = spec;
        for p in parts[1..].iter().rev() {
            spec = AddSpec::Nested(vec![(p.to_string(), spec)]);
        }
        merge_add(&mut out, parts[0], spec);
    }
    Ok(out)
}

fn merge_add(list: &mut Vec<(String, AddSpec)>, key: &str, spec: AddSpec) {
    if let Some(pos) = list.iter().position(|(k, _)| k == key)
        && let (AddSpec::Nested(existing), AddSpec::Nested(new)) = (&mut list[pos].1, &spec)
    {
        for (k, s) in new.clone() {
            merge_add(existing, &k, s);
        }
        return;
    }
    list.retain(|(k, _)| k != key);
    list.push((key.to_string(), spec));
}

fn parse_acc(field: &str, v: &Bson) -> Result<(Acc, Expr)> {
    if field.contains('.') {
        return Err(CommandError::location(40235, format!("The field name '{field}' cannot contain '.'")));
    }
    if field.starts_with('$') {
        return Err(CommandError::location(
            40236,
            format!("The field name '{field}' cannot be an operator name"),
        ));
    }
    let Bson::Document(d) = v else {
        return Err(CommandError::location(
            40234,
            format!("The field '{field}' must be an accumulator object"),
        ));
    };
    if d.len() != 1 {
        return Err(CommandError::location(
            40238,
            format!("The field '{field}' must specify one accumulator"),
        ));
    }
    let (name, arg) = d.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Bson::Null));
    let acc = match name {
        "$sum" => Acc::Sum,
        "$avg" => Acc::Avg,
        "$min" => Acc::Min,
        "$max" => Acc::Max,
        "$first" => Acc::First,
        "$last" => Acc::Last,
        "$push" => Acc::Push,
        "$addToSet" => Acc::AddToSet,
        "$mergeObjects" => Acc::MergeObjects,
        "$stdDevPop" => Acc::StdDevPop,
        "$stdDevSamp" => Acc::StdDevSamp,
        "$count" => {
            if !matches!(arg, Bson::Document(a) if a.is_empty()) {
                return Err(CommandError::location(40237, "$count takes no arguments, i.e. $count:{}"));
            }
            return Ok((Acc::Sum, Expr::Literal(Bson::Int32(1))));
        }
        other => {
            return Err(CommandError::location(15952, format!("unknown group operator '{other}'")));
        }
    };
    if matches!(arg, Bson::Array(_)) {
        return Err(CommandError::location(40237, format!("The {name} accumulator is a unary operator")));
    }
    Ok((acc, Expr::parse(arg)?))
}

fn parse_unwind(arg: &Bson) -> Result<Stage> {
    let (path, index, preserve) = match arg {
        Bson::String(s) => (s.clone(), None, false),
        Bson::Document(d) => {
            let mut path = None;
            let mut index = None;
            let mut preserve = false;
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("path", Bson::String(s)) => path = Some(s.clone()),
                    ("path", _) => {
                        return Err(CommandError::location(
                            28808,
                            "expected a string as the path for $unwind stage",
                        ));
                    }
                    ("includeArrayIndex", Bson::String(s)) => {
                        if s.is_empty() || s.starts_with('$') {
                            return Err(CommandError::location(
                                28822,
                                format!(
                                    "includeArrayIndex option to $unwind stage should not be prefixed with a '$': {s}"
                                ),
                            ));
                        }
                        index = Some(s.clone());
                    }
                    ("includeArrayIndex", _) => {
                        return Err(CommandError::location(
                            28810,
                            "expected a non-empty string for the includeArrayIndex option to $unwind stage",
                        ));
                    }
                    ("preserveNullAndEmptyArrays", Bson::Boolean(b)) => preserve = *b,
                    ("preserveNullAndEmptyArrays", _) => {
                        return Err(CommandError::location(
                            28809,
                            "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage",
                        ));
                    }
                    (other, _) => {
                        return Err(CommandError::location(
                            28811,
                            format!("unrecognized option to $unwind stage: {other}"),
                        ));
                    }
                }
            }
            (
                path.ok_or_else(|| CommandError::location(28812, "no path specified to $unwind stage"))?,
                index,
                preserve,
            )
        }
        _ => {
            return Err(CommandError::location(
                15981,
                "expected either a string or an object as specification for $unwind stage",
            ));
        }
    };
    let Some(p) = path.strip_prefix('$') else {
        return Err(CommandError::location(
            28818,
            format!("path option to $unwind stage should be prefixed with a '$': {path}"),
        ));
    };
    if p.is_empty() || p.split('.').any(str::is_empty) {
        return Err(CommandError::location(15998, "FieldPath field names may not be empty strings."));
    }
    Ok(Stage::Unwind { path: p.split('.').map(str::to_string).collect(), index, preserve })
}

fn parse_lookup(arg: &Bson) -> Result<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::failed_to_parse("the $lookup stage specification must be an object"));
    };
    let mut from = None;
    let (mut local, mut foreign, mut as_field) = (None, None, None);
    let mut lets = Vec::new();
    let mut pipeline = None;
    for (k, v) in d {
        match (k.as_str(), v) {
            ("from", Bson::String(s)) => from = Some(s.clone()),
            ("from", Bson::Document(fd)) => match fd.get("coll") {
                Some(Bson::String(s)) => from = Some(s.clone()),
                _ => return Err(CommandError::failed_to_parse("$lookup 'from' must have a 'coll' string")),
            },
            ("localField", Bson::String(s)) => local = Some(s.clone()),
            ("foreignField", Bson::String(s)) => foreign = Some(s.clone()),
            ("as", Bson::String(s)) => as_field = Some(s.clone()),
            ("let", Bson::Document(ld)) => {
                for (lk, lv) in ld {
                    lets.push((lk.clone(), Expr::parse(lv)?));
                }
            }
            ("pipeline", Bson::Array(stages)) => {
                let mut docs = Vec::new();
                for s in stages {
                    match s {
                        Bson::Document(sd) => docs.push(sd.clone()),
                        _ => {
                            return Err(CommandError::type_mismatch(
                                "Each element of the 'pipeline' array must be an object",
                            ));
                        }
                    }
                }
                pipeline = Some(Box::new(Pipeline::parse(&docs)?));
            }
            (other, _)
                if matches!(other, "from" | "localField" | "foreignField" | "as" | "let" | "pipeline") =>
            {
                return Err(CommandError::failed_to_parse(format!(
                    "$lookup argument '{other}' has the wrong type"
                )));
            }
            (other, _) => {
                return Err(CommandError::failed_to_parse(format!("unknown argument to $lookup: {other}")));
            }
        }
    }
    let as_field =
        as_field.ok_or_else(|| CommandError::failed_to_parse("must specify 'as' field for a $lookup"))?;
    let from =
        from.ok_or_else(|| CommandError::failed_to_parse("must specify 'from' field for a $lookup"))?;
    if local.is_some() != foreign.is_some() {
        return Err(CommandError::failed_to_parse(
            "$lookup requires both or neither of 'localField' and 'foreignField' to be specified",
        ));
    }
    if local.is_none() && pipeline.is_none() {
        return Err(CommandError::failed_to_parse(
            "$lookup requires either 'pipeline' or both 'localField' and 'foreignField' to be specified",
        ));
    }
    Ok(Stage::Lookup { from, local, foreign, as_field, lets, pipeline })
}

fn parse_union_with(arg: &Bson) -> Result<Stage> {
    match arg {
        Bson::String(s) => Ok(Stage::UnionWith { coll: s.clone(), pipeline: None }),
        Bson::Document(d) => {
            let mut coll = None;
            let mut pipeline = None;
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("coll", Bson::String(s)) => coll = Some(s.clone()),
                    ("pipeline", Bson::Array(items)) => {
                        let docs = items
                            .iter()
                            .map(|i| match i {
                                Bson::Document(sd) => Ok(sd.clone()),
                                _ => Err(CommandError::type_mismatch(
                                    "Each element of the 'pipeline' array must be an object",
                                )),
                            })
                            .collect::<Result<Vec<_>>>()?;
                        pipeline = Some(Box::new(Pipeline::parse(&docs)?));
                    }
                    (other, _) => {
                        return Err(CommandError::failed_to_parse(format!(
                            "unknown or malformed $unionWith argument: {other}"
                        )));
                    }
                }
            }
            let coll =
                coll.ok_or_else(|| CommandError::failed_to_parse("$unionWith requires a 'coll' string"))?;
            Ok(Stage::UnionWith { coll, pipeline })
        }
        _ => Err(CommandError::failed_to_parse(
            "the $unionWith stage specification must be an object or string",
        )),
    }
}

fn parse_bucket(d: &Document) -> Result<Stage> {
    let mut group_by = None;
    let mut boundaries = Vec::new();
    let mut default = None;
    let mut accs = Vec::new();
    for (k, v) in d {
        match k.as_str() {
            "groupBy" => {
                let ok = matches!(v, Bson::String(s) if s.starts_with('$')) || matches!(v, Bson::Document(_));
                if !ok {
                    return Err(CommandError::location(
                        40202,
                        "The $bucket 'groupBy' field must be defined as a $-prefixed path or an expression",
                    ));
                }
                group_by = Some(Expr::parse(v)?);
            }
            "boundaries" => match v {
                Bson::Array(b) => boundaries = b.clone(),
                _ => {
                    return Err(CommandError::location(
                        40200,
                        "The $bucket 'boundaries' field must be an array",
                    ));
                }
            },
            "default" => default = Some(v.clone()),
            "output" => {
                let Bson::Document(out) = v else {
                    return Err(CommandError::location(
                        40196,
                        "The $bucket 'output' field must be an object",
                    ));
                };
                for (name, spec) in out {
                    let (acc, e) = parse_acc(name, spec)?;
                    accs.push((name.clone(), acc, e));
                }
            }
            other => {
                return Err(CommandError::location(
                    40197,
                    format!("Unrecognized option to $bucket: {other}."),
                ));
            }
        }
    }
    let group_by = group_by.ok_or_else(|| {
        CommandError::location(40198, "$bucket requires 'groupBy' and 'boundaries' to be specified.")
    })?;
    if boundaries.len() < 2 {
        return Err(CommandError::location(
            40192,
            "The $bucket 'boundaries' field must have at least 2 values",
        ));
    }
    for w in boundaries.windows(2) {
        if crate::compare::canonical_type_order(&w[0]) != crate::compare::canonical_type_order(&w[1]) {
            return Err(CommandError::location(
                40193,
                "All values in the 'boundaries' option to $bucket must have the same type",
            ));
        }
        if !cmp_bson(&w[0], &w[1]).is_lt() {
            return Err(CommandError::location(
                40194,
                "The 'boundaries' option to $bucket must be sorted in ascending order",
            ));
        }
    }
    if let Some(dv) = &default {
        let first = &boundaries[0];
        let last = &boundaries[boundaries.len() - 1];
        let same_type =
            crate::compare::canonical_type_order(dv) == crate::compare::canonical_type_order(first);
        if same_type && !cmp_bson(dv, first).is_lt() && cmp_bson(dv, last).is_lt() {
            return Err(CommandError::location(
                40199,
                "The $bucket 'default' field must be less than the lowest boundary or greater than or equal to the highest boundary.",
            ));
        }
    }
    if accs.is_empty() {
        accs.push(("count".to_string(), Acc::Sum, Expr::Literal(Bson::Int32(1))));
    }
    Ok(Stage::Bucket { group_by, boundaries, default, accs })
}

fn parse_stage(stage: &Document) -> Result<Stage> {
    if stage.len() != 1 {
        return Err(CommandError::location(
            40323,
            "A pipeline stage specification object must contain exactly one field.",
        ));
    }
    let (name, arg) = stage.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Bson::Null));
    let doc_arg = || -> Result<&Document> {
        match arg {
            Bson::Document(d) => Ok(d),
            _ => Err(CommandError::location(15959, format!("the {name} specification must be an object"))),
        }
    };
    Ok(match name {
        "$match" => {
            let d = match arg {
                Bson::Document(d) => d,
                _ => {
                    return Err(CommandError::location(
                        15959,
                        "the match filter must be an expression in an object",
                    ));
                }
            };
            Stage::Match(Filter::parse(d)?)
        }
        "$project" => {
            let d = doc_arg()?;
            if d.is_empty() {
                return Err(CommandError::location(51272, "$project requires at least one output field"));
            }
            Stage::Project(Projection::parse_kind(d, ProjectionKind::Aggregate)?)
        }
        "$addFields" | "$set" => {
            let Bson::Document(d) = arg else {
                return Err(CommandError::location(
                    40272,
                    format!(
                        "{name} specification stage must be an object, got {}",
                        crate::expr::type_name(arg)
                    ),
                ));
            };
            Stage::AddFields(parse_add_fields_spec(name, d)?)
        }
        "$unset" => {
            let paths: Vec<String> = match arg {
                Bson::String(s) => vec![s.clone()],
                Bson::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        Bson::String(s) => Ok(s.clone()),
                        _ => Err(CommandError::location(
                            31120,
                            "$unset specification must be a string or an array containing only string values",
                        )),
                    })
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(CommandError::location(
                        31002,
                        "$unset specification must be a string or an array",
                    ));
                }
            };
            Stage::Project(Projection::unset(&paths)?)
        }
        "$group" => {
            let d = doc_arg()?;
            let mut id = None;
            let mut accs = Vec::new();
            for (k, v) in d {
                if k == "_id" {
                    id = Some(Expr::parse(v)?);
                } else {
                    let (acc, e) = parse_acc(k, v)?;
                    accs.push((k.clone(), acc, e));
                }
            }
            let id =
                id.ok_or_else(|| CommandError::location(15955, "a group specification must include an _id"))?;
            Stage::Group { id, accs }
        }
        "$sort" => {
            let d = doc_arg()?;
            if d.is_empty() {
                return Err(CommandError::location(15976, "$sort stage must have at least one sort key"));
            }
            Stage::Sort(SortSpec::parse(d)?)
        }
        "$skip" => {
            let n = stage_int(arg, "$skip", 5107200)?;
            if n < 0 {
                return Err(CommandError::location(
                    5107200,
                    format!("invalid argument to $skip stage: Expected a non-negative number in: $skip: {n}"),
                ));
            }
            Stage::Skip(n as u64)
        }
        "$limit" => {
            let n = stage_int(arg, "$limit", 5107201)?;
            if n <= 0 {
                return Err(CommandError::location(15958, "the limit must be positive"));
            }
            Stage::Limit(n as u64)
        }
        "$count" => {
            let Bson::String(s) = arg else {
                return Err(CommandError::location(40156, "the count field must be a non-empty string"));
            };
            if s.is_empty() {
                return Err(CommandError::location(40157, "the count field must be a non-empty string"));
            }
            if s.starts_with('$') {
                return Err(CommandError::location(40158, "the count field cannot be a $-prefixed path"));
            }
            if s.contains('.') {
                return Err(CommandError::location(40160, "the count field cannot contain '.'"));
            }
            Stage::Count(s.clone())
        }
        "$unwind" => parse_unwind(arg)?,
        "$lookup" => parse_lookup(arg)?,
        "$replaceRoot" => {
            let d = doc_arg()?;
            let nr = d.get("newRoot").ok_or_else(|| {
                CommandError::location(40231, "no newRoot specified for the $replaceRoot stage")
            })?;
            if d.len() != 1 {
                return Err(CommandError::location(40415, "unrecognized option to $replaceRoot stage"));
            }
            Stage::ReplaceRoot(Expr::parse(nr)?)
        }
        "$replaceWith" => Stage::ReplaceRoot(Expr::parse(arg)?),
        "$sortByCount" => {
            let ok = match arg {
                Bson::String(s) => s.starts_with('$'),
                Bson::Document(d) => d.len() == 1 && d.keys().all(|k| k.starts_with('$')),
                _ => false,
            };
            if !ok {
                return Err(CommandError::location(
                    40148,
                    "the sortByCount field must be defined as a $-prefixed path or an expression object",
                ));
            }
            Stage::SortByCount(Expr::parse(arg)?)
        }
        "$facet" => {
            let d = doc_arg()?;
            if d.is_empty() {
                return Err(CommandError::location(
                    40169,
                    "the $facet specification must be a non-empty object",
                ));
            }
            let mut facets = Vec::new();
            for (k, v) in d {
                // Facet names follow the field-name rules of field paths.
                let bad_name = if k.is_empty() {
                    Some((15998, "FieldPath field names may not be empty strings."))
                } else if k.starts_with('$') {
                    Some((16410, "FieldPath field names may not start with '$'."))
                } else if k.contains('.') {
                    Some((16412, "FieldPath field names may not contain '.'."))
                } else {
                    None
                };
                if let Some((code, why)) = bad_name {
                    return Err(CommandError::location(
                        code,
                        format!(
                            "$facet pipeline names must follow the naming rules of field path expressions. :: caused by :: {why}"
                        ),
                    ));
                }
                let Bson::Array(items) = v else {
                    return Err(CommandError::location(
                        40170,
                        format!(
                            "arguments to $facet must be arrays, {k} is type {}",
                            crate::expr::type_name(v)
                        ),
                    ));
                };
                let mut docs = Vec::new();
                for i in items {
                    let Bson::Document(sd) = i else {
                        return Err(CommandError::location(
                            40171,
                            format!(
                                "elements of arrays in $facet spec must be non-empty objects, {k} argument contained an element of type {}: {i}",
                                crate::expr::type_name(i)
                            ),
                        ));
                    };
                    let sname = sd.keys().next().map(String::as_str).unwrap_or_default();
                    if matches!(
                        sname,
                        "$facet" | "$out" | "$merge" | "$collStats" | "$indexStats" | "$currentOp"
                    ) {
                        return Err(CommandError::location(
                            40600,
                            format!("{sname} is not allowed to be used within a $facet stage"),
                        ));
                    }
                    docs.push(sd.clone());
                }
                if docs.is_empty() {
                    return Err(CommandError::bad_value("sub-pipeline in $facet stage cannot be empty"));
                }
                facets.push((k.clone(), Pipeline::parse(&docs)?));
            }
            Stage::Facet(facets)
        }
        "$sample" => {
            let d = doc_arg()?;
            let size = d
                .get("size")
                .ok_or_else(|| CommandError::location(28749, "$sample stage must specify a size"))?;
            let n = stage_int(size, "$sample", 28746)?;
            if n < 0 {
                return Err(CommandError::location(28747, "size argument to $sample must not be negative"));
            }
            Stage::Sample(n as u64)
        }
        "$documents" => Stage::Documents(Expr::parse(arg)?),
        "$unionWith" => parse_union_with(arg)?,
        "$bucket" => parse_bucket(doc_arg()?)?,
        // The node writes a final `$out` / `$merge` itself (it takes it off before parsing):
        // any left here is not final.
        "$out" | "$merge" => {
            return Err(CommandError::location(
                40601,
                format!("{name} can only be the final stage in the pipeline"),
            ));
        }
        "$currentOp" | "$listSessions" | "$listLocalSessions" | "$collStats" | "$indexStats"
        | "$changeStream" | "$planCacheStats" => {
            return Err(CommandError::location(
                40602,
                format!("{name} is only valid as the first stage in a pipeline"),
            ));
        }
        other => return Err(CommandError::unrecognized_stage(other)),
    })
}

/// Counts documents, polls for interruption at each and checks every [`CHECK_EVERY`] of them.
struct Ticker<'a> {
    env: &'a dyn PipelineEnv,
    n: usize,
}

impl Ticker<'_> {
    fn tick(&mut self) -> Result<()> {
        crate::interrupt::poll()?;
        self.n += 1;
        if self.n.is_multiple_of(CHECK_EVERY) {
            self.env.check()?;
        }
        Ok(())
    }
}

/// State of one accumulator in one group.
#[derive(Debug, Clone)]
enum AccState {
    Sum(Bson),
    Avg(f64, u64),
    Best(Option<Bson>),
    First(Option<Bson>),
    Last(Bson),
    Push(Vec<Bson>),
    Set(Vec<Bson>, std::collections::HashSet<String>),
    Merge(Document),
    Std(Vec<f64>),
}

impl AccState {
    fn new(acc: Acc) -> Self {
        match acc {
            Acc::Sum => AccState::Sum(Bson::Int32(0)),
            Acc::Avg => AccState::Avg(0.0, 0),
            Acc::Min | Acc::Max => AccState::Best(None),
            Acc::First => AccState::First(None),
            Acc::Last => AccState::Last(Bson::Null),
            Acc::Push => AccState::Push(Vec::new()),
            Acc::AddToSet => AccState::Set(Vec::new(), Default::default()),
            Acc::MergeObjects => AccState::Merge(Document::new()),
            Acc::StdDevPop | Acc::StdDevSamp => AccState::Std(Vec::new()),
        }
    }

    /// How many values the state collects (`$push`, `$addToSet`, `$stdDev*`).
    fn held(&self) -> usize {
        match self {
            AccState::Push(items) | AccState::Set(items, _) => items.len(),
            AccState::Std(xs) => xs.len(),
            _ => 0,
        }
    }

    fn add(&mut self, acc: Acc, v: Bson) -> Result<()> {
        match self {
            AccState::Sum(s) => {
                if let Some(n) = num_add(s, &v) {
                    *s = n;
                }
            }
            AccState::Avg(sum, n) => {
                if let Some(x) = as_num(&v) {
                    *sum += match x {
                        Num::Int(i) => i as f64,
                        Num::Float(f) => f,
                    };
                    *n += 1;
                }
            }
            AccState::Best(b) => {
                if !matches!(v, Bson::Null | Bson::Undefined) {
                    let better = match b {
                        None => true,
                        Some(cur) => {
                            let o = cmp_bson(&v, cur);
                            if acc == Acc::Min { o.is_lt() } else { o.is_gt() }
                        }
                    };
                    if better {
                        *b = Some(v);
                    }
                }
            }
            AccState::First(f) => {
                if f.is_none() {
                    *f = Some(if is_missing(&v) { Bson::Null } else { v });
                }
            }
            AccState::Last(l) => *l = if is_missing(&v) { Bson::Null } else { v },
            AccState::Push(items) => {
                if !is_missing(&v) {
                    items.push(v);
                }
            }
            AccState::Set(items, seen) => {
                if !is_missing(&v) {
                    let mut k = String::new();
                    canonical_key(&v, &mut k);
                    if seen.insert(k) {
                        items.push(v);
                    }
                }
            }
            AccState::Merge(d) => match v {
                Bson::Document(sub) => {
                    for (k, x) in sub {
                        d.insert(k, x);
                    }
                }
                Bson::Null | Bson::Undefined => {}
                other => {
                    return Err(CommandError::location(
                        40400,
                        format!(
                            "$mergeObjects requires object inputs, but input {other} is of type {}",
                            crate::expr::type_name(&other)
                        ),
                    ));
                }
            },
            AccState::Std(xs) => {
                if let Some(x) = as_num(&v) {
                    xs.push(match x {
                        Num::Int(i) => i as f64,
                        Num::Float(f) => f,
                    });
                }
            }
        }
        Ok(())
    }

    fn finish(self, acc: Acc) -> Bson {
        match self {
            AccState::Sum(s) => s,
            AccState::Avg(_, 0) => Bson::Null,
            AccState::Avg(sum, n) => Bson::Double(sum / n as f64),
            AccState::Best(b) => b.unwrap_or(Bson::Null),
            AccState::First(f) => f.unwrap_or(Bson::Null),
            AccState::Last(l) => l,
            AccState::Push(items) | AccState::Set(items, _) => Bson::Array(items),
            AccState::Merge(d) => Bson::Document(d),
            AccState::Std(xs) => {
                let n = xs.len();
                let denom = if acc == Acc::StdDevSamp { n.saturating_sub(1) } else { n };
                if denom == 0 {
                    return Bson::Null;
                }
                let mean = xs.iter().sum::<f64>() / n as f64;
                let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / denom as f64;
                Bson::Double(var.sqrt())
            }
        }
    }
}

fn apply_add(
    target: &mut Document,
    spec: &[(String, AddSpec)],
    root: &dyn Fields,
    ctx: &mut EvalCtx,
) -> Result<()> {
    for (k, s) in spec {
        match s {
            AddSpec::Value(e) => {
                let v = e.eval(root, ctx)?;
                if is_missing(&v) {
                    target.remove(k);
                } else {
                    target.insert(k.clone(), v);
                }
            }
            AddSpec::Nested(sub) => match target.get_mut(k) {
                Some(Bson::Document(d)) => apply_add(d, sub, root, ctx)?,
                Some(Bson::Array(items)) => {
                    for it in items.iter_mut() {
                        match it {
                            Bson::Document(d) => apply_add(d, sub, root, ctx)?,
                            other => {
                                let mut d = Document::new();
                                apply_add(&mut d, sub, root, ctx)?;
                                *other = Bson::Document(d);
                            }
                        }
                    }
                }
                _ => {
                    let mut d = Document::new();
                    apply_add(&mut d, sub, root, ctx)?;
                    target.insert(k.clone(), d);
                }
            },
        }
    }
    Ok(())
}

/// Field lookup through documents only (aggregation paths do not index arrays).
fn get_doc_path<'a>(doc: &'a Document, parts: &[String]) -> Option<&'a Bson> {
    let (first, rest) = parts.split_first()?;
    let mut cur = doc.get(first)?;
    for p in rest {
        match cur {
            Bson::Document(d) => cur = d.get(p)?,
            _ => return None,
        }
    }
    Some(cur)
}

fn set_doc_path(doc: &mut Document, parts: &[String], v: Bson) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.insert(first.clone(), v);
        return;
    }
    if !matches!(doc.get(first), Some(Bson::Document(_))) {
        doc.insert(first.clone(), Document::new());
    }
    if let Some(Bson::Document(d)) = doc.get_mut(first) {
        set_doc_path(d, rest, v);
    }
}

fn remove_doc_path(doc: &mut Document, parts: &[String]) {
    let Some((last, parent)) = parts.split_last() else {
        return;
    };
    if parent.is_empty() {
        doc.remove(last);
        return;
    }
    let mut cur = doc;
    for p in parent {
        match cur.get_mut(p) {
            Some(Bson::Document(d)) => cur = d,
            _ => return,
        }
    }
    cur.remove(last);
}

/// Keys under which a value is found by `$lookup` equality: the value, and for arrays each
/// element too; missing counts as null.
fn lookup_keys(doc: &Document, path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut found = Vec::new();
    collect_doc(doc, &parts, &mut found);
    let mut keys = Vec::new();
    let mut push = |v: &Bson| {
        let mut k = String::new();
        let v = if matches!(v, Bson::Undefined) { &Bson::Null } else { v };
        canonical_key(v, &mut k);
        if !keys.contains(&k) {
            keys.push(k);
        }
    };
    for v in found {
        match v {
            None => push(&Bson::Null),
            Some(Bson::Array(items)) => {
                if items.is_empty() {
                    // An empty array matches nothing by element but still matches itself.
                    push(&Bson::Array(Vec::new()));
                }
                for i in items {
                    push(i);
                }
                push(&Bson::Array(items.clone()));
            }
            Some(x) => push(x),
        }
    }
    keys
}

/// Tiny deterministic-per-run PRNG for `$sample` (xorshift64*), seeded from the clock.
fn sample_indices(len: usize, n: usize) -> Vec<usize> {
    let mut state = (bson::DateTime::now().timestamp_millis() as u64) ^ 0x9E37_79B9_7F4A_7C15 ^ (len as u64);
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut idx: Vec<usize> = (0..len).collect();
    let take = n.min(len);
    for i in 0..take {
        let j = i + (next() % (len - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(take);
    idx
}

impl Pipeline {
    /// Parses the stages. 40324 on unknown stages.
    pub fn parse(stages: &[Document]) -> Result<Self> {
        Ok(Pipeline {
            stages: stages.iter().map(parse_stage).collect::<Result<_>>()?,
            lets: crate::vars::LetVars::none(),
        })
    }

    /// The pipeline of a command with `let` variables: every stage (nested pipelines included)
    /// sees them, and so does the leading `$match` the engine may answer with an index.
    #[must_use]
    pub fn with_let(mut self, lets: &crate::vars::LetVars) -> Self {
        for s in &mut self.stages {
            if let Stage::Match(f) = s {
                f.bind_let(lets);
            }
        }
        self.lets = lets.clone();
        self
    }

    /// [`Pipeline::with_let`] for a command's pipeline, after checking that every variable its
    /// stages read is a system variable, one of `lets` or bound around it (17276 otherwise, when
    /// the command is parsed, as mongod fails it, rather than only once a document reaches it).
    pub fn checked_let(self, lets: &crate::vars::LetVars) -> Result<Self> {
        self.check_vars(&mut lets.names())?;
        Ok(self.with_let(lets))
    }

    /// The pipeline without its first stage (when a caller has applied that stage itself).
    #[must_use]
    pub fn without_first(mut self) -> Self {
        if !self.stages.is_empty() {
            self.stages.remove(0);
        }
        self
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// True for an empty pipeline.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The filter of a leading `$match`, which the engine may answer with an index.
    pub fn leading_match(&self) -> Option<&Filter> {
        match self.stages.first() {
            Some(Stage::Match(f)) => Some(f),
            _ => None,
        }
    }

    /// Names of the foreign collections this pipeline's `$lookup` stages read (also nested).
    pub fn lookup_collections(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            match s {
                Stage::Lookup { from, pipeline, .. } => {
                    out.push(from.clone());
                    if let Some(p) = pipeline {
                        out.extend(p.lookup_collections());
                    }
                }
                Stage::Facet(fs) => {
                    for (_, p) in fs {
                        out.extend(p.lookup_collections());
                    }
                }
                Stage::UnionWith { coll, pipeline } => {
                    out.push(coll.clone());
                    if let Some(p) = pipeline {
                        out.extend(p.lookup_collections());
                    }
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Runs the pipeline over the documents of `src`, building as few of them whole as it can:
    /// when the leading stages only select, order, count or add fields (`$match`, `$addFields` /
    /// `$set`, `$sort`, `$skip`, `$limit`, `$count`, and `$facet` pipelines made of them as far as
    /// they go), read named fields only (no `$$ROOT`) and add none the source's documents have,
    /// they run on partial documents holding just the fields they read; only the documents that
    /// come out of them are built whole. The result is the same as [`Pipeline::run`] over every
    /// document built whole, field order included.
    pub fn run_source(&self, src: &dyn DocSource, env: &dyn PipelineEnv) -> Result<Vec<Document>> {
        let mut ctx = self.lets.eval_ctx();
        env.check()?;
        let mut t = Ticker { env, n: 0 };
        let mut deps = Deps::default();
        let mut written = Vec::new();
        partial_region(&self.stages, &mut deps, &mut written);
        let partial =
            self.stages.first().is_some_and(runs_on_partial) && !written.iter().any(|w| src.may_have(w));
        if let (true, Some(mut fields)) = (partial, deps.into_fields()) {
            // Fields the stages add are not the source's: not asked for.
            fields.retain(|f| !written.contains(f));
            let live: Vec<String> = fields.iter().filter(|f| src.is_live(f)).cloned().collect();
            let mut rows = Vec::with_capacity(src.len());
            for i in 0..src.len() {
                t.tick()?;
                let over = match src.fixed(i) {
                    Some(_) if live.is_empty() => Document::new(),
                    Some(_) => src.partial(i, &live),
                    None => src.partial(i, &fields),
                };
                rows.push(Row { over, src: Some(i) });
            }
            let run = Run { src, written: &written };
            return run.rows(&self.stages, rows, env, &mut ctx);
        }
        let mut docs = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            t.tick()?;
            docs.push(src.whole(i));
        }
        run_stages(&self.stages, docs, env, &mut ctx)
    }

    /// Runs the pipeline over `input`.
    pub fn run(&self, input: Vec<Document>, env: &dyn PipelineEnv) -> Result<Vec<Document>> {
        let mut ctx = self.lets.eval_ctx();
        self.run_ctx(input, env, &mut ctx)
    }

    fn run_ctx(
        &self,
        docs: Vec<Document>,
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        env.check()?;
        run_stages(&self.stages, docs, env, ctx)
    }

    /// Runs the pipeline over documents it may not take ([`Pipeline::run_refs`]); same result as
    /// `run_ctx(docs.to_vec())`.
    fn run_borrowed(
        &self,
        docs: &[Document],
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        self.run_refs_ctx(docs.iter().collect(), env, ctx)
    }

    /// Runs the pipeline over documents shared with their owner (the engine's stored
    /// documents): the leading `$match`, `$sort`, `$skip`, `$limit`, `$count` and a `$group`
    /// read them in place, and only what reaches another stage is copied. Same result as
    /// [`Pipeline::run`] over copies.
    pub fn run_refs(&self, docs: Vec<&Document>, env: &dyn PipelineEnv) -> Result<Vec<Document>> {
        let mut ctx = self.lets.eval_ctx();
        self.run_refs_ctx(docs, env, &mut ctx)
    }

    fn run_refs_ctx(
        &self,
        mut refs: Vec<&Document>,
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        env.check()?;
        for (i, stage) in self.stages.iter().enumerate() {
            env.check()?;
            match stage {
                Stage::Match(f) => {
                    let mut t = Ticker { env, n: 0 };
                    let mut kept = Vec::with_capacity(refs.len());
                    for d in refs {
                        t.tick()?;
                        if f.matches_ctx(d, ctx)? {
                            kept.push(d);
                        }
                    }
                    refs = kept;
                }
                Stage::Sort(s) => {
                    s.sort_top(&mut refs, top_k(&self.stages[i + 1..]));
                    crate::mem::check_sort(refs.iter().copied())?;
                }
                Stage::Skip(n) => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX).min(refs.len());
                    refs.drain(..n);
                }
                Stage::Limit(n) => refs.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
                Stage::Count(name) => {
                    let counted = count_docs(refs.len(), name);
                    return run_stages(&self.stages[i + 1..], counted, env, ctx);
                }
                Stage::Group { id, accs } => {
                    let mut t = Ticker { env, n: 0 };
                    let grouped = group(id, accs, refs.into_iter(), &mut t, ctx)?;
                    return run_stages(&self.stages[i + 1..], grouped, env, ctx);
                }
                _ => {
                    let owned = refs.into_iter().cloned().collect();
                    return run_stages(&self.stages[i..], owned, env, ctx);
                }
            }
        }
        Ok(refs.into_iter().cloned().collect())
    }
}

/// A document of a late-materialized run. While `src` is set it is partial: `over` holds the
/// live fields the stages read and the fields they added, and the other fields are read in
/// place from the source's fixed document. Otherwise `over` is the whole document.
#[derive(Debug, Clone)]
struct Row {
    over: Document,
    src: Option<usize>,
}

/// A row seen as a document.
struct View<'a> {
    row: &'a Row,
    run: &'a Run<'a>,
}

impl Fields for View<'_> {
    fn field(&self, key: &str) -> Option<&Bson> {
        self.run.get(self.row, key)
    }
    fn to_document(&self) -> Document {
        self.run.materialize_one(self.row.clone())
    }
}

/// What a late-materialized run reads rows from.
struct Run<'a> {
    src: &'a dyn DocSource,
    /// Top-level fields the stages add (none of them is the source's).
    written: &'a [String],
}

/// Whether a stage can run on partial documents: it only selects, orders, counts or adds fields.
/// (A `$facet` can: each of its pipelines runs on partial documents as far as it can.)
fn runs_on_partial(stage: &Stage) -> bool {
    matches!(
        stage,
        Stage::Match(_)
            | Stage::AddFields(_)
            | Stage::Sort(_)
            | Stage::Skip(_)
            | Stage::Limit(_)
            | Stage::Count(_)
            | Stage::Facet(_)
    )
}

fn add_spec_deps(spec: &[(String, AddSpec)], deps: &mut Deps) {
    for (_, s) in spec {
        match s {
            AddSpec::Value(e) => e.add_deps(deps),
            AddSpec::Nested(sub) => add_spec_deps(sub, deps),
        }
    }
}

/// What the stages that run on partial documents read (`deps`) and write at the top level
/// (`written`), through every `$facet` pipeline.
fn partial_region(stages: &[Stage], deps: &mut Deps, written: &mut Vec<String>) {
    for stage in stages.iter().take_while(|s| runs_on_partial(s)) {
        match stage {
            Stage::Match(f) => f.add_deps(deps),
            Stage::AddFields(spec) => {
                add_spec_deps(spec, deps);
                for (k, _) in spec {
                    if !written.contains(k) {
                        written.push(k.clone());
                    }
                }
            }
            Stage::Sort(s) => s.add_deps(deps),
            Stage::Facet(facets) => {
                for (_, p) in facets {
                    partial_region(&p.stages, deps, written);
                }
            }
            _ => {}
        }
    }
}

impl<'s> Run<'s> {
    fn view<'b>(&'b self, row: &'b Row) -> View<'b> {
        View { row, run: self }
    }

    /// Top-level field `key` of `row`: added or live (in `over`), else the fixed document's.
    fn get<'x>(&'x self, row: &'x Row, key: &str) -> Option<&'x Bson> {
        // A partial row's own fields are few: a scan beats hashing the key.
        let own = if row.src.is_some() && row.over.len() <= 8 {
            row.over.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
        } else {
            row.over.get(key)
        };
        if let Some(v) = own {
            return Some(v);
        }
        let i = row.src?;
        if self.src.is_live(key) {
            return None;
        }
        self.src.fixed(i)?.get(key)
    }

    /// Row `r` whole: the source's document with the fields the stages added (no stage that runs
    /// on partial documents changes a field the source has, so these are all the differences),
    /// appended in the order they were added, as running the stages on the whole documents would
    /// have appended them.
    fn materialize_one(&self, r: Row) -> Document {
        match r.src {
            None => r.over,
            Some(i) => {
                let mut whole = self.src.whole(i);
                for (k, v) in r.over {
                    if self.written.contains(&k) {
                        whole.insert(k, v);
                    }
                }
                whole
            }
        }
    }

    fn materialize(&self, rows: Vec<Row>) -> Vec<Document> {
        rows.into_iter().map(|r| self.materialize_one(r)).collect()
    }

    /// `$addFields` on rows: evaluated on each row's view, written into its `over`.
    fn add_fields(
        &self,
        spec: &[(String, AddSpec)],
        rows: &mut [Row],
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<()> {
        let mut t = Ticker { env, n: 0 };
        let top_level = spec.iter().all(|(_, s)| matches!(s, AddSpec::Value(_)));
        let mut values = Vec::with_capacity(spec.len());
        for r in rows.iter_mut() {
            t.tick()?;
            if top_level {
                values.clear();
                let view = self.view(r);
                for (_, s) in spec {
                    if let AddSpec::Value(e) = s {
                        values.push(e.eval(&view, ctx)?);
                    }
                }
                for ((k, _), v) in spec.iter().zip(values.drain(..)) {
                    if is_missing(&v) {
                        r.over.remove(k);
                    } else {
                        r.over.insert(k.clone(), v);
                    }
                }
            } else {
                // Nested specifications read the row as it was while writing into it.
                let before = r.clone();
                apply_add(&mut r.over, spec, &self.view(&before), ctx)?;
            }
        }
        Ok(())
    }

    /// Runs `stages` on rows, partial ones staying partial as long as the stages allow, then whole.
    fn rows(
        &self,
        stages: &[Stage],
        mut rows: Vec<Row>,
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        for (i, stage) in stages.iter().enumerate() {
            env.check()?;
            let mut t = Ticker { env, n: 0 };
            match stage {
                Stage::Match(f) => {
                    let mut kept = Vec::with_capacity(rows.len());
                    for r in rows {
                        t.tick()?;
                        if f.matches_ctx(&self.view(&r), ctx)? {
                            kept.push(r);
                        }
                    }
                    rows = kept;
                }
                Stage::AddFields(spec) => self.add_fields(spec, &mut rows, env, ctx)?,
                Stage::Sort(s) => {
                    let order = s.top_order(&rows, top_k(&stages[i + 1..]), |r, out| {
                        s.key_refs_with(|k| self.get(r, k), out)
                    });
                    crate::sort::permute(&mut rows, order);
                }
                Stage::Skip(n) => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX).min(rows.len());
                    rows.drain(..n);
                }
                Stage::Limit(n) => rows.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
                Stage::Count(name) => {
                    rows = count_docs(rows.len(), name)
                        .into_iter()
                        .map(|over| Row { over, src: None })
                        .collect();
                }
                Stage::Facet(facets) => {
                    let mut result = Document::new();
                    let mut input = Some(rows);
                    for (j, (name, p)) in facets.iter().enumerate() {
                        let r = if j + 1 == facets.len() {
                            self.rows(&p.stages, input.take().unwrap_or_default(), env, ctx)?
                        } else {
                            self.rows_borrowed(&p.stages, input.as_deref().unwrap_or_default(), env, ctx)?
                        };
                        result.insert(name.clone(), Bson::Array(r.into_iter().map(Bson::Document).collect()));
                    }
                    rows = vec![Row { over: result, src: None }];
                }
                _ => {
                    let docs = self.materialize(rows);
                    return run_stages(&stages[i..], docs, env, ctx);
                }
            }
        }
        Ok(self.materialize(rows))
    }

    /// [`Run::rows`] over rows it may not take: selecting stages work on references first.
    fn rows_borrowed(
        &self,
        stages: &[Stage],
        rows: &[Row],
        env: &dyn PipelineEnv,
        ctx: &mut EvalCtx,
    ) -> Result<Vec<Document>> {
        let mut refs: Vec<&Row> = rows.iter().collect();
        for (i, stage) in stages.iter().enumerate() {
            env.check()?;
            match stage {
                Stage::Match(f) => {
                    let mut t = Ticker { env, n: 0 };
                    let mut kept = Vec::with_capacity(refs.len());
                    for r in refs {
                        t.tick()?;
                        if f.matches_ctx(&self.view(r), ctx)? {
                            kept.push(r);
                        }
                    }
                    refs = kept;
                }
                Stage::Sort(s) => {
                    let order = s.top_order(&refs, top_k(&stages[i + 1..]), |r, out| {
                        s.key_refs_with(|k| self.get(r, k), out)
                    });
                    crate::sort::permute(&mut refs, order);
                }
                Stage::Skip(n) => {
                    let n = usize::try_from(*n).unwrap_or(usize::MAX).min(refs.len());
                    refs.drain(..n);
                }
                Stage::Limit(n) => refs.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
                Stage::Count(name) => {
                    let counted = count_docs(refs.len(), name)
                        .into_iter()
                        .map(|over| Row { over, src: None })
                        .collect();
                    return self.rows(&stages[i + 1..], counted, env, ctx);
                }
                _ => {
                    let owned = refs.into_iter().cloned().collect();
                    return self.rows(&stages[i..], owned, env, ctx);
                }
            }
        }
        Ok(self.materialize(refs.into_iter().cloned().collect()))
    }
}

/// How many documents a `$sort` followed by `rest` can pass on at most: `$skip`s then a `$limit`
/// bound it (MongoDB folds them into a top-k sort); anything else does not.
fn top_k(rest: &[Stage]) -> usize {
    let mut skipped: usize = 0;
    for stage in rest {
        match stage {
            Stage::Skip(n) => skipped = skipped.saturating_add(usize::try_from(*n).unwrap_or(usize::MAX)),
            Stage::Limit(n) => return skipped.saturating_add(usize::try_from(*n).unwrap_or(usize::MAX)),
            _ => return usize::MAX,
        }
    }
    usize::MAX
}

/// `$count`'s output for `n` documents: nothing for none.
fn count_docs(n: usize, name: &str) -> Vec<Document> {
    if n == 0 {
        return Vec::new();
    }
    let v = i32::try_from(n).map(Bson::Int32).unwrap_or(Bson::Int64(n as i64));
    let mut d = Document::new();
    d.insert(name.to_owned(), v);
    vec![d]
}

fn run_stages(
    stages: &[Stage],
    mut docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    for (i, stage) in stages.iter().enumerate() {
        env.check()?;
        docs = match stage {
            Stage::Sort(s) => {
                let mut docs = docs;
                s.sort_top(&mut docs, top_k(&stages[i + 1..]));
                crate::mem::check_sort(&docs)?;
                docs
            }
            _ => run_stage(stage, docs, env, ctx)?,
        };
    }
    Ok(docs)
}

/// `$group` over documents it only reads (owned or borrowed input alike): one pass, the groups
/// in order of first appearance, bounded by mongod's `$group` memory limit.
fn group<'a>(
    id: &Expr,
    accs: &[(String, Acc, Expr)],
    docs: impl Iterator<Item = &'a Document>,
    t: &mut Ticker<'_>,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(Bson, Vec<AccState>)> = Vec::new();
    // What the groups hold, as mongod counts it against its $group limit: keys and the
    // values of accumulators that collect them.
    let mut bytes = 0usize;
    for d in docs {
        t.tick()?;
        let mut key_val = id.eval(d, ctx)?;
        if is_missing(&key_val) {
            key_val = Bson::Null;
        }
        let mut key = String::new();
        canonical_key(&key_val, &mut key);
        let gi = match index.get(&key) {
            Some(i) => *i,
            None => {
                bytes += 2 * key.len() + crate::mem::value_size(&key_val) + 64 * accs.len();
                groups.push((key_val, accs.iter().map(|(_, a, _)| AccState::new(*a)).collect()));
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        for (ai, (_, acc, e)) in accs.iter().enumerate() {
            let v = e.eval(d, ctx)?;
            let st = &mut groups[gi].1[ai];
            let (held, size) = (st.held(), crate::mem::value_size(&v));
            st.add(*acc, v)?;
            if st.held() > held {
                bytes += 16 + size;
            }
        }
        if bytes > crate::mem::MAX_BLOCKING_BYTES {
            return Err(crate::mem::group_exceeded());
        }
    }
    Ok(groups
        .into_iter()
        .map(|(k, states)| {
            let mut out = Document::new();
            out.insert("_id", k);
            for ((name, acc, _), st) in accs.iter().zip(states) {
                out.insert(name.clone(), st.finish(*acc));
            }
            out
        })
        .collect())
}

fn run_stage(
    stage: &Stage,
    docs: Vec<Document>,
    env: &dyn PipelineEnv,
    ctx: &mut EvalCtx,
) -> Result<Vec<Document>> {
    let mut t = Ticker { env, n: 0 };
    Ok(match stage {
        Stage::Match(f) => {
            let mut out = Vec::new();
            for d in docs {
                t.tick()?;
                if f.matches_ctx(&d, ctx)? {
                    out.push(d);
                }
            }
            out
        }
        Stage::Project(p) => {
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                t.tick()?;
                out.push(p.apply_owned_ctx(d, ctx)?);
            }
            out
        }
        Stage::AddFields(spec) if spec.iter().all(|(_, s)| matches!(s, AddSpec::Value(_))) => {
            // Top-level fields only: every expression reads the input document as it was, so
            // evaluate them all, then write into that same document (no copy of it). Nested
            // specifications evaluate per array element, only when reached: they keep the copy.
            let mut out = Vec::with_capacity(docs.len());
            let mut values = Vec::with_capacity(spec.len());
            for mut d in docs {
                t.tick()?;
                values.clear();
                for (_, s) in spec {
                    if let AddSpec::Value(e) = s {
                        values.push(e.eval(&d, ctx)?);
                    }
                }
                for ((k, _), v) in spec.iter().zip(values.drain(..)) {
                    if is_missing(&v) {
                        d.remove(k);
                    } else {
                        d.insert(k.clone(), v);
                    }
                }
                out.push(d);
            }
            out
        }
        Stage::AddFields(spec) => {
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                t.tick()?;
                let mut new = d.clone();
                apply_add(&mut new, spec, &d, ctx)?;
                out.push(new);
            }
            out
        }
        Stage::Group { id, accs } => group(id, accs, docs.iter(), &mut t, ctx)?,
        Stage::Sort(s) => {
            let mut docs = docs;
            s.sort(&mut docs);
            crate::mem::check_sort(&docs)?;
            docs
        }
        Stage::Skip(n) => docs.into_iter().skip(usize::try_from(*n).unwrap_or(usize::MAX)).collect(),
        Stage::Limit(n) => docs.into_iter().take(usize::try_from(*n).unwrap_or(usize::MAX)).collect(),
        Stage::Count(name) => count_docs(docs.len(), name),
        Stage::Unwind { path, index, preserve } => {
            let mut out = Vec::new();
            let index_parts: Option<Vec<String>> =
                index.as_ref().map(|s| s.split('.').map(str::to_string).collect());
            for d in docs {
                t.tick()?;
                match get_doc_path(&d, path).cloned() {
                    Some(Bson::Array(items)) if !items.is_empty() => {
                        for (i, it) in items.into_iter().enumerate() {
                            let mut nd = d.clone();
                            set_doc_path(&mut nd, path, it);
                            if let Some(ip) = &index_parts {
                                set_doc_path(&mut nd, ip, Bson::Int64(i as i64));
                            }
                            out.push(nd);
                        }
                    }
                    Some(Bson::Array(_)) => {
                        if *preserve {
                            let mut nd = d;
                            remove_doc_path(&mut nd, path);
                            if let Some(ip) = &index_parts {
                                set_doc_path(&mut nd, ip, Bson::Null);
                            }
                            out.push(nd);
                        }
                    }
                    None | Some(Bson::Null) | Some(Bson::Undefined) => {
                        if *preserve {
                            let mut nd = d;
                            if let Some(ip) = &index_parts {
                                set_doc_path(&mut nd, ip, Bson::Null);
                            }
                            out.push(nd);
                        }
                    }
                    Some(_) => {
                        let mut nd = d;
                        if let Some(ip) = &index_parts {
                            set_doc_path(&mut nd, ip, Bson::Null);
                        }
                        out.push(nd);
                    }
                }
            }
            out
        }
        Stage::Lookup { from, local, foreign, as_field, lets, pipeline } => {
            let foreign_docs = env.lookup_collection(from)?;
            env.check()?;
            // Hash the foreign side by the keys of its foreignField values.
            let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
            if let Some(ff) = foreign {
                for (i, fd) in foreign_docs.iter().enumerate() {
                    t.tick()?;
                    for k in lookup_keys(fd, ff) {
                        by_key.entry(k).or_default().push(i);
                    }
                }
            }
            let as_parts: Vec<String> = as_field.split('.').map(str::to_string).collect();
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                t.tick()?;
                let mut matched: Vec<Document> = match local {
                    Some(lf) => {
                        let mut idx: Vec<usize> = Vec::new();
                        for k in lookup_keys(&d, lf) {
                            if let Some(is) = by_key.get(&k) {
                                idx.extend(is);
                            }
                        }
                        idx.sort_unstable();
                        idx.dedup();
                        idx.into_iter().map(|i| foreign_docs[i].clone()).collect()
                    }
                    None => foreign_docs.clone(),
                };
                if let Some(p) = pipeline {
                    let mut sub = ctx.clone();
                    for (name, e) in lets {
                        let v = e.eval(&d, ctx)?;
                        sub.bind(name.clone(), if is_missing(&v) { MISSING } else { v });
                    }
                    matched = p.run_ctx(matched, env, &mut sub)?;
                }
                let mut nd = d;
                let arr = Bson::Array(matched.into_iter().map(Bson::Document).collect());
                if crate::path::set_parts(&mut nd, &as_parts, arr.clone()).is_err() {
                    set_doc_path(&mut nd, &as_parts, arr);
                }
                out.push(nd);
            }
            out
        }
        Stage::ReplaceRoot(e) => {
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                t.tick()?;
                match e.eval(&d, ctx)? {
                    Bson::Document(nd) => out.push(nd),
                    other => {
                        return Err(CommandError::location(
                            40228,
                            format!(
                                "'newRoot' expression must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'. Input document: {d}",
                                if is_missing(&other) { "MISSING".to_string() } else { other.to_string() },
                                crate::expr::type_name(&other)
                            ),
                        ));
                    }
                }
            }
            out
        }
        Stage::SortByCount(e) => {
            let group = Stage::Group {
                id: e.clone(),
                accs: vec![("count".to_string(), Acc::Sum, Expr::Literal(Bson::Int32(1)))],
            };
            let mut out = run_stage(&group, docs, env, ctx)?;
            // Descending by count; ties keep first-seen order.
            out.sort_by(|a, b| {
                cmp_bson(b.get("count").unwrap_or(&Bson::Null), a.get("count").unwrap_or(&Bson::Null))
            });
            out
        }
        Stage::Facet(facets) => {
            // Every facet sees the same input: all but the last borrow it (copying only what
            // their selecting stages let through), the last one takes it.
            let mut result = Document::new();
            let mut input = Some(docs);
            for (i, (name, p)) in facets.iter().enumerate() {
                let r = if i + 1 == facets.len() {
                    p.run_ctx(input.take().unwrap_or_default(), env, ctx)?
                } else {
                    p.run_borrowed(input.as_deref().unwrap_or_default(), env, ctx)?
                };
                result.insert(name.clone(), Bson::Array(r.into_iter().map(Bson::Document).collect()));
            }
            vec![result]
        }
        Stage::Sample(n) => {
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            let idx = sample_indices(docs.len(), n);
            let mut docs: Vec<Option<Document>> = docs.into_iter().map(Some).collect();
            idx.into_iter().filter_map(|i| docs[i].take()).collect()
        }
        Stage::UnionWith { coll, pipeline } => {
            let mut docs = docs;
            let mut other = env.lookup_collection(coll)?;
            if let Some(p) = pipeline {
                other = p.run_ctx(other, env, ctx)?;
            }
            docs.extend(other);
            docs
        }
        Stage::Bucket { group_by, boundaries, default, accs } => {
            // Bucket index per document: position in `boundaries`, or `boundaries.len()` for default.
            let mut states: Vec<Option<Vec<AccState>>> = vec![None; boundaries.len()];
            let bucket_type = crate::compare::canonical_type_order(&boundaries[0]);
            for d in &docs {
                t.tick()?;
                let v = group_by.eval(d, ctx)?;
                let v = if is_missing(&v) { Bson::Null } else { v };
                let slot = if crate::compare::canonical_type_order(&v) == bucket_type {
                    boundaries
                        .windows(2)
                        .position(|w| !cmp_bson(&v, &w[0]).is_lt() && cmp_bson(&v, &w[1]).is_lt())
                } else {
                    None
                };
                let slot = match (slot, default) {
                    (Some(i), _) => i,
                    (None, Some(_)) => boundaries.len() - 1,
                    (None, None) => {
                        return Err(CommandError::location(
                            40066,
                            "$switch could not find a matching branch for an input, and no default was specified.",
                        ));
                    }
                };
                let st = states[slot]
                    .get_or_insert_with(|| accs.iter().map(|(_, a, _)| AccState::new(*a)).collect());
                for (ai, (_, acc, e)) in accs.iter().enumerate() {
                    let v = e.eval(d, ctx)?;
                    st[ai].add(*acc, v)?;
                }
            }
            let mut out = Vec::new();
            for (i, st) in states.into_iter().enumerate() {
                let Some(st) = st else { continue };
                let id = if i + 1 == boundaries.len() {
                    default.clone().unwrap_or(Bson::Null)
                } else {
                    boundaries[i].clone()
                };
                let mut d = Document::new();
                d.insert("_id", id);
                for ((name, acc, _), s) in accs.iter().zip(st) {
                    d.insert(name.clone(), s.finish(*acc));
                }
                out.push(d);
            }
            out
        }
        Stage::Documents(e) => {
            let empty = Document::new();
            match e.eval(&empty, ctx)? {
                Bson::Array(items) => items
                    .into_iter()
                    .map(|i| match i {
                        Bson::Document(d) => Ok(d),
                        _ => Err(CommandError::location(
                            5858203,
                            "$documents stage must evaluate to an array of objects",
                        )),
                    })
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(CommandError::location(
                        5858203,
                        "$documents stage must evaluate to an array of objects",
                    ));
                }
            }
        }
    })
}

mod stream;
mod vars_check;
pub use stream::StreamState;

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
