//! Update documents: operator updates (`$set`, `$inc`, `$push`, ...), replacement documents and
//! pipeline-style updates.
//!
//! Parsing validates operators and detects paths that two operators touch
//! (ConflictingUpdateOperators, 40). Applying resolves positional components (`$`, `$[]`,
//! `$[ident]` with arrayFilters) against the document, applies operators in MongoDB's field
//! order (lexicographic, numeric components numerically), and never lets `_id` change
//! (ImmutableField, 66). [`Update::apply`] reports whether the document changed, so that
//! `nModified` is right.

use std::cmp::Ordering;

use bson::{Bson, Document, Timestamp};

use crate::compare::{Num, as_num, bson_eq, cmp_bson};
use crate::error::{CommandError, Result};
use crate::expr::{num_add, num_mul};
use crate::filter::{ElemFilter, Filter};
use crate::interrupt::NeverInterrupt;
use crate::path::{as_index, get_parts_exact, remove_parts, set_parts};
use crate::sort::SortSpec;

/// A parsed update.
#[derive(Debug, Clone)]
pub struct Update {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Replacement(Document),
    Ops { entries: Vec<Entry>, array_filters: Vec<(String, Filter)> },
    Pipeline(crate::aggregate::Pipeline),
}

#[derive(Debug, Clone)]
struct Entry {
    op: Op,
    path: String,
    parts: Vec<String>,
}

#[derive(Debug, Clone)]
enum PushSort {
    Value(i32),
    Spec(SortSpec),
}

#[derive(Debug, Clone)]
enum Op {
    Set(Bson),
    SetOnInsert(Bson),
    Unset,
    Inc(Bson),
    Mul(Bson),
    Min(Bson),
    Max(Bson),
    Push { each: Vec<Bson>, position: Option<i64>, slice: Option<i64>, sort: Option<PushSort> },
    AddToSet(Vec<Bson>),
    Pop(bool),
    Pull(ElemFilter),
    PullAll(Vec<Bson>),
    Rename(Vec<String>),
    CurrentDate(bool),
    Bit(Vec<(String, i64)>),
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Set(_) => "$set",
        Op::SetOnInsert(_) => "$setOnInsert",
        Op::Unset => "$unset",
        Op::Inc(_) => "$inc",
        Op::Mul(_) => "$mul",
        Op::Min(_) => "$min",
        Op::Max(_) => "$max",
        Op::Push { .. } => "$push",
        Op::AddToSet(_) => "$addToSet",
        Op::Pop(_) => "$pop",
        Op::Pull(_) => "$pull",
        Op::PullAll(_) => "$pullAll",
        Op::Rename(_) => "$rename",
        Op::CurrentDate(_) => "$currentDate",
        Op::Bit(_) => "$bit",
    }
}

fn type_name(v: &Bson) -> &'static str {
    crate::expr::type_name(v)
}

fn int_of(v: &Bson) -> Option<i64> {
    match as_num(v)? {
        Num::Int(i) => Some(i),
        Num::Float(f) if f.fract() == 0.0 && f.is_finite() => Some(f as i64),
        Num::Float(_) => None,
    }
}

fn split_parts(path: &str) -> Result<Vec<String>> {
    if path.is_empty() {
        return Err(CommandError::empty_field_name("An empty update path is not valid."));
    }
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(CommandError::empty_field_name(format!(
            "The update path '{path}' contains an empty field name, which is not allowed."
        )));
    }
    Ok(parts)
}

fn is_positional(c: &str) -> bool {
    c == "$" || (c.starts_with("$[") && c.ends_with(']'))
}

fn parse_push(arg: &Bson) -> Result<Op> {
    let Bson::Document(d) = arg else {
        return Ok(Op::Push { each: vec![arg.clone()], position: None, slice: None, sort: None });
    };
    if !d.contains_key("$each") {
        return Ok(Op::Push { each: vec![arg.clone()], position: None, slice: None, sort: None });
    }
    let mut each = Vec::new();
    let (mut position, mut slice, mut sort) = (None, None, None);
    for (k, v) in d {
        match k.as_str() {
            "$each" => match v {
                Bson::Array(a) => each = a.clone(),
                other => {
                    return Err(CommandError::bad_value(format!(
                        "The argument to $each in $push must be an array but it was of type: {}",
                        type_name(other)
                    )));
                }
            },
            "$position" => {
                position = Some(int_of(v).ok_or_else(|| {
                    CommandError::bad_value(format!(
                        "The value for $position must be an integer value, not of type: {}",
                        type_name(v)
                    ))
                })?);
            }
            "$slice" => {
                slice = Some(int_of(v).ok_or_else(|| {
                    CommandError::bad_value(format!(
                        "The value for $slice must be an integer value but was given type: {}",
                        type_name(v)
                    ))
                })?);
            }
            "$sort" => {
                sort = Some(match v {
                    Bson::Document(spec) => {
                        if spec.is_empty() {
                            return Err(CommandError::bad_value(
                                "The $sort pattern is empty when it should be a set of fields.",
                            ));
                        }
                        PushSort::Spec(SortSpec::parse(spec).map_err(|e| CommandError::bad_value(e.message))?)
                    }
                    other => match int_of(other) {
                        Some(1) => PushSort::Value(1),
                        Some(-1) => PushSort::Value(-1),
                        _ => {
                            return Err(CommandError::bad_value(
                                "The $sort element value must be either 1 or -1",
                            ));
                        }
                    },
                });
            }
            other => {
                return Err(CommandError::bad_value(format!("Unrecognized clause in $push: {other}")));
            }
        }
    }
    Ok(Op::Push { each, position, slice, sort })
}

fn parse_op(op: &str, path: &str, arg: &Bson) -> Result<Op> {
    Ok(match op {
        "$set" => Op::Set(arg.clone()),
        "$setOnInsert" => Op::SetOnInsert(arg.clone()),
        "$unset" => Op::Unset,
        "$inc" | "$mul" => {
            if as_num(arg).is_none() {
                let verb = if op == "$inc" { "increment" } else { "multiply" };
                return Err(CommandError::type_mismatch(format!(
                    "Cannot {verb} with non-numeric argument: {{{path}: {arg}}}"
                )));
            }
            if op == "$inc" { Op::Inc(arg.clone()) } else { Op::Mul(arg.clone()) }
        }
        "$min" => Op::Min(arg.clone()),
        "$max" => Op::Max(arg.clone()),
        "$push" => parse_push(arg)?,
        "$addToSet" => match arg {
            Bson::Document(d) if d.contains_key("$each") => match d.get("$each") {
                Some(Bson::Array(a)) if d.len() == 1 => Op::AddToSet(a.clone()),
                Some(Bson::Array(_)) => {
                    return Err(CommandError::bad_value("Found unexpected fields after $each in $addToSet"));
                }
                Some(other) => {
                    return Err(CommandError::type_mismatch(format!(
                        "The argument to $each in $addToSet must be an array but it was of type {}",
                        type_name(other)
                    )));
                }
                None => Op::AddToSet(Vec::new()),
            },
            other => Op::AddToSet(vec![other.clone()]),
        },
        "$pop" => match int_of(arg) {
            Some(1) => Op::Pop(false),
            Some(-1) => Op::Pop(true),
            _ => return Err(CommandError::failed_to_parse(format!("$pop expects 1 or -1, found: {arg}"))),
        },
        "$pull" => Op::Pull(ElemFilter::parse(arg)?),
        "$pullAll" => match arg {
            Bson::Array(a) => Op::PullAll(a.clone()),
            other => {
                return Err(CommandError::bad_value(format!(
                    "$pullAll requires an array argument but was given a {}",
                    type_name(other)
                )));
            }
        },
        "$rename" => parse_rename(path, arg)?,
        "$currentDate" => parse_current_date(arg)?,
        "$bit" => parse_bit(arg)?,
        other => {
            return Err(CommandError::failed_to_parse(format!(
                "Unknown modifier: {other}. Expected a valid update modifier or pipeline-style update specified as an array"
            )));
        }
    })
}

/// Parses `$rename`'s argument.
fn parse_rename(path: &str, arg: &Bson) -> Result<Op> {
    let Bson::String(to) = arg else {
        return Err(CommandError::bad_value(format!(
            "The 'to' field for $rename must be a string: {path}: {arg}"
        )));
    };
    let to_parts = split_parts(to)?;
    if path.split('.').any(is_positional) {
        return Err(CommandError::bad_value(format!(
            "The source field for $rename may not be dynamic: {path}"
        )));
    }
    if to_parts.iter().any(|p| is_positional(p)) {
        return Err(CommandError::bad_value(format!(
            "The destination field for $rename may not be dynamic: {to}"
        )));
    }
    if to == path {
        return Err(CommandError::bad_value(format!(
            "The source and target field for $rename must differ: {path}: \"{to}\""
        )));
    }
    let from_parts: Vec<&str> = path.split('.').collect();
    let prefix = |a: &[&str], b: &[String]| a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| *x == y);
    let to_refs: Vec<&str> = to_parts.iter().map(String::as_str).collect();
    let from_owned: Vec<String> = from_parts.iter().map(|s| s.to_string()).collect();
    if prefix(&from_parts, &to_parts) || prefix(&to_refs, &from_owned) {
        return Err(CommandError::bad_value(format!(
            "The source and target field for $rename must not be on the same path: {path}: \"{to}\""
        )));
    }
    Ok(Op::Rename(to_parts))
}

/// Parses `$bit`'s argument.
fn parse_bit(arg: &Bson) -> Result<Op> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::bad_value(format!(
            "The $bit modifier is not compatible with a {}. You must pass in an embedded document: {{$bit: {{field: {{and/or/xor: #}}}}",
            type_name(arg)
        )));
    };
    let mut ops = Vec::new();
    for (k, v) in d {
        if !matches!(k.as_str(), "and" | "or" | "xor") {
            return Err(CommandError::bad_value(format!(
                "The $bit modifier only supports 'and', 'or', and 'xor', not '{k}' which is an unknown operator"
            )));
        }
        let n = match v {
            Bson::Int32(i) => i64::from(*i),
            Bson::Int64(i) => *i,
            _ => {
                return Err(CommandError::bad_value(format!(
                    "The $bit modifier field must be an Integer(32/64 bit); a '{}' is not supported here",
                    type_name(v)
                )));
            }
        };
        ops.push((k.clone(), n));
    }
    Ok(Op::Bit(ops))
}

/// Parses `$currentDate`'s argument.
fn parse_current_date(arg: &Bson) -> Result<Op> {
    Ok(match arg {
        Bson::Boolean(_) => Op::CurrentDate(false),
        Bson::Document(d) => match d.get("$type") {
            Some(Bson::String(t)) if t == "date" && d.len() == 1 => Op::CurrentDate(false),
            Some(Bson::String(t)) if t == "timestamp" && d.len() == 1 => Op::CurrentDate(true),
            _ => {
                return Err(CommandError::bad_value(
                    "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}",
                ));
            }
        },
        other => {
            return Err(CommandError::bad_value(format!(
                "{} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({{$type: 'timestamp/date'}}).",
                type_name(other)
            )));
        }
    })
}

/// Compares two update paths component by component (numeric components numerically).
fn cmp_paths(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (as_index(x), as_index(y)) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn normalize(parts: &[String]) -> Vec<&str> {
    parts.iter().map(|p| if is_positional(p) { "$" } else { p.as_str() }).collect()
}

fn check_conflicts(targets: &[(String, Vec<String>)]) -> Result<()> {
    for (i, (pa, a)) in targets.iter().enumerate() {
        for (pb, b) in &targets[i + 1..] {
            let (na, nb) = (normalize(a), normalize(b));
            let n = na.len().min(nb.len());
            if na[..n] == nb[..n] {
                let (shorter, longer) = if a.len() <= b.len() { (pa, pb) } else { (pb, pa) };
                return Err(CommandError::conflicting_update_operators(format!(
                    "Updating the path '{longer}' would create a conflict at '{shorter}'"
                )));
            }
        }
    }
    Ok(())
}

fn valid_identifier(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

fn parse_array_filters(afs: &[Document]) -> Result<Vec<(String, Filter)>> {
    let mut out: Vec<(String, Filter)> = Vec::new();
    for af in afs {
        let mut ident: Option<String> = None;
        for k in af.keys() {
            let id = k.split('.').next().unwrap_or_default().to_string();
            if k.starts_with('$') {
                return Err(CommandError::failed_to_parse(format!(
                    "Error parsing array filter :: caused by :: Expected a single top-level field name, found '{k}'"
                )));
            }
            match &ident {
                None => ident = Some(id),
                Some(prev) if *prev != id => {
                    return Err(CommandError::failed_to_parse(format!(
                        "Error parsing array filter :: caused by :: Expected a single top-level field name, found '{prev}' and '{id}'"
                    )));
                }
                Some(_) => {}
            }
        }
        let Some(id) = ident else {
            return Err(CommandError::failed_to_parse(
                "Cannot use an expression without a top-level field name in arrayFilters",
            ));
        };
        if !valid_identifier(&id) {
            return Err(CommandError::bad_value(format!(
                "Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found '{id}'"
            )));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(CommandError::failed_to_parse(format!(
                "Found multiple array filters with the same top-level field name {id}"
            )));
        }
        out.push((id, Filter::parse(af)?));
    }
    Ok(out)
}

impl Update {
    /// Parses an update document: operators (`{$set: ...}`) or a replacement document.
    pub fn parse(update: &Document, array_filters: Option<&[Document]>) -> Result<Self> {
        let is_ops = update.keys().next().is_some_and(|k| k.starts_with('$'));
        if !is_ops {
            if array_filters.is_some_and(|a| !a.is_empty()) {
                return Err(CommandError::failed_to_parse(
                    "arrayFilters may not be specified for a replacement-style update",
                ));
            }
            for k in update.keys() {
                if k.starts_with('$') {
                    return Err(CommandError::dollar_prefixed_field_name(format!(
                        "The dollar ($) prefixed field '{k}' in '{k}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."
                    )));
                }
            }
            return Ok(Update { kind: Kind::Replacement(update.clone()) });
        }
        let mut entries = Vec::new();
        let mut targets: Vec<(String, Vec<String>)> = Vec::new();
        for (op, arg) in update {
            if !op.starts_with('$') {
                return Err(CommandError::failed_to_parse(format!(
                    "Unknown modifier: {op}. Expected a valid update modifier or pipeline-style update specified as an array"
                )));
            }
            let Bson::Document(fields) = arg else {
                return Err(CommandError::failed_to_parse(format!(
                    "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{op}: {arg}}}",
                    type_name(arg)
                )));
            };
            for (path, v) in fields {
                let parts = split_parts(path)?;
                if parts[0].starts_with('$') && !is_positional(&parts[0]) {
                    return Err(CommandError::dollar_prefixed_field_name(format!(
                        "The dollar ($) prefixed field '{}' in '{path}' is not allowed",
                        parts[0]
                    )));
                }
                let parsed = parse_op(op, path, v)?;
                if let Op::Rename(to) = &parsed {
                    targets.push((to.join("."), to.clone()));
                }
                targets.push((path.clone(), parts.clone()));
                entries.push(Entry { op: parsed, path: path.clone(), parts });
            }
        }
        check_conflicts(&targets)?;
        entries.sort_by(|a, b| cmp_paths(&a.parts, &b.parts));
        let array_filters = parse_array_filters(array_filters.unwrap_or_default())?;
        for (id, _) in &array_filters {
            let token = format!("$[{id}]");
            if !entries.iter().any(|e| e.parts.contains(&token)) {
                return Err(CommandError::failed_to_parse(format!(
                    "The array filter for identifier '{id}' was not used in the update {update}"
                )));
            }
        }
        for e in &entries {
            for p in &e.parts {
                if let Some(id) = p.strip_prefix("$[").and_then(|s| s.strip_suffix(']'))
                    && !id.is_empty()
                    && !array_filters.iter().any(|(i, _)| i == id)
                {
                    return Err(CommandError::bad_value(format!(
                        "No array filter found for identifier '{id}' in path '{}'",
                        e.path
                    )));
                }
            }
        }
        Ok(Update { kind: Kind::Ops { entries, array_filters } })
    }

    /// Parses a pipeline-style update (`$addFields`/`$set`, `$project`, `$unset`,
    /// `$replaceRoot`/`$replaceWith`).
    pub fn parse_pipeline(stages: &[Document]) -> Result<Self> {
        for s in stages {
            let name = s.keys().next().map(String::as_str).unwrap_or_default();
            if !matches!(
                name,
                "$addFields" | "$set" | "$project" | "$unset" | "$replaceRoot" | "$replaceWith"
            ) {
                return Err(CommandError::location(
                    40324,
                    format!("Unrecognized pipeline stage name: '{name}'"),
                )
                .with_update_stage_message(name));
            }
        }
        Ok(Update { kind: Kind::Pipeline(crate::aggregate::Pipeline::parse(stages)?) })
    }

    /// The update of a command with `let` variables: a pipeline update sees them (operator and
    /// replacement updates take no expressions).
    #[must_use]
    pub fn with_let(self, lets: &crate::vars::LetVars) -> Self {
        match self.kind {
            Kind::Pipeline(p) => Update { kind: Kind::Pipeline(p.with_let(lets)) },
            other => Update { kind: other },
        }
    }

    /// [`Update::with_let`] after checking the variables a pipeline update reads (17276).
    pub fn checked_let(self, lets: &crate::vars::LetVars) -> Result<Self> {
        match self.kind {
            Kind::Pipeline(p) => Ok(Update { kind: Kind::Pipeline(p.checked_let(lets)?) }),
            other => Ok(Update { kind: other }),
        }
    }

    /// True for a replacement document.
    pub fn is_replacement(&self) -> bool {
        matches!(self.kind, Kind::Replacement(_))
    }

    /// True when the update uses the positional `$` operator (needs the query to apply).
    pub fn needs_query(&self) -> bool {
        match &self.kind {
            Kind::Ops { entries, .. } => entries.iter().any(|e| e.parts.iter().any(|p| p == "$")),
            _ => false,
        }
    }

    /// Applies to `doc`; `is_upsert_insert` enables `$setOnInsert`. Returns whether the document
    /// changed. Never changes `_id` (66 ImmutableField). Positional `$` fails here; use
    /// [`Update::apply_with_query`].
    pub fn apply(&self, doc: &mut Document, is_upsert_insert: bool) -> Result<bool> {
        self.apply_with_query(doc, is_upsert_insert, None)
    }

    /// Like [`Update::apply`]; `query` resolves the positional `$` operator.
    pub fn apply_with_query(
        &self,
        doc: &mut Document,
        is_upsert_insert: bool,
        query: Option<&Filter>,
    ) -> Result<bool> {
        let new = match &self.kind {
            Kind::Replacement(r) => {
                let mut new = Document::new();
                match (doc.get("_id"), r.get("_id")) {
                    (Some(old), Some(newid)) if old != newid => {
                        return Err(CommandError::immutable_field(format!(
                            "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {newid}"
                        )));
                    }
                    (Some(old), _) => {
                        new.insert("_id", old.clone());
                    }
                    (None, _) => {}
                }
                for (k, v) in r {
                    if k != "_id" || !new.contains_key("_id") {
                        new.insert(k.clone(), v.clone());
                    }
                }
                new
            }
            Kind::Pipeline(p) => {
                let out = p.run(vec![doc.clone()], &NoLookup)?;
                let Some(mut new) = out.into_iter().next() else {
                    return Err(CommandError::bad_value("pipeline update produced no document"));
                };
                if let Some(old) = doc.get("_id") {
                    match new.get("_id") {
                        None => {
                            let mut with_id = Document::new();
                            with_id.insert("_id", old.clone());
                            with_id.extend(new);
                            new = with_id;
                        }
                        Some(n) if n != old => {
                            return Err(CommandError::immutable_field(
                                "Performing an update on the path '_id' would modify the immutable field '_id'",
                            ));
                        }
                        Some(_) => {}
                    }
                }
                new
            }
            Kind::Ops { entries, array_filters } => {
                // Work on a copy so that a failing operator leaves `doc` untouched.
                let mut work = doc.clone();
                let ctx = ApplyCtx { array_filters, query, original: doc };
                for e in entries {
                    if matches!(e.op, Op::SetOnInsert(_)) && !is_upsert_insert {
                        continue;
                    }
                    let concrete = expand(&work, &e.parts, &ctx, &e.path, is_upsert_insert)?;
                    for parts in concrete {
                        apply_op(&mut work, &e.op, &parts, &e.path, is_upsert_insert)?;
                    }
                }
                if let Some(old) = doc.get("_id")
                    && work.get("_id") != Some(old)
                {
                    return Err(CommandError::immutable_field(
                        "Performing an update on the path '_id' would modify the immutable field '_id'",
                    ));
                }
                work
            }
        };
        let changed = new != *doc;
        *doc = new;
        Ok(changed)
    }
}

impl CommandError {
    fn with_update_stage_message(mut self, name: &str) -> Self {
        self.message = format!(
            "Invalid $set :: caused by :: {name} is not allowed to be used within an update; use $addFields, $set, $project, $unset, $replaceRoot or $replaceWith"
        );
        self
    }
}

/// The environment of pipeline updates: no `$lookup`.
struct NoLookup;

impl crate::interrupt::Interrupt for NoLookup {
    fn check(&self) -> Result<()> {
        NeverInterrupt.check()
    }
}

impl crate::aggregate::PipelineEnv for NoLookup {
    fn lookup_collection(&self, coll: &str) -> Result<Vec<Document>> {
        Err(CommandError::illegal_operation(format!("$lookup of {coll} is not allowed in an update")))
    }
}

struct ApplyCtx<'a> {
    array_filters: &'a [(String, Filter)],
    query: Option<&'a Filter>,
    original: &'a Document,
}

/// Expands positional components into concrete paths for the current document.
fn expand(
    doc: &Document,
    parts: &[String],
    ctx: &ApplyCtx<'_>,
    path: &str,
    upsert: bool,
) -> Result<Vec<Vec<String>>> {
    if !parts.iter().any(|p| is_positional(p)) {
        return Ok(vec![parts.to_vec()]);
    }
    let mut out = Vec::new();
    expand_rec(doc, parts, 0, &mut Vec::new(), ctx, path, upsert, &mut out)?;
    Ok(out)
}

#[expect(clippy::too_many_arguments, reason = "recursive walker threading its context explicitly")]
fn expand_rec(
    doc: &Document,
    parts: &[String],
    i: usize,
    prefix: &mut Vec<String>,
    ctx: &ApplyCtx<'_>,
    path: &str,
    upsert: bool,
    out: &mut Vec<Vec<String>>,
) -> Result<()> {
    let Some(c) = parts.get(i) else {
        out.push(prefix.clone());
        return Ok(());
    };
    if !is_positional(c) {
        prefix.push(c.clone());
        let r = expand_rec(doc, parts, i + 1, prefix, ctx, path, upsert, out);
        prefix.pop();
        return r;
    }
    if c == "$" {
        let not_found = || {
            CommandError::bad_value("The positional operator did not find the match needed from the query.")
        };
        if upsert {
            return Err(not_found());
        }
        let q = ctx.query.ok_or_else(not_found)?;
        let array_path = prefix.join(".");
        let idx = q.positional_match(ctx.original, &array_path).ok_or_else(not_found)?;
        prefix.push(idx.to_string());
        let r = expand_rec(doc, parts, i + 1, prefix, ctx, path, upsert, out);
        prefix.pop();
        return r;
    }
    let arr = match get_parts_exact(doc, prefix) {
        Some(Bson::Array(a)) => a,
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "Cannot apply array updates to non-array element {}: {other}",
                prefix.last().cloned().unwrap_or_default()
            )));
        }
        None => {
            return Err(CommandError::bad_value(format!(
                "The path '{}' must exist in the document in order to apply array updates.",
                prefix.join(".")
            )));
        }
    };
    let ident = &c[2..c.len() - 1];
    let filter = if ident.is_empty() {
        None
    } else {
        Some(ctx.array_filters.iter().find(|(id, _)| id == ident).map(|(_, f)| f).ok_or_else(|| {
            CommandError::bad_value(format!(
                "No array filter found for identifier '{ident}' in path '{path}'"
            ))
        })?)
    };
    for (idx, e) in arr.iter().enumerate() {
        if let Some(f) = filter {
            let mut wrapper = Document::new();
            wrapper.insert(ident, e.clone());
            if !f.matches(&wrapper) {
                continue;
            }
        }
        prefix.push(idx.to_string());
        let r = expand_rec(doc, parts, i + 1, prefix, ctx, path, upsert, out);
        prefix.pop();
        r?;
    }
    Ok(())
}

fn id_of(doc: &Document) -> String {
    match doc.get("_id") {
        Some(id) => format!("{{_id: {id}}}"),
        None => "{}".to_string(),
    }
}

fn apply_op(doc: &mut Document, op: &Op, parts: &[String], path: &str, _upsert: bool) -> Result<()> {
    let current = get_parts_exact(doc, parts).cloned();
    match op {
        Op::Set(v) | Op::SetOnInsert(v) => {
            if current.as_ref() != Some(v) {
                set_parts(doc, parts, v.clone())?;
            }
        }
        Op::Unset => {
            remove_parts(doc, parts);
        }
        Op::Inc(n) | Op::Mul(n) => apply_inc_mul(Target { doc, op, parts, path, current }, n)?,
        Op::Min(v) | Op::Max(v) => {
            let want = if matches!(op, Op::Min(_)) { Ordering::Less } else { Ordering::Greater };
            let replace = match &current {
                None => true,
                Some(cur) => cmp_bson(v, cur) == want,
            };
            if replace {
                set_parts(doc, parts, v.clone())?;
            }
        }
        Op::Push { each, position, slice, sort } => {
            apply_push(Target { doc, op, parts, path, current }, each, position, slice, sort)?
        }
        Op::AddToSet(vals) => apply_add_to_set(Target { doc, op, parts, path, current }, vals)?,
        Op::Pop(first) => apply_pop(Target { doc, op, parts, path, current }, first)?,
        Op::Pull(f) => match current {
            None => {}
            Some(Bson::Array(a)) => {
                let kept: Vec<Bson> = a.iter().filter(|e| !f.matches(e)).cloned().collect();
                if kept.len() != a.len() {
                    set_parts(doc, parts, Bson::Array(kept))?;
                }
            }
            Some(_) => return Err(CommandError::bad_value("Cannot apply $pull to a non-array value")),
        },
        Op::PullAll(vals) => match current {
            None => {}
            Some(Bson::Array(a)) => {
                let kept: Vec<Bson> =
                    a.iter().filter(|e| !vals.iter().any(|v| bson_eq(e, v))).cloned().collect();
                if kept.len() != a.len() {
                    set_parts(doc, parts, Bson::Array(kept))?;
                }
            }
            Some(_) => return Err(CommandError::bad_value("Cannot apply $pullAll to a non-array value")),
        },
        Op::Rename(to) => apply_rename(Target { doc, op, parts, path, current }, to)?,
        Op::CurrentDate(ts) => {
            let now = bson::DateTime::now();
            let v = if *ts {
                Bson::Timestamp(Timestamp { time: (now.timestamp_millis() / 1000) as u32, increment: 1 })
            } else {
                Bson::DateTime(now)
            };
            set_parts(doc, parts, v)?;
        }
        Op::Bit(ops) => apply_bit(Target { doc, op, parts, path, current }, ops)?,
    }
    Ok(())
}

/// What an update operator applies to: the document, the operator, the path and the value
/// there before.
struct Target<'a> {
    doc: &'a mut Document,
    op: &'a Op,
    parts: &'a [String],
    path: &'a str,
    current: Option<Bson>,
}

/// Applies `$inc` / `$mul`.
fn apply_inc_mul(t: Target<'_>, n: &Bson) -> Result<()> {
    let Target { doc, op, parts, current, .. } = t;
    let is_inc = matches!(op, Op::Inc(_));
    let new = match &current {
        None => {
            if is_inc {
                n.clone()
            } else {
                // $mul on a missing field sets 0 of the operand's type.
                num_mul(n, &Bson::Int32(0)).unwrap_or(Bson::Int32(0))
            }
        }
        Some(cur) => {
            let r = if is_inc { num_add(cur, n) } else { num_mul(cur, n) };
            r.ok_or_else(|| {
                CommandError::type_mismatch(format!(
                    "Cannot apply {} to a value of non-numeric type. {id} has the field '{}' of non-numeric type {}",
                    op_name(op),
                    parts.last().cloned().unwrap_or_default(),
                    type_name(cur),
                    id = id_of(doc)
                ))
            })?
        }
    };
    if current.as_ref() != Some(&new) {
        set_parts(doc, parts, new)?;
    }
    Ok(())
}

/// Applies `$push` with its modifiers.
fn apply_push(
    t: Target<'_>,
    each: &[Bson],
    position: &Option<i64>,
    slice: &Option<i64>,
    sort: &Option<PushSort>,
) -> Result<()> {
    let Target { doc, parts, path, current, .. } = t;
    let mut arr = match current {
        None => Vec::new(),
        Some(Bson::Array(a)) => a,
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "The field '{path}' must be an array but is of type {} in document {id}",
                type_name(&other),
                id = id_of(doc)
            )));
        }
    };
    let at = match position {
        None => arr.len(),
        Some(p) if *p < 0 => (arr.len() as i64 + p).max(0) as usize,
        Some(p) => (*p as usize).min(arr.len()),
    };
    arr.splice(at..at, each.iter().cloned());
    match sort {
        Some(PushSort::Value(dir)) => arr.sort_by(|a, b| {
            let o = cmp_bson(a, b);
            if *dir < 0 { o.reverse() } else { o }
        }),
        Some(PushSort::Spec(s)) => {
            let empty = Document::new();
            arr.sort_by(|a, b| {
                let da = if let Bson::Document(d) = a { d } else { &empty };
                let db = if let Bson::Document(d) = b { d } else { &empty };
                s.compare(da, db)
            });
        }
        None => {}
    }
    if let Some(n) = slice {
        let len = arr.len() as i64;
        if *n >= 0 {
            arr.truncate((*n).min(len) as usize);
        } else {
            let drop = (len + n).max(0) as usize;
            arr.drain(..drop);
        }
    }
    set_parts(doc, parts, Bson::Array(arr))?;
    Ok(())
}

/// Applies `$addToSet`.
fn apply_add_to_set(t: Target<'_>, vals: &[Bson]) -> Result<()> {
    let Target { doc, parts, current, .. } = t;
    let mut arr = match current {
        None => Vec::new(),
        Some(Bson::Array(a)) => a,
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "Cannot apply $addToSet to non-array field. Field named '{}' has non-array type {}",
                parts.last().cloned().unwrap_or_default(),
                type_name(&other)
            )));
        }
    };
    let before = arr.len();
    for v in vals {
        if !arr.iter().any(|e| bson_eq(e, v)) {
            arr.push(v.clone());
        }
    }
    if arr.len() != before || get_parts_exact(doc, parts).is_none() {
        set_parts(doc, parts, Bson::Array(arr))?;
    }
    Ok(())
}

/// Applies `$rename`.
fn apply_rename(t: Target<'_>, to: &[String]) -> Result<()> {
    let Target { doc, parts, path, current, .. } = t;
    let Some(v) = current else {
        return Ok(());
    };
    // Neither side may go through an array.
    let through_array = |d: &Document, ps: &[String]| -> bool {
        (1..ps.len()).any(|n| matches!(get_parts_exact(d, &ps[..n]), Some(Bson::Array(_))))
    };
    if through_array(doc, parts) {
        return Err(CommandError::bad_value(format!(
            "The source field cannot be an array element, '{path}' in doc with {id} has an array field called '{}'",
            parts[0],
            id = id_of(doc)
        )));
    }
    if through_array(doc, to) {
        return Err(CommandError::bad_value(format!(
            "The destination field cannot be an array element, '{}' in doc with {id} has an array field called '{}'",
            to.join("."),
            to[0],
            id = id_of(doc)
        )));
    }
    remove_parts(doc, parts);
    set_parts(doc, to, v)?;
    Ok(())
}

/// Applies `$bit`.
fn apply_bit(t: Target<'_>, ops: &[(String, i64)]) -> Result<()> {
    let Target { doc, parts, path, current, .. } = t;
    let (mut val, is32) = match &current {
        None => (0i64, true),
        Some(Bson::Int32(i)) => (i64::from(*i), true),
        Some(Bson::Int64(i)) => (*i, false),
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "Cannot apply $bit to a value of non-integral type.{id} has the field {path} of non-integer type {}",
                type_name(other),
                id = id_of(doc)
            )));
        }
    };
    let mut wide = !is32;
    for (k, n) in ops {
        if i32::try_from(*n).is_err() {
            wide = true;
        }
        val = match k.as_str() {
            "and" => val & n,
            "or" => val | n,
            _ => val ^ n,
        };
    }
    let new = if wide { Bson::Int64(val) } else { Bson::Int32(val as i32) };
    if current.as_ref() != Some(&new) {
        set_parts(doc, parts, new)?;
    }
    Ok(())
}

/// Applies `$pop`.
fn apply_pop(t: Target<'_>, first: &bool) -> Result<()> {
    let Target { doc, parts, path, current, .. } = t;
    match current {
        None => {}
        Some(Bson::Array(mut a)) if !a.is_empty() => {
            if *first {
                a.remove(0);
            } else {
                a.pop();
            }
            set_parts(doc, parts, Bson::Array(a))?;
        }
        Some(Bson::Array(_)) => {}
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "Path '{path}' contains an element of non-array type '{}'",
                type_name(&other)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
