//! Aggregation expressions: parsing and evaluation.
//!
//! An [`Expr`] is parsed once from BSON (`"$a.b"` field paths, `"$$var"` variables, literals,
//! `{$op: args}` operator calls, expression objects and arrays) and evaluated against a document
//! (`$$ROOT`/`$$CURRENT`) and an [`EvalCtx`] holding user variables (`$let`, `$map`, `$filter`,
//! `$reduce`, `$lookup`'s `let`) and `$$NOW`.
//!
//! Invariant: a *missing* value (a field path that resolves to nothing, `$$REMOVE`) is
//! represented as `Bson::Undefined` during evaluation. It compares below `null`, as MongoDB's
//! missing does, and stages drop fields whose computed value is missing.
//! Unknown operators fail at parse time with 168 InvalidPipelineOperator.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

use bson::{Bson, DateTime, Document};
use chrono::{Datelike, Timelike};

use crate::compare::{Num, as_num, bson_eq, canonical_key, cmp_bson};
use crate::error::{CommandError, Result};
use crate::filter::{Re, bson_type_code, type_alias};
use crate::path::Fields;

/// The value used for "missing" during evaluation.
pub const MISSING: Bson = Bson::Undefined;

/// True for the missing sentinel.
pub fn is_missing(v: &Bson) -> bool {
    matches!(v, Bson::Undefined)
}

fn is_nullish(v: &Bson) -> bool {
    matches!(v, Bson::Null | Bson::Undefined)
}

/// Aggregation truthiness: false, null, missing and numeric zero are false; all else is true.
pub fn truthy(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        other => match as_num(other) {
            Some(Num::Int(i)) => i != 0,
            Some(Num::Float(f)) => f != 0.0,
            None => true,
        },
    }
}

/// Variables visible to an expression.
#[derive(Debug, Clone)]
pub struct EvalCtx {
    vars: Vec<(String, Bson)>,
    now: DateTime,
}

impl Default for EvalCtx {
    fn default() -> Self {
        Self::new()
    }
}

impl EvalCtx {
    /// A context with no user variables and `$$NOW` fixed to the current time.
    pub fn new() -> Self {
        EvalCtx { vars: Vec::new(), now: DateTime::now() }
    }

    /// Binds a user variable (shadowing earlier bindings of the same name).
    pub fn bind(&mut self, name: impl Into<String>, value: Bson) {
        self.vars.push((name.into(), value));
    }

    fn lookup(&self, name: &str) -> Option<&Bson> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn mark(&self) -> usize {
        self.vars.len()
    }

    fn reset(&mut self, mark: usize) {
        self.vars.truncate(mark);
    }
}

/// A parsed aggregation expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A constant.
    Literal(Bson),
    /// `$a.b`: a path in `$$CURRENT`.
    Field(Vec<String>),
    /// `$$name.a.b`.
    Var(String, Vec<String>),
    /// `{a: expr, b: expr}`.
    Object(Vec<(String, Expr)>),
    /// `[expr, ...]`.
    Array(Vec<Expr>),
    /// `{$op: [args]}` with positional arguments.
    Op(&'static str, Vec<Expr>),
    /// `{$op: {name: expr, ...}}` with named arguments.
    Named(&'static str, Vec<(String, Expr)>),
}

/// Operators with positional arguments and their arity (min, max; `usize::MAX` = variadic).
const POSITIONAL: &[(&str, usize, usize)] = &[
    ("$add", 0, usize::MAX),
    ("$multiply", 0, usize::MAX),
    ("$subtract", 2, 2),
    ("$divide", 2, 2),
    ("$mod", 2, 2),
    ("$pow", 2, 2),
    ("$log", 2, 2),
    ("$abs", 1, 1),
    ("$ceil", 1, 1),
    ("$floor", 1, 1),
    ("$sqrt", 1, 1),
    ("$exp", 1, 1),
    ("$ln", 1, 1),
    ("$log10", 1, 1),
    ("$round", 1, 2),
    ("$trunc", 1, 2),
    ("$concat", 0, usize::MAX),
    ("$toUpper", 1, 1),
    ("$toLower", 1, 1),
    ("$substr", 3, 3),
    ("$substrBytes", 3, 3),
    ("$substrCP", 3, 3),
    ("$strLenBytes", 1, 1),
    ("$strLenCP", 1, 1),
    ("$split", 2, 2),
    ("$strcasecmp", 2, 2),
    ("$indexOfBytes", 2, 4),
    ("$indexOfCP", 2, 4),
    ("$eq", 2, 2),
    ("$ne", 2, 2),
    ("$gt", 2, 2),
    ("$gte", 2, 2),
    ("$lt", 2, 2),
    ("$lte", 2, 2),
    ("$cmp", 2, 2),
    ("$and", 0, usize::MAX),
    ("$or", 0, usize::MAX),
    ("$not", 1, 1),
    ("$cond", 3, 3),
    ("$ifNull", 2, usize::MAX),
    ("$size", 1, 1),
    ("$arrayElemAt", 2, 2),
    ("$first", 1, 1),
    ("$last", 1, 1),
    ("$in", 2, 2),
    ("$concatArrays", 0, usize::MAX),
    ("$isArray", 1, 1),
    ("$slice", 2, 3),
    ("$reverseArray", 1, 1),
    ("$range", 2, 3),
    ("$indexOfArray", 2, 4),
    ("$arrayToObject", 1, 1),
    ("$objectToArray", 1, 1),
    ("$mergeObjects", 0, usize::MAX),
    ("$sum", 0, usize::MAX),
    ("$avg", 0, usize::MAX),
    ("$min", 0, usize::MAX),
    ("$max", 0, usize::MAX),
    ("$setUnion", 0, usize::MAX),
    ("$setIntersection", 0, usize::MAX),
    ("$setDifference", 2, 2),
    ("$setEquals", 2, usize::MAX),
    ("$setIsSubset", 2, 2),
    ("$allElementsTrue", 1, 1),
    ("$anyElementTrue", 1, 1),
    ("$type", 1, 1),
    ("$toString", 1, 1),
    ("$toInt", 1, 1),
    ("$toLong", 1, 1),
    ("$toDouble", 1, 1),
    ("$toDecimal", 1, 1),
    ("$toBool", 1, 1),
    ("$toDate", 1, 1),
    ("$toObjectId", 1, 1),
    ("$isNumber", 1, 1),
    ("$year", 1, 1),
    ("$month", 1, 1),
    ("$dayOfMonth", 1, 1),
    ("$hour", 1, 1),
    ("$minute", 1, 1),
    ("$second", 1, 1),
    ("$millisecond", 1, 1),
    ("$dayOfWeek", 1, 1),
    ("$dayOfYear", 1, 1),
    ("$week", 1, 1),
];

/// Operators with named arguments: (name, required, optional).
const NAMED: &[(&str, &[&str], &[&str])] = &[
    ("$cond", &["if", "then", "else"], &[]),
    ("$switch", &["branches"], &["default"]),
    ("$let", &["vars", "in"], &[]),
    ("$map", &["input", "in"], &["as"]),
    ("$filter", &["input", "cond"], &["as", "limit"]),
    ("$reduce", &["input", "initialValue", "in"], &[]),
    ("$dateToString", &["date"], &["format", "timezone", "onNull"]),
    ("$regexMatch", &["input", "regex"], &["options"]),
    ("$regexFind", &["input", "regex"], &["options"]),
    ("$replaceAll", &["input", "find", "replacement"], &[]),
    ("$replaceOne", &["input", "find", "replacement"], &[]),
    ("$trim", &["input"], &["chars"]),
    ("$ltrim", &["input"], &["chars"]),
    ("$rtrim", &["input"], &["chars"]),
    ("$convert", &["input", "to"], &["onError", "onNull"]),
    ("$getField", &["field"], &["input"]),
    ("$setField", &["field", "input", "value"], &[]),
    ("$unsetField", &["field", "input"], &[]),
    ("$sortArray", &["input", "sortBy"], &[]),
    ("$dateAdd", &["startDate", "unit", "amount"], &["timezone"]),
    ("$dateSubtract", &["startDate", "unit", "amount"], &["timezone"]),
    ("$dateDiff", &["startDate", "endDate", "unit"], &["timezone", "startOfWeek"]),
    ("$dateTrunc", &["date", "unit"], &["binSize", "timezone", "startOfWeek"]),
    ("$dateFromString", &["dateString"], &["format", "timezone", "onError", "onNull"]),
];

/// Date-part operators also accept `{date, timezone}`.
const DATE_PARTS: &[&str] = &[
    "$year",
    "$month",
    "$dayOfMonth",
    "$hour",
    "$minute",
    "$second",
    "$millisecond",
    "$dayOfWeek",
    "$dayOfYear",
    "$week",
];

fn parse_field_path(s: &str) -> Result<Vec<String>> {
    if s.is_empty() {
        return Err(CommandError::location(16872, "'$' by itself is not a valid FieldPath"));
    }
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(CommandError::location(15998, "FieldPath field names may not be empty strings."));
    }
    if parts.iter().any(|p| p.starts_with('$')) {
        return Err(CommandError::location(
            16410,
            format!(
                "FieldPath field names may not start with '$'. Consider using $getField or $setField. (in '{s}')"
            ),
        ));
    }
    Ok(parts)
}

impl Expr {
    /// Parses an expression. 168 InvalidPipelineOperator on unknown `$operators`.
    pub fn parse(v: &Bson) -> Result<Expr> {
        match v {
            Bson::String(s) => {
                if let Some(var) = s.strip_prefix("$$") {
                    let mut it = var.split('.');
                    let name = it.next().unwrap_or_default().to_string();
                    if name.is_empty() {
                        return Err(CommandError::location(16869, "empty variable name"));
                    }
                    let rest: Vec<String> = it.map(str::to_string).collect();
                    if rest.iter().any(String::is_empty) {
                        return Err(CommandError::location(
                            15998,
                            "FieldPath field names may not be empty strings.",
                        ));
                    }
                    Ok(Expr::Var(name, rest))
                } else if let Some(path) = s.strip_prefix('$') {
                    Ok(Expr::Field(parse_field_path(path)?))
                } else {
                    Ok(Expr::Literal(v.clone()))
                }
            }
            Bson::Array(items) => {
                let items: Vec<Expr> = items.iter().map(Expr::parse).collect::<Result<_>>()?;
                // An array of constants is a constant (not when an item is the missing sentinel,
                // which evaluating the array turns into null).
                if items.iter().all(|e| matches!(e, Expr::Literal(v) if !is_missing(v))) {
                    let values = items
                        .into_iter()
                        .map(|e| match e {
                            Expr::Literal(v) => v,
                            _ => Bson::Null,
                        })
                        .collect();
                    return Ok(Expr::Literal(Bson::Array(values)));
                }
                Ok(Expr::Array(items))
            }
            Bson::Document(d) => Self::parse_doc(d),
            other => Ok(Expr::Literal(other.clone())),
        }
    }

    fn parse_doc(d: &Document) -> Result<Expr> {
        let Some(first) = d.keys().next() else {
            return Ok(Expr::Object(Vec::new()));
        };
        if !first.starts_with('$') {
            let mut fields = Vec::with_capacity(d.len());
            for (k, v) in d {
                if k.starts_with('$') {
                    return Err(CommandError::location(
                        16410,
                        format!("FieldPath field names may not start with '$'. (in '{k}')"),
                    ));
                }
                if k.contains('.') {
                    return Err(CommandError::location(
                        16412,
                        format!("FieldPath field names may not contain '.'. (in '{k}')"),
                    ));
                }
                fields.push((k.clone(), Expr::parse(v)?));
            }
            return Ok(Expr::Object(fields));
        }
        if d.len() != 1 {
            return Err(CommandError::location(
                15983,
                format!(
                    "an expression specification must contain exactly one field, the name of the expression. Found {} fields in {d}",
                    d.len()
                ),
            ));
        }
        let (name, arg) = d.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", &Bson::Null));
        if name == "$literal" {
            return Ok(Expr::Literal(arg.clone()));
        }
        if name == "$rand" {
            return match arg {
                Bson::Document(a) if a.is_empty() => Ok(Expr::Op("$rand", Vec::new())),
                _ => Err(CommandError::location(3040501, "$rand not expecting an argument")),
            };
        }
        if let (Some(&(n, req, opt)), Bson::Document(args)) = (NAMED.iter().find(|(n, ..)| *n == name), arg) {
            let e = parse_named(n, req, opt, args)?;
            if let Expr::Named(op @ ("$setField" | "$unsetField"), a) = &e {
                check_set_field_name(op, a)?;
            }
            return Ok(e);
        }
        if let Some(&(n, min, max)) = POSITIONAL.iter().find(|(n, ..)| *n == name) {
            if DATE_PARTS.contains(&n)
                && let Bson::Document(args) = arg
                && args.contains_key("date")
            {
                return parse_named(n, &["date"], &["timezone"], args);
            }
            let args: Vec<Expr> = match arg {
                Bson::Array(items) => items.iter().map(Expr::parse).collect::<Result<_>>()?,
                other => vec![Expr::parse(other)?],
            };
            if args.len() < min || args.len() > max {
                let msg = if min == max {
                    format!("Expression {n} takes exactly {min} arguments. {} were passed in.", args.len())
                } else if max == usize::MAX {
                    format!(
                        "Expression {n} takes at least {min} arguments, and at most {}. {} were passed in.",
                        min,
                        args.len()
                    )
                } else {
                    format!(
                        "Expression {n} takes at least {min} arguments, and at most {max}. {} were passed in.",
                        args.len()
                    )
                };
                return Err(CommandError::location(16020, msg));
            }
            return Ok(Expr::Op(n, args));
        }
        if name == "$getField" {
            return Ok(Expr::Named("$getField", vec![("field".to_string(), Expr::parse(arg)?)]));
        }
        if NAMED.iter().any(|(n, ..)| *n == name) {
            return Err(CommandError::location(
                16020,
                format!("{name} only supports an object as its argument"),
            ));
        }
        Err(CommandError::invalid_pipeline_operator(format!("Unrecognized expression '{name}'")))
    }

    /// Adds the top-level fields of `$$CURRENT` this expression may read to `deps` (marking it
    /// whole when it may read the document as a whole: `$$ROOT`, `$$CURRENT`, `$getField`
    /// without `input`). User variables (`$let`, `$map`, ...) are not fields; what they are
    /// bound to is analysed where it is bound.
    pub(crate) fn add_deps(&self, deps: &mut crate::aggregate::Deps) {
        match self {
            Expr::Literal(_) => {}
            Expr::Field(parts) => match parts.first() {
                Some(f) => deps.add(f),
                None => deps.set_whole(),
            },
            Expr::Var(name, parts) => {
                if matches!(name.as_str(), "ROOT" | "CURRENT") {
                    match parts.first() {
                        Some(f) => deps.add(f),
                        None => deps.set_whole(),
                    }
                }
            }
            Expr::Named("$getField", args) if !args.iter().any(|(k, _)| k == "input") => {
                match args.iter().find(|(k, _)| k == "field") {
                    Some((_, Expr::Literal(Bson::String(f)))) => deps.add(f),
                    _ => deps.set_whole(),
                }
                for (_, e) in args {
                    e.add_deps(deps);
                }
            }
            Expr::Object(fs) | Expr::Named(_, fs) => fs.iter().for_each(|(_, e)| e.add_deps(deps)),
            Expr::Array(es) | Expr::Op(_, es) => es.iter().for_each(|e| e.add_deps(deps)),
        }
    }

    /// True when the expression is a constant (no field paths or variables).
    pub fn is_constant(&self) -> bool {
        match self {
            Expr::Literal(_) => true,
            Expr::Op("$rand", _) => false,
            Expr::Field(_) | Expr::Var(..) => false,
            Expr::Object(fs) | Expr::Named(_, fs) => fs.iter().all(|(_, e)| e.is_constant()),
            Expr::Array(es) | Expr::Op(_, es) => es.iter().all(Expr::is_constant),
        }
    }

    /// [`Expr::eval`] without copying what it can borrow: constants, field paths that do not
    /// cross an array, and `$type`'s names. Same value.
    fn eval_ref<'a>(&'a self, doc: &'a dyn Fields, ctx: &mut EvalCtx) -> Result<Cow<'a, Bson>> {
        match self {
            Expr::Literal(v) => Ok(Cow::Borrowed(v)),
            Expr::Field(parts) => Ok(field_ref(doc, parts)),
            Expr::Var(name, parts) if !parts.is_empty() && matches!(name.as_str(), "ROOT" | "CURRENT") => {
                Ok(field_ref(doc, parts))
            }
            Expr::Op("$type", args) if args.len() == 1 => {
                let v = args[0].eval_ref(doc, ctx)?;
                let name = type_name(&v);
                Ok(match TYPE_NAMES.iter().find(|(n, _)| *n == name) {
                    Some((_, b)) => Cow::Borrowed(b),
                    None => Cow::Owned(Bson::String(name.to_owned())),
                })
            }
            _ => Ok(Cow::Owned(self.eval(doc, ctx)?)),
        }
    }

    /// Evaluates the expression with `doc` as `$$ROOT` and `$$CURRENT`.
    pub fn eval(&self, doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
        crate::interrupt::poll()?;
        match self {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Field(parts) => Ok(resolve_in_fields(doc, parts)),
            Expr::Var(name, parts) => {
                let base = match name.as_str() {
                    "ROOT" | "CURRENT" => {
                        if parts.is_empty() {
                            return Ok(Bson::Document(doc.to_document()));
                        }
                        return Ok(resolve_in_fields(doc, parts));
                    }
                    "NOW" => Bson::DateTime(ctx.now),
                    "REMOVE" => MISSING,
                    _ => match ctx.lookup(name) {
                        Some(v) => v.clone(),
                        None => {
                            return Err(CommandError::location(
                                17276,
                                format!("Use of undefined variable: {name}"),
                            ));
                        }
                    },
                };
                Ok(resolve(&base, parts))
            }
            Expr::Object(fields) => {
                let mut out = Document::new();
                for (k, e) in fields {
                    let v = e.eval(doc, ctx)?;
                    if !is_missing(&v) {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Bson::Document(out))
            }
            Expr::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    let v = e.eval(doc, ctx)?;
                    out.push(if is_missing(&v) { Bson::Null } else { v });
                }
                Ok(Bson::Array(out))
            }
            Expr::Op(name, args) => eval_op(name, args, doc, ctx),
            Expr::Named(name, args) => eval_named(name, args, doc, ctx),
        }
    }
}

fn parse_named(name: &'static str, req: &[&str], opt: &[&str], args: &Document) -> Result<Expr> {
    let mut out = Vec::new();
    for (k, v) in args {
        if !req.contains(&k.as_str()) && !opt.contains(&k.as_str()) {
            return Err(CommandError::location(40181, format!("Unrecognized parameter to {name}: {k}")));
        }
        let e = match (name, k.as_str()) {
            // Names of bound variables and branch lists are not expressions.
            ("$map" | "$filter", "as") => match v {
                Bson::String(s) => Expr::Literal(Bson::String(s.clone())),
                _ => return Err(CommandError::failed_to_parse(format!("{name} 'as' must be a string"))),
            },
            ("$let", "vars") => match v {
                Bson::Document(vars) => Expr::Object(
                    vars.iter().map(|(vk, vv)| Ok((vk.clone(), Expr::parse(vv)?))).collect::<Result<_>>()?,
                ),
                _ => {
                    return Err(CommandError::location(
                        16874,
                        "invalid parameter: expected an object (vars)",
                    ));
                }
            },
            ("$switch", "branches") => {
                let Bson::Array(branches) = v else {
                    return Err(CommandError::location(40061, "$switch expected an array for 'branches'"));
                };
                let mut bs = Vec::new();
                for b in branches {
                    let Bson::Document(bd) = b else {
                        return Err(CommandError::location(
                            40062,
                            "$switch expected each branch to be an object",
                        ));
                    };
                    let (Some(c), Some(t)) = (bd.get("case"), bd.get("then")) else {
                        return Err(CommandError::location(
                            40064,
                            "$switch requires each branch have a 'case' and 'then'",
                        ));
                    };
                    bs.push(Expr::Array(vec![Expr::parse(c)?, Expr::parse(t)?]));
                }
                Expr::Array(bs)
            }
            ("$sortArray", "sortBy") => Expr::Literal(v.clone()),
            _ => Expr::parse(v)?,
        };
        out.push((k.clone(), e));
    }
    for r in req {
        if !out.iter().any(|(k, _)| k == r) {
            return Err(CommandError::location(40182, format!("Missing '{r}' parameter to {name}")));
        }
    }
    Ok(Expr::Named(name, out))
}

/// `$setField` / `$unsetField` take a constant string `field` (mongod's parse-time checks).
fn check_set_field_name(op: &str, args: &[(String, Expr)]) -> Result<()> {
    match args.iter().find(|(k, _)| k == "field").map(|(_, e)| e) {
        Some(Expr::Literal(Bson::String(_))) => Ok(()),
        Some(Expr::Literal(other)) => Err(CommandError::location(
            4161107,
            format!("{op} requires 'field' to evaluate to type String, but got {}", type_name(other)),
        )),
        _ => Err(CommandError::location(
            4161106,
            format!("{op} requires 'field' to evaluate to a constant, but got a non-constant argument"),
        )),
    }
}

/// `$setField` / `$unsetField`: `input` with `field` set to `value` (removed when `value` is
/// missing, as `$$REMOVE`), a field of that exact name (dots and `$` included) kept in place.
fn eval_set_field(op: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let field = match named(args, "field") {
        Some(Expr::Literal(Bson::String(s))) => s.clone(),
        _ => return Err(CommandError::location(4161106, format!("{op} requires 'field' to be a constant"))),
    };
    let input = match named(args, "input") {
        Some(e) => e.eval(doc, ctx)?,
        None => MISSING,
    };
    let mut out = match input {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::Document(d) => d,
        other => {
            return Err(type_err(4161105, op, "requires 'input' to evaluate to type Object", &other));
        }
    };
    let value = match named(args, "value") {
        Some(e) if op == "$setField" => e.eval(doc, ctx)?,
        _ => MISSING,
    };
    if is_missing(&value) {
        out.remove(&field);
    } else {
        out.insert(field, value);
    }
    Ok(Bson::Document(out))
}

/// Resolves a field path in a document, mapping over arrays of documents.
/// `$type`'s answers as values (so that comparing with one copies nothing).
static TYPE_NAMES: std::sync::LazyLock<Vec<(&'static str, Bson)>> = std::sync::LazyLock::new(|| {
    [
        "double",
        "string",
        "object",
        "array",
        "binData",
        "undefined",
        "objectId",
        "bool",
        "date",
        "null",
        "regex",
        "dbPointer",
        "javascript",
        "symbol",
        "javascriptWithScope",
        "int",
        "timestamp",
        "long",
        "decimal",
        "minKey",
        "maxKey",
        "missing",
    ]
    .into_iter()
    .map(|n| (n, Bson::String(n.to_owned())))
    .collect()
});

static MISSING_VALUE: Bson = MISSING;

/// [`resolve_in_doc`] by reference while the path runs through documents only.
fn field_ref<'a>(doc: &'a dyn Fields, parts: &[String]) -> Cow<'a, Bson> {
    let Some((first, rest)) = parts.split_first() else {
        return Cow::Owned(Bson::Document(doc.to_document()));
    };
    let Some(mut cur) = doc.field(first) else {
        return Cow::Borrowed(&MISSING_VALUE);
    };
    for (i, p) in rest.iter().enumerate() {
        match cur {
            Bson::Document(d) => match d.get(p) {
                Some(v) => cur = v,
                None => return Cow::Borrowed(&MISSING_VALUE),
            },
            Bson::Array(_) => return Cow::Owned(resolve(cur, &rest[i..])),
            _ => return Cow::Borrowed(&MISSING_VALUE),
        }
    }
    Cow::Borrowed(cur)
}

/// [`resolve_in_doc`] from a [`Fields`] view.
fn resolve_in_fields(doc: &dyn Fields, parts: &[String]) -> Bson {
    let Some((first, rest)) = parts.split_first() else {
        return Bson::Document(doc.to_document());
    };
    match doc.field(first) {
        Some(v) => resolve(v, rest),
        None => MISSING,
    }
}

pub fn resolve_in_doc(doc: &Document, parts: &[String]) -> Bson {
    let Some((first, rest)) = parts.split_first() else {
        return Bson::Document(doc.clone());
    };
    match doc.get(first) {
        Some(v) => resolve(v, rest),
        None => MISSING,
    }
}

fn resolve(v: &Bson, parts: &[String]) -> Bson {
    if parts.is_empty() {
        return v.clone();
    }
    match v {
        Bson::Document(d) => resolve_in_doc(d, parts),
        Bson::Array(items) => {
            let mut out = Vec::new();
            for e in items {
                match e {
                    Bson::Document(_) | Bson::Array(_) => {
                        let r = resolve(e, parts);
                        if !is_missing(&r) {
                            out.push(r);
                        }
                    }
                    _ => {}
                }
            }
            Bson::Array(out)
        }
        _ => MISSING,
    }
}

/// The `$type` name of a value (`"missing"` for missing).
pub fn type_name(v: &Bson) -> &'static str {
    if is_missing(v) { "missing" } else { type_alias(bson_type_code(v)) }
}

fn type_err(code: i32, op: &str, what: &str, v: &Bson) -> CommandError {
    CommandError::location(code, format!("{op} {what}, not {}", type_name(v)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Width {
    I32,
    I64,
    F64,
    Dec,
}

fn width(v: &Bson) -> Option<Width> {
    match v {
        Bson::Int32(_) => Some(Width::I32),
        Bson::Int64(_) => Some(Width::I64),
        Bson::Double(_) => Some(Width::F64),
        Bson::Decimal128(_) => Some(Width::Dec),
        _ => None,
    }
}

fn num_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// Builds a number of width `w` from a float result.
fn float_as(w: Width, f: f64) -> Bson {
    if w == Width::Dec { f64_to_decimal(f) } else { Bson::Double(f) }
}

/// Best-effort conversion of a float to Decimal128.
pub(crate) fn f64_to_decimal(f: f64) -> Bson {
    let s = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity".to_string() } else { "-Infinity".to_string() }
    } else {
        format!("{f:?}")
    };
    match s.parse::<bson::Decimal128>() {
        Ok(d) => Bson::Decimal128(d),
        Err(_) => Bson::Double(f),
    }
}

/// An integer result of width `w` (promoting on overflow as MongoDB does).
fn int_as(w: Width, i: i64) -> Bson {
    match w {
        Width::I32 => match i32::try_from(i) {
            Ok(x) => Bson::Int32(x),
            Err(_) => Bson::Int64(i),
        },
        Width::I64 => Bson::Int64(i),
        Width::F64 => Bson::Double(i as f64),
        Width::Dec => f64_to_decimal(i as f64),
    }
}

/// Adds two numbers with MongoDB's type promotion.
pub(crate) fn num_add(a: &Bson, b: &Bson) -> Option<Bson> {
    let w = width(a)?.max(width(b)?);
    let (x, y) = (as_num(a)?, as_num(b)?);
    Some(match (w, x, y) {
        (Width::I32 | Width::I64, Num::Int(x), Num::Int(y)) => match x.checked_add(y) {
            Some(s) => int_as(w, s),
            None => Bson::Double(x as f64 + y as f64),
        },
        _ => float_as(w, num_f64(x) + num_f64(y)),
    })
}

/// Multiplies two numbers with MongoDB's type promotion.
pub(crate) fn num_mul(a: &Bson, b: &Bson) -> Option<Bson> {
    let w = width(a)?.max(width(b)?);
    let (x, y) = (as_num(a)?, as_num(b)?);
    Some(match (w, x, y) {
        (Width::I32 | Width::I64, Num::Int(x), Num::Int(y)) => match x.checked_mul(y) {
            Some(s) => int_as(w, s),
            None => Bson::Double(x as f64 * y as f64),
        },
        _ => float_as(w, num_f64(x) * num_f64(y)),
    })
}

fn num_sub(a: &Bson, b: &Bson) -> Option<Bson> {
    let w = width(a)?.max(width(b)?);
    let (x, y) = (as_num(a)?, as_num(b)?);
    Some(match (w, x, y) {
        (Width::I32 | Width::I64, Num::Int(x), Num::Int(y)) => match x.checked_sub(y) {
            Some(s) => int_as(w, s),
            None => Bson::Double(x as f64 - y as f64),
        },
        _ => float_as(w, num_f64(x) - num_f64(y)),
    })
}

fn date_ms(v: &Bson) -> Option<i64> {
    match v {
        Bson::DateTime(d) => Some(d.timestamp_millis()),
        _ => None,
    }
}

fn to_i64_exact(v: &Bson) -> Option<i64> {
    match as_num(v)? {
        Num::Int(i) => Some(i),
        Num::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.2e18 => Some(f as i64),
        Num::Float(_) => None,
    }
}

fn eval_args(args: &[Expr], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Vec<Bson>> {
    args.iter().map(|a| a.eval(doc, ctx)).collect()
}

/// The operands of `$sum`-like operators: a single array argument means its elements.
fn spread(vals: Vec<Bson>) -> Vec<Bson> {
    if vals.len() == 1
        && let Some(Bson::Array(items)) = vals.first()
    {
        return items.clone();
    }
    vals
}

fn to_chrono(v: &Bson) -> Option<chrono::DateTime<chrono::Utc>> {
    match v {
        Bson::DateTime(d) => Some(d.to_chrono()),
        Bson::Timestamp(t) => chrono::DateTime::from_timestamp(i64::from(t.time), 0),
        Bson::ObjectId(o) => Some(o.timestamp().to_chrono()),
        _ => None,
    }
}

fn parse_tz(tz: &Bson) -> Result<chrono::FixedOffset> {
    let utc = chrono::FixedOffset::east_opt(0).ok_or_else(|| CommandError::bad_value("bad timezone"))?;
    let s = match tz {
        Bson::Null | Bson::Undefined => return Ok(utc),
        Bson::String(s) => s.as_str(),
        other => {
            return Err(CommandError::location(
                40517,
                format!("timezone must evaluate to a string, found {}", type_name(other)),
            ));
        }
    };
    if matches!(s, "UTC" | "GMT" | "Z" | "Etc/UTC" | "Etc/GMT") {
        return Ok(utc);
    }
    let bad = || CommandError::location(40485, format!("unrecognized time zone identifier: \"{s}\""));
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(bad());
    }
    let h: i32 = digits[..2].parse().map_err(|_| bad())?;
    let m: i32 = if digits.len() == 4 { digits[2..].parse().map_err(|_| bad())? } else { 0 };
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

fn date_part(name: &str, d: chrono::DateTime<chrono::FixedOffset>) -> Bson {
    let v: i64 = match name {
        "$year" => i64::from(d.year()),
        "$month" => i64::from(d.month()),
        "$dayOfMonth" => i64::from(d.day()),
        "$hour" => i64::from(d.hour()),
        "$minute" => i64::from(d.minute()),
        "$second" => i64::from(d.second()),
        "$millisecond" => i64::from(d.timestamp_subsec_millis()),
        "$dayOfWeek" => i64::from(d.weekday().number_from_sunday()),
        "$dayOfYear" => i64::from(d.ordinal()),
        "$week" => d.format("%U").to_string().parse().unwrap_or(0),
        _ => 0,
    };
    Bson::Int32(v as i32)
}

/// Formats a date with MongoDB's `$dateToString` specifiers.
pub fn format_date(d: chrono::DateTime<chrono::FixedOffset>, fmt: &str) -> Result<String> {
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = it
            .next()
            .ok_or_else(|| CommandError::location(18535, "Unmatched '%' at end of format string"))?;
        let piece = match spec {
            'Y' => format!("{:04}", d.year()),
            'm' => format!("{:02}", d.month()),
            'd' => format!("{:02}", d.day()),
            'H' => format!("{:02}", d.hour()),
            'M' => format!("{:02}", d.minute()),
            'S' => format!("{:02}", d.second()),
            'L' => format!("{:03}", d.timestamp_subsec_millis()),
            'j' => format!("{:03}", d.ordinal()),
            'w' => d.weekday().number_from_sunday().to_string(),
            'u' => d.weekday().number_from_monday().to_string(),
            'U' => d.format("%U").to_string(),
            'V' => format!("{:02}", d.iso_week().week()),
            'G' => format!("{:04}", d.iso_week().year()),
            'z' => d.format("%z").to_string(),
            'Z' => (d.offset().local_minus_utc() / 60).to_string(),
            'b' => d.format("%b").to_string(),
            'B' => d.format("%B").to_string(),
            '%' => "%".to_string(),
            other => {
                return Err(CommandError::location(
                    18536,
                    format!("Invalid format character '%{other}' in format string"),
                ));
            }
        };
        out.push_str(&piece);
    }
    Ok(out)
}

/// ISO-8601 rendering used by `$toString` of dates.
fn iso_date(d: &bson::DateTime) -> String {
    let c = d.to_chrono();
    c.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `$toString` conversion.
pub fn to_string_value(v: &Bson) -> Result<Bson> {
    Ok(Bson::String(match v {
        Bson::Null | Bson::Undefined => return Ok(Bson::Null),
        Bson::String(s) | Bson::Symbol(s) => s.clone(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) => fmt_double(*f),
        Bson::Decimal128(d) => d.to_string(),
        Bson::Boolean(b) => b.to_string(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::DateTime(d) => iso_date(d),
        other => {
            return Err(CommandError::location(
                241,
                format!("Unsupported conversion from {} to string", type_name(other)),
            ));
        }
    }))
}

fn fmt_double(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else {
        format!("{f}")
    }
}

fn conversion_error(from: &Bson, to: &str) -> CommandError {
    CommandError::location(
        241,
        format!("Unsupported conversion from {} to {to} in $convert with no onError value", type_name(from)),
    )
}

/// `$convert` to a target type name.
fn convert(v: &Bson, to: &str) -> Result<Bson> {
    if is_nullish(v) {
        return Ok(Bson::Null);
    }
    let fail = || conversion_error(v, to);
    let parse_err = |s: &str| {
        CommandError::location(241, format!("Failed to parse number '{s}' in $convert with no onError value"))
    };
    match to {
        "string" => to_string_value(v),
        "bool" => Ok(Bson::Boolean(match v {
            Bson::String(_) => true,
            other => truthy(other),
        })),
        "int" | "long" => {
            let i: i64 = match v {
                Bson::Boolean(b) => i64::from(*b),
                Bson::String(s) => s.trim().parse::<i64>().map_err(|_| parse_err(s))?,
                Bson::DateTime(d) if to == "long" => d.timestamp_millis(),
                other => match as_num(other) {
                    Some(Num::Int(i)) => i,
                    Some(Num::Float(f)) if f.is_finite() => f.trunc() as i64,
                    _ => return Err(fail()),
                },
            };
            if to == "int" {
                i32::try_from(i)
                    .map(Bson::Int32)
                    .map_err(|_| CommandError::location(241, format!("Conversion would overflow target type in $convert with no onError value: {i}")))
            } else {
                Ok(Bson::Int64(i))
            }
        }
        "double" | "decimal" => {
            let f = match v {
                Bson::Boolean(b) => f64::from(u8::from(*b)),
                Bson::String(s) => s.trim().parse::<f64>().map_err(|_| parse_err(s))?,
                Bson::DateTime(d) => d.timestamp_millis() as f64,
                other => as_num(other).map(num_f64).ok_or_else(fail)?,
            };
            Ok(if to == "double" { Bson::Double(f) } else { f64_to_decimal(f) })
        }
        "date" => match v {
            Bson::DateTime(_) => Ok(v.clone()),
            Bson::ObjectId(o) => Ok(Bson::DateTime(o.timestamp())),
            Bson::Timestamp(t) => Ok(Bson::DateTime(DateTime::from_millis(i64::from(t.time) * 1000))),
            Bson::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| Bson::DateTime(DateTime::from_millis(d.timestamp_millis())))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| Bson::DateTime(DateTime::from_millis(d.and_utc().timestamp_millis())))
                        .ok_or_else(|| CommandError::location(241, format!("Error parsing date string '{s}'")))
                }),
            other => match as_num(other) {
                Some(Num::Int(i)) if !matches!(other, Bson::Int32(_)) => Ok(Bson::DateTime(DateTime::from_millis(i))),
                Some(Num::Float(f)) if f.is_finite() => Ok(Bson::DateTime(DateTime::from_millis(f as i64))),
                _ => Err(fail()),
            },
        },
        "objectId" => match v {
            Bson::ObjectId(_) => Ok(v.clone()),
            Bson::String(s) => bson::oid::ObjectId::parse_str(s)
                .map(Bson::ObjectId)
                .map_err(|_| CommandError::location(241, format!("Failed to parse objectId '{s}' in $convert with no onError value: Invalid string length for parsing to OID, expected 24 but found {}", s.len()))),
            _ => Err(fail()),
        },
        other => Err(CommandError::bad_value(format!("Unknown type name: {other}"))),
    }
}

fn convert_target(v: &Bson) -> Result<String> {
    match v {
        Bson::String(s) => Ok(s.clone()),
        other => match to_i64_exact(other) {
            Some(code) => Ok(type_alias(code as i32).to_string()),
            None => Err(CommandError::bad_value("$convert's 'to' argument must be a string or number")),
        },
    }
}

fn set_of(v: &Bson, op: &str) -> Result<Option<Vec<Bson>>> {
    match v {
        Bson::Null | Bson::Undefined => Ok(None),
        Bson::Array(a) => Ok(Some(a.clone())),
        other => Err(CommandError::location(
            17044,
            format!("All operands of {op} must be arrays. One argument is of type: {}", type_name(other)),
        )),
    }
}

fn key_of(v: &Bson) -> String {
    let mut s = String::new();
    canonical_key(v, &mut s);
    s
}

fn substr_bytes(s: &str, start: i64, len: i64) -> Result<String> {
    let bytes = s.as_bytes();
    let start = start.max(0) as usize;
    if start >= bytes.len() {
        return Ok(String::new());
    }
    let end = if len < 0 { bytes.len() } else { start.saturating_add(len as usize).min(bytes.len()) };
    if !s.is_char_boundary(start) || !s.is_char_boundary(end) {
        return Err(CommandError::location(
            28656,
            "$substrBytes:  Invalid range, starting index is a UTF-8 continuation byte.",
        ));
    }
    Ok(s[start..end].to_string())
}

fn int_arg(v: &Bson, op: &str) -> Result<i64> {
    to_i64_exact(v).ok_or_else(|| {
        CommandError::location(
            16034,
            format!("{op}: argument must be an integral numeric value, not {}", type_name(v)),
        )
    })
}

/// Array operators poll for interruption every this many elements they copy or build.
const ARRAY_POLL_EVERY: usize = 4096;
/// mongod's `internalQueryMaxRangeBytes` (100 MiB).
pub const MAX_RANGE_BYTES: usize = 100 * 1024 * 1024;
/// The memory of one array element. mongod counts `sizeof(Value)` (16 bytes); a `Bson` is 7x
/// that, so the node counts what it really allocates and refuses smaller arrays than mongod
/// (about 0.9 million elements rather than 6.5 million) to hold the same memory bound.
const APPROX_VALUE_BYTES: usize = std::mem::size_of::<Bson>();
/// The array itself (mongod: `sizeof(std::vector<Value>)`).
const RANGE_VEC_BYTES: usize = std::mem::size_of::<Vec<Bson>>();

/// Fails with ExceededMemoryLimit (146), mongod's `$range` error, when an array of `len`
/// elements would need more than [`MAX_RANGE_BYTES`] (`$range`, `$concatArrays`).
fn check_array_memory(op: &str, len: usize) -> Result<()> {
    let needed = RANGE_VEC_BYTES.saturating_add(len.saturating_mul(APPROX_VALUE_BYTES));
    if needed >= MAX_RANGE_BYTES {
        return Err(CommandError::new(
            146,
            "ExceededMemoryLimit",
            format!(
                "{op} would use too much memory ({needed} bytes) and cannot spill to disk. \
                 Memory limit: {MAX_RANGE_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// `$rand`: a double in [0, 1), a fresh value per evaluation (from the standard library's
/// randomly keyed hasher; not for cryptography, nor is mongod's).
fn rand_double() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn eval_op(name: &str, args: &[Expr], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    if name == "$rand" {
        return Ok(Bson::Double(rand_double()));
    }
    // Short-circuiting operators first, and the comparisons, which read their arguments in
    // place (no copy of a field or a constant).
    match name {
        "$and" => {
            for a in args {
                if !truthy(&*a.eval_ref(doc, ctx)?) {
                    return Ok(Bson::Boolean(false));
                }
            }
            return Ok(Bson::Boolean(true));
        }
        "$or" => {
            for a in args {
                if truthy(&*a.eval_ref(doc, ctx)?) {
                    return Ok(Bson::Boolean(true));
                }
            }
            return Ok(Bson::Boolean(false));
        }
        "$cond" => {
            let c = truthy(&*args[0].eval_ref(doc, ctx)?);
            return if c { args[1].eval(doc, ctx) } else { args[2].eval(doc, ctx) };
        }
        "$ifNull" => {
            let (last, init) =
                args.split_last().ok_or_else(|| CommandError::bad_value("$ifNull needs arguments"))?;
            for a in init {
                let v = a.eval_ref(doc, ctx)?;
                if !is_nullish(&v) {
                    return Ok(v.into_owned());
                }
            }
            return last.eval(doc, ctx);
        }
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" if args.len() == 2 => {
            let (x, y) = (args[0].eval_ref(doc, ctx)?, args[1].eval_ref(doc, ctx)?);
            let o = cmp_bson(&x, &y);
            return Ok(Bson::Boolean(match name {
                "$eq" => o == Ordering::Equal,
                "$ne" => o != Ordering::Equal,
                "$gt" => o == Ordering::Greater,
                "$gte" => o != Ordering::Less,
                "$lt" => o == Ordering::Less,
                _ => o != Ordering::Greater,
            }));
        }
        "$in" if args.len() == 2 => {
            let (x, arr) = (args[0].eval_ref(doc, ctx)?, args[1].eval_ref(doc, ctx)?);
            return match &*arr {
                Bson::Array(items) => Ok(Bson::Boolean(items.iter().any(|i| bson_eq(i, &x)))),
                other => Err(CommandError::location(
                    40081,
                    format!("$in requires an array as a second argument, found: {}", type_name(other)),
                )),
            };
        }
        _ => {}
    }
    let v = eval_args(args, doc, ctx)?;
    let a0: &Bson = v.first().unwrap_or(&MISSING_VALUE);
    let a1: &Bson = v.get(1).unwrap_or(&MISSING_VALUE);
    match name {
        "$add" => {
            let mut acc = Bson::Int32(0);
            let mut date: Option<i64> = None;
            for x in &v {
                if is_nullish(x) {
                    return Ok(Bson::Null);
                }
                if let Some(ms) = date_ms(x) {
                    if date.is_some() {
                        return Err(CommandError::location(
                            16612,
                            "only one date allowed in an $add expression",
                        ));
                    }
                    date = Some(ms);
                    continue;
                }
                acc = num_add(&acc, x)
                    .ok_or_else(|| type_err(16554, "$add", "only supports numeric or date types", x))?;
            }
            match date {
                Some(ms) => {
                    let add = match as_num(&acc) {
                        Some(Num::Int(i)) => i,
                        Some(Num::Float(f)) => f.round() as i64,
                        None => 0,
                    };
                    Ok(Bson::DateTime(DateTime::from_millis(ms.saturating_add(add))))
                }
                None => Ok(acc),
            }
        }
        "$multiply" => {
            let mut acc = Bson::Int32(1);
            for x in &v {
                if is_nullish(x) {
                    return Ok(Bson::Null);
                }
                acc = num_mul(&acc, x)
                    .ok_or_else(|| type_err(16555, "$multiply", "only supports numeric types", x))?;
            }
            Ok(acc)
        }
        "$subtract" => {
            if is_nullish(a0) || is_nullish(a1) {
                return Ok(Bson::Null);
            }
            match (date_ms(a0), date_ms(a1)) {
                (Some(x), Some(y)) => Ok(Bson::Int64(x.saturating_sub(y))),
                (Some(x), None) => {
                    let d = match as_num(a1) {
                        Some(Num::Int(i)) => i,
                        Some(Num::Float(f)) => f.round() as i64,
                        None => return Err(type_err(16556, "cant $subtract a", type_name(a1), a0)),
                    };
                    Ok(Bson::DateTime(DateTime::from_millis(x.saturating_sub(d))))
                }
                _ => num_sub(a0, a1).ok_or_else(|| {
                    CommandError::location(
                        16556,
                        format!("cant $subtract a {} from a {}", type_name(a1), type_name(a0)),
                    )
                }),
            }
        }
        "$divide" => {
            if is_nullish(a0) || is_nullish(a1) {
                return Ok(Bson::Null);
            }
            let (Some(x), Some(y)) = (as_num(a0), as_num(a1)) else {
                return Err(CommandError::location(
                    16609,
                    format!(
                        "$divide only supports numeric types, not {} and {}",
                        type_name(a0),
                        type_name(a1)
                    ),
                ));
            };
            if num_f64(y) == 0.0 {
                return Err(CommandError::bad_value("can't $divide by zero"));
            }
            let w = width(a0).max(width(a1)).unwrap_or(Width::F64);
            Ok(float_as(if w == Width::Dec { Width::Dec } else { Width::F64 }, num_f64(x) / num_f64(y)))
        }
        "$mod" => {
            if is_nullish(a0) || is_nullish(a1) {
                return Ok(Bson::Null);
            }
            let (Some(x), Some(y)) = (as_num(a0), as_num(a1)) else {
                return Err(CommandError::location(
                    16611,
                    format!("$mod only supports numeric types, not {} and {}", type_name(a0), type_name(a1)),
                ));
            };
            if num_f64(y) == 0.0 {
                return Err(CommandError::location(16610, "can't $mod by zero"));
            }
            let w = width(a0).max(width(a1)).unwrap_or(Width::F64);
            Ok(match (x, y) {
                (Num::Int(x), Num::Int(y)) => int_as(w, x.wrapping_rem(y)),
                _ => float_as(w, num_f64(x) % num_f64(y)),
            })
        }
        "$pow" | "$log" => {
            if is_nullish(a0) || is_nullish(a1) {
                return Ok(Bson::Null);
            }
            let (Some(x), Some(y)) = (as_num(a0), as_num(a1)) else {
                return Err(CommandError::location(28762, format!("{name} only supports numeric types")));
            };
            if name == "$log" {
                return Ok(Bson::Double(num_f64(x).ln() / num_f64(y).ln()));
            }
            let w = width(a0).max(width(a1)).unwrap_or(Width::F64);
            if let (Num::Int(b), Num::Int(e)) = (x, y)
                && (0..=u32::MAX as i64).contains(&e)
                && let Some(r) = b.checked_pow(e as u32)
            {
                return Ok(int_as(w, r));
            }
            Ok(float_as(w.max(Width::F64), num_f64(x).powf(num_f64(y))))
        }
        "$abs" | "$ceil" | "$floor" | "$sqrt" | "$exp" | "$ln" | "$log10" => {
            if is_nullish(a0) {
                return Ok(Bson::Null);
            }
            let x = as_num(a0).ok_or_else(|| type_err(28765, name, "only supports numeric types", a0))?;
            let w = width(a0).unwrap_or(Width::F64);
            Ok(match (name, x) {
                ("$abs", Num::Int(i)) => match i.checked_abs() {
                    Some(r) => int_as(w, r),
                    None => Bson::Double((i as f64).abs()),
                },
                ("$ceil" | "$floor", Num::Int(_)) => a0.clone(),
                ("$abs", Num::Float(f)) => float_as(w, f.abs()),
                ("$ceil", Num::Float(f)) => float_as(w, f.ceil()),
                ("$floor", Num::Float(f)) => float_as(w, f.floor()),
                ("$sqrt", n) => {
                    if num_f64(n) < 0.0 {
                        return Err(CommandError::location(
                            28714,
                            "$sqrt's argument must be greater than or equal to 0",
                        ));
                    }
                    Bson::Double(num_f64(n).sqrt())
                }
                ("$exp", n) => Bson::Double(num_f64(n).exp()),
                ("$ln", n) => Bson::Double(num_f64(n).ln()),
                (_, n) => Bson::Double(num_f64(n).log10()),
            })
        }
        "$round" | "$trunc" => {
            if is_nullish(a0) {
                return Ok(Bson::Null);
            }
            let x = as_num(a0).ok_or_else(|| type_err(51081, name, "only supports numeric types", a0))?;
            let place = if v.len() > 1 { int_arg(a1, name)? } else { 0 };
            match x {
                Num::Int(i) => {
                    if place >= 0 {
                        return Ok(a0.clone());
                    }
                    let p = 10i64.checked_pow((-place) as u32).unwrap_or(i64::MAX);
                    let r = if name == "$trunc" {
                        i / p * p
                    } else {
                        let q = (i as f64 / p as f64).round_ties_even();
                        (q as i64).saturating_mul(p)
                    };
                    Ok(int_as(width(a0).unwrap_or(Width::I64), r))
                }
                Num::Float(f) => {
                    let m = 10f64.powi(place as i32);
                    let r =
                        if name == "$trunc" { (f * m).trunc() / m } else { (f * m).round_ties_even() / m };
                    Ok(float_as(width(a0).unwrap_or(Width::F64), r))
                }
            }
        }
        "$concat" => {
            let mut s = String::new();
            for x in &v {
                match x {
                    Bson::String(p) => s.push_str(p),
                    Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                    other => return Err(type_err(16702, "$concat", "only supports strings", other)),
                }
            }
            Ok(Bson::String(s))
        }
        "$toUpper" | "$toLower" => {
            let s = match &a0 {
                Bson::Null | Bson::Undefined => String::new(),
                Bson::String(s) => s.clone(),
                other => match to_string_value(other)? {
                    Bson::String(s) => s,
                    _ => String::new(),
                },
            };
            Ok(Bson::String(if name == "$toUpper" { s.to_ascii_uppercase() } else { s.to_ascii_lowercase() }))
        }
        "$substr" | "$substrBytes" | "$substrCP" => {
            let s = match &a0 {
                Bson::Null | Bson::Undefined => return Ok(Bson::String(String::new())),
                Bson::String(s) => s.clone(),
                other => match to_string_value(other)? {
                    Bson::String(s) => s,
                    _ => String::new(),
                },
            };
            let start = int_arg(a1, name)?;
            let len = int_arg(v.get(2).unwrap_or(&Bson::Int32(-1)), name)?;
            if name == "$substrCP" {
                if start < 0 {
                    return Err(CommandError::location(
                        34455,
                        "$substrCP: the starting index must be nonnegative integer.",
                    ));
                }
                if len < 0 {
                    return Err(CommandError::location(
                        34456,
                        "$substrCP: length must be a nonnegative integer.",
                    ));
                }
                return Ok(Bson::String(s.chars().skip(start as usize).take(len as usize).collect()));
            }
            Ok(Bson::String(substr_bytes(&s, start, len)?))
        }
        "$strLenBytes" | "$strLenCP" => match &a0 {
            Bson::String(s) => {
                Ok(Bson::Int32(if name == "$strLenBytes" { s.len() } else { s.chars().count() } as i32))
            }
            other => Err(type_err(34471, name, "requires a string argument", other)),
        },
        "$split" => match (&a0, &a1) {
            (Bson::Null | Bson::Undefined, _) => Ok(Bson::Null),
            (Bson::String(s), Bson::String(d)) => {
                if d.is_empty() {
                    return Err(CommandError::location(40087, "$split requires a non-empty separator"));
                }
                Ok(Bson::Array(s.split(d.as_str()).map(|p| Bson::String(p.to_string())).collect()))
            }
            (Bson::String(_), other) => Err(type_err(
                40086,
                "$split",
                "requires an expression that evaluates to a string as a second argument",
                other,
            )),
            (other, _) => Err(type_err(
                40085,
                "$split",
                "requires an expression that evaluates to a string as a first argument",
                other,
            )),
        },
        "$strcasecmp" => {
            let f = |x: &Bson| -> Result<String> {
                Ok(match x {
                    Bson::Null | Bson::Undefined => String::new(),
                    Bson::String(s) => s.to_ascii_lowercase(),
                    other => match to_string_value(other)? {
                        Bson::String(s) => s.to_ascii_lowercase(),
                        _ => String::new(),
                    },
                })
            };
            Ok(Bson::Int32(match f(a0)?.cmp(&f(a1)?) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            }))
        }
        "$indexOfBytes" | "$indexOfCP" => {
            let s = match &a0 {
                Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                Bson::String(s) => s,
                other => return Err(type_err(40091, name, "requires a string as the first argument", other)),
            };
            let Bson::String(sub) = &a1 else {
                return Err(type_err(40092, name, "requires a string as the second argument", a1));
            };
            let chars: Vec<(usize, char)> = s.char_indices().collect();
            let unit_len = if name == "$indexOfBytes" { s.len() } else { chars.len() };
            let start = match v.get(2) {
                Some(x) => int_arg(x, name)?.max(0) as usize,
                None => 0,
            };
            let end = match v.get(3) {
                Some(x) => (int_arg(x, name)?.max(0) as usize).min(unit_len),
                None => unit_len,
            };
            let to_byte = |u: usize| -> usize {
                if name == "$indexOfBytes" { u } else { chars.get(u).map(|(b, _)| *b).unwrap_or(s.len()) }
            };
            if start > end {
                return Ok(Bson::Int32(-1));
            }
            let (bs, be) = (to_byte(start), to_byte(end));
            if !s.is_char_boundary(bs) || !s.is_char_boundary(be) {
                return Ok(Bson::Int32(-1));
            }
            Ok(Bson::Int32(match s[bs..be].find(sub.as_str()) {
                Some(pos) => {
                    let b = bs + pos;
                    if name == "$indexOfBytes" {
                        b as i32
                    } else {
                        chars.iter().position(|(i, _)| *i == b).unwrap_or(0) as i32
                    }
                }
                None => -1,
            }))
        }
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" => {
            let o = cmp_bson(a0, a1);
            Ok(Bson::Boolean(match name {
                "$eq" => o == Ordering::Equal,
                "$ne" => o != Ordering::Equal,
                "$gt" => o == Ordering::Greater,
                "$gte" => o != Ordering::Less,
                "$lt" => o == Ordering::Less,
                _ => o != Ordering::Greater,
            }))
        }
        "$cmp" => Ok(Bson::Int32(match cmp_bson(a0, a1) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        })),
        "$not" => Ok(Bson::Boolean(!truthy(a0))),
        "$size" => match &a0 {
            Bson::Array(a) => Ok(Bson::Int32(a.len() as i32)),
            other => Err(CommandError::location(
                17124,
                format!("The argument to $size must be an array. Type of the argument: {}", type_name(other)),
            )),
        },
        "$arrayElemAt" => {
            if is_nullish(a0) || is_nullish(a1) {
                return Ok(Bson::Null);
            }
            let Bson::Array(arr) = &a0 else {
                return Err(CommandError::location(
                    28689,
                    format!("$arrayElemAt's first argument must be an array, but is {}", type_name(a0)),
                ));
            };
            let idx = to_i64_exact(a1).ok_or_else(|| {
                CommandError::location(
                    28690,
                    format!(
                        "$arrayElemAt's second argument must be a numeric value, but is {}",
                        type_name(a1)
                    ),
                )
            })?;
            let i = if idx < 0 { arr.len() as i64 + idx } else { idx };
            Ok(if i < 0 { MISSING } else { arr.get(i as usize).cloned().unwrap_or(MISSING) })
        }
        "$first" | "$last" => match &a0 {
            Bson::Null | Bson::Undefined => Ok(Bson::Null),
            Bson::Array(arr) => {
                Ok(if name == "$first" { arr.first() } else { arr.last() }.cloned().unwrap_or(MISSING))
            }
            other => Err(CommandError::location(
                28689,
                format!("{name}'s argument must be an array, but is {}", type_name(other)),
            )),
        },
        "$in" => match &a1 {
            Bson::Array(arr) => Ok(Bson::Boolean(arr.iter().any(|x| bson_eq(x, a0)))),
            other => Err(CommandError::location(
                40081,
                format!("$in requires an array as a second argument, found: {}", type_name(other)),
            )),
        },
        "$concatArrays" => {
            let total: usize = v.iter().map(|x| if let Bson::Array(a) = x { a.len() } else { 0 }).sum();
            check_array_memory("$concatArrays", total)?;
            let mut out = Vec::with_capacity(total);
            for x in &v {
                match x {
                    Bson::Array(a) => {
                        for chunk in a.chunks(ARRAY_POLL_EVERY) {
                            crate::interrupt::poll()?;
                            out.extend(chunk.iter().cloned());
                        }
                    }
                    Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                    other => return Err(type_err(28664, "$concatArrays", "only supports arrays", other)),
                }
            }
            Ok(Bson::Array(out))
        }
        "$isArray" => Ok(Bson::Boolean(matches!(a0, Bson::Array(_)))),
        "$slice" => {
            if is_nullish(a0) {
                return Ok(Bson::Null);
            }
            let Bson::Array(arr) = &a0 else {
                return Err(CommandError::location(
                    28724,
                    format!("First argument to $slice must be an array, but is of type: {}", type_name(a0)),
                ));
            };
            let len = arr.len() as i64;
            let (start, n) = if v.len() == 2 {
                let n = int_arg(a1, "$slice")?;
                if n >= 0 { (0, n) } else { ((len + n).max(0), -n) }
            } else {
                let pos = int_arg(a1, "$slice")?;
                let n = int_arg(&v[2], "$slice")?;
                if n <= 0 {
                    return Err(CommandError::location(
                        28729,
                        format!("Third argument to $slice must be positive: {n}"),
                    ));
                }
                let start = if pos < 0 { (len + pos).max(0) } else { pos.min(len) };
                (start, n)
            };
            let start = start.min(len) as usize;
            let end = (start as i64).saturating_add(n).min(len) as usize;
            Ok(Bson::Array(arr[start..end].to_vec()))
        }
        "$reverseArray" => match &a0 {
            Bson::Null | Bson::Undefined => Ok(Bson::Null),
            Bson::Array(a) => Ok(Bson::Array(a.iter().rev().cloned().collect())),
            other => Err(type_err(34435, "$reverseArray", "argument must be an array", other)),
        },
        "$range" => {
            let start = int_arg(a0, "$range")?;
            let end = int_arg(a1, "$range")?;
            let step = match v.get(2) {
                Some(s) => int_arg(s, "$range")?,
                None => 1,
            };
            if step == 0 {
                return Err(CommandError::location(34449, "$range requires a non-zero step value"));
            }
            // mongod's ExpressionRange: the length is known up front and checked against
            // internalQueryMaxRangeBytes before anything is built.
            let steps = (i128::from(end) - i128::from(start)) / i128::from(step);
            let len = if (step > 0 && start < end) || (step < 0 && start > end) {
                usize::try_from(steps.unsigned_abs() + 1).unwrap_or(usize::MAX)
            } else {
                0
            };
            check_array_memory("$range", len)?;
            let mut out = Vec::with_capacity(len.min(MAX_RANGE_BYTES / APPROX_VALUE_BYTES));
            let mut i = start;
            while (step > 0 && i < end) || (step < 0 && i > end) {
                crate::interrupt::poll_every(out.len(), ARRAY_POLL_EVERY)?;
                out.push(int_as(Width::I32, i));
                i = match i.checked_add(step) {
                    Some(n) => n,
                    None => break,
                };
            }
            Ok(Bson::Array(out))
        }
        "$indexOfArray" => {
            if is_nullish(a0) {
                return Ok(Bson::Null);
            }
            let Bson::Array(arr) = &a0 else {
                return Err(type_err(40090, "$indexOfArray", "requires an array as a first argument", a0));
            };
            let start = match v.get(2) {
                Some(x) => int_arg(x, "$indexOfArray")?.max(0) as usize,
                None => 0,
            };
            let end = match v.get(3) {
                Some(x) => (int_arg(x, "$indexOfArray")?.max(0) as usize).min(arr.len()),
                None => arr.len(),
            };
            let found = (start..end).find(|i| bson_eq(&arr[*i], a1));
            Ok(Bson::Int32(found.map(|i| i as i32).unwrap_or(-1)))
        }
        "$arrayToObject" => {
            if is_nullish(a0) {
                return Ok(Bson::Null);
            }
            let Bson::Array(arr) = &a0 else {
                return Err(type_err(40386, "$arrayToObject", "requires an array input", a0));
            };
            let mut out = Document::new();
            for e in arr {
                let (k, val) = match e {
                    Bson::Array(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
                    Bson::Document(d) if d.len() == 2 && d.contains_key("k") && d.contains_key("v") => {
                        (d.get("k").cloned().unwrap_or(Bson::Null), d.get("v").cloned().unwrap_or(Bson::Null))
                    }
                    _ => {
                        return Err(CommandError::location(
                            40398,
                            "$arrayToObject requires an array of key-value pairs",
                        ));
                    }
                };
                let Bson::String(k) = k else {
                    return Err(CommandError::location(40394, "$arrayToObject requires keys to be strings"));
                };
                out.insert(k, val);
            }
            Ok(Bson::Document(out))
        }
        "$objectToArray" => match &a0 {
            Bson::Null | Bson::Undefined => Ok(Bson::Null),
            Bson::Document(d) => Ok(Bson::Array(
                d.iter()
                    .map(|(k, val)| Bson::Document(bson::doc! {"k": k.clone(), "v": val.clone()}))
                    .collect(),
            )),
            other => Err(type_err(40390, "$objectToArray", "requires a document input", other)),
        },
        "$mergeObjects" => {
            let mut out = Document::new();
            for x in spread_docs(v) {
                match x {
                    Bson::Document(d) => {
                        for (k, val) in d {
                            out.insert(k, val);
                        }
                    }
                    Bson::Null | Bson::Undefined => {}
                    other => return Err(type_err(40400, "$mergeObjects", "requires object inputs", &other)),
                }
            }
            Ok(Bson::Document(out))
        }
        "$sum" => {
            let mut acc = Bson::Int32(0);
            for x in spread(v) {
                if let Some(s) = num_add(&acc, &x) {
                    acc = s;
                }
            }
            Ok(acc)
        }
        "$avg" => {
            let (mut sum, mut n) = (0.0, 0u64);
            for x in spread(v) {
                if let Some(k) = as_num(&x) {
                    sum += num_f64(k);
                    n += 1;
                }
            }
            Ok(if n == 0 { Bson::Null } else { Bson::Double(sum / n as f64) })
        }
        "$min" | "$max" => {
            let mut best: Option<Bson> = None;
            for x in spread(v) {
                if is_nullish(&x) {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let o = cmp_bson(&x, b);
                        if name == "$min" { o == Ordering::Less } else { o == Ordering::Greater }
                    }
                };
                if better {
                    best = Some(x);
                }
            }
            Ok(best.unwrap_or(Bson::Null))
        }
        "$setUnion" | "$setIntersection" => {
            let mut sets = Vec::new();
            for x in &v {
                match set_of(x, name)? {
                    Some(s) => sets.push(s),
                    None => return Ok(Bson::Null),
                }
            }
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            if name == "$setUnion" {
                for s in sets {
                    for e in s {
                        if seen.insert(key_of(&e)) {
                            out.push(e);
                        }
                    }
                }
            } else if let Some((first, rest)) = sets.split_first() {
                let rest_keys: Vec<HashSet<String>> =
                    rest.iter().map(|s| s.iter().map(key_of).collect()).collect();
                for e in first {
                    let k = key_of(e);
                    if rest_keys.iter().all(|rk| rk.contains(&k)) && seen.insert(k) {
                        out.push(e.clone());
                    }
                }
            }
            Ok(Bson::Array(out))
        }
        "$setDifference" | "$setIsSubset" => {
            let (Some(x), Some(y)) = (set_of(a0, name)?, set_of(a1, name)?) else {
                return Ok(Bson::Null);
            };
            let yk: HashSet<String> = y.iter().map(key_of).collect();
            if name == "$setIsSubset" {
                return Ok(Bson::Boolean(x.iter().all(|e| yk.contains(&key_of(e)))));
            }
            let mut seen = HashSet::new();
            Ok(Bson::Array(
                x.into_iter()
                    .filter(|e| {
                        let k = key_of(e);
                        !yk.contains(&k) && seen.insert(k)
                    })
                    .collect(),
            ))
        }
        "$setEquals" => {
            let mut keys: Option<HashSet<String>> = None;
            for x in &v {
                let s = set_of(x, name)?.ok_or_else(|| {
                    CommandError::location(17044, "All operands of $setEquals must be arrays.")
                })?;
                let k: HashSet<String> = s.iter().map(key_of).collect();
                match &keys {
                    None => keys = Some(k),
                    Some(prev) if *prev != k => return Ok(Bson::Boolean(false)),
                    Some(_) => {}
                }
            }
            Ok(Bson::Boolean(true))
        }
        "$allElementsTrue" | "$anyElementTrue" => match &a0 {
            Bson::Array(a) => Ok(Bson::Boolean(if name == "$allElementsTrue" {
                a.iter().all(truthy)
            } else {
                a.iter().any(truthy)
            })),
            other => Err(type_err(17040, name, "'s argument must be an array", other)),
        },
        "$type" => Ok(Bson::String(type_name(a0).to_string())),
        "$isNumber" => Ok(Bson::Boolean(as_num(a0).is_some())),
        "$toString" => to_string_value(a0),
        "$toInt" => convert(a0, "int"),
        "$toLong" => convert(a0, "long"),
        "$toDouble" => convert(a0, "double"),
        "$toDecimal" => convert(a0, "decimal"),
        "$toBool" => convert(a0, "bool"),
        "$toDate" => convert(a0, "date"),
        "$toObjectId" => convert(a0, "objectId"),
        _ if DATE_PARTS.contains(&name) => {
            if is_nullish(a0) {
                return Ok(Bson::Null);
            }
            let d = to_chrono(a0).ok_or_else(|| {
                CommandError::location(
                    16006,
                    format!("can't convert from BSON type {} to Date", type_name(a0)),
                )
            })?;
            let tz = parse_tz(&Bson::Null)?;
            Ok(date_part(name, d.with_timezone(&tz)))
        }
        other => Err(CommandError::invalid_pipeline_operator(format!("Unrecognized expression '{other}'"))),
    }
}

fn spread_docs(v: Vec<Bson>) -> Vec<Bson> {
    spread(v)
}

fn named<'a>(args: &'a [(String, Expr)], key: &str) -> Option<&'a Expr> {
    args.iter().find(|(k, _)| k == key).map(|(_, e)| e)
}

fn named_str(args: &[(String, Expr)], key: &str, default: &str) -> String {
    match named(args, key) {
        Some(Expr::Literal(Bson::String(s))) => s.clone(),
        _ => default.to_string(),
    }
}

fn eval_named(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| -> Result<Bson> {
        match named(args, key) {
            Some(e) => e.eval(doc, ctx),
            None => Ok(MISSING),
        }
    };
    match name {
        "$cond" => {
            let c = match named(args, "if") {
                Some(e) => truthy(&*e.eval_ref(doc, ctx)?),
                None => false,
            };
            if c { ev("then", ctx) } else { ev("else", ctx) }
        }
        "$switch" => {
            if let Some(Expr::Array(branches)) = get("branches") {
                for b in branches {
                    if let Expr::Array(ct) = b
                        && ct.len() == 2
                        && truthy(&*ct[0].eval_ref(doc, ctx)?)
                    {
                        return ct[1].eval(doc, ctx);
                    }
                }
            }
            match get("default") {
                Some(d) => d.eval(doc, ctx),
                None => Err(CommandError::location(
                    40066,
                    "$switch could not find a matching branch for an input, and no default was specified.",
                )),
            }
        }
        "$let" => {
            let mut bound = Vec::new();
            if let Some(Expr::Object(vars)) = get("vars") {
                for (k, e) in vars {
                    bound.push((k.clone(), e.eval(doc, ctx)?));
                }
            }
            let mark = ctx.mark();
            for (k, val) in bound {
                ctx.bind(k, val);
            }
            let r = ev("in", ctx);
            ctx.reset(mark);
            r
        }
        "$map" | "$filter" => {
            let input = ev("input", ctx)?;
            let arr = match input {
                Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                Bson::Array(a) => a,
                other => {
                    return Err(type_err(
                        if name == "$map" { 16883 } else { 28651 },
                        name,
                        "input must be an array",
                        &other,
                    ));
                }
            };
            let var = named_str(args, "as", "this");
            let body = if name == "$map" { get("in") } else { get("cond") };
            let limit = match get("limit") {
                Some(e) => {
                    let l = e.eval(doc, ctx)?;
                    if is_nullish(&l) { None } else { Some(int_arg(&l, "$filter")?.max(0) as usize) }
                }
                None => None,
            };
            let mut out = Vec::new();
            let mark = ctx.mark();
            for e in arr {
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
                ctx.reset(mark);
                ctx.bind(var.clone(), e.clone());
                let r = match body {
                    Some(b) => b.eval(doc, ctx),
                    None => Ok(Bson::Null),
                };
                let r = match r {
                    Ok(r) => r,
                    Err(err) => {
                        ctx.reset(mark);
                        return Err(err);
                    }
                };
                if name == "$map" {
                    out.push(if is_missing(&r) { Bson::Null } else { r });
                } else if truthy(&r) {
                    out.push(e);
                }
            }
            ctx.reset(mark);
            Ok(Bson::Array(out))
        }
        "$reduce" => {
            let input = ev("input", ctx)?;
            let arr = match input {
                Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                Bson::Array(a) => a,
                other => return Err(type_err(40080, "$reduce", "requires 'input' to be an array", &other)),
            };
            let mut acc = ev("initialValue", ctx)?;
            let mark = ctx.mark();
            for e in arr {
                ctx.reset(mark);
                ctx.bind("value", acc.clone());
                ctx.bind("this", e);
                match ev("in", ctx) {
                    Ok(r) => acc = r,
                    Err(err) => {
                        ctx.reset(mark);
                        return Err(err);
                    }
                }
            }
            ctx.reset(mark);
            Ok(acc)
        }
        "$dateToString" => {
            let date = ev("date", ctx)?;
            if is_nullish(&date) {
                return match get("onNull") {
                    Some(e) => e.eval(doc, ctx),
                    None => Ok(Bson::Null),
                };
            }
            let d = to_chrono(&date).ok_or_else(|| {
                CommandError::location(
                    16006,
                    format!("can't convert from BSON type {} to Date", type_name(&date)),
                )
            })?;
            let tz = parse_tz(&ev("timezone", ctx)?)?;
            let fmt = match ev("format", ctx)? {
                Bson::String(s) => s,
                Bson::Null | Bson::Undefined => "%Y-%m-%dT%H:%M:%S.%LZ".to_string(),
                other => {
                    return Err(type_err(
                        18533,
                        "$dateToString",
                        "requires that 'format' be a string",
                        &other,
                    ));
                }
            };
            Ok(Bson::String(format_date(d.with_timezone(&tz), &fmt)?))
        }
        _ if DATE_PARTS.contains(&name) => {
            let date = ev("date", ctx)?;
            if is_nullish(&date) {
                return Ok(Bson::Null);
            }
            let d = to_chrono(&date).ok_or_else(|| {
                CommandError::location(
                    16006,
                    format!("can't convert from BSON type {} to Date", type_name(&date)),
                )
            })?;
            let tz = parse_tz(&ev("timezone", ctx)?)?;
            Ok(date_part(name, d.with_timezone(&tz)))
        }
        "$regexMatch" | "$regexFind" => {
            let input = ev("input", ctx)?;
            let regex = ev("regex", ctx)?;
            let opts = ev("options", ctx)?;
            let (pattern, mut options) = match &regex {
                Bson::String(s) => (s.clone(), String::new()),
                Bson::RegularExpression(r) => (r.pattern.clone(), r.options.clone()),
                Bson::Null | Bson::Undefined => {
                    return Ok(if name == "$regexMatch" { Bson::Boolean(false) } else { Bson::Null });
                }
                other => {
                    return Err(type_err(51105, name, "needs 'regex' to be of type string or regex", other));
                }
            };
            if let Bson::String(o) = &opts {
                options.push_str(o);
            }
            let re = Re::new(&pattern, &options)?;
            let s = match &input {
                Bson::String(s) => s.clone(),
                Bson::Null | Bson::Undefined => {
                    return Ok(if name == "$regexMatch" { Bson::Boolean(false) } else { Bson::Null });
                }
                other => return Err(type_err(51104, name, "needs 'input' to be of type string", other)),
            };
            if name == "$regexMatch" {
                return Ok(Bson::Boolean(re.is_match(&s)));
            }
            Ok(regex_find(&pattern, &options, &s)?)
        }
        "$replaceAll" | "$replaceOne" => {
            let input = ev("input", ctx)?;
            let find = ev("find", ctx)?;
            let rep = ev("replacement", ctx)?;
            if is_nullish(&input) || is_nullish(&find) || is_nullish(&rep) {
                return Ok(Bson::Null);
            }
            match (&input, &find, &rep) {
                (Bson::String(i), Bson::String(f), Bson::String(r)) => {
                    Ok(Bson::String(if name == "$replaceAll" {
                        if f.is_empty() { i.clone() } else { i.replace(f.as_str(), r) }
                    } else {
                        i.replacen(f.as_str(), r, 1)
                    }))
                }
                _ => Err(CommandError::location(
                    51746,
                    format!("{name} requires that 'input', 'find' and 'replacement' be strings"),
                )),
            }
        }
        "$trim" | "$ltrim" | "$rtrim" => {
            let input = ev("input", ctx)?;
            let s = match &input {
                Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                Bson::String(s) => s.clone(),
                other => return Err(type_err(50699, name, "requires its input to be a string", other)),
            };
            let chars: Vec<char> = match ev("chars", ctx)? {
                Bson::String(c) => c.chars().collect(),
                Bson::Null | Bson::Undefined => {
                    vec![' ', '\t', '\n', '\r', '\u{0b}', '\u{0c}', '\0', '\u{a0}']
                }
                other => return Err(type_err(50700, name, "requires 'chars' to be a string", &other)),
            };
            let f = |c: char| chars.contains(&c);
            Ok(Bson::String(match name {
                "$trim" => s.trim_matches(f).to_string(),
                "$ltrim" => s.trim_start_matches(f).to_string(),
                _ => s.trim_end_matches(f).to_string(),
            }))
        }
        "$convert" => {
            let input = ev("input", ctx)?;
            if is_nullish(&input) {
                return match get("onNull") {
                    Some(e) => e.eval(doc, ctx),
                    None => Ok(Bson::Null),
                };
            }
            let to = convert_target(&ev("to", ctx)?)?;
            match convert(&input, &to) {
                Ok(v) => Ok(v),
                Err(e) => match get("onError") {
                    Some(oe) => oe.eval(doc, ctx),
                    None => Err(e),
                },
            }
        }
        "$setField" | "$unsetField" => eval_set_field(name, args, doc, ctx),
        "$getField" => {
            let field = match ev("field", ctx)? {
                Bson::String(s) => s,
                other => {
                    return Err(type_err(
                        5654602,
                        "$getField",
                        "requires 'field' to evaluate to type String",
                        &other,
                    ));
                }
            };
            let input = match get("input") {
                Some(e) => e.eval(doc, ctx)?,
                None => Bson::Document(doc.to_document()),
            };
            match input {
                Bson::Document(d) => Ok(d.get(&field).cloned().unwrap_or(MISSING)),
                Bson::Null | Bson::Undefined => Ok(Bson::Null),
                _ => Ok(MISSING),
            }
        }
        "$dateAdd" | "$dateSubtract" | "$dateDiff" | "$dateTrunc" | "$dateFromString" => {
            eval_date_op(name, args, doc, ctx)
        }
        "$sortArray" => {
            let input = ev("input", ctx)?;
            let mut arr = match input {
                Bson::Null | Bson::Undefined => return Ok(Bson::Null),
                Bson::Array(a) => a,
                other => return Err(type_err(2942504, "$sortArray", "requires an array input", &other)),
            };
            match get("sortBy") {
                Some(Expr::Literal(Bson::Document(spec))) => {
                    let s = crate::sort::SortSpec::parse(spec)?;
                    arr.sort_by(|a, b| match (a, b) {
                        (Bson::Document(x), Bson::Document(y)) => s.compare(x, y),
                        _ => cmp_bson(a, b),
                    });
                }
                Some(Expr::Literal(dir)) => {
                    let desc = to_i64_exact(dir) == Some(-1);
                    arr.sort_by(|a, b| if desc { cmp_bson(b, a) } else { cmp_bson(a, b) });
                }
                _ => {
                    return Err(CommandError::location(
                        2942505,
                        "$sortArray requires sortBy to be 1, -1 or a document",
                    ));
                }
            }
            Ok(Bson::Array(arr))
        }
        other => Err(CommandError::invalid_pipeline_operator(format!("Unrecognized expression '{other}'"))),
    }
}

/// Time units of `$dateAdd`, `$dateDiff` and `$dateTrunc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

fn parse_unit(v: &Bson, op: &str) -> Result<Unit> {
    let Bson::String(s) = v else {
        return Err(CommandError::location(
            5439013,
            format!("{op} requires 'unit' to be a string, but got {}", type_name(v)),
        ));
    };
    Ok(match s.as_str() {
        "year" => Unit::Year,
        "quarter" => Unit::Quarter,
        "month" => Unit::Month,
        "week" => Unit::Week,
        "day" => Unit::Day,
        "hour" => Unit::Hour,
        "minute" => Unit::Minute,
        "second" => Unit::Second,
        "millisecond" => Unit::Millisecond,
        other => {
            return Err(CommandError::location(
                5439014,
                format!("{op} parameter 'unit' value cannot be recognized as a time unit: {other}"),
            ));
        }
    })
}

fn fixed_ms(unit: Unit) -> Option<i64> {
    Some(match unit {
        Unit::Week => 7 * 86_400_000,
        Unit::Day => 86_400_000,
        Unit::Hour => 3_600_000,
        Unit::Minute => 60_000,
        Unit::Second => 1000,
        Unit::Millisecond => 1,
        _ => return None,
    })
}

fn months_of(unit: Unit) -> i64 {
    match unit {
        Unit::Year => 12,
        Unit::Quarter => 3,
        _ => 1,
    }
}

fn date_add(
    d: chrono::DateTime<chrono::FixedOffset>,
    unit: Unit,
    amount: i64,
) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    let overflow = || CommandError::location(5976500, "invalid $dateAdd parameters: date overflow");
    if let Some(ms) = fixed_ms(unit) {
        let delta = chrono::Duration::try_milliseconds(amount.checked_mul(ms).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
        return d.checked_add_signed(delta).ok_or_else(overflow);
    }
    let months = amount.checked_mul(months_of(unit)).ok_or_else(overflow)?;
    let m = chrono::Months::new(u32::try_from(months.unsigned_abs()).map_err(|_| overflow())?);
    if months >= 0 { d.checked_add_months(m) } else { d.checked_sub_months(m) }.ok_or_else(overflow)
}

/// Truncates a date to the start of its unit (weeks start on Sunday unless told otherwise).
fn date_trunc(
    d: chrono::DateTime<chrono::FixedOffset>,
    unit: Unit,
    week_start: chrono::Weekday,
) -> chrono::DateTime<chrono::FixedOffset> {
    let tz = *d.offset();
    let naive = d.naive_local();
    let date = naive.date();
    let midnight = |day: chrono::NaiveDate| day.and_hms_opt(0, 0, 0).unwrap_or(naive);
    let t = match unit {
        Unit::Year => midnight(chrono::NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date)),
        Unit::Quarter => {
            let m = (date.month0() / 3) * 3 + 1;
            midnight(chrono::NaiveDate::from_ymd_opt(date.year(), m, 1).unwrap_or(date))
        }
        Unit::Month => {
            midnight(chrono::NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date))
        }
        Unit::Week => {
            let back = (7 + date.weekday().num_days_from_sunday() - week_start.num_days_from_sunday()) % 7;
            midnight(date - chrono::Days::new(u64::from(back)))
        }
        Unit::Day => midnight(date),
        Unit::Hour => naive
            .with_minute(0)
            .and_then(|x| x.with_second(0))
            .and_then(|x| x.with_nanosecond(0))
            .unwrap_or(naive),
        Unit::Minute => naive.with_second(0).and_then(|x| x.with_nanosecond(0)).unwrap_or(naive),
        Unit::Second => naive.with_nanosecond(0).unwrap_or(naive),
        Unit::Millisecond => naive,
    };
    chrono::TimeZone::from_local_datetime(&tz, &t).single().unwrap_or(d)
}

fn parse_weekday(v: &Bson) -> Result<chrono::Weekday> {
    match v {
        Bson::Null | Bson::Undefined => Ok(chrono::Weekday::Sun),
        Bson::String(s) => match s.to_ascii_lowercase().as_str() {
            "sunday" | "sun" => Ok(chrono::Weekday::Sun),
            "monday" | "mon" => Ok(chrono::Weekday::Mon),
            "tuesday" | "tue" => Ok(chrono::Weekday::Tue),
            "wednesday" | "wed" => Ok(chrono::Weekday::Wed),
            "thursday" | "thu" => Ok(chrono::Weekday::Thu),
            "friday" | "fri" => Ok(chrono::Weekday::Fri),
            "saturday" | "sat" => Ok(chrono::Weekday::Sat),
            other => Err(CommandError::location(
                5439015,
                format!("startOfWeek parameter value cannot be recognized as a day of a week: {other}"),
            )),
        },
        other => Err(type_err(5439015, "startOfWeek", "requires a string", other)),
    }
}

fn to_bson_date(d: chrono::DateTime<chrono::FixedOffset>) -> Bson {
    Bson::DateTime(DateTime::from_millis(d.timestamp_millis()))
}

/// Translates a MongoDB date format to chrono's.
fn chrono_format(fmt: &str) -> String {
    fmt.replace("%L", "%3f")
}

fn parse_date_string(
    s: &str,
    format: Option<&str>,
    tz: chrono::FixedOffset,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    use chrono::TimeZone;
    if let Some(f) = format {
        let f = chrono_format(f);
        if let Ok(d) = chrono::DateTime::parse_from_str(s, &f) {
            return Some(d);
        }
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, &f) {
            return tz.from_local_datetime(&n).single();
        }
        return chrono::NaiveDate::parse_from_str(s, &f)
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|n| tz.from_local_datetime(&n).single());
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d);
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return tz.from_local_datetime(&n).single();
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|n| tz.from_local_datetime(&n).single())
}

fn eval_date_op(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| -> Result<Bson> {
        match named(args, key) {
            Some(e) => e.eval(doc, ctx),
            None => Ok(MISSING),
        }
    };
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    let as_date = |v: &Bson, what: &str| -> Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
        if is_nullish(v) {
            return Ok(None);
        }
        to_chrono(v).map(|d| Some(d.with_timezone(&tz))).ok_or_else(|| {
            CommandError::location(
                5439012,
                format!("{name} requires '{what}' to be a date, but got {}", type_name(v)),
            )
        })
    };
    match name {
        "$dateAdd" | "$dateSubtract" => {
            let start = ev("startDate", ctx)?;
            let unit = ev("unit", ctx)?;
            let amount = ev("amount", ctx)?;
            if is_nullish(&unit) || is_nullish(&amount) {
                return Ok(Bson::Null);
            }
            let Some(d) = as_date(&start, "startDate")? else {
                return Ok(Bson::Null);
            };
            let unit = parse_unit(&unit, name)?;
            let amount = to_i64_exact(&amount).ok_or_else(|| {
                CommandError::location(5166402, format!("{name} expects integer amount of time units"))
            })?;
            let amount =
                if name == "$dateSubtract" { amount.checked_neg().unwrap_or(i64::MAX) } else { amount };
            Ok(to_bson_date(date_add(d, unit, amount)?))
        }
        "$dateDiff" => {
            let start = ev("startDate", ctx)?;
            let end = ev("endDate", ctx)?;
            let unit = ev("unit", ctx)?;
            if is_nullish(&unit) {
                return Ok(Bson::Null);
            }
            let (Some(a), Some(b)) = (as_date(&start, "startDate")?, as_date(&end, "endDate")?) else {
                return Ok(Bson::Null);
            };
            let unit = parse_unit(&unit, name)?;
            let week_start = parse_weekday(&ev("startOfWeek", ctx)?)?;
            let n = match unit {
                Unit::Year | Unit::Quarter | Unit::Month => {
                    let ma = i64::from(a.year()) * 12 + i64::from(a.month0());
                    let mb = i64::from(b.year()) * 12 + i64::from(b.month0());
                    let per = months_of(unit);
                    mb.div_euclid(per) - ma.div_euclid(per)
                }
                other => {
                    let ms = fixed_ms(other).unwrap_or(1);
                    let ta = date_trunc(a, other, week_start).timestamp_millis();
                    let tb = date_trunc(b, other, week_start).timestamp_millis();
                    (tb - ta).div_euclid(ms)
                }
            };
            Ok(Bson::Int64(n))
        }
        "$dateTrunc" => {
            let date = ev("date", ctx)?;
            let unit = ev("unit", ctx)?;
            if is_nullish(&unit) {
                return Ok(Bson::Null);
            }
            let Some(d) = as_date(&date, "date")? else {
                return Ok(Bson::Null);
            };
            let unit = parse_unit(&unit, name)?;
            let week_start = parse_weekday(&ev("startOfWeek", ctx)?)?;
            let bin = match ev("binSize", ctx)? {
                Bson::Null | Bson::Undefined => 1,
                v => to_i64_exact(&v).filter(|b| *b > 0).ok_or_else(|| {
                    CommandError::location(
                        5439017,
                        "$dateTrunc requires 'binSize' to be a positive 64-bit integer",
                    )
                })?,
            };
            let t = date_trunc(d, unit, week_start);
            if bin == 1 {
                return Ok(to_bson_date(t));
            }
            // Bins count from the reference 2000-01-01 (MongoDB's), in the unit.
            let reference = date_trunc(
                chrono::TimeZone::with_ymd_and_hms(&tz, 2000, 1, 1, 0, 0, 0).single().unwrap_or(t),
                unit,
                week_start,
            );
            let r = match unit {
                Unit::Year | Unit::Quarter | Unit::Month => {
                    let per = months_of(unit);
                    let m = (i64::from(t.year()) * 12 + i64::from(t.month0()) - (2000 * 12)) / per;
                    let binned = m.div_euclid(bin) * bin;
                    date_add(reference, unit, binned)?
                }
                other => {
                    let ms = fixed_ms(other).unwrap_or(1).saturating_mul(bin);
                    let off = t.timestamp_millis() - reference.timestamp_millis();
                    let binned = off.div_euclid(ms) * ms;
                    reference + chrono::Duration::milliseconds(binned)
                }
            };
            Ok(to_bson_date(r))
        }
        _ => {
            // $dateFromString
            let s = ev("dateString", ctx)?;
            let s = match s {
                Bson::Null | Bson::Undefined => {
                    return match named(args, "onNull") {
                        Some(e) => e.eval(doc, ctx),
                        None => Ok(Bson::Null),
                    };
                }
                Bson::String(s) => s,
                other => {
                    return Err(type_err(
                        241,
                        "$dateFromString",
                        "requires that 'dateString' be a string",
                        &other,
                    ));
                }
            };
            let format = match ev("format", ctx)? {
                Bson::String(f) => Some(f),
                _ => None,
            };
            match parse_date_string(&s, format.as_deref(), tz) {
                Some(d) => Ok(to_bson_date(d)),
                None => match named(args, "onError") {
                    Some(e) => e.eval(doc, ctx),
                    None => Err(CommandError::location(241, format!("Error parsing date string '{s}'"))),
                },
            }
        }
    }
}

fn regex_find(pattern: &str, options: &str, s: &str) -> Result<Bson> {
    let re = Re::new(pattern, options)?;
    let raw = re.regex();
    let Some(caps) = raw.captures(s) else {
        return Ok(Bson::Null);
    };
    let Some(m) = caps.get(0) else {
        return Ok(Bson::Null);
    };
    let captures: Vec<Bson> = (1..caps.len())
        .map(|i| caps.get(i).map(|c| Bson::String(c.as_str().to_string())).unwrap_or(Bson::Null))
        .collect();
    let idx = s[..m.start()].chars().count() as i32;
    Ok(Bson::Document(bson::doc! {"match": m.as_str(), "idx": idx, "captures": captures}))
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
