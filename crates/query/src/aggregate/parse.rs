//! Parsing a pipeline's stages, with mongod's parse-time errors.

use bson::{Bson, Document};

use super::{Acc, AddSpec, Lookup, Pipeline, Stage};
use crate::compare::{Num, as_num, cmp_bson};
use crate::error::{CommandError, Result};
use crate::expr::Expr;
use crate::filter::Filter;
use crate::projection::{Projection, ProjectionKind};
use crate::sort::SortSpec;

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

pub(super) fn parse_acc(field: &str, v: &Bson) -> Result<(Acc, Expr)> {
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
    Ok(Stage::Lookup(Lookup { from, local, foreign, as_field, lets, pipeline }))
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

pub(super) fn parse_stage(stage: &Document) -> Result<Stage> {
    if stage.len() != 1 {
        return Err(CommandError::location(
            40323,
            "A pipeline stage specification object must contain exactly one field.",
        ));
    }
    let (name, arg) = stage.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Bson::Null));
    match name {
        "$match" => parse_match(name, arg),
        "$project" => parse_project(name, arg),
        "$addFields" | "$set" => parse_add_fields_stage(name, arg),
        "$unset" => parse_unset(name, arg),
        "$group" => parse_group(name, arg),
        "$sort" => parse_sort(name, arg),
        "$skip" => parse_skip(name, arg),
        "$limit" => parse_limit(name, arg),
        "$count" => parse_count(name, arg),
        "$unwind" => parse_unwind(arg),
        "$lookup" => parse_lookup(arg),
        "$replaceRoot" => parse_replace_root(name, arg),
        "$replaceWith" => Ok(Stage::ReplaceRoot(Expr::parse(arg)?)),
        "$sortByCount" => parse_sort_by_count(name, arg),
        "$facet" => parse_facet(name, arg),
        "$sample" => parse_sample(name, arg),
        "$documents" => Ok(Stage::Documents(Expr::parse(arg)?)),
        "$unionWith" => parse_union_with(arg),
        "$bucket" => parse_bucket(doc_arg(name, arg)?),
        // The node writes a final `$out` / `$merge` itself (it takes it off before parsing):
        // any left here is not final.
        "$out" | "$merge" => {
            Err(CommandError::location(40601, format!("{name} can only be the final stage in the pipeline")))
        }
        "$currentOp" | "$listSessions" | "$listLocalSessions" | "$collStats" | "$indexStats"
        | "$changeStream" | "$planCacheStats" => Err(CommandError::location(
            40602,
            format!("{name} is only valid as the first stage in a pipeline"),
        )),
        other => Err(CommandError::unrecognized_stage(other)),
    }
}

/// A stage's argument that must be an object (15959 otherwise).
fn doc_arg<'a>(name: &str, arg: &'a Bson) -> Result<&'a Document> {
    match arg {
        Bson::Document(d) => Ok(d),
        _ => Err(CommandError::location(15959, format!("the {name} specification must be an object"))),
    }
}

fn parse_match(_name: &str, arg: &Bson) -> Result<Stage> {
    let d = match arg {
        Bson::Document(d) => d,
        _ => {
            return Err(CommandError::location(15959, "the match filter must be an expression in an object"));
        }
    };
    Ok(Stage::Match(Filter::parse(d)?))
}

fn parse_project(name: &str, arg: &Bson) -> Result<Stage> {
    let d = doc_arg(name, arg)?;
    if d.is_empty() {
        return Err(CommandError::location(51272, "$project requires at least one output field"));
    }
    Ok(Stage::Project(Projection::parse_kind(d, ProjectionKind::Aggregate)?))
}

fn parse_add_fields_stage(name: &str, arg: &Bson) -> Result<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::location(
            40272,
            format!("{name} specification stage must be an object, got {}", crate::expr::type_name(arg)),
        ));
    };
    Ok(Stage::AddFields(parse_add_fields_spec(name, d)?))
}

fn parse_unset(_name: &str, arg: &Bson) -> Result<Stage> {
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
            return Err(CommandError::location(31002, "$unset specification must be a string or an array"));
        }
    };
    Ok(Stage::Project(Projection::unset(&paths)?))
}

fn parse_group(name: &str, arg: &Bson) -> Result<Stage> {
    let d = doc_arg(name, arg)?;
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
    let id = id.ok_or_else(|| CommandError::location(15955, "a group specification must include an _id"))?;
    Ok(Stage::Group { id, accs })
}

fn parse_sort(name: &str, arg: &Bson) -> Result<Stage> {
    let d = doc_arg(name, arg)?;
    if d.is_empty() {
        return Err(CommandError::location(15976, "$sort stage must have at least one sort key"));
    }
    Ok(Stage::Sort(SortSpec::parse(d)?))
}

fn parse_skip(_name: &str, arg: &Bson) -> Result<Stage> {
    let n = stage_int(arg, "$skip", 5107200)?;
    if n < 0 {
        return Err(CommandError::location(
            5107200,
            format!("invalid argument to $skip stage: Expected a non-negative number in: $skip: {n}"),
        ));
    }
    Ok(Stage::Skip(n as u64))
}

fn parse_limit(_name: &str, arg: &Bson) -> Result<Stage> {
    let n = stage_int(arg, "$limit", 5107201)?;
    if n <= 0 {
        return Err(CommandError::location(15958, "the limit must be positive"));
    }
    Ok(Stage::Limit(n as u64))
}

fn parse_count(_name: &str, arg: &Bson) -> Result<Stage> {
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
    Ok(Stage::Count(s.clone()))
}

fn parse_replace_root(name: &str, arg: &Bson) -> Result<Stage> {
    let d = doc_arg(name, arg)?;
    let nr = d
        .get("newRoot")
        .ok_or_else(|| CommandError::location(40231, "no newRoot specified for the $replaceRoot stage"))?;
    if d.len() != 1 {
        return Err(CommandError::location(40415, "unrecognized option to $replaceRoot stage"));
    }
    Ok(Stage::ReplaceRoot(Expr::parse(nr)?))
}

fn parse_sort_by_count(_name: &str, arg: &Bson) -> Result<Stage> {
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
    Ok(Stage::SortByCount(Expr::parse(arg)?))
}

fn parse_facet(name: &str, arg: &Bson) -> Result<Stage> {
    let d = doc_arg(name, arg)?;
    if d.is_empty() {
        return Err(CommandError::location(40169, "the $facet specification must be a non-empty object"));
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
                format!("arguments to $facet must be arrays, {k} is type {}", crate::expr::type_name(v)),
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
            if matches!(sname, "$facet" | "$out" | "$merge" | "$collStats" | "$indexStats" | "$currentOp") {
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
    Ok(Stage::Facet(facets))
}

fn parse_sample(name: &str, arg: &Bson) -> Result<Stage> {
    let d = doc_arg(name, arg)?;
    let size =
        d.get("size").ok_or_else(|| CommandError::location(28749, "$sample stage must specify a size"))?;
    let n = stage_int(size, "$sample", 28746)?;
    if n < 0 {
        return Err(CommandError::location(28747, "size argument to $sample must not be negative"));
    }
    Ok(Stage::Sample(n as u64))
}
