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

mod arith;
mod array;
mod date;
mod logic;
mod object;
mod parse;
mod set;
mod string;
mod types;

pub(crate) use arith::{num_add, num_mul};
pub use array::MAX_RANGE_BYTES;
pub use date::format_date;
pub use types::to_string_value;

use std::borrow::Cow;
use std::cmp::Ordering;

use bson::{Bson, DateTime, Document};

use crate::compare::{Num, as_num, bson_eq, cmp_bson};
use crate::error::{CommandError, Result};
use crate::filter::{bson_type_code, type_alias};
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

impl Expr {
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
    pub(crate) fn eval_ref<'a>(&'a self, doc: &'a dyn Fields, ctx: &mut EvalCtx) -> Result<Cow<'a, Bson>> {
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
    dispatch(&POSITIONAL_OPS, name)?(name, v)
}

/// A positional operator, called with its evaluated arguments.
type OpFn = fn(&str, Vec<Bson>) -> Result<Bson>;
/// An operator with named arguments, called with them unevaluated.
type NamedFn = fn(&str, &[(String, Expr)], &dyn Fields, &mut EvalCtx) -> Result<Bson>;

/// Every positional operator evaluated from its arguments' values (the operators `eval_op`
/// evaluates lazily, `$and`, `$or`, `$cond`, `$ifNull`, `$rand`, are not here), sorted by name.
static POSITIONAL_OPS: std::sync::LazyLock<Vec<(&'static str, OpFn)>> = std::sync::LazyLock::new(|| {
    sorted([arith::OPS, array::OPS, date::OPS, logic::OPS, object::OPS, set::OPS, string::OPS, types::OPS])
});

/// Every operator with named arguments, sorted by name.
static NAMED_OPS: std::sync::LazyLock<Vec<(&'static str, NamedFn)>> = std::sync::LazyLock::new(|| {
    sorted([
        array::NAMED_OPS,
        date::NAMED_OPS,
        logic::NAMED_OPS,
        object::NAMED_OPS,
        string::NAMED_OPS,
        types::NAMED_OPS,
    ])
});

fn sorted<F: Copy, const N: usize>(tables: [&[(&'static str, F)]; N]) -> Vec<(&'static str, F)> {
    let mut all: Vec<(&'static str, F)> = tables.iter().flat_map(|t| t.iter().copied()).collect();
    all.sort_by_key(|(n, _)| *n);
    all
}

/// The function of operator `name` in a sorted table (168 when there is none: parsing only
/// makes known operators, so this is a table missing a row).
fn dispatch<F: Copy>(table: &[(&'static str, F)], name: &str) -> Result<F> {
    match table.binary_search_by_key(&name, |(n, _)| *n) {
        Ok(i) => Ok(table[i].1),
        Err(_) => Err(CommandError::invalid_pipeline_operator(format!("Unrecognized expression '{name}'"))),
    }
}

/// Positional argument `i` (missing when absent).
fn arg(v: &[Bson], i: usize) -> &Bson {
    v.get(i).unwrap_or(&MISSING_VALUE)
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

/// Named argument `key` evaluated (missing when absent).
fn eval_arg(args: &[(String, Expr)], key: &str, doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    match named(args, key) {
        Some(e) => e.eval(doc, ctx),
        None => Ok(MISSING),
    }
}

fn eval_named(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    dispatch(&NAMED_OPS, name)?(name, args, doc, ctx)
}

#[cfg(test)]
mod tests;
